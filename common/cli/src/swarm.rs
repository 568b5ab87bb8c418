//! `raet swarm`: many minions against the real `salt-raet-master` (issue 11). Starts the
//! master binary (`auto_accept: True`, a temporary Salt configuration and pki directory) and
//! `--minions` minion roads in this process, each one UDP socket on its own loopback address
//! (127.1.x.y), bound and joined as `salt-raet-minion` does ([`bind_minion_road`],
//! [`JoinLoop`]: the same backoff, a lost master joined again). Prints one line per phase:
//! the join storm, a steady window (CPU, RSS, load), `status --json` latency, the fan-out
//! of a message to every minion ([`fanout`]), and the recovery after `kill -9` and a restart
//! of the master. A benchmark, not a test.

mod fanout;

use std::collections::BTreeMap;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use clap::Args;
use raet::keep::DirKeep;
use raet::road::{Event, Presence, Profile};
use raet::stack::RoadStack;
use salt_raet::daemon::{presence_timers, query_status};
use salt_raet_minion::bind_minion_road;
use salt_raet_minion::join::{JoinLoop, JoinOutcome, Retry};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use crate::{EXIT_FAILED, EXIT_OK, EXIT_TIMEOUT};

/// How often the storm and the recovery ask the master's `status` (the resolution of its
/// times), at most: see [`QUERY_PAUSE`].
const QUERY_EVERY: Duration = Duration::from_millis(200);
/// After each `status`, the storm and the recovery wait at least this many times as long as
/// it took before asking again, so that the observer takes at most a fifth of the master's
/// time (a `status` of 10,000 minions takes some 300 ms during a storm on 2 cores: asked
/// every 200 ms, it kept the master busy most of the time the storm was measured).
const QUERY_PAUSE: u32 = 4;
/// How often a restarted master not answering `status` yet is asked (when it is up).
const DOWN_POLL: Duration = Duration::from_millis(50);

/// Options of `raet swarm`.
#[derive(Args, Debug, Clone)]
pub(crate) struct SwarmArgs {
    /// Number of minion roads (each on its own loopback address).
    #[arg(long, value_name = "N", default_value_t = 300)]
    pub minions: usize,
    /// The `salt-raet-master` binary (default: the one beside this `raet`).
    #[arg(long, value_name = "PATH")]
    pub master: Option<PathBuf>,
    /// `raet_alive_period` of the master and the minions, in seconds.
    #[arg(long, value_name = "S", default_value_t = 10)]
    pub alive_period: u64,
    /// Length of the steady window, in seconds.
    #[arg(long, value_name = "S", default_value_t = 30)]
    pub window: u64,
    /// Give up on the storm or the recovery after this many seconds.
    #[arg(long, value_name = "S", default_value_t = 120)]
    pub limit: u64,
    /// Number of `status --json` queries timed.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub queries: usize,
    /// Sizes of the messages published to every minion in the fan-out phase, in bytes.
    #[arg(long, value_name = "BYTES", value_delimiter = ',', default_values_t = [1024, 102_400])]
    pub fanout: Vec<usize>,
}

/// What the minions have seen, for all of them.
#[derive(Debug, Default)]
struct Tally {
    /// Per minion: when it was last allowed (a join completed, an allow handshake), or `None`
    /// while its master is lost.
    allowed_at: Vec<Option<Instant>>,
    /// Join attempts, all minions together.
    attempts: u64,
    /// Failed joins and allows by reason (`join timed out`, ...).
    failures: BTreeMap<String, u64>,
    /// Presence `lost` of the master, as told to the minions.
    lost: u64,
}

impl Tally {
    /// Minions allowed since `since`.
    fn allowed_since(&self, since: Instant) -> usize {
        self.allowed_at
            .iter()
            .filter(|t| t.is_some_and(|t| t >= since))
            .count()
    }

    /// Counts a failure.
    fn fail(&mut self, reason: String) {
        *self.failures.entry(reason).or_default() += 1;
    }
}

