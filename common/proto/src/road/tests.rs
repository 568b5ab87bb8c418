//! End-to-end tests of two roads over a zero-latency loop in virtual time.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use super::*;
use crate::keep::{apply_now, Keep, MemKeep, RoleRecord, Snapshot};

/// Decides whether a datagram (from, to, payload) is lost.
type Filter = Box<dyn FnMut(SocketAddr, SocketAddr, &[u8]) -> bool>;

/// Two (or more) roads wired together; datagrams delivered at once, time jumps to the next
/// deadline when nothing is in flight.
struct Net {
    now: Instant,
    nodes: Vec<(SocketAddr, Road)>,
    /// The keeps the nodes' persist ops are applied to (a fresh one for a node without one).
    keeps: Vec<(SocketAddr, MemKeep)>,
    events: Vec<(SocketAddr, Event)>,
    /// Drop datagrams for which this returns true (from, to, payload).
    filter: Filter,
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn road(name: &str, port: u16, main: bool, keep: MemKeep, now: Instant) -> Road {
    let mut config = RoadConfig::new(name, addr(port));
    config.main = main;
    config.auto = AutoMode::Always;
    road_of(config, keep, now)
}

/// The road of `config` (its rng seeded from its name).
fn road_of(config: RoadConfig, keep: MemKeep, now: Instant) -> Road {
    let name = config.name.as_bytes();
    let mut seed = [0u8; 32];
    seed[..name.len().min(32)].copy_from_slice(&name[..name.len().min(32)]);
    let snapshot = Snapshot::load(&keep).expect("keep");
    Road::new(config, None, snapshot, seed, now).expect("road")
}

impl Net {
    fn new(now: Instant) -> Net {
        Net {
            now,
            nodes: Vec::new(),
            keeps: Vec::new(),
            events: Vec::new(),
            filter: Box::new(|_, _, _| false),
        }
    }

    fn node(&mut self, a: SocketAddr) -> &mut Road {
        &mut self
            .nodes
            .iter_mut()
            .find(|(x, _)| *x == a)
            .expect("node")
            .1
    }

    /// Persists the node at `at`'s changes into `keep` from now on.
    fn keep(&mut self, at: SocketAddr, keep: &MemKeep) {
        self.keeps.push((at, keep.clone()));
    }

    /// Delivers everything pending; returns whether anything moved.
    fn flush(&mut self) -> bool {
        let mut moved = false;
        loop {
            let mut batch = Vec::new();
            for (a, r) in &mut self.nodes {
                let keep = match self.keeps.iter().position(|(k, _)| k == a) {
                    Some(i) => &mut self.keeps[i].1,
                    None => {
                        self.keeps.push((*a, MemKeep::new()));
                        &mut self.keeps.last_mut().expect("pushed").1
                    }
                };
                assert_eq!(apply_now(r, keep, self.now), 0, "keep");
                while let Some(t) = r.poll_transmit() {
                    batch.push((*a, t));
                }
                while let Some(e) = r.poll_event() {
                    self.events.push((*a, e));
                }
            }
            if batch.is_empty() {
                return moved;
            }
            moved = true;
            for (from, t) in batch {
                if (self.filter)(from, t.dest, &t.payload) {
                    continue;
                }
                let now = self.now;
                if let Some((_, r)) = self.nodes.iter_mut().find(|(a, _)| *a == t.dest) {
                    r.handle_datagram(now, from, &t.payload);
                }
            }
        }
    }

    /// Runs until `done` or `limit` of virtual time.
    fn run(&mut self, limit: Duration, mut done: impl FnMut(&mut Net) -> bool) -> bool {
        let end = self.now + limit;
        loop {
            self.flush();
            if done(self) {
                return true;
            }
            let next = self
                .nodes
                .iter()
                .filter_map(|(_, r)| r.poll_timeout())
                .min();
            let Some(next) = next else { return false };
            if next > end {
                return false;
            }
            self.now = self.now.max(next);
            let now = self.now;
            for (_, r) in &mut self.nodes {
                if r.poll_timeout().is_some_and(|d| d <= now) {
                    r.handle_timeout(now);
                }
            }
        }
    }

    fn has(&self, at: SocketAddr, pred: impl Fn(&Event) -> bool) -> bool {
        self.events.iter().any(|(a, e)| *a == at && pred(e))
    }

