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

use std::collections::{BTreeMap, HashMap};

use rand_core::RngCore;
use serde_json::{Map, Value};

use super::LaneError;
use crate::packet::body;

/// Largest page (one Unix datagram) the reference sends or accepts, in bytes.
pub const MAX_PAGE_SIZE: usize = 65_535;
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
    /// 1: msgpack. Recognised in heads, not supported for bodies (as in a
    /// default reference install without the optional `msgpack` package).
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

/// A decoded page head. Field names follow the wire keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageHead {
    /// `vn`: version (only 0 exists; the reference never checks it).
    pub vn: u32,
    /// `pk`: pack kind of the book's body.
    pub pk: PackKind,
    /// `sn`: source yard name.
    pub sn: String,
    /// `dn`: destination yard name.
    pub dn: String,
    /// `si`: session id the sender keeps for the destination yard.
    pub si: String,
    /// `bi`: book id, a per-destination counter from 1.
    pub bi: u32,
    /// `pn`: page number, 0-based.
    pub pn: u32,
    /// `pc`: page count (1 = unpaginated).
    pub pc: u32,
}

impl Default for PageHead {
    /// The reference's `PAGE_DEFAULTS`: what a parsed head holds for a field
    /// it does not carry.
    fn default() -> Self {
        Self {
            vn: 0,
            pk: PackKind::Json,
            sn: String::new(),
            dn: String::new(),
            si: DEFAULT_SID.to_owned(),
            bi: 0,
            pn: 0,
            pc: 1,
        }
    }
}

impl PageHead {
    /// Whether this page is one of several (`pc > 1`), as the reference decides.
    pub fn paginated(&self) -> bool {
        self.pc > 1
    }

    /// Appends the encoded head (terminator included) to `out`.
    ///
    /// Errors if a name or the session id cannot be written in a head (empty
    /// or longer-than-18 `si`, a space, newline or non-Latin-1 character).
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), LaneError> {
        if self.si.is_empty() || self.si.chars().count() > SID_LEN {
            return Err(LaneError::BadField("si"));
        }
        out.extend_from_slice(HEAD_START);
        out.extend_from_slice(format!("vn {:x}\npk {:x}\n", self.vn, self.pk.code()).as_bytes());
        for (key, value) in [("sn", &self.sn), ("dn", &self.dn), ("si", &self.si)] {
            out.extend_from_slice(key.as_bytes());
            out.push(b' ');
            push_latin1(out, value).ok_or(LaneError::BadField(key))?;
            out.push(b'\n');
        }
        out.extend_from_slice(
            format!(
                "bi {:x}\npn {:04x}\npc {:04x}\n\n",
                self.bi, self.pn, self.pc
            )
            .as_bytes(),
        );
        Ok(())
    }

    /// The encoded head as a fresh vector.
    pub fn to_bytes(&self) -> Result<Vec<u8>, LaneError> {
        let mut out = Vec::with_capacity(96);
        self.encode(&mut out)?;
        Ok(out)
    }
}

/// Appends `s` as Latin-1 (the reference's `ns2b`); `None` if a character is
/// outside Latin-1 or is a space or newline (which would break the head).
fn push_latin1(out: &mut Vec<u8>, s: &str) -> Option<()> {
    for c in s.chars() {
        let byte = u8::try_from(u32::from(c)).ok()?;
        if byte == b' ' || byte == b'\n' {
            return None;
        }
        out.push(byte);
    }
    Some(())
}

/// A parsed page: its head and its body bytes (a chunk of the book's body
/// when paginated), borrowed from the datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<'a> {
    /// The decoded head.
    pub head: PageHead,
    /// The body bytes following the head terminator.
    pub body: &'a [u8],
}

