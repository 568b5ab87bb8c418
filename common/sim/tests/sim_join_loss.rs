//! Joins under targeted loss and duplication (catalogue §1.4, §1.1, §1.3): the first
//! request/response/ack lost → redo completes the join; all of them lost → bounded
//! failure; duplicates → one join; joins to a non-main are rejected; two mains joining
//! each other at once end with one remote each.

use std::net::SocketAddr;
use std::time::Duration;

use raet_proto::packet::{PacketKind, TransactionKind};
use raet_proto::road::{Event, Timers};
use raet_sim::world::{Peer, Spec, World};
use raet_sim::{Filter, Link};

const ALPHA: u16 = 7530;
const BETA: u16 = 7531;

/// Drops join packets of kind `pk` sent from `port`: the first `first` of them, or all.
fn drop_join(port: u16, pk: PacketKind, first: Option<u32>) -> Filter {
    let mut dropped = 0;
    Box::new(move |_, from, _, data| {
        let selected = from.port() == port
            && raet_proto::packet::parse(data)
                .is_ok_and(|p| p.head.tk == TransactionKind::Join && p.head.pk == pk);
        let drop = selected && first.is_none_or(|n| dropped < n);
        dropped += u32::from(drop);
        drop
    })
}

/// alpha (main) and beta, beta's join to alpha started under `filter`.
fn joining(link: Link, filter: Filter) -> (World, SocketAddr, SocketAddr) {
    let mut world = World::new(51, link);
    world.net.set_filter(Some(filter));
    let alpha = world.add(Spec::new("alpha", ALPHA).main());
    let beta = world.add(Spec::new("beta", BETA));
    world.join(beta, alpha);
    (world, alpha, beta)
}

fn both_joined(world: &World, alpha: SocketAddr, beta: SocketAddr) -> bool {
    world.peer_ref(alpha).joined("beta") && world.peer_ref(beta).joined("alpha")
}

fn join_failed(peer: &Peer) -> bool {
    peer.count(|e| matches!(e, Event::JoinFailed { .. })) > 0
}

/// One remote on each side, one join completed on the joinent, `joiner_joins` on the joiner.
fn one_remote_each(world: &World, alpha: SocketAddr, beta: SocketAddr, joiner_joins: usize) {
    for at in [alpha, beta] {
        assert_eq!(world.peer_ref(at).road.remotes().len(), 1);
    }
    let joins = |at| {
        world
            .peer_ref(at)
            .count(|e| matches!(e, Event::Joined { .. }))
    };
    assert_eq!(joins(alpha), 1);
    assert_eq!(joins(beta), joiner_joins);
}

/// The first packet of kind `pk` from `port` is lost: the redo timers complete the join
/// (and its cascade: allow), no earlier than `after`.
fn first_lost_then_joined(port: u16, pk: PacketKind, after: Duration) {
    let (mut world, alpha, beta) = joining(Link::perfect(), drop_join(port, pk, Some(1)));
    let outcome = world.run_until(Duration::from_secs(10), |net| {
        net.node_ref(alpha).allowed("beta") && net.node_ref(beta).allowed("alpha")
    });
    if let Err(e) = outcome {
        panic!("{pk:?} from {port} lost once: never joined and allowed: {e}");
    }
    assert!(
        world.net.elapsed() >= after,
        "joined before any redo: {:?}",
        world.net.elapsed()
    );
    assert_eq!(world.net.stats().blocked, 1);
    // The joiner completes a second time when its ack was lost: the joinent answers its
    // allow with "unjoined" and it joins again.
    one_remote_each(
        &world,
        alpha,
        beta,
        if pk == PacketKind::Ack { 2 } else { 1 },
    );
}

#[test]
fn first_join_request_lost_is_redone() {
    first_lost_then_joined(BETA, PacketKind::Request, Timers::default().joiner_redo_min);
}

#[test]
fn first_join_response_lost_is_redone() {
    first_lost_then_joined(
        ALPHA,
        PacketKind::Response,
        Timers::default().joinent_redo_min,
    );
}

