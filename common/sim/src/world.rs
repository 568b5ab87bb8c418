//! Road estates on a deterministic [`SimNet`] for the simulation suites: their events collected as they happen, deterministic keys, keep presets,
//! restarts on the same keep, and waiting in virtual time.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::{Endpoint, Link, SimNet, SimTimeout};
use raet_proto::crypto::{PrivateKey, Signer};
use raet_proto::keep::{
    apply_now, Acceptance, AutoMode, Keep, MemKeep, RemoteRecord, RoleRecord, Snapshot,
};
use raet_proto::packet::body::BodyMap;
use raet_proto::packet::{self, BodyKind, JoinRepr};
use raet_proto::road::{
    Event, Limits, MessageId, Profile, RemoteStatus, Road, RoadConfig, SendFailure, Timers, Uid,
};
use raet_proto::Transmit;
use serde_json::{Map, Value};

/// Everything needed to (re)build one estate.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Estate name.
    pub name: String,
    /// UDP port on 127.0.0.1 (only an address on the simulated network).
    pub port: u16,
    /// Main estate (accepts vacuous joins).
    pub main: bool,
    /// Key acceptance mode.
    pub auto: AutoMode,
    /// Mutable road.
    pub mutable: bool,
    /// Role (`None` = the name).
    pub role: Option<String>,
    /// Refuse joins whose role is not their name ([`RoadConfig::role_is_name`]).
    pub role_is_name: bool,
    /// Application kind.
    pub kind: u8,
    /// Seed byte of the long-term keys (see [`keys`]).
    pub keys: u8,
    /// Burst size.
    pub burst: u32,
    /// Memory bounds.
    pub limits: Limits,
    /// Messages acknowledged only when the test says the application took them
    /// ([`RoadConfig::confirm_messages`]).
    pub confirm_messages: bool,
    /// Timers.
    pub timers: Timers,
    /// Protocol profile (auto, as a road's default: two simulated roads use the fast one).
    pub profile: Profile,
    /// Body kind of the messages it sends.
    pub bk: BodyKind,
}

impl Spec {
    /// A non-main estate, auto `always`, immutable, keys derived from the port.
    pub fn new(name: &str, port: u16) -> Self {
        Self {
            name: name.to_owned(),
            port,
            main: false,
            auto: AutoMode::Always,
            mutable: false,
            role: None,
            role_is_name: false,
            kind: 0,
            keys: (port % 251) as u8,
            burst: 0,
            limits: Limits::default(),
            confirm_messages: false,
            timers: Timers::default(),
            profile: Profile::Auto,
            bk: BodyKind::Json,
        }
    }

    /// With this protocol profile.
    pub fn profile(mut self, profile: Profile) -> Self {
        self.profile = profile;
        self
    }

    /// The same estate as a main.
    pub fn main(mut self) -> Self {
        self.main = true;
        self
    }

    /// With this acceptance mode.
    pub fn auto(mut self, auto: AutoMode) -> Self {
        self.auto = auto;
        self
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        addr(self.port)
    }

    /// Its role (the name unless set).
    pub fn role(&self) -> String {
        self.role.clone().unwrap_or_else(|| self.name.clone())
    }

    fn config(&self) -> RoadConfig {
        let mut config = RoadConfig::new(self.name.clone(), self.addr());
        config.main = self.main;
        config.auto = self.auto;
        config.mutable = self.mutable;
        config.role = self.role.clone();
        config.role_is_name = self.role_is_name;
        config.kind = self.kind;
        config.burst = self.burst;
        config.timers = self.timers.clone();
        config.limits = self.limits.clone();
        config.confirm_messages = self.confirm_messages;
        config.profile = self.profile;
        config.bk = self.bk;
        config
    }
}

/// 127.0.0.1:`port`.
pub fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Deterministic long-term keys: signing seed and curve25519 secret from one byte.
pub fn keys(seed: u8) -> (Signer, PrivateKey) {
    (
        Signer::from_seed(&[seed; 32]),
        PrivateKey::from_bytes(&[seed ^ 0x5a; 32]),
    )
}

