"""PublishServer details found by Salt's own transport tests (tests/salt-transport)."""

import asyncio
import json
import os
import selectors
import socket
import stat

import saltext_raet  # noqa: F401  (registers the transport)
from saltext_raet import _native, transport


def _received(yard, timeout=5.0):
    with selectors.DefaultSelector() as selector:
        selector.register(yard.fileno(), selectors.EVENT_READ)
        assert selector.select(timeout), "nothing arrived"
    messages = yard.recv()
    assert len(messages) == 1
    return messages[0]


def test_published_objects_arrive_as_the_same_object_and_bytes_as_bytes(tmp_path):
    # Salt's TCP/WS transports publish dicts as well as bytes: the subscriber gets back
    # what was published (bytes stay bytes inside the dict), as their msgpack frames do.
    opts = {"transport": "raet", "sock_dir": str(tmp_path)}
    publisher = _native.Yard(_native.lane_dir(opts["sock_dir"]), transport.PUBLISHER_YARD)
    server = transport.PublishServer(opts)
    try:
        published = {b"foo": b"bar", "text": "str", "list": [1, b"x"]}
        asyncio.run(server.publish(published))
        msg = _received(publisher)
        assert json.loads(msg.load)[transport.PACKED] is True
        assert transport._unpack(msg) == published  # pylint: disable=protected-access

        asyncio.run(server.publish(b"meh"))
        msg = _received(publisher)
        assert transport.PACKED not in json.loads(msg.load)
        assert transport._unpack(msg) == b"meh"  # pylint: disable=protected-access
    finally:
        server.close()
        publisher.close()


def test_mark_ready_replaces_a_socket_left_by_another_transport(tmp_path):
    # ZeroMQ leaves publish_pull.ipc as a Unix socket in sock_dir; opening it as a file
    # fails (ENXIO), which stopped the publish daemon of a master switched to raet.
    pull_path = tmp_path / "publish_pull.ipc"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(pull_path))
    assert stat.S_ISSOCK(os.lstat(pull_path).st_mode)
    server = transport.PublishServer(
        {"transport": "raet", "sock_dir": str(tmp_path)}, pull_path=str(pull_path)
    )
    server.mark_ready()
    mode = os.lstat(pull_path).st_mode
    assert stat.S_ISREG(mode) and stat.S_IMODE(mode) == 0o600
    assert server.started.is_set()
