//! Delivery means the receiving application has the message (issue 10, the delivery
//! contract): with `RoadConfig::confirm_messages` the receiver's done waits for
//! `Road::taken`; copies meanwhile are dropped, never delivered twice; `Road::refused` is a
//! nack, and the sender sends the message again.

use std::time::Duration;

use raet_proto::road::{Event, Receipt};
use raet_sim::world::{message, Spec, World};
use raet_sim::Link;

const LIMIT: Duration = Duration::from_secs(30);

/// The receipts of the messages `at` received, in order.
fn receipts(world: &World, at: std::net::SocketAddr) -> Vec<Receipt> {
    world
        .peer_ref(at)
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Message { receipt, .. } => *receipt,
            _ => None,
        })
        .collect()
}

#[test]
fn the_sender_is_told_only_once_the_application_took_the_message() {
    let mut world = World::new(9, Link::perfect());
    let alpha = world.add(Spec {
        confirm_messages: true,
        ..Spec::new("alpha", 7530).main()
    });
    let beta = world.add(Spec::new("beta", 7531));
    world.connect(beta, alpha, LIMIT);
    let uid = world.uid(beta, "alpha");

    // Complete at alpha, not taken: beta waits (its redos are dropped, not delivered again).
    let id = world.send(beta, uid, message("beta", 1, 300));
    world.settle(Duration::from_secs(3));
    assert!(
        !world.peer_ref(beta).delivered(id),
        "delivered before it was taken"
    );
    assert_eq!(world.peer_ref(alpha).copies(1), 1);
    assert!(world.peer_ref(alpha).road.stats().message_awaiting_take > 0);
    let taken = receipts(&world, alpha);
    assert_eq!(taken.len(), 1);
    let now = world.net.now();
    assert!(world.peer(alpha).road.taken(now, taken[0]));
    assert!(
        !world.peer(alpha).road.taken(now, taken[0]),
        "answered twice"
    );
    if let Err(e) = world.run_until(LIMIT, |net| net.node_ref(beta).delivered(id)) {
        panic!("not delivered once taken: {e}");
    }
    assert_eq!(world.peer_ref(alpha).copies(1), 1);

    // Refused: not delivered; beta sends it again, and that one is taken.
    let id = world.send(beta, uid, message("beta", 2, 300));
    world
        .wait_for(
            alpha,
            LIMIT,
            |e| matches!(e, Event::Message { body, .. } if body["n"] == 2),
        )
        .expect("message 2 arrives");
    let first = *receipts(&world, alpha).last().unwrap();
    let now = world.net.now();
    assert!(world.peer(alpha).road.refused(now, first));
    if let Err(e) = world.run_until(LIMIT, |net| net.node_ref(alpha).copies(2) == 2) {
        panic!("a refused message was not sent again: {e}");
    }
    assert!(!world.peer_ref(beta).delivered(id));
    let second = *receipts(&world, alpha).last().unwrap();
    assert_ne!(first, second);
    let now = world.net.now();
    assert!(world.peer(alpha).road.taken(now, second));
    if let Err(e) = world.run_until(LIMIT, |net| net.node_ref(beta).delivered(id)) {
        panic!("not delivered once taken: {e}");
    }
}
