//! Tests of Salt's acceptance rules for a joining minion (the decision table, pattern files, open mode).

use super::*;
use salt_raet::config::auto_mode;
use std::path::Path;

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

use raet::crypto::Signer;

fn pem(n: u8) -> String {
    pki::pem_from_verify_key(&Signer::generate(&mut ChaCha20Rng::from_seed([n; 32])).verify_key())
}

#[test]
fn salt_settings_map_to_raet_modes() {
    use AutoMode::*;
    let cases = [
        (false, false, None, Never),
        (false, true, None, Once),
        (true, false, None, Always),
        (true, true, None, Always),
        (true, true, Some(Never), Never),
        (false, false, Some(Once), Once),
        (false, false, Some(Always), Always),
    ];
    for (open, auto, raet, expected) in cases {
        assert_eq!(
            auto_mode(open, auto, raet),
            expected,
            "{open} {auto} {raet:?}"
        );
    }
}

/// The stored key of a row: none, or a state with the offered key (`Same`) or another one.
#[derive(Debug, Clone, Copy)]
enum Stored {
    None,
    Same(KeyState),
    Other(KeyState),
}

/// Which key a row expects written.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Wrote {
    Nothing,
    Offered(KeyState),
    Old(KeyState),
}

#[test]
fn decision_table() {
    use AutoMode::*;
    use KeyState::*;
    let (a, p, r) = (Answer::Accept, Answer::Pend, Answer::Reject);
    // (mode, stored, autosign, autoreject, answer, act, write)
    let rows: &[(AutoMode, Stored, bool, bool, Answer, AuthAct, Wrote)] = &[
        // open_mode / always: everything is accepted and recorded as accepted.
        (
            Always,
            Stored::None,
            false,
            false,
            a,
            AuthAct::Accept,
            Wrote::Offered(Accepted),
        ),
        (
            Always,
            Stored::Same(Accepted),
            false,
            true,
            a,
            AuthAct::Accept,
            Wrote::Nothing,
        ),
        (
            Always,
            Stored::Other(Accepted),
            false,
            false,
            a,
            AuthAct::Accept,
            Wrote::Offered(Accepted),
        ),
        (
            Always,
            Stored::Same(Rejected),
            false,
            false,
            a,
            AuthAct::Accept,
            Wrote::Offered(Accepted),
        ),
        (
            Always,
            Stored::Same(Pending),
            false,
            false,
            a,
            AuthAct::Accept,
            Wrote::Offered(Accepted),
        ),
        // rejected stays rejected in every other mode, whatever the files say.
        (
            Never,
            Stored::Same(Rejected),
            true,
            false,
            r,
            AuthAct::Reject,
            Wrote::Nothing,
        ),
        (
            Once,
            Stored::Other(Rejected),
            false,
            false,
            r,
            AuthAct::Reject,
            Wrote::Nothing,
        ),
        // accepted: same key in, other key denied.
        (
            Never,
            Stored::Same(Accepted),
            false,
            true,
            a,
            AuthAct::Accept,
            Wrote::Nothing,
        ),
        (
            Never,
            Stored::Other(Accepted),
            false,
            false,
            r,
            AuthAct::Denied,
            Wrote::Offered(Denied),
        ),
        (
            Once,
            Stored::Other(Accepted),
            true,
            false,
            r,
            AuthAct::Denied,
            Wrote::Offered(Denied),
        ),
        // new ids.
        (
            Never,
            Stored::None,
            false,
            false,
            p,
            AuthAct::Pend,
            Wrote::Offered(Pending),
        ),
        (
            Never,
            Stored::None,
            true,
            false,
            a,
            AuthAct::Accept,
            Wrote::Offered(Accepted),
        ),
        (
            Never,
            Stored::None,
            true,
            true,
            r,
            AuthAct::Reject,
            Wrote::Offered(Rejected),
        ),
        (
            Once,
            Stored::None,
            false,
            false,
            a,
            AuthAct::Accept,
            Wrote::Offered(Accepted),
        ),
        (
            Once,
            Stored::None,
            false,
            true,
            r,
            AuthAct::Reject,
            Wrote::Offered(Rejected),
        ),
        // pending.
        (
            Never,
            Stored::Same(Pending),
            false,
            false,
            p,
            AuthAct::Pend,
            Wrote::Nothing,
        ),
        (
            Never,
            Stored::Other(Pending),
            false,
            false,
            r,
            AuthAct::Denied,
            Wrote::Offered(Denied),
        ),
        (
            Never,
            Stored::Other(Pending),
            false,
            true,
            r,
            AuthAct::Reject,
            Wrote::Old(Rejected),
        ),
        (
            Never,
            Stored::Same(Pending),
            true,
            false,
            a,
            AuthAct::Accept,
            Wrote::Old(Accepted),
        ),
        (
            Once,
            Stored::Same(Pending),
            false,
            false,
            a,
            AuthAct::Accept,
            Wrote::Old(Accepted),
        ),
        (
            Once,
            Stored::Other(Pending),
            false,
            false,
            r,
            AuthAct::Denied,
            Wrote::Offered(Denied),
        ),
    ];
    let offered = pem(1);
    let other = pem(2);
    for (i, &(mode, stored, autosign, autoreject, answer, act, wrote)) in rows.iter().enumerate() {
        let stored_key = match stored {
            Stored::None => None,
            Stored::Same(state) => Some(StoredKey {
                state,
                text: offered.clone(),
            }),
            Stored::Other(state) => Some(StoredKey {
                state,
                text: other.clone(),
            }),
        };
        let facts = Facts {
            stored: stored_key,
            denied: None,
            autosign,
            autoreject,
        };
        let d = decide(mode, &facts, &offered);
        let expected_write = match wrote {
            Wrote::Nothing => None,
            Wrote::Offered(state) => Some((state, offered.clone())),
            Wrote::Old(state) => Some((state, facts.stored.as_ref().unwrap().text.clone())),
        };
        assert_eq!(
            d,
            Decision {
                answer,
                act,
                write: expected_write
            },
            "row {i}: {mode:?} {stored:?} sign={autosign} reject={autoreject}"
        );
        assert_eq!(
            act.result(),
            matches!(answer, Answer::Accept | Answer::Pend),
            "row {i}"
        );
    }
}

