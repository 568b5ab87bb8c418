"""
Registers transport ``raet`` in Salt without editing Salt's files.

Salt has no transport registry: ``salt.transport.base`` picks the transport
classes in if/elif chains over ``"zeromq"``/``"tcp"``/``"ws"``, 3008's worker
pools have three more chains in ``salt.utils.channel``, and the channel
factories build Salt's RSA/AES channels. Salt imports this package through
its ``salt.loader`` entry point while it sets up logging, before any of
those factories runs, in every daemon and command; :func:`install` then

* wraps the four transport factories (other names go to Salt's own);
* appends ``raet`` to ``TRANSPORTS`` (Salt uses it to find the accepted-keys
  directory) and makes ``import salt.transport.raet`` work;
* in native mode (the default: ``raet_salt_crypto`` unset or False) wraps
  the channel factories so that ``transport: raet`` gets the channels of
  :mod:`saltext_raet.channel`;
* lazily (first master-side factory call) maps 3008's worker-pool hop to
  Salt's ``tcp`` transport, which only matters with ``raet_salt_crypto``;
* with transport raet, answers ``CkMinions.connected_ids`` from the master's
  RAET daemon and leaves the ``salt/presence/*`` events to that daemon (it
  fires them at once on a change): Salt's ``Maintenance`` fires none;
* with transport raet, ``LocalClient`` (``salt``, ``cmd``, ``cmd_iter``,
  salt-api) does not wait for the targets the master's RAET daemon knows to
  be absent when the job is published (see :func:`_patch_local_client`);
* with transport raet, the runner ``manage``'s ``status``/``up``/``down``
  answer from that daemon's presence without publishing a ``test.ping`` (see
  :func:`_patch_manage_runner`).
"""

import importlib
import importlib.abc
import importlib.util
import inspect
import logging
import sys

log = logging.getLogger(__name__)

NAME = "raet"
# Salt's jobs checking the masters after a tune-in (salt.minion.master_event(type="alive") /
# (type="failback"): status.master over TCP, status.ping_master)
MASTER_JOBS = ("__master_alive", "__master_failback")
MODULE = "saltext_raet.transport"
#: Salt release lines this extension is built and tested for.
SUPPORTED = ((3007,), (3008,))

_installed = False
_pools_patched = False


class UnsupportedSaltVersion(RuntimeError):
    """The installed Salt is not one this extension supports."""


def check_salt_version(version_info):
    """Raises :class:`UnsupportedSaltVersion` unless Salt is 3007.x or 3008.x."""
    major = tuple(version_info[:1])
    if major not in SUPPORTED:
        found = ".".join(str(part) for part in version_info[:2])
        raise UnsupportedSaltVersion(
            f"saltext-raet supports Salt 3007.x and 3008.x, found Salt {found}; "
            "install a supported Salt or uninstall saltext-raet"
        )


def ttype(opts, explicit=None):
    """The transport name, with the precedence of ``salt.transport.base``."""
    if explicit is not None:
        return explicit
    if "transport" in opts:
        return opts["transport"]
    return opts.get("pillar", {}).get("master", {}).get("transport", "zeromq")


def native(opts):
    """Whether ``opts`` select transport raet with RAET's own identity (native mode)."""
    return ttype(opts) == NAME and not opts.get("raet_salt_crypto", False)


def _transport():
    return importlib.import_module(MODULE)


def _channel():
    return importlib.import_module("saltext_raet.channel")


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """``import salt.transport.raet`` gives :mod:`saltext_raet.transport` itself."""

    alias = f"salt.transport.{NAME}"

    def find_spec(self, fullname, path=None, target=None):
        if fullname == self.alias:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        return _transport()

    def exec_module(self, module):
        module.__spec__ = importlib.util.find_spec(MODULE)


def install():
    """Registers transport ``raet`` (idempotent)."""
    global _installed
    if _installed:
        return
    import salt.version

    check_salt_version(salt.version.__saltstack_version__.info)
    _installed = True
    _wrap_transport_factories()
    _extend_transports()
    sys.meta_path.insert(0, _Alias())
    log.debug("transport %r registered", NAME)


