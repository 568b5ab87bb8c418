//! `raet bench`: throughput of 1 KiB messages and the time to deliver one
//! 1 MB message over loopback UDP, Rust to Rust and, with `--ref-python`,
//! Rust to the reference and reference to reference, with the ratios.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::Args;
use raet::road::Uid;
use raet::stack::{RoadStack, StackError};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tracing::{debug, warn};

use crate::demo::start;
use crate::road::join;
use crate::{blob, EXIT_FAILED, EXIT_OK, EXIT_TIMEOUT};

/// Options of `raet bench`.
#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Number of small messages in the throughput run (Rust sender).
    #[arg(long, value_name = "N", default_value_t = 5000)]
    pub count: usize,
    /// Size of a small message's blob, in characters.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub size: usize,
    /// Most small messages in flight (sent, not yet acknowledged) at once.
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub window: usize,
    /// Size of the large message's blob, in characters.
    #[arg(long, value_name = "N", default_value_t = 1_000_000)]
    pub big: usize,
    /// Large-message deliveries per run (the median is reported).
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub repeat: usize,
    /// Python of the reference venv (tests/interop/setup-ref.sh): also measure the reference.
    #[arg(long, value_name = "PATH")]
    pub ref_python: Option<PathBuf>,
    /// The reference peer script.
    #[arg(long, value_name = "PATH",
          default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/interop/refpeer.py"))]
    pub refpeer: PathBuf,
    /// Number of small messages when the reference sends them (it is slower).
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub ref_count: usize,
    /// Give up on one measurement after this many seconds (exit 2).
    #[arg(long, value_name = "S", default_value_t = 300)]
    pub timeout: u64,
}