#[test]
fn first_join_ack_lost_still_ends_joined_and_allowed() {
    first_lost_then_joined(BETA, PacketKind::Ack, Duration::ZERO);
}

/// Bound of a failed join: the joiner's timeout plus one redo of slack.
fn join_bound() -> Duration {
    let t = Timers::default();
    t.joiner_timeout + t.joiner_redo_max
}

#[test]
fn all_join_requests_lost_fail_within_the_joiner_timeout() {
    let (mut world, alpha, beta) =
        joining(Link::perfect(), drop_join(BETA, PacketKind::Request, None));
    if let Err(e) = world.run_until(join_bound(), |net| join_failed(net.node_ref(beta))) {
        panic!("no JoinFailed: {e}");
    }
    assert!(world.peer_ref(alpha).road.remotes().is_empty());
    assert!(!world.peer_ref(beta).joined("alpha"));
}

#[test]
fn all_join_responses_lost_fail_on_both_sides() {
    let (mut world, alpha, beta) = joining(
        Link::perfect(),
        drop_join(ALPHA, PacketKind::Response, None),
    );
    world.settle(join_bound());
    assert!(join_failed(world.peer_ref(beta)), "the joiner gave up");
    assert!(!both_joined(&world, alpha, beta));
    assert!(
        !world.peer_ref(alpha).joined("beta"),
        "the joinent never got an ack"
    );
}

#[test]
fn all_join_acks_lost_leave_only_the_joiner_joined() {
    let (mut world, alpha, beta) = joining(Link::perfect(), drop_join(BETA, PacketKind::Ack, None));
    world.settle(join_bound());
    assert!(
        world.peer_ref(beta).joined("alpha"),
        "the joiner completed on the response"
    );
    assert!(
        !world.peer_ref(alpha).joined("beta"),
        "the joinent never got an ack"
    );
}

#[test]
fn duplicated_join_packets_make_one_join() {
    let link = Link {
        duplicate: 1.0,
        ..Link::perfect()
    };
    let (mut world, alpha, beta) = joining(link, Box::new(|_, _, _, _| false));
    if let Err(e) = world.run_until(Duration::from_secs(10), |net| {
        net.node_ref(alpha).allowed("beta") && net.node_ref(beta).allowed("alpha")
    }) {
        panic!("never joined and allowed: {e}");
    }
    world.settle(Duration::from_secs(2));
    one_remote_each(&world, alpha, beta, 1);
}

#[test]
fn a_vacuous_join_to_a_non_main_is_rejected() {
    let mut world = World::new(52, Link::perfect());
    let gamma = world.add(Spec::new("gamma", 7532));
    let beta = world.add(Spec::new("beta", BETA));
    world.join(beta, gamma);
    world.settle(Duration::from_secs(2));
    assert!(
        world.peer_ref(beta).road.remotes().is_empty(),
        "rejected: the joiner drops it"
    );
    assert!(
        world
            .peer_ref(beta)
            .count(|e| matches!(e, Event::Rejected { .. }))
            > 0
    );
    assert!(world.peer_ref(gamma).road.remotes().is_empty());
}

#[test]
fn two_mains_joining_each_other_at_once_end_with_one_remote_each() {
    let mut world = World::new(53, Link::perfect());
    let alpha = world.add(Spec::new("alpha", ALPHA).main());
    let beta = world.add(Spec::new("beta", BETA).main());
    world.join(alpha, beta);
    world.join(beta, alpha);
    if let Err(e) = world.run_until(Duration::from_secs(20), |net| {
        net.node_ref(alpha).allowed("beta") && net.node_ref(beta).allowed("alpha")
    }) {
        panic!("the join race did not converge: {e}");
    }
    world.settle(Duration::from_secs(2));
    for at in [alpha, beta] {
        assert_eq!(world.peer_ref(at).road.remotes().len(), 1, "{at}");
    }
}
