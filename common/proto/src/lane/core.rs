//! The sans-IO state of one lane yard: remote yards, session and book ids,
//! book reassembly and counters.
//!
//! [`YardCore`] takes received datagrams and messages to send and returns
//! completed messages and pages; it owns no socket and reads no clock (the
//! caller passes the time for session ids). Both drivers use it: the tokio
//! [`super::LaneStack`] and the poll-driven [`super::LaneYard`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value};

use super::page::{
    paginate, paginate_bytes, session_id, BookAddress, BookLimits, Books, PackKind, Page,
    MAX_PAGE_SIZE,
};
use super::{check_lane_name, check_yard_name, LaneError, Received};

/// Most remote yards one yard keeps (auto-created ones included); beyond it
/// the least recently used yard is forgotten to make room.
const MAX_YARDS: usize = 1024;

/// A yard we send to or heard from.
#[derive(Debug)]
struct RemoteYard {
    /// Its socket path.
    path: PathBuf,
    /// Session id we use towards it (made at the first send, as the reference
    /// makes one per remote yard object).
    sid: Option<String>,
    /// Last book id sent to it.
    bid: u32,
    /// When it was last sent to or heard from (a [`YardCore`] tick).
    used: u64,
    /// Its queue stayed full through our last send to it (see
    /// [`Outgoing::stalled`]); cleared by the next send it takes.
    stalled: bool,
}

impl RemoteYard {
    fn new(path: PathBuf, used: u64) -> Self {
        Self {
            path,
            sid: None,
            bid: 0,
            used,
            stalled: false,
        }
    }
}

/// A message ready to go out: where to, the session id used, the pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// Destination yard name.
    pub to: String,
    /// Destination socket path.
    pub path: PathBuf,
    /// Session id used towards the destination.
    pub si: String,
    /// The datagrams, in order.
    pub pages: Vec<Vec<u8>>,
    /// The destination's queue stayed full through our last send to it (a
    /// yard that does not read): each page is tried once, without waiting.
    pub stalled: bool,
}

impl Outgoing {
    /// How long a driver waits for the destination's full queue to take one
    /// page: `limit`, or nothing when the destination is [`Outgoing::stalled`]
    /// (so a hung yard costs its senders one wait, not one per message).
    pub fn stall_limit(&self, limit: Duration) -> Duration {
        if self.stalled {
            Duration::ZERO
        } else {
            limit
        }
    }
}

/// The state of yard `name` of lane `lane` whose sockets live in `dir`, free
/// of sockets and clocks.
#[derive(Debug)]
pub struct YardCore {
    name: String,
    lane: String,
    dir: PathBuf,
    yards: HashMap<String, RemoteYard>,
    /// Most entries in `yards` (see [`MAX_YARDS`]).
    max_yards: usize,
    /// Logical clock: bumped on every use of a remote yard, for LRU eviction.
    tick: u64,
    books: Books,
    counters: BTreeMap<&'static str, u64>,
}

impl YardCore {
    /// A yard with no remote yards yet. Errors if a name is unusable.
    pub fn new(
        dir: impl Into<PathBuf>,
        lane: &str,
        name: &str,
        limits: BookLimits,
    ) -> Result<Self, LaneError> {
        check_lane_name(lane)?;
        check_yard_name(name)?;
        Ok(Self {
            name: name.to_owned(),
            lane: lane.to_owned(),
            dir: dir.into(),
            yards: HashMap::new(),
            max_yards: MAX_YARDS,
            tick: 0,
            books: Books::new(limits),
            counters: BTreeMap::new(),
        })
    }

    /// Our yard name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Increments counter `counter` (see [`YardCore::stats`]).
    pub fn count(&mut self, counter: &'static str) {
        *self.counters.entry(counter).or_default() += 1;
    }

    /// The socket path of yard `yard` of our lane: `<dir>/<lane>.<yard>.uxd`.
    pub fn yard_path(&self, yard: &str) -> PathBuf {
        self.dir.join(format!("{}.{}.uxd", self.lane, yard))
    }

