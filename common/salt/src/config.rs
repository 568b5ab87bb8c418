//! Salt's own configuration files, read for the daemons.
//!
//! Both daemons read what Salt reads: `<config_dir>/master` (or `minion`), then every
//! `<config_dir>/master.d/*.conf` (or `minion.d/*.conf`) in sorted order, each a YAML map
//! (parsed with the `config` crate). As Salt's `default_include`, a key in a later file replaces
//! the same key of an earlier one (top-level keys). A missing main file means "all defaults", as
//! in Salt. Keys this crate does not use are ignored: they belong to Salt.
//!
//! A value of a key we use that has the wrong form is a [`ConfigError::BadValue`], whose one-line
//! message names the file, the key and the expected form. Paths are prefixed with `root_dir`
//! exactly as Salt's `prepend_root_dir` does (see [`prepend_root_dir`]).
//!
//! Not supported (yet): Salt's `include` key and a changed `default_include`, `sdb://` values,
//! environment overrides (`SALT_MASTER_CONFIG`, ...).
//!
//! By responsibility: `raw` reads the files and types the values, `paths` derives paths,
//! `ids` chooses the id, `log_level` names Salt's levels, `master` and `minion` hold each
//! daemon's own keys; this module the keys both share ([`CommonConfig`]) and the errors.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::logfmt;

mod ids;
mod log_level;
mod master;
mod minion;
mod paths;
mod raw;

pub use log_level::{LogLevel, LOG_LEVELS};
pub use master::{auto_mode, MasterConfig};
pub use minion::{master_entry, MinionConfig};
pub use paths::prepend_root_dir;

use paths::is_uri;
use raw::Raw;

/// Salt's default configuration directory (`-c/--config-dir`).
pub const DEFAULT_CONFIG_DIR: &str = "/etc/salt";

/// Which daemon reads the configuration: selects the file names and the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `salt-raet-master`: reads `master` and `master.d/*.conf`.
    Master,
    /// `salt-raet-minion`: reads `minion` and `minion.d/*.conf`.
    Minion,
}

impl Role {
    /// `"master"` or `"minion"`: the file name and the last component of default paths.
    pub fn name(self) -> &'static str {
        match self {
            Self::Master => "master",
            Self::Minion => "minion",
        }
    }
}

/// Why the configuration cannot be used. Every message is one line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file or directory could not be read.
    #[error("{path}: cannot read: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A file is not a YAML map.
    #[error("{path}: invalid YAML: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (on one line).
        reason: String,
    },
    /// A key we use has a value of the wrong form.
    #[error("{path}: bad value for {key}: expected {expected}, got {found}")]
    BadValue {
        /// The file the value comes from.
        path: PathBuf,
        /// The key.
        key: String,
        /// The expected form.
        expected: String,
        /// The value found (shortened).
        found: String,
    },
    /// The system's account database could not be asked for `user` (an NSS source such as
    /// LDAP or sssd failing; a missing user is a [`ConfigError::BadValue`]).
    #[error("{path}: user {user:?}: cannot read the account database: {source}")]
    Account {
        /// The file `user` is set in.
        path: PathBuf,
        /// The configured `user`.
        user: String,
        /// What `getpwnam` answered.
        #[source]
        source: nix::errno::Errno,
    },
}

/// Keys both daemons use.
#[derive(Debug, Clone, PartialEq)]
pub struct CommonConfig {
    /// The configuration directory that was read.
    pub config_dir: PathBuf,
    /// The files that were read, in order (missing main file not listed).
    pub files: Vec<PathBuf>,
    /// `root_dir` (default `/`), already applied to the paths below.
    pub root_dir: PathBuf,
    /// `pki_dir` (default `/etc/salt/pki/<role>`); the RAET keep is `<pki_dir>/raet`.
    pub pki_dir: PathBuf,
    /// `sock_dir` (default `/var/run/salt/<role>`).
    pub sock_dir: PathBuf,
    /// `cachedir` (default `/var/cache/salt/<role>`).
    pub cachedir: PathBuf,
    /// `user` (default: not set, the daemon runs as whoever starts it).
    pub user: Option<String>,
    /// The account of `user` (through NSS): key files the master writes are chowned
    /// to it, as Salt's `localfs_key` does.
    pub owner: Option<crate::account::Account>,
    /// `log_level` (default `warning`).
    pub log_level: LogLevel,
    /// `log_file` (default `/var/log/salt/<role>`): a path, or a URI (`udp://...`) kept as is.
    pub log_file: String,
    /// `log_fmt_console` (default Salt's `[%(levelname)-8s] %(message)s`); see
    /// [`crate::logfmt`].
    pub log_fmt_console: String,
    /// `log_fmt_logfile` (default Salt's, see [`crate::logfmt::DEFAULT_LOGFILE`]).
    pub log_fmt_logfile: String,
    /// `log_datefmt` (default `%H:%M:%S`): `asctime` on the console.
    pub log_datefmt: String,
    /// `log_datefmt_logfile` (default `%Y-%m-%d %H:%M:%S`): `asctime` in `log_file`.
    pub log_datefmt_logfile: String,
    /// `log_level_logfile` (default: not set, the console's level).
    pub log_level_logfile: Option<LogLevel>,
    /// `raet_port`: the UDP port of the road (master 4505, minion 4510); 0: a port the kernel
    /// picks (`status` shows it).
    pub raet_port: u16,
    /// `raet_alive_period` (ours; seconds, default 10): the presence heartbeat period.
    pub raet_alive_period: Duration,
    /// `raet_message_timeout` (ours; seconds, default 30): how long a message waits for its
    /// peer (queued while the peer is not allowed, or sent without an answer) before it fails
    /// back to its sender with `send_failed`.
    pub raet_message_timeout: Duration,
    /// `raet_salt_crypto` (ours; default false): Salt's own RSA/AES channels run on top of
    /// RAET. Salt's `_auth` then owns the pki directories and salt-key decides on Salt's RSA
    /// keys; the master daemon accepts RAET keys from its keep alone (`raet_auto_accept`).
    pub raet_salt_crypto: bool,
    /// `raet_profile` (ours; `compat`, `auto` or `fast`, default `auto`): the protocol
    /// profile of the daemon's road (docs/protocol.md, *The fast profile*): `auto` uses the
    /// fast profile with peers that offer it too, `compat` never, `fast` refuses peers
    /// without it.
    pub raet_profile: raet::road::Profile,
}

