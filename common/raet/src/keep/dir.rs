//! The on-disk keep, in the reference `RoadKeep` directory layout (spec §11.3):
//!
//! ```text
//! <dir>/local/estate.json               name, uid, ha, iha, natted, fqdn, dyned, sid, puid, aha,
//!                                       role
//! <dir>/local/road.json                 main, kind                    (ours, optional)
//! <dir>/role/local/role.json            role, sighex, prihex          (secrets)
//! <dir>/remote/estate.<name>.json       name, uid, fuid, ha, iha, natted, fqdn, dyned, sid, main,
//!                                       kind, joined, role
//! <dir>/role/remote/role.<role>.json    role, acceptance, verhex, pubhex
//! ```
//!
//! Files are JSON indented by 2 as the reference's `json.dump(indent=2)`. Every file is written
//! atomically (temporary file in the same directory created mode 0600, fsync, rename, fsync of
//! the directory); directories are created mode 0700. Fields we do not model (`iha`, `natted`,
//! `dyned`) are written as `null` and ignored when read, `fqdn` is written empty, `aha` equals
//! `ha`.
//!
//! The reference keeps exactly these field sets (it deletes a local estate file with any other
//! field), so our own local fields `main` and `kind` live in `local/road.json`, which the
//! reference ignores: a keep written here can be used by the reference and vice versa. A keep
//! written by the reference has no `local/road.json`; `main`/`kind` then read as `false`/0 (the
//! reference does not persist them: a stack takes them from its configuration).

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::{
    check_key_hex, check_name, decode_key_hex, sort_remotes, Acceptance, Keep, KeepError,
    LocalRecord, RemoteRecord, RoleRecord,
};

/// Mode of every keep file: they hold key material and topology.
const FILE_MODE: u32 = 0o600;
/// Mode of the directories the keep creates.
const DIR_MODE: u32 = 0o700;
/// Keep files are a few hundred bytes; anything much larger is not a keep file.
const MAX_FILE_SIZE: u64 = 64 * 1024;

const REMOTE_PREFIX: &str = "estate.";
const ROLE_PREFIX: &str = "role.";
const SUFFIX: &str = ".json";

/// A [`Keep`] in a directory, in the reference layout (see the module documentation).
#[derive(Debug, Clone)]
pub struct DirKeep {
    dir: PathBuf,
}

impl DirKeep {
    /// Opens (creating it and its subdirectories, mode 0700, when missing) the keep in `dir`.
    /// Nothing is read here: a corrupt file is reported by the load that reads it.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, KeepError> {
        let keep = Self { dir: dir.into() };
        for sub in [
            keep.local_dir(),
            keep.remote_dir(),
            keep.local_role_dir(),
            keep.remote_role_dir(),
        ] {
            DirBuilder::new()
                .recursive(true)
                .mode(DIR_MODE)
                .create(&sub)
                .map_err(|source| KeepError::Io { path: sub, source })?;
        }
        Ok(keep)
    }

    /// The keep's directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Waits for, then holds until dropped, the keep's exclusive lock (an advisory `flock`
    /// on `<keep>/.lock`): processes that may create the local identity at the same time (a
    /// daemon starting and its `--finger`) take it so that only one of them creates it and
    /// the other loads that one.
    pub fn lock(&self) -> Result<File, KeepError> {
        let path = self.dir.join(".lock");
        let io_error = |source| KeepError::Io {
            path: path.clone(),
            source,
        };
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(FILE_MODE)
            .open(&path)
            .map_err(io_error)?;
        file.lock().map_err(io_error)?;
        Ok(file)
    }

    fn local_dir(&self) -> PathBuf {
        self.dir.join("local")
    }

    fn remote_dir(&self) -> PathBuf {
        self.dir.join("remote")
    }

    fn local_role_dir(&self) -> PathBuf {
        self.dir.join("role").join("local")
    }

    fn remote_role_dir(&self) -> PathBuf {
        self.dir.join("role").join("remote")
    }

    /// `local/estate.json`.
    pub fn local_estate_path(&self) -> PathBuf {
        self.local_dir().join("estate.json")
    }

    /// `local/road.json` (our `main` and `kind`, not in the reference's estate file).
    pub fn local_road_path(&self) -> PathBuf {
        self.local_dir().join("road.json")
    }

    /// `role/local/role.json` (our secret keys).
    pub fn local_role_path(&self) -> PathBuf {
        self.local_role_dir().join("role.json")
    }

    /// `remote/estate.<name>.json`.
    pub fn remote_path(&self, name: &str) -> Result<PathBuf, KeepError> {
        check_name("name", name)?;
        Ok(self
            .remote_dir()
            .join(format!("{REMOTE_PREFIX}{name}{SUFFIX}")))
    }

    /// `role/remote/role.<role>.json`.
    pub fn role_path(&self, role: &str) -> Result<PathBuf, KeepError> {
        check_name("role", role)?;
        Ok(self
            .remote_role_dir()
            .join(format!("{ROLE_PREFIX}{role}{SUFFIX}")))
    }
}

