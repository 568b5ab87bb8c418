//! The real-process harness of the daemons' tests (`master/tests`, `minion/tests`): the real
//! `salt-raet-master` and `salt-raet-minion` binaries run on loopback (on UDP ports the kernel
//! picks: `raet_port: 0`, a master's port read from its `status`) with configurations in
//! temporary directories; test yards attach to their lanes with `raet::lane::LaneStack`;
//! Salt's event bus is played by the test. Synchronisation is by polling files and
//! `status --json` under a time limit, never by sleeping for a fixed time.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use raet::lane::LaneStack;
use salt_raet::evbus;
use serde_json::{json, Map, Value};

/// The daemon binary `name` of this workspace: cargo builds every binary into the profile
/// directory (`target/<profile>/`), which holds the test executable's `deps/` too.
/// `cargo test --workspace` builds both daemons; a test of one package alone needs
/// `cargo build --workspace` first for the other's.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let profile = exe
        .parent()
        .and_then(Path::parent)
        .expect("a test executable under target/<profile>/deps");
    let path = profile.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace` (cargo test --workspace does)",
        path.display()
    );
    path
}

/// A running daemon, killed when dropped.
pub struct Daemon {
    /// The running process (none before the first start).
    child: Option<Child>,
    /// Its configuration directory (`-c`).
    pub etc: PathBuf,
    /// Its `sock_dir`.
    pub sock: PathBuf,
    /// Its `pki_dir`.
    pub pki: PathBuf,
    /// Its binary.
    pub bin: PathBuf,
}

impl Daemon {
    fn child(&self) -> &Child {
        self.child.as_ref().expect("the daemon was started")
    }

    fn child_mut(&mut self) -> &mut Child {
        self.child.as_mut().expect("the daemon was started")
    }

    /// Its estate name (`estate` of its status).
    pub fn estate(&self) -> String {
        let status = self.status().expect("a status");
        status["estate"].as_str().expect("estate").to_owned()
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child().id()
    }

    /// Its resident memory (`VmRSS` of `/proc/<pid>/status`), in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/<pid>/status")
    }

    /// Starts `bin` with configuration directory `etc` (its `sock_dir` and `pki_dir` given
    /// for the tests' use); its standard error goes to `daemon.log` beside `etc`.
    pub fn start(bin: &Path, etc: &Path, sock: &Path, pki: &Path) -> Self {
        let mut daemon = Self {
            child: None,
            etc: etc.to_owned(),
            sock: sock.to_owned(),
            pki: pki.to_owned(),
            bin: bin.to_owned(),
        };
        daemon.restart();
        daemon
    }

    /// Kills the daemon if it runs, and starts it again.
    pub fn restart(&mut self) {
        self.kill();
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.etc.with_file_name("daemon.log"))
            .unwrap();
        self.child = Some(
            Command::new(&self.bin)
                .arg("-c")
                .arg(&self.etc)
                .args(["-l", "debug"])
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
    }

    /// Sends signal `sig` (`-TERM`, `-HUP`, ...) with `kill`.
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([sig, &self.child().id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// SIGTERM, then the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        self.signal("-TERM");
        let started = Instant::now();
        loop {
            if let Some(status) = self.child_mut().try_wait().unwrap() {
                return status.code();
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "no exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the daemon (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// What `status ARGS` of this daemon prints (None while it does not answer).
    pub fn status_output(&self, args: &[&str]) -> Option<String> {
        let out = Command::new(&self.bin)
            .arg("-c")
            .arg(&self.etc)
            .arg("status")
            .args(args)
            .output()
            .unwrap();
        if !out.status.success() {
            return None;
        }
        String::from_utf8(out.stdout).ok()
    }

    /// `status --json` of this daemon (None while it does not answer).
    pub fn status(&self) -> Option<Value> {
        serde_json::from_str(&self.status_output(&["--json"])?).ok()
    }

    /// The UDP port of this daemon's road (the kernel's pick), from its status.
    pub fn port(&self) -> u16 {
        let mut port = None;
        wait_for(LIMIT, "the daemon's status", || {
            port = self.status().and_then(|s| {
                let road: std::net::SocketAddr = s["road"].as_str()?.parse().ok()?;
                Some(road.port())
            });
            port.is_some()
        });
        port.unwrap_or_default()
    }

    /// Keeps this daemon's road on its current port across restarts (`raet_port: 0` in its
    /// configuration replaced by the port the kernel picked).
    pub fn pin_port(&self) {
        let port = self.port();
        let file = fs::read_dir(&self.etc)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.is_file())
            .unwrap();
        let text = fs::read_to_string(&file).unwrap();
        assert!(text.contains("raet_port: 0\n"), "{text}");
        fs::write(
            &file,
            text.replace("raet_port: 0\n", &format!("raet_port: {port}\n")),
        )
        .unwrap();
    }

    /// `status` of this daemon: the human table.
    pub fn table(&self) -> String {
        self.status_output(&[]).unwrap_or_default()
    }

    /// The status row of remote `id`.
    pub fn row(&self, id: &str) -> Option<Value> {
        let status = self.status()?;
        status["remotes"]
            .as_array()?
            .iter()
            .find(|r| r["id"] == id)
            .cloned()
    }

    /// Its lane directory, `<sock_dir>/raet`.
    pub fn lane_dir(&self) -> PathBuf {
        self.sock.join("raet")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `cond` until it holds; panics with `what` after `limit`.
pub fn wait_for(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let started = Instant::now();
    while !cond() {
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// How long any wait of a test lasts at most.
pub const LIMIT: Duration = Duration::from_secs(20);
/// The daemons' `raet_alive_period` (seconds): a lost peer shows within about a second.
pub const PERIOD: f64 = 0.5;

/// A temporary directory holding the daemons of one test.
pub struct Site {
    _dir: tempfile::TempDir,
    /// The site's directory: one subdirectory per daemon.
    pub root: PathBuf,
    /// The daemons' `raet_alive_period` (seconds; [`PERIOD`] unless set).
    period: f64,
}

impl Default for Site {
    fn default() -> Self {
        Self::new()
    }
}

impl Site {
    /// A new site in a temporary directory (kept with `SALT_RAET_KEEP_TEST_DIRS`).
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        eprintln!("site {}", dir.path().display());
        let root = dir.path().to_owned();
        // Kept for inspection when a test fails (the daemons' logs are in it).
        if std::env::var_os("SALT_RAET_KEEP_TEST_DIRS").is_some() {
            let root = dir.keep();
            let dir = tempfile::tempdir().unwrap();
            return Self {
                _dir: dir,
                root,
                period: PERIOD,
            };
        }
        Self {
            _dir: dir,
            root,
            period: PERIOD,
        }
    }

    /// The same site whose daemons' `raet_alive_period` is `seconds` (a test that must not
    /// be helped by heartbeats).
    pub fn with_period(mut self, seconds: f64) -> Self {
        self.period = seconds;
        self
    }

    /// Writes the `autoreject_file` of the master in `<root>/<dir>` (mode 0600: a pattern
    /// file writable by others is ignored).
    pub fn autoreject(&self, dir: &str, patterns: &str) {
        let file = self.root.join(dir).join("ar");
        fs::create_dir_all(self.root.join(dir)).unwrap();
        fs::write(&file, patterns).unwrap();
        let mode = std::os::unix::fs::PermissionsExt::from_mode(0o600);
        fs::set_permissions(&file, mode).unwrap();
    }

    /// The master in `<root>/master`, on a port the kernel picks ([`Daemon::port`]).
    pub fn master(&self, extra: &str) -> Daemon {
        self.master_in("master", extra)
    }

    /// A master in `<root>/<dir>`.
    pub fn master_in(&self, dir: &str, extra: &str) -> Daemon {
        let base = self.root.join(dir);
        let etc = base.join("etc");
        fs::create_dir_all(&etc).unwrap();
        let (pki, sock) = (base.join("pki"), base.join("sock"));
        fs::write(
            etc.join("master"),
            format!(
                "interface: 127.0.0.1\nraet_port: 0\npki_dir: {}\nsock_dir: {}\n\
                 raet_alive_period: {}\nlog_file: {}/log\nautosign_file: {}/as\n\
                 autoreject_file: {}/ar\n{extra}",
                pki.display(),
                sock.display(),
                self.period,
                base.display(),
                base.display(),
                base.display()
            ),
        )
        .unwrap();
        Daemon::start(&bin("salt-raet-master"), &etc, &sock, &pki)
    }

    /// A minion of the master on `master_port`.
    pub fn minion(&self, id: &str, master_port: u16) -> Daemon {
        self.minion_with(id, master_port, "")
    }

    /// A minion of the master on `master_port` with `extra` configuration lines.
    pub fn minion_with(&self, id: &str, master_port: u16, extra: &str) -> Daemon {
        let masters = format!("master: 127.0.0.1\nraet_master_port: {master_port}\n");
        self.minion_of(id, &masters, extra)
    }

    /// A minion whose `master` (and `raet_master_port`) lines are `masters`.
    pub fn minion_of(&self, id: &str, masters: &str, extra: &str) -> Daemon {
        let base = self.root.join(id);
        let etc = base.join("etc");
        fs::create_dir_all(&etc).unwrap();
        let (pki, sock) = (base.join("pki"), base.join("sock"));
        fs::write(
            etc.join("minion"),
            format!(
                "id: {id}\n{masters}raet_port: 0\npki_dir: {}\nsock_dir: {}\n\
                 raet_alive_period: {}\n\
                 log_file: {}/log\n{extra}",
                pki.display(),
                sock.display(),
                self.period,
                base.display()
            ),
        )
        .unwrap();
        Daemon::start(&bin("salt-raet-minion"), &etc, &sock, &pki)
    }
}

/// Whether `master`'s status shows minion `id` allowed.
pub fn allowed(master: &Daemon, id: &str) -> bool {
    master.row(id).is_some_and(|r| r["allowed"] == true)
}

/// The JSON object `v`.
pub fn obj(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap()
}

/// A test process attached to a daemon's lane.
pub struct Yard {
    lane: LaneStack,
    /// The yard's name.
    pub name: String,
}

impl Yard {
    /// Attaches yard `name` to `daemon`'s lane and registers it with `load` (its shares).
    pub async fn attach(daemon: &Daemon, name: &str, load: Value) -> Self {
        let lane = LaneStack::bind(daemon.lane_dir(), "salt", name)
            .await
            .unwrap();
        let yard = Self {
            lane,
            name: name.to_owned(),
        };
        yard.send(json!(null), "manor", "register", load).await;
        let ack = yard.recv().await;
        assert_eq!(ack["load"]["registered"], true, "{ack}");
        yard
    }

    /// Sends `load` to `[estate, yard, share]` (an empty `yard`: none) through the daemon.
    pub async fn send(&self, estate: Value, yard: &str, share: &str, load: Value) {
        let yard = if yard.is_empty() {
            json!(null)
        } else {
            json!(yard)
        };
        let msg = json!({"route": {"src": [null, self.name, null], "dst": [estate, yard, share]}, "load": load});
        self.lane.send("manor", &obj(msg)).await.unwrap();
    }

    /// The next message to this yard (all come from the daemon's `manor`).
    pub async fn recv(&self) -> Value {
        self.recv_within(LIMIT)
            .await
            .unwrap_or_else(|| panic!("no message for yard {} in time", self.name))
    }

    /// The next message to this yard if one comes within `limit`.
    pub async fn recv_within(&self, limit: Duration) -> Option<Value> {
        let (from, body) = tokio::time::timeout(limit, self.lane.recv())
            .await
            .ok()?
            .unwrap();
        assert_eq!(from, "manor", "everything comes through the daemon");
        Some(Value::Object(body))
    }
}

/// A tokio runtime for a test's async parts.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().unwrap()
}

/// Where `master` keeps minion `id`'s key while it is pending.
pub fn pending(master: &Daemon, id: &str) -> PathBuf {
    master.pki.join("minions_pre").join(id)
}

/// Where `master` keeps minion `id`'s accepted key.
pub fn accepted(master: &Daemon, id: &str) -> PathBuf {
    master.pki.join("minions").join(id)
}

/// Waits for minion `id`'s pending key, accepts it as `salt-key -a` does (moves it to
/// `minions/`) and waits for the minion to be allowed.
pub fn accept_pending(master: &Daemon, id: &str) {
    wait_for(LIMIT, &format!("{id} pending"), || {
        pending(master, id).exists()
    });
    fs::rename(pending(master, id), accepted(master, id)).unwrap();
    wait_for(LIMIT, &format!("{id} allowed"), || allowed(master, id));
}

/// Salt's master event bus played by the test: the two Unix sockets in the master's
/// `sock_dir`, bound before the master starts.
pub struct SaltBus {
    /// Where the master pushes the events it fires (`master_event_pull.ipc`).
    pub pull: tokio::net::UnixListener,
    /// Where the master subscribes to Salt's events (`master_event_pub.ipc`).
    pub publish: tokio::net::UnixListener,
}

impl SaltBus {
    /// A site whose master's `sock_dir` has the bus sockets, and a runtime for them.
    pub fn site() -> (Site, tokio::runtime::Runtime, Self) {
        let site = Site::new();
        let rt = runtime();
        let bus = rt.block_on(async { Self::bind(&site.root.join("master/sock")) });
        (site, rt, bus)
    }

    /// Binds the bus's two sockets in `sock`.
    pub fn bind(sock: &Path) -> Self {
        fs::create_dir_all(sock).unwrap();
        Self {
            pull: tokio::net::UnixListener::bind(sock.join(evbus::PULL_SOCKET)).unwrap(),
            publish: tokio::net::UnixListener::bind(sock.join(evbus::PUB_SOCKET)).unwrap(),
        }
    }

    /// The next connection the master makes to `listener`.
    pub async fn accept(listener: &tokio::net::UnixListener) -> tokio::net::UnixStream {
        tokio::time::timeout(LIMIT, listener.accept())
            .await
            .expect("the master connects to the bus in time")
            .unwrap()
            .0
    }
}

/// Reads pushed events (u32 length + frame) until one with `tag` satisfies `cond`.
pub async fn next_event(
    conn: &mut tokio::net::UnixStream,
    tag: &str,
    cond: impl Fn(&Value) -> bool,
) -> Value {
    use tokio::io::AsyncReadExt;
    let read = async {
        loop {
            let mut len = [0u8; 4];
            conn.read_exact(&mut len).await.unwrap();
            let mut frame = vec![0u8; u32::from_be_bytes(len) as usize];
            conn.read_exact(&mut frame).await.unwrap();
            let event = evbus::parse_body(&evbus::parse_frame(&frame).unwrap()).unwrap();
            eprintln!("bus: {} {}", event.tag, event.data);
            if event.tag == tag && cond(&event.data) {
                return event.data;
            }
        }
    };
    tokio::time::timeout(LIMIT, read)
        .await
        .unwrap_or_else(|_| panic!("no {tag} event in time"))
}

/// What salt-key does: moves (or deletes) the key file, then fires `salt/key`.
pub async fn salt_key(
    publish: &mut tokio::net::UnixStream,
    act: &str,
    id: &str,
    from: &Path,
    to: Option<&Path>,
) {
    use tokio::io::AsyncWriteExt;
    let pem = fs::read_to_string(from).unwrap();
    match to {
        Some(to) => fs::rename(from, to).unwrap(),
        None => fs::remove_file(from).unwrap(),
    }
    let data = json!({"result": true, "act": act, "id": id, "pub": pem, "_stamp": "x"});
    let frame = evbus::frame(&evbus::event_body("salt/key", &data));
    publish.write_all(&frame).await.unwrap();
}

/// The minion's join state and attempt count from its `status --json`.
pub fn join_state(minion: &Daemon) -> Option<(String, u64)> {
    let status = minion.status()?;
    Some((
        status["join"]["state"].as_str()?.to_owned(),
        status["join"]["attempts"].as_u64()?,
    ))
}

/// How many lines of `daemon`'s (debug) log contain `needle`.
pub fn log_lines(daemon: &Daemon, needle: &str) -> usize {
    log_text(daemon)
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}

/// The daemon's log so far (empty if it has none), to show when an assertion fails.
pub fn log_text(daemon: &Daemon) -> String {
    fs::read_to_string(daemon.etc.with_file_name("daemon.log")).unwrap_or_default()
}

/// The public key PEM of the identity in the RAET keep at `keep_dir`, derived by openssl
/// from the keep's Ed25519 seed (`sighex` of `role/local/role.json`; the PKCS#8 DER is a
/// fixed Ed25519 prefix + the seed, `openssl pkey -pubout` prints the PEM): an independent
/// check of the key the daemons compute, with its final newline.
pub fn openssl_public_pem(keep_dir: &Path) -> String {
    let role = fs::read_to_string(keep_dir.join("role/local/role.json")).unwrap();
    let role: Value = serde_json::from_str(&role).unwrap();
    let sighex = role["sighex"].as_str().expect("a sighex in the keep");
    let der = hex_decode(&format!("302e020100300506032b657004220420{sighex}"));
    let pem = pipe(
        Command::new("openssl").args(["pkey", "-inform", "DER", "-pubout"]),
        &der,
    );
    let pem = String::from_utf8(pem).unwrap();
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"), "{pem}");
    pem
}

/// The bytes of the hex string `s`.
pub fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

/// Runs `cmd` with `input` on its standard input; its standard output (it must succeed).
pub fn pipe(cmd: &mut Command, input: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    out.stdout
}
