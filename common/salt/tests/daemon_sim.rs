//! The daemons' decisions ([`DaemonCore`]) on simulated roads in virtual time: presence,
//! upstream failover, and the minion's messages held through a master crash. Each estate is
//! a `raet-sim` road with a core beside it; a small driver here plays the tokio loop (road
//! events in, effects out) and each side's reaction to a lost session (the master forgets
//! the minion, the minion joins again, as `salt-raet-minion`'s join loop does). Key
//! decisions are the master crate's (`acceptance.rs`); these roads accept every key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use raet_proto::packet::body::encode_json;
use raet_proto::road::{Event, MessageId, Uid};
use raet_sim::world::{link, Spec, World};
use salt_raet::daemon::{
    answering, presence_timers, DaemonCore, Effect, Failure, DAEMON_VERSION, PRESENCE_CHANGE_TAG,
};
use salt_raet::envelope::Envelope;
use serde_json::{json, Map, Value};

/// The alive period of every estate here.
const PERIOD: Duration = Duration::from_secs(1);
/// The driver's step (virtual time between two looks at the roads' events).
const STEP: Duration = Duration::from_millis(10);

/// One daemon: its road's address on the simulated network, its decisions, and what its
/// driver saw.
struct Node {
    at: SocketAddr,
    core: DaemonCore,
    /// Events of the road already handed to the core.
    seen: usize,
    /// Messages on the road: what a failure hands back to the core.
    sending: BTreeMap<MessageId, (String, Uid, Arc<Envelope>, Option<Instant>)>,
    /// The local yards (registered or not) and what reached each.
    yards: BTreeMap<String, Vec<Envelope>>,
    /// Events fired on Salt's bus.
    fired: Vec<(&'static str, Map<String, Value>)>,
    /// Masters a minion joins again when their session drops (none on a master).
    masters: Vec<SocketAddr>,
}

impl Node {
    fn master(world: &mut World, name: &str, port: u16, presence_events: bool) -> Self {
        let mut spec = Spec::new(name, port).main();
        spec.mutable = true;
        spec.role_is_name = true;
        spec.confirm_messages = true;
        spec.timers = answering(presence_timers(PERIOD));
        let at = world.add(spec);
        Self::new(at, name, false, presence_events, Vec::new())
    }

    fn minion(world: &mut World, name: &str, port: u16, masters: Vec<SocketAddr>) -> Self {
        let mut spec = Spec::new(name, port);
        spec.confirm_messages = true;
        spec.timers = presence_timers(PERIOD);
        let at = world.add(spec);
        for &master in &masters {
            world.join(at, master);
        }
        Self::new(at, name, true, false, masters)
    }

    fn new(
        at: SocketAddr,
        name: &str,
        upstream: bool,
        presence_events: bool,
        masters: Vec<SocketAddr>,
    ) -> Self {
        let limit = Duration::from_secs(30);
        Self {
            at,
            core: DaemonCore::new(name.to_owned(), upstream, limit, presence_events),
            seen: 0,
            sending: BTreeMap::new(),
            yards: BTreeMap::new(),
            fired: Vec::new(),
            masters,
        }
    }

    /// A restarted daemon: a new core, no yards, on the road the world restarted.
    fn restarted(&self, world: &World) -> Self {
        let (name, upstream) = (self.core.own(), !self.masters.is_empty());
        let mut node = Self::new(self.at, name, upstream, false, self.masters.clone());
        node.seen = world.peer_ref(self.at).events.len();
        node
    }

    /// Local yard `yard` registers for `shares` (its registration answer is taken).
    fn register(&mut self, world: &mut World, yard: &str, shares: &[&str]) {
        self.yards.insert(yard.to_owned(), Vec::new());
        let msg = json!({"route": {"src": [null, yard, null], "dst": [null, "manor", "register"]},
            "load": {"shares": shares}});
        self.lane_message(world, yard, msg);
        let answer = self.yards[yard].last().cloned();
        let answer = answer.expect("a registration answer");
        assert_eq!(answer.load["registered"], true);
        // the answer carries the daemon's version: the registering yard checks it
        assert_eq!(answer.load["daemon_version"], DAEMON_VERSION);
    }

    /// Local yard `yard` sends `load` to `[null, null, share]` (a minion's: upstream).
    fn send(&mut self, world: &mut World, yard: &str, share: &str, load: Value) {
        let msg =
            json!({"route": {"src": [null, yard, null], "dst": [null, null, share]}, "load": load});
        self.lane_message(world, yard, msg);
    }

    fn lane_message(&mut self, world: &mut World, yard: &str, msg: Value) {
        let now = world.net.now();
        let body = msg.as_object().cloned().unwrap();
        self.core.from_lane(yard, &body, now);
        self.apply(world);
    }