impl<'a> Page<'a> {
    /// Parses one datagram as the reference's `RxHead.parse` does: it must
    /// start with `ri RAET\n` and contain `\n\n`; every head line is
    /// `key value` with a known key; absent fields take the reference
    /// defaults. Stricter than the reference where it would crash or guess:
    /// duplicate fields, non-hex numbers, an unknown pack kind and a page
    /// number outside the page count are errors.
    pub fn parse(datagram: &'a [u8]) -> Result<Self, LaneError> {
        if datagram.is_empty() {
            return Err(LaneError::Empty);
        }
        if datagram.len() > MAX_PAGE_SIZE {
            return Err(LaneError::PageTooLarge(datagram.len()));
        }
        if !datagram.starts_with(HEAD_START) {
            return Err(LaneError::NotRaet);
        }
        let end = datagram
            .windows(HEAD_END.len())
            .position(|w| w == HEAD_END)
            .ok_or(LaneError::NotRaet)?;
        let (front, rest) = datagram.split_at(end);
        let body = rest.get(HEAD_END.len()..).ok_or(LaneError::NotRaet)?;

        let mut head = PageHead::default();
        let mut seen = [false; FIELDS.len()];
        for line in front.split(|&b| b == b'\n') {
            let mut parts = line.split(|&b| b == b' ');
            let (Some(key), Some(value), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(LaneError::BadLine);
            };
            let index = FIELDS
                .iter()
                .position(|f| f.as_bytes() == key)
                .ok_or_else(|| LaneError::UnknownField(latin1(key)))?;
            let name = FIELDS.get(index).copied().unwrap_or("?");
            match seen.get_mut(index) {
                Some(flag) if !*flag => *flag = true,
                _ => return Err(LaneError::DuplicateField(name)),
            }
            match name {
                "ri" => {
                    if value != b"RAET" {
                        return Err(LaneError::NotRaet);
                    }
                }
                "vn" => head.vn = parse_hex(value, name)?,
                "pk" => head.pk = PackKind::from_code(parse_hex(value, name)?)?,
                "sn" => head.sn = latin1(value),
                "dn" => head.dn = latin1(value),
                "si" => head.si = latin1(value),
                "bi" => head.bi = parse_hex(value, name)?,
                "pn" => head.pn = parse_hex(value, name)?,
                _ => head.pc = parse_hex(value, name)?,
            }
        }
        if head.paginated() && head.pn >= head.pc {
            return Err(LaneError::BadPageNumber {
                pn: head.pn,
                pc: head.pc,
            });
        }
        Ok(Page { head, body })
    }
}

/// The head keys, in wire order.
const FIELDS: [&str; 9] = ["ri", "vn", "pk", "sn", "dn", "si", "bi", "pn", "pc"];

/// Decodes Latin-1 bytes (never fails, as the reference's head decoding).
fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

/// Parses 1 to 8 hex digits into a u32.
fn parse_hex(value: &[u8], field: &'static str) -> Result<u32, LaneError> {
    let text = std::str::from_utf8(value).map_err(|_| LaneError::BadField(field))?;
    if text.is_empty() || text.len() > 8 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(LaneError::BadField(field));
    }
    u32::from_str_radix(text, 16).map_err(|_| LaneError::BadField(field))
}

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
    let packed = encode_body(pk, body)?;
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
    if head_size + packed.len() <= MAX_PAGE_SIZE {
        first.extend_from_slice(&packed);
        return Ok(vec![first]);
    }
    let chunk = MAX_PAGE_SIZE
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

/// Memory bounds of a [`Books`] assembler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BookLimits {
    /// Most books open (partially received) at once; the oldest is dropped
    /// to make room for a new one.
    pub max_open_books: usize,
    /// Most body bytes held by open books together; the oldest books are
    /// dropped to make room, and a page that cannot fit is dropped.
    pub max_open_bytes: usize,
}

impl Default for BookLimits {
    fn default() -> Self {
        Self {
            max_open_books: 64,
            max_open_bytes: 2 * MAX_BOOK_SIZE,
        }
    }
}

/// Identity of a book on the receiving side: `(dn, sn, si, bi)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct BookKey {
    dn: String,
    sn: String,
    si: String,
    bi: u32,
}

