//! The minion id when the configuration has no `id`, chosen as Salt 3008.5's
//! `salt.config.get_id`, so that salt-minion and salt-raet-minion pick the same one:
//!
//! 1. with `minion_id_caching` (default true), the first line of the cache file
//!    `<root_dir>/etc/salt/minion_id` (Salt's `salt.syspaths.CONFIG_DIR` under `root_dir`,
//!    whatever `-c` says), stripped, unless it is empty or `localhost` ([`read_cache`]);
//! 2. else `salt.utils.network.generate_minion_id()` ([`generate`]): the first candidate of
//!    the FQDN of the host name (`socket.getfqdn`), the host name, (only when both were
//!    dropped) the canonical name of `localhost`, the names of `/etc/hostname`,
//!    `/etc/nodename` and the loopback or one-word lines of `/etc/hosts`, then the host's
//!    IPv4 addresses (sorted, loopback excluded); a candidate is dropped when empty,
//!    already listed or `localhost`-like ([`is_localhost_like`]); none at all:
//!    `localhost`;
//! 3. `minion_id_lowercase` lowercases it, then `minion_id_remove_domain` removes any domain
//!    (`True`) or the one given ([`IdRules::apply`]);
//! 4. salt-minion writes the generated id to the cache file (with `minion_id_caching`;
//!    [`write_cache`]).
//!
//! Differences from Salt: `id_function` is not supported; the FQDN is Python's `getfqdn`
//! through `getaddrinfo` (the host name's first address) and `getnameinfo` (that address's
//! name), which yields the primary name only: when it has no dot but one of its aliases has,
//! Python's `getfqdn` (`gethostbyaddr`) returns that alias and we the primary name; the
//! Windows `hosts` path Salt also tries is not; a file that is not UTF-8 is skipped (Salt
//! fails on it).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::{fs, io};

/// `minion_id_remove_domain`: what to cut from a generated id.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum RemoveDomain {
    /// `False` (Salt's default, as is an empty string): nothing.
    #[default]
    Keep,
    /// `True`: everything from the first dot.
    Any,
    /// A domain: `.<domain>` at the end, compared without regard to case.
    Domain(String),
}

/// Where a daemon's id comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdOrigin {
    /// The `id` key.
    Configured,
    /// The cache file ([`read_cache`]).
    Cached,
    /// [`generate`], then [`IdRules::apply`]: salt-minion caches it ([`write_cache`]).
    Generated,
}

/// Salt's keys that shape a generated minion id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdRules {
    /// `minion_id_caching` (default true): read the cache file and write a generated id to it.
    pub caching: bool,
    /// `minion_id_lowercase` (default false): lowercase a generated id.
    pub lowercase: bool,
    /// `minion_id_remove_domain` (default `False`).
    pub remove_domain: RemoveDomain,
}

impl Default for IdRules {
    fn default() -> Self {
        Self {
            caching: true,
            lowercase: false,
            remove_domain: RemoveDomain::Keep,
        }
    }
}

impl IdRules {
    /// A generated id after `minion_id_lowercase` and `minion_id_remove_domain`, in Salt's
    /// order (`remove_domain_from_fqdn`).
    pub fn apply(&self, id: &str) -> String {
        let id = if self.lowercase {
            id.to_lowercase()
        } else {
            id.to_owned()
        };
        match &self.remove_domain {
            RemoveDomain::Keep => id,
            RemoveDomain::Any => match id.split_once('.') {
                Some((host, _)) => host.to_owned(),
                None => id,
            },
            RemoveDomain::Domain(domain) => {
                let suffix = format!(".{domain}");
                if id.to_uppercase().ends_with(&suffix.to_uppercase()) {
                    // Python's `newid[: -len("." + domain)]`: a count of characters.
                    let keep = id.chars().count().saturating_sub(suffix.chars().count());
                    id.chars().take(keep).collect()
                } else {
                    id
                }
            }
        }
    }
}

/// Salt's cache file of a generated minion id: `<root_dir>/etc/salt/minion_id`.
pub fn cache_file(root_dir: &Path) -> PathBuf {
    root_dir.join("etc/salt/minion_id")
}

/// The cached id in `path` as Salt reads it: the first line, stripped; `None` when the file
/// cannot be read or the line is empty or `localhost`.
pub fn read_cache(path: &Path) -> Option<String> {
    let text = fs::read_to_string(path).ok()?;
    // Python's text mode: `\n`, `\r\n` and `\r` end a line.
    let first = text.split(['\n', '\r']).next().unwrap_or_default().trim();
    (!first.is_empty() && first != "localhost").then(|| first.to_owned())
}

/// The cache file could not be written (Salt logs "Could not cache minion ID" and goes on).
#[derive(Debug, thiserror::Error)]
#[error("{path}: cannot cache the minion id: {source}")]
pub struct CacheError {
    /// The cache file.
    pub path: PathBuf,
    /// What failed: creating its directory or writing it.
    #[source]
    pub source: io::Error,
}

/// Writes a generated id to the cache file `path` as Salt's `_cache_id`: its directory
/// created if missing, the id without a newline.
pub fn write_cache(path: &Path, id: &str) -> Result<(), CacheError> {
    let dir = path.parent().unwrap_or(Path::new(""));
    fs::create_dir_all(dir)
        .and_then(|()| fs::write(path, id))
        .map_err(|source| CacheError {
            path: path.to_owned(),
            source,
        })
}

