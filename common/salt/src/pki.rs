//! Minion keys in Salt's pki directories, as `salt-key` (3008's `localfs_key` driver) sees them.
//!
//! ```text
//! <pki_dir>/minions_pre/<id>        pending      (salt-key -L: "Unaccepted Keys")
//! <pki_dir>/minions/<id>            accepted
//! <pki_dir>/minions_rejected/<id>   rejected
//! <pki_dir>/minions_denied/<id>     denied: a key offered for an id whose accepted or pending
//!                                   key differs (kept apart; the id keeps its other state)
//! ```
//!
//! Each file holds one minion's Ed25519 verify key as a SubjectPublicKeyInfo PEM
//! (`-----BEGIN PUBLIC KEY-----`), stripped of surrounding whitespace as Salt stores keys; Salt's
//! `salt-key -a` loads it with `cryptography`'s `load_pem_public_key`. Files are written as
//! `localfs_key` writes them: a new temporary file (`O_EXCL`, mode 0600) in the target directory,
//! then a rename; storing a pending/accepted/rejected key first removes the id from the other two
//! directories. Ids are checked as Salt's `valid_id` ([`valid_id`]).
//!
//! [`fingerprint`] is `salt-key -f`'s value (Salt's `pem_finger(key=<file text>)`: sha256 over the
//! whole stored text, hex pairs joined by `:`). [`scan`](Pki::scan) reads the four directories;
//! [`diff`] turns two scans into [`KeyChange`]s (pure, tested on its own); [`PkiWatcher`] runs
//! scans on inotify events and on a periodic rescan (events are lost when a watch misses them or
//! salt-key runs while we are down, so the rescan is the safety net).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePublicKey, EncodePublicKey};
use sha2::{Digest, Sha256};

use raet::crypto::VerifyKey;

/// Mode of the key files (what `mkstemp` gives, and what salt-key leaves).
const FILE_MODE: u32 = 0o600;
/// Mode of the key directories we create.
const DIR_MODE: u32 = 0o700;
/// A key file is a few hundred bytes; anything much larger is not a key file.
const MAX_KEY_FILE: u64 = 64 * 1024;

/// The state of a minion's key, named after salt-key's lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KeyState {
    /// `minions_pre`: awaiting `salt-key -a`.
    Pending,
    /// `minions`: accepted.
    Accepted,
    /// `minions_rejected`: rejected.
    Rejected,
    /// `minions_denied`: a different key was offered for an id that has a key.
    Denied,
}

impl KeyState {
    /// Every state, in the order of salt-key's listing.
    pub const ALL: [Self; 4] = [Self::Accepted, Self::Denied, Self::Pending, Self::Rejected];

    /// The directory under `pki_dir`.
    pub fn dir_name(self) -> &'static str {
        match self {
            Self::Pending => "minions_pre",
            Self::Accepted => "minions",
            Self::Rejected => "minions_rejected",
            Self::Denied => "minions_denied",
        }
    }
}

impl fmt::Display for KeyState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Pending => "pending",
            Self::Accepted => "accepted",
            Self::Rejected => "rejected",
            Self::Denied => "denied",
        })
    }
}

