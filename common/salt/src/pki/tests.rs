//! Tests of the pki directories as salt-key manages them: key files, fingerprints, scans, changes, the watcher.

use super::*;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

use raet::crypto::Signer;

fn pem(n: u8) -> String {
    pem_from_verify_key(&Signer::generate(&mut ChaCha20Rng::from_seed([n; 32])).verify_key())
}

fn pki() -> (tempfile::TempDir, Pki) {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::open(dir.path().join("pki")).unwrap();
    (dir, pki)
}

#[test]
fn valid_id_as_salt() {
    let (_dir, pki) = pki();
    for ok in [
        "web1",
        "web-1.example.com",
        "...",
        "a..b",
        "minions",
        "UPPER_case",
        "ünï",
    ] {
        assert!(valid_id(pki.dir(), ok), "{ok}");
    }
    for bad in ["", ".", "..", "a/b", "/abs", "a\\b", "nul\0", "../x"] {
        assert!(!valid_id(pki.dir(), bad), "{bad:?}");
    }
    // An id whose path resolves outside pki_dir through a symlink is refused (realpath).
    std::os::unix::fs::symlink("/tmp", pki.dir().join("escape")).unwrap();
    assert!(!valid_id(pki.dir(), "escape"));
    // A symlink that stays in pki_dir, and a plain entry of a pki_dir reached through a
    // symlink, resolve directly in it.
    std::os::unix::fs::symlink(pki.dir().join("minions"), pki.dir().join("inside")).unwrap();
    assert!(valid_id(pki.dir(), "inside"));
    let alias = pki.dir().with_extension("alias");
    std::os::unix::fs::symlink(pki.dir(), &alias).unwrap();
    assert!(valid_id(&alias, "minions"));
    assert!(!valid_id(&alias, "escape"));
    assert!(matches!(
        pki.store("a/b", KeyState::Pending, &pem(1)),
        Err(PkiError::InvalidId(_))
    ));
}

#[test]
fn store_writes_0600_files_and_moves_between_states() {
    let (_dir, pki) = pki();
    let key = pem(1);
    pki.store("web1", KeyState::Pending, &format!("{key}\n\n"))
        .unwrap();
    let path = pki.key_path(KeyState::Pending, "web1").unwrap();
    assert_eq!(fs::read_to_string(&path).unwrap(), key);
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        pki.lookup("web1").unwrap().unwrap().state,
        KeyState::Pending
    );

    pki.store("web1", KeyState::Accepted, &key).unwrap();
    assert!(!path.exists());
    let stored = pki.lookup("web1").unwrap().unwrap();
    assert_eq!(stored.state, KeyState::Accepted);
    assert_eq!(
        stored.verify_key().unwrap(),
        verify_key_from_pem(&key).unwrap()
    );

    // A denied key sits beside the accepted one.
    pki.store("web1", KeyState::Denied, &pem(2)).unwrap();
    assert_eq!(
        pki.lookup("web1").unwrap().unwrap().state,
        KeyState::Accepted
    );
    assert_eq!(pki.denied("web1").unwrap().unwrap().text, pem(2));

    // No temporary file is left behind.
    for state in KeyState::ALL {
        for entry in fs::read_dir(pki.state_dir(state)).unwrap() {
            let name = entry.unwrap().file_name();
            assert!(!name.to_string_lossy().starts_with('.'), "{name:?}");
        }
    }
    assert!(pki.remove("web1").unwrap());
    assert!(!pki.remove("web1").unwrap());
    assert_eq!(pki.lookup("web1").unwrap(), None);
    assert_eq!(
        pki.lookup_any("web1").unwrap().unwrap().state,
        KeyState::Denied
    );
    assert!(pki.remove_denied("web1").unwrap());
}

#[test]
fn lookup_order_is_rejected_pending_accepted() {
    let (_dir, pki) = pki();
    // salt-key can leave an id in two directories (a copy by hand): fetch's order decides.
    for state in [KeyState::Accepted, KeyState::Pending, KeyState::Rejected] {
        fs::write(pki.key_path(state, "m").unwrap(), pem(1)).unwrap();
    }
    assert_eq!(pki.lookup("m").unwrap().unwrap().state, KeyState::Rejected);
    fs::remove_file(pki.key_path(KeyState::Rejected, "m").unwrap()).unwrap();
    assert_eq!(pki.lookup("m").unwrap().unwrap().state, KeyState::Pending);
}

