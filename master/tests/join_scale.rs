//! Join time of 100 minions to one master, in one process over loopback UDP: the master's
//! road as the daemon configures it (main, `presence_timers`), the minions as
//! `salt-raet-minion` does (derived identities, acceptance `once`). The master accepts here
//! with the road's `always` (the daemon's pki decision is a file write per new minion, measured
//! by the daemon tests, not here). Prints the time; asserts every minion is allowed. Then
//! measures the CPU cost of heartbeats alone (the sleep is the measurement window, not a
//! synchronisation) and asserts nobody is lost meanwhile.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use raet::keep::{AutoMode, MemKeep};
use raet::road::RoadConfig;
use raet::stack::RoadStack;
use salt_raet::daemon::presence_timers;
use salt_raet::identity::Identity;

const MINIONS: usize = 100;
/// Alive period of the heartbeat measurement (short, to have many heartbeats to measure).
const PERIOD: Duration = Duration::from_millis(250);
/// How long heartbeats are measured.
const HEARTBEATS: Duration = Duration::from_secs(2);

/// CPU time of all threads of this process so far (`/proc/self/task/*/schedstat`, ns).
fn cpu_time() -> Duration {
    let mut total = 0u64;
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        // A thread may end while we read.
        if let Ok(stat) = std::fs::read_to_string(task.path().join("schedstat")) {
            total += stat
                .split_whitespace()
                .next()
                .unwrap()
                .parse::<u64>()
                .unwrap();
        }
    }
    Duration::from_nanos(total)
}

#[test]
fn hundred_minions_join_one_master() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let timers = presence_timers(PERIOD);
        let mut config = RoadConfig::new("scale_master", SocketAddr::from(([127, 0, 0, 1], 0)));
        config.main = true;
        config.auto = AutoMode::Always;
        config.timers = timers.clone();
        let keys = Identity::generate(&mut rand_core::OsRng).into_keys();
        let master = RoadStack::bind(config, Some(keys), Box::new(MemKeep::new()))
            .await
            .unwrap();
        let mut minions = Vec::new();
        for i in 0..MINIONS {
            let mut config =
                RoadConfig::new(format!("minion{i}"), SocketAddr::from(([127, 0, 0, 1], 0)));
            config.auto = AutoMode::Once;
            config.timers = timers.clone();
            let keys = Identity::generate(&mut rand_core::OsRng).into_keys();
            minions.push(
                RoadStack::bind(config, Some(keys), Box::new(MemKeep::new()))
                    .await
                    .unwrap(),
            );
        }
        let started = Instant::now();
        let joins: Vec<_> = minions
            .iter()
            .map(|m| {
                let m = m.clone();
                let to = master.local_addr();
                tokio::spawn(async move { m.join(to).await })
            })
            .collect();
        let mut failed = 0;
        for join in joins {
            // A guard, not a synchronisation: a join that never resolves fails the test.
            let joined = tokio::time::timeout(Duration::from_secs(60), join).await;
            if !matches!(joined, Ok(Ok(Ok(_)))) {
                failed += 1;
            }
        }
        let took = started.elapsed();
        let allowed = master
            .remotes()
            .await
            .iter()
            .filter(|r| r.allowed == Some(true))
            .count();
        eprintln!(
            "{MINIONS} minions joined and allowed in {:.2} s (debug build, {failed} join calls failed)",
            took.as_secs_f64()
        );
        assert_eq!(allowed, MINIONS, "allowed on the master");

        // Heartbeats only: 101 roads in this process, alives every PERIOD each way.
        let (cpu, stats) = (cpu_time(), master.stats().await);
        tokio::time::sleep(HEARTBEATS).await;
        let sent = master.stats().await.get("tx_packets").copied().unwrap_or(0)
            - stats.get("tx_packets").copied().unwrap_or(0);
        let cpu = cpu_time() - cpu;
        let lost = master
            .remotes()
            .await
            .iter()
            .filter(|r| r.alive == Some(false))
            .count();
        eprintln!(
            "heartbeats of {MINIONS} minions every {} ms ({sent} master packets): {:.1} ms CPU per second (master and minions together, debug build)",
            PERIOD.as_millis(),
            cpu.as_secs_f64() * 1000.0 / HEARTBEATS.as_secs_f64()
        );
        assert_eq!(lost, 0, "no minion lost while all are running");
        for m in minions {
            m.shutdown().await;
        }
        master.shutdown().await;
    });
}
