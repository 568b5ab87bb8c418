//! `raet_rs._native`: the Rust road and lane stacks for the `raet_rs` Python package.
//!
//! [`Road`] is a [`RoadStack`] whose tokio task runs on one shared background worker thread:
//! the socket is drained, timers fire and datagrams leave there, whether or not Python is
//! running. What the stack tells the application (messages, events, the end of a join or
//! of a message) is queued on a channel that [`Road::poll`] drains without blocking; the
//! Python layer (`raet_rs.road.stacking`) turns it into the reference's `rxMsgs`,
//! `remotes` and `transactions`. A received message is acknowledged to its sender only when
//! `poll` hands it to Python. [`Yard`] is a [`LaneYard`] (non-blocking, no runtime).
//!
//! Messages cross the boundary as JSON text (the Python layer calls `json.dumps`/`loads`).
//! Nothing here panics on what Python passes: bad values raise `ValueError`, a closed stack
//! raises [`StackClosedError`], failures of the stack [`StackError`].

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;
use raet::keep::{AutoMode, DirKeep, Keep, MemKeep};
use raet::lane::{LaneError, LaneYard};
use raet::packet::BodyKind;
use raet::road::{Event, Presence, RemoteStatus, RoadConfig};
use raet::stack::RoadStack;
use serde_json::{Map, Value};
use tokio::runtime::Runtime;

create_exception!(
    raet_rs._native,
    StackError,
    PyException,
    "A stack could not be created, or a request to it failed (the message says why)."
);
create_exception!(
    raet_rs._native,
    StackClosedError,
    StackError,
    "The stack (or its server socket) is closed."
);

/// The runtime of every road stack: one worker thread, created on first use.
fn runtime() -> PyResult<&'static Runtime> {
    static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("raet-rs")
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| StackError::new_err(format!("cannot start the road runtime: {e}")))
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A JSON object from Python's `json.dumps` text.
fn parse_body(text: &str) -> PyResult<Map<String, Value>> {
    serde_json::from_str(text)
        .map_err(|e| PyValueError::new_err(format!("message is not a JSON object: {e}")))
}

/// JSON text of a received body (serde_json cannot fail on a `Map` of `Value`s).
fn body_text(body: &Map<String, Value>) -> String {
    serde_json::to_string(body).unwrap_or_default()
}

/// What [`Road::poll`] hands to Python.
enum Item {
    /// A received message (acknowledged once handed over).
    Message {
        name: String,
        uid: u32,
        body: Map<String, Value>,
        receipt: Option<raet::road::Receipt>,
    },
    /// A road event that changes what Python knows of the remotes.
    Event {
        kind: &'static str,
        uid: u32,
        name: String,
    },
    /// A join or transmit ended: its id, the remote's uid (joins), the error if it failed.
    Done {
        op: u64,
        uid: Option<u32>,
        error: Option<String>,
    },
}

/// The Python-visible kind of an event, with its remote (`None`: not of interest).
fn event_item(event: Event) -> Option<Item> {
    let (kind, uid, name) = match event {
        Event::Joined { uid, name, .. } => ("joined", uid, name),
        Event::Allowed { uid, name, .. } => ("allowed", uid, name),
        Event::Pending { uid, name, .. } => ("pending", uid, name),
        Event::Rejected { uid, name, .. } => ("rejected", uid, name),
        Event::Removed { uid, name } => ("removed", uid, name),
        Event::Presence {
            uid,
            name,
            presence,
        } => {
            let kind = match presence {
                Presence::Joined => "joined",
                Presence::Allowed => "allowed",
                Presence::Alive => "alived",
                Presence::Lost => "lost",
            };
            (kind, uid, name)
        }
        Event::JoinFailed { uid, .. } => ("join_failed", uid, String::new()),
        Event::AllowFailed { uid, .. } => ("allow_failed", uid, String::new()),
        _ => return None,
    };
    Some(Item::Event { kind, uid, name })
}

/// Queues [`Item`]s for [`Road::poll`] and makes its wake-up socket readable.
#[derive(Clone)]
struct Queue {
    items: Sender<Item>,
    wake: Arc<UnixStream>,
}

impl Queue {
    /// Queues `item`; false once the [`Road`] is gone.
    fn send(&self, item: Item) -> bool {
        if self.items.send(item).is_err() {
            return false;
        }
        // A full socket already wakes the reader: nothing is lost by not writing.
        let _ = (&*self.wake).write(&[0]);
        true
    }
}

