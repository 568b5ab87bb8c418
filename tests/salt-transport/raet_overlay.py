"""
pytest plugin: runs Salt's own transport and channel tests (from Salt's sdist) for
transport ``raet`` as well, next to the stock transports.

Loaded from the sdist root with ``-p saltext_raet -p raet_overlay`` (``run.sh`` puts this
directory on ``PYTHONPATH``). Salt's test files are used as they are; this plugin only

1. parametrises every test that uses a ``transport`` fixture with the stock values of that
   fixture plus ``raet`` (only ``raet`` with ``--raet-only``). Salt hard-codes the values in
   its fixtures (``("zeromq", "tcp", "ws")``...); the parametrisation is added as a
   ``parametrize`` mark, which takes precedence over the fixture of the same name. The stock
   values are a control and may run up to three times (``flaky``); ``raet`` runs once;
2. for a ``raet`` test, starts the two RAET daemons the transport routes through, before
   any fixture of the test builds a server or a client: a ``salt-raet-master`` whose lane is
   in the master options' ``sock_dir`` and a ``salt-raet-minion`` (id: the minion options'
   ``id``) in the minion options' ``sock_dir``, joined to it over UDP on 127.0.0.1 and
   accepted (``raet_auto_accept: always``), each with its own scratch ``pki_dir`` (so that
   it never touches the Salt keys the test writes). The fixture waits until both daemons
   report the other side joined and allowed;
3. sets ``raet_salt_crypto: True`` in both options (Salt's stock channels over the RAET
   transport: the mode these tests apply to);
4. when the test gives the minion the master's ``sock_dir`` (``channel/test_server.py``
   does: one host, one ZeroMQ/TCP socket directory), gives the minion its own ``sock_dir``:
   with RAET each host's Salt processes talk to their own daemon's lane, and a publication
   reaches a minion through its daemon.

Environment: ``SALT_RAET_BIN_DIR`` (directory of the daemon binaries, default
``<repo>/target/debug``), ``SALT_RAET_PORTS`` (``LO-HI`` UDP ports for the daemons'
roads, default ``32000-32999``).
"""

import json
import os
import random
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

RAET = "raet"
REPO_ROOT = Path(__file__).resolve().parents[2]
#: Fixtures holding the master's options, most specific first (a salt-factories
#: daemon factory carries them in ``.config``).
MASTER_OPTS = ("master_config", "salt_master", "master_opts")
#: The same for the minion.
MINION_OPTS = ("minion_config", "salt_minion", "minion_opts")
#: Where the report of a test's call phase is kept.
CALL_REPORT = pytest.StashKey()
#: Salt tests expected to fail for raet, with the reason (strict: a pass is reported).
NOT_FOR_RAET = {
    "test_transport_socket_perms_conform[raet]": (
        "raet's PublishServer has no local publish socket (pub_path): publications go "
        "through the RAET daemon's lane; only the pull_path marker exists"
    ),
}
#: How many times a test of a stock transport (a control) may run before it fails.
STOCK_RUNS = 3
#: How long the daemons may take to start, join and accept each other.
JOIN_DEADLINE = 30.0