#[test]
fn an_oversized_or_binary_key_file_is_an_error_not_a_panic() {
    let (_dir, pki) = pki();
    fs::write(
        pki.key_path(KeyState::Pending, "big").unwrap(),
        vec![b'a'; 70_000],
    )
    .unwrap();
    assert!(matches!(pki.lookup("big"), Err(PkiError::BadKey { .. })));
    fs::write(
        pki.key_path(KeyState::Pending, "bin").unwrap(),
        [0xff, 0xfe, 0x00],
    )
    .unwrap();
    assert!(matches!(pki.lookup("bin"), Err(PkiError::BadKey { .. })));
    // The scan skips them (with a warning) instead of failing.
    assert!(pki.scan().unwrap().files.is_empty());
    assert!(
        verify_key_from_pem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----").is_err()
    );
}

#[test]
fn stored_pem_loads_with_openssl() {
    let (_dir, pki) = pki();
    let key = pem(3);
    pki.store("web1", KeyState::Pending, &key).unwrap();
    let path = pki.key_path(KeyState::Pending, "web1").unwrap();
    let out = Command::new("openssl")
        .args(["pkey", "-pubin", "-noout", "-text", "-in"])
        .arg(&path)
        .output()
        .expect("openssl must be installed for this test");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("ED25519 Public-Key"), "{text}");
    // openssl's hex dump of the key equals our key bytes.
    let hex_dump: String = text
        .lines()
        .skip_while(|l| !l.starts_with("pub:"))
        .skip(1)
        .flat_map(|l| l.trim().split(':').map(str::to_owned).collect::<Vec<_>>())
        .filter(|s| !s.is_empty())
        .collect();
    assert_eq!(hex_dump, verify_key_from_pem(&key).unwrap().to_hex());
}

