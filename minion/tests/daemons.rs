//! The minion daemon with real processes: its join loop (pended, rejected, SIGHUP,
//! `rejected_retry`), several masters (hot/hot, failover, one down or rejecting, two with one
//! id) (harness: `salt_raet_testkit`; masters are the real `salt-raet-master`).

use std::fs;
use std::time::{Duration, Instant};

use salt_raet_testkit::*;
use serde_json::{json, Value};

#[test]
fn a_rejected_minion_stops_until_sighup() {
    let site = Site::new();
    let master = site.master("");
    let minion = site.minion("m1", master.port());
    wait_for(LIMIT, "m1 pending", || pending(&master, "m1").exists());
    let rejected = master.pki.join("minions_rejected").join("m1");

    // salt-key -r m1 while its join is pending: the join is answered with a reject.
    fs::rename(pending(&master, "m1"), &rejected).unwrap();
    wait_for(LIMIT, "m1 told it is rejected", || {
        join_state(&minion).is_some_and(|(state, _)| state == "rejected")
    });
    let (_, attempts) = join_state(&minion).unwrap();
    // SIGHUP: exactly one more attempt, rejected again; then it waits again.
    minion.signal("-HUP");
    wait_for(LIMIT, "one more attempt after SIGHUP", || {
        join_state(&minion) == Some(("rejected".to_owned(), attempts + 1))
    });

    // salt-key -a m1 (from rejected), then SIGHUP: joined and allowed.
    fs::rename(&rejected, accepted(&master, "m1")).unwrap();
    minion.signal("-HUP");
    wait_for(LIMIT, "m1 allowed after SIGHUP", || allowed(&master, "m1"));
    assert_eq!(join_state(&minion).unwrap().0, "joined");
    let table = minion.table();
    assert!(
        table
            .lines()
            .last()
            .is_some_and(|l| l.starts_with("join: joined (")),
        "{table}"
    );

    // salt-key -r m1 of a joined minion: the master drops the session; the minion's next
    // alive goes unanswered, its rejoin is rejected, and it stops.
    fs::rename(accepted(&master, "m1"), &rejected).unwrap();
    wait_for(LIMIT, "joined m1 told it is rejected", || {
        join_state(&minion).is_some_and(|(state, _)| state == "rejected")
    });
    assert!(!allowed(&master, "m1"));
    let minion_view = minion.status().unwrap();
    let row = &minion_view["remotes"][0];
    assert!(
        row["joined"] == false && row["allowed"] == false,
        "no session kept: {minion_view}"
    );
}

/// Whether `minion`'s status shows its master allowed (asked in-process, without starting a
/// `status` process, so that the time measured is the daemons').
async fn minion_allows_master(minion: &Daemon) -> bool {
    let Ok(status) = salt_raet::daemon::query_status(&minion.sock).await else {
        return false;
    };
    status.remotes.iter().any(|r| r.allowed)
}

/// Accepts `id` as salt-key does (moves its key file); returns how long its minion took to
/// show its master allowed.
fn accept_and_time(
    rt: &tokio::runtime::Runtime,
    master: &Daemon,
    minion: &Daemon,
    id: &str,
) -> f64 {
    rt.block_on(async {
        assert!(
            !minion_allows_master(minion).await,
            "{id} allowed before its accept"
        );
        let moved = Instant::now();
        fs::rename(pending(master, id), accepted(master, id)).unwrap();
        while !minion_allows_master(minion).await {
            assert!(moved.elapsed() < LIMIT, "{id} never saw its master allowed");
        }
        moved.elapsed().as_secs_f64()
    })
}

