//! An estate that stops running for a while in the middle of an exchange, then goes on
//! with the state it had: its peer's datagrams meanwhile are lost and none of its timers
//! fire. That is what a `raet road` process did when printing a 200 KB message blocked
//! on a full stdout pipe and held its road driver (the intermittent json-head failure of
//! `road_cli`; the cause was the CLI, fixed there). The protocol must carry both
//! exchanges to the end once the estate runs again, within the message timeout.

use std::net::SocketAddr;
use std::time::Duration;

use raet_proto::road::MessageId;
use raet_sim::world::{message, Peer, Spec, World};
use raet_sim::{Link, SimNet};
use serde_json::{Map, Value};

const BIG: usize = 200_000;

/// A message queued: (sender, receiver, id, body).
type Sent = (SocketAddr, SocketAddr, MessageId, Map<String, Value>);

/// `from` queues a small then a 200 KB message for `to`, as `raet road --send .. --size ..`.
fn send_pair(world: &mut World, from: SocketAddr, to: SocketAddr, to_name: &str) -> Vec<Sent> {
    let uid = world.uid(from, to_name);
    let name = world.peer_ref(from).spec.name.clone();
    [(1, 20), (2, BIG)]
        .into_iter()
        .map(|(n, size)| {
            let body = message(&name, n, size);
            (from, to, world.send(from, uid, body.clone()), body)
        })
        .collect()
}

/// How many times `receiver` got `body`.
fn received(net: &SimNet<Peer>, receiver: SocketAddr, body: &Map<String, Value>) -> usize {
    net.node_ref(receiver)
        .messages()
        .filter(|(_, got)| *got == body)
        .count()
}

/// Whether every message was confirmed to its sender and received exactly once.
fn all_through(net: &SimNet<Peer>, sent: &[Sent]) -> bool {
    sent.iter().all(|(from, to, id, body)| {
        net.node_ref(*from).delivered(*id) && received(net, *to, body) == 1
    })
}

#[test]
fn an_estate_stalled_mid_exchange_finishes_both_ways_when_it_runs_again() {
    let mut world = World::new(11, Link::perfect());
    let beta = world.add(Spec::new("beta", 7590).main());
    let alpha = world.add(Spec::new("alpha", 7591));
    world.connect(alpha, beta, Duration::from_secs(10));
    let mut sent = send_pair(&mut world, alpha, beta, "beta");
    sent.extend(send_pair(&mut world, beta, alpha, "alpha"));
    let (alpha_big, beta_big) = (sent[1].3.clone(), sent[3].3.clone());

    // Beta stalls right when it completes alpha's 200 KB message (where the CLI printed
    // it), its own 200 KB message to alpha not yet complete.
    world
        .run_until(Duration::from_secs(10), |net| {
            net.node_ref(beta)
                .messages()
                .any(|(_, body)| *body == alpha_big)
        })
        .unwrap_or_else(|e| panic!("beta never got alpha's 200 KB message: {e}"));
    assert_eq!(
        received(&world.net, alpha, &beta_big),
        0,
        "the stall must cut beta's exchange in the middle"
    );
    let stalled = world.crash(beta);
    world.settle(Duration::from_secs(10));
    world.net.add(beta, stalled);

    let outcome = world.run_until(Duration::from_secs(30), |net| all_through(net, &sent));
    let report = sent
        .iter()
        .map(|(from, to, id, body)| {
            format!(
                "{from}->{to} {id:?} ({} B): delivered {}, failed {:?}, received {}x",
                body.get("blob").and_then(Value::as_str).map_or(0, str::len),
                world.peer_ref(*from).delivered(*id),
                world.peer_ref(*from).send_failed(*id),
                received(&world.net, *to, body)
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(outcome.is_ok(), "{outcome:?}\n{report}");
}
