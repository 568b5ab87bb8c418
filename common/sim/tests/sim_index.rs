//! The main's lookups of remotes by name, by ephemerality and of first contacts (its
//! registry's index) stay in step with the remotes through a join storm with the
//! first-contact limit reached, renames and removals: [`Road::check_index`] after every
//! tick compares the index with one built from scratch.
//!
//! [`Road::check_index`]: raet_proto::road::Road::check_index

use std::net::SocketAddr;
use std::time::Duration;

use raet_proto::keep::Acceptance;
use raet_proto::road::{Event, Limits};
use raet_sim::world::{preset_keep, remote_record, role_record, Spec, World};
use raet_sim::Link;

const MAIN: u16 = 7530;
const FIRST_JOINER: u16 = 8000;
const ESTATES: u16 = 200;
const TICK: Duration = Duration::from_millis(250);
/// Virtual time allowed for each phase.
const LIMIT: Duration = Duration::from_secs(120);

/// Estate `i` called `name`, its role fixed (a rename keeps role and keys).
fn spec(i: u16, name: &str) -> Spec {
    let mut spec = Spec::new(name, FIRST_JOINER + i);
    spec.role = Some(format!("role{i}"));
    spec
}

fn failures(world: &World, at: SocketAddr) -> usize {
    world
        .peer_ref(at)
        .count(|e| matches!(e, Event::JoinFailed { .. } | Event::AllowFailed { .. }))
}

/// Ticks until every estate in `joiners` is allowed by the main, each joining again when
/// told its join or allow failed; checks the main's index after every tick.
fn until_allowed(world: &mut World, main: SocketAddr, joiners: &[SocketAddr]) {
    let start = world.net.elapsed();
    let mut seen: Vec<usize> = joiners.iter().map(|&j| failures(world, j)).collect();
    let mut waiting: Vec<usize> = (0..joiners.len()).collect();
    while !waiting.is_empty() {
        assert!(
            world.net.elapsed() - start < LIMIT,
            "{} not allowed",
            waiting.len()
        );
        world.settle(TICK);
        world.peer(main).road.check_index();
        waiting.retain(|&i| !world.peer_ref(joiners[i]).allowed("master"));
        for &i in &waiting {
            let failed = failures(world, joiners[i]);
            if failed > seen[i] {
                seen[i] = failed;
                world.join(joiners[i], main);
            }
        }
    }
}

#[test]
fn the_index_follows_a_storm_renames_and_removals() {
    let mut world = World::new(7, Link::perfect());
    let mut master = Spec::new("master", MAIN).main();
    master.mutable = true;
    master.limits = Limits {
        max_first_contacts: 64,
        ..Limits::default()
    };
    let main = world.add(master.clone());
    let joiners: Vec<SocketAddr> = (0..ESTATES)
        .map(|i| world.add(spec(i, &format!("minion{i}"))))
        .collect();
    for &joiner in &joiners {
        world.join(joiner, main);
    }
    until_allowed(&mut world, main, &joiners);
    let stats = world.peer_ref(main).road.stats();
    assert!(
        stats.first_contact_busy > 0,
        "the storm never reached the first-contact limit: {stats:?}"
    );

    // Every third estate comes back under another name (its keep knowing the main, same
    // uids, role and keys): its non-vacuous join makes the mutable main rename it.
    let renamed: Vec<u16> = (0..ESTATES).step_by(3).collect();
    let uids: Vec<_> = renamed
        .iter()
        .map(|i| world.uid(main, &format!("minion{i}")))
        .collect();
    for &i in &renamed {
        let at = joiners[usize::from(i)];
        let old = world.crash(at);
        let uid = old.road.uid_by_name("master").expect("the main");
        let fuid = old.road.remote(uid).expect("the main").fuid;
        let keep = preset_keep(
            &[remote_record(&master, uid, fuid)],
            &[role_record(
                &master.role(),
                Acceptance::Accepted,
                master.keys,
            )],
        );
        world.add_on(spec(i, &format!("renamed{i}")), keep);
        world.join(at, main);
    }
    let again: Vec<SocketAddr> = renamed.iter().map(|&i| joiners[usize::from(i)]).collect();
    until_allowed(&mut world, main, &again);
    for (&i, &uid) in renamed.iter().zip(&uids) {
        let road = &world.peer_ref(main).road;
        assert_eq!(road.uid_by_name(&format!("renamed{i}")), Some(uid), "{i}");
        assert_eq!(road.uid_by_name(&format!("minion{i}")), None, "{i}");
    }

    // Every third other estate is removed by the main (they join again when it stops
    // answering them).
    let now = world.net.now();
    for i in (1..ESTATES).step_by(3) {
        let road = &mut world.peer(main).road;
        let uid = road
            .uid_by_name(&format!("minion{i}"))
            .unwrap_or_else(|| panic!("minion{i} unknown"));
        road.remove(now, uid).expect("remove");
        assert_eq!(road.uid_by_name(&format!("minion{i}")), None);
        road.check_index();
    }
    for _ in 0..40 {
        world.settle(TICK);
        world.peer(main).road.check_index();
    }
}
