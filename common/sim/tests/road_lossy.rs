//! Two roads over a lossy, duplicating, reordering simulated link: every message arrives
//! exactly once and intact, and every send ends with `Delivered`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use raet_proto::keep::{AutoMode, Snapshot};
use raet_proto::road::{Event, Road, RoadConfig};
use raet_sim::{Link, SimNet};
use serde_json::{json, Map, Value};

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A road on `port` accepting every key, its rng seeded from its name.
fn road(name: &str, port: u16, main: bool, now: Instant) -> Road {
    let mut config = RoadConfig::new(name, addr(port));
    config.main = main;
    config.auto = AutoMode::Always;
    let mut seed = [0u8; 32];
    seed[..name.len().min(32)].copy_from_slice(&name.as_bytes()[..name.len().min(32)]);
    Road::new(config, None, Snapshot::default(), seed, now).expect("road")
}

fn body(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// Sends `n` small messages and one segmented one each way over a lossy, duplicating,
/// reordering link; every message must arrive exactly once and intact, and every send must
/// end with `Delivered`.
fn lossy(loss: f64, seed: u64) {
    let n = 12;
    let mut net: SimNet<Road> = SimNet::new(seed, Link::impaired(loss));
    let t0 = net.now();
    let (m, o) = (addr(7550), addr(7551));
    net.add(m, road("main", 7550, true, t0));
    net.add(o, road("other", 7551, false, t0));
    let uid = net.node(o).join(t0, m).unwrap();
    let blob: String = (0..50_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let mut sent = Vec::new();
    for i in 0..n {
        let now = net.now();
        sent.push(net.node(o).send(now, uid, body(json!({"n": i}))).unwrap());
    }
    let now = net.now();
    sent.push(
        net.node(o)
            .send(now, uid, body(json!({"n": n, "blob": blob})))
            .unwrap(),
    );
    let mut events: Vec<(SocketAddr, Event)> = Vec::new();
    let poll = |net: &mut SimNet<Road>, events: &mut Vec<(SocketAddr, Event)>| {
        for a in [m, o] {
            while let Some(e) = net.node(a).poll_event() {
                events.push((a, e));
            }
        }
    };
    let ended = |events: &[(SocketAddr, Event)], at: SocketAddr| {
        events
            .iter()
            .filter(|(a, e)| {
                *a == at && matches!(e, Event::Delivered { .. } | Event::SendFailed { .. })
            })
            .count()
    };
    net.run_until(Duration::from_secs(120), |net| {
        poll(net, &mut events);
        ended(&events, o) == sent.len()
    })
    .unwrap_or_else(|e| panic!("loss {loss}: {e:?}; events {:?}", events.len()));
    // and back
    let back = net.node(m).uid_by_name("other").unwrap();
    for i in 0..n {
        let now = net.now();
        net.node(m)
            .send(now, back, body(json!({"back": i})))
            .unwrap();
    }
    net.run_until(Duration::from_secs(120), |net| {
        poll(net, &mut events);
        ended(&events, m) == n as usize
    })
    .unwrap_or_else(|e| panic!("loss {loss} back: {e:?}"));
    net.run_for(Duration::from_secs(3)).unwrap();
    poll(&mut net, &mut events);

    let failed: Vec<_> = events
        .iter()
        .filter(|(_, e)| matches!(e, Event::SendFailed { .. }))
        .collect();
    assert!(
        failed.is_empty(),
        "loss {loss} seed {seed}: {failed:?}\nother {:?}\nmain {:?}",
        net.node_ref(o).stats(),
        net.node_ref(m).stats()
    );
    let mut got: Vec<i64> = events
        .iter()
        .filter_map(|(a, e)| match e {
            Event::Message { body, .. } if *a == m => body["n"].as_i64(),
            _ => None,
        })
        .collect();
    got.sort_unstable();
    assert_eq!(
        got,
        (0..=n as i64).collect::<Vec<_>>(),
        "loss {loss} seed {seed} other {:?} main {:?}",
        net.node_ref(o).stats(),
        net.node_ref(m).stats()
    );
    let big = events.iter().find_map(|(_, e)| match e {
        Event::Message { body, .. } if body.contains_key("blob") => body["blob"].as_str(),
        _ => None,
    });
    assert_eq!(big.map(str::len), Some(50_000));
    let back_count = events
        .iter()
        .filter(|(a, e)| {
            *a == o && matches!(e, Event::Message { body, .. } if body.contains_key("back"))
        })
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
