//! The master daemon with real processes: key decisions under never/once/Salt-crypto modes,
//! Salt's event bus, restarts, forged joins, deleted minions (harness:
//! `salt_raet_testkit`; minions are the real `salt-raet-minion`).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use raet::crypto::{PrivateKey, Signer};
use raet::keep::{AutoMode, MemKeep};
use raet::road::RoadConfig;
use raet::stack::{RoadStack, StackError};
use salt_raet::identity::Identity;
use salt_raet_testkit::*;
use serde_json::{json, Value};

#[test]
fn never_mode_pends_and_only_accepted_minions_exchange_messages() {
    let site = Site::new();
    let master = site.master("");
    let port = master.port();
    let minions: Vec<Daemon> = (1..=3)
        .map(|i| site.minion(&format!("m{i}"), port))
        .collect();
    for id in ["m1", "m2", "m3"] {
        wait_for(LIMIT, "three pending keys", || {
            pending(&master, id).exists()
        });
        let pem = fs::read_to_string(pending(&master, id)).unwrap();
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"), "{pem}");
    }
    assert!(!master.pki.join("minions").join("m1").exists());
    assert!(!allowed(&master, "m1"));

    // salt-key -a m1
    fs::rename(pending(&master, "m1"), accepted(&master, "m1")).unwrap();
    wait_for(LIMIT, "m1 allowed", || allowed(&master, "m1"));
    let master_id = master.estate();

    runtime().block_on(async {
        let tester = Yard::attach(&master, "tester", json!({"shares": ["ret"]})).await;
        let worker = Yard::attach(&minions[0], "worker", json!({"shares": ["job"]})).await;
        let _w2 = Yard::attach(&minions[1], "worker", json!({"shares": ["job"]})).await;

        // master -> m1, answered back to the share "ret" of the master.
        tester.send(json!("m1"), "", "job", json!({"n": 1})).await;
        let got = worker.recv().await;
        assert_eq!(got["load"]["n"], 1);
        assert_eq!(
            got["route"]["src"][0],
            json!(master_id),
            "src estate filled by the master"
        );
        assert_eq!(got["route"]["src"][1], "tester");
        worker
            .send(json!(master_id), "", "ret", json!({"ok": true}))
            .await;
        let back = tester.recv().await;
        assert_eq!(back["load"]["ok"], true);
        assert_eq!(
            back["route"]["src"][0], "m1",
            "src estate is the authenticated road peer"
        );

        // m2 is pending: an error, not silence.
        tester.send(json!("m2"), "", "job", json!({"n": 2})).await;
        let err = tester.recv().await;
        assert_eq!(err["load"]["kind"], "unknown_estate", "{err}");
        // An unregistered share on m1: an error from m1's daemon.
        tester.send(json!("m1"), "", "nothing", json!({})).await;
        let err = tester.recv().await;
        assert_eq!(err["load"]["kind"], "unknown_share", "{err}");
        assert_eq!(err["route"]["src"][0], "m1");
        // "*" reaches every accepted minion, here m1 only.
        tester.send(json!("*"), "", "job", json!({"n": 3})).await;
        assert_eq!(worker.recv().await["load"]["n"], 3);
    });

    // salt-key -r m1: the session is dropped.
    let rejected = master.pki.join("minions_rejected").join("m1");
    fs::rename(accepted(&master, "m1"), &rejected).unwrap();
    wait_for(LIMIT, "m1 dropped", || {
        master
            .row("m1")
            .is_some_and(|r| r["allowed"] == false && r["acceptance"] == "rejected")
    });

    // salt-key -a m2, then salt-key -d m2: dropped, and it comes back as pending (Salt).
    fs::rename(pending(&master, "m2"), accepted(&master, "m2")).unwrap();
    wait_for(LIMIT, "m2 allowed", || allowed(&master, "m2"));
    fs::remove_file(accepted(&master, "m2")).unwrap();
    wait_for(LIMIT, "m2 dropped and pending again", || {
        pending(&master, "m2").exists() && !allowed(&master, "m2")
    });
    runtime().block_on(async {
        let tester = Yard::attach(&master, "tester2", json!({"shares": ["ret"]})).await;
        for id in ["m1", "m2", "m3"] {
            tester.send(json!(id), "", "job", json!({})).await;
            let err = tester.recv().await;
            assert_eq!(err["load"]["kind"], "unknown_estate", "{id}: {err}");
        }
    });
    assert!(!allowed(&master, "m3"));
    drop(minions);
    // The daemon also logs to its `log_file` (no colour codes there).
    let log = fs::read_to_string(site.root.join("master/log")).unwrap();
    assert!(
        log.contains("minion key decision") && !log.contains('\u{1b}'),
        "{log}"
    );
    // Created with Salt's mode (the default log file is salt-master's).
    let mode = fs::metadata(site.root.join("master/log"))
        .unwrap()
        .permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o640
    );
}

