//! `salt-raet-master`'s keys ([`MasterConfig`]): reading them, the key driver check and
//! the RAET acceptance mode they decide.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use config::ValueKind;
use raet::keep::AutoMode;

use super::ids::{configured_id, default_id, id_rules};
use super::minion::master_entry;
use super::raw::{read_all, scalar_string, shorten, Raw};
use super::{
    prepend_root_dir, read_common, CommonConfig, ConfigError, Role, DEFAULT_LOOP_INTERVAL_SECS,
};

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
    /// `raet_max_handshakes` (ours, default the road's, 256): joins and allows minions
    /// started that the road carries at once; a join beyond them is refused at once and
    /// its minion asks again after its backoff (admission control in a join storm).
    pub raet_max_handshakes: usize,
    /// `raet_first_contact_interval` (ours, default 10 s): one new first contact per source
    /// address per interval.
    pub raet_first_contact_interval: Duration,
    /// `syndic_master` (Salt's, default none): on a syndic host, the master of masters
    /// (`host`, `host:port` or an IPv6 address as in a minion's `master`) the daemon also
    /// joins, under this master's `id`, for `salt-syndic`.
    pub syndic_master: Option<String>,
    /// `raet_syndic_master_port` (ours, default 4505): the road port of the master of
    /// masters when `syndic_master` names none (Salt's `syndic_master_port` is its ZeroMQ
    /// port and does not apply).
    pub raet_syndic_master_port: u16,
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
            raet_max_handshakes: raw.count(
                "raet_max_handshakes",
                raet::road::Limits::default().max_handshakes,
                1_000_000,
            )?,
            syndic_master: raw
                .get("syndic_master")
                .map(|_| {
                    raw.typed(
                        "syndic_master",
                        "the master of masters' name or address (one: a list is not supported)",
                        String::new(),
                        |k| scalar_string(k).filter(|s| master_entry(s, 1).is_some()),
                    )
                })
                .transpose()?,
            raet_syndic_master_port: raw.port("raet_syndic_master_port", 4505)?,
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
    /// The master of masters this syndic host joins (`syndic_master` as host and road
    /// port), if any.
    pub fn syndic_upstream(&self) -> Option<(String, u16)> {
        let entry = self.syndic_master.as_deref()?;
        master_entry(entry, self.raet_syndic_master_port)
    }

    /// [`auto_mode`] of this configuration. With `raet_salt_crypto` Salt's `auto_accept` is
    /// about Salt's RSA keys and salt-key cannot decide on RAET keys: a minion name is trusted
    /// on first use (`once`) unless `raet_auto_accept` or `open_mode` say otherwise.
    pub fn auto_mode(&self) -> AutoMode {
        let auto_accept = self.auto_accept || self.common.raet_salt_crypto;
        auto_mode(self.open_mode, auto_accept, self.raet_auto_accept)
    }
}
