//! Joins from attackers using another estate's name, role or uid, on a perfect simulated
//! link: a role that is not the name, an impostor with the victim's name and other keys, and
//! a hand-crafted non-vacuous join naming the victim's uid. The real estate must keep its
//! keys, session and messages. Also malformed join and allow bodies: counted and refused.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use raet_proto::keep::{Acceptance, AutoMode, Keep, MemKeep, RoleRecord};
use raet_proto::packet::fast::FastHead;
use raet_proto::packet::{self, Flags, PacketKind, TransactionKind};
use raet_proto::road::{Event, Limits, RemoteStatus, Uid};
use raet_sim::world::{addr, body, join_body, join_request, key_hexes, Spec, World};
use raet_sim::Link;
use serde_json::json;

/// A main with auto `never` and the keep `keep` (shared with the test), refusing roles that
/// are not names when `role_is_name`; the attacker `evil` claiming role `victim`; the real
/// `victim`. Returns the world, the keep's record of role `victim` after the attacker's join
/// and whether `victim` then joins once its keys are accepted.
fn role_claim(role_is_name: bool, keep: &MemKeep) -> (World, Option<RoleRecord>, bool) {
    let mut world = World::new(1, Link::perfect());
    let mut main = Spec::new("main", 7620).main().auto(AutoMode::Never);
    main.mutable = true;
    main.role_is_name = role_is_name;
    let m = world.add_on(main, keep.clone());
    let mut evil = Spec::new("evil", 7621);
    evil.role = Some("victim".into());
    let e = world.add(evil);
    let v = world.add(Spec::new("victim", 7622));
    world.join(e, m);
    world
        .run_until(Duration::from_secs(30), |net| {
            net.node_ref(e)
                .has(|ev| matches!(ev, Event::Rejected { .. } | Event::JoinFailed { .. }))
                || net
                    .node_ref(m)
                    .has(|ev| matches!(ev, Event::Pending { .. }))
        })
        .expect("the attacker's join ends or pends");
    // Let the attacker's join time out on both sides before the victim comes (but not its
    // first contact: that lasts `Limits::first_contact_ttl` after its last request).
    world.settle(Duration::from_secs(10));
    let claimed = keep.load_role("victim").expect("keep");
    world.join(v, m);
    let pending = |ev: &Event| matches!(ev, Event::Pending { name, .. } if name == "victim");
    // The operator accepts `victim` if asked (as the daemon decides on `Pending`).
    if world.wait_for(m, Duration::from_secs(2), pending).is_ok() {
        let now = world.net.now();
        world.peer(m).road.accept(now, "victim").expect("accept");
    }
    let joined = world
        .wait_for(v, Duration::from_secs(10), |ev| {
            matches!(ev, Event::Allowed { .. })
        })
        .is_ok();
    (world, claimed, joined)
}

/// Keys are decided per role: a joiner offering another estate's name as its role has its
/// keys recorded for that estate, which is then rejected. `role_is_name` refuses such a join
/// before the keep records anything.
#[test]
fn a_role_that_is_not_the_name_cannot_claim_another_estates_keys() {
    let (m, e, v) = (addr(7620), addr(7621), addr(7622));
    let keep = MemKeep::new();
    let (mut world, claimed, joined) = role_claim(false, &keep);
    let attacker = world.peer_ref(e).road.verify_key().to_hex();
    let events = &world.peer_ref(m).events;
    assert_eq!(claimed.map(|r| r.verhex), Some(attacker), "{events:?}");
    assert!(!joined, "the real victim is locked out: {events:?}");
    // ... while the attacker keeps asking: a first contact that stopped is dropped, and the
    // pending record its join made with it.
    world.settle(Limits::default().first_contact_ttl);
    assert_eq!(keep.load_role("victim").expect("keep"), None);
    assert!(world
        .peer_ref(m)
        .has(|ev| matches!(ev, Event::FirstContactDropped { name, .. } if name == "evil")));

    let keep = MemKeep::new();
    let (world, claimed, joined) = role_claim(true, &keep);
    let main = world.peer_ref(m);
    assert_eq!(claimed, None, "nothing recorded for the attacker");
    assert_eq!(main.road.stats().join_role_not_name, 1);
    assert!(world
        .peer_ref(e)
        .has(|ev| matches!(ev, Event::Rejected { .. })));
    assert!(!main.has(|ev| matches!(ev, Event::Pending { name, .. } if name == "evil")));
    assert!(joined, "the real victim joins: {:?}", main.events);
    let role = keep.load_role("victim").expect("keep").expect("recorded");
    assert_eq!(role.verhex, world.peer_ref(v).road.verify_key().to_hex());
    assert_eq!(role.acceptance, Acceptance::Accepted);
}