#[test]
fn once_mode_loses_a_killed_minion_and_denies_its_new_key() {
    let site = Site::new();
    let master = site.master("auto_accept: True\n");
    let mut minion = site.minion("m1", master.port());
    wait_for(LIMIT, "m1 accepted and allowed", || {
        accepted(&master, "m1").exists() && allowed(&master, "m1")
    });
    runtime().block_on(async {
        let watcher = Yard::attach(&master, "watcher", json!({"shares": ["presence"]})).await;
        minion.kill();
        let killed = Instant::now();
        loop {
            let msg = watcher.recv().await;
            if msg["load"]["change"] == "lost" {
                assert_eq!(msg["load"]["id"], "m1");
                break;
            }
        }
        let took = killed.elapsed().as_secs_f64();
        assert!(took <= 3.0 * PERIOD + 0.5, "lost after {took:.2} s");
    });
    let row = master.row("m1").unwrap();
    assert_eq!(row["presence"], "lost", "{row}");
    assert_eq!(row["allowed"], false, "{row}");
    assert_eq!(row["acceptance"], "accepted", "{row}");

    // The minion comes back with a new identity: denied (Salt's once).
    fs::remove_dir_all(minion.pki.join("raet")).unwrap();
    minion.restart();
    let denied = master.pki.join("minions_denied").join("m1");
    wait_for(LIMIT, "the new key denied", || denied.exists());
    assert!(accepted(&master, "m1").exists(), "the accepted key stays");
    assert!(!allowed(&master, "m1"));
}

#[test]
fn master_restart_brings_minions_back_and_sigterm_cleans_up() {
    let site = Site::new();
    let mut master = site.master("auto_accept: True\n");
    // Restarted on the same port, where its minions look for it.
    master.pin_port();
    let port = master.port();
    let mut minions: Vec<Daemon> = (1..=2)
        .map(|i| site.minion(&format!("r{i}"), port))
        .collect();
    for id in ["r1", "r2"] {
        wait_for(LIMIT, "minions allowed", || allowed(&master, id));
    }
    let table = master.table();
    for id in ["r1", "r2"] {
        let line = table
            .lines()
            .find(|l| l.starts_with(id))
            .unwrap_or_default();
        assert!(
            line.contains("accepted") && line.contains("127.0.0.1:"),
            "{table}"
        );
    }
    let minion_view = minions[0].status().unwrap();
    let master_row = &minion_view["remotes"][0];
    assert_eq!(master_row["allowed"], true, "{minion_view}");
    assert_eq!(master_row["id"], master.status().unwrap()["estate"]);

    assert_eq!(master.terminate(), Some(0), "clean exit on SIGTERM");
    assert!(
        !master.lane_dir().join("salt.manor.uxd").exists(),
        "lane socket removed"
    );
    master.restart();
    let restarted = Instant::now();
    for id in ["r1", "r2"] {
        wait_for(
            Duration::from_secs(10),
            "minions back after the restart",
            || allowed(&master, id),
        );
    }
    eprintln!(
        "minions back {:.2} s after the restart",
        restarted.elapsed().as_secs_f64()
    );
    runtime().block_on(async {
        let tester = Yard::attach(&master, "tester", json!({"shares": ["ret"]})).await;
        let worker = Yard::attach(&minions[1], "worker", json!({"shares": ["job"]})).await;
        tester
            .send(json!(["r2"]), "", "job", json!({"after": "restart"}))
            .await;
        assert_eq!(worker.recv().await["load"]["after"], "restart");
    });
    for minion in &mut minions {
        assert_eq!(minion.terminate(), Some(0));
        assert!(!minion.lane_dir().join("salt.manor.uxd").exists());
    }
}

