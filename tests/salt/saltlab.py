"""saltlab: stock Salt on ``transport: raet`` with the salt-raet daemons, on loopback.

One module holds the configuration and process logic shared by the one-command demo
(``scripts/salt-demo.sh`` runs ``python tests/salt/saltlab.py demo``) and the end-to-end
pytest suite (``tests/salt/conftest.py``). It only needs the standard library: Salt is
driven through its command-line tools from a venv (``SALT_RAET_VENV``, default
``target/salt-venv``), the daemons are the ``salt-raet-master`` / ``salt-raet-minion``
binaries of a cargo build directory.

Everything lives in one scratch directory: per node (``master`` and each minion id) the
Salt config dir ``<node>/etc/salt``, ``pki``, ``cache``, ``sock``, ``log`` and ``run``;
``srv/salt`` and ``srv/pillar`` hold a tiny state, a pillar and the files they use. Each
daemon runs in the foreground in its own session (its PID is its process-group id), and
is stopped by PID: SIGTERM, a wait, then SIGKILL of whatever is left in its group.

Environment:

- ``SALT_RAET_VENV``: venv with Salt and ``saltext_raet`` (default ``target/salt-venv``);
- ``SALT_RAET_BIN_DIR``: directory of the daemon binaries (default given by the caller);
- ``SALT_RAET_PORTS``: ``LO-HI`` range to take free loopback ports from (default: ports
  chosen by the kernel);
- ``SALT_RAET_TRANSPORT``: ``raet`` (default) or a stock transport such as ``zeromq``,
  which runs the same lab without the RAET daemons (a baseline that checks the checks).

With ``salt_api=True`` the master also runs ``salt-api`` with Salt's ``rest_cherrypy``
netapi (CherryPy from the venv) on a free loopback port, plain HTTP, the ``local`` and
``runner`` clients enabled, and eauth ``auto`` (Salt's always-approving test eauth: no PAM,
no root) granting the user ``API_USER`` every function and every runner.
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import json
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, TypeVar

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_VENV = REPO_ROOT / "target" / "salt-venv"
MASTER = "master"
PILLAR_GREETING = "hello from the raet pillar"
STATE_TEXT = "written by state.apply through salt://\n"
BIG_FILE_SIZE = 10 * 1024 * 1024
API_USER = "labapi"

T = TypeVar("T")


class LabError(RuntimeError):
    """A lab step failed: a daemon died, a tool failed, or a deadline passed."""


def venv_dir() -> Path:
    """The venv holding Salt: ``$SALT_RAET_VENV`` or ``target/salt-venv``."""
    return Path(os.environ.get("SALT_RAET_VENV") or DEFAULT_VENV).resolve()


def wait_for(what: str, probe: Callable[[], Optional[T]], deadline_s: float,
             interval_s: float = 0.25) -> T:
    """Polls ``probe`` until it returns a truthy value and returns that value.

    Raises LabError naming ``what`` (and the last value seen) once ``deadline_s`` seconds
    have passed. This is the only waiting primitive of the lab: every wait polls a real
    condition under a deadline.
    """
    end = time.monotonic() + deadline_s
    last: Optional[T] = None
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() >= end:
            raise LabError(f"timed out after {deadline_s:.0f} s waiting for {what}; last seen: {last!r}")
        time.sleep(interval_s)


def json_documents(text: str) -> list:
    """Every JSON object or array that starts a line of ``text`` (Salt mixes them with
    plain lines, e.g. in ``--batch`` runs)."""
    decoder = json.JSONDecoder()
    docs = []
    pos = 0
    while pos < len(text):
        line_end = text.find("\n", pos)
        if line_end < 0:
            line_end = len(text)
        if text[pos:pos + 1] in ("{", "["):
            try:
                doc, end = decoder.raw_decode(text, pos)
            except json.JSONDecodeError:
                pos = line_end + 1
                continue
            docs.append(doc)
            pos = end
            while pos < len(text) and text[pos] in " \r\n":
                pos += 1
            continue
        pos = line_end + 1
    return docs


def to_yaml(value, indent: int = 0) -> str:
    """Block YAML for nested dicts/lists of scalars (scalars as JSON, which YAML reads)."""
    pad = " " * indent
    lines = []
    items = value.items() if isinstance(value, dict) else ((None, v) for v in value)
    for key, item in items:
        head = f"{pad}{key}:" if key is not None else f"{pad}-"
        if isinstance(item, (dict, list)) and item:
            lines.append(head)
            lines.append(to_yaml(item, indent + 2).rstrip("\n"))
        else:
            lines.append(f"{head} {json.dumps(item)}")
    return "\n".join(lines) + "\n"


class PortPool:
    """Free loopback ports (TCP and UDP both unbound), from a range or from the kernel."""

    def __init__(self, spec: Optional[str] = None):
        spec = spec if spec is not None else os.environ.get("SALT_RAET_PORTS", "")
        self._range: Optional[tuple[int, int]] = None
        if spec:
            lo, _, hi = spec.partition("-")
            self._range = (int(lo), int(hi or lo))
        self._given: set[int] = set()

    @staticmethod
    def _free(port: int) -> bool:
        loopbacks = [(socket.AF_INET, "127.0.0.1")]
        if socket.has_ipv6:
            loopbacks.append((socket.AF_INET6, "::1"))
        for family, host in loopbacks:
            for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                try:
                    sock = socket.socket(family, kind)
                except OSError:  # no IPv6 on this host: the IPv4 check is enough
                    break
                with sock:
                    try:
                        sock.bind((host, port))
                    except OSError as exc:
                        if family == socket.AF_INET6 and exc.errno == errno.EADDRNOTAVAIL:
                            break
                        return False
        return True

    def take(self) -> int:
        """A port free on 127.0.0.1 (and ::1) for both TCP and UDP, never handed out twice."""
        if self._range is None:
            for _ in range(100):
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                    sock.bind(("127.0.0.1", 0))
                    port = sock.getsockname()[1]
                if port not in self._given and self._free(port):
                    self._given.add(port)
                    return port
        else:
            lo, hi = self._range
            start = random.randint(lo, hi)
            for offset in range(hi - lo + 1):
                port = lo + (start - lo + offset) % (hi - lo + 1)
                if port not in self._given and self._free(port):
                    self._given.add(port)
                    return port
        raise LabError(f"no free loopback port in {self._range or 'the ephemeral range'}")


class Daemon:
    """A foreground process in its own session, stopped by PID (never by name)."""

    def __init__(self, name: str, argv: list[str], log: Path):
        self.name = name
        self.argv = argv
        self.log = log
        self.proc: Optional[subprocess.Popen] = None
        # stopped on purpose (by stop()): not a daemon that died
        self.stopped = False

    @property
    def pid(self) -> Optional[int]:
        """The PID (== process-group id) of the running process, if started."""
        return self.proc.pid if self.proc else None

    def start(self) -> None:
        """Starts the process (setsid via ``start_new_session``), output to ``log``."""
        if self.proc is not None and self.proc.poll() is None:
            raise LabError(f"{self.name} is already running (pid {self.proc.pid})")
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.stopped = False
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)

    def running(self) -> bool:
        """Whether the process was started and has not exited."""
        return self.proc is not None and self.proc.poll() is None

    def check(self) -> None:
        """Raises LabError (with the tail of its log) if the process has exited, unless it
        was stopped by :meth:`stop`."""
        if self.proc is not None and not self.stopped and self.proc.poll() is not None:
            raise LabError(f"{self.name} (pid {self.proc.pid}) exited with {self.proc.returncode}:\n"
                           + tail(self.log))

    def _group_alive(self) -> bool:
        try:
            os.killpg(self.proc.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def stop(self, grace_s: float = 20.0) -> None:
        """SIGTERM to the PID, wait up to ``grace_s`` for it and its process group, then
        SIGKILL the group's leftovers. Idempotent."""
        self.terminate()
        self.reap(time.monotonic() + grace_s)

    def terminate(self) -> None:
        """SIGTERM to the PID (if it runs); marks the daemon stopped."""
        if self.proc is None:
            return
        self.stopped = True
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def reap(self, end: float) -> None:
        """Waits until ``end`` (monotonic) for the terminated PID and its process group,
        then SIGKILLs the group's leftovers."""
        if self.proc is None:
            return
        pid = self.proc.pid
        try:
            self.proc.wait(timeout=max(0.0, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        while self._group_alive() and time.monotonic() < end:
            time.sleep(0.1)
        if self._group_alive():
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.proc.poll() is None:
            self.proc.wait(timeout=10)


def tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a text file ('' if it does not exist)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class Node:
    """One Salt host of the lab: the master or a minion, with its own directories."""

    name: str
    role: str
    root: Path
    config: dict = field(default_factory=dict)
    daemons: list[Daemon] = field(default_factory=list)

    @property
    def conf_dir(self) -> Path:
        """Salt's config dir (``-c``) of this node."""
        return self.root / "etc" / "salt"

    @property
    def sock_dir(self) -> Path:
        """Salt's ``sock_dir`` (the RAET lane lives in ``<sock_dir>/raet``)."""
        return self.root / "sock"

    @property
    def pki_dir(self) -> Path:
        """Salt's ``pki_dir``."""
        return self.root / "pki"

    def daemon(self, name: str) -> Daemon:
        """The daemon called ``name`` on this node."""
        for daemon in self.daemons:
            if daemon.name == name:
                return daemon
        raise KeyError(f"{self.name} has no daemon {name}")


class Lab:
    """A salt-master + salt-raet-master and N salt-minion + salt-raet-minion pairs."""

    def __init__(self, root: Path, minion_ids: list[str], bin_dir: Path,
                 venv: Optional[Path] = None, ports: Optional[PortPool] = None,
                 transport: Optional[str] = None, minion_grains: Optional[dict] = None,
                 extra_config: Optional[dict] = None, salt_api: bool = False,
                 ipv6: bool = False, masters: int = 1, syndic: bool = False):
        self.root = Path(root).resolve()
        self.venv = Path(venv).resolve() if venv else venv_dir()
        self.bin_dir = Path(bin_dir).resolve()
        self.transport = transport or os.environ.get("SALT_RAET_TRANSPORT") or "raet"
        self.raet = self.transport == "raet"
        self.ports = ports or PortPool()
        self.user = pwd.getpwuid(os.getuid()).pw_name
        self.srv = self.root / "srv"
        self.out_dir = self.root / "out"
        self.master = Node(MASTER, "master", self.root / MASTER)
        # Salt's multi-master (``masters=2``): more masters, ``master2``... on 127.0.0.2...
        # (same ports, another loopback address), each with its own pillar greeting; the
        # minions list them all in ``master``.
        self.other_masters = [Node(f"{MASTER}{n}", "master", self.root / f"{MASTER}{n}")
                              for n in range(2, masters + 1)]
        self.minions = {mid: Node(mid, "minion", self.root / mid) for mid in minion_ids}
        # Salt's syndic (``syndic=True``, two masters): ``master2`` is a syndic of ``master``
        # (``order_masters: True``): it also runs salt-syndic, whose minion config (Salt's
        # syndic reads both files) is ``syndic_config``; the minions have master2 only.
        if syndic and len(self.other_masters) != 1:
            raise LabError("a syndic lab has two masters (masters=2)")
        self.syndic = self.other_masters[0] if syndic else None
        self.syndic_config: dict = {}
        self.minion_grains = minion_grains or {}
        # Keys added to (or replacing those of) every node's config, e.g. raet_salt_crypto.
        self.extra_config = extra_config or {}
        self.salt_api = salt_api
        # Master (``interface``) and minions (``master``) on ::1, ``ipv6: True`` everywhere.
        self.ipv6 = ipv6
        self.api_port: Optional[int] = None
        self._salt_version: Optional[tuple[int, ...]] = None
        self.started_at: Optional[float] = None

    # ----- configuration -----

    def masters(self) -> list[Node]:
        """The masters: ``master``, then ``master2``..."""
        return [self.master, *self.other_masters]

    def master_address(self, node: Node) -> str:
        """The loopback address of a master: :attr:`loopback` for the first (127.0.0.1, or
        ::1 in an IPv6 lab), 127.0.0.2 for the second..."""
        index = self.masters().index(node)
        return self.loopback if index == 0 else f"127.0.0.{index + 1}"

    def pillar_greeting(self, node: Node) -> str:
        """The pillar value ``lab:greeting`` served by master ``node``."""
        return PILLAR_GREETING if node is self.master else f"{PILLAR_GREETING} ({node.name})"

    def nodes(self) -> list[Node]:
        """The masters, then the minions in order."""
        return [*self.masters(), *self.minions.values()]

    def _common(self, node: Node) -> dict:
        return {
            "id": node.name if node.role == "minion" else f"lab_{node.name}",
            "user": self.user,
            "transport": self.transport,
            "root_dir": str(node.root),
            "conf_file": str(node.conf_dir / node.role),
            "pki_dir": str(node.pki_dir),
            "cachedir": str(node.root / "cache"),
            "sock_dir": str(node.sock_dir),
            "extension_modules": str(node.root / "cache" / "extmods"),
            "pidfile": str(node.root / "run" / f"salt-{node.role}.pid"),
            "log_file": str(node.root / "log" / node.role),
            "log_level_logfile": "info",
        }

    def configure(self) -> None:
        """Chooses ports and writes every config file, the file roots and the pillar."""
        master_ports = {"raet_port": self.ports.take(), "publish_port": self.ports.take(),
                        "ret_port": self.ports.take()}
        for node in self.masters():
            pillar = "pillar" if node is self.master else f"pillar-{node.name}"
            node.config = {
                **self._common(node),
                "interface": self.master_address(node),
                **master_ports,
                "key_logfile": str(node.root / "log" / "key"),
                "auto_accept": False,
                "gather_job_timeout": 10,
                "keep_jobs_seconds": 3600,
                "file_roots": {"base": [str(self.srv / "salt")]},
                "pillar_roots": {"base": [str(self.srv / pillar)]},
            }
        if self.salt_api:
            self.api_port = self.ports.take()
            self.master.config.update({
                "api_pidfile": str(self.master.root / "run" / "salt-api.pid"),
                "api_logfile": str(self.master.root / "log" / "api"),
                "rest_cherrypy": {"host": "127.0.0.1", "port": self.api_port,
                                  "disable_ssl": True},
                "netapi_enable_clients": ["local", "runner"],
                "external_auth": {"auto": {API_USER: [".*", "@runner"]}},
            })
        if self.syndic is not None:
            self._configure_syndic(master_ports)
        for mid, node in self.minions.items():
            if self.syndic is not None:
                masters = self.master_address(self.syndic)
            elif self.other_masters:
                masters = [self.master_address(m) for m in self.masters()]
            else:
                masters = self.loopback
            node.config = {
                **self._common(node),
                "master": masters,
                "master_port": master_ports["ret_port"],
                "publish_port": master_ports["publish_port"],
                "raet_master_port": master_ports["raet_port"],
                "raet_port": self.ports.take(),
                "master_alive_interval": 0,
                "acceptance_wait_time": 2,
            }
            if mid in self.minion_grains:
                node.config["grains"] = self.minion_grains[mid]
        for node in self.nodes():
            if self.ipv6:
                node.config["ipv6"] = True
            node.config.update(self.extra_config)
            for sub in ("etc/salt", "pki", "cache", "sock", "log", "run"):
                (node.root / sub).mkdir(parents=True, exist_ok=True)
        self._write_configs()
        self._write_srv()
        self._define_daemons()

    def _configure_syndic(self, master_ports: dict) -> None:
        """The master of masters (``order_masters``) and the syndic's keys: ``syndic_master``
        (its RAET road joins the top's ``raet_port``; ``syndic_master_port`` is Salt's
        ZeroMQ one) in its master config; its minion config (id = the master's id, its own
        ``sock_dir`` and ``pki_dir``, as on a host that also has a minion)."""
        node = self.syndic
        self.master.config["order_masters"] = True
        node.config.update({
            "syndic_master": self.master_address(self.master),
            "syndic_master_port": master_ports["ret_port"],
            "raet_syndic_master_port": master_ports["raet_port"],
            "syndic_log_file": str(node.root / "log" / "syndic"),
            "syndic_pidfile": str(node.root / "run" / "salt-syndic.pid"),
        })
        self.syndic_config = {
            **self._common(node),
            "conf_file": str(node.conf_dir / "minion"),
            "sock_dir": str(node.root / "sock-syndic"),
            "pki_dir": str(node.root / "pki-syndic"),
            "master": self.master_address(self.master),
            "master_port": master_ports["ret_port"],
            "publish_port": master_ports["publish_port"],
            "acceptance_wait_time": 2,
            "acceptance_wait_time_max": 5,
        }
        for sub in ("sock-syndic", "pki-syndic"):
            (node.root / sub).mkdir(parents=True, exist_ok=True)

    @property
    def loopback(self) -> str:
        """The master's address: ``::1`` for an IPv6 lab, else ``127.0.0.1``."""
        return "::1" if self.ipv6 else "127.0.0.1"

    def _write_configs(self) -> None:
        for node in self.nodes():
            (node.conf_dir / node.role).write_text(
                "# written by tests/salt/saltlab.py\n" + to_yaml(node.config))
        if self.syndic is not None:
            self.syndic_config["transport"] = self.transport
            (self.syndic.conf_dir / "minion").write_text(
                "# written by tests/salt/saltlab.py (salt-syndic)\n" + to_yaml(self.syndic_config))

    def switch_transport(self, transport: str, set_config: Optional[dict] = None,
                         unset: tuple[str, ...] = ()) -> None:
        """Rewrites every node's config for ``transport`` (the ports and everything else
        kept; keys of ``set_config`` set, those of ``unset`` removed) and defines the
        daemons of that transport; the lab must be stopped. What an operator does when
        moving a deployment between transports."""
        if any(d.running() for d in self.daemons()):
            raise LabError("stop the lab before switching its transport")
        self.transport = transport
        self.raet = transport == "raet"
        for node in self.nodes():
            node.config["transport"] = transport
            node.config.update(set_config or {})
            for key in unset:
                node.config.pop(key, None)
        self._write_configs()
        self._define_daemons()

    def _write_srv(self) -> None:
        salt_dir = self.srv / "salt"
        pillar_dir = self.srv / "pillar"
        for path in (salt_dir / "files", pillar_dir, self.out_dir):
            path.mkdir(parents=True, exist_ok=True)
        (salt_dir / "files" / "greeting.txt").write_text(STATE_TEXT)
        (salt_dir / "lab.sls").write_text(
            "lab greeting:\n"
            "  file.managed:\n"
            f"    - name: {self.out_dir}/{{{{ grains['id'] }}}}.txt\n"
            "    - source: salt://files/greeting.txt\n")
        (salt_dir / "big.bin").write_bytes(os.urandom(BIG_FILE_SIZE))
        for node in self.masters():
            pillar_dir = self.srv / ("pillar" if node is self.master else f"pillar-{node.name}")
            pillar_dir.mkdir(parents=True, exist_ok=True)
            (pillar_dir / "top.sls").write_text("base:\n  '*':\n    - lab\n")
            (pillar_dir / "lab.sls").write_text(
                to_yaml({"lab": {"greeting": self.pillar_greeting(node)}}))

    def big_file(self) -> Path:
        """The 10 MB random file served as ``salt://big.bin``."""
        return self.srv / "salt" / "big.bin"

    def _define_daemons(self) -> None:
        bin_ = self.venv / "bin"
        for master in self.masters():
            log = master.root / "log"
            master.daemons = [Daemon("salt-master", [str(bin_ / "salt-master"), "-c",
                                     str(master.conf_dir), "-l", "quiet"],
                                     log / "salt-master.console")]
            if self.raet:
                master.daemons.append(Daemon(
                    "salt-raet-master", [str(self.bin_dir / "salt-raet-master"), "-c",
                                         str(master.conf_dir)],
                    log / "salt-raet-master.console"))
        if self.syndic is not None:
            self.syndic.daemons.append(Daemon(
                "salt-syndic", [str(bin_ / "salt-syndic"), "-c", str(self.syndic.conf_dir), "-l",
                                "quiet"], self.syndic.root / "log" / "salt-syndic.console"))
        log = self.master.root / "log"
        if self.salt_api:
            self.master.daemons.append(Daemon(
                "salt-api", [str(bin_ / "salt-api"), "-c", str(self.master.conf_dir), "-l",
                             "quiet"], log / "salt-api.console"))
        for node in self.minions.values():
            log = node.root / "log"
            node.daemons = []
            if self.raet:
                node.daemons.append(Daemon(
                    "salt-raet-minion", [str(self.bin_dir / "salt-raet-minion"), "-c",
                                         str(node.conf_dir)],
                    log / "salt-raet-minion.console"))
            node.daemons.append(Daemon(
                "salt-minion", [str(bin_ / "salt-minion"), "-c", str(node.conf_dir),
                                "--disable-keepalive", "-l", "quiet"],
                log / "salt-minion.console"))

    # ----- processes -----

    def check_tools(self) -> None:
        """Raises LabError naming whatever executable is missing."""
        needed = [self.venv / "bin" / tool for tool in
                  ("salt-master", "salt-minion", "salt", "salt-key", "salt-run", "salt-call")]
        if self.raet:
            needed += [self.bin_dir / "salt-raet-master", self.bin_dir / "salt-raet-minion"]
        if self.salt_api:
            needed.append(self.venv / "bin" / "salt-api")
        if self.syndic is not None:
            needed.append(self.venv / "bin" / "salt-syndic")
        missing = [str(path) for path in needed if not os.access(path, os.X_OK)]
        if missing:
            raise LabError("missing executables: " + ", ".join(missing))
        modules = (["saltext_raet"] if self.raet else []) + (["cherrypy"] if self.salt_api else [])
        for module in modules:
            probe = subprocess.run([str(self.venv / "bin" / "python"), "-c", f"import {module}"],
                                   capture_output=True, text=True)
            if probe.returncode != 0:
                raise LabError(f"{module} is not importable in {self.venv} (run "
                               f"scripts/setup-salt-venv.sh): {probe.stderr.strip()[-500:]}")

    def salt_version(self) -> tuple[int, ...]:
        """The version of the venv's Salt as integers, e.g. ``(3007, 17)``."""
        if self._salt_version is None:
            proc = subprocess.run([str(self.venv / "bin" / "python"), "-c",
                                   "import salt.version; print(salt.version.__version__)"],
                                  capture_output=True, text=True, timeout=60)
            if proc.returncode != 0:
                raise LabError(f"no Salt in {self.venv}: {proc.stderr.strip()[-500:]}")
            self._salt_version = tuple(int(part) for part in proc.stdout.strip().split(".")
                                       if part.isdigit())
        return self._salt_version

    def daemons(self) -> list[Daemon]:
        """Every daemon, in start order."""
        return [d for node in self.nodes() for d in node.daemons]

    def start(self) -> None:
        """Starts the master's daemons, then each minion's (RAET daemon first)."""
        self.check_tools()
        if self.other_masters:
            self.share_master_key()
        self.started_at = time.monotonic()
        for daemon in self.daemons():
            daemon.start()
        self.record_pids()

    def share_master_key(self) -> None:
        """Gives every master the same Salt master key pair (``master.pem``/``.pub``, made
        here with the venv's ``cryptography`` before any master starts), as Salt's
        multi-master wants: a ZeroMQ minion refuses a second master with another key.
        RAET's own keys stay each master's."""
        if (self.master.pki_dir / "master.pem").exists():
            return
        code = (
            "import sys\n"
            "from cryptography.hazmat.primitives import serialization as s\n"
            "from cryptography.hazmat.primitives.asymmetric import rsa\n"
            "key = rsa.generate_private_key(public_exponent=65537, key_size=2048)\n"
            "sys.stdout.write(key.private_bytes(s.Encoding.PEM, "
            "s.PrivateFormat.TraditionalOpenSSL, s.NoEncryption()).decode())\n"
            "sys.stdout.write(key.public_key().public_bytes(s.Encoding.PEM, "
            "s.PublicFormat.SubjectPublicKeyInfo).decode())\n")
        proc = subprocess.run([str(self.venv / "bin" / "python"), "-c", code],
                              capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            raise LabError(f"no master key made: {proc.stderr[-2000:]}")
        cut = proc.stdout.index("-----BEGIN PUBLIC KEY-----")
        private, public = proc.stdout[:cut], proc.stdout[cut:]
        for node in self.masters():
            (node.pki_dir / "master.pub").write_text(public)
            pem = node.pki_dir / "master.pem"
            pem.write_text(private)
            pem.chmod(0o400)

    def record_pids(self) -> None:
        """Writes ``<root>/pids`` (one ``name node pid`` line per started daemon)."""
        lines = [f"{d.name} {node.name} {d.pid}" for node in self.nodes()
                 for d in node.daemons if d.pid is not None]
        (self.root / "pids").write_text("\n".join(lines) + "\n")

    def check_alive(self) -> None:
        """Raises LabError if any started daemon has exited."""
        for daemon in self.daemons():
            daemon.check()

    def stop(self, grace_s: float = 5.0) -> None:
        """Stops every daemon by its PID: SIGTERM to all (minions first), then one shared
        grace of ``grace_s`` before the leftovers are killed. The lab is going away: Salt
        3007's salt-minion, which does not exit on SIGTERM, is not waited for longer."""
        daemons = list(reversed(self.daemons()))
        for daemon in daemons:
            daemon.terminate()
        end = time.monotonic() + grace_s
        for daemon in daemons:
            daemon.reap(end)

    def restart(self, node: Node, name: str) -> Daemon:
        """Stops and starts one daemon of ``node``; returns it."""
        daemon = node.daemon(name)
        daemon.stop()
        daemon.start()
        self.record_pids()
        return daemon

    # ----- Salt's tools -----

    def run(self, tool: str, *args: str, node: Optional[Node] = None,
            timeout: float = 60.0) -> subprocess.CompletedProcess:
        """Runs a Salt tool of the venv with ``-c`` the node's config dir (the master's by
        default); never raises on a non-zero exit, only on a timeout."""
        node = node or self.master
        argv = [str(self.venv / "bin" / tool), "-c", str(node.conf_dir), *args]
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            raise LabError(f"{' '.join(argv)} did not finish in {timeout:.0f} s; output: "
                           f"{exc.stdout!r} {exc.stderr!r}") from exc

    def run_json(self, tool: str, *args: str, node: Optional[Node] = None,
                 timeout: float = 60.0):
        """Runs a tool with ``--out=json`` and returns its single JSON document (``--static``
        is added for ``salt``)."""
        extra = ["--out=json"] + (["--static"] if tool == "salt" else [])
        proc = self.run(tool, *args, *extra, node=node, timeout=timeout)
        docs = json_documents(proc.stdout)
        if len(docs) != 1:
            raise LabError(f"{tool} {' '.join(args)}: expected one JSON document, exit "
                           f"{proc.returncode}; stdout: {proc.stdout!r}; stderr: {proc.stderr[-2000:]!r}")
        return docs[0]

    def keys(self, node: Optional[Node] = None) -> dict:
        """``salt-key -L --out=json`` (on master ``node``, the first by default): lists by
        state (``minions_pre`` = unaccepted...)."""
        return self.run_json("salt-key", "-L", node=node, timeout=30)

    def wait_pending(self, ids: list[str], deadline_s: float = 60.0,
                     node: Optional[Node] = None) -> dict:
        """Waits until every id of ``ids`` is listed as unaccepted by ``salt-key -L``."""
        def probe():
            self.check_alive()
            keys = self.keys(node)
            return keys if set(ids) <= set(keys.get("minions_pre", [])) else None
        return wait_for(f"pending keys {ids}", probe, deadline_s, interval_s=0.5)

    def accept(self, mid: str, node: Optional[Node] = None) -> str:
        """``salt-key -a ID -y``; returns its output.

        Salt's key cache (``localfs_key.store``) removes the pending file before it writes the
        accepted one; a pending minion's auth request (every ``acceptance_wait_time``) that
        reads the key in that gap finds none and pends it again, so salt-key's acceptance is
        lost (seen once in CI, Salt-crypto mode). An operator runs salt-key again; so does
        this, at most twice more, and only when the key is back in pending."""
        for _ in range(3):
            proc = self.run("salt-key", "-a", mid, "-y", node=node, timeout=30)
            keys = self.keys(node)
            if proc.returncode == 0 and mid in keys.get("minions", []):
                return proc.stdout
            if proc.returncode != 0 or mid not in keys.get("minions_pre", []):
                break
        raise LabError(f"salt-key -a {mid} failed: {proc.stdout} {proc.stderr} {keys}")

    def lookup_jid(self, jid: str, node: Optional[Node] = None) -> dict:
        """``salt-run jobs.lookup_jid JID`` on master ``node``: the returns by minion id
        (``{}`` if none)."""
        proc = self.run("salt-run", "jobs.lookup_jid", jid, "--out=json", node=node)
        returns = {}
        for doc in json_documents(proc.stdout):
            if isinstance(doc, dict):
                returns.update(doc)
        return returns

    def raet_status(self, node: Optional[Node] = None) -> dict:
        """``salt-raet-master status --json`` (``salt-raet-minion`` for a minion node) of
        ``node`` (the master by default); ``{}`` while the daemon does not answer."""
        node = node or self.master
        proc = subprocess.run([str(self.bin_dir / f"salt-raet-{node.role}"), "-c",
                               str(node.conf_dir), "status", "--json"],
                              capture_output=True, text=True, timeout=30)
        return json.loads(proc.stdout) if proc.returncode == 0 else {}

    def raet_row(self, remote: str, node: Optional[Node] = None) -> dict:
        """The row of ``remote`` in ``node``'s :meth:`raet_status` (``{}`` if absent)."""
        rows = self.raet_status(node).get("remotes", [])
        return next((r for r in rows if r["id"] == remote), {})

    def salt(self, *args: str, timeout_s: int = 15, call_timeout: float = 120.0,
             node: Optional[Node] = None) -> dict:
        """``salt -t timeout_s ARGS --out=json --static`` (ARGS: target options, target,
        function, its arguments) on master ``node``: the returns by minion id (``{}`` if
        none answered)."""
        proc = self.run("salt", "-t", str(timeout_s), *args, "--out=json", "--static",
                        node=node, timeout=call_timeout)
        docs = json_documents(proc.stdout)
        if not docs:
            return {}
        if len(docs) != 1 or not isinstance(docs[0], dict):
            raise LabError(f"salt {' '.join(args)}: unexpected output {proc.stdout!r}")
        return docs[0]

    def wait_ping(self, ids: list[str], deadline_s: float = 90.0, target: str = "*",
                  node: Optional[Node] = None) -> dict:
        """Repeats ``salt TARGET test.ping`` (on master ``node``) until every id of ``ids``
        answered True; returns the last returns."""
        def probe():
            self.check_alive()
            returns = self.salt(target, "test.ping", timeout_s=5, call_timeout=60, node=node)
            return returns if all(returns.get(mid) is True for mid in ids) else None
        return wait_for(f"test.ping answered True by {ids}", probe, deadline_s, interval_s=0.5)

    # ----- salt-api (rest_cherrypy) -----

    def api_request(self, path: str, body: Optional[dict] = None,
                    token: Optional[str] = None, timeout: float = 120.0) -> tuple[int, object]:
        """One HTTP request to salt-api: a POST of ``body`` as JSON (a GET without a body),
        with ``X-Auth-Token`` when ``token`` is given. Returns the status and the decoded
        JSON answer (the raw text if it is not JSON); raises LabError if nothing answers."""
        if self.api_port is None:
            raise LabError("this lab runs no salt-api (salt_api=True)")
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if token is not None:
            headers["X-Auth-Token"] = token
        request = urllib.request.Request(f"http://127.0.0.1:{self.api_port}{path}", data=data,
                                         headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                status, text = answer.status, answer.read().decode(errors="replace")
        except urllib.error.HTTPError as exc:
            status, text = exc.code, exc.read().decode(errors="replace")
        except (urllib.error.URLError, OSError) as exc:
            raise LabError(f"salt-api on port {self.api_port} did not answer {path}: {exc}") \
                from exc
        try:
            return status, json.loads(text)
        except json.JSONDecodeError:
            return status, text

    def wait_api(self, deadline_s: float = 90.0) -> dict:
        """Polls ``GET /`` of salt-api until it answers 200 with JSON; returns that answer."""
        def probe():
            self.check_alive()
            try:
                status, answer = self.api_request("/", timeout=10)
            except LabError:
                return None
            return answer if status == 200 and isinstance(answer, dict) else None
        return wait_for(f"salt-api answering on port {self.api_port}", probe, deadline_s)

    def api_login(self, deadline_s: float = 90.0) -> str:
        """``POST /login`` as ``API_USER`` with eauth ``auto``; returns the session token.

        salt-api answers 503 ("Salt Master is not available") until the master's request
        server is up (it looks for ``<sock_dir>/workers.ipc``): that answer is polled under
        ``deadline_s``, any other failure raises LabError at once."""
        login = {"username": API_USER, "password": "any", "eauth": "auto"}

        def probe():
            self.check_alive()
            status, answer = self.api_request("/login", login, timeout=60)
            if status == 503:
                return None
            try:
                return answer["return"][0]["token"]
            except (TypeError, KeyError, IndexError) as exc:
                raise LabError(f"salt-api login failed: HTTP {status}: {answer!r}") from exc
        return wait_for("salt-api login (the master available)", probe, deadline_s)


# ----- the demo -----

def demo(argv: Optional[list[str]] = None) -> int:
    """The one-command demo: one master and the minion ``demo-minion``; 0 iff it answered."""
    parser = argparse.ArgumentParser(prog="salt-demo", description=demo.__doc__)
    parser.add_argument("--bin-dir", default=str(REPO_ROOT / "target" / "release"),
                        help="directory of salt-raet-master/-minion (default target/release)")
    parser.add_argument("--venv", default=None, help="Salt's venv (default $SALT_RAET_VENV "
                        "or target/salt-venv)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    parser.add_argument("--deadline", type=float, default=120.0,
                        help="seconds allowed for each wait (default 120)")
    opts = parser.parse_args(argv)

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)
    # SIGINT too: a shell starts background jobs with SIGINT ignored, and Ctrl-C must work
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, on_signal)

    root = Path(tempfile.mkdtemp(prefix="salt-demo-"))
    lab = Lab(root, ["demo-minion"], Path(opts.bin_dir), venv=opts.venv)
    status = 1
    try:
        lab.configure()
        print(f"salt-demo: scratch dir {root}, transport {lab.transport}, venv {lab.venv}")
        print(f"salt-demo: master raet_port {lab.master.config['raet_port']}, minion raet_port "
              f"{lab.minions['demo-minion'].config['raet_port']}")
        lab.start()
        for node in lab.nodes():
            for daemon in node.daemons:
                print(f"salt-demo: started {daemon.name} ({node.name}) pid {daemon.pid}")
        keys = lab.wait_pending(["demo-minion"], opts.deadline)
        print(f"salt-demo: salt-key -L: unaccepted {keys.get('minions_pre')}")
        print("salt-demo: " + lab.accept("demo-minion").strip().replace("\n", " "))
        returns = lab.wait_ping(["demo-minion"], opts.deadline)
        first_ping = time.monotonic() - lab.started_at
        print("salt-demo: salt '*' test.ping")
        print(json.dumps(returns, indent=4))
        print(f"salt-demo: time to first ping {first_ping:.1f} s (daemons started -> test.ping True)")
        status = 0
    except LabError as exc:
        print(f"salt-demo: FAILED: {exc}", file=sys.stderr)
        for daemon in lab.daemons():
            if daemon.log.exists():
                print(f"--- {daemon.log} (tail)\n{tail(daemon.log, 15)}", file=sys.stderr)
    except KeyboardInterrupt as exc:
        print(f"salt-demo: interrupted ({exc or 'SIGINT'})", file=sys.stderr)
        status = 130
    finally:
        lab.stop()
        print("salt-demo: stopped " + ", ".join(f"{d.name} {d.pid}" for d in lab.daemons()
                                                  if d.pid is not None))
        if opts.keep:
            print(f"salt-demo: kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return status


def sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as src:
        for chunk in iter(lambda: src.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


if __name__ == "__main__":
    if sys.argv[1:2] != ["demo"]:
        sys.exit("usage: saltlab.py demo [--keep] [--bin-dir DIR] [--venv DIR] [--deadline S]")
    sys.exit(demo(sys.argv[2:]))
