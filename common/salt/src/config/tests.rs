//! Tests of Salt's configuration files as the daemons read them: defaults, `.d` overrides, root_dir, bad values, the shipped samples and units.

use super::*;

use std::fs;
use std::net::IpAddr;

use crate::minion_id::{self, IdOrigin, IdRules, RemoveDomain};
use raet::keep::AutoMode;
use tempfile::TempDir;

/// A config dir with the given files (relative path, text).
fn dir_with(files: &[(&str, &str)]) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        let path = dir.path().join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }
    dir
}

fn master_err(files: &[(&str, &str)]) -> (TempDir, String) {
    let dir = dir_with(files);
    let err = match MasterConfig::load(dir.path()) {
        Ok(c) => panic!("{files:?} loaded: {c:?}"),
        Err(e) => e.to_string(),
    };
    (dir, err)
}

#[test]
fn master_defaults_are_salts() {
    let dir = dir_with(&[]);
    let c = MasterConfig::load(dir.path()).unwrap();
    assert_eq!(c.common.pki_dir, PathBuf::from("/etc/salt/pki/master"));
    assert_eq!(c.common.sock_dir, PathBuf::from("/var/run/salt/master"));
    assert_eq!(c.common.cachedir, PathBuf::from("/var/cache/salt/master"));
    assert_eq!(c.common.log_file, "/var/log/salt/master");
    assert_eq!(c.common.log_level, LogLevel::Warning);
    assert_eq!(c.common.log_fmt_console, "[%(levelname)-8s] %(message)s");
    assert_eq!(
        c.common.log_fmt_logfile,
        "%(asctime)s,%(msecs)03d [%(name)-17s:%(lineno)-4d][%(levelname)-8s][%(process)d] %(message)s"
    );
    assert_eq!(c.common.log_datefmt, "%H:%M:%S");
    assert_eq!(c.common.log_datefmt_logfile, "%Y-%m-%d %H:%M:%S");
    assert_eq!(c.common.log_level_logfile, None);
    assert_eq!(c.common.raet_port, 4505);
    assert_eq!(c.common.raet_alive_period, Duration::from_secs(10));
    assert_eq!(c.common.raet_message_timeout, Duration::from_secs(30));
    assert_eq!(c.common.raet_profile, raet::road::Profile::Auto);
    assert_eq!(c.common.user, None);
    assert_eq!(
        c.common.keep_dir(),
        PathBuf::from("/etc/salt/pki/master/raet")
    );
    assert!(c.common.files.is_empty());
    assert_eq!(c.interface, IpAddr::from([0, 0, 0, 0]));
    assert!(!c.auto_accept && !c.open_mode);
    assert_eq!(c.autosign_file, PathBuf::from("/etc/salt/autosign.conf"));
    assert_eq!(
        c.autoreject_file,
        PathBuf::from("/etc/salt/autoreject.conf")
    );
    assert_eq!(c.raet_auto_accept, None);
}

#[test]
fn minion_defaults_are_salts() {
    let dir = dir_with(&[("minion", "id: web1\n")]);
    let c = MinionConfig::load(dir.path()).unwrap();
    assert_eq!(c.id, "web1");
    assert_eq!(c.master, vec!["salt".to_owned()]);
    assert_eq!(c.raet_master_port, 4505);
    assert_eq!(c.common.raet_port, 4510);
    assert_eq!(c.common.pki_dir, PathBuf::from("/etc/salt/pki/minion"));
    assert_eq!(c.common.log_file, "/var/log/salt/minion");
    assert_eq!(c.common.files, vec![dir.path().join("minion")]);
}

#[test]
fn later_d_files_override_earlier_and_the_main_file() {
    let dir = dir_with(&[
        (
            "master",
            "raet_port: 1000\nlog_level: info\nauto_accept: True\n",
        ),
        ("master.d/20-b.conf", "raet_port: 3000\n"),
        ("master.d/10-a.conf", "raet_port: 2000\nlog_level: debug\n"),
        ("master.d/30-c.txt", "raet_port: oops\n"),
        ("master.d/40-d.conf", "# only a comment\n"),
    ]);
    let c = MasterConfig::load(dir.path()).unwrap();
    assert_eq!(c.common.raet_port, 3000);
    assert_eq!(c.common.log_level, LogLevel::Debug);
    assert!(c.auto_accept);
    let d = dir.path().join("master.d");
    assert_eq!(
        c.common.files,
        vec![
            dir.path().join("master"),
            d.join("10-a.conf"),
            d.join("20-b.conf"),
            d.join("40-d.conf")
        ]
    );
}