/// A partially received book.
#[derive(Debug)]
struct OpenBook {
    pk: PackKind,
    pc: u32,
    sections: BTreeMap<u32, Vec<u8>>,
    bytes: usize,
    /// Insertion order, to find the oldest book.
    seq: u64,
}

/// Counters of a [`Books`] assembler (books dropped and why).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BookStats {
    /// Books completed and decoded (paginated or not).
    pub completed: u64,
    /// Pages dropped because their book's first page was never seen.
    pub missed_first_page: u64,
    /// Open books dropped because a page of a newer session of the same
    /// source yard arrived.
    pub stale_books: u64,
    /// Open books dropped to respect [`BookLimits`].
    pub evicted_books: u64,
    /// Pages dropped because they could not fit within [`BookLimits`] or
    /// [`MAX_BOOK_SIZE`] (their book is dropped too).
    pub oversize_books: u64,
    /// Pages dropped because their `pc` differs from their book's.
    pub page_count_mismatch: u64,
}

/// Reassembles books from pages, keyed by `(dn, sn, si, bi)`.
///
/// As the reference: a page of a session id other than the one of the open
/// books of its source yard drops those books; a paginated page whose book
/// has not been opened by its page 0 is dropped; a repeated page replaces the
/// earlier copy. Memory is bounded by [`BookLimits`].
#[derive(Debug, Default)]
pub struct Books {
    limits: BookLimits,
    open: HashMap<BookKey, OpenBook>,
    open_bytes: usize,
    next_seq: u64,
    stats: BookStats,
}

