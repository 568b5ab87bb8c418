//! Two roads end to end on a perfect simulated link: join, allow, alive and messages both
//! ways, a silent peer, restarts from the keep, a pending join decided by the operator, and a
//! large burst leaving in chunks.

use std::net::SocketAddr;
use std::time::Duration;

use raet_proto::keep::{Acceptance, AutoMode};
use raet_proto::road::{Event, Presence, Profile, CHUNK};
use raet_sim::world::{body, Spec, World};
use raet_sim::Link;
use serde_json::{json, Value};

const MAIN: u16 = 7530;
const OTHER: u16 = 7531;

/// A main (auto `auto`) and `other` (auto `always`) on a perfect link, not joined yet, in
/// `profile`.
fn pair_in(auto: AutoMode, profile: Profile) -> (World, SocketAddr, SocketAddr) {
    let mut world = World::new(1, Link::perfect());
    let m = world.add(Spec::new("main", MAIN).main().auto(auto).profile(profile));
    let o = world.add(Spec::new("other", OTHER).profile(profile));
    (world, m, o)
}

/// [`pair_in`] the default profile.
fn pair(auto: AutoMode) -> (World, SocketAddr, SocketAddr) {
    pair_in(auto, Profile::Auto)
}

/// `other` joined, allowed and alive with the main both ways, in `profile`; its uid for the
/// main.
fn connected_in(profile: Profile) -> (World, SocketAddr, SocketAddr, u32) {
    let (mut world, m, o) = pair_in(AutoMode::Always, profile);
    let uid = world.connect(o, m, Duration::from_secs(10));
    (world, m, o, uid)
}

/// [`connected_in`] the default profile.
fn connected() -> (World, SocketAddr, SocketAddr, u32) {
    connected_in(Profile::Auto)
}

fn is_delivered(e: &Event) -> bool {
    matches!(e, Event::Delivered { .. })
}

#[test]
fn join_allow_alive_and_messages() {
    let (mut world, m, o, uid) = connected();

    // both sides know each other by name with matching uids
    let other_view = world.peer_ref(o).road.remotes();
    assert_eq!(other_view.len(), 1);
    assert_eq!(other_view[0].name, "main");
    assert_eq!(other_view[0].joined, Some(true));
    assert_eq!(other_view[0].allowed, Some(true));
    let main_view = world.peer_ref(m).road.remotes();
    assert_eq!(main_view[0].name, "other");
    assert_eq!(main_view[0].uid, other_view[0].fuid);
    assert_eq!(main_view[0].fuid, other_view[0].uid);
    // the joined and allowed events carry what an application would otherwise ask the road:
    // the remote's verify key and its address
    for (at, view, address) in [(o, &other_view[0], m), (m, &main_view[0], o)] {
        let events = &world.peer_ref(at).events;
        assert!(events.iter().any(|e| matches!(e,
            Event::Joined { name, verhex, .. } if *name == view.name && *verhex == view.verhex && !verhex.is_empty())));
        assert!(events.iter().any(|e| matches!(e,
            Event::Allowed { name, ha, .. } if *name == view.name && *ha == address)));
    }

    // alive after the cascade
    world
        .wait_for(o, Duration::from_secs(5), |e| {
            matches!(
                e,
                Event::Presence {
                    presence: Presence::Alive,
                    ..
                }
            )
        })
        .expect("alive");

    // a small message and a segmented one (about 200 KB)
    let small = world.send(o, uid, body(json!({"subject": "hi", "n": 1})));
    let blob: String = (0..200_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let big = world.send(o, uid, body(json!({"blob": blob.clone()})));
    world
        .run_until(Duration::from_secs(10), |net| {
            net.node_ref(o).count(is_delivered) == 2
        })
        .expect("delivered");
    assert!(world.peer_ref(o).delivered(small));
    assert!(world.peer_ref(o).delivered(big));
    let got: Vec<_> = world
        .peer_ref(m)
        .messages()
        .filter(|(name, _)| *name == "other")
        .map(|(_, body)| body.clone())
        .collect();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0]["subject"], "hi");
    assert_eq!(got[1]["blob"].as_str(), Some(blob.as_str()));

    // and back from main
    let back = world.uid(m, "other");
    world.send(m, back, body(json!({"reply": true})));
    world
        .wait_for(o, Duration::from_secs(5), |e| {
            matches!(e, Event::Message { body, .. } if body.get("reply") == Some(&Value::Bool(true)))
        })
        .expect("reply");
    assert_eq!(world.peer_ref(m).road.stats().bad_signature, 0);
    assert_eq!(world.peer_ref(o).road.stats().decrypt_error, 0);
}