#[test]
fn stored_pem_loads_with_python_cryptography() {
    let (_dir, pki) = pki();
    let key = pem(4);
    pki.store("web1", KeyState::Accepted, &key).unwrap();
    let path = pki.key_path(KeyState::Accepted, "web1").unwrap();
    let probe = Command::new("python3")
        .args(["-c", "import cryptography"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        eprintln!("SKIPPED: python3 with the `cryptography` package is not available; the openssl test is the required check");
        return;
    }
    let script = "import sys\n\
from cryptography.hazmat.primitives import serialization\n\
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey\n\
k = serialization.load_pem_public_key(open(sys.argv[1], 'rb').read())\n\
assert isinstance(k, Ed25519PublicKey)\n\
print(k.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex())\n";
    let printed = crate::python::output(Path::new("python3"), script, &[path.as_ref()]);
    assert_eq!(printed, verify_key_from_pem(&key).unwrap().to_hex());
}

#[test]
fn fingerprint_is_sha256sum_of_the_file_in_pairs() {
    let (_dir, pki) = pki();
    pki.store("web1", KeyState::Pending, &pem(5)).unwrap();
    let path = pki.key_path(KeyState::Pending, "web1").unwrap();
    let out = Command::new("sha256sum").arg(&path).output().unwrap();
    let hexsum = String::from_utf8_lossy(&out.stdout);
    let hexsum = hexsum.split_whitespace().next().unwrap();
    let expected: Vec<String> = hexsum
        .as_bytes()
        .chunks(2)
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    let stored = pki.lookup("web1").unwrap().unwrap();
    assert_eq!(stored.fingerprint(), expected.join(":"));
    // Salt's own test vector: pem_finger(key="123abc").
    assert_eq!(
        fingerprint("123abc"),
        "dd:13:0a:84:9d:7b:29:e5:54:1b:05:d2:f7:f8:6a:4a:cd:4f:1e:c5:98:c1:c9:43:87:83:f5:6b:c4:f0:ff:80"
    );
}

fn scan_of(entries: &[(KeyState, &str, u8)]) -> Scan {
    Scan {
        files: entries
            .iter()
            .map(|(s, id, d)| ((*s, (*id).to_owned()), [*d; 32]))
            .collect(),
    }
}

#[test]
fn diff_reports_state_and_key_changes() {
    use KeyState::*;
    let old = scan_of(&[
        (Pending, "a", 1),
        (Accepted, "b", 2),
        (Rejected, "c", 3),
        (Accepted, "d", 4),
        (Accepted, "e", 5),
    ]);
    let new = scan_of(&[
        (Accepted, "a", 1),
        (Rejected, "c", 3),
        (Accepted, "d", 9),
        (Accepted, "e", 5),
        (Denied, "e", 6),
        (Pending, "f", 7),
    ]);
    let change = |id: &str, old, new, key_changed| KeyChange {
        id: id.to_owned(),
        old,
        new,
        key_changed,
    };
    assert_eq!(
        diff(&old, &new),
        vec![
            change("a", Some(Pending), Some(Accepted), false),
            change("b", Some(Accepted), None, false),
            change("d", Some(Accepted), Some(Accepted), true),
            change("f", None, Some(Pending), false),
        ]
    );
    assert!(diff(&new, &new).is_empty());
    // A denied-only id shows as denied; precedence as salt-key's fetch.
    let s = scan_of(&[(Denied, "x", 1), (Accepted, "y", 1), (Rejected, "y", 2)]);
    assert_eq!(s.state_of("x").map(|(st, _)| st), Some(Denied));
    assert_eq!(s.state_of("y").map(|(st, _)| st), Some(Rejected));
}

#[test]
fn scan_reads_the_directories_and_skips_temp_and_invalid_entries() {
    let (_dir, pki) = pki();
    pki.store("a", KeyState::Pending, &pem(1)).unwrap();
    pki.store("b", KeyState::Accepted, &pem(2)).unwrap();
    pki.store("b", KeyState::Denied, &pem(3)).unwrap();
    fs::write(pki.state_dir(KeyState::Accepted).join(".key_cache"), "x").unwrap();
    fs::write(pki.state_dir(KeyState::Accepted).join(".b.1.0.tmp"), "x").unwrap();
    fs::create_dir(pki.state_dir(KeyState::Accepted).join("subdir")).unwrap();
    let scan = pki.scan().unwrap();
    let keys: Vec<_> = scan.files.keys().cloned().collect();
    assert_eq!(
        keys,
        vec![
            (KeyState::Pending, "a".to_owned()),
            (KeyState::Accepted, "b".to_owned()),
            (KeyState::Denied, "b".to_owned()),
        ]
    );
}

/// An inotify wake-up reads the touched ids alone: their changes are reported and the scan
/// holds their files as a full scan would; an untouched id is not read (its change waits for
/// the periodic rescan).
#[test]
fn refresh_reads_the_touched_ids_alone() {
    let (_dir, pki) = pki();
    pki.store("a", KeyState::Pending, &pem(1)).unwrap();
    pki.store("b", KeyState::Accepted, &pem(2)).unwrap();
    let mut scan = pki.scan().unwrap();
    pki.store("a", KeyState::Accepted, &pem(1)).unwrap();
    pki.store("c", KeyState::Pending, &pem(3)).unwrap();
    pki.remove("b").unwrap();
    let touched = ["a", "c", ".a.1.0.tmp", "gone"].map(str::to_owned).into();
    let changes = pki.refresh(&mut scan, touched);
    let seen: Vec<_> = changes
        .iter()
        .map(|c| (c.id.as_str(), c.old, c.new))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("a", Some(KeyState::Pending), Some(KeyState::Accepted)),
            ("c", None, Some(KeyState::Pending)),
        ]
    );
    let full = pki.scan().unwrap();
    for id in ["a", "c"] {
        assert_eq!(scan.state_of(id), full.state_of(id), "{id}");
    }
    assert_eq!(scan.state_of("b").map(|(s, _)| s), Some(KeyState::Accepted));
    assert_eq!(full.state_of("b"), None);
}

async fn next(rx: &mut tokio::sync::mpsc::Receiver<KeyChange>) -> KeyChange {
    tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .expect("no change seen")
        .expect("watcher stopped")
}