/// Accepting a pending key completes the minion's join at once, however long it has been
/// pending and wherever its join loop is: during a join (the master answers the pended
/// join), or just after one ended (the minion asks again at once, not after its backoff).
#[test]
fn an_accepted_key_reaches_the_pending_minion_at_once() {
    let site = Site::new();
    let ids = ["b1", "b2", "b3", "b4"];
    let master = site.master("");
    let port = master.port();
    let minions: Vec<Daemon> = ids.iter().map(|id| site.minion(id, port)).collect();
    let rt = runtime();
    let mut took = vec![];
    for id in ids {
        wait_for(LIMIT, "pending keys", || pending(&master, id).exists());
    }
    // a master that pends the join is shown pending at once, not when the pended join
    // times out (Salt's failover gives up a master still `joining` after auth_timeout).
    // The join in flight when the key file appeared may still time out on a loaded machine
    // (its pend answer leaves after the file is written: a CI run saw it), not a later one.
    let timed_out = log_lines(&minions[3], "joiner timed out");
    wait_for(LIMIT, "b4 shown pending", || {
        join_state(&minions[3]).is_some_and(|(state, _)| state == "pending")
    });
    assert!(log_lines(&minions[3], "joiner timed out") <= timed_out + 1);
    // Pending for a moment only.
    took.push(accept_and_time(&rt, &master, &minions[0], "b1"));
    // Pending for over 20 s (five pended joins), accepted just as its fifth join ended:
    // before asking again, a minion used to wait for its backoff (2.5-5 s by then).
    wait_for(Duration::from_secs(60), "five pended joins of b2", || {
        log_lines(&minions[1], "joiner timed out") >= 5
    });
    // its status tells a pending key from a master that does not answer
    let (state, _) = join_state(&minions[1]).unwrap();
    assert_eq!(state, "pending");
    let late = accept_and_time(&rt, &master, &minions[1], "b2");
    took.push(late);
    // The others at whatever point of their join loop they are.
    for (minion, id) in minions.iter().zip(ids).skip(2) {
        took.push(accept_and_time(&rt, &master, minion, id));
    }
    for (id, t) in ids.iter().zip(&took) {
        eprintln!("{id}: its minion saw the master allowed {t:.3} s after the key moved");
    }
    assert!(
        late < 2.5,
        "b2 allowed its master {late:.2} s after the accept"
    );
    assert!(took.iter().all(|&t| t < 5.0), "{took:?}");
    // A pended minion keeps asking: no backoff while the master answers.
    let (state, attempts) = join_state(&minions[3]).unwrap();
    assert_eq!(state, "joined");
    assert!(attempts >= 5, "b4 asked {attempts} times");
}

#[test]
fn rejected_retry_keeps_asking_and_autoreject_fires_reject() {
    let (site, rt, bus) = SaltBus::site();
    site.autoreject("master", "bad*\n");
    let master = site.master("");
    let minion = site.minion_with("bad1", master.port(), "rejected_retry: True\n");
    wait_for(LIMIT, "bad1 rejected, retrying", || {
        join_state(&minion).is_some_and(|(state, _)| state == "rejected_retrying")
    });
    assert!(master.pki.join("minions_rejected/bad1").exists());
    rt.block_on(async {
        let mut pull = SaltBus::accept(&bus.pull).await;
        let reject = next_event(&mut pull, "salt/auth", |d| d["id"] == "bad1").await;
        assert_eq!(reject["act"], "reject", "{reject}");
        assert_eq!(reject["result"], false, "{reject}");
    });
}

/// The `master` lines of a minion's configuration: a list of masters on loopback.
fn master_list(ports: &[u16]) -> String {
    let entries: String = ports
        .iter()
        .map(|port| format!("  - 127.0.0.1:{port}\n"))
        .collect();
    format!("master:\n{entries}")
}

/// The `masters` entries of a minion's `status --json`.
fn masters_of(minion: &Daemon) -> Vec<Value> {
    let status = minion.status().unwrap_or_default();
    status["masters"].as_array().cloned().unwrap_or_default()
}

/// Whether the minion's status shows its master `index` (configuration order) allowed.
fn master_allowed(minion: &Daemon, index: usize) -> bool {
    masters_of(minion)
        .get(index)
        .is_some_and(|m| m["allowed"] == true && m["state"] == "joined")
}