#[test]
fn unknown_keys_of_any_shape_are_ignored() {
    let dir = dir_with(&[(
        "master",
        "file_roots:\n  base:\n    - /srv/salt\nkeep_jobs_seconds: 3600\ntransport: raet\nkeys.cache_driver: localfs_key\n",
    )]);
    assert!(MasterConfig::load(dir.path()).is_ok());
}

#[test]
fn bad_values_name_the_file_the_key_and_the_form() {
    let cases: &[(&str, &str, &str)] = &[
        ("raet_port: abc\n", "raet_port", "port number"),
        ("raet_port: 70000\n", "raet_port", "port number"),
        ("raet_port: -1\n", "raet_port", "port number"),
        ("id: 'a b'\n", "id", "master id"),
        ("auto_accept: maybe\n", "auto_accept", "True or False"),
        ("open_mode: 3\n", "open_mode", "True or False"),
        ("interface: not-an-ip\n", "interface", "IP address"),
        ("log_level: loud\n", "log_level", "warning"),
        (
            "raet_auto_accept: sometimes\n",
            "raet_auto_accept",
            "never, once or always",
        ),
        ("raet_alive_period: -1\n", "raet_alive_period", "seconds"),
        // Rounds to a zero timer.
        (
            "raet_alive_period: 0.0000000001\n",
            "raet_alive_period",
            "from 0.001 to 86400",
        ),
        (
            "raet_alive_period: 0.0009\n",
            "raet_alive_period",
            "seconds",
        ),
        ("raet_alive_period: 86401\n", "raet_alive_period", "seconds"),
        ("raet_alive_period: 'nan'\n", "raet_alive_period", "seconds"),
        (
            "raet_message_timeout: 0\n",
            "raet_message_timeout",
            "seconds",
        ),
        (
            "raet_profile: quick\n",
            "raet_profile",
            "compat, auto or fast",
        ),
        (
            "presence_events: True\nloop_interval: 0.0000000001\n",
            "loop_interval",
            "from 0.001 to 86400",
        ),
        ("pki_dir: [a, b]\n", "pki_dir", "a path"),
        (
            "keys.cache_driver: mmap_key\n",
            "keys.cache_driver",
            "localfs_key",
        ),
    ];
    for (text, key, expected) in cases {
        let (dir, err) = master_err(&[
            ("master", "raet_port: 4505\n"),
            ("master.d/50-bad.conf", text),
        ]);
        let file = dir.path().join("master.d/50-bad.conf");
        assert!(err.starts_with(&file.display().to_string()), "{err}");
        assert!(err.contains(&format!("bad value for {key}:")), "{err}");
        assert!(err.contains(expected), "{text}: {err}");
        assert!(!err.contains('\n'), "{err}");
    }
}

#[test]
fn invalid_yaml_names_the_file() {
    let (dir, err) = master_err(&[("master", "raet_port: [1, 2\n")]);
    assert!(
        err.starts_with(&format!(
            "{}: invalid YAML",
            dir.path().join("master").display()
        )),
        "{err}"
    );
    assert!(!err.contains('\n'));
    let (_, err) = master_err(&[("master", "- just\n- a list\n")]);
    assert!(err.contains("invalid YAML"), "{err}");
}

#[test]
fn booleans_as_salts_yaml_loader_reads_them() {
    for (text, expected) in [
        ("True", true),
        ("true", true),
        ("yes", true),
        ("On", true),
        ("False", false),
        ("no", false),
        ("off", false),
    ] {
        let dir = dir_with(&[("master", &format!("open_mode: {text}\n"))]);
        assert_eq!(
            MasterConfig::load(dir.path()).unwrap().open_mode,
            expected,
            "{text}"
        );
    }
}

#[test]
fn null_values_mean_the_default() {
    let dir = dir_with(&[("master", "raet_port:\nlog_level: ~\n")]);
    let c = MasterConfig::load(dir.path()).unwrap();
    assert_eq!(c.common.raet_port, 4505);
    assert_eq!(c.common.log_level, LogLevel::Warning);
}

