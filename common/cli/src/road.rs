//! `raet road`: a netcat for RAET over UDP, on a [`RoadStack`].

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use raet::crypto::{PrivateKey, Signer};
use raet::keep::{AutoMode, DirKeep, Keep, MemKeep};
use raet::packet::{body, BodyKind, HeadKind};
use raet::road::{Event, Presence, Profile, RejectedBy, RoadConfig, RoadError, Uid};
use raet::stack::{RoadStack, StackError};
use rand_core::OsRng;
use serde_json::{json, Map, Value};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tracing::{debug, error, info, warn};

use crate::{
    parse_seconds, print_event, spawn_printer, AfterPrint, Body, Traffic, EXIT_FAILED, EXIT_OK,
    EXIT_TIMEOUT,
};

/// Options of `raet road`.
#[derive(Args, Debug, Clone)]
#[command(after_help = "\
Every received message is printed on stdout as one JSON line {\"from\": NAME, \"msg\": {...}}.
Logs go to stderr (RUST_LOG=debug for more).
Exit status: 0 once --expect messages are received, every own message is acknowledged and
(with --join) the remote is allowed; 1 on a failure (join rejected, message failed, socket or
keep error); 2 when --timeout elapses first; 3 on bad arguments.")]
pub(crate) struct RoadArgs {
    /// Name of the local estate.
    #[arg(long)]
    pub name: String,
    /// UDP port to listen on (0: any free port).
    #[arg(long)]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Be a main estate (accepts first-contact, vacuous joins).
    #[arg(long)]
    pub main: bool,
    /// Key auto-accept mode for joining remotes.
    #[arg(long, value_enum, default_value_t = Auto::Always)]
    pub auto: Auto,
    /// Join the estate at HOST:PORT (join, allow); messages are sent to it.
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_addr)]
    pub join: Option<SocketAddr>,
    #[command(flatten)]
    pub traffic: Traffic,
    /// Persist the estate's identity and remotes in DIR (default: in memory, thrown away).
    #[arg(long, value_name = "DIR")]
    pub keep: Option<PathBuf>,
    /// Head kind of the packets this stack sends (it reads both).
    #[arg(long, value_enum, default_value_t = Hk::Raet)]
    pub hk: Hk,
    /// Body kind of the messages this stack sends (it reads both).
    #[arg(long, value_enum, default_value_t = Bk::Json)]
    pub bk: Bk,
    /// Protocol profile: compat (the reference's packets only), auto (the fast profile with
    /// peers that offer it too) or fast (required: peers without it are refused).
    #[arg(long, default_value = "auto", value_parser = clap::value_parser!(Profile))]
    pub profile: Profile,
    /// Role of the local estate (default: its name).
    #[arg(long)]
    pub role: Option<String>,
    /// Keep serving this many seconds after success, so late retransmits are answered.
    #[arg(long, value_name = "S", default_value = "0.5", value_parser = parse_seconds)]
    pub linger: Duration,
    /// With --auto never: accept a pending remote's keys this many seconds after it pends.
    #[arg(long, value_name = "S", value_parser = parse_seconds)]
    pub accept_after: Option<Duration>,
    /// Fixed ed25519 signing seed (64 hex characters).
    #[arg(long, value_name = "HEX", value_parser = parse_key)]
    pub sighex: Option<[u8; 32]>,
    /// Fixed curve25519 long-term private key (64 hex characters).
    #[arg(long, value_name = "HEX", value_parser = parse_key)]
    pub prihex: Option<[u8; 32]>,
    /// Print JSON event lines {"event": ..., "t": seconds} on stderr (listening, joined,
    /// allowed, alived, pending, rejected, accepted, removed, sent, done; timeout always).
    #[arg(long)]
    pub events: bool,
    /// Read operator commands from stdin, one a line: "accept NAME" or "reject NAME".
    #[arg(long)]
    pub control: bool,
    /// Handshakes remotes started that the road carries at once (`Limits::max_handshakes`,
    /// default 256); a join beyond them is refused at once (0: every join).
    #[arg(long, value_name = "N")]
    pub max_handshakes: Option<usize>,
}

