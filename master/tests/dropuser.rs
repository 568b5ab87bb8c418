//! Salt's `user`: the real `salt-raet-master` started as root drops to `user` (here `nobody`)
//! after handing its directories over, and refuses to start as another non-root user.
//! Needs root; skipped (with a message) otherwise. Synchronisation is by polling
//! `status --json` under a time limit, never by sleeping for a fixed time.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use salt_raet::account::{effective_uid, lookup_account, Account};

const MASTER: &str = env!("CARGO_BIN_EXE_salt-raet-master");
const LIMIT: Duration = Duration::from_secs(20);
const USER: &str = "nobody";

/// Held while a test copies the binary and while one forks: a child forked while another
/// thread's copy is open for writing would hold that file open, and executing the copy then
/// fails with ETXTBSY ("text file busy").
static FORK: Mutex<()> = Mutex::new(());

/// `command` started under [`FORK`].
fn spawn(command: &mut Command) -> Child {
    let _forking = FORK.lock().unwrap_or_else(|e| e.into_inner());
    command.spawn().unwrap()
}

/// `command` run to its end (started under [`FORK`]), its output captured.
fn output(command: &mut Command) -> Output {
    let child = spawn(command.stdout(Stdio::piped()).stderr(Stdio::piped()));
    child.wait_with_output().unwrap()
}

/// `nobody`'s account when we run as root; `None` (after saying why) otherwise.
fn as_root() -> Option<Account> {
    if effective_uid() != Some(0) {
        eprintln!("skipped: dropping privileges needs the test to run as root");
        return None;
    }
    let account = lookup_account(USER).ok().flatten();
    if account.is_none() {
        eprintln!("skipped: no user {USER:?} on this system");
    }
    account
}

/// A temporary tree every user can traverse, with a master configuration in `<root>/etc`
/// whose directories are all under `<root>/var` (created by the daemon).
struct Site {
    dir: tempfile::TempDir,
}

impl Site {
    fn new(user: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let site = Self { dir };
        let etc = site.etc();
        fs::create_dir_all(&etc).unwrap();
        fs::create_dir_all(site.var()).unwrap();
        for d in [&etc, &site.var()] {
            fs::set_permissions(d, fs::Permissions::from_mode(0o755)).unwrap();
        }
        // A copy of the binary the other user can reach (the build tree may be under a
        // directory only root can enter, as in a CI clone in a mktemp directory).
        {
            let _copying = FORK.lock().unwrap_or_else(|e| e.into_inner());
            fs::copy(MASTER, site.bin()).unwrap();
        }
        let var = site.var();
        fs::write(
            etc.join("master"),
            format!(
                "interface: 127.0.0.1\nraet_port: 0\nuser: {user}\npki_dir: {}\n\
                 sock_dir: {}\ncachedir: {}\nlog_file: {}\n",
                var.join("pki").display(),
                var.join("sock").display(),
                var.join("cache").display(),
                var.join("log").display(),
            ),
        )
        .unwrap();
        site
    }

    fn etc(&self) -> PathBuf {
        self.dir.path().join("etc")
    }

    fn var(&self) -> PathBuf {
        self.dir.path().join("var")
    }

    fn bin(&self) -> PathBuf {
        self.dir.path().join("salt-raet-master")
    }

    fn master(&self) -> Command {
        let mut command = Command::new(self.bin());
        command.arg("-c").arg(self.etc());
        command
    }
}

/// The running master, killed when dropped.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `status --json` answered (asked as root) within [`LIMIT`].
fn wait_for_status(site: &Site, daemon: &mut Daemon) -> serde_json::Value {
    let started = Instant::now();
    loop {
        let out = output(site.master().args(["status", "--json"]));
        if out.status.success() {
            return serde_json::from_slice(&out.stdout).unwrap();
        }
        let exited = daemon.0.try_wait().unwrap();
        assert!(exited.is_none(), "the master exited: {exited:?}");
        assert!(started.elapsed() < LIMIT, "no status answer");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The ids on the `Uid:` or `Gid:` line of `/proc/<pid>/status` (real, effective, saved,
/// filesystem).
fn proc_ids(pid: u32, key: &str) -> Vec<u32> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(key)).unwrap();
    line.split_whitespace()
        .skip(1)
        .map(|id| id.parse().unwrap())
        .collect()
}

/// Every path under `dir`, `dir` included.
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut paths = vec![dir.to_owned()];
    if dir.is_dir() {
        for entry in fs::read_dir(dir).unwrap() {
            paths.extend(tree(&entry.unwrap().path()));
        }
    }
    paths
}

#[test]
fn a_master_started_as_root_runs_as_user_and_owns_its_files() {
    let Some(account) = as_root() else { return };
    let site = Site::new(USER);
    // A key directory left by an earlier run as root is handed over too.
    let old = site.var().join("pki/minions");
    fs::create_dir_all(&old).unwrap();
    fs::write(old.join("old-minion"), "not a key").unwrap();
    let mut daemon = Daemon(spawn(
        site.master()
            .args(["-l", "debug"])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    ));
    let status = wait_for_status(&site, &mut daemon);
    assert!(status["road"].as_str().is_some(), "{status}");

    let pid = daemon.0.id();
    assert_eq!(proc_ids(pid, "Uid:"), vec![account.uid; 4]);
    assert_eq!(proc_ids(pid, "Gid:"), vec![account.gid; 4]);

    let var = site.var();
    let keep = var.join("pki/raet");
    let lane = var.join("sock/raet");
    for must in [&keep, &lane, &var.join("cache"), &var.join("log")] {
        assert!(must.exists(), "{} is missing", must.display());
    }
    // The keep's files (written after the drop), the lane's sockets and everything else
    // under the daemon's directories belong to `user`.
    let keep_files = tree(&keep).len();
    assert!(keep_files > 1, "no keep files in {}", keep.display());
    let owned: Vec<_> = ["pki", "sock", "cache", "log"]
        .iter()
        .flat_map(|d| tree(&var.join(d)))
        .collect();
    assert!(owned.contains(&old.join("old-minion")));
    for path in owned {
        let meta = fs::symlink_metadata(&path).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid()),
            (account.uid, account.gid),
            "{}",
            path.display()
        );
    }
}

#[test]
fn a_master_started_as_another_user_refuses_naming_user() {
    let Some(account) = as_root() else { return };
    let site = Site::new("root");
    let out = output(site.master().uid(account.uid).gid(account.gid));
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("run as user \"root\"") && stderr.contains("salt-raet-master"),
        "{stderr}"
    );
    assert!(!site.var().join("pki").exists());
}
