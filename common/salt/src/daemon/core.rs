//! The daemons' decisions, sans-IO: what the daemon knows of its peers (sessions, presence),
//! where each message goes ([`RouteTable`]), which messages wait for a master ([`Hold`]),
//! and what a failed delivery becomes. [`DaemonCore`] takes the road's events, the messages
//! of the road and the lane, failed deliveries and the time, and hands out [`Effect`]s; the
//! tokio loop ([`super::Daemon`]) carries them out, and the simulation tests
//! (`common/salt/tests/daemon_sim.rs`) drive it on simulated roads in virtual time.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use raet::road::{Presence, Uid};
use serde_json::{json, Map, Value};
use tracing::{debug, info, warn};

use super::hold::Hold;
use super::presence_word;
use super::status::{Status, DAEMON_VERSION};
use crate::envelope::{
    DstEstate, Envelope, ErrorKind, MANOR, SHARE_PRESENCE, SHARE_REGISTER, SHARE_STATUS,
};
use crate::route::{Action, RouteTable};

/// The tag of a presence change (`new`, `lost` lists).
pub const PRESENCE_CHANGE_TAG: &str = "salt/presence/change";

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
#[derive(Debug, Clone)]
pub struct Failure {
    /// The message (shared by its copies to several estates).
    pub env: Arc<Envelope>,
    /// The estate it was for.
    pub estate: String,
    /// The road uid it was sent to (none: the estate had no session).
    pub uid: Option<Uid>,
    /// Why (for the sender's error).
    pub reason: String,
    /// The deadline of its hold when it was sent from the hold ([`Effect::Transmit`]).
    pub held_until: Option<Instant>,
}

/// What the driver must do.
#[derive(Debug, Clone)]
pub enum Effect {
    /// Send `env` over the road to each of `targets` (a peer's name and road uid; a message
    /// to many is encoded once); when the road fails it for one, hand a [`Failure`] back to
    /// [`DaemonCore::failed`].
    Transmit {
        /// The peers: name and road uid.
        targets: Vec<(String, Uid)>,
        /// The message.
        env: Arc<Envelope>,
        /// The deadline of its hold, if it was held.
        held_until: Option<Instant>,
    },
    /// Deliver `env` to local yard `yard`; when that fails, [`DaemonCore::undelivered`].
    Local {
        /// The yard.
        yard: String,
        /// The message.
        env: Envelope,
    },
    /// Fire an event on Salt's master event bus.
    Fire {
        /// The tag.
        tag: &'static str,
        /// The data (a map).
        data: Map<String, Value>,
    },
    /// Answer the daemon's status to `yard` (the driver knows the road's side of it).
    Status {
        /// The yard that asked.
        yard: String,
        /// It asked with a packed envelope: it is one of this implementation's yards, and
        /// takes the answer packed ([`DaemonCore::status_body`]).
        packed: bool,
    },
    /// `name`'s session ended (lost): the side acts on it (the master forgets the minion,
    /// the minion joins its master again).
    SessionDropped {
        /// The peer.
        name: String,
        /// The road uid its session had.
        uid: Option<Uid>,
    },
}

/// The daemon's decisions (see the module comment).
#[derive(Debug)]
pub struct DaemonCore {
    own: String,
    /// Where messages go.
    pub table: RouteTable,
    /// The peers we know, by name.
    peers: BTreeMap<String, Peer>,
    /// The names of the peers with a session (allowed, with a uid): kept as the rows change,
    /// so routing a message costs no pass over every peer.
    allowed: BTreeSet<String>,
    hold: Hold,
    /// Presence changes are fired on Salt's master event bus (`presence_events`).
    presence_events: bool,
    effects: Vec<Effect>,
}

impl DaemonCore {
    /// The decisions of daemon `own`: a minion's (`upstream`: messages for a share no local
    /// yard serves go to its masters, and wait at most `hold_limit` for one) or a master's;
    /// `presence_events`: presence changes are fired on the event bus.
    pub fn new(own: String, upstream: bool, hold_limit: Duration, presence_events: bool) -> Self {
        Self {
            own,
            table: if upstream {
                RouteTable::with_upstream()
            } else {
                RouteTable::new()
            },
            peers: BTreeMap::new(),
            allowed: BTreeSet::new(),
            hold: Hold::new(hold_limit),
            presence_events,
            effects: Vec::new(),
        }
    }

