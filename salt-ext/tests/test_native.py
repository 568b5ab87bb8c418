"""
The native module ``saltext_raet._native`` over real Unix datagram sockets: Yards talking to
each other and to the real ``salt-raet-master`` daemon's manor.

Waiting is on readiness (``selectors`` on the yard's descriptor or the daemon's log pipe) with
time limits, never by sleeping.
"""

import contextlib
import json
import os
import selectors
import socket
import stat
import subprocess
import threading
import time
from pathlib import Path

import msgpack
import pytest

from saltext_raet import _native

LIMIT = 20.0
ROOT = Path(__file__).resolve().parents[2]


def recv_until(yard, count=1, limit=LIMIT):
    """Messages of ``yard`` until there are ``count`` (selectors, time limit)."""
    got = []
    deadline = time.monotonic() + limit
    with selectors.DefaultSelector() as sel:
        sel.register(yard.fileno(), selectors.EVENT_READ)
        while len(got) < count:
            left = deadline - time.monotonic()
            assert left > 0, f"timed out: {len(got)} of {count} messages for {yard.name}"
            if sel.select(left):
                got.extend(yard.recv())
    return got


def page(sn, dn, body, bi=1, pk=0):
    """One lane page as the reference writes it (unpaginated, json; pk 1: a packed book)."""
    head = f"ri RAET\nvn 0\npk {pk}\nsn {sn}\ndn {dn}\nsi 0123456789abcdef01\nbi {bi:x}\npn 0000\npc 0001\n\n"
    return head.encode() + body


@pytest.fixture
def lane(tmp_path):
    return str(tmp_path / "raet")


def test_constants_and_lane_dir():
    assert _native.LANE == "salt"
    assert _native.MANOR == "manor"
    assert _native.lane_dir("/var/run/salt/master") == "/var/run/salt/master/raet"
    assert issubclass(_native.LaneError, OSError)


def test_two_yards_exchange_single_page_messages(lane):
    with _native.Yard(lane, "alpha") as a, _native.Yard(lane, "beta") as b:
        assert a.name == "alpha"
        assert a.path == os.path.join(lane, "salt.alpha.uxd")
        assert stat.S_IMODE(os.stat(lane).st_mode) == 0o700
        a.send((None, "beta", "req"), json.dumps({"rid": "ab" * 16, "n": 1}), b"\x00\xffpayload", "beta")
        (msg,) = recv_until(b)
        assert msg.yard == "alpha"
        assert msg.src == (None, "alpha", None)
        assert msg.dst == (None, "beta", "req")
        assert msg.rid == "ab" * 16
        assert msg.salt == b"\x00\xffpayload"
        assert msg.error is None and msg.kind is None
        load = json.loads(msg.load)
        assert load["n"] == 1 and load["rid"] == "ab" * 16
        assert "salt" not in load  # the payload travels as msgpack bin, beside the load

        # the estate forms of the destination, and a load without salt
        for estate in ("minion1", ["m1", "m2"], "*"):
            b.send((estate, None, "pub"), None, None, "alpha")
            (got,) = recv_until(a)
            assert got.dst == (estate, None, "pub")
            assert got.salt is None and got.rid is None
            assert json.loads(got.load) == {}
        # an error envelope as the daemon sends it
        b.send((None, "alpha", None), json.dumps({"error": "no yard", "kind": "unknown_share", "rid": "r1"}), to_yard="alpha")
        (err,) = recv_until(a)
        assert (err.error, err.kind, err.rid) == ("no yard", "unknown_share", "r1")
        assert a.stats()["sent"] == 1 and a.stats()["received"] == 4
        assert b.stats()["received"] == 1


def test_multi_page_message_of_3_mb_is_byte_identical(lane):
    payload = os.urandom(3 * 1024 * 1024)
    with _native.Yard(lane, "big") as a, _native.Yard(lane, "sink") as b:
        # 3 MB is ~70 pages, more than the receiver's queue holds: the send (GIL released)
        # waits for this thread to read.
        errors = []

        def send():
            try:
                a.send((None, "sink", "req"), json.dumps({"rid": "f" * 32}), payload, "sink")
            except Exception as exc:  # reported below
                errors.append(exc)

        sender = threading.Thread(target=send)
        sender.start()
        got = recv_until(b)
        sender.join(LIMIT)
        assert not sender.is_alive() and errors == []
        assert len(got) == 1
        assert got[0].salt == payload
        assert got[0].rid == "f" * 32
        assert b.stats()["books_completed"] == 1