/// Why a measurement did not complete.
#[derive(Debug, thiserror::Error)]
enum BenchError {
    #[error(transparent)]
    Stack(#[from] StackError),
    #[error("reference peer: {0}")]
    Ref(String),
    #[error("timed out")]
    Timeout,
}

/// One line of the result table.
struct Row {
    label: &'static str,
    count: usize,
    throughput: Duration,
    big: Duration,
}

impl Row {
    fn msgs_per_sec(&self) -> f64 {
        self.count as f64 / self.throughput.as_secs_f64().max(1e-9)
    }
}

/// Runs `raet bench`; returns the exit status.
pub async fn run(args: BenchArgs) -> ExitCode {
    println!(
        "raet bench: {} messages of {} characters ({} in flight), one message of {} characters x{}; loopback UDP, every packet signed",
        args.count, args.size, args.window, args.big, args.repeat
    );
    let mut rows = Vec::new();
    let result = async {
        rows.push(rust_to(&args, None).await?);
        if let Some(python) = &args.ref_python {
            rows.push(rust_to(&args, Some(python)).await?);
            rows.push(ref_to_ref(&args, python).await?);
        }
        Ok::<(), BenchError>(())
    }
    .await;
    print_table(&args, &rows);
    match result {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(BenchError::Timeout) => {
            println!("benchmark timed out");
            ExitCode::from(EXIT_TIMEOUT)
        }
        Err(e) => {
            println!("benchmark failed: {e}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

fn print_table(args: &BenchArgs, rows: &[Row]) {
    println!();
    println!(
        "{:<16} {:>9} {:>13} {:>16} {:>10}",
        "path", "messages", "msgs/s", "1 message time", "MB/s"
    );
    for row in rows {
        println!(
            "{:<16} {:>9} {:>13.0} {:>13.1} ms {:>10.2}",
            row.label,
            row.count,
            row.msgs_per_sec(),
            row.big.as_secs_f64() * 1e3,
            args.big as f64 / row.big.as_secs_f64().max(1e-9) / 1e6
        );
    }
    if let (Some(rust), Some(reference)) =
        (rows.first(), rows.iter().find(|r| r.label == "ref -> ref"))
    {
        println!();
        println!(
            "ratio Rust/ref (rust -> rust vs ref -> ref): {:.1}x messages/s, {:.1}x faster for the large message",
            rust.msgs_per_sec() / reference.msgs_per_sec().max(1e-9),
            reference.big.as_secs_f64() / rust.big.as_secs_f64().max(1e-9)
        );
    }
}

async fn bounded<T>(
    args: &BenchArgs,
    work: impl std::future::Future<Output = Result<T, BenchError>>,
) -> Result<T, BenchError> {
    tokio::time::timeout(Duration::from_secs(args.timeout), work)
        .await
        .map_err(|_| BenchError::Timeout)?
}

/// A Rust sender to a Rust receiver in this process (`python` None) or to a
/// reference receiver in a subprocess.
async fn rust_to(args: &BenchArgs, python: Option<&PathBuf>) -> Result<Row, BenchError> {
    let sender = start("bench-tx", false).await?;
    let (receiver, mut child) = match python {
        None => {
            let receiver = start("bench-rx", true).await?;
            let addr = receiver.local_addr();
            // Drain the receiver so its queue does not grow.
            let drain = receiver.clone();
            tokio::spawn(async move { while drain.recv().await.is_some() {} });
            (addr, None)
        }
        Some(python) => {
            let port = free_port()?;
            let expect = (args.count + args.repeat).to_string();
            let timeout = args.timeout.to_string();
            let child = spawn_ref(
                python,
                &args.refpeer,
                &[
                    "--name",
                    "ref-rx",
                    "--port",
                    &port.to_string(),
                    "--main",
                    "--auto",
                    "always",
                    "--expect",
                    &expect,
                    "--timeout",
                    &timeout,
                ],
            )?;
            (SocketAddr::from((Ipv4Addr::LOCALHOST, port)), Some(child))
        }
    };
    let result = bounded(args, async {
        let to = join(&sender, receiver).await?;
        let throughput = pipeline(&sender, to, args).await?;
        let mut bigs = Vec::new();
        for _ in 0..args.repeat {
            let start = Instant::now();
            sender.transmit(to, blob(args.big)).await?;
            bigs.push(start.elapsed());
        }
        Ok((throughput, median(bigs)))
    })
    .await;
    sender.shutdown().await;
    if let Some(child) = child.as_mut() {
        stop(child).await;
    }
    let (throughput, big) = result?;
    Ok(Row {
        label: if python.is_some() {
            "rust -> ref"
        } else {
            "rust -> rust"
        },
        count: args.count,
        throughput,
        big,
    })
}

/// Sends `args.count` small messages with up to `args.window` in flight;
/// returns the time until the last was acknowledged.
async fn pipeline(stack: &RoadStack, to: Uid, args: &BenchArgs) -> Result<Duration, StackError> {
    let body = blob(args.size);
    let mut in_flight = VecDeque::with_capacity(args.window);
    let start = Instant::now();
    for _ in 0..args.count {
        if in_flight.len() >= args.window.max(1) {
            if let Some(oldest) = in_flight.pop_front() {
                oldest.await?;
            }
        }
        in_flight.push_back(stack.transmit(to, body.clone()));
    }
    for delivery in in_flight {
        delivery.await?;
    }
    Ok(start.elapsed())
}

/// The reference sending to the reference, timed from its `sent` event line
/// to its `done` event line (all messages acknowledged).
async fn ref_to_ref(args: &BenchArgs, python: &PathBuf) -> Result<Row, BenchError> {
    let size = args.size.to_string();
    let mut sizes = Vec::new();
    for _ in 0..args.ref_count {
        sizes.extend(["--size", size.as_str()]);
    }
    let throughput = bounded(args, ref_pair(args, python, args.ref_count, &sizes)).await?;
    let big = args.big.to_string();
    let mut bigs = Vec::new();
    for _ in 0..args.repeat {
        bigs.push(bounded(args, ref_pair(args, python, 1, &["--size", &big])).await?);
    }
    Ok(Row {
        label: "ref -> ref",
        count: args.ref_count,
        throughput,
        big: median(bigs),
    })
}

/// One reference receiver (main) and one reference sender joining it and
/// sending the messages `sends` describes; the sender's sent-to-done time.
async fn ref_pair(
    args: &BenchArgs,
    python: &PathBuf,
    expect: usize,
    sends: &[&str],
) -> Result<Duration, BenchError> {
    let (rx_port, tx_port) = (free_port()?, free_port()?);
    let timeout = args.timeout.to_string();
    let mut receiver = spawn_ref(
        python,
        &args.refpeer,
        &[
            "--name",
            "ref-rx",
            "--port",
            &rx_port.to_string(),
            "--main",
            "--auto",
            "always",
            "--expect",
            &expect.to_string(),
            "--timeout",
            &timeout,
        ],
    )?;
    let join = format!("127.0.0.1:{rx_port}");
    let mut sender_args = vec![
        "--name",
        "ref-tx",
        "--port",
        &tx_port.to_string(),
        "--join",
        &join,
        "--timeout",
        &timeout,
    ]
    .into_iter()
    .map(str::to_owned)
    .collect::<Vec<_>>();
    sender_args.extend(sends.iter().map(|s| (*s).to_owned()));
    let sender_args: Vec<&str> = sender_args.iter().map(String::as_str).collect();
    let mut sender = spawn_ref(python, &args.refpeer, &sender_args)?;
    let timed = sent_to_done(&mut sender).await;
    stop(&mut sender).await;
    stop(&mut receiver).await;
    timed
}

/// Reads the reference sender's event lines: the time from `sent` to `done`.
async fn sent_to_done(child: &mut Child) -> Result<Duration, BenchError> {
    let stderr = child
        .stderr
        .take()
        .ok_or_else(|| BenchError::Ref("no stderr pipe".into()))?;
    let mut lines = BufReader::new(stderr).lines();
    let mut sent = None;
    while let Some(line) = lines
        .next_line()
        .await
        .map_err(|e| BenchError::Ref(format!("reading its stderr: {e}")))?
    {
        let now = Instant::now();
        let event = serde_json::from_str::<Value>(&line)
            .ok()
            .and_then(|v| v.get("event").and_then(Value::as_str).map(str::to_owned));
        match (event.as_deref(), sent) {
            (Some("sent"), _) => sent = Some(now),
            (Some("done"), Some(at)) => return Ok(now - at),
            (Some("timeout"), _) => return Err(BenchError::Ref(format!("timed out: {line}"))),
            _ => debug!(line, "reference peer"),
        }
    }
    Err(BenchError::Ref("exited before reporting done".into()))
}

fn spawn_ref(python: &PathBuf, refpeer: &PathBuf, args: &[&str]) -> Result<Child, BenchError> {
    Command::new(python)
        .arg(refpeer)
        .arg("road")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            BenchError::Ref(format!(
                "cannot run {} {}: {e}",
                python.display(),
                refpeer.display()
            ))
        })
}

/// Waits a moment for a reference peer to finish on its own, then kills it.
async fn stop(child: &mut Child) {
    // Keep reading its stderr so it cannot block on a full pipe.
    if let Some(stderr) = child.stderr.take() {
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                debug!(line, "reference peer");
            }
        });
    }
    if tokio::time::timeout(Duration::from_secs(3), child.wait())
        .await
        .is_err()
    {
        if let Err(e) = child.kill().await {
            warn!(error = %e, "could not stop a reference peer");
        }
    }
}

/// A currently free loopback UDP port (for the reference peers' fixed ports).
fn free_port() -> Result<u16, BenchError> {
    UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .map_err(|e| BenchError::Stack(StackError::Io(e)))
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times.get(times.len() / 2).copied().unwrap_or_default()
}