/// (verhex, pubhex) of [`keys`]`(seed)`.
pub fn key_hexes(seed: u8) -> (String, String) {
    let (signer, private) = keys(seed);
    (signer.verify_key().to_hex(), private.public_key().to_hex())
}

/// A role record for the keys [`keys`]`(seed)`.
pub fn role_record(role: &str, acceptance: Acceptance, seed: u8) -> RoleRecord {
    let (verhex, pubhex) = key_hexes(seed);
    RoleRecord {
        role: role.to_owned(),
        acceptance,
        verhex,
        pubhex,
    }
}

/// A remote record of `spec` (our uid `uid`, its uid for us `fuid`), not joined in this
/// session (as the reference tests add their preset remotes).
pub fn remote_record(spec: &Spec, uid: u32, fuid: u32) -> RemoteRecord {
    RemoteRecord {
        name: spec.name.clone(),
        uid,
        fuid,
        ha: spec.addr(),
        sid: 0,
        main: spec.main,
        kind: spec.kind,
        joined: None,
        role: spec.role(),
        fast: false,
    }
}

/// One estate on the simulated network: its road, its keep, every event it produced.
pub struct Peer {
    /// How it was built (used again by [`World::restart`]).
    pub spec: Spec,
    /// The road core.
    pub road: Road,
    /// Its keep (clones share storage: it survives a restart); the road's persist ops are
    /// applied to it at once, after every input.
    pub keep: MemKeep,
    /// Persist ops the keep failed to apply.
    pub keep_errors: u64,
    /// Every event polled from the road, in order.
    pub events: Vec<Event>,
}

impl Peer {
    /// Applies the road's persist ops (answering its role reads at `now`) and moves the events
    /// the road produced into [`Peer::events`] (done after every datagram, timer and [`World`]
    /// call; needed after calling the road's API directly).
    pub fn collect(&mut self, now: Instant) {
        self.keep_errors += apply_now(&mut self.road, &mut self.keep, now);
        while let Some(event) = self.road.poll_event() {
            self.events.push(event);
        }
    }

    /// The road's view of the remote called `name`.
    pub fn remote(&self, name: &str) -> Option<RemoteStatus> {
        self.road.remotes().into_iter().find(|r| r.name == name)
    }

    /// Whether the remote called `name` is joined and allowed (messages can flow).
    pub fn allowed(&self, name: &str) -> bool {
        self.remote(name)
            .is_some_and(|r| r.joined == Some(true) && r.allowed == Some(true))
    }

    /// Whether the remote called `name` is joined.
    pub fn joined(&self, name: &str) -> bool {
        self.remote(name).is_some_and(|r| r.joined == Some(true))
    }

    /// Messages received: (sender name, body).
    pub fn messages(&self) -> impl Iterator<Item = (&str, &Map<String, Value>)> {
        self.events.iter().filter_map(|e| match e {
            Event::Message { name, body, .. } => Some((name.as_str(), body)),
            _ => None,
        })
    }

    /// How many times message `n` (a [`message`] body) arrived here.
    pub fn copies(&self, n: u32) -> usize {
        self.messages()
            .filter(|(_, body)| body.get("n") == Some(&n.into()))
            .count()
    }

    /// Whether a `Delivered` event arrived for `id`.
    pub fn delivered(&self, id: MessageId) -> bool {
        self.events
            .iter()
            .any(|e| matches!(e, Event::Delivered { id: d, .. } if *d == id))
    }

    /// The reason of a `SendFailed` event for `id`, if any.
    pub fn send_failed(&self, id: MessageId) -> Option<SendFailure> {
        self.events.iter().find_map(|e| match e {
            Event::SendFailed { id: f, reason, .. } if *f == id => Some(*reason),
            _ => None,
        })
    }