def test_send_to_a_missing_yard_is_a_lane_error_naming_the_path(lane):
    with _native.Yard(lane, "lonely") as a:
        with pytest.raises(_native.LaneError) as info:
            a.send((None, None, "req"), "{}", b"x")
        missing = os.path.join(lane, "salt.manor.uxd")
        assert missing in str(info.value)
        assert info.value.filename == missing
        assert a.stats()["stale_transmit_yard"] == 1
        with pytest.raises(ValueError):
            a.send((None, None, "req"), "[1, 2]")  # the load must be a JSON object
        with pytest.raises(TypeError):
            a.send((3, None, "req"))


def test_bind_errors(lane):
    with _native.Yard(lane, "taken"):
        with pytest.raises(_native.LaneError):
            _native.Yard(lane, "taken")
    with pytest.raises(ValueError):
        _native.Yard(lane, "bad/name")
    # a stale socket file (nobody listening) is replaced
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    stale.bind(os.path.join(lane, "salt.stale.uxd"))
    stale.close()
    with _native.Yard(lane, "stale") as y:
        assert os.path.exists(y.path)


def test_garbage_and_bad_envelopes_are_counted_and_skipped(lane):
    with _native.Yard(lane, "target") as y:
        raw = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            for junk in (b"garbage", b"ri RAET\nzz\n\n{}", b"\xff" * 100):
                raw.sendto(junk, y.path)
            raw.sendto(page("x", "elsewhere", b"{}"), y.path)  # not for this yard
            raw.sendto(page("x", "target", b'{"no": "route"}', bi=1), y.path)
            bad_salt = {"route": {"src": [None, "x", None], "dst": [None, "target", None]}, "load": {"salt": "%%%"}}
            raw.sendto(page("x", "target", json.dumps(bad_salt).encode(), bi=2), y.path)
            good = {"route": {"src": [None, "x", None], "dst": [None, "target", None]}, "load": {"ok": 1}}
            raw.sendto(page("x", "target", json.dumps(good).encode(), bi=3), y.path)
            (msg,) = recv_until(y)
            assert json.loads(msg.load) == {"ok": 1}
            # packed envelopes: not msgpack, not a map, a load with bytes, truncated; then a
            # good one (after the first batch was read: the socket queues 10 datagrams)
            route = {"route": {"src": [None, "x", None], "dst": [None, "target", None]}}
            for bi, junk in enumerate((b"\xc1", msgpack.packb([1, 2]),
                                       msgpack.packb({**route, "load": {"k": b"z"}}),
                                       msgpack.packb({**route, "salt": b"abc"})[:-1]), start=4):
                raw.sendto(page("x", "target", junk, bi=bi, pk=1), y.path)
            packed = msgpack.packb({**route, "load": {"rid": "r"}, "salt": b"\x00\xff"})
            raw.sendto(page("x", "target", packed, bi=9, pk=1), y.path)
        finally:
            raw.close()
        (packed_msg,) = recv_until(y)
        assert (packed_msg.rid, packed_msg.salt) == ("r", b"\x00\xff")
        assert y.recv() == []
        stats = y.stats()
        assert stats["invalid_page_header"] == 3, stats
        assert stats["invalid_destination"] == 1, stats
        assert stats["bad_envelope"] == 5, stats
        assert stats["bad_salt"] == 1, stats
        assert stats["received"] == 8, stats


def test_close_removes_the_socket_file_and_is_idempotent(lane):
    y = _native.Yard(lane, "closing")
    path = y.path
    assert os.path.exists(path) and y.fileno() >= 0
    y.close()
    assert not os.path.exists(path)
    assert y.fileno() == -1
    y.close()
    with pytest.raises(_native.LaneError):
        y.recv()
    with pytest.raises(_native.LaneError):
        y.send((None, None, "req"))
    # dropping an open yard removes its file too
    z = _native.Yard(lane, "dropped")
    path = z.path
    del z
    assert not os.path.exists(path)


