//! Tests of the decision table, the record types and the in-memory keep.

use proptest::prelude::*;

use super::testutil::{self, key_hex};
use super::*;

#[derive(Debug, Clone, Copy)]
enum Offer {
    Same,
    NewVerhex,
    NewPubhex,
}

/// Every cell of spec §11.2: mode × stored status × offered keys → (status, save).
#[test]
fn status_role_table() {
    use Acceptance::{Accepted as A, Pending as P, Rejected as R};
    use AutoMode::{Always, Never, Once};
    use Offer::{NewPubhex, NewVerhex, Same};
    #[rustfmt::skip]
    let table: &[(AutoMode, Option<Acceptance>, Offer, Acceptance, bool)] = &[
        (Always, None,    Same,      A, true),
        (Always, None,    NewVerhex, A, true),
        (Always, None,    NewPubhex, A, true),
        (Always, Some(A), Same,      A, false),
        (Always, Some(A), NewVerhex, A, true),
        (Always, Some(A), NewPubhex, A, true),
        (Always, Some(P), Same,      A, true),
        (Always, Some(P), NewVerhex, A, true),
        (Always, Some(P), NewPubhex, A, true),
        (Always, Some(R), Same,      A, true),
        (Always, Some(R), NewVerhex, A, true),
        (Always, Some(R), NewPubhex, A, true),
        (Once,   None,    Same,      A, true),
        (Once,   None,    NewVerhex, A, true),
        (Once,   None,    NewPubhex, A, true),
        (Once,   Some(A), Same,      A, false),
        (Once,   Some(A), NewVerhex, R, false),
        (Once,   Some(A), NewPubhex, R, false),
        (Once,   Some(P), Same,      A, true),
        (Once,   Some(P), NewVerhex, R, false),
        (Once,   Some(P), NewPubhex, R, false),
        (Once,   Some(R), Same,      R, false),
        (Once,   Some(R), NewVerhex, R, false),
        (Once,   Some(R), NewPubhex, R, false),
        (Never,  None,    Same,      P, true),
        (Never,  None,    NewVerhex, P, true),
        (Never,  None,    NewPubhex, P, true),
        (Never,  Some(A), Same,      A, false),
        (Never,  Some(A), NewVerhex, R, false),
        (Never,  Some(A), NewPubhex, R, false),
        (Never,  Some(P), Same,      P, false),
        (Never,  Some(P), NewVerhex, R, false),
        (Never,  Some(P), NewPubhex, R, false),
        (Never,  Some(R), Same,      R, false),
        (Never,  Some(R), NewVerhex, R, false),
        (Never,  Some(R), NewPubhex, R, false),
    ];
    assert_eq!(table.len(), 3 * 4 * 3);
    for &(auto, stored, offer, acceptance, save) in table {
        let stored = stored.map(|a| testutil::role("minion", a, 0x10));
        let base = testutil::role("minion", Acceptance::Pending, 0x10);
        let (verhex, pubhex) = match offer {
            Same => (base.verhex.clone(), base.pubhex.clone()),
            NewVerhex => (key_hex(0x99), base.pubhex.clone()),
            NewPubhex => (base.verhex.clone(), key_hex(0x99)),
        };
        let got = status_role(auto, stored.as_ref(), &verhex, &pubhex);
        let cell = format!(
            "{auto} / {:?} / {offer:?}",
            stored.as_ref().map(|r| r.acceptance)
        );
        assert_eq!(got, RoleStatus { acceptance, save }, "{cell}");

        // The record to save carries the offered keys and the new status.
        let to_save = got.record_to_save("minion", &verhex, &pubhex);
        assert_eq!(to_save.is_some(), save, "{cell}");
        if let Some(rec) = to_save {
            assert_eq!(
                (rec.acceptance, &rec.verhex, &rec.pubhex),
                (acceptance, &verhex, &pubhex)
            );
            assert_eq!(rec.role, "minion");
        }
    }
}