    /// Handles one received datagram from socket path `src` (None: unnamed):
    /// a completed message, nothing yet (a page of an open book), or why the
    /// page was dropped. Counts nothing; see [`YardCore::accept`].
    pub fn receive(
        &mut self,
        data: &[u8],
        src: Option<&Path>,
    ) -> Result<Option<Received>, LaneError> {
        let page = Page::parse(data)?;
        if page.head.dn != self.name {
            return Err(LaneError::WrongDestination(page.head.dn));
        }
        let sn = page.head.sn.as_str();
        check_yard_name(sn).map_err(|_| LaneError::BadSource(sn.to_owned()))?;
        self.tick += 1;
        match self.yards.get_mut(sn) {
            Some(yard) => yard.used = self.tick,
            None => {
                let path = match src {
                    Some(path) if yard_of(path) == Some(sn) => path.to_path_buf(),
                    Some(_) => return Err(LaneError::BadSource(sn.to_owned())),
                    None => self.yard_path(sn),
                };
                self.make_room();
                tracing::debug!(yard = sn, path = %path.display(), "new remote yard");
                self.yards
                    .insert(sn.to_owned(), RemoteYard::new(path, self.tick));
            }
        }
        Ok(self
            .books
            .insert_body(&page)?
            .map(|body| (page.head.sn, body)))
    }

    /// [`YardCore::receive`], with the outcome counted (`received`, or the
    /// error's [`LaneError::counter`]) and a dropped page logged.
    pub fn accept(&mut self, data: &[u8], src: Option<&Path>) -> Option<Received> {
        match self.receive(data, src) {
            Ok(Some(message)) => {
                self.count("received");
                Some(message)
            }
            Ok(None) => None,
            Err(e) => {
                tracing::debug!(error = %e, len = data.len(), "lane page dropped");
                self.count(e.counter());
                None
            }
        }
    }

    /// Chooses the session and book ids for a message to `to` and pages it.
    /// `unix_micros` (the time) and `rng` make a new session id.
    pub fn prepare_send<R: rand_core::RngCore>(
        &mut self,
        to: &str,
        body: &Map<String, Value>,
        unix_micros: u64,
        rng: &mut R,
    ) -> Result<Outgoing, LaneError> {
        self.prepare(to, unix_micros, rng, |addr| {
            paginate(addr, PackKind::Json, body)
        })
    }

    /// As [`YardCore::prepare_send`] for a body already encoded as JSON (a mapping as
    /// [`crate::packet::body::encode_json`] writes it; not checked here, the receiver drops a
    /// book that does not decode): the same pages, without a [`Value`] tree of the body.
    pub fn prepare_send_encoded<R: rand_core::RngCore>(
        &mut self,
        to: &str,
        body: &[u8],
        unix_micros: u64,
        rng: &mut R,
    ) -> Result<Outgoing, LaneError> {
        self.prepare(to, unix_micros, rng, |addr| {
            paginate_bytes(addr, PackKind::Json, body, MAX_PAGE_SIZE)
        })
    }

    /// As [`YardCore::prepare_send`] for a packed book: `packed` (msgpack bytes,
    /// not decoded here) with pack kind msgpack, in pages of at most
    /// `max_page` bytes (see [`super::page::packed_page_size`]).
    pub fn prepare_send_packed<R: rand_core::RngCore>(
        &mut self,
        to: &str,
        packed: &[u8],
        max_page: usize,
        unix_micros: u64,
        rng: &mut R,
    ) -> Result<Outgoing, LaneError> {
        self.prepare(to, unix_micros, rng, |addr| {
            paginate_bytes(addr, PackKind::Msgpack, packed, max_page)
        })
    }

    fn prepare<R: rand_core::RngCore>(
        &mut self,
        to: &str,
        unix_micros: u64,
        rng: &mut R,
        pages: impl FnOnce(&BookAddress) -> Result<Vec<Vec<u8>>, LaneError>,
    ) -> Result<Outgoing, LaneError> {
        check_yard_name(to)?;
        if !self.yards.contains_key(to) {
            self.make_room();
        }
        self.tick += 1;
        let path = self.yard_path(to);
        let yard = self
            .yards
            .entry(to.to_owned())
            .or_insert_with(|| RemoteYard::new(path, 0));
        yard.used = self.tick;
        let si = yard
            .sid
            .get_or_insert_with(|| session_id(unix_micros, rng))
            .clone();
        yard.bid = yard.bid.checked_add(1).unwrap_or(1);
        let addr = BookAddress {
            sn: self.name.clone(),
            dn: to.to_owned(),
            si: si.clone(),
            bi: yard.bid,
        };
        let path = yard.path.clone();
        let stalled = yard.stalled;
        let pages = pages(&addr)?;
        Ok(Outgoing {
            to: to.to_owned(),
            path,
            si,
            pages,
            stalled,
        })
    }

