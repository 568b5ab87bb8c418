//! `salt-raet-minion`'s keys ([`MinionConfig`]): reading them, the id cache, the masters
//! to join and the master fingerprint.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use config::ValueKind;

use super::ids::{configured_id, default_id, id_rules};
use super::raw::{read_all, scalar_string};
use super::{read_common, CommonConfig, ConfigError, Role};
use crate::minion_id::{self, IdOrigin, IdRules};

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
    /// `acceptance_wait_time_max` (Salt's; default 0: unset): when set, the cap of the
    /// doubling delay between failed joins (the minion's own cap, 5 s, otherwise). A large
    /// fleet sets it to spread the retries of minions a busy master turned away.
    pub acceptance_wait_time_max: Option<Duration>,
    /// `random_reauth_delay` (Salt's; 0 here unless set, Salt's default is 10): a minion
    /// that lost its master's session waits a random time up to this before joining again,
    /// so that a restarted master is not joined by every minion at once.
    pub random_reauth_delay: Option<Duration>,
    /// `master_finger` (Salt's; default empty: none): the sha256 fingerprint (32 hex pairs
    /// joined by `:`, stored in lowercase) the master's key must have; see
    /// [`MinionConfig::road_master_finger`].
    pub master_finger: Option<String>,
    /// `ipv6` (Salt's; default unset): `true` makes the road an IPv6 one (see
    /// [`MinionConfig::road_ha`]) and masters resolve to IPv6 addresses.
    pub ipv6: Option<bool>,
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
            acceptance_wait_time_max: raw.optional_delay("acceptance_wait_time_max")?,
            random_reauth_delay: raw.optional_delay("random_reauth_delay")?,
            master_finger: raw.typed(
                "master_finger",
                "a sha256 fingerprint (32 hex pairs joined by ':', as salt-raet-master --finger prints)",
                None,
                |k| match scalar_string(k)? {
                    s if s.is_empty() => Some(None),
                    s => is_sha256_finger(&s).then(|| Some(s.to_ascii_lowercase())),
                },
            )?,
            ipv6: raw.typed("ipv6", "true or false", None, |k| match k {
                ValueKind::Nil => Some(None),
                ValueKind::Boolean(b) => Some(Some(*b)),
                _ => None,
            })?,
            common,
        })
    }

    /// Whether the road is an IPv6 one: `ipv6: true`, or a master given as an IPv6
    /// address (`::1`, `[::1]:4505`) while `ipv6` is not `false`.
    pub fn road_ipv6(&self) -> bool {
        self.ipv6.unwrap_or_else(|| {
            self.masters()
                .iter()
                .any(|(host, _)| host.parse::<Ipv6Addr>().is_ok())
        })
    }

    /// The road's local address: every address of the road's family ([`Self::road_ipv6`]:
    /// `[::]`, else `0.0.0.0`), port `raet_port`.
    pub fn road_ha(&self) -> SocketAddr {
        let any = match self.road_ipv6() {
            true => IpAddr::from(Ipv6Addr::UNSPECIFIED),
            false => IpAddr::from([0, 0, 0, 0]),
        };
        SocketAddr::new(any, self.common.raet_port)
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

/// Whether `s` has the form of a sha256 fingerprint as Salt prints them: 32 hex pairs
/// joined by `:`.
fn is_sha256_finger(s: &str) -> bool {
    let pairs: Vec<&str> = s.split(':').collect();
    pairs.len() == 32
        && pairs
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
}
