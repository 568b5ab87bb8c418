//! Two roads over a lossy, duplicating, reordering simulated link: every message arrives
//! exactly once and intact, and every send ends with `Delivered`.

use std::time::Duration;

use raet_proto::road::Event;
use raet_sim::world::{body, Peer, Spec, World};
use raet_sim::Link;
use serde_json::json;

/// How many of `peer`'s sends ended (`Delivered` or `SendFailed`).
fn ended(peer: &Peer) -> usize {
    peer.count(|e| matches!(e, Event::Delivered { .. } | Event::SendFailed { .. }))
}

/// Sends `n` small messages and one segmented one each way over a lossy, duplicating,
/// reordering link; every message must arrive exactly once and intact, and every send must
/// end with `Delivered`.
fn lossy(loss: f64, seed: u64) {
    let n = 12;
    let mut world = World::new(seed, Link::impaired(loss));
    let m = world.add(Spec::new("main", 7550).main());
    let o = world.add(Spec::new("other", 7551));
    let uid = world.join(o, m);
    let blob: String = (0..50_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let mut sent = Vec::new();
    for i in 0..n {
        sent.push(world.send(o, uid, body(json!({"n": i}))));
    }
    sent.push(world.send(o, uid, body(json!({"n": n, "blob": blob}))));
    world
        .run_until(Duration::from_secs(120), |net| {
            ended(net.node_ref(o)) == sent.len()
        })
        .unwrap_or_else(|e| panic!("loss {loss}: {e:?}"));
    // and back
    let back = world.uid(m, "other");
    for i in 0..n {
        world.send(m, back, body(json!({"back": i})));
    }
    world
        .run_until(Duration::from_secs(120), |net| {
            ended(net.node_ref(m)) == n as usize
        })
        .unwrap_or_else(|e| panic!("loss {loss} back: {e:?}"));
    world.settle(Duration::from_secs(3));

    let (main, other) = (world.peer_ref(m), world.peer_ref(o));
    let failed: Vec<_> = [main, other]
        .iter()
        .flat_map(|p| &p.events)
        .filter(|e| matches!(e, Event::SendFailed { .. }))
        .collect();
    assert!(
        failed.is_empty(),
        "loss {loss} seed {seed}: {failed:?}\nother {:?}\nmain {:?}",
        other.road.stats(),
        main.road.stats()
    );
    let mut got: Vec<i64> = main
        .messages()
        .filter_map(|(_, body)| body["n"].as_i64())
        .collect();
    got.sort_unstable();
    assert_eq!(
        got,
        (0..=n as i64).collect::<Vec<_>>(),
        "loss {loss} seed {seed} other {:?} main {:?}",
        other.road.stats(),
        main.road.stats()
    );
    let big = main
        .messages()
        .find_map(|(_, body)| body.get("blob").and_then(|b| b.as_str()));
    assert_eq!(big.map(str::len), Some(50_000));
    let back_count = other
        .messages()
        .filter(|(_, body)| body.contains_key("back"))
        .count();
    assert_eq!(back_count, n as usize, "loss {loss} seed {seed}");
}

#[test]
fn lossy_10_percent() {
    lossy(0.1, 1);
}

#[test]
fn lossy_30_percent() {
    for seed in 2..22 {
        lossy(0.3, seed);
    }
}
