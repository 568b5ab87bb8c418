"""
Who may reach which yard: the daemon's routing rules against a minion that names the master's
yards (the real ``salt-raet-master`` and ``salt-raet-minion``), and the transport's own checks
(a forged daemon reply, a publication that did not come straight from a local yard).

Waiting is on readiness (selectors, futures) with time limits, never by sleeping.
"""

import asyncio
import json
import os
import socket
import tempfile

from test_native import LIMIT, page, recv_until, run_master, running

import saltext_raet  # noqa: F401  (registers the transport)
from saltext_raet import _native, transport


def send_raw(yard, sender, src, load, share=None, bi=1):
    """An envelope from ``src`` to ``yard`` (an Endpoint's or a Yard's), as lane yard ``sender``."""
    body = {"route": {"src": src, "dst": [None, yard.name, share]}, "load": load}
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as raw:
        raw.sendto(page(sender, yard.name, json.dumps(body).encode(), bi=bi), yard.path)


def test_an_endpoint_takes_register_and_status_replies_from_its_own_estate_only(tmp_path):
    opts = {"sock_dir": str(tmp_path)}

    async def main():
        loop = asyncio.get_running_loop()
        handled = asyncio.Queue()

        async def on_message(msg):
            await handled.put(msg)

        endpoint = transport.Endpoint(opts, loop, "w", on_message=on_message)
        try:
            status = loop.create_future()
            endpoint._status.append(status)  # pylint: disable=protected-access
            yard = endpoint.yard
            registered = {"registered": True, "estate": "master1"}
            send_raw(yard, _native.MANOR, ["master1", _native.MANOR, "register"], registered, "register", 1)
            # a minion passing for the daemon (finding: its id taken for the local estate)
            forged = {"registered": True, "estate": "m1"}
            send_raw(yard, _native.MANOR, ["m1", _native.MANOR, "register"], forged, "register", 2)
            send_raw(yard, _native.MANOR, ["m1", _native.MANOR, "status"], {"estate": "m1"}, "status", 3)
            send_raw(yard, _native.MANOR, ["master1", "x", None], {"marker": 1}, None, 4)
            marker = await asyncio.wait_for(handled.get(), LIMIT)
            assert json.loads(marker.load) == {"marker": 1}
            assert handled.empty(), "a forged daemon reply went to the handler"
            assert endpoint.estate == "master1"
            assert not status.done(), "a forged status reply was taken"
            send_raw(yard, _native.MANOR, ["master1", _native.MANOR, "status"], {"estate": "master1"}, "status", 5)
            assert await asyncio.wait_for(status, LIMIT) == {"estate": "master1"}
        finally:
            endpoint.close()

    asyncio.run(main())


def test_the_publisher_publishes_only_what_a_local_yard_hands_it_directly(tmp_path):
    opts = {"transport": "raet", "sock_dir": str(tmp_path)}
    server = transport.PublishServer(opts)

    async def main():
        published = asyncio.Queue()

        async def publish_payload(payload):
            await published.put(payload)

        await server.publisher(publish_payload)
        yard = server._endpoint.yard  # pylint: disable=protected-access
        # relayed by the daemon: from a minion over the road, or from a local yard through it
        send_raw(yard, _native.MANOR, ["m1", "evil", None], {"salt": "am9i"}, None, 1)
        send_raw(yard, _native.MANOR, ["master1", "req9x0", None], {"salt": "am9i"}, None, 2)
        # straight from a local yard (what PublishServer.publish does)
        await server.publish(b"local job")
        assert await asyncio.wait_for(published.get(), LIMIT) == b"local job"
        assert published.empty()

    try:
        asyncio.run(main())
    finally:
        server.close()


def wait_allowed(yard):
    """Waits until the minion daemon of ``yard`` (registered for presence) has an allowed master."""
    yard.send((None, _native.MANOR, "status"))
    # Both the status answer (taken off the yard) and an allowed master: in the answer, or
    # in the presence change the daemon sends when the master allows it, which may come
    # before the answer (the allow handled between the request and its answer) or after.
    answered = allowed = False
    while not (answered and allowed):
        for msg in recv_until(yard):
            load = json.loads(msg.load)
            if msg.src[2] == "presence":
                allowed = allowed or load.get("change") in ("new", "present")
            else:
                answered = True
                allowed = allowed or any(r.get("allowed") for r in load.get("remotes", []))