#[test]
fn root_dir_prefixes_paths_as_salt() {
    let dir = dir_with(&[(
        "master",
        "root_dir: /srv/root\npki_dir: /srv/root/pki\ncachedir: cache\nlog_file: udp://loghost:514\nautosign_file: /etc/salt/sign.conf\n",
    )]);
    let c = MasterConfig::load(dir.path()).unwrap();
    assert_eq!(c.common.root_dir, PathBuf::from("/srv/root"));
    assert_eq!(c.common.pki_dir, PathBuf::from("/srv/root/pki"));
    assert_eq!(c.common.cachedir, PathBuf::from("/srv/root/cache"));
    assert_eq!(
        c.common.sock_dir,
        PathBuf::from("/srv/root/var/run/salt/master")
    );
    assert_eq!(c.common.log_file, "udp://loghost:514");
    assert_eq!(
        c.autosign_file,
        PathBuf::from("/srv/root/etc/salt/sign.conf")
    );
    assert_eq!(
        c.autoreject_file,
        PathBuf::from("/srv/root/etc/salt/autoreject.conf")
    );
}

#[test]
fn prepend_root_dir_table() {
    let cases = [
        ("/", "/etc/salt/pki", "/etc/salt/pki"),
        ("/", "rel", "/rel"),
        ("/r", "/etc/x", "/r/etc/x"),
        ("/r", "/r/etc/x", "/r/etc/x"),
        ("/r", "/r", "/r"),
        ("/r", "/rx/etc", "/r/rx/etc"),
        ("/r/", "x/y", "/r/x/y"),
    ];
    for (root, path, expected) in cases {
        assert_eq!(
            prepend_root_dir(Path::new(root), path),
            PathBuf::from(expected),
            "{root} {path}"
        );
    }
}

#[test]
fn minion_ids_masters_and_ports() {
    let dir = dir_with(&[(
        "minion",
        "id: 123\nmaster:\n  - m1.example\n  - 10.0.0.2\nraet_master_port: '4600'\nraet_alive_period: 2.5\nraet_message_timeout: 90\nraet_profile: compat\nuser: root\n",
    )]);
    let c = MinionConfig::load(dir.path()).unwrap();
    assert_eq!(c.id, "123");
    assert_eq!(
        c.master,
        vec!["m1.example".to_owned(), "10.0.0.2".to_owned()]
    );
    assert_eq!(c.raet_master_port, 4600);
    assert_eq!(c.common.raet_alive_period, Duration::from_millis(2500));
    assert_eq!(c.common.raet_message_timeout, Duration::from_secs(90));
    assert_eq!(c.common.raet_profile, raet::road::Profile::Compat);
    assert_eq!(c.common.user.as_deref(), Some("root"));
    assert_eq!(c.common.owner.map(|a| a.uid), Some(0));
    for bad in [
        "id: a/b",
        "id: ..",
        "id: 'has space'",
        "master: []",
        "master: {a: 1}",
    ] {
        let dir = dir_with(&[("minion", bad)]);
        let err = MinionConfig::load(dir.path()).unwrap_err().to_string();
        let key = bad.split(':').next().unwrap();
        assert!(
            err.contains(&format!("bad value for {key}:")),
            "{bad}: {err}"
        );
    }
}

#[test]
fn the_road_is_ipv6_for_ipv6_true_or_an_ipv6_master() {
    let road = |text: &str| {
        let dir = dir_with(&[("minion", text)]);
        MinionConfig::load(dir.path())
            .unwrap()
            .road_ha()
            .to_string()
    };
    assert_eq!(road("master: 127.0.0.1\n"), "0.0.0.0:4510");
    assert_eq!(road("master: salt.example\nipv6: null\n"), "0.0.0.0:4510");
    assert_eq!(road("master: '::1'\nraet_port: 4600\n"), "[::]:4600");
    assert_eq!(road("master: '[::1]:4700'\n"), "[::]:4510");
    assert_eq!(road("master: salt.example\nipv6: True\n"), "[::]:4510");
    // ipv6: False wins (Salt's meaning: do not use IPv6), whatever the master entry
    assert_eq!(road("master: '::1'\nipv6: false\n"), "0.0.0.0:4510");
    let dir = dir_with(&[("minion", "ipv6: maybe\n")]);
    let err = MinionConfig::load(dir.path()).unwrap_err().to_string();
    assert!(err.contains("bad value for ipv6:"), "{err}");
}