/// `--auto` values.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auto {
    /// Keys wait for an operator decision.
    Never,
    /// The first key is accepted and pinned.
    Once,
    /// Every key is accepted.
    Always,
}

impl From<Auto> for AutoMode {
    fn from(auto: Auto) -> Self {
        match auto {
            Auto::Never => Self::Never,
            Auto::Once => Self::Once,
            Auto::Always => Self::Always,
        }
    }
}

/// `--bk` values.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bk {
    /// JSON bodies.
    Json,
    /// msgpack bodies.
    Msgpack,
}

impl From<Bk> for BodyKind {
    fn from(bk: Bk) -> Self {
        match bk {
            Bk::Json => Self::Json,
            Bk::Msgpack => Self::Msgpack,
        }
    }
}

/// `--hk` values.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hk {
    /// Text head.
    Raet,
    /// JSON head.
    Json,
}

impl From<Hk> for HeadKind {
    fn from(hk: Hk) -> Self {
        match hk {
            Hk::Raet => Self::Raet,
            Hk::Json => Self::Json,
        }
    }
}

fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    let mut addrs = text
        .to_socket_addrs()
        .map_err(|e| format!("not HOST:PORT: {e}"))?;
    addrs
        .next()
        .ok_or_else(|| format!("{text} resolves to no address"))
}

fn parse_key(text: &str) -> Result<[u8; 32], String> {
    let mut key = [0u8; 32];
    hex::decode_to_slice(text, &mut key).map_err(|e| format!("not 64 hex characters: {e}"))?;
    Ok(key)
}

/// JSON event lines on stderr: `{"event": KIND, "t": seconds since start, ...}`.
#[derive(Clone, Copy)]
struct EventLog {
    enabled: bool,
    start: Instant,
}

impl EventLog {
    /// Prints the line when `--events` is on.
    fn emit(self, kind: &str, fields: Value) {
        if self.enabled {
            self.always(kind, fields);
        }
    }

    /// Prints the line regardless of `--events` (timeouts, failures).
    fn always(self, kind: &str, fields: Value) {
        let mut line = Map::new();
        let t = (self.start.elapsed().as_secs_f64() * 1e3).round() / 1e3;
        line.insert("t".into(), t.into());
        if let Value::Object(fields) = fields {
            line.extend(fields);
        }
        print_event(kind, Value::Object(line));
    }

    /// Prints a road event (messages are printed on stdout instead).
    fn road_event(self, event: &Event) {
        let (kind, fields) = match event {
            Event::Joined { uid, name, .. } => ("joined", json!({"name": name, "uid": uid})),
            Event::Pending { uid, name, .. } => {
                ("pending", json!({"name": name, "uid": uid, "by": "us"}))
            }
            Event::JoinPended { uid, name } => {
                ("pending", json!({"name": name, "uid": uid, "by": "them"}))
            }
            Event::Rejected { uid, name, by } => {
                let by = match by {
                    RejectedBy::Us => "us",
                    RejectedBy::Them => "them",
                };
                ("rejected", json!({"name": name, "uid": uid, "by": by}))
            }
            Event::JoinFailed { uid, reason } => (
                "join_failed",
                json!({"uid": uid, "reason": reason.to_string()}),
            ),
            Event::Allowed { uid, name, .. } => ("allowed", json!({"name": name, "uid": uid})),
            Event::AllowFailed { uid, reason } => (
                "allow_failed",
                json!({"uid": uid, "reason": reason.to_string()}),
            ),
            Event::Presence {
                uid,
                name,
                presence,
            } => {
                let kind = match presence {
                    Presence::Joined => "present_joined",
                    Presence::Allowed => "present_allowed",
                    Presence::Alive => "alived",
                    Presence::Lost => "lost",
                };
                (kind, json!({"name": name, "uid": uid}))
            }
            Event::Message { .. } => return,
            Event::Delivered { id, uid } => ("delivered", json!({"id": id.0, "uid": uid})),
            Event::SendFailed { id, uid, reason } => (
                "send_failed",
                json!({"id": id.0, "uid": uid, "reason": reason.to_string()}),
            ),
            Event::Removed { uid, name } => ("removed", json!({"name": name, "uid": uid})),
            Event::FirstContactDropped { uid, name, .. } => {
                ("first_contact_dropped", json!({"name": name, "uid": uid}))
            }
            Event::KeysRejected {
                uid, name, from, ..
            } => (
                "keys_rejected",
                json!({"name": name, "uid": uid, "from": from.to_string()}),
            ),
        };
        self.emit(kind, fields);
    }
}

