//! A join flood against the real master (issue 10, finding 4): forged first contacts from
//! `raet flood` (fresh names and valid keys, 64 source addresses, 2,000 per second) cost the
//! master bounded memory, nothing in its keep and at most `raet_first_contacts` pending keys
//! in `minions_pre`; an accepted minion keeps exchanging messages and a new minion becomes
//! pending meanwhile. The full figures (60 s, CPU afterwards) come from
//! `scripts/flood-bench.sh`.

use std::fs;
use std::process::{Command, Stdio};
use std::time::Duration;

use salt_raet_testkit::*;
use serde_json::{json, Value};

/// The cap configured for the test.
const CAP: usize = 64;

/// Entries of `dir` whose name contains `needle`.
fn entries(dir: &std::path::Path, needle: &str) -> usize {
    fs::read_dir(dir).map_or(0, |d| {
        d.filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().contains(needle))
            .count()
    })
}

#[test]
fn a_join_flood_is_bounded_and_the_master_keeps_serving() {
    let site = Site::new();
    let master = site.master(&format!("raet_first_contacts: {CAP}\n"));
    let port = master.port();
    let m1 = site.minion("m1", port);
    accept_pending(&master, "m1");
    let master_id = master.estate();
    let rss_before = master.rss_kib();

    let flood = Command::new(bin("raet"))
        .args(["flood", "--to", &format!("127.0.0.1:{port}")])
        .args(["--rate", "2000", "--seconds", "8", "--sources", "64"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    // A new minion during the flood becomes pending within 10 s.
    let _legit = site.minion("legit", port);
    wait_for(Duration::from_secs(10), "the new minion pending", || {
        pending(&master, "legit").exists()
    });
    // The accepted minion exchanges messages both ways during the flood.
    runtime().block_on(async {
        let tester = Yard::attach(&master, "tester", json!({"shares": ["ret"]})).await;
        let worker = Yard::attach(&m1, "worker", json!({"shares": ["job"]})).await;
        for n in 0..5 {
            tester.send(json!("m1"), "", "job", json!({"n": n})).await;
            assert_eq!(worker.recv().await["load"]["n"], n);
            worker
                .send(json!(master_id), "", "ret", json!({"n": n}))
                .await;
            assert_eq!(tester.recv().await["load"]["n"], n);
        }
    });
    let out = flood.wait_with_output().unwrap();
    assert!(out.status.success());
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["sent"].as_u64() >= Some(15_000), "{report}");

    let status = master.status().unwrap();
    let counters = &status["road_counters"];
    assert!(
        counters["first_contact_rate_limited"].as_u64() > Some(10_000),
        "{counters}"
    );
    let junk = entries(&master.pki.join("minions_pre"), "flood-");
    assert!(junk <= CAP, "{junk} pending keys of the flood (cap {CAP})");
    assert_eq!(
        entries(&master.pki.join("raet"), "flood-")
            + entries(&master.pki.join("raet").join("remote"), "flood-"),
        0,
        "first contacts written to the keep"
    );
    let grown = master.rss_kib().saturating_sub(rss_before);
    assert!(grown <= 64 * 1024, "master RSS grew by {grown} KiB");
    assert!(allowed(&master, "m1"), "m1 lost its session");
}