/// Why a pki operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// Reading, writing, renaming or listing failed.
    #[error("pki I/O error on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The id is not a valid minion id (Salt's `valid_id`).
    #[error("invalid minion id {0:?}")]
    InvalidId(String),
    /// A key file exists but does not hold an Ed25519 public key PEM.
    #[error("{path}: not an Ed25519 public key PEM: {reason}")]
    BadKey {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The lexical part of Salt's `valid_id`: not empty, not `.` or `..`, no `/`, `\` or NUL (an id
/// that would name `pki_dir` itself, its parent, or another directory).
pub fn valid_id_name(id: &str) -> bool {
    !id.is_empty() && id != "." && id != ".." && !id.contains(['/', '\\', '\0'])
}

/// Salt's `valid_id(opts, id)`: [`valid_id_name`], and `<pki_dir>/<id>` resolved through
/// symlinks (`os.path.realpath`) must lie directly in `pki_dir`.
pub fn valid_id(pki_dir: &Path, id: &str) -> bool {
    if !valid_id_name(id) {
        return false;
    }
    let candidate = pki_dir.join(id);
    // Only a symlink can resolve elsewhere: a missing or plain entry resolves to
    // `realpath(pki_dir)/id`, directly in the pki_dir. One lstat per check in the common case
    // (no entry of that name), not two path resolutions (issue 11: joins at scale).
    match fs::symlink_metadata(&candidate) {
        Ok(meta) if meta.file_type().is_symlink() => {}
        _ => return true,
    }
    match (fs::canonicalize(&candidate), fs::canonicalize(pki_dir)) {
        (Ok(real), Ok(root)) => real.parent() == Some(root.as_path()),
        // Nothing there to resolve: the lexical checks decide, as realpath would.
        _ => true,
    }
}

/// The SubjectPublicKeyInfo PEM of an Ed25519 verify key, as the master stores it (no trailing
/// newline: Salt strips offered keys before storing them).
pub fn pem_from_verify_key(key: &VerifyKey) -> String {
    // A VerifyKey is always a valid point, so both conversions succeed; an error would be a bug
    // in the encoder, reported as an empty string that no reader accepts.
    ed25519_dalek::VerifyingKey::from_bytes(key.as_bytes())
        .ok()
        .and_then(|k| k.to_public_key_pem(LineEnding::LF).ok())
        .map(|pem| pem.trim().to_owned())
        .unwrap_or_default()
}

/// Parses an Ed25519 SubjectPublicKeyInfo PEM (surrounding whitespace and CRLF tolerated).
pub fn verify_key_from_pem(pem: &str) -> Result<VerifyKey, String> {
    let text = pem.trim().replace("\r\n", "\n");
    let key = ed25519_dalek::VerifyingKey::from_public_key_pem(&text).map_err(|e| e.to_string())?;
    VerifyKey::from_bytes(key.as_bytes()).map_err(|e| e.to_string())
}

/// `salt-key -f`'s fingerprint of a stored key file's text: Salt's `pem_finger(key=text)` with
/// the default `hash_type` sha256, i.e. sha256 over the whole text, lowercase hex, pairs joined
/// by `:`.
pub fn fingerprint(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    digest
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A key found in the pki directories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    /// Its state (the directory it is in).
    pub state: KeyState,
    /// The file's text, as read.
    pub text: String,
}

impl StoredKey {
    /// The key, if the text is an Ed25519 public key PEM.
    pub fn verify_key(&self) -> Result<VerifyKey, String> {
        verify_key_from_pem(&self.text)
    }

    /// `salt-key -f`'s fingerprint of this key.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.text)
    }
}

/// One scan of the four directories: every valid id in each, with the sha256 of its file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scan {
    /// `(state, id)` → sha256 of the file text.
    pub files: BTreeMap<(KeyState, String), [u8; 32]>,
}

impl Scan {
    /// The state of `id` as salt-key reports it: rejected, then pending, then accepted (the
    /// order `localfs_key.fetch` looks in), else denied if only a denied key exists; with the
    /// digest of that file.
    pub fn state_of(&self, id: &str) -> Option<(KeyState, [u8; 32])> {
        [
            KeyState::Rejected,
            KeyState::Pending,
            KeyState::Accepted,
            KeyState::Denied,
        ]
        .into_iter()
        .find_map(|state| {
            self.files
                .get(&(state, id.to_owned()))
                .map(|digest| (state, *digest))
        })
    }

    /// The part of this scan about `ids`.
    fn only(&self, ids: &BTreeSet<String>) -> Self {
        let files = self.files.iter().filter(|((_, id), _)| ids.contains(id));
        Self {
            files: files.map(|(key, digest)| (key.clone(), *digest)).collect(),
        }
    }

    /// Every id present in any directory, sorted.
    pub fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.files.keys().map(|(_, id)| id.clone()).collect();
        ids.sort();
        ids.dedup();
        ids
    }
}

/// A change of an id's key between two scans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyChange {
    /// The minion id.
    pub id: String,
    /// Its state before (`None`: no key at all).
    pub old: Option<KeyState>,
    /// Its state now (`None`: deleted, e.g. `salt-key -d`).
    pub new: Option<KeyState>,
    /// The state is the same but the key file's content changed.
    pub key_changed: bool,
}

