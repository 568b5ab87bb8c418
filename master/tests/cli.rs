//! Runs the built `salt-raet-master`: config errors, `--finger`, `--finger-minion`, the daemon mode.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use salt_raet_testkit::openssl_public_pem;

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

/// Waits (at most 20 s) until the file at `log` has a line containing `text`.
fn wait_for_line(log: &Path, text: &str) {
    let started = std::time::Instant::now();
    while !fs::read_to_string(log).is_ok_and(|l| l.contains(text)) {
        assert!(
            started.elapsed().as_secs() < 20,
            "no {text:?} in {} in time",
            log.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Sends `SIG<name>` to `child`.
fn signal(child: &std::process::Child, name: &str) {
    let sent = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(sent.success());
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
fn finger_prints_the_masters_own_key_as_finger_minion_would() {
    let dir = setup();
    let etc = dir.path().join("etc");
    let out = master(&etc, &["--finger"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout).unwrap();
    // salt-key's listing of the master's own keys, the road key named after <pki_dir>/raet.
    let finger = printed
        .strip_prefix("Local Keys:\nraet:  ")
        .unwrap_or_else(|| panic!("{printed}"));
    // Stable: the identity is created once, then reused.
    let again = master(&etc, &["--finger"]);
    assert_eq!(String::from_utf8(again.stdout).unwrap(), printed);
    // The master's public key, derived independently by openssl and stored as the master
    // stores a minion's key (no final newline): `--finger-minion` and sha256sum agree.
    let pem = openssl_public_pem(&dir.path().join("pki/raet"));
    let minions = dir.path().join("pki/minions");
    fs::create_dir_all(&minions).unwrap();
    fs::write(minions.join("own"), pem.trim()).unwrap();
    let out = master(&etc, &["--finger-minion", "own"]);
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("Accepted Keys:\nown:  {finger}")
    );
    assert_eq!(finger, format!("{}\n", sha256_pairs(&minions.join("own"))));
    // One question at a time.
    let out = master(&etc, &["--finger", "--finger-minion", "own"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn bad_values_exit_2_naming_file_and_key() {
    for (text, key) in [
        ("open_mode: perhaps\n", "open_mode"),
        ("raet_auto_accept: sometimes\n", "raet_auto_accept"),
        ("interface: 999.1.1.1\n", "interface"),
        ("user: no-such-user-here\n", "user"),
        ("loop_interval: never\n", "loop_interval"),
        // Durations that round to zero (once a panic: "period must be non-zero").
        (
            "presence_events: True\nloop_interval: 0.0000000001\n",
            "loop_interval",
        ),
        ("raet_alive_period: 0.0000000001\n", "raet_alive_period"),
        ("log_fmt_logfile: '%(nosuch)s'\n", "log_fmt_logfile"),
        ("log_level_logfile: loud\n", "log_level_logfile"),
        ("raet_salt_crypto: sometimes\n", "raet_salt_crypto"),
        (
            "raet_salt_crypto: True\nraet_auto_accept: never\n",
            "raet_auto_accept",
        ),
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
    let manor = sock.join("raet/salt.manor.uxd");
    assert!(
        err.starts_with(&format!(
            "salt-raet-master: no daemon answers on lane {}: ",
            manor.display()
        )),
        "{err}"
    );
    // The temporary yard was removed on the way out.
    let left: Vec<_> = fs::read_dir(sock.join("raet")).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
    let out = master(&dir.path().join("etc"), &["-l", "loud"]);
    assert_eq!(out.status.code(), Some(2), "clap refuses an unknown level");
}

#[test]
fn log_formats_and_levels_are_salts() {
    let dir = setup();
    let log = dir.path().join("log");
    fs::write(
        dir.path().join("etc/master"),
        format!(
            "interface: 127.0.0.1\nraet_port: 28860\npki_dir: {d}/pki\nsock_dir: {d}/sock\n\
             log_file: {log}\nlog_level: info\nlog_level_logfile: debug\n\
             log_fmt_console: '%(levelname)s|%(name)s|%(process)d|%(message)s'\n\
             log_fmt_logfile: '%(asctime)s [%(levelname)-8s] %(message)s'\n\
             log_datefmt_logfile: '%Y/%m/%d %z'\n",
            d = dir.path().display(),
            log = log.display()
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_salt-raet-master"))
        .arg("-c")
        .arg(dir.path().join("etc"))
        .env("TZ", "Asia/Tokyo")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_line(&log, "lane up");
    signal(&child, "TERM");
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let console = String::from_utf8(out.stderr).unwrap();
    assert!(
        console
            .lines()
            .any(|l| l == format!("INFO|salt_raet.daemon.run|{pid}|stopped")),
        "{console}"
    );
    assert!(!console.contains("DEBUG"), "console at info: {console}");
    let file = fs::read_to_string(&log).unwrap();
    // `%Y/%m/%d %z [%(levelname)-8s] %(message)s`, in local time (`TZ`) as Salt's.
    let line = file
        .lines()
        .find(|l| l.contains("master road up"))
        .unwrap_or_default();
    let shape: String = line
        .chars()
        .take(30)
        .map(|c| if c.is_ascii_digit() { '9' } else { c })
        .collect();
    assert_eq!(shape, "9999/99/99 +9999 [INFO    ] ma", "{file}");
    assert_eq!(line.get(11..16), Some("+0900"), "{file}");
    assert!(
        file.contains("[DEBUG   ] "),
        "the log file at debug: {file}"
    );
}

/// The master run as a daemon, which must exit within `limit` (killed and a failed test
/// otherwise).
fn exited_within(config_dir: &Path, limit: std::time::Duration) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_salt-raet-master"))
        .arg("-c")
        .arg(config_dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            child.kill().unwrap();
            panic!(
                "the daemon started: {:?}",
                child.wait_with_output().unwrap()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// A lane directory (or `sock_dir`) another local user could write to would let that user
/// replace the daemon's socket: the daemon refuses to start, exit 2, one line naming it.
#[test]
fn a_lane_directory_others_can_write_to_is_refused() {
    use std::os::unix::fs::PermissionsExt as _;
    for (name, mode) in [("sock", 0o777), ("sock/raet", 0o777), ("sock/raet", 0o770)] {
        let dir = setup();
        let sock = dir.path().join("sock");
        fs::create_dir_all(sock.join("raet")).unwrap();
        let unsafe_dir = dir.path().join(name);
        fs::set_permissions(&unsafe_dir, fs::Permissions::from_mode(mode)).unwrap();
        fs::write(
            dir.path().join("etc/master"),
            format!(
                "pki_dir: {0}/pki\nsock_dir: {0}/sock\nraet_port: 0\ninterface: 127.0.0.1\n\
                 log_file: {0}/log\n",
                dir.path().display()
            ),
        )
        .unwrap();
        let out = exited_within(&dir.path().join("etc"), std::time::Duration::from_secs(10));
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(2), "{name} {mode:o}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains(&unsafe_dir.display().to_string())
                && err.contains(&format!("mode {mode:04o}")),
            "{err}"
        );
        assert!(!sock.join("raet/salt.manor.uxd").exists());
    }
}

/// A road port another socket holds: the daemon exits 1 with one line naming the address.
#[test]
fn a_road_port_in_use_is_one_line_naming_the_address() {
    let dir = setup();
    let holder = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = holder.local_addr().unwrap();
    fs::write(
        dir.path().join("etc/master"),
        format!(
            "pki_dir: {0}/pki\nsock_dir: {0}/sock\nraet_port: {1}\ninterface: 127.0.0.1\n\
             log_file: {0}/log\n",
            dir.path().display(),
            addr.port()
        ),
    )
    .unwrap();
    let out = exited_within(&dir.path().join("etc"), std::time::Duration::from_secs(10));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!(
            "salt-raet-master: road: cannot listen on UDP {addr}: "
        )) && err.contains("in use"),
        "{err}"
    );
}

/// A daemon killed when the test fails before it stopped it.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_log_file_is_tightened_to_0640_and_followed_after_rotation() {
    use std::os::unix::fs::PermissionsExt;
    let dir = setup();
    let log = dir.path().join("log");
    let rotated = dir.path().join("log.1");
    fs::write(&log, "an old line\n").unwrap();
    fs::set_permissions(&log, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(
        dir.path().join("etc/master"),
        format!(
            "interface: 127.0.0.1\nraet_port: 0\npki_dir: {d}/pki\nsock_dir: {d}/sock\n\
             cachedir: {d}/cache\nlog_file: {log}\nlog_level: quiet\nlog_level_logfile: info\n",
            d = dir.path().display(),
            log = log.display()
        ),
    )
    .unwrap();
    let mut master = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_salt-raet-master"))
            .arg("-c")
            .arg(dir.path().join("etc"))
            .spawn()
            .unwrap(),
    );
    wait_for_line(&log, "lane up");
    let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&log), 0o640);
    // logrotate without copytruncate: the file is moved away; the next line (the master
    // logs SIGHUP) starts a new file at the path.
    fs::rename(&log, &rotated).unwrap();
    signal(&master.0, "HUP");
    wait_for_line(&log, "SIGHUP: nothing to do");
    signal(&master.0, "TERM");
    assert_eq!(master.0.wait().unwrap().code(), Some(0));
    let old = fs::read_to_string(&rotated).unwrap();
    let new = fs::read_to_string(&log).unwrap();
    assert!(
        old.starts_with("an old line\n") && old.contains("lane up"),
        "{old}"
    );
    assert!(!old.contains("SIGHUP"), "{old}");
    assert!(new.contains("stopped") && !new.contains("lane up"), "{new}");
    assert_eq!(mode(&log) & !0o640, 0);
}