/// Addresses of the main, the victim and the impostor of [`forged_join`] at `port`.
fn estates(port: u16) -> (SocketAddr, SocketAddr, SocketAddr) {
    (addr(port), addr(port + 1), addr(port + 2))
}

/// A main (`auto`, mutable, roles are names, keep `keep`) with `victim` joined, allowed and
/// alive; then an impostor named `victim` with other keys joins from another address.
/// Returns the world, the main's view of `victim` before the forged join, and the main's uid
/// for it.
fn forged_join(auto: AutoMode, port: u16, keep: &MemKeep) -> (World, RemoteStatus, Uid) {
    let (m, v, x) = estates(port);
    let mut world = World::new(1, Link::perfect());
    let mut main = Spec::new("main", port).main().auto(auto);
    main.mutable = true;
    main.role_is_name = true;
    world.add_on(main, keep.clone());
    world.add(Spec::new("victim", port + 1));
    let impostor = Spec::new("victim", port + 2);
    assert_ne!(impostor.keys, world.peer_ref(v).spec.keys, "other keys");
    world.add(impostor);
    world.join(v, m);
    if auto == AutoMode::Never {
        world
            .wait_for(m, Duration::from_secs(2), |e| {
                matches!(e, Event::Pending { .. })
            })
            .expect("pending");
        let now = world.net.now();
        world.peer(m).road.accept(now, "victim").expect("accept");
    }
    world
        .wait_for(v, Duration::from_secs(10), |e| {
            matches!(e, Event::Allowed { .. })
        })
        .unwrap_or_else(|e| panic!("victim not allowed: {e}"));
    let uid = world.uid(m, "victim");
    let before = world.peer_ref(m).road.remotes()[0].clone();
    assert_eq!(before.allowed, Some(true));
    world.peer(m).events.clear();

    world.join(x, m);
    world
        .wait_for(x, Duration::from_secs(30), |e| {
            matches!(e, Event::Rejected { .. } | Event::JoinFailed { .. })
        })
        .unwrap_or_else(|e| panic!("the impostor heard nothing: {e}"));
    (world, before, uid)
}

/// The main of [`forged_join`] still has the real victim under `uid`, as `before`: same uid,
/// address, role and state, its keys recorded for role `victim`, and messages flow both ways
/// (the main sends with the victim's session and verifies the victim's signature).
fn assert_victim_intact(
    world: &mut World,
    port: u16,
    keep: &MemKeep,
    before: &RemoteStatus,
    auto: AutoMode,
) {
    let (m, v, _) = estates(port);
    let remotes = world.peer_ref(m).road.remotes();
    assert_eq!(remotes.len(), 1, "{auto:?}: {remotes:?}");
    let after = &remotes[0];
    assert_eq!(
        (after.uid, after.fuid, after.ha, &after.name, &after.role),
        (before.uid, before.fuid, v, &before.name, &before.role),
        "{auto:?}"
    );
    assert_eq!(
        (after.joined, after.allowed, after.acceptance),
        (Some(true), Some(true), Some(Acceptance::Accepted)),
        "{auto:?}"
    );
    let kept = keep.load_role("victim").expect("keep").map(|r| r.verhex);
    let real = key_hexes(world.peer_ref(v).spec.keys).0;
    assert_eq!(kept, Some(real), "{auto:?}");
    world.send(m, before.uid, body(json!({"to": "the real victim"})));
    world
        .wait_for(
            v,
            Duration::from_secs(5),
            |e| matches!(e, Event::Message { body, .. } if body.get("to").is_some()),
        )
        .unwrap_or_else(|e| panic!("{auto:?}: the real victim got nothing: {e}"));
    let back = world.uid(v, "main");
    world.send(v, back, body(json!({"from": "the real victim"})));
    world
        .wait_for(m, Duration::from_secs(5), |e| {
            matches!(e, Event::Message { name, body, .. }
                if name == "victim" && body.get("from").is_some())
        })
        .unwrap_or_else(|e| panic!("{auto:?}: the main got nothing from the victim: {e}"));
}

