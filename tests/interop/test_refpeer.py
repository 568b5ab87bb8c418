"""Self-test of the interop harness: reference peer <-> reference peer.

Run with the venv made by setup-ref.sh:  VENV/bin/python -m pytest tests/interop
Ports 47600-47619 (the Rust interop tests use 47620-47699).
"""
import json
import os
import queue
import subprocess
import sys
import threading
import time

import pytest

REFPEER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "refpeer.py")
WAIT = 30.0  # upper bound for any single wait; a healthy run needs a few seconds
# Fixed long-term keys (32-byte seeds) for the key-pinning tests.
KEY1 = ("11" * 32, "22" * 32)
KEY2 = ("33" * 32, "44" * 32)
GREETING = {"greeting": "h\u00e9llo \u2603", "n": 1, "nested": {"list": [1, 2.5, None, True]}}


class Peer(object):
    """A running refpeer.py; its stdout messages and stderr events are collected by threads."""

    def __init__(self, *args, stdin=False):
        self.args = [sys.executable, REFPEER] + [str(a) for a in args]
        self.proc = subprocess.Popen(self.args, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.messages, self.events, self.stderr = [], queue.Queue(), []
        self.seen = []
        self._threads = [threading.Thread(target=self._read_stdout, daemon=True),
                         threading.Thread(target=self._read_stderr, daemon=True)]
        for t in self._threads:
            t.start()

    def _read_stdout(self):
        for line in self.proc.stdout:
            self.messages.append(json.loads(line))

    def _read_stderr(self):
        for line in self.proc.stderr:
            self.stderr.append(line)
            if line.startswith("{"):
                self.events.put(json.loads(line))

    def wait_event(self, kind, timeout=WAIT, **fields):
        """Block until an event of `kind` whose fields include `fields` arrives."""
        deadline = time.monotonic() + timeout
        for seen in self.seen:
            if seen["event"] == kind and all(seen.get(k) == v for k, v in fields.items()):
                return seen
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no %s event %s from %s; stderr:\n%s"
                                     % (kind, fields, self.args[2:6], "".join(self.stderr)))
            try:
                ev = self.events.get(timeout=left)
            except queue.Empty:
                continue
            self.seen.append(ev)
            if ev["event"] == kind and all(ev.get(k) == v for k, v in fields.items()):
                return ev

    def send_control(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def finish(self, timeout=WAIT):
        """Wait for exit; returns the exit status (output fully read)."""
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("%s did not exit; stderr:\n%s" % (self.args[2:6], "".join(self.stderr)))
        for t in self._threads:
            t.join()
        return rc

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def peers():
    started = []

    def start(*args, **kw):
        p = Peer(*args, **kw)
        started.append(p)
        return p
    yield start
    for p in started:
        p.kill()


def road(name, port, *extra):
    return ("road", "--name", name, "--port", port, "--events", "--timeout", 25) + extra


def assert_exit(peer, expected=0):
    rc = peer.finish()
    assert rc == expected, "exit %s != %s; stderr:\n%s" % (rc, expected, "".join(peer.stderr))


def blob(n):
    return {"blob": "x" * n}


@pytest.mark.parametrize("main_hk,joiner_hk", [("raet", "raet"), ("json", "raet"), ("raet", "json")])
def test_road_join_and_messages_both_ways(peers, main_hk, joiner_hk):
    main = peers(*road("beta", 47600, "--main", "--auto", "always", "--hk", main_hk, "--expect", 3,
                       "--send", json.dumps(GREETING), "--size", 100, "--size", 200000))
    main.wait_event("listening")
    joiner = peers(*road("alpha", 47601, "--join", "127.0.0.1:47600", "--hk", joiner_hk,
                         "--expect", 3, "--send", '{"to":"beta"}', "--size", 100, "--size", 200000))
    assert_exit(joiner)
    assert_exit(main)
    assert joiner.messages == [{"from": "beta", "msg": m} for m in (GREETING, blob(100), blob(200000))]
    assert main.messages == [{"from": "alpha", "msg": m} for m in ({"to": "beta"}, blob(100), blob(200000))]
    joiner.wait_event("allowed", name="beta")
    main.wait_event("joined", name="alpha")


def test_lane_messages_both_ways_including_multi_page(peers, tmp_path):
    d = str(tmp_path)
    big = 200000  # > 65535 bytes: 4 pages
    one = peers("lane", "--name", "main", "--dir", d, "--lane", "cherry", "--to", "other", "--events",
                "--send", json.dumps(GREETING), "--size", big, "--expect", 1, "--timeout", 20)
    two = peers("lane", "--name", "other", "--dir", d, "--lane", "cherry", "--to", "main", "--events",
                "--send", '{"reply":2}', "--expect", 2, "--timeout", 20)
    assert_exit(two)
    assert_exit(one)
    assert two.messages == [{"from": "main", "msg": GREETING}, {"from": "main", "msg": blob(big)}]
    assert one.messages == [{"from": "other", "msg": {"reply": 2}}]


def test_lane_without_to_answers_first_sender(peers, tmp_path):
    d = str(tmp_path)
    server = peers("lane", "--name", "srv", "--dir", d, "--expect", 1, "--send", '{"pong":1}',
                   "--events", "--timeout", 20)
    server.wait_event("listening")
    client = peers("lane", "--name", "cli", "--dir", d, "--to", "srv", "--send", '{"ping":1}',
                   "--expect", 1, "--timeout", 20)
    assert_exit(client)
    assert_exit(server)
    assert client.messages == [{"from": "srv", "msg": {"pong": 1}}]


def test_auto_never_pends_until_operator_accepts(peers):
    main = peers(*road("beta", 47602, "--main", "--auto", "never", "--control", "--expect", 1), stdin=True)
    main.wait_event("listening")
    joiner = peers(*road("alpha", 47603, "--join", "127.0.0.1:47602", "--send", '{"after":"accept"}'))
    main.wait_event("pending", name="alpha", by="us")
    joiner.wait_event("pending", ha="127.0.0.1:47602", by="them")
    assert main.messages == [], "nothing may arrive before the operator accepts"
    main.send_control("accept alpha")
    main.wait_event("accepted", name="alpha")
    assert_exit(joiner)
    assert_exit(main)
    assert main.messages == [{"from": "alpha", "msg": {"after": "accept"}}]


def test_auto_never_operator_rejects(peers):
    main = peers(*road("beta", 47604, "--main", "--auto", "never", "--control", "--expect", 1), stdin=True)
    main.wait_event("listening")
    joiner = peers("road", "--name", "alpha", "--port", 47605, "--join", "127.0.0.1:47604",
                   "--send", '{"x":1}', "--events", "--timeout", 20)
    main.wait_event("pending", name="alpha", by="us")
    main.send_control("reject alpha")
    main.wait_event("rejected", name="alpha", by="operator")
    assert joiner.finish() == 1, "a rejected join is final: exit 1"
    main.kill()
    assert main.messages == []
    assert not any(e["event"] == "allowed" for e in joiner.seen + drain(joiner))


def drain(peer):
    out = []
    while not peer.events.empty():
        out.append(peer.events.get())
    return out


def test_auto_once_pins_first_key_of_a_role(peers):
    main = peers(*road("beta", 47606, "--main", "--auto", "once", "--expect", 2))
    main.wait_event("listening")
    first = peers(*road("alpha", 47607, "--join", "127.0.0.1:47606", "--role", "minion",
                        "--sighex", KEY1[0], "--prihex", KEY1[1], "--send", '{"n":1}'))
    assert_exit(first)
    # same role, other keys: auto once rejects it
    changed = peers("road", "--name", "gamma", "--port", 47608, "--join", "127.0.0.1:47606",
                    "--role", "minion", "--sighex", KEY2[0], "--prihex", KEY2[1],
                    "--send", '{"n":2}', "--events", "--timeout", 20)
    main.wait_event("rejected", name="gamma", by="us")
    changed.wait_event("rejected", ha="127.0.0.1:47606", by="them")
    assert changed.finish() == 1, "a rejected join is final: exit 1"
    # same role, the pinned keys: accepted
    same = peers(*road("delta", 47609, "--join", "127.0.0.1:47606", "--role", "minion",
                       "--sighex", KEY1[0], "--prihex", KEY1[1], "--send", '{"n":3}'))
    assert_exit(same)
    assert_exit(main)
    assert main.messages == [{"from": "alpha", "msg": {"n": 1}}, {"from": "delta", "msg": {"n": 3}}]


def test_auto_always_accepts_changed_key_of_a_role(peers):
    """Control for the test above: the rejection comes from `once`, not from the keys."""
    main = peers(*road("beta", 47610, "--main", "--auto", "always", "--expect", 2))
    main.wait_event("listening")
    for name, port, key in (("alpha", 47611, KEY1), ("gamma", 47612, KEY2)):
        p = peers(*road(name, port, "--join", "127.0.0.1:47610", "--role", "minion",
                        "--sighex", key[0], "--prihex", key[1], "--send", json.dumps({"from": name})))
        assert_exit(p)
    assert_exit(main)
    assert [m["from"] for m in main.messages] == ["alpha", "gamma"]


def test_keep_restores_identity(peers, tmp_path):
    keep = str(tmp_path / "keep")
    verhex = []
    for _ in range(2):
        p = peers(*road("alpha", 47613, "--keep", keep))
        verhex.append(p.wait_event("listening")["verhex"])
        assert_exit(p)
    assert verhex[0] == verhex[1]
    assert os.path.exists(os.path.join(keep, "alpha", "role", "local", "role.json"))


def test_timeout_exits_2(peers):
    p = peers("road", "--name", "alpha", "--port", 47614, "--join", "127.0.0.1:47615",
              "--send", '{"x":1}', "--timeout", 1.5)
    assert p.finish() == 2
    assert '"timeout"' in "".join(p.stderr)


@pytest.mark.parametrize("args", [
    ("road", "--name", "a"),                                          # no --port
    ("road", "--name", "a", "--port", "47616", "--send", "[1]"),       # not an object
    ("road", "--name", "a", "--port", "47616", "--send", "{"),         # not JSON
    ("road", "--name", "a", "--port", "47616", "--auto", "sometimes"),
    ("road", "--name", "a", "--port", "47616", "--join", "nohost"),
    ("road", "--name", "a", "--port", "47616", "--size", "-1"),
    ("lane", "--name", "a"),                                          # no --dir
    ("boat", "--name", "a"),
])
def test_bad_arguments_exit_3(args):
    res = subprocess.run([sys.executable, REFPEER] + list(args), capture_output=True, text=True,
                         timeout=WAIT, stdin=subprocess.DEVNULL)
    assert res.returncode == 3, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
