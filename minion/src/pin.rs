//! Salt's `master_finger` on the road: a master's key is taken only when its fingerprint,
//! what `salt-raet-master --finger` prints on the master, is the configured one.
//!
//! With a pin the minion's road decides on masters' keys itself (auto mode `never`): a
//! join offering keys the keep has not accepted is pending until the daemon answers it from
//! [`MasterPin::check`]. Keys accepted before the pin was set are checked at start-up
//! ([`MasterPin::forget_others`]), so that a key trusted on first use is not kept against it.

use raet::keep::{Keep, KeepError};
use salt_raet::identity::offered_fingerprint;

/// The configured `master_finger` (lowercase hex pairs joined by `:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MasterPin(String);

impl MasterPin {
    pub(crate) fn new(finger: &str) -> Self {
        Self(finger.to_owned())
    }

    /// Whether a master offering these keys is the pinned one; else why not, for the log.
    pub(crate) fn check(&self, verhex: &str, pubhex: &str) -> Result<(), String> {
        match offered_fingerprint(verhex, pubhex) {
            Ok(finger) if finger == self.0 => Ok(()),
            Ok(finger) => Err(format!(
                "its key's fingerprint {finger} is not master_finger {}",
                self.0
            )),
            Err(e) => Err(format!("its keys are unusable: {e}")),
        }
    }

    /// Removes from `keep` the role records of keys that are not the pinned master's (the
    /// next join offering them is decided by [`MasterPin::check`]); returns their roles.
    pub(crate) fn forget_others(&self, keep: &mut dyn Keep) -> Result<Vec<String>, KeepError> {
        let mut forgotten = Vec::new();
        for record in keep.load_roles()? {
            if self.check(&record.verhex, &record.pubhex).is_err() {
                keep.remove_role(&record.role)?;
                forgotten.push(record.role);
            }
        }
        Ok(forgotten)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use raet::keep::{Acceptance, MemKeep, RoleRecord};
    use salt_raet::identity::Identity;

    #[test]
    fn only_the_pinned_masters_keys_pass() {
        let master = Identity::generate(&mut rand_core::OsRng);
        let other = Identity::generate(&mut rand_core::OsRng);
        let pin = MasterPin::new(&master.fingerprint());
        let (verhex, pubhex) = master.offered_hexes();
        assert_eq!(pin.check(&verhex, &pubhex), Ok(()));
        let (other_ver, other_pub) = other.offered_hexes();
        let why = pin.check(&other_ver, &other_pub).unwrap_err();
        assert!(
            why.contains(&other.fingerprint()) && why.contains(&master.fingerprint()),
            "{why}"
        );
        // The pinned verify key with another Curve25519 key: not the master's identity.
        let why = pin.check(&verhex, &other_pub).unwrap_err();
        assert!(why.starts_with("its keys are unusable"), "{why}");
    }

    #[test]
    fn keys_accepted_before_the_pin_are_forgotten_unless_pinned() {
        let master = Identity::generate(&mut rand_core::OsRng);
        let other = Identity::generate(&mut rand_core::OsRng);
        let mut keep = MemKeep::new();
        for (role, identity) in [("pinned", &master), ("first_use", &other)] {
            let (verhex, pubhex) = identity.offered_hexes();
            let record = RoleRecord {
                role: role.to_owned(),
                acceptance: Acceptance::Accepted,
                verhex,
                pubhex,
            };
            keep.save_role(&record).unwrap();
        }
        let pin = MasterPin::new(&master.fingerprint());
        assert_eq!(pin.forget_others(&mut keep).unwrap(), ["first_use"]);
        let left: Vec<String> = keep
            .load_roles()
            .unwrap()
            .into_iter()
            .map(|r| r.role)
            .collect();
        assert_eq!(left, ["pinned"]);
    }
}
