//! A joined, allowed road fed mutated copies of the datagrams of a real exchange (validly
//! re-signed by the remote, so they reach the transactions) and random bytes: it never
//! panics.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use raet_proto::packet::{self, FootKind};
use raet_proto::road::{Event, Road};
use raet_sim::world::{body, keys, Spec, World};
use raet_sim::{mutate, Link};
use serde_json::json;

const MAIN: u16 = 7590;
const OTHER: u16 = 7591;

/// Datagrams "other" sent in a real join/allow/alive/message exchange, the main road that
/// took part (joined and allowed with "other"), the time, and other's key seed.
fn corpus() -> (Vec<Vec<u8>>, Road, Instant, u8) {
    let mut world = World::new(1, Link::perfect());
    let m = world.add(Spec::new("main", MAIN).main());
    let other = Spec::new("other", OTHER);
    let seed = other.keys;
    let o = world.add(other);
    let seen = Rc::new(RefCell::new(Vec::new()));
    let tap = seen.clone();
    world.net.set_tap(Some(Box::new(move |_, from, _, d| {
        if from == o {
            tap.borrow_mut().push(d.to_vec());
        }
    })));
    let uid = world.connect(o, m, Duration::from_secs(10));
    world.send(o, uid, body(json!({"blob": "z".repeat(3000)})));
    world
        .wait_for(m, Duration::from_secs(5), |e| {
            matches!(e, Event::Message { .. })
        })
        .expect("message");
    let out = seen.borrow().clone();
    let now = world.net.now();
    (out, world.crash(m).road, now, seed)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    /// Mutated real datagrams (heads and coats changed, then validly signed by the
    /// remote, so they reach the transactions), plus random bytes, never make a joined,
    /// allowed road panic.
    #[test]
    fn mutated_datagrams_never_panic(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u32>(), any::<usize>()), 1..40),
        noise in proptest::collection::vec(any::<u8>(), 0..1100),
    ) {
        let (corpus, mut victim, now, seed) = corpus();
        let signer = keys(seed).0;
        let from = raet_sim::world::addr(OTHER);
        victim.handle_datagram(now, from, &noise);
        for (which, field, value, at) in edits {
            let original = &corpus[which % corpus.len()];
            let Ok(rx) = packet::parse(original) else { continue };
            let mut head = rx.head.clone();
            let mut coat = rx.coat.to_vec();
            mutate::head(&mut head, field, value);
            if !coat.is_empty() && field % 3 == 0 {
                let i = at % coat.len();
                coat[i] ^= 0x5a;
            }
            let signed = (head.fk == FootKind::Nacl).then_some(&signer);
            if let Ok(d) = packet::pack(&head, &coat, signed) {
                victim.handle_datagram(now, from, &d);
            }
            victim.handle_timeout(now + Duration::from_secs(1));
            while victim.poll_transmit().is_some() {}
            while victim.poll_event().is_some() {}
        }
        prop_assert!(victim.stats().rx_packets > 0);
    }
}
