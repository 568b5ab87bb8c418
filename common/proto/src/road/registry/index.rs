//! The registry's lookups by something other than the uid, so that a join never scans every
//! remote: non-ephemeral remotes by name, the number of ephemeral remotes, the first contacts
//! and, among them, the evictable ones by age.
//!
//! The index keeps, per remote, the [`Keys`] it filed it under; [`Index::update`] compares
//! them with the remote as it is now and refiles it only when they differ.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

use crate::keep::Acceptance;

use super::super::remote::Remote;
use super::super::Uid;

/// What the index files one remote under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Keys {
    /// Its name, unless it is ephemeral (a vacuous join's provisional remote).
    pub(super) name: Option<String>,
    /// Whether it is ephemeral.
    pub(super) ephemeral: bool,
    /// See [`Keys::contact_of`].
    pub(super) contact: Option<Contact>,
}

/// A first contact: when it last asked, and whether it may be evicted to make room for a
/// newer one (only while its keys are not accepted).
pub(super) type Contact = (Instant, bool);

impl Keys {
    /// The keys of `remote` as it is now.
    fn of(remote: &Remote) -> Self {
        Self {
            name: Self::name_of(remote).map(str::to_owned),
            ephemeral: remote.ephemeral,
            contact: Self::contact_of(remote),
        }
    }

    /// Whether `remote` is still filed right under these keys.
    fn matches(&self, remote: &Remote) -> bool {
        self.name.as_deref() == Self::name_of(remote)
            && self.ephemeral == remote.ephemeral
            && self.contact == Self::contact_of(remote)
    }

    /// The name `remote` is found by, if any.
    pub(super) fn name_of(remote: &Remote) -> Option<&str> {
        (!remote.ephemeral).then_some(remote.name.as_str())
    }

    /// Whether `remote` is a first contact, since when, and whether it is evictable.
    pub(super) fn contact_of(remote: &Remote) -> Option<Contact> {
        let evictable = remote.acceptance != Some(Acceptance::Accepted);
        remote.first_contact.map(|asked| (asked, evictable))
    }
}

/// The lookups; see the module documentation.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Index {
    /// What each remote is filed under.
    keys: HashMap<Uid, Keys>,
    /// Non-ephemeral remotes by name.
    names: BTreeMap<String, BTreeSet<Uid>>,
    /// Number of ephemeral remotes.
    ephemerals: usize,
    /// Number of first contacts.
    contacts: usize,
    /// The evictable first contacts, by when they last asked.
    evictable: BTreeSet<(Instant, Uid)>,
}

impl Index {
    /// An index of `remotes`, built from scratch.
    #[cfg(any(test, feature = "testutil"))]
    pub(super) fn of<'a>(remotes: impl Iterator<Item = &'a Remote>) -> Self {
        let mut index = Self::default();
        for remote in remotes {
            index.update(remote.uid, remote);
        }
        index
    }

    /// Files `remote` (uid `uid`) as it is now.
    pub(super) fn update(&mut self, uid: Uid, remote: &Remote) {
        if self.keys.get(&uid).is_some_and(|keys| keys.matches(remote)) {
            return;
        }
        self.remove(uid);
        let keys = Keys::of(remote);
        if let Some(name) = &keys.name {
            self.names.entry(name.clone()).or_default().insert(uid);
        }
        self.ephemerals += usize::from(keys.ephemeral);
        if let Some((asked, evictable)) = keys.contact {
            self.contacts += 1;
            if evictable {
                self.evictable.insert((asked, uid));
            }
        }
        self.keys.insert(uid, keys);
    }

    /// Forgets the remote `uid`.
    pub(super) fn remove(&mut self, uid: Uid) {
        let Some(keys) = self.keys.remove(&uid) else {
            return;
        };
        if let Some(name) = keys.name {
            if let Some(uids) = self.names.get_mut(&name) {
                uids.remove(&uid);
                if uids.is_empty() {
                    self.names.remove(&name);
                }
            }
        }
        self.ephemerals -= usize::from(keys.ephemeral);
        if let Some((asked, evictable)) = keys.contact {
            self.contacts -= 1;
            if evictable {
                self.evictable.remove(&(asked, uid));
            }
        }
    }

    /// What the remote `uid` is filed under.
    pub(super) fn keys(&self, uid: Uid) -> Option<&Keys> {
        self.keys.get(&uid)
    }

    /// The non-ephemeral remotes called `name`, in uid order.
    pub(super) fn named<'a>(&'a self, name: &str) -> impl Iterator<Item = Uid> + 'a {
        self.names.get(name).into_iter().flatten().copied()
    }

    /// Number of ephemeral remotes.
    pub(super) fn ephemerals(&self) -> usize {
        self.ephemerals
    }

    /// Number of first contacts.
    pub(super) fn contacts(&self) -> usize {
        self.contacts
    }

    /// The evictable first contacts, least recently asked first (equal times in uid order).
    pub(super) fn evictable(&self) -> impl Iterator<Item = (Instant, Uid)> + '_ {
        self.evictable.iter().copied()
    }
}
