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

use std::collections::BTreeMap;
use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use config::{FileFormat, Source, Value, ValueKind};

use crate::logfmt;
use crate::minion_id::{self, IdOrigin, IdRules, RemoveDomain};
use raet::keep::AutoMode;

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

/// Salt's log levels (`log_level`), from the most to the least verbose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// `all`
    All,
    /// `garbage`
    Garbage,
    /// `trace`
    Trace,
    /// `debug`
    Debug,
    /// `profile`
    Profile,
    /// `info`
    Info,
    /// `warning` (Salt's default)
    Warning,
    /// `error`
    Error,
    /// `critical`
    Critical,
    /// `quiet`: nothing is logged.
    Quiet,
}

/// The names of [`LogLevel`], in Salt's spelling.
pub const LOG_LEVELS: &str =
    "all, garbage, trace, debug, profile, info, warning, error, critical or quiet";

impl FromStr for LogLevel {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "all" => Self::All,
            "garbage" => Self::Garbage,
            "trace" => Self::Trace,
            "debug" => Self::Debug,
            "profile" => Self::Profile,
            "info" => Self::Info,
            "warning" => Self::Warning,
            "error" => Self::Error,
            "critical" => Self::Critical,
            "quiet" => Self::Quiet,
            _ => return Err(format!("one of {LOG_LEVELS}")),
        })
    }
}

impl LogLevel {
    /// The `tracing` level filter that logs what Salt logs at this level.
    pub fn tracing_filter(self) -> tracing::level_filters::LevelFilter {
        use tracing::level_filters::LevelFilter;
        match self {
            Self::All | Self::Garbage | Self::Trace => LevelFilter::TRACE,
            Self::Debug | Self::Profile => LevelFilter::DEBUG,
            Self::Info => LevelFilter::INFO,
            Self::Warning => LevelFilter::WARN,
            Self::Error | Self::Critical => LevelFilter::ERROR,
            Self::Quiet => LevelFilter::OFF,
        }
    }
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
    /// `raet_salt_crypto` (ours; default false): Salt's own RSA/AES channels run on top of
    /// RAET. Salt's `_auth` then owns the pki directories and salt-key decides on Salt's RSA
    /// keys; the master daemon accepts RAET keys from its keep alone (`raet_auto_accept`).
    pub raet_salt_crypto: bool,
}

impl CommonConfig {
    /// The directory of the daemon's RAET keep: `<pki_dir>/raet`.
    pub fn keep_dir(&self) -> PathBuf {
        self.pki_dir.join("raet")
    }
}

/// `salt-raet-master`'s configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct MasterConfig {
    /// Keys shared with the minion.
    pub common: CommonConfig,
    /// `id` (default Salt's: the minion id the host would get, see [`crate::minion_id`],
    /// then `_master`): the master's road estate name (masters of one minion must have
    /// distinct ids).
    pub id: String,
    /// `interface` (default `0.0.0.0`): the address the road binds.
    pub interface: IpAddr,
    /// `auto_accept` (default false).
    pub auto_accept: bool,
    /// `open_mode` (default false).
    pub open_mode: bool,
    /// `autosign_file` (default `/etc/salt/autosign.conf`, prefixed with `root_dir`).
    pub autosign_file: PathBuf,
    /// `autoreject_file` (default `/etc/salt/autoreject.conf`, prefixed with `root_dir`).
    pub autoreject_file: PathBuf,
    /// `raet_auto_accept` (ours: `never`, `once`, `always`): overrides `open_mode`/`auto_accept`.
    /// With `raet_salt_crypto` only `once` or `always` (salt-key cannot decide on RAET keys).
    pub raet_auto_accept: Option<AutoMode>,
    /// `presence_events` (default false, as Salt): fire `salt/presence/change` and
    /// `salt/presence/present` on Salt's master event bus.
    pub presence_events: bool,
    /// `loop_interval` (default 60 s, as Salt): period of `salt/presence/present`.
    pub loop_interval: Duration,
    /// `raet_first_contacts` (ours, default 512): minions joining for the first time (not
    /// yet accepted and joined) the road keeps at once; beyond it the one that asked least
    /// recently is dropped with its pending key.
    pub raet_first_contacts: usize,
    /// `raet_first_contact_interval` (ours, default 10 s): one new first contact per source
    /// address per interval.
    pub raet_first_contact_interval: Duration,
}

