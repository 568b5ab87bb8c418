//! Helpers shared by the interop tests (`interop_road.rs`, `interop_lane.rs`) and the lossy
//! road test (`road_lossy.rs`): spawning the `raet` command and the reference peer
//! (`tests/interop/refpeer.py`, Python raet 0.6.8, same command line), kernel-picked ports,
//! waiting on their output with a timeout, and a seeded lossy UDP relay ([`relay`]).
//!
//! The reference is found through `RAET_REF_PYTHON` (the python of the venv made by
//! `tests/interop/setup-ref.sh`). Without it a test is skipped, unless
//! `RAET_REQUIRE_INTEROP=1` (as `scripts/test-all.sh` sets): then it fails.
//!
//! Nothing here sleeps: a peer's stdout/stderr lines arrive on a channel from reader
//! threads, and every wait is a `recv_timeout` on it.

// Each test binary includes this module and uses its own subset of it.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub(crate) mod relay;

/// Upper bound for any single wait on a peer; a healthy scenario needs seconds.
pub(crate) const WAIT: Duration = Duration::from_secs(120);
/// `--timeout` given to every peer (seconds): below [`WAIT`], so a stuck peer exits 2
/// and shows its own timeout report before the test gives up on it.
pub(crate) const PEER_TIMEOUT: &str = "90";

/// A loopback UDP port free right now, picked by the kernel (a socket bound to port 0,
/// then released), never one this test binary handed out before. The reference peer
/// needs a fixed port (it refuses 0), but a fixed range inside Linux's ephemeral range
/// (32768-60999) can be held by any socket of the machine, and both implementations
/// bind fixed ports with SO_REUSEADDR: a peer would then silently share its port.
pub(crate) fn port() -> u16 {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let mut given = GIVEN
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    loop {
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .and_then(|socket| socket.local_addr())
            .expect("bind a loopback UDP socket on port 0")
            .port();
        if given.insert(port) {
            return port;
        }
    }
}

/// Interop scenarios run one at a time: each one loads the 2-core machine with a Python
/// peer, and their timing must not depend on how many others run beside them.
pub(crate) fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Which implementation runs a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// Our `raet` command.
    Rust,
    /// `tests/interop/refpeer.py` on the Python reference.
    Reference,
}

/// How to start the reference peer.
#[derive(Debug, Clone)]
pub(crate) struct Reference {
    python: PathBuf,
    script: PathBuf,
}

/// The reference peer, or `None` (the caller returns: test skipped) when it is not
/// installed. Panics instead when `RAET_REQUIRE_INTEROP=1`.
pub(crate) fn reference() -> Option<Reference> {
    let required = std::env::var("RAET_REQUIRE_INTEROP").is_ok_and(|v| v == "1");
    let script = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/interop/refpeer.py"
    ));
    let python = std::env::var_os("RAET_REF_PYTHON").map(PathBuf::from);
    let problem = match &python {
        None => "RAET_REF_PYTHON is not set".to_string(),
        Some(p) if !p.is_file() => format!("RAET_REF_PYTHON={} does not exist", p.display()),
        Some(_) if !script.is_file() => format!("{} is missing", script.display()),
        Some(python) => {
            return Some(Reference {
                python: python.clone(),
                script,
            })
        }
    };
    assert!(
        !required,
        "RAET_REQUIRE_INTEROP=1 but the reference peer is unavailable: {problem} \
         (run tests/interop/setup-ref.sh VENV and export RAET_REF_PYTHON=VENV/bin/python)"
    );
    eprintln!("interop test skipped: {problem} (see tests/interop/setup-ref.sh)");
    None
}

enum Line {
    Out(String),
    Err(String),
    Closed,
}

/// A running peer. Its received messages (stdout) and JSON events (stderr) are
/// collected as they arrive; dropping it kills the process.
pub(crate) struct Peer {
    label: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<Line>,
    open_streams: usize,
    /// Messages printed on stdout so far (`{"from": .., "msg": ..}`).
    pub messages: Vec<Value>,
    /// JSON event lines printed on stderr so far.
    pub events: Vec<Value>,
    stderr: Vec<String>,
}

/// What a peer left when it exited.
pub(crate) struct Exited {
    /// Exit status (`None`: killed by a signal).
    pub code: Option<i32>,
    /// All messages it printed.
    pub messages: Vec<Value>,
    /// All its JSON event lines.
    pub events: Vec<Value>,
    /// Its whole stderr, for failure reports.
    pub stderr: String,
}