/// An address as the reference stores it: `["127.0.0.1", 7531]`.
#[derive(Serialize, Deserialize)]
struct HostPort(String, u16);

impl From<SocketAddr> for HostPort {
    fn from(ha: SocketAddr) -> Self {
        Self(ha.ip().to_string(), ha.port())
    }
}

impl HostPort {
    fn to_addr(&self, field: &str) -> Result<SocketAddr, String> {
        let ip: IpAddr = self
            .0
            .parse()
            .map_err(|_| format!("{field}: {:?} is not an IP address", self.0))?;
        Ok(SocketAddr::new(ip, self.1))
    }
}

/// Deserializes an `Option` that must be present (possibly `null`): serde otherwise treats a
/// missing `Option` field as `None`.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    Option::deserialize(d)
}

/// Reference estate fields we do not model: written as the reference's defaults for a plain
/// estate (`null`, empty `fqdn`), ignored when read.
#[derive(Serialize, Deserialize, Default)]
struct Unmodeled {
    #[serde(skip_deserializing)]
    iha: Option<()>,
    #[serde(skip_deserializing)]
    natted: Option<()>,
    #[serde(skip_deserializing)]
    fqdn: String,
    #[serde(skip_deserializing)]
    dyned: Option<()>,
}

/// `local/estate.json`.
#[derive(Serialize, Deserialize)]
struct LocalEstateFile {
    name: String,
    uid: u32,
    ha: HostPort,
    #[serde(flatten)]
    unmodeled: Unmodeled,
    sid: u32,
    puid: u32,
    #[serde(skip_deserializing)]
    aha: Option<HostPort>,
    role: String,
}

/// `local/road.json`.
#[derive(Serialize, Deserialize, Default)]
struct LocalRoadFile {
    main: bool,
    kind: u8,
}

/// `role/local/role.json`: wiped from memory when dropped.
#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
struct LocalRoleFile {
    role: String,
    sighex: String,
    prihex: String,
}

/// `remote/estate.<name>.json`.
#[derive(Serialize, Deserialize)]
struct RemoteEstateFile {
    name: String,
    uid: u32,
    fuid: u32,
    ha: HostPort,
    #[serde(flatten)]
    unmodeled: Unmodeled,
    sid: u32,
    main: bool,
    kind: u8,
    #[serde(deserialize_with = "present")]
    joined: Option<bool>,
    role: String,
    /// Ours (the reference ignores it): written only when true, so a compatible remote's
    /// file is the reference's.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    fast: bool,
}

/// `role/remote/role.<role>.json`.
#[derive(Serialize, Deserialize)]
struct RoleFile {
    role: String,
    acceptance: u8,
    verhex: String,
    pubhex: String,
}

fn corrupt(path: &Path, reason: impl Into<String>) -> KeepError {
    let reason = reason.into();
    tracing::warn!(path = %path.display(), %reason, "corrupt keep file");
    KeepError::Corrupt {
        path: path.to_owned(),
        reason,
    }
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> KeepError + '_ {
    move |source| KeepError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Reads and parses a keep file; `Ok(None)` if it does not exist. The raw bytes are wiped.
fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, KeepError> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(path)(e)),
    };
    let mut bytes = Zeroizing::new(Vec::with_capacity(1024));
    file.take(MAX_FILE_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(io_error(path))?;
    if bytes.len() as u64 > MAX_FILE_SIZE {
        return Err(corrupt(path, format!("larger than {MAX_FILE_SIZE} bytes")));
    }
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| corrupt(path, format!("invalid keep JSON: {e}")))
}

/// Serializes `value` as the reference does (indent 2) and writes it atomically.
fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), KeepError> {
    let mut bytes = Zeroizing::new(Vec::with_capacity(1024));
    serde_json::to_writer_pretty(&mut *bytes, value).map_err(|e| KeepError::InvalidRecord {
        reason: format!("cannot encode {}: {e}", path.display()),
    })?;
    write_atomic(path, &bytes, |_| Ok(()))
}

