//! A deadline schedule over many keys that never visits every key: [`Schedule`].
//!
//! The road keeps one over its remotes (when each next needs `handle_timeout`) and the
//! simulator one over its endpoints. Both change a few keys per input and must answer "what
//! is the earliest deadline" and "which keys are due" cheaply, however many keys there are.
//!
//! A change is recorded in two steps: [`Schedule::touch`] marks a key *pending* (its deadline
//! may have moved, nothing is read yet), and [`Schedule::settle`] later reads the deadline of
//! the pending keys only. Deadlines live in a min-heap whose entries are not removed when a
//! key's deadline moves or the key goes: an entry counts only while it equals the key's
//! scheduled deadline, stale ones are dropped as they reach the top. The heap's top is kept
//! live, so [`Schedule::peek`] is exact, and the heap is rebuilt from the live deadlines when
//! stale entries outnumber them by far.
//!
//! Costs, for n scheduled keys: O(log n) amortised per key settled, removed or due, O(1)
//! for [`Schedule::peek`].

use std::cmp::Reverse;
use std::collections::{btree_set, BTreeMap, BTreeSet, BinaryHeap};
use std::time::Instant;

/// Heap entries allowed per scheduled key (plus [`HEAP_FLOOR`]) before the heap is rebuilt.
const HEAP_SLACK: usize = 4;
/// Heap entries always allowed, whatever the number of scheduled keys.
const HEAP_FLOOR: usize = 1024;

/// The next deadline (`T`, an [`Instant`] unless told otherwise) of each key `K`, earliest
/// first; see the [module documentation](self).
#[derive(Debug, Clone)]
pub struct Schedule<K, T = Instant> {
    /// Keys touched since their deadline was last read.
    pending: BTreeSet<K>,
    /// Each key's deadline as last read (keys without one are absent).
    scheduled: BTreeMap<K, T>,
    /// Deadlines, earliest first; an entry is live while it equals its key's `scheduled`
    /// deadline. The top, if any, is always live.
    heap: BinaryHeap<Reverse<(T, K)>>,
}

impl<K, T> Default for Schedule<K, T> {
    fn default() -> Self {
        Self {
            pending: BTreeSet::new(),
            scheduled: BTreeMap::new(),
            heap: BinaryHeap::new(),
        }
    }
}

impl<K: Ord + Copy, T: Ord + Copy> Schedule<K, T> {
    /// An empty schedule.
    pub fn new() -> Self {
        Self::default()
    }

    /// Marks `key` pending: its deadline is read again at the next [`Schedule::settle`].
    /// Until then its old deadline (if any) still counts for [`Schedule::peek`] and
    /// [`Schedule::due`].
    pub fn touch(&mut self, key: K) {
        self.pending.insert(key);
    }

    /// Forgets `key`: no longer pending, no deadline.
    pub fn remove(&mut self, key: &K) {
        self.pending.remove(key);
        if self.scheduled.remove(key).is_some() {
            self.drop_stale();
        }
    }

    /// The pending keys, in order (e.g. to read their deadlines without settling them).
    pub fn pending(&self) -> impl Iterator<Item = K> + '_ {
        self.pending.iter().copied()
    }

    /// Takes the pending keys, in order, for a caller that does more per key than reading a
    /// deadline; it [`Schedule::set`]s each one's deadline. [`Schedule::settle`] is this with
    /// a function.
    pub fn take_pending(&mut self) -> btree_set::IntoIter<K> {
        std::mem::take(&mut self.pending).into_iter()
    }

    /// Sets `key`'s deadline (`None`: it has none). Does not change whether it is pending.
    pub fn set(&mut self, key: K, deadline: Option<T>) {
        match deadline {
            Some(at) => {
                if self.scheduled.insert(key, at) != Some(at) {
                    self.heap.push(Reverse((at, key)));
                }
            }
            None => {
                self.scheduled.remove(&key);
            }
        }
        self.drop_stale();
        if self.heap.len() > HEAP_SLACK * self.scheduled.len() + HEAP_FLOOR {
            self.heap = self
                .scheduled
                .iter()
                .map(|(&key, &at)| Reverse((at, key)))
                .collect();
        }
    }

    /// Reads the deadline of every pending key (`deadline_of`, in key order) and schedules
    /// it; no key is pending afterwards.
    pub fn settle(&mut self, mut deadline_of: impl FnMut(K) -> Option<T>) {
        for key in self.take_pending() {
            let at = deadline_of(key);
            self.set(key, at);
        }
    }

    /// The earliest scheduled deadline (pending keys count with the deadline they had when
    /// last settled).
    pub fn peek(&self) -> Option<T> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// `key`'s scheduled deadline, as last settled.
    pub fn deadline(&self, key: &K) -> Option<T> {
        self.scheduled.get(key).copied()
    }

    /// Takes the keys whose deadline is at or before `now` off the schedule, earliest first
    /// (equal deadlines in key order), and marks them pending: the caller fires their timers,
    /// then the next [`Schedule::settle`] reads their new deadlines.
    pub fn due(&mut self, now: T) -> Vec<K> {
        let mut due = Vec::new();
        while let Some(&Reverse((at, key))) = self.heap.peek() {
            if at > now {
                break;
            }
            self.heap.pop();
            if self.scheduled.get(&key) == Some(&at) {
                self.scheduled.remove(&key);
                self.pending.insert(key);
                due.push(key);
            }
        }
        self.drop_stale();
        due
    }

    /// Pops stale entries off the heap's top until the top is live (or the heap is empty).
    fn drop_stale(&mut self) {
        while let Some(&Reverse((at, key))) = self.heap.peek() {
            if self.scheduled.get(&key) == Some(&at) {
                break;
            }
            self.heap.pop();
        }
    }
}

#[cfg(test)]
mod tests;