/// The tally shared by the minions' tasks.
type Shared = Arc<Mutex<Tally>>;

/// Runs `f` on the tally (a panicked task's tally is still counted).
fn with<T>(tally: &Shared, f: impl FnOnce(&mut Tally) -> T) -> T {
    f(&mut tally.lock().unwrap_or_else(PoisonError::into_inner))
}

/// The master daemon under test (killed when dropped).
struct Master {
    bin: PathBuf,
    etc: PathBuf,
    sock: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Master {
    /// Writes the master's configuration in `site` (road on 127.0.0.1:`port`).
    fn configure(bin: PathBuf, site: &Path, port: u16, alive_period: u64) -> std::io::Result<Self> {
        let etc = site.join("etc");
        fs::create_dir_all(&etc)?;
        let dir = site.display();
        fs::write(
            etc.join("master"),
            format!(
                "id: swarm_master\ninterface: 127.0.0.1\nraet_port: {port}\npki_dir: {dir}/pki\n\
                 sock_dir: {dir}/sock\nlog_file: {dir}/master.log\nlog_level: warning\n\
                 auto_accept: True\nraet_alive_period: {alive_period}\n"
            ),
        )?;
        Ok(Self {
            bin,
            etc,
            sock: site.join("sock"),
            log: site.join("master.err"),
            child: None,
        })
    }

    /// Starts the daemon (its standard error appended to `master.err`).
    fn start(&mut self) -> std::io::Result<()> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new(&self.bin)
            .arg("-c")
            .arg(&self.etc)
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()?;
        self.child = Some(child);
        Ok(())
    }

    /// `kill -9`, and the process reaped.
    async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Its process id while it runs.
    fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// The minions its `status` shows allowed (`None`: no answer).
    async fn allowed(&self) -> Option<usize> {
        let status = query_status(&self.sock).await.ok()?;
        Some(status.remotes.iter().filter(|r| r.allowed).count())
    }

    /// Waits until it answers `status`; false after `limit`.
    async fn wait_up(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.allowed().await.is_some() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }
}

/// A free UDP port on 127.0.0.1 (the master keeps it across its restart).
fn free_port() -> std::io::Result<u16> {
    Ok(UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// Raises the soft limit of open files to the hard one when `needed` exceeds it; the limit.
fn raise_nofile(needed: u64) -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 0;
    };
    if soft >= needed || setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_err() {
        return soft;
    }
    hard
}

/// CPU time (user + system) of process `pid` (`self`: this one) so far.
fn cpu_time(pid: &str) -> Option<Duration> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command (which may hold spaces): state is field 3, utime 14, stime 15.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let per_second = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()?;
    Some(Duration::from_secs_f64(ticks as f64 / per_second as f64))
}

/// `VmRSS` of process `pid`, in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// `load a b c` from `/proc/loadavg`.
fn load() -> String {
    let text = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let three: Vec<&str> = text.split_whitespace().take(3).collect();
    format!("load {}", three.join(" "))
}

/// The loopback address of minion `i`: 127.1.x.y, y from 1 to 250.
fn minion_address(i: usize) -> SocketAddr {
    let (x, y) = (i / 250, i % 250 + 1);
    let x = u8::try_from(x).unwrap_or(u8::MAX);
    SocketAddr::from(([127, 1, x, y as u8], 0))
}

/// Binds the roads of `n` minions (their keeps under `site`).
async fn bind_minions(site: &Path, n: usize, alive_period: u64) -> Result<Vec<RoadStack>, String> {
    let mut roads = Vec::with_capacity(n);
    for i in 0..n {
        let id = format!("swarm-{i:05}");
        let keep = DirKeep::open(site.join(&id).join("raet")).map_err(|e| format!("{id}: {e}"))?;
        let road = bind_minion_road(
            &id,
            minion_address(i),
            Box::new(keep),
            presence_timers(Duration::from_secs(alive_period)),
            Profile::Auto,
            false,
        )
        .await
        .map_err(|e| format!("{id}: {e}"))?;
        roads.push(road);
    }
    Ok(roads)
}