/// `salt-raet-minion`'s configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct MinionConfig {
    /// Keys shared with the master.
    pub common: CommonConfig,
    /// `id` (default: Salt's, see [`crate::minion_id`]: the cached id, else one generated
    /// from the FQDN, host name or addresses).
    pub id: String,
    /// Where [`MinionConfig::id`] comes from.
    pub id_origin: IdOrigin,
    /// `minion_id_caching`, `minion_id_lowercase`, `minion_id_remove_domain`.
    pub id_rules: IdRules,
    /// `master` (default `salt`): one or several master names or addresses, each possibly
    /// with its road port (`host:port`, `[v6]:port`); see [`MinionConfig::masters`].
    pub master: Vec<String>,
    /// `raet_master_port` (default 4505): the master's road port.
    pub raet_master_port: u16,
    /// `rejected_retry` (default false, as Salt): a rejected minion asks again periodically
    /// instead of waiting for SIGHUP or a restart.
    pub rejected_retry: bool,
    /// `master_finger` (Salt's; default empty: none): the sha256 fingerprint (32 hex pairs
    /// joined by `:`, stored in lowercase) the master's key must have; see
    /// [`MinionConfig::road_master_finger`].
    pub master_finger: Option<String>,
}

/// The merged top-level keys of the files read, each with the file it comes from.
#[derive(Debug, Default)]
struct Raw {
    values: BTreeMap<String, (Value, PathBuf)>,
    files: Vec<PathBuf>,
}

/// Reads one YAML file into `raw` (later files replace earlier keys).
fn read_file(raw: &mut Raw, path: &Path) -> Result<(), ConfigError> {
    // Read the text ourselves: a missing or unreadable file is an I/O error naming it.
    let text = fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_owned(),
        source,
    })?;
    let parse_error = |e: config::ConfigError| ConfigError::Parse {
        path: path.to_owned(),
        reason: one_line(&e.to_string()),
    };
    let table = config::Config::builder()
        .add_source(config::File::from_str(&text, FileFormat::Yaml))
        .build()
        .map_err(parse_error)?
        .collect()
        .map_err(parse_error)?;
    for (key, value) in table {
        raw.values.insert(key, (value, path.to_owned()));
    }
    raw.files.push(path.to_owned());
    Ok(())
}

/// Flattens a message to one line.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Reads `<dir>/<role>` (if present) then `<dir>/<role>.d/*.conf` in sorted order.
fn read_all(dir: &Path, role: Role) -> Result<Raw, ConfigError> {
    let mut raw = Raw::default();
    let main = dir.join(role.name());
    if main.exists() {
        read_file(&mut raw, &main)?;
    }
    let include_dir = dir.join(format!("{}.d", role.name()));
    if include_dir.is_dir() {
        let io_error = |source| ConfigError::Io {
            path: include_dir.clone(),
            source,
        };
        let mut includes = Vec::new();
        for entry in fs::read_dir(&include_dir).map_err(io_error)? {
            let path = entry.map_err(io_error)?.path();
            if path.extension().is_some_and(|e| e == "conf") && path.is_file() {
                includes.push(path);
            }
        }
        includes.sort();
        for path in includes {
            read_file(&mut raw, &path)?;
        }
    }
    Ok(raw)
}

