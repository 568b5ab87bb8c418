//! Runs the built `salt-raet-minion`: config errors, `--finger`, the not-yet-built daemon mode.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use salt_raet_testkit::{openssl_public_pem, pipe};

fn minion(config_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_salt-raet-minion"))
        .arg("-c")
        .arg(config_dir)
        .args(args)
        .output()
        .unwrap()
}

fn setup(extra: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("etc")).unwrap();
    fs::write(
        dir.path().join("etc/minion"),
        format!("id: web1\npki_dir: {}/pki\n{extra}", dir.path().display()),
    )
    .unwrap();
    dir
}

#[test]
fn finger_is_the_sha256_of_the_pem_the_master_stores() {
    let dir = setup("");
    let out = minion(&dir.path().join("etc"), &["--finger"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let finger = String::from_utf8(out.stdout).unwrap();
    // Stable: the identity is created once and reused.
    let again = minion(&dir.path().join("etc"), &["--finger"]);
    assert_eq!(String::from_utf8(again.stdout).unwrap(), finger);

    // Independently: openssl derives the public key PEM from the keep's Ed25519 seed; the
    // master stores it without the final newline; salt-key's fingerprint is sha256sum of
    // that text in colon-separated pairs.
    let pem = openssl_public_pem(&dir.path().join("pki/raet"));
    let sum = pipe(&mut Command::new("sha256sum"), pem.trim().as_bytes());
    let sum = String::from_utf8(sum).unwrap();
    let hexsum = sum.split_whitespace().next().unwrap();
    let pairs: Vec<&str> = (0..32).map(|i| &hexsum[2 * i..2 * i + 2]).collect();
    assert_eq!(finger, format!("{}\n", pairs.join(":")));
}

/// The name the minion's keep at `keep_dir` was created for.
fn keep_name(keep_dir: &Path) -> String {
    let role = fs::read_to_string(keep_dir.join("role/local/role.json")).unwrap();
    let role: serde_json::Value = serde_json::from_str(&role).unwrap();
    role["role"].as_str().unwrap().to_owned()
}

#[test]
fn without_id_salts_cached_id_is_used_else_the_generated_one_is_cached() {
    let root = tempfile::tempdir().unwrap();
    let conf = root.path().join("conf");
    fs::create_dir(&conf).unwrap();
    let configure = |pki: &str| {
        let text = format!("root_dir: {0}\npki_dir: {0}/{pki}\n", root.path().display());
        fs::write(conf.join("minion"), text).unwrap();
    };
    // Nothing cached: Salt's generated id, cached where salt-minion caches it.
    configure("pki1");
    let out = minion(&conf, &["--finger"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cache = root.path().join("etc/salt/minion_id");
    let generated = salt_raet::minion_id::generate();
    assert_eq!(fs::read_to_string(&cache).unwrap(), generated);
    assert_eq!(keep_name(&root.path().join("pki1/raet")), generated);
    // An id salt-minion cached is the one used, and the cache is left as it is.
    fs::write(&cache, "from-salt-minion\n").unwrap();
    configure("pki2");
    assert!(minion(&conf, &["--finger"]).status.success());
    assert_eq!(
        keep_name(&root.path().join("pki2/raet")),
        "from-salt-minion"
    );
    assert_eq!(fs::read_to_string(&cache).unwrap(), "from-salt-minion\n");
    // A cache that cannot be written: logged (as Salt), the id is still the generated one.
    fs::remove_file(&cache).unwrap();
    fs::create_dir(&cache).unwrap();
    configure("pki3");
    let out = minion(&conf, &["--finger"]);
    assert!(out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("cannot cache the minion id"), "{err}");
    assert_eq!(keep_name(&root.path().join("pki3/raet")), generated);
}

#[test]
fn a_bad_value_exits_2_naming_file_and_key() {
    let dir = setup("");
    let conf_d = dir.path().join("etc/minion.d");
    fs::create_dir(&conf_d).unwrap();
    fs::write(conf_d.join("10-port.conf"), "raet_master_port: many\n").unwrap();
    let out = minion(&dir.path().join("etc"), &["--finger"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&conf_d.join("10-port.conf").display().to_string()),
        "{err}"
    );
    assert!(
        err.contains("raet_master_port") && err.contains("port number"),
        "{err}"
    );
    // Nothing was created for a configuration that cannot be used.
    assert!(!dir.path().join("pki").exists());
}

#[test]
fn status_without_a_running_daemon_is_one_line_and_exit_1() {
    let dir = setup("");
    let sock = dir.path().join("sock");
    let conf_d = dir.path().join("etc/minion.d");
    fs::create_dir_all(&conf_d).unwrap();
    fs::write(
        conf_d.join("sock.conf"),
        format!("sock_dir: {}\n", sock.display()),
    )
    .unwrap();
    let out = minion(&dir.path().join("etc"), &["status"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    let manor = sock.join("raet/salt.manor.uxd");
    assert!(
        err.starts_with(&format!(
            "salt-raet-minion: no daemon answers on lane {}: ",
            manor.display()
        )),
        "{err}"
    );
}

#[test]
fn version_and_help() {
    let out = Command::new(env!("CARGO_BIN_EXE_salt-raet-minion"))
        .arg("--version")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("salt-raet-minion {}\n", env!("CARGO_PKG_VERSION"))
    );
    let out = Command::new(env!("CARGO_BIN_EXE_salt-raet-minion"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in ["--config-dir", "--log-level", "--finger", "--version"] {
        assert!(help.contains(flag), "{help}");
    }
}