#[tokio::test]
async fn watcher_sees_salt_key_moves_and_deletes() {
    let (_dir, pki) = pki();
    let initial = pki.scan().unwrap();
    // A long rescan interval: the changes must come from inotify (the first tick is immediate).
    let (_watcher, mut rx) =
        PkiWatcher::spawn(pki.clone(), initial, Duration::from_secs(3600)).unwrap();
    pki.store("web1", KeyState::Pending, &pem(1)).unwrap();
    let c = next(&mut rx).await;
    assert_eq!(
        (c.id.as_str(), c.old, c.new),
        ("web1", None, Some(KeyState::Pending))
    );
    // salt-key -a: the file moves to minions/.
    fs::rename(
        pki.key_path(KeyState::Pending, "web1").unwrap(),
        pki.key_path(KeyState::Accepted, "web1").unwrap(),
    )
    .unwrap();
    let c = next(&mut rx).await;
    assert_eq!(
        (c.old, c.new),
        (Some(KeyState::Pending), Some(KeyState::Accepted))
    );
    // salt-key -d.
    fs::remove_file(pki.key_path(KeyState::Accepted, "web1").unwrap()).unwrap();
    let c = next(&mut rx).await;
    assert_eq!((c.old, c.new), (Some(KeyState::Accepted), None));
}

#[tokio::test]
async fn the_periodic_rescan_finds_changes_without_inotify() {
    let (_dir, pki) = pki();
    // Start from a stale scan (as after missed events): the first rescan reports the difference.
    pki.store("late", KeyState::Rejected, &pem(1)).unwrap();
    let (_watcher, mut rx) =
        PkiWatcher::spawn(pki.clone(), Scan::default(), Duration::from_millis(50)).unwrap();
    let c = next(&mut rx).await;
    assert_eq!(
        (c.id.as_str(), c.old, c.new),
        ("late", None, Some(KeyState::Rejected))
    );
}

mod props {
    use super::*;
    use proptest::prelude::*;

    fn state() -> impl Strategy<Value = KeyState> {
        prop::sample::select(KeyState::ALL.to_vec())
    }

    fn any_scan() -> impl Strategy<Value = Scan> {
        prop::collection::btree_map((state(), "[a-d]"), 0u8..3, 0..8).prop_map(|m| Scan {
            files: m.into_iter().map(|(k, d)| (k, [d; 32])).collect(),
        })
    }

    proptest! {
        #[test]
        fn pem_round_trips(seed in any::<[u8; 32]>()) {
            let key = Signer::from_seed(&seed).verify_key();
            let pem = pem_from_verify_key(&key);
            prop_assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
            prop_assert!(pem.ends_with("-----END PUBLIC KEY-----"));
            prop_assert_eq!(verify_key_from_pem(&pem).unwrap(), key.clone());
            prop_assert_eq!(verify_key_from_pem(&format!("{}\r\n", pem.replace('\n', "\r\n"))).unwrap(), key);
        }

        #[test]
        fn pem_parsing_never_panics(text in ".{0,200}") {
            let _ = verify_key_from_pem(&text);
        }

        #[test]
        fn diff_lists_exactly_the_ids_whose_state_or_key_changed(old in any_scan(), new in any_scan()) {
            prop_assert!(diff(&old, &old).is_empty());
            let changes = diff(&old, &new);
            let mut ids = old.ids();
            ids.extend(new.ids());
            ids.sort();
            ids.dedup();
            let expected: Vec<String> = ids
                .into_iter()
                .filter(|id| old.state_of(id) != new.state_of(id))
                .collect();
            let got: Vec<String> = changes.iter().map(|c| c.id.clone()).collect();
            prop_assert_eq!(got, expected);
            for c in &changes {
                prop_assert_eq!(c.old, old.state_of(&c.id).map(|(s, _)| s));
                prop_assert_eq!(c.new, new.state_of(&c.id).map(|(s, _)| s));
                prop_assert_eq!(c.key_changed, c.old == c.new);
            }
        }
    }
}

