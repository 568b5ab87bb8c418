//! Sample records and a backend-independent test suite shared by the keep's tests.

use std::net::SocketAddr;

use zeroize::Zeroizing;

use super::{Acceptance, Keep, KeepError, LocalRecord, RemoteRecord, RoleRecord};

/// A 32-byte key in hex made of `byte` repeated.
pub fn key_hex(byte: u8) -> String {
    hex::encode([byte; 32])
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A local record whose secrets are distinctive byte patterns.
pub fn local(name: &str) -> LocalRecord {
    LocalRecord {
        name: name.to_owned(),
        uid: 1,
        ha: addr(7531),
        sid: 5,
        puid: 3,
        role: format!("{name}-role"),
        main: true,
        kind: 7,
        sign_seed: Zeroizing::new([0xa7; 32]),
        private_key: Zeroizing::new([0x5c; 32]),
    }
}

/// A remote record for `name` with our uid `uid`.
pub fn remote(name: &str, uid: u32) -> RemoteRecord {
    RemoteRecord {
        name: name.to_owned(),
        uid,
        fuid: uid + 100,
        ha: SocketAddr::from(([10, 0, 0, 2], 4000 + u16::try_from(uid).unwrap_or(0))),
        sid: 0xffff_fff0,
        main: false,
        kind: 2,
        joined: Some(true),
        role: name.to_owned(),
        fast: false,
    }
}

/// A role record with keys derived from `byte`.
pub fn role(name: &str, acceptance: Acceptance, byte: u8) -> RoleRecord {
    RoleRecord {
        role: name.to_owned(),
        acceptance,
        verhex: key_hex(byte),
        pubhex: key_hex(byte.wrapping_add(1)),
    }
}

/// Saves, overwrites and removes every record type on `keep`, checking each step through
/// `keep` and through a fresh handle from `reopen` (persistence across a restart).
pub fn round_trip_suite<K: Keep>(keep: &mut K, reopen: impl Fn() -> K) -> Result<(), KeepError> {
    // A fresh keep is empty, not an error.
    assert_eq!(keep.load_local()?, None);
    assert!(keep.load_remotes()?.is_empty());
    assert!(keep.load_roles()?.is_empty());
    assert_eq!(keep.load_role("beta")?, None);

    let mut me = local("alpha");
    keep.save_local(&me)?;
    assert_eq!(keep.load_local()?.as_ref(), Some(&me));
    me.puid = 9;
    me.sid = u32::MAX;
    me.ha = "[::1]:7000".parse().map_err(|_| KeepError::InvalidRecord {
        reason: "test address".into(),
    })?;
    keep.save_local(&me)?;
    assert_eq!(reopen().load_local()?.as_ref(), Some(&me));

    // Inserted out of order: loaded by uid.
    let gamma = remote("gamma.example.com", 3);
    let mut beta = remote("beta", 2);
    beta.joined = None;
    keep.save_remote(&gamma)?;
    keep.save_remote(&beta)?;
    assert_eq!(keep.load_remotes()?, vec![beta.clone(), gamma.clone()]);
    beta.joined = Some(false);
    beta.ha = SocketAddr::from(([192, 168, 1, 9], 1));
    keep.save_remote(&beta)?;
    assert_eq!(reopen().load_remotes()?, vec![beta.clone(), gamma.clone()]);

    let rb = role("beta", Acceptance::Pending, 1);
    let rg = role("gamma.example.com", Acceptance::Rejected, 7);
    keep.save_role(&rg)?;
    keep.save_role(&rb)?;
    let accepted = RoleRecord {
        acceptance: Acceptance::Accepted,
        ..rb.clone()
    };
    keep.save_role(&accepted)?;
    assert_eq!(keep.load_role("beta")?.as_ref(), Some(&accepted));
    assert_eq!(reopen().load_roles()?, vec![accepted.clone(), rg.clone()]);

    // Removal is idempotent and leaves the rest alone.
    keep.remove_remote("beta")?;
    keep.remove_remote("beta")?;
    keep.remove_remote("never-existed")?;
    keep.remove_role("gamma.example.com")?;
    keep.remove_role("gamma.example.com")?;
    let fresh = reopen();
    assert_eq!(fresh.load_remotes()?, vec![gamma]);
    assert_eq!(fresh.load_roles()?, vec![accepted]);
    assert_eq!(fresh.load_role("gamma.example.com")?, None);
    assert_eq!(fresh.load_local()?.as_ref(), Some(&me));
    Ok(())
}

/// Names that must be refused by every backend.
pub const UNSAFE_NAMES: &[&str] = &[
    "", "..", "a/b", "/etc", "a\\b", "x..y", "../up", "nul\0", "sp ace", "tab\t", "line\n",
];

/// Every backend refuses unsafe names in every operation taking one.
pub fn unsafe_names_suite<K: Keep>(keep: &mut K) {
    for &bad in UNSAFE_NAMES {
        let is_unsafe = |r: Result<(), KeepError>| matches!(r, Err(KeepError::UnsafeName { .. }));
        let mut r = remote("ok", 1);
        r.name = bad.to_owned();
        assert!(is_unsafe(keep.save_remote(&r)), "remote name {bad:?}");
        let mut r = remote("ok", 1);
        r.role = bad.to_owned();
        assert!(is_unsafe(keep.save_remote(&r)), "remote role {bad:?}");
        let mut l = local("ok");
        l.name = bad.to_owned();
        assert!(is_unsafe(keep.save_local(&l)), "local name {bad:?}");
        let mut l = local("ok");
        l.role = bad.to_owned();
        assert!(is_unsafe(keep.save_local(&l)), "local role {bad:?}");
        assert!(
            is_unsafe(keep.save_role(&role(bad, Acceptance::Accepted, 1))),
            "role {bad:?}"
        );
        assert!(is_unsafe(keep.remove_remote(bad)), "remove remote {bad:?}");
        assert!(is_unsafe(keep.remove_role(bad)), "remove role {bad:?}");
        assert!(
            matches!(keep.load_role(bad), Err(KeepError::UnsafeName { .. })),
            "load role {bad:?}"
        );
    }
    // Nothing was stored by the refused calls.
    assert!(matches!(keep.load_local(), Ok(None)));
    assert!(keep.load_remotes().is_ok_and(|r| r.is_empty()));
    assert!(keep.load_roles().is_ok_and(|r| r.is_empty()));
}

/// Role records with keys that are not 32 bytes of hex are refused.
pub fn bad_keys_suite<K: Keep>(keep: &mut K) {
    let bad_keys = [
        "",
        "zz",
        &key_hex(1)[..62],
        &format!("{}00", key_hex(1)),
        &"g".repeat(64),
    ];
    for bad in bad_keys {
        let mut r = role("r", Acceptance::Accepted, 1);
        r.verhex = bad.to_owned();
        assert!(
            matches!(keep.save_role(&r), Err(KeepError::InvalidRecord { .. })),
            "{bad:?}"
        );
        let mut r = role("r", Acceptance::Accepted, 1);
        r.pubhex = bad.to_owned();
        assert!(
            matches!(keep.save_role(&r), Err(KeepError::InvalidRecord { .. })),
            "{bad:?}"
        );
    }
    assert!(keep.load_roles().is_ok_and(|r| r.is_empty()));
}