/// The changes from `old` to `new`, one per id whose state (see [`Scan::state_of`]) or key
/// changed, sorted by id. Pure.
pub fn diff(old: &Scan, new: &Scan) -> Vec<KeyChange> {
    let mut ids = old.ids();
    ids.extend(new.ids());
    ids.sort();
    ids.dedup();
    ids.into_iter()
        .filter_map(|id| {
            let before = old.state_of(&id);
            let after = new.state_of(&id);
            let old_state = before.map(|(s, _)| s);
            let new_state = after.map(|(s, _)| s);
            let key_changed = old_state == new_state && before != after;
            (old_state != new_state || key_changed).then_some(KeyChange {
                id,
                old: old_state,
                new: new_state,
                key_changed,
            })
        })
        .collect()
}

/// [`diff`], plus a change (possibly from a state to the same state) for each id of
/// `touched` that `diff` does not list and that is a key of either scan. Pure.
pub fn diff_touched(old: &Scan, new: &Scan, touched: BTreeSet<String>) -> Vec<KeyChange> {
    let mut changes = diff(old, new);
    for id in touched {
        let state = |scan: &Scan| scan.state_of(&id).map(|(s, _)| s);
        let (before, after) = (state(old), state(new));
        if (before.is_some() || after.is_some()) && !changes.iter().any(|c| c.id == id) {
            changes.push(KeyChange {
                id,
                old: before,
                new: after,
                key_changed: false,
            });
        }
    }
    changes
}

/// Distinguishes concurrent temporary files of this process.
static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A `pki_dir` with its four key directories.
#[derive(Debug, Clone)]
pub struct Pki {
    dir: PathBuf,
    owner: Option<u32>,
}

