//! Tests of the minion id rules against a fake host: the candidates' order and filters, the
//! rules `minion_id_lowercase` / `minion_id_remove_domain`, and the cache file.

use super::*;

use std::cell::RefCell;
use std::collections::HashMap;

/// A host whose names, files and addresses the test sets; it records the names whose
/// canonical names were asked.
#[derive(Default)]
struct Fake {
    hostname: String,
    fqdn: HashMap<String, String>,
    canonical: Vec<String>,
    files: HashMap<&'static str, &'static str>,
    addrs: Vec<Ipv4Addr>,
    asked_canonical: RefCell<Vec<String>>,
}

impl Host for Fake {
    fn hostname(&self) -> String {
        self.hostname.clone()
    }

    fn fqdn(&self, name: &str) -> String {
        self.fqdn
            .get(name)
            .cloned()
            .unwrap_or_else(|| name.to_owned())
    }

    fn canonical_names(&self, name: &str) -> Vec<String> {
        self.asked_canonical.borrow_mut().push(name.to_owned());
        self.canonical.clone()
    }

    fn read(&self, path: &str) -> Option<String> {
        self.files.get(path).map(|t| (*t).to_owned())
    }

    fn ipv4_addrs(&self) -> Vec<Ipv4Addr> {
        self.addrs.clone()
    }
}

fn host(hostname: &str) -> Fake {
    Fake {
        hostname: hostname.to_owned(),
        ..Fake::default()
    }
}

#[test]
fn localhost_like_names_are_salts_matchers_at_the_start() {
    for name in [
        "localhost",
        "localhost.localdomain",
        "localhost6",
        "ip6-localhost",
        "ip6-loopback",
        "127.0.0.1",
        "127.0.1.1",
        "0.0.0.0",
        "::1",
        "ipv6-localhost",
        "fe00::0",
        "fe02::1",
        "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa",
    ] {
        assert!(is_localhost_like(name), "{name}");
    }
    for name in [
        "web1",
        "mylocalhost",
        "web1.localhost",
        "10.0.0.1",
        "127.x",
        "0.0.0.1",
        "127",
        "",
    ] {
        assert!(!is_localhost_like(name), "{name}");
    }
}

#[test]
fn the_fqdn_comes_before_the_host_name() {
    let mut fake = host("web1");
    fake.fqdn.insert("web1".into(), "web1.example.com".into());
    fake.files.insert("/etc/hostname", "other\n");
    assert_eq!(generate_on(&fake), "web1.example.com");
    // No FQDN (getfqdn answers the name itself): the host name.
    assert_eq!(generate_on(&host("web1")), "web1");
    assert!(fake.asked_canonical.borrow().is_empty());
}

#[test]
fn a_localhost_like_fqdn_is_skipped_for_the_host_name() {
    let mut fake = host("box");
    fake.fqdn.insert("box".into(), "localhost".into());
    assert_eq!(generate_on(&fake), "box");
}

#[test]
fn without_names_the_canonical_name_then_the_files_are_tried() {
    let mut fake = host("localhost");
    fake.canonical = vec!["gateway.example.net".into()];
    assert_eq!(generate_on(&fake), "gateway.example.net");
    assert_eq!(*fake.asked_canonical.borrow(), ["localhost"]);

    let mut fake = host("localhost");
    fake.canonical = vec!["localhost".into()];
    fake.files.insert("/etc/hostname", "\n  # comment only\n");
    fake.files.insert(
        "/etc/hosts",
        "127.0.0.1\tlocalhost\n::1 localhost ip6-localhost\n\
         10.0.0.5 other.example other\n# 127.0.1.1 commented.example\n\
         127.0.1.1   box.example.org box # Debian's line\r\n",
    );
    assert_eq!(generate_on(&fake), "box.example.org");
}

#[test]
fn one_word_lines_of_the_files_count_in_file_order() {
    let mut fake = host("localhost");
    fake.files.insert("/etc/nodename", "node-a\n");
    fake.files.insert("/etc/hosts", "hosts-word\n");
    assert_eq!(generate_on(&fake), "node-a");
    fake.files.insert("/etc/hostname", "from-hostname\n");
    assert_eq!(generate_on(&fake), "from-hostname");
}