# --- with the real salt-raet-master -----------------------------------------------------------


def daemon_binary(name):
    override = os.environ.get("SALT_RAET_BIN_DIR")
    dirs = [Path(override)] if override else [ROOT / "target" / "debug", ROOT / "target" / "release"]
    found = [d / name for d in dirs if (d / name).is_file()]
    if not found:
        pytest.fail(f"{name} not built in {', '.join(map(str, dirs))}: run `cargo build -p {name}`")
    return str(max(found, key=lambda p: p.stat().st_mtime))


def free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def discard(stream):
    while stream.read(65536):
        pass


@contextlib.contextmanager
def running(name, etc):
    """Daemon ``name`` running with configuration directory ``etc``, once its lane is up."""
    proc = subprocess.Popen(
        [daemon_binary(name), "-c", str(etc), "-l", "info"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        # ready when it logs "lane up" (read on readiness, with a time limit)
        seen = b""
        deadline = time.monotonic() + LIMIT
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stderr, selectors.EVENT_READ)
            while b"lane up" not in seen:
                left = deadline - time.monotonic()
                assert left > 0 and proc.poll() is None, f"daemon not up: {seen.decode(errors='replace')}"
                if sel.select(left):
                    chunk = os.read(proc.stderr.fileno(), 65536)
                    assert chunk, f"daemon exited: {seen.decode(errors='replace')}"
                    seen += chunk
        # keep reading its log so it never blocks on a full pipe
        threading.Thread(target=discard, args=(proc.stderr,), daemon=True).start()
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def run_master(base, extra=""):
    """A salt-raet-master in ``base`` (context manager): yields its sock_dir and road port."""
    etc = base / "etc"
    etc.mkdir(parents=True)
    sock = base / "sock"
    port = free_udp_port()
    (etc / "master").write_text(
        f"interface: 127.0.0.1\nraet_port: {port}\npki_dir: {base / 'pki'}\nsock_dir: {sock}\n"
        f"log_file: {base / 'log'}\nautosign_file: {base / 'as'}\nautoreject_file: {base / 'ar'}\n"
        + extra
    )
    with running("salt-raet-master", etc):
        yield {"sock_dir": str(sock), "port": port}


@pytest.fixture
def master(tmp_path):
    """A running salt-raet-master in ``tmp_path``; yields its sock_dir once its lane is up."""
    with run_master(tmp_path / "master") as info:
        yield info


def test_yard_registers_with_the_daemon_and_asks_its_status(master):
    lane = _native.lane_dir(master["sock_dir"])
    with _native.Yard(lane, "pytest1") as y:
        y.send((None, _native.MANOR, "register"), json.dumps({"shares": ["req"]}))
        (ack,) = recv_until(y)
        assert ack.yard == _native.MANOR
        assert ack.error is None, ack.error
        reg = json.loads(ack.load)
        assert reg["registered"] is True
        estate = reg["estate"]
        assert isinstance(estate, str) and estate

        y.send((None, _native.MANOR, "status"))
        (status,) = recv_until(y)
        info = json.loads(status.load)
        assert info["estate"] == estate
        assert info["role"] == "master"
        assert info["road"].endswith(f":{master['port']}")
        assert info["routing"]["registered"] >= 1

        # a request for a share nobody serves comes back as an error with the request id
        y.send((None, None, "nobody-serves-this"), json.dumps({"rid": "1" * 32}), b"payload")
        (err,) = recv_until(y)
        assert err.kind == "unknown_share"
        assert err.rid == "1" * 32
        assert err.error

        # a request to our own share comes back to us through the manor, payload intact
        y.send((None, None, "req"), json.dumps({"rid": "2" * 32}), b"\x01\x02" * 1000)
        (req,) = recv_until(y)
        assert req.yard == _native.MANOR
        assert req.src[0] == estate and req.src[1] == "pytest1"
        assert req.rid == "2" * 32
        assert req.salt == b"\x01\x02" * 1000
