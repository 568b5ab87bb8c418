//! The registry's lookups by something other than the uid, so that a join never scans every
//! remote: non-ephemeral remotes by name and by role, the number of ephemeral remotes, the
//! first contacts and, among them, the evictable ones by age, and the number of remotes in a
//! handshake they started ([`Remote::handshaking`]).
//!
//! The index keeps, per remote, the [`Keys`] it filed it under; [`Index::update`] compares
//! them with the remote as it is now and refiles it only when they differ.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

use crate::keep::Acceptance;

use super::super::remote::Remote;
use super::super::Uid;

/// A text field non-ephemeral remotes are found by.
#[derive(Debug, Clone, Copy)]
pub(super) enum Field {
    /// [`Remote::name`].
    Name,
    /// [`Remote::role`].
    Role,
}

/// What the index files one remote under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Keys {
    /// Its name and role, unless it is ephemeral (a vacuous join's provisional remote).
    pub(super) text: Option<(String, String)>,
    /// Whether it is ephemeral.
    pub(super) ephemeral: bool,
    /// See [`Keys::contact_of`].
    pub(super) contact: Option<Contact>,
    /// See [`Remote::handshaking`].
    pub(super) handshaking: bool,
}

/// A first contact: when it last asked, and whether it may be evicted to make room for a
/// newer one (only while its keys are not accepted).
pub(super) type Contact = (Instant, bool);

impl Keys {
    /// The keys of `remote` as it is now.
    fn of(remote: &Remote) -> Self {
        Self {
            text: (!remote.ephemeral).then(|| (remote.name.clone(), remote.role.clone())),
            ephemeral: remote.ephemeral,
            contact: Self::contact_of(remote),
            handshaking: remote.handshaking(),
        }
    }

    /// Whether `remote` is still filed right under these keys.
    fn matches(&self, remote: &Remote) -> bool {
        Self::text_of(Field::Name, remote) == self.text(Field::Name)
            && Self::text_of(Field::Role, remote) == self.text(Field::Role)
            && self.ephemeral == remote.ephemeral
            && self.contact == Self::contact_of(remote)
            && self.handshaking == remote.handshaking()
    }

    /// The `field` `remote` is found by, if any.
    pub(super) fn text_of(field: Field, remote: &Remote) -> Option<&str> {
        let text = match field {
            Field::Name => &remote.name,
            Field::Role => &remote.role,
        };
        (!remote.ephemeral).then_some(text.as_str())
    }

    /// The `field` this remote is filed under, if any.
    fn text(&self, field: Field) -> Option<&str> {
        let (name, role) = self.text.as_ref()?;
        Some(match field {
            Field::Name => name,
            Field::Role => role,
        })
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
    /// Non-ephemeral remotes by role.
    roles: BTreeMap<String, BTreeSet<Uid>>,
    /// Number of ephemeral remotes.
    ephemerals: usize,
    /// Number of first contacts.
    contacts: usize,
    /// The evictable first contacts, by when they last asked.
    evictable: BTreeSet<(Instant, Uid)>,
    /// Number of remotes in a handshake they started.
    handshakes: usize,
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
        if let Some((name, role)) = &keys.text {
            self.names.entry(name.clone()).or_default().insert(uid);
            self.roles.entry(role.clone()).or_default().insert(uid);
        }
        self.ephemerals += usize::from(keys.ephemeral);
        self.handshakes += usize::from(keys.handshaking);
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
        if let Some((name, role)) = keys.text {
            unfile(&mut self.names, name, uid);
            unfile(&mut self.roles, role, uid);
        }
        self.ephemerals -= usize::from(keys.ephemeral);
        self.handshakes -= usize::from(keys.handshaking);
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

    /// The non-ephemeral remotes whose `field` is `text`, in uid order.
    pub(super) fn filed<'a>(&'a self, field: Field, text: &str) -> impl Iterator<Item = Uid> + 'a {
        let by = match field {
            Field::Name => &self.names,
            Field::Role => &self.roles,
        };
        by.get(text).into_iter().flatten().copied()
    }

    /// Number of ephemeral remotes.
    pub(super) fn ephemerals(&self) -> usize {
        self.ephemerals
    }

    /// Number of first contacts.
    pub(super) fn contacts(&self) -> usize {
        self.contacts
    }

    /// Number of remotes in a handshake they started.
    pub(super) fn handshakes(&self) -> usize {
        self.handshakes
    }

    /// The evictable first contacts, least recently asked first (equal times in uid order).
    pub(super) fn evictable(&self) -> impl Iterator<Item = (Instant, Uid)> + '_ {
        self.evictable.iter().copied()
    }
}

/// Takes `uid` out of `by`'s set for `text` (and the set out when it empties).
fn unfile(by: &mut BTreeMap<String, BTreeSet<Uid>>, text: String, uid: Uid) {
    if let Some(uids) = by.get_mut(&text) {
        uids.remove(&uid);
        if uids.is_empty() {
            by.remove(&text);
        }
    }
}
