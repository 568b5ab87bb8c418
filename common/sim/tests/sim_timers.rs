//! The cost of a timer wakeup does not grow with the number of remotes (issue 11): a main
//! with 1,000 remotes restored from its keep, whose heartbeats come due one after another,
//! looks only at the remotes due at each wakeup, and every remote's heartbeat still fires.

use std::collections::BTreeSet;

use raet_proto::keep::Acceptance;
use raet_sim::world::{preset_keep, remote_record, role_record, Spec, World};
use raet_sim::Link;

const REMOTES: u16 = 1_000;

#[test]
fn a_wakeup_visits_only_the_remotes_that_are_due() {
    let specs: Vec<Spec> = (0..REMOTES)
        .map(|i| Spec::new(&format!("minion{i}"), 8000 + i))
        .collect();
    let records: Vec<_> = specs
        .iter()
        .zip(2u32..)
        .map(|(spec, uid)| {
            let mut record = remote_record(spec, uid, 2);
            record.joined = Some(true);
            record
        })
        .collect();
    let roles: Vec<_> = specs
        .iter()
        .zip((1u8..=250).cycle())
        .map(|(spec, seed)| role_record(&spec.role(), Acceptance::Accepted, seed))
        .collect();
    let mut world = World::new(5, Link::perfect());
    let main = world.add_on(
        Spec::new("master", 7530).main(),
        preset_keep(&records, &roles),
    );
    let road = &mut world.peer(main).road;
    assert_eq!(road.remotes().len(), usize::from(REMOTES));

    // A restarted main spreads its first heartbeats over one presence period: every
    // remote's alive comes due at its own time, so the wakeups are many and each is small.
    let start = road.stats().timer_remotes;
    let mut wakeups = 0u64;
    let mut greeted = BTreeSet::new();
    while greeted.len() < usize::from(REMOTES) && wakeups < 20 * u64::from(REMOTES) {
        let at = road.poll_timeout().expect("a timer is set");
        road.handle_timeout(at);
        wakeups += 1;
        while let Some(transmit) = road.poll_transmit() {
            greeted.insert(transmit.dest);
        }
    }
    let visits = road.stats().timer_remotes - start;
    assert_eq!(
        greeted.len(),
        usize::from(REMOTES),
        "remotes never sent a heartbeat"
    );
    // A scan of every remote per wakeup would be 1,000 visits each; allow a few per
    // wakeup for remotes due at the same instant.
    assert!(
        visits <= 3 * wakeups,
        "{visits} remote visits in {wakeups} wakeups"
    );
    assert!(
        wakeups >= u64::from(REMOTES) / 2,
        "only {wakeups} wakeups: the heartbeats were not spread"
    );
}