    /// Our estate name.
    pub fn own(&self) -> &str {
        &self.own
    }

    /// The effects decided so far, in order (the core keeps none).
    pub fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    /// The next time [`DaemonCore::handle_timeout`] has work (a held message's deadline).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.hold.next_deadline()
    }

    /// Held messages whose deadline passed are answered with `send_failed`.
    pub fn handle_timeout(&mut self, now: Instant) {
        for env in self.hold.expire(now) {
            warn!(src = ?env.src, "no master session within raet_message_timeout: message failed");
            let reason = "no master was allowed within raet_message_timeout";
            let action = self
                .table
                .error(&self.own, &env, ErrorKind::SendFailed, reason);
            self.execute(action, None, now);
        }
    }

    /// How many messages wait for a master.
    pub fn held(&self) -> usize {
        self.hold.len()
    }

    /// The peers with an open session.
    pub fn allowed_peers(&self) -> &BTreeSet<String> {
        &self.allowed
    }

    /// The peers we know, by name.
    pub fn peers(&self) -> &BTreeMap<String, Peer> {
        &self.peers
    }

    /// Forgets the row of `name` (its key is gone); whether there was one.
    pub fn forget_peer(&mut self, name: &str) -> bool {
        self.allowed.remove(name);
        self.peers.remove(name).is_some()
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

    /// Records a session with `name` (uid `uid` at `address`); the messages held for a
    /// master go to it.
    pub fn open_session(
        &mut self,
        name: &str,
        uid: Uid,
        address: Option<SocketAddr>,
        now: Instant,
    ) {
        self.allowed.insert(name.to_owned());
        let peer = self.peer(name);
        peer.uid = Some(uid);
        peer.allowed = true;
        peer.address = address;
        if !self.hold.is_empty() {
            let held = self.hold.release();
            info!(remote = %name, messages = held.len(), "sending the messages held for the master");
            for (env, deadline) in held {
                self.transmit(vec![name.to_owned()], Arc::new(env), Some(deadline), now);
            }
        }
    }

    /// Ends the session of `name` in its row; returns the uid it had.
    pub fn end_session(&mut self, name: &str) -> Option<Uid> {
        self.allowed.remove(name);
        let peer = self.peers.get_mut(name)?;
        peer.allowed = false;
        peer.uid.take()
    }

    fn seen(&mut self, name: &str, wall: SystemTime) {
        self.peer(name).last_seen = Some(wall);
    }

    /// A message from local yard `yard`.
    pub fn from_lane(&mut self, yard: &str, body: &Map<String, Value>, now: Instant) {
        let action = self.table.from_lane(&self.own, yard, body, &self.allowed);
        self.execute(action, None, now);
    }

    /// A packed (msgpack) envelope from local yard `yard` (see [`Envelope::from_packed`]).
    pub fn from_lane_packed(&mut self, yard: &str, packed: &[u8], now: Instant) {
        let parsed = Envelope::from_packed(packed).map_err(|e| {
            warn!(%yard, error = %e, "bad envelope from the lane");
            e.to_string()
        });
        match self
            .table
            .from_lane_parsed(&self.own, yard, parsed, &self.allowed)
        {
            Action::Status(yard) => self.effects.push(Effect::Status { yard, packed: true }),
            action => self.execute(action, None, now),
        }
    }

    /// A message from peer `from` over the road (the driver confirms its receipt once the
    /// effects are carried out).
    pub fn from_road(
        &mut self,
        from: &str,
        body: &Map<String, Value>,
        (now, wall): (Instant, SystemTime),
    ) {
        self.seen(from, wall);
        let action = self.table.from_road(&self.own, from, body);
        self.execute(action, None, now);
    }

    /// A packed (msgpack) envelope from peer `from` over the road (a raw body).
    pub fn from_road_packed(
        &mut self,
        from: &str,
        packed: &[u8],
        (now, wall): (Instant, SystemTime),
    ) {
        self.seen(from, wall);
        let parsed = Envelope::from_packed(packed).map_err(|e| {
            warn!(%from, error = %e, "bad envelope from the road");
            e.to_string()
        });
        let action = self.table.from_road_parsed(&self.own, from, parsed);
        self.execute(action, None, now);
    }

    /// Delivering `env` to local yard `yard` failed (gone, or its queue stayed full): the
    /// yard is forgotten and the message goes to another yard of its share or back to its
    /// sender as an error.
    pub fn undelivered(&mut self, yard: &str, env: Envelope, now: Instant) {
        self.table.forget(yard);
        let action = self.table.undelivered(&self.own, yard, env);
        self.execute(action, None, now);
    }

    /// The road allowed `name` (uid `uid`, at `address`).
    pub fn allowed(
        &mut self,
        name: &str,
        uid: Uid,
        address: SocketAddr,
        (now, wall): (Instant, SystemTime),
    ) {
        info!(remote = %name, "joined and allowed");
        self.open_session(name, uid, Some(address), now);
        self.seen(name, wall);
        self.tell_presence(name, Presence::Allowed);
    }

    /// The road's presence change of `name`. Joined and allowed are told once, by
    /// [`DaemonCore::allowed`] ("new"); a lost peer's session ends
    /// ([`Effect::SessionDropped`]).
    pub fn presence(&mut self, name: &str, presence: Presence, wall: SystemTime) {
        if presence != Presence::Lost {
            self.seen(name, wall);
        }
        let allowed = self.peers.get(name).is_some_and(|p| p.allowed);
        if matches!(presence, Presence::Joined | Presence::Allowed)
            || (presence == Presence::Alive && !allowed)
        {
            return;
        }
        self.tell_presence(name, presence);
        if presence == Presence::Lost {
            let uid = self.end_session(name);
            self.effects.push(Effect::SessionDropped {
                name: name.to_owned(),
                uid,
            });
        }
    }

    /// The road rejected or removed `name`'s session `uid`: only a rejection of the peer's
    /// own session ends it (a rejected join naming another uid, or a join with other keys
    /// claiming its name, leaves it alone).
    pub fn session_refused(&mut self, name: &str, uid: Uid) {
        if let Some(peer) = self.peers.get_mut(name) {
            if peer.uid.is_none() || peer.uid == Some(uid) {
                peer.allowed = false;
                peer.uid = None;
                self.allowed.remove(name);
            }
        }
    }

    /// Tells the yards registered for share `presence` (and Salt's event bus, with
    /// `presence_events`) that `name`'s presence changed; nothing when it did not.
    pub fn tell_presence(&mut self, name: &str, presence: Presence) {
        let word = presence_word(presence);
        if let Some(peer) = self.peers.get_mut(name) {
            if peer.presence == word {
                return;
            }
            peer.presence = word;
        }
        info!(remote = %name, presence = word, "presence");
        if self.presence_events {
            let (new, lost): (Vec<&str>, Vec<&str>) = match presence {
                Presence::Lost => (vec![], vec![name]),
                _ => (vec![name], vec![]),
            };
            let data = json!({"new": new, "lost": lost});
            self.effects.push(Effect::Fire {
                tag: PRESENCE_CHANGE_TAG,
                data: data.as_object().cloned().unwrap_or_default(),
            });
        }
        for yard in self.table.yards_for(SHARE_PRESENCE) {
            let load = json!({"change": word, "id": name});
            let load = load.as_object().cloned().unwrap_or_default();
            let env = self.manor_envelope(&yard, SHARE_PRESENCE, load);
            self.effects.push(Effect::Local { yard, env });
        }
    }

    /// A message the road could not deliver. An upstream message whose session ended while a
    /// new one with the same peer opened is sent again in the new one (within the hold
    /// limit from its first failure); others fail over, are held, or fail back to their
    /// sender ([`RouteTable::failover`]).
    pub fn failed(&mut self, failure: Failure, now: Instant) {
        let Failure {
            env,
            estate,
            uid,
            reason,
            held_until,
        } = failure;
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
                self.transmit(vec![estate], env, Some(deadline), now);
                return;
            }
        }
        let env = Arc::unwrap_or_clone(env);
        let action = self
            .table
            .failover(&self.own, env, &estate, &reason, &self.allowed);
        self.execute(action, held_until, now);
    }

    /// A message from our [`MANOR`] share `share` to local yard `yard`.
    pub fn manor_envelope(&self, yard: &str, share: &str, load: Map<String, Value>) -> Envelope {
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
            salt: None,
        }
    }

    /// The body of the status answer to `yard` (load `status`), encoded: packed (msgpack,
    /// for a packed book: a large status goes in a few large pages and is read without a
    /// JSON tree) or JSON (for a JSON book).
    pub fn status_body(
        &self,
        yard: &str,
        status: &Status,
        packed: bool,
    ) -> Result<Vec<u8>, String> {
        let env = self.manor_envelope(yard, SHARE_STATUS, Map::new());
        if packed {
            env.to_packed_with_load(status).map_err(|e| e.to_string())
        } else {
            env.encode_with_load(status).map_err(|e| e.to_string())
        }
    }

    /// Turns a routing action into effects; a message to hold again keeps the deadline of
    /// its first hold (`held_until`); one that cannot be held is answered with
    /// `send_failed`.
    fn execute(&mut self, action: Action, held_until: Option<Instant>, now: Instant) {
        match action {
            Action::Registered(yard) => {
                debug!(%yard, "yard registered");
                let mut load = Map::new();
                load.insert("registered".into(), Value::Bool(true));
                load.insert("estate".into(), Value::String(self.own.clone()));
                // a registering yard checks that it speaks the lane protocol of this daemon
                load.insert("daemon_version".into(), DAEMON_VERSION.into());
                let env = self.manor_envelope(&yard, SHARE_REGISTER, load);
                self.effects.push(Effect::Local { yard, env });
            }
            Action::Status(yard) => self.effects.push(Effect::Status {
                yard,
                packed: false,
            }),
            Action::Road(estates, env) => {
                debug!(?estates, src = ?env.src, "to the road");
                self.transmit(estates, Arc::new(env), None, now);
            }
            Action::Hold(env) => match self.hold.admit(held_until, now) {
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
                    let action = self
                        .table
                        .error(&self.own, &env, ErrorKind::SendFailed, &reason);
                    self.execute(action, None, now);
                }
            },
            Action::Local(yard, env) => {
                debug!(%yard, src = ?env.src, "to local yard");
                self.effects.push(Effect::Local { yard, env });
            }
            Action::Drop(kind) => debug!(kind = kind.code(), "message dropped"),
        }
    }

    /// Sends `env` to `estates` (`held_until`: the deadline of its hold when it comes from
    /// the hold); to an estate without a session the message fails at once (its failover
    /// ends: it only goes to peers with a session, and an error about an error is dropped).
    fn transmit(
        &mut self,
        estates: Vec<String>,
        env: Arc<Envelope>,
        held_until: Option<Instant>,
        now: Instant,
    ) {
        let mut targets = Vec::with_capacity(estates.len());
        let mut absent = Vec::new();
        for estate in estates {
            match self.peers.get(&estate).and_then(|p| p.uid) {
                Some(uid) => targets.push((estate, uid)),
                None => absent.push(estate),
            }
        }
        if !targets.is_empty() {
            self.effects.push(Effect::Transmit {
                targets,
                env: Arc::clone(&env),
                held_until,
            });
        }
        for estate in absent {
            let failure = Failure {
                env: Arc::clone(&env),
                reason: format!("estate {estate:?} is not joined"),
                estate,
                uid: None,
                held_until,
            };
            self.failed(failure, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names [`DaemonCore::allowed_peers`] keeps are always those of the rows with a
    /// session, through opened, ended, refused and forgotten sessions.
    #[test]
    fn the_allowed_set_follows_the_rows() {
        let mut core = DaemonCore::new("m".into(), false, Duration::from_secs(5), false);
        let now = Instant::now();
        let check = |core: &DaemonCore| {
            let rows: BTreeSet<String> = core
                .peers()
                .iter()
                .filter(|(_, p)| p.allowed && p.uid.is_some())
                .map(|(n, _)| n.clone())
                .collect();
            assert_eq!(core.allowed_peers(), &rows);
        };
        for (i, name) in ["a", "b", "c", "d"].into_iter().enumerate() {
            core.open_session(name, i as Uid + 2, None, now);
        }
        check(&core);
        assert_eq!(core.allowed_peers().len(), 4);
        assert_eq!(core.end_session("a"), Some(2));
        core.session_refused("b", 99);
        core.session_refused("c", 4);
        assert!(core.forget_peer("d"));
        assert!(!core.forget_peer("d"));
        core.presence("b", Presence::Lost, SystemTime::now());
        check(&core);
        assert!(core.allowed_peers().is_empty());
        core.open_session("a", 7, None, now);
        check(&core);
        assert_eq!(core.allowed_peers().len(), 1);
    }

    /// A packed envelope is routed on its header and its payload passes through as bytes; a
    /// malformed one (from the lane or the road) is a counted `bad_envelope`, answered to a
    /// local sender, never a panic.
    #[test]
    fn packed_envelopes_pass_through_and_malformed_ones_are_counted() {
        let mut core = DaemonCore::new("m".into(), false, Duration::from_secs(5), false);
        let now = Instant::now();
        let mut register = Map::new();
        register.insert("shares".into(), serde_json::json!(["job"]));
        let reg = core.manor_envelope("worker", SHARE_REGISTER, register);
        let mut reg = reg.to_body();
        reg.insert(
            "route".into(),
            serde_json::json!({"src": [null, "worker", null], "dst": [null, MANOR, SHARE_REGISTER]}),
        );
        core.from_lane("worker", &reg, now);
        core.take_effects();
        let payload: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
        let mut env = core.manor_envelope("x", "job", Map::new());
        env.src = [None, Some("cli".into()), None];
        env.dst_yard = None;
        env.salt = Some(payload.clone().into());
        core.from_lane_packed("cli", &env.to_packed(), now);
        let effects = core.take_effects();
        let [Effect::Local { yard, env: got }] = effects.as_slice() else {
            panic!("one local delivery: {effects:?}");
        };
        assert_eq!(yard, "worker");
        assert_eq!(got.salt.as_deref(), Some(&payload[..]));
        assert_eq!(got.src[1].as_deref(), Some("cli"));
        assert!(got.is_packed());

        for garbage in [
            &b""[..],
            b"\xc1",
            b"\x81\xa5route\xc0",
            &env.to_packed()[..50],
        ] {
            core.from_lane_packed("cli", garbage, now);
            let effects = core.take_effects();
            let [Effect::Local { yard, env: reply }] = effects.as_slice() else {
                panic!("one error reply: {effects:?}");
            };
            assert_eq!(yard, "cli");
            assert_eq!(reply.load.get("kind"), Some(&Value::from("bad_envelope")));
            assert!(!reply.is_packed());
            core.from_road_packed("m1", garbage, (now, SystemTime::now()));
            assert!(core.take_effects().is_empty(), "dropped");
        }
        assert_eq!(core.table.counters().get("bad_envelope"), Some(&8));
    }

    /// A status request is answered in the form it came in: packed to a packed request,
    /// JSON to a JSON one.
    #[test]
    fn the_status_is_answered_as_it_was_asked() {
        let mut core = DaemonCore::new("m".into(), false, Duration::from_secs(5), false);
        let now = Instant::now();
        let mut ask = core.manor_envelope(MANOR, SHARE_STATUS, Map::new());
        ask.src = [None, Some("cli".into()), None];
        core.from_lane_packed("cli", &ask.to_packed(), now);
        core.from_lane("cli", &ask.to_body(), now);
        let effects = core.take_effects();
        let [Effect::Status {
            yard: first,
            packed: true,
        }, Effect::Status {
            yard: second,
            packed: false,
        }] = effects.as_slice()
        else {
            panic!("a packed then a JSON answer: {effects:?}");
        };
        assert_eq!((first.as_str(), second.as_str()), ("cli", "cli"));
    }
}
