//! What a road is built from and what it asks its driver to persist: the [`Snapshot`] (the
//! keep's content, loaded once by the driver before it builds the road) and the
//! [`PersistOp`]s the road hands out through `Road::poll_persist`, in order.
//!
//! The road never calls a [`Keep`]: the driver loads the snapshot, applies every op in the
//! order the road emitted it ([`PersistOp::apply`]) wherever it likes (the simulator at once
//! with [`apply_now`], `RoadStack` on a writer thread) and answers [`PersistOp::LoadRole`]
//! with `Road::role_loaded`.

use std::time::Instant;

use super::{Keep, KeepError, LocalRecord, RemoteRecord, RoleRecord};
use crate::road::Road;

/// The content of a keep a road is restored from (empty: a fresh estate).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Our estate and keys, `None` in a fresh keep.
    pub local: Option<LocalRecord>,
    /// Every remote estate (ordered by uid then name, as [`Keep::load_remotes`]).
    pub remotes: Vec<RemoteRecord>,
    /// Every remote role record (ordered by role).
    pub roles: Vec<RoleRecord>,
}

impl Snapshot {
    /// Reads everything `keep` holds.
    pub fn load(keep: &dyn Keep) -> Result<Self, KeepError> {
        Ok(Self {
            local: keep.load_local()?,
            remotes: keep.load_remotes()?,
            roles: keep.load_roles()?,
        })
    }
}

/// One thing the road wants done to its keep, in the order emitted (a later op may depend on
/// an earlier one: a [`PersistOp::LoadRole`] must see every write emitted before it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PersistOp {
    /// Persist our estate and keys.
    SaveLocal(LocalRecord),
    /// Persist one remote estate (keyed by its name).
    SaveRemote(RemoteRecord),
    /// Forget the remote estate called `name`.
    RemoveRemote {
        /// Its name.
        name: String,
    },
    /// Persist one remote role record (keyed by its role).
    SaveRole(RoleRecord),
    /// Forget the record of `role`.
    RemoveRole {
        /// The role.
        role: String,
    },
    /// Not a write: read the keep's record of `role` (which an operator may have edited: the
    /// reference re-reads its keep for key decisions) and hand it to `Road::role_loaded`. A
    /// failed read is counted and answered as no record, as the reference reads it.
    LoadRole {
        /// The role.
        role: String,
    },
}

impl PersistOp {
    /// Applies the op to `keep`; [`PersistOp::LoadRole`] returns the record read (the
    /// writes return `None`).
    pub fn apply(&self, keep: &mut dyn Keep) -> Result<Option<RoleRecord>, KeepError> {
        match self {
            Self::SaveLocal(local) => keep.save_local(local),
            Self::SaveRemote(remote) => keep.save_remote(remote),
            Self::RemoveRemote { name } => keep.remove_remote(name),
            Self::SaveRole(role) => keep.save_role(role),
            Self::RemoveRole { role } => keep.remove_role(role),
            Self::LoadRole { role } => return keep.load_role(role),
        }
        .map(|()| None)
    }

    /// A short name of the op for logs (`save_local`, `load_role`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::SaveLocal(_) => "save_local",
            Self::SaveRemote(_) => "save_remote",
            Self::RemoveRemote { .. } => "remove_remote",
            Self::SaveRole(_) => "save_role",
            Self::RemoveRole { .. } => "remove_role",
            Self::LoadRole { .. } => "load_role",
        }
    }
}

/// The ops of `ops` (in emission order) whose effect a later op of `ops` replaces: a
/// [`PersistOp::SaveLocal`] followed by another one (it is the whole estate), a
/// [`PersistOp::SaveRemote`] followed by a save or removal of the same remote. The rest keep
/// their order, so the keep ends as if every op had been applied. Role ops are kept: a
/// [`PersistOp::LoadRole`] must see every role write before it. A writer that fell behind
/// (a join storm emits a local and a remote save per join, each synced) applies a backlog
/// at the cost of its distinct records.
pub fn coalesce(ops: Vec<PersistOp>) -> Vec<PersistOp> {
    let mut local_later = false;
    let mut remotes_later = std::collections::HashSet::new();
    let mut kept: Vec<PersistOp> = ops
        .into_iter()
        .rev()
        .filter(|op| match op {
            PersistOp::SaveLocal(_) => !std::mem::replace(&mut local_later, true),
            PersistOp::SaveRemote(remote) => remotes_later.insert(remote.name.clone()),
            PersistOp::RemoveRemote { name } => {
                remotes_later.insert(name.clone());
                true
            }
            _ => true,
        })
        .collect();
    kept.reverse();
    kept
}

/// The synchronous persistence driver (the simulator, tests): applies every op `road` has
/// queued to `keep` at once, in order, and answers its role reads at `now`. A failure is
/// logged and counted; the count is returned.
pub fn apply_now(road: &mut Road, keep: &mut dyn Keep, now: Instant) -> u64 {
    let mut failures = 0;
    while let Some(op) = road.poll_persist() {
        let read = op.apply(keep).unwrap_or_else(|e| {
            tracing::warn!(road = %road.name(), op = op.kind(), error = %e, "keep failed");
            failures += 1;
            None
        });
        if let PersistOp::LoadRole { role } = &op {
            road.role_loaded(now, role, read);
        }
    }
    failures
}
