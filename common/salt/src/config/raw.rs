//! Reading the files: the YAML maps of `<role>` and `<role>.d/*.conf` merged key by key
//! ([`Raw`]), and the typed getters that turn a key's value into what we use or a
//! [`ConfigError::BadValue`] naming the file, the key and the expected form.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use config::{FileFormat, Source, Value, ValueKind};

use super::{ConfigError, Role, MIN_PERIOD};
use crate::logfmt;

/// The merged top-level keys of the files read, each with the file it comes from.
#[derive(Debug, Default)]
pub(super) struct Raw {
    values: BTreeMap<String, (Value, PathBuf)>,
    pub(super) files: Vec<PathBuf>,
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
pub(super) fn read_all(dir: &Path, role: Role) -> Result<Raw, ConfigError> {
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
pub(super) fn yaml11_bool(s: &str) -> Option<bool> {
    match s {
        "yes" | "Yes" | "YES" | "on" | "On" | "ON" | "true" | "True" | "TRUE" => Some(true),
        "no" | "No" | "NO" | "off" | "Off" | "OFF" | "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

impl Raw {
    /// The value of `key` and its file, `None` when absent or null (Salt's "not set").
    pub(super) fn get(&self, key: &str) -> Option<&(Value, PathBuf)> {
        self.values
            .get(key)
            .filter(|(v, _)| !matches!(v.kind, ValueKind::Nil))
    }

    /// Parses `key` with `parse` (which returns `None` for a bad value), or `default`.
    pub(super) fn typed<T>(
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

    pub(super) fn string(&self, key: &str, default: &str) -> Result<String, ConfigError> {
        self.typed(key, "a string", default.to_owned(), scalar_string)
    }

    pub(super) fn path(&self, key: &str, default: &str) -> Result<String, ConfigError> {
        self.typed(key, "a path", default.to_owned(), |k| match k {
            ValueKind::String(s) if !s.is_empty() && !s.contains('\0') => Some(s.clone()),
            _ => None,
        })
    }

    /// The account named by `key` (through NSS, see [`crate::account::lookup_account`]),
    /// `None` when `key` is not set.
    pub(super) fn account(
        &self,
        key: &str,
    ) -> Result<Option<crate::account::Account>, ConfigError> {
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

    pub(super) fn bool(&self, key: &str, default: bool) -> Result<bool, ConfigError> {
        self.typed(key, "True or False", default, |k| match k {
            ValueKind::Boolean(b) => Some(*b),
            ValueKind::String(s) => yaml11_bool(s),
            _ => None,
        })
    }

    pub(super) fn port(&self, key: &str, default: u16) -> Result<u16, ConfigError> {
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
    pub(super) fn count(
        &self,
        key: &str,
        default: usize,
        max: usize,
    ) -> Result<usize, ConfigError> {
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
    pub(super) fn port_or_any(&self, key: &str, default: u16) -> Result<u16, ConfigError> {
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
    pub(super) fn seconds(&self, key: &str, default_secs: u64) -> Result<Duration, ConfigError> {
        self.typed(
            key,
            "a number of seconds from 0.001 to 86400",
            Duration::from_secs(default_secs),
            |k| {
                let secs = number(k)?;
                let min = MIN_PERIOD.as_secs_f64();
                (min..=86_400.0)
                    .contains(&secs)
                    .then(|| Duration::from_secs_f64(secs))
            },
        )
    }

    /// A delay in seconds from 0 to a day (fractions allowed); `None` when absent or 0
    /// (Salt's "none" for its delay keys).
    pub(super) fn optional_delay(&self, key: &str) -> Result<Option<Duration>, ConfigError> {
        self.typed(key, "a number of seconds from 0 to 86400", None, |k| {
            let secs = number(k)?;
            (0.0..=86_400.0)
                .contains(&secs)
                .then(|| (secs > 0.0).then(|| Duration::from_secs_f64(secs)))
        })
    }

    /// A log line format ([`logfmt::LogFormat`] syntax).
    pub(super) fn log_format(&self, key: &str, default: &str) -> Result<String, ConfigError> {
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

    pub(super) fn parsed<T: FromStr>(
        &self,
        key: &str,
        expected: &str,
        default: T,
    ) -> Result<T, ConfigError> {
        self.typed(key, expected, default, |k| {
            scalar_string(k).and_then(|s| s.parse().ok())
        })
    }
}

/// A string, or a number written without quotes (Salt turns a numeric `id` into a string).
pub(super) fn scalar_string(kind: &ValueKind) -> Option<String> {
    match kind {
        ValueKind::String(s) => Some(s.clone()),
        ValueKind::I64(n) => Some(n.to_string()),
        ValueKind::U64(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The value as shown in an error: at most 60 characters, on one line.
pub(super) fn shorten(kind: &ValueKind) -> String {
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

/// A number (an integer, a float or a string of one).
fn number(k: &ValueKind) -> Option<f64> {
    match k {
        ValueKind::I64(n) => Some(*n as f64),
        ValueKind::Float(f) => Some(*f),
        ValueKind::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}