/// The load of the next message to `yard` from share `share`'s route, skipping presence.
async fn next_load(yard: &Yard) -> Value {
    loop {
        let msg = yard.recv().await;
        if msg["route"]["src"][2] != "presence" {
            return msg;
        }
    }
}

/// `asker` sends request `n` to `dst` (share `req`).
async fn ask(asker: &Yard, dst: Value, n: u64) {
    asker.send(dst, "", "req", json!({"n": n})).await;
}

/// `asker` sends request `n` to `dst` (share `req`); `server` (on master `master_id`) must
/// get it and answers it, and the answer must come back to `asker`.
async fn round_trip(asker: &Yard, dst: Value, server: &Yard, n: u64, master_id: &str) {
    ask(asker, dst, n).await;
    let got = server.recv().await;
    assert_eq!(got["load"]["n"], n, "{got}");
    let (yard, share) = (
        got["route"]["src"][1].as_str(),
        got["route"]["src"][2].clone(),
    );
    assert_eq!(yard, Some(asker.name.as_str()), "{got}");
    assert_eq!(share, json!(null), "{got}");
    server
        .send(json!("mm"), &asker.name, "ret", json!({"answer": n}))
        .await;
    let back = asker.recv().await;
    assert_eq!(back["load"]["answer"], n, "{back}");
    assert_eq!(back["route"]["src"][0], master_id, "{back}");
}

