//! First contacts under a join flood (issue 10, finding 4): forged joins with fresh names
//! and valid keys from 64 source addresses at 2,000 per second cost bounded memory and write
//! nothing; at most one new first contact per address per interval reaches the application
//! (the master would write each to `minions_pre`); a legitimate estate that keeps asking
//! becomes pending and keeps its place; after the flood every first contact is dropped.

use std::time::Duration;

use raet_proto::keep::{AutoMode, Keep, MemKeep};
use raet_proto::road::{Event, Limits};
use raet_sim::world::{addr, join_body, join_request, Spec, World};
use raet_sim::Link;

const SOURCES: u16 = 64;
const PER_SECOND: usize = 2_000;
const FLOOD: Duration = Duration::from_secs(20);
const TICK: Duration = Duration::from_millis(100);

#[test]
fn a_join_flood_costs_bounded_memory_and_nothing_on_disk() {
    let limits = Limits {
        max_first_contacts: 128,
        ..Limits::default()
    };
    let mut world = World::new(3, Link::perfect());
    let keep = MemKeep::new();
    let main = world.add_on(
        Spec {
            mutable: true,
            limits: limits.clone(),
            ..Spec::new("main", 7700).main().auto(AutoMode::Never)
        },
        keep.clone(),
    );
    let legit = world.add(Spec::new("legit", 7701));
    world.join(legit, main);

    let per_tick = PER_SECOND / (1000 / TICK.as_millis() as usize);
    let ticks = FLOOD.as_millis() / TICK.as_millis();
    let mut most = 0;
    let mut legit_failures = 0;
    for tick in 0..ticks {
        for k in 0..per_tick {
            let from = addr(9000 + (k as u16 % SOURCES));
            let mut junk = Spec::new(&format!("junk{tick}x{k}"), 9000);
            junk.keys = (k % 251) as u8;
            let join = join_request(1 + k as u32, 0, &join_body(&junk));
            world.net.inject(from, main, join);
        }
        world.settle(TICK);
        // Evictions, expiries and first contacts completing keep the lookups in step.
        world.peer(main).road.check_index();
        most = most.max(world.peer_ref(main).road.remotes().len());
        // The legitimate joiner asks again whenever its pended join ends (as the daemon).
        let failures = world
            .peer_ref(legit)
            .events
            .iter()
            .filter(|e| matches!(e, Event::JoinFailed { .. }))
            .count();
        if failures > legit_failures {
            legit_failures = failures;
            world.join(legit, main);
        }
    }

    let road = &world.peer_ref(main).road;
    let stats = road.stats();
    let sent = PER_SECOND as u64 * FLOOD.as_secs();
    assert!(
        most <= limits.max_first_contacts,
        "{most} remotes at once (cap {})",
        limits.max_first_contacts
    );
    assert_eq!(
        keep.load_remotes().expect("keep").len(),
        0,
        "first contacts written"
    );
    let intervals = FLOOD.as_secs() / limits.first_contact_interval.as_secs() + 1;
    let pending = world
        .peer_ref(main)
        .events
        .iter()
        .filter(|e| matches!(e, Event::Pending { name, .. } if name != "legit"))
        .count() as u64;
    assert!(
        pending <= u64::from(SOURCES) * intervals,
        "{pending} junk first contacts reached the application"
    );
    assert!(stats.first_contact_rate_limited >= sent - u64::from(SOURCES) * intervals);
    assert!(
        stats.first_contact_evicted > 0,
        "the cap was never reached: flood harder"
    );
    assert!(
        world.peer_ref(main).remote("legit").is_some(),
        "the legitimate joiner lost its place"
    );
    assert!(world
        .peer_ref(main)
        .has(|e| matches!(e, Event::Pending { name, .. } if name == "legit")));

    // The flood ends (and the legitimate joiner gives up): every first contact is dropped,
    // and the pending role records their joins made with them.
    world.settle(limits.first_contact_ttl + Duration::from_secs(10));
    let road = &world.peer_ref(main).road;
    assert_eq!(road.remotes().len(), 0, "first contacts left behind");
    let dropped = world
        .peer_ref(main)
        .events
        .iter()
        .filter(|e| matches!(e, Event::FirstContactDropped { .. }))
        .count() as u64;
    let stats = road.stats();
    assert_eq!(
        dropped,
        stats.first_contact_evicted + stats.first_contact_expired
    );
    assert_eq!(
        keep.load_roles().expect("keep").len(),
        0,
        "pending roles left behind"
    );
}