/// Messages `raet road` hands to the stack ahead of their delivery: more than a remote's
/// window holds of 1 KB messages (`Limits::max_inflight_bytes`, 2 MiB).
const QUEUED_TRANSMITS: usize = 4096;

/// Where the session is, for the final report.
#[derive(Default)]
struct Progress {
    sent: AtomicUsize,
    delivered: AtomicUsize,
}

/// Builds the road configuration for these options.
fn config(args: &RoadArgs) -> RoadConfig {
    let mut config = RoadConfig::new(args.name.clone(), SocketAddr::new(args.host, args.port));
    config.main = args.main;
    config.auto = args.auto.into();
    config.hk = args.hk.into();
    config.bk = args.bk.into();
    config.role = args.role.clone();
    config.profile = args.profile;
    if let Some(max) = args.max_handshakes {
        config.limits.max_handshakes = max;
    }
    config
}

/// Fixed long-term keys when `--sighex`/`--prihex` are given (the missing one random).
fn keys(args: &RoadArgs) -> Option<(Signer, PrivateKey)> {
    if args.sighex.is_none() && args.prihex.is_none() {
        return None;
    }
    let signer = match &args.sighex {
        Some(seed) => Signer::from_seed(seed),
        None => Signer::generate(&mut OsRng),
    };
    let private = match &args.prihex {
        Some(key) => PrivateKey::from_bytes(key),
        None => PrivateKey::generate(&mut OsRng),
    };
    Some((signer, private))
}

/// Runs `raet road`; returns the exit status.
pub(crate) async fn run(args: RoadArgs) -> ExitCode {
    let deadline = tokio::time::Instant::now() + args.traffic.timeout;
    let log = EventLog {
        enabled: args.events,
        start: Instant::now(),
    };
    let keep: Box<dyn Keep> = match &args.keep {
        Some(dir) => match DirKeep::open(dir.clone()) {
            Ok(keep) => Box::new(keep),
            Err(e) => {
                error!(error = %e, "cannot open the keep");
                log.always("error", json!({"error": e.to_string()}));
                return ExitCode::from(EXIT_FAILED);
            }
        },
        None => Box::new(MemKeep::new()),
    };
    let stack = match RoadStack::bind(config(&args), keys(&args), keep).await {
        Ok(stack) => stack,
        Err(e) => {
            error!(error = %e, "cannot start the road stack");
            log.always("error", json!({"error": e.to_string()}));
            return ExitCode::from(EXIT_FAILED);
        }
    };
    // Subscribe before anything can happen on the road.
    let events = stack.events();
    log.emit(
        "listening",
        json!({"name": stack.name(), "ha": stack.local_addr().to_string(), "main": args.main,
               "auto": format!("{:?}", args.auto).to_lowercase(),
               "verhex": stack.verify_key().to_hex(), "pubhex": stack.public_key().to_hex()}),
    );

    let mut helpers = JoinSet::new();
    let (stop_events, stopped) = oneshot::channel();
    let event_printer = args
        .events
        .then(|| tokio::spawn(print_events(stack.events(), stopped, log)));
    if let Some(delay) = args.accept_after {
        helpers.spawn(accept_pending(stack.clone(), stack.events(), delay, log));
    }
    if args.control {
        helpers.spawn(control(stack.clone(), log));
    }
    let (received_tx, received_rx) = watch::channel(0usize);
    let printer = spawn_printer(std::io::stdout(), received_tx);
    helpers.spawn(print_messages(stack.clone(), printer));

    let progress = Progress::default();
    let outcome = tokio::time::timeout_at(
        deadline,
        session(&stack, &args, events, received_rx.clone(), &progress, log),
    )
    .await;
    let summary = || {
        json!({"received": *received_rx.borrow(), "expected": args.traffic.expect,
               "sent": progress.sent.load(Ordering::Relaxed),
               "delivered": progress.delivered.load(Ordering::Relaxed)})
    };
    let code = match outcome {
        Ok(Ok(())) => {
            log.emit("done", summary());
            tokio::time::sleep(args.linger).await;
            EXIT_OK
        }
        Ok(Err(e)) => {
            error!(error = %e, "road session failed");
            log.always("error", json!({"error": e.to_string()}));
            EXIT_FAILED
        }
        Err(_) => {
            warn!(summary = %summary(), "timeout");
            log.always("timeout", summary());
            EXIT_TIMEOUT
        }
    };
    // Every event the session saw is printed (the one it stopped on included).
    let _ = stop_events.send(());
    if let Some(printer) = event_printer {
        if let Err(e) = printer.await {
            warn!(error = %e, "the event printer ended abnormally");
        }
    }
    log.emit("stats", json!({"stats": stack.stats().await}));
    helpers.abort_all();
    stack.shutdown().await;
    ExitCode::from(code)
}