    /// Whether an event matches `pred`.
    pub fn has(&self, pred: impl Fn(&Event) -> bool) -> bool {
        self.events.iter().any(pred)
    }

    /// Number of events matching `pred`.
    pub fn count(&self, pred: impl Fn(&Event) -> bool) -> usize {
        self.events.iter().filter(|e| pred(e)).count()
    }

    /// Its failed joins and allows so far.
    pub fn failures(&self) -> usize {
        self.count(|e| matches!(e, Event::JoinFailed { .. } | Event::AllowFailed { .. }))
    }
}

/// The daemons' road timers in a storm: a presence period of 10 s (their alive period).
pub fn daemon_timers() -> Timers {
    Timers {
        presence_period: Duration::from_secs(10),
        ..Timers::default()
    }
}

/// The daemons' join loops over a storm's joiners: which are not allowed yet, and how many
/// failures each had when last looked at.
pub struct JoinLoops {
    /// The joiners' addresses.
    pub joiners: Vec<SocketAddr>,
    /// Indexes into `joiners` of those not allowed by the main yet.
    pub waiting: Vec<usize>,
    seen: Vec<usize>,
    /// Joins started again so far.
    pub rejoins: usize,
}

impl JoinLoops {
    /// Loops for `joiners`, none allowed yet.
    pub fn new(joiners: Vec<SocketAddr>) -> Self {
        let n = joiners.len();
        Self {
            joiners,
            waiting: (0..n).collect(),
            seen: vec![0; n],
            rejoins: 0,
        }
    }

    /// Forgets the joiners allowed by `master`; each other one whose failures rose since the
    /// last look joins `main` again, as the daemon's loop does.
    pub fn step(&mut self, world: &mut World, main: SocketAddr) {
        let joiners = &self.joiners;
        self.waiting
            .retain(|&i| !world.peer_ref(joiners[i]).allowed("master"));
        for &i in &self.waiting {
            let failed = world.peer_ref(joiners[i]).failures();
            if failed > self.seen[i] {
                self.seen[i] = failed;
                self.rejoins += 1;
                world.join(joiners[i], main);
            }
        }
    }
}

impl Endpoint for Peer {
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        Endpoint::handle_datagram(&mut self.road, now, from, data);
        self.collect(now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        Endpoint::handle_timeout(&mut self.road, now);
        self.collect(now);
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        Endpoint::poll_transmit(&mut self.road)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        Endpoint::poll_timeout(&self.road)
    }
}

/// Estates on a simulated network.
pub struct World {
    /// The network (public for stats, links, partitions).
    pub net: SimNet<Peer>,
    boots: u8,
}

impl World {
    /// An empty world with this seed and link.
    pub fn new(seed: u64, link: Link) -> Self {
        Self {
            net: SimNet::new(seed, link),
            boots: 0,
        }
    }

    /// Build `spec`'s road on a fresh keep and put it on the network.
    pub fn add(&mut self, spec: Spec) -> SocketAddr {
        self.add_on(spec, MemKeep::new())
    }

    /// Build `spec`'s road on `keep` (possibly preset) and put it on the network.
    pub fn add_on(&mut self, spec: Spec, keep: MemKeep) -> SocketAddr {
        let addr = spec.addr();
        let peer = self.build(spec, keep);
        self.net.add(addr, peer);
        addr
    }

    fn build(&mut self, spec: Spec, keep: MemKeep) -> Peer {
        self.boots = self.boots.wrapping_add(1);
        let mut rng_seed = [self.boots; 32];
        rng_seed[..2].copy_from_slice(&spec.port.to_be_bytes());
        let road = Road::new(
            spec.config(),
            Some(keys(spec.keys)),
            Snapshot::load(&keep).unwrap_or_else(|e| panic!("loading {}'s keep: {e}", spec.name)),
            rng_seed,
            self.net.now(),
        )
        .unwrap_or_else(|e| panic!("building road {}: {e}", spec.name));
        Peer {
            spec,
            road,
            keep,
            keep_errors: 0,
            events: Vec::new(),
        }
    }

