//! The receiving side of a book: [`Books`] reassembles pages into bodies,
//! keyed by `(dn, sn, si, bi)`, within the memory bounds of [`BookLimits`].

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value};

use super::{decode_body, PackKind, Page, MAX_BOOK_SIZE};
use crate::lane::{Body, LaneError};

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

/// The body of a completed book: a JSON mapping, or the bytes of a packed book.
fn book_body(pk: PackKind, bytes: Vec<u8>) -> Result<Body, LaneError> {
    match pk {
        PackKind::Json => decode_body(pk, &bytes).map(Body::Map),
        PackKind::Msgpack => Ok(Body::Packed(bytes)),
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
        if page.head.pk == PackKind::Msgpack {
            return Err(LaneError::UnsupportedPackKind(PackKind::Msgpack.code()));
        }
        match self.insert_body(page)? {
            None => Ok(None),
            Some(Body::Map(map)) => Ok(Some(map)),
            Some(Body::Packed(_)) => Err(LaneError::UnsupportedPackKind(PackKind::Msgpack.code())),
        }
    }

    /// As [`Books::insert`], but a book of pack kind msgpack completes as
    /// [`Body::Packed`] (its bytes untouched) instead of being refused.
    pub fn insert_body(&mut self, page: &Page<'_>) -> Result<Option<Body>, LaneError> {
        let head = &page.head;
        if head.paginated() && head.pn >= head.pc {
            return Err(LaneError::BadPageNumber {
                pn: head.pn,
                pc: head.pc,
            });
        }
        self.drop_stale(&head.dn, &head.sn, &head.si);
        if !head.paginated() {
            let body = book_body(head.pk, page.body.to_vec())?;
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
        let body = book_body(book.pk, packed)?;
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
