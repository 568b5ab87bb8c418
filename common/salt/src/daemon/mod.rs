//! The daemons' shared loop and what each side plugs into it.
//!
//! Both `salt-raet-master` and `salt-raet-minion` run one [`Daemon`]: a road stack to the
//! other side, a lane (`<sock_dir>/raet/salt.manor.uxd`) for local processes, the
//! [`RouteTable`](crate::route::RouteTable) between them, presence and status ([`run`]). What
//! differs is a [`Side`]: the master's key decisions and event bus live in the `master` crate,
//! the minion's upstream masters and join loops in the `minion` crate. The status a daemon
//! answers is typed ([`status`]), also as OpenMetrics ([`metrics`]).

mod core;
mod hold;
pub mod metrics;
mod notify;
mod run;
mod safety;
pub mod status;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use raet::crypto::{PrivateKey, Signer};
use raet::keep::{Keep, KeepError};
use raet::lane::LaneError;
use raet::road::{Event, Presence, RemoteStatus, RoadConfig, Timers, Uid};
use raet::stack::{RoadStack, StackError};
use rand::Rng;

use crate::config::{CommonConfig, Role};
use crate::pki;

pub use self::core::{DaemonCore, Effect, Failure, Peer, PRESENCE_CHANGE_TAG};
pub use run::{Daemon, Shared};
pub use status::{
    print_status, query_status, status_table, JoinSummary, MasterRow, RemoteRow, Status,
    StatusArgs, StatusFormat, DAEMON_VERSION,
};

