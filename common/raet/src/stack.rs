//! The tokio driver of the road core: `RoadStack` over a real UDP socket.
//!
//! One task owns the socket and the sans-IO [`Road`]. It waits on three
//! things at once: the socket becoming readable (then drains up to a batch of
//! datagrams), a command from a [`RoadStack`] handle, and the road's next
//! deadline. After each input it sends every datagram the road wants sent
//! (waiting for the socket to become writable rather than dropping one) and
//! dispatches the road's events: messages go to [`RoadStack::recv`],
//! `Delivered`/`SendFailed` complete the [`RoadStack::transmit`] futures,
//! `Allowed`/`JoinFailed`/`AllowFailed`/`Rejected` complete [`RoadStack::join`], and every
//! event but messages goes to every [`RoadStack::events`] subscriber. No subscriber ever
//! loses an event (the daemons keep their view of the remotes from them); a subscriber that
//! stops reading holds the events sent since, until it is dropped.
//!
//! The keep is read once, at [`RoadStack::bind`] (the road's [`Snapshot`]); afterwards the
//! road's persist ops go to a writer thread ([`KeepWriter`]) that applies them in order, so
//! the task never waits for a disk. Its role reads come back to the task, which hands them to
//! the road; its failures are counted as `keep_error` in [`RoadStack::stats`]. Shutdown waits
//! for the writes queued so far.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand_core::{OsRng, RngCore};
use rayon::iter::{IntoParallelIterator, ParallelIterator};
use serde_json::{Map, Value};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{debug, info, trace, warn};

mod socket;
mod udp;
use socket::bind_socket;
use udp::Udp;

use crate::crypto::{PrivateKey, PublicKey, Signer, VerifyKey};
use crate::keep::{Keep, KeepError, KeepWriter, RoleAnswer, Snapshot};
use crate::packet::body::encode;
use crate::packet::BodyKind;
use crate::road::{
    AllowFailure, Event, JoinFailure, MessageId, Outbound, Receipt, RejectedBy, RemoteStatus, Road,
    RoadConfig, RoadError, SendFailure, Uid,
};
use crate::Transmit;

/// Socket buffer size (both directions) the stack asks the kernel for. A 1 MB
/// message is ~1 100 datagrams blasted at once (the reference's burst 0); the
/// default Linux receive buffer holds a fraction of that.
pub const SOCKET_BUFFER_SIZE: usize = 4 * 1024 * 1024;

/// At most this many datagrams are read in a row before the road's output is
/// flushed, so replies and timers are not starved under a flood.
const RECV_BATCH: usize = 64;

/// Datagrams to send whose signatures and seals cover at least this many bytes are
/// finished on every core (a fan-out's bursts); below it, handing work to another
/// thread costs more than it saves (a 64 KB seal takes some 60 us here).
const PARALLEL_WORK: usize = 64 * 1024;

/// Longest time timers are held back while a backlog of received datagrams
/// is read, so that a flood cannot starve them.
const MAX_TIMER_HOLD: Duration = Duration::from_millis(500);

/// What a drain of the socket left behind.
enum Drained {
    /// The socket would block: everything received was read.
    Empty,
    /// The batch ended (or an error stopped it) with datagrams possibly left.
    More,
}

/// The subscribers of [`RoadStack::events`], shared by the handles and the driver.
type Subscribers = Arc<std::sync::Mutex<Vec<mpsc::UnboundedSender<Event>>>>;

/// A received message: sender's name, our uid for the sender, the body.
pub type Received = (String, Uid, Map<String, Value>);

