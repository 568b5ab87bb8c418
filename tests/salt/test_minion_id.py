"""The minion id without ``id``: salt-raet-minion against Salt's own ``salt.config.get_id``.

Each case runs in new UTS and mount namespaces (``unshare --uts --mount``, root only): a host
name of its own and bind-mounted ``/etc/hosts`` and ``/etc/hostname``, so that the host name
and the FQDN differ (or the names are all localhost-like and the files or the addresses
decide). In the same namespace Salt's ``get_id(opts, cache_minion_id=True)`` writes its
``<root_dir>/etc/salt/minion_id`` and ``salt-raet-minion --finger`` (no ``id`` configured)
writes ours: the two files must be the same, with ``minion_id_lowercase`` and
``minion_id_remove_domain`` as set; and salt-raet-minion must take the id Salt cached.
Skipped (with the reason) when not root or when namespaces cannot be made.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# Runs inside the namespace: Salt's answers, then salt-raet-minion's, as JSON.
INSIDE = r"""
import json, subprocess, sys
from pathlib import Path
import salt.config, salt.utils.network

work, binary, rules = Path(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
salt_root, our_root = work / "salt-root", work / "our-root"
opts = {"root_dir": str(salt_root), "minion_id_caching": True, **rules}
salt_id, _ = salt.config.get_id(opts, cache_minion_id=True)

def ours(root, pki):
    conf = work / ("conf-" + pki)
    conf.mkdir()
    lines = ["root_dir: " + str(root), "pki_dir: " + str(root / pki)]
    lines += ["%s: %s" % (k, json.dumps(v)) for k, v in rules.items()]
    (conf / "minion").write_text("\n".join(lines) + "\n")
    out = subprocess.run([binary, "-c", str(conf), "--finger"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    role = json.loads((root / pki / "raet/role/local/role.json").read_text())
    return role["role"]

our_id = ours(our_root, "pki-generated")
print(json.dumps({
    "hostname": subprocess.run(["hostname"], capture_output=True, text=True).stdout.strip(),
    "generated": salt.utils.network.generate_minion_id(),
    "salt_id": salt_id,
    "salt_cache": (salt_root / "etc/salt/minion_id").read_text(),
    "our_id": our_id,
    "our_cache": (our_root / "etc/salt/minion_id").read_text(),
    "our_id_from_salts_cache": ours(salt_root, "pki-cached"),
}))
"""

LOCALHOST_ONLY = "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n"


def namespaces_usable() -> str | None:
    """Why the namespaces cannot be made here, or None."""
    if os.geteuid() != 0:
        return "not root: unshare --uts --mount needs root"
    if shutil.which("unshare") is None:
        return "no unshare(1)"
    probe = subprocess.run(["unshare", "--uts", "--mount", "true"], capture_output=True,
                           text=True)
    if probe.returncode != 0:
        return f"unshare --uts --mount fails: {probe.stderr.strip()}"
    return None


@pytest.fixture(scope="module")
def in_namespace(bin_dir, tmp_path_factory):
    """Runs a case: (hostname, /etc/hosts text, /etc/hostname text, rules) -> the answers."""
    reason = namespaces_usable()
    if reason:
        pytest.skip(reason)
    binary = str(bin_dir / "salt-raet-minion")

    def run(hostname: str, hosts: str, hostname_file: str, rules: dict) -> dict:
        work = tmp_path_factory.mktemp("minion-id")
        (work / "hosts").write_text(hosts)
        (work / "hostname").write_text(hostname_file)
        script = (
            'hostname "$1" && mount --bind "$2/hosts" /etc/hosts '
            '&& mount --bind "$2/hostname" /etc/hostname && shift 2 && exec "$@"'
        )
        out = subprocess.run(
            ["unshare", "--uts", "--mount", "sh", "-c", script, "sh", hostname, str(work),
             sys.executable, "-c", INSIDE, str(work), binary, json.dumps(rules)],
            capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout.strip().splitlines()[-1])

    return run


def check_same(answers: dict, expected: str):
    """Salt and salt-raet-minion agree on the id and write the same cache file; ours takes
    the id Salt cached."""
    assert answers["salt_id"] == expected, answers
    assert answers["our_id"] == answers["salt_id"], answers
    assert answers["our_cache"] == answers["salt_cache"] == expected, answers
    assert answers["our_id_from_salts_cache"] == answers["salt_id"], answers


def test_the_fqdn_is_preferred_to_the_host_name(in_namespace):
    hosts = LOCALHOST_ONLY + "10.77.0.1 nsbox.example.test nsbox\n"
    answers = in_namespace("nsbox", hosts, "nsbox\n", {})
    assert answers["hostname"] == "nsbox"
    assert answers["generated"] == "nsbox.example.test"
    check_same(answers, "nsbox.example.test")


@pytest.mark.parametrize("rules, expected", [
    ({"minion_id_lowercase": True}, "nsbox.example.test"),
    ({"minion_id_remove_domain": True}, "NsBox"),
    ({"minion_id_remove_domain": "EXAMPLE.test"}, "NsBox"),
    ({"minion_id_remove_domain": "other.test"}, "NsBox.Example.Test"),
    ({"minion_id_lowercase": True, "minion_id_remove_domain": "example.test"}, "nsbox"),
])
def test_lowercase_and_remove_domain(in_namespace, rules, expected):
    hosts = LOCALHOST_ONLY + "10.77.0.1 NsBox.Example.Test NsBox\n"
    check_same(in_namespace("NsBox", hosts, "NsBox\n", rules), expected)


def test_localhost_names_give_way_to_the_hosts_file(in_namespace):
    hosts = LOCALHOST_ONLY + "127.0.1.1 box.example.test box\n"
    answers = in_namespace("localhost", hosts, "localhost\n", {})
    check_same(answers, "box.example.test")


def test_without_names_an_address_is_the_id(in_namespace):
    answers = in_namespace("localhost", LOCALHOST_ONLY, "localhost\n", {})
    # Salt's last resort: the smallest non-loopback IPv4 address (or localhost).
    assert answers["salt_id"] != "localhost" or answers["our_id"] == "localhost", answers
    check_same(answers, answers["salt_id"])