def _extend_transports():
    import salt.transport
    import salt.transport.base

    old = salt.transport.base.TRANSPORTS
    if NAME in old:
        return
    new = tuple(old) + (NAME,)
    # salt.master and others did `from salt.transport import TRANSPORTS`
    for module in list(sys.modules.values()):
        name = getattr(module, "__name__", "") or ""
        if name.startswith("salt") and getattr(module, "TRANSPORTS", None) is old:
            module.TRANSPORTS = new
    salt.transport.base.TRANSPORTS = new
    salt.transport.TRANSPORTS = new


def _wrap_transport_factories():
    import salt.transport
    import salt.transport.base as base

    originals = {
        name: getattr(base, name)
        for name in ("request_server", "request_client", "publish_server", "publish_client")
    }

    def request_server(opts, **kwargs):
        if ttype(opts) != NAME:
            return originals["request_server"](opts, **kwargs)
        _patch_pools()
        return _transport().RequestServer(opts)

    def request_client(opts, io_loop):
        if ttype(opts) != NAME:
            return originals["request_client"](opts, io_loop)
        return _transport().RequestClient(opts, io_loop=io_loop)

    def publish_server(opts, **kwargs):
        name = kwargs.get("transport") or ttype(opts)
        if name != NAME:
            return originals["publish_server"](opts, **kwargs)
        kwargs.pop("transport", None)
        kwargs.pop("ssl", None)
        _patch_pools()
        if "pull_path" not in kwargs:
            import os

            kwargs["pull_path"] = os.path.join(opts["sock_dir"], "publish_pull.ipc")
        for unused in ("pub_host", "pub_port", "pull_host", "pull_port"):
            kwargs.setdefault(unused, None)
        return _transport().PublishServer(opts, **kwargs)

    def publish_client(opts, io_loop, host=None, port=None, path=None, transport=None, **kwargs):
        if ttype(opts, transport) != NAME:
            return originals["publish_client"](
                opts, io_loop, host=host, port=port, path=path, transport=transport, **kwargs
            )
        return _transport().PublishClient(opts, io_loop, host=host, port=port, path=path, **kwargs)

    for name, wrapper in (
        ("request_server", request_server),
        ("request_client", request_client),
        ("publish_server", publish_server),
        ("publish_client", publish_client),
    ):
        wrapper.__wrapped__ = originals[name]
        setattr(base, name, wrapper)
        setattr(salt.transport, name, wrapper)
    _wrap_channel_factories()


def _wrap_classmethod(cls, name, replacement):
    original = getattr(cls, name)

    def factory(klass, opts, **kwargs):
        if klass is cls and native(opts):
            return replacement(opts, **kwargs)
        return original.__func__(klass, opts, **kwargs)

    setattr(cls, name, classmethod(factory))


def _wrap_channel_factories():
    """
    Native mode: the channel factories return RAET-native channels. The
    channel modules import salt.master and friends, so this runs when the
    first of them is imported (a meta-path hook), never earlier.
    """
    targets = {
        "salt.channel.client": _patch_client_channels,
        "salt.channel.server": _patch_server_channels,
        "salt.utils.minions": _patch_presence,
        "salt.master": _patch_maintenance,
        "salt.client": _patch_local_client,
        "salt.utils.schedule": _patch_alive_schedule,
        "salt.loader.lazy": _patch_manage_runner,
    }
    for module_name, patch in targets.items():
        if module_name in sys.modules:
            patch(sys.modules[module_name])
        else:
            sys.meta_path.insert(0, _AfterImport(module_name, patch))


def _patch_client_channels(module):
    _wrap_classmethod(
        module.AsyncReqChannel, "factory", lambda o, **k: _channel().NativeReqChannel.factory(o, **k)
    )
    _wrap_classmethod(
        module.AsyncPubChannel, "factory", lambda o, **k: _channel().NativePubChannel.factory(o, **k)
    )


