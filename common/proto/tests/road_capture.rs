//! The road core against the reference capture (`tests/data/raet-capture`, raet 0.6.8):
//! two roads with the captured stacks' long-term keys replay scenario S1 (join, allow,
//! alive, a small message). Deterministic datagrams (join, allow acks, alive, done: no
//! random nonce, ed25519 is deterministic) must equal the captured bytes exactly; for the
//! others (random short-term keys and nonces) the heads must be identical.

use std::net::SocketAddr;
use std::time::Instant;

use raet_proto::crypto::{PrivateKey, Signer};
use raet_proto::keep::{AutoMode, Snapshot};
use raet_proto::packet::Head;
use raet_proto::road::{Event, Profile, Road, RoadConfig};
use serde_json::{json, Value};

const DATAGRAMS: &str = include_str!("data/raet-capture/datagrams.jsonl");
const KEYS: &str = include_str!("data/raet-capture/keys.json");

/// Captured datagrams of scenario S1, in order.
fn s1() -> Vec<Vec<u8>> {
    DATAGRAMS
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("jsonl"))
        .filter(|v| {
            v["scenario"]
                .as_str()
                .is_some_and(|s| s.starts_with("S1-join") || s == "S1-message-small-a2b")
        })
        .map(|v| hex::decode(v["hex"].as_str().expect("hex")).expect("hex"))
        .collect()
}

fn keys(name: &str) -> (Signer, PrivateKey) {
    let v: Value = serde_json::from_str(KEYS).expect("keys");
    let stack = v["stacks"]
        .as_array()
        .expect("stacks")
        .iter()
        .find(|s| s["name"] == name)
        .expect("stack");
    let seed: [u8; 32] = hex::decode(stack["sighex"].as_str().expect("sighex"))
        .expect("hex")
        .try_into()
        .expect("32");
    let private: [u8; 32] = hex::decode(stack["prihex"].as_str().expect("prihex"))
        .expect("hex")
        .try_into()
        .expect("32");
    (Signer::from_seed(&seed), PrivateKey::from_bytes(&private))
}

fn road(name: &str, ha: SocketAddr, main: bool, now: Instant) -> Road {
    let mut config = RoadConfig::new(name, ha);
    config.main = main;
    config.auto = AutoMode::Once;
    // The compatible profile is the reference's, byte for byte (auto adds `fast` to joins).
    config.profile = Profile::Compat;
    Road::new(config, Some(keys(name)), Snapshot::default(), [7; 32], now).expect("road")
}

/// The head bytes of a datagram.
fn head(datagram: &[u8]) -> &[u8] {
    let hl = Head::parse(datagram).expect("head").hl;
    &datagram[..hl]
}

/// Takes the next datagram of `from`, checks it is addressed to `to` and delivers it.
fn pass(
    from: &mut Road,
    from_ha: SocketAddr,
    to: &mut Road,
    to_ha: SocketAddr,
    now: Instant,
) -> Vec<u8> {
    let t = from.poll_transmit().expect("a datagram");
    assert_eq!(t.dest, to_ha);
    to.handle_datagram(now, from_ha, &t.payload);
    t.payload
}

#[test]
fn s1_join_allow_alive_message_match_the_reference() {
    let now = Instant::now();
    let (a_ha, b_ha) = (
        SocketAddr::from(([127, 0, 0, 1], 47531)),
        SocketAddr::from(([127, 0, 0, 1], 47532)),
    );
    let mut alpha = road("alpha", a_ha, false, now);
    let mut beta = road("beta", b_ha, true, now);
    let cap = s1();
    assert_eq!(cap.len(), 12);

    let uid = alpha.join(now, b_ha).expect("join");
    // exact: join request, response, ack
    assert_eq!(
        pass(&mut alpha, a_ha, &mut beta, b_ha, now),
        cap[0],
        "join request"
    );
    assert_eq!(
        pass(&mut beta, b_ha, &mut alpha, a_ha, now),
        cap[1],
        "join response"
    );
    assert_eq!(
        pass(&mut alpha, a_ha, &mut beta, b_ha, now),
        cap[2],
        "join ack"
    );
    // allow: hello, cookie, initiate have random keys: same heads
    for (i, from_alpha) in [true, false, true].into_iter().enumerate() {
        let d = if from_alpha {
            pass(&mut alpha, a_ha, &mut beta, b_ha, now)
        } else {
            pass(&mut beta, b_ha, &mut alpha, a_ha, now)
        };
        assert_eq!(head(&d), head(&cap[3 + i]), "allow packet {}", 3 + i);
        assert_eq!(d.len(), cap[3 + i].len());
    }
    // exact: allow ack, final ack, alive request, alive ack
    assert_eq!(
        pass(&mut beta, b_ha, &mut alpha, a_ha, now),
        cap[6],
        "allow ack"
    );
    assert_eq!(
        pass(&mut alpha, a_ha, &mut beta, b_ha, now),
        cap[7],
        "allow final ack"
    );
    assert_eq!(
        pass(&mut alpha, a_ha, &mut beta, b_ha, now),
        cap[8],
        "alive request"
    );
    assert_eq!(
        pass(&mut beta, b_ha, &mut alpha, a_ha, now),
        cap[9],
        "alive ack"
    );

    // a small message: same head; the done is exact
    let body = json!({"subject": "hello beta", "n": 1});
    let Value::Object(body) = body else {
        unreachable!()
    };
    alpha.send(now, uid, body.clone()).expect("send");
    let d = pass(&mut alpha, a_ha, &mut beta, b_ha, now);
    assert_eq!(head(&d), head(&cap[10]), "message");
    assert_eq!(d.len(), cap[10].len());
    assert_eq!(
        pass(&mut beta, b_ha, &mut alpha, a_ha, now),
        cap[11],
        "done"
    );
    assert!(alpha.poll_transmit().is_none());
    assert!(beta.poll_transmit().is_none());

    let mut got = None;
    while let Some(e) = beta.poll_event() {
        if let Event::Message { name, body, .. } = e {
            got = Some((name, body));
        }
    }
    assert_eq!(got, Some(("alpha".to_owned(), body)));
    let delivered = std::iter::from_fn(|| alpha.poll_event())
        .any(|e| matches!(e, Event::Delivered { uid: u, .. } if u == uid));
    assert!(delivered);
}