#[test]
fn key_files_are_chowned_to_the_owner_when_possible() {
    use std::os::unix::fs::MetadataExt;
    let (dir, pki) = pki();
    let ours = fs::metadata(dir.path()).unwrap().uid();
    let pki = pki.with_owner(Some(ours));
    pki.store("m1", KeyState::Pending, &pem(1)).unwrap();
    let path = pki.key_path(KeyState::Pending, "m1").unwrap();
    assert_eq!(fs::metadata(&path).unwrap().uid(), ours);
    // Another owner: root can chown, anyone else cannot; the key is written either way.
    let pki = pki.with_owner(Some(ours.wrapping_add(1)));
    pki.store("m2", KeyState::Accepted, &pem(2)).unwrap();
    let path = pki.key_path(KeyState::Accepted, "m2").unwrap();
    let meta = fs::metadata(&path).unwrap();
    let expected = if ours == 0 { 1 } else { ours };
    assert_eq!(meta.uid(), expected);
    assert_eq!(meta.mode() & 0o777, 0o600);
    assert_eq!(fs::read_to_string(&path).unwrap(), pem(2));
}

#[test]
fn only_changes_wake_the_watcher_not_its_own_reads() {
    use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind, RemoveKind, RenameMode};
    use notify::EventKind;
    for quiet in [
        EventKind::Access(AccessKind::Open(AccessMode::Any)),
        EventKind::Access(AccessKind::Close(AccessMode::Read)),
        EventKind::Access(AccessKind::Read),
    ] {
        assert!(!changes_keys(&quiet), "{quiet:?}");
    }
    for change in [
        EventKind::Create(CreateKind::File),
        EventKind::Modify(ModifyKind::Name(RenameMode::To)),
        EventKind::Modify(ModifyKind::Any),
        EventKind::Remove(RemoveKind::File),
        EventKind::Access(AccessKind::Close(AccessMode::Write)),
        EventKind::Any,
    ] {
        assert!(changes_keys(&change), "{change:?}");
    }
}

/// The watcher reports each operator move (what salt-key does) of a key it watches, one
/// after the other, well before its periodic rescan.
#[test]
fn the_watcher_reports_every_move_of_a_key() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (_dir, pki) = pki();
        let path = |state| pki.state_dir(state).join("m1");
        fs::write(path(KeyState::Pending), pem(1)).unwrap();
        let initial = pki.scan().unwrap();
        let rescan = Duration::from_secs(3600);
        let (_watcher, mut changes) = PkiWatcher::spawn(pki.clone(), initial, rescan).unwrap();
        let moves = [
            (KeyState::Pending, KeyState::Rejected),
            (KeyState::Rejected, KeyState::Accepted),
            (KeyState::Accepted, KeyState::Rejected),
        ];
        for (from, to) in moves {
            fs::rename(path(from), path(to)).unwrap();
            let change = tokio::time::timeout(Duration::from_secs(10), changes.recv())
                .await
                .unwrap_or_else(|_| panic!("move {from:?} -> {to:?} not reported"))
                .unwrap();
            assert_eq!((change.id.as_str(), change.new), ("m1", Some(to)));
        }
    });
}

#[test]
fn touched_ids_are_reported_even_when_their_moves_cancel_out() {
    let (_dir, pki) = pki();
    let rejected = pki.state_dir(KeyState::Rejected).join("m1");
    fs::write(&rejected, pem(1)).unwrap();
    let before = pki.scan().unwrap();
    // accepted, then rejected again between two scans
    let after = pki.scan().unwrap();
    let touched = BTreeSet::from(["m1".to_owned(), "gone".to_owned()]);
    let changes = diff_touched(&before, &after, touched);
    assert_eq!(changes.len(), 1, "{changes:?}");
    let change = &changes[0];
    assert_eq!(
        (
            change.id.as_str(),
            change.old,
            change.new,
            change.key_changed
        ),
        (
            "m1",
            Some(KeyState::Rejected),
            Some(KeyState::Rejected),
            false
        )
    );
    // an id the diff already lists is not repeated
    fs::remove_file(&rejected).unwrap();
    let removed = pki.scan().unwrap();
    let changes = diff_touched(&after, &removed, BTreeSet::from(["m1".to_owned()]));
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0].new, None);
}