def pytest_addoption(parser):
    parser.addoption(
        "--raet-only",
        action="store_true",
        help="parametrise the transport fixtures with raet only (no stock transports)",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_generate_tests(metafunc):
    """Adds ``raet`` to the values of a test's ``transport`` fixture (see the module doc)."""
    if "transport" not in metafunc.fixturenames:
        return
    if _parametrized(metafunc, "transport"):
        return
    defs = metafunc._arg2fixturedefs.get("transport")  # pylint: disable=protected-access
    if not defs or defs[-1].params is None:
        return
    stock = [] if metafunc.config.getoption("--raet-only") else defs[-1].params
    # the controls may run again: Salt's own timings (1 s for a ZeroMQ publication) are tight
    # on a loaded machine; a raet test runs once
    stock = [pytest.param(name, marks=pytest.mark.flaky(max_runs=STOCK_RUNS)) for name in stock]
    ids = defs[-1].ids if callable(defs[-1].ids) else None
    metafunc.definition.add_marker(pytest.mark.parametrize("transport", stock + [RAET], ids=ids))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Keeps the report of the test's call (the daemons' check needs to know if it passed)."""
    report = yield
    if call.when == "call":
        item.stash[CALL_REPORT] = report
    return report


@pytest.fixture(autouse=True)
def raet_in_transport_map(request, monkeypatch):
    """
    ``functional/transport/base.py`` lists the PublishServer of each transport in a
    hard-coded ``TRANSPORT_MAP`` (and checks that it names every transport): raet's is added.
    """
    module = request.node.module
    transport_map = getattr(module, "TRANSPORT_MAP", None)
    if isinstance(transport_map, dict) and RAET not in transport_map:
        from saltext_raet import transport  # pylint: disable=import-outside-toplevel

        monkeypatch.setitem(transport_map, RAET, transport.PublishServer)


def pytest_collection_modifyitems(items):
    """Marks the Salt tests that cannot apply to raet (see :data:`NOT_FOR_RAET`)."""
    for item in items:
        reason = NOT_FOR_RAET.get(item.name)
        if reason is not None:
            item.add_marker(pytest.mark.xfail(reason=reason, strict=True))


def _parametrized(metafunc, name):
    """Whether the test itself parametrises ``name`` (then it is left alone)."""
    for mark in metafunc.definition.iter_markers("parametrize"):
        names = mark.args[0] if mark.args else mark.kwargs.get("argnames", ())
        if isinstance(names, str):
            names = [n.strip() for n in names.split(",")]
        if name in names:
            return True
    return False


def _transport_of(request):
    callspec = getattr(request.node, "callspec", None)
    return callspec.params.get("transport") if callspec is not None else None


def _opts(request, names):
    for name in names:
        if name in request.fixturenames:
            value = request.getfixturevalue(name)
            return getattr(value, "config", value)
    raise pytest.UsageError(f"raet_overlay: the test has none of the fixtures {names}")


class PortRange:
    """Free UDP ports on 127.0.0.1 from ``SALT_RAET_PORTS`` (default 32000-32999)."""

    def __init__(self, spec=None):
        spec = spec or os.environ.get("SALT_RAET_PORTS") or "32000-32999"
        lo, _, hi = spec.partition("-")
        self.lo, self.hi = int(lo), int(hi or lo)
        self.given = set()

    def take(self):
        start = random.randint(self.lo, self.hi)
        span = self.hi - self.lo + 1
        for offset in range(span):
            port = self.lo + (start - self.lo + offset) % span
            if port in self.given:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    continue
            self.given.add(port)
            return port
        raise RuntimeError(f"no free UDP port in {self.lo}-{self.hi}")


_ports = PortRange()


def _yaml(config):
    # JSON scalars are YAML scalars: enough for flat maps of strings and numbers.
    return "".join(f"{key}: {json.dumps(value)}\n" for key, value in config.items())


class RaetDaemon:
    """One salt-raet-master or salt-raet-minion process with its config dir."""

    def __init__(self, program, root, config):
        self.program = program
        self.root = root
        self.config = config
        self.proc = None
        conf_dir = root / "etc"
        conf_dir.mkdir(parents=True)
        role = "master" if program.endswith("master") else "minion"
        (conf_dir / role).write_text(_yaml(config))
        self.argv = [str(bin_dir() / program), "-c", str(conf_dir)]

    @property
    def log(self):
        return self.root / "console.log"

    def start(self):
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(  # pylint: disable=consider-using-with
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def check(self):
        if self.proc.poll() is not None:
            raise RuntimeError(
                f"{self.program} exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}"
            )

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def bin_dir():
    """The directory of the daemon binaries."""
    return Path(os.environ.get("SALT_RAET_BIN_DIR") or REPO_ROOT / "target" / "debug")


def _status(opts):
    # imported here: saltext_raet must be registered by `-p saltext_raet` first
    from saltext_raet import transport  # pylint: disable=import-outside-toplevel

    try:
        return transport.daemon_status(opts, timeout=1.0)
    except (OSError, TimeoutError):
        return {}


def _allowed(status, peer=None):
    return any(
        r.get("allowed") and (peer is None or r.get("id") == peer)
        for r in status.get("remotes", [])
    )


def _wait_joined(master, minion, master_opts, minion_opts):
    """Polls both daemons' status until each one reports the other allowed."""
    deadline = time.monotonic() + JOIN_DEADLINE
    while True:
        master.check()
        minion.check()
        if _allowed(_status(minion_opts)) and _allowed(_status(master_opts), minion_opts["id"]):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"the RAET daemons did not join within {JOIN_DEADLINE} s; logs in "
                f"{master.root.parent}"
            )
        time.sleep(0.05)