/// Salt's `localhost_matchers`, each matched at the start of a candidate (Python's
/// `re.match`).
const LOCALHOST_MATCHERS: [&str; 9] = [
    r"localhost.*",
    r"ip6-.*",
    r"127[.]\d",
    r"0\.0\.0\.0",
    r"::1.*",
    r"ipv6-.*",
    r"fe00::.*",
    r"fe02::.*",
    r"1.0.0.*.ip6.arpa",
];

/// Whether Salt drops `name` as a minion id candidate: it starts like a loopback name or
/// address (`localhost…`, `ip6-…`, `127.<digit>…`, `::1…`, ...).
pub fn is_localhost_like(name: &str) -> bool {
    static MATCHERS: LazyLock<regex::Regex> = LazyLock::new(|| {
        let any = LOCALHOST_MATCHERS.join("|");
        regex::Regex::new(&format!("^(?:{any})")).expect("Salt's matchers are valid")
    });
    MATCHERS.is_match(name)
}

/// Salt's `generate_minion_id()` on this host (see the module documentation).
pub fn generate() -> String {
    generate_on(&System)
}

/// What [`generate_on`] asks of the host: the system itself, or a fake in the tests.
trait Host {
    /// Python's `socket.gethostname()` (and `platform.node()`, the same on Linux).
    fn hostname(&self) -> String;
    /// Python's `socket.getfqdn(name)`.
    fn fqdn(&self, name: &str) -> String;
    /// The canonical names `getaddrinfo(name, AF_INET, SOCK_RAW, AI_CANONNAME)` reports.
    fn canonical_names(&self, name: &str) -> Vec<String>;
    /// The text of a file, `None` when it cannot be read.
    fn read(&self, path: &str) -> Option<String>;
    /// The IPv4 addresses of the host's interfaces, in any order.
    fn ipv4_addrs(&self) -> Vec<Ipv4Addr>;
}

/// Salt's `DistinctList`: candidates in order, each once, none empty or [`is_localhost_like`].
#[derive(Debug, Default)]
struct Candidates(Vec<String>);

impl Candidates {
    fn push(&mut self, name: &str) {
        if !name.is_empty() && !self.0.iter().any(|n| n == name) && !is_localhost_like(name) {
            self.0.push(name.to_owned());
        }
    }
}

/// Salt's `generate_minion_id()` on `host`: the first of `_generate_minion_id()`'s
/// candidates, else `localhost`.
fn generate_on(host: &impl Host) -> String {
    let mut hosts = Candidates::default();
    let hostname = host.hostname();
    hosts.push(&host.fqdn(&hostname));
    hosts.push(&hostname);
    if hosts.0.is_empty() {
        for name in host.canonical_names("localhost") {
            hosts.push(&name);
        }
    }
    for path in ["/etc/hostname", "/etc/nodename", "/etc/hosts"] {
        for line in host.read(path).iter().flat_map(|t| t.split(['\n', '\r'])) {
            let words: Vec<&str> = line
                .split('#')
                .next()
                .unwrap_or_default()
                .split_whitespace()
                .collect();
            let Some(first) = words.first() else {
                continue;
            };
            let head: String = first.chars().take(4).collect();
            if head == "127." || head == "::1" || words.len() == 1 {
                for word in &words {
                    hosts.push(word);
                }
            }
        }
    }
    let mut addrs = host.ipv4_addrs();
    addrs.retain(|a| !a.is_loopback());
    addrs.sort();
    for addr in addrs {
        hosts.push(&addr.to_string());
    }
    hosts
        .0
        .into_iter()
        .next()
        .unwrap_or_else(|| "localhost".to_owned())
}

/// The running system, through libc's resolver (`getaddrinfo`, `getnameinfo`) and
/// `getifaddrs`.
struct System;

impl Host for System {
    fn hostname(&self) -> String {
        dns_lookup::get_hostname().unwrap_or_default()
    }

    fn fqdn(&self, name: &str) -> String {
        let name = match name.trim() {
            "" | "0.0.0.0" | "::" => self.hostname(),
            name => name.to_owned(),
        };
        // `gethostbyaddr(name)`: the first address of `name`, then that address's name.
        let first = dns_lookup::lookup_host(&name)
            .ok()
            .and_then(|mut a| a.next());
        first
            .and_then(|addr| dns_lookup::lookup_addr(&addr).ok())
            .unwrap_or(name)
    }

    fn canonical_names(&self, name: &str) -> Vec<String> {
        let hints = dns_lookup::AddrInfoHints {
            flags: libc::AI_CANONNAME,
            address: libc::AF_INET,
            socktype: libc::SOCK_RAW,
            protocol: libc::IPPROTO_IP,
        };
        match dns_lookup::getaddrinfo(Some(name), None, Some(hints)) {
            Ok(infos) => infos.filter_map(|info| info.ok()?.canonname).collect(),
            Err(_) => Vec::new(),
        }
    }

    fn read(&self, path: &str) -> Option<String> {
        fs::read_to_string(path).ok()
    }

    fn ipv4_addrs(&self) -> Vec<Ipv4Addr> {
        let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
            return Vec::new();
        };
        addrs
            .filter_map(|a| Some(a.address?.as_sockaddr_in()?.ip()))
            .collect()
    }
}

#[cfg(test)]
mod tests;