/// The decision applied through a keep: auto once pins the first keys across a restart.
#[test]
fn once_pins_first_keys_through_a_keep() -> Result<(), KeepError> {
    let mut keep = MemKeep::new();
    let first = testutil::role("minion", Acceptance::Accepted, 1);
    let decide = |keep: &MemKeep, verhex: &str, pubhex: &str| -> Result<RoleStatus, KeepError> {
        let stored = keep.load_role("minion")?;
        Ok(status_role(AutoMode::Once, stored.as_ref(), verhex, pubhex))
    };
    let status = decide(&keep, &first.verhex, &first.pubhex)?;
    assert_eq!(status.acceptance, Acceptance::Accepted);
    if let Some(rec) = status.record_to_save("minion", &first.verhex, &first.pubhex) {
        keep.save_role(&rec)?;
    }
    let restarted = keep.clone();
    let changed = decide(&restarted, &key_hex(3), &first.pubhex)?;
    assert_eq!(
        changed,
        RoleStatus {
            acceptance: Acceptance::Rejected,
            save: false
        }
    );
    assert_eq!(restarted.load_role("minion")?, Some(first.clone()));
    assert_eq!(
        decide(&restarted, &first.verhex, &first.pubhex)?.acceptance,
        Acceptance::Accepted
    );
    Ok(())
}

#[test]
fn auto_mode_parse_and_display() {
    for (text, mode) in [
        ("never", AutoMode::Never),
        ("once", AutoMode::Once),
        ("always", AutoMode::Always),
        ("ALWAYS", AutoMode::Always),
        ("0", AutoMode::Never),
        ("1", AutoMode::Once),
        ("2", AutoMode::Always),
    ] {
        assert_eq!(text.parse::<AutoMode>(), Ok(mode), "{text}");
    }
    for mode in [AutoMode::Never, AutoMode::Once, AutoMode::Always] {
        assert_eq!(mode.to_string().parse::<AutoMode>(), Ok(mode));
    }
    assert_eq!(AutoMode::Once.to_string(), "once");
    assert_eq!(AutoMode::default(), AutoMode::Never);
    for bad in ["", "3", "sometimes", " once", "-1"] {
        assert_eq!(
            bad.parse::<AutoMode>(),
            Err(ParseAutoModeError(bad.to_owned()))
        );
    }
}

#[test]
fn acceptance_values_are_the_reference_ones() {
    for (n, a) in [
        (0, Acceptance::Pending),
        (1, Acceptance::Accepted),
        (2, Acceptance::Rejected),
    ] {
        assert_eq!(Acceptance::try_from(n), Ok(a));
        assert_eq!(u64::from(a as u8), n);
    }
    assert_eq!(Acceptance::try_from(3), Err(3));
    assert_eq!(Acceptance::Rejected.to_string(), "rejected");
}

#[test]
fn local_record_debug_hides_secrets() {
    let rec = testutil::local("alpha");
    let shown = format!("{rec:?} {rec:#?}");
    for secret in [&rec.sign_seed, &rec.private_key] {
        let hex_secret = hex::encode(&secret[..]);
        assert!(!shown.contains(&hex_secret), "{shown}");
        assert!(!shown.contains(&hex_secret.to_uppercase()), "{shown}");
        // Nor as a decimal byte list, as a derived Debug would print it.
        assert!(
            !shown.contains(&format!("{}, {}", secret[0], secret[1])),
            "{shown}"
        );
    }
    assert!(
        shown.contains("alpha") && shown.contains("<redacted>"),
        "{shown}"
    );
}

#[test]
fn check_name_accepts_ordinary_names() {
    for ok in [
        "alpha",
        "minion.example.com",
        "a.b",
        "salt-master_1",
        "x",
        &"n".repeat(MAX_NAME_LEN),
    ] {
        assert!(check_name("name", ok).is_ok(), "{ok}");
    }
    assert!(check_name("name", &"n".repeat(MAX_NAME_LEN + 1)).is_err());
    let err = check_name("role", "../etc")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("role") && err.contains("../etc") && err.contains(".."),
        "{err}"
    );
}

#[test]
fn mem_keep_round_trips_and_survives_restart() -> Result<(), KeepError> {
    let mut keep = MemKeep::new();
    let shared = keep.clone();
    testutil::round_trip_suite(&mut keep, || shared.clone())
}

#[test]
fn mem_keep_refuses_unsafe_names() {
    testutil::unsafe_names_suite(&mut MemKeep::new());
}

#[test]
fn mem_keep_refuses_bad_keys() {
    testutil::bad_keys_suite(&mut MemKeep::new());
}