impl Books {
    /// An empty assembler with the given bounds.
    pub fn new(limits: BookLimits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> &BookStats {
        &self.stats
    }

    /// Number of open (incomplete) books.
    pub fn open_books(&self) -> usize {
        self.open.len()
    }

    /// The source yards (`sn`) of the open books (with repeats).
    pub fn open_sources(&self) -> impl Iterator<Item = &str> {
        self.open.keys().map(|k| k.sn.as_str())
    }

    /// Body bytes held by open books.
    pub fn open_bytes(&self) -> usize {
        self.open_bytes
    }

    /// Feeds one parsed page. Returns the book's body when this page
    /// completes it, `Ok(None)` when more pages are needed, and an error when
    /// the page (or the book it completes) is dropped.
    pub fn insert(&mut self, page: &Page<'_>) -> Result<Option<Map<String, Value>>, LaneError> {
        let head = &page.head;
        if head.paginated() && head.pn >= head.pc {
            return Err(LaneError::BadPageNumber {
                pn: head.pn,
                pc: head.pc,
            });
        }
        self.drop_stale(&head.dn, &head.sn, &head.si);
        if !head.paginated() {
            let body = decode_body(head.pk, page.body)?;
            self.stats.completed += 1;
            return Ok(Some(body));
        }
        let key = BookKey {
            dn: head.dn.clone(),
            sn: head.sn.clone(),
            si: head.si.clone(),
            bi: head.bi,
        };
        if !self.open.contains_key(&key) {
            if head.pn != 0 {
                self.stats.missed_first_page += 1;
                return Err(LaneError::MissedFirstPage { pn: head.pn });
            }
            self.make_room_for_book();
            self.open.insert(
                key.clone(),
                OpenBook {
                    pk: head.pk,
                    pc: head.pc,
                    sections: BTreeMap::new(),
                    bytes: 0,
                    seq: self.next_seq,
                },
            );
            self.next_seq += 1;
        }
        self.add_section(&key, head.pc, head.pn, page.body)?;
        let complete = self
            .open
            .get(&key)
            .is_some_and(|b| b.sections.len() == b.pc as usize);
        if !complete {
            return Ok(None);
        }
        let book = self
            .remove(&key)
            .ok_or(LaneError::MissedFirstPage { pn: head.pn })?;
        let packed = book.sections.into_values().collect::<Vec<_>>().concat();
        let body = decode_body(book.pk, &packed)?;
        self.stats.completed += 1;
        Ok(Some(body))
    }

    /// Stores one chunk in the open book `key`, within the memory bounds.
    fn add_section(
        &mut self,
        key: &BookKey,
        pc: u32,
        pn: u32,
        chunk: &[u8],
    ) -> Result<(), LaneError> {
        let (expected, replaced, book_bytes) = match self.open.get(key) {
            Some(b) => (b.pc, b.sections.get(&pn).map_or(0, Vec::len), b.bytes),
            None => return Err(LaneError::MissedFirstPage { pn }),
        };
        if expected != pc {
            self.stats.page_count_mismatch += 1;
            return Err(LaneError::PageCountMismatch { pc, expected });
        }
        let new_book_bytes = book_bytes - replaced + chunk.len();
        if new_book_bytes > MAX_BOOK_SIZE || new_book_bytes > self.limits.max_open_bytes {
            self.remove(key);
            self.stats.oversize_books += 1;
            return Err(LaneError::BookTooLarge(new_book_bytes));
        }
        while self.open_bytes - replaced + chunk.len() > self.limits.max_open_bytes {
            if !self.evict_oldest_except(key) {
                break;
            }
        }
        if let Some(book) = self.open.get_mut(key) {
            book.bytes = new_book_bytes;
            self.open_bytes = self.open_bytes - replaced + chunk.len();
            book.sections.insert(pn, chunk.to_vec());
        }
        Ok(())
    }

    /// Drops books of `(dn, sn)` whose session id is not `si`.
    fn drop_stale(&mut self, dn: &str, sn: &str, si: &str) {
        let stale: Vec<BookKey> = self
            .open
            .keys()
            .filter(|k| k.dn == dn && k.sn == sn && k.si != si)
            .cloned()
            .collect();
        for key in stale {
            self.remove(&key);
            self.stats.stale_books += 1;
        }
    }

    /// Evicts the oldest books until a new one fits under `max_open_books`.
    fn make_room_for_book(&mut self) {
        while self.open.len() >= self.limits.max_open_books.max(1) {
            let Some(oldest) = self.oldest(None) else {
                break;
            };
            self.remove(&oldest);
            self.stats.evicted_books += 1;
        }
    }

    /// Evicts the oldest book other than `keep`; false if there is none.
    fn evict_oldest_except(&mut self, keep: &BookKey) -> bool {
        match self.oldest(Some(keep)) {
            Some(oldest) => {
                self.remove(&oldest);
                self.stats.evicted_books += 1;
                true
            }
            None => false,
        }
    }

    fn oldest(&self, except: Option<&BookKey>) -> Option<BookKey> {
        self.open
            .iter()
            .filter(|(k, _)| Some(*k) != except)
            .min_by_key(|(_, b)| b.seq)
            .map(|(k, _)| k.clone())
    }

    fn remove(&mut self, key: &BookKey) -> Option<OpenBook> {
        let book = self.open.remove(key)?;
        self.open_bytes = self.open_bytes.saturating_sub(book.bytes);
        Some(book)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The captured reference page (raet 0.6.8, yard `main` to yard `other`).
    const CAPTURED: &[u8] = b"ri RAET\nvn 0\npk 0\nsn main\ndn other\nsi 660e1029c5d41cbdf5\nbi 1\npn 0000\npc 0001\n\n{\"subject\":\"main to other\",\"n\":1}";

    fn addr(bi: u32) -> BookAddress {
        BookAddress {
            sn: "main".into(),
            dn: "other".into(),
            si: "660e1029c5d41cbdf5".into(),
            bi,
        }
    }

    fn blob(n: usize) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("blob".into(), Value::String("x".repeat(n)));
        m
    }

    fn assemble(books: &mut Books, pages: &[Vec<u8>]) -> Option<Map<String, Value>> {
        let mut done = None;
        for p in pages {
            let page = Page::parse(p).expect("own page parses");
            if let Some(body) = books.insert(&page).expect("page accepted") {
                assert!(done.is_none(), "completed twice");
                done = Some(body);
            }
        }
        done
    }

    #[test]
    fn captured_page_parses_and_reencodes_identically() {
        let page = Page::parse(CAPTURED).expect("captured page");
        let want = PageHead {
            vn: 0,
            pk: PackKind::Json,
            sn: "main".into(),
            dn: "other".into(),
            si: "660e1029c5d41cbdf5".into(),
            bi: 1,
            pn: 0,
            pc: 1,
        };
        assert_eq!(page.head, want);
        let body = decode_body(page.head.pk, page.body).expect("body");
        assert_eq!(body.get("subject"), Some(&Value::from("main to other")));
        assert_eq!(body.get("n"), Some(&Value::from(1)));
        let pages = paginate(&addr(1), PackKind::Json, &body).expect("paginate");
        assert_eq!(pages, vec![CAPTURED.to_vec()]);
        assert_eq!(CAPTURED.len(), 112);
    }

    #[test]
    fn reference_pagination_of_a_200000_byte_blob() {
        let pages = paginate(&addr(1), PackKind::Json, &blob(200_000)).expect("paginate");
        let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
        assert_eq!(sizes, [65533, 65533, 65533, 3728]);
        for (n, p) in pages.iter().enumerate() {
            let head = Page::parse(p).expect("page").head;
            assert_eq!((head.pn as usize, head.pc), (n, 4));
        }
        let last = Page::parse(pages.last().expect("last")).expect("page");
        assert!(String::from_utf8_lossy(&pages[3][..80]).contains("pn 0003\npc 0004\n\n"));
        assert!(last.body.ends_with(b"xx\"}"));
        let mut books = Books::default();
        assert_eq!(assemble(&mut books, &pages), Some(blob(200_000)));
        assert_eq!((books.open_books(), books.open_bytes()), (0, 0));
    }

    #[test]
    fn page_boundary_is_the_whole_datagram() {
        // {"blob":"..."} is 11 bytes plus the blob; the head is 79 bytes.
        let fits = MAX_PAGE_SIZE - 79 - 11;
        let one = paginate(&addr(1), PackKind::Json, &blob(fits)).expect("fits");
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].len(), MAX_PAGE_SIZE);
        let two = paginate(&addr(1), PackKind::Json, &blob(fits + 1)).expect("two");
        // 65457 body bytes: a chunk of 65454, then 3 bytes after a 79-byte head.
        assert_eq!(two.iter().map(Vec::len).collect::<Vec<_>>(), [65533, 82]);
    }

    #[test]
    fn empty_mapping_is_an_empty_body() {
        let pages = paginate(&addr(7), PackKind::Json, &Map::new()).expect("paginate");
        assert_eq!(
            pages,
            vec![b"ri RAET\nvn 0\npk 0\nsn main\ndn other\nsi 660e1029c5d41cbdf5\nbi 7\npn 0000\npc 0001\n\n".to_vec()]
        );
        let page = Page::parse(&pages[0]).expect("parse");
        assert_eq!(
            Books::default().insert(&page).expect("ok"),
            Some(Map::new())
        );
    }

    #[test]
    fn bodies_are_python_compact_ascii_json() {
        let mut body = Map::new();
        body.insert("é".into(), Value::from("ü €"));
        body.insert("n".into(), Value::from(1.0));
        let pages = paginate(&addr(1), PackKind::Json, &body).expect("paginate");
        assert!(pages[0].ends_with(br#"{"\u00e9":"\u00fc \u20ac","n":1.0}"#));
    }

    #[test]
    fn hex_fields_are_lowercase_hex() {
        let mut a = addr(0xABCDEF);
        a.si = "0".repeat(18);
        let pages = paginate(&a, PackKind::Json, &Map::new()).expect("paginate");
        assert!(pages[0].windows(10).any(|w| w == b"\nbi abcdef"));
    }

    #[test]
    fn missing_fields_take_reference_defaults() {
        let page = Page::parse(b"ri RAET\nsn a\ndn b\n\n{}").expect("parse");
        assert_eq!(page.head.si, DEFAULT_SID);
        assert_eq!((page.head.bi, page.head.pn, page.head.pc), (0, 0, 1));
    }

    #[test]
    fn malformed_pages_are_typed_errors() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "Empty"),
            (b"ri RAEX\nvn 0\n\n", "NotRaet"),
            (b"ri RAET\nvn 0\n", "NotRaet"),
            (b"ri RAET\nvn 0\nxx 1\n\n", "UnknownField"),
            (b"ri RAET\nvn 0\nvn 0\n\n", "DuplicateField"),
            (b"ri RAET\nvn 0\nbi 1 2\n\n", "BadLine"),
            (b"ri RAET\nvn 0\nbi\n\n", "BadLine"),
            (b"ri RAET\nbi 0x1\n\n", "BadField"),
            (b"ri RAET\nbi 123456789\n\n", "BadField"),
            (b"ri RAET\npn \n\n", "BadField"),
            (b"ri RAET\npk 2\n\n", "UnknownPackKind"),
            (b"ri RAET\npn 0004\npc 0004\n\n", "BadPageNumber"),
        ];
        for (bytes, want) in cases {
            let got = format!("{:?}", Page::parse(bytes));
            assert!(got.starts_with(&format!("Err({want}")), "{bytes:?}: {got}");
        }
        let too_big = [b"ri RAET\n\n".as_slice(), &[b' '; MAX_PAGE_SIZE]].concat();
        assert!(matches!(
            Page::parse(&too_big),
            Err(LaneError::PageTooLarge(_))
        ));
    }

    #[test]
    fn bodies_must_be_json_mappings() {
        let mut books = Books::default();
        for body in [&b"[1,2]"[..], b"{", b"\xff", b"1"] {
            let bytes = [&b"ri RAET\nsn a\ndn b\n\n"[..], body].concat();
            let page = Page::parse(&bytes).expect("head");
            assert!(
                matches!(books.insert(&page), Err(LaneError::BadBody(_))),
                "{body:?}"
            );
        }
        let msgpack = Page::parse(b"ri RAET\npk 1\nsn a\ndn b\n\n\x80").expect("head");
        assert!(matches!(
            books.insert(&msgpack),
            Err(LaneError::UnsupportedPackKind(1))
        ));
        assert_eq!(books.stats().completed, 0);
    }

    #[test]
    fn book_without_first_page_is_dropped() {
        let pages = paginate(&addr(1), PackKind::Json, &blob(150_000)).expect("paginate");
        let mut books = Books::default();
        for p in &pages[1..] {
            let page = Page::parse(p).expect("parse");
            assert!(matches!(
                books.insert(&page),
                Err(LaneError::MissedFirstPage { .. })
            ));
        }
        assert_eq!(books.stats().missed_first_page, 2);
        assert_eq!(books.open_books(), 0);
    }

    #[test]
    fn newer_session_drops_open_books_of_the_same_yard() {
        let old = paginate(&addr(1), PackKind::Json, &blob(150_000)).expect("old");
        let mut other_yard = addr(1);
        other_yard.sn = "third".into();
        let third = paginate(&other_yard, PackKind::Json, &blob(150_000)).expect("third");
        let mut restarted = addr(1);
        restarted.si = "660e1029c5d41cbdf6".into();
        let new = paginate(&restarted, PackKind::Json, &blob(100)).expect("new");
        let mut books = Books::default();
        for p in [&old[0], &third[0]] {
            assert_eq!(
                books.insert(&Page::parse(p).expect("parse")).expect("ok"),
                None
            );
        }
        assert_eq!(books.open_books(), 2);
        let got = books
            .insert(&Page::parse(&new[0]).expect("parse"))
            .expect("ok");
        assert_eq!(got, Some(blob(100)));
        assert_eq!(books.stats().stale_books, 1);
        assert_eq!(books.open_books(), 1, "only the other yard's book stays");
        let late = Page::parse(&old[1]).expect("parse");
        assert!(matches!(
            books.insert(&late),
            Err(LaneError::MissedFirstPage { .. })
        ));
    }

    #[test]
    fn open_books_are_bounded_in_count() {
        let limits = BookLimits {
            max_open_books: 3,
            max_open_bytes: usize::MAX,
        };
        let mut books = Books::new(limits);
        let all: Vec<Vec<Vec<u8>>> = (1..=5)
            .map(|bi| paginate(&addr(bi), PackKind::Json, &blob(70_000)).expect("paginate"))
            .collect();
        for pages in &all {
            books
                .insert(&Page::parse(&pages[0]).expect("parse"))
                .expect("first page");
        }
        assert_eq!(books.open_books(), 3);
        assert_eq!(books.stats().evicted_books, 2);
        let evicted = Page::parse(&all[0][1]).expect("parse");
        assert!(books.insert(&evicted).is_err(), "oldest book was evicted");
        let kept = Page::parse(&all[4][1]).expect("parse");
        assert_eq!(books.insert(&kept).expect("ok"), Some(blob(70_000)));
    }

    #[test]
    fn open_books_are_bounded_in_bytes() {
        let limits = BookLimits {
            max_open_books: 100,
            max_open_bytes: 150_000,
        };
        let mut books = Books::new(limits);
        let a = paginate(&addr(1), PackKind::Json, &blob(200_000)).expect("a");
        let b = paginate(&addr(2), PackKind::Json, &blob(100_000)).expect("b");
        books
            .insert(&Page::parse(&a[0]).expect("parse"))
            .expect("a0");
        books
            .insert(&Page::parse(&a[1]).expect("parse"))
            .expect("a1");
        let err = books.insert(&Page::parse(&a[2]).expect("parse"));
        assert!(matches!(err, Err(LaneError::BookTooLarge(_))), "{err:?}");
        assert_eq!(books.stats().oversize_books, 1);
        assert_eq!((books.open_books(), books.open_bytes()), (0, 0));
        books
            .insert(&Page::parse(&a[0]).expect("parse"))
            .expect("a0 again");
        books
            .insert(&Page::parse(&b[0]).expect("parse"))
            .expect("b0");
        assert_eq!((books.stats().evicted_books, books.open_books()), (0, 2));
        assert_eq!(
            books
                .insert(&Page::parse(&b[1]).expect("parse"))
                .expect("b1 evicts a"),
            Some(blob(100_000))
        );
        assert_eq!((books.stats().evicted_books, books.open_books()), (1, 0));
        assert_eq!(books.open_bytes(), 0);
    }

    #[test]
    fn page_count_mismatch_and_repeated_pages() {
        let pages = paginate(&addr(1), PackKind::Json, &blob(150_000)).expect("paginate");
        let mut books = Books::default();
        books
            .insert(&Page::parse(&pages[0]).expect("parse"))
            .expect("p0");
        books
            .insert(&Page::parse(&pages[0]).expect("parse"))
            .expect("p0 again");
        let mut outside = Page::parse(&pages[1]).expect("parse");
        outside.head.pn = 3;
        assert!(matches!(
            books.insert(&outside),
            Err(LaneError::BadPageNumber { pn: 3, pc: 3 })
        ));
        let mut odd = Page::parse(&pages[1]).expect("parse");
        odd.head.pc = 9;
        assert!(matches!(
            books.insert(&odd),
            Err(LaneError::PageCountMismatch { pc: 9, expected: 3 })
        ));
        books
            .insert(&Page::parse(&pages[1]).expect("parse"))
            .expect("p1");
        let done = books
            .insert(&Page::parse(&pages[2]).expect("parse"))
            .expect("p2");
        assert_eq!(done, Some(blob(150_000)));
    }

    #[test]
    fn session_ids_look_like_the_reference() {
        let mut rng = rand::thread_rng();
        let micros = 0x0005_f312_3456_789a_u64;
        let a = session_id(micros, &mut rng);
        let b = session_id(micros, &mut rng);
        assert_eq!(a.len(), SID_LEN);
        assert!(a.starts_with(&format!("{micros:x}")));
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, b, "random tail");
    }

    #[test]
    fn unwritable_heads_are_errors() {
        let mut a = addr(1);
        a.sn = "two words".into();
        assert!(matches!(
            paginate(&a, PackKind::Json, &Map::new()),
            Err(LaneError::BadField("sn"))
        ));
        let mut a = addr(1);
        a.si = "x".repeat(19);
        assert!(matches!(
            paginate(&a, PackKind::Json, &Map::new()),
            Err(LaneError::BadField("si"))
        ));
        let mut a = addr(1);
        a.dn = "é€".into();
        assert!(paginate(&a, PackKind::Json, &Map::new()).is_err());
    }

    fn name() -> impl Strategy<Value = String> {
        "[!-~&&[^.]]{1,20}"
    }

    fn head() -> impl Strategy<Value = PageHead> {
        (
            name(),
            name(),
            "[0-9a-f]{1,18}",
            any::<u32>(),
            1u32..=0xFFFF,
            any::<u32>(),
        )
            .prop_map(|(sn, dn, si, bi, pc, pn)| PageHead {
                vn: 0,
                pk: PackKind::Json,
                sn,
                dn,
                si,
                bi,
                pn: if pc > 1 { pn % pc } else { 0 },
                pc,
            })
    }

    fn body() -> impl Strategy<Value = Map<String, Value>> {
        proptest::collection::vec(("[a-z]{1,8}", any::<i64>(), "\\PC{0,30}"), 0..6).prop_map(|kv| {
            let mut m = Map::new();
            for (k, n, s) in kv {
                m.insert(k.clone(), Value::from(n));
                m.insert(format!("{k}_s"), Value::from(s));
            }
            m
        })
    }

    proptest! {
        #[test]
        fn head_round_trip(h in head(), tail in proptest::collection::vec(any::<u8>(), 0..40)) {
            let mut bytes = h.to_bytes().expect("encodable");
            let head_len = bytes.len();
            bytes.extend_from_slice(&tail);
            let page = Page::parse(&bytes).expect("parses");
            prop_assert_eq!(&page.head, &h);
            prop_assert_eq!(page.body, &tail[..]);
            prop_assert_eq!(page.head.to_bytes().expect("again").len(), head_len);
        }

        #[test]
        fn book_round_trip(b in body(), pad in 0usize..200_000, bi in 1u32..) {
            let mut b = b;
            b.insert("pad".into(), Value::String("y".repeat(pad)));
            let pages = paginate(&addr(bi), PackKind::Json, &b).expect("paginate");
            prop_assert!(pages.iter().all(|p| p.len() <= MAX_PAGE_SIZE));
            let mut books = Books::default();
            prop_assert_eq!(assemble(&mut books, &pages), Some(b));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut books = Books::new(BookLimits { max_open_books: 2, max_open_bytes: 1000 });
            if let Ok(page) = Page::parse(&bytes) {
                let _ = books.insert(&page);
            }
        }

        #[test]
        fn mutated_pages_never_panic(
            h in head(),
            edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        ) {
            let mut books = Books::new(BookLimits { max_open_books: 2, max_open_bytes: 1000 });
            let mut bytes = h.to_bytes().expect("encodable");
            bytes.extend_from_slice(b"{\"a\":1}");
            for (at, byte) in edits {
                let at = at % bytes.len();
                bytes[at] = byte;
                if let Ok(page) = Page::parse(&bytes) {
                    let _ = books.insert(&page);
                }
            }
        }
    }
}
