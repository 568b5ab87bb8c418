"""The registration of transport raet in a real Salt install (no daemons needed)."""

import asyncio
import importlib

import pytest

import saltext_raet  # noqa: F401  (registers the transport)
from saltext_raet import channel, registry, transport


def test_supported_salt_versions_pass_and_others_fail_clearly():
    registry.check_salt_version((3008, 5))
    registry.check_salt_version((3007, 17, 0))
    for bad in ((3006, 9), (3009, 0), (2019, 2)):
        with pytest.raises(registry.UnsupportedSaltVersion, match=r"3007\.x and 3008\.x"):
            registry.check_salt_version(bad)


def test_raet_is_a_salt_transport_and_importable_under_salt_transport():
    import salt.master
    import salt.transport
    import salt.transport.base

    assert "raet" in salt.transport.base.TRANSPORTS
    assert "raet" in salt.transport.TRANSPORTS
    assert salt.master.TRANSPORTS is salt.transport.base.TRANSPORTS
    assert importlib.import_module("salt.transport.raet") is transport


def test_transport_factories_pick_raet_and_leave_other_names_to_salt(tmp_path):
    import salt.transport

    opts = {
        "transport": "raet",
        "sock_dir": str(tmp_path),
        "interface": "127.0.0.1",
        "master_uri": "tcp://127.0.0.1:4506",
    }
    assert isinstance(salt.transport.request_server(opts), transport.RequestServer)
    server = salt.transport.publish_server(opts)
    assert isinstance(server, transport.PublishServer)
    assert server.pull_path == str(tmp_path / "publish_pull.ipc")
    loop = asyncio.new_event_loop()
    try:
        client = salt.transport.request_client(opts, io_loop=loop)
        assert isinstance(client, transport.RequestClient) and client.ttype == "raet"
        sub = salt.transport.publish_client(opts, loop)
        assert isinstance(sub, transport.PublishClient)
        tcp = salt.transport.request_client(dict(opts, transport="tcp"), io_loop=loop)
        assert type(tcp).__module__ == "salt.transport.tcp"
    finally:
        loop.close()


def test_native_mode_is_the_default_and_salt_crypto_is_an_option():
    assert registry.native({"transport": "raet"})
    assert not registry.native({"transport": "raet", "raet_salt_crypto": True})
    assert not registry.native({"transport": "zeromq"})
    assert registry.native({"pillar": {"master": {"transport": "raet"}}})


def test_channel_factories_give_native_channels_only_in_native_mode(tmp_path):
    import salt.channel.client
    import salt.channel.server

    opts = {"transport": "raet", "sock_dir": str(tmp_path), "id": "m1", "interface": "127.0.0.1",
            "pki_dir": str(tmp_path), "cachedir": str(tmp_path)}
    loop = asyncio.new_event_loop()
    try:
        chan = salt.channel.client.AsyncReqChannel.factory(opts, io_loop=loop)
        assert isinstance(chan, channel.NativeReqChannel)
        assert isinstance(chan.auth, channel.NativeAuth) and chan.crypt == "aes"
        assert isinstance(
            salt.channel.server.ReqServerChannel.factory(opts), channel.NativeReqServerChannel
        )
    finally:
        loop.close()


def test_native_mode_refuses_options_that_need_salt_rsa_keys():
    for option in channel.UNSUPPORTED_OPTIONS:
        with pytest.raises(Exception, match=option):
            channel.check_options({option: True})
    channel.check_options({"sign_pub_messages": False})


class _Worker:
    """Records what reaches the MWorker's payload handler."""

    def __init__(self, reply):
        self.seen = []
        self.reply = reply

    async def __call__(self, payload):
        self.seen.append(payload)
        return self.reply


def _server(reply):
    server = channel.NativeReqServerChannel({"transport": "raet"}, transport=None)
    server.payload_handler = _Worker(reply)
    return server


def test_a_minion_cannot_speak_for_another():
    server = _server(({"ok": True}, {"fun": "send"}))
    load = {"cmd": "_return", "id": "victim", "jid": "1", "return": True}
    reply = asyncio.run(server.handle_message({"enc": "aes", "load": load}, peer="attacker"))
    assert reply.startswith("bad load")
    assert server.payload_handler.seen == []