/// One minion, two masters (Salt's `master: [a, b]`, hot/hot): it joins both independently
/// (pending on both; an accept on one lets it exchange messages with that one only),
/// publications reach its yards from both, its upstream requests go to the first joined
/// master in configuration order (or to a master named in the route) and the answers come
/// back to the asking yard; a master stopped → its requests go to the other.
#[test]
fn a_minion_with_two_masters_joins_both_and_fails_over() {
    let site = Site::new();
    let mut alpha = site.master_in("alpha", "id: alpha_master\n");
    // Restarted below on the same port.
    alpha.pin_port();
    let beta = site.master_in("beta", "id: beta_master\n");
    let masters = master_list(&[alpha.port(), beta.port()]);
    let minion = site.minion_of("mm", &masters, "");
    for master in [&alpha, &beta] {
        wait_for(LIMIT, "mm pending on both masters", || {
            pending(master, "mm").exists()
        });
    }
    // The same identity on both.
    assert_eq!(
        fs::read(pending(&alpha, "mm")).unwrap(),
        fs::read(pending(&beta, "mm")).unwrap()
    );
    let status = minion.status().unwrap();
    let listed = status["masters"].as_array().unwrap();
    assert_eq!(listed.len(), 2, "{status}");
    for (entry, master) in listed.iter().zip([&alpha, &beta]) {
        let address = format!("127.0.0.1:{}", master.port());
        assert_eq!(entry["master"], json!(address), "{status}");
        assert_eq!(entry["address"], json!(address), "{status}");
        assert_eq!(entry["allowed"], false, "{status}");
    }
    // both masters answered: pending (shown at the pend, not when the pended join ends)
    wait_for(LIMIT, "mm shown pending", || {
        join_state(&minion).is_some_and(|(state, _)| state == "pending")
    });

    // salt-key -a mm on beta only: mm talks to beta, still pending on alpha.
    fs::rename(pending(&beta, "mm"), accepted(&beta, "mm")).unwrap();
    wait_for(LIMIT, "beta allows mm", || {
        allowed(&beta, "mm") && master_allowed(&minion, 1)
    });
    assert!(!master_allowed(&minion, 0));
    assert!(pending(&alpha, "mm").exists());
    let status = minion.status().unwrap();
    assert_eq!(status["join"]["state"], "joined", "{status}");
    assert_eq!(status["masters"][1]["id"], "beta_master", "{status}");
    assert_eq!(status["masters"][0]["state"], "pending", "{status}");

    let rt = runtime();
    let (asker, worker, a_req, b_req) = rt.block_on(async {
        let asker = Yard::attach(&minion, "asker", json!({"shares": ["ret"]})).await;
        let worker = Yard::attach(&minion, "worker", json!({"shares": ["job"]})).await;
        let a_req = Yard::attach(&alpha, "req", json!({"shares": ["req", "ret"]})).await;
        let b_req = Yard::attach(&beta, "req", json!({"shares": ["req", "ret"]})).await;
        // beta -> mm; alpha -> mm is refused (mm is pending there).
        b_req
            .send(json!("mm"), "", "job", json!({"from": "b"}))
            .await;
        let got = next_load(&worker).await;
        assert_eq!(got["load"]["from"], "b");
        assert_eq!(got["route"]["src"][0], "beta_master");
        a_req.send(json!("mm"), "", "job", json!({})).await;
        assert_eq!(a_req.recv().await["load"]["kind"], "unknown_estate");
        // Upstream: alpha is first in the configuration, but only beta is joined.
        ask(&asker, json!(null), 1).await;
        let got = b_req.recv().await;
        assert_eq!(got["load"]["n"], 1, "{got}");
        assert_eq!(got["route"]["src"][0], "mm");
        assert_eq!(got["route"]["src"][1], "asker");
        (asker, worker, a_req, b_req)
    });

    // salt-key -a mm on alpha too: both joined; upstream prefers alpha (first).
    fs::rename(pending(&alpha, "mm"), accepted(&alpha, "mm")).unwrap();
    wait_for(LIMIT, "alpha allows mm", || {
        allowed(&alpha, "mm") && master_allowed(&minion, 0)
    });
    rt.block_on(async {
        round_trip(&asker, json!(null), &a_req, 2, "alpha_master").await;
        // A request naming beta goes to beta (and is the first beta has seen since n = 1:
        // n = 2 went to alpha only).
        round_trip(&asker, json!("beta_master"), &b_req, 3, "beta_master").await;
        // Publications from both masters reach the minion's yard.
        for (from, master) in [("a", &a_req), ("b", &b_req)] {
            master
                .send(json!("*"), "", "job", json!({"from": from}))
                .await;
            assert_eq!(next_load(&worker).await["load"]["from"], from);
        }
    });
    let table = minion.table();
    for (master, id) in [(&alpha, "alpha_master"), (&beta, "beta_master")] {
        let address = format!("127.0.0.1:{}", master.port());
        let line = table
            .lines()
            .find(|l| l.starts_with(&address))
            .unwrap_or_default();
        assert!(
            line.contains("joined") && line.contains(id) && line.contains("yes"),
            "{table}"
        );
    }

    // alpha stops: a request sent at once still reaches beta (failed over when alpha's
    // session goes, or sent there once alpha is lost); presence says alpha is lost.
    let watcher = rt.block_on(Yard::attach(
        &minion,
        "watcher",
        json!({"shares": ["presence"]}),
    ));
    assert_eq!(alpha.terminate(), Some(0));
    rt.block_on(async {
        ask(&asker, json!(null), 4).await;
        let got = b_req.recv().await;
        assert_eq!(got["load"]["n"], 4, "{got}");
    });
    wait_for(LIMIT, "alpha lost", || {
        masters_of(&minion)
            .first()
            .is_some_and(|m| m["allowed"] == false)
    });
    rt.block_on(async {
        ask(&asker, json!(null), 5).await;
        assert_eq!(b_req.recv().await["load"]["n"], 5);
        // Named to the stopped master: an error, not silence.
        ask(&asker, json!("alpha_master"), 6).await;
        let err = asker.recv().await;
        assert_eq!(err["load"]["kind"], "unknown_estate", "{err}");
        loop {
            let change = watcher.recv().await;
            assert_ne!(
                change["load"],
                json!({"change": "lost", "id": "beta_master"})
            );
            if change["load"] == json!({"change": "lost", "id": "alpha_master"}) {
                break;
            }
        }
    });
    let status = minion.status().unwrap();
    eprintln!("routing after alpha stopped: {}", status["routing"]);
    assert_eq!(
        status["join"]["state"], "joined",
        "beta still joined: {status}"
    );

    // alpha comes back: the minion rejoins it, and upstream prefers it again.
    alpha.restart();
    wait_for(LIMIT, "alpha back", || master_allowed(&minion, 0));
    rt.block_on(async {
        let again = Yard::attach(&alpha, "req2", json!({"shares": ["req"]})).await;
        ask(&asker, json!(null), 7).await;
        assert_eq!(again.recv().await["load"]["n"], 7);
    });
    drop(worker);
}