#[test]
fn event_bus_carries_auth_key_and_presence_events() {
    let (site, rt, bus) = SaltBus::site();
    let master = site.master("presence_events: True\nloop_interval: 1\n");
    let mut minion = site.minion("m1", master.port());
    rt.block_on(async {
        let mut pull = SaltBus::accept(&bus.pull).await;
        let mut publish = SaltBus::accept(&bus.publish).await;
        let pend = next_event(&mut pull, "salt/auth", |d| d["id"] == "m1").await;
        assert_eq!(pend["act"], "pend", "{pend}");
        assert_eq!(pend["result"], true);
        let pem = fs::read_to_string(pending(&master, "m1")).unwrap();
        assert_eq!(pend["pub"], json!(pem), "the key salt-key shows");
        assert!(pend["_stamp"].as_str().is_some_and(|s| s.contains('T')));

        // salt-key -a m1: the event makes the master look at once.
        salt_key(
            &mut publish,
            "accept",
            "m1",
            &pending(&master, "m1"),
            Some(&accepted(&master, "m1")),
        )
        .await;
        // The pending join completes: Salt fires accept at the minion's next `_auth`.
        let accept = next_event(&mut pull, "salt/auth", |d| d["id"] == "m1").await;
        assert_eq!(accept["act"], "accept", "{accept}");
        assert_eq!(accept["pub"], json!(pem));
        let change = next_event(&mut pull, "salt/presence/change", |_| true).await;
        assert_eq!(
            change,
            json!({"new": ["m1"], "lost": [], "_stamp": change["_stamp"]})
        );
        let present = next_event(&mut pull, "salt/presence/present", |d| {
            d["present"] == json!(["m1"])
        })
        .await;
        assert!(present["_stamp"].is_string());
        let status = master.status().unwrap();
        assert!(
            status["event_bus"]["received"].as_u64() >= Some(1),
            "{status}"
        );
        assert_eq!(status["event_bus"]["garbage"], 0, "{status}");

        // A restarted minion (on its port, as with Salt's fixed raet_port) rejoins before it
        // is lost: the road accepts it from the keys it holds, and that fires accept too.
        // (On another port it would be a move: docs/protocol.md §5.)
        minion.pin_port();
        minion.restart();
        let again = next_event(&mut pull, "salt/auth", |d| d["id"] == "m1").await;
        assert_eq!(again["act"], "accept", "{again}");
        assert_eq!(again["pub"], json!(pem));

        // A killed minion is lost.
        minion.kill();
        let lost = next_event(&mut pull, "salt/presence/change", |d| {
            d["lost"] == json!(["m1"])
        })
        .await;
        assert_eq!(lost["new"], json!([]));
        let present = next_event(&mut pull, "salt/presence/present", |_| true).await;
        assert_eq!(present["present"], json!([]));
    });
}

#[test]
fn a_killed_master_is_back_for_its_idle_minion_long_before_a_heartbeat() {
    // Heartbeats every 10 s: the minion alone would notice the restart only at its next
    // one. The restarted master restores the minion from its keep and Salt's accepted key,
    // and allows it again within a second.
    let site = Site::new().with_period(10.0);
    let mut master = site.master("");
    master.pin_port();
    let _minion = site.minion("r1", master.port());
    accept_pending(&master, "r1");
    // The keep's writer has the minion's record on disk (renamed into place).
    let record = master
        .pki
        .join("raet")
        .join("remote")
        .join("estate.r1.json");
    wait_for(LIMIT, "r1 in the keep", || record.exists());
    master.kill();
    master.restart();
    let restarted = Instant::now();
    wait_for(Duration::from_secs(3), "r1 back after the restart", || {
        allowed(&master, "r1")
    });
    eprintln!(
        "r1 back {:.2} s after the restart (heartbeat period 10 s)",
        restarted.elapsed().as_secs_f64()
    );
}