/// Join (if asked), send every message, receive the expected ones.
async fn session(
    stack: &RoadStack,
    args: &RoadArgs,
    events: mpsc::UnboundedReceiver<Event>,
    mut received: watch::Receiver<usize>,
    progress: &Progress,
    log: EventLog,
) -> Result<(), StackError> {
    let joined = match args.join {
        Some(ha) => Some(join(stack, ha).await?),
        None => None,
    };
    // Each distinct message is encoded once; its --repeat copies share the bytes.
    let bodies = args
        .traffic
        .distinct()
        .iter()
        .map(|msg| body::encode(args.bk.into(), msg).map(Arc::<[u8]>::from))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| StackError::Road(RoadError::InvalidMessage(e.to_string())))?;
    let sending = async {
        if bodies.is_empty() || args.traffic.repeat == 0 {
            return Ok(());
        }
        let to = match joined {
            Some(uid) => uid,
            None => first_allowed(stack, events).await?,
        };
        let count = args.traffic.repeat.saturating_mul(bodies.len());
        info!(count, to, "messages sent");
        log.emit("sent", json!({"count": count, "to": to}));
        // A long --repeat goes through a bounded queue: memory stays flat (no future and no
        // reply channel per message of the whole run) and the road's window stays full.
        let mut pending = VecDeque::with_capacity(QUEUED_TRANSMITS);
        for body in (0..args.traffic.repeat).flat_map(|_| &bodies) {
            if pending.len() == QUEUED_TRANSMITS {
                if let Some(delivery) = pending.pop_front() {
                    delivery.await?;
                    progress.delivered.fetch_add(1, Ordering::Relaxed);
                }
            }
            pending.push_back(stack.transmit_encoded(to, Arc::clone(body)));
            progress.sent.fetch_add(1, Ordering::Relaxed);
        }
        for delivery in pending {
            delivery.await?;
            progress.delivered.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    };
    let receiving = async {
        // Only fails if the printer stopped, i.e. the stack is gone.
        received
            .wait_for(|&n| n >= args.traffic.expect)
            .await
            .map(|_| ())
            .map_err(|_| StackError::Closed)
    };
    tokio::try_join!(sending, receiving).map(|_| ())
}

/// Joins `ha`, retrying after failed attempts (the remote may not be up
/// yet); the caller's timeout bounds it. A rejection is final.
pub(crate) async fn join(stack: &RoadStack, ha: SocketAddr) -> Result<Uid, StackError> {
    loop {
        match stack.join(ha).await {
            Err(StackError::JoinFailed { uid, reason }) => {
                warn!(uid, %reason, %ha, "join failed; trying again");
            }
            Err(StackError::AllowFailed { uid, reason }) => {
                warn!(uid, %reason, %ha, "allow failed; trying again");
            }
            other => return other,
        }
    }
}