/// One master rejecting the minion and one never answering hold up neither the master that
/// accepts it nor each other; SIGHUP asks the rejecting master again, and once it accepts,
/// upstream requests prefer it (it comes first in the configuration).
#[test]
fn a_rejecting_and_a_silent_master_do_not_hold_up_the_others() {
    let site = Site::new();
    site.autoreject("alpha", "mm\n");
    let alpha = site.master_in("alpha", "id: alpha_master\n");
    let beta = site.master_in("beta", "id: beta_master\nauto_accept: True\n");
    // A port that never answers (held by the test for its whole run).
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let masters = master_list(&[alpha.port(), silent_port, beta.port()]);
    let minion = site.minion_of("mm", &masters, "");
    wait_for(LIMIT, "mm joined to beta, rejected by alpha", || {
        let m = masters_of(&minion);
        m.len() == 3 && m[0]["state"] == "rejected" && master_allowed(&minion, 2)
    });
    assert!(alpha.pki.join("minions_rejected/mm").exists());
    let status = minion.status().unwrap();
    assert_eq!(status["join"]["state"], "joined", "{status}");
    let silent_entry = &status["masters"][1];
    assert_eq!(silent_entry["state"], "joining", "{status}");
    assert_eq!(silent_entry["allowed"], false, "{status}");
    assert_eq!(silent_entry["id"], Value::Null, "{status}");
    let attempts = |i: usize| masters_of(&minion)[i]["attempts"].as_u64().unwrap();
    let (alpha_attempts, beta_attempts) = (attempts(0), attempts(2));

    let rt = runtime();
    let (asker, a_req, b_req) = rt.block_on(async {
        let asker = Yard::attach(&minion, "asker", json!({"shares": ["ret"]})).await;
        let a_req = Yard::attach(&alpha, "req", json!({"shares": ["req"]})).await;
        let b_req = Yard::attach(&beta, "req", json!({"shares": ["req"]})).await;
        ask(&asker, json!(null), 1).await;
        assert_eq!(b_req.recv().await["load"]["n"], 1);
        (asker, a_req, b_req)
    });

    // SIGHUP: one more attempt with alpha (rejected again); beta's session is untouched.
    minion.signal("-HUP");
    wait_for(LIMIT, "one more attempt with alpha", || {
        let m = masters_of(&minion);
        m[0]["state"] == "rejected" && m[0]["attempts"].as_u64() == Some(alpha_attempts + 1)
    });
    assert_eq!(attempts(2), beta_attempts, "beta was not joined again");
    assert!(master_allowed(&minion, 2));

    // salt-key -a mm on alpha (from rejected), then SIGHUP: alpha joins and comes first.
    fs::rename(
        alpha.pki.join("minions_rejected/mm"),
        accepted(&alpha, "mm"),
    )
    .unwrap();
    minion.signal("-HUP");
    wait_for(LIMIT, "alpha allows mm after SIGHUP", || {
        master_allowed(&minion, 0)
    });
    rt.block_on(async {
        ask(&asker, json!(null), 2).await;
        assert_eq!(a_req.recv().await["load"]["n"], 2);
        ask(&asker, json!("beta_master"), 3).await;
        assert_eq!(
            b_req.recv().await["load"]["n"],
            3,
            "n = 2 went to alpha only"
        );
    });
    let m = masters_of(&minion);
    assert_eq!(
        m[1]["state"], "joining",
        "the silent master is still tried: {m:?}"
    );
    assert!(m[1]["attempts"].as_u64() >= Some(1), "{m:?}");
}