#[test]
fn addresses_are_the_last_resort_sorted_as_numbers_without_loopback() {
    let mut fake = host("localhost");
    fake.addrs = ["192.168.1.2", "127.0.0.1", "10.0.0.10", "10.0.0.9"]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
    assert_eq!(generate_on(&fake), "10.0.0.9");
    fake.addrs.clear();
    assert_eq!(generate_on(&fake), "localhost");
}

#[test]
fn lowercase_then_remove_the_domain_as_salt() {
    let rules = |lowercase, remove_domain| IdRules {
        caching: true,
        lowercase,
        remove_domain,
    };
    let keep = rules(false, RemoveDomain::Keep);
    assert_eq!(keep.apply("Web1.Example.COM"), "Web1.Example.COM");
    assert_eq!(
        rules(true, RemoveDomain::Keep).apply("Web1.Example.COM"),
        "web1.example.com"
    );
    let any = rules(false, RemoveDomain::Any);
    assert_eq!(any.apply("Web1.Example.COM"), "Web1");
    assert_eq!(any.apply("web1"), "web1");
    let domain = rules(false, RemoveDomain::Domain("example.com".into()));
    assert_eq!(domain.apply("Web1.Sub.EXAMPLE.com"), "Web1.Sub");
    assert_eq!(domain.apply("web1.example.org"), "web1.example.org");
    assert_eq!(domain.apply("example.com"), "example.com");
    assert_eq!(
        rules(true, RemoveDomain::Domain("Example.Com".into())).apply("WEB1.EXAMPLE.COM"),
        "web1"
    );
    assert_eq!(IdRules::default(), keep);
}

#[test]
fn the_cache_file_is_read_and_written_as_salt() {
    let root = tempfile::tempdir().unwrap();
    let path = cache_file(root.path());
    assert_eq!(path, root.path().join("etc/salt/minion_id"));
    assert_eq!(read_cache(&path), None);
    // Salt writes the id without a newline, creating the directory.
    write_cache(&path, "web1.example.com").unwrap();
    assert_eq!(fs::read_to_string(&path).unwrap(), "web1.example.com");
    assert_eq!(read_cache(&path).as_deref(), Some("web1.example.com"));
    for (text, cached) in [
        ("  web2 \nignored\n", Some("web2")),
        ("web3\r\nignored", Some("web3")),
        ("web4\rignored", Some("web4")),
        ("\nweb5\n", None),
        ("localhost\n", None),
        ("", None),
    ] {
        fs::write(&path, text).unwrap();
        assert_eq!(read_cache(&path).as_deref(), cached, "{text:?}");
    }
    let err = write_cache(&root.path().join("etc/salt/minion_id/x"), "id").unwrap_err();
    assert!(
        err.to_string().contains("cannot cache the minion id"),
        "{err}"
    );
}

#[test]
fn the_system_gives_a_usable_answer() {
    // Whatever the machine: a non-empty id that is not localhost-like unless it is
    // `localhost` itself, the last resort.
    let id = generate();
    assert!(!id.is_empty());
    assert!(id == "localhost" || !is_localhost_like(&id), "{id}");
}

/// Salt's `generate_minion_id()` fed `host` at its system boundary (`socket.gethostname`,
/// `platform.node`, `socket.getfqdn`, `socket.getaddrinfo`, `salt.utils.files.fopen`,
/// `salt.utils.network.interfaces`), run by the Python of Salt's venv.
const SALTS_GENERATE: &str = r#"
import io, json, socket, sys
from unittest import mock
import salt.utils.files, salt.utils.network as network

host = json.loads(sys.argv[1])

def getfqdn(name=""):
    name = name.decode() if isinstance(name, bytes) else name
    return host["fqdn"].get(name, name)

def getaddrinfo(name, *args):
    return [(socket.AF_INET, socket.SOCK_RAW, 0, c, ("0.0.0.0", 0)) for c in host["canonical"]]

def fopen(path, *args, **kwargs):
    if path in host["files"]:
        return io.StringIO(host["files"][path], newline=None)
    raise OSError(2, "No such file or directory", path)