fn forward<R: std::io::Read + Send + 'static>(
    stream: R,
    tx: Sender<Line>,
    wrap: fn(String) -> Line,
) {
    thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if tx.send(wrap(line)).is_err() {
                return;
            }
        }
        let _ = tx.send(Line::Closed);
    });
}

impl Exited {
    /// Whether it printed an event `kind` whose fields include `fields` (a JSON object).
    pub(crate) fn has_event(&self, kind: &str, fields: Value) -> bool {
        self.events.iter().any(|e| event_matches(e, kind, &fields))
    }
}

impl Peer {
    /// Starts `raet ARGS` or `refpeer.py ARGS` (same command line). With
    /// `RAET_INTEROP_REFERENCE_ONLY=1` the reference plays both sides: a check of the
    /// scenarios themselves, independent of the Rust implementation.
    pub(crate) fn spawn(side: Side, reference: &Reference, args: &[String]) -> Self {
        let reference_only = std::env::var("RAET_INTEROP_REFERENCE_ONLY").is_ok_and(|v| v == "1");
        let side = if reference_only {
            Side::Reference
        } else {
            side
        };
        let command = match side {
            Side::Rust => Command::new(env!("CARGO_BIN_EXE_raet")),
            Side::Reference => {
                let mut c = Command::new(&reference.python);
                c.arg(&reference.script);
                c
            }
        };
        Self::start(side, command, args)
    }

    /// Starts `raet ARGS` (no reference peer needed).
    pub(crate) fn raet(args: &[String]) -> Self {
        Self::start(Side::Rust, Command::new(env!("CARGO_BIN_EXE_raet")), args)
    }

    fn start(side: Side, mut command: Command, args: &[String]) -> Self {
        let label = format!("{side:?} {}", args.join(" "));
        let label: String = label.chars().take(160).collect();
        let mut child = command
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {label}: {e}"));
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        forward(stdout, tx.clone(), Line::Out);
        forward(stderr, tx, Line::Err);
        Self {
            label,
            stdin: child.stdin.take(),
            child,
            lines,
            open_streams: 2,
            messages: Vec::new(),
            events: Vec::new(),
            stderr: Vec::new(),
        }
    }

    fn take(&mut self, line: Line) {
        match line {
            Line::Out(text) => {
                let msg = serde_json::from_str(&text).unwrap_or_else(|e| {
                    panic!("{}: stdout line is not JSON ({e}): {text:.200}", self.label)
                });
                self.messages.push(msg);
            }
            Line::Err(text) => {
                if let Ok(event @ Value::Object(_)) = serde_json::from_str::<Value>(&text) {
                    self.events.push(event);
                }
                self.stderr.push(text);
            }
            Line::Closed => self.open_streams -= 1,
        }
    }

