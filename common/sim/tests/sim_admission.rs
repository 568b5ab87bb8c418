//! Admission control of a main in a join storm (issue 11): with `max_handshakes` handshakes
//! under way, a new join request is refused at once and nothing of it is kept; the refused
//! joiners ask again and all end joined and allowed, while the main never has more than
//! `max_handshakes` handshakes under way. Joins waiting for an operator do not hold the
//! slots.

use std::time::Duration;

use raet_proto::keep::{Acceptance, AutoMode};
use raet_proto::road::{Event, JoinFailure};
use raet_sim::world::{daemon_timers, preset_keep, role_record, JoinLoops, Spec, World};
use raet_sim::Link;

const MAIN: u16 = 7530;
const FIRST_JOINER: u16 = 10_000;
const ESTATES: u16 = 600;
const MAX_HANDSHAKES: usize = 32;
/// How often the joiners look at their outcome (and the main's handshakes are counted).
const TICK: Duration = Duration::from_millis(20);
const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn a_storm_beyond_the_handshake_limit_is_refused_at_once_and_still_all_allowed() {
    // 50 ms each way: a handshake lasts a few round trips, long enough to be counted
    let link = Link {
        delay: Duration::from_millis(50),
        ..Link::perfect()
    };
    let mut world = World::new(12, link);
    let (main, joiners) = world.storm_on(&daemon_timers(), MAIN, FIRST_JOINER, ESTATES, |spec| {
        spec.limits.max_handshakes = MAX_HANDSHAKES;
    });
    let mut loops = JoinLoops::new(joiners.clone());
    let mut most = 0;
    while !loops.waiting.is_empty() {
        assert!(
            world.net.elapsed() < LIMIT,
            "{} of {ESTATES} not allowed after {LIMIT:?}",
            loops.waiting.len()
        );
        world.settle(TICK);
        let main_road = &world.peer_ref(main).road;
        most = most.max(main_road.handshakes());
        assert!(
            main_road.handshakes() <= MAX_HANDSHAKES,
            "{} handshakes under way",
            main_road.handshakes()
        );
        // nothing of a refused join is kept: every remote of the main is an admitted one
        assert!(main_road.remotes().len() <= usize::from(ESTATES));
        loops.step(&mut world, main);
    }
    assert_eq!(most, MAX_HANDSHAKES, "the main worked at its limit");
    let refused: usize = joiners
        .iter()
        .map(|&j| {
            world.peer_ref(j).count(|e| {
                matches!(
                    e,
                    Event::JoinFailed {
                        reason: JoinFailure::Refused,
                        ..
                    }
                )
            })
        })
        .sum();
    let busy = world.peer_ref(main).road.stats().join_busy;
    assert!(refused > 0, "joins were refused");
    assert_eq!(
        refused as u64, busy,
        "each refused join failed at once on its joiner"
    );
    let timed_out: usize = joiners
        .iter()
        .map(|&j| world.peer_ref(j).failures())
        .sum::<usize>()
        - refused;
    assert_eq!(timed_out, 0, "no join or allow timed out");
    world.settle(Duration::from_secs(1));
    world.peer(main).road.check_index();
    let allowed = world
        .peer_ref(main)
        .road
        .remotes()
        .iter()
        .filter(|r| r.allowed == Some(true))
        .count();
    assert_eq!(allowed, usize::from(ESTATES));
    assert_eq!(world.peer_ref(main).road.handshakes(), 0);
}

#[test]
fn joins_waiting_for_an_operator_do_not_hold_the_handshake_slots() {
    let mut world = World::new(13, Link::perfect());
    let accepted = Spec::new("accepted", 7600);
    let keep = preset_keep(
        &[],
        &[role_record("accepted", Acceptance::Accepted, accepted.keys)],
    );
    let mut spec = Spec::new("master", MAIN).main().auto(AutoMode::Never);
    spec.limits.max_handshakes = 2;
    let main = world.add_on(spec, keep);
    // Three estates the operator has not decided on, each asking again whenever its pended
    // join ends (as the minion's join loop does).
    let pending: Vec<_> = (0..3)
        .map(|i| world.add(Spec::new(&format!("pending{i}"), 7700 + i)))
        .collect();
    for &p in &pending {
        world.join(p, main);
    }
    let mut seen = vec![0; pending.len()];
    let ask_again = |world: &mut World, seen: &mut Vec<usize>| {
        for (i, &p) in pending.iter().enumerate() {
            let ended = world
                .peer_ref(p)
                .count(|e| matches!(e, Event::JoinFailed { .. }));
            if ended > seen[i] {
                seen[i] = ended;
                world.join(p, main);
            }
        }
    };
    // Long enough for each to have been pended twice (the third one was refused while the
    // first two joins of the others were under way).
    while world.net.elapsed() < Duration::from_secs(16) {
        world.settle(TICK);
        ask_again(&mut world, &mut seen);
    }
    let pended = |world: &World, p| {
        world.peer_ref(p).count(|e| {
            matches!(
                e,
                Event::JoinFailed {
                    reason: JoinFailure::Pended,
                    ..
                }
            )
        })
    };
    // (the first two; the third had to wait for their first joins to end)
    assert!(pending[..2].iter().all(|&p| pended(&world, p) >= 2));
    let accepted = world.add(accepted);
    world.join(accepted, main);
    let until = world.net.elapsed() + Duration::from_secs(2);
    while world.net.elapsed() < until && !world.peer_ref(accepted).allowed("master") {
        world.settle(TICK);
        ask_again(&mut world, &mut seen);
    }
    assert!(
        world.peer_ref(accepted).allowed("master"),
        "the accepted estate is not allowed: {:?}",
        world.peer_ref(accepted).events
    );
    let refused = world.peer_ref(accepted).count(|e| {
        matches!(
            e,
            Event::JoinFailed {
                reason: JoinFailure::Refused,
                ..
            }
        )
    });
    assert_eq!(refused, 0);
}
