//! A join storm in virtual time (issue 11): 10,000 estates join one main at the same
//! instant, each joining again when told its join failed (as the minion's join loop does),
//! and all are joined and allowed on both sides within 60 s of virtual time. The wall time
//! this takes is bounded by the road's per-event cost: a scan of every remote per timer or
//! per join would make it quadratic.

use std::time::Duration;

use raet_proto::road::{Event, Timers};
use raet_sim::world::{Peer, World};
use raet_sim::Link;

const MAIN: u16 = 7530;
const FIRST_JOINER: u16 = 10_000;
const ESTATES: u16 = 10_000;
/// The storm's target (issue 11): everyone allowed within this much virtual time.
const TARGET: Duration = Duration::from_secs(60);
/// How often the join loops look at their outcome.
const TICK: Duration = Duration::from_millis(250);

/// The daemons' heartbeat (alive period 10 s).
fn timers() -> Timers {
    Timers {
        presence_period: Duration::from_secs(10),
        ..Timers::default()
    }
}

fn failures(peer: &Peer) -> usize {
    peer.count(|e| matches!(e, Event::JoinFailed { .. } | Event::AllowFailed { .. }))
}

#[test]
fn ten_thousand_estates_joining_at_once_are_all_allowed_within_a_minute() {
    let mut world = World::new(11, Link::perfect());
    let (main, joiners) = world.storm(&timers(), MAIN, FIRST_JOINER, ESTATES);
    let mut seen = vec![0; joiners.len()];
    let mut rejoins = 0;
    let mut waiting: Vec<usize> = (0..joiners.len()).collect();
    while !waiting.is_empty() {
        assert!(
            world.net.elapsed() < TARGET,
            "{} of {ESTATES} not allowed after {TARGET:?} ({rejoins} joins again): {:?}",
            waiting.len(),
            world
                .peer_ref(joiners[waiting[0]])
                .events
                .iter()
                .take(4)
                .collect::<Vec<_>>()
        );
        world.settle(TICK);
        waiting.retain(|&i| {
            let peer = world.peer_ref(joiners[i]);
            !peer.allowed("master")
        });
        for &i in &waiting {
            let failed = failures(world.peer_ref(joiners[i]));
            if failed > seen[i] {
                seen[i] = failed;
                rejoins += 1;
                world.join(joiners[i], main);
            }
        }
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
        "{ESTATES} allowed after {:?} of virtual time, {rejoins} joins again",
        world.net.elapsed()
    );
    assert_eq!(
        allowed,
        usize::from(ESTATES),
        "allowed as the main sees them"
    );
}