impl Pki {
    /// Opens `pki_dir`, creating it and the four key directories (mode 0700) when missing.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, PkiError> {
        let pki = Self {
            dir: dir.into(),
            owner: None,
        };
        for state in KeyState::ALL {
            let sub = pki.dir.join(state.dir_name());
            DirBuilder::new()
                .recursive(true)
                .mode(DIR_MODE)
                .create(&sub)
                .map_err(io_err(&sub))?;
        }
        Ok(pki)
    }

    /// The `pki_dir` as it is, creating nothing (for read-only use such as `--finger-minion`).
    pub fn existing(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            owner: None,
        }
    }

    /// Key files written from now on are chowned to user id `owner` (Salt's `user`; group
    /// unchanged), as `localfs_key` does. As there, a failed chown (not running as root) is
    /// ignored: the file is still written, owned by us.
    pub fn with_owner(mut self, owner: Option<u32>) -> Self {
        self.owner = owner;
        self
    }

    /// The `pki_dir`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The directory of one state.
    pub fn state_dir(&self, state: KeyState) -> PathBuf {
        self.dir.join(state.dir_name())
    }

    /// `<pki_dir>/<state dir>/<id>`, after checking the id.
    pub fn key_path(&self, state: KeyState, id: &str) -> Result<PathBuf, PkiError> {
        self.check(id)?;
        Ok(self.state_dir(state).join(id))
    }

    /// Checks `id` as Salt's `valid_id` once, for the reads that follow.
    fn check(&self, id: &str) -> Result<(), PkiError> {
        match valid_id(&self.dir, id) {
            true => Ok(()),
            false => Err(PkiError::InvalidId(id.to_owned())),
        }
    }

    /// Reads one key file of an id already checked; `None` when absent (or not a regular
    /// file, as Salt skips symlinks).
    fn read(&self, state: KeyState, id: &str) -> Result<Option<StoredKey>, PkiError> {
        let path = self.state_dir(state).join(id);
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_file() => {}
            Ok(_) => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&path)(e)),
        }
        let mut text = String::new();
        let read =
            File::open(&path).and_then(|f| f.take(MAX_KEY_FILE + 1).read_to_string(&mut text));
        match read {
            Ok(n) if n as u64 > MAX_KEY_FILE => Err(PkiError::BadKey {
                path,
                reason: format!("larger than {MAX_KEY_FILE} bytes"),
            }),
            Ok(_) => Ok(Some(StoredKey { state, text })),
            // Removed between the stat and the open (salt-key moved it): not there any more.
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => Err(PkiError::BadKey {
                path,
                reason: "not UTF-8 text".to_owned(),
            }),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// The key of `id` as salt-key sees it (`localfs_key.fetch("keys", id)`): rejected, then
    /// pending, then accepted. Denied keys are separate: [`Pki::denied`].
    pub fn lookup(&self, id: &str) -> Result<Option<StoredKey>, PkiError> {
        self.check(id)?;
        for state in [KeyState::Rejected, KeyState::Pending, KeyState::Accepted] {
            if let Some(key) = self.read(state, id)? {
                return Ok(Some(key));
            }
        }
        Ok(None)
    }

    /// The denied key of `id`, if any.
    pub fn denied(&self, id: &str) -> Result<Option<StoredKey>, PkiError> {
        self.check(id)?;
        self.read(KeyState::Denied, id)
    }

    /// The key of `id` in any state, the denied one last (what `--finger-minion` shows).
    pub fn lookup_any(&self, id: &str) -> Result<Option<StoredKey>, PkiError> {
        match self.lookup(id)? {
            Some(key) => Ok(Some(key)),
            None => self.denied(id),
        }
    }

    /// Stores `text` (trimmed, as Salt stores keys) as the key of `id` in `state`. For pending,
    /// accepted and rejected the id is first removed from the other two (`localfs_key.store`);
    /// a denied key is stored beside them.
    pub fn store(&self, id: &str, state: KeyState, text: &str) -> Result<(), PkiError> {
        let mut syncs = DirSyncs::default();
        self.store_unsynced(id, state, text, &mut syncs)?;
        syncs.sync()
    }

    /// [`Pki::store`] whose rename is durable only once `syncs` is synced (one fsync per
    /// directory for a batch of stores; the file itself is synced before its rename). What
    /// was stored must not be acted on before that.
    pub fn store_unsynced(
        &self,
        id: &str,
        state: KeyState,
        text: &str,
        syncs: &mut DirSyncs,
    ) -> Result<(), PkiError> {
        let path = self.key_path(state, id)?;
        if state != KeyState::Denied {
            self.remove(id)?;
        }
        write_atomic(&path, text.trim().as_bytes(), self.owner)?;
        syncs.0.insert(self.state_dir(state));
        Ok(())
    }

    /// Removes `id` from pending, accepted and rejected (not denied); true if a file was removed.
    pub fn remove(&self, id: &str) -> Result<bool, PkiError> {
        self.check(id)?;
        let mut removed = false;
        for state in [KeyState::Pending, KeyState::Accepted, KeyState::Rejected] {
            removed |= remove_file(&self.state_dir(state).join(id))?;
        }
        Ok(removed)
    }

    /// Removes the denied key of `id`; true if there was one.
    pub fn remove_denied(&self, id: &str) -> Result<bool, PkiError> {
        remove_file(&self.key_path(KeyState::Denied, id)?)
    }

    /// Reads the four directories. Entries that are not regular files, not valid ids, dotfiles
    /// (our temporary files) or `.key_cache` are skipped; a file that vanishes during the scan is
    /// skipped too.
    pub fn scan(&self) -> Result<Scan, PkiError> {
        let mut scan = Scan::default();
        for state in KeyState::ALL {
            let dir = self.state_dir(state);
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(&dir)(e)),
            };
            for entry in entries {
                let entry = entry.map_err(io_err(&dir))?;
                let Some(id) = entry.file_name().to_str().map(str::to_owned) else {
                    tracing::warn!(dir = %dir.display(), "skipping a key file whose name is not UTF-8");
                    continue;
                };
                if id.starts_with('.') {
                    continue;
                }
                if !valid_id(&self.dir, &id) {
                    tracing::warn!(dir = %dir.display(), id, "skipping a key file with an invalid id");
                    continue;
                }
                self.scan_file(&mut scan, state, id);
            }
        }
        Ok(scan)
    }

    /// Reads the file of `id` in `state` into `scan` (or out of it, when it is gone or
    /// unreadable).
    fn scan_file(&self, scan: &mut Scan, state: KeyState, id: String) {
        match self.read(state, &id) {
            Ok(Some(key)) => {
                let digest: [u8; 32] = Sha256::digest(key.text.as_bytes()).into();
                scan.files.insert((state, id), digest);
            }
            Ok(None) => {
                scan.files.remove(&(state, id));
            }
            Err(e) => {
                tracing::warn!(error = %e, "skipping an unreadable key file");
                scan.files.remove(&(state, id));
            }
        }
    }

    /// `scan` brought up to date for the ids of `touched` alone (the files inotify named):
    /// their four files read again, and the changes against the scan as it was, as
    /// [`diff_touched`] reports them (each touched id that has a key before or after, even
    /// when its state is the same). Invalid ids and our temporary files are skipped. The
    /// cost is that of the touched ids, not of every key.
    pub fn refresh(&self, scan: &mut Scan, touched: BTreeSet<String>) -> Vec<KeyChange> {
        let touched: BTreeSet<String> = touched
            .into_iter()
            .filter(|id| !id.starts_with('.') && valid_id(&self.dir, id))
            .collect();
        let before = scan.only(&touched);
        for id in &touched {
            for state in KeyState::ALL {
                self.scan_file(scan, state, id.clone());
            }
        }
        let after = scan.only(&touched);
        diff_touched(&before, &after, touched)
    }
}