#[test]
fn a_known_denied_key_is_not_rewritten_and_whitespace_does_not_change_a_key() {
    let offered = pem(1);
    let facts = Facts {
        stored: Some(StoredKey {
            state: KeyState::Accepted,
            text: pem(2),
        }),
        denied: Some(format!("{offered}\n")),
        ..Facts::default()
    };
    let d = decide(AutoMode::Never, &facts, &offered);
    assert_eq!(
        (d.answer, d.act, d.write),
        (Answer::Reject, AuthAct::Denied, None)
    );
    let facts = Facts {
        stored: Some(StoredKey {
            state: KeyState::Accepted,
            text: offered.replace('\n', "\r\n"),
        }),
        ..Facts::default()
    };
    assert_eq!(
        decide(AutoMode::Never, &facts, &format!("  {offered}\n")).answer,
        Answer::Accept
    );
}

#[test]
fn expr_match_as_salt() {
    let cases = [
        ("web1", "web1", true),
        ("web1", "web*", true),
        ("web1", "w?b1", true),
        ("web1", "web[0-9]", true),
        ("webx", "web[!0-9]", true),
        // Not a glob match, but Salt then tries it as a regex, where `[!0-9]` is a set of `!`
        // and digits.
        ("web1", "web[!0-9]", true),
        ("weba", "web[!0-9]", true),
        ("web.", "web[!a-z]", true),
        ("webab", "web[!a-z]", false),
        ("web1", "*.example.com", false),
        ("a.example.com", "*.example.com", true),
        ("web12", r"web\d+", true),
        ("web12x", r"web\d+", false),
        ("xweb12", r"web\d+", false),
        // Salt adds no group: `a|b` is "starts with a" or "is b".
        ("abc", "a|b", true),
        ("b", "a|b", true),
        ("xb", "a|b", false),
        // An unclosed `[` is a literal for fnmatch (and an error for re).
        ("a[", "a[", true),
        ("a]", "a[", false),
        ("web1", "(unclosed", false),
        ("", "", true),
        ("web1", "", false),
    ];
    for (id, pattern, expected) in cases {
        assert_eq!(expr_match(id, pattern), expected, "{id:?} ~ {pattern:?}");
    }
}

#[test]
fn signing_files_are_read_as_salt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("autosign.conf");
    let mut file = SigningFile::new(&path);
    assert!(!file.matches("web1"), "a missing file matches nothing");
    fs::write(&path, "# web1\n  db*  \n\n").unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    assert!(!file.matches("web1"), "comment lines are skipped");
    assert!(file.matches("db7"));
    // A changed file is re-read (by modification time).
    fs::write(&path, "web1\n").unwrap();
    let later = SystemTime::now() + std::time::Duration::from_secs(5);
    fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(later)
        .unwrap();
    assert!(file.matches("web1"));
    assert!(!file.matches("db7"));
    // Writable by others: ignored, as Salt.
    fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).unwrap();
    assert!(!file.matches("web1"));
}

