//! A join storm in virtual time (issue 11): 10,000 estates join one main at the same
//! instant, each joining again when told its join failed (as the minion's join loop does),
//! and all are joined and allowed on both sides within 60 s of virtual time. The wall time
//! this takes is bounded by the road's per-event cost: a scan of every remote per timer or
//! per join would make it quadratic.

use std::time::Duration;

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