    /// A crash: the estate disappears (its keep, with everything the road decided so far,
    /// survives in the returned peer).
    pub fn crash(&mut self, at: SocketAddr) -> Peer {
        let now = self.net.now();
        let mut peer = self
            .net
            .remove(at)
            .unwrap_or_else(|| panic!("no estate at {at}"));
        peer.collect(now);
        peer
    }

    /// Crash the estate and start a new road on the same keep and spec.
    pub fn restart(&mut self, at: SocketAddr) {
        let old = self.crash(at);
        let peer = self.build(old.spec, old.keep);
        self.net.add(at, peer);
    }

    /// The estate at `at`.
    pub fn peer(&mut self, at: SocketAddr) -> &mut Peer {
        self.net.node(at)
    }

    /// The estate at `at`.
    pub fn peer_ref(&self, at: SocketAddr) -> &Peer {
        self.net.node_ref(at)
    }

    /// A join storm: a main `master` on `main_port` and `n` estates `minion0..` on the
    /// ports from `first_port`, all with `timers`, every join started at the same instant.
    /// Returns the main's address and the joiners'.
    pub fn storm(
        &mut self,
        timers: &Timers,
        main_port: u16,
        first_port: u16,
        n: u16,
    ) -> (SocketAddr, Vec<SocketAddr>) {
        self.storm_on(timers, main_port, first_port, n, |_| {})
    }

    /// [`World::storm`] with the main's spec changed by `tune` (its limits...).
    pub fn storm_on(
        &mut self,
        timers: &Timers,
        main_port: u16,
        first_port: u16,
        n: u16,
        tune: impl FnOnce(&mut Spec),
    ) -> (SocketAddr, Vec<SocketAddr>) {
        let mut spec = Spec::new("master", main_port).main();
        spec.timers = timers.clone();
        tune(&mut spec);
        let main = self.add(spec);
        let joiners: Vec<SocketAddr> = (0..n)
            .map(|i| {
                let mut spec = Spec::new(&format!("minion{i}"), first_port + i);
                spec.timers = timers.clone();
                self.add(spec)
            })
            .collect();
        for &joiner in &joiners {
            self.join(joiner, main);
        }
        (main, joiners)
    }

    /// Start a join from `from` to the estate at `to`.
    pub fn join(&mut self, from: SocketAddr, to: SocketAddr) -> Uid {
        let now = self.net.now();
        let peer = self.net.node(from);
        let uid = peer
            .road
            .join(now, to)
            .unwrap_or_else(|e| panic!("join {from} -> {to}: {e}"));
        peer.collect(now);
        uid
    }

    /// Queue a message from `from` to its remote `to`.
    pub fn send(&mut self, from: SocketAddr, to: Uid, body: Map<String, Value>) -> MessageId {
        let now = self.net.now();
        let peer = self.net.node(from);
        let id = peer
            .road
            .send(now, to, body)
            .unwrap_or_else(|e| panic!("send {from} -> uid {to}: {e}"));
        peer.collect(now);
        id
    }

    /// Our uid at `at` for the remote called `name`.
    pub fn uid(&self, at: SocketAddr, name: &str) -> Uid {
        self.peer_ref(at)
            .road
            .uid_by_name(name)
            .unwrap_or_else(|| panic!("{at} knows no remote {name}"))
    }

    /// Run until `done`, at most `limit` of virtual time.
    pub fn run_until(
        &mut self,
        limit: Duration,
        done: impl FnMut(&mut SimNet<Peer>) -> bool,
    ) -> Result<(), SimTimeout> {
        self.net.run_until(limit, done)
    }

    /// Run until the estate at `at` has an event matching `pred`, at most `limit` of
    /// virtual time.
    pub fn wait_for(
        &mut self,
        at: SocketAddr,
        limit: Duration,
        pred: impl Fn(&Event) -> bool,
    ) -> Result<(), SimTimeout> {
        self.run_until(limit, |net| net.node_ref(at).has(&pred))
    }