    /// Hands the road's new events to the core, runs its due timer, carries out the effects.
    fn pump(&mut self, world: &mut World) {
        if !world.net.contains(self.at) {
            return;
        }
        let now = world.net.now();
        let wall = SystemTime::UNIX_EPOCH + world.net.elapsed();
        let events: Vec<Event> = world.peer_ref(self.at).events[self.seen..].to_vec();
        self.seen += events.len();
        for event in events {
            match event {
                Event::Message {
                    name,
                    body,
                    receipt,
                    ..
                } => {
                    self.core.from_road(&name, &body, (now, wall));
                    self.apply(world);
                    if let Some(receipt) = receipt {
                        world.peer(self.at).road.taken(now, receipt);
                    }
                }
                Event::Allowed { uid, name, ha } => {
                    self.core.allowed(&name, uid, ha, (now, wall));
                }
                Event::Presence { name, presence, .. } => {
                    self.core.presence(&name, presence, wall);
                }
                Event::Rejected { uid, name, .. } | Event::Removed { uid, name } => {
                    self.core.session_refused(&name, uid);
                }
                Event::Delivered { id, .. } => {
                    self.sending.remove(&id);
                }
                Event::SendFailed { id, reason, .. } => {
                    if let Some((estate, uid, env, held_until)) = self.sending.remove(&id) {
                        let failure = Failure {
                            env,
                            estate,
                            uid: Some(uid),
                            reason: reason.to_string(),
                            held_until,
                        };
                        self.core.failed(failure, now);
                    }
                }
                Event::JoinFailed { .. } if !self.masters.is_empty() => self.rejoin(world),
                _ => {}
            }
            self.apply(world);
        }
        if self.core.poll_timeout().is_some_and(|t| t <= now) {
            self.core.handle_timeout(now);
        }
        self.apply(world);
    }

    /// The minion's join loop after a failed join: every master not allowed is joined again.
    fn rejoin(&mut self, world: &mut World) {
        for master in self.masters.clone() {
            let remotes = world.peer_ref(self.at).road.remotes();
            if !remotes
                .iter()
                .any(|r| r.ha == master && r.allowed == Some(true))
            {
                self.join_again(world, master);
            }
        }
    }

    /// The minion's join loop for `master`: its old remote forgotten, a vacuous join.
    fn join_again(&mut self, world: &mut World, master: SocketAddr) {
        let now = world.net.now();
        let road = &mut world.peer(self.at).road;
        for old in road.remotes().iter().filter(|r| r.ha == master) {
            let _ = road.remove(now, old.uid);
        }
        let _ = road.join(now, master);
        world.peer(self.at).collect(now);
    }

    fn apply(&mut self, world: &mut World) {
        loop {
            let effects = self.core.take_effects();
            if effects.is_empty() {
                return;
            }
            let now = world.net.now();
            for effect in effects {
                match effect {
                    Effect::Transmit {
                        targets,
                        env,
                        held_until,
                    } => {
                        let body: Arc<[u8]> = encode_json(&env.to_body()).into();
                        for (estate, uid) in targets {
                            let peer = world.peer(self.at);
                            let env = Arc::clone(&env);
                            match peer.road.send_encoded(now, uid, Arc::clone(&body)) {
                                Ok(id) => {
                                    self.sending.insert(id, (estate, uid, env, held_until));
                                }
                                Err(e) => {
                                    let failure = Failure {
                                        env,
                                        estate,
                                        uid: Some(uid),
                                        reason: e.to_string(),
                                        held_until,
                                    };
                                    self.core.failed(failure, now);
                                }
                            }
                            peer.collect(now);
                        }
                    }
                    Effect::Local { yard, env } => match self.yards.get_mut(&yard) {
                        Some(inbox) => inbox.push(env),
                        None => self.core.undelivered(&yard, env, now),
                    },
                    Effect::Fire { tag, data } => self.fired.push((tag, data)),
                    Effect::Status { .. } => {}
                    Effect::SessionDropped { name, uid } => match self.masters.is_empty() {
                        // The master forgets a lost minion: it joins again.
                        true => {
                            if let Some(uid) = uid {
                                let _ = world.peer(self.at).road.remove(now, uid);
                                world.peer(self.at).collect(now);
                            }
                        }
                        false => {
                            let remote = world.peer_ref(self.at).remote(&name);
                            if let Some(master) = remote.map(|r| r.ha) {
                                self.join_again(world, master);
                            }
                        }
                    },
                }
            }
        }
    }

    /// The `n` of the loads that reached `yard` from the road, sorted.
    fn numbers(&self, yard: &str) -> Vec<u64> {
        let mut got: Vec<u64> = self.yards[yard]
            .iter()
            .filter_map(|e| e.load.get("n").and_then(Value::as_u64))
            .collect();
        got.sort_unstable();
        got
    }

