//! The loop both daemons run: road messages and events, lane messages, failed deliveries,
//! timers, signals and the inputs of its [`Side`], handed to the [`DaemonCore`] whose
//! effects it carries out; and the state every side shares ([`Shared`]: the core, road,
//! lane, event bus).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use raet::lane::{Body, LaneError, LaneStack};
use raet::packet::body::encode_json;
use raet::road::{Event, Uid};
use raet::stack::{Body as RoadBody, RoadStack};
use serde_json::Value;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use super::core::{DaemonCore, Effect, Failure};
use super::notify;
use super::safety::check_private_dir;
use super::status::{RemoteRow, Status, DAEMON_VERSION, STATUS_VERSION};
use super::{epoch_secs, DaemonError, Side};
use crate::config::{CommonConfig, Role};
use crate::envelope::{lane_dir, Envelope, LANE, MANOR};
use crate::evbus::EventBus;

/// The state both sides act on: the decisions ([`DaemonCore`]) and the I/O that carries
/// them out.
pub struct Shared {
    /// The daemon's decisions.
    pub core: DaemonCore,
    /// The road.
    pub road: RoadStack,
    lane: Arc<LaneStack>,
    /// Salt's master event bus (master only).
    bus: Option<EventBus>,
    failures: mpsc::UnboundedSender<Failure>,
    /// Yards that asked for the status, and whether packed (answered once the current input
    /// is handled).
    status_requests: Vec<(String, bool)>,
    /// `raet_salt_crypto`: Salt's own channels run on top (shown by `status`).
    salt_crypto: bool,
}

/// A running daemon: the shared state and its side.
pub struct Daemon<S: Side> {
    shared: Shared,
    side: S,
    failures: mpsc::UnboundedReceiver<Failure>,
}

impl Shared {
    /// Fires an event on Salt's master event bus (nothing without one; `data` is a map).
    pub fn fire(&self, tag: &str, data: Value) {
        if let (Some(bus), Value::Object(data)) = (&self.bus, data) {
            bus.fire(tag, data);
        }
    }

    /// Carries out the core's effects (and those they lead to); returns the sessions that
    /// ended, for the side.
    async fn apply(&mut self) -> Vec<(String, Option<Uid>)> {
        let mut dropped = Vec::new();
        loop {
            let effects = self.core.take_effects();
            if effects.is_empty() {
                return dropped;
            }
            for effect in effects {
                match effect {
                    Effect::Transmit {
                        targets,
                        env,
                        held_until,
                    } => self.transmit(targets, env, held_until),
                    Effect::Local { yard, env } => {
                        if let Err(e) = self.deliver(&yard, &env).await {
                            // A full queue (the yard stopped reading) costs one bounded wait,
                            // then the message is undeliverable like a gone yard's.
                            if matches!(e, LaneError::QueueFull { .. }) {
                                warn!(%yard, error = %e, "lane delivery failed");
                            } else {
                                debug!(%yard, error = %e, "lane delivery failed");
                            }
                            self.core.undelivered(&yard, env, Instant::now());
                        }
                    }
                    Effect::Fire { tag, data } => self.fire(tag, Value::Object(data)),
                    Effect::Status { yard, packed } => self.status_requests.push((yard, packed)),
                    Effect::SessionDropped { name, uid } => dropped.push((name, uid)),
                }
            }
        }
    }

    /// Sends `env` to local yard `yard`: packed (msgpack) when it carries a Salt payload as
    /// bytes, else JSON.
    async fn deliver(&self, yard: &str, env: &Envelope) -> Result<(), LaneError> {
        if env.is_packed() {
            self.lane.send_packed(yard, &env.to_packed()).await
        } else {
            self.lane.send(yard, &env.to_body()).await
        }
    }