/// The directories whose entries changed since they were last synced
/// ([`Pki::store_unsynced`]).
#[derive(Debug, Default)]
pub struct DirSyncs(BTreeSet<PathBuf>);

impl DirSyncs {
    /// Makes the renames durable: one fsync per directory.
    pub fn sync(&mut self) -> Result<(), PkiError> {
        for dir in std::mem::take(&mut self.0) {
            File::open(&dir)
                .and_then(|d| d.sync_all())
                .map_err(io_err(&dir))?;
        }
        Ok(())
    }
}

/// Removes a file; a missing one is fine (false).
fn remove_file(path: &Path) -> Result<bool, PkiError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err(path)(e)),
    }
}

/// `localfs_key`'s write: a fresh temporary file in the same directory (`O_EXCL`, mode 0600,
/// as `mkstemp`), chowned to `owner` if given, the data, fsync, rename over `path` (the
/// caller syncs the directory: [`DirSyncs`]). On failure the temporary file is removed and
/// `path` is untouched.
fn write_atomic(path: &Path, data: &[u8], owner: Option<u32>) -> Result<(), PkiError> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(PkiError::InvalidId(path.display().to_string()));
    };
    let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(
        ".{}.{}.{n}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(&tmp)
        .map_err(io_err(path))?;
    if let Some(uid) = owner {
        if let Err(e) = std::os::unix::fs::fchown(&file, Some(uid), None) {
            tracing::debug!(uid, error = %e, "key file not chowned to `user`");
        }
    }
    let written = file
        .write_all(data)
        .and_then(|()| file.sync_all())
        .and_then(|()| fs::rename(&tmp, path));
    drop(file);
    written.map_err(|e| {
        if let Err(rm) = fs::remove_file(&tmp) {
            if rm.kind() != io::ErrorKind::NotFound {
                tracing::warn!(tmp = %tmp.display(), error = %rm, "cannot remove a pki temp file");
            }
        }
        io_err(path)(e)
    })
}

/// How long the watcher lets a burst of directory events settle before it scans: `salt-key -a`
/// (3008's `localfs_key.store`) first removes the pending file, then writes the accepted one, so
/// an immediate scan could report a transient deletion. A consumer must still tolerate
/// transient states (a slow salt-key, the periodic rescan landing in between).
pub const SETTLE: Duration = Duration::from_millis(100);

/// Watches the four key directories (inotify) and rescans periodically; sends the
/// [`KeyChange`]s of each rescan. A thin tokio wrapper around [`Pki::scan`] and [`diff`].
#[derive(Debug)]
pub struct PkiWatcher {
    task: tokio::task::JoinHandle<()>,
    // Dropping the watcher stops the inotify watches.
    _watcher: notify::RecommendedWatcher,
}

