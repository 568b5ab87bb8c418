"""A program on raet_rs and one on the reference raet 0.6.8 exchange messages both ways.

The reference runs in its own venv (tests/interop/setup-ref.sh) as a subprocess:
tests/interop/refpeer.py, the repository's reference peer. ``RAET_REF_PYTHON`` names its
interpreter (default: target/ref-venv/bin/python); without it these tests are skipped, unless
``RAET_REQUIRE_INTEROP=1`` (CI), when they fail.
"""

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import free_port, serviceStacks, serviceUntil
from raet_rs.lane import stacking as lanestacking
from raet_rs.road import estating, stacking

ROOT = Path(__file__).resolve().parents[3]
REFPEER = ROOT / "tests" / "interop" / "refpeer.py"
REF_PYTHON = os.environ.get("RAET_REF_PYTHON", str(ROOT / "target" / "ref-venv" / "bin" / "python"))

if not os.path.exists(REF_PYTHON):
    if os.environ.get("RAET_REQUIRE_INTEROP") == "1":
        raise RuntimeError(f"RAET_REQUIRE_INTEROP=1 but no reference interpreter at {REF_PYTHON}")
    pytest.skip(f"no reference raet venv at {REF_PYTHON}", allow_module_level=True)


def refpeer(*args):
    """Starts the reference peer."""
    return subprocess.Popen(
        [REF_PYTHON, str(REFPEER), *args, "--timeout", "30"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(peer, stacks):
    """Services ``stacks`` until the reference peer exits; its received messages."""
    assert serviceUntil(stacks, lambda: peer.poll() is not None, duration=35)
    out, err = peer.communicate()
    assert peer.returncode == 0, err
    return [json.loads(line) for line in out.splitlines()]


def wait_bound(port):
    """Waits until someone (the reference peer) is bound to UDP ``port``."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return
        time.sleep(0.05)
    raise AssertionError(f"nobody bound port {port}")


def test_reference_joins_raet_rs(closing):
    beta = stacking.RoadStack(name="beta", ha=("127.0.0.1", 0), main=True, auto=2)
    closing(beta)
    peer = refpeer("road", "--name", "ref", "--port", str(free_port()),
                   "--join", f"127.0.0.1:{beta.ha[1]}", "--send", '{"from": "ref", "n": [1, 2]}',
                   "--size", "5000", "--expect", "2")
    assert serviceUntil([beta], lambda: len(beta.rxMsgs) == 2, duration=30)
    assert list(beta.rxMsgs) == [({"from": "ref", "n": [1, 2]}, "ref"), ({"blob": "x" * 5000}, "ref")]
    uid = beta.nameRemotes["ref"].uid
    beta.transmit({"from": "raet_rs"}, uid)
    beta.transmit({"blob": "y" * 5000}, uid)
    got = finish(peer, [beta])
    assert got == [{"from": "beta", "msg": {"from": "raet_rs"}}, {"from": "beta", "msg": {"blob": "y" * 5000}}]


def test_raet_rs_joins_the_reference(closing):
    port = free_port()
    peer = refpeer("road", "--name", "ref", "--port", str(port), "--main",
                   "--send", '{"from": "ref"}', "--expect", "1")
    wait_bound(port)
    alpha = stacking.RoadStack(name="alpha", ha=("127.0.0.1", 0), auto=2)
    closing(alpha)
    remote = estating.RemoteEstate(stack=alpha, ha=("127.0.0.1", port))
    alpha.addRemote(remote)
    alpha.join(uid=remote.uid, cascade=True)
    assert serviceStacks([alpha], duration=15)
    assert (remote.name, remote.joined, remote.allowed) == ("ref", True, True)
    alpha.transmit({"from": "raet_rs"}, remote.uid)
    got = finish(peer, [alpha])
    assert got == [{"from": "alpha", "msg": {"from": "raet_rs"}}]
    assert list(alpha.rxMsgs) == [({"from": "ref"}, "ref")]


def test_lane_with_the_reference(closing, tmp_path):
    ours = lanestacking.LaneStack(name="ours", lanename="lane", sockdirpath=str(tmp_path))
    closing(ours)
    peer = refpeer("lane", "--name", "ref", "--dir", str(tmp_path), "--lane", "lane",
                   "--to", "ours", "--send", '{"from": "ref"}', "--size", "20000", "--expect", "1")
    assert serviceUntil([ours], lambda: len(ours.rxMsgs) == 2, duration=30)
    assert list(ours.rxMsgs) == [({"from": "ref"}, "ref"), ({"blob": "x" * 20000}, "ref")]
    ours.transmit({"from": "raet_rs"}, ours.nameRemotes["ref"].uid)
    got = finish(peer, [ours])
    assert got == [{"from": "ours", "msg": {"from": "raet_rs"}}]
