//! A join storm in virtual time (issue 11): 10,000 estates join one main at the same
//! instant, each joining again when told its join failed (as the minion's join loop does),
//! and all are joined and allowed on both sides within 60 s of virtual time. The wall time
//! this takes is bounded by the road's per-event cost: a scan of every remote per timer or
//! per join would make it quadratic. A restarted main spreads the allows its first
//! heartbeats start over a millisecond per remote.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use raet_proto::packet::{PacketKind, TransactionKind};
use raet_sim::world::{daemon_timers, JoinLoops, World};
use raet_sim::Link;

const MAIN: u16 = 7530;
const FIRST_JOINER: u16 = 10_000;
const ESTATES: u16 = 10_000;
/// The storm's target (issue 11): everyone allowed within this much virtual time.
const TARGET: Duration = Duration::from_secs(60);
/// How often the join loops look at their outcome.
const TICK: Duration = Duration::from_millis(250);

#[test]
fn ten_thousand_estates_joining_at_once_are_all_allowed_within_a_minute() {
    let mut world = World::new(11, Link::perfect());
    let (main, joiners) = world.storm(&daemon_timers(), MAIN, FIRST_JOINER, ESTATES);
    let mut loops = JoinLoops::new(joiners);
    while !loops.waiting.is_empty() {
        assert!(
            world.net.elapsed() < TARGET,
            "{} of {ESTATES} not allowed after {TARGET:?} ({} joins again): {:?}",
            loops.waiting.len(),
            loops.rejoins,
            world
                .peer_ref(loops.joiners[loops.waiting[0]])
                .events
                .iter()
                .take(4)
                .collect::<Vec<_>>()
        );
        world.settle(TICK);
        loops.step(&mut world, main);
    }
    world.peer(main).road.check_index();
    let allowed = world
        .peer_ref(main)
        .road
        .remotes()
        .iter()
        .filter(|r| r.allowed == Some(true))
        .count();
    eprintln!(
        "{ESTATES} allowed after {:?} of virtual time, {} joins again",
        world.net.elapsed(),
        loops.rejoins
    );
    assert_eq!(
        allowed,
        usize::from(ESTATES),
        "allowed as the main sees them"
    );
}

/// Every joiner of a storm on `main` joined and allowed (by the join loops).
fn converge(world: &mut World, main: SocketAddr, joiners: Vec<SocketAddr>) {
    let mut loops = JoinLoops::new(joiners);
    while !loops.waiting.is_empty() {
        assert!(world.net.elapsed() < TARGET, "storm not converged");
        world.settle(TICK);
        loops.step(world, main);
    }
}

#[test]
fn a_restarted_main_spreads_its_first_heartbeats_over_a_millisecond_per_remote() {
    // All at once, 10,000 allows outlasted the allow timeout on two real cores: the minions
    // whose allow timed out took the master for lost and joined again (a join storm).
    const N: u16 = 2_000;
    let spread = Duration::from_millis(u64::from(N));
    let mut world = World::new(12, Link::perfect());
    let (main, joiners) = world.storm(&daemon_timers(), MAIN, FIRST_JOINER, N);
    converge(&mut world, main, joiners.clone());
    world.settle(Duration::from_secs(1));
    let failures: Vec<usize> = joiners
        .iter()
        .map(|&j| world.peer_ref(j).failures())
        .collect();
    // When the restarted main first said hello (an allow) to each remote.
    let first: Rc<RefCell<BTreeMap<SocketAddr, Duration>>> = Rc::default();
    let sink = Rc::clone(&first);
    world.net.set_tap(Some(Box::new(move |at, from, to, data| {
        let hello = raet_proto::packet::parse(data)
            .is_ok_and(|p| p.head.tk == TransactionKind::Allow && p.head.pk == PacketKind::Hello);
        if from == main && hello {
            sink.borrow_mut().entry(to).or_insert(at);
        }
    })));
    let restarted = world.net.elapsed();
    world.restart(main);
    world.settle(spread + Duration::from_millis(500));
    let after: Vec<Duration> = first.borrow().values().map(|at| *at - restarted).collect();
    // The remotes whose own heartbeat came first were allowed by them: most are the main's.
    assert!(
        after.len() > usize::from(N) * 3 / 4,
        "{} hellos",
        after.len()
    );
    let early = after.iter().filter(|at| **at < spread / 2).count();
    let late = after.iter().filter(|at| **at > spread * 3 / 4).count();
    assert!(
        early < after.len() * 2 / 3 && late > after.len() / 8,
        "spread over {spread:?}: {early} in the first half, {late} in the last quarter of {}",
        after.len()
    );
    let last = after.iter().max().copied().unwrap_or_default();
    assert!(
        last < spread + Duration::from_millis(100),
        "last hello {last:?}"
    );
    // Every remote is allowed again, none joined again.
    world.settle(Duration::from_secs(12));
    let main_road = &world.peer_ref(main).road;
    let allowed = main_road
        .remotes()
        .iter()
        .filter(|r| r.allowed == Some(true))
        .count();
    assert_eq!(allowed, usize::from(N));
    for (&joiner, before) in joiners.iter().zip(failures) {
        let failed = world.peer_ref(joiner).failures() - before;
        assert_eq!(failed, 0, "{joiner} failed a join or allow");
    }
}