def next_answer(yard):
    """The next message of ``yard`` that is not a presence change."""
    while True:
        answers = [m for m in recv_until(yard) if m.src[2] != "presence"]
        if answers:
            (answer,) = answers
            return answer


def test_a_minion_reaches_only_the_masters_yards_that_serve_a_share(tmp_path):
    with run_master(tmp_path / "master", "auto_accept: True\n") as master:
        base = tmp_path / "m1"
        etc = base / "etc"
        etc.mkdir(parents=True)
        (etc / "minion").write_text(
            f"id: m1\nmaster: 127.0.0.1\nraet_master_port: {master['port']}\nraet_port: 0\n"
            f"pki_dir: {base / 'pki'}\nsock_dir: {base / 'sock'}\nlog_file: {base / 'log'}\n"
        )
        master_lane = _native.lane_dir(master["sock_dir"])
        with (
            _native.Yard(master_lane, transport.PUBLISHER_YARD) as publisher,
            _native.Yard(master_lane, "mworker1") as worker,
            running("salt-raet-minion", etc),
            _native.Yard(_native.lane_dir(str(base / "sock")), "evil") as evil,
        ):
            worker.send((None, _native.MANOR, "register"), json.dumps({"shares": ["req"]}))
            (ack,) = recv_until(worker)
            master_id = json.loads(ack.load)["estate"]
            evil.send((None, _native.MANOR, "register"), json.dumps({"shares": ["presence"]}))
            (ack,) = recv_until(evil)
            assert json.loads(ack.load)["registered"] is True
            wait_allowed(evil)

            # a job handed straight to the master's publisher, or to a worker by name: refused
            for n, dst in enumerate([(master_id, transport.PUBLISHER_YARD, None), (master_id, "mworker1", None)]):
                rid = f"{n}" * 32
                evil.send(dst, json.dumps({"rid": rid}), b"job")
                err = next_answer(evil)
                assert (err.kind, err.rid, err.src[0]) == ("refused", rid, master_id), err
            # the share the worker registered is served (and answered to the asking yard)
            evil.send((None, None, "req"), json.dumps({"rid": "r" * 32}), b"question")
            (req,) = recv_until(worker)
            assert (req.src[0], req.src[1], req.salt) == ("m1", "evil", b"question")
            worker.send(("m1", "evil", None), json.dumps({"rid": "r" * 32}), b"answer")
            reply = next_answer(evil)
            assert (reply.rid, reply.salt, reply.error) == ("r" * 32, b"answer", None)
            assert publisher.recv() == [], "the publisher got a message from the road"
            assert worker.recv() == []


def test_master_row_picks_the_connection_s_own_master():
    rows = [
        {"master": "127.0.0.1:4505", "address": "127.0.0.1:4505", "id": "m1"},
        {"master": "salt2.example:4505", "address": "127.0.0.2:4505", "id": "m2"},
        {"master": "[::1]:4505", "address": "[::1]:4505", "id": None},
    ]
    status = {"masters": rows}
    # by the connection's master (its host), then by the address it resolved to
    assert transport.master_row(status, {"master": "127.0.0.1"})["id"] == "m1"
    assert transport.master_row(status, {"master": "salt2.example"})["id"] == "m2"
    assert transport.master_row(status, {"master": "salt2", "master_ip": "127.0.0.2"})["id"] == "m2"
    assert transport.master_row(status, {"master": "::1"}) is rows[2]
    # one master, no master of ours, or no single master named: the daemon picks
    assert transport.master_row({"masters": rows[:1]}, {"master": "127.0.0.1"}) is None
    assert transport.master_row(status, {"master": "10.0.0.9", "master_ip": "10.0.0.9"}) is None
    assert transport.master_row(status, {"master": ["127.0.0.1", "salt2.example"]}) is None
    assert transport.master_row({}, {"master": "127.0.0.1"}) is None