/// An impostor's join naming a joined remote with other keys is rejected without touching the
/// real remote: no `Rejected`/`Removed` of it (a daemon would stop routing to it), the same
/// uid, address, keys and session, and messages still flow both ways; it is counted and told
/// as `KeysRejected`.
#[test]
fn a_forged_join_with_other_keys_leaves_the_real_session_alone() {
    for (auto, port) in [(AutoMode::Once, 7640), (AutoMode::Never, 7650)] {
        let keep = MemKeep::new();
        let (mut world, before, uid) = forged_join(auto, port, &keep);
        let (m, _, x) = estates(port);
        let main = world.peer_ref(m);
        let of_victim = |e: &Event| matches!(e, Event::Rejected { uid: u, .. } | Event::Removed { uid: u, .. } if *u == uid);
        assert!(!main.has(of_victim), "{auto:?}: {:?}", main.events);
        assert!(
            main.has(
                |e| matches!(e, Event::KeysRejected { uid: u, name, from, .. }
                if *u == uid && name == "victim" && *from == x)
            ),
            "{auto:?}: {:?}",
            main.events
        );
        assert_eq!(main.road.stats().join_rejected_keys_changed, 1, "{auto:?}");
        assert_victim_intact(&mut world, port, &keep, &before, auto);
        assert!(!world
            .peer_ref(x)
            .has(|e| matches!(e, Event::Message { .. })));
    }
}

/// A non-vacuous join addressed to a joined remote's uid (uids are small and guessable) by an
/// estate with another name, role and keys is rejected while that remote's session lives:
/// on a mutable main it would otherwise rename the remote and take over its uid, address and
/// session (messages for `victim` would go to the impostor).
#[test]
fn a_forged_non_vacuous_join_cannot_take_over_a_joined_remote() {
    for (auto, port) in [(AutoMode::Once, 7660), (AutoMode::Never, 7670)] {
        let keep = MemKeep::new();
        let (mut world, before, uid) = forged_join(auto, port, &keep);
        let (m, _, _) = estates(port);
        let evil = Spec::new("evil", port + 3);
        let x = evil.addr();
        let answers = Rc::new(RefCell::new(Vec::new()));
        let seen = answers.clone();
        world.net.set_filter(Some(Box::new(move |_, from, to, d| {
            if (from, to) == (m, x) {
                if let Ok(rx) = packet::parse(d) {
                    seen.borrow_mut().push(rx.head.pk);
                }
            }
            false
        })));
        world
            .net
            .inject(x, m, join_request(5, uid, &join_body(&evil)));
        world.settle(Duration::from_secs(10));
        world.net.set_filter(None);
        assert_eq!(
            *answers.borrow(),
            [PacketKind::Reject],
            "{auto:?}: the forged join is rejected: {:?}",
            world.peer_ref(m).events
        );
        assert_victim_intact(&mut world, port, &keep, &before, auto);
    }
}

