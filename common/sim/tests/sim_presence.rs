//! Presence (catalogue §3): alive heartbeats from the road's own timers, a crashed peer is
//! marked lost within a bounded time, a returning peer is alive again, and a message to a
//! vanished peer ends in `SendFailed` within a bounded time (the reference retries forever).

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use raet_proto::packet::fast::FastHead;
use raet_proto::packet::{PacketKind, TransactionKind};
use raet_proto::road::{Event, MessageId, Presence, Timers};
use raet_sim::world::{message, Spec, World};
use raet_sim::Link;

const LIMIT: Duration = Duration::from_secs(30);

fn pair(link: Link) -> (World, SocketAddr, SocketAddr) {
    let mut world = World::new(21, link);
    let alpha = world.add(Spec::new("alpha", 7530).main());
    let beta = world.add(Spec::new("beta", 7531));
    world.connect(beta, alpha, LIMIT);
    (world, alpha, beta)
}

/// Longest silence before a peer must be declared lost: the presence period (+ offset)
/// before the alive, then the aliver's timeout, plus one redo of slack.
fn lost_bound() -> Duration {
    let t = Timers::default();
    t.presence_period + t.presence_offset + t.aliver_timeout + t.alive_redo_max
}

fn presence(world: &World, at: SocketAddr, name: &str, what: Presence) -> usize {
    world.peer_ref(at).count(|e| {
        matches!(e, Event::Presence { name: n, presence, .. } if n == name && *presence == what)
    })
}

#[test]
fn heartbeats_run_by_themselves_and_keep_both_sides_alive() {
    let (mut world, alpha, beta) = pair(Link::perfect());
    let alives = Rc::new(RefCell::new([0u32; 2]));
    let log = Rc::clone(&alives);
    world.net.set_tap(Some(Box::new(move |_, from, _, data| {
        if alive_request(data) {
            log.borrow_mut()[usize::from(from.port() == 7531)] += 1;
        }
    })));
    world.settle(Duration::from_secs(20));
    let [from_alpha, from_beta] = *alives.borrow();
    // Period 1 s (+0.5 s on the non-main), restarted by any traffic: idle for 20 s means
    // about one alive per period from at least one side, and both sides heard from.
    assert!(
        from_alpha + from_beta >= 10,
        "only {from_alpha} + {from_beta} alives in 20 s"
    );
    for (at, name) in [(alpha, "beta"), (beta, "alpha")] {
        let remote = world.peer_ref(at).remote(name).expect("remote");
        assert_eq!(remote.alive, Some(true), "{name} not alive at {at}");
        assert_eq!(presence(&world, at, name, Presence::Lost), 0);
    }
}

#[test]
fn heartbeats_survive_a_lossy_link() {
    let (mut world, alpha, beta) = pair(Link::impaired(0.1));
    world.settle(Duration::from_secs(30));
    for (at, name) in [(alpha, "beta"), (beta, "alpha")] {
        assert!(
            world.peer_ref(at).allowed(name),
            "{name} no longer allowed at {at}"
        );
    }
}

#[test]
fn a_crashed_peer_is_lost_within_the_bound_and_alive_again_after_restart() {
    let (mut world, alpha, beta) = pair(Link::perfect());
    let crashed = world.crash(beta);
    let start = world.net.elapsed();
    let outcome = world.run_until(lost_bound(), |net| {
        net.node_ref(alpha)
            .remote("beta")
            .is_some_and(|r| r.alive == Some(false))
    });
    if let Err(e) = outcome {
        panic!("beta not marked lost within {:?}: {e}", lost_bound());
    }
    assert_eq!(presence(&world, alpha, "beta", Presence::Lost), 1);
    let took = world.net.elapsed() - start;
    assert!(
        took >= Timers::default().aliver_timeout,
        "lost too early: {took:?}"
    );

    // It comes back (restart on its keep): alive again, and messages flow.
    world.add_on(crashed.spec, crashed.keep);
    let uid = world.uid(alpha, "beta");
    let id = world.send(alpha, uid, message("alpha", 1, 500));
    let outcome = world.run_until(LIMIT, |net| {
        net.node_ref(alpha).delivered(id)
            && net
                .node_ref(alpha)
                .remote("beta")
                .is_some_and(|r| r.alive == Some(true))
    });
    if let Err(e) = outcome {
        panic!("beta not back: {e}");
    }
    assert_eq!(world.peer_ref(beta).messages().count(), 1);
}

#[test]
fn a_partitioned_peer_is_lost_then_found_when_the_partition_heals() {
    let (mut world, alpha, beta) = pair(Link::perfect());
    world.net.partition(alpha, beta, true);
    world.settle(lost_bound() + Duration::from_secs(1));
    assert!(presence(&world, alpha, "beta", Presence::Lost) >= 1);
    assert!(presence(&world, beta, "alpha", Presence::Lost) >= 1);
    world.net.partition(alpha, beta, false);
    let uid = world.uid(beta, "alpha");
    let id = world.send(beta, uid, message("beta", 1, 20_000));
    if let Err(e) = world.run_until(LIMIT, |net| net.node_ref(beta).delivered(id)) {
        panic!("not delivered after healing: {e}");
    }
    assert_eq!(world.peer_ref(alpha).messages().count(), 1);
}

/// The road's own bound: `Timers::message_timeout` without progress, plus slack.
fn send_bound() -> Duration {
    Timers::default().message_timeout + Duration::from_secs(5)
}

/// `id`, sent by `at`, ends in `SendFailed` (and not `Delivered`) within [`send_bound`].
fn expect_send_failed(world: &mut World, at: SocketAddr, id: MessageId) {
    if let Err(e) = world.run_until(send_bound(), |net| {
        net.node_ref(at).send_failed(id).is_some()
    }) {
        panic!("no SendFailed within {:?}: {e}", send_bound());
    }
    assert!(!world.peer_ref(at).delivered(id));
}

