//! Runs the built `salt-raet-master`: config errors, `--finger-minion`, the daemon mode.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

fn master(config_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_salt-raet-master"))
        .arg("-c")
        .arg(config_dir)
        .args(args)
        .output()
        .unwrap()
}

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("etc")).unwrap();
    fs::write(
        dir.path().join("etc/master"),
        format!("pki_dir: {}/pki\nauto_accept: True\n", dir.path().display()),
    )
    .unwrap();
    dir
}

/// `sha256sum FILE` as salt-key prints fingerprints: hex pairs joined by `:`.
fn sha256_pairs(file: &Path) -> String {
    let out = Command::new("sha256sum").arg(file).output().unwrap();
    let sum = String::from_utf8(out.stdout).unwrap();
    let hexsum = sum.split_whitespace().next().unwrap().to_owned();
    (0..32)
        .map(|i| &hexsum[2 * i..2 * i + 2])
        .collect::<Vec<_>>()
        .join(":")
}

#[test]
fn finger_minion_prints_salt_key_style_for_any_state() {
    let dir = setup();
    let pki = dir.path().join("pki");
    for sub in ["minions", "minions_denied"] {
        fs::create_dir_all(pki.join(sub)).unwrap();
    }
    // Keys made by openssl, stored as salt-key would find them.
    for (sub, n) in [("minions", 1), ("minions_denied", 2)] {
        let key = dir.path().join(format!("k{n}.pem"));
        let ok = Command::new("openssl")
            .args(["genpkey", "-algorithm", "ed25519", "-out"])
            .arg(&key)
            .status()
            .unwrap();
        assert!(ok.success());
        let ok = Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(&key)
            .arg("-out")
            .arg(pki.join(sub).join("web1"))
            .status()
            .unwrap();
        assert!(ok.success());
    }
    let out = master(&dir.path().join("etc"), &["--finger-minion", "web1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!(
            "Accepted Keys:\nweb1:  {}\nDenied Keys:\nweb1:  {}\n",
            sha256_pairs(&pki.join("minions/web1")),
            sha256_pairs(&pki.join("minions_denied/web1"))
        )
    );
    let out = master(&dir.path().join("etc"), &["--finger-minion", "nobody"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("no key for minion \"nobody\""));
}

#[test]
fn bad_values_exit_2_naming_file_and_key() {
    for (text, key) in [
        ("open_mode: perhaps\n", "open_mode"),
        ("raet_auto_accept: sometimes\n", "raet_auto_accept"),
        ("interface: 999.1.1.1\n", "interface"),
        ("user: no-such-user-here\n", "user"),
        ("loop_interval: never\n", "loop_interval"),
    ] {
        let dir = setup();
        let file = dir.path().join("etc/master");
        fs::write(&file, text).unwrap();
        let out = master(&dir.path().join("etc"), &[]);
        assert_eq!(out.status.code(), Some(2), "{text}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains(&file.display().to_string()) && err.contains(key),
            "{err}"
        );
    }
}

#[test]
fn status_without_a_running_daemon_is_one_line_and_exit_1() {
    let dir = setup();
    let conf_d = dir.path().join("etc/master.d");
    fs::create_dir(&conf_d).unwrap();
    let sock = dir.path().join("sock");
    fs::write(
        conf_d.join("sock.conf"),
        format!("sock_dir: {}\n", sock.display()),
    )
    .unwrap();
    let out = master(&dir.path().join("etc"), &["status", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("salt-raet-master: lane"), "{err}");
    // The temporary yard was removed on the way out.
    let left: Vec<_> = fs::read_dir(sock.join("raet")).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
    let out = master(&dir.path().join("etc"), &["-l", "loud"]);
    assert_eq!(out.status.code(), Some(2), "clap refuses an unknown level");
}