    /// Records the outcome of sending `out` (`sent` counted), or why it
    /// failed: ENOENT or ECONNREFUSED is [`LaneError::Unreachable`] and the
    /// yard is forgotten (the next send starts a new session with it); a full
    /// queue is [`LaneError::QueueFull`] and the yard is marked stalled (see
    /// [`Outgoing::stalled`]) until a send to it goes through; anything else
    /// [`LaneError::Io`].
    pub fn finish_send(&mut self, out: Outgoing, result: io::Result<()>) -> Result<(), LaneError> {
        let full = matches!(&result, Err(e) if e.kind() == io::ErrorKind::WouldBlock);
        if let Some(yard) = self.yards.get_mut(&out.to) {
            if yard.sid.as_deref() == Some(out.si.as_str()) {
                yard.stalled = full;
            }
        }
        let source = match result {
            Ok(()) => {
                self.count("sent");
                return Ok(());
            }
            Err(source) => source,
        };
        let err = match source.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
                self.forget(&out.to, &out.si);
                LaneError::Unreachable {
                    yard: out.to,
                    path: out.path,
                    source,
                }
            }
            io::ErrorKind::WouldBlock => LaneError::QueueFull {
                yard: out.to,
                path: out.path,
            },
            _ => LaneError::Io {
                op: "send to",
                path: out.path,
                source,
            },
        };
        self.count(err.counter());
        Err(err)
    }

    /// Forgets yard `to` (its socket is gone), as the reference reaps it, unless
    /// another send already replaced its session.
    pub fn forget(&mut self, to: &str, si: &str) {
        if self
            .yards
            .get(to)
            .is_some_and(|y| y.sid.as_deref() == Some(si))
        {
            self.yards.remove(to);
        }
    }

    /// Makes room for one more remote yard when the table is full: forgets
    /// the least recently used yard, preferring one with no book being
    /// reassembled (`yards_evicted` counted). A forgotten yard is learnt again
    /// from its next page; our next send to it starts a new session.
    fn make_room(&mut self) {
        while self.yards.len() >= self.max_yards.max(1) {
            let busy: BTreeSet<&str> = self.books.open_sources().collect();
            let Some(victim) = self
                .yards
                .iter()
                .min_by_key(|(name, yard)| (busy.contains(name.as_str()), yard.used))
                .map(|(name, _)| name.clone())
            else {
                return;
            };
            tracing::debug!(yard = %victim, "remote yard table full: forgetting the least recently used");
            self.yards.remove(&victim);
            self.count("yards_evicted");
        }
    }

    /// Counters: pages dropped by reason (`invalid_page_header`,
    /// `invalid_page_body`, `invalid_destination`, `invalid_source_yard`,
    /// `missed_page`, `page_count_mismatch`, `oversize_book`), books dropped
    /// (`stale_book`, `evicted_book`), `books_completed`, `received`, `sent`,
    /// send failures (`stale_transmit_yard`, `full_transmit_yard`,
    /// `error_transmit_yard`), `receive_error`, remote yards forgotten to make
    /// room (`yards_evicted`), and whatever the driver counts.
    pub fn stats(&self) -> BTreeMap<&'static str, u64> {
        let mut stats = self.counters.clone();
        let books = self.books.stats();
        // Pages the books refuse are counted from their errors; these are
        // the books' own decisions.
        stats.insert("books_completed", books.completed);
        stats.insert("stale_book", books.stale_books);
        stats.insert("evicted_book", books.evicted_books);
        stats
    }
}