/// A vacuous join request missing a field, or with a name that cannot name a keep record, is
/// dropped as `invalid_join`: no answer, no remote.
#[test]
fn a_malformed_join_body_is_dropped() {
    let mut world = World::new(1, Link::perfect());
    let m = world.add(Spec::new("main", 7680).main());
    let evil = Spec::new("evil", 7681);
    let mut missing = join_body(&evil);
    missing.remove("pubhex");
    let mut bad_name = join_body(&evil);
    bad_name.insert("name".into(), "../evil".into());
    let answers = Rc::new(RefCell::new(0));
    let seen = answers.clone();
    world.net.set_filter(Some(Box::new(move |_, from, _, _| {
        *seen.borrow_mut() += usize::from(from == m);
        false
    })));
    for body in [missing, bad_name] {
        world.net.inject(evil.addr(), m, join_request(5, 0, &body));
    }
    world.settle(Duration::from_secs(1));
    let main = world.peer_ref(m);
    assert_eq!(main.road.stats().invalid_join, 2);
    assert_eq!(*answers.borrow(), 0, "{:?}", main.events);
    assert!(main.road.remotes().iter().all(|r| r.name != "evil"));
}

/// A hello whose body is cut short (validly signed by the joined remote, in a new
/// transaction) is counted as `invalid_hello` and rejected, without a panic or a zero-filled
/// key; the estates allow again and messages flow.
#[test]
fn a_truncated_hello_is_rejected() {
    let mut world = World::new(1, Link::perfect());
    let m = world.add(Spec::new("main", 7690).main());
    let other = Spec::new("other", 7691);
    let signer = raet_sim::world::keys(other.keys).0;
    let o = world.add(other);
    let sent = Rc::new(RefCell::new(Vec::new()));
    let tap = sent.clone();
    world.net.set_tap(Some(Box::new(move |_, from, _, d| {
        if from == o {
            tap.borrow_mut().push(d.to_vec());
        }
    })));
    let uid = world.connect(o, m, Duration::from_secs(10));
    // A message initiated by `other` carries its session id of the allowed session.
    let id = world.send(o, uid, body(json!({"before": "truncated hello"})));
    world
        .run_until(Duration::from_secs(5), |net| net.node_ref(o).delivered(id))
        .expect("delivered");
    world.net.set_tap(None);
    // Past the allow transaction and its duplicate window.
    world.settle(Duration::from_secs(10));
    let sent = sent.borrow();
    let heads: Vec<_> = sent.iter().filter_map(|d| packet::parse(d).ok()).collect();
    let rx = heads
        .iter()
        .find(|rx| rx.head.pk == PacketKind::Hello)
        .expect("a hello");
    // In the current session (the allow started a new one; its message and alives went
    // sealed, in the fast profile), in a new transaction.
    let session = sent
        .iter()
        .rev()
        .find_map(|d| {
            match FastHead::parse(d) {
                Ok((f, _, _)) => Some((f.fg, f.si)),
                Err(_) => packet::parse(d).ok().map(|rx| (rx.head.fg, rx.head.si)),
            }
            .filter(|(fg, _)| !fg.has(Flags::CF))
        })
        .map(|(_, si)| si);
    let mut head = rx.head.clone();
    head.si = session.expect("a packet of the current session");
    head.ti += 100;
    let truncated =
        packet::pack(&head, &rx.coat[..rx.coat.len() / 2], Some(&signer)).expect("pack");
    let answers = Rc::new(RefCell::new(Vec::new()));
    let seen = answers.clone();
    world.net.set_filter(Some(Box::new(move |_, from, _, d| {
        if from == m {
            if let Ok(rx) = packet::parse(d) {
                seen.borrow_mut().push((rx.head.tk, rx.head.pk));
            }
        }
        false
    })));
    world.net.inject(o, m, truncated);
    world.settle(Duration::from_millis(100));
    let stats = world.peer_ref(m).road.stats();
    assert_eq!(stats.invalid_hello, 1, "{stats:?}");
    assert_eq!(
        answers.borrow().first(),
        Some(&(TransactionKind::Allow, PacketKind::Reject))
    );
    world.net.set_filter(None);
    let id = world.send(o, uid, body(json!({"after": "truncated hello"})));
    world
        .run_until(Duration::from_secs(10), |net| net.node_ref(o).delivered(id))
        .expect("delivered after a new allow");
}