interfaces = {"if0": {"up": True, "inet": [{"address": a} for a in host["addrs"]]}}
with mock.patch("socket.gethostname", return_value=host["hostname"]), \
        mock.patch("platform.node", return_value=host["hostname"]), \
        mock.patch("socket.getfqdn", getfqdn), mock.patch("socket.getaddrinfo", getaddrinfo), \
        mock.patch.object(salt.utils.files, "fopen", fopen), \
        mock.patch.object(network, "interfaces", return_value=interfaces):
    print(network.generate_minion_id())
"#;

/// The Python of Salt's venv (`SALT_RAET_VENV`, default `target/salt-venv` of the workspace,
/// as `scripts/`), `None` (after saying why) when it has no Salt, unless
/// `SALT_RAET_REQUIRE_SALT` is set: then that fails the test.
fn salts_python() -> Option<PathBuf> {
    let venv = std::env::var_os("SALT_RAET_VENV").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/salt-venv"),
        PathBuf::from,
    );
    let python = venv.join("bin/python");
    let has_salt = std::process::Command::new(&python)
        .args(["-c", "import salt.utils.network"])
        .output()
        .is_ok_and(|out| out.status.success());
    if has_salt {
        return Some(python);
    }
    let why = format!("no Salt in {} (SALT_RAET_VENV)", venv.display());
    assert!(
        std::env::var_os("SALT_RAET_REQUIRE_SALT").is_none(),
        "{why}"
    );
    eprintln!("skipped: {why}");
    None
}

/// What Salt's `generate_minion_id()` answers for `fake`.
fn salts_id(python: &Path, fake: &Fake) -> String {
    let host = serde_json::json!({
        "hostname": fake.hostname,
        "fqdn": fake.fqdn,
        "canonical": fake.canonical,
        "files": fake.files,
        "addrs": fake.addrs.iter().map(ToString::to_string).collect::<Vec<_>>(),
    });
    let host = host.to_string();
    crate::python::output(python, SALTS_GENERATE, &[host.as_ref()])
}

/// Our choice and Salt's own `generate_minion_id()` for the same hosts, fed to Salt at its
/// system boundary: the decision (candidates, their order, the filters, the files' parsing,
/// the address fallback) is compared, without root. What the system answers (the resolver's
/// FQDN, the interfaces) is not: `tests/salt/test_minion_id.py` compares that on real
/// namespaced hosts (root only).
#[test]
fn the_choice_is_salts_own_for_the_same_host() {
    let Some(python) = salts_python() else {
        return;
    };
    let with = |hostname: &str, edit: &dyn Fn(&mut Fake)| {
        let mut fake = host(hostname);
        edit(&mut fake);
        fake
    };
    let hosts_file = "127.0.0.1\tlocalhost\n::1 localhost ip6-localhost\n\
                      10.0.0.5 other.example other\n# 127.0.1.1 commented.example\n\
                      127.0.1.1   Box.Example.org box # Debian's line\r\n";
    let cases = [
        with("web1", &|f| {
            f.fqdn.insert("web1".into(), "web1.example.com".into());
            f.files.insert("/etc/hostname", "other\n");
        }),
        with("web1", &|_| {}),
        with("box", &|f| {
            f.fqdn.insert("box".into(), "localhost.localdomain".into());
        }),
        with("localhost", &|f| {
            f.canonical = vec!["gateway.example.net".into()];
        }),
        with("localhost", &|f| {
            f.canonical = vec!["localhost".into()];
            f.files.insert("/etc/hostname", "\n  # comment only\n");
            f.files.insert("/etc/hosts", hosts_file);
        }),
        with("ip6-localhost", &|f| {
            f.files
                .insert("/etc/hosts", "::1 ip6-box six.example\nfe00::0 ip6-net\n");
        }),
        with("localhost", &|f| {
            f.files.insert("/etc/nodename", "node-a\r");
            f.files.insert("/etc/hosts", "hosts-word\n");
        }),
        with("127.0.0.1", &|f| {
            f.addrs = ["192.168.1.2", "127.0.0.1", "10.0.0.10", "10.0.0.9"]
                .iter()
                .map(|a| a.parse().unwrap())
                .collect();
        }),
        with("localhost", &|_| {}),
    ];
    for fake in &cases {
        let ours = generate_on(fake);
        assert_eq!(ours, salts_id(&python, fake), "host {}", fake.hostname);
    }
}
