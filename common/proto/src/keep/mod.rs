//! The keep: the local estate and every remote persisted on disk, and key acceptance (auto modes).
//!
//! Three kinds of records are kept, as in the reference `RoadKeep`:
//! * the [`LocalRecord`]: our own estate (name, uid counter, address, session id) and our
//!   long-term keys (ed25519 signing seed and curve25519 private key);
//! * one [`RemoteRecord`] per remote estate (name, uids, address, role, ...);
//! * one [`RoleRecord`] per remote *role*: the remote's public keys and their acceptance
//!   status. Acceptance is decided per role by [`status_role`], the reference's
//!   `RoadKeep.statusRole` decision table (spec §11.2).
//!
//! Two storage backends implement [`Keep`]: `raet::keep::DirKeep` (the reference directory layout,
//! atomic writes, mode 0600 files) and [`MemKeep`] (in memory, for tests; clones share
//! storage so a test can restart a stack on it). The road itself never calls a keep: it is
//! built from a [`Snapshot`] and hands out [`PersistOp`]s for its driver to apply.

mod mem;
mod persist;

pub use mem::MemKeep;
pub use persist::{apply_now, coalesce, PersistOp, Snapshot};

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use zeroize::Zeroizing;

/// Why a keep operation failed. Never a silent reset: a keep file that cannot be used is an
/// error naming the file and the reason.
#[derive(Debug, thiserror::Error)]
pub enum KeepError {
    /// Reading, writing, renaming or listing a keep file or directory failed.
    #[error("keep I/O error on {path}: {source}")]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A keep file exists but its content is unusable (truncated, not JSON, a missing field,
    /// a bad hex key, a name that does not match its file name, ...).
    #[error("corrupt keep file {path}: {reason}")]
    Corrupt {
        /// The offending file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A name or role that cannot be used as a file name component (empty, a path separator,
    /// `..`, NUL, whitespace or control characters, too long).
    #[error("unsafe {what} {name:?} for the keep: {reason}")]
    UnsafeName {
        /// What the name is (`"name"`, `"role"`).
        what: &'static str,
        /// The rejected name.
        name: String,
        /// Why it is rejected.
        reason: &'static str,
    },
    /// A record handed to a save function is not valid (e.g. a key that is not 32 bytes of hex).
    #[error("invalid keep record: {reason}")]
    InvalidRecord {
        /// What is wrong with it.
        reason: String,
    },
}

/// Acceptance status of a remote role's keys (stored in `role.<role>.json` as 0/1/2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Acceptance {
    /// Awaiting an operator decision.
    Pending = 0,
    /// Keys accepted.
    Accepted = 1,
    /// Keys rejected.
    Rejected = 2,
}

impl TryFrom<u64> for Acceptance {
    type Error = u64;

    /// The reference's integer value; anything but 0, 1, 2 is returned as the error.
    fn try_from(value: u64) -> Result<Self, u64> {
        match value {
            0 => Ok(Self::Pending),
            1 => Ok(Self::Accepted),
            2 => Ok(Self::Rejected),
            other => Err(other),
        }
    }
}

impl fmt::Display for Acceptance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Pending => "pending",
            Self::Accepted => "accepted",
            Self::Rejected => "rejected",
        })
    }
}

/// How the keys of a new or changed remote role are accepted (the reference's `auto`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AutoMode {
    /// New roles are pending until the application accepts or rejects them (reference value 0).
    #[default]
    Never,
    /// The first keys of a role are accepted and pinned; changed keys are rejected (value 1).
    Once,
    /// Every key is accepted, even changed ones and previously rejected roles (value 2).
    Always,
}

/// A string that is not an auto mode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown auto mode {0:?} (expected never, once, always or 0, 1, 2)")]
pub struct ParseAutoModeError(pub String);

impl FromStr for AutoMode {
    type Err = ParseAutoModeError;

    /// `never`/`once`/`always` (any case) or the reference's numeric values `0`/`1`/`2`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "never" | "0" => Ok(Self::Never),
            "once" | "1" => Ok(Self::Once),
            "always" | "2" => Ok(Self::Always),
            _ => Err(ParseAutoModeError(s.to_owned())),
        }
    }
}

impl fmt::Display for AutoMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Never => "never",
            Self::Once => "once",
            Self::Always => "always",
        })
    }
}

/// The outcome of [`status_role`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoleStatus {
    /// The acceptance status of the offered keys.
    pub acceptance: Acceptance,
    /// Whether the role record must be (re)written with the offered keys and this status
    /// (never true for `Rejected`: only an operator persists a rejection).
    pub save: bool,
}