impl CommonConfig {
    /// The directory of the daemon's RAET keep: `<pki_dir>/raet`.
    pub fn keep_dir(&self) -> PathBuf {
        self.pki_dir.join("raet")
    }
}

/// The shortest period a `seconds` key accepts (`raet_alive_period`, `loop_interval`).
pub const MIN_PERIOD: Duration = Duration::from_millis(1);
/// Default presence period (`raet_alive_period`), seconds.
pub const DEFAULT_ALIVE_PERIOD_SECS: u64 = 10;
/// Default `raet_message_timeout`, seconds (the road's own default).
pub const DEFAULT_MESSAGE_TIMEOUT_SECS: u64 = 30;
/// Salt's default `loop_interval` (the master's maintenance period), seconds.
pub const DEFAULT_LOOP_INTERVAL_SECS: u64 = 60;

fn read_common(dir: &Path, role: Role, raw: &Raw) -> Result<CommonConfig, ConfigError> {
    let r = role.name();
    let root = raw.path("root_dir", "/")?;
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    // Salt takes os.path.abspath(root_dir).
    let root_dir = cwd.join(root);
    let rooted = |key: &str, default: &str| -> Result<PathBuf, ConfigError> {
        Ok(prepend_root_dir(&root_dir, &raw.path(key, default)?))
    };
    let log_file = raw.path("log_file", &format!("/var/log/salt/{r}"))?;
    let log_file = if is_uri(&log_file) {
        log_file
    } else {
        prepend_root_dir(&root_dir, &log_file)
            .to_string_lossy()
            .into_owned()
    };
    let alive = raw.seconds("raet_alive_period", DEFAULT_ALIVE_PERIOD_SECS)?;
    Ok(CommonConfig {
        config_dir: dir.to_owned(),
        files: raw.files.clone(),
        pki_dir: rooted("pki_dir", &format!("/etc/salt/pki/{r}"))?,
        sock_dir: rooted("sock_dir", &format!("/var/run/salt/{r}"))?,
        cachedir: rooted("cachedir", &format!("/var/cache/salt/{r}"))?,
        root_dir,
        owner: raw.account("user")?,
        user: raw
            .get("user")
            .map(|_| raw.string("user", ""))
            .transpose()?,
        log_level: raw.parsed("log_level", LOG_LEVELS, LogLevel::Warning)?,
        log_file,
        log_fmt_console: raw.log_format("log_fmt_console", logfmt::DEFAULT_CONSOLE)?,
        log_fmt_logfile: raw.log_format("log_fmt_logfile", logfmt::DEFAULT_LOGFILE)?,
        log_datefmt: raw.string("log_datefmt", logfmt::DEFAULT_DATEFMT)?,
        log_datefmt_logfile: raw.string("log_datefmt_logfile", logfmt::DEFAULT_DATEFMT_LOGFILE)?,
        log_level_logfile: raw
            .get("log_level_logfile")
            .map(|_| raw.parsed("log_level_logfile", LOG_LEVELS, LogLevel::Warning))
            .transpose()?,
        raet_port: raw.port_or_any(
            "raet_port",
            match role {
                Role::Master => 4505,
                Role::Minion => 4510,
            },
        )?,
        raet_alive_period: alive,
        raet_message_timeout: raw.seconds("raet_message_timeout", DEFAULT_MESSAGE_TIMEOUT_SECS)?,
        raet_salt_crypto: raw.bool("raet_salt_crypto", false)?,
        raet_profile: raw.typed(
            "raet_profile",
            "compat, auto or fast",
            raet::road::Profile::Auto,
            |k| raw::scalar_string(k)?.parse().ok(),
        )?,
    })
}

#[cfg(test)]
mod tests;
