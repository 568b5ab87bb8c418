//! Lane: Unix datagram sockets between yards of one host, without the sockets.
//!
//! [`page`] is the sans-IO wire format (pages, pagination, book reassembly);
//! [`core`] the sans-IO state of one yard ([`YardCore`]: remote yards, session
//! and book ids, reassembly, counters). The drivers that bind a yard at
//! `<dir>/<lane>.<yard>.uxd` are in crate `raet`: the tokio `LaneStack` and the
//! poll-driven `LaneYard` for callers with their own event loop.

pub mod core;
pub mod page;

use std::path::PathBuf;

pub use self::core::{Outgoing, YardCore};
pub use page::{
    BookAddress, BookLimits, BookStats, Books, PackKind, Page, PageHead, MAX_PACKED_PAGE_SIZE,
    MAX_PAGE_SIZE,
};

/// A received message: the sender's yard name and the body.
pub type Message = (String, serde_json::Map<String, serde_json::Value>);

/// A received message of either kind: the sender's yard name and the body.
pub type Received = (String, Body);

/// The body of a book: a mapping (pack kind json, what the reference sends) or
/// the bytes of a packed book (pack kind msgpack, sent by this implementation's
/// `send_packed`; the lane does not decode them, the application does).
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// A JSON mapping.
    Map(serde_json::Map<String, serde_json::Value>),
    /// Packed bytes (msgpack, decoded by the application).
    Packed(Vec<u8>),
}

/// The reference's default lane name.
pub const DEFAULT_LANE: &str = "lane";

/// Everything that can go wrong on a lane: bad pages (never a panic), dropped
/// books, bad names, socket errors.
#[derive(Debug, thiserror::Error)]
pub enum LaneError {
    /// A zero-length datagram.
    #[error("empty page")]
    Empty,
    /// The datagram does not start with `ri RAET\n` or has no `\n\n`.
    #[error("not a RAET page head")]
    NotRaet,
    /// A head line is not `key value`.
    #[error("malformed page head line")]
    BadLine,
    /// A head key the reference does not know.
    #[error("unknown page head field {0:?}")]
    UnknownField(String),
    /// A head key given twice.
    #[error("page head field {0} given twice")]
    DuplicateField(&'static str),
    /// A head value that does not parse (or cannot be written).
    #[error("bad value of page head field {0}")]
    BadField(&'static str),
    /// `pk` is neither 0 (json) nor 1 (msgpack).
    #[error("unknown pack kind {0}")]
    UnknownPackKind(u32),
    /// A pack kind this implementation does not (de)serialise.
    #[error("unsupported pack kind {0}")]
    UnsupportedPackKind(u32),
    /// `pn` is not below `pc` on a paginated page.
    #[error("page number {pn} not below page count {pc}")]
    BadPageNumber {
        /// Page number.
        pn: u32,
        /// Page count.
        pc: u32,
    },
    /// The datagram exceeds the largest page.
    #[error("page of {0} bytes exceeds the largest page")]
    PageTooLarge(usize),
    /// The (reassembled) body is not a serialised mapping.
    #[error("bad page body: {0}")]
    BadBody(String),
    /// A page of a book whose first page was not received.
    #[error("missed the first page of a book (got page {pn})")]
    MissedFirstPage {
        /// Page number received.
        pn: u32,
    },
    /// A page whose `pc` differs from its book's first page.
    #[error("page count {pc} differs from the book's {expected}")]
    PageCountMismatch {
        /// Page count on this page.
        pc: u32,
        /// Page count of the book.
        expected: u32,
    },
    /// A book body larger than allowed (sending or receiving).
    #[error("book of {0} bytes is too large")]
    BookTooLarge(usize),
    /// The head leaves no room for a body chunk.
    #[error("page head of {0} bytes is too long")]
    HeadTooLong(usize),
    /// A yard or lane name unusable in a socket file name or a head.
    #[error("invalid yard or lane name {0:?}")]
    InvalidName(String),
    /// A page addressed to another yard.
    #[error("page for yard {0:?} received by another yard")]
    WrongDestination(String),
    /// A page whose source address does not match its `sn`.
    #[error("unacceptable source yard {0:?}")]
    BadSource(String),
    /// The destination yard's socket does not exist or nobody listens there.
    #[error("yard {yard:?} unreachable at {path}: {source}")]
    Unreachable {
        /// Destination yard.
        yard: String,
        /// Its socket path.
        path: PathBuf,
        /// ENOENT or ECONNREFUSED.
        source: std::io::Error,
    },
    /// The destination yard's queue stayed full longer than the sender waits.
    #[error("yard {yard:?} at {path} does not drain its queue")]
    QueueFull {
        /// Destination yard.
        yard: String,
        /// Its socket path.
        path: PathBuf,
    },
    /// Another live socket is bound at our path.
    #[error("a yard already listens at {0}")]
    InUse(PathBuf),
    /// Any other socket or file system error.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The stack's receive task has stopped.
    #[error("lane stack closed")]
    Closed,
}

impl LaneError {
    /// Name of the stack counter this error increments when it drops a page.
    pub fn counter(&self) -> &'static str {
        match self {
            Self::Empty
            | Self::NotRaet
            | Self::BadLine
            | Self::UnknownField(_)
            | Self::DuplicateField(_)
            | Self::BadField(_)
            | Self::UnknownPackKind(_)
            | Self::BadPageNumber { .. }
            | Self::PageTooLarge(_)
            | Self::HeadTooLong(_) => "invalid_page_header",
            Self::UnsupportedPackKind(_) | Self::BadBody(_) => "invalid_page_body",
            Self::MissedFirstPage { .. } => "missed_page",
            Self::PageCountMismatch { .. } => "page_count_mismatch",
            Self::BookTooLarge(_) => "oversize_book",
            Self::WrongDestination(_) => "invalid_destination",
            Self::InvalidName(_) | Self::BadSource(_) => "invalid_source_yard",
            Self::Unreachable { .. } => "stale_transmit_yard",
            Self::QueueFull { .. } => "full_transmit_yard",
            Self::InUse(_) | Self::Io { .. } | Self::Closed => "error_transmit_yard",
        }
    }
}

/// Checks a yard name: non-empty, printable ASCII without space, `.` or `/`
/// (it must survive the socket file name `<lane>.<yard>.uxd` and a page head).
pub fn check_yard_name(name: &str) -> Result<(), LaneError> {
    check_name(name, false)
}

/// Checks a lane name: as a yard name, but dots are allowed (the reference
/// splits the file name at its last dot).
pub fn check_lane_name(name: &str) -> Result<(), LaneError> {
    check_name(name, true)
}

fn check_name(name: &str, dots: bool) -> Result<(), LaneError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && (dots || b != b'.'));
    if ok {
        Ok(())
    } else {
        Err(LaneError::InvalidName(name.to_owned()))
    }
}