def test_requests_are_bound_to_the_raet_peer():
    server = _server(({"ok": True}, {"fun": "send"}))
    reply = asyncio.run(server.handle_message({"enc": "aes", "load": {"cmd": "_file_list"}}, peer="m1"))
    assert reply == {"ok": True}
    assert server.payload_handler.seen == [{"enc": "aes", "load": {"cmd": "_file_list", "id": "m1"}}]


def test_minions_cannot_send_clear_loads_and_local_clients_cannot_send_aes():
    server = _server(({"ok": True}, {"fun": "send_clear"}))
    clear = {"enc": "clear", "load": {"cmd": "publish", "tgt": "*"}}
    assert asyncio.run(server.handle_message(clear, peer="m1")).startswith("bad load")
    aes = {"enc": "aes", "load": {"cmd": "_return", "id": "m1"}}
    assert asyncio.run(server.handle_message(aes, peer=None)).startswith("bad load")
    assert server.payload_handler.seen == []
    assert asyncio.run(server.handle_message(clear, peer=None)) == {"ok": True}


def test_private_replies_come_back_under_their_key():
    server = _server(({"pillar_key": 1}, {"fun": "send_private", "key": "pillar", "tgt": "m1"}))
    reply = asyncio.run(server.handle_message({"enc": "aes", "load": {"cmd": "_pillar", "id": "m1"}}, "m1"))
    assert reply == {"pillar": {"pillar_key": 1}}


def test_revoke_auth_is_refused_in_native_mode():
    server = _server((True, {"fun": "send"}))
    load = {"cmd": "_revoke_auth", "id": "m1", "tok": b"raet"}
    assert asyncio.run(server.handle_message({"enc": "aes", "load": load}, peer="m1")) is False
    assert server.payload_handler.seen == []


class _Event:
    """Records the events Maintenance fires."""

    def __init__(self):
        self.fired = []

    def connect_pull(self, timeout=None):
        return True

    def fire_event(self, data, tag):
        self.fired.append((tag, data))


class _CkMinions:
    def connected_ids(self):
        return {"m1"}


def _maintenance(tmp_path, transport_name):
    import salt.master

    maintenance = salt.master.Maintenance.__new__(salt.master.Maintenance)
    maintenance.opts = {"transport": transport_name, "cachedir": str(tmp_path)}
    maintenance.presence_events = True
    maintenance.event = _Event()
    maintenance.ckminions = _CkMinions()
    return maintenance


def test_maintenance_leaves_presence_events_to_the_raet_daemon(tmp_path):
    import salt.master

    handle = salt.master.Maintenance.handle_presence
    assert handle.__wrapped__.__qualname__ == "Maintenance.handle_presence"
    raet = _maintenance(tmp_path, "raet")
    raet.handle_presence(set())
    assert raet.event.fired == []
    # Other transports: Salt's own events, unchanged.
    zeromq = _maintenance(tmp_path, "zeromq")
    old_present = set()
    zeromq.handle_presence(old_present)
    tags = [tag for tag, _ in zeromq.event.fired]
    assert tags == ["salt/presence/change", "salt/presence/present"]
    assert zeromq.event.fired[0][1] == {"new": ["m1"], "lost": []}
    assert old_present == {"m1"}


def test_an_unknown_handle_presence_is_left_alone(caplog):
    class Maintenance:
        def handle_presence(self, old_present, extra):
            return "salt's"

    class Module:
        pass

    module = Module()
    module.Maintenance = Maintenance
    original = Maintenance.handle_presence
    registry._patch_maintenance(module)
    assert Maintenance.handle_presence is original
    assert "may be fired twice" in caplog.text


def test_the_workers_marker_is_made_once_and_another_transports_socket_is_kept(tmp_path):
    import socket

    opts = {"transport": "raet", "sock_dir": str(tmp_path)}
    marker = tmp_path / "workers.ipc"
    transport.RequestServer(opts).pre_fork(None)
    assert marker.is_file()
    marker.unlink()
    # Salt's own tests reuse one sock_dir across transports: a zeromq/tcp request device
    # leaves its Unix socket there, which cannot be opened (ENXIO).
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(marker))
        transport.RequestServer(opts).pre_fork(None)
        assert marker.is_socket()
    finally:
        sock.close()


