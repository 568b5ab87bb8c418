//! Runs the real `salt-raet-master` and `salt-raet-minion` binaries on loopback (on UDP ports
//! the kernel picks: `raet_port: 0`, a master's port read from its `status`) with
//! configurations in temporary directories; test yards attach to their lanes with
//! `raet::lane::LaneStack`. Synchronisation is by polling files and `status --json` under a
//! time limit, never by sleeping for a fixed time.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use raet::crypto::{PrivateKey, Signer};
use raet::keep::{AutoMode, MemKeep};
use raet::lane::LaneStack;
use raet::road::RoadConfig;
use raet::stack::{RoadStack, StackError};
use salt_raet::evbus;
use salt_raet::identity::Identity;
use serde_json::{json, Map, Value};

const MASTER: &str = env!("CARGO_BIN_EXE_salt-raet-master");

/// The minion binary, built next to the master's by `cargo test --workspace`.
fn minion_bin() -> PathBuf {
    let path = Path::new(MASTER).with_file_name("salt-raet-minion");
    assert!(
        path.exists(),
        "{} is missing: run `cargo build -p salt-raet-minion` (cargo test --workspace does)",
        path.display()
    );
    path
}

/// A running daemon, killed when dropped.
struct Daemon {
    child: Child,
    etc: PathBuf,
    sock: PathBuf,
    pki: PathBuf,
    bin: PathBuf,
}

impl Daemon {
    fn start(bin: &Path, etc: &Path, sock: &Path, pki: &Path) -> Daemon {
        let mut daemon = Daemon {
            child: Command::new("true").spawn().unwrap(),
            etc: etc.to_owned(),
            sock: sock.to_owned(),
            pki: pki.to_owned(),
            bin: bin.to_owned(),
        };
        daemon.restart();
        daemon
    }