/// Starts minion `index`'s join loop and the task that watches its road's events (as the
/// daemon does: a lost master is joined again).
fn start_minion(
    index: usize,
    road: RoadStack,
    port: u16,
    tally: &Shared,
    outcomes: &mpsc::UnboundedSender<(usize, JoinOutcome)>,
) {
    let (rejoin, rejoin_rx) = mpsc::unbounded_channel();
    let events = road.events();
    let join = JoinLoop {
        road,
        index,
        host: Ipv4Addr::LOCALHOST.to_string(),
        port,
        ipv6: false,
        retry: Retry::default(),
        outcomes: outcomes.clone(),
    };
    tokio::spawn(join.run(rejoin_rx));
    tokio::spawn(watch(index, events, rejoin, tally.clone()));
}

/// Counts minion `index`'s allows, failures and losses.
async fn watch(
    index: usize,
    mut events: mpsc::UnboundedReceiver<Event>,
    rejoin: mpsc::UnboundedSender<()>,
    tally: Shared,
) {
    while let Some(event) = events.recv().await {
        match event {
            Event::Allowed { .. } => with(&tally, |t| t.allowed_at[index] = Some(Instant::now())),
            Event::JoinFailed { reason, .. } => with(&tally, |t| t.fail(format!("join {reason}"))),
            Event::AllowFailed { reason, .. } => {
                with(&tally, |t| t.fail(format!("allow {reason}")))
            }
            Event::Presence {
                presence: Presence::Lost,
                ..
            } => {
                with(&tally, |t| {
                    t.lost += 1;
                    t.allowed_at[index] = None;
                });
                let _ = rejoin.send(());
            }
            _ => {}
        }
    }
}

/// Counts the join loops' attempts and completed joins.
async fn collect(mut outcomes: mpsc::UnboundedReceiver<(usize, JoinOutcome)>, tally: Shared) {
    while let Some((index, outcome)) = outcomes.recv().await {
        with(&tally, |t| match outcome {
            JoinOutcome::Attempt => t.attempts += 1,
            JoinOutcome::Joined(_) => t.allowed_at[index] = Some(Instant::now()),
            JoinOutcome::Rejected { .. } => t.fail("rejected".into()),
            JoinOutcome::Resolved(_) | JoinOutcome::Pended => {}
        });
    }
}

/// How the minions came to be allowed (since a storm's start or a restart).
#[derive(Debug, Default)]
struct Convergence {
    /// When every minion was allowed in its own view.
    minions_at: Option<Duration>,
    /// When the master's `status` showed every minion allowed.
    master_at: Option<Duration>,
    /// When the master first answered `status`.
    up_at: Option<Duration>,
    /// Minions allowed in their own view at the end.
    minions: usize,
    /// Minions the master's `status` showed allowed at the end.
    shown: usize,
}

