//! The road's remotes by uid, and when each one next needs [`super::Road::handle_timeout`]:
//! a deadline heap kept up to date from the remotes touched since the last look, so that
//! finding the next timer and firing the due ones never visits every remote (issue 11).
//!
//! Every mutable access ([`Registry::get_mut`], [`Registry::insert`]) marks the remote
//! dirty; [`Registry::settle`] recomputes the deadlines of the dirty remotes only. Heap
//! entries are not removed when a deadline moves: an entry counts only while it equals the
//! remote's scheduled deadline, stale ones are skipped when they come up.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::time::Instant;

use super::remote::Remote;
use super::transaction::earliest;
use super::Uid;

/// Heap entries allowed per remote (plus a constant) before the heap is rebuilt.
const HEAP_SLACK: usize = 4;

/// The remotes, by uid, with their timer schedule.
#[derive(Default)]
pub(crate) struct Registry {
    map: BTreeMap<Uid, Remote>,
    /// Remotes changed since the last [`Registry::settle`].
    dirty: BTreeSet<Uid>,
    /// Each remote's next deadline as last settled.
    scheduled: HashMap<Uid, Instant>,
    /// Deadlines, earliest first (may hold stale entries, see the module documentation).
    heap: BinaryHeap<Reverse<(Instant, Uid)>>,
}

impl Registry {
    /// The remote `uid`.
    pub(crate) fn get(&self, uid: &Uid) -> Option<&Remote> {
        self.map.get(uid)
    }

    /// The remote `uid`, to change (its deadlines are looked at again).
    pub(crate) fn get_mut(&mut self, uid: &Uid) -> Option<&mut Remote> {
        let remote = self.map.get_mut(uid)?;
        self.dirty.insert(*uid);
        Some(remote)
    }

    /// Whether `uid` is a remote.
    pub(crate) fn contains_key(&self, uid: &Uid) -> bool {
        self.map.contains_key(uid)
    }

    /// Adds (or replaces) a remote.
    pub(crate) fn insert(&mut self, uid: Uid, remote: Remote) {
        self.dirty.insert(uid);
        self.map.insert(uid, remote);
    }

    /// Removes a remote and its schedule.
    pub(crate) fn remove(&mut self, uid: &Uid) -> Option<Remote> {
        self.dirty.remove(uid);
        self.scheduled.remove(uid);
        self.map.remove(uid)
    }

    /// Number of remotes.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Every remote's uid, in order.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &Uid> {
        self.map.keys()
    }

    /// Every remote, by uid.
    pub(crate) fn values(&self) -> impl Iterator<Item = &Remote> {
        self.map.values()
    }

    /// Recomputes the deadline (`deadline_of`) of every remote changed since the last call.
    pub(crate) fn settle(&mut self, deadline_of: impl Fn(&Remote) -> Option<Instant>) {
        for uid in std::mem::take(&mut self.dirty) {
            let Some(remote) = self.map.get(&uid) else {
                continue;
            };
            match deadline_of(remote) {
                Some(at) => {
                    if self.scheduled.insert(uid, at) != Some(at) {
                        self.heap.push(Reverse((at, uid)));
                    }
                }
                None => {
                    self.scheduled.remove(&uid);
                }
            }
        }
        if self.heap.len() > HEAP_SLACK * self.scheduled.len() + 1024 {
            self.heap = self
                .scheduled
                .iter()
                .map(|(&uid, &at)| Reverse((at, uid)))
                .collect();
        }
    }

    /// The earliest deadline: the settled schedule's, or a changed remote's (`deadline_of`,
    /// without settling it). May be early (a stale entry), never late.
    pub(crate) fn next(&self, deadline_of: impl Fn(&Remote) -> Option<Instant>) -> Option<Instant> {
        let settled = self.heap.peek().map(|Reverse((at, _))| *at);
        self.dirty
            .iter()
            .filter_map(|uid| self.map.get(uid))
            .fold(settled, |next, remote| earliest(next, deadline_of(remote)))
    }

    /// Settles, then takes the remotes whose deadline is at or before `now` (each once, in
    /// deadline order) off the schedule; the caller fires their timers, which marks them
    /// changed again.
    pub(crate) fn take_due(
        &mut self,
        now: Instant,
        deadline_of: impl Fn(&Remote) -> Option<Instant>,
    ) -> Vec<Uid> {
        self.settle(deadline_of);
        let mut due = Vec::new();
        while let Some(&Reverse((at, uid))) = self.heap.peek() {
            if at > now {
                break;
            }
            self.heap.pop();
            if self.scheduled.get(&uid) == Some(&at) {
                self.scheduled.remove(&uid);
                self.dirty.insert(uid);
                due.push(uid);
            }
        }
        due
    }
}