/// Errors of the road stack driver.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    /// Creating, configuring or binding the UDP socket failed.
    #[error("socket error: {0}")]
    Io(#[from] io::Error),
    /// The road core refused the request.
    #[error(transparent)]
    Road(#[from] RoadError),
    /// The keep could not be loaded.
    #[error("keep: {0}")]
    Keep(#[from] KeepError),
    /// The join (or the allow that follows it) did not complete.
    #[error("join of remote {uid} failed: {reason}")]
    JoinFailed {
        /// Our uid for the remote.
        uid: Uid,
        /// Why, as reported by the road.
        reason: JoinFailure,
    },
    /// The allow that follows a join did not complete.
    #[error("allow of remote {uid} failed: {reason}")]
    AllowFailed {
        /// Our uid for the remote.
        uid: Uid,
        /// Why, as reported by the road.
        reason: AllowFailure,
    },
    /// Neither `Allowed` nor a failure came within the join's bounded time (the
    /// joiner timeout plus the allow timeout plus one second): e.g. an allow that
    /// timed out after a successful join.
    #[error("join of {ha} did not complete within {after:?}")]
    JoinTimedOut {
        /// The address joined.
        ha: SocketAddr,
        /// The bound that elapsed.
        after: Duration,
    },
    /// The join was rejected (by the remote, or by our own key decision).
    #[error("join of remote {uid} ({name}) was rejected ({})", match by {
        RejectedBy::Us => "by us",
        RejectedBy::Them => "by the remote",
    })]
    Rejected {
        /// Our uid for the remote.
        uid: Uid,
        /// The remote's name.
        name: String,
        /// Who rejected it.
        by: RejectedBy,
    },
    /// The remote was removed while a join was in progress.
    #[error("remote {uid} ({name}) was removed")]
    Removed {
        /// Our uid for the remote.
        uid: Uid,
        /// The remote's name.
        name: String,
    },
    /// A message could not be delivered within the bounded time, or was refused.
    #[error("message to remote {uid} failed: {reason}")]
    SendFailed {
        /// Our uid for the remote.
        uid: Uid,
        /// Why, as reported by the road.
        reason: SendFailure,
    },
    /// The stack's task has stopped (shut down, or every handle dropped).
    #[error("the road stack is shut down")]
    Closed,
}

type Reply<T> = oneshot::Sender<Result<T, StackError>>;

/// Requests from the handles to the driver task.
enum Command {
    Join(SocketAddr, Reply<Uid>),
    Transmit(Uid, Arc<[u8]>, bool, Reply<()>),
    Accept(String, Reply<()>),
    Reject(String, Reply<()>),
    DecideOffered {
        name: String,
        verhex: String,
        pubhex: String,
        accept: bool,
        reply: Reply<()>,
    },
    ForgetRole(String, Reply<()>),
    Remove(Uid, Reply<()>),
    Remotes(oneshot::Sender<Vec<RemoteStatus>>),
    Remote(Uid, oneshot::Sender<Option<RemoteStatus>>),
    Stats(oneshot::Sender<BTreeMap<String, u64>>),
    /// The application took (true) or refused a received message.
    Answer(Receipt, bool),
    Shutdown,
}

/// A received message (with the bytes of a raw body) and the receipt its done waits for.
type Incoming = (Received, Option<Vec<u8>>, Option<Receipt>);

/// A received message body: a mapping, or the bytes of a raw body
/// ([`RoadStack::transmit_raw`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// A JSON or msgpack mapping.
    Map(Map<String, Value>),
    /// Raw bytes, untouched.
    Raw(Vec<u8>),
}

/// A road stack: a [`Road`] driven by a tokio task over a real UDP socket.
///
/// Cheap to clone; every clone talks to the same task. The task stops on
/// [`RoadStack::shutdown`] or when the last handle is dropped.
#[derive(Clone)]
pub struct RoadStack {
    commands: mpsc::UnboundedSender<Command>,
    local_addr: SocketAddr,
    name: Arc<str>,
    verify_key: VerifyKey,
    public_key: PublicKey,
    events: Subscribers,
    messages: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Incoming>>>,
    task: Arc<std::sync::Mutex<Option<JoinHandle<()>>>>,
    /// How long [`RoadStack::join`] waits at most (`None`: a road timer is "never").
    join_bound: Option<Duration>,
    /// Body kind of the messages it sends ([`RoadConfig::bk`]).
    bk: BodyKind,
}

