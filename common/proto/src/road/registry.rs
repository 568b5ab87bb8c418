//! The road's remotes by uid, and when each one next needs [`super::Road::handle_timeout`]:
//! a [`Schedule`] kept up to date from the remotes touched since the last look, so that
//! finding the next timer and firing the due ones never visits every remote (issue 11).
//!
//! Every mutable access ([`Registry::get_mut`], [`Registry::insert`]) marks the remote
//! pending; [`Registry::settle`] recomputes the deadlines of the pending remotes only.

use std::collections::BTreeMap;
use std::time::Instant;

use super::remote::Remote;
use super::transaction::earliest;
use super::Uid;
use crate::schedule::Schedule;

/// The remotes, by uid, with their timer schedule.
#[derive(Default)]
pub(crate) struct Registry {
    map: BTreeMap<Uid, Remote>,
    /// Each remote's next deadline; pending: the remotes changed since the last settle.
    schedule: Schedule<Uid>,
}

impl Registry {
    /// The remote `uid`.
    pub(crate) fn get(&self, uid: &Uid) -> Option<&Remote> {
        self.map.get(uid)
    }

    /// The remote `uid`, to change (its deadlines are looked at again).
    pub(crate) fn get_mut(&mut self, uid: &Uid) -> Option<&mut Remote> {
        let remote = self.map.get_mut(uid)?;
        self.schedule.touch(*uid);
        Some(remote)
    }

    /// Whether `uid` is a remote.
    pub(crate) fn contains_key(&self, uid: &Uid) -> bool {
        self.map.contains_key(uid)
    }

    /// Adds (or replaces) a remote.
    pub(crate) fn insert(&mut self, uid: Uid, remote: Remote) {
        self.schedule.touch(uid);
        self.map.insert(uid, remote);
    }

    /// Removes a remote and its schedule.
    pub(crate) fn remove(&mut self, uid: &Uid) -> Option<Remote> {
        self.schedule.remove(uid);
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
        let map = &self.map;
        self.schedule
            .settle(|uid| map.get(&uid).and_then(&deadline_of));
    }

    /// The earliest deadline: the settled schedule's, or a changed remote's (`deadline_of`,
    /// without settling it). May be early (a changed remote's old deadline), never late.
    pub(crate) fn next(&self, deadline_of: impl Fn(&Remote) -> Option<Instant>) -> Option<Instant> {
        self.schedule
            .pending()
            .filter_map(|uid| self.map.get(&uid))
            .fold(self.schedule.peek(), |next, remote| {
                earliest(next, deadline_of(remote))
            })
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
        self.schedule.due(now)
    }
}