#[test]
fn master_entries_carry_their_own_ports_and_repeats_are_joined_once() {
    let dir = dir_with(&[(
        "minion",
        "id: m\nmaster:\n  - m1.example\n  - '127.0.0.1:4600'\n  - '[::1]:4700'\n  - '::1'\n  \
         - '[fe80::1]'\n  - m1.example:4505\nraet_master_port: 4505\n",
    )]);
    let c = MinionConfig::load(dir.path()).unwrap();
    let expected = [
        ("m1.example", 4505),
        ("127.0.0.1", 4600),
        ("::1", 4700),
        ("::1", 4505),
        ("fe80::1", 4505),
    ];
    let expected: Vec<(String, u16)> = expected
        .iter()
        .map(|(h, p)| ((*h).to_owned(), *p))
        .collect();
    assert_eq!(c.masters(), expected);
    for bad in [
        "master: 'h:0'",
        "master: 'h:x'",
        "master: ':4505'",
        "master: ['[::1']",
    ] {
        let dir = dir_with(&[("minion", &format!("id: m\n{bad}\n"))]);
        let err = MinionConfig::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("bad value for master:"), "{bad}: {err}");
    }
}

#[test]
fn master_id_and_any_port() {
    let dir = dir_with(&[("master", "id: m2_master\nraet_port: 0\n")]);
    let c = MasterConfig::load(dir.path()).unwrap();
    assert_eq!(c.id, "m2_master");
    assert_eq!(c.common.raet_port, 0);
    // Salt: the id the minion would get (the cache read, not written), then `_master`.
    let root = tempfile::tempdir().unwrap();
    let dir = dir_with(&[("master", &format!("root_dir: {}\n", root.path().display()))]);
    let c = MasterConfig::load(dir.path()).unwrap();
    assert_eq!(c.id, format!("{}_master", minion_id::generate()));
    assert!(!minion_id::cache_file(root.path()).exists());
    minion_id::write_cache(&minion_id::cache_file(root.path()), "cached").unwrap();
    assert_eq!(MasterConfig::load(dir.path()).unwrap().id, "cached_master");
}

/// A minion config dir whose `root_dir` is a new temporary directory, with `extra` keys.
fn minion_under_root(extra: &str) -> (TempDir, TempDir) {
    let root = tempfile::tempdir().unwrap();
    let dir = dir_with(&[(
        "minion",
        &format!("root_dir: {}\n{extra}", root.path().display()),
    )]);
    (root, dir)
}

#[test]
fn minion_id_is_the_cached_one_under_root_dir_else_generated_and_cached() {
    let (root, dir) = minion_under_root("");
    let cache = minion_id::cache_file(root.path());
    // Nothing cached: Salt's generated id, written to the cache by `cache_id`.
    let c = MinionConfig::load(dir.path()).unwrap();
    assert_eq!(c.id, minion_id::generate());
    assert_eq!(c.id_origin, IdOrigin::Generated);
    assert_eq!(c.id_rules, IdRules::default());
    c.cache_id().unwrap();
    assert_eq!(fs::read_to_string(&cache).unwrap(), c.id);
    // Cached: read back, and not written again.
    fs::write(&cache, "cached-id\n").unwrap();
    let c = MinionConfig::load(dir.path()).unwrap();
    assert_eq!(
        (c.id.as_str(), c.id_origin),
        ("cached-id", IdOrigin::Cached)
    );
    c.cache_id().unwrap();
    assert_eq!(fs::read_to_string(&cache).unwrap(), "cached-id\n");
    // A configured id wins and is never cached.
    fs::remove_file(&cache).unwrap();
    let configured = format!("root_dir: {}\nid: web9\n", root.path().display());
    let configured = dir_with(&[("minion", &configured)]);
    let c = MinionConfig::load(configured.path()).unwrap();
    assert_eq!((c.id.as_str(), c.id_origin), ("web9", IdOrigin::Configured));
    c.cache_id().unwrap();
    assert!(!cache.exists());
    // An unusable cached id names the cache file.
    minion_id::write_cache(&cache, "has space").unwrap();
    let err = MinionConfig::load(dir.path()).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("{}: bad value for id:", cache.display())),
        "{err}"
    );
}

