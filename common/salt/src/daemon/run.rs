//! The loop both daemons run: road messages and events, lane messages, failed deliveries,
//! signals and the inputs of its [`Side`], routed by the [`RouteTable`]; and the state every
//! side shares ([`Shared`]: road, lane, routing, peers, presence).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use raet::lane::{LaneError, LaneStack};
use raet::road::{Event, Presence, Uid};
use raet::stack::RoadStack;
use serde_json::{json, Map, Value};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use super::hold::Hold;
use super::notify;
use super::safety::check_private_dir;
use super::status::{to_load, RemoteRow, Status, STATUS_VERSION};
use super::{epoch_secs, presence_word, DaemonError, Side};
use crate::config::{CommonConfig, Role};
use crate::envelope::{
    lane_dir, DstEstate, Envelope, ErrorKind, LANE, MANOR, SHARE_PRESENCE, SHARE_REGISTER,
    SHARE_STATUS,
};
use crate::evbus::EventBus;
use crate::route::{Action, RouteTable};

/// The tag of a presence change (`new`, `lost` lists).
pub(super) const PRESENCE_CHANGE_TAG: &str = "salt/presence/change";

/// What the daemon knows about a peer estate.
#[derive(Debug, Clone)]
pub struct Peer {
    /// Its road uid while it has a session.
    pub uid: Option<Uid>,
    /// A session is open.
    pub allowed: bool,
    /// The presence word last told (`new`, `present`, `lost`, `unknown`).
    pub presence: &'static str,
    /// When it was last heard from.
    pub last_seen: Option<SystemTime>,
    /// Its road address.
    pub address: Option<SocketAddr>,
}

/// A message the road could not deliver.
struct Failure {
    env: Envelope,
    /// The estate it was for.
    estate: String,
    /// The road uid it was sent to (none: the estate had no session).
    uid: Option<Uid>,
    reason: String,
    /// The deadline of its hold when it was sent from the [`Hold`].
    held_until: Option<Instant>,
}

/// The state both sides act on.
pub struct Shared {
    /// Our estate name.
    pub own: String,
    /// The road.
    pub road: RoadStack,
    lane: Arc<LaneStack>,
    /// Where messages go.
    pub table: RouteTable,
    /// The peers we know, by name.
    pub peers: BTreeMap<String, Peer>,
    /// Salt's master event bus (master only): presence changes are fired on it when
    /// `presence_events` is set.
    bus: Option<(EventBus, bool)>,
    failures: mpsc::UnboundedSender<Failure>,
    /// Yards that asked for the status (answered once the current input is handled).
    status_requests: Vec<String>,
    /// `raet_salt_crypto`: Salt's own channels run on top (shown by `status`).
    salt_crypto: bool,
    /// Upstream messages waiting for an upstream session (a minion's).
    hold: Hold,
}

/// A running daemon: the shared state and its side.
pub struct Daemon<S: Side> {
    shared: Shared,
    side: S,
    failures: mpsc::UnboundedReceiver<Failure>,
}

