//! `raet`: a netcat for RAET (road over UDP, lane over Unix datagram sockets).
//!
//! Each subcommand lives in its own module with an `Args` struct and an
//! `async fn run(args) -> ExitCode`; adding one is a variant of [`Commands`]
//! and an arm in [`main`]. Helpers shared by the subcommands are here.

mod bench;
mod demo;
mod flood;
mod lane;
mod road;
mod swarm;

/// mimalloc, not the system allocator: a large message is several buffers of its size
/// (body, datagrams, reassembly, decoded body) made and freed per message, which glibc's
/// malloc gives back to the kernel and faults in again page by page (a fifth of the CPU
/// time of a 1 MB message in `raet bench`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::{Parser, Subcommand};
use serde_json::{json, Map, Value};
use tokio::sync::watch;

/// Exit status: success.
pub const EXIT_OK: u8 = 0;
/// Exit status: a runtime failure (socket error, message failed, ...).
pub const EXIT_FAILED: u8 = 1;
/// Exit status: `--timeout` elapsed before success.
pub const EXIT_TIMEOUT: u8 = 2;
/// Exit status: bad arguments.
pub const EXIT_BAD_ARGS: u8 = 3;

/// A JSON object, the body of a message.
pub type Body = Map<String, Value>;

/// RAET (Reliable Asynchronous Event Transport) command-line peer.
#[derive(Parser, Debug)]
#[command(name = "raet", version)]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Subcommand, Debug)]
enum Commands {
    /// A lane yard (Unix datagram socket DIR/LANE.NAME.uxd): send and print messages.
    Lane(lane::LaneArgs),
    /// A road (UDP) stack: join, send and print messages.
    Road(Box<road::RoadArgs>),
    /// Two stacks in this process: join, exchange small and 1 MB messages, tell the times.
    Demo(demo::DemoArgs),
    /// Messages per second and large-message time, Rust and (optionally) the reference.
    Bench(bench::BenchArgs),
    /// Forged first contacts (fresh names and keys) at a main: tests its flood bounds.
    Flood(flood::FloodArgs),
    /// N minion roads against the real salt-raet-master: join storm, steady CPU, status, restart.
    Swarm(swarm::SwarmArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return clap_exit(&e),
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("raet: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    runtime.block_on(async {
        match cli.command {
            Commands::Lane(args) => lane::run(args).await,
            Commands::Road(args) => road::run(*args).await,
            Commands::Demo(args) => demo::run(args).await,
            Commands::Bench(args) => bench::run(args).await,
            Commands::Flood(args) => flood::run(args).await,
            Commands::Swarm(args) => swarm::run(args).await,
        }
    })
}

/// `--help`/`--version` print and exit 0; any other parse error prints a
/// one-line reason and exits 3.
fn clap_exit(error: &clap::Error) -> ExitCode {
    match error.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            // Printing can only fail if stdout is closed; nothing to do then.
            let _ = error.print();
            ExitCode::from(EXIT_OK)
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            bad_args("a subcommand is required (see raet --help)")
        }
        _ => {
            // clap's message is a paragraph (reason, sometimes a list of
            // arguments) then usage lines: keep the paragraph, on one line.
            let text = error.to_string();
            let paragraph = text.split("\n\n").next().unwrap_or_default();
            let reason = paragraph.split_whitespace().collect::<Vec<_>>().join(" ");
            bad_args(&format!("{reason} (see --help)"))
        }
    }
}

/// Prints `reason` on one line of stderr and returns exit status 3.
pub fn bad_args(reason: &str) -> ExitCode {
    let line = reason.split_whitespace().collect::<Vec<_>>().join(" ");
    eprintln!("raet: {line}");
    ExitCode::from(EXIT_BAD_ARGS)
}

/// `--send` values: a JSON object.
pub fn parse_object(text: &str) -> Result<Body, String> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err("not a JSON object".into()),
        Err(e) => Err(format!("not JSON: {e}")),
    }
}

/// `--timeout` values: seconds, possibly fractional.
pub fn parse_seconds(text: &str) -> Result<Duration, String> {
    let secs: f64 = text.parse().map_err(|e| format!("not a number: {e}"))?;
    Duration::try_from_secs_f64(secs).map_err(|e| format!("not a duration in seconds: {e}"))
}

