//! Lane pages and books (sans-IO).
//!
//! A lane message ("book") travels in one or more Unix datagrams ("pages"):
//!
//! ```text
//! page = head || body
//! head = "ri RAET\nvn 0\npk P\nsn SRC\ndn DST\nsi SID\nbi B\npn NNNN\npc NNNN\n\n"
//! ```
//!
//! All nine head fields are always written, in this order; `vn`, `pk`, `bi`
//! are lowercase hex, `pn`/`pc` 4-digit zero-padded hex, `si` an 18-character
//! session id. The body is the book's compact JSON (an empty mapping is an
//! empty body). A book whose single page would exceed [`MAX_PAGE_SIZE`] is cut
//! into chunks of `MAX_PAGE_SIZE - (head size + 2)` body bytes, exactly as the
//! reference `TxBook.paginate`. [`Books`] reassembles them on the receiving
//! side, keyed by `(dn, sn, si, bi)`, with bounded memory.
//!
//! Nothing here touches sockets or clocks; parsing any byte string returns a
//! [`LaneError`], never panics.
//!
//! `head` is the wire view of one page, `paginate` cuts a book into pages,
//! `books` puts them back together.

mod books;
mod head;
mod paginate;

pub use books::{BookLimits, BookStats, Books};
pub use head::{Page, PageHead};
pub use paginate::{
    decode_body, encode_body, packed_page_size, paginate, paginate_bytes, session_id, BookAddress,
};

use super::LaneError;

/// Largest page (one Unix datagram) the reference sends or accepts, in bytes.
pub const MAX_PAGE_SIZE: usize = 65_535;
/// Largest page of a packed book (pack kind msgpack, opaque bytes: only between
/// this implementation's yards; the reference never sends one). The sender cuts
/// smaller pages when its socket's send buffer is smaller ([`packed_page_size`]).
pub const MAX_PACKED_PAGE_SIZE: usize = 512 * 1024;
/// Bytes the reference reserves on top of the head when paginating.
const PAGE_EXTRA: usize = 2;
/// Largest encoded book body (bytes): the reference's `MAX_MESSAGE_SIZE`.
pub const MAX_BOOK_SIZE: usize = 67_107_840;
/// Length of a session id (`si`) in characters.
pub const SID_LEN: usize = 18;
/// The first line every page starts with.
const HEAD_START: &[u8] = b"ri RAET\n";
/// The head terminator.
const HEAD_END: &[u8] = b"\n\n";
/// The reference's default session id (a head without `si`).
const DEFAULT_SID: &str = "000000000000000000";

/// How a book's body is serialised (`pk`; numbering differs from road `bk`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PackKind {
    /// 0: compact JSON. The only kind a default reference install handles.
    Json,
    /// 1: msgpack. A mapping body is not supported (as in a default reference
    /// install without the optional `msgpack` package); a packed book
    /// ([`super::Body::Packed`]) carries its msgpack bytes untouched, for the
    /// application to decode.
    Msgpack,
}

impl PackKind {
    /// The wire code.
    pub fn code(self) -> u32 {
        match self {
            Self::Json => 0,
            Self::Msgpack => 1,
        }
    }

    /// The kind for a wire code.
    pub fn from_code(code: u32) -> Result<Self, LaneError> {
        match code {
            0 => Ok(Self::Json),
            1 => Ok(Self::Msgpack),
            other => Err(LaneError::UnknownPackKind(other)),
        }
    }
}

#[cfg(test)]
mod tests;