    /// The error kinds that came back to `yard`.
    fn errors(&self, yard: &str) -> Vec<String> {
        self.yards[yard]
            .iter()
            .filter_map(|e| {
                e.load
                    .get("kind")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .collect()
    }

    fn allowed(&self, name: &str) -> bool {
        self.core.allowed_peers().contains(name)
    }

    fn allowed_peers(&self) -> usize {
        self.core.allowed_peers().len()
    }
}

/// Runs `nodes` for `duration` of virtual time, their drivers looking every [`STEP`].
fn run(world: &mut World, nodes: &mut [&mut Node], duration: Duration) {
    let end = world.net.elapsed() + duration;
    while world.net.elapsed() < end {
        world.net.run_for(STEP).unwrap();
        for node in nodes.iter_mut() {
            node.pump(world);
        }
    }
}

/// Runs `nodes` until `done`, at most `limit` of virtual time; the time it took.
fn run_until(
    world: &mut World,
    nodes: &mut [&mut Node],
    limit: Duration,
    done: impl Fn(&[&mut Node]) -> bool,
) -> Duration {
    let start = world.net.elapsed();
    while !done(nodes) {
        assert!(world.net.elapsed() - start < limit, "not within {limit:?}");
        run(world, nodes, STEP);
    }
    world.net.elapsed() - start
}

#[test]
fn returns_wait_through_a_master_crash_and_arrive_once() {
    let mut world = World::new(7, link(0.0));
    let mut master = Node::master(&mut world, "master", 4505, false);
    let mut minion = Node::minion(&mut world, "m1", 4510, vec![master.at]);
    master.register(&mut world, "collector", &["ret"]);
    minion.register(&mut world, "worker", &["job"]);
    run_until(
        &mut world,
        &mut [&mut master, &mut minion],
        PERIOD * 10,
        |n| n[0].allowed("m1") && n[1].allowed("master"),
    );

    // In flight when the master dies, then sent while it is down and lost.
    let crashed = world.crash(master.at);
    for n in 0..10 {
        minion.send(&mut world, "worker", "ret", json!({"n": n}));
    }
    let lost = run_until(&mut world, &mut [&mut minion], PERIOD * 10, |n| {
        !n[0].allowed("master")
    });
    assert!(lost <= PERIOD * 3, "lost after {lost:?}");
    for n in 10..30 {
        minion.send(&mut world, "worker", "ret", json!({"n": n}));
    }
    assert!(minion.core.held() >= 20, "held while no master is allowed");
    run(&mut world, &mut [&mut minion], PERIOD * 5);

    // The master comes back (its keep kept) with a new daemon.
    world.add_on(crashed.spec, crashed.keep);
    let mut master = master.restarted(&world);
    master.register(&mut world, "collector", &["ret"]);
    let back = run_until(
        &mut world,
        &mut [&mut master, &mut minion],
        PERIOD * 20,
        |n| n[0].numbers("collector").len() >= 30,
    );
    run(&mut world, &mut [&mut master, &mut minion], PERIOD * 5);
    assert_eq!(master.numbers("collector"), (0..30).collect::<Vec<_>>());
    assert_eq!(minion.errors("worker"), Vec::<String>::new());
    assert_eq!(minion.core.held(), 0);
    eprintln!("all 30 returns at the master {back:?} after its restart");
}

#[test]
fn a_held_message_fails_back_to_its_sender_at_the_hold_limit() {
    let mut world = World::new(8, link(0.0));
    let mut master = Node::master(&mut world, "master", 4505, false);
    let mut minion = Node::minion(&mut world, "m1", 4510, vec![master.at]);
    minion.core = DaemonCore::new("m1".into(), true, Duration::from_secs(5), false);
    minion.register(&mut world, "worker", &["job"]);
    run_until(
        &mut world,
        &mut [&mut master, &mut minion],
        PERIOD * 10,
        |n| n[1].allowed("master"),
    );
    world.crash(master.at);
    run_until(&mut world, &mut [&mut minion], PERIOD * 10, |n| {
        !n[0].allowed("master")
    });
    minion.send(&mut world, "worker", "ret", json!({"n": 1}));
    let waited = run_until(&mut world, &mut [&mut minion], PERIOD * 20, |n| {
        !n[0].errors("worker").is_empty()
    });
    assert_eq!(minion.errors("worker"), ["send_failed"]);
    assert!(
        waited >= Duration::from_secs(5) && waited <= Duration::from_secs(5) + STEP * 2,
        "{waited:?}"
    );
}

#[test]
fn a_lost_minion_is_told_to_presence_yards_and_on_the_bus_and_comes_back_as_new() {
    let mut world = World::new(9, link(0.0));
    let mut master = Node::master(&mut world, "master", 4505, true);
    let mut minion = Node::minion(&mut world, "m1", 4510, vec![master.at]);
    master.register(&mut world, "watcher", &["presence"]);
    run_until(
        &mut world,
        &mut [&mut master, &mut minion],
        PERIOD * 10,
        |n| n[0].allowed("m1"),
    );
    let crashed = world.crash(minion.at);
    let lost = run_until(&mut world, &mut [&mut master], PERIOD * 10, |n| {
        !n[0].allowed("m1")
    });
    assert!(lost <= PERIOD * 3, "lost after {lost:?}");
    world.add_on(crashed.spec, crashed.keep);
    let mut minion = minion.restarted(&world);
    minion.rejoin(&mut world);
    run_until(
        &mut world,
        &mut [&mut master, &mut minion],
        PERIOD * 10,
        |n| n[0].allowed("m1"),
    );
    let changes: Vec<&str> = master.yards["watcher"]
        .iter()
        .filter_map(|e| e.load.get("change").and_then(Value::as_str))
        .collect();
    assert_eq!(changes, ["new", "lost", "new"]);
    let fired: Vec<Value> = master
        .fired
        .iter()
        .filter(|(tag, _)| *tag == PRESENCE_CHANGE_TAG)
        .map(|(_, data)| Value::Object(data.clone()))
        .collect();
    assert_eq!(
        fired,
        [
            json!({"new": ["m1"], "lost": []}),
            json!({"new": [], "lost": ["m1"]}),
            json!({"new": ["m1"], "lost": []}),
        ]
    );
}

#[test]
fn upstream_messages_fail_over_to_the_next_master_when_the_first_is_lost() {
    let mut world = World::new(10, link(0.0));
    let mut a = Node::master(&mut world, "master_a", 4505, false);
    let mut b = Node::master(&mut world, "master_b", 4506, false);
    let mut minion = Node::minion(&mut world, "m1", 4510, vec![a.at, b.at]);
    minion
        .core
        .table
        .set_upstreams(vec!["master_a".into(), "master_b".into()]);
    for master in [&mut a, &mut b] {
        master.register(&mut world, "collector", &["ret"]);
    }
    minion.register(&mut world, "worker", &["job"]);
    run_until(
        &mut world,
        &mut [&mut a, &mut b, &mut minion],
        PERIOD * 10,
        |n| n[2].allowed("master_a") && n[2].allowed("master_b"),
    );
    minion.send(&mut world, "worker", "ret", json!({"n": 0}));
    run(&mut world, &mut [&mut a, &mut b, &mut minion], PERIOD);
    assert_eq!(
        (a.numbers("collector"), b.numbers("collector")),
        (vec![0], vec![])
    );

    // In flight to a when it dies: its session ends, the message goes to b.
    world.crash(a.at);
    minion.send(&mut world, "worker", "ret", json!({"n": 1}));
    run_until(&mut world, &mut [&mut b, &mut minion], PERIOD * 10, |n| {
        !n[1].allowed("master_a")
    });
    // Sent once a is lost: straight to b.
    minion.send(&mut world, "worker", "ret", json!({"n": 2}));
    run_until(&mut world, &mut [&mut b, &mut minion], PERIOD * 10, |n| {
        n[0].numbers("collector").len() >= 2
    });
    run(&mut world, &mut [&mut b, &mut minion], PERIOD * 2);
    assert_eq!(b.numbers("collector"), [1, 2]);
    assert_eq!(minion.errors("worker"), Vec::<String>::new());
    assert_eq!(minion.core.table.counters().get("failover"), Some(&1));
}

#[test]
fn the_master_answers_its_minions_alives_and_initiates_none() {
    let mut world = World::new(11, link(0.0));
    let mut master = Node::master(&mut world, "master", 4505, false);
    let mut minions: Vec<Node> = (0..5)
        .map(|i| Node::minion(&mut world, &format!("m{i}"), 4510 + i, vec![master.at]))
        .collect();
    let mut nodes: Vec<&mut Node> = std::iter::once(&mut master).chain(&mut minions).collect();
    run_until(&mut world, &mut nodes, PERIOD * 10, |n| {
        n[0].allowed_peers() == 5
    });
    let initiated = |world: &World, at| world.peer_ref(at).road.stats().alive_initiate;
    let before: Vec<u64> = nodes.iter().map(|n| initiated(&world, n.at)).collect();
    run(&mut world, &mut nodes, PERIOD * 20);
    let sent: Vec<u64> = nodes
        .iter()
        .zip(&before)
        .map(|(n, b)| initiated(&world, n.at) - b)
        .collect();
    assert_eq!(sent[0], 0, "the master initiated alives: {sent:?}");
    assert!(
        sent[1..].iter().all(|&s| s >= 18),
        "each minion about one a period: {sent:?}"
    );
    assert_eq!(master.core.allowed_peers().len(), 5);
}