/// When all `n` minions were allowed since `since` in their own view and in the master's
/// `status`, polled until `limit`.
async fn wait_allowed(
    master: &Master,
    tally: &Shared,
    n: usize,
    since: Instant,
    limit: Duration,
) -> Convergence {
    let mut c = Convergence::default();
    let mut next_query = since;
    while since.elapsed() < limit && (c.minions_at.is_none() || c.master_at.is_none()) {
        c.minions = with(tally, |t| t.allowed_since(since));
        if c.minions == n && c.minions_at.is_none() {
            c.minions_at = Some(since.elapsed());
        }
        if Instant::now() >= next_query {
            let asked = Instant::now();
            let shown = master.allowed().await;
            if shown.is_some() && c.up_at.is_none() {
                c.up_at = Some(since.elapsed());
            }
            c.shown = shown.unwrap_or(0);
            if c.shown == n && c.master_at.is_none() {
                c.master_at = Some(since.elapsed());
            }
            let pause = if shown.is_some() {
                QUERY_EVERY
            } else {
                DOWN_POLL
            };
            next_query = Instant::now() + pause.max(asked.elapsed() * QUERY_PAUSE);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c
}

/// The minions the master's `status` does not show allowed, up to 5 (id, acceptance, joined,
/// presence; `absent`: no row), after `: `; empty when it shows all `n`.
async fn not_allowed(master: &Master, n: usize) -> String {
    let Ok(status) = query_status(&master.sock).await else {
        return ": no status".into();
    };
    let rows: BTreeMap<&str, _> = status.remotes.iter().map(|r| (r.id.as_str(), r)).collect();
    let missing: Vec<String> = (0..n)
        .map(|i| format!("swarm-{i:05}"))
        .filter_map(|id| match rows.get(id.as_str()) {
            Some(r) if r.allowed => None,
            Some(r) => Some(format!(
                "{id} ({:?}, joined {}, {})",
                r.acceptance, r.joined, r.presence
            )),
            None => Some(format!("{id} (absent)")),
        })
        .collect();
    match missing.len() {
        0 => String::new(),
        count => format!(
            " (not allowed there: {count}, e.g. {})",
            missing[..count.min(5)].join(", ")
        ),
    }
}

/// `12.3 s`, or `not within 120 s`.
fn took(at: Option<Duration>, limit: Duration) -> String {
    at.map_or_else(
        || format!("not within {} s", limit.as_secs()),
        |d| format!("{:.2} s", d.as_secs_f64()),
    )
}

/// Runs `raet swarm`; returns the exit status (2: a phase did not complete).
pub(crate) async fn run(args: SwarmArgs) -> ExitCode {
    match swarm(&args).await {
        Ok(true) => ExitCode::from(EXIT_OK),
        Ok(false) => ExitCode::from(EXIT_TIMEOUT),
        Err(e) => {
            eprintln!("raet swarm: {e}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

/// The five phases; whether all completed.
async fn swarm(args: &SwarmArgs) -> Result<bool, String> {
    let n = args.minions;
    let limit = Duration::from_secs(args.limit);
    let bin = match &args.master {
        Some(bin) => bin.clone(),
        None => std::env::current_exe()
            .map_err(|e| e.to_string())?
            .with_file_name("salt-raet-master"),
    };
    let nofile = raise_nofile(n as u64 + 256);
    let site = tempfile::tempdir().map_err(|e| e.to_string())?;
    let port = free_port().map_err(|e| e.to_string())?;
    let mut master = Master::configure(bin, &site.path().join("master"), port, args.alive_period)
        .map_err(|e| e.to_string())?;
    master
        .start()
        .map_err(|e| format!("{}: {e}", master.bin.display()))?;
    if !master.wait_up(Duration::from_secs(30)).await {
        return Err(format!(
            "the master did not answer status (see {})",
            master.log.display()
        ));
    }
    let roads = bind_minions(&site.path().join("minions"), n, args.alive_period).await?;
    println!(
        "raet swarm: {n} minions (127.1.x.y) against salt-raet-master on 127.0.0.1:{port}, alive period {} s; {} cores, open files {nofile}, {}",
        args.alive_period,
        std::thread::available_parallelism().map_or(0, |c| c.get()),
        load()
    );
    let mut published = fanout::listen(&roads);

    // (1) The storm: all join at once.
    let tally: Shared = Arc::new(Mutex::new(Tally {
        allowed_at: vec![None; n],
        ..Tally::default()
    }));
    let (outcomes, outcomes_rx) = mpsc::unbounded_channel();
    tokio::spawn(collect(outcomes_rx, tally.clone()));
    let start = Instant::now();
    for (index, road) in roads.iter().enumerate() {
        start_minion(index, road.clone(), port, &tally, &outcomes);
    }
    let storm = wait_allowed(&master, &tally, n, start, limit).await;
    let (attempts, failures) = with(&tally, |t| (t.attempts, t.failures.clone()));
    println!(
        "storm: {}/{n} joined+allowed (minions) in {}, {}/{n} allowed in the master's status in {}{}; {attempts} join attempts, failures {failures:?}; {}",
        storm.minions,
        took(storm.minions_at, limit),
        storm.shown,
        took(storm.master_at, limit),
        not_allowed(&master, n).await,
        load()
    );
    let mut complete = storm.minions_at.is_some() && storm.master_at.is_some();

    // (2) A steady window.
    let pid = master.pid().ok_or("the master exited")?;
    let lost_before = with(&tally, |t| t.lost);
    let (master0, self0) = (cpu_time(&pid.to_string()), cpu_time("self"));
    tokio::time::sleep(Duration::from_secs(args.window)).await;
    let (master1, self1) = (cpu_time(&pid.to_string()), cpu_time("self"));
    let rate = |a: Option<Duration>, b: Option<Duration>| match (a, b) {
        (Some(a), Some(b)) => format!(
            "{:.4}",
            (b.saturating_sub(a)).as_secs_f64() / args.window as f64
        ),
        _ => "?".into(),
    };
    let rss = rss_kib(pid).map_or("?".into(), |k| format!("{:.1}", k as f64 / 1024.0));
    println!(
        "steady {} s: master CPU {} s/s, harness CPU {} s/s ({n} roads), master RSS {rss} MiB, master lost {} times, {}/{n} allowed in the master's status at the end; {}",
        args.window,
        rate(master0, master1),
        rate(self0, self1),
        with(&tally, |t| t.lost) - lost_before,
        master.allowed().await.unwrap_or(0),
        load()
    );

    // (3) `status --json` latency.
    let mut times = Vec::new();
    let mut size = 0;
    for _ in 0..args.queries {
        let asked = Instant::now();
        if let Ok(status) = query_status(&master.sock).await {
            times.push(asked.elapsed());
            size = serde_json::to_vec(&status).map_or(0, |v| v.len());
        }
    }
    times.sort();
    let ms =
        |d: Option<&Duration>| d.map_or("?".into(), |d| format!("{:.1}", d.as_secs_f64() * 1e3));
    println!(
        "status --json: {}/{} answered, median {} ms, max {} ms, {size} bytes of JSON; {}",
        times.len(),
        args.queries,
        ms(times.get(times.len() / 2)),
        ms(times.last()),
        load()
    );

    // (4) Fan-out: one message of each size to every minion.
    complete &= fanout::fan_out(&master.sock, pid, n, &args.fanout, &mut published, limit).await?;

    // (5) kill -9 and restart.
    let (attempts_before, failures_before) = with(&tally, |t| (t.attempts, t.failures.clone()));
    master.kill().await;
    master.start().map_err(|e| e.to_string())?;
    let restarted = Instant::now();
    let back = wait_allowed(&master, &tally, n, restarted, limit).await;
    let (attempts, failures) = with(&tally, |t| {
        let failures: BTreeMap<&String, u64> = t
            .failures
            .iter()
            .map(|(why, count)| (why, count - failures_before.get(why).copied().unwrap_or(0)))
            .filter(|(_, count)| *count > 0)
            .collect();
        (t.attempts - attempts_before, format!("{failures:?}"))
    });
    println!(
        "restart (kill -9): master answers status in {}, {}/{n} minions allowed again in {}, {}/{n} allowed in the master's status in {}{}; master lost {} times; {attempts} join attempts, failures {failures}; {}",
        took(back.up_at, limit),
        back.minions,
        took(back.minions_at, limit),
        back.shown,
        took(back.master_at, limit),
        not_allowed(&master, n).await,
        with(&tally, |t| t.lost) - lost_before,
        load()
    );
    complete &= back.minions_at.is_some() && back.master_at.is_some();
    master.kill().await;
    for road in roads {
        road.shutdown().await;
    }
    Ok(complete)
}