/// The message `--size N` sends: `{"blob": "xxx…"}` with N characters.
pub fn blob(size: usize) -> Body {
    let mut body = Map::new();
    body.insert("blob".into(), Value::String("x".repeat(size)));
    body
}

/// The options `raet road` and `raet lane` share: what to send, how many
/// messages to wait for, and for how long.
#[derive(Debug, Clone, clap::Args)]
pub struct Traffic {
    /// Send this JSON object (repeatable). A road without --join sends to the first remote
    /// allowed.
    #[arg(long, value_name = "JSON", value_parser = parse_object)]
    pub send: Vec<Body>,
    /// Send {"blob": "<N characters>"} (repeatable; after the --send messages).
    #[arg(long, value_name = "N")]
    pub size: Vec<usize>,
    /// Send the --send and --size messages this many times (for benchmarks).
    #[arg(long, value_name = "K", default_value_t = 1)]
    pub repeat: usize,
    /// Number of messages to receive before exiting.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub expect: usize,
    /// Give up after this many seconds (exit 2).
    #[arg(long, value_name = "S", default_value = "30", value_parser = parse_seconds)]
    pub timeout: Duration,
}

impl Traffic {
    /// The `--send` messages followed by the `--size` ones (once).
    pub fn distinct(&self) -> Vec<Body> {
        self.send
            .iter()
            .cloned()
            .chain(self.size.iter().map(|&n| blob(n)))
            .collect()
    }

    /// The `--send` messages followed by the `--size` ones, `--repeat` times.
    pub fn messages(&self) -> Vec<Body> {
        let once = self.distinct();
        let mut all = Vec::with_capacity(once.len().saturating_mul(self.repeat));
        for _ in 0..self.repeat {
            all.extend(once.iter().cloned());
        }
        all
    }
}

/// Prints a received message as one JSON line `{"from": NAME, "msg": {...}}`
/// on stdout (flushed, so a reader sees it at once).
pub fn print_message(from: &str, msg: Body) {
    write_message(&mut std::io::stdout().lock(), from, msg);
}

/// Writes a received message as [`print_message`] does, on `out`; whether it was written.
fn write_message(out: &mut impl Write, from: &str, msg: Body) -> bool {
    let line = json!({"from": from, "msg": msg});
    let written = writeln!(out, "{line}").and_then(|()| out.flush()).is_ok();
    if !written {
        tracing::warn!("stdout closed; message not printed");
    }
    written
}

/// What the printer does once a message is written (`true`) or could not be.
pub type AfterPrint = Box<dyn FnOnce(bool) + Send>;

/// Starts a thread that writes each message sent to the returned channel as
/// [`print_message`] does, on `out`, tells its [`AfterPrint`] whether it was written,
/// and counts it in `printed`.
/// The thread ends when the channel's last sender is dropped.
///
/// A write blocks while the reader of a pipe does not drain it (a 200 KB
/// message is more than a pipe holds); done on the async runtime, it would
/// hold a worker thread and every task queued behind it, the road's driver
/// included, so the road stopped answering its peer until someone read our
/// stdout. On a thread of its own it only delays the printing.
pub fn spawn_printer(
    mut out: impl Write + Send + 'static,
    printed: watch::Sender<usize>,
) -> std::sync::mpsc::Sender<(String, Body, Option<AfterPrint>)> {
    let (tx, rx) = std::sync::mpsc::channel::<(String, Body, Option<AfterPrint>)>();
    std::thread::spawn(move || {
        for (from, msg, after) in rx {
            let written = write_message(&mut out, &from, msg);
            if let Some(after) = after {
                after(written);
            }
            printed.send_modify(|n| *n += 1);
        }
    });
    tx
}

/// Prints a JSON event line `{"event": KIND, ...fields}` on stderr.
pub fn print_event(kind: &str, fields: Value) {
    let mut line = Map::new();
    line.insert("event".into(), kind.into());
    if let Value::Object(fields) = fields {
        line.extend(fields);
    }
    eprintln!("{}", Value::Object(line));
}