#[test]
fn a_message_to_a_vanished_peer_fails_within_the_bound() {
    let (mut world, alpha, beta) = pair(Link::perfect());
    world.crash(beta);
    let uid = world.uid(alpha, "beta");
    let id = world.send(alpha, uid, message("alpha", 1, 100));
    expect_send_failed(&mut world, alpha, id);
}

#[test]
fn a_segmented_message_cut_off_midway_fails_within_the_bound() {
    // Segments spread over 10 ms, so that the receiver can vanish in the middle.
    let (mut world, alpha, beta) = pair(Link {
        jitter: Duration::from_millis(10),
        ..Link::perfect()
    });
    let uid = world.uid(alpha, "beta");
    let id = world.send(alpha, uid, message("alpha", 1, 200 * 1024));
    // Let part of it through, then the receiver disappears.
    world
        .run_until(Duration::from_secs(1), |net| {
            net.node_ref(beta).road.stats().message_segment_rx > 0
        })
        .expect("a first segment arrives");
    let crashed = world.crash(beta);
    assert!(
        crashed.messages().next().is_none(),
        "already complete: cut it earlier"
    );
    assert!(
        crashed.road.stats().message_segment_rx > 0,
        "nothing arrived yet: cut it later"
    );
    expect_send_failed(&mut world, alpha, id);
}

#[test]
fn sending_to_an_unknown_uid_is_an_error() {
    let (mut world, alpha, _) = pair(Link::perfect());
    let now = world.net.now();
    let err = world
        .peer(alpha)
        .road
        .send(now, 999, message("alpha", 1, 10))
        .unwrap_err();
    assert!(
        matches!(err, raet_proto::road::RoadError::UnknownRemote),
        "{err:?}"
    );
}

/// Whether a datagram is an alive request: signed, or sealed in a fast session (two
/// estates of ours negotiate the fast profile, whose alives are sealed).
fn alive_request(data: &[u8]) -> bool {
    let kinds = |tk, pk| tk == TransactionKind::Alive && pk == PacketKind::Request;
    raet_proto::packet::parse(data).is_ok_and(|p| kinds(p.head.tk, p.head.pk))
        || FastHead::parse(data).is_ok_and(|(f, _, _)| kinds(f.tk, f.pk))
}

/// Drops alive requests sent by `port` while `drop` says so (argument: how many so far).
fn drop_alives(port: u16, drop: impl Fn(u32) -> bool + 'static) -> raet_sim::Filter {
    let mut seen = 0;
    Box::new(move |_, from, _, data| {
        let alive = from.port() == port && alive_request(data);
        if !alive {
            return false;
        }
        seen += 1;
        drop(seen)
    })
}

/// testFirstAliveRequestDropped: the redo resends it; nobody is ever marked lost.
#[test]
fn a_lost_alive_request_is_redone() {
    let (mut world, alpha, beta) = pair(Link::perfect());
    world.net.set_filter(Some(drop_alives(7530, |n| n == 1)));
    world.settle(Duration::from_secs(10));
    assert_eq!(world.net.stats().blocked, 1, "one alive request dropped");
    assert_eq!(presence(&world, alpha, "beta", Presence::Lost), 0);
    assert_eq!(
        world.peer_ref(alpha).remote("beta").and_then(|r| r.alive),
        Some(true)
    );
    assert!(world.peer_ref(beta).allowed("alpha"));
}

/// testAllAliveRequestsDropped: the aliver times out and marks the remote not alive (the
/// other direction still works, so only one side loses sight).
#[test]
fn all_alive_requests_lost_mark_the_remote_lost() {
    let (mut world, alpha, _) = pair(Link::perfect());
    world.net.set_filter(Some(drop_alives(7530, |_| true)));
    if let Err(e) = world.run_until(lost_bound() + Duration::from_secs(2), |net| {
        net.node_ref(alpha)
            .remote("beta")
            .is_some_and(|r| r.alive == Some(false))
    }) {
        panic!("beta never marked lost: {e}");
    }
}

#[test]
fn a_peer_that_dies_between_its_rejoin_and_its_allow_is_lost() {
    // A restarted peer joins again; the main learns the join and waits for the allow (its own
    // heartbeat now starts an allow, not an alive). The peer dies before the allow: that
    // silence is a loss too, or the application sees it present for ever.
    let (mut world, alpha, beta) = pair(Link::perfect());
    assert_eq!(
        world.peer_ref(alpha).remote("beta").unwrap().alive,
        Some(true)
    );
    world.restart(beta);
    // Beta's allows never reach alpha: it dies after joining, before allowing.
    world.net.set_filter(Some(Box::new(move |_, from, _, data| {
        from == beta
            && raet_proto::packet::parse(data).is_ok_and(|p| p.head.tk == TransactionKind::Allow)
    })));
    if let Err(e) = world.run_until(LIMIT, |net| {
        net.node_ref(alpha)
            .remote("beta")
            .is_some_and(|r| r.joined == Some(true) && r.allowed != Some(true))
    }) {
        panic!("alpha never saw beta's rejoin: {e}");
    }
    world.crash(beta);
    let bound = lost_bound() + Timers::default().allow_timeout;
    if let Err(e) = world.run_until(bound, |net| {
        net.node_ref(alpha)
            .remote("beta")
            .is_some_and(|r| r.alive == Some(false))
    }) {
        panic!("beta not marked lost within {bound:?}: {e}");
    }
    assert_eq!(presence(&world, alpha, "beta", Presence::Lost), 1);
}
