//! The tokio lane stack: one yard bound at `<dir>/<lane>.<yard>.uxd`.
//!
//! Pages are sent straight from [`LaneStack::send`]; a task receives
//! datagrams, hands them to the sans-IO `Core` (parse, check, book reassembly) and
//! queues completed messages for [`LaneStack::recv`]. A bad datagram is
//! counted, logged and dropped; the task keeps serving.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};
use tokio::net::UnixDatagram;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::page::MAX_PAGE_SIZE;
use super::page::{paginate, session_id, BookAddress, BookLimits, Books, PackKind, Page};
use super::{check_lane_name, check_yard_name, LaneError, Message};

/// Socket buffer size we make sure of (a page is up to 64 KiB).
const MIN_SOCKET_BUFFER: usize = 1 << 20;
/// Most remote yards one stack keeps (auto-created ones included).
const MAX_YARDS: usize = 1024;
/// Completed messages queued for `recv` before the receive task waits.
const RX_QUEUE: usize = 1024;
/// Longest pause between retries when the destination's queue is full.
const MAX_SEND_BACKOFF: Duration = Duration::from_millis(10);

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
}

/// The stack's state, free of sockets and clocks.
#[derive(Debug)]
struct Core {
    name: String,
    lane: String,
    dir: PathBuf,
    yards: HashMap<String, RemoteYard>,
    books: Books,
    counters: BTreeMap<&'static str, u64>,
}

/// What [`Core::prepare_send`] returns: where to send, the session id used, the pages.
type Prepared = (PathBuf, String, Vec<Vec<u8>>);

impl Core {
    fn count(&mut self, counter: &'static str) {
        *self.counters.entry(counter).or_default() += 1;
    }

    fn yard_path(&self, yard: &str) -> PathBuf {
        self.dir.join(format!("{}.{}.uxd", self.lane, yard))
    }

    /// Handles one received datagram from socket path `src` (None: unnamed).
    fn receive(&mut self, data: &[u8], src: Option<&Path>) -> Result<Option<Message>, LaneError> {
        let page = Page::parse(data)?;
        if page.head.dn != self.name {
            return Err(LaneError::WrongDestination(page.head.dn));
        }
        let sn = page.head.sn.as_str();
        check_yard_name(sn).map_err(|_| LaneError::BadSource(sn.to_owned()))?;
        if !self.yards.contains_key(sn) {
            let path = match src {
                Some(path) if yard_of(path) == Some(sn) => path.to_path_buf(),
                Some(_) => return Err(LaneError::BadSource(sn.to_owned())),
                None => self.yard_path(sn),
            };
            if self.yards.len() >= MAX_YARDS {
                return Err(LaneError::BadSource(sn.to_owned()));
            }
            tracing::debug!(yard = sn, path = %path.display(), "new remote yard");
            let yard = RemoteYard {
                path,
                sid: None,
                bid: 0,
            };
            self.yards.insert(sn.to_owned(), yard);
        }
        Ok(self.books.insert(&page)?.map(|body| (page.head.sn, body)))
    }

    /// Chooses the session and book ids for a message to `to` and pages it.
    fn prepare_send<R: rand_core::RngCore>(
        &mut self,
        to: &str,
        body: &Map<String, Value>,
        unix_micros: u64,
        rng: &mut R,
    ) -> Result<Prepared, LaneError> {
        check_yard_name(to)?;
        if !self.yards.contains_key(to) && self.yards.len() >= MAX_YARDS {
            return Err(LaneError::BadSource(to.to_owned()));
        }
        let path = self.yard_path(to);
        let yard = self.yards.entry(to.to_owned()).or_insert(RemoteYard {
            path,
            sid: None,
            bid: 0,
        });
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
        let pages = paginate(&addr, PackKind::Json, body)?;
        Ok((path, si, pages))
    }

    /// Forgets yard `to` (its socket is gone), as the reference reaps it, unless
    /// another send already replaced its session.
    fn forget(&mut self, to: &str, si: &str) {
        if self
            .yards
            .get(to)
            .is_some_and(|y| y.sid.as_deref() == Some(si))
        {
            self.yards.remove(to);
        }
    }