/// Two masters with one id (the default `<hostname>_master` of two masters on one host): the
/// minion joins one of them and says why it cannot join the other.
#[test]
fn two_masters_with_one_id_are_reported() {
    let site = Site::new();
    let alpha = site.master_in("alpha", "auto_accept: True\n");
    let beta = site.master_in("beta", "auto_accept: True\n");
    let masters = master_list(&[alpha.port(), beta.port()]);
    let minion = site.minion_of("mm", &masters, "");
    wait_for(LIMIT, "the id clash reported", || {
        log_lines(&minion, "another master has this master's id") >= 1
    });
    let joined = masters_of(&minion)
        .iter()
        .filter(|m| m["state"] == "joined")
        .count();
    assert_eq!(joined, 1, "{:?}", masters_of(&minion));
}

/// Salt's `master_finger` with real daemons: the minion takes the master's key only when its
/// fingerprint is the one `salt-raet-master --finger` prints. A key trusted on first use
/// before the pin was set is checked again at start-up and forgotten; a refused key is not
/// kept (the right pin joins after a restart, the keep's pending decision answered by the
/// minion itself).
#[test]
fn master_finger_pins_the_masters_key() {
    let site = Site::new();
    let master = site.master("auto_accept: True\n");
    let out = std::process::Command::new(bin("salt-raet-master"))
        .arg("-c")
        .arg(&master.etc)
        .arg("--finger")
        .output()
        .unwrap();
    let printed = String::from_utf8(out.stdout).unwrap();
    let finger = printed
        .strip_prefix("Local Keys:\nraet:  ")
        .unwrap_or_else(|| panic!("{printed}"))
        .trim_end()
        .to_owned();
    // Another fingerprint: the first pair changed.
    let first = if finger.starts_with("00") { "01" } else { "00" };
    let wrong = format!("{first}{}", &finger[2..]);
    // No pin: the master's key is trusted on first use.
    let mut minion = site.minion("p1", master.port());
    wait_for(LIMIT, "p1 allowed", || allowed(&master, "p1"));
    let conf = minion.etc.join("minion");
    let base = fs::read_to_string(&conf).unwrap();

    // The wrong pin: the trusted key is forgotten, the master's key refused.
    fs::write(&conf, format!("{base}master_finger: '{wrong}'\n")).unwrap();
    minion.restart();
    wait_for(LIMIT, "p1 refusing its master", || {
        join_state(&minion).is_some_and(|(state, _)| state == "rejected")
    });
    assert_eq!(
        log_lines(&minion, "forgetting a master key accepted before"),
        1
    );
    let refusal = format!("its key's fingerprint {finger} is not master_finger {wrong}");
    assert_eq!(log_lines(&minion, &refusal), 1, "{}", log_text(&minion));
    assert_eq!(
        log_lines(
            &minion,
            "this daemon refused the master's key: not the pinned one"
        ),
        1,
        "{}",
        log_text(&minion)
    );
    assert!(!master_allowed(&minion, 0));
    // The keep is written behind the road (in order, by its writer thread): the refusal's
    // record goes away soon after the rejection shows.
    let roles = minion.pki.join("raet/role/remote");
    wait_for(LIMIT, "the refusal not kept", || {
        fs::read_dir(&roles).map_or(true, |mut d| d.next().is_none())
    });

    // The right pin (as printed, in capitals too): the minion accepts the master's key.
    let pinned = finger.to_ascii_uppercase();
    fs::write(&conf, format!("{base}master_finger: '{pinned}'\n")).unwrap();
    minion.restart();
    wait_for(LIMIT, "p1 allowed with the pinned key", || {
        master_allowed(&minion, 0)
    });
    assert_eq!(
        log_lines(&minion, "the master's key is master_finger's: accepted"),
        1
    );
    assert_eq!(log_lines(&minion, &refusal), 1, "no other refusal");
}