/// The strings PyYAML (Salt's YAML loader) resolves to booleans but YAML 1.2 does not.
fn yaml11_bool(s: &str) -> Option<bool> {
    match s {
        "yes" | "Yes" | "YES" | "on" | "On" | "ON" | "true" | "True" | "TRUE" => Some(true),
        "no" | "No" | "NO" | "off" | "Off" | "OFF" | "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

impl Raw {
    /// The value of `key` and its file, `None` when absent or null (Salt's "not set").
    fn get(&self, key: &str) -> Option<&(Value, PathBuf)> {
        self.values
            .get(key)
            .filter(|(v, _)| !matches!(v.kind, ValueKind::Nil))
    }

    /// Parses `key` with `parse` (which returns `None` for a bad value), or `default`.
    fn typed<T>(
        &self,
        key: &str,
        expected: &str,
        default: T,
        parse: impl FnOnce(&ValueKind) -> Option<T>,
    ) -> Result<T, ConfigError> {
        let Some((value, path)) = self.get(key) else {
            return Ok(default);
        };
        parse(&value.kind).ok_or_else(|| ConfigError::BadValue {
            path: path.clone(),
            key: key.to_owned(),
            expected: expected.to_owned(),
            found: shorten(&value.kind),
        })
    }

    fn string(&self, key: &str, default: &str) -> Result<String, ConfigError> {
        self.typed(key, "a string", default.to_owned(), scalar_string)
    }

    fn path(&self, key: &str, default: &str) -> Result<String, ConfigError> {
        self.typed(key, "a path", default.to_owned(), |k| match k {
            ValueKind::String(s) if !s.is_empty() && !s.contains('\0') => Some(s.clone()),
            _ => None,
        })
    }

    /// The account named by `key` (through NSS, see [`crate::account::lookup_account`]),
    /// `None` when `key` is not set.
    fn account(&self, key: &str) -> Result<Option<crate::account::Account>, ConfigError> {
        let Some((value, path)) = self.get(key) else {
            return Ok(None);
        };
        let name = self.string(key, "")?;
        match crate::account::lookup_account(&name) {
            Ok(Some(account)) => Ok(Some(account)),
            Ok(None) => Err(ConfigError::BadValue {
                path: path.clone(),
                key: key.to_owned(),
                expected: "a user name known to the system (getpwnam)".into(),
                found: shorten(&value.kind),
            }),
            Err(source) => Err(ConfigError::Account {
                path: path.clone(),
                user: name,
                source,
            }),
        }
    }

    fn bool(&self, key: &str, default: bool) -> Result<bool, ConfigError> {
        self.typed(key, "True or False", default, |k| match k {
            ValueKind::Boolean(b) => Some(*b),
            ValueKind::String(s) => yaml11_bool(s),
            _ => None,
        })
    }

    fn port(&self, key: &str, default: u16) -> Result<u16, ConfigError> {
        self.typed(key, "a port number 1-65535", default, |k| {
            let n = match k {
                ValueKind::I64(n) => u16::try_from(*n).ok(),
                ValueKind::String(s) => s.trim().parse::<u16>().ok(),
                _ => None,
            };
            n.filter(|&n| n != 0)
        })
    }

    /// A whole number from 1 to `max`.
    fn count(&self, key: &str, default: usize, max: usize) -> Result<usize, ConfigError> {
        let expected = format!("a whole number from 1 to {max}");
        self.typed(key, &expected, default, |k| {
            let n = match k {
                ValueKind::I64(n) => usize::try_from(*n).ok(),
                ValueKind::U64(n) => usize::try_from(*n).ok(),
                ValueKind::String(s) => s.trim().parse::<usize>().ok(),
                _ => None,
            };
            n.filter(|n| (1..=max).contains(n))
        })
    }

    /// A port number, or 0 for a port the kernel picks.
    fn port_or_any(&self, key: &str, default: u16) -> Result<u16, ConfigError> {
        self.typed(
            key,
            "a port number 0-65535 (0: any)",
            default,
            |k| match k {
                ValueKind::I64(n) => u16::try_from(*n).ok(),
                ValueKind::String(s) => s.trim().parse::<u16>().ok(),
                _ => None,
            },
        )
    }

    /// A period in seconds, from [`MIN_PERIOD`] to a day (fractions allowed). Smaller
    /// values are refused: one rounding to zero would make a timer that never waits.
    fn seconds(&self, key: &str, default_secs: u64) -> Result<Duration, ConfigError> {
        self.typed(
            key,
            "a number of seconds from 0.001 to 86400",
            Duration::from_secs(default_secs),
            |k| {
                let secs = match k {
                    ValueKind::I64(n) => *n as f64,
                    ValueKind::Float(f) => *f,
                    ValueKind::String(s) => s.trim().parse().ok()?,
                    _ => return None,
                };
                let min = MIN_PERIOD.as_secs_f64();
                (min..=86_400.0)
                    .contains(&secs)
                    .then(|| Duration::from_secs_f64(secs))
            },
        )
    }

    /// A log line format ([`logfmt::LogFormat`] syntax).
    fn log_format(&self, key: &str, default: &str) -> Result<String, ConfigError> {
        let Some((value, path)) = self.get(key) else {
            return Ok(default.to_owned());
        };
        let text = scalar_string(&value.kind);
        let problem = match text.as_deref().map(|t| logfmt::LogFormat::parse(t, "")) {
            Some(Ok(_)) => return Ok(text.unwrap_or_default()),
            Some(Err(why)) => why,
            None => "a string".to_owned(),
        };
        Err(ConfigError::BadValue {
            path: path.clone(),
            key: key.to_owned(),
            expected: format!("a log format such as {default:?} ({problem})"),
            found: shorten(&value.kind),
        })
    }

    fn parsed<T: FromStr>(&self, key: &str, expected: &str, default: T) -> Result<T, ConfigError> {
        self.typed(key, expected, default, |k| {
            scalar_string(k).and_then(|s| s.parse().ok())
        })
    }
}

/// A string, or a number written without quotes (Salt turns a numeric `id` into a string).
fn scalar_string(kind: &ValueKind) -> Option<String> {
    match kind {
        ValueKind::String(s) => Some(s.clone()),
        ValueKind::I64(n) => Some(n.to_string()),
        ValueKind::U64(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Whether `s` has the form of a sha256 fingerprint as Salt prints them: 32 hex pairs
/// joined by `:`.
fn is_sha256_finger(s: &str) -> bool {
    let pairs: Vec<&str> = s.split(':').collect();
    pairs.len() == 32
        && pairs
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The value as shown in an error: at most 60 characters, on one line.
fn shorten(kind: &ValueKind) -> String {
    let shown = match kind {
        ValueKind::String(s) => format!("{s:?}"),
        ValueKind::Table(_) => "a map".to_owned(),
        ValueKind::Array(_) => "a list".to_owned(),
        other => other.to_string(),
    };
    let shown = one_line(&shown);
    if shown.chars().count() > 60 {
        let cut: String = shown.chars().take(57).collect();
        format!("{cut}...")
    } else {
        shown
    }
}

/// Salt's `prepend_root_dir` (with `salt.syspaths.ROOT_DIR` = `/`): a path already under
/// `root_dir` is kept; any other path, absolute or relative, is put under `root_dir`.
pub fn prepend_root_dir(root_dir: &Path, path: &str) -> PathBuf {
    let root = root_dir.to_string_lossy();
    let root = root.trim_end_matches('/');
    if root.is_empty() {
        // root_dir is `/`: absolute paths stay, relative ones go under `/`.
        return Path::new("/").join(path);
    }
    if path == root || path.starts_with(&format!("{root}/")) {
        return PathBuf::from(path);
    }
    Path::new(root).join(path.trim_start_matches('/'))
}

/// Whether a `log_file` value is a URI (`udp://`, `file:///`...) rather than a path, as Salt's
/// `urlparse(...).scheme != ""`.
fn is_uri(s: &str) -> bool {
    match s.split_once(':') {
        Some((scheme, _)) => {
            let mut chars = scheme.chars();
            chars.next().is_some_and(|c| c.is_ascii_alphabetic())
                && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        }
        None => false,
    }
}

/// The shortest period a `seconds` key accepts (`raet_alive_period`, `loop_interval`).
pub const MIN_PERIOD: Duration = Duration::from_millis(1);
/// Default presence period (`raet_alive_period`), seconds.
pub const DEFAULT_ALIVE_PERIOD_SECS: u64 = 10;
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
        raet_salt_crypto: raw.bool("raet_salt_crypto", false)?,
    })
}

impl MasterConfig {
    /// Reads `<dir>/master` and `<dir>/master.d/*.conf`.
    pub fn load(dir: &Path) -> Result<Self, ConfigError> {
        let raw = read_all(dir, Role::Master)?;
        let common = read_common(dir, Role::Master, &raw)?;
        let rooted = |key: &str, default: &str| -> Result<PathBuf, ConfigError> {
            Ok(prepend_root_dir(&common.root_dir, &raw.path(key, default)?))
        };
        check_key_driver(&raw)?;
        // Salt-crypto mode: salt-key decides on Salt's RSA keys, nobody on pending RAET keys.
        let salt_crypto = common.raet_salt_crypto;
        let expected = if salt_crypto {
            "once or always (with raet_salt_crypto: True salt-key decides on Salt's RSA keys)"
        } else {
            "never, once or always"
        };
        let raet_auto_accept = raw
            .get("raet_auto_accept")
            .map(|_| {
                raw.typed("raet_auto_accept", expected, AutoMode::Never, |k| {
                    let mode = scalar_string(k)?.parse::<AutoMode>().ok()?;
                    (!salt_crypto || mode != AutoMode::Never).then_some(mode)
                })
            })
            .transpose()?;
        let expected_id = "a master id (no '/', '\\', whitespace or control characters)";
        let id = match configured_id(&raw, expected_id)? {
            Some(id) => id,
            // Salt: `get_id(opts)` (the cache read, never written) + "_master".
            None => {
                let (id, _) = default_id(dir, Role::Master, &common.root_dir, &id_rules(&raw)?)?;
                format!("{id}_master")
            }
        };
        Ok(Self {
            id,
            interface: raw.parsed("interface", "an IP address", IpAddr::from([0, 0, 0, 0]))?,
            auto_accept: raw.bool("auto_accept", false)?,
            open_mode: raw.bool("open_mode", false)?,
            autosign_file: rooted("autosign_file", "/etc/salt/autosign.conf")?,
            autoreject_file: rooted("autoreject_file", "/etc/salt/autoreject.conf")?,
            raet_auto_accept,
            presence_events: raw.bool("presence_events", false)?,
            loop_interval: raw.seconds("loop_interval", DEFAULT_LOOP_INTERVAL_SECS)?,
            raet_first_contacts: raw.count("raet_first_contacts", 512, 1_000_000)?,
            raet_first_contact_interval: raw.seconds("raet_first_contact_interval", 10)?,
            common,
        })
    }
}

/// Only the default key driver keeps keys in the pki directories we manage: refuse another
/// `keys.cache_driver` (the `config` crate reads the dotted key as `keys: {cache_driver: ..}`).
fn check_key_driver(raw: &Raw) -> Result<(), ConfigError> {
    let Some((value, path)) = raw.get("keys") else {
        return Ok(());
    };
    let ValueKind::Table(table) = &value.kind else {
        return Ok(());
    };
    match table.get("cache_driver").map(|v| &v.kind) {
        None | Some(ValueKind::Nil) => Ok(()),
        Some(ValueKind::String(s)) if s == "localfs_key" => Ok(()),
        Some(other) => Err(ConfigError::BadValue {
            path: path.clone(),
            key: "keys.cache_driver".to_owned(),
            expected: "localfs_key (the only key driver supported)".to_owned(),
            found: shorten(other),
        }),
    }
}

/// A minion id usable as a road name and a pki file name: Salt's [`valid_id`] rules plus no
/// whitespace or control characters (the keep's names), at most 200 bytes.
///
/// [`valid_id`]: crate::pki::valid_id_name
fn usable_id(id: &str) -> bool {
    crate::pki::valid_id_name(id) && raet::keep::check_name("name", id).is_ok()
}

/// `id` when it is set ([`usable_id`]); `None`: Salt's default applies.
fn configured_id(raw: &Raw, expected: &str) -> Result<Option<String>, ConfigError> {
    raw.get("id")
        .map(|_| {
            raw.typed("id", expected, String::new(), |k| {
                scalar_string(k).filter(|s| usable_id(s))
            })
        })
        .transpose()
}

/// `minion_id_caching`, `minion_id_lowercase` and `minion_id_remove_domain` (Salt's keys).
fn id_rules(raw: &Raw) -> Result<IdRules, ConfigError> {
    let remove_domain = raw.typed(
        "minion_id_remove_domain",
        "True, False or a domain",
        RemoveDomain::Keep,
        |k| {
            let flag = match k {
                ValueKind::Boolean(b) => *b,
                ValueKind::String(s) => match yaml11_bool(s) {
                    Some(b) => b,
                    None if s.is_empty() => false,
                    None => return Some(RemoveDomain::Domain(s.clone())),
                },
                _ => return None,
            };
            Some(if flag {
                RemoveDomain::Any
            } else {
                RemoveDomain::Keep
            })
        },
    )?;
    Ok(IdRules {
        caching: raw.bool("minion_id_caching", true)?,
        lowercase: raw.bool("minion_id_lowercase", false)?,
        remove_domain,
    })
}

impl MinionConfig {
    /// Writes a generated id to Salt's cache file, as salt-minion does when it reads its
    /// configuration (with `minion_id_caching`); nothing for a configured or cached id.
    pub fn cache_id(&self) -> Result<(), minion_id::CacheError> {
        if self.id_origin != IdOrigin::Generated || !self.id_rules.caching {
            return Ok(());
        }
        minion_id::write_cache(&minion_id::cache_file(&self.common.root_dir), &self.id)
    }

    /// Reads `<dir>/minion` and `<dir>/minion.d/*.conf`.
    pub fn load(dir: &Path) -> Result<Self, ConfigError> {
        let raw = read_all(dir, Role::Minion)?;
        let common = read_common(dir, Role::Minion, &raw)?;
        let expected_id =
            "a minion id (no '/', '\\', whitespace or control characters, not '.' or '..')";
        let id_rules = id_rules(&raw)?;
        let (id, id_origin) = match configured_id(&raw, expected_id)? {
            Some(id) => (id, IdOrigin::Configured),
            None => default_id(dir, Role::Minion, &common.root_dir, &id_rules)?,
        };
        let master = raw.typed(
            "master",
            "a master name or address, or a list of them",
            vec!["salt".to_owned()],
            |k| match k {
                ValueKind::Array(items) if !items.is_empty() => items
                    .iter()
                    .map(|v| scalar_string(&v.kind).filter(|s| master_entry(s, 1).is_some()))
                    .collect(),
                other => scalar_string(other)
                    .filter(|s| master_entry(s, 1).is_some())
                    .map(|s| vec![s]),
            },
        )?;
        Ok(Self {
            id,
            id_origin,
            id_rules,
            master,
            raet_master_port: raw.port("raet_master_port", 4505)?,
            rejected_retry: raw.bool("rejected_retry", false)?,
            master_finger: raw.typed(
                "master_finger",
                "a sha256 fingerprint (32 hex pairs joined by ':', as salt-raet-master --finger prints)",
                None,
                |k| match scalar_string(k)? {
                    s if s.is_empty() => Some(None),
                    s => is_sha256_finger(&s).then(|| Some(s.to_ascii_lowercase())),
                },
            )?,
            common,
        })
    }

    /// The fingerprint the master's road key must have: `master_finger` in the RAET-native
    /// mode; `None` with `raet_salt_crypto`, where salt-minion itself checks it against
    /// Salt's RSA `master.pub`, as over ZeroMQ.
    pub fn road_master_finger(&self) -> Option<&str> {
        match self.common.raet_salt_crypto {
            true => None,
            false => self.master_finger.as_deref(),
        }
    }

    /// The masters to join, in configuration order, each as (host, road port): an entry's
    /// own port (`host:port`, `[v6]:port`) or `raet_master_port`; an entry repeated (same
    /// host and port) is kept once.
    pub fn masters(&self) -> Vec<(String, u16)> {
        let mut out: Vec<(String, u16)> = Vec::new();
        for entry in &self.master {
            if let Some(master) = master_entry(entry, self.raet_master_port) {
                if !out.contains(&master) {
                    out.push(master);
                }
            }
        }
        out
    }
}

/// A `master` entry as (host, port): `host`, `host:port`, `[v6]`, `[v6]:port` or a bare
/// IPv6 address (its colons are not a port); `None` for an empty host or a bad port.
pub fn master_entry(entry: &str, default_port: u16) -> Option<(String, u16)> {
    let port = |p: &str| p.parse::<u16>().ok().filter(|&p| p != 0);
    let (host, port) = if let Some(rest) = entry.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        match after {
            "" => (host, default_port),
            _ => (host, port(after.strip_prefix(':')?)?),
        }
    } else {
        match entry.split_once(':') {
            Some((host, p)) if !p.contains(':') => (host, port(p)?),
            _ => (entry, default_port),
        }
    };
    let host = host.trim();
    (!host.is_empty() && !host.contains(char::is_whitespace)).then(|| (host.to_owned(), port))
}

/// The id when the config has none, as Salt's `get_id`: the cached id
/// ([`minion_id::cache_file`] under `root_dir`, with `minion_id_caching`), else
/// [`minion_id::generate`] shaped by the rules.
fn default_id(
    dir: &Path,
    role: Role,
    root_dir: &Path,
    rules: &IdRules,
) -> Result<(String, IdOrigin), ConfigError> {
    let cache = minion_id::cache_file(root_dir);
    let cached = rules
        .caching
        .then(|| minion_id::read_cache(&cache))
        .flatten();
    let (id, origin, path) = match cached {
        Some(id) => (id, IdOrigin::Cached, cache),
        None => (
            rules.apply(&minion_id::generate()),
            IdOrigin::Generated,
            dir.join(role.name()),
        ),
    };
    if !usable_id(&id) {
        return Err(ConfigError::BadValue {
            path,
            key: "id".to_owned(),
            expected: "an id (set `id`: the cached or generated one cannot be used)".to_owned(),
            found: format!("{id:?}"),
        });
    }
    Ok((id, origin))
}

#[cfg(test)]
mod tests;

/// The RAET acceptance mode of Salt's settings: `raet_auto_accept` if set, else `always` for
/// `open_mode`, `once` for `auto_accept`, `never` otherwise.
pub fn auto_mode(
    open_mode: bool,
    auto_accept: bool,
    raet_auto_accept: Option<AutoMode>,
) -> AutoMode {
    match (raet_auto_accept, open_mode, auto_accept) {
        (Some(mode), _, _) => mode,
        (None, true, _) => AutoMode::Always,
        (None, false, true) => AutoMode::Once,
        (None, false, false) => AutoMode::Never,
    }
}

impl MasterConfig {
    /// [`auto_mode`] of this configuration. With `raet_salt_crypto` Salt's `auto_accept` is
    /// about Salt's RSA keys and salt-key cannot decide on RAET keys: a minion name is trusted
    /// on first use (`once`) unless `raet_auto_accept` or `open_mode` say otherwise.
    pub fn auto_mode(&self) -> AutoMode {
        let auto_accept = self.auto_accept || self.common.raet_salt_crypto;
        auto_mode(self.open_mode, auto_accept, self.raet_auto_accept)
    }
}