    fn stats(&self) -> BTreeMap<&'static str, u64> {
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

/// A yard on a lane: a Unix datagram socket at `<dir>/<lane>.<yard>.uxd`
/// speaking the reference's page format. Dropping it stops the receive task
/// and removes the socket file.
#[derive(Debug)]
pub struct LaneStack {
    core: Arc<Mutex<Core>>,
    /// Non-blocking handle on the same socket, for sends (see `send_page`).
    sender: std::os::unix::net::UnixDatagram,
    rx: tokio::sync::Mutex<mpsc::Receiver<Message>>,
    task: JoinHandle<()>,
    path: PathBuf,
}

impl LaneStack {
    /// Binds yard `yard` of lane `lane` in `dir` (created if missing) with
    /// the default book limits. A stale socket file (nobody listening) is
    /// replaced; a live one is [`LaneError::InUse`].
    pub async fn bind(
        dir: impl AsRef<Path>,
        lane: &str,
        yard: &str,
    ) -> Result<LaneStack, LaneError> {
        LaneStack::bind_with(dir, lane, yard, BookLimits::default()).await
    }

    /// As [`LaneStack::bind`], with explicit bounds for book reassembly.
    pub async fn bind_with(
        dir: impl AsRef<Path>,
        lane: &str,
        yard: &str,
        limits: BookLimits,
    ) -> Result<LaneStack, LaneError> {
        check_lane_name(lane)?;
        check_yard_name(yard)?;
        let dir = dir.as_ref();
        let io = io_error;
        std::fs::create_dir_all(dir).map_err(io("create directory", dir))?;
        let dir = std::path::absolute(dir).map_err(io("resolve", dir))?;
        let path = dir.join(format!("{lane}.{yard}.uxd"));
        clear_stale(&path)?;
        let std_socket = open_socket(&path).map_err(io("bind", &path))?;
        let sender = std_socket.try_clone().map_err(io("clone socket", &path))?;
        let socket = UnixDatagram::from_std(std_socket).map_err(io("register socket", &path))?;
        let core = Arc::new(Mutex::new(Core {
            name: yard.to_owned(),
            lane: lane.to_owned(),
            dir,
            yards: HashMap::new(),
            books: Books::new(limits),
            counters: BTreeMap::new(),
        }));
        let (tx, rx) = mpsc::channel(RX_QUEUE);
        let task = tokio::spawn(receive_loop(socket, Arc::clone(&core), tx));
        tracing::debug!(path = %path.display(), "lane yard bound");
        Ok(LaneStack {
            core,
            sender,
            rx: tokio::sync::Mutex::new(rx),
            task,
            path,
        })
    }

    /// Sends `body` to yard `to_yard` of our lane, in as many pages as needed.
    /// Waits while the destination's queue is full. A missing socket or one
    /// nobody listens on is [`LaneError::Unreachable`] (and the yard is
    /// forgotten, so the next send starts a new session with it).
    pub async fn send(&self, to_yard: &str, body: &Map<String, Value>) -> Result<(), LaneError> {
        let micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        let (path, si, pages) =
            self.core()
                .prepare_send(to_yard, body, micros, &mut rand::thread_rng())?;
        for page in &pages {
            if let Err(source) = self.send_page(page, &path).await {
                let mut core = self.core();
                if matches!(
                    source.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
                ) {
                    core.forget(to_yard, &si);
                    let err = LaneError::Unreachable {
                        yard: to_yard.to_owned(),
                        path,
                        source,
                    };
                    core.count(err.counter());
                    return Err(err);
                }
                core.count("error_transmit_yard");
                return Err(LaneError::Io {
                    op: "send to",
                    path,
                    source,
                });
            }
        }
        self.core().count("sent");
        Ok(())
    }

    /// Sends one datagram, retrying with a short backoff while the
    /// destination's queue is full. (The kernel does not wake an unconnected
    /// sender when another socket's queue drains, so waiting on writability
    /// alone could hang.)
    async fn send_page(&self, page: &[u8], path: &Path) -> io::Result<()> {
        let mut backoff = Duration::from_micros(100);
        loop {
            match self.sender.send_to(page, path) {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_SEND_BACKOFF);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The next message received: the sender's yard name and the body.
    pub async fn recv(&self) -> Result<Message, LaneError> {
        self.rx.lock().await.recv().await.ok_or(LaneError::Closed)
    }

    /// Our socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Counters: pages dropped by reason (`invalid_page_header`,
    /// `invalid_page_body`, `invalid_destination`, `invalid_source_yard`,
    /// `missed_page`, `page_count_mismatch`, `oversize_book`), books dropped
    /// (`stale_book`, `evicted_book`), `books_completed`, `received`, `sent`,
    /// `stale_transmit_yard`.
    pub fn stats(&self) -> BTreeMap<&'static str, u64> {
        self.core().stats()
    }

    fn core(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for LaneStack {
    fn drop(&mut self) {
        self.task.abort();
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::debug!(path = %self.path.display(), error = %e, "socket file not removed");
        }
    }
}

/// A closure turning an `io::Error` of operation `op` on `path` into a [`LaneError`].
fn io_error<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> LaneError + 'a {
    move |source| LaneError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Removes a socket file at `path` if nobody listens on it.
fn clear_stale(path: &Path) -> Result<(), LaneError> {
    let io = |op| io_error(op, path);
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io("inspect")(e)),
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(io("refuse to replace non-socket")(io::Error::from(
                io::ErrorKind::AlreadyExists,
            )))
        }
        Ok(_) => {}
    }
    let probe = std::os::unix::net::UnixDatagram::unbound().map_err(io("probe"))?;
    match probe.connect(path) {
        Ok(()) => Err(LaneError::InUse(path.to_path_buf())),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            tracing::info!(path = %path.display(), "removing stale lane socket");
            std::fs::remove_file(path).map_err(io("remove stale socket"))
        }
        Err(e) => Err(io("probe")(e)),
    }
}