fn master_config(dir: &Path, extra: &str) -> MasterConfig {
    let conf = dir.join("etc");
    fs::create_dir_all(&conf).unwrap();
    fs::write(
        conf.join("master"),
        format!(
            "pki_dir: {0}/pki\nautosign_file: {0}/autosign.conf\nautoreject_file: {0}/autoreject.conf\n{extra}",
            dir.display()
        ),
    )
    .unwrap();
    MasterConfig::load(&conf).unwrap()
}

#[test]
fn acceptor_joins_write_what_salt_key_shows() {
    let dir = tempfile::tempdir().unwrap();
    let mut acceptor = Acceptor::new(&master_config(dir.path(), "")).unwrap();
    assert_eq!(acceptor.mode, AutoMode::Never);
    let (k1, k2) = (pem(1), pem(2));
    assert_eq!(
        acceptor
            .join("web1", &k1, &mut DirSyncs::default())
            .unwrap()
            .answer,
        Answer::Pend
    );
    let pending = acceptor.pki().key_path(KeyState::Pending, "web1").unwrap();
    assert_eq!(fs::read_to_string(&pending).unwrap(), k1);
    assert_eq!(
        acceptor
            .join("web1", &k1, &mut DirSyncs::default())
            .unwrap()
            .write,
        None
    );
    // salt-key -a moves the file.
    let accepted = acceptor.pki().key_path(KeyState::Accepted, "web1").unwrap();
    fs::rename(&pending, &accepted).unwrap();
    assert_eq!(
        acceptor
            .join("web1", &k1, &mut DirSyncs::default())
            .unwrap()
            .answer,
        Answer::Accept
    );
    // The same id with a new key is denied and recorded in minions_denied.
    let d = acceptor
        .join("web1", &k2, &mut DirSyncs::default())
        .unwrap();
    assert_eq!((d.answer, d.act), (Answer::Reject, AuthAct::Denied));
    assert_eq!(acceptor.pki().denied("web1").unwrap().unwrap().text, k2);
    assert_eq!(fs::read_to_string(&accepted).unwrap(), k1);
    assert!(matches!(
        acceptor.join("../x", &k1, &mut DirSyncs::default()),
        Err(PkiError::InvalidId(_))
    ));
}

#[test]
fn acceptor_applies_the_pattern_files_and_auto_accept() {
    let dir = tempfile::tempdir().unwrap();
    let config = master_config(dir.path(), "auto_accept: True\n");
    fs::write(dir.path().join("autoreject.conf"), "bad*\n").unwrap();
    fs::set_permissions(
        dir.path().join("autoreject.conf"),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let mut acceptor = Acceptor::new(&config).unwrap();
    assert_eq!(acceptor.mode, AutoMode::Once);
    assert_eq!(
        acceptor
            .join("good1", &pem(1), &mut DirSyncs::default())
            .unwrap()
            .answer,
        Answer::Accept
    );
    assert_eq!(
        acceptor.pki().lookup("good1").unwrap().unwrap().state,
        KeyState::Accepted
    );
    assert_eq!(
        acceptor
            .join("bad1", &pem(2), &mut DirSyncs::default())
            .unwrap()
            .answer,
        Answer::Reject
    );
    assert_eq!(
        acceptor.pki().lookup("bad1").unwrap().unwrap().state,
        KeyState::Rejected
    );
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn expr_match_never_panics(id in ".{0,20}", pattern in ".{0,20}") {
            let _ = expr_match(&id, &pattern);
        }

        #[test]
        fn a_pattern_without_metacharacters_matches_only_itself(id in "[a-z0-9_.-]{1,12}", other in "[a-z0-9_-]{1,12}") {
            // `.` is a regex metacharacter: only ids without it are compared with others.
            prop_assert!(expr_match(&id, &id));
            prop_assume!(other != id && !id.contains('.'));
            prop_assert!(!expr_match(&other, &id));
        }

        #[test]
        fn decisions_never_accept_a_changed_key_outside_always(
            mode in prop::sample::select(vec![AutoMode::Never, AutoMode::Once]),
            state in prop::sample::select(vec![KeyState::Pending, KeyState::Accepted, KeyState::Rejected]),
            autosign in any::<bool>(),
            autoreject in any::<bool>(),
        ) {
            let facts = Facts {
                stored: Some(StoredKey { state, text: pem(2) }),
                denied: None,
                autosign,
                autoreject,
            };
            let d = decide(mode, &facts, &pem(1));
            prop_assert_eq!(d.answer, Answer::Reject);
            // Never overwrite the stored key with the offered one.
            if let Some((s, text)) = &d.write {
                prop_assert!(*s == KeyState::Denied || *text == pem(2), "{s:?} {text}");
            }
        }
    }
}