def test_a_syndic_always_names_its_master_of_masters():
    syndic = {"__role": "syndic", "master": "10.0.0.1"}
    top = {"master": "10.0.0.1:4505", "address": "10.0.0.1:4505", "id": "top"}
    # the local master daemon's only row, even with one master (never None: the syndic's
    # returns would go to its own request workers)
    assert transport.master_row({"masters": [top]}, syndic) is top
    # a daemon without syndic_master: a row without id (the request waits, then times out)
    row = transport.master_row({"remotes": []}, syndic)
    assert row is not None and not row.get("id")


def test_a_syndic_uses_the_lane_of_its_master_config():
    # a short directory: Salt replaces a sock_dir too long for a Unix socket path
    with tempfile.TemporaryDirectory(prefix="sd") as root:
        master_sock = os.path.join(root, "master-sock")
        conf = os.path.join(root, "master")
        with open(conf, "w", encoding="utf-8") as f:
            f.write(f"sock_dir: {master_sock}\nroot_dir: {root}\n")
        syndic = {"__role": "syndic", "sock_dir": os.path.join(root, "minion-sock"),
                  "_minion_conf_file": conf}
        assert transport.lane_sock_dir(syndic) == master_sock
    assert transport.lane_sock_dir({"sock_dir": "/x"}) == "/x"


def test_a_syndic_whose_id_is_not_its_master_s_is_told(caplog):
    transport._check_syndic_id({"estate": "syn"}, {"__role": "syndic", "id": "syn"})
    transport._check_syndic_id({"estate": "syn_master"}, {"id": "web1"})
    assert "salt-syndic's id" not in caplog.text
    transport._check_syndic_id({"estate": "syn_master"}, {"__role": "syndic", "id": "syn"})
    assert "salt-syndic's id 'syn' (minion config) is not 'syn_master'" in caplog.text


class _StatusEndpoint:
    """Stands for a subscriber's endpoint: the minion daemon's status."""

    def __init__(self, status):
        self.answer = status

    async def status(self):
        return self.answer


def test_a_failover_connection_fails_back_once_its_first_master_is_allowed_again():
    first = {"master": "127.0.0.1:4505", "id": "m1", "allowed": False}
    rows = [first, {"master": "127.0.0.2:4505", "id": "m2", "allowed": True}]
    opts = {"master_type": "failover", "master_failback": True,
            "master_list": ["127.0.0.1", "127.0.0.2"], "master": "127.0.0.2"}
    client = transport.PublishClient(opts, None)
    client._master = "m2"
    client._endpoint = _StatusEndpoint({"masters": rows})
    called = []
    client._failback_callback = called.append

    def told(change, estate="m1"):
        asyncio.run(client._on_presence({"id": estate, "change": change}))

    told("lost")
    told("new")  # not allowed yet
    told("present", "m3")  # another estate
    assert called == []
    first["allowed"] = True
    told("new")
    told("present")
    assert called == ["127.0.0.1"]  # once


def test_only_a_failover_connection_with_failback_off_its_first_master_fails_back():
    opts = {"master_type": "failover", "master_failback": True,
            "master_list": ["a", "b"], "master": "b"}
    assert transport.failback_master(opts) == "a"
    assert transport.failback_master(dict(opts, master="a")) is None
    assert transport.failback_master(dict(opts, master_failback=False)) is None
    assert transport.failback_master(dict(opts, master_type="str")) is None
    assert transport.failback_master(dict(opts, master_list=[])) is None


def test_failover_gives_a_master_up_when_a_join_sent_while_waiting_is_unanswered():
    wait = transport.UnansweredJoins(auth_timeout=2)
    joining = {"state": "joining", "attempts": 1}
    # the join in flight when the wait began may have left before the master was up
    assert not wait.given_up(joining, 0.0)
    assert not wait.given_up(joining, 10.0)
    # the next join, sent at 11 s, unanswered for auth_timeout
    assert not wait.given_up(dict(joining, attempts=2), 11.0)
    assert not wait.given_up(dict(joining, attempts=2), 13.0)
    assert wait.given_up(dict(joining, attempts=2), 13.5)
    # a master that answered (the key pending) is waited for
    assert not wait.given_up({"state": "pending", "attempts": 3}, 20.0)