class _FakeLocalClient:
    """Stands for Salt's LocalClient: its get_iter_returns adds every target again, as the
    job's ``salt/job/<jid>/new`` event does, and records what it waits for."""

    opts = {"transport": "raet"}

    def __init__(self):
        self.waited_for = []

    def get_iter_returns(self, jid, minions, timeout=None, tgt="*", tgt_type="glob",
                         expect_minions=False, block=True, **kwargs):
        minions.update(["web", "db", "res-1"])
        self.waited_for.append(set(minions))
        yield {"web": {"ret": True}}


def _patched_fake(monkeypatch, absent):
    import types

    class Client(_FakeLocalClient):
        pass

    calls = []

    def absent_targets(opts, minions):
        calls.append(set(minions))
        return set(absent)

    monkeypatch.setattr(registry, "absent_targets", absent_targets)
    module = types.SimpleNamespace(LocalClient=Client)
    registry._patch_local_client(module)
    return Client, calls


def test_local_client_does_not_wait_for_absent_targets(monkeypatch):
    client_class, calls = _patched_fake(monkeypatch, {"db"})
    client = client_class()
    rows = list(client.get_iter_returns("j1", ["web", "db", "res-1"], 20, expect_minions=True))
    # the absent minion is reported first, then the present one's return
    assert rows == [{"db": {"failed": True}}, {"web": {"ret": True}}]
    assert calls == [{"web", "db", "res-1"}]
    # the job's new event listing db again does not make Salt wait for it
    assert client.waited_for == [{"web", "res-1"}]
    # without expect_minions (cmd_iter) the absent minion is left out
    assert list(client.get_iter_returns("j2", {"web", "db"})) == [{"web": {"ret": True}}]


def test_local_client_waits_for_every_target_when_none_is_absent_or_not_raet(monkeypatch):
    client_class, calls = _patched_fake(monkeypatch, set())
    client = client_class()
    assert list(client.get_iter_returns("j1", {"web"}, expect_minions=True)) == [
        {"web": {"ret": True}}
    ]
    assert client.waited_for == [{"web", "db", "res-1"}]
    client.opts = {"transport": "zeromq"}
    list(client.get_iter_returns("j2", {"web"}, expect_minions=True))
    assert calls == [{"web"}]  # not asked for zeromq


def test_absent_targets_is_empty_without_a_daemon(tmp_path):
    opts = {"transport": "raet", "sock_dir": str(tmp_path), "pki_dir": str(tmp_path),
            "cachedir": str(tmp_path)}
    assert registry.absent_targets(opts, ["web"]) == set()
    assert registry.absent_targets(dict(opts, order_masters=True), ["web"]) == set()


def test_salt_local_client_is_patched():
    import salt.client

    assert hasattr(salt.client.LocalClient.get_iter_returns, "__wrapped__")


def _schedule(transport_name):
    import salt.utils.schedule

    schedule = object.__new__(salt.utils.schedule.Schedule)
    schedule.opts = {"transport": transport_name, "schedule": {}}
    schedule.persist = lambda: None
    schedule._get_schedule = lambda include_opts=True: schedule.opts["schedule"]
    return schedule


def test_no_tcp_check_of_the_master_at_a_zero_interval_on_raet():
    """Salt 3007 schedules status.master after a failover even with
    master_alive_interval 0 (every second); on RAET the check always fails."""
    import salt.minion

    name = salt.minion.master_event(type="alive", master="127.0.0.2")
    job = {"function": "status.master", "seconds": 0, "kwargs": {"connected": True}}
    raet = _schedule("raet")
    raet.modify_job(name=name, schedule=job)
    ping = {"function": "status.ping_master", "seconds": 0, "kwargs": {"master": "127.0.0.1"}}
    raet.modify_job(name=salt.minion.master_event(type="failback"), schedule=ping)
    assert raet.opts["schedule"] == {}
    # a positive interval is the operator's choice; other jobs and transports unchanged
    raet.modify_job(name=name, schedule=dict(job, seconds=30))
    raet.modify_job(name="__mine_interval", schedule={"function": "mine.update", "seconds": 0})
    assert set(raet.opts["schedule"]) == {name, "__mine_interval"}
    zeromq = _schedule("zeromq")
    zeromq.modify_job(name=name, schedule=job)
    assert zeromq.opts["schedule"] == {name: job}


