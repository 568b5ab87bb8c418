//! The sending side of a book: body (de)serialisation by pack kind, cutting a
//! body into pages ([`paginate`]) and the session ids heads carry.

use rand_core::RngCore;
use serde_json::{Map, Value};

use super::{
    PackKind, PageHead, MAX_BOOK_SIZE, MAX_PACKED_PAGE_SIZE, MAX_PAGE_SIZE, PAGE_EXTRA, SID_LEN,
};
use crate::lane::LaneError;
use crate::packet::body;

/// Serialises a book body for pack kind `pk` (an empty mapping is empty).
pub fn encode_body(pk: PackKind, body: &Map<String, Value>) -> Result<Vec<u8>, LaneError> {
    match pk {
        PackKind::Json => Ok(body::encode_json(body)),
        PackKind::Msgpack => Err(LaneError::UnsupportedPackKind(pk.code())),
    }
}

/// Deserialises a whole book body of pack kind `pk`; it must be a mapping.
pub fn decode_body(pk: PackKind, bytes: &[u8]) -> Result<Map<String, Value>, LaneError> {
    match pk {
        PackKind::Json => body::decode_json(bytes).map_err(|e| LaneError::BadBody(e.to_string())),
        PackKind::Msgpack => Err(LaneError::UnsupportedPackKind(pk.code())),
    }
}

/// Addressing of an outgoing book: everything in the head but `pn`/`pc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookAddress {
    /// Source (local) yard name.
    pub sn: String,
    /// Destination yard name.
    pub dn: String,
    /// Session id kept for the destination yard.
    pub si: String,
    /// Book id.
    pub bi: u32,
}

/// Encodes `body` into the pages of one book, exactly as the reference's
/// `TxBook.pack`: one page if it fits in [`MAX_PAGE_SIZE`], else body chunks of
/// `MAX_PAGE_SIZE - (head size + 2)` bytes with `pn`/`pc` set.
pub fn paginate(
    addr: &BookAddress,
    pk: PackKind,
    body: &Map<String, Value>,
) -> Result<Vec<Vec<u8>>, LaneError> {
    paginate_bytes(addr, pk, &encode_body(pk, body)?, MAX_PAGE_SIZE)
}

/// The largest page of a packed book for a socket whose send buffer is
/// `send_buffer` bytes (as `SO_SNDBUF` reports it, the kernel's doubled value):
/// half of it, between [`MAX_PAGE_SIZE`] and [`MAX_PACKED_PAGE_SIZE`]. (A Unix
/// datagram must fit in the sender's buffer with the kernel's overhead.)
pub fn packed_page_size(send_buffer: usize) -> usize {
    (send_buffer / 2).clamp(MAX_PAGE_SIZE, MAX_PACKED_PAGE_SIZE)
}

/// Cuts body bytes `packed` of pack kind `pk` into the pages of one book of
/// pages of at most `max_page` bytes, as [`paginate`] (which is this with
/// [`MAX_PAGE_SIZE`]). Pages larger than [`MAX_PAGE_SIZE`] are for packed books
/// only: a page of another kind is never larger.
pub fn paginate_bytes(
    addr: &BookAddress,
    pk: PackKind,
    packed: &[u8],
    max_page: usize,
) -> Result<Vec<Vec<u8>>, LaneError> {
    let max_page = match pk {
        PackKind::Msgpack => max_page.clamp(MAX_PAGE_SIZE, MAX_PACKED_PAGE_SIZE),
        PackKind::Json => MAX_PAGE_SIZE,
    };
    if packed.len() > MAX_BOOK_SIZE {
        return Err(LaneError::BookTooLarge(packed.len()));
    }
    let mut head = PageHead {
        vn: 0,
        pk,
        sn: addr.sn.clone(),
        dn: addr.dn.clone(),
        si: addr.si.clone(),
        bi: addr.bi,
        pn: 0,
        pc: 1,
    };
    let mut first = head.to_bytes()?;
    let head_size = first.len();
    if head_size + packed.len() <= max_page {
        first.extend_from_slice(packed);
        return Ok(vec![first]);
    }
    let chunk = max_page
        .checked_sub(head_size + PAGE_EXTRA)
        .filter(|&c| c > 0)
        .ok_or(LaneError::HeadTooLong(head_size))?;
    let count = packed.len().div_ceil(chunk);
    head.pc = u32::try_from(count)
        .ok()
        .filter(|&c| c <= 0xFFFF)
        .ok_or(LaneError::BookTooLarge(packed.len()))?;
    let mut pages = Vec::with_capacity(count);
    for (pn, section) in (0u32..).zip(packed.chunks(chunk)) {
        head.pn = pn;
        let mut page = Vec::with_capacity(head_size + section.len());
        head.encode(&mut page)?;
        page.extend_from_slice(section);
        pages.push(page);
    }
    Ok(pages)
}

/// A session id as the reference's `uuid(18)`: the hex of the Unix time in
/// microseconds followed by random hex digits, 18 characters in all.
pub fn session_id<R: RngCore>(unix_micros: u64, rng: &mut R) -> String {
    let mut sid = format!("{unix_micros:x}");
    let extra = SID_LEN.saturating_sub(sid.len());
    let mut random = vec![0u8; extra.div_ceil(2)];
    rng.fill_bytes(&mut random);
    sid.push_str(&hex::encode(random));
    sid.truncate(SID_LEN);
    sid
}
