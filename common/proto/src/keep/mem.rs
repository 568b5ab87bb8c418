//! In-memory keep, for tests and ephemeral stacks.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::{check_name, sort_remotes, Keep, KeepError, LocalRecord, RemoteRecord, RoleRecord};

#[derive(Debug, Default)]
struct Store {
    local: Option<LocalRecord>,
    remotes: BTreeMap<String, RemoteRecord>,
    roles: BTreeMap<String, RoleRecord>,
}

/// An in-memory [`Keep`]. Clones share the same storage, so a test can drop a road and build
/// a new one on a clone of the same keep (a "restart"). It validates records exactly as
/// [`DirKeep`](super::DirKeep) does.
#[derive(Debug, Clone, Default)]
pub struct MemKeep {
    store: Arc<Mutex<Store>>,
}

impl MemKeep {
    /// An empty keep.
    pub fn new() -> Self {
        Self::default()
    }

    fn store(&self) -> MutexGuard<'_, Store> {
        // A panic elsewhere while holding the lock leaves consistent data (every operation
        // is a single insert/remove), so a poisoned lock is still usable.
        self.store
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Keep for MemKeep {
    fn load_local(&self) -> Result<Option<LocalRecord>, KeepError> {
        Ok(self.store().local.clone())
    }

    fn save_local(&mut self, local: &LocalRecord) -> Result<(), KeepError> {
        local.validate()?;
        self.store().local = Some(local.clone());
        Ok(())
    }

    fn load_remotes(&self) -> Result<Vec<RemoteRecord>, KeepError> {
        let mut remotes: Vec<RemoteRecord> = self.store().remotes.values().cloned().collect();
        sort_remotes(&mut remotes);
        Ok(remotes)
    }

    fn save_remote(&mut self, remote: &RemoteRecord) -> Result<(), KeepError> {
        remote.validate()?;
        self.store()
            .remotes
            .insert(remote.name.clone(), remote.clone());
        Ok(())
    }

    fn remove_remote(&mut self, name: &str) -> Result<(), KeepError> {
        check_name("name", name)?;
        self.store().remotes.remove(name);
        Ok(())
    }

    fn load_role(&self, role: &str) -> Result<Option<RoleRecord>, KeepError> {
        check_name("role", role)?;
        Ok(self.store().roles.get(role).cloned())
    }

    fn save_role(&mut self, role: &RoleRecord) -> Result<(), KeepError> {
        role.validate()?;
        self.store().roles.insert(role.role.clone(), role.clone());
        Ok(())
    }

    fn remove_role(&mut self, role: &str) -> Result<(), KeepError> {
        check_name("role", role)?;
        self.store().roles.remove(role);
        Ok(())
    }

    fn load_roles(&self) -> Result<Vec<RoleRecord>, KeepError> {
        Ok(self.store().roles.values().cloned().collect())
    }
}