def _patch_server_channels(module):
    _wrap_classmethod(
        module.ReqServerChannel,
        "factory",
        lambda o, **k: _channel().NativeReqServerChannel.factory(o, **k),
    )
    _wrap_classmethod(
        module.PubServerChannel,
        "factory",
        lambda o, **k: _channel().NativePubServerChannel.factory(o, **k),
    )


def _patch_presence(module):
    """
    ``CkMinions.connected_ids`` (``manage.present``, ``manage.alived``...)
    looks for TCP connections to the publish port; with transport raet it
    asks the master's RAET daemon which minions it hears instead.
    """
    original = module.CkMinions.connected_ids

    def connected_ids(self, subset=None, show_ip=False):
        if ttype(self.opts) != NAME:
            return original(self, subset=subset, show_ip=show_ip)
        try:
            present = _transport().present_minions(self.opts)
        except (OSError, TimeoutError) as exc:
            log.warning("RAET: presence unknown, the master daemon does not answer: %s", exc)
            return set()
        ids = [id_ for id_ in present if not subset or id_ in subset]
        if show_ip:
            return {(id_, present[id_]) for id_ in ids}
        return set(ids)

    module.CkMinions.connected_ids = connected_ids


def _patch_maintenance(module):
    """
    With ``presence_events``, Salt 3007's and 3008's ``Maintenance`` fires
    ``salt/presence/change`` and ``salt/presence/present`` every
    ``loop_interval`` from ``connected_ids``, and so does the master's RAET
    daemon (at once on a change): with transport raet only the daemon fires
    them, as Salt leaves them to the transport with ``tcp``. The wrapped
    ``handle_presence(self, old_present)`` is the same in 3007 and 3008; any
    other form is left alone, with a warning.
    """
    maintenance = getattr(module, "Maintenance", None)
    original = getattr(maintenance, "handle_presence", None)
    params = list(inspect.signature(original).parameters) if original else None
    if params != ["self", "old_present"]:
        log.warning(
            "RAET: salt.master.Maintenance.handle_presence not as in Salt 3007/3008 (%s); "
            "with presence_events, salt/presence events may be fired twice",
            params,
        )
        return

    def handle_presence(self, old_present):
        if ttype(self.opts) == NAME:
            return None
        return original(self, old_present)

    handle_presence.__wrapped__ = original
    maintenance.handle_presence = handle_presence


def _patch_alive_schedule(module):
    """
    After a failover Salt 3007 schedules its TCP check of the new master
    (``status.master``, job ``__master_alive_<master>``) and, with
    ``master_failback``, its ping of the first master (``status.ping_master``,
    job ``__master_failback``) even with ``master_alive_interval: 0``, and runs
    them every second; Salt 3008 adds them only when that interval is
    positive. The TCP check looks for a connection to the master's publish
    port, which a RAET minion never has: it would report the master lost at
    once and the minion would flap between its masters. With transport raet
    such a job (``seconds`` not positive) is not added, as Salt 3008 does;
    RAET presence is the liveness signal (failback included).
    """
    original = module.Schedule.modify_job

    def modify_job(self, name, schedule, *args, **kwargs):
        if (
            ttype(self.opts) == NAME
            and name.startswith(MASTER_JOBS)
            and float(schedule.get("seconds") or 0) <= 0
        ):
            log.debug("RAET: not scheduling %s (presence is the liveness signal)", name)
            return None
        return original(self, name, schedule, *args, **kwargs)

    modify_job.__wrapped__ = original
    module.Schedule.modify_job = modify_job


class _Expected(set):
    """
    The minions a job waits for, never counting those known to be absent:
    ``get_iter_returns`` adds every target listed by the job's
    ``salt/job/<jid>/new`` event to this set again.
    """

    def __init__(self, minions, absent):
        super().__init__(set(minions) - set(absent))
        self.absent = frozenset(absent)

    def update(self, *others):
        for other in others:
            super().update(set(other) - self.absent)

    def add(self, item):
        if item not in self.absent:
            super().add(item)


def _as_set(minions):
    if isinstance(minions, str):
        return {minions}
    return set(minions or ())


