//! Address changes need proof (issue 10, findings 2 and 8): a join for a known remote from
//! another address (a replay: joins travel in clear) moves nothing and is answered once,
//! never more than it asked for; a restarted estate on a new port moves by its allow, which
//! proves its long-term keys; a clone of an estate that is still heard at its own address
//! is dropped and counted, the established session kept.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use raet_proto::packet::{PacketKind, TransactionKind};
use raet_proto::road::Timers;
use raet_sim::world::{addr, message, Spec, World};
use raet_sim::Link;

const LIMIT: Duration = Duration::from_secs(30);

/// A mutable main (as the master daemon's road) and a joiner, connected; the joiner's join
/// requests as they went out.
fn pair() -> (World, SocketAddr, SocketAddr, Vec<Vec<u8>>) {
    let mut world = World::new(17, Link::perfect());
    let alpha = world.add(Spec {
        mutable: true,
        ..Spec::new("alpha", 7530).main()
    });
    let beta = world.add(Spec::new("beta", 7531));
    let joins: Rc<RefCell<Vec<Vec<u8>>>> = Rc::default();
    let sink = Rc::clone(&joins);
    world.net.set_tap(Some(Box::new(move |_, from, _, data| {
        let join = raet_proto::packet::parse(data)
            .is_ok_and(|p| p.head.tk == TransactionKind::Join && p.head.pk == PacketKind::Request);
        if join && from.port() == 7531 {
            sink.borrow_mut().push(data.to_vec());
        }
    })));
    world.connect(beta, alpha, LIMIT);
    world.net.set_tap(None);
    let joins = joins.borrow().clone();
    assert!(!joins.is_empty(), "no join seen");
    (world, alpha, beta, joins)
}

/// Message `n` from `from` to `to`'s estate called `name` arrives, and its sender is told.
fn deliver(world: &mut World, from: SocketAddr, name: &str, n: u32) {
    let uid = world.uid(from, name);
    let id = world.send(from, uid, message("x", n, 300));
    if let Err(e) = world.run_until(LIMIT, |net| net.node_ref(from).delivered(id)) {
        panic!("message {n} from {from} to {name} not delivered: {e}");
    }
}

/// Counts the datagrams (and bytes) sent to `to` from now on.
fn count_to(world: &mut World, to: SocketAddr) -> Rc<RefCell<(usize, usize)>> {
    let count: Rc<RefCell<(usize, usize)>> = Rc::default();
    let sink = Rc::clone(&count);
    world.net.set_filter(Some(Box::new(move |_, _, dest, data| {
        if dest == to {
            let mut c = sink.borrow_mut();
            c.0 += 1;
            c.1 += data.len();
        }
        false
    })));
    count
}

#[test]
fn a_replayed_join_from_another_address_moves_nothing_and_is_answered_once() {
    let (mut world, alpha, beta, joins) = pair();
    // Later than the window in which a copy is a late duplicate.
    world.settle(Duration::from_secs(2));
    let attacker = addr(9999);
    let back = count_to(&mut world, attacker);
    for join in &joins {
        world.net.inject(attacker, alpha, join.clone());
    }
    world.settle(Duration::from_secs(20));

    let remote = world.peer_ref(alpha).remote("beta").expect("beta known");
    assert_eq!(remote.ha, beta, "beta moved by a replayed join");
    assert_eq!(
        (remote.joined, remote.allowed),
        (Some(true), Some(true)),
        "beta's session broken by a replayed join"
    );
    assert_eq!(
        world.peer_ref(alpha).road.stats().join_new_address,
        joins.len() as u64
    );
    // One answer per request, as large as the request but for the uid it tells and the
    // difference between the two estates' names and roles (ours: the sender cannot make
    // them longer).
    let (datagrams, bytes) = *back.borrow();
    let asked: usize = joins.iter().map(Vec::len).sum();
    let uid = r#","uid":4294967295"#.len();
    let slack = (uid + 2 * ("alpha".len() - "beta".len())) * joins.len();
    assert!(
        datagrams <= joins.len() && bytes <= asked + slack,
        "{datagrams} datagrams, {bytes} bytes sent back for {} joins of {asked} bytes",
        joins.len()
    );
    deliver(&mut world, beta, "alpha", 1);
    deliver(&mut world, alpha, "beta", 2);
}

/// Beta crashes, stays away for `away`, comes back on port 7532 with its keep and sends
/// alpha a message: alpha moves it there (once, by its allow), and alpha's own traffic
/// follows it.
fn restart_on_a_new_port(away: Duration) {
    let (mut world, alpha, beta, _) = pair();
    let crashed = world.crash(beta);
    world.settle(away);
    let moved = world.add_on(
        Spec {
            port: 7532,
            ..crashed.spec
        },
        crashed.keep,
    );
    deliver(&mut world, moved, "alpha", 1);
    let remote = world.peer_ref(alpha).remote("beta").expect("beta known");
    assert_eq!(remote.ha, moved, "beta did not move");
    assert_eq!(world.peer_ref(alpha).road.stats().address_moved, 1);
    deliver(&mut world, alpha, "beta", 2);
    assert_eq!(world.peer_ref(moved).copies(2), 1);
}

#[test]
fn a_restarted_estate_on_a_new_port_moves_by_its_allow() {
    // The old address falls silent for longer than the clash window.
    restart_on_a_new_port(Timers::default().presence_period * 3);
}

#[test]
fn a_clone_is_dropped_while_the_original_is_heard() {
    let (mut world, alpha, beta, _) = pair();
    let original = world.peer_ref(beta);
    let (spec, keep) = (original.spec.clone(), original.keep.clone());
    let clone = world.add_on(Spec { port: 7533, ..spec }, keep);
    let uid = world.uid(clone, "alpha");
    let id = world.send(clone, uid, message("clone", 1, 300));
    // Both keep talking: the original's heartbeats, the clone's attempts.
    world.settle(Duration::from_secs(10));
    let stats = world.peer_ref(alpha).road.stats();
    assert!(stats.identity_clash >= 1, "clone not noticed");
    assert_eq!(stats.address_moved, 0);
    let remote = world.peer_ref(alpha).remote("beta").expect("beta known");
    assert_eq!(remote.ha, beta, "the clone took the session");
    assert!(!world.peer_ref(clone).delivered(id));
    assert_eq!(world.peer_ref(alpha).copies(1), 0);
    deliver(&mut world, beta, "alpha", 2);
    deliver(&mut world, alpha, "beta", 3);
}

#[test]
fn an_estate_restarted_at_once_on_a_new_port_comes_back() {
    // Its first hellos from the new address race the old session's last packets (dropped
    // as a clash); once the old address has been silent for the clash window, a hello sent
    // again moves it, within the same allow.
    restart_on_a_new_port(Duration::ZERO);
}