    /// Receives the next line before `deadline`; false when the time is up or both
    /// streams are closed.
    fn pump(&mut self, deadline: Instant) -> bool {
        if self.open_streams == 0 {
            return false;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(left) {
            Ok(line) => {
                self.take(line);
                true
            }
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => false,
        }
    }

    fn position(&self, kind: &str, fields: &Value) -> Option<usize> {
        self.events
            .iter()
            .position(|e| event_matches(e, kind, fields))
    }

    /// Waits until the peer printed an event `kind` whose fields include `fields`
    /// (a JSON object); returns it. Panics with the peer's stderr after [`WAIT`].
    pub(crate) fn wait_event(&mut self, kind: &str, fields: Value) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(i) = self.position(kind, &fields) {
                return self.events[i].clone();
            }
            if !self.pump(deadline) {
                panic!(
                    "{}: no {kind} event with {fields} (exited: {:?}); stderr:\n{}",
                    self.label,
                    self.child.try_wait().ok().flatten(),
                    self.stderr.join("\n")
                );
            }
        }
    }

    /// Whether an event `kind` with `fields` was printed so far (no waiting).
    pub(crate) fn saw_event(&mut self, kind: &str, fields: Value) -> bool {
        while let Ok(line) = self.lines.try_recv() {
            self.take(line);
        }
        self.position(kind, &fields).is_some()
    }

    /// Writes an operator command (`accept NAME` / `reject NAME`) to the peer's stdin
    /// (the peer runs with `--control`).
    pub(crate) fn control(&mut self, command: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is piped");
        writeln!(stdin, "{command}")
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("{}: cannot write {command:?}: {e}", self.label));
    }

    /// Waits (at most [`WAIT`]) for the peer to exit; panics if it does not. Closes its
    /// stdin first: no operator command follows (a `--control` reader may wait for EOF).
    pub(crate) fn finish(mut self) -> Exited {
        drop(self.stdin.take());
        let deadline = Instant::now() + WAIT;
        while self.pump(deadline) {}
        if self.open_streams > 0 {
            let _ = self.child.kill();
            panic!(
                "{}: did not exit within {WAIT:?}; stderr:\n{}",
                self.label,
                self.stderr.join("\n")
            );
        }
        // Both streams are closed: the process has exited or is about to.
        let status = self
            .child
            .wait()
            .unwrap_or_else(|e| panic!("{}: wait: {e}", self.label));
        Exited {
            code: status.code(),
            messages: std::mem::take(&mut self.messages),
            events: std::mem::take(&mut self.events),
            stderr: self.stderr.join("\n"),
        }
    }

    /// Waits for the exit and checks its status.
    pub(crate) fn expect_exit(self, code: i32) -> Exited {
        let label = self.label.clone();
        let exited = self.finish();
        assert_eq!(
            exited.code,
            Some(code),
            "{label}: exit status; stderr:\n{}",
            exited.stderr
        );
        exited
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn event_matches(event: &Value, kind: &str, fields: &Value) -> bool {
    event.get("event").and_then(Value::as_str) == Some(kind)
        && fields
            .as_object()
            .is_some_and(|want| want.iter().all(|(k, v)| event.get(k) == Some(v)))
}

/// The messages a peer sends: its `--send` objects, then its `--size` blobs (the order in
/// which the command sends them).
#[derive(Debug, Clone, Default)]
pub(crate) struct Outgoing {
    /// `--send` objects.
    pub send: Vec<Value>,
    /// `--size` blob lengths.
    pub sizes: Vec<usize>,
}

impl Outgoing {
    /// Messages `send` followed by blobs of `sizes`.
    pub(crate) fn new(send: &[Value], sizes: &[usize]) -> Self {
        Self {
            send: send.to_vec(),
            sizes: sizes.to_vec(),
        }
    }

    /// `--send JSON`... `--size N`...
    pub(crate) fn args(&self) -> Vec<String> {
        let send = self
            .send
            .iter()
            .flat_map(|m| ["--send".to_string(), m.to_string()]);
        let sizes = self
            .sizes
            .iter()
            .flat_map(|n| ["--size".to_string(), n.to_string()]);
        send.chain(sizes).collect()
    }

    /// The message lines the receiving peer must print, from sender `from`, in order.
    pub(crate) fn received_from(&self, from: &str) -> Vec<Value> {
        let blobs = self.sizes.iter().map(|&n| blob(n));
        self.send
            .iter()
            .cloned()
            .chain(blobs)
            .map(|m| received(from, &m))
            .collect()
    }

    /// How many messages.
    pub(crate) fn len(&self) -> usize {
        self.send.len() + self.sizes.len()
    }
}

/// `{"blob": "xxx…"}` with `n` characters: what `--size n` sends.
pub(crate) fn blob(n: usize) -> Value {
    json!({ "blob": "x".repeat(n) })
}

/// The stdout line a peer prints for a message `msg` from `from`.
pub(crate) fn received(from: &str, msg: &Value) -> Value {
    json!({"from": from, "msg": msg})
}

/// Checks that `exited` printed exactly these messages, in this order (big blobs are
/// reported by length only).
pub(crate) fn assert_messages(who: &str, exited: &Exited, expected: &[Value]) {
    let short = |v: &[Value]| -> Vec<String> {
        v.iter()
            .map(|m| {
                let text = m.to_string();
                if text.len() > 120 {
                    let head: String = text.chars().take(100).collect();
                    format!("{head}… ({} bytes)", text.len())
                } else {
                    text
                }
            })
            .collect()
    };
    assert!(
        exited.messages == expected,
        "{who} received {:?}, expected {:?}; stderr:\n{}",
        short(&exited.messages),
        short(expected),
        exited.stderr
    );
}

/// Command-line arguments from string-like pieces.
pub(crate) fn args<I, S>(pieces: I) -> Vec<String>
where
    I: IntoIterator<Item = S>,
    S: ToString,
{
    pieces.into_iter().map(|p| p.to_string()).collect()
}