/// A road of this process (auto always, keys in memory) joins the master on `port`
/// and is shut down again: what the join came to.
fn forged_join(
    mut config: RoadConfig,
    keys: Option<(Signer, PrivateKey)>,
    port: u16,
) -> Result<raet::road::Uid, StackError> {
    config.auto = AutoMode::Always;
    runtime().block_on(async {
        let road = RoadStack::bind(config, keys, Box::new(MemKeep::new()))
            .await
            .unwrap();
        let joined = road
            .join(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
            .await;
        road.shutdown().await;
        joined
    })
}

/// Every file under `dir` with its content (none when `dir` is missing).
fn tree(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).into_iter().flatten() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(tree(&path));
        } else {
            files.push((path.clone(), fs::read(&path).unwrap()));
        }
    }
    files.sort();
    files
}

#[test]
fn salt_crypto_mode_trusts_on_first_use_and_leaves_the_pki_dirs_to_salt() {
    let site = Site::new();
    let crypto = "raet_salt_crypto: True\n";
    // The pki directories as Salt's _auth leaves them: m1's RSA key pending, m2's rejected.
    let pki = site.root.join("master/pki");
    for (sub, id) in [("minions_pre", "m1"), ("minions_rejected", "m2")] {
        fs::create_dir_all(pki.join(sub)).unwrap();
        let rsa = format!(
            "-----BEGIN PUBLIC KEY-----\nnot an ed25519 key: {id}\n-----END PUBLIC KEY-----"
        );
        fs::write(pki.join(sub).join(id), rsa).unwrap();
    }
    // Everything in the pki directories but our keep.
    let salts = || -> Vec<_> {
        tree(&pki)
            .into_iter()
            .filter(|(p, _)| !p.starts_with(pki.join("raet")))
            .collect()
    };
    let before = salts();
    let master = site.master(crypto);
    let port = master.port();
    let minions: Vec<Daemon> = ["m1", "m2"]
        .iter()
        .map(|id| site.minion_with(id, port, crypto))
        .collect();
    for id in ["m1", "m2"] {
        wait_for(LIMIT, "both minions allowed on first use", || {
            allowed(&master, id)
        });
    }
    let status = master.status().unwrap();
    assert_eq!(status["salt_crypto"], true, "{status}");
    let rows = status["remotes"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{status}");
    assert!(
        rows.iter().all(|r| r["acceptance"] == "accepted"),
        "acceptance from the keep, not from the pki files: {status}"
    );
    assert_eq!(minions[0].status().unwrap()["salt_crypto"], true);
    assert_eq!(salts(), before, "the pki directories are Salt's");
    let pinned = pki.join("raet/role/remote/role.m1.json");
    let record: Value = serde_json::from_slice(&fs::read(&pinned).unwrap()).unwrap();
    assert_eq!(record["acceptance"], 1, "{record}");

    // Traffic flows both ways (Salt's own channels would ride on it).
    runtime().block_on(async {
        let tester = Yard::attach(&master, "tester", json!({"shares": ["ret"]})).await;
        let worker = Yard::attach(&minions[1], "worker", json!({"shares": ["job"]})).await;
        tester.send(json!(["m2"]), "", "job", json!({"n": 7})).await;
        assert_eq!(worker.recv().await["load"]["n"], 7);
    });

    // m1 comes back with new RAET keys: rejected (its first keys are pinned), pki untouched.
    let mut m1 = minions.into_iter().next().unwrap();
    m1.kill();
    fs::remove_dir_all(m1.pki.join("raet")).unwrap();
    m1.restart();
    wait_for(LIMIT, "m1's new keys rejected", || {
        join_state(&m1).is_some_and(|(state, _)| state == "rejected")
    });
    // The killed process's session goes on until it is lost (a join with other keys does not
    // end it: an impostor could otherwise cut a minion off).
    wait_for(LIMIT, "m1's old session lost", || !allowed(&master, "m1"));
    assert_eq!(salts(), before);
    // The operator lets the reinstalled minion in by deleting its pinned keys.
    fs::remove_file(&pinned).unwrap();
    m1.signal("-HUP");
    wait_for(LIMIT, "m1 allowed with its new keys", || {
        allowed(&master, "m1")
    });
}

/// Keys are decided per role but judged by id: a joiner offering an accepted minion's id as
/// its role (`evil` as `victim`, while the master has no session with `victim`: here after
/// its restart) is rejected and counted, and records nothing for `victim`, which joins
/// again with its own key.
#[test]
fn a_join_claiming_another_minions_role_is_refused() {
    let site = Site::new();
    let mut master = site.master("");
    master.pin_port();
    let port = master.port();
    let mut victim = site.minion("victim", port);
    accept_pending(&master, "victim");
    victim.kill();
    master.restart();
    assert_eq!(master.port(), port);

    let mut config = RoadConfig::new("evil", "127.0.0.1:0".parse().unwrap());
    config.role = Some("victim".into());
    let joined = forged_join(config, None, port);
    assert!(
        matches!(joined, Err(StackError::Rejected { .. })),
        "{joined:?}"
    );
    let status = master.status().unwrap();
    assert_eq!(status["road_counters"]["join_role_not_name"], 1, "{status}");
    assert_eq!(log_lines(&master, "its role is not its name"), 1);
    assert!(!pending(&master, "evil").exists());
    assert!(master.row("evil").is_none(), "{status}");

    victim.restart();
    wait_for(LIMIT, "victim allowed again", || allowed(&master, "victim"));
    assert!(accepted(&master, "victim").exists());
}

/// `salt-key -d` of a minion that is gone removes its row from `status`, whether it was
/// lost first (d1) or its session was still open (d2); an accepted minion stays (d3).
#[test]
fn a_deleted_minion_vanishes_from_status() {
    let site = Site::new();
    let master = site.master("auto_accept: True\n");
    let port = master.port();
    let mut minions: Vec<Daemon> = ["d1", "d2", "d3"]
        .iter()
        .map(|id| site.minion(id, port))
        .collect();
    for id in ["d1", "d2", "d3"] {
        wait_for(LIMIT, "minions allowed", || allowed(&master, id));
    }
    minions[0].kill();
    wait_for(LIMIT, "d1 lost", || {
        master.row("d1").is_some_and(|r| r["presence"] == "lost")
    });
    fs::remove_file(accepted(&master, "d1")).unwrap();
    wait_for(LIMIT, "d1 gone from status", || master.row("d1").is_none());
    minions[1].kill();
    fs::remove_file(accepted(&master, "d2")).unwrap();
    wait_for(LIMIT, "d2 gone from status", || master.row("d2").is_none());
    let status = master.status().unwrap();
    let ids: Vec<&Value> = status["remotes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["id"])
        .collect();
    assert_eq!(ids, [&json!("d3")], "{status}");
    assert!(allowed(&master, "d3"));
}

/// An unauthenticated sender joining as `victim` (accepted, session open) with other keys
/// from another address is rejected, and the real `victim` stays allowed and routed to: the
/// master neither drops its session nor stops publishing to it (native `never`, and `once`).
/// The other key is denied as Salt does (`minions_denied/victim`), the accepted one stays.
#[test]
fn a_forged_join_with_a_live_minions_name_leaves_it_routed() {
    for mode in ["", "auto_accept: True\n"] {
        let site = Site::new();
        let master = site.master(mode);
        let port = master.port();
        let victim = site.minion("victim", port);
        if mode.is_empty() {
            wait_for(LIMIT, "victim pending", || {
                pending(&master, "victim").exists()
            });
            fs::rename(pending(&master, "victim"), accepted(&master, "victim")).unwrap();
        }
        wait_for(LIMIT, "victim allowed", || allowed(&master, "victim"));
        let accepted_key = fs::read(accepted(&master, "victim")).unwrap();

        let config = RoadConfig::new("victim", "127.0.0.1:0".parse().unwrap());
        // Keys bound as a minion's are (as if `victim` came back with a new identity).
        let keys = Identity::from_seed(&[7; 32]).into_keys();
        let joined = forged_join(config, Some(keys), port);
        assert!(
            matches!(joined, Err(StackError::Rejected { .. })),
            "{mode:?}: {joined:?}"
        );
        wait_for(LIMIT, "the forged join counted", || {
            master.status().is_some_and(|s| {
                s["road_counters"]["join_rejected_keys_changed"]
                    .as_u64()
                    .is_some_and(|n| n >= 1)
            })
        });
        let row = master.row("victim").unwrap();
        assert_eq!(row["allowed"], true, "{mode:?}: {row}");
        assert_eq!(row["acceptance"], "accepted", "{mode:?}: {row}");
        assert_eq!(fs::read(accepted(&master, "victim")).unwrap(), accepted_key);
        let denied = master.pki.join("minions_denied").join("victim");
        wait_for(LIMIT, "the other key denied", || denied.exists());
        assert_ne!(fs::read(&denied).unwrap(), accepted_key);
        assert!(log_lines(&master, "the session stays") >= 1, "{mode:?}");

        runtime().block_on(async {
            let tester = Yard::attach(&master, "tester", json!({"shares": ["ret"]})).await;
            let worker = Yard::attach(&victim, "worker", json!({"shares": ["job"]})).await;
            tester
                .send(json!("victim"), "", "job", json!({"n": 7}))
                .await;
            assert_eq!(worker.recv().await["load"]["n"], 7, "{mode:?}");
            tester.send(json!("*"), "", "job", json!({"n": 8})).await;
            assert_eq!(worker.recv().await["load"]["n"], 8, "{mode:?}");
        });
        assert!(allowed(&master, "victim"), "{mode:?}");
    }
}

/// `status --format openmetrics` of a master with a joined minion, and of that minion:
/// the daemon's info with its version, the per-remote gauges, the counters, `# EOF`.
#[test]
fn status_as_openmetrics_of_a_master_and_its_joined_minion() {
    let site = Site::new();
    let master = site.master("auto_accept: True\n");
    let minion = site.minion("om1", master.port());
    wait_for(LIMIT, "om1 allowed", || allowed(&master, "om1"));
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(master.status().unwrap()["daemon_version"], version);

    let text = master.status_output(&["--format", "openmetrics"]).unwrap();
    eprintln!("{text}");
    let estate = master.estate();
    for line in [
        format!(
            "salt_raet_daemon_info{{role=\"master\",estate=\"{estate}\",version=\"{version}\"}} 1"
        ),
        "# TYPE salt_raet_remote_joined gauge".to_owned(),
        "salt_raet_remote_joined{role=\"master\",id=\"om1\"} 1".to_owned(),
        "salt_raet_remote_allowed{role=\"master\",id=\"om1\"} 1".to_owned(),
        "# TYPE salt_raet_lane_received counter".to_owned(),
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
    }
    let joins = text.lines().find_map(|l| {
        l.strip_prefix("salt_raet_road_join_correspond_complete_total{role=\"master\"} ")
    });
    assert!(
        joins.is_some_and(|n| n.parse::<u64>().unwrap() >= 1),
        "{text}"
    );
    assert!(text.ends_with("\n# EOF\n"), "{text}");

    let text = minion.status_output(&["--format", "openmetrics"]).unwrap();
    let line = "salt_raet_remote_allowed{role=\"minion\",id=\"".to_owned() + &estate + "\"} 1";
    assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
    assert_eq!(
        master.status_output(&["--json", "--format", "text"]),
        None,
        "--json is --format json: not both"
    );
}