    fn count(&self, at: SocketAddr, pred: impl Fn(&Event) -> bool) -> usize {
        self.events
            .iter()
            .filter(|(a, e)| *a == at && pred(e))
            .count()
    }
}

fn body(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// Joined, allowed and alive both ways, then returns our uid for the main at `m`.
fn connect(net: &mut Net, m: SocketAddr, o: SocketAddr) -> Uid {
    let now = net.now;
    let uid = net.node(o).join(now, m).expect("join");
    let ok = net.run(Duration::from_secs(10), |n| {
        n.has(o, |e| matches!(e, Event::Allowed { .. }))
            && n.has(m, |e| matches!(e, Event::Allowed { .. }))
    });
    assert!(ok, "not allowed: {:?}", net.events);
    uid
}

#[test]
fn join_allow_alive_and_messages() {
    let t0 = Instant::now();
    let (m, o) = (addr(7530), addr(7531));
    let mut net = Net::new(t0);
    net.nodes
        .push((m, road("main", 7530, true, MemKeep::new(), t0)));
    net.nodes
        .push((o, road("other", 7531, false, MemKeep::new(), t0)));
    let uid = connect(&mut net, m, o);

    // both sides know each other by name with matching uids
    let other_view = net.node(o).remotes();
    assert_eq!(other_view.len(), 1);
    assert_eq!(other_view[0].name, "main");
    assert_eq!(other_view[0].joined, Some(true));
    assert_eq!(other_view[0].allowed, Some(true));
    let main_view = net.node(m).remotes();
    assert_eq!(main_view[0].name, "other");
    assert_eq!(main_view[0].uid, other_view[0].fuid);
    assert_eq!(main_view[0].fuid, other_view[0].uid);

    // alive after the cascade
    assert!(net.run(Duration::from_secs(5), |n| n.has(o, |e| matches!(
        e,
        Event::Presence {
            presence: Presence::Alive,
            ..
        }
    ))));

    // a small message and a segmented one (about 200 KB)
    let now = net.now;
    let small = net
        .node(o)
        .send(now, uid, body(json!({"subject": "hi", "n": 1})))
        .unwrap();
    let blob: String = (0..200_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let big = net
        .node(o)
        .send(now, uid, body(json!({"blob": blob.clone()})))
        .unwrap();
    let ok = net.run(Duration::from_secs(10), |n| {
        n.count(o, |e| matches!(e, Event::Delivered { .. })) == 2
    });
    assert!(
        ok,
        "not delivered: {:?}",
        net.events.iter().rev().take(5).collect::<Vec<_>>()
    );
    assert!(net.has(o, |e| *e == Event::Delivered { id: small, uid }));
    assert!(net.has(o, |e| *e == Event::Delivered { id: big, uid }));
    let got: Vec<&Map<String, Value>> = net
        .events
        .iter()
        .filter_map(|(a, e)| match e {
            Event::Message { name, body, .. } if *a == m && name == "other" => Some(body),
            _ => None,
        })
        .collect();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0]["subject"], "hi");
    assert_eq!(got[1]["blob"].as_str(), Some(blob.as_str()));

    // and back from main
    let now = net.now;
    let back = net.node(m).uid_by_name("other").unwrap();
    net.node(m)
        .send(now, back, body(json!({"reply": true})))
        .unwrap();
    assert!(net.run(Duration::from_secs(5), |n| n.has(o, |e| matches!(
        e,
        Event::Message { body, .. } if body.get("reply") == Some(&Value::Bool(true))
    ))));
    assert_eq!(net.node(m).stats().get("bad_signature"), None);
    assert_eq!(net.node(o).stats().get("decrypt_error"), None);
}

#[test]
fn message_to_silent_peer_fails_after_bounded_time() {
    let t0 = Instant::now();
    let (m, o) = (addr(7540), addr(7541));
    let mut net = Net::new(t0);
    net.nodes
        .push((m, road("main", 7540, true, MemKeep::new(), t0)));
    net.nodes
        .push((o, road("other", 7541, false, MemKeep::new(), t0)));
    let uid = connect(&mut net, m, o);
    // main goes silent
    net.filter = Box::new(move |_, to, _| to == m);
    let now = net.now;
    let id = net.node(o).send(now, uid, body(json!({"x": 1}))).unwrap();
    let ok = net.run(Duration::from_secs(60), |n| {
        n.has(
            o,
            |e| matches!(e, Event::SendFailed { id: i, .. } if *i == id),
        )
    });
    assert!(ok);
    let waited = net.now - now;
    assert!(
        waited >= Duration::from_secs(30) && waited < Duration::from_secs(32),
        "{waited:?}"
    );
    assert!(net.has(o, |e| matches!(
        e,
        Event::Presence {
            presence: Presence::Lost,
            ..
        }
    )));
}

/// A restarted estate restores its identity and remotes from the keep and, on the next
/// message, allows again without a new join; the peer's own messages recover too.
#[test]
fn restart_from_keep_reallows_and_delivers() {
    let t0 = Instant::now();
    let (m, o) = (addr(7570), addr(7571));
    let (main_keep, other_keep) = (MemKeep::new(), MemKeep::new());
    let mut net = Net::new(t0);
    net.keep(m, &main_keep);
    net.keep(o, &other_keep);
    net.nodes
        .push((m, road("main", 7570, true, main_keep.clone(), t0)));
    net.nodes
        .push((o, road("other", 7571, false, other_keep.clone(), t0)));
    let uid = connect(&mut net, m, o);
    let before = net.node(o).remotes()[0].clone();

    // other restarts: same uids, joined restored, not allowed
    let now = net.now;
    net.nodes[1].1 = road("other", 7571, false, other_keep.clone(), now);
    let after = net.node(o).remotes();
    assert_eq!(after.len(), 1);
    assert_eq!(
        (after[0].uid, after[0].fuid, &after[0].name),
        (before.uid, before.fuid, &before.name)
    );
    assert_eq!(after[0].joined, Some(true));
    assert_eq!(after[0].allowed, None);
    net.events.clear();
    net.node(o)
        .send(now, uid, body(json!({"after": "restart"})))
        .unwrap();
    assert!(net.run(Duration::from_secs(10), |n| n.has(m, |e| matches!(
        e,
        Event::Message { body, .. } if body.contains_key("after")
    ))));
    assert!(net.has(o, |e| matches!(e, Event::Delivered { .. })));
    assert!(
        !net.has(o, |e| matches!(e, Event::Joined { .. })),
        "no new join needed"
    );

    // main restarts: other's next message is refused (main not allowed), requeued after a
    // new allow, delivered once
    let now = net.now;
    net.nodes[0].1 = road("main", 7570, true, main_keep.clone(), now);
    net.events.clear();
    net.node(o)
        .send(now, uid, body(json!({"main": "restarted"})))
        .unwrap();
    assert!(net.run(Duration::from_secs(10), |n| n
        .has(o, |e| matches!(e, Event::Delivered { .. }))));
    assert_eq!(
        net.count(
            m,
            |e| matches!(e, Event::Message { body, .. } if body.contains_key("main"))
        ),
        1
    );
}

/// auto never on the main: the join pends until the operator accepts, then completes
/// (allow and messages follow); a rejected estate is removed.
#[test]
fn auto_never_pends_until_accepted() {
    let t0 = Instant::now();
    let (m, o) = (addr(7580), addr(7581));
    let mut net = Net::new(t0);
    let mut config = RoadConfig::new("main", m);
    config.main = true;
    config.auto = AutoMode::Never;
    let main = Road::new(config, None, Snapshot::default(), [3; 32], t0).unwrap();
    net.nodes.push((m, main));
    net.nodes
        .push((o, road("other", 7581, false, MemKeep::new(), t0)));
    let uid = net.node(o).join(t0, m).unwrap();
    assert!(net.run(Duration::from_secs(1), |n| n.has(m, |e| matches!(
        e,
        Event::Pending { name, .. } if name == "other"
    ))));
    assert!(!net.has(o, |e| matches!(e, Event::Joined { .. })));
    let status = net.node(m).remotes();
    assert_eq!(status[0].acceptance, Some(Acceptance::Pending));
    let now = net.now;
    net.node(m).accept(now, "other").unwrap();
    net.node(o)
        .send(now, uid, body(json!({"after": "accept"})))
        .unwrap();
    assert!(net.run(Duration::from_secs(5), |n| n
        .has(m, |e| matches!(e, Event::Message { .. }))));
    assert!(net.has(o, |e| matches!(e, Event::Joined { .. })));
    assert_eq!(
        net.node(m).remotes()[0].acceptance,
        Some(Acceptance::Accepted)
    );

    let now = net.now;
    net.node(m).reject(now, "other").unwrap();
    net.flush();
    assert!(net.node(m).remotes().is_empty());
    assert!(net.has(
        m,
        |e| matches!(e, Event::Removed { name, .. } if name == "other")
    ));
}

mod robustness {
    use super::*;
    use crate::crypto::{PrivateKey, Signer};
    use crate::packet::{self, BodyKind, CoatKind, Flags, PacketKind, TransactionKind};
    use proptest::prelude::*;

