//! The run loop shared by `salt-raet-master` and `salt-raet-minion`: a road stack to the other
//! side, a lane (`<sock_dir>/raet/salt.manor.uxd`) for local processes, the [`RouteTable`]
//! between them, presence and status. A thin tokio shell: routing decisions are in
//! [`crate::route`], key decisions in [`crate::acceptance`].

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::Rng;
use serde_json::{json, Map, Value};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{broadcast, mpsc};
use tracing::{debug, error, info, warn};

use crate::acceptance::{Acceptor, Answer, AuthAct};
use crate::config::{CommonConfig, MasterConfig, MinionConfig};
use crate::envelope::{
    lane_dir, DstEstate, Envelope, LANE, MANOR, SHARE_PRESENCE, SHARE_REGISTER, SHARE_STATUS,
};
use crate::evbus::{BusEvent, EventBus};
use crate::identity::{check_binding, Identity, LocalParams};
use crate::pki::{self, KeyChange, KeyState, PkiWatcher};
use crate::route::{Action, RouteTable};
use raet::crypto::VerifyKey;
use raet::keep::{
    Acceptance, AutoMode, DirKeep, Keep, KeepError, LocalRecord, RemoteRecord, RoleRecord,
};
use raet::lane::{LaneError, LaneStack};
use raet::road::{Event, Presence, RemoteStatus, RoadConfig, Timers, Uid};
use raet::stack::{RoadStack, StackError};