/// Errors that stop a daemon (or its `status` command).
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The keep or identity is unusable.
    #[error("identity: {0}")]
    Identity(#[from] crate::identity::IdentityError),
    /// The keep failed.
    #[error("keep: {0}")]
    Keep(#[from] KeepError),
    /// The road stack failed to start.
    #[error("road: {0}")]
    Stack(#[from] StackError),
    /// The road's UDP socket could not be bound (the port in use, an address not ours).
    #[error("road: cannot listen on UDP {addr}: {source}")]
    Bind {
        /// The address of `interface` (master) and `raet_port`.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The lane failed.
    #[error("lane: {0}")]
    Lane(#[from] LaneError),
    /// The pki directories failed.
    #[error("pki: {0}")]
    Pki(#[from] pki::PkiError),
    /// The signal handlers could not be installed.
    #[error("signals: {0}")]
    Signals(std::io::Error),
    /// A thread of the daemon could not be started.
    #[error("cannot start a thread: {0}")]
    Thread(std::io::Error),
    /// The tokio runtime could not be started.
    #[error("runtime: {0}")]
    Runtime(std::io::Error),
    /// Nothing listens on the daemon's lane socket: no daemon runs with this `sock_dir`.
    #[error("no daemon answers on lane {}: {source}", path.display())]
    NoDaemon {
        /// The daemon's lane socket.
        path: PathBuf,
        /// What sending to it said (no such file, connection refused).
        source: std::io::Error,
    },
    /// The daemon's lane socket took the request but no answer came in time.
    #[error("no status answer within {:?} from the daemon on the lane in {}", status::STATUS_TIMEOUT, dir.display())]
    NoStatus {
        /// The lane directory.
        dir: PathBuf,
    },
    /// The daemon's status answer could not be read.
    #[error("malformed status answer: {0}")]
    BadStatus(String),
    /// A directory another local user could use to impersonate the daemon (its `sock_dir` or
    /// lane directory is owned by someone else or writable by group or others).
    #[error("{path}: {reason}; refusing to start")]
    UnsafeDir {
        /// The directory.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

impl DaemonError {
    /// The exit status of a daemon stopped by this error: [`crate::EXIT_BAD_CONFIG`] for what
    /// the operator must fix first (an unsafe directory), else [`crate::EXIT_FAILURE`].
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::UnsafeDir { .. } => crate::EXIT_BAD_CONFIG,
            _ => crate::EXIT_FAILURE,
        }
    }
}

/// What the master and the minion each add to the shared loop. Every hook gets the shared
/// state ([`Shared`]: road, lane, routing, peers) to act on.
// The daemon's future is driven by `block_on`, never spawned: no `Send` bound is needed.
#[allow(async_fn_in_trait)]
pub trait Side {
    /// An input of this side alone (key changes, bus events, join loop steps).
    type Input;
    /// Which daemon this is.
    const ROLE: Role;

    /// The next input of this side; pending for ever once none can come.
    async fn next_input(&mut self) -> Self::Input;
    /// Handles an input of this side.
    async fn on_input(&mut self, d: &mut Shared, input: Self::Input);
    /// A road event not handled by the shared loop, or one it handled and that this side may
    /// act on too (pending keys, completed joins, rejected keys).
    async fn on_event(&mut self, d: &mut Shared, event: &Event);
    /// A peer's session ended (lost, or dropped by a decision): the peer row is already
    /// updated; `uid` is the road uid it had.
    async fn on_session_dropped(&mut self, d: &mut Shared, name: &str, uid: Option<Uid>);
    /// SIGHUP.
    fn on_hangup(&mut self);
    /// Adds this side's part of the status: `rows` (by id) are the peers the shared loop
    /// knows, `status` the rest.
    fn status(
        &self,
        d: &Shared,
        remotes: &[RemoteStatus],
        rows: &mut std::collections::BTreeMap<String, RemoteRow>,
        status: &mut Status,
    );
}

/// Road timers for a presence period: an alive when a remote was silent for `period`, which
/// gives up after another `period` (a dead peer is lost within about two periods).
pub fn presence_timers(period: Duration) -> Timers {
    Timers {
        presence_period: period,
        aliver_timeout: period,
        alive_redo_min: period / 4,
        alive_redo_max: period / 2,
        ..Timers::default()
    }
}

/// A daemon's road timers: [`presence_timers`] of `raet_alive_period`, and messages that
/// wait (queued for a peer that is not allowed, or without an answer) at most
/// `raet_message_timeout`.
pub fn daemon_timers(common: &CommonConfig) -> Timers {
    Timers {
        message_timeout: common.raet_message_timeout,
        ..presence_timers(common.raet_alive_period)
    }
}

/// `timers` for a road that answers its peers' alives rather than sending its own: a presence
/// period half again as long as theirs, so that a peer's alive (every period) always comes
/// first. The master's: it initiates no alive to a minion that talks to it, and still loses
/// a silent one within about 2.5 periods.
pub fn answering(timers: Timers) -> Timers {
    Timers {
        presence_period: timers.presence_period * 3 / 2,
        ..timers
    }
}

/// Binds a daemon's road stack ([`RoadStack::bind`]); a socket that cannot be bound is a
/// [`DaemonError::Bind`] naming the address.
pub async fn bind_road(
    config: RoadConfig,
    keys: (Signer, PrivateKey),
    keep: Box<dyn Keep>,
) -> Result<RoadStack, DaemonError> {
    let addr = config.ha;
    RoadStack::bind(config, Some(keys), keep)
        .await
        .map_err(|e| match e {
            StackError::Io(source) => DaemonError::Bind { addr, source },
            e => DaemonError::Stack(e),
        })
}

/// A delay in `[d/2, d]` (spreads the retries of many daemons).
pub fn jitter(d: Duration) -> Duration {
    d.mul_f64(rand::thread_rng().gen_range(0.5..=1.0))
}

/// A delay in `[0, d]` (Salt's `random_reauth_delay`).
pub fn random_up_to(d: Duration) -> Duration {
    d.mul_f64(rand::thread_rng().gen_range(0.0..=1.0))
}

/// The word `status` and presence messages use for a presence.
pub fn presence_word(presence: Presence) -> &'static str {
    match presence {
        Presence::Joined | Presence::Allowed => "new",
        Presence::Alive => "present",
        Presence::Lost => "lost",
    }
}

/// Seconds since the epoch (0 before it).
pub(crate) fn epoch_secs(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Runs `daemon` on a tokio runtime; an error is one line on standard error and its
/// [`DaemonError::exit_code`].
pub fn run_daemon(
    program: &str,
    daemon: impl std::future::Future<Output = Result<(), DaemonError>>,
) -> std::process::ExitCode {
    let result = tokio::runtime::Runtime::new()
        .map_err(DaemonError::Runtime)
        .and_then(|runtime| runtime.block_on(daemon));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{program}: {e}");
            std::process::ExitCode::from(e.exit_code())
        }
    }
}

/// The subcommands both daemons take.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Print the running daemon's view of its peers (acceptance, joined, allowed, presence,
    /// last seen, address), then exit.
    Status(StatusArgs),
}