    fn restart(&mut self) {
        self.kill();
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.etc.with_file_name("daemon.log"))
            .unwrap();
        self.child = Command::new(&self.bin)
            .arg("-c")
            .arg(&self.etc)
            .args(["-l", "debug"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
    }

    fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// SIGTERM, then the exit code.
    fn terminate(&mut self) -> Option<i32> {
        self.signal("-TERM");
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "no exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// `status --json` of this daemon (None while it does not answer).
    fn status(&self) -> Option<Value> {
        let out = Command::new(&self.bin)
            .arg("-c")
            .arg(&self.etc)
            .args(["status", "--json"])
            .output()
            .unwrap();
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    /// The UDP port of this daemon's road (the kernel's pick), from its status.
    fn port(&self) -> u16 {
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
    fn pin_port(&self) {
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
    fn table(&self) -> String {
        let out = Command::new(&self.bin)
            .arg("-c")
            .arg(&self.etc)
            .arg("status")
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    }

    /// The status row of remote `id`.
    fn row(&self, id: &str) -> Option<Value> {
        let status = self.status()?;
        status["remotes"]
            .as_array()?
            .iter()
            .find(|r| r["id"] == id)
            .cloned()
    }

    fn lane_dir(&self) -> PathBuf {
        self.sock.join("raet")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `cond` until it holds; panics with `what` after `limit`.
fn wait_for(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let started = Instant::now();
    while !cond() {
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

const LIMIT: Duration = Duration::from_secs(20);
const PERIOD: f64 = 0.5;

struct Site {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Site {
    fn new() -> Site {
        let dir = tempfile::tempdir().unwrap();
        eprintln!("site {}", dir.path().display());
        let root = dir.path().to_owned();
        // Kept for inspection when a test fails (the daemons' logs are in it).
        if std::env::var_os("SALT_RAET_KEEP_TEST_DIRS").is_some() {
            let root = dir.keep();
            let dir = tempfile::tempdir().unwrap();
            return Site { _dir: dir, root };
        }
        Site { _dir: dir, root }
    }

    /// Writes the `autoreject_file` of the master in `<root>/<dir>` (mode 0600: a pattern
    /// file writable by others is ignored).
    fn autoreject(&self, dir: &str, patterns: &str) {
        let file = self.root.join(dir).join("ar");
        fs::create_dir_all(self.root.join(dir)).unwrap();
        fs::write(&file, patterns).unwrap();
        let mode = std::os::unix::fs::PermissionsExt::from_mode(0o600);
        fs::set_permissions(&file, mode).unwrap();
    }

    /// The master in `<root>/master`, on a port the kernel picks ([`Daemon::port`]).
    fn master(&self, extra: &str) -> Daemon {
        self.master_in("master", extra)
    }

    /// A master in `<root>/<dir>`.
    fn master_in(&self, dir: &str, extra: &str) -> Daemon {
        let base = self.root.join(dir);
        let etc = base.join("etc");
        fs::create_dir_all(&etc).unwrap();
        let (pki, sock) = (base.join("pki"), base.join("sock"));
        fs::write(
            etc.join("master"),
            format!(
                "interface: 127.0.0.1\nraet_port: 0\npki_dir: {}\nsock_dir: {}\n\
                 raet_alive_period: {PERIOD}\nlog_file: {}/log\nautosign_file: {}/as\n\
                 autoreject_file: {}/ar\n{extra}",
                pki.display(),
                sock.display(),
                base.display(),
                base.display(),
                base.display()
            ),
        )
        .unwrap();
        Daemon::start(Path::new(MASTER), &etc, &sock, &pki)
    }

    /// A minion of the master on `master_port`.
    fn minion(&self, id: &str, master_port: u16) -> Daemon {
        self.minion_with(id, master_port, "")
    }

    /// A minion of the master on `master_port` with `extra` configuration lines.
    fn minion_with(&self, id: &str, master_port: u16, extra: &str) -> Daemon {
        let masters = format!("master: 127.0.0.1\nraet_master_port: {master_port}\n");
        self.minion_of(id, &masters, extra)
    }

    /// A minion whose `master` (and `raet_master_port`) lines are `masters`.
    fn minion_of(&self, id: &str, masters: &str, extra: &str) -> Daemon {
        let base = self.root.join(id);
        let etc = base.join("etc");
        fs::create_dir_all(&etc).unwrap();
        let (pki, sock) = (base.join("pki"), base.join("sock"));
        fs::write(
            etc.join("minion"),
            format!(
                "id: {id}\n{masters}raet_port: 0\npki_dir: {}\nsock_dir: {}\n\
                 raet_alive_period: {PERIOD}\n\
                 log_file: {}/log\n{extra}",
                pki.display(),
                sock.display(),
                base.display()
            ),
        )
        .unwrap();
        Daemon::start(&minion_bin(), &etc, &sock, &pki)
    }
}

fn allowed(master: &Daemon, id: &str) -> bool {
    master.row(id).is_some_and(|r| r["allowed"] == true)
}

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap()
}

/// A test process attached to a daemon's lane.
struct Yard {
    lane: LaneStack,
    name: String,
}

impl Yard {
    async fn attach(daemon: &Daemon, name: &str, load: Value) -> Yard {
        let lane = LaneStack::bind(daemon.lane_dir(), "salt", name)
            .await
            .unwrap();
        let yard = Yard {
            lane,
            name: name.to_owned(),
        };
        yard.send(json!(null), "manor", "register", load).await;
        let ack = yard.recv().await;
        assert_eq!(ack["load"]["registered"], true, "{ack}");
        yard
    }

    async fn send(&self, estate: Value, yard: &str, share: &str, load: Value) {
        let yard = if yard.is_empty() {
            json!(null)
        } else {
            json!(yard)
        };
        let msg = json!({"route": {"src": [null, self.name, null], "dst": [estate, yard, share]}, "load": load});
        self.lane.send("manor", &obj(msg)).await.unwrap();
    }

    async fn recv(&self) -> Value {
        let (from, body) = tokio::time::timeout(LIMIT, self.lane.recv())
            .await
            .unwrap_or_else(|_| panic!("no message for yard {} in time", self.name))
            .unwrap();
        assert_eq!(from, "manor", "everything comes through the daemon");
        Value::Object(body)
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().unwrap()
}

fn pending(master: &Daemon, id: &str) -> PathBuf {
    master.pki.join("minions_pre").join(id)
}

fn accepted(master: &Daemon, id: &str) -> PathBuf {
    master.pki.join("minions").join(id)
}

#[test]
fn never_mode_pends_and_only_accepted_minions_exchange_messages() {
    let site = Site::new();
    let master = site.master("");
    let port = master.port();
    let minions: Vec<Daemon> = (1..=3)
        .map(|i| site.minion(&format!("m{i}"), port))
        .collect();
    for id in ["m1", "m2", "m3"] {
        wait_for(LIMIT, "three pending keys", || {
            pending(&master, id).exists()
        });
        let pem = fs::read_to_string(pending(&master, id)).unwrap();
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"), "{pem}");
    }
    assert!(!master.pki.join("minions").join("m1").exists());
    assert!(!allowed(&master, "m1"));

    // salt-key -a m1
    fs::rename(pending(&master, "m1"), accepted(&master, "m1")).unwrap();
    wait_for(LIMIT, "m1 allowed", || allowed(&master, "m1"));
    let master_id = master.status().unwrap()["estate"]
        .as_str()
        .unwrap()
        .to_owned();

    runtime().block_on(async {
        let tester = Yard::attach(&master, "tester", json!({"shares": ["ret"]})).await;
        let worker = Yard::attach(&minions[0], "worker", json!({"shares": ["job"]})).await;
        let _w2 = Yard::attach(&minions[1], "worker", json!({"shares": ["job"]})).await;

        // master -> m1, answered back to the share "ret" of the master.
        tester.send(json!("m1"), "", "job", json!({"n": 1})).await;
        let got = worker.recv().await;
        assert_eq!(got["load"]["n"], 1);
        assert_eq!(
            got["route"]["src"][0],
            json!(master_id),
            "src estate filled by the master"
        );
        assert_eq!(got["route"]["src"][1], "tester");
        worker
            .send(json!(master_id), "", "ret", json!({"ok": true}))
            .await;
        let back = tester.recv().await;
        assert_eq!(back["load"]["ok"], true);
        assert_eq!(
            back["route"]["src"][0], "m1",
            "src estate is the authenticated road peer"
        );

        // m2 is pending: an error, not silence.
        tester.send(json!("m2"), "", "job", json!({"n": 2})).await;
        let err = tester.recv().await;
        assert_eq!(err["load"]["kind"], "unknown_estate", "{err}");
        // An unregistered share on m1: an error from m1's daemon.
        tester.send(json!("m1"), "", "nothing", json!({})).await;
        let err = tester.recv().await;
        assert_eq!(err["load"]["kind"], "unknown_share", "{err}");
        assert_eq!(err["route"]["src"][0], "m1");
        // "*" reaches every accepted minion, here m1 only.
        tester.send(json!("*"), "", "job", json!({"n": 3})).await;
        assert_eq!(worker.recv().await["load"]["n"], 3);
    });

    // salt-key -r m1: the session is dropped.
    let rejected = master.pki.join("minions_rejected").join("m1");
    fs::rename(accepted(&master, "m1"), &rejected).unwrap();
    wait_for(LIMIT, "m1 dropped", || {
        master
            .row("m1")
            .is_some_and(|r| r["allowed"] == false && r["acceptance"] == "rejected")
    });

    // salt-key -a m2, then salt-key -d m2: dropped, and it comes back as pending (Salt).
    fs::rename(pending(&master, "m2"), accepted(&master, "m2")).unwrap();
    wait_for(LIMIT, "m2 allowed", || allowed(&master, "m2"));
    fs::remove_file(accepted(&master, "m2")).unwrap();
    wait_for(LIMIT, "m2 dropped and pending again", || {
        pending(&master, "m2").exists() && !allowed(&master, "m2")
    });
    runtime().block_on(async {
        let tester = Yard::attach(&master, "tester2", json!({"shares": ["ret"]})).await;
        for id in ["m1", "m2", "m3"] {
            tester.send(json!(id), "", "job", json!({})).await;
            let err = tester.recv().await;
            assert_eq!(err["load"]["kind"], "unknown_estate", "{id}: {err}");
        }
    });
    assert!(!allowed(&master, "m3"));
    drop(minions);
    // The daemon also logs to its `log_file` (no colour codes there).
    let log = fs::read_to_string(site.root.join("master/log")).unwrap();
    assert!(
        log.contains("minion key decision") && !log.contains('\u{1b}'),
        "{log}"
    );
    // Created with Salt's mode (the default log file is salt-master's).
    let mode = fs::metadata(site.root.join("master/log"))
        .unwrap()
        .permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o640
    );
}

#[test]
fn once_mode_loses_a_killed_minion_and_denies_its_new_key() {
    let site = Site::new();
    let master = site.master("auto_accept: True\n");
    let mut minion = site.minion("m1", master.port());
    wait_for(LIMIT, "m1 accepted and allowed", || {
        accepted(&master, "m1").exists() && allowed(&master, "m1")
    });
    runtime().block_on(async {
        let watcher = Yard::attach(&master, "watcher", json!({"shares": ["presence"]})).await;
        minion.kill();
        let killed = Instant::now();
        loop {
            let msg = watcher.recv().await;
            if msg["load"]["change"] == "lost" {
                assert_eq!(msg["load"]["id"], "m1");
                break;
            }
        }
        let took = killed.elapsed().as_secs_f64();
        assert!(took <= 3.0 * PERIOD + 0.5, "lost after {took:.2} s");
    });
    let row = master.row("m1").unwrap();
    assert_eq!(row["presence"], "lost", "{row}");
    assert_eq!(row["allowed"], false, "{row}");
    assert_eq!(row["acceptance"], "accepted", "{row}");

    // The minion comes back with a new identity: denied (Salt's once).
    fs::remove_dir_all(minion.pki.join("raet")).unwrap();
    minion.restart();
    let denied = master.pki.join("minions_denied").join("m1");
    wait_for(LIMIT, "the new key denied", || denied.exists());
    assert!(accepted(&master, "m1").exists(), "the accepted key stays");
    assert!(!allowed(&master, "m1"));
}

#[test]
fn master_restart_brings_minions_back_and_sigterm_cleans_up() {
    let site = Site::new();
    let mut master = site.master("auto_accept: True\n");
    // Restarted on the same port, where its minions look for it.
    master.pin_port();
    let port = master.port();
    let mut minions: Vec<Daemon> = (1..=2)
        .map(|i| site.minion(&format!("r{i}"), port))
        .collect();
    for id in ["r1", "r2"] {
        wait_for(LIMIT, "minions allowed", || allowed(&master, id));
    }
    let table = master.table();
    for id in ["r1", "r2"] {
        let line = table
            .lines()
            .find(|l| l.starts_with(id))
            .unwrap_or_default();
        assert!(
            line.contains("accepted") && line.contains("127.0.0.1:"),
            "{table}"
        );
    }
    let minion_view = minions[0].status().unwrap();
    let master_row = &minion_view["remotes"][0];
    assert_eq!(master_row["allowed"], true, "{minion_view}");
    assert_eq!(master_row["id"], master.status().unwrap()["estate"]);

    assert_eq!(master.terminate(), Some(0), "clean exit on SIGTERM");
    assert!(
        !master.lane_dir().join("salt.manor.uxd").exists(),
        "lane socket removed"
    );
    master.restart();
    let restarted = Instant::now();
    for id in ["r1", "r2"] {
        wait_for(
            Duration::from_secs(10),
            "minions back after the restart",
            || allowed(&master, id),
        );
    }
    eprintln!(
        "minions back {:.2} s after the restart",
        restarted.elapsed().as_secs_f64()
    );
    runtime().block_on(async {
        let tester = Yard::attach(&master, "tester", json!({"shares": ["ret"]})).await;
        let worker = Yard::attach(&minions[1], "worker", json!({"shares": ["job"]})).await;
        tester
            .send(json!(["r2"]), "", "job", json!({"after": "restart"}))
            .await;
        assert_eq!(worker.recv().await["load"]["after"], "restart");
    });
    for minion in &mut minions {
        assert_eq!(minion.terminate(), Some(0));
        assert!(!minion.lane_dir().join("salt.manor.uxd").exists());
    }
}

/// Salt's master event bus played by the test: the two Unix sockets in the master's
/// `sock_dir`, bound before the master starts.
struct SaltBus {
    pull: tokio::net::UnixListener,
    publish: tokio::net::UnixListener,
}

impl SaltBus {
    /// A site whose master's `sock_dir` has the bus sockets, and a runtime for them.
    fn site() -> (Site, tokio::runtime::Runtime, SaltBus) {
        let site = Site::new();
        let rt = runtime();
        let bus = rt.block_on(async { SaltBus::bind(&site.root.join("master/sock")) });
        (site, rt, bus)
    }

    fn bind(sock: &Path) -> SaltBus {
        fs::create_dir_all(sock).unwrap();
        SaltBus {
            pull: tokio::net::UnixListener::bind(sock.join(evbus::PULL_SOCKET)).unwrap(),
            publish: tokio::net::UnixListener::bind(sock.join(evbus::PUB_SOCKET)).unwrap(),
        }
    }

    async fn accept(listener: &tokio::net::UnixListener) -> tokio::net::UnixStream {
        tokio::time::timeout(LIMIT, listener.accept())
            .await
            .expect("the master connects to the bus in time")
            .unwrap()
            .0
    }
}

/// Reads pushed events (u32 length + frame) until one with `tag` satisfies `cond`.
async fn next_event(
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
async fn salt_key(
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

#[test]
fn event_bus_carries_auth_key_and_presence_events() {
    let (site, rt, bus) = SaltBus::site();
    let master = site.master("presence_events: True\nloop_interval: 1\n");
    let mut minion = site.minion("m1", master.port());
    rt.block_on(async {
        let mut pull = SaltBus::accept(&bus.pull).await;
        let mut publish = SaltBus::accept(&bus.publish).await;
        let pend = next_event(&mut pull, "salt/auth", |d| d["id"] == "m1").await;
        assert_eq!(pend["act"], "pend", "{pend}");
        assert_eq!(pend["result"], true);
        let pem = fs::read_to_string(pending(&master, "m1")).unwrap();
        assert_eq!(pend["pub"], json!(pem), "the key salt-key shows");
        assert!(pend["_stamp"].as_str().is_some_and(|s| s.contains('T')));

        // salt-key -a m1: the event makes the master look at once.
        salt_key(
            &mut publish,
            "accept",
            "m1",
            &pending(&master, "m1"),
            Some(&accepted(&master, "m1")),
        )
        .await;
        // The pending join completes: Salt fires accept at the minion's next `_auth`.
        let accept = next_event(&mut pull, "salt/auth", |d| d["id"] == "m1").await;
        assert_eq!(accept["act"], "accept", "{accept}");
        assert_eq!(accept["pub"], json!(pem));
        let change = next_event(&mut pull, "salt/presence/change", |_| true).await;
        assert_eq!(
            change,
            json!({"new": ["m1"], "lost": [], "_stamp": change["_stamp"]})
        );
        let present = next_event(&mut pull, "salt/presence/present", |d| {
            d["present"] == json!(["m1"])
        })
        .await;
        assert!(present["_stamp"].is_string());
        let status = master.status().unwrap();
        assert!(
            status["event_bus"]["received"].as_u64() >= Some(1),
            "{status}"
        );
        assert_eq!(status["event_bus"]["garbage"], 0, "{status}");

        // A restarted minion rejoins before it is lost: the road accepts it from the keys
        // it holds, and that fires accept too.
        minion.restart();
        let again = next_event(&mut pull, "salt/auth", |d| d["id"] == "m1").await;
        assert_eq!(again["act"], "accept", "{again}");
        assert_eq!(again["pub"], json!(pem));

        // A killed minion is lost.
        minion.kill();
        let lost = next_event(&mut pull, "salt/presence/change", |d| {
            d["lost"] == json!(["m1"])
        })
        .await;
        assert_eq!(lost["new"], json!([]));
        let present = next_event(&mut pull, "salt/presence/present", |_| true).await;
        assert_eq!(present["present"], json!([]));
    });
}

/// A road of this process (auto always, keys in memory) joins the master on `port`
/// and is shut down again: what the join came to.
fn forged_join(
    mut config: RoadConfig,
    keys: Option<(Signer, PrivateKey)>,
    port: u16,
) -> Result<raet::road::Uid, StackError> {
    config.auto = AutoMode::Always;
    runtime().block_on(async {
        let road = RoadStack::bind(config, keys, Box::new(MemKeep::new()))
            .await
            .unwrap();
        let joined = road
            .join(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
            .await;
        road.shutdown().await;
        joined
    })
}

/// The minion's join state and attempt count from its `status --json`.
fn join_state(minion: &Daemon) -> Option<(String, u64)> {
    let status = minion.status()?;
    Some((
        status["join"]["state"].as_str()?.to_owned(),
        status["join"]["attempts"].as_u64()?,
    ))
}

#[test]
fn a_rejected_minion_stops_until_sighup() {
    let site = Site::new();
    let master = site.master("");
    let minion = site.minion("m1", master.port());
    wait_for(LIMIT, "m1 pending", || pending(&master, "m1").exists());
    let rejected = master.pki.join("minions_rejected").join("m1");

    // salt-key -r m1 while its join is pending: the join is answered with a reject.
    fs::rename(pending(&master, "m1"), &rejected).unwrap();
    wait_for(LIMIT, "m1 told it is rejected", || {
        join_state(&minion).is_some_and(|(state, _)| state == "rejected")
    });
    let (_, attempts) = join_state(&minion).unwrap();
    // SIGHUP: exactly one more attempt, rejected again; then it waits again.
    minion.signal("-HUP");
    wait_for(LIMIT, "one more attempt after SIGHUP", || {
        join_state(&minion) == Some(("rejected".to_owned(), attempts + 1))
    });

    // salt-key -a m1 (from rejected), then SIGHUP: joined and allowed.
    fs::rename(&rejected, accepted(&master, "m1")).unwrap();
    minion.signal("-HUP");
    wait_for(LIMIT, "m1 allowed after SIGHUP", || allowed(&master, "m1"));
    assert_eq!(join_state(&minion).unwrap().0, "joined");
    let table = minion.table();
    assert!(
        table
            .lines()
            .last()
            .is_some_and(|l| l.starts_with("join: joined (")),
        "{table}"
    );

    // salt-key -r m1 of a joined minion: the master drops the session; the minion's next
    // alive goes unanswered, its rejoin is rejected, and it stops.
    fs::rename(accepted(&master, "m1"), &rejected).unwrap();
    wait_for(LIMIT, "joined m1 told it is rejected", || {
        join_state(&minion).is_some_and(|(state, _)| state == "rejected")
    });
    assert!(!allowed(&master, "m1"));
    let minion_view = minion.status().unwrap();
    let row = &minion_view["remotes"][0];
    assert!(
        row["joined"] == false && row["allowed"] == false,
        "no session kept: {minion_view}"
    );
}

/// Whether `minion`'s status shows its master allowed (asked in-process, without starting a
/// `status` process, so that the time measured is the daemons').
async fn minion_allows_master(minion: &Daemon) -> bool {
    let Ok(status) = salt_raet::daemon::query_status(&minion.sock).await else {
        return false;
    };
    let rows = status.get("remotes").and_then(Value::as_array);
    rows.into_iter().flatten().any(|r| r["allowed"] == true)
}

/// Accepts `id` as salt-key does (moves its key file); returns how long its minion took to
/// show its master allowed.
fn accept_and_time(
    rt: &tokio::runtime::Runtime,
    master: &Daemon,
    minion: &Daemon,
    id: &str,
) -> f64 {
    rt.block_on(async {
        assert!(
            !minion_allows_master(minion).await,
            "{id} allowed before its accept"
        );
        let moved = Instant::now();
        fs::rename(pending(master, id), accepted(master, id)).unwrap();
        while !minion_allows_master(minion).await {
            assert!(moved.elapsed() < LIMIT, "{id} never saw its master allowed");
        }
        moved.elapsed().as_secs_f64()
    })
}

/// How many lines of `daemon`'s (debug) log contain `needle`.
fn log_lines(daemon: &Daemon, needle: &str) -> usize {
    let log = fs::read_to_string(daemon.etc.with_file_name("daemon.log")).unwrap_or_default();
    log.lines().filter(|l| l.contains(needle)).count()
}

/// Accepting a pending key completes the minion's join at once, however long it has been
/// pending and wherever its join loop is: during a join (the master answers the pended
/// join), or just after one ended (the minion asks again at once, not after its backoff).
#[test]
fn an_accepted_key_reaches_the_pending_minion_at_once() {
    let site = Site::new();
    let ids = ["b1", "b2", "b3", "b4"];
    let master = site.master("");
    let port = master.port();
    let minions: Vec<Daemon> = ids.iter().map(|id| site.minion(id, port)).collect();
    let rt = runtime();
    let mut took = vec![];
    for id in ids {
        wait_for(LIMIT, "pending keys", || pending(&master, id).exists());
    }
    // Pending for a moment only.
    took.push(accept_and_time(&rt, &master, &minions[0], "b1"));
    // Pending for over 20 s (five pended joins), accepted just as its fifth join ended:
    // before asking again, a minion used to wait for its backoff (2.5-5 s by then).
    wait_for(Duration::from_secs(60), "five pended joins of b2", || {
        log_lines(&minions[1], "joiner timed out") >= 5
    });
    let late = accept_and_time(&rt, &master, &minions[1], "b2");
    took.push(late);
    // The others at whatever point of their join loop they are.
    for (minion, id) in minions.iter().zip(ids).skip(2) {
        took.push(accept_and_time(&rt, &master, minion, id));
    }
    for (id, t) in ids.iter().zip(&took) {
        eprintln!("{id}: its minion saw the master allowed {t:.3} s after the key moved");
    }
    assert!(
        late < 2.5,
        "b2 allowed its master {late:.2} s after the accept"
    );
    assert!(took.iter().all(|&t| t < 5.0), "{took:?}");
    // A pended minion keeps asking: no backoff while the master answers.
    let (state, attempts) = join_state(&minions[3]).unwrap();
    assert_eq!(state, "joined");
    assert!(attempts >= 5, "b4 asked {attempts} times");
}

#[test]
fn rejected_retry_keeps_asking_and_autoreject_fires_reject() {
    let (site, rt, bus) = SaltBus::site();
    site.autoreject("master", "bad*\n");
    let master = site.master("");
    let minion = site.minion_with("bad1", master.port(), "rejected_retry: True\n");
    wait_for(LIMIT, "bad1 rejected, retrying", || {
        join_state(&minion).is_some_and(|(state, _)| state == "rejected_retrying")
    });
    assert!(master.pki.join("minions_rejected/bad1").exists());
    rt.block_on(async {
        let mut pull = SaltBus::accept(&bus.pull).await;
        let reject = next_event(&mut pull, "salt/auth", |d| d["id"] == "bad1").await;
        assert_eq!(reject["act"], "reject", "{reject}");
        assert_eq!(reject["result"], false, "{reject}");
    });
}

/// Every file under `dir` with its content (none when `dir` is missing).
fn tree(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).into_iter().flatten() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(tree(&path));
        } else {
            files.push((path.clone(), fs::read(&path).unwrap()));
        }
    }
    files.sort();
    files
}

#[test]
fn salt_crypto_mode_trusts_on_first_use_and_leaves_the_pki_dirs_to_salt() {
    let site = Site::new();
    let crypto = "raet_salt_crypto: True\n";
    // The pki directories as Salt's _auth leaves them: m1's RSA key pending, m2's rejected.
    let pki = site.root.join("master/pki");
    for (sub, id) in [("minions_pre", "m1"), ("minions_rejected", "m2")] {
        fs::create_dir_all(pki.join(sub)).unwrap();
        let rsa = format!(
            "-----BEGIN PUBLIC KEY-----\nnot an ed25519 key: {id}\n-----END PUBLIC KEY-----"
        );
        fs::write(pki.join(sub).join(id), rsa).unwrap();
    }
    // Everything in the pki directories but our keep.
    let salts = || -> Vec<_> {
        tree(&pki)
            .into_iter()
            .filter(|(p, _)| !p.starts_with(pki.join("raet")))
            .collect()
    };
    let before = salts();
    let master = site.master(crypto);
    let port = master.port();
    let minions: Vec<Daemon> = ["m1", "m2"]
        .iter()
        .map(|id| site.minion_with(id, port, crypto))
        .collect();
    for id in ["m1", "m2"] {
        wait_for(LIMIT, "both minions allowed on first use", || {
            allowed(&master, id)
        });
    }
    let status = master.status().unwrap();
    assert_eq!(status["salt_crypto"], true, "{status}");
    let rows = status["remotes"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{status}");
    assert!(
        rows.iter().all(|r| r["acceptance"] == "accepted"),
        "acceptance from the keep, not from the pki files: {status}"
    );
    assert_eq!(minions[0].status().unwrap()["salt_crypto"], true);
    assert_eq!(salts(), before, "the pki directories are Salt's");
    let pinned = pki.join("raet/role/remote/role.m1.json");
    let record: Value = serde_json::from_slice(&fs::read(&pinned).unwrap()).unwrap();
    assert_eq!(record["acceptance"], 1, "{record}");

    // Traffic flows both ways (Salt's own channels would ride on it).
    runtime().block_on(async {
        let tester = Yard::attach(&master, "tester", json!({"shares": ["ret"]})).await;
        let worker = Yard::attach(&minions[1], "worker", json!({"shares": ["job"]})).await;
        tester.send(json!(["m2"]), "", "job", json!({"n": 7})).await;
        assert_eq!(worker.recv().await["load"]["n"], 7);
    });

    // m1 comes back with new RAET keys: rejected (its first keys are pinned), pki untouched.
    let mut m1 = minions.into_iter().next().unwrap();
    m1.kill();
    fs::remove_dir_all(m1.pki.join("raet")).unwrap();
    m1.restart();
    wait_for(LIMIT, "m1's new keys rejected", || {
        join_state(&m1).is_some_and(|(state, _)| state == "rejected")
    });
    // The killed process's session goes on until it is lost (a join with other keys does not
    // end it: an impostor could otherwise cut a minion off).
    wait_for(LIMIT, "m1's old session lost", || !allowed(&master, "m1"));
    assert_eq!(salts(), before);
    // The operator lets the reinstalled minion in by deleting its pinned keys.
    fs::remove_file(&pinned).unwrap();
    m1.signal("-HUP");
    wait_for(LIMIT, "m1 allowed with its new keys", || {
        allowed(&master, "m1")
    });
}

/// The `master` lines of a minion's configuration: a list of masters on loopback.
fn master_list(ports: &[u16]) -> String {
    let entries: String = ports
        .iter()
        .map(|port| format!("  - 127.0.0.1:{port}\n"))
        .collect();
    format!("master:\n{entries}")
}

/// The `masters` entries of a minion's `status --json`.
fn masters_of(minion: &Daemon) -> Vec<Value> {
    let status = minion.status().unwrap_or_default();
    status["masters"].as_array().cloned().unwrap_or_default()
}

/// Whether the minion's status shows its master `index` (configuration order) allowed.
fn master_allowed(minion: &Daemon, index: usize) -> bool {
    masters_of(minion)
        .get(index)
        .is_some_and(|m| m["allowed"] == true && m["state"] == "joined")
}

/// The load of the next message to `yard` from share `share`'s route, skipping presence.
async fn next_load(yard: &Yard) -> Value {
    loop {
        let msg = yard.recv().await;
        if msg["route"]["src"][2] != "presence" {
            return msg;
        }
    }
}

/// `asker` sends request `n` to `dst` (share `req`).
async fn ask(asker: &Yard, dst: Value, n: u64) {
    asker.send(dst, "", "req", json!({"n": n})).await;
}

/// `asker` sends request `n` to `dst` (share `req`); `server` (on master `master_id`) must
/// get it and answers it, and the answer must come back to `asker`.
async fn round_trip(asker: &Yard, dst: Value, server: &Yard, n: u64, master_id: &str) {
    ask(asker, dst, n).await;
    let got = server.recv().await;
    assert_eq!(got["load"]["n"], n, "{got}");
    let (yard, share) = (
        got["route"]["src"][1].as_str(),
        got["route"]["src"][2].clone(),
    );
    assert_eq!(yard, Some(asker.name.as_str()), "{got}");
    assert_eq!(share, json!(null), "{got}");
    server
        .send(json!("mm"), &asker.name, "ret", json!({"answer": n}))
        .await;
    let back = asker.recv().await;
    assert_eq!(back["load"]["answer"], n, "{back}");
    assert_eq!(back["route"]["src"][0], master_id, "{back}");
}

/// One minion, two masters (Salt's `master: [a, b]`, hot/hot): it joins both independently
/// (pending on both; an accept on one lets it exchange messages with that one only),
/// publications reach its yards from both, its upstream requests go to the first joined
/// master in configuration order (or to a master named in the route) and the answers come
/// back to the asking yard; a master stopped → its requests go to the other.
#[test]
fn a_minion_with_two_masters_joins_both_and_fails_over() {
    let site = Site::new();
    let mut alpha = site.master_in("alpha", "id: alpha_master\n");
    // Restarted below on the same port.
    alpha.pin_port();
    let beta = site.master_in("beta", "id: beta_master\n");
    let masters = master_list(&[alpha.port(), beta.port()]);
    let minion = site.minion_of("mm", &masters, "");
    for master in [&alpha, &beta] {
        wait_for(LIMIT, "mm pending on both masters", || {
            pending(master, "mm").exists()
        });
    }
    // The same identity on both.
    assert_eq!(
        fs::read(pending(&alpha, "mm")).unwrap(),
        fs::read(pending(&beta, "mm")).unwrap()
    );
    let status = minion.status().unwrap();
    let listed = status["masters"].as_array().unwrap();
    assert_eq!(listed.len(), 2, "{status}");
    for (entry, master) in listed.iter().zip([&alpha, &beta]) {
        let address = format!("127.0.0.1:{}", master.port());
        assert_eq!(entry["master"], json!(address), "{status}");
        assert_eq!(entry["address"], json!(address), "{status}");
        assert_eq!(entry["allowed"], false, "{status}");
    }
    assert_eq!(status["join"]["state"], "joining", "{status}");

    // salt-key -a mm on beta only: mm talks to beta, still pending on alpha.
    fs::rename(pending(&beta, "mm"), accepted(&beta, "mm")).unwrap();
    wait_for(LIMIT, "beta allows mm", || {
        allowed(&beta, "mm") && master_allowed(&minion, 1)
    });
    assert!(!master_allowed(&minion, 0));
    assert!(pending(&alpha, "mm").exists());
    let status = minion.status().unwrap();
    assert_eq!(status["join"]["state"], "joined", "{status}");
    assert_eq!(status["masters"][1]["id"], "beta_master", "{status}");
    assert_eq!(status["masters"][0]["state"], "joining", "{status}");

    let rt = runtime();
    let (asker, worker, a_req, b_req) = rt.block_on(async {
        let asker = Yard::attach(&minion, "asker", json!({"shares": ["ret"]})).await;
        let worker = Yard::attach(&minion, "worker", json!({"shares": ["job"]})).await;
        let a_req = Yard::attach(&alpha, "req", json!({"shares": ["req", "ret"]})).await;
        let b_req = Yard::attach(&beta, "req", json!({"shares": ["req", "ret"]})).await;
        // beta -> mm; alpha -> mm is refused (mm is pending there).
        b_req
            .send(json!("mm"), "", "job", json!({"from": "b"}))
            .await;
        let got = next_load(&worker).await;
        assert_eq!(got["load"]["from"], "b");
        assert_eq!(got["route"]["src"][0], "beta_master");
        a_req.send(json!("mm"), "", "job", json!({})).await;
        assert_eq!(a_req.recv().await["load"]["kind"], "unknown_estate");
        // Upstream: alpha is first in the configuration, but only beta is joined.
        ask(&asker, json!(null), 1).await;
        let got = b_req.recv().await;
        assert_eq!(got["load"]["n"], 1, "{got}");
        assert_eq!(got["route"]["src"][0], "mm");
        assert_eq!(got["route"]["src"][1], "asker");
        (asker, worker, a_req, b_req)
    });

    // salt-key -a mm on alpha too: both joined; upstream prefers alpha (first).
    fs::rename(pending(&alpha, "mm"), accepted(&alpha, "mm")).unwrap();
    wait_for(LIMIT, "alpha allows mm", || {
        allowed(&alpha, "mm") && master_allowed(&minion, 0)
    });
    rt.block_on(async {
        round_trip(&asker, json!(null), &a_req, 2, "alpha_master").await;
        // A request naming beta goes to beta (and is the first beta has seen since n = 1:
        // n = 2 went to alpha only).
        round_trip(&asker, json!("beta_master"), &b_req, 3, "beta_master").await;
        // Publications from both masters reach the minion's yard.
        for (from, master) in [("a", &a_req), ("b", &b_req)] {
            master
                .send(json!("*"), "", "job", json!({"from": from}))
                .await;
            assert_eq!(next_load(&worker).await["load"]["from"], from);
        }
    });
    let table = minion.table();
    for (master, id) in [(&alpha, "alpha_master"), (&beta, "beta_master")] {
        let address = format!("127.0.0.1:{}", master.port());
        let line = table
            .lines()
            .find(|l| l.starts_with(&address))
            .unwrap_or_default();
        assert!(
            line.contains("joined") && line.contains(id) && line.contains("yes"),
            "{table}"
        );
    }

    // alpha stops: a request sent at once still reaches beta (failed over when alpha's
    // session goes, or sent there once alpha is lost); presence says alpha is lost.
    let watcher = rt.block_on(Yard::attach(
        &minion,
        "watcher",
        json!({"shares": ["presence"]}),
    ));
    assert_eq!(alpha.terminate(), Some(0));
    rt.block_on(async {
        ask(&asker, json!(null), 4).await;
        let got = b_req.recv().await;
        assert_eq!(got["load"]["n"], 4, "{got}");
    });
    wait_for(LIMIT, "alpha lost", || {
        masters_of(&minion)
            .first()
            .is_some_and(|m| m["allowed"] == false)
    });
    rt.block_on(async {
        ask(&asker, json!(null), 5).await;
        assert_eq!(b_req.recv().await["load"]["n"], 5);
        // Named to the stopped master: an error, not silence.
        ask(&asker, json!("alpha_master"), 6).await;
        let err = asker.recv().await;
        assert_eq!(err["load"]["kind"], "unknown_estate", "{err}");
        loop {
            let change = watcher.recv().await;
            assert_ne!(
                change["load"],
                json!({"change": "lost", "id": "beta_master"})
            );
            if change["load"] == json!({"change": "lost", "id": "alpha_master"}) {
                break;
            }
        }
    });
    let status = minion.status().unwrap();
    eprintln!("routing after alpha stopped: {}", status["routing"]);
    assert_eq!(
        status["join"]["state"], "joined",
        "beta still joined: {status}"
    );

    // alpha comes back: the minion rejoins it, and upstream prefers it again.
    alpha.restart();
    wait_for(LIMIT, "alpha back", || master_allowed(&minion, 0));
    rt.block_on(async {
        let again = Yard::attach(&alpha, "req2", json!({"shares": ["req"]})).await;
        ask(&asker, json!(null), 7).await;
        assert_eq!(again.recv().await["load"]["n"], 7);
    });
    drop(worker);
}

/// One master rejecting the minion and one never answering hold up neither the master that
/// accepts it nor each other; SIGHUP asks the rejecting master again, and once it accepts,
/// upstream requests prefer it (it comes first in the configuration).
#[test]
fn a_rejecting_and_a_silent_master_do_not_hold_up_the_others() {
    let site = Site::new();
    site.autoreject("alpha", "mm\n");
    let alpha = site.master_in("alpha", "id: alpha_master\n");
    let beta = site.master_in("beta", "id: beta_master\nauto_accept: True\n");
    // A port that never answers (held by the test for its whole run).
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let masters = master_list(&[alpha.port(), silent_port, beta.port()]);
    let minion = site.minion_of("mm", &masters, "");
    wait_for(LIMIT, "mm joined to beta, rejected by alpha", || {
        let m = masters_of(&minion);
        m.len() == 3 && m[0]["state"] == "rejected" && master_allowed(&minion, 2)
    });
    assert!(alpha.pki.join("minions_rejected/mm").exists());
    let status = minion.status().unwrap();
    assert_eq!(status["join"]["state"], "joined", "{status}");
    let silent_entry = &status["masters"][1];
    assert_eq!(silent_entry["state"], "joining", "{status}");
    assert_eq!(silent_entry["allowed"], false, "{status}");
    assert_eq!(silent_entry["id"], Value::Null, "{status}");
    let attempts = |i: usize| masters_of(&minion)[i]["attempts"].as_u64().unwrap();
    let (alpha_attempts, beta_attempts) = (attempts(0), attempts(2));

    let rt = runtime();
    let (asker, a_req, b_req) = rt.block_on(async {
        let asker = Yard::attach(&minion, "asker", json!({"shares": ["ret"]})).await;
        let a_req = Yard::attach(&alpha, "req", json!({"shares": ["req"]})).await;
        let b_req = Yard::attach(&beta, "req", json!({"shares": ["req"]})).await;
        ask(&asker, json!(null), 1).await;
        assert_eq!(b_req.recv().await["load"]["n"], 1);
        (asker, a_req, b_req)
    });

    // SIGHUP: one more attempt with alpha (rejected again); beta's session is untouched.
    minion.signal("-HUP");
    wait_for(LIMIT, "one more attempt with alpha", || {
        let m = masters_of(&minion);
        m[0]["state"] == "rejected" && m[0]["attempts"].as_u64() == Some(alpha_attempts + 1)
    });
    assert_eq!(attempts(2), beta_attempts, "beta was not joined again");
    assert!(master_allowed(&minion, 2));

    // salt-key -a mm on alpha (from rejected), then SIGHUP: alpha joins and comes first.
    fs::rename(
        alpha.pki.join("minions_rejected/mm"),
        accepted(&alpha, "mm"),
    )
    .unwrap();
    minion.signal("-HUP");
    wait_for(LIMIT, "alpha allows mm after SIGHUP", || {
        master_allowed(&minion, 0)
    });
    rt.block_on(async {
        ask(&asker, json!(null), 2).await;
        assert_eq!(a_req.recv().await["load"]["n"], 2);
        ask(&asker, json!("beta_master"), 3).await;
        assert_eq!(
            b_req.recv().await["load"]["n"],
            3,
            "n = 2 went to alpha only"
        );
    });
    let m = masters_of(&minion);
    assert_eq!(
        m[1]["state"], "joining",
        "the silent master is still tried: {m:?}"
    );
    assert!(m[1]["attempts"].as_u64() >= Some(1), "{m:?}");
}

/// Two masters with one id (the default `<hostname>_master` of two masters on one host): the
/// minion joins one of them and says why it cannot join the other.
#[test]
fn two_masters_with_one_id_are_reported() {
    let site = Site::new();
    let alpha = site.master_in("alpha", "auto_accept: True\n");
    let beta = site.master_in("beta", "auto_accept: True\n");
    let masters = master_list(&[alpha.port(), beta.port()]);
    let minion = site.minion_of("mm", &masters, "");
    wait_for(LIMIT, "the id clash reported", || {
        log_lines(&minion, "another master has this master's id") >= 1
    });
    let joined = masters_of(&minion)
        .iter()
        .filter(|m| m["state"] == "joined")
        .count();
    assert_eq!(joined, 1, "{:?}", masters_of(&minion));
}

/// Keys are decided per role but judged by id: a joiner offering an accepted minion's id as
/// its role (`evil` as `victim`, while the master has no session with `victim`: here after
/// its restart) is rejected and counted, and records nothing for `victim`, which joins
/// again with its own key.
#[test]
fn a_join_claiming_another_minions_role_is_refused() {
    let site = Site::new();
    let mut master = site.master("");
    master.pin_port();
    let port = master.port();
    let mut victim = site.minion("victim", port);
    wait_for(LIMIT, "victim pending", || {
        pending(&master, "victim").exists()
    });
    fs::rename(pending(&master, "victim"), accepted(&master, "victim")).unwrap();
    wait_for(LIMIT, "victim allowed", || allowed(&master, "victim"));
    victim.kill();
    master.restart();
    assert_eq!(master.port(), port);

    let mut config = RoadConfig::new("evil", "127.0.0.1:0".parse().unwrap());
    config.role = Some("victim".into());
    let joined = forged_join(config, None, port);
    assert!(
        matches!(joined, Err(StackError::Rejected { .. })),
        "{joined:?}"
    );
    let status = master.status().unwrap();
    assert_eq!(status["road_counters"]["join_role_not_name"], 1, "{status}");
    assert_eq!(log_lines(&master, "its role is not its name"), 1);
    assert!(!pending(&master, "evil").exists());
    assert!(master.row("evil").is_none(), "{status}");

    victim.restart();
    wait_for(LIMIT, "victim allowed again", || allowed(&master, "victim"));
    assert!(accepted(&master, "victim").exists());
}

/// `salt-key -d` of a minion that is gone removes its row from `status`, whether it was
/// lost first (d1) or its session was still open (d2); an accepted minion stays (d3).
#[test]
fn a_deleted_minion_vanishes_from_status() {
    let site = Site::new();
    let master = site.master("auto_accept: True\n");
    let port = master.port();
    let mut minions: Vec<Daemon> = ["d1", "d2", "d3"]
        .iter()
        .map(|id| site.minion(id, port))
        .collect();
    for id in ["d1", "d2", "d3"] {
        wait_for(LIMIT, "minions allowed", || allowed(&master, id));
    }
    minions[0].kill();
    wait_for(LIMIT, "d1 lost", || {
        master.row("d1").is_some_and(|r| r["presence"] == "lost")
    });
    fs::remove_file(accepted(&master, "d1")).unwrap();
    wait_for(LIMIT, "d1 gone from status", || master.row("d1").is_none());
    minions[1].kill();
    fs::remove_file(accepted(&master, "d2")).unwrap();
    wait_for(LIMIT, "d2 gone from status", || master.row("d2").is_none());
    let status = master.status().unwrap();
    let ids: Vec<&Value> = status["remotes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["id"])
        .collect();
    assert_eq!(ids, [&json!("d3")], "{status}");
    assert!(allowed(&master, "d3"));
}

/// An unauthenticated sender joining as `victim` (accepted, session open) with other keys
/// from another address is rejected, and the real `victim` stays allowed and routed to: the
/// master neither drops its session nor stops publishing to it (native `never`, and `once`).
/// The other key is denied as Salt does (`minions_denied/victim`), the accepted one stays.
#[test]
fn a_forged_join_with_a_live_minions_name_leaves_it_routed() {
    for mode in ["", "auto_accept: True\n"] {
        let site = Site::new();
        let master = site.master(mode);
        let port = master.port();
        let victim = site.minion("victim", port);
        if mode.is_empty() {
            wait_for(LIMIT, "victim pending", || {
                pending(&master, "victim").exists()
            });
            fs::rename(pending(&master, "victim"), accepted(&master, "victim")).unwrap();
        }
        wait_for(LIMIT, "victim allowed", || allowed(&master, "victim"));
        let accepted_key = fs::read(accepted(&master, "victim")).unwrap();

        let config = RoadConfig::new("victim", "127.0.0.1:0".parse().unwrap());
        // Keys bound as a minion's are (as if `victim` came back with a new identity).
        let keys = Identity::from_seed(&[7; 32]).into_keys();
        let joined = forged_join(config, Some(keys), port);
        assert!(
            matches!(joined, Err(StackError::Rejected { .. })),
            "{mode:?}: {joined:?}"
        );
        wait_for(LIMIT, "the forged join counted", || {
            master.status().is_some_and(|s| {
                s["road_counters"]["join_rejected_keys_changed"]
                    .as_u64()
                    .is_some_and(|n| n >= 1)
            })
        });
        let row = master.row("victim").unwrap();
        assert_eq!(row["allowed"], true, "{mode:?}: {row}");
        assert_eq!(row["acceptance"], "accepted", "{mode:?}: {row}");
        assert_eq!(fs::read(accepted(&master, "victim")).unwrap(), accepted_key);
        let denied = master.pki.join("minions_denied").join("victim");
        wait_for(LIMIT, "the other key denied", || denied.exists());
        assert_ne!(fs::read(&denied).unwrap(), accepted_key);
        assert!(log_lines(&master, "the session stays") >= 1, "{mode:?}");

        runtime().block_on(async {
            let tester = Yard::attach(&master, "tester", json!({"shares": ["ret"]})).await;
            let worker = Yard::attach(&victim, "worker", json!({"shares": ["job"]})).await;
            tester
                .send(json!("victim"), "", "job", json!({"n": 7}))
                .await;
            assert_eq!(worker.recv().await["load"]["n"], 7, "{mode:?}");
            tester.send(json!("*"), "", "job", json!({"n": 8})).await;
            assert_eq!(worker.recv().await["load"]["n"], 8, "{mode:?}");
        });
        assert!(allowed(&master, "victim"), "{mode:?}");
    }
}