/// First delay before a minion retries a failed join.
pub const JOIN_BACKOFF_MIN: Duration = Duration::from_millis(500);
/// Cap of the doubling join retry delay (each delay is jittered down to half of it).
pub const JOIN_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Delay before a minion whose join the master pended asks again (jittered down to half of
/// it). The master is up and only waiting for its operator: asking again at once keeps a
/// join open there nearly all the time, so that an accept completes it within a round trip
/// (a pended join ends after the joiner timeout, 5 s, on both sides). Not zero: the
/// master's side of the last join must have timed out first, or it refuses the new one.
pub const PENDED_RETRY: Duration = Duration::from_millis(250);
/// Delay before a rejected minion asks again (its key may have been accepted meanwhile).
pub const REJECTED_RETRY: Duration = Duration::from_secs(30);
/// Period of the master's full rescan of the pki directories (besides inotify).
pub const PKI_RESCAN: Duration = Duration::from_secs(5);
/// The tag of salt-key's events on Salt's master event bus.
pub const KEY_TAG: &str = "salt/key";
/// The tag of the master's key decisions (Salt's `_auth`).
pub const AUTH_TAG: &str = "salt/auth";
/// The tag of a presence change (`new`, `lost` lists).
pub const PRESENCE_CHANGE_TAG: &str = "salt/presence/change";
/// The tag of the periodic list of present minions.
pub const PRESENCE_PRESENT_TAG: &str = "salt/presence/present";
/// How long `status` waits for the daemon's answer.
pub const STATUS_TIMEOUT: Duration = Duration::from_secs(5);

/// Errors that stop a daemon.
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
    /// The lane failed.
    #[error("lane: {0}")]
    Lane(#[from] LaneError),
    /// The pki directories failed.
    #[error("pki: {0}")]
    Pki(#[from] pki::PkiError),
    /// Something else (address resolution, signals, status).
    #[error("{0}")]
    Other(String),
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

/// The master's keep: identity and remotes in a [`DirKeep`]; role (key) records only in
/// memory (a mirror of the road's, applied on the stack's keep thread), so that the pki
/// directories stay the only place keys are decided (every join after a start is decided
/// again from them). The daemon changes the road's records through the road only
/// (`accept`/`reject`/`forget_role`).
struct DecisionKeep {
    inner: DirKeep,
    roles: BTreeMap<String, RoleRecord>,
    pki: pki::Pki,
}

impl Keep for DecisionKeep {
    fn load_local(&self) -> Result<Option<LocalRecord>, KeepError> {
        self.inner.load_local()
    }
    fn save_local(&mut self, local: &LocalRecord) -> Result<(), KeepError> {
        self.inner.save_local(local)
    }
    fn load_remotes(&self) -> Result<Vec<RemoteRecord>, KeepError> {
        self.inner.load_remotes()
    }
    fn save_remote(&mut self, remote: &RemoteRecord) -> Result<(), KeepError> {
        self.inner.save_remote(remote)
    }
    fn remove_remote(&mut self, name: &str) -> Result<(), KeepError> {
        self.inner.remove_remote(name)
    }
    /// The road's role reads: it confirms a record before the record rejects a join request.
    /// A remembered rejection holds only while the key is still in `minions_rejected` (the
    /// operator may have accepted it, and the watcher not told us yet); else there is no
    /// record and the join is decided again (pending, then the daemon's decision).
    fn load_role(&self, role: &str) -> Result<Option<RoleRecord>, KeepError> {
        let stale = |r: &RoleRecord| {
            r.acceptance == Acceptance::Rejected
                && !matches!(self.pki.lookup(role), Ok(Some(key)) if key.state == KeyState::Rejected)
        };
        Ok(self.roles.get(role).filter(|r| !stale(r)).cloned())
    }
    fn save_role(&mut self, role: &RoleRecord) -> Result<(), KeepError> {
        self.roles.insert(role.role.clone(), role.clone());
        Ok(())
    }
    fn remove_role(&mut self, role: &str) -> Result<(), KeepError> {
        self.roles.remove(role);
        Ok(())
    }
    fn load_roles(&self) -> Result<Vec<RoleRecord>, KeepError> {
        Ok(self.roles.values().cloned().collect())
    }
}

/// What the daemon knows about a peer estate.
#[derive(Debug, Clone)]
struct Peer {
    uid: Option<Uid>,
    allowed: bool,
    presence: &'static str,
    last_seen: Option<SystemTime>,
    address: Option<SocketAddr>,
}

/// The master's key decisions from Salt's pki directories (native mode).
struct SaltKeys {
    acceptor: Acceptor,
    changes: mpsc::Receiver<KeyChange>,
    _watcher: PkiWatcher,
    /// The key state of each id as last applied to the road (the pki watcher and
    /// `salt/key` events may both report one change); also what `status` shows.
    applied: BTreeMap<String, Option<KeyState>>,
    /// Ids whose `salt/auth` accept was fired by the decision on their pending join; the
    /// join's completion fires it for all others (joins the road accepts from memory, and
    /// pending joins an operator accepted), as Salt fires one per successful `_auth`.
    accept_fired: BTreeSet<String>,
}

/// Master- or minion-specific inputs and state.
enum Side {
    Master {
        /// `None` in Salt-crypto mode: Salt's `_auth` owns the pki directories and the road
        /// decides from the keep alone (`raet_auto_accept`, default `once`).
        keys: Option<Box<SaltKeys>>,
        bus: Bus,
    },
    Minion {
        /// One per configured master, in configuration order.
        masters: Vec<Upstream>,
        /// The steps of the join loops, with the index of their master.
        joins: mpsc::UnboundedReceiver<(usize, JoinOutcome)>,
    },
}

/// One of a minion's masters and its join loop.
struct Upstream {
    /// The `master` entry (host, road port).
    host: String,
    port: u16,
    /// Its address once resolved.
    address: Option<SocketAddr>,
    /// Its road estate name once joined.
    estate: Option<String>,
    /// Asks its join loop to join again.
    rejoin: mpsc::UnboundedSender<()>,
    /// Where its join loop is (shown by `status`).
    join: JoinState,
    /// Join attempts so far.
    attempts: u64,
}

/// The master's use of Salt's event bus.
struct Bus {
    bus: EventBus,
    events: mpsc::Receiver<BusEvent>,
    /// `salt/presence/*` events are fired (Salt's `presence_events`), `salt/presence/present`
    /// every tick of this interval (Salt's `loop_interval`).
    presence: Option<tokio::time::Interval>,
}

/// A step of one of the minion's join loops.
#[derive(Debug)]
enum JoinOutcome {
    Resolved(SocketAddr),
    Attempt,
    Joined(Uid),
    Rejected { retrying: bool },
}

/// Where one of the minion's join loops is (declared from the most to the least connected:
/// the minion's overall state is the first one any master is in).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum JoinState {
    /// Joined.
    Joined,
    /// Joining (or waiting to retry a failed join).
    Joining,
    /// Rejected; asks again every [`REJECTED_RETRY`] (`rejected_retry: True`).
    RejectedRetrying,
    /// Rejected; waits for SIGHUP or a restart.
    Rejected,
}

impl JoinState {
    fn as_str(self) -> &'static str {
        match self {
            JoinState::Joining => "joining",
            JoinState::Joined => "joined",
            JoinState::Rejected => "rejected",
            JoinState::RejectedRetrying => "rejected_retrying",
        }
    }
}

/// A message the road could not deliver: the message, its estate, why.
type Failure = (Envelope, String, String);

/// A running daemon.
struct Daemon {
    own: String,
    road: RoadStack,
    lane: Arc<LaneStack>,
    table: RouteTable,
    peers: BTreeMap<String, Peer>,
    side: Side,
    /// Messages the road could not deliver: (message, estate, reason).
    failures: mpsc::UnboundedSender<Failure>,
    failures_rx: mpsc::UnboundedReceiver<Failure>,
    /// `raet_salt_crypto`: Salt's own channels run on top (shown by `status`).
    salt_crypto: bool,
}

/// Runs the master daemon until SIGTERM or SIGINT.
pub async fn run_master(config: MasterConfig) -> Result<(), DaemonError> {
    let own = config.id.clone();
    let ha = SocketAddr::new(config.interface, config.common.raet_port);
    let mut dir_keep = DirKeep::open(config.common.keep_dir())?;
    let identity = Identity::load_or_create(
        &mut dir_keep,
        LocalParams {
            name: &own,
            ha,
            main: true,
            kind: 0,
        },
        &mut rand::rngs::OsRng,
    )?;
    let mut road_config = RoadConfig::new(own.clone(), ha);
    road_config.main = true;
    // A minion that rejoins after losing its session (or after our restart) comes with a
    // new uid for us: let the road update it; its keys are still decided as before.
    road_config.mutable = true;
    // Keys are decided per role, minions judged by id: a joiner naming another minion as its
    // role would have its keys recorded for that minion, which would then be rejected.
    road_config.role_is_name = true;
    road_config.timers = presence_timers(config.common.raet_alive_period);
    let mode = config.auto_mode();
    let salt_crypto = config.common.raet_salt_crypto;
    let (keep, keys): (Box<dyn Keep>, _) = if salt_crypto {
        // The keep pins each minion's RAET keys (`once`): nothing is read from or written to
        // the pki directories, which hold Salt's RSA keys in this mode.
        road_config.auto = mode;
        (Box::new(dir_keep), None)
    } else {
        road_config.auto = AutoMode::Never;
        let (keep, keys) = salt_keys(&config, dir_keep)?;
        (Box::new(keep) as Box<dyn Keep>, Some(Box::new(keys)))
    };
    let subscribe: &[&str] = if salt_crypto { &[] } else { &[KEY_TAG] };
    let (bus, events) = EventBus::spawn(&config.common.sock_dir, subscribe);
    let presence = config.presence_events.then(|| {
        let mut ticker = tokio::time::interval_at(
            tokio::time::Instant::now() + config.loop_interval,
            config.loop_interval,
        );
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker
    });
    let road = RoadStack::bind(road_config, Some(identity.into_keys()), keep).await?;
    info!(id = %own, addr = %road.local_addr(), %mode, salt_crypto, "master road up");
    let side = Side::Master {
        keys,
        bus: Bus {
            bus,
            events,
            presence,
        },
    };
    Daemon::start(own, road, &config.common, side)
        .await?
        .run()
        .await
}

/// Native mode: the keep whose role records follow the [`Acceptor`]'s decisions from Salt's
/// pki directories, and the watcher of those directories.
fn salt_keys(
    config: &MasterConfig,
    dir_keep: DirKeep,
) -> Result<(DecisionKeep, SaltKeys), DaemonError> {
    let keep = DecisionKeep {
        inner: dir_keep,
        roles: BTreeMap::new(),
        pki: pki::Pki::existing(&config.common.pki_dir),
    };
    let acceptor = Acceptor::new(config)?;
    let initial = acceptor.pki().scan()?;
    let applied = initial
        .ids()
        .into_iter()
        .map(|id| {
            let state = initial.state_of(&id).map(|(s, _)| s);
            (id, state)
        })
        .collect();
    let (watcher, changes) = PkiWatcher::spawn(acceptor.pki().clone(), initial, PKI_RESCAN)?;
    let keys = SaltKeys {
        acceptor,
        changes,
        _watcher: watcher,
        applied,
        accept_fired: BTreeSet::new(),
    };
    Ok((keep, keys))
}

/// Runs the minion daemon until SIGTERM or SIGINT.
pub async fn run_minion(config: MinionConfig) -> Result<(), DaemonError> {
    let own = config.id.clone();
    let ha = SocketAddr::from(([0, 0, 0, 0], config.common.raet_port));
    let mut keep = DirKeep::open(config.common.keep_dir())?;
    let identity = Identity::load_or_create(
        &mut keep,
        LocalParams {
            name: &own,
            ha,
            main: false,
            kind: 0,
        },
        &mut rand::rngs::OsRng,
    )?;
    let mut road_config = RoadConfig::new(own.clone(), ha);
    road_config.auto = AutoMode::Once;
    road_config.timers = presence_timers(config.common.raet_alive_period);
    let road = RoadStack::bind(road_config, Some(identity.into_keys()), Box::new(keep)).await?;
    let masters = config.masters();
    info!(id = %own, addr = %road.local_addr(), masters = ?masters, salt_crypto = config.common.raet_salt_crypto, "minion road up");
    let (joins_tx, joins) = mpsc::unbounded_channel();
    let masters = masters
        .into_iter()
        .enumerate()
        .map(|(index, (host, port))| {
            let (rejoin, rejoin_rx) = mpsc::unbounded_channel();
            let join = JoinLoop {
                road: road.clone(),
                index,
                host: host.clone(),
                port,
                rejected_retry: config.rejected_retry,
                outcomes: joins_tx.clone(),
            };
            tokio::spawn(join.run(rejoin_rx));
            Upstream {
                host,
                port,
                address: None,
                estate: None,
                rejoin,
                join: JoinState::Joining,
                attempts: 0,
            }
        })
        .collect();
    let side = Side::Minion { masters, joins };
    Daemon::start(own, road, &config.common, side)
        .await?
        .run()
        .await
}

/// `host` resolved (IPv4 preferred).
async fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("cannot resolve master {host:?}: {e}"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| format!("master {host:?} has no address"))
}

