"""
The extension against its daemon's version: the status of the real ``salt-raet-master``
reports the daemon's version, which ``transport.check_daemon_version`` compares (major.minor)
with the extension's own (``_native.VERSION``).
"""

import asyncio
import json
import logging
import re

import pytest
import salt.exceptions
from test_native import LIMIT, ROOT, recv_until, run_master

import saltext_raet  # noqa: F401  (registers the transport)
from saltext_raet import _native, transport


def test_the_native_version_is_the_packages():
    pyproject = (ROOT / "salt-ext" / "pyproject.toml").read_text()
    (version,) = re.findall(r'^version = "([^"]+)"$', pyproject, re.MULTILINE)
    assert _native.VERSION == version


def test_a_daemon_of_the_same_major_minor_passes(monkeypatch):
    monkeypatch.setattr(_native, "VERSION", "1.4.2")
    status = {"daemon_version": "1.4.9", "estate": "m"}
    assert transport.check_daemon_version(status, "/run/salt/raet") is status


def test_a_daemon_of_another_major_minor_is_an_error_naming_both(monkeypatch):
    monkeypatch.setattr(_native, "VERSION", "1.4.2")
    with pytest.raises(transport.DaemonVersionError) as info:
        transport.check_daemon_version({"daemon_version": "1.5.0"}, "/run/salt/raet")
    text = str(info.value)
    assert "1.5.0" in text and "1.4.2" in text and "/run/salt/raet" in text
    assert "install the same version" in text
    assert isinstance(info.value, salt.exceptions.SaltClientError)


def test_a_daemon_without_a_version_is_logged_once_per_lane(caplog):
    caplog.set_level(logging.ERROR, logger=transport.__name__)
    lane = "/run/salt/old-daemon/raet"
    for _ in range(3):
        assert transport.check_daemon_version({"estate": "m"}, lane) == {"estate": "m"}
    (record,) = [r for r in caplog.records if lane in r.getMessage()]
    assert "does not report its version" in record.getMessage()
    assert _native.VERSION in record.getMessage()


def test_the_real_daemon_reports_its_version_and_a_mismatch_is_refused(tmp_path, monkeypatch):
    with run_master(tmp_path / "master") as master:
        opts = {"sock_dir": master["sock_dir"]}
        status = transport.daemon_status(opts, timeout=LIMIT)
        assert status["daemon_version"] == _native.VERSION

        async def endpoint_status():
            endpoint = transport.Endpoint(opts, asyncio.get_running_loop(), "version")
            try:
                return await endpoint.status(timeout=LIMIT)
            finally:
                endpoint.close()

        assert asyncio.run(endpoint_status())["daemon_version"] == _native.VERSION

        major, minor = map(int, _native.VERSION.split(".")[:2])
        monkeypatch.setattr(_native, "VERSION", f"{major}.{minor + 1}.0")
        with pytest.raises(transport.DaemonVersionError, match=status["daemon_version"]):
            transport.daemon_status(opts, timeout=LIMIT)
        with pytest.raises(transport.DaemonVersionError):
            asyncio.run(endpoint_status())


def test_a_yard_registering_with_a_daemon_of_another_version_serves_nothing(
    tmp_path, monkeypatch, caplog
):
    """
    Registration checks the daemon's version (the register answer carries it): against a
    daemon of another major.minor the yard withdraws its shares (the daemon answers
    requests for them ``unknown_share``), the future of ``serve`` fails with the error and
    it is logged once; a compatible answer to a later registration serves them again.
    """
    caplog.set_level(logging.WARNING, logger=transport.__name__)
    share = "versioned"
    with run_master(tmp_path / "master") as master:
        opts = {"sock_dir": master["sock_dir"]}
        lane = _native.lane_dir(master["sock_dir"])
        ours = _native.VERSION
        major, minor = map(int, ours.split(".")[:2])

        async def scenario():
            loop = asyncio.get_running_loop()
            served = []

            async def on_message(msg):
                served.append(msg.rid)
                endpoint.send((msg.src[0], msg.src[1], None), {"rid": msg.rid}, b"ok")

            endpoint = transport.Endpoint(opts, loop, "versioned", on_message=on_message)
            client = transport.Endpoint(opts, loop, "asker")
            try:
                monkeypatch.setattr(_native, "VERSION", f"{major}.{minor + 1}.0")
                with pytest.raises(transport.DaemonVersionError, match=ours):
                    await asyncio.wait_for(endpoint.serve([share]), LIMIT)
                assert endpoint.version_error is not None
                # the withdrawal reached the daemon: nobody serves the share
                with _native.Yard(lane, "asker1") as asker:
                    asker.send((None, None, share), json.dumps({"rid": "3" * 32}), b"x")
                    (err,) = recv_until(asker)
                assert (err.kind, err.rid) == ("unknown_share", "3" * 32)
                assert served == []

                # the same daemon found compatible again (as a replaced daemon would be) at
                # the next periodic registration: the share is served
                monkeypatch.setattr(_native, "VERSION", ours)
                deadline = loop.time() + LIMIT
                while endpoint.version_error is not None:
                    assert loop.time() < deadline, "no compatible registration answer"
                    await asyncio.sleep(0.05)
                assert await client.call((None, None, share), b"x", LIMIT) == b"ok"
                assert len(served) == 1
            finally:
                client.close()
                endpoint.close()

        asyncio.run(scenario())
    refusals = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert len(refusals) == 1, [r.getMessage() for r in refusals]
    assert lane in refusals[0].getMessage() and share in refusals[0].getMessage()


def test_a_minion_subscriber_does_not_connect_to_a_daemon_of_another_version(
    tmp_path, monkeypatch
):
    """The minion side: PublishClient.connect registers its yard and fails with the
    version error, again on a second attempt (no half-connected subscriber is kept)."""
    with run_master(tmp_path / "master") as master:
        opts = {"sock_dir": master["sock_dir"], "transport": "raet"}
        major, minor = map(int, _native.VERSION.split(".")[:2])
        monkeypatch.setattr(_native, "VERSION", f"{major}.{minor + 1}.0")

        async def connect_twice():
            client = transport.PublishClient(opts, asyncio.get_running_loop())
            errors = []
            try:
                for _ in range(2):
                    with pytest.raises(transport.DaemonVersionError) as info:
                        await client.connect(timeout=LIMIT)
                    errors.append(str(info.value))
                    assert client._endpoint is None
            finally:
                client.close()
            return errors

        errors = asyncio.run(connect_twice())
        assert len(errors) == 2 and all(f"{major}.{minor + 1}.0" in e for e in errors)