impl PkiWatcher {
    /// Starts watching `pki` from the scan `initial` (normally the scan the caller started
    /// from); every inotify event reads again the files of the ids it named
    /// ([`Pki::refresh`]), every `rescan` interval (and a lost or overflowing watch) scans
    /// everything, and the changes against the previous scan are sent on the returned
    /// channel. Must be called inside a
    /// tokio runtime. The task ends when the receiver is dropped.
    pub fn spawn(
        pki: Pki,
        initial: Scan,
        rescan: Duration,
    ) -> Result<(Self, tokio::sync::mpsc::Receiver<KeyChange>), PkiError> {
        use notify::Watcher as _;
        let (wake_tx, mut wake_rx) = tokio::sync::mpsc::channel::<()>(1);
        let touched = Arc::new(Mutex::new(Touched::default()));
        let touching = Arc::clone(&touched);
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let mut touched = touching.lock().unwrap_or_else(PoisonError::into_inner);
                match &event {
                    Err(e) => {
                        tracing::warn!(error = %e, "pki watch error; scanning everything");
                        touched.full = true;
                    }
                    // The kernel dropped events (its queue overflowed): which ids changed is
                    // not known.
                    Ok(event) if event.need_rescan() => touched.full = true,
                    // Our own scans open and read every key file: those events must not wake
                    // us, or the watcher rescans forever.
                    Ok(event) if !changes_keys(&event.kind) => return,
                    Ok(event) => {
                        let ids = event.paths.iter().filter_map(|p| p.file_name()?.to_str());
                        let ids = ids.filter(|id| !id.starts_with('.')).map(str::to_owned);
                        touched.ids.extend(ids);
                    }
                }
                drop(touched);
                // A full channel already holds a wake-up: the coming scan sees this change too.
                let _ = wake_tx.try_send(());
            })
            .map_err(|e| notify_err(pki.dir(), e))?;
        for state in KeyState::ALL {
            let dir = pki.state_dir(state);
            watcher
                .watch(&dir, notify::RecursiveMode::NonRecursive)
                .map_err(|e| notify_err(&dir, e))?;
        }
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        let task = tokio::spawn(async move {
            let mut last = initial;
            let mut ticker = tokio::time::interval(rescan);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let tick = tokio::select! {
                    _ = ticker.tick() => true,
                    woke = wake_rx.recv() => {
                        if woke.is_none() {
                            return;
                        }
                        // Let a multi-step change settle (salt-key removes the old file before
                        // it writes the new one), then take the wake-ups it caused.
                        tokio::time::sleep(SETTLE).await;
                        while wake_rx.try_recv().is_ok() {}
                        false
                    }
                };
                let Touched { ids, full } =
                    std::mem::take(&mut *touched.lock().unwrap_or_else(PoisonError::into_inner));
                let changes = if tick || full {
                    match pki.scan() {
                        Ok(scan) => {
                            let changes = diff_touched(&last, &scan, ids);
                            last = scan;
                            changes
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "pki rescan failed");
                            // The ids and the full scan are still owed.
                            let mut owed = touched.lock().unwrap_or_else(PoisonError::into_inner);
                            owed.ids.extend(ids);
                            owed.full |= full;
                            continue;
                        }
                    }
                } else {
                    pki.refresh(&mut last, ids)
                };
                for change in changes {
                    if tx.send(change).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok((
            Self {
                task,
                _watcher: watcher,
            },
            rx,
        ))
    }
}

/// What the watcher's events said since its last scan.
#[derive(Debug, Default)]
struct Touched {
    /// Ids whose files the events named: reported with their state even when two moves
    /// cancel out between two scans (accept then reject within the settle time), as the
    /// daemon may have acted on the state in between.
    ids: BTreeSet<String>,
    /// Events were lost: scan everything.
    full: bool,
}

/// Whether an inotify event can change what a scan sees: creations, modifications, renames,
/// removals and a close after writing; not opens, reads or closes after reading (a scan
/// itself causes those).
pub fn changes_keys(kind: &notify::EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode};
    match kind {
        notify::EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        notify::EventKind::Access(_) => false,
        _ => true,
    }
}

impl Drop for PkiWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn notify_err(path: &Path, e: notify::Error) -> PkiError {
    PkiError::Io {
        path: path.to_owned(),
        source: io::Error::other(e.to_string()),
    }
}

#[cfg(test)]
mod tests;