#[test]
fn minion_id_rules_as_salt() {
    let (root, dir) = minion_under_root(
        "minion_id_caching: False\nminion_id_lowercase: yes\nminion_id_remove_domain: True\n",
    );
    let cache = minion_id::cache_file(root.path());
    minion_id::write_cache(&cache, "cached-id").unwrap();
    let c = MinionConfig::load(dir.path()).unwrap();
    let rules = IdRules {
        caching: false,
        lowercase: true,
        remove_domain: RemoveDomain::Any,
    };
    assert_eq!(c.id_rules, rules);
    // Without caching the cache file is neither read nor written.
    assert_eq!(c.id, rules.apply(&minion_id::generate()));
    assert_eq!(c.id_origin, IdOrigin::Generated);
    fs::remove_file(&cache).unwrap();
    c.cache_id().unwrap();
    assert!(!cache.exists());
    for (value, expected) in [
        ("example.com", RemoveDomain::Domain("example.com".into())),
        ("False", RemoveDomain::Keep),
        ("''", RemoveDomain::Keep),
        ("on", RemoveDomain::Any),
    ] {
        let (_root, dir) = minion_under_root(&format!("minion_id_remove_domain: {value}\n"));
        let c = MinionConfig::load(dir.path()).unwrap();
        assert_eq!(c.id_rules.remove_domain, expected, "{value}");
    }
    for bad in [
        "minion_id_remove_domain: 5",
        "minion_id_remove_domain: [a]",
        "minion_id_caching: maybe",
        "minion_id_lowercase: 2",
    ] {
        let (_root, dir) = minion_under_root(&format!("{bad}\n"));
        let err = MinionConfig::load(dir.path()).unwrap_err().to_string();
        let key = bad.split(':').next().unwrap();
        assert!(
            err.contains(&format!("bad value for {key}:")),
            "{bad}: {err}"
        );
    }
}

