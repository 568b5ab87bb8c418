//! The fan-out phase of `raet swarm`: a yard on the master's lane publishes one message of
//! each size to every minion (`dst` estate `"*"`, as Salt's publisher does) and the phase
//! times until every minion road has received it, sampling the master's RSS meanwhile.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use raet::lane::LaneStack;
use raet::stack::RoadStack;
use salt_raet::envelope::{lane_dir, LANE, MANOR};
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

use super::{cpu_time, load, rss_kib};

/// The publishing yard's name on the master's lane.
const YARD: &str = "swarmpub";

/// A minion's receipt of a fan-out message: (minion index, round).
type Got = (usize, u64);

/// Starts a task per minion road that reports each fan-out message it receives.
pub(super) fn listen(roads: &[RoadStack]) -> mpsc::UnboundedReceiver<Got> {
    let (got, got_rx) = mpsc::unbounded_channel();
    for (index, road) in roads.iter().enumerate() {
        let (road, got) = (road.clone(), got.clone());
        tokio::spawn(async move {
            while let Some((_, _, body)) = road.recv().await {
                let round = body
                    .get("load")
                    .and_then(|l| l.get("round"))
                    .and_then(Value::as_u64);
                if let Some(round) = round {
                    let _ = got.send((index, round));
                }
            }
        });
    }
    got_rx
}

/// Publishes one message of each of `sizes` (bytes of padding) to all `n` minions from a yard
/// on the lane in `sock_dir`, one after the other, each waited for until every minion has it
/// or `limit`; prints a line per size. Whether every one reached every minion.
pub(super) async fn fan_out(
    sock_dir: &Path,
    pid: u32,
    n: usize,
    sizes: &[usize],
    got: &mut mpsc::UnboundedReceiver<Got>,
    limit: Duration,
) -> Result<bool, String> {
    let lane = LaneStack::bind(lane_dir(sock_dir), LANE, YARD)
        .await
        .map_err(|e| format!("fan-out yard: {e}"))?;
    send(
        &lane,
        json!([null, MANOR, "register"]),
        json!({"shares": []}),
    )
    .await?;
    tokio::time::timeout(limit, lane.recv())
        .await
        .map_err(|_| "fan-out yard: no registration answer")?
        .map_err(|e| format!("fan-out yard: {e}"))?;
    let mut complete = true;
    for (round, &size) in (1u64..).zip(sizes) {
        let rss_before = rss_kib(pid).unwrap_or(0);
        let cpu_before = cpu_time(&pid.to_string()).unwrap_or_default();
        let load_json = json!({"round": round, "pad": "x".repeat(size)});
        let start = Instant::now();
        send(&lane, json!(["*", null, "job"]), load_json).await?;
        let (mut have, mut copies) = (BTreeSet::new(), 0u64);
        let mut peak = rss_before;
        let mut sample = tokio::time::interval(Duration::from_millis(50));
        while have.len() < n && start.elapsed() < limit {
            tokio::select! {
                Some((index, r)) = got.recv() => if r == round {
                    copies += 1;
                    have.insert(index);
                },
                _ = sample.tick() => peak = peak.max(rss_kib(pid).unwrap_or(0)),
            }
        }
        let took = start.elapsed();
        let cpu = cpu_time(&pid.to_string())
            .unwrap_or_default()
            .saturating_sub(cpu_before);
        let errors = drain_errors(&lane).await;
        println!(
            "fan-out {size} B: {}/{n} minions in {:.2} s ({} copies), master CPU {:.2} s ({:.2} cores), master RSS {:.1} -> peak {:.1} MiB, {errors} error replies within 0.2 s; {}",
            have.len(),
            took.as_secs_f64(),
            copies,
            cpu.as_secs_f64(),
            cpu.as_secs_f64() / took.as_secs_f64().max(1e-9),
            rss_before as f64 / 1024.0,
            peak as f64 / 1024.0,
            load()
        );
        complete &= have.len() == n;
    }
    Ok(complete)
}

/// Sends `load` from the fan-out yard to `dst` through the master daemon.
async fn send(lane: &LaneStack, dst: Value, load: Value) -> Result<(), String> {
    let msg = json!({"route": {"src": [null, YARD, null], "dst": dst}, "load": load});
    let body: Map<String, Value> = msg.as_object().cloned().unwrap_or_default();
    lane.send(MANOR, &body)
        .await
        .map_err(|e| format!("fan-out yard: {e}"))
}

/// Error replies the daemon sent the fan-out yard (failed deliveries), counted.
async fn drain_errors(lane: &LaneStack) -> usize {
    let mut errors = 0;
    while let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(200), lane.recv()).await {
        errors += 1;
    }
    errors
}