impl std::fmt::Debug for RoadStack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoadStack")
            .field("name", &self.name)
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl RoadStack {
    /// Binds a UDP socket at `config.ha` (port 0 picks a free port; the
    /// address actually bound is what the road records), restores or creates
    /// the road's identity from `keep` (read here, once), and starts the driver
    /// task and the thread that writes the road's changes to `keep`.
    ///
    /// A received message is acknowledged to its sender when the application has it: when
    /// [`RoadStack::recv`] hands it over, or when the application says so
    /// ([`RoadStack::recv_receipted`], [`RoadStack::taken`]); `config.confirm_messages` is
    /// set for that.
    ///
    /// Must be called inside a tokio runtime.
    pub async fn bind(
        mut config: RoadConfig,
        keys: Option<(Signer, PrivateKey)>,
        keep: Box<dyn Keep>,
    ) -> Result<Self, StackError> {
        let socket = UdpSocket::from_std(bind_socket(config.ha)?)?;
        let local_addr = socket.local_addr()?;
        config.ha = local_addr;
        config.confirm_messages = true;
        let timers = &config.timers;
        let join_bound = (!timers.joiner_timeout.is_zero() && !timers.allow_timeout.is_zero())
            .then(|| timers.joiner_timeout + timers.allow_timeout + Duration::from_secs(1));
        let bk = config.bk;
        let mut seed = [0u8; 32];
        OsRng.fill_bytes(&mut seed);
        let snapshot = Snapshot::load(keep.as_ref())?;
        let road = Road::new(config, keys, snapshot, seed, Instant::now())?;
        let name: Arc<str> = Arc::from(road.name());
        let (answers, role_answers) = mpsc::unbounded_channel();
        let writer = KeepWriter::spawn(&name, keep, answers)?;
        let (verify_key, public_key) = (road.verify_key(), road.public_key());
        info!(name = %name, addr = %local_addr, "road stack bound");

        let (commands, command_rx) = mpsc::unbounded_channel();
        let (message_tx, message_rx) = mpsc::unbounded_channel();
        let events = Subscribers::default();
        let driver = Driver {
            road,
            udp: Udp::new(socket)?,
            commands: command_rx,
            messages: message_tx,
            events: Arc::clone(&events),
            joins: HashMap::new(),
            transmits: HashMap::new(),
            counters: BTreeMap::new(),
            writer,
            role_answers,
        };
        let task = tokio::spawn(driver.run());
        Ok(Self {
            commands,
            local_addr,
            name,
            verify_key,
            public_key,
            events,
            messages: Arc::new(tokio::sync::Mutex::new(message_rx)),
            task: Arc::new(std::sync::Mutex::new(Some(task))),
            join_bound,
            bk,
        })
    }

    /// The address the socket is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The local estate's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The local estate's long-term signing (verify) key.
    pub fn verify_key(&self) -> &VerifyKey {
        &self.verify_key
    }

    /// The local estate's long-term encryption (public) key.
    pub fn public_key(&self) -> &PublicKey {
        &self.public_key
    }

    /// Joins the estate at `ha` (join, then allow); resolves with our uid for
    /// it once it is allowed, or fails when the join or allow fails.
    ///
    /// Bounded: if neither happens within the joiner timeout plus the allow
    /// timeout (plus one second), it fails with [`StackError::JoinTimedOut`].
    pub async fn join(&self, ha: SocketAddr) -> Result<Uid, StackError> {
        let join = self.request(|reply| Command::Join(ha, reply));
        match self.join_bound {
            Some(after) => tokio::time::timeout(after, join)
                .await
                .map_err(|_| StackError::JoinTimedOut { ha, after })?,
            None => join.await,
        }
    }

    /// Sends a message; resolves when the remote acknowledged it (done: with a salt-raet
    /// peer, once the peer's application has it, e.g. its [`RoadStack::recv`] handed it
    /// over), or fails (bounded time elapsed, refused, remote removed). If the remote is not
    /// allowed yet, the message waits for it.
    ///
    /// The message is queued when this is called, not when the future is
    /// first polled, so messages leave in call order and many can be in
    /// flight at once (the future owns no borrow and can be spawned).
    pub fn transmit(
        &self,
        to: Uid,
        body: Map<String, Value>,
    ) -> impl Future<Output = Result<(), StackError>> + Send + 'static {
        let queued = encode(self.bk, &body)
            .map(|body| self.transmit_encoded(to, body.into()))
            .map_err(|e| StackError::Road(RoadError::InvalidMessage(e.to_string())));
        async move { queued?.await }
    }

    /// [`RoadStack::transmit`] of a body already encoded in the road's body kind
    /// ([`RoadConfig::bk`], `raet::packet::body::encode`): a message to many remotes is
    /// encoded once, on the caller's thread, and its queued copies share it.
    pub fn transmit_encoded(
        &self,
        to: Uid,
        body: Arc<[u8]>,
    ) -> impl Future<Output = Result<(), StackError>> + Send + 'static {
        self.queue_transmit(to, body, false)
    }

    /// Sends opaque bytes (body kind raw) as [`RoadStack::transmit`] sends a mapping; the
    /// receiver's application gets them untouched ([`RoadStack::recv_any_receipted`]). Only
    /// for peers known to take raw bodies (this implementation; the reference refuses them).
    pub fn transmit_raw(
        &self,
        to: Uid,
        bytes: Arc<[u8]>,
    ) -> impl Future<Output = Result<(), StackError>> + Send + 'static {
        self.queue_transmit(to, bytes, true)
    }

    fn queue_transmit(
        &self,
        to: Uid,
        body: Arc<[u8]>,
        raw: bool,
    ) -> impl Future<Output = Result<(), StackError>> + Send + 'static {
        let (reply, rx) = oneshot::channel();
        let queued = self.commands.send(Command::Transmit(to, body, raw, reply));
        async move {
            queued.map_err(|_| StackError::Closed)?;
            rx.await.map_err(|_| StackError::Closed)?
        }
    }

    /// The next received message, acknowledged to its sender as it is handed over; `None`
    /// once the stack is shut down.
    /// A raw body is refused to its sender and skipped (see [`RoadStack::recv_any_receipted`]).
    pub async fn recv(&self) -> Option<Received> {
        let (received, receipt) = self.recv_receipted().await?;
        if let Some(receipt) = receipt {
            self.answer(receipt, true);
        }
        Some(received)
    }

    /// The next received message and its receipt: its sender is told it was delivered only
    /// once the application calls [`RoadStack::taken`] with the receipt (or that it was not,
    /// [`RoadStack::refused`]); copies of it are dropped meanwhile. Every receipt must be
    /// answered.
    /// A raw body is refused to its sender and skipped (see [`RoadStack::recv_any_receipted`]).
    pub async fn recv_receipted(&self) -> Option<(Received, Option<Receipt>)> {
        loop {
            match self.recv_any_receipted().await? {
                ((name, uid, Body::Map(body)), receipt) => {
                    return Some(((name, uid, body), receipt))
                }
                ((name, ..), receipt) => {
                    tracing::debug!(from = %name, "raw message refused: not asked for");
                    if let Some(receipt) = receipt {
                        self.answer(receipt, false);
                    }
                }
            }
        }
    }

    /// [`RoadStack::recv_receipted`] of mappings and raw bodies alike.
    pub async fn recv_any_receipted(&self) -> Option<((String, Uid, Body), Option<Receipt>)> {
        let ((name, uid, map), raw, receipt) = self.messages.lock().await.recv().await?;
        let body = raw.map_or(Body::Map(map), Body::Raw);
        Some(((name, uid, body), receipt))
    }

    /// The application has the message of `receipt` (see [`RoadStack::recv_receipted`]).
    pub fn taken(&self, receipt: Receipt) {
        self.answer(receipt, true);
    }

    /// The application could not take the message of `receipt`: its sender is nacked and
    /// may send it again.
    pub fn refused(&self, receipt: Receipt) {
        self.answer(receipt, false);
    }

    fn answer(&self, receipt: Receipt, taken: bool) {
        // A stack shut down answers nothing: the sender's message then fails in time.
        let _ = self.commands.send(Command::Answer(receipt, taken));
    }

    /// Subscribes to the road's events (all but messages, which go to
    /// [`RoadStack::recv`]): joins, pendings, allows, presence, deliveries...
    /// Only events produced after subscribing are seen; none of them is lost. The stream
    /// ends when the stack stops.
    pub fn events(&self) -> mpsc::UnboundedReceiver<Event> {
        let (tx, rx) = mpsc::unbounded_channel();
        lock(&self.events).push(tx);
        rx
    }

    /// Accepts the keys of the remote named `name` (auto mode `never`).
    pub async fn accept(&self, name: &str) -> Result<(), StackError> {
        let name = name.to_owned();
        self.request(|reply| Command::Accept(name, reply)).await
    }

    /// Rejects the keys of the remote named `name`.
    pub async fn reject(&self, name: &str) -> Result<(), StackError> {
        let name = name.to_owned();
        self.request(|reply| Command::Reject(name, reply)).await
    }

    /// A decision on the keys (`verhex`, `pubhex`) that `name` offered, applied only while
    /// the remote still holds them ([`Road::decide_offered`]).
    pub async fn decide_offered(
        &self,
        name: &str,
        (verhex, pubhex): (&str, &str),
        accept: bool,
    ) -> Result<(), StackError> {
        let (name, verhex, pubhex) = (name.to_owned(), verhex.to_owned(), pubhex.to_owned());
        self.request(|reply| Command::DecideOffered {
            name,
            verhex,
            pubhex,
            accept,
            reply,
        })
        .await
    }

    /// Forgets the decision on `role`'s keys: the next join offering it is decided again
    /// ([`Road::forget_role`]).
    pub async fn forget_role(&self, role: &str) -> Result<(), StackError> {
        let role = role.to_owned();
        self.request(|reply| Command::ForgetRole(role, reply)).await
    }

    /// Removes a remote; its pending messages fail.
    pub async fn remove(&self, uid: Uid) -> Result<(), StackError> {
        self.request(|reply| Command::Remove(uid, reply)).await
    }

    /// The status of the remote `uid` (`None` if unknown, or once the stack is shut down).
    pub async fn remote(&self, uid: Uid) -> Option<RemoteStatus> {
        let (reply, rx) = oneshot::channel();
        self.commands.send(Command::Remote(uid, reply)).ok()?;
        rx.await.ok().flatten()
    }

    /// The status of every remote (empty once the stack is shut down).
    pub async fn remotes(&self) -> Vec<RemoteStatus> {
        let (reply, rx) = oneshot::channel();
        if self.commands.send(Command::Remotes(reply)).is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// The road's counters plus the driver's own (`udp_*`, and `keep_error`: persist ops
    /// the keep failed to apply); empty once the stack is shut down.
    pub async fn stats(&self) -> BTreeMap<String, u64> {
        let (reply, rx) = oneshot::channel();
        if self.commands.send(Command::Stats(reply)).is_err() {
            return BTreeMap::new();
        }
        rx.await.unwrap_or_default()
    }

    /// Stops the driver task and waits for it. Pending `join`/`transmit`
    /// futures (of any clone) fail with [`StackError::Closed`].
    pub async fn shutdown(self) {
        // An error means the task is already gone, which is what we want.
        let _ = self.commands.send(Command::Shutdown);
        let task = match self.task.lock() {
            Ok(mut guard) => guard.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(task) = task {
            if let Err(e) = task.await {
                warn!(error = %e, "road stack task ended abnormally");
            }
        }
    }

    async fn request<T>(&self, command: impl FnOnce(Reply<T>) -> Command) -> Result<T, StackError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(command(reply))
            .map_err(|_| StackError::Closed)?;
        rx.await.map_err(|_| StackError::Closed)?
    }
}