/// A non-blocking Unix datagram socket bound at `path`, with buffers of at
/// least [`MIN_SOCKET_BUFFER`].
fn open_socket(path: &Path) -> io::Result<std::os::unix::net::UnixDatagram> {
    use socket2::{Domain, SockAddr, Socket, Type};
    let socket = Socket::new(Domain::UNIX, Type::DGRAM, None)?;
    if socket.send_buffer_size()? < MIN_SOCKET_BUFFER {
        socket.set_send_buffer_size(MIN_SOCKET_BUFFER)?;
    }
    if socket.recv_buffer_size()? < MIN_SOCKET_BUFFER {
        socket.set_recv_buffer_size(MIN_SOCKET_BUFFER)?;
    }
    socket.bind(&SockAddr::unix(path)?)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Receives datagrams until the stack is dropped, queueing completed messages.
async fn receive_loop(socket: UnixDatagram, core: Arc<Mutex<Core>>, tx: mpsc::Sender<Message>) {
    let mut buf = vec![0u8; MAX_PAGE_SIZE + 1];
    loop {
        let (len, from) = match socket.recv_from(&mut buf).await {
            Ok(got) => got,
            Err(e) => {
                tracing::warn!(error = %e, "lane receive failed");
                core.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .count("receive_error");
                tokio::task::yield_now().await;
                continue;
            }
        };
        let data = buf.get(..len).unwrap_or_default();
        let result = {
            let mut core = core.lock().unwrap_or_else(PoisonError::into_inner);
            let result = core.receive(data, from.as_pathname());
            match &result {
                Ok(Some(_)) => core.count("received"),
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(error = %e, len, "lane page dropped");
                    core.count(e.counter());
                }
            }
            result
        };
        if let Ok(Some(message)) = result {
            if tx.send(message).await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lane::page::PageHead;

    fn core(name: &str) -> Core {
        Core {
            name: name.into(),
            lane: "lane".into(),
            dir: PathBuf::from("/tmp/lanes"),
            yards: HashMap::new(),
            books: Books::new(BookLimits::default()),
            counters: BTreeMap::new(),
        }
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
    fn book_ids_count_per_yard_and_session_ids_differ() {
        let mut c = core("a");
        let mut rng = rand::thread_rng();
        let body = Map::new();
        let (_, si_b, pages) = c.prepare_send("b", &body, 1, &mut rng).expect("b");
        let first = Page::parse(pages.first().expect("page"))
            .expect("parse")
            .head;
        let (_, _, pages) = c.prepare_send("b", &body, 2, &mut rng).expect("b");
        let second = Page::parse(pages.first().expect("page"))
            .expect("parse")
            .head;
        let (_, si_c, pages) = c.prepare_send("c", &body, 3, &mut rng).expect("c");
        let other = Page::parse(pages.first().expect("page"))
            .expect("parse")
            .head;
        assert_eq!((first.bi, second.bi, other.bi), (1, 2, 1));
        assert_eq!(first.si, second.si);
        assert_ne!(si_b, si_c);
        c.forget("b", &si_b);
        let (_, si_again, _) = c.prepare_send("b", &body, 4, &mut rng).expect("b");
        assert_ne!(si_again, si_b, "a reaped yard gets a new session");
    }

    #[test]
    fn yard_names_from_socket_paths() {
        assert_eq!(yard_of(Path::new("/d/lane.main.uxd")), Some("main"));
        assert_eq!(yard_of(Path::new("/d/my.lane.main.uxd")), Some("main"));
        assert_eq!(yard_of(Path::new("/d/main.uxd")), None);
        assert_eq!(yard_of(Path::new("/d/lane.main.sock")), None);
    }
}