/// Distinguishes the temporary files of concurrent writes within this process.
static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `data` to `path` atomically: a temporary file in the same directory (mode 0600),
/// fsync, rename over `path`, fsync of the directory. On failure the temporary file is
/// removed and `path` is untouched. `before_rename` runs on the complete temporary file
/// (tests use it to inject a failure at that point).
fn write_atomic(
    path: &Path,
    data: &[u8],
    before_rename: impl FnOnce(&Path) -> io::Result<()>,
) -> Result<(), KeepError> {
    let (Some(dir), Some(file_name)) = (path.parent(), path.file_name()) else {
        return Err(KeepError::InvalidRecord {
            reason: format!("{} is not a file path", path.display()),
        });
    };
    let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(
        ".{}.{}.{n}.tmp",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let io_error = |source| KeepError::Io {
        path: path.to_owned(),
        source,
    };
    // If this fails the file at `tmp` (if any) is not ours: leave it.
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(&tmp)
        .map_err(io_error)?;
    let result = (|| {
        // The umask may have cleared bits but never adds any; make the mode exact anyway.
        file.set_permissions(Permissions::from_mode(FILE_MODE))?;
        file.write_all(data)?;
        file.sync_all()?;
        drop(file);
        before_rename(&tmp)?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    result.map_err(|source| {
        if let Err(e) = fs::remove_file(&tmp) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(tmp = %tmp.display(), error = %e, "cannot remove keep temp file");
            }
        }
        io_error(source)
    })
}

/// Removes a keep file; a missing file is fine.
fn remove(path: &Path) -> Result<(), KeepError> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_error(path)(e)),
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(dir))
}

/// The `(name, path)` of every `<prefix><name>.json` file in `dir` (other files, such as
/// temporary files, are not keep records and are skipped). A name that is not a safe name is
/// an error.
fn list(dir: &Path, prefix: &str, what: &'static str) -> Result<Vec<(String, PathBuf)>, KeepError> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_error(dir))? {
        let path = entry.map_err(io_error(dir))?.path();
        let Some(file_name) = path.file_name() else {
            continue;
        };
        let lossy = file_name.to_string_lossy();
        let Some(name) = lossy
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix(SUFFIX))
        else {
            continue;
        };
        if file_name.to_str().is_none() {
            return Err(corrupt(&path, "file name is not UTF-8"));
        }
        check_name(what, name).map_err(|e| corrupt(&path, e.to_string()))?;
        found.push((name.to_owned(), path.clone()));
    }
    Ok(found)
}

/// Warns when a secrets file is readable by others (e.g. written by another tool).
fn check_secret_mode(path: &Path) {
    if let Ok(meta) = fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), "keep secrets file is accessible to group or others");
        }
    }
}

impl LocalEstateFile {
    fn new(local: &LocalRecord) -> Self {
        Self {
            name: local.name.clone(),
            uid: local.uid,
            ha: local.ha.into(),
            unmodeled: Unmodeled::default(),
            sid: local.sid,
            puid: local.puid,
            aha: Some(local.ha.into()),
            role: local.role.clone(),
        }
    }
}

impl RemoteEstateFile {
    fn new(remote: &RemoteRecord) -> Self {
        Self {
            name: remote.name.clone(),
            uid: remote.uid,
            fuid: remote.fuid,
            ha: remote.ha.into(),
            unmodeled: Unmodeled::default(),
            sid: remote.sid,
            main: remote.main,
            kind: remote.kind,
            joined: remote.joined,
            role: remote.role.clone(),
            fast: remote.fast,
        }
    }

    fn into_record(self, path: &Path, file_name: &str) -> Result<RemoteRecord, KeepError> {
        if self.name != file_name {
            return Err(corrupt(
                path,
                format!("name {:?} does not match the file name", self.name),
            ));
        }
        check_name("role", &self.role).map_err(|e| corrupt(path, e.to_string()))?;
        Ok(RemoteRecord {
            ha: self.ha.to_addr("ha").map_err(|e| corrupt(path, e))?,
            name: self.name,
            uid: self.uid,
            fuid: self.fuid,
            sid: self.sid,
            main: self.main,
            kind: self.kind,
            joined: self.joined,
            role: self.role,
            fast: self.fast,
        })
    }
}

impl RoleFile {
    fn into_record(self, path: &Path, file_role: &str) -> Result<RoleRecord, KeepError> {
        if self.role != file_role {
            return Err(corrupt(
                path,
                format!("role {:?} does not match the file name", self.role),
            ));
        }
        let acceptance = Acceptance::try_from(u64::from(self.acceptance))
            .map_err(|v| corrupt(path, format!("acceptance {v} is not 0, 1 or 2")))?;
        check_key_hex("verhex", &self.verhex)
            .and_then(|()| check_key_hex("pubhex", &self.pubhex))
            .map_err(|e| corrupt(path, e))?;
        Ok(RoleRecord {
            role: self.role,
            acceptance,
            verhex: self.verhex,
            pubhex: self.pubhex,
        })
    }
}