    /// Sends `env` to each of `targets` in the background, encoded once (packed, as a raw
    /// body, when it carries a Salt payload as bytes; else JSON); a failure comes back to the
    /// loop.
    fn transmit(
        &self,
        targets: Vec<(String, Uid)>,
        env: Arc<Envelope>,
        held_until: Option<Instant>,
    ) {
        let packed = env.is_packed();
        let body: Arc<[u8]> = if packed {
            env.to_packed().into()
        } else {
            encode_json(&env.to_body()).into()
        };
        for (estate, uid) in targets {
            let body = Arc::clone(&body);
            let sending: std::pin::Pin<Box<dyn Future<Output = _> + Send>> = if packed {
                Box::pin(self.road.transmit_raw(uid, body))
            } else {
                Box::pin(self.road.transmit_encoded(uid, body))
            };
            let (failures, env) = (self.failures.clone(), Arc::clone(&env));
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
        let upstream = S::ROLE == Role::Minion;
        let presence_events = bus.as_ref().is_some_and(|(_, events)| *events);
        let core = DaemonCore::new(own, upstream, common.raet_message_timeout, presence_events);
        let shared = Shared {
            core,
            road,
            lane: Arc::new(lane),
            bus: bus.map(|(bus, _)| bus),
            failures,
            status_requests: Vec::new(),
            salt_crypto: common.raet_salt_crypto,
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
            let deadline = self.shared.core.poll_timeout();
            tokio::select! {
                _ = term.recv() => { info!("SIGTERM: shutting down"); break; }
                _ = int.recv() => { info!("SIGINT: shutting down"); break; }
                _ = hup.recv() => self.side.on_hangup(),
                received = road.recv_any_receipted() => match received {
                    Some(((from, _uid, body), receipt)) => {
                        let now = (Instant::now(), SystemTime::now());
                        match body {
                            RoadBody::Map(body) => self.shared.core.from_road(&from, &body, now),
                            RoadBody::Raw(packed) => self.shared.core.from_road_packed(&from, &packed, now),
                        }
                        self.apply().await;
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
                message = lane.recv_any() => match message {
                    Ok((yard, Body::Map(body))) => self.shared.core.from_lane(&yard, &body, Instant::now()),
                    Ok((yard, Body::Packed(packed))) => self.shared.core.from_lane_packed(&yard, &packed, Instant::now()),
                    Err(e) => { error!(error = %e, "lane stopped"); break; }
                },
                Some(failure) = self.failures.recv() => self.shared.core.failed(failure, Instant::now()),
                () = sleep_until_some(deadline), if deadline.is_some() => self.shared.core.handle_timeout(Instant::now()),
                input = self.side.next_input() => self.side.on_input(&mut self.shared, input).await,
            }
            self.apply().await;
            self.answer_status_requests().await;
        }
        notify::stopping();
        self.shared.road.clone().shutdown().await;
        info!("stopped");
        Ok(())
    }

    /// Carries out the core's effects; the side acts on the sessions that ended.
    async fn apply(&mut self) {
        for (name, uid) in self.shared.apply().await {
            self.side
                .on_session_dropped(&mut self.shared, &name, uid)
                .await;
        }
    }

    async fn answer_status_requests(&mut self) {
        if self.shared.status_requests.is_empty() {
            return;
        }
        let status = self.status().await;
        for (yard, packed) in std::mem::take(&mut self.shared.status_requests) {
            let body = match self.shared.core.status_body(&yard, &status, packed) {
                Ok(body) => body,
                Err(e) => {
                    error!(%yard, error = %e, "status not encoded");
                    continue;
                }
            };
            let sent = if packed {
                self.shared.lane.send_packed(&yard, &body).await
            } else {
                self.shared.lane.send_encoded(&yard, &body).await
            };
            if let Err(e) = sent {
                debug!(%yard, error = %e, "status reply not delivered");
            }
        }
    }

    async fn on_event(&mut self, event: Event) {
        let d = &mut self.shared;
        match &event {
            Event::Allowed { uid, name, ha } => {
                let now = (Instant::now(), SystemTime::now());
                d.core.allowed(name, *uid, *ha, now);
            }
            Event::Presence { name, presence, .. } => {
                d.core.presence(name, *presence, SystemTime::now());
            }
            Event::Rejected { uid, name, .. } | Event::Removed { uid, name } => {
                d.core.session_refused(name, *uid);
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
        // The master hides remotes still named by their address (joins in progress); the
        // minion shows its master that way until the join completes.
        let shown = |name: &str| S::ROLE == Role::Minion || !name.contains(':');
        for remote in remotes.iter().filter(|r| shown(&r.name)) {
            let row = RemoteRow::of(&mut rows, &remote.name);
            row.joined = remote.joined == Some(true);
            row.address = Some(remote.ha.to_string());
            row.main = remote.main;
            row.last_seen = remote.last_heard.and_then(|heard| {
                let ago = now.0.saturating_duration_since(heard);
                now.1.checked_sub(ago).map(epoch_secs)
            });
            row.acceptance = remote.acceptance.map(|a| a.to_string());
        }
        // The road's address and last contact win over the daemon's own record of them.
        for (name, peer) in d.core.peers() {
            let row = RemoteRow::of(&mut rows, name);
            row.allowed = peer.allowed;
            row.presence = peer.presence.to_owned();
            if row.last_seen.is_none() {
                row.last_seen = peer.last_seen.map(epoch_secs);
            }
            if row.address.is_none() {
                row.address = peer.address.map(|a| a.to_string());
            }
        }
        let counters = |map: &BTreeMap<&'static str, u64>| {
            map.iter()
                .map(|(k, v)| ((*k).to_owned(), *v))
                .collect::<BTreeMap<String, u64>>()
        };
        let mut status = Status {
            version: STATUS_VERSION,
            daemon_version: Some(DAEMON_VERSION.to_owned()),
            estate: d.core.own().to_owned(),
            role: S::ROLE.name().to_owned(),
            road: d.road.local_addr().to_string(),
            salt_crypto: d.salt_crypto,
            remotes: Vec::new(),
            routing: counters(d.core.table.counters()),
            road_counters: d.road.stats().await,
            lane_counters: counters(&d.lane.stats()),
            event_bus: d
                .bus
                .as_ref()
                .and_then(|bus| serde_json::to_value(bus.stats()).ok()),
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