def _salt_crypto_in_factories(monkeypatch):
    """
    Daemon configurations salt-factories builds during the test get
    ``raet_salt_crypto: True`` (they are immutable once built).
    """
    from saltfactories.manager import (  # pylint: disable=import-outside-toplevel
        FactoriesManager,
    )

    for name in ("salt_master_daemon", "salt_minion_daemon"):
        original = getattr(FactoriesManager, name)

        def build(self, *args, overrides=None, _original=original, **kwargs):
            overrides = {**(overrides or {}), "raet_salt_crypto": True}
            return _original(self, *args, overrides=overrides, **kwargs)

        monkeypatch.setattr(FactoriesManager, name, build)


def _routed(status, *counters):
    routing = status.get("routing", {})
    return sum(routing.get(counter, 0) for counter in counters)


def _check_routed(master_opts, minion_opts):
    """
    After a raet test passed: its traffic went through both daemons (a raet
    test that passed without them would prove nothing): the master routed to a local yard or
    over the road, the minion to a local yard or up to its master.
    """
    master = _routed(_status(master_opts), "routed_local", "routed_road")
    minion = _routed(_status(minion_opts), "routed_local", "routed_upstream")
    assert master > 0 and minion > 0, (
        f"the RAET daemons routed nothing (master {master}, minion {minion})"
    )


@pytest.fixture(autouse=True)
def raet_daemons(request, tmp_path_factory):
    """For a ``raet`` test: both RAET daemons, joined (see the module doc)."""
    if _transport_of(request) != RAET:
        yield None
        return
    _salt_crypto_in_factories(request.getfixturevalue("monkeypatch"))
    master_opts = _opts(request, MASTER_OPTS)
    minion_opts = _opts(request, MINION_OPTS)
    for opts in (master_opts, minion_opts):
        if not opts.get("raet_salt_crypto"):
            opts["raet_salt_crypto"] = True
    root = tmp_path_factory.mktemp("raet")
    if os.path.realpath(minion_opts["sock_dir"]) == os.path.realpath(master_opts["sock_dir"]):
        minion_opts["sock_dir"] = str(root / "minion-sock")
    master_port = _ports.take()
    common = {"log_level": "info", "raet_alive_period": 2}
    master = RaetDaemon(
        "salt-raet-master",
        root / "master",
        {
            **common,
            "interface": "127.0.0.1",
            "raet_port": master_port,
            "raet_auto_accept": "always",
            "sock_dir": str(master_opts["sock_dir"]),
            "pki_dir": str(root / "master" / "pki"),
            "cachedir": str(root / "master" / "cache"),
            "log_file": str(root / "master" / "daemon.log"),
        },
    )
    minion = RaetDaemon(
        "salt-raet-minion",
        root / "minion",
        {
            **common,
            "id": minion_opts["id"],
            "master": "127.0.0.1",
            "raet_master_port": master_port,
            "raet_port": _ports.take(),
            "sock_dir": str(minion_opts["sock_dir"]),
            "pki_dir": str(root / "minion" / "pki"),
            "cachedir": str(root / "minion" / "cache"),
            "log_file": str(root / "minion" / "daemon.log"),
        },
    )
    try:
        master.start()
        minion.start()
        _wait_joined(master, minion, master_opts, minion_opts)
        yield master, minion
        call = request.node.stash.get(CALL_REPORT, None)
        if call is not None and call.passed:
            _check_routed(master_opts, minion_opts)
    finally:
        minion.stop()
        master.stop()
