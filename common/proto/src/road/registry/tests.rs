//! Tests of the registry's lookups: after any sequence of inserts, removals and changes made
//! through [`Registry::get_mut`], they answer as a scan of every remote would.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;
use crate::keep::Acceptance;

/// Names and roles the remotes take (few, so that they collide).
const NAMES: [&str; 4] = ["alpha", "beta", "gamma", "delta"];
/// Uids the remotes take.
const UIDS: u32 = 12;

/// A change to one remote's indexed fields.
#[derive(Debug, Clone)]
enum Change {
    Rename(usize),
    Role(usize),
    Ephemeral(bool),
    FirstContact(Option<u8>),
    Acceptance(Option<bool>),
}

/// One step.
#[derive(Debug, Clone)]
enum Op {
    /// Insert (or replace) a remote.
    Insert(Uid, usize, bool, Option<u8>),
    /// Remove a remote.
    Remove(Uid),
    /// Change a remote through `get_mut`.
    Change(Uid, Change),
    /// Refile and compare the whole index with one built from scratch.
    Check,
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        (0..NAMES.len()).prop_map(Change::Rename),
        (0..NAMES.len()).prop_map(Change::Role),
        any::<bool>().prop_map(Change::Ephemeral),
        proptest::option::of(0u8..8).prop_map(Change::FirstContact),
        proptest::option::of(any::<bool>()).prop_map(Change::Acceptance),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let uid = 1..=UIDS;
    prop_oneof![
        3 => (
            uid.clone(),
            0..NAMES.len(),
            any::<bool>(),
            proptest::option::of(0u8..8)
        )
            .prop_map(|(uid, name, ephemeral, asked)| Op::Insert(uid, name, ephemeral, asked)),
        1 => uid.clone().prop_map(Op::Remove),
        5 => (uid, change()).prop_map(|(uid, change)| Op::Change(uid, change)),
        1 => Just(Op::Check),
    ]
}

/// Applies one change to `remote`.
fn apply(remote: &mut Remote, change: Change, base: Instant) {
    let at = |secs: u8| base + Duration::from_secs(u64::from(secs));
    match change {
        Change::Rename(name) => NAMES[name].clone_into(&mut remote.name),
        Change::Role(role) => NAMES[role].clone_into(&mut remote.role),
        Change::Ephemeral(ephemeral) => remote.ephemeral = ephemeral,
        Change::FirstContact(asked) => remote.first_contact = asked.map(at),
        Change::Acceptance(accepted) => {
            remote.acceptance = accepted.map(|yes| {
                if yes {
                    Acceptance::Accepted
                } else {
                    Acceptance::Pending
                }
            });
        }
    }
}

/// Every lookup compared with a scan of every remote.
fn agrees_with_a_scan(registry: &Registry) -> Result<(), TestCaseError> {
    for name in NAMES {
        let scan = registry
            .values()
            .find(|r| !r.ephemeral && r.name == name)
            .map(|r| r.uid);
        prop_assert_eq!(registry.uid_by_name(name), scan);
        for uid in 1..=UIDS {
            let scan = registry
                .values()
                .any(|r| !r.ephemeral && r.uid != uid && r.name == name);
            prop_assert_eq!(registry.name_taken(name, uid), scan);
        }
        let scan: Vec<Uid> = registry
            .values()
            .filter(|r| !r.ephemeral && r.role == name)
            .map(|r| r.uid)
            .collect();
        prop_assert_eq!(registry.with_role(name), scan);
    }
    let ephemerals = registry.values().filter(|r| r.ephemeral).count();
    prop_assert_eq!(registry.ephemerals(), ephemerals);
    let contacts = || registry.values().filter(|r| r.first_contact.is_some());
    prop_assert_eq!(registry.first_contacts(), contacts().count());
    let oldest = contacts()
        .filter(|r| r.acceptance != Some(Acceptance::Accepted))
        .filter_map(|r| r.first_contact.map(|asked| (asked, r.uid)))
        .min()
        .map(|(_, uid)| uid);
    prop_assert_eq!(registry.oldest_evictable(), oldest);
    Ok(())
}

proptest! {
    #[test]
    fn lookups_agree_with_a_scan(ops in proptest::collection::vec(op(), 0..120)) {
        let base = Instant::now();
        let ha: SocketAddr = "127.0.0.1:7530".parse().expect("address");
        let mut registry = Registry::default();
        for op in ops {
            match op {
                Op::Insert(uid, name, ephemeral, asked) => {
                    let mut remote = Remote::new(uid, 0, NAMES[name].to_owned(), ha, base, base);
                    remote.ephemeral = ephemeral;
                    apply(&mut remote, Change::FirstContact(asked), base);
                    registry.insert(uid, remote);
                }
                Op::Remove(uid) => {
                    registry.remove(&uid);
                }
                Op::Change(uid, change) => {
                    if let Some(remote) = registry.get_mut(&uid) {
                        apply(remote, change, base);
                    }
                }
                Op::Check => registry.check_index(),
            }
            agrees_with_a_scan(&registry)?;
        }
        registry.check_index();
    }
}

#[test]
fn a_remote_changed_twice_in_a_row_is_refiled() {
    let base = Instant::now();
    let ha: SocketAddr = "127.0.0.1:7530".parse().expect("address");
    let mut registry = Registry::default();
    registry.insert(1, Remote::new(1, 0, "alpha".to_owned(), ha, base, base));
    registry.insert(2, Remote::new(2, 0, "beta".to_owned(), ha, base, base));
    if let Some(remote) = registry.get_mut(&1) {
        "gamma".clone_into(&mut remote.name);
    }
    // Still lent: the lookups correct for it.
    assert_eq!(registry.uid_by_name("alpha"), None);
    assert_eq!(registry.uid_by_name("gamma"), Some(1));
    if let Some(remote) = registry.get_mut(&2) {
        remote.ephemeral = true;
    }
    assert_eq!(registry.uid_by_name("gamma"), Some(1));
    assert_eq!(registry.uid_by_name("beta"), None);
    assert_eq!(registry.ephemerals(), 1);
    registry.check_index();
}