/// A delay in `[d/2, d]` (spreads the rejoins of many minions).
pub(crate) fn jitter(d: Duration) -> Duration {
    d.mul_f64(rand::thread_rng().gen_range(0.5..=1.0))
}

/// How many `pend` answers to our joins the road has received (its `joiner_rx_pend` counter).
async fn pends_received(road: &RoadStack) -> u64 {
    road.stats()
        .await
        .get("joiner_rx_pend")
        .copied()
        .unwrap_or(0)
}

/// The join loop of one of the minion's masters (each master has its own: one down or
/// rejecting does not hold up the others).
struct JoinLoop {
    road: RoadStack,
    /// The master's index in the configuration (tagged on every outcome).
    index: usize,
    host: String,
    port: u16,
    rejected_retry: bool,
    outcomes: mpsc::UnboundedSender<(usize, JoinOutcome)>,
}

impl JoinLoop {
    /// Tells the daemon; false when it is gone.
    fn tell(&self, outcome: JoinOutcome) -> bool {
        self.outcomes.send((self.index, outcome)).is_ok()
    }

    /// Forgets the road's remote at `master` (any old session, or a rejecting master: no
    /// alives go to it until we join again).
    async fn forget(&self, master: SocketAddr) {
        for remote in self.road.remotes().await {
            if remote.ha == master {
                let _ = self.road.remove(remote.uid).await;
            }
        }
    }

    /// Whether this master pended the join begun at `started`: the road received a `pend`
    /// since (its counter passed `pends`) and heard this master since (another master's
    /// `pend` must not cut this one's backoff short).
    async fn pended(&self, master: SocketAddr, pends: u64, started: Instant) -> bool {
        let heard = self
            .road
            .remotes()
            .await
            .into_iter()
            .any(|r| r.ha == master && r.last_heard.is_some_and(|heard| heard >= started));
        heard && pends_received(&self.road).await > pends
    }

    /// Resolves the master, retrying with capped, jittered backoff (a name that does not
    /// resolve yet does not stop the minion or its other masters).
    async fn resolve(&self) -> Option<SocketAddr> {
        let mut backoff = JOIN_BACKOFF_MIN;
        loop {
            match resolve(&self.host, self.port).await {
                Ok(address) => return self.tell(JoinOutcome::Resolved(address)).then_some(address),
                Err(e) => warn!(error = %e, "master not resolved; retrying"),
            }
            tokio::time::sleep(jitter(backoff)).await;
            backoff = (backoff * 2).min(JOIN_BACKOFF_MAX);
        }
    }

    /// Joins the master (vacuously, any old session forgotten), retrying with capped,
    /// jittered backoff, or after [`PENDED_RETRY`] when the master pended the join (its
    /// operator has not accepted our key yet); after a success waits for a rejoin request.
    /// A rejected minion waits for a rejoin request (SIGHUP) too, unless `rejected_retry`
    /// (Salt's key) makes it ask again every [`REJECTED_RETRY`].
    async fn run(self, mut rejoin: mpsc::UnboundedReceiver<()>) {
        let Some(master) = self.resolve().await else {
            return;
        };
        let road = &self.road;
        let mut backoff = JOIN_BACKOFF_MIN;
        loop {
            self.forget(master).await;
            if !self.tell(JoinOutcome::Attempt) {
                return;
            }
            let pends = pends_received(road).await;
            let started = Instant::now();
            let delay = match road.join(master).await {
                Ok(uid) => {
                    backoff = JOIN_BACKOFF_MIN;
                    while rejoin.try_recv().is_ok() {}
                    if !self.tell(JoinOutcome::Joined(uid)) || rejoin.recv().await.is_none() {
                        return;
                    }
                    continue;
                }
                Err(StackError::Rejected { .. }) => {
                    self.forget(master).await;
                    let retrying = self.rejected_retry;
                    if !self.tell(JoinOutcome::Rejected { retrying }) {
                        return;
                    }
                    if retrying {
                        REJECTED_RETRY
                    } else {
                        // Rejoin requests from before the rejection are stale.
                        while rejoin.try_recv().is_ok() {}
                        if rejoin.recv().await.is_none() {
                            return;
                        }
                        continue;
                    }
                }
                Err(StackError::Closed) => return,
                Err(e) if self.pended(master, pends, started).await => {
                    debug!(%master, error = %e, "join pended by the master; asking again");
                    backoff = JOIN_BACKOFF_MIN;
                    PENDED_RETRY
                }
                Err(e) => {
                    // The road refuses a second remote of one name: two masters, one `id`.
                    if e.to_string().contains("name already used") {
                        warn!(%master, error = %e, "another master has this master's id: give each master its own `id`; retrying");
                    } else {
                        debug!(%master, error = %e, "join failed; retrying");
                    }
                    let d = backoff;
                    backoff = (backoff * 2).min(JOIN_BACKOFF_MAX);
                    d
                }
            };
            tokio::time::sleep(jitter(delay)).await;
        }
    }
}

fn presence_word(presence: Presence) -> &'static str {
    match presence {
        Presence::Joined | Presence::Allowed => "new",
        Presence::Alive => "present",
        Presence::Lost => "lost",
    }
}