/// A world with a master whose daemon decides keys (auto `never`, mutable, roles are
/// names), on `port`.
fn deciding_master(port: u16) -> (World, SocketAddr) {
    let mut world = World::new(1, Link::perfect());
    let mut main = Spec::new("main", port).main().auto(AutoMode::Never);
    main.mutable = true;
    main.role_is_name = true;
    let m = world.add(main);
    (world, m)
}

/// A decision made off the road (the master's decision thread) applies only to the keys it
/// was made on: when a join with the same name and other keys came meanwhile (the first
/// contact was dropped while its decision waited), the decision changes nothing, and the
/// other keys are not accepted by it.
#[test]
fn a_decision_on_offered_keys_does_not_accept_the_keys_that_replaced_them() {
    let (mut world, m) = deciding_master(7630);
    let v = world.add(Spec::new("victim", 7631));
    let e = world.add(Spec::new("victim", 7632));
    let keys = |spec: &Spec| key_hexes(spec.keys);
    let ((victim, victim_pub), (impostor, impostor_pub)) = (
        keys(&Spec::new("victim", 7631)),
        keys(&Spec::new("victim", 7632)),
    );
    let pending_on = |keys: &str| {
        let keys = keys.to_owned();
        move |ev: &Event| matches!(ev, Event::Pending { verhex, .. } if *verhex == keys)
    };
    world.join(v, m);
    world
        .wait_for(m, Duration::from_secs(2), pending_on(&victim))
        .expect("the victim's join pends");
    // The decision is slow: the victim's first contact is dropped (it stopped asking; in a
    // storm, room is made for newer ones), then a join with its name and other keys comes.
    world.settle(Limits::default().first_contact_ttl + Duration::from_secs(6));
    assert!(world
        .peer_ref(m)
        .has(|ev| matches!(ev, Event::FirstContactDropped { name, .. } if name == "victim")));
    world.join(e, m);
    world
        .wait_for(m, Duration::from_secs(2), pending_on(&impostor))
        .expect("the impostor's join pends");
    let now = world.net.now();
    let main = world.peer(m);
    assert!(matches!(
        main.road
            .decide_offered(now, "victim", &victim, &victim_pub, true),
        Err(raet_proto::road::RoadError::KeysChanged)
    ));
    assert_eq!(main.road.stats().decision_keys_changed, 1);
    let joined = world
        .wait_for(e, Duration::from_secs(10), |ev| {
            matches!(ev, Event::Allowed { .. })
        })
        .is_ok();
    assert!(
        !joined,
        "the impostor was accepted by the victim's decision"
    );
    // On the keys the remote holds, the decision applies.
    let now = world.net.now();
    assert!(world
        .peer(m)
        .road
        .decide_offered(now, "victim", &impostor, &impostor_pub, false)
        .is_ok());
}

/// A decision that comes after the first contact was dropped (a join storm made room) is
/// recorded for the keys it was made on: the estate's next join is accepted at once, with no
/// new decision asked for.
#[test]
fn a_decision_on_a_dropped_first_contact_is_kept_for_its_next_join() {
    let (mut world, m) = deciding_master(7640);
    let v = world.add(Spec::new("late", 7641));
    let (verhex, pubhex) = key_hexes(Spec::new("late", 7641).keys);
    world.join(v, m);
    let pending = |ev: &Event| matches!(ev, Event::Pending { name, .. } if name == "late");
    world
        .wait_for(m, Duration::from_secs(2), pending)
        .expect("the join pends");
    world.settle(Limits::default().first_contact_ttl + Duration::from_secs(6));
    let now = world.net.now();
    let main = world.peer(m);
    main.road
        .decide_offered(now, "late", &verhex, &pubhex, true)
        .expect("recorded");
    assert_eq!(main.road.stats().decision_recorded, 1);
    world.join(v, m);
    world
        .wait_for(v, Duration::from_secs(10), |ev| {
            matches!(ev, Event::Allowed { .. })
        })
        .expect("accepted at once");
    assert_eq!(world.peer_ref(m).count(pending), 1, "decided again");
}