# Salt's runner manage in short: status asks _ping, which publishes a test.ping job.
MANAGE = """
pinged = []

def _ping(tgt, tgt_type, timeout, gather_job_timeout):
    pinged.append(tgt)
    return ["pinged"], []

def status(tgt="*", tgt_type="glob"):
    up, down = _ping(tgt, tgt_type, 5, 10)
    return {"up": up, "down": down}
"""


def _loaded_manage(transport_name, tag="runners"):
    """A LazyLoader whose _load_module (patched by the extension) loads MANAGE: the
    loader's manage.status and the module's namespace."""
    import types

    namespace = {}
    exec(MANAGE, namespace)  # pylint: disable=exec-used

    class LazyLoader:
        def __init__(self):
            self.tag = tag
            self.opts = {"transport": transport_name}
            self._dict = {}

        def _load_module(self, name):
            self._dict[f"{name}.status"] = namespace["status"]
            return True

    registry._patch_manage_runner(types.SimpleNamespace(LazyLoader=LazyLoader))
    loader = LazyLoader()
    assert loader._load_module("manage") is True
    return loader._dict["manage.status"], namespace


def test_manage_status_answers_from_presence_without_pinging(monkeypatch):
    asked = []

    def presence_status(opts, tgt, tgt_type):
        asked.append((opts["transport"], tgt, tgt_type))
        return ["web"], ["db"]

    monkeypatch.setattr(registry, "presence_status", presence_status)
    status, namespace = _loaded_manage("raet")
    assert status("web*", "glob") == {"up": ["web"], "down": ["db"]}
    assert asked == [("raet", "web*", "glob")]
    assert namespace["pinged"] == []


def test_manage_status_pings_when_presence_cannot_answer_or_not_raet(monkeypatch):
    monkeypatch.setattr(registry, "presence_status", lambda opts, tgt, tgt_type: None)
    status, namespace = _loaded_manage("raet")
    assert status() == {"up": ["pinged"], "down": []}
    assert namespace["pinged"] == ["*"]
    for transport_name, tag in (("zeromq", "runners"), ("raet", "modules")):
        status, namespace = _loaded_manage(transport_name, tag)
        assert not hasattr(namespace["_ping"], "__wrapped__")
        assert status() == {"up": ["pinged"], "down": []}
        assert namespace["pinged"] == ["*"]


def _master_opts(tmp_path):
    import salt.config

    overrides = {"root_dir": str(tmp_path), "pki_dir": str(tmp_path / "pki"),
                 "cachedir": str(tmp_path), "sock_dir": str(tmp_path), "transport": "raet"}
    opts = salt.config.apply_master_config(overrides, dict(salt.config.DEFAULT_MASTER_OPTS))
    accepted = tmp_path / "pki" / "minions"
    accepted.mkdir(parents=True)
    for mid in ("web-1", "web-2", "db-1"):
        (accepted / mid).write_text("key")
    return opts


def test_presence_status_splits_the_matched_ids_by_the_daemons_presence(tmp_path, monkeypatch):
    opts = _master_opts(tmp_path)
    present = {"web-1": "127.0.0.1", "db-1": "127.0.0.1", "res-9": "127.0.0.1"}
    monkeypatch.setattr(transport, "present_minions", lambda opts, timeout: present)
    assert registry.presence_status(opts, "*", "glob") == (["db-1", "web-1"], ["web-2"])
    assert registry.presence_status(opts, "web-*", "glob") == (["web-1"], ["web-2"])
    assert registry.presence_status(opts, "web-2,db-1", "list") == (["db-1"], ["web-2"])
    assert registry.presence_status(opts, "none-*", "glob") == ([], [])
    # a master of masters pings (its syndics' minions have no key here)
    assert registry.presence_status(dict(opts, order_masters=True), "*", "glob") is None


def test_presence_status_is_none_without_a_daemon(tmp_path):
    assert registry.presence_status(_master_opts(tmp_path), "*", "glob") is None


def test_salt_loader_is_patched_for_manage():
    import salt.loader.lazy

    assert hasattr(salt.loader.lazy.LazyLoader._load_module, "__wrapped__")