/// The task owning the socket and the road.
struct Driver {
    road: Road,
    udp: Udp,
    commands: mpsc::UnboundedReceiver<Command>,
    messages: mpsc::UnboundedSender<Incoming>,
    events: Subscribers,
    /// Pending `join` futures by the remote's uid.
    joins: HashMap<Uid, Vec<Reply<Uid>>>,
    /// Pending `transmit` futures by message id.
    transmits: HashMap<MessageId, Reply<()>>,
    /// The driver's own counters (socket errors).
    counters: BTreeMap<&'static str, u64>,
    /// Applies the road's persist ops to the keep.
    writer: KeepWriter,
    /// The keep's answers to the road's role reads.
    role_answers: mpsc::UnboundedReceiver<RoleAnswer>,
}

impl Driver {
    async fn run(mut self) {
        // Since when datagrams have been waiting in the socket (a drain
        // stopped at the batch limit, not at WouldBlock).
        let mut backlog: Option<Instant> = None;
        loop {
            self.flush().await;
            // While a backlog is being read, timers wait (within a bound):
            // datagrams already received are newer news than a deadline, and
            // a retry fired now would ask again for what sits in the buffer.
            let hold_timers = backlog.is_some_and(|since| since.elapsed() < MAX_TIMER_HOLD);
            let deadline = if hold_timers {
                None
            } else {
                self.road.poll_timeout()
            };
            let timer = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(Command::Shutdown) | None => break,
                    Some(command) => self.command(command),
                },
                readable = self.udp.readable() => match readable {
                    Ok(()) => {
                        backlog = match self.drain() {
                            Drained::Empty => None,
                            Drained::More => backlog.or_else(|| Some(Instant::now())),
                        };
                    }
                    Err(e) => self.socket_error("udp_recv_error", &e),
                },
                Some((role, record)) = self.role_answers.recv() => {
                    self.road.role_loaded(Instant::now(), &role, record);
                }
                () = timer => {}
            }
            if backlog.is_some_and(|since| since.elapsed() < MAX_TIMER_HOLD) {
                continue;
            }
            let now = Instant::now();
            if self.road.poll_timeout().is_some_and(|at| at <= now) {
                self.road.handle_timeout(now);
            }
        }
        // Give whatever the road still has queued (e.g. the done of a message
        // just completed) a chance to leave before the socket closes.
        self.flush().await;
        self.writer.finish().await;
        info!(name = self.road.name(), "road stack stopped");
        // Dropping `joins`/`transmits` fails their futures with `Closed`.
    }

    /// Reads datagrams until the socket would block or a batch is done.
    fn drain(&mut self) -> Drained {
        let mut read = 0;
        while read < RECV_BATCH {
            let road = &mut self.road;
            match self.udp.try_recv(|from, data| {
                trace!(%from, len = data.len(), "datagram in");
                road.handle_datagram(Instant::now(), from, data);
            }) {
                Ok(0) => return Drained::Empty,
                Ok(n) => read += n,
                Err(e) => {
                    // e.g. ICMP errors reported on the socket: the road's
                    // own retries and timeouts deal with the lost datagram.
                    self.socket_error("udp_recv_error", &e);
                    return Drained::More;
                }
            }
        }
        Drained::More
    }

    /// Hands the road's persist ops to the writer, sends everything the road has queued, then
    /// dispatches its events.
    async fn flush(&mut self) {
        while let Some(op) = self.road.poll_persist() {
            self.writer.push(op);
        }
        let mut batch = Vec::new();
        let mut work = 0;
        while let Some(outbound) = self.road.poll_outbound() {
            work += outbound.work();
            batch.push(outbound);
        }
        // The signatures and seals of a large batch (a fan-out) are done on every core.
        let transmits: Vec<Transmit> = if work >= PARALLEL_WORK && batch.len() > 1 {
            *self.counters.entry("parallel_batches").or_insert(0) += 1;
            batch.into_par_iter().map(Outbound::finish).collect()
        } else {
            batch.into_iter().map(Outbound::finish).collect()
        };
        for transmit in &transmits {
            trace!(dest = %transmit.dest, len = transmit.payload.len(), "datagram out");
        }
        // Waits for writability when the socket buffer is full: nothing is dropped.
        for failed in self.udp.send(&transmits).await {
            debug!(dest = %failed.dest, len = failed.len, "datagram not sent");
            self.socket_error("udp_send_error", &failed.error);
        }
        while let Some(event) = self.road.poll_event() {
            self.dispatch(event);
        }
    }

    fn socket_error(&mut self, counter: &'static str, error: &io::Error) {
        warn!(counter, error = %error, "socket error");
        *self.counters.entry(counter).or_insert(0) += 1;
    }

    fn command(&mut self, command: Command) {
        let now = Instant::now();
        match command {
            Command::Join(ha, reply) => match self.road.join(now, ha) {
                Ok(uid) => self.joins.entry(uid).or_default().push(reply),
                Err(e) => answer(reply, Err(e.into())),
            },
            Command::Transmit(to, body, raw, reply) => match if raw {
                self.road.send_raw(now, to, body)
            } else {
                self.road.send_encoded(now, to, body)
            } {
                Ok(id) => {
                    self.transmits.insert(id, reply);
                }
                Err(e) => answer(reply, Err(e.into())),
            },
            Command::Accept(name, reply) => {
                answer(reply, self.road.accept(now, &name).map_err(Into::into));
            }
            Command::Reject(name, reply) => {
                answer(reply, self.road.reject(now, &name).map_err(Into::into));
            }
            Command::DecideOffered {
                name,
                verhex,
                pubhex,
                accept,
                reply,
            } => {
                let decided = self
                    .road
                    .decide_offered(now, &name, &verhex, &pubhex, accept);
                answer(reply, decided.map_err(Into::into));
            }
            Command::ForgetRole(role, reply) => {
                self.road.forget_role(&role);
                answer(reply, Ok(()));
            }
            Command::Remove(uid, reply) => {
                answer(reply, self.road.remove(now, uid).map_err(Into::into));
            }
            Command::Remotes(reply) => {
                // The handle may have given up waiting; nothing to do then.
                let _ = reply.send(self.road.remotes());
            }
            Command::Remote(uid, reply) => {
                let _ = reply.send(self.road.remote(uid));
            }
            Command::Stats(reply) => {
                // Counters that counted something (as the reference's stats).
                let mut stats: BTreeMap<String, u64> = self
                    .road
                    .stats()
                    .iter()
                    .filter(|(_, v)| *v > 0)
                    .map(|(k, v)| (k.to_owned(), v))
                    .collect();
                stats.extend(self.counters.iter().map(|(k, v)| ((*k).to_owned(), *v)));
                let keep_errors = self.writer.errors();
                if keep_errors > 0 {
                    stats.insert("keep_error".to_owned(), keep_errors);
                }
                let _ = reply.send(stats);
            }
            Command::Answer(receipt, taken) => {
                if taken {
                    self.road.taken(now, receipt);
                } else {
                    self.road.refused(now, receipt);
                }
            }
            Command::Shutdown => {}
        }
    }

    fn dispatch(&mut self, event: Event) {
        let event = match event {
            Event::Message {
                uid,
                name,
                body,
                raw,
                receipt,
            } => {
                // Fails only when every handle is gone; then nobody wants it (unanswered,
                // the sender's message fails in time).
                let _ = self.messages.send(((name, uid, body), raw, receipt));
                return;
            }
            event => event,
        };
        // Subscribers see an event before the request it completes is answered (a caller
        // that stops on the answer finds the event queued); those gone are forgotten.
        lock(&self.events).retain(|subscriber| subscriber.send(event.clone()).is_ok());
        match event {
            Event::Allowed { uid, .. } => self.finish_joins(uid, || Ok(uid)),
            Event::JoinFailed { uid, reason } => {
                self.finish_joins(uid, || Err(StackError::JoinFailed { uid, reason }))
            }
            Event::AllowFailed { uid, reason } => {
                self.finish_joins(uid, || Err(StackError::AllowFailed { uid, reason }))
            }
            Event::Rejected { uid, ref name, by } => self.finish_joins(uid, || {
                Err(StackError::Rejected {
                    uid,
                    name: name.clone(),
                    by,
                })
            }),
            Event::Removed { uid, ref name } => self.finish_joins(uid, || {
                Err(StackError::Removed {
                    uid,
                    name: name.clone(),
                })
            }),
            Event::Delivered { id, .. } => {
                if let Some(reply) = self.transmits.remove(&id) {
                    answer(reply, Ok(()));
                }
            }
            Event::SendFailed { id, uid, reason } => {
                if let Some(reply) = self.transmits.remove(&id) {
                    answer(reply, Err(StackError::SendFailed { uid, reason }));
                }
            }
            _ => {}
        }
    }

    fn finish_joins(&mut self, uid: Uid, result: impl Fn() -> Result<Uid, StackError>) {
        for reply in self.joins.remove(&uid).unwrap_or_default() {
            answer(reply, result());
        }
    }
}

/// Completes a request; the requester may have stopped waiting, which is fine.
/// The subscriber list (a panic while holding it cannot leave it half-changed).
fn lock(subscribers: &Subscribers) -> std::sync::MutexGuard<'_, Vec<mpsc::UnboundedSender<Event>>> {
    subscribers
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn answer<T>(reply: Reply<T>, result: Result<T, StackError>) {
    let _ = reply.send(result);
}