impl RoleStatus {
    /// The record to persist for `role` when [`RoleStatus::save`] is set, else `None`.
    pub fn record_to_save(&self, role: &str, verhex: &str, pubhex: &str) -> Option<RoleRecord> {
        self.save.then(|| RoleRecord {
            role: role.to_owned(),
            acceptance: self.acceptance,
            verhex: verhex.to_owned(),
            pubhex: pubhex.to_owned(),
        })
    }
}

/// The reference's `RoadKeep.statusRole` decision table (spec §11.2).
///
/// `record` is the stored record of the remote's role (if any), `verhex`/`pubhex` the keys the
/// remote offers now. "Same keys" means both equal the stored ones (exact string comparison,
/// as the reference).
///
/// | mode   | no record | accepted                    | pending                     | rejected |
/// |--------|-----------|-----------------------------|-----------------------------|----------|
/// | always | accepted  | accepted                    | accepted                    | accepted |
/// | once   | accepted  | same keys ? accepted : rej. | same keys ? accepted : rej. | rejected |
/// | never  | pending   | same keys ? accepted : rej. | same keys ? pending : rej.  | rejected |
///
/// The record is to be saved when the outcome is not rejected and the keys or the status differ
/// from the stored record (or there is none).
pub fn status_role(
    auto: AutoMode,
    record: Option<&RoleRecord>,
    verhex: &str,
    pubhex: &str,
) -> RoleStatus {
    let same_keys = record.is_some_and(|r| r.verhex == verhex && r.pubhex == pubhex);
    let acceptance = match (auto, record.map(|r| r.acceptance)) {
        (AutoMode::Always, _) | (AutoMode::Once, None) => Acceptance::Accepted,
        (AutoMode::Never, None) => Acceptance::Pending,
        (_, Some(Acceptance::Rejected)) => Acceptance::Rejected,
        (_, Some(_)) if !same_keys => Acceptance::Rejected,
        (AutoMode::Once, Some(_)) => Acceptance::Accepted,
        (AutoMode::Never, Some(stored)) => stored,
    };
    let save = acceptance != Acceptance::Rejected
        && record.is_none_or(|r| !same_keys || r.acceptance != acceptance);
    RoleStatus { acceptance, save }
}

/// Our own estate and long-term keys (`local/estate.json` + `role/local/role.json`).
#[derive(Clone, PartialEq, Eq)]
pub struct LocalRecord {
    /// Our estate name.
    pub name: String,
    /// Our own uid (the reference's local estate uid).
    pub uid: u32,
    /// Our address.
    pub ha: SocketAddr,
    /// Our current session id.
    pub sid: u32,
    /// The uid counter: the last uid given to a remote (`puid`).
    pub puid: u32,
    /// Our role (the key of our role record on the remotes).
    pub role: String,
    /// Whether we are a main estate (accept vacuous joins).
    pub main: bool,
    /// Our application kind code.
    pub kind: u8,
    /// Ed25519 signing seed (`sighex`). Secret.
    pub sign_seed: Zeroizing<[u8; 32]>,
    /// Curve25519 long-term private key (`prihex`). Secret.
    pub private_key: Zeroizing<[u8; 32]>,
}

impl fmt::Debug for LocalRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalRecord")
            .field("name", &self.name)
            .field("uid", &self.uid)
            .field("ha", &self.ha)
            .field("sid", &self.sid)
            .field("puid", &self.puid)
            .field("role", &self.role)
            .field("main", &self.main)
            .field("kind", &self.kind)
            .field("sign_seed", &"<redacted>")
            .field("private_key", &"<redacted>")
            .finish()
    }
}

/// A remote estate (`remote/estate.<name>.json`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteRecord {
    /// The remote's estate name (also its file name component).
    pub name: String,
    /// Our uid for it (nuid).
    pub uid: u32,
    /// Its uid for us (fuid).
    pub fuid: u32,
    /// Its address.
    pub ha: SocketAddr,
    /// The session id we last used with it.
    pub sid: u32,
    /// Whether it is a main estate.
    pub main: bool,
    /// Its application kind code.
    pub kind: u8,
    /// Join status (`None` = never joined).
    pub joined: Option<bool>,
    /// Its role (key of its [`RoleRecord`]).
    pub role: String,
    /// Its last join negotiated the fast profile (not in the reference's records).
    pub fast: bool,
}

/// Public keys and acceptance of a remote role (`role/remote/role.<role>.json`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleRecord {
    /// The role name (also its file name component).
    pub role: String,
    /// Acceptance status of these keys.
    pub acceptance: Acceptance,
    /// Ed25519 verify key, 64 hex characters.
    pub verhex: String,
    /// Curve25519 public key, 64 hex characters.
    pub pubhex: String,
}