    const OTHER_SEED: [u8; 32] = [9; 32];

    /// Datagrams "other" sent in a real join/allow/alive/message exchange, and the main road
    /// that took part (joined and allowed with "other").
    fn corpus() -> (Vec<Vec<u8>>, Road, Instant) {
        let t0 = Instant::now();
        let (m, o) = (addr(7590), addr(7591));
        let mut net = Net::new(t0);
        net.nodes
            .push((m, road("main", 7590, true, MemKeep::new(), t0)));
        let mut config = RoadConfig::new("other", o);
        config.auto = AutoMode::Always;
        let keys = (
            Signer::from_seed(&OTHER_SEED),
            PrivateKey::from_bytes(&[8; 32]),
        );
        let other = Road::new(config, Some(keys), Snapshot::default(), [5; 32], t0).unwrap();
        net.nodes.push((o, other));
        let seen = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let tap = seen.clone();
        net.filter = Box::new(move |from, _, d| {
            if from == o {
                tap.borrow_mut().push(d.to_vec());
            }
            false
        });
        let uid = connect(&mut net, m, o);
        let now = net.now;
        net.node(o)
            .send(now, uid, body(json!({"blob": "z".repeat(3000)})))
            .unwrap();
        net.run(Duration::from_secs(5), |n| {
            n.has(m, |e| matches!(e, Event::Message { .. }))
        });
        let out = seen.borrow().clone();
        let now = net.now;
        let main = net.nodes.remove(0).1;
        (out, main, now)
    }