/// Forwards the stack's messages and events to `items` until the stack stops.
async fn forward(stack: RoadStack, items: Queue) {
    let mut events = stack.events();
    loop {
        let item = tokio::select! {
            message = stack.recv_receipted() => match message {
                Some(((name, uid, body), receipt)) => Item::Message { name, uid, body, receipt },
                None => break,
            },
            event = events.recv() => match event {
                Some(event) => match event_item(event) {
                    Some(item) => item,
                    None => continue,
                },
                None => break,
            },
        };
        if !items.send(item) {
            break;
        }
    }
}

/// Our uid for the remote of a failed join, when the failure tells it.
fn failed_uid(error: &raet::stack::StackError) -> Option<u32> {
    use raet::stack::StackError as E;
    match error {
        E::JoinFailed { uid, .. }
        | E::AllowFailed { uid, .. }
        | E::Rejected { uid, .. }
        | E::Removed { uid, .. } => Some(*uid),
        _ => None,
    }
}

/// `AutoMode` from the reference's integer values (never 0, once 1, always 2).
fn auto_mode(auto: u8) -> PyResult<AutoMode> {
    match auto {
        0 => Ok(AutoMode::Never),
        1 => Ok(AutoMode::Once),
        2 => Ok(AutoMode::Always),
        other => Err(PyValueError::new_err(format!(
            "auto must be 0 (never), 1 (once) or 2 (always), not {other}"
        ))),
    }
}

fn address(host: &str, port: u16) -> PyResult<SocketAddr> {
    let ip: IpAddr = host
        .parse()
        .map_err(|_| PyValueError::new_err(format!("not an IP address: {host:?}")))?;
    Ok(SocketAddr::new(ip, port))
}

/// One remote's snapshot for Python: (uid, fuid, name, (host, port), role, joined, allowed,
/// alived, main, acceptance).
type RemoteTuple = (
    u32,
    u32,
    String,
    (String, u16),
    String,
    Option<bool>,
    Option<bool>,
    Option<bool>,
    bool,
    Option<u8>,
);

fn remote_tuple(r: RemoteStatus) -> RemoteTuple {
    (
        r.uid,
        r.fuid,
        r.name,
        (r.ha.ip().to_string(), r.ha.port()),
        r.role,
        r.joined,
        r.allowed,
        r.alive,
        r.main,
        r.acceptance.map(|a| a as u8),
    )
}

/// A road stack (see the module documentation).
#[pyclass(module = "raet_rs._native")]
struct Road {
    stack: Mutex<Option<RoadStack>>,
    items: Mutex<Receiver<Item>>,
    queue: Queue,
    /// Readable when items are queued (drained by [`Road::poll`]).
    woken: UnixStream,
    next_op: AtomicU64,
    name: String,
    ha: (String, u16),
}

impl Road {
    fn stack(&self) -> PyResult<RoadStack> {
        lock(&self.stack).clone().ok_or_else(|| {
            StackClosedError::new_err(format!("road stack {:?} is closed", self.name))
        })
    }

    /// Runs `future` on the runtime; its result is queued as [`Item::Done`] with a new id.
    fn spawn<F>(&self, future: F) -> PyResult<u64>
    where
        F: std::future::Future<Output = (Option<u32>, Option<String>)> + Send + 'static,
    {
        let op = self.next_op.fetch_add(1, Ordering::Relaxed);
        let done = self.queue.clone();
        runtime()?.spawn(async move {
            let (uid, error) = future.await;
            // Nobody polls any more once the Road is gone: nothing to tell.
            done.send(Item::Done { op, uid, error });
        });
        Ok(op)
    }
}