def absent_targets(opts, minions):
    """
    The targets of a job (``minions``: ids) that the master's RAET daemon
    knows to be absent: minions with an accepted key that it does not hear
    (lost, never joined, not allowed). Ids without an accepted key (Salt
    3008's resources, a syndic's minions) are never counted absent, and
    nothing is when the daemon does not answer.
    """
    ids = _as_set(minions)
    if not ids or opts.get("order_masters"):
        return set()
    try:
        accepted, present = _accepted_and_present(opts)
    except Exception as exc:  # pylint: disable=broad-except
        log.warning("RAET: presence unknown, waiting for every target: %s", exc)
        return set()
    return (ids & accepted) - present


def _accepted_and_present(opts):
    """
    The ids with an accepted key (Salt's ``CkMinions``) and those the
    master's RAET daemon has allowed and hears; raises when the daemon does
    not answer.
    """
    import salt.utils.minions

    accepted = set(salt.utils.minions.CkMinions(opts)._pki_minions())
    return accepted, set(_transport().present_minions(opts, timeout=2.0))


def presence_status(opts, tgt, tgt_type):
    """
    What the runner ``manage``'s ``_ping`` returns, ``(up, down)``, from the
    master's RAET daemon instead of a ``test.ping`` job: the ids ``tgt``
    matches (Salt's ``CkMinions.check_minions``, as the publication would
    have) that the daemon hears, and those it does not (lost, never joined,
    not allowed), both sorted. None, so that Salt pings as before, with
    ``order_masters`` (a syndic's minions have no key here), when a matched
    id has no accepted key (3008's resources), or when the daemon does not
    answer (warning logged).
    """
    if opts.get("order_masters"):
        return None
    try:
        import salt.utils.minions

        matched = salt.utils.minions.CkMinions(opts).check_minions(tgt, tgt_type)
        targets = set(matched.get("minions", []))
        accepted, present = _accepted_and_present(opts)
    except Exception as exc:  # pylint: disable=broad-except
        log.warning("RAET: presence unknown, manage pings the targets: %s", exc)
        return None
    if not targets <= accepted:
        return None
    return sorted(targets & present), sorted(targets - present)


#: The parameters of the runner ``manage``'s ``_ping`` in Salt 3007 and 3008.
_MANAGE_PING_PARAMS = ["tgt", "tgt_type", "timeout", "gather_job_timeout"]


def _patch_manage_runner(module):
    """
    Salt's runner ``manage`` (``status``, and ``up``/``down`` through it)
    publishes a ``test.ping`` job from its ``_ping`` and waits for the
    returns. Runners are loaded by Salt's ``LazyLoader``, not imported: its
    ``_load_module`` is wrapped so that, with transport raet, the loaded
    ``manage`` module's ``_ping`` answers from the master daemon's presence
    (:func:`presence_status`), publishing no job. Any other form of
    ``_ping`` is left alone, with a warning.
    """
    lazy = getattr(module, "LazyLoader", None)
    original = getattr(lazy, "_load_module", None)
    if original is None:
        log.warning(
            "RAET: salt.loader.lazy.LazyLoader._load_module not as in Salt 3007/3008; "
            "manage.status/up/down ping every target"
        )
        return

    def _load_module(self, name):
        loaded = original(self, name)
        if loaded and name == "manage" and self.tag == "runners" and ttype(self.opts) == NAME:
            _answer_manage_from_presence(self)
        return loaded

    _load_module.__wrapped__ = original
    lazy._load_module = _load_module


def _answer_manage_from_presence(loader):
    """Replaces ``_ping`` in the namespace of the runner ``manage`` ``loader`` just loaded."""
    namespace = getattr(loader._dict.get("manage.status"), "__globals__", {})
    ping = namespace.get("_ping")
    params = list(inspect.signature(ping).parameters) if callable(ping) else None
    if params != _MANAGE_PING_PARAMS:
        log.warning(
            "RAET: the runner manage's _ping not as in Salt 3007/3008 (%s); "
            "manage.status/up/down ping every target",
            params,
        )
        return
    opts = loader.opts

    def _ping(tgt, tgt_type, timeout, gather_job_timeout):
        split = presence_status(opts, tgt, tgt_type)
        if split is None:
            return ping(tgt, tgt_type, timeout, gather_job_timeout)
        log.debug("RAET: manage from presence, no ping: up %s, down %s", *split)
        return split

    _ping.__wrapped__ = ping
    namespace["_ping"] = _ping