/// Waits until some remote is allowed (a responder sends to the first one).
async fn first_allowed(
    stack: &RoadStack,
    mut events: mpsc::UnboundedReceiver<Event>,
) -> Result<Uid, StackError> {
    // The subscription predates any allow: a remote allowed since is in the events.
    let remotes = stack.remotes().await;
    if let Some(remote) = remotes.iter().find(|r| r.allowed == Some(true)) {
        return Ok(remote.uid);
    }
    loop {
        match events.recv().await {
            Some(Event::Allowed { uid, .. }) => return Ok(uid),
            Some(_) => {}
            None => return Err(StackError::Closed),
        }
    }
}

/// Hands every received message to the printer thread (which prints it as a
/// JSON line on stdout and counts it): never a blocking write on the runtime. The sender
/// is told the message was delivered once it is written on stdout (not if stdout is
/// closed).
async fn print_messages(
    stack: RoadStack,
    printer: std::sync::mpsc::Sender<(String, Body, Option<AfterPrint>)>,
) {
    while let Some(((name, _uid, body), receipt)) = stack.recv_receipted().await {
        let after = receipt.map(|receipt| {
            let stack = stack.clone();
            Box::new(move |written: bool| match written {
                true => stack.taken(receipt),
                false => stack.refused(receipt),
            }) as AfterPrint
        });
        if printer.send((name, body, after)).is_err() {
            return;
        }
    }
}

/// `--events`: prints the road's events on stderr (a rejection says who rejected, `"by":
/// "us"` or `"them"`, as the reference peer does).
/// Once `stop` fires, prints what is queued and returns.
async fn print_events(
    mut events: mpsc::UnboundedReceiver<Event>,
    mut stop: oneshot::Receiver<()>,
    log: EventLog,
) {
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Some(event) => log.road_event(&event),
                None => return,
            },
            _ = &mut stop => break,
        }
    }
    while let Ok(event) = events.try_recv() {
        log.road_event(&event);
    }
}

/// An operator decision on a remote's keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Accept,
    Reject,
}

/// Applies `verdict` to the remote `name`; if the road does not know it
/// yet, tries again after each road event until it does.
async fn decide(
    stack: &RoadStack,
    events: &mut mpsc::UnboundedReceiver<Event>,
    verdict: Verdict,
    name: &str,
    log: EventLog,
) {
    loop {
        let result = match verdict {
            Verdict::Accept => stack.accept(name).await,
            Verdict::Reject => stack.reject(name).await,
        };
        match result {
            Ok(()) => {
                info!(name, ?verdict, "operator decision applied");
                match verdict {
                    Verdict::Accept => log.emit("accepted", json!({"name": name})),
                    Verdict::Reject => {
                        log.emit("rejected", json!({"name": name, "by": "operator"}))
                    }
                }
                return;
            }
            Err(StackError::Closed) => return,
            Err(e) => debug!(name, error = %e, "decision not applicable yet"),
        }
        if events.recv().await.is_none() {
            return;
        }
    }
}

/// `--accept-after`: accepts each pending remote `delay` after it pends.
async fn accept_pending(
    stack: RoadStack,
    mut events: mpsc::UnboundedReceiver<Event>,
    delay: Duration,
    log: EventLog,
) {
    while let Some(event) = events.recv().await {
        if let Event::Pending { name, .. } = event {
            let stack = stack.clone();
            let mut events = stack.events();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                decide(&stack, &mut events, Verdict::Accept, &name, log).await;
            });
        }
    }
}

/// `--control`: operator commands from stdin, "accept NAME" / "reject NAME".
async fn control(stack: RoadStack, log: EventLog) {
    // A plain thread, not tokio's stdin: a blocking read there would keep the
    // runtime (and the process) from shutting down while stdin stays open.
    let (tx, mut lines) = mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    while let Some(line) = lines.recv().await {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["accept", name] => {
                decide(&stack, &mut stack.events(), Verdict::Accept, name, log).await
            }
            ["reject", name] => {
                decide(&stack, &mut stack.events(), Verdict::Reject, name, log).await
            }
            [] => {}
            _ => log.always(
                "exception",
                json!({"error": format!("unknown control command: {line:?}")}),
            ),
        }
    }
}
