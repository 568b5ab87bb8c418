//! Fan-out within a memory bound (issue 11): a 100 KB message to each of 60 allowed remotes
//! at once. Every open Messenger holds its message sealed for its remote; the road-wide budget
//! (`Limits::max_sealed_bytes`) keeps at most that much sealed at any time, the other
//! messages waiting in their queues (not against their message timeout), and every message
//! is still delivered exactly once. Without the bound all 60 copies are sealed at once.

use std::time::Duration;

use raet_proto::road::{Event, Limits};
use raet_sim::world::{message, Spec, World};
use raet_sim::Link;

const MAIN: u16 = 7530;
const FIRST: u16 = 9000;
const REMOTES: u16 = 60;
const SIZE: usize = 100 * 1024;

/// Runs the fan-out with the main's `max_sealed_bytes` = `budget`: the most sealed bytes the
/// main held at once, and how often a message waited for room.
fn fan_out(budget: usize) -> (usize, u64) {
    let mut world = World::new(5, Link::perfect());
    let mut spec = Spec::new("main", MAIN).main();
    spec.limits = Limits {
        max_sealed_bytes: budget,
        ..Limits::default()
    };
    let main = world.add(spec);
    let joiners: Vec<_> = (0..REMOTES)
        .map(|i| world.add(Spec::new(&format!("r{i}"), FIRST + i)))
        .collect();
    for &joiner in &joiners {
        world.connect(joiner, main, Duration::from_secs(30));
    }
    let ids: Vec<_> = (0..REMOTES)
        .map(|i| {
            let uid = world.uid(main, &format!("r{i}"));
            world.send(main, uid, message("main", u32::from(i), SIZE))
        })
        .collect();
    let mut peak = world.peer_ref(main).road.sealed_bytes();
    world
        .run_until(Duration::from_secs(60), |net| {
            let road = &net.node_ref(main).road;
            peak = peak.max(road.sealed_bytes());
            ids.iter().all(|id| net.node_ref(main).delivered(*id))
        })
        .unwrap_or_else(|e| panic!("fan-out with a budget of {budget} B: {e}"));
    for (i, &joiner) in joiners.iter().enumerate() {
        let peer = world.peer_ref(joiner);
        assert_eq!(peer.copies(i as u32), 1, "r{i} got its message once");
    }
    let main_peer = world.peer_ref(main);
    assert_eq!(
        main_peer.count(|e| matches!(e, Event::SendFailed { .. })),
        0
    );
    assert_eq!(main_peer.road.sealed_bytes(), 0, "everything given back");
    (peak, main_peer.road.stats().sealed_budget_wait)
}

#[test]
fn a_fan_out_holds_at_most_the_sealed_budget_and_delivers_everything() {
    let budget = 1024 * 1024;
    let (peak, waits) = fan_out(budget);
    eprintln!("budget {budget} B: peak {peak} B sealed, {waits} waits");
    assert!(peak <= budget, "peak {peak} B over the budget");
    assert!(peak > budget / 2, "the budget is used: {peak} B");
    assert!(waits > 0);

    let (unbounded, waits) = fan_out(Limits::default().max_sealed_bytes);
    eprintln!("default budget: peak {unbounded} B sealed, {waits} waits");
    assert!(
        unbounded >= usize::from(REMOTES) * SIZE,
        "all sealed at once: {unbounded} B"
    );
    assert_eq!(waits, 0);
}
