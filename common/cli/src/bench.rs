//! `raet bench`: throughput of 1 KiB messages and the time to deliver one
//! 1 MB message over loopback UDP, Rust to Rust and, with `--ref-python`,
//! Rust to the reference and reference to reference, with the ratios.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::Args;
use raet::crypto::Signer;
use raet::road::{Profile, Uid};
use raet::stack::{RoadStack, StackError};
use rand_core::OsRng;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tracing::{debug, warn};

use crate::demo::start_in;
use crate::road::join;
use crate::{blob, EXIT_FAILED, EXIT_OK, EXIT_TIMEOUT};

/// Options of `raet bench`.
#[derive(Args, Debug, Clone)]
pub(crate) struct BenchArgs {
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
          default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/interop/refpeer.py"))]
    pub refpeer: PathBuf,
    /// Number of small messages when the reference sends or receives them (it is slower).
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

/// Wall time of one ed25519 signature and one verification of a 1 KiB
/// datagram, averaged over a few hundred: the unit cost of every packet,
/// and a gauge of how fast this machine is at the moment.
fn signature_costs() -> (Duration, Duration) {
    const ROUNDS: u32 = 300;
    let signer = Signer::generate(&mut OsRng);
    let key = signer.verify_key();
    let datagram = [0x5a_u8; 1024];
    let start = Instant::now();
    let mut signature = [0u8; 64];
    for _ in 0..ROUNDS {
        signature = signer.sign(&datagram);
    }
    let sign = start.elapsed() / ROUNDS;
    let start = Instant::now();
    let valid = (0..ROUNDS).all(|_| key.verify(&datagram, &signature).is_ok());
    let verify = start.elapsed() / ROUNDS;
    if !valid {
        warn!("signature calibration: a valid signature did not verify");
    }
    (sign, verify)
}

/// How long something took: wall-clock time and, when this process did the
/// work, the CPU time its threads used meanwhile (on a shared machine the
/// wall time depends on the load; the CPU time much less).
#[derive(Debug, Clone, Copy, Default)]
struct Took {
    wall: Duration,
    cpu: Option<Duration>,
}

impl Took {
    /// Runs `work`, measuring it.
    async fn measure<T, E>(
        work: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<(T, Self), E> {
        let (wall, cpu) = (Instant::now(), cpu_time());
        let value = work.await?;
        let took = Self {
            wall: wall.elapsed(),
            cpu: cpu
                .zip(cpu_time())
                .map(|(before, after)| after.saturating_sub(before)),
        };
        Ok((value, took))
    }

    fn per_sec(&self, count: usize) -> f64 {
        count as f64 / self.wall.as_secs_f64().max(1e-9)
    }

    fn per_cpu_sec(&self, count: usize) -> Option<f64> {
        self.cpu
            .map(|cpu| count as f64 / cpu.as_secs_f64().max(1e-9))
    }
}

/// CPU time used so far by this process's live threads (Linux schedstat, ns).
fn cpu_time() -> Option<Duration> {
    let mut total = 0u64;
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        // A thread may have exited in between: skip it.
        let Ok(stat) = std::fs::read_to_string(task.path().join("schedstat")) else {
            continue;
        };
        total = total.saturating_add(stat.split_whitespace().next()?.parse::<u64>().ok()?);
    }
    Some(Duration::from_nanos(total))
}

/// One line of the result table.
struct Row {
    label: &'static str,
    count: usize,
    throughput: Took,
    big: Took,
}

/// Runs `raet bench`; returns the exit status.
pub(crate) async fn run(args: BenchArgs) -> ExitCode {
    println!(
        "raet bench: {} messages of {} characters ({} in flight), one message of {} characters x{}; loopback UDP; fast: the fast profile (session AEAD per packet, 64 KB datagrams), compat: the reference's (every packet signed)",
        args.count, args.size, args.window, args.big, args.repeat
    );
    // Wall times depend on what else runs: say how busy the machine is.
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        let load: Vec<&str> = load.split_whitespace().take(3).collect();
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        println!("load average {} on {cores} cores", load.join(" "));
    }
    let (sign, verify) = signature_costs();
    println!(
        "ed25519 here and now: sign {:.0} us, verify {:.0} us (a {}-character message is 2 signed segments and a signed done)",
        sign.as_secs_f64() * 1e6,
        verify.as_secs_f64() * 1e6,
        args.size
    );
    let mut rows = Vec::new();
    let result = async {
        rows.push(rust_to(&args, Peer::Rust(Profile::Auto)).await?);
        rows.push(rust_to(&args, Peer::Rust(Profile::Compat)).await?);
        if let Some(python) = &args.ref_python {
            rows.push(rust_to(&args, Peer::Reference(python)).await?);
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
    let cpu =
        |d: Option<Duration>| d.map_or("-".to_owned(), |d| format!("{:.0}", d.as_secs_f64() * 1e3));
    println!();
    println!(
        "{:<20} {:>8} {:>9} {:>9} {:>12} | {:>10} {:>9} {:>8}",
        "path", "messages", "msgs/s", "CPU ms", "msgs/CPU-s", "1 msg ms", "CPU ms", "MB/s"
    );
    for row in rows {
        println!(
            "{:<20} {:>8} {:>9.0} {:>9} {:>12} | {:>10.1} {:>9} {:>8.2}",
            row.label,
            row.count,
            row.throughput.per_sec(row.count),
            cpu(row.throughput.cpu),
            row.throughput
                .per_cpu_sec(row.count)
                .map_or("-".to_owned(), |r| format!("{r:.0}")),
            row.big.wall.as_secs_f64() * 1e3,
            cpu(row.big.cpu),
            row.big.per_sec(args.big) / 1e6,
        );
    }
    println!("(CPU: this process's threads, both stacks for rust -> rust, the sender only for rust -> ref)");
    let Some(reference) = rows.iter().find(|r| r.label == "ref -> ref") else {
        return;
    };
    for rust in rows.iter().filter(|r| r.label.starts_with("rust -> rust")) {
        println!(
            "ratio {} / ref -> ref: {:.1}x the messages per second, {:.1}x faster for the large message",
            rust.label,
            rust.throughput.per_sec(rust.count) / reference.throughput.per_sec(reference.count).max(1e-9),
            reference.big.wall.as_secs_f64() / rust.big.wall.as_secs_f64().max(1e-9)
        );
    }
}

/// The receiver of a measurement.
#[derive(Clone, Copy)]
enum Peer<'a> {
    /// A Rust stack in this process, both stacks in this profile.
    Rust(Profile),
    /// The reference, run by this Python.
    Reference(&'a PathBuf),
}

async fn bounded<T>(
    args: &BenchArgs,
    work: impl std::future::Future<Output = Result<T, BenchError>>,
) -> Result<T, BenchError> {
    tokio::time::timeout(Duration::from_secs(args.timeout), work)
        .await
        .map_err(|_| BenchError::Timeout)?
}

/// A Rust sender to a Rust receiver in this process or to a reference receiver in a
/// subprocess.
async fn rust_to(args: &BenchArgs, peer: Peer<'_>) -> Result<Row, BenchError> {
    let (count, profile, label) = match peer {
        Peer::Rust(Profile::Compat) => (args.count, Profile::Compat, "rust -> rust compat"),
        Peer::Rust(_) => (args.count, Profile::Auto, "rust -> rust fast"),
        // The reference receiver is slow: it gets the reference's message count.
        Peer::Reference(_) => (args.ref_count, Profile::Auto, "rust -> ref"),
    };
    let sender = start_in("bench-tx", false, profile).await?;
    let mut local = None;
    let (receiver, mut child) = match peer {
        Peer::Rust(_) => {
            let receiver = start_in("bench-rx", true, profile).await?;
            let addr = receiver.local_addr();
            // Drain the receiver so its queue does not grow (ends at its shutdown).
            let drain = receiver.clone();
            tokio::spawn(async move { while drain.recv().await.is_some() {} });
            local = Some(receiver);
            (addr, None)
        }
        Peer::Reference(python) => {
            let [port] = free_ports()?;
            let expect = (args.ref_count + args.repeat).to_string();
            let child = spawn_ref(
                python,
                args,
                "ref-rx",
                port,
                &["--main", "--auto", "always", "--expect", &expect],
            )?;
            (SocketAddr::from((Ipv4Addr::LOCALHOST, port)), Some(child))
        }
    };
    let result = bounded(args, async {
        let to = join(&sender, receiver).await?;
        let ((), throughput) = Took::measure(pipeline(&sender, to, count, args)).await?;
        let mut bigs = Vec::new();
        for _ in 0..args.repeat {
            let body = blob(args.big);
            // `transmit` encodes and queues at the call: the clock starts before it
            bigs.push(
                Took::measure(async { sender.transmit(to, body).await })
                    .await?
                    .1,
            );
        }
        Ok((throughput, median(bigs)))
    })
    .await;
    sender.shutdown().await;
    if let Some(receiver) = local {
        receiver.shutdown().await;
    }
    if let Some(child) = child.as_mut() {
        stop(child).await;
    }
    let (throughput, big) = result?;
    Ok(Row {
        label,
        count,
        throughput,
        big,
    })
}

/// Sends `count` small messages with up to `args.window` in flight,
/// until the last is acknowledged.
async fn pipeline(
    stack: &RoadStack,
    to: Uid,
    count: usize,
    args: &BenchArgs,
) -> Result<(), StackError> {
    let body = blob(args.size);
    let mut in_flight = VecDeque::with_capacity(args.window);
    for _ in 0..count {
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
    Ok(())
}

/// The reference sending to the reference, timed from its `sent` event line
/// to its `done` event line (all messages acknowledged).
async fn ref_to_ref(args: &BenchArgs, python: &PathBuf) -> Result<Row, BenchError> {
    let size = args.size.to_string();
    let mut sizes = Vec::new();
    for _ in 0..args.ref_count {
        sizes.extend(["--size", size.as_str()]);
    }
    let throughput = Took {
        wall: bounded(args, ref_pair(args, python, args.ref_count, &sizes)).await?,
        cpu: None,
    };
    let big = args.big.to_string();
    let mut bigs = Vec::new();
    for _ in 0..args.repeat {
        let wall = bounded(args, ref_pair(args, python, 1, &["--size", &big])).await?;
        bigs.push(Took { wall, cpu: None });
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
    let [rx_port, tx_port] = free_ports()?;
    let mut receiver = spawn_ref(
        python,
        args,
        "ref-rx",
        rx_port,
        &[
            "--main",
            "--auto",
            "always",
            "--expect",
            &expect.to_string(),
        ],
    )?;
    let join = format!("127.0.0.1:{rx_port}");
    let mut sender_args = vec!["--join", join.as_str(), "--events", "--linger", "0"];
    sender_args.extend_from_slice(sends);
    let mut sender = spawn_ref(python, args, "ref-tx", tx_port, &sender_args)?;
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
    let mut last = String::new();
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
        last = line;
    }
    let status = child
        .wait()
        .await
        .map_err(|e| BenchError::Ref(e.to_string()))?;
    Err(BenchError::Ref(format!(
        "sender exited ({status}) before reporting done; its last line: {last}"
    )))
}

/// Starts `refpeer.py road --name NAME --port PORT --timeout T EXTRA...`
/// (stdout discarded, stderr piped for its event lines).
fn spawn_ref(
    python: &PathBuf,
    args: &BenchArgs,
    name: &str,
    port: u16,
    extra: &[&str],
) -> Result<Child, BenchError> {
    Command::new(python)
        .arg(&args.refpeer)
        .arg("road")
        .args(["--name", name, "--port", &port.to_string()])
        .args(["--timeout", &args.timeout.to_string()])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            BenchError::Ref(format!(
                "cannot run {} {}: {e}",
                python.display(),
                args.refpeer.display()
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

/// `N` distinct, currently free loopback UDP ports (for the reference
/// peers, which need fixed ports); all are held until all are known.
fn free_ports<const N: usize>() -> Result<[u16; N], BenchError> {
    let io = |e| BenchError::Stack(StackError::Io(e));
    let mut held = Vec::with_capacity(N);
    let mut ports = [0u16; N];
    for port in &mut ports {
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).map_err(io)?;
        *port = socket.local_addr().map_err(io)?.port();
        held.push(socket);
    }
    Ok(ports)
}

/// The run with the median wall time.
fn median(mut runs: Vec<Took>) -> Took {
    runs.sort_by_key(|t| t.wall);
    runs.get(runs.len() / 2).copied().unwrap_or_default()
}
