//! Heartbeat CPU cost of the real `salt-raet-master` daemon with 100 minion roads.
//!
//! ```text
//! cargo run --release -p salt-raet-master --example heartbeat_cpu -- [PERIOD_S WINDOW_S]...
//! ```
//!
//! Starts the `salt-raet-master` binary built next to this example (`open_mode`, loopback,
//! ports 28900-28901 and ephemeral ones) once per alive period, joins 100 minion roads to it
//! from this process (configured as `salt-raet-minion` configures its road), then reads the CPU
//! time of the master process (`/proc/<pid>/task/*/schedstat`) and of this process over a
//! window. Prints one line per period: the master idle (no minion) and with 100 minions, and the
//! 100 minion roads together. Default: `10 60 1 20` (10 s period for 60 s, 1 s for 20 s).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use raet::keep::{AutoMode, MemKeep};
use raet::road::RoadConfig;
use raet::stack::RoadStack;
use salt_raet::daemon::presence_timers;
use salt_raet::identity::Identity;

const MINIONS: usize = 100;

/// CPU time of every thread of process `pid` (`self` for this one).
fn cpu_time(pid: &str) -> Duration {
    let mut total = 0u64;
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten();
    for task in tasks.flatten() {
        if let Ok(stat) = std::fs::read_to_string(task.path().join("schedstat")) {
            total += stat
                .split_whitespace()
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Duration::from_nanos(total)
}

/// CPU seconds per second of `pid` over `window` (this is a measurement window).
async fn cpu_rate(pids: &[&str], window: Duration) -> Vec<f64> {
    let before: Vec<Duration> = pids.iter().map(|p| cpu_time(p)).collect();
    tokio::time::sleep(window).await;
    pids.iter()
        .zip(before)
        .map(|(p, b)| (cpu_time(p) - b).as_secs_f64() / window.as_secs_f64())
        .collect()
}

fn master_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/examples/heartbeat_cpu -> target/<profile>/salt-raet-master
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    dir.join("salt-raet-master")
}

fn start_master(dir: &Path, port: u16, period: f64) -> Child {
    let etc = dir.join("etc");
    std::fs::create_dir_all(&etc).expect("etc");
    std::fs::write(
        etc.join("master"),
        format!(
            "interface: 127.0.0.1\nraet_port: {port}\npki_dir: {d}/pki\nsock_dir: {d}/sock\n\
             log_file: {d}/log\nlog_level: info\nopen_mode: True\nraet_alive_period: {period}\n\
             autosign_file: {d}/as\nautoreject_file: {d}/ar\n",
            d = dir.display()
        ),
    )
    .expect("config");
    Command::new(master_bin())
        .arg("-c")
        .arg(&etc)
        .stderr(Stdio::null())
        .spawn()
        .expect("salt-raet-master (build it: cargo build --release -p salt-raet-master)")
}

async fn join_all(minions: &[RoadStack], master: SocketAddr) -> usize {
    let joins: Vec<_> = minions
        .iter()
        .map(|m| {
            let m = m.clone();
            tokio::spawn(async move {
                // The daemon decides joins one by one (a pki file write each): with 100 at once,
                // some joins time out and are retried, as salt-raet-minion retries them.
                for _ in 0..30 {
                    if m.join(master).await.is_ok() {
                        return true;
                    }
                }
                false
            })
        })
        .collect();
    let mut joined = 0;
    for join in joins {
        if matches!(join.await, Ok(true)) {
            joined += 1;
        }
    }
    joined
}

async fn measure(port: u16, period: f64, window: Duration) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut master = start_master(dir.path(), port, period);
    let pid = master.id().to_string();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    // Let the master start (a measurement setup, not a synchronisation under test).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = cpu_rate(&[&pid], window.min(Duration::from_secs(20))).await[0];
    let timers = presence_timers(Duration::from_secs_f64(period));
    let mut minions = Vec::new();
    for i in 0..MINIONS {
        let mut config = RoadConfig::new(format!("hb{i}"), SocketAddr::from(([127, 0, 0, 1], 0)));
        config.auto = AutoMode::Once;
        config.timers = timers.clone();
        let keys = Identity::generate(&mut rand_core::OsRng).into_keys();
        let road = RoadStack::bind(config, Some(keys), Box::new(MemKeep::new()))
            .await
            .expect("minion road");
        minions.push(road);
    }
    let started = Instant::now();
    let joined = join_all(&minions, addr).await;
    let join_time = started.elapsed();
    // One period for the joins' aftermath (first alives) to pass before measuring.
    tokio::time::sleep(Duration::from_secs_f64(period)).await;
    let rates = cpu_rate(&[&pid, "self"], window).await;
    let lost = minions.len() - {
        let mut alive = 0;
        for m in &minions {
            if m.remotes().await.iter().any(|r| r.alive != Some(false)) {
                alive += 1;
            }
        }
        alive
    };
    println!(
        "period {period} s, window {} s: master idle {:.5} CPU s/s; with {joined}/{MINIONS} minions \
         (joined in {:.2} s): master {:.5} CPU s/s ({:.3} ms per minion per period), \
         100 minion roads {:.5} CPU s/s; minions lost: {lost}",
        window.as_secs(),
        idle,
        join_time.as_secs_f64(),
        rates[0],
        rates[0] * period * 1000.0 / MINIONS as f64,
        rates[1],
    );
    for m in minions {
        m.shutdown().await;
    }
    let _ = master.kill();
    let _ = master.wait();
}

fn main() {
    let args: Vec<f64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let pairs: Vec<(f64, f64)> = if args.len() >= 2 {
        args.chunks(2)
            .filter(|c| c.len() == 2)
            .map(|c| (c[0], c[1]))
            .collect()
    } else {
        vec![(10.0, 60.0), (1.0, 20.0)]
    };
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    for (i, (period, window)) in pairs.into_iter().enumerate() {
        let port = 28900 + u16::try_from(i).unwrap_or(0);
        runtime.block_on(measure(port, period, Duration::from_secs_f64(window)));
    }
}
