//! A small real-socket swarm (issue 11): `raet swarm` with 300 minion roads, each on its own
//! loopback address and bound and joined by salt-raet-minion's own code, against this
//! build's `salt-raet-master`: the join storm, a short steady window, `status` queries, the
//! fan-out of a 1 KB and a 100 KB message to every minion, and a `kill -9` and restart of
//! the master all complete (every minion allowed in its own view
//! and in the master's status, before and after the restart). The figures at scale come
//! from `scripts/swarm-bench.sh N`.

use std::process::Command;

use salt_raet_testkit::bin;

#[test]
fn three_hundred_minions_join_at_once_and_come_back_after_a_master_crash() {
    let out = Command::new(bin("raet"))
        .args([
            "swarm",
            "--minions",
            "300",
            "--window",
            "5",
            "--queries",
            "5",
        ])
        .args(["--limit", "90", "--master"])
        .arg(bin("salt-raet-master"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "raet swarm: {}\n{stdout}\n{stderr}",
        out.status
    );
    let storm = stdout
        .lines()
        .find(|l| l.starts_with("storm:"))
        .unwrap_or_else(|| panic!("no storm line:\n{stdout}"));
    assert!(
        storm.contains("300/300 joined+allowed (minions)")
            && storm.contains("300/300 allowed in the master's status"),
        "{storm}"
    );
    for size in [1024, 102_400] {
        let head = format!("fan-out {size} B: 300/300 minions");
        assert!(
            stdout.lines().any(|l| l.starts_with(&head)),
            "no {head:?}:\n{stdout}"
        );
    }
}