#[test]
fn message_to_silent_peer_fails_after_bounded_time() {
    let (mut world, m, o, uid) = connected();
    // main goes silent
    world
        .net
        .set_filter(Some(Box::new(move |_, _, to, _| to == m)));
    let start = world.net.elapsed();
    let id = world.send(o, uid, body(json!({"x": 1})));
    world
        .run_until(Duration::from_secs(60), |net| {
            net.node_ref(o).send_failed(id).is_some()
        })
        .expect("send failed");
    let waited = world.net.elapsed() - start;
    assert!(
        waited >= Duration::from_secs(30) && waited < Duration::from_secs(32),
        "{waited:?}"
    );
    assert!(world.peer_ref(o).has(|e| matches!(
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
    let (mut world, m, o, uid) = connected();
    let before = world.peer_ref(o).road.remotes()[0].clone();

    // other restarts: same uids, joined restored, not allowed
    world.restart(o);
    let after = world.peer_ref(o).road.remotes();
    assert_eq!(after.len(), 1);
    assert_eq!(
        (after[0].uid, after[0].fuid, &after[0].name),
        (before.uid, before.fuid, &before.name)
    );
    assert_eq!(after[0].joined, Some(true));
    assert_eq!(after[0].allowed, None);
    world.peer(m).events.clear();
    world.send(o, uid, body(json!({"after": "restart"})));
    world
        .run_until(Duration::from_secs(10), |net| {
            net.node_ref(o).has(is_delivered)
                && net
                    .node_ref(m)
                    .has(|e| matches!(e, Event::Message { body, .. } if body.contains_key("after")))
        })
        .expect("message after the restart");
    assert!(
        !world.peer_ref(o).has(|e| matches!(e, Event::Joined { .. })),
        "no new join needed"
    );

    // main restarts: other's next message is refused (main not allowed), requeued after a
    // new allow, delivered once
    world.restart(m);
    world.peer(o).events.clear();
    world.send(o, uid, body(json!({"main": "restarted"})));
    world
        .wait_for(o, Duration::from_secs(10), is_delivered)
        .expect("delivered after the main's restart");
    assert_eq!(
        world
            .peer_ref(m)
            .messages()
            .filter(|(_, body)| body.contains_key("main"))
            .count(),
        1
    );
}

/// auto never on the main: the join pends until the operator accepts, then completes
/// (allow and messages follow); a rejected estate is removed.
#[test]
fn auto_never_pends_until_accepted() {
    let (mut world, m, o) = pair(AutoMode::Never);
    let uid = world.join(o, m);
    world
        .wait_for(
            m,
            Duration::from_secs(1),
            |e| matches!(e, Event::Pending { name, .. } if name == "other"),
        )
        .expect("pending");
    assert!(!world.peer_ref(o).has(|e| matches!(e, Event::Joined { .. })));
    // the joiner hears of the pend at once (not only when its join times out), once
    world
        .wait_for(
            o,
            Duration::from_secs(1),
            |e| matches!(e, Event::JoinPended { uid: pended, .. } if *pended == uid),
        )
        .expect("join pended");
    let status = world.peer_ref(m).road.remotes();
    assert_eq!(status[0].acceptance, Some(Acceptance::Pending));
    let now = world.net.now();
    world.peer(m).road.accept(now, "other").expect("accept");
    world.send(o, uid, body(json!({"after": "accept"})));
    world
        .wait_for(m, Duration::from_secs(5), |e| {
            matches!(e, Event::Message { .. })
        })
        .expect("message after the accept");
    assert!(world.peer_ref(o).has(|e| matches!(e, Event::Joined { .. })));
    let pends = world
        .peer_ref(o)
        .count(|e| matches!(e, Event::JoinPended { .. }));
    assert_eq!(pends, 1, "one join, pended once");
    assert_eq!(
        world.peer_ref(m).road.remotes()[0].acceptance,
        Some(Acceptance::Accepted)
    );

    let now = world.net.now();
    let main = world.peer(m);
    main.road.reject(now, "other").expect("reject");
    main.collect(now);
    assert!(main.road.remotes().is_empty());
    assert!(main.has(|e| matches!(e, Event::Removed { name, .. } if name == "other")));
}

/// A large message sent at once (burst 0) leaves in chunks: each road call signs and queues
/// at most `CHUNK` segments, the rest is due at once on the timer (so a driver sends a
/// chunk before it signs the next); all chunks together are the whole message, delivered.
/// (The compatible profile's 1 KB segments.)
#[test]
fn a_large_burst_leaves_in_chunks_due_at_once() {
    let (mut world, _, o, uid) = connected_in(Profile::Compat);
    let now = world.net.now();
    let sender = &mut world.peer(o).road;
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
    let chunk = CHUNK as usize;
    assert!(chunks.iter().all(|&n| n <= chunk), "{chunks:?}");
    assert!(chunks[..chunks.len() - 1].iter().all(|&n| n == chunk));
    assert_eq!(sender.stats().message_segment_tx, segments as u64,);
    // Lost on the wire here: the receiver's asks for them and the redo deliver it anyway.
    world.peer(o).collect(now);
    world
        .wait_for(o, Duration::from_secs(30), is_delivered)
        .expect("delivered");
}