    /// Run everything for `duration` of virtual time.
    pub fn settle(&mut self, duration: Duration) {
        self.net
            .run_for(duration)
            .unwrap_or_else(|e| panic!("settling: {e}"));
    }

    /// Join `joiner` to the main at `main` and wait until both sides are joined and allowed,
    /// re-joining when a join fails (as an application would), within `limit` of virtual
    /// time. Returns the joiner's uid for the main.
    pub fn connect(&mut self, joiner: SocketAddr, main: SocketAddr, limit: Duration) -> Uid {
        let deadline = self.net.elapsed() + limit;
        let joiner_name = self.peer_ref(joiner).spec.name.clone();
        let main_name = self.peer_ref(main).spec.name.clone();
        let uid = self.join(joiner, main);
        loop {
            let failures = self.join_failures(joiner);
            let left = deadline.saturating_sub(self.net.elapsed());
            let outcome = self.run_until(left, |net| {
                (net.node_ref(joiner).allowed(&main_name)
                    && net.node_ref(main).allowed(&joiner_name))
                    || count_join_failures(net.node_ref(joiner)) > failures
            });
            if let Err(e) = outcome {
                panic!("{joiner_name} never got allowed by {main_name}: {e}");
            }
            if self.peer_ref(joiner).allowed(&main_name)
                && self.peer_ref(main).allowed(&joiner_name)
            {
                return uid;
            }
            self.join(joiner, main);
        }
    }

    fn join_failures(&self, at: SocketAddr) -> usize {
        count_join_failures(self.peer_ref(at))
    }
}

fn count_join_failures(peer: &Peer) -> usize {
    peer.count(|e| matches!(e, Event::JoinFailed { .. }))
}

/// A keep holding `spec`'s view of other estates: remote records and role records.
pub fn preset_keep(remotes: &[RemoteRecord], roles: &[RoleRecord]) -> MemKeep {
    let mut keep = MemKeep::new();
    for remote in remotes {
        keep.save_remote(remote).expect("preset remote");
    }
    for role in roles {
        keep.save_role(role).expect("preset role");
    }
    keep
}

/// A message body `{"from": .., "n": .., "blob": <size chars>}` whose blob depends on
/// every argument, so a corrupted, truncated or misrouted message cannot compare equal.
pub fn message(from: &str, n: u32, size: usize) -> Map<String, Value> {
    let salt = from
        .bytes()
        .fold(n, |acc, b| acc.wrapping_mul(31).wrapping_add(u32::from(b)));
    let blob: String = (0..size)
        .map(|i| {
            let x = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(salt) >> 27;
            char::from(b'a' + (x % 26) as u8)
        })
        .collect();
    let mut body = Map::new();
    body.insert("from".into(), Value::from(from));
    body.insert("n".into(), Value::from(n));
    body.insert("blob".into(), Value::from(blob));
    body
}

/// The mapping of a JSON object (`json!({..})`); anything else gives an empty mapping.
pub fn body(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// The join body of the estate `spec` (a request: no uid).
pub fn join_body(spec: &Spec) -> BodyMap {
    let (verhex, pubhex) = key_hexes(spec.keys);
    JoinRepr {
        name: spec.name.clone(),
        mode: 0,
        kind: 0,
        uid: None,
        verhex,
        pubhex,
        role: spec.role(),
        fast: false,
    }
    .emit()
}

/// A join request with `body` from an estate that says its uid for us is `se` and names
/// our uid `de` for it ([`raet_proto::packet::join::request`], transaction id 1).
pub fn join_request(se: u32, de: u32, body: &BodyMap) -> Vec<u8> {
    packet::join::request(se, de, 1, body).expect("pack")
}

/// A link with `loss`, 5 % duplication, 10 % reordering and jitter ([`Link::impaired`]).
pub fn link(loss: f64) -> Link {
    Link::impaired(loss)
}
