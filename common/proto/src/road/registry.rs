//! The road's remotes by uid, and when each one next needs [`super::Road::handle_timeout`]:
//! a [`Schedule`] kept up to date from the remotes touched since the last look, so that
//! finding the next timer and firing the due ones never visits every remote (issue 11).
//!
//! Every mutable access ([`Registry::get_mut`], [`Registry::insert`]) marks the remote
//! pending; [`Registry::settle`] recomputes the deadlines of the pending remotes only.
//!
//! The remotes are also indexed by name, role, ephemerality and first contact ([`index`]).
//! A remote lent out by [`Registry::get_mut`] may be changed in any field, so it is refiled
//! at the next call that takes the registry mutably (the borrow checker guarantees the loan
//! has ended by then); until then the lookups correct for that one remote. No field can
//! change behind the index's back, however a remote is changed.

use std::collections::BTreeMap;
use std::time::Instant;

use self::index::{Field, Index, Keys};
use super::remote::Remote;
use super::transaction::earliest;
use super::Uid;
use crate::schedule::Schedule;

mod index;

/// The remotes, by uid, with their timer schedule.
#[derive(Default)]
pub(crate) struct Registry {
    map: BTreeMap<Uid, Remote>,
    /// Each remote's next deadline; pending: the remotes changed since the last settle.
    schedule: Schedule<Uid>,
    /// The lookups other than by uid, exact for every remote but `lent`.
    index: Index,
    /// The remote last lent out by [`Registry::get_mut`], not yet refiled in `index`.
    lent: Option<Uid>,
}

impl Registry {
    /// The remote `uid`.
    pub(crate) fn get(&self, uid: &Uid) -> Option<&Remote> {
        self.map.get(uid)
    }

    /// The remote `uid`, to change (its deadlines are looked at again).
    pub(crate) fn get_mut(&mut self, uid: &Uid) -> Option<&mut Remote> {
        self.refile();
        let remote = self.map.get_mut(uid)?;
        self.schedule.touch(*uid);
        self.lent = Some(*uid);
        Some(remote)
    }

    /// Whether `uid` is a remote.
    pub(crate) fn contains_key(&self, uid: &Uid) -> bool {
        self.map.contains_key(uid)
    }

    /// Adds (or replaces) a remote.
    pub(crate) fn insert(&mut self, uid: Uid, remote: Remote) {
        self.refile();
        self.schedule.touch(uid);
        self.index.update(uid, &remote);
        self.map.insert(uid, remote);
    }

    /// Removes a remote and its schedule.
    pub(crate) fn remove(&mut self, uid: &Uid) -> Option<Remote> {
        self.refile();
        self.schedule.remove(uid);
        self.index.remove(*uid);
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
        self.refile();
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

    /// Refiles the remote lent out by [`Registry::get_mut`], if any, in the index.
    fn refile(&mut self) {
        if let Some(uid) = self.lent.take() {
            if let Some(remote) = self.map.get(&uid) {
                self.index.update(uid, remote);
            }
        }
    }

    /// The lent remote: its uid, what the index has filed it under, and the remote as it
    /// is now.
    fn lent(&self) -> Option<(Uid, &Keys, &Remote)> {
        let uid = self.lent?;
        Some((uid, self.index.keys(uid)?, self.map.get(&uid)?))
    }

    /// The non-ephemeral remotes whose `field` is `text` (in no particular order).
    fn filed<'a>(&'a self, field: Field, text: &'a str) -> impl Iterator<Item = Uid> + 'a {
        let lent = self
            .lent()
            .filter(|(_, _, remote)| Keys::text_of(field, remote) == Some(text))
            .map(|(uid, _, _)| uid);
        self.index
            .filed(field, text)
            .filter(move |uid| Some(*uid) != self.lent)
            .chain(lent)
    }

    /// The non-ephemeral remote called `name` (the lowest uid if several are).
    pub(crate) fn uid_by_name(&self, name: &str) -> Option<Uid> {
        self.filed(Field::Name, name).min()
    }

    /// Whether a non-ephemeral remote other than `uid` is called `name`.
    pub(crate) fn name_taken(&self, name: &str, uid: Uid) -> bool {
        self.filed(Field::Name, name).any(|other| other != uid)
    }

    /// The non-ephemeral remotes of `role`, in uid order.
    pub(crate) fn with_role(&self, role: &str) -> Vec<Uid> {
        let mut uids: Vec<Uid> = self.filed(Field::Role, role).collect();
        uids.sort_unstable();
        uids
    }

    /// Number of ephemeral remotes.
    pub(crate) fn ephemerals(&self) -> usize {
        let mut count = self.index.ephemerals();
        if let Some((_, filed, remote)) = self.lent() {
            count = count + usize::from(remote.ephemeral) - usize::from(filed.ephemeral);
        }
        count
    }

    /// Number of first contacts.
    pub(crate) fn first_contacts(&self) -> usize {
        let mut count = self.index.contacts();
        if let Some((_, filed, remote)) = self.lent() {
            count = count + usize::from(Keys::contact_of(remote).is_some())
                - usize::from(filed.contact.is_some());
        }
        count
    }

    /// Number of remotes in a handshake they started ([`Remote::handshaking`]).
    pub(crate) fn handshakes(&self) -> usize {
        let mut count = self.index.handshakes();
        if let Some((_, filed, remote)) = self.lent() {
            count = count + usize::from(remote.handshaking()) - usize::from(filed.handshaking);
        }
        count
    }

    /// The evictable first contact that asked least recently (the lowest uid of equals).
    pub(crate) fn oldest_evictable(&self) -> Option<Uid> {
        let filed = self
            .index
            .evictable()
            .find(|(_, uid)| Some(*uid) != self.lent);
        let lent = self
            .lent()
            .and_then(|(uid, _, remote)| match Keys::contact_of(remote) {
                Some((asked, true)) => Some((asked, uid)),
                _ => None,
            });
        filed.into_iter().chain(lent).min().map(|(_, uid)| uid)
    }

    /// Panics unless the index holds every remote as it is now (for tests: a lookup that
    /// went stale would show here).
    #[cfg(any(test, feature = "testutil"))]
    pub(crate) fn check_index(&mut self) {
        self.refile();
        assert_eq!(
            self.index,
            Index::of(self.map.values()),
            "the registry's index is stale"
        );
    }
}

#[cfg(test)]
mod tests;