fn epoch_secs(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Daemon {
    async fn start(
        own: String,
        road: RoadStack,
        common: &CommonConfig,
        side: Side,
    ) -> Result<Daemon, DaemonError> {
        let sock_dir = &common.sock_dir;
        let dir = lane_dir(sock_dir);
        let lane = match LaneStack::bind(&dir, LANE, MANOR).await {
            Ok(lane) => lane,
            Err(e) => {
                road.shutdown().await;
                return Err(e.into());
            }
        };
        info!(path = %lane.path().display(), "lane up");
        let (failures, failures_rx) = mpsc::unbounded_channel();
        // A minion's Salt processes address their master by share alone (`req`).
        let table = match side {
            Side::Master { .. } => RouteTable::new(),
            Side::Minion { .. } => RouteTable::with_upstream(),
        };
        Ok(Daemon {
            own,
            road,
            lane: Arc::new(lane),
            table,
            peers: BTreeMap::new(),
            side,
            failures,
            failures_rx,
            salt_crypto: common.raet_salt_crypto,
        })
    }

    async fn run(mut self) -> Result<(), DaemonError> {
        let signal_err = |e: std::io::Error| DaemonError::Other(format!("signals: {e}"));
        let mut term = signal(SignalKind::terminate()).map_err(signal_err)?;
        let mut int = signal(SignalKind::interrupt()).map_err(signal_err)?;
        let mut hup = signal(SignalKind::hangup()).map_err(signal_err)?;
        let mut events = self.road.events();
        let road = self.road.clone();
        let lane = Arc::clone(&self.lane);
        loop {
            tokio::select! {
                _ = term.recv() => { info!("SIGTERM: shutting down"); break; }
                _ = int.recv() => { info!("SIGINT: shutting down"); break; }
                _ = hup.recv() => self.on_hangup(),
                received = road.recv() => match received {
                    Some((from, _uid, body)) => {
                        self.seen(&from);
                        let action = self.table.from_road(&self.own, &from, &body);
                        self.execute(action).await;
                    }
                    None => break,
                },
                event = events.recv() => match event {
                    Ok(event) => self.on_event(event).await,
                    Err(broadcast::error::RecvError::Lagged(n)) => warn!(n, "road events lost"),
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                message = lane.recv() => match message {
                    Ok((yard, body)) => {
                        let peers = self.allowed_peers();
                        let action = self.table.from_lane(&self.own, &yard, &body, &peers);
                        self.execute(action).await;
                    }
                    Err(e) => { error!(error = %e, "lane stopped"); break; }
                },
                Some((env, estate, reason)) = self.failures_rx.recv() => {
                    let peers = self.allowed_peers();
                    let action = self.table.failover(&self.own, env, &estate, &reason, &peers);
                    self.execute(action).await;
                }
                input = side_input(&mut self.side) => self.on_side(input).await,
            }
        }
        self.road.clone().shutdown().await;
        info!("stopped");
        Ok(())
    }

    /// SIGHUP: a rejected minion asks the masters that rejected it again (its key may have
    /// been accepted).
    fn on_hangup(&mut self) {
        let mut asked = false;
        if let Side::Minion { masters, .. } = &mut self.side {
            for master in masters.iter_mut().filter(|m| m.join == JoinState::Rejected) {
                info!(master = %master.host, "SIGHUP: joining the master again");
                master.join = JoinState::Joining;
                let _ = master.rejoin.send(());
                asked = true;
            }
        }
        if !asked {
            info!("SIGHUP: nothing to do");
        }
    }

    fn allowed_peers(&self) -> BTreeSet<String> {
        self.peers
            .iter()
            .filter(|(_, p)| p.allowed && p.uid.is_some())
            .map(|(n, _)| n.clone())
            .collect()
    }

    fn peer(&mut self, name: &str) -> &mut Peer {
        self.peers.entry(name.to_owned()).or_insert(Peer {
            uid: None,
            allowed: false,
            presence: "unknown",
            last_seen: None,
            address: None,
        })
    }

    fn seen(&mut self, name: &str) {
        self.peer(name).last_seen = Some(SystemTime::now());
    }

    /// A message from our [`MANOR`] share `share` to local yard `yard`.
    fn manor_envelope(&self, yard: &str, share: &str, load: Map<String, Value>) -> Envelope {
        Envelope {
            src: [
                Some(self.own.clone()),
                Some(MANOR.into()),
                Some(share.into()),
            ],
            dst_estate: DstEstate::Local,
            dst_yard: Some(yard.to_owned()),
            dst_share: Some(share.to_owned()),
            load,
        }
    }

    /// Carries out routing actions (an undeliverable local message turns into an error).
    async fn execute(&mut self, action: Action) {
        let mut work = vec![action];
        while let Some(action) = work.pop() {
            match action {
                Action::Registered(yard) => {
                    debug!(%yard, "yard registered");
                    let mut load = Map::new();
                    load.insert("registered".into(), Value::Bool(true));
                    load.insert("estate".into(), Value::String(self.own.clone()));
                    let env = self.manor_envelope(&yard, SHARE_REGISTER, load);
                    work.push(Action::Local(yard, env));
                }
                Action::Status(yard) => {
                    let status = self.status().await;
                    let env = self.manor_envelope(&yard, SHARE_STATUS, status);
                    if let Err(e) = self.lane.send(&yard, &env.to_body()).await {
                        debug!(%yard, error = %e, "status reply not delivered");
                    }
                }
                Action::Road(estates, env) => {
                    debug!(?estates, src = ?env.src, "to the road");
                    for estate in estates {
                        self.transmit(&estate, &env);
                    }
                }
                Action::Local(yard, env) => {
                    debug!(%yard, src = ?env.src, "to local yard");
                    if let Err(e) = self.lane.send(&yard, &env.to_body()).await {
                        // A full queue (the yard stopped reading) costs one bounded wait,
                        // then the message is undeliverable like a gone yard's.
                        if matches!(e, LaneError::QueueFull { .. }) {
                            warn!(%yard, error = %e, "lane delivery failed");
                        } else {
                            debug!(%yard, error = %e, "lane delivery failed");
                        }
                        self.table.forget(&yard);
                        work.push(self.table.undelivered(&self.own, &yard, env));
                    }
                }
                Action::Drop(kind) => debug!(kind = kind.code(), "message dropped"),
            }
        }
    }

    /// Sends `env` to `estate` in the background; a failure comes back as an error envelope.
    fn transmit(&mut self, estate: &str, env: &Envelope) {
        let Some(uid) = self.peers.get(estate).and_then(|p| p.uid) else {
            let reason = format!("estate {estate:?} is not joined");
            let _ = self.failures.send((env.clone(), estate.to_owned(), reason));
            return;
        };
        let sending = self.road.transmit(uid, env.to_body());
        let failures = self.failures.clone();
        let env = env.clone();
        let estate = estate.to_owned();
        tokio::spawn(async move {
            if let Err(e) = sending.await {
                let reason = format!("to {estate:?}: {e}");
                let _ = failures.send((env, estate, reason));
            }
        });
    }

    async fn on_event(&mut self, event: Event) {
        match event {
            Event::Pending {
                name,
                verhex,
                pubhex,
                ..
            } => self.on_pending(&name, &verhex, &pubhex).await,
            Event::Joined { uid, name } => self.on_joined(uid, &name).await,
            Event::Allowed { uid, name } => {
                info!(remote = %name, "joined and allowed");
                let address = self
                    .road
                    .remotes()
                    .await
                    .into_iter()
                    .find(|r| r.uid == uid)
                    .map(|r| r.ha);
                let peer = self.peer(&name);
                peer.uid = Some(uid);
                peer.allowed = true;
                peer.address = address;
                self.seen(&name);
                self.presence(&name, Presence::Allowed).await;
            }
            Event::Presence { name, presence, .. } => {
                if presence != Presence::Lost {
                    self.seen(&name);
                }
                let allowed = self.peers.get(&name).is_some_and(|p| p.allowed);
                // Joined/Allowed are told once, by `Event::Allowed` ("new").
                if matches!(presence, Presence::Joined | Presence::Allowed)
                    || (presence == Presence::Alive && !allowed)
                {
                    return;
                }
                self.presence(&name, presence).await;
                if presence == Presence::Lost {
                    self.drop_session(&name).await;
                }
            }
            // Only a rejection of the peer's own session ends it: a rejected join naming
            // another uid (or a `KeysRejected` join claiming its name) leaves it alone.
            Event::Rejected { uid, name } | Event::Removed { uid, name } => {
                if let Some(peer) = self.peers.get_mut(&name) {
                    if peer.uid.is_none() || peer.uid == Some(uid) {
                        peer.allowed = false;
                        peer.uid = None;
                    }
                }
                self.forget_if_deleted(&name);
            }
            Event::KeysRejected {
                uid,
                name,
                from,
                verhex,
                pubhex,
                ..
            } => {
                warn!(remote = %name, uid, %from,
                    "a join with other keys than the accepted ones was rejected; the session stays");
                self.deny_other_key(&name, &verhex, &pubhex);
            }
            _ => {}
        }
    }

    /// Forgets the peer row of `name` once the pki directories have no key for it (native
    /// master): a deleted minion vanishes from `status`.
    fn forget_if_deleted(&mut self, name: &str) {
        let Side::Master {
            keys: Some(keys), ..
        } = &self.side
        else {
            return;
        };
        if matches!(key_state(keys.acceptor.pki(), name), Ok(None))
            && self.peers.remove(name).is_some()
        {
            debug!(remote = %name, "no key left: forgotten");
        }
    }

    /// Tells the yards registered for share `presence`.
    async fn presence(&mut self, name: &str, presence: Presence) {
        let word = presence_word(presence);
        if let Some(peer) = self.peers.get_mut(name) {
            if peer.presence == word {
                return;
            }
            peer.presence = word;
        }
        info!(remote = %name, presence = word, "presence");
        if self.presence_events() {
            let (new, lost): (Vec<&str>, Vec<&str>) = match presence {
                Presence::Lost => (vec![], vec![name]),
                _ => (vec![name], vec![]),
            };
            self.fire(PRESENCE_CHANGE_TAG, json!({"new": new, "lost": lost}));
        }
        for yard in self.table.yards_for(SHARE_PRESENCE) {
            let load = json!({"change": word, "id": name});
            let load = load.as_object().cloned().unwrap_or_default();
            let env = self.manor_envelope(&yard, SHARE_PRESENCE, load);
            self.execute(Action::Local(yard, env)).await;
        }
    }

    /// A lost peer's session is dropped: the master forgets it (it rejoins and is decided
    /// again), the minion rejoins its master.
    async fn drop_session(&mut self, name: &str) {
        let uid = self.peers.get(name).and_then(|p| p.uid);
        if let Some(peer) = self.peers.get_mut(name) {
            peer.allowed = false;
            peer.uid = None;
        }
        match &self.side {
            Side::Master { keys, .. } => {
                // Native mode: decided again at its next join. Salt-crypto mode: the keep's
                // pinned keys stay.
                if keys.is_some() {
                    let _ = self.road.forget_role(name).await;
                }
                if let Some(uid) = uid {
                    let _ = self.road.remove(uid).await;
                }
            }
            Side::Minion { masters, .. } => {
                let lost = masters.iter().filter(|m| m.estate.as_deref() == Some(name));
                for master in lost {
                    let _ = master.rejoin.send(());
                }
            }
        }
    }

    /// A minion's keys (as offered in its join) await a decision: Salt's rules decide, from
    /// the pki directories.
    async fn on_pending(&mut self, name: &str, verhex: &str, pubhex: &str) {
        let Side::Master {
            keys: Some(keys), ..
        } = &mut self.side
        else {
            return;
        };
        let SaltKeys {
            acceptor,
            applied,
            accept_fired,
            ..
        } = keys.as_mut();
        let (answer, auth) = match check_binding(verhex, pubhex) {
            Err(e) => {
                warn!(remote = %name, error = %e, "join refused: keys not bound");
                (Answer::Reject, None)
            }
            Ok(key) => {
                let pem = pki::pem_from_verify_key(&key);
                match acceptor.join(name, &pem) {
                    Ok(decision) => {
                        // The road acts on the files' state now: later moves of the key
                        // are changes against it.
                        match key_state(acceptor.pki(), name) {
                            Ok(state) => {
                                applied.insert(name.to_owned(), state);
                            }
                            Err(e) => warn!(remote = %name, error = %e, "cannot read the key"),
                        }
                        if decision.act == AuthAct::Accept {
                            accept_fired.insert(name.to_owned());
                        }
                        (decision.answer, Some((decision.act, pem)))
                    }
                    Err(e) => {
                        warn!(remote = %name, error = %e, "join refused");
                        (Answer::Reject, None)
                    }
                }
            }
        };
        // Salt's `_auth` fires its decision on the master event bus.
        if let Some((act, pem)) = auth {
            self.fire_auth(act, name, &pem);
        }
        let result = match answer {
            Answer::Accept => self.road.accept(name).await,
            Answer::Reject => self.road.reject(name).await,
            Answer::Pend => Ok(()),
        };
        if let Err(e) = result {
            warn!(remote = %name, error = %e, "key decision not applied");
        }
    }

    /// A join offered another key for an accepted minion (native mode): Salt's `_auth`
    /// denies it (`minions_denied/<id>`, `salt/auth` act `denied`) whether or not the minion's
    /// session is open. Nothing else is written for a join the road already rejected.
    fn deny_other_key(&mut self, name: &str, verhex: &str, pubhex: &str) {
        let Side::Master {
            keys: Some(keys), ..
        } = &mut self.side
        else {
            return;
        };
        let acceptor = &mut keys.acceptor;
        if !matches!(
            key_state(acceptor.pki(), name),
            Ok(Some(KeyState::Accepted))
        ) {
            return;
        }
        let pem = match check_binding(verhex, pubhex) {
            Ok(key) => pki::pem_from_verify_key(&key),
            Err(e) => {
                warn!(remote = %name, error = %e, "rejected join: keys not bound");
                return;
            }
        };
        match acceptor.join(name, &pem) {
            Ok(decision) if decision.act == AuthAct::Denied => {
                self.fire_auth(AuthAct::Denied, name, &pem);
            }
            Ok(decision) => debug!(remote = %name, act = decision.act.as_str(), "rejected join"),
            Err(e) => warn!(remote = %name, error = %e, "rejected join: key not recorded"),
        }
    }

    /// A minion's join completed: fires `salt/auth` accept unless its decision did.
    async fn on_joined(&mut self, uid: Uid, name: &str) {
        let Side::Master {
            keys: Some(keys), ..
        } = &mut self.side
        else {
            return;
        };
        if keys.accept_fired.remove(name) {
            return;
        }
        let offered = self
            .road
            .remotes()
            .await
            .into_iter()
            .find(|r| r.uid == uid)
            .map(|r| r.verhex);
        match offered.map(|verhex| VerifyKey::from_hex(&verhex)) {
            Some(Ok(key)) => self.fire_auth(AuthAct::Accept, name, &pki::pem_from_verify_key(&key)),
            _ => warn!(remote = %name, "joined without keys on record"),
        }
    }

    /// Fires Salt's `salt/auth` event.
    fn fire_auth(&self, act: AuthAct, name: &str, pem: &str) {
        let data = json!({"result": act.result(), "act": act.as_str(), "id": name, "pub": pem});
        self.fire(AUTH_TAG, data);
    }

    async fn on_side(&mut self, input: SideInput) {
        match input {
            SideInput::Key(change) => self.on_key_change(change).await,
            SideInput::Bus(event) => self.on_key_event(event).await,
            SideInput::Present => {
                let present: Vec<String> = self.allowed_peers().into_iter().collect();
                self.fire(PRESENCE_PRESENT_TAG, json!({ "present": present }));
            }
            SideInput::Join((index, outcome)) => self.on_join(index, outcome).await,
            SideInput::Closed => {}
        }
    }

    /// A step of the join loop of master `index` (minion only).
    async fn on_join(&mut self, index: usize, outcome: JoinOutcome) {
        let joined = match outcome {
            JoinOutcome::Joined(uid) => self
                .road
                .remotes()
                .await
                .into_iter()
                .find(|r| r.uid == uid)
                .map(|r| (uid, r.name, r.ha)),
            _ => None,
        };
        let Side::Minion { masters, .. } = &mut self.side else {
            return;
        };
        let Some(master) = masters.get_mut(index) else {
            return;
        };
        match outcome {
            JoinOutcome::Resolved(address) => {
                info!(master = %master.host, %address, "master resolved");
                master.address = Some(address);
            }
            JoinOutcome::Attempt => {
                master.attempts += 1;
                if master.join != JoinState::RejectedRetrying {
                    master.join = JoinState::Joining;
                }
            }
            JoinOutcome::Rejected { retrying } => {
                let address = master.address;
                if retrying {
                    master.join = JoinState::RejectedRetrying;
                    error!(master = %master.host, ?address, "the master rejected this minion's key; asking again later (rejected_retry)");
                } else {
                    master.join = JoinState::Rejected;
                    error!(master = %master.host, ?address, "the master rejected this minion's key; not asking again until SIGHUP or a restart");
                }
            }
            JoinOutcome::Joined(_) => master.join = JoinState::Joined,
        }
        if let Some((uid, name, ha)) = joined {
            master.estate = Some(name.clone());
            // Upstream messages prefer the masters in configuration order.
            let order = masters.iter().filter_map(|m| m.estate.clone()).collect();
            self.table.set_upstreams(order);
            let peer = self.peer(&name);
            peer.uid = Some(uid);
            peer.allowed = true;
            peer.address = Some(ha);
        }
    }

    /// Fires an event on Salt's master event bus (master only; `data` is a map).
    fn fire(&self, tag: &str, data: Value) {
        if let (Side::Master { bus, .. }, Value::Object(data)) = (&self.side, data) {
            bus.bus.fire(tag, data);
        }
    }

    /// Whether `salt/presence/*` events are fired.
    fn presence_events(&self) -> bool {
        matches!(&self.side, Side::Master { bus, .. } if bus.presence.is_some())
    }

    /// A `salt/key` event of salt-key: says *when* to look; the pki directories say what the
    /// decision is (an accept whose file is not in `minions/` accepts nothing).
    async fn on_key_event(&mut self, event: BusEvent) {
        let Side::Master {
            keys: Some(keys), ..
        } = &self.side
        else {
            return;
        };
        let SaltKeys {
            acceptor, applied, ..
        } = keys.as_ref();
        let field = |key: &str| event.data.get(key).and_then(Value::as_str);
        let (Some(act), Some(id)) = (field("act"), field("id")) else {
            debug!(data = %event.data, "salt/key event without act or id");
            return;
        };
        if !matches!(act, "accept" | "reject" | "delete") {
            return;
        }
        let state = match key_state(acceptor.pki(), id) {
            Ok(state) => state,
            Err(e) => {
                warn!(id, error = %e, "salt/key event: cannot read the key");
                return;
            }
        };
        info!(id, act, state = ?state, "salt/key event");
        let change = KeyChange {
            id: id.to_owned(),
            old: applied.get(id).copied().flatten(),
            new: state,
            key_changed: false,
        };
        self.on_key_change(change).await;
    }

    /// An operator decision made with salt-key (seen in the pki directories or announced by a
    /// `salt/key` event), applied once.
    async fn on_key_change(&mut self, change: KeyChange) {
        let Side::Master {
            keys: Some(keys), ..
        } = &mut self.side
        else {
            return;
        };
        let applied = &mut keys.applied;
        if !change.key_changed && applied.get(&change.id) == Some(&change.new) {
            debug!(id = %change.id, new = ?change.new, "key change already applied");
            return;
        }
        applied.insert(change.id.clone(), change.new);
        info!(id = %change.id, old = ?change.old, new = ?change.new, "key change");
        let keep_decision = matches!(change.new, Some(KeyState::Rejected));
        if !keep_decision {
            let _ = self.road.forget_role(&change.id).await;
        }
        let known = self
            .road
            .remotes()
            .await
            .into_iter()
            .any(|r| r.name == change.id);
        if !known {
            // Lost before it was deleted: nothing for the road to do.
            self.forget_if_deleted(&change.id);
            return;
        }
        let result = match change.new {
            Some(KeyState::Accepted) => self.road.accept(&change.id).await,
            Some(KeyState::Pending) => Ok(()),
            Some(KeyState::Rejected) | Some(KeyState::Denied) | None => {
                if self.peers.get(&change.id).is_some_and(|p| p.allowed) {
                    self.presence(&change.id, Presence::Lost).await;
                }
                let result = self.road.reject(&change.id).await;
                if !keep_decision {
                    let _ = self.road.forget_role(&change.id).await;
                }
                self.drop_session(&change.id).await;
                self.forget_if_deleted(&change.id);
                result
            }
        };
        if let Err(e) = result {
            warn!(id = %change.id, error = %e, "key change not applied");
        }
    }

    /// The `status` entry of one of a minion's masters.
    fn master_status(&self, master: &Upstream, remotes: &[RemoteStatus]) -> Value {
        let peer = master.estate.as_ref().and_then(|e| self.peers.get(e));
        let joined = remotes
            .iter()
            .any(|r| Some(r.ha) == master.address && r.joined == Some(true));
        let entry = match master.host.contains(':') {
            true => format!("[{}]:{}", master.host, master.port),
            false => format!("{}:{}", master.host, master.port),
        };
        json!({
            "master": entry,
            "address": master.address.map(|a| a.to_string()),
            "id": master.estate,
            "state": master.join.as_str(),
            "attempts": master.attempts,
            "joined": joined,
            "allowed": peer.is_some_and(|p| p.allowed),
            "presence": peer.map_or("unknown", |p| p.presence),
        })
    }

    /// The status answered on share `status`.
    async fn status(&mut self) -> Map<String, Value> {
        let now = (Instant::now(), SystemTime::now());
        let remotes = self.road.remotes().await;
        let mut rows: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
        // Native master: the key states as last applied (the pki watcher's scans, salt/key
        // events and our own decisions), not a scan of every key file per request.
        let (role, states) = match &self.side {
            Side::Master { keys, .. } => ("master", keys.as_ref().map(|k| k.applied.clone())),
            Side::Minion { .. } => ("minion", None),
        };
        if let Some(states) = &states {
            for (id, _) in states.iter().filter(|(_, state)| state.is_some()) {
                rows.entry(id.clone()).or_default();
            }
        }
        for (name, peer) in &self.peers {
            let row = rows.entry(name.clone()).or_default();
            row.insert("allowed".into(), json!(peer.allowed));
            row.insert("presence".into(), json!(peer.presence));
            row.insert("last_seen".into(), json!(peer.last_seen.map(epoch_secs)));
            row.insert("address".into(), json!(peer.address.map(|a| a.to_string())));
        }
        // The master hides remotes still named by their address (joins in progress); the
        // minion shows its master that way until the join completes.
        let shown = |name: &str| role == "minion" || !name.contains(':');
        for remote in remotes.iter().filter(|r| shown(&r.name)) {
            let row = rows.entry(remote.name.clone()).or_default();
            row.insert("joined".into(), json!(remote.joined == Some(true)));
            row.insert("address".into(), json!(remote.ha.to_string()));
            if let Some(heard) = remote.last_heard {
                let ago = now.0.saturating_duration_since(heard);
                row.insert(
                    "last_seen".into(),
                    json!(now.1.checked_sub(ago).map(epoch_secs)),
                );
            }
            if states.is_none() {
                let acceptance = remote.acceptance.map(|a| format!("{a:?}").to_lowercase());
                row.insert("acceptance".into(), json!(acceptance));
            }
        }
        let list: Vec<Value> = rows
            .into_iter()
            .map(|(id, mut row)| {
                if let Some(states) = &states {
                    let state = states.get(&id).copied().flatten().map(|s| s.to_string());
                    row.insert("acceptance".into(), json!(state));
                }
                for (key, default) in [
                    ("acceptance", Value::Null),
                    ("joined", json!(false)),
                    ("allowed", json!(false)),
                    ("presence", json!("unknown")),
                    ("last_seen", Value::Null),
                    ("address", Value::Null),
                ] {
                    row.entry(key).or_insert(default);
                }
                row.insert("id".into(), json!(id));
                Value::Object(row)
            })
            .collect();
        let mut out = Map::new();
        out.insert("estate".into(), json!(self.own));
        out.insert("role".into(), json!(role));
        out.insert("road".into(), json!(self.road.local_addr().to_string()));
        out.insert("salt_crypto".into(), json!(self.salt_crypto));
        out.insert("remotes".into(), Value::Array(list));
        let counters: Map<String, Value> = self
            .table
            .counters()
            .iter()
            .map(|(k, v)| ((*k).to_owned(), json!(v)))
            .collect();
        out.insert("routing".into(), Value::Object(counters));
        out.insert("road_counters".into(), json!(self.road.stats().await));
        out.insert("lane_counters".into(), json!(self.lane.stats()));
        match &self.side {
            Side::Master { bus, .. } => {
                let stats = serde_json::to_value(bus.bus.stats()).unwrap_or_default();
                out.insert("event_bus".into(), stats);
            }
            Side::Minion { masters, .. } => {
                // The minion as a whole: its best state over its masters.
                let state = masters.iter().map(|m| m.join).min();
                let attempts: u64 = masters.iter().map(|m| m.attempts).sum();
                out.insert(
                    "join".into(),
                    json!({"state": state.map(JoinState::as_str), "attempts": attempts}),
                );
                let list = masters
                    .iter()
                    .map(|m| self.master_status(m, &remotes))
                    .collect();
                out.insert("masters".into(), Value::Array(list));
            }
        }
        out
    }
}

/// An input specific to one side.
enum SideInput {
    Key(KeyChange),
    Bus(BusEvent),
    Present,
    Join((usize, JoinOutcome)),
    Closed,
}

/// The state of `id`'s key in the pki directories (`None`: no key).
fn key_state(pki: &pki::Pki, id: &str) -> Result<Option<KeyState>, pki::PkiError> {
    let key = pki.lookup(id)?;
    let denied = pki.denied(id)?;
    Ok(key.map(|k| k.state).or(denied.map(|_| KeyState::Denied)))
}

async fn side_input(side: &mut Side) -> SideInput {
    let input = match side {
        Side::Master { keys, bus } => {
            let changes = async {
                match keys.as_mut() {
                    Some(keys) => keys.changes.recv().await,
                    None => std::future::pending().await,
                }
            };
            let tick = async {
                match bus.presence.as_mut() {
                    Some(ticker) => ticker.tick().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                Some(change) = changes => Some(SideInput::Key(change)),
                Some(event) = bus.events.recv() => Some(SideInput::Bus(event)),
                _ = tick => Some(SideInput::Present),
                else => None,
            }
        }
        Side::Minion { joins, .. } => joins.recv().await.map(SideInput::Join),
    };
    match input {
        Some(input) => input,
        None => {
            // The channel's task ended: nothing more will come from it.
            std::future::pending::<()>().await;
            SideInput::Closed
        }
    }
}

/// Hands the yard socket at `path` of a root caller to the owner of its lane directory (a
/// daemon running as Salt's `user`), which could not send to it otherwise.
fn answerable_by_lane_owner(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt as _;
    let dir = std::fs::metadata(path.parent().unwrap_or(path))?;
    if nix::unistd::geteuid().is_root() && dir.uid() != 0 {
        std::os::unix::fs::lchown(path, Some(dir.uid()), Some(dir.gid()))?;
    }
    Ok(())
}

/// Asks the daemon whose lanes are in `sock_dir` for its status (a temporary yard on its
/// lane sends to share `status` of yard [`MANOR`]).
pub async fn query_status(sock_dir: &Path) -> Result<Map<String, Value>, DaemonError> {
    let yard = format!("status{}", std::process::id());
    let lane = LaneStack::bind(lane_dir(sock_dir), LANE, &yard).await?;
    if let Err(e) = answerable_by_lane_owner(lane.path()) {
        debug!(error = %e, "status yard not handed to the lane's owner");
    }
    let request = json!({"route": {"src": [null, yard, null], "dst": [null, MANOR, SHARE_STATUS]}, "load": {}});
    let request = request.as_object().cloned().unwrap_or_default();
    lane.send(MANOR, &request).await?;
    let (_, body) = tokio::time::timeout(STATUS_TIMEOUT, lane.recv())
        .await
        .map_err(|_| DaemonError::Other("no status answer from the daemon".into()))??;
    match body.get("load") {
        Some(Value::Object(load)) => Ok(load.clone()),
        _ => Err(DaemonError::Other("malformed status answer".into())),
    }
}

/// The human table of a status (one line per remote).
pub fn status_table(status: &Map<String, Value>) -> String {
    let text = |v: Option<&Value>| match v {
        None | Some(Value::Null) => "-".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => if *b { "yes" } else { "no" }.to_owned(),
        Some(other) => other.to_string(),
    };
    const REMOTE_WIDTHS: [usize; 6] = [24, 10, 7, 8, 9, 20];
    const MASTER_WIDTHS: [usize; 6] = [24, 17, 8, 8, 9, 24];
    let mut out = format!(
        "{} {} on {}\n",
        text(status.get("role")),
        text(status.get("estate")),
        text(status.get("road")),
    );
    let names = [
        "ID",
        "ACCEPTANCE",
        "JOINED",
        "ALLOWED",
        "PRESENCE",
        "LAST SEEN",
        "ADDRESS",
    ];
    out.push_str(&table_line(&REMOTE_WIDTHS, &names.map(str::to_owned)));
    let rows = status.get("remotes").and_then(Value::as_array);
    for row in rows.into_iter().flatten() {
        let last = match row.get("last_seen").and_then(Value::as_f64) {
            Some(t) => {
                let ago = epoch_secs(SystemTime::now()) - t;
                format!("{:.1}s ago", ago.max(0.0))
            }
            None => "-".to_owned(),
        };
        let mut cells: Vec<String> = ["id", "acceptance", "joined", "allowed", "presence"]
            .iter()
            .map(|key| text(row.get(*key)))
            .collect();
        cells.push(last);
        cells.push(text(row.get("address")));
        out.push_str(&table_line(&REMOTE_WIDTHS, &cells));
    }
    if let Some(masters) = status.get("masters").and_then(Value::as_array) {
        let keys = [
            "master", "state", "attempts", "allowed", "presence", "id", "address",
        ];
        let names = keys.map(str::to_uppercase);
        out.push_str(&table_line(&MASTER_WIDTHS, &names));
        for master in masters {
            let cells = keys.map(|key| text(master.get(key)));
            out.push_str(&table_line(&MASTER_WIDTHS, &cells));
        }
    }
    if let Some(join) = status.get("join") {
        out.push_str(&format!(
            "join: {} ({} attempts)\n",
            text(join.get("state")),
            text(join.get("attempts"))
        ));
    }
    out
}

/// One line of a status table: each cell left-aligned in its width (a space between), the
/// cells past the widths as they are.
fn table_line(widths: &[usize], cells: &[String]) -> String {
    let mut line = String::new();
    for (i, cell) in cells.iter().enumerate() {
        match widths.get(i) {
            Some(&width) => line.push_str(&format!("{cell:<width$} ")),
            None => line.push_str(cell),
        }
    }
    line.push('\n');
    line
}

/// Runs `daemon` on a tokio runtime; an error is one line on standard error and
/// [`crate::EXIT_FAILURE`].
pub fn run_daemon(
    program: &str,
    daemon: impl std::future::Future<Output = Result<(), DaemonError>>,
) -> std::process::ExitCode {
    let result = tokio::runtime::Runtime::new()
        .map_err(|e| DaemonError::Other(format!("runtime: {e}")))
        .and_then(|runtime| runtime.block_on(daemon));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{program}: {e}");
            std::process::ExitCode::from(crate::EXIT_FAILURE)
        }
    }
}

/// The `status` subcommand: asks the daemon whose lane is in `sock_dir` and prints its
/// status as a table or as JSON.
pub fn print_status(program: &str, sock_dir: &Path, as_json: bool) -> std::process::ExitCode {
    let sock_dir = sock_dir.to_owned();
    run_daemon(program, async move {
        let status = query_status(&sock_dir).await?;
        if as_json {
            println!("{}", Value::Object(status));
        } else {
            print!("{}", status_table(&status));
        }
        Ok(())
    })
}

/// The subcommands both daemons take.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Print the running daemon's view of its peers (acceptance, joined, allowed, presence,
    /// last seen, address), then exit.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}