/// The master restarted while the minion is stopped (so that no return reaches it before a
/// yard serves their share), with yard `name` of share `ret` attached.
fn restart_with_collector(
    master: &mut Daemon,
    minion: &Daemon,
    rt: &tokio::runtime::Runtime,
    name: &str,
) -> Yard {
    minion.signal("-STOP");
    master.restart();
    wait_for(LIMIT, "the master's status", || master.status().is_some());
    let collector = rt.block_on(Yard::attach(master, name, json!({"shares": ["ret"]})));
    minion.signal("-CONT");
    collector
}

/// The numbers of the next `count` returns to `collector` (presence changes skipped), sorted;
/// no other return may follow within half a second.
async fn collect(collector: &Yard, count: u64) -> Vec<u64> {
    let mut got = Vec::new();
    let returns = |msg: &Value| msg["route"]["src"][2] != "presence";
    while got.len() < count as usize {
        let msg = collector.recv().await;
        if returns(&msg) {
            got.push(msg["load"]["n"].as_u64().unwrap());
        }
    }
    while let Some(extra) = collector.recv_within(Duration::from_millis(500)).await {
        assert!(!returns(&extra), "each return once: {extra}");
    }
    got.sort_unstable();
    got
}

/// A master crash loses none of the minion's returns: those in flight when it died are sent
/// again in the session after its restart, those sent while it was down and already lost
/// wait for its return (bounded by `raet_message_timeout`); each arrives once. With the
/// master gone for longer than the timeout, a return fails loudly back to its sender.
#[test]
fn returns_survive_a_master_crash_and_fail_loudly_when_it_stays_down() {
    let site = Site::new();
    let mut master = site.master("auto_accept: True\n");
    master.pin_port();
    let minion = site.minion_with("r1", master.port(), "raet_message_timeout: 6\n");
    wait_for(LIMIT, "minion allowed", || master_allowed(&minion, 0));
    let rt = runtime();
    let worker = rt.block_on(Yard::attach(&minion, "worker", json!({"shares": ["job"]})));
    let send = |range: std::ops::Range<u64>| {
        rt.block_on(async {
            for n in range {
                worker.send(json!(null), "", "ret", json!({"n": n})).await;
            }
        });
    };

    // In flight: sent just after the crash, while the minion still has its session.
    master.kill();
    send(0..10);
    let collector = restart_with_collector(&mut master, &minion, &rt, "collector1");
    assert_eq!(
        rt.block_on(collect(&collector, 10)),
        (0..10).collect::<Vec<_>>()
    );

    // Held: sent once the minion knows the master is lost.
    master.kill();
    wait_for(LIMIT, "the master lost", || !master_allowed(&minion, 0));
    send(10..30);
    let collector = restart_with_collector(&mut master, &minion, &rt, "collector2");
    rt.block_on(async {
        assert_eq!(collect(&collector, 20).await, (10..30).collect::<Vec<_>>());
        let quiet = worker.recv_within(Duration::from_secs(1)).await;
        assert!(quiet.is_none(), "no error came back: {quiet:?}");
    });

    master.kill();
    wait_for(LIMIT, "the master lost again", || {
        !master_allowed(&minion, 0)
    });
    let sent = Instant::now();
    rt.block_on(async {
        worker.send(json!(null), "", "ret", json!({"n": 99})).await;
        let failed = worker.recv().await;
        assert_eq!(failed["load"]["kind"], "send_failed", "{failed}");
    });
    let waited = sent.elapsed();
    eprintln!("the held return failed after {:.1} s", waited.as_secs_f64());
    assert!(
        waited >= Duration::from_secs(4) && waited < Duration::from_secs(15),
        "{waited:?}"
    );
}
