"""
The Salt-side view of the daemons: the helpers behind the runner and the execution module
``raet.status`` (their end-to-end use is in tests/salt/test_e2e.py), and how Salt's loader
finds them through the ``salt.loader`` entry point.
"""

import pytest
import salt.exceptions
import salt.loader

import saltext_raet  # noqa: F401  (registers the transport)
from saltext_raet import _native, status, transport
from test_native import LIMIT, run_master


def test_address_host_strips_the_port_and_ipv6_brackets():
    assert transport.address_host("10.0.0.5:4510") == "10.0.0.5"
    assert transport.address_host("[::1]:4510") == "::1"
    assert transport.address_host("[fe80::1%eth0]:4510") == "fe80::1%eth0"
    # a dual-stack road hears IPv4 peers at IPv4-mapped addresses
    assert transport.address_host("[::ffff:10.0.0.5]:4510") == "10.0.0.5"
    assert transport.address_host(None) is None
    assert transport.address_host("") is None


def test_the_modules_load_with_transport_raet_only():
    assert status.virtual({"transport": "raet"}, "raet") == "raet"
    loaded, why = status.virtual({"transport": "zeromq"}, "raet")
    assert loaded is False and "zeromq" in why


def test_salts_loader_finds_the_runner_and_the_module_dirs(tmp_path):
    # the package's entry point gives Salt its runners/ and modules/ directories
    opts = {
        "extension_modules": str(tmp_path),
        "module_dirs": [],
        "runner_dirs": [],
    }
    runners = salt.loader._module_dirs(opts, "runners", "runner")
    modules = salt.loader._module_dirs(opts, "modules", "module")
    package = saltext_raet.__path__[0]
    assert f"{package}/runners" in runners, runners
    assert f"{package}/modules" in modules, modules


def test_no_daemon_is_an_error_naming_the_lane(tmp_path):
    opts = {"sock_dir": str(tmp_path / "sock")}
    with pytest.raises(salt.exceptions.CommandExecutionError) as info:
        status.local_status(opts, timeout=1)
    assert "no salt-raet daemon answers on lane" in str(info.value)
    assert _native.lane_dir(opts["sock_dir"]) in str(info.value)


def test_the_daemons_status_and_a_version_mismatch(tmp_path, monkeypatch):
    with run_master(tmp_path / "master") as master:
        opts = {"sock_dir": master["sock_dir"]}
        got = status.local_status(opts, timeout=LIMIT)
        assert got["role"] == "master" and got["road"].endswith(f":{master['port']}")
        major, minor = map(int, _native.VERSION.split(".")[:2])
        monkeypatch.setattr(_native, "VERSION", f"{major + 1}.{minor}.0")
        with pytest.raises(salt.exceptions.CommandExecutionError, match="install the same"):
            status.local_status(opts, timeout=LIMIT)