#[test]
fn master_finger_is_a_sha256_fingerprint_pinning_the_road_key_in_native_mode_only() {
    let finger = (0..32)
        .map(|i| format!("{i:02X}"))
        .collect::<Vec<_>>()
        .join(":");
    let load = |extra: &str| MinionConfig::load(dir_with(&[("minion", extra)]).path());
    let unset = load("id: m1\n").unwrap();
    assert_eq!(
        (unset.master_finger.as_deref(), unset.road_master_finger()),
        (None, None)
    );
    // Salt's default, the empty string: none either.
    assert_eq!(
        load("id: m1\nmaster_finger: ''\n").unwrap().master_finger,
        None
    );
    let pinned = load(&format!("id: m1\nmaster_finger: '{finger}'\n")).unwrap();
    let lower = finger.to_ascii_lowercase();
    assert_eq!(pinned.road_master_finger(), Some(lower.as_str()));
    // With Salt's crypto salt-minion checks it against Salt's RSA master.pub.
    let salt_crypto = load(&format!(
        "id: m1\nraet_salt_crypto: True\nmaster_finger: '{finger}'\n"
    ))
    .unwrap();
    assert_eq!(salt_crypto.master_finger.as_deref(), Some(lower.as_str()));
    assert_eq!(salt_crypto.road_master_finger(), None);
    let md5 = &finger[..47];
    for bad in [
        md5,
        &finger.replace("1F", "1G"),
        &finger.replace(':', ""),
        "yes",
    ] {
        let err = load(&format!("id: m1\nmaster_finger: '{bad}'\n"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("bad value for master_finger") && err.contains("32 hex pairs"),
            "{bad}: {err}"
        );
    }
}

#[test]
fn event_bus_and_rejection_keys_as_salt() {
    let dir = dir_with(&[]);
    let c = MasterConfig::load(dir.path()).unwrap();
    assert!(!c.presence_events);
    assert_eq!(c.loop_interval, Duration::from_secs(60));
    let m = MinionConfig::load(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    assert!(!m.rejected_retry);
    assert_eq!(m.acceptance_wait_time_max, None);
    assert_eq!(m.random_reauth_delay, None);
    let dir = dir_with(&[
        ("master", "presence_events: yes\nloop_interval: 2.5\n"),
        (
            "minion",
            "id: m1\nrejected_retry: True\nacceptance_wait_time_max: 30\nrandom_reauth_delay: 2.5\n",
        ),
    ]);
    let c = MasterConfig::load(dir.path()).unwrap();
    assert!(c.presence_events);
    assert_eq!(c.loop_interval, Duration::from_millis(2500));
    let m = MinionConfig::load(dir.path()).unwrap();
    assert!(m.rejected_retry);
    assert_eq!(m.acceptance_wait_time_max, Some(Duration::from_secs(30)));
    assert_eq!(m.random_reauth_delay, Some(Duration::from_millis(2500)));
    // Salt's 0 is "none"; a negative delay is refused.
    let dir = dir_with(&[("minion", "id: m1\nrandom_reauth_delay: 0\n")]);
    assert_eq!(
        MinionConfig::load(dir.path()).unwrap().random_reauth_delay,
        None
    );
    let dir = dir_with(&[("minion", "id: m1\nacceptance_wait_time_max: -1\n")]);
    let err = MinionConfig::load(dir.path()).unwrap_err().to_string();
    assert!(err.contains("acceptance_wait_time_max"), "{err}");
    // The documented minimum is accepted.
    let dir = dir_with(&[("master", "loop_interval: 0.001\nraet_alive_period: 0.001\n")]);
    let c = MasterConfig::load(dir.path()).unwrap();
    assert_eq!(c.loop_interval, Duration::from_millis(1));
    assert_eq!(c.common.raet_alive_period, Duration::from_millis(1));
    let (_dir, err) = master_err(&[("master", "loop_interval: 0\n")]);
    assert!(
        err.contains("loop_interval") && err.contains("seconds"),
        "{err}"
    );
}

#[test]
fn first_contact_bounds_have_defaults_and_are_checked() {
    let dir = dir_with(&[]);
    let c = MasterConfig::load(dir.path()).unwrap();
    assert_eq!(c.raet_first_contacts, 512);
    assert_eq!(c.raet_first_contact_interval, Duration::from_secs(10));
    assert_eq!(c.raet_max_handshakes, 256);
    let dir = dir_with(&[(
        "master",
        "raet_first_contacts: 64\nraet_first_contact_interval: 0.5\nraet_max_handshakes: 32\n",
    )]);
    let c = MasterConfig::load(dir.path()).unwrap();
    assert_eq!(c.raet_first_contacts, 64);
    assert_eq!(c.raet_max_handshakes, 32);
    assert_eq!(c.raet_first_contact_interval, Duration::from_millis(500));
    for bad in ["0", "-3", "many", "1000001"] {
        let (_dir, err) = master_err(&[("master", &format!("raet_first_contacts: {bad}\n"))]);
        assert!(
            err.contains("raet_first_contacts") && err.contains("whole number"),
            "{bad}: {err}"
        );
    }
}

#[test]
fn salt_crypto_mode_is_read_by_both_and_trusts_on_first_use() {
    let dir = dir_with(&[("minion", "id: m1\n")]);
    let c = MasterConfig::load(dir.path()).unwrap();
    assert!(!c.common.raet_salt_crypto);
    assert_eq!(c.auto_mode(), AutoMode::Never);
    assert!(
        !MinionConfig::load(dir.path())
            .unwrap()
            .common
            .raet_salt_crypto
    );
    let on = "raet_salt_crypto: True\n";
    let dir = dir_with(&[("master", on), ("minion", &format!("id: m1\n{on}"))]);
    let c = MasterConfig::load(dir.path()).unwrap();
    assert!(c.common.raet_salt_crypto);
    assert!(
        MinionConfig::load(dir.path())
            .unwrap()
            .common
            .raet_salt_crypto
    );
    // Salt's auto_accept is about RSA keys here: RAET trusts a name on first use.
    assert_eq!(c.auto_mode(), AutoMode::Once);
    for (extra, mode) in [
        ("open_mode: True\n", AutoMode::Always),
        ("raet_auto_accept: always\n", AutoMode::Always),
        ("raet_auto_accept: once\nopen_mode: True\n", AutoMode::Once),
    ] {
        let dir = dir_with(&[("master", &format!("{on}{extra}"))]);
        assert_eq!(
            MasterConfig::load(dir.path()).unwrap().auto_mode(),
            mode,
            "{extra}"
        );
    }
    // Nobody could accept a pending RAET key: `never` is refused in this mode only.
    let (_dir, err) = master_err(&[("master", &format!("{on}raet_auto_accept: never\n"))]);
    assert!(
        err.contains("bad value for raet_auto_accept") && err.contains("once or always"),
        "{err}"
    );
    let dir = dir_with(&[("master", "raet_auto_accept: never\n")]);
    assert_eq!(
        MasterConfig::load(dir.path()).unwrap().auto_mode(),
        AutoMode::Never
    );
    let (_dir, err) = master_err(&[("master", "raet_salt_crypto: 1\n")]);
    assert!(
        err.contains("raet_salt_crypto") && err.contains("True or False"),
        "{err}"
    );
}

#[test]
fn an_unknown_user_is_a_bad_value() {
    let (_dir, err) = master_err(&[("master.d/u.conf", "user: no-such-user-here\n")]);
    assert!(
        err.contains("u.conf")
            && err.contains("bad value for user")
            && err.contains("a user name known to the system"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1);
}

/// A user the system knows only through an NSS module, not `/etc/passwd`: a systemd userdb
/// drop-in record in `/run/userdb`, which nss-systemd reads (as an LDAP or sssd user would be
/// found through theirs). Removed when dropped.
struct NssOnlyUser {
    name: String,
    record: PathBuf,
}

impl NssOnlyUser {
    const UID: u32 = 61_234;

    /// The record, or `None` (after saying why) when it cannot be written (not root) or
    /// `getent` does not see it (no nss-systemd in `/etc/nsswitch.conf`).
    fn create() -> Option<Self> {
        let name = format!("srt-nss-{}", std::process::id());
        let dir = Path::new("/run/userdb");
        let record = dir.join(format!("{name}.user"));
        let json = format!(r#"{{"userName":"{name}","uid":{0},"gid":{0}}}"#, Self::UID);
        if let Err(e) = fs::create_dir_all(dir).and_then(|()| fs::write(&record, json)) {
            eprintln!(
                "skipped: cannot write a userdb record in {}: {e}",
                dir.display()
            );
            return None;
        }
        let user = Self { name, record };
        let seen = std::process::Command::new("getent")
            .args(["passwd", &user.name])
            .output()
            .is_ok_and(|out| out.status.success());
        if !seen {
            eprintln!("skipped: no NSS module reads /run/userdb (nss-systemd) here");
            return None;
        }
        Some(user)
    }
}

impl Drop for NssOnlyUser {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.record);
    }
}

#[test]
fn users_are_resolved_through_nss() {
    let owner = |user: &str| {
        let dir = dir_with(&[("master", &format!("user: {user}\n"))]);
        MasterConfig::load(dir.path()).unwrap().common.owner
    };
    assert_eq!(
        owner("root"),
        Some(crate::account::Account { uid: 0, gid: 0 })
    );
    assert_eq!(owner("nobody").map(|a| a.uid), Some(65_534));
    let Some(user) = NssOnlyUser::create() else {
        return;
    };
    let passwd = fs::read_to_string("/etc/passwd").unwrap();
    assert!(
        !passwd.contains(&user.name),
        "{} is in /etc/passwd",
        user.name
    );
    assert_eq!(
        owner(&user.name),
        Some(crate::account::Account {
            uid: NssOnlyUser::UID,
            gid: NssOnlyUser::UID
        })
    );
}

/// `pkg/config/<role>.d/raet.conf` of the repository.
fn sample(role: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../pkg/config")
        .join(format!("{role}.d/raet.conf"));
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The sample with every `#key: value` line uncommented (examples `# e.g.` stay comments).
fn uncommented(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(|l| match l.strip_prefix('#') {
            Some(rest) if rest.starts_with(|c: char| c.is_ascii_lowercase()) => rest,
            _ => l,
        })
        .collect();
    lines.join("\n")
}

#[test]
fn sample_configs_parse_and_show_the_defaults() {
    let text = sample("master");
    let as_shipped = dir_with(&[("master.d/raet.conf", &text)]);
    let all_set = dir_with(&[("master.d/raet.conf", &uncommented(&text))]);
    let defaults = dir_with(&[]);
    let mut shipped = MasterConfig::load(as_shipped.path()).unwrap();
    let mut set = MasterConfig::load(all_set.path()).unwrap();
    let default = MasterConfig::load(defaults.path()).unwrap();
    assert!(set.common.files.len() == 1 && set.common.user.is_some());
    for c in [&mut shipped, &mut set] {
        c.common.config_dir = default.common.config_dir.clone();
        c.common.files.clear();
    }
    assert_eq!(shipped, default);
    // Every key shown is shown with its default (`user: root` is Salt's default user).
    set.common.user = None;
    set.common.owner = None;
    assert_eq!(set, default);
    assert!(
        uncommented(&text)
            .lines()
            .filter(|l| l.contains(": "))
            .count()
            >= 20
    );

    let text = sample("minion");
    let id = "id: m1\n";
    let shipped = dir_with(&[("minion.d/raet.conf", &format!("{id}{text}"))]);
    let all_set = dir_with(&[("minion.d/raet.conf", &format!("{id}{}", uncommented(&text)))]);
    let defaults = dir_with(&[("minion", id)]);
    let mut shipped = MinionConfig::load(shipped.path()).unwrap();
    let mut set = MinionConfig::load(all_set.path()).unwrap();
    let default = MinionConfig::load(defaults.path()).unwrap();
    for c in [&mut shipped, &mut set] {
        c.common.config_dir = default.common.config_dir.clone();
        c.common.files = default.common.files.clone();
    }
    assert_eq!(shipped, default);
    set.common.user = None;
    set.common.owner = None;
    assert_eq!(set, default);
}

#[test]
fn the_logrotate_snippet_moves_the_default_log_files_without_copying() {
    let defaults = dir_with(&[("minion", "id: m1\n")]);
    let master = MasterConfig::load(defaults.path()).unwrap().common;
    let minion = MinionConfig::load(defaults.path()).unwrap().common;
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pkg/logrotate/salt-raet");
    let text = fs::read_to_string(&path).unwrap();
    let directives: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(
        directives.first().copied(),
        Some(format!("{} {} {{", master.log_file, minion.log_file).as_str())
    );
    assert_eq!(directives.last().copied(), Some("}"));
    // The daemons reopen a moved file: nothing is copied, nobody is signalled.
    assert!(directives.contains(&"create 0640"), "{text}");
    for copying in ["copytruncate", "copy", "postrotate", "prerotate"] {
        assert!(!directives.contains(&copying), "{copying}: {text}");
    }
}

#[test]
fn systemd_units_start_the_daemons_and_can_write_their_default_paths() {
    let defaults = dir_with(&[("minion", "id: m1\n")]);
    let master = MasterConfig::load(defaults.path()).unwrap().common;
    let minion = MinionConfig::load(defaults.path()).unwrap().common;
    for (role, common) in [("master", master), ("minion", minion)] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("../../pkg/systemd/salt-raet-{role}.service"));
        let unit = fs::read_to_string(&path).unwrap();
        let value = |key: &str| -> Vec<String> {
            unit.lines()
                .filter_map(|l| l.strip_prefix(&format!("{key}=")))
                .map(str::to_owned)
                .collect()
        };
        assert_eq!(
            value("ExecStart"),
            [format!(
                "/usr/local/bin/salt-raet-{role} -c {DEFAULT_CONFIG_DIR}"
            )]
        );
        // Ready (sd_notify READY=1) once the lane is bound, before Salt's daemon starts.
        assert_eq!(value("Type"), ["notify"]);
        assert_eq!(value("Before"), [format!("salt-{role}.service")]);
        assert_eq!(value("Restart"), ["on-failure"]);
        assert_eq!(value("RestartPreventExitStatus"), ["2"], "bad config");
        let writable: Vec<String> = value("ReadWritePaths")
            .iter()
            .flat_map(|v| v.split_whitespace())
            .map(|p| p.trim_start_matches('-').to_owned())
            .collect();
        // /var/run is /run.
        let under = |p: &Path| {
            let p = p.to_string_lossy().replacen("/var/run/", "/run/", 1);
            writable.iter().any(|w| p.starts_with(&format!("{w}/")))
        };
        for p in [
            common.pki_dir,
            common.sock_dir,
            common.cachedir,
            PathBuf::from(common.log_file),
        ] {
            assert!(
                under(&p),
                "{role}: {} is not writable: {writable:?}",
                p.display()
            );
        }
    }
}

#[test]
fn syndic_master_is_one_host_with_the_raet_syndic_master_port() {
    let dir = dir_with(&[("master", "id: syn\n")]);
    assert_eq!(
        MasterConfig::load(dir.path()).unwrap().syndic_upstream(),
        None
    );
    let dir = dir_with(&[("master", "id: syn\nsyndic_master: top.example\n")]);
    let c = MasterConfig::load(dir.path()).unwrap();
    assert_eq!(c.syndic_upstream(), Some(("top.example".to_owned(), 4505)));
    let dir = dir_with(&[(
        "master",
        "id: syn\nsyndic_master: 10.0.0.1\nraet_syndic_master_port: 4600\n",
    )]);
    let c = MasterConfig::load(dir.path()).unwrap();
    assert_eq!(c.syndic_upstream(), Some(("10.0.0.1".to_owned(), 4600)));
    let dir = dir_with(&[("master", "syndic_master: '[::1]:4700'\n")]);
    let c = MasterConfig::load(dir.path()).unwrap();
    assert_eq!(c.syndic_upstream(), Some(("::1".to_owned(), 4700)));
    let (_dir, err) = master_err(&[("master", "syndic_master: [a, b]\n")]);
    assert!(
        err.contains("syndic_master") && err.contains("a list is not supported"),
        "{err}"
    );
}