impl Keep for DirKeep {
    fn load_local(&self) -> Result<Option<LocalRecord>, KeepError> {
        let estate_path = self.local_estate_path();
        let role_path = self.local_role_path();
        let estate: Option<LocalEstateFile> = read_json(&estate_path)?;
        let keys: Option<LocalRoleFile> = read_json(&role_path)?;
        let road: Option<LocalRoadFile> = read_json(&self.local_road_path())?;
        let (estate, keys) = match (estate, keys) {
            (None, None) => return Ok(None),
            (Some(_), None) => {
                return Err(corrupt(
                    &role_path,
                    "missing: the local estate exists but its keys do not",
                ))
            }
            (None, Some(_)) => {
                return Err(corrupt(
                    &estate_path,
                    "missing: the local keys exist but the estate does not",
                ))
            }
            (Some(estate), Some(keys)) => (estate, keys),
        };
        // Absent from keeps written by the reference.
        let road = road.unwrap_or_default();
        check_secret_mode(&role_path);
        check_name("name", &estate.name).map_err(|e| corrupt(&estate_path, e.to_string()))?;
        check_name("role", &estate.role).map_err(|e| corrupt(&estate_path, e.to_string()))?;
        if keys.role != estate.role {
            return Err(corrupt(
                &role_path,
                format!(
                    "role {:?} differs from the local estate's role {:?} in {}",
                    keys.role,
                    estate.role,
                    estate_path.display()
                ),
            ));
        }
        let mut sign_seed = Zeroizing::new([0u8; 32]);
        let mut private_key = Zeroizing::new([0u8; 32]);
        // The reasons name no character of the (corrupt) secret.
        decode_key_hex(&keys.sighex, &mut sign_seed)
            .map_err(|_| corrupt(&role_path, "sighex is not a 32-byte key in hex"))?;
        decode_key_hex(&keys.prihex, &mut private_key)
            .map_err(|_| corrupt(&role_path, "prihex is not a 32-byte key in hex"))?;
        Ok(Some(LocalRecord {
            ha: estate
                .ha
                .to_addr("ha")
                .map_err(|e| corrupt(&estate_path, e))?,
            name: estate.name,
            uid: estate.uid,
            sid: estate.sid,
            puid: estate.puid,
            role: estate.role,
            main: road.main,
            kind: road.kind,
            sign_seed,
            private_key,
        }))
    }

    fn save_local(&mut self, local: &LocalRecord) -> Result<(), KeepError> {
        local.validate()?;
        let keys = LocalRoleFile {
            role: local.role.clone(),
            sighex: hex::encode(&local.sign_seed[..]),
            prihex: hex::encode(&local.private_key[..]),
        };
        let road = LocalRoadFile {
            main: local.main,
            kind: local.kind,
        };
        // The estate last: a crash before it leaves keys without an estate, reported on load.
        write_json(&self.local_role_path(), &keys)?;
        write_json(&self.local_road_path(), &road)?;
        write_json(&self.local_estate_path(), &LocalEstateFile::new(local))
    }

    fn load_remotes(&self) -> Result<Vec<RemoteRecord>, KeepError> {
        let mut remotes = Vec::new();
        for (name, path) in list(&self.remote_dir(), REMOTE_PREFIX, "name")? {
            // Listed but gone by now (removed concurrently): not a remote any more.
            if let Some(file) = read_json::<RemoteEstateFile>(&path)? {
                remotes.push(file.into_record(&path, &name)?);
            }
        }
        sort_remotes(&mut remotes);
        Ok(remotes)
    }

    fn save_remote(&mut self, remote: &RemoteRecord) -> Result<(), KeepError> {
        remote.validate()?;
        write_json(
            &self.remote_path(&remote.name)?,
            &RemoteEstateFile::new(remote),
        )
    }

    fn remove_remote(&mut self, name: &str) -> Result<(), KeepError> {
        remove(&self.remote_path(name)?)
    }

    fn load_role(&self, role: &str) -> Result<Option<RoleRecord>, KeepError> {
        let path = self.role_path(role)?;
        read_json::<RoleFile>(&path)?
            .map(|file| file.into_record(&path, role))
            .transpose()
    }

    fn save_role(&mut self, role: &RoleRecord) -> Result<(), KeepError> {
        role.validate()?;
        let file = RoleFile {
            role: role.role.clone(),
            acceptance: role.acceptance as u8,
            verhex: role.verhex.clone(),
            pubhex: role.pubhex.clone(),
        };
        write_json(&self.role_path(&role.role)?, &file)
    }

    fn remove_role(&mut self, role: &str) -> Result<(), KeepError> {
        remove(&self.role_path(role)?)
    }

    fn load_roles(&self) -> Result<Vec<RoleRecord>, KeepError> {
        let mut roles = Vec::new();
        for (role, path) in list(&self.remote_role_dir(), ROLE_PREFIX, "role")? {
            if let Some(file) = read_json::<RoleFile>(&path)? {
                roles.push(file.into_record(&path, &role)?);
            }
        }
        roles.sort_by(|a, b| a.role.cmp(&b.role));
        Ok(roles)
    }
}

#[cfg(test)]
mod tests;