#[pymethods]
impl Road {
    /// Binds the stack at `ha`, `(host, port)` (port 0: any free one), with its keep in
    /// `keep_dir` (`None`: in memory), sending messages in body kind `bk` (1 json, 3
    /// msgpack).
    #[new]
    #[pyo3(signature = (name, ha, main, auto, keep_dir = None, role = None, bk = 1))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        name: String,
        ha: (String, u16),
        main: bool,
        auto: u8,
        keep_dir: Option<PathBuf>,
        role: Option<String>,
        bk: u8,
    ) -> PyResult<Self> {
        if name.is_empty() {
            return Err(PyValueError::new_err("a road stack needs a name"));
        }
        let mut config = RoadConfig::new(name.clone(), address(&ha.0, ha.1)?);
        config.main = main;
        config.auto = auto_mode(auto)?;
        config.role = role;
        config.bk = match BodyKind::from_code(bk.into()) {
            Some(kind @ (BodyKind::Json | BodyKind::Msgpack)) => kind,
            _ => {
                return Err(PyValueError::new_err(format!(
                    "Bk must be 1 (json) or 3 (msgpack), not {bk}"
                )))
            }
        };
        let runtime = runtime()?;
        let stack = py.detach(|| {
            let keep: Box<dyn Keep> = match keep_dir {
                Some(dir) => Box::new(DirKeep::open(dir).map_err(|e| e.to_string())?),
                None => Box::new(MemKeep::new()),
            };
            runtime
                .block_on(RoadStack::bind(config, None, keep))
                .map_err(|e| e.to_string())
        });
        let stack = stack.map_err(|e| StackError::new_err(format!("road stack {name:?}: {e}")))?;
        let addr = stack.local_addr();
        let (woken, wake) = UnixStream::pair()
            .and_then(|(woken, wake)| {
                woken.set_nonblocking(true)?;
                wake.set_nonblocking(true)?;
                Ok((woken, wake))
            })
            .map_err(|e| StackError::new_err(format!("road stack {name:?}: {e}")))?;
        let (sender, items) = channel();
        let queue = Queue {
            items: sender,
            wake: Arc::new(wake),
        };
        runtime.spawn(forward(stack.clone(), queue.clone()));
        Ok(Self {
            stack: Mutex::new(Some(stack)),
            items: Mutex::new(items),
            queue,
            woken,
            next_op: AtomicU64::new(1),
            name,
            ha: (addr.ip().to_string(), addr.port()),
        })
    }

    /// The address the socket is bound to, `(host, port)`.
    #[getter]
    fn ha(&self) -> (String, u16) {
        self.ha.clone()
    }

    /// A socket that is readable when [`Road::poll`] has something (for asyncio's
    /// `add_reader`).
    fn fileno(&self) -> i32 {
        self.woken.as_raw_fd()
    }

    /// Whether [`Road::close`] was called.
    #[getter]
    fn closed(&self) -> bool {
        lock(&self.stack).is_none()
    }

    /// Starts joining (then allowing) the estate at `host:port`; returns the id [`Road::poll`]
    /// reports its end with (and our uid for the remote).
    fn join(&self, host: &str, port: u16) -> PyResult<u64> {
        let ha = address(host, port)?;
        let stack = self.stack()?;
        self.spawn(async move {
            match stack.join(ha).await {
                Ok(uid) => (Some(uid), None),
                Err(e) => (failed_uid(&e), Some(e.to_string())),
            }
        })
    }

    /// Queues a message (JSON object text) to remote `uid`; returns the id [`Road::poll`]
    /// reports its delivery (or failure) with.
    fn transmit(&self, uid: u32, body: &str) -> PyResult<u64> {
        let body = parse_body(body)?;
        let sent = self.stack()?.transmit(uid, body);
        self.spawn(async move { (Some(uid), sent.await.err().map(|e| e.to_string())) })
    }

    /// Accepts (`True`) or rejects the keys of the remote named `name` (auto mode never).
    fn decide(&self, py: Python<'_>, name: &str, accept: bool) -> PyResult<()> {
        let stack = self.stack()?;
        let runtime = runtime()?;
        py.detach(|| {
            runtime.block_on(async {
                if accept {
                    stack.accept(name).await
                } else {
                    stack.reject(name).await
                }
            })
        })
        .map_err(|e| StackError::new_err(format!("{name}: {e}")))
    }

    /// Snapshots of every remote.
    fn remotes(&self, py: Python<'_>) -> PyResult<Vec<RemoteTuple>> {
        let stack = self.stack()?;
        let runtime = runtime()?;
        let remotes = py.detach(|| runtime.block_on(stack.remotes()));
        Ok(remotes.into_iter().map(remote_tuple).collect())
    }

    /// Everything that happened since the last call, without blocking: `("message", name,
    /// uid, json)`, `("event", kind, uid, name)`, `("done", op, uid, error)`.
    fn poll(&self, py: Python<'_>) -> PyResult<Vec<Py<PyAny>>> {
        let stack = self.stack()?;
        // Drained first: an item queued after this wakes the reader again.
        let mut buf = [0u8; 256];
        while matches!((&self.woken).read(&mut buf), Ok(n) if n > 0) {}
        let items: Vec<Item> = lock(&self.items).try_iter().collect();
        items
            .into_iter()
            .map(|item| {
                let tuple = match item {
                    Item::Message {
                        name,
                        uid,
                        body,
                        receipt,
                    } => {
                        if let Some(receipt) = receipt {
                            stack.taken(receipt);
                        }
                        ("message", name, uid, body_text(&body)).into_pyobject(py)?
                    }
                    Item::Event { kind, uid, name } => {
                        ("event", kind, uid, name).into_pyobject(py)?
                    }
                    Item::Done { op, uid, error } => ("done", op, uid, error).into_pyobject(py)?,
                };
                Ok(tuple.into_any().unbind())
            })
            .collect()
    }

    /// Stops the stack and closes its socket (idempotent).
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let Some(stack) = lock(&self.stack).take() else {
            return Ok(());
        };
        let runtime = runtime()?;
        py.detach(|| runtime.block_on(stack.shutdown()));
        Ok(())
    }

    fn __repr__(&self) -> String {
        format!(
            "<raet_rs._native.Road {:?} at {}:{}>",
            self.name, self.ha.0, self.ha.1
        )
    }
}