def _patch_local_client(module):
    """
    ``LocalClient.get_iter_returns`` (under ``cmd``, ``cmd_iter``, the
    ``salt`` CLI, salt-api, and ``manage.status`` when it pings) waits for
    every target of a job until Salt's timeout and ``gather_job_timeout``
    have passed. With
    transport raet, the targets the master's RAET daemon knows to be absent
    when the job is published (:func:`absent_targets`) are not waited for:
    with ``expect_minions`` they are reported at once as failed returns (the
    CLI prints them "[Not connected]", or "[No response]" when Salt has no
    grains of them, as it would after the timeout), and the iteration ends
    as soon as every present target answered. Present targets keep Salt's
    whole timeout handling.
    """
    client = getattr(module, "LocalClient", None)
    original = getattr(client, "get_iter_returns", None)
    try:
        signature = inspect.signature(original)
    except (TypeError, ValueError):
        signature = None
    if signature is None or list(signature.parameters)[:3] != ["self", "jid", "minions"]:
        log.warning(
            "RAET: salt.client.LocalClient.get_iter_returns not as in Salt 3007/3008; "
            "the CLI waits for absent minions"
        )
        return
    failed_rows = getattr(module, "_iter_failed_missing_returns", None)

    def get_iter_returns(self, jid, minions, *args, **kwargs):
        absent = set()
        if ttype(self.opts) == NAME:
            absent = absent_targets(self.opts, minions)
        if not absent:
            yield from original(self, jid, minions, *args, **kwargs)
            return
        bound = signature.bind(self, jid, minions, *args, **kwargs)
        log.debug("RAET: job %s: not waiting for absent minions %s", jid, sorted(absent))
        if bound.arguments.get("expect_minions"):
            if failed_rows is not None:
                yield from failed_rows(self.opts, set(), absent)
            else:
                for mid in sorted(absent):
                    yield {mid: {"failed": True}}
        expected = _Expected(_as_set(minions), absent)
        yield from original(self, jid, expected, *args, **kwargs)

    get_iter_returns.__wrapped__ = original
    client.get_iter_returns = get_iter_returns


class _AfterImport(importlib.abc.MetaPathFinder):
    """Runs ``patch(module)`` right after ``module_name`` is first imported."""

    def __init__(self, module_name, patch):
        self.module_name = module_name
        self.patch = patch

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.module_name:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        loader, patch = spec.loader, self.patch

        class _Patching(importlib.abc.Loader):
            def create_module(self, spec):
                return loader.create_module(spec)

            def exec_module(self, module):
                loader.exec_module(module)
                patch(module)

        spec.loader = _Patching()
        return spec


def _patch_pools():
    """
    Salt 3008's worker pools: with Salt's channels (``raet_salt_crypto``)
    the PoolRouter process serves the RAET transport and forwards to the
    MWorkers over Salt's ``tcp`` IPC transport. Must not run at hook time:
    importing salt.utils.channel while Salt sets up logging is a circular
    import.
    """
    global _pools_patched
    if _pools_patched:
        return
    _pools_patched = True
    import salt.master  # noqa: F401  (import order: salt.utils.channel needs it)

    try:
        import salt.utils.channel as uchan
    except ImportError:  # Salt 3007: no worker pools
        return
    if not hasattr(uchan, "create_server_transport"):
        return

    def pool_opts(opts):
        if ttype(opts) == NAME:
            opts = dict(opts)
            opts["transport"] = "tcp"
        return opts

    cst, cct, crc = (
        uchan.create_server_transport,
        uchan.create_client_transport,
        uchan.create_request_client,
    )
    uchan.create_server_transport = lambda opts: cst(pool_opts(opts))
    uchan.create_client_transport = lambda opts, io_loop: cct(pool_opts(opts), io_loop)
    uchan.create_request_client = lambda opts, io_loop=None: crc(pool_opts(opts), io_loop)