/// The yard name of a socket path `.../<lane>.<yard>.uxd` (the reference's
/// `namesFromHa`: the part after the last dot of the stem).
fn yard_of(path: &Path) -> Option<&str> {
    if path.extension()? != "uxd" {
        return None;
    }
    let stem = path.file_stem()?.to_str()?;
    let (_, yard) = stem.rsplit_once('.')?;
    Some(yard)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lane::page::PageHead;
    use crate::lane::Body;

    fn core(name: &str) -> YardCore {
        YardCore::new("/tmp/lanes", "lane", name, BookLimits::default()).expect("names")
    }

    fn page(sn: &str, dn: &str, body: &str) -> Vec<u8> {
        let head = PageHead {
            sn: sn.into(),
            dn: dn.into(),
            si: "0123456789abcdef01".into(),
            bi: 1,
            ..PageHead::default()
        };
        let mut bytes = head.to_bytes().expect("valid head");
        bytes.extend_from_slice(body.as_bytes());
        bytes
    }

    #[test]
    fn bad_names_are_refused() {
        let bad = YardCore::new("/d", "lane", "a.b", BookLimits::default());
        assert!(matches!(bad, Err(LaneError::InvalidName(_))), "{bad:?}");
        let bad = YardCore::new("/d", "a/b", "a", BookLimits::default());
        assert!(matches!(bad, Err(LaneError::InvalidName(_))), "{bad:?}");
    }

    #[test]
    fn unknown_source_creates_yard_at_its_socket_path() {
        let mut c = core("b");
        let src = Path::new("/elsewhere/lane.a.uxd");
        let got = c
            .receive(&page("a", "b", r#"{"x":1}"#), Some(src))
            .expect("accepted");
        assert_eq!(got.map(|(from, _)| from).as_deref(), Some("a"));
        assert_eq!(c.yards.get("a").map(|y| y.path.as_path()), Some(src));
    }

    #[test]
    fn unnamed_source_gets_the_computed_path() {
        let mut c = core("b");
        c.receive(&page("a", "b", "{}"), None).expect("accepted");
        assert_eq!(
            c.yards.get("a").map(|y| y.path.clone()),
            Some(PathBuf::from("/tmp/lanes/lane.a.uxd"))
        );
    }

    #[test]
    fn source_path_of_another_yard_is_refused() {
        let mut c = core("b");
        let err = c.receive(&page("a", "b", "{}"), Some(Path::new("/x/lane.c.uxd")));
        assert!(matches!(err, Err(LaneError::BadSource(_))), "{err:?}");
        assert!(c.yards.is_empty());
    }

    #[test]
    fn page_for_another_yard_is_refused() {
        let mut c = core("b");
        let err = c.receive(&page("a", "c", "{}"), None);
        assert!(
            matches!(err, Err(LaneError::WrongDestination(ref d)) if d == "c"),
            "{err:?}"
        );
    }

    #[test]
    fn accept_counts_messages_and_drops() {
        let mut c = core("b");
        assert!(c.accept(b"garbage", None).is_none());
        assert!(c.accept(&page("a", "c", "{}"), None).is_none());
        let got = c.accept(&page("a", "b", r#"{"k":"v"}"#), None);
        assert_eq!(
            got,
            Some((
                "a".into(),
                Body::Map(Map::from_iter([("k".to_owned(), Value::from("v"))]))
            ))
        );
        let stats = c.stats();
        assert_eq!(stats.get("invalid_page_header"), Some(&1), "{stats:?}");
        assert_eq!(stats.get("invalid_destination"), Some(&1), "{stats:?}");
        assert_eq!(stats.get("received"), Some(&1), "{stats:?}");
        assert_eq!(stats.get("books_completed"), Some(&1), "{stats:?}");
    }

    #[test]
    fn book_ids_count_per_yard_and_session_ids_differ() {
        let mut c = core("a");
        let mut rng = rand::thread_rng();
        let body = Map::new();
        let head = |out: &Outgoing| {
            Page::parse(out.pages.first().expect("page"))
                .expect("parse")
                .head
        };
        let b1 = c.prepare_send("b", &body, 1, &mut rng).expect("b");
        let b2 = c.prepare_send("b", &body, 2, &mut rng).expect("b");
        let c1 = c.prepare_send("c", &body, 3, &mut rng).expect("c");
        assert_eq!((head(&b1).bi, head(&b2).bi, head(&c1).bi), (1, 2, 1));
        assert_eq!(head(&b1).si, head(&b2).si);
        assert_ne!(b1.si, c1.si);
        assert_eq!(b1.path, PathBuf::from("/tmp/lanes/lane.b.uxd"));
        c.forget("b", &b1.si);
        let again = c.prepare_send("b", &body, 4, &mut rng).expect("b");
        assert_ne!(again.si, b1.si, "a reaped yard gets a new session");
    }

    #[test]
    fn send_outcomes_are_classified_and_counted() {
        let mut c = core("a");
        let mut rng = rand::thread_rng();
        let body = Map::new();
        let out = c.prepare_send("b", &body, 1, &mut rng).expect("b");
        let si = out.si.clone();
        assert!(!out.stalled);
        let err = c.finish_send(out, Err(io::Error::from(io::ErrorKind::WouldBlock)));
        assert!(matches!(err, Err(LaneError::QueueFull { ref yard, .. }) if yard == "b"));
        let out = c.prepare_send("b", &body, 2, &mut rng).expect("b");
        assert_eq!(out.si, si, "a full queue keeps the session");
        assert!(
            out.stalled,
            "a yard whose queue stayed full is not waited for"
        );
        assert_eq!(out.stall_limit(Duration::from_secs(5)), Duration::ZERO);
        let err = c.finish_send(out, Err(io::Error::from(io::ErrorKind::NotFound)));
        assert!(matches!(err, Err(LaneError::Unreachable { .. })), "{err:?}");
        let out = c.prepare_send("b", &body, 3, &mut rng).expect("b");
        assert_ne!(out.si, si, "an unreachable yard is forgotten");
        let err = c.finish_send(out, Err(io::Error::from(io::ErrorKind::PermissionDenied)));
        assert!(matches!(err, Err(LaneError::Io { .. })), "{err:?}");
        let out = c.prepare_send("b", &body, 4, &mut rng).expect("b");
        c.finish_send(out, Err(io::Error::from(io::ErrorKind::WouldBlock)))
            .expect_err("full");
        let out = c.prepare_send("b", &body, 5, &mut rng).expect("b");
        assert!(out.stalled);
        c.finish_send(out, Ok(())).expect("sent");
        let out = c.prepare_send("b", &body, 6, &mut rng).expect("b");
        assert!(!out.stalled, "a send that goes through clears the stall");
        assert_eq!(
            out.stall_limit(Duration::from_secs(5)),
            Duration::from_secs(5)
        );
        let stats = c.stats();
        assert_eq!(stats.get("full_transmit_yard"), Some(&2), "{stats:?}");
        assert_eq!(stats.get("stale_transmit_yard"), Some(&1), "{stats:?}");
        assert_eq!(stats.get("error_transmit_yard"), Some(&1), "{stats:?}");
        assert_eq!(stats.get("sent"), Some(&1), "{stats:?}");
    }

    /// A core keeping at most `max` remote yards.
    fn small_core(max: usize) -> YardCore {
        let mut c = core("hub");
        c.max_yards = max;
        c
    }

    fn known(c: &YardCore) -> BTreeSet<&str> {
        c.yards.keys().map(String::as_str).collect()
    }

    #[test]
    fn an_encoded_body_goes_in_the_pages_of_its_mapping() {
        let big = Map::from_iter([("blob".to_owned(), Value::from("x".repeat(150_000)))]);
        let encoded = crate::packet::body::encode_json(&big);
        let (mut a, mut b) = (core("a"), core("b"));
        let mut rng = rand::thread_rng();
        let mapped = a.prepare_send("b", &big, 1, &mut rng).expect("pages");
        let out = a
            .prepare_send_encoded("b", &encoded, 1, &mut rng)
            .expect("pages");
        assert_eq!(
            (out.si.as_str(), out.path.as_path()),
            (mapped.si.as_str(), mapped.path.as_path())
        );
        let sizes = |pages: &[Vec<u8>]| pages.iter().map(Vec::len).collect::<Vec<_>>();
        assert_eq!(sizes(&out.pages), sizes(&mapped.pages));
        assert_eq!(out.pages.len(), 3);
        for pages in [&mapped.pages, &out.pages] {
            let done = pages.iter().map(|p| b.receive(p, None)).last();
            assert!(
                matches!(done, Some(Ok(Some((ref from, Body::Map(ref body))))) if from == "a" && *body == big),
                "{done:?}"
            );
        }
    }

    #[test]
    fn a_full_table_forgets_the_least_recently_used_yard() {
        let mut c = small_core(3);
        let mut rng = rand::thread_rng();
        for name in ["a", "b", "c"] {
            c.receive(&page(name, "hub", "{}"), None).expect(name);
        }
        // Sending to "a" and hearing from "b" make "c" the least recently used.
        c.prepare_send("a", &Map::new(), 1, &mut rng).expect("a");
        c.receive(&page("b", "hub", "{}"), None).expect("b");
        let got = c.receive(&page("d", "hub", r#"{"n":4}"#), None);
        assert!(
            matches!(got, Ok(Some((ref from, _))) if from == "d"),
            "{got:?}"
        );
        assert_eq!(known(&c), BTreeSet::from(["a", "b", "d"]));
        // A send to a new yard makes room the same way ("a" is now the oldest).
        c.prepare_send("e", &Map::new(), 2, &mut rng).expect("e");
        assert_eq!(known(&c), BTreeSet::from(["b", "d", "e"]));
        assert_eq!(c.stats().get("yards_evicted"), Some(&2));
        assert_eq!(c.stats().get("invalid_source_yard"), None);
    }

    /// The pages of a three-page message from yard `from` to `hub`.
    fn book_from(from: &str) -> Vec<Vec<u8>> {
        let big = Map::from_iter([("blob".to_owned(), Value::from("x".repeat(150_000)))]);
        let out = core(from)
            .prepare_send("hub", &big, 1, &mut rand::thread_rng())
            .expect("pages");
        assert_eq!(out.pages.len(), 3);
        out.pages
    }

    #[test]
    fn a_yard_with_a_book_in_progress_is_evicted_last() {
        let mut c = small_core(2);
        let pages = book_from("a");
        let [p0, p1, p2] = [0, 1, 2].map(|i| pages.get(i).expect("page"));
        // "a" is the least recently used but has a book open: "b" goes first.
        assert!(c.receive(p0, None).expect("page 0").is_none());
        c.receive(&page("b", "hub", "{}"), None).expect("b");
        c.receive(&page("c", "hub", "{}"), None).expect("c");
        assert_eq!(known(&c), BTreeSet::from(["a", "c"]));
        assert!(c.receive(p1, None).expect("page 1").is_none());
        let done = c.receive(p2, None).expect("page 2");
        assert!(
            done.is_some_and(|(from, _)| from == "a"),
            "the book completes"
        );
        // Its book done, "a" is an ordinary yard again (and the most recent).
        c.receive(&page("d", "hub", "{}"), None).expect("d");
        assert_eq!(known(&c), BTreeSet::from(["a", "d"]));
        assert_eq!(c.stats().get("yards_evicted"), Some(&2));
    }

    #[test]
    fn when_every_yard_has_a_book_open_the_least_recently_used_goes() {
        let mut c = small_core(2);
        let (a, b) = (book_from("a"), book_from("b"));
        for first in [&a, &b] {
            let first = first.first().expect("page 0");
            assert!(c.receive(first, None).expect("page 0").is_none());
        }
        c.receive(&page("c", "hub", "{}"), None).expect("c");
        assert_eq!(known(&c), BTreeSet::from(["b", "c"]));
        // "a"'s book survives its yard: the rest of it still completes.
        let rest = a.get(1..).unwrap_or_default();
        let done = rest.iter().map(|p| c.receive(p, None)).last();
        assert!(matches!(done, Some(Ok(Some(_)))), "{done:?}");
        assert_eq!(c.stats().get("yards_evicted"), Some(&2));
    }

    #[test]
    fn yard_names_from_socket_paths() {
        assert_eq!(yard_of(Path::new("/d/lane.main.uxd")), Some("main"));
        assert_eq!(yard_of(Path::new("/d/my.lane.main.uxd")), Some("main"));
        assert_eq!(yard_of(Path::new("/d/main.uxd")), None);
        assert_eq!(yard_of(Path::new("/d/lane.main.sock")), None);
    }
}