    /// A head field changed to an arbitrary value.
    fn mutate(head: &mut packet::Head, field: u8, value: u32) {
        match field % 10 {
            0 => head.si = value,
            1 => head.ti = value,
            2 => head.sn = value,
            3 => head.sc = value,
            4 => head.ml = value,
            5 => head.se = value,
            6 => head.de = value,
            7 => head.pk = PacketKind::from_code(u64::from(value % 17)).unwrap_or(PacketKind::Nack),
            8 => {
                head.tk = TransactionKind::from_code(u64::from(value % 5))
                    .unwrap_or(TransactionKind::Alive)
            }
            _ => {
                head.fg = Flags(value as u8);
                head.bk = BodyKind::from_code(u64::from(value % 4)).unwrap_or(BodyKind::Json);
                head.ck = CoatKind::from_code(u64::from(value % 2)).unwrap_or(CoatKind::Nacl);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// Mutated real datagrams (heads and coats changed, then validly signed by the
        /// remote, so they reach the transactions), plus random bytes, never make a joined,
        /// allowed road panic.
        #[test]
        fn mutated_datagrams_never_panic(
            edits in proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u32>(), any::<usize>()), 1..40),
            noise in proptest::collection::vec(any::<u8>(), 0..1100),
        ) {
            let (corpus, mut victim, now) = corpus();
            let signer = Signer::from_seed(&OTHER_SEED);
            let from = addr(7591);
            victim.handle_datagram(now, from, &noise);
            for (which, field, value, at) in edits {
                let original = &corpus[which % corpus.len()];
                let Ok(rx) = packet::parse(original) else { continue };
                let mut head = rx.head.clone();
                let mut coat = rx.coat.to_vec();
                mutate(&mut head, field, value);
                if !coat.is_empty() && field % 3 == 0 {
                    let i = at % coat.len();
                    coat[i] ^= 0x5a;
                }
                let signed = (head.fk == crate::packet::FootKind::Nacl).then_some(&signer);
                if let Ok(d) = packet::pack(&head, &coat, signed) {
                    victim.handle_datagram(now, from, &d);
                }
                victim.handle_timeout(now + Duration::from_secs(1));
                while victim.poll_transmit().is_some() {}
                while victim.poll_event().is_some() {}
            }
            prop_assert!(victim.stats().get("rx_packets").copied().unwrap_or(0) > 0);
        }
    }
}

/// A large message sent at once (burst 0) leaves in chunks: each road call signs and queues
/// at most `CHUNK` segments, the rest is due at once on the timer (so a driver sends a
/// chunk before it signs the next); all chunks together are the whole message, delivered.
#[test]
fn a_large_burst_leaves_in_chunks_due_at_once() {
    let t0 = Instant::now();
    let mut net = Net::new(t0);
    let (m, o) = (addr(7610), addr(7611));
    net.nodes
        .push((m, road("main", 7610, true, MemKeep::new(), t0)));
    net.nodes
        .push((o, road("other", 7611, false, MemKeep::new(), t0)));
    let uid = connect(&mut net, m, o);
    let now = net.now;
    let sender = net.node(o);
    while sender.poll_transmit().is_some() {}
    let blob = "x".repeat(100_000);
    sender
        .send(now, uid, body(json!({ "blob": blob })))
        .expect("send");
    let mut chunks = Vec::new();
    loop {
        let mut n = 0;
        while sender.poll_transmit().is_some() {
            n += 1;
        }
        chunks.push(n);
        if sender.poll_timeout() != Some(now) {
            break;
        }
        sender.handle_timeout(now);
    }
    let segments: usize = chunks.iter().sum();
    assert!(segments > 90, "{segments} segments");
    assert!(chunks.len() > 1, "{chunks:?}");
    let chunk = message::CHUNK as usize;
    assert!(chunks.iter().all(|&n| n <= chunk), "{chunks:?}");
    assert!(chunks[..chunks.len() - 1].iter().all(|&n| n == chunk));
    assert_eq!(
        net.node(o).stats().get("message_segment_tx").copied(),
        Some(segments as u64),
    );
    // Lost on the wire here: the receiver's asks for them and the redo deliver it anyway.
    assert!(net.run(Duration::from_secs(30), |n| n
        .has(o, |e| matches!(e, Event::Delivered { .. }))));
}

/// A main with auto `never` and the keep `keep` (shared with the test), refusing roles that
/// are not names when `role_is_name`; the attacker `evil` claiming role `victim`; the real
/// `victim`. Returns the net, the keep's record of role `victim` after the attacker's join
/// and whether `victim` then joins once its keys are accepted.
fn role_claim(role_is_name: bool, keep: &MemKeep) -> (Net, Option<RoleRecord>, bool) {
    let t0 = Instant::now();
    let mut net = Net::new(t0);
    let (m, e, v) = (addr(7620), addr(7621), addr(7622));
    let mut main = RoadConfig::new("main", m);
    main.main = true;
    main.mutable = true;
    main.role_is_name = role_is_name;
    let mut evil = RoadConfig::new("evil", e);
    evil.auto = AutoMode::Always;
    evil.role = Some("victim".into());
    net.keep(m, keep);
    net.nodes.push((m, road_of(main, keep.clone(), t0)));
    net.nodes.push((e, road_of(evil, MemKeep::new(), t0)));
    net.nodes
        .push((v, road("victim", 7622, false, MemKeep::new(), t0)));
    net.node(e).join(t0, m).expect("join");
    let ended = net.run(Duration::from_secs(30), |n| {
        n.has(e, |ev| {
            matches!(ev, Event::Rejected { .. } | Event::JoinFailed { .. })
        }) || n.has(m, |ev| matches!(ev, Event::Pending { .. }))
    });
    assert!(ended, "{:?}", net.events);
    // Let the attacker's join time out on both sides before the victim comes.
    net.run(Duration::from_secs(30), |_| false);
    let claimed = keep.load_role("victim").expect("keep");
    let now = net.now;
    net.node(v).join(now, m).expect("join");
    net.run(Duration::from_secs(2), |n| {
        n.has(
            m,
            |ev| matches!(ev, Event::Pending { name, .. } if name == "victim"),
        )
    });
    let now = net.now;
    // The operator accepts `victim` if asked (as the daemon decides on `Pending`).
    if net.has(
        m,
        |ev| matches!(ev, Event::Pending { name, .. } if name == "victim"),
    ) {
        net.node(m).accept(now, "victim").expect("accept");
    }
    let joined = net.run(Duration::from_secs(10), |n| {
        n.has(v, |ev| matches!(ev, Event::Allowed { .. }))
    });
    (net, claimed, joined)
}

/// Keys are decided per role: a joiner offering another estate's name as its role has its
/// keys recorded for that estate, which is then rejected. `role_is_name` refuses such a join
/// before the keep records anything.
#[test]
fn a_role_that_is_not_the_name_cannot_claim_another_estates_keys() {
    let (net, claimed, joined) = role_claim(false, &MemKeep::new());
    let attacker = net.nodes[1].1.core.signer.verify_key().to_hex();
    assert_eq!(
        claimed.map(|r| r.verhex),
        Some(attacker),
        "{:?}",
        net.events
    );
    assert!(!joined, "the real victim is locked out: {:?}", net.events);

    let keep = MemKeep::new();
    let (net, claimed, joined) = role_claim(true, &keep);
    let (m, e) = (net.nodes[0].0, net.nodes[1].0);
    assert_eq!(claimed, None, "nothing recorded for the attacker");
    assert_eq!(net.nodes[0].1.stats().get("join_role_not_name"), Some(&1));
    assert!(net.has(e, |ev| matches!(ev, Event::Rejected { .. })));
    assert!(!net.has(
        m,
        |ev| matches!(ev, Event::Pending { name, .. } if name == "evil")
    ));
    assert!(joined, "the real victim joins: {:?}", net.events);
    let role = keep.load_role("victim").expect("keep").expect("recorded");
    assert_eq!(
        role.verhex,
        net.nodes[2].1.core.signer.verify_key().to_hex()
    );
    assert_eq!(role.acceptance, crate::keep::Acceptance::Accepted);
}

/// A main (`auto`, mutable, roles are names) with `victim` joined, allowed and alive; then an
/// impostor named `victim` with other keys joins from another address. Returns the net, the
/// main's view of `victim` before the forged join, and the main's uid for it.
fn forged_join(auto: AutoMode, port: u16) -> (Net, RemoteStatus, Uid) {
    let t0 = Instant::now();
    let (m, v, x) = (addr(port), addr(port + 1), addr(port + 2));
    let mut net = Net::new(t0);
    let mut config = RoadConfig::new("main", m);
    config.main = true;
    config.mutable = true;
    config.role_is_name = true;
    config.auto = auto;
    net.nodes.push((m, road_of(config, MemKeep::new(), t0)));
    net.nodes
        .push((v, road("victim", port + 1, false, MemKeep::new(), t0)));
    let mut impostor = RoadConfig::new("victim", x);
    impostor.auto = AutoMode::Always;
    let impostor = Road::new(impostor, None, Snapshot::default(), [9; 32], t0).unwrap();
    net.nodes.push((x, impostor));
    net.node(v).join(t0, m).expect("join");
    let accepted = |n: &mut Net| n.has(v, |e| matches!(e, Event::Allowed { .. }));
    if auto == AutoMode::Never {
        assert!(net.run(Duration::from_secs(2), |n| n
            .has(m, |e| matches!(e, Event::Pending { .. }))));
        let now = net.now;
        net.node(m).accept(now, "victim").expect("accept");
    }
    assert!(
        net.run(Duration::from_secs(10), accepted),
        "{:?}",
        net.events
    );
    let uid = net.node(m).uid_by_name("victim").expect("victim");
    let before = net.node(m).remotes()[0].clone();
    assert_eq!(before.allowed, Some(true));
    net.events.clear();

    let now = net.now;
    net.node(x).join(now, m).expect("join");
    let ended = net.run(Duration::from_secs(30), |n| {
        n.has(x, |e| {
            matches!(e, Event::Rejected { .. } | Event::JoinFailed { .. })
        })
    });
    assert!(ended, "the impostor heard nothing: {:?}", net.events);
    (net, before, uid)
}

/// An impostor's join naming a joined remote with other keys is rejected without touching the
/// real remote: no `Rejected`/`Removed` of it (a daemon would stop routing to it), the same
/// uid, address, keys and session, and messages still flow both ways; it is counted and told
/// as `KeysRejected`.
#[test]
fn a_forged_join_with_other_keys_leaves_the_real_session_alone() {
    for (auto, port) in [(AutoMode::Once, 7640), (AutoMode::Never, 7650)] {
        let (mut net, before, uid) = forged_join(auto, port);
        let (m, v, x) = (net.nodes[0].0, net.nodes[1].0, net.nodes[2].0);
        let of_victim = |e: &Event| matches!(e, Event::Rejected { uid: u, .. } | Event::Removed { uid: u, .. } if *u == uid);
        assert!(!net.has(m, of_victim), "{auto:?}: {:?}", net.events);
        assert!(
            net.has(
                m,
                |e| matches!(e, Event::KeysRejected { uid: u, name, from, .. }
                if *u == uid && name == "victim" && *from == x)
            ),
            "{auto:?}: {:?}",
            net.events
        );
        assert_eq!(
            net.node(m).stats().get("join_rejected_keys_changed"),
            Some(&1),
            "{auto:?}"
        );
        let remotes = net.node(m).remotes();
        assert_eq!(remotes.len(), 1, "{auto:?}: {remotes:?}");
        let after = &remotes[0];
        assert_eq!(
            (after.uid, after.fuid, after.ha, &after.role),
            (before.uid, before.fuid, before.ha, &before.role),
            "{auto:?}"
        );
        assert_eq!(after.ha, v);
        assert_eq!(
            (after.joined, after.allowed, after.acceptance),
            (Some(true), Some(true), Some(Acceptance::Accepted)),
            "{auto:?}"
        );
        let real_keys = net.nodes[1].1.core.verhex.clone();
        let kept = net.node(m).remotes.get(&uid).map(|r| r.verhex.clone());
        assert_eq!(kept, Some(real_keys), "{auto:?}");
        assert_reaches_victim(&mut net, uid, auto);
        assert!(!net.has(x, |e| matches!(e, Event::Message { .. })));
    }
}

/// A non-vacuous join addressed to a joined remote's uid (uids are small and guessable) by an
/// estate with another name, role and keys is rejected while that remote's session lives:
/// on a mutable main it would otherwise rename the remote and take over its uid, address and
/// session (messages for `victim` would go to the impostor).
#[test]
fn a_forged_non_vacuous_join_cannot_take_over_a_joined_remote() {
    for (auto, port) in [(AutoMode::Once, 7660), (AutoMode::Never, 7670)] {
        let (mut net, before, uid) = forged_join(auto, port);
        let (m, v, x) = (net.nodes[0].0, net.nodes[1].0, addr(port + 3));
        net.events.clear();
        let mut config = RoadConfig::new("evil", x);
        config.auto = AutoMode::Always;
        let t0 = net.now;
        let mut evil = Road::new(config, None, Snapshot::default(), [11; 32], t0).unwrap();
        let (presence_due, reap_due) = evil.first_presence(t0);
        let mine = 5;
        let forged = Remote::new(mine, uid, "main".into(), m, presence_due, reap_due);
        evil.remotes.insert(mine, forged);
        evil.start_join(t0, mine, true, false, None);
        net.nodes.push((x, evil));
        net.run(Duration::from_secs(10), |n| {
            n.has(x, |e| {
                matches!(
                    e,
                    Event::Rejected { .. } | Event::JoinFailed { .. } | Event::Allowed { .. }
                )
            })
        });
        let after = net
            .node(m)
            .remotes
            .get(&uid)
            .map(|r| (r.name.clone(), r.ha));
        assert_eq!(
            after,
            Some(("victim".to_owned(), v)),
            "{auto:?}: {:?}",
            net.events
        );
        assert_eq!(net.node(m).remotes()[0].allowed, before.allowed, "{auto:?}");
        assert!(
            !net.has(x, |e| matches!(e, Event::Allowed { .. })),
            "{auto:?}"
        );
        assert_reaches_victim(&mut net, uid, auto);
    }
}

/// The main of [`forged_join`] sends to its `uid` for `victim`: the real victim gets it.
fn assert_reaches_victim(net: &mut Net, uid: Uid, auto: AutoMode) {
    let (m, v, now) = (net.nodes[0].0, net.nodes[1].0, net.now);
    net.node(m)
        .send(now, uid, body(json!({"to": "the real victim"})))
        .expect("send");
    assert!(
        net.run(Duration::from_secs(5), |n| n.has(v, |e| matches!(
            e,
            Event::Message { body, .. } if body.get("to").is_some()
        ))),
        "{auto:?}: the real victim got nothing: {:?}",
        net.events
    );
}
