//! Tests of [`Schedule`]: stale entries, moved deadlines, removal, due order, the heap's
//! bound, and a model-based property test.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;

/// A schedule over small keys and integer deadlines, with `deadlines` settled.
fn settled(deadlines: &[(u8, u32)]) -> Schedule<u8, u32> {
    let mut schedule = Schedule::new();
    for &(key, _) in deadlines {
        schedule.touch(key);
    }
    schedule.settle(|key| deadlines.iter().find(|(k, _)| *k == key).map(|(_, at)| *at));
    schedule
}

#[test]
fn stale_entries_are_skipped() {
    let mut schedule = settled(&[(1, 10), (2, 20)]);
    schedule.touch(1);
    schedule.settle(|_| Some(30));
    // (10, 1) is still in the heap but no longer counts.
    assert_eq!(schedule.peek(), Some(20));
    assert_eq!(schedule.due(25), vec![2]);
    assert_eq!(schedule.peek(), Some(30));
    assert_eq!(schedule.due(30), vec![1]);
    assert_eq!(schedule.peek(), None);
    assert!(schedule.heap.is_empty());
}

#[test]
fn a_deadline_moved_earlier_fires_once() {
    let mut schedule = settled(&[(1, 10)]);
    schedule.touch(1);
    schedule.settle(|_| Some(5));
    assert_eq!(schedule.peek(), Some(5));
    assert_eq!(schedule.due(5), vec![1]);
    // The old entry at 10 is stale: nothing comes due again until key 1 is settled.
    assert_eq!(schedule.peek(), None);
    assert_eq!(schedule.due(100), Vec::<u8>::new());
}

#[test]
fn a_deadline_moved_and_moved_back_fires_once() {
    let mut schedule = settled(&[(1, 10)]);
    schedule.set(1, Some(20));
    schedule.set(1, Some(10));
    assert_eq!(schedule.due(100), vec![1]);
    assert_eq!(schedule.peek(), None);
}

#[test]
fn a_touched_key_keeps_its_deadline_until_settled() {
    let mut schedule = settled(&[(1, 10)]);
    schedule.touch(1);
    assert_eq!(schedule.pending().collect::<Vec<_>>(), vec![1]);
    assert_eq!(schedule.peek(), Some(10));
    schedule.settle(|_| None);
    assert_eq!(schedule.peek(), None);
    assert_eq!(schedule.deadline(&1), None);
    assert_eq!(schedule.pending().count(), 0);
}

#[test]
fn removal_forgets_deadline_and_pending_mark() {
    let mut schedule = settled(&[(1, 5), (2, 10), (3, 15)]);
    schedule.remove(&1);
    assert_eq!(schedule.peek(), Some(10));
    schedule.touch(3);
    schedule.remove(&3);
    assert_eq!(schedule.pending().count(), 0);
    assert_eq!(schedule.due(100), vec![2]);
    // Removing a key never scheduled is harmless.
    schedule.remove(&9);
    assert_eq!(schedule.peek(), None);
}

#[test]
fn due_is_in_deadline_then_key_order_and_marks_pending() {
    let mut schedule = settled(&[(4, 20), (3, 10), (1, 20), (2, 30)]);
    assert_eq!(schedule.due(20), vec![3, 1, 4]);
    assert_eq!(schedule.pending().collect::<Vec<_>>(), vec![1, 3, 4]);
    assert_eq!(schedule.peek(), Some(30));
    let mut read = Vec::new();
    schedule.settle(|key| {
        read.push(key);
        Some(40)
    });
    assert_eq!(read, vec![1, 3, 4]);
    assert_eq!(schedule.due(35), vec![2]);
    assert_eq!(schedule.due(40), vec![1, 3, 4]);
}

#[test]
fn take_pending_then_set() {
    let mut schedule: Schedule<u8, u32> = Schedule::new();
    schedule.touch(2);
    schedule.touch(1);
    for key in schedule.take_pending() {
        schedule.set(key, Some(u32::from(key) * 10));
    }
    assert_eq!(schedule.pending().count(), 0);
    assert_eq!(schedule.peek(), Some(10));
    assert_eq!(schedule.deadline(&2), Some(20));
}

#[test]
fn stale_entries_do_not_pile_up() {
    let mut schedule = settled(&[(1, 0), (2, 1_000_000)]);
    for at in 1..100_000 {
        schedule.set(1, Some(at));
    }
    assert!(
        schedule.heap.len() <= HEAP_SLACK * 2 + HEAP_FLOOR + 1,
        "{} heap entries for 2 keys",
        schedule.heap.len()
    );
    assert_eq!(schedule.due(1_000_000), vec![1, 2]);
}

/// One step of the property test.
#[derive(Debug, Clone)]
enum Op {
    /// The key's deadline becomes this; the key is touched.
    Touch(u8, Option<u16>),
    /// Settle the pending keys.
    Settle,
    /// Remove the key.
    Remove(u8),
    /// Take the keys due at this time.
    Due(u16),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..16, proptest::option::weighted(0.8, 0u16..500))
            .prop_map(|(k, at)| Op::Touch(k, at)),
        2 => Just(Op::Settle),
        1 => (0u8..16).prop_map(Op::Remove),
        2 => (0u16..500).prop_map(Op::Due),
    ]
}

proptest! {
    /// Against a model that scans every key: the same deadlines, the same earliest one and
    /// the same due keys in the same order, after any sequence of changes.
    #[test]
    fn behaves_like_a_scan(ops in proptest::collection::vec(op(), 0..200)) {
        let mut schedule: Schedule<u8, u16> = Schedule::new();
        let mut truth: BTreeMap<u8, Option<u16>> = BTreeMap::new();
        let mut model: BTreeMap<u8, u16> = BTreeMap::new();
        let mut pending: BTreeSet<u8> = BTreeSet::new();
        for op in ops {
            match op {
                Op::Touch(key, at) => {
                    truth.insert(key, at);
                    pending.insert(key);
                    schedule.touch(key);
                }
                Op::Settle => {
                    for key in std::mem::take(&mut pending) {
                        match truth.get(&key).copied().flatten() {
                            Some(at) => model.insert(key, at),
                            None => model.remove(&key),
                        };
                    }
                    schedule.settle(|key| truth.get(&key).copied().flatten());
                }
                Op::Remove(key) => {
                    truth.remove(&key);
                    pending.remove(&key);
                    model.remove(&key);
                    schedule.remove(&key);
                }
                Op::Due(now) => {
                    let mut due: Vec<(u16, u8)> = model
                        .iter()
                        .filter(|(_, &at)| at <= now)
                        .map(|(&key, &at)| (at, key))
                        .collect();
                    due.sort_unstable();
                    for &(_, key) in &due {
                        model.remove(&key);
                        pending.insert(key);
                    }
                    let keys: Vec<u8> = due.into_iter().map(|(_, key)| key).collect();
                    prop_assert_eq!(schedule.due(now), keys);
                }
            }
            prop_assert_eq!(schedule.peek(), model.values().min().copied());
            prop_assert_eq!(schedule.pending().collect::<BTreeSet<_>>(), pending.clone());
            for key in 0..16 {
                prop_assert_eq!(schedule.deadline(&key), model.get(&key).copied());
            }
        }
    }
}