#[test]
fn mem_keep_clones_share_storage_but_new_keeps_do_not() -> Result<(), KeepError> {
    let mut a = MemKeep::new();
    let b = a.clone();
    a.save_remote(&testutil::remote("beta", 2))?;
    assert_eq!(b.load_remotes()?.len(), 1);
    assert!(MemKeep::new().load_remotes()?.is_empty());
    Ok(())
}

fn any_auto() -> impl Strategy<Value = AutoMode> {
    prop_oneof![
        Just(AutoMode::Never),
        Just(AutoMode::Once),
        Just(AutoMode::Always)
    ]
}

fn any_acceptance() -> impl Strategy<Value = Acceptance> {
    prop_oneof![
        Just(Acceptance::Pending),
        Just(Acceptance::Accepted),
        Just(Acceptance::Rejected)
    ]
}

proptest! {
    /// Applying a decision is idempotent: once its record is saved, offering the same keys
    /// again gives the same status and nothing more to save; a rejection is never saved.
    #[test]
    fn status_role_is_idempotent(
        auto in any_auto(),
        stored in proptest::option::of((any_acceptance(), 0u8..3, 0u8..3)),
        (ver, publ) in (0u8..3, 0u8..3),
    ) {
        let stored = stored.map(|(acceptance, v, p)| RoleRecord {
            role: "r".into(), acceptance, verhex: key_hex(v), pubhex: key_hex(p),
        });
        let (verhex, pubhex) = (key_hex(ver), key_hex(publ));
        let first = status_role(auto, stored.as_ref(), &verhex, &pubhex);
        prop_assert!(!(first.save && first.acceptance == Acceptance::Rejected));
        let after = first.record_to_save("r", &verhex, &pubhex).or(stored);
        let second = status_role(auto, after.as_ref(), &verhex, &pubhex);
        prop_assert_eq!(second.acceptance, first.acceptance);
        prop_assert!(!second.save);
    }
}

/// A join storm's backlog: a remote and a local save per join, a remote saved twice.
#[test]
fn coalesce_keeps_the_last_local_and_the_last_op_of_each_remote() {
    let (a, b) = (testutil::remote("a", 2), testutil::remote("b", 3));
    let mut later = testutil::local("main");
    later.puid = 9;
    let ops = vec![
        PersistOp::SaveRemote(a.clone()),
        PersistOp::SaveLocal(testutil::local("main")),
        PersistOp::SaveRemote(b.clone()),
        PersistOp::LoadRole { role: "b".into() },
        PersistOp::SaveLocal(later.clone()),
        PersistOp::SaveRemote(a.clone()),
        PersistOp::RemoveRemote { name: "b".into() },
    ];
    assert_eq!(
        coalesce(ops),
        vec![
            PersistOp::LoadRole { role: "b".into() },
            PersistOp::SaveLocal(later),
            PersistOp::SaveRemote(a),
            PersistOp::RemoveRemote { name: "b".into() },
        ]
    );
}

/// One of a few ops on the local record and remotes `a`, `b`, `c`.
fn persist_op() -> impl Strategy<Value = PersistOp> {
    let name = prop::sample::select(vec!["a", "b", "c"]);
    prop_oneof![
        (3u32..50).prop_map(|puid| {
            let mut local = testutil::local("main");
            local.puid = puid;
            PersistOp::SaveLocal(local)
        }),
        (name.clone(), 2u32..50)
            .prop_map(|(name, uid)| PersistOp::SaveRemote(testutil::remote(name, uid))),
        name.prop_map(|name| PersistOp::RemoveRemote { name: name.into() }),
    ]
}

proptest! {
    /// Applying the coalesced ops leaves the keep as applying all of them does.
    #[test]
    fn coalesced_ops_leave_the_same_keep(ops in prop::collection::vec(persist_op(), 0..40)) {
        let (mut all, mut fewer) = (MemKeep::default(), MemKeep::default());
        for op in &ops {
            op.apply(&mut all).expect("apply");
        }
        for op in coalesce(ops) {
            op.apply(&mut fewer).expect("apply");
        }
        prop_assert_eq!(all.load_local().expect("local"), fewer.load_local().expect("local"));
        prop_assert_eq!(all.load_remotes().expect("remotes"), fewer.load_remotes().expect("remotes"));
    }
}