impl Shared {
    /// The peers with an open session.
    pub fn allowed_peers(&self) -> BTreeSet<String> {
        self.peers
            .iter()
            .filter(|(_, p)| p.allowed && p.uid.is_some())
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// The row of `name`, created when missing.
    pub fn peer(&mut self, name: &str) -> &mut Peer {
        self.peers.entry(name.to_owned()).or_insert(Peer {
            uid: None,
            allowed: false,
            presence: "unknown",
            last_seen: None,
            address: None,
        })
    }

    /// Records a session with `name` (uid `uid` at `address`).
    pub fn open_session(&mut self, name: &str, uid: Uid, address: Option<SocketAddr>) {
        let peer = self.peer(name);
        peer.uid = Some(uid);
        peer.allowed = true;
        peer.address = address;
    }

    /// Ends the session of `name` in its row; returns the uid it had.
    pub fn end_session(&mut self, name: &str) -> Option<Uid> {
        let peer = self.peers.get_mut(name)?;
        peer.allowed = false;
        peer.uid.take()
    }

    fn seen(&mut self, name: &str) {
        self.peer(name).last_seen = Some(SystemTime::now());
    }

    /// Fires an event on Salt's master event bus (nothing without one; `data` is a map).
    pub fn fire(&self, tag: &str, data: Value) {
        if let (Some((bus, _)), Value::Object(data)) = (&self.bus, data) {
            bus.fire(tag, data);
        }
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

    /// Carries out routing actions (an undeliverable local message turns into an error);
    /// status requests are queued for the loop, which knows the side.
    pub async fn execute(&mut self, action: Action) {
        self.execute_held(action, None).await;
    }

    /// [`Shared::execute`], where a message to hold again keeps the deadline of its first
    /// hold (`held_until`); one that cannot be held is answered with `send_failed`.
    async fn execute_held(&mut self, action: Action, held_until: Option<Instant>) {
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
                Action::Status(yard) => self.status_requests.push(yard),
                Action::Road(estates, env) => {
                    debug!(?estates, src = ?env.src, "to the road");
                    for estate in estates {
                        self.transmit(&estate, &env, None);
                    }
                }
                Action::Hold(env) => match self.hold.admit(held_until, Instant::now()) {
                    Ok(deadline) => {
                        self.hold.keep(env, deadline);
                        debug!(
                            held = self.hold.len(),
                            "message held for the next master session"
                        );
                    }
                    Err(why) => {
                        warn!(src = ?env.src, error = %why, "message for the master failed");
                        let reason = why.to_string();
                        work.push(self.table.error(
                            &self.own,
                            &env,
                            ErrorKind::SendFailed,
                            &reason,
                        ));
                    }
                },
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

    /// Sends `env` to `estate` in the background (`held_until`: the deadline of its hold when
    /// it comes from the [`Hold`]); a failure comes back to the loop.
    fn transmit(&mut self, estate: &str, env: &Envelope, held_until: Option<Instant>) {
        let Some(uid) = self.peers.get(estate).and_then(|p| p.uid) else {
            let _ = self.failures.send(Failure {
                env: env.clone(),
                estate: estate.to_owned(),
                uid: None,
                reason: format!("estate {estate:?} is not joined"),
                held_until,
            });
            return;
        };
        let sending = self.road.transmit(uid, env.to_body());
        let failures = self.failures.clone();
        let env = env.clone();
        let estate = estate.to_owned();
        tokio::spawn(async move {
            if let Err(e) = sending.await {
                let reason = format!("to {estate:?}: {e}");
                let _ = failures.send(Failure {
                    env,
                    estate,
                    uid: Some(uid),
                    reason,
                    held_until,
                });
            }
        });
    }

    /// A message the road could not deliver. An upstream message whose session ended while a
    /// new one with the same peer opened is sent again in the new one (within the hold
    /// limit from its first failure); others fail over, are held, or fail back to their
    /// sender ([`RouteTable::failover`]).
    async fn on_failure(&mut self, failure: Failure) {
        let Failure {
            env,
            estate,
            uid,
            reason,
            held_until,
        } = failure;
        let now = Instant::now();
        let current = self
            .peers
            .get(&estate)
            .filter(|p| p.allowed)
            .and_then(|p| p.uid);
        let renewed = uid.is_some() && current.is_some() && current != uid;
        if renewed && self.table.goes_upstream(&self.own, &env) {
            let deadline = held_until.unwrap_or_else(|| self.hold.deadline(now));
            if deadline > now {
                debug!(remote = %estate, reason, "sent again in the new session");
                self.transmit(&estate, &env, Some(deadline));
                return;
            }
        }
        let peers = self.allowed_peers();
        let action = self
            .table
            .failover(&self.own, env, &estate, &reason, &peers);
        self.execute_held(action, held_until).await;
    }

    /// Sends every held message to `estate`, which was just allowed (the upstream).
    fn release_held(&mut self, estate: &str) {
        if self.hold.is_empty() {
            return;
        }
        let held = self.hold.release();
        info!(remote = %estate, messages = held.len(), "sending the messages held for the master");
        for (env, deadline) in held {
            self.transmit(estate, &env, Some(deadline));
        }
    }

    /// Answers the held messages whose deadline passed with `send_failed`.
    async fn expire_held(&mut self) {
        for env in self.hold.expire(Instant::now()) {
            warn!(src = ?env.src, "no master session within raet_message_timeout: message failed");
            let reason = "no master was allowed within raet_message_timeout";
            let action = self
                .table
                .error(&self.own, &env, ErrorKind::SendFailed, reason);
            self.execute(action).await;
        }
    }

    /// Tells the yards registered for share `presence` (and Salt's event bus, with
    /// `presence_events`) that `name`'s presence changed; nothing when it did not.
    pub async fn presence(&mut self, name: &str, presence: Presence) {
        let word = presence_word(presence);
        if let Some(peer) = self.peers.get_mut(name) {
            if peer.presence == word {
                return;
            }
            peer.presence = word;
        }
        info!(remote = %name, presence = word, "presence");
        if self.bus.as_ref().is_some_and(|(_, events)| *events) {
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
}

impl<S: Side> Daemon<S> {
    /// Binds the lane of `common`'s `sock_dir` next to `road` (shut down when that fails):
    /// `sock_dir` and the lane directory must be ours and not writable by others.
    /// `bus`: Salt's master event bus and whether presence changes are fired on it.
    pub async fn start(
        own: String,
        road: RoadStack,
        common: &CommonConfig,
        bus: Option<(EventBus, bool)>,
        side: S,
    ) -> Result<Self, DaemonError> {
        let dir = lane_dir(&common.sock_dir);
        let uid = nix::unistd::geteuid().as_raw();
        let checked =
            check_private_dir(&common.sock_dir, uid).and_then(|()| check_private_dir(&dir, uid));
        if let Err(e) = checked {
            road.shutdown().await;
            return Err(e);
        }
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
        let table = match S::ROLE {
            Role::Master => RouteTable::new(),
            Role::Minion => RouteTable::with_upstream(),
        };
        let shared = Shared {
            own,
            road,
            lane: Arc::new(lane),
            table,
            peers: BTreeMap::new(),
            bus,
            failures,
            status_requests: Vec::new(),
            salt_crypto: common.raet_salt_crypto,
            hold: Hold::new(common.raet_message_timeout),
        };
        Ok(Self {
            shared,
            side,
            failures: failures_rx,
        })
    }

    /// Runs until SIGTERM or SIGINT (or the road or lane stops).
    pub async fn run(mut self) -> Result<(), DaemonError> {
        let mut term = signal(SignalKind::terminate()).map_err(DaemonError::Signals)?;
        let mut int = signal(SignalKind::interrupt()).map_err(DaemonError::Signals)?;
        let mut hup = signal(SignalKind::hangup()).map_err(DaemonError::Signals)?;
        let mut events = self.shared.road.events();
        let road = self.shared.road.clone();
        let lane = Arc::clone(&self.shared.lane);
        notify::ready();
        loop {
            let held_until = self.shared.hold.next_deadline();
            tokio::select! {
                _ = term.recv() => { info!("SIGTERM: shutting down"); break; }
                _ = int.recv() => { info!("SIGINT: shutting down"); break; }
                _ = hup.recv() => self.side.on_hangup(),
                received = road.recv_receipted() => match received {
                    Some(((from, _uid, body), receipt)) => {
                        self.shared.seen(&from);
                        let action = self.shared.table.from_road(&self.shared.own, &from, &body);
                        self.shared.execute(action).await;
                        // Handled (handed to the lane, or answered with an error): only
                        // now is the sender told it was delivered.
                        if let Some(receipt) = receipt {
                            road.taken(receipt);
                        }
                    }
                    None => break,
                },
                event = events.recv() => match event {
                    Some(event) => self.on_event(event).await,
                    None => break,
                },
                message = lane.recv() => match message {
                    Ok((yard, body)) => {
                        let peers = self.shared.allowed_peers();
                        let action = self.shared.table.from_lane(&self.shared.own, &yard, &body, &peers);
                        self.shared.execute(action).await;
                    }
                    Err(e) => { error!(error = %e, "lane stopped"); break; }
                },
                Some(failure) = self.failures.recv() => self.shared.on_failure(failure).await,
                () = sleep_until_some(held_until), if held_until.is_some() => self.shared.expire_held().await,
                input = self.side.next_input() => self.side.on_input(&mut self.shared, input).await,
            }
            self.answer_status_requests().await;
        }
        notify::stopping();
        self.shared.road.clone().shutdown().await;
        info!("stopped");
        Ok(())
    }

    async fn answer_status_requests(&mut self) {
        if self.shared.status_requests.is_empty() {
            return;
        }
        let status = to_load(&self.status().await);
        for yard in std::mem::take(&mut self.shared.status_requests) {
            let env = self
                .shared
                .manor_envelope(&yard, SHARE_STATUS, status.clone());
            if let Err(e) = self.shared.lane.send(&yard, &env.to_body()).await {
                debug!(%yard, error = %e, "status reply not delivered");
            }
        }
    }

    async fn on_event(&mut self, event: Event) {
        let d = &mut self.shared;
        match &event {
            Event::Allowed { uid, name } => {
                info!(remote = %name, "joined and allowed");
                let address = d.road.remote(*uid).await.map(|r| r.ha);
                d.open_session(name, *uid, address);
                d.release_held(name);
                d.seen(name);
                d.presence(name, Presence::Allowed).await;
            }
            Event::Presence { name, presence, .. } => {
                let presence = *presence;
                if presence != Presence::Lost {
                    d.seen(name);
                }
                let allowed = d.peers.get(name).is_some_and(|p| p.allowed);
                // Joined/Allowed are told once, by `Event::Allowed` ("new").
                if matches!(presence, Presence::Joined | Presence::Allowed)
                    || (presence == Presence::Alive && !allowed)
                {
                    return;
                }
                d.presence(name, presence).await;
                if presence == Presence::Lost {
                    let uid = d.end_session(name);
                    self.side.on_session_dropped(d, name, uid).await;
                }
            }
            // Only a rejection of the peer's own session ends it: a rejected join naming
            // another uid (or a `KeysRejected` join claiming its name) leaves it alone.
            Event::Rejected { uid, name, .. } | Event::Removed { uid, name } => {
                if let Some(peer) = d.peers.get_mut(name) {
                    if peer.uid.is_none() || peer.uid == Some(*uid) {
                        peer.allowed = false;
                        peer.uid = None;
                    }
                }
                self.side.on_event(d, &event).await;
            }
            _ => self.side.on_event(d, &event).await,
        }
    }

    /// The status answered on share `status`.
    async fn status(&mut self) -> Status {
        let d = &self.shared;
        let now = (Instant::now(), SystemTime::now());
        let remotes = d.road.remotes().await;
        let mut rows: BTreeMap<String, RemoteRow> = BTreeMap::new();
        for (name, peer) in &d.peers {
            let row = rows
                .entry(name.clone())
                .or_insert_with(|| RemoteRow::new(name));
            row.allowed = peer.allowed;
            row.presence = peer.presence.to_owned();
            row.last_seen = peer.last_seen.map(epoch_secs);
            row.address = peer.address.map(|a| a.to_string());
        }
        // The master hides remotes still named by their address (joins in progress); the
        // minion shows its master that way until the join completes.
        let shown = |name: &str| S::ROLE == Role::Minion || !name.contains(':');
        for remote in remotes.iter().filter(|r| shown(&r.name)) {
            let row = rows
                .entry(remote.name.clone())
                .or_insert_with(|| RemoteRow::new(&remote.name));
            row.joined = remote.joined == Some(true);
            row.address = Some(remote.ha.to_string());
            if let Some(heard) = remote.last_heard {
                let ago = now.0.saturating_duration_since(heard);
                row.last_seen = now.1.checked_sub(ago).map(epoch_secs);
            }
            row.acceptance = remote.acceptance.map(|a| a.to_string());
        }
        let counters = |map: &BTreeMap<&'static str, u64>| {
            map.iter()
                .map(|(k, v)| ((*k).to_owned(), *v))
                .collect::<BTreeMap<String, u64>>()
        };
        let mut status = Status {
            version: STATUS_VERSION,
            estate: d.own.clone(),
            role: S::ROLE.name().to_owned(),
            road: d.road.local_addr().to_string(),
            salt_crypto: d.salt_crypto,
            remotes: Vec::new(),
            routing: counters(d.table.counters()),
            road_counters: d.road.stats().await,
            lane_counters: counters(&d.lane.stats()),
            event_bus: d
                .bus
                .as_ref()
                .and_then(|(bus, _)| serde_json::to_value(bus.stats()).ok()),
            join: None,
            masters: None,
        };
        self.side.status(d, &remotes, &mut rows, &mut status);
        status.remotes = rows.into_values().collect();
        status
    }
}

/// Sleeps until `deadline` (for ever without one).
async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}