/// Storage backend of a road's driver (synchronous, small files): loads the [`Snapshot`] a
/// road is built from and applies the road's [`PersistOp`]s.
pub trait Keep: Send {
    /// Our estate and keys, `None` in a fresh keep.
    fn load_local(&self) -> Result<Option<LocalRecord>, KeepError>;
    /// Persist our estate and keys.
    fn save_local(&mut self, local: &LocalRecord) -> Result<(), KeepError>;
    /// Every remote estate, ordered by uid then name.
    fn load_remotes(&self) -> Result<Vec<RemoteRecord>, KeepError>;
    /// Persist one remote estate (keyed by its name).
    fn save_remote(&mut self, remote: &RemoteRecord) -> Result<(), KeepError>;
    /// Forget a remote estate; removing an unknown name is not an error.
    fn remove_remote(&mut self, name: &str) -> Result<(), KeepError>;
    /// The record of one remote role, `None` if unknown.
    fn load_role(&self, role: &str) -> Result<Option<RoleRecord>, KeepError>;
    /// Persist one remote role record (keyed by its role).
    fn save_role(&mut self, role: &RoleRecord) -> Result<(), KeepError>;
    /// Forget a remote role; removing an unknown role is not an error.
    fn remove_role(&mut self, role: &str) -> Result<(), KeepError>;
    /// Every remote role record, ordered by role.
    fn load_roles(&self) -> Result<Vec<RoleRecord>, KeepError>;
}

/// Longest name or role accepted (file names are limited to 255 bytes, and the keep adds a
/// prefix, a suffix and a temporary-file decoration).
pub const MAX_NAME_LEN: usize = 200;

/// Checks that `name` can be used as a file name component of the keep: not empty, at most
/// [`MAX_NAME_LEN`] bytes, no `/`, `\`, `..`, NUL, whitespace or control characters (the
/// reference refuses spaces in keep paths too). `what` names the field in the error.
pub fn check_name(what: &'static str, name: &str) -> Result<(), KeepError> {
    let reason = if name.is_empty() {
        Some("empty")
    } else if name.len() > MAX_NAME_LEN {
        Some("too long")
    } else if name.contains(['/', '\\']) {
        Some("contains a path separator")
    } else if name.contains("..") {
        Some("contains '..'")
    } else if name.contains('\0') {
        Some("contains NUL")
    } else if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Some("contains whitespace or a control character")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(KeepError::UnsafeName {
            what,
            name: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Decodes a 32-byte key from 64 hex characters into `out`.
pub fn decode_key_hex(hex_str: &str, out: &mut [u8; 32]) -> Result<(), String> {
    hex::decode_to_slice(hex_str, out)
        .map_err(|e| format!("not a 32-byte hex key ({} characters): {e}", hex_str.len()))
}

/// Checks that `hex_str` is a 32-byte key in hex.
pub fn check_key_hex(field: &str, hex_str: &str) -> Result<(), String> {
    decode_key_hex(hex_str, &mut [0u8; 32]).map_err(|e| format!("{field}: {e}"))
}

impl LocalRecord {
    /// Checks the names (the keys are fixed-size arrays and always valid): what every backend
    /// checks before it saves the record.
    pub fn validate(&self) -> Result<(), KeepError> {
        check_name("name", &self.name)?;
        check_name("role", &self.role)
    }
}

impl RemoteRecord {
    /// Checks the names (every backend, before it saves the record).
    pub fn validate(&self) -> Result<(), KeepError> {
        check_name("name", &self.name)?;
        check_name("role", &self.role)
    }
}

impl RoleRecord {
    /// Checks the role name and that both keys are 32 bytes of hex (every backend, before it
    /// saves the record).
    pub fn validate(&self) -> Result<(), KeepError> {
        check_name("role", &self.role)?;
        check_key_hex("verhex", &self.verhex)
            .and_then(|()| check_key_hex("pubhex", &self.pubhex))
            .map_err(|reason| KeepError::InvalidRecord {
                reason: format!("role {:?}: {reason}", self.role),
            })
    }
}

/// Orders remotes as [`Keep::load_remotes`] promises: by uid, then name (for backends).
pub fn sort_remotes(remotes: &mut [RemoteRecord]) {
    remotes.sort_by(|a, b| (a.uid, &a.name).cmp(&(b.uid, &b.name)));
}

/// Sample records and the backend-independent suite every [`Keep`] backend's tests run
/// (for this crate's tests and, with feature `testutil`, other backends').
#[cfg(any(test, feature = "testutil"))]
pub mod testutil;

#[cfg(test)]
mod tests;