impl Drop for Road {
    fn drop(&mut self) {
        if let (Some(stack), Ok(runtime)) = (lock(&self.stack).take(), runtime()) {
            runtime.spawn(stack.shutdown());
        }
    }
}

/// The Python exception for a lane error.
fn lane_error(e: LaneError) -> PyErr {
    let msg = e.to_string();
    match e {
        LaneError::InvalidName(_)
        | LaneError::BookTooLarge(_)
        | LaneError::HeadTooLong(_)
        | LaneError::BadField(_)
        | LaneError::BadBody(_) => PyValueError::new_err(msg),
        _ => StackError::new_err(msg),
    }
}

/// A lane yard: `<dir>/<lane>.<name>.uxd`, non-blocking.
#[pyclass(module = "raet_rs._native")]
struct Yard {
    yard: Mutex<Option<LaneYard>>,
    name: String,
}

impl Yard {
    fn with<T>(&self, f: impl FnOnce(&LaneYard) -> PyResult<T>) -> PyResult<T> {
        match lock(&self.yard).as_ref() {
            Some(yard) => f(yard),
            None => Err(StackClosedError::new_err(format!(
                "lane stack {:?} is closed",
                self.name
            ))),
        }
    }
}

#[pymethods]
impl Yard {
    /// Binds yard `name` of lane `lane` in `dir` (created if missing).
    #[new]
    fn new(py: Python<'_>, dir: PathBuf, lane: String, name: String) -> PyResult<Self> {
        let yard = py
            .detach(|| LaneYard::bind(&dir, &lane, &name))
            .map_err(lane_error)?;
        Ok(Self {
            yard: Mutex::new(Some(yard)),
            name,
        })
    }

    /// The socket's path.
    #[getter]
    fn ha(&self) -> PyResult<PathBuf> {
        self.with(|yard| Ok(yard.path().to_owned()))
    }

    /// Sends a message (JSON object text) to yard `to` of the same lane.
    fn send(&self, py: Python<'_>, to: &str, body: &str) -> PyResult<()> {
        let body = parse_body(body)?;
        self.with(|yard| py.detach(|| yard.send(to, &body)).map_err(lane_error))
    }

    /// Every message waiting, as `(source yard, json)`, without blocking.
    fn recv(&self) -> PyResult<Vec<(String, String)>> {
        self.with(|yard| {
            Ok(yard
                .recv()
                .into_iter()
                .map(|(from, body)| (from, body_text(&body)))
                .collect())
        })
    }

    /// Closes the socket and removes its file (idempotent).
    fn close(&self) {
        lock(&self.yard).take();
    }
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Road>()?;
    m.add_class::<Yard>()?;
    m.add("StackError", m.py().get_type::<StackError>())?;
    m.add("StackClosedError", m.py().get_type::<StackClosedError>())?;
    Ok(())
}
