"""
Salt's four transport classes over RAET.

Salt processes never open a network socket here: each one attaches a yard to
the lane of the local RAET daemon (``salt-raet-master`` or
``salt-raet-minion``, lane directory ``<sock_dir>/raet``) and exchanges route
envelopes with the daemon's yard ``manor``, which carries them over the UDP
road to the other host. Payloads travel as Salt's own msgpack bytes
(``salt.payload``), base64-encoded inside the JSON envelope by the native
module.

* requests: ``[null, null, "req"]``: on the master host the daemon delivers
  them to a yard serving share ``req`` (the request servers, round-robin); on
  a minion host it sends them to its master. Replies go back to the
  request's source (estate, yard), matched by the request id ``rid``.
* publications: the master's publisher sends them to share ``pub`` of the
  targeted minion estates (or ``"*"``); the minion daemon hands them to the
  yard serving ``pub`` (the minion's PublishClient).

These classes carry whatever the channel layer above gives them: Salt's
stock channels (``raet_salt_crypto: True``) or the RAET-native channels of
:mod:`saltext_raet.channel` (the default).
"""

import asyncio
import ipaddress
import itertools
import json
import logging
import multiprocessing
import os
import selectors
import stat
import time
import uuid

import salt.exceptions
import salt.payload
import salt.transport.base
import salt.utils.msgpack

from saltext_raet import _native

log = logging.getLogger(__name__)

REQ_SHARE = "req"
PUB_SHARE = "pub"
PRESENCE_SHARE = "presence"
REGISTER_SHARE = "register"
STATUS_SHARE = "status"
#: Load key marking a publication packed from a Python object (see ``_pack``).
PACKED = "packed"
#: How often a minion asks its daemon whether the master accepted it yet.
ACCEPTANCE_POLL = 0.5
#: Yard of the master's publish daemon (MWorkers hand it publications).
PUBLISHER_YARD = "publisher"
#: How often a serving yard registers again (the daemon may have restarted).
REGISTER_PERIOD = 2.0
#: Daemon errors that may clear up (master restarting, minion joining): a
#: request is sent again, with backoff, until its timeout.
TRANSIENT_ERRORS = frozenset(
    ("unknown_estate", "unknown_share", "no_such_yard", "send_failed")
)

_yard_numbers = itertools.count()
#: The master config's ``sock_dir`` of a syndic, by master config file (see lane_sock_dir).
_syndic_sock_dirs = {}
#: Lane directories whose daemon was found to report no version (logged once each).
_unversioned = set()


class DaemonVersionError(salt.exceptions.SaltClientError):
    """The local RAET daemon's version does not match saltext-raet's."""


def _major_minor(version):
    return tuple(version.split(".")[:2])


def check_daemon_version(status, lane):
    """
    Returns the daemon's ``status`` (from its lane directory ``lane``) when
    its ``daemon_version`` has the major.minor of this extension's (the
    lane protocol may change between minor versions); raises
    :class:`DaemonVersionError` naming both versions when it has not. A
    daemon too old to report its version is logged (once per lane).
    """
    ours = _native.VERSION
    theirs = status.get("daemon_version")
    if theirs is None:
        if lane not in _unversioned:
            _unversioned.add(lane)
            log.error(
                "RAET: the salt-raet daemon on lane %s does not report its version: it is "
                "older than saltext-raet %s; install salt-raet daemons of version %s",
                lane,
                ours,
                ours,
            )
    elif _major_minor(theirs) != _major_minor(ours):
        raise DaemonVersionError(
            f"RAET: the salt-raet daemon on lane {lane} is version {theirs}, saltext-raet "
            f"is version {ours}: install the same version of both (salt-raet daemons "
            f"{'.'.join(_major_minor(ours))}.x, or saltext-raet "
            f"{'.'.join(_major_minor(theirs))}.x)"
        )
    return status


def is_syndic(opts):
    """Whether ``opts`` are ``salt-syndic``'s (Salt's ``syndic_config``)."""
    return opts.get("__role") == "syndic"


def lane_sock_dir(opts):
    """
    The ``sock_dir`` whose daemon lane this process attaches to: its own,
    except for ``salt-syndic``. Its options carry the minion config's
    ``sock_dir``, while its connection to the master of masters goes through
    the local ``salt-raet-master`` (which joins ``syndic_master``): the master
    config's ``sock_dir`` (the file Salt keeps as ``_minion_conf_file``).
    """
    if not is_syndic(opts):
        return opts["sock_dir"]
    conf = opts.get("_minion_conf_file")
    if conf not in _syndic_sock_dirs:
        import salt.config  # pylint: disable=import-outside-toplevel

        _syndic_sock_dirs[conf] = salt.config.master_config(conf)["sock_dir"]
    return _syndic_sock_dirs[conf]


def yard_name(prefix):
    """A yard name unique on the host: prefix, pid and a counter (no dots)."""
    return f"{prefix}{os.getpid()}x{next(_yard_numbers)}"


def _running_loop(io_loop=None):
    if io_loop is not None:
        asyncio_loop = getattr(io_loop, "asyncio_loop", io_loop)
        if isinstance(asyncio_loop, asyncio.AbstractEventLoop):
            return asyncio_loop
    return asyncio.get_event_loop()


class Endpoint:
    """
    One yard on the local daemon's lane, driven by an asyncio loop: requests
    with replies matched by id, registration of served shares (repeated, so a
    restarted daemon learns them again), and a handler for everything else.
    """

    def __init__(self, opts, loop, prefix, on_message=None, name=None):
        self.loop = loop
        self.lane = _native.lane_dir(lane_sock_dir(opts))
        self.yard = _native.Yard(self.lane, name or yard_name(prefix))
        self.on_message = on_message
        self.estate = None
        self._waiting = {}
        self._registered = None
        self.shares = []
        #: The :class:`DaemonVersionError` of the daemon's last registration answer, if any:
        #: meanwhile this yard serves no share (it registers an empty list).
        self.version_error = None
        #: Per share, the estates whose messages this yard takes (None: any).
        self.accept = None
        self._status = []
        self._tasks = set()
        self._closed = False
        loop.add_reader(self.yard.fileno(), self._readable)

    @property
    def name(self):
        return self.yard.name

    def _spawn(self, coro):
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _readable(self):
        try:
            messages = self.yard.recv()
        except OSError as exc:
            log.warning("RAET lane yard %s: receive failed: %s", self.name, exc)
            return
        for msg in messages:
            if msg.src[1] == _native.MANOR and msg.error is None:
                if msg.src[2] in (REGISTER_SHARE, STATUS_SHARE) and not self._from_daemon(msg):
                    continue
                if msg.src[2] == REGISTER_SHARE:
                    self._on_registered(msg)
                    continue
                if msg.src[2] == STATUS_SHARE:
                    self._on_status(msg)
                    continue
            waiter = self._waiting.pop(msg.rid, None) if msg.rid else None
            if waiter is not None:
                if not waiter.done():
                    waiter.set_result(msg)
            elif self.on_message is not None:
                self._spawn(self.on_message(msg))
            elif msg.error is not None:
                log.debug("RAET lane yard %s: %s (%s)", self.name, msg.error, msg.kind)

    def _from_daemon(self, msg):
        """
        Whether a message from yard ``manor`` is the local daemon's own (a
        register or status reply): its source estate is None or this host's
        (once a registration told it). The daemon refuses a source yard
        ``manor`` from the road; this check does not rely on it.
        """
        estate = msg.src[0]
        if estate is None or self.estate is None or estate == self.estate:
            return True
        log.warning(
            "RAET lane yard %s: dropping a %s reply from estate %s: not this host's daemon (%s)",
            self.name,
            msg.src[2],
            estate,
            self.estate,
        )
        return False

    def _on_registered(self, msg):
        """
        The daemon's answer to a registration, with its version: a daemon of
        another major.minor gets no share served (the yard withdraws them,
        logs why once, and fails the future :meth:`serve` returned with the
        :class:`DaemonVersionError`); once a compatible daemon answers a later
        registration (the daemon was replaced), the shares are served again.
        """
        load = json.loads(msg.load)
        self.estate = load.get("estate")
        try:
            check_daemon_version(load, self.lane)
        except DaemonVersionError as exc:
            if self.version_error is None:
                self.version_error = exc
                log.critical("%s; yard %s does not serve %s", exc, self.name, self.shares)
                self._register()
            if self._registered is not None and not self._registered.done():
                self._registered.set_exception(exc)
            return
        if self.version_error is not None:
            self.version_error = None
            log.warning(
                "RAET: the daemon on lane %s is now version %s: yard %s serves %s",
                self.lane,
                load.get("daemon_version"),
                self.name,
                self.shares,
            )
            self._register()
        if self._registered is not None and not self._registered.done():
            self._registered.set_result(self.estate)

    def _on_status(self, msg):
        waiters, self._status = self._status, []
        status = json.loads(msg.load)
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(status)

    async def status(self, timeout=5.0):
        """
        The daemon's status (its peers, routing counters); raises
        :class:`DaemonVersionError` for a daemon of another version.
        """
        waiter = self.loop.create_future()
        self._status.append(waiter)
        self.send((None, _native.MANOR, STATUS_SHARE))
        status = await asyncio.wait_for(waiter, timeout)
        return check_daemon_version(status, self.lane)

    def send(self, dst, load=None, salt=None, to_yard=_native.MANOR):
        self.yard.send(dst, json.dumps(load or {}), salt, to_yard)

    async def call(self, dst, payload, timeout):
        """
        Sends ``payload`` (bytes) to ``dst`` and returns the reply's payload;
        a transient daemon error is retried with backoff until ``timeout``.
        """
        deadline = self.loop.time() + timeout
        pause = 0.05
        while True:
            rid = uuid.uuid4().hex
            waiter = self.loop.create_future()
            self._waiting[rid] = waiter
            try:
                try:
                    self.send(dst, {"rid": rid}, payload)
                except OSError as exc:
                    # the daemon's lane is not there (daemon stopped): retry
                    waiter.set_result(None)
                    reason, kind = str(exc), "no_daemon"
                left = deadline - self.loop.time()
                try:
                    msg = await asyncio.wait_for(waiter, max(left, 0))
                except asyncio.TimeoutError:
                    raise salt.exceptions.SaltReqTimeoutError("Message timed out")
            finally:
                self._waiting.pop(rid, None)
            if msg is not None:
                if msg.error is None:
                    return msg.salt
                reason, kind = msg.error, msg.kind
                if kind not in TRANSIENT_ERRORS:
                    raise salt.exceptions.SaltClientError(f"RAET: {reason} ({kind})")
            log.debug("RAET request %s not delivered (%s: %s); retrying", rid, kind, reason)
            if self.loop.time() + pause >= deadline:
                raise salt.exceptions.SaltReqTimeoutError(f"Message timed out: {reason}")
            await asyncio.sleep(pause)
            pause = min(pause * 2, 1.0)

    def serve(self, shares):
        """
        Registers ``shares`` now and every :data:`REGISTER_PERIOD` seconds;
        returns a future of the daemon's first answer: this host's estate, or
        a :class:`DaemonVersionError` (see :meth:`_on_registered`).
        """
        self._registered = self.loop.create_future()
        # retrieved here: a caller that does not await it gets no "never retrieved" noise
        self._registered.add_done_callback(
            lambda future: future.cancelled() or future.exception()
        )
        self.shares = list(shares)
        self._spawn(self._register_forever())
        return self._registered

    def set_shares(self, shares):
        """Changes the shares this yard serves, telling the daemon at once."""
        if list(shares) != self.shares:
            self.shares = list(shares)
            self._register()

    def set_accept(self, accept):
        """Restricts, per share, the source estates this yard takes (None: any)."""
        if accept != self.accept:
            self.accept = accept
            self._register()

    def _register(self):
        """Sends the registration; False when the daemon's lane is not there."""
        try:
            shares = [] if self.version_error is not None else self.shares
            registration = {"shares": shares}
            if self.accept is not None and shares:
                registration["accept"] = self.accept
            self.send((None, _native.MANOR, REGISTER_SHARE), registration)
            return True
        except OSError as exc:
            log.debug("RAET daemon not reachable on its lane: %s", exc)
            return False

    async def _register_forever(self):
        warned = False
        while not self._closed:
            if not self._register() and not warned:
                log.warning("RAET daemon not reachable on its lane %s; retrying", self.yard.path)
                warned = True
            await asyncio.sleep(REGISTER_PERIOD)

    def close(self):
        if self._closed:
            return
        if self.shares:
            # withdraw from the daemon's routing table before the socket goes
            self.shares = []
            self._register()
        self._closed = True
        try:
            self.loop.remove_reader(self.yard.fileno())
        except (ValueError, OSError, RuntimeError):
            pass
        for task in list(self._tasks):
            task.cancel()
        for waiter in self._waiting.values():
            if not waiter.done():
                waiter.cancel()
        self._waiting.clear()
        self.yard.close()


def daemon_status(opts, timeout=5.0):
    """
    The local RAET daemon's status, asked synchronously (for code outside an
    event loop, such as Salt's runners): its estate and, per remote, the
    acceptance, joined/allowed state and presence. Raises
    :class:`DaemonVersionError` for a daemon of another version.
    """
    lane = _native.lane_dir(lane_sock_dir(opts))
    yard = _native.Yard(lane, yard_name("status"))
    try:
        yard.send((None, _native.MANOR, STATUS_SHARE), "{}", None, _native.MANOR)
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            selector.register(yard.fileno(), selectors.EVENT_READ)
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no status from the RAET daemon in {timeout} s")
                selector.select(left)
                for msg in yard.recv():
                    if msg.src[2] == STATUS_SHARE and msg.error is None:
                        return check_daemon_version(json.loads(msg.load), lane)
    finally:
        yard.close()


def present_minions(opts, timeout=5.0):
    """
    Minion ids the master's RAET daemon has allowed and hears (alive
    heartbeats), with the host part of their road address: what
    ``manage.present`` and presence events report.
    """
    status = daemon_status(opts, timeout=timeout)
    return {
        remote["id"]: address_host(remote.get("address"))
        for remote in status.get("remotes", [])
        if remote.get("allowed") and remote.get("presence") in ("present", "new")
    }


def address_host(address):
    """
    The host of a road address as the daemon prints it (``10.0.0.5:4510``,
    ``[::1]:4510``): ``10.0.0.5``, ``::1``; an IPv4-mapped one (a dual-stack
    road on ``::`` hears IPv4 peers as ``[::ffff:10.0.0.5]:4510``) as its IPv4
    address; None for none.
    """
    host = (address or "").rpartition(":")[0]
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            mapped = ipaddress.IPv6Address(host).ipv4_mapped
        except ValueError:  # a scoped address (fe80::1%eth0) on an older Python
            mapped = None
        if mapped is not None:
            host = str(mapped)
    return host or None


def _host(entry):
    """The host of ``host:port`` or ``[v6]:port`` (None for None)."""
    if not entry:
        return None
    host = entry.rpartition(":")[0] if ":" in entry else entry
    return host.strip("[]")


def master_row(status, opts):
    """
    On a minion with several masters (``master: [a, b]``: Salt runs one
    connection per master, each with its own ``opts``), the row of the
    minion daemon's ``status["masters"]`` of this connection's master: the
    one whose host is ``opts["master"]``, else whose address is
    ``opts["master_ip"]``. None with one master (everything goes to it), or
    when ``opts`` name no single master (``salt-call``'s, a list).

    For ``salt-syndic`` the row of the master of masters the local
    ``salt-raet-master`` joins (its only one), or a row without ``id`` while
    that daemon has none (``syndic_master`` missing in the master config):
    never None, which would send the syndic's returns to its own master.
    """
    rows = status.get("masters") or []
    master = opts.get("master")
    if is_syndic(opts):
        return rows[0] if rows else {"master": "syndic_master of the master config"}
    if len(rows) < 2 or not isinstance(master, str):
        return None
    for row in rows:
        if _host(row.get("master")) == master:
            return row
    ip = opts.get("master_ip")
    for row in rows:
        if ip and _host(row.get("address")) == ip:
            return row
    return None


class UnansweredJoins:
    """
    Whether a ``master_type: failover`` connection gives its master up
    because the minion daemon's joins get no answer from it: a join the
    daemon started after the connection began waiting (the one in flight
    then may have left before the master's road was up, and the daemon
    tries again only after its join timeout) is still unanswered (the master
    row's ``state`` is ``joining``) ``auth_timeout`` seconds later, what a
    ZeroMQ minion waits for the master's reply to its ``_auth`` (Salt sets
    ``auth_tries`` to 0 with failover).
    """

    def __init__(self, auth_timeout):
        self.auth_timeout = auth_timeout
        self.attempts = None
        self.started = None

    def given_up(self, row, now):
        """``row``: the master's row of the daemon's status, read at ``now``."""
        attempts = row.get("attempts", 0)
        if self.attempts is None:
            self.attempts = attempts
        elif self.started is None and attempts > self.attempts:
            self.started = now
        return (
            row.get("state") == "joining"
            and self.started is not None
            and now - self.started > self.auth_timeout
        )


def failback_master(opts):
    """
    The master a ``master_type: failover`` connection goes back to when it
    is alive again (``master_failback``): the first of the list, while the
    connection is on another; else None.
    """
    masters = opts.get("master_list") or []
    if opts.get("master_type") != "failover" or not opts.get("master_failback"):
        return None
    if not masters or opts.get("master") == masters[0]:
        return None
    return masters[0]


def _check_syndic_id(status, opts):
    """
    Logs an error when ``salt-syndic``'s id (the minion config's) is not the
    estate of the local master daemon, which joins the master of masters
    under the master's id: the master of masters refuses loads naming
    another id than the estate that sent them.
    """
    estate = status.get("estate")
    if is_syndic(opts) and estate and estate != opts.get("id"):
        log.error(
            "RAET: salt-syndic's id %r (minion config) is not %r, the master's id under which "
            "salt-raet-master joins the master of masters, which refuses this syndic's loads: "
            "set the same id in both files",
            opts.get("id"),
            estate,
        )


async def own_master(endpoint, opts, timeout):
    """
    The estate of this Salt connection's master (:func:`master_row`), once
    the minion daemon joined it (waiting up to ``timeout``); None when
    requests go to the daemon's masters in order (one master, or none named).
    """
    deadline = endpoint.loop.time() + timeout
    while True:
        left = deadline - endpoint.loop.time()
        try:
            status = await endpoint.status(timeout=max(min(5.0, left), 0.1))
        except (asyncio.TimeoutError, OSError) as exc:
            # the daemon is not there (restarting): ask again until the deadline
            status, waiting_for = None, f"the local salt-raet-minion daemon ({exc})"
        if status is not None:
            row = master_row(status, opts)
            if row is None:
                return None
            if row.get("id"):
                return row["id"]
            waiting_for = f"master {row.get('master')} to be joined"
        if endpoint.loop.time() + ACCEPTANCE_POLL >= deadline:
            raise salt.exceptions.SaltReqTimeoutError(f"Message timed out: waiting for {waiting_for}")
        await asyncio.sleep(ACCEPTANCE_POLL)


class _EndpointClient:
    """Closing of a client transport that owns one :class:`Endpoint`."""

    _closing = False
    _endpoint = None

    def close(self):
        if self._closing:
            return
        self._closing = True
        if self._endpoint is not None:
            self._endpoint.close()
            self._endpoint = None


_UNKNOWN = object()


class RequestClient(_EndpointClient, salt.transport.base.RequestClient):
    """Requests to the master: through the local daemon, no RAET join of its own."""

    ttype = "raet"

    def __init__(self, opts, io_loop, **kwargs):
        super().__init__(opts, io_loop, **kwargs)
        self.opts = opts
        self.io_loop = io_loop
        self._endpoint = None
        self._closing = False
        #: The estate of this connection's master (None: the daemon's first master).
        self._master = _UNKNOWN

    async def connect(self):  # pylint: disable=invalid-overridden-method
        self._connect_called = True
        if self._endpoint is None:
            self._endpoint = Endpoint(self.opts, asyncio.get_running_loop(), "req")

    async def send(self, load, timeout=60):
        await self.connect()
        started = self._endpoint.loop.time()
        if self._master is _UNKNOWN:
            self._master = await own_master(self._endpoint, self.opts, timeout)
        left = timeout - (self._endpoint.loop.time() - started)
        dst = (self._master, None, REQ_SHARE)
        reply = await self._endpoint.call(dst, salt.payload.dumps(load), left)
        return salt.payload.loads(reply) if reply is not None else None


    async def close_async(self):
        self.close()


class RequestServer(salt.transport.base.DaemonizedRequestServer):
    """
    The master's request server: each process that calls :meth:`post_fork`
    attaches a yard serving share ``req``; the daemon spreads requests over
    them.
    """

    def __init__(self, opts):
        super().__init__(opts)
        self.opts = opts
        self.message_handler = None
        self._endpoint = None
        self._with_peer = False

    def pre_fork(self, process_manager, *args, **kwargs):
        """
        Nothing to bind: the RAET daemon owns the network side. Creates the
        file ``workers.ipc`` in ``sock_dir``: salt-api checks that the master
        runs by its existence (ZeroMQ's request device), in both modes.
        """
        marker = os.path.join(self.opts["sock_dir"], "workers.ipc")
        if os.path.lexists(marker):
            # Already there: ours, or the socket of another transport's request device
            # (which cannot be opened: ENXIO); either way salt-api finds it.
            return
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_WRONLY, 0o600))
        except OSError as exc:
            log.warning("cannot create %s (salt-api looks for it): %s", marker, exc)

    def post_fork(self, message_handler, io_loop, **kwargs):
        """
        Serves requests with ``message_handler``. With ``raet_with_peer=True``
        (the native channel) the handler also gets the authenticated minion id
        of the request, or ``None`` for a process of this host.
        """
        self.message_handler = message_handler
        self._with_peer = bool(kwargs.get("raet_with_peer"))
        loop = _running_loop(io_loop)
        self._endpoint = Endpoint(self.opts, loop, "mworker", on_message=self._on_request)
        self._endpoint.serve([REQ_SHARE])

    async def _on_request(self, msg):
        if msg.error is not None or msg.salt is None or msg.rid is None:
            log.debug("RAET request server: ignoring %s (%s)", msg.error, msg.kind)
            return
        estate, yard = msg.src[0], msg.src[1]
        try:
            payload = salt.payload.loads(msg.salt)
        except Exception as exc:  # pylint: disable=broad-except
            log.warning("RAET request from %s/%s is not a Salt payload: %s", estate, yard, exc)
            reply = "bad load"
        else:
            if self._with_peer:
                peer = None if estate == self._endpoint.estate else estate
                reply = await self.message_handler(payload, peer)
            else:
                reply = await self.message_handler(payload)
        try:
            self._endpoint.send((estate, yard, None), {"rid": msg.rid}, salt.payload.dumps(reply))
        except OSError as exc:
            log.warning("RAET reply to %s/%s not sent: %s", estate, yard, exc)

    def close(self):
        if self._endpoint is not None:
            self._endpoint.close()
            self._endpoint = None


def _pack(payload):
    """
    The envelope load and the bytes carrying a publication: bytes go as they
    are; any other object (Salt's TCP and WebSocket transports publish dicts
    as well) is msgpack-packed as their frames are (bytes stay bytes, str
    stay str) and marked :data:`PACKED`, so that the receiver gets the same
    object back.
    """
    if isinstance(payload, bytes):
        return None, payload
    return {PACKED: True}, salt.utils.msgpack.dumps(payload, use_bin_type=True)


def _unpack(msg):
    """The object a publication carries (see :func:`_pack`)."""
    if msg.salt is not None and json.loads(msg.load).get(PACKED):
        return salt.utils.msgpack.loads(msg.salt, raw=False)
    return msg.salt


class PublishServer(salt.transport.base.DaemonizedPublishServer):
    """
    The master's publisher: MWorkers hand publications to the publish daemon's
    yard; the daemon process sends them to the targeted minions' ``pub``
    share through the RAET daemon.
    """

    def __init__(
        self,
        opts,
        pub_host=None,
        pub_port=None,
        pub_path=None,
        pull_host=None,
        pull_port=None,
        pull_path=None,
        pull_path_perms=0o600,
        pub_path_perms=0o600,
        started=None,
    ):
        self.opts = opts
        self.pull_path = pull_path
        self.pull_path_perms = pull_path_perms
        self.started = started if started is not None else multiprocessing.Event()
        self._endpoint = None

    @classmethod
    def support_ssl(cls):
        return False

    def topic_support(self):
        return True

    def __getstate__(self):
        return {
            "opts": self.opts,
            "pull_path": self.pull_path,
            "pull_path_perms": self.pull_path_perms,
            "started": self.started,
        }

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._endpoint = None

    def mark_ready(self):
        """
        Creates Salt's ``publish_pull.ipc`` marker (LocalClient refuses to
        publish without it) and sets ``started``. A socket of that name left
        by another transport (the master ran ZeroMQ before) is replaced: it
        cannot be opened as a file.
        """
        if self.pull_path:
            try:
                if not stat.S_ISREG(os.lstat(self.pull_path).st_mode):
                    os.unlink(self.pull_path)
            except FileNotFoundError:
                pass
            fd = os.open(self.pull_path, os.O_CREAT | os.O_WRONLY, self.pull_path_perms)
            os.close(fd)
            os.chmod(self.pull_path, self.pull_path_perms)
        self.started.set()

    def publish_daemon(
        self,
        publish_payload,
        presence_callback=None,
        remove_presence_callback=None,
        secrets=None,
        started=None,
    ):
        if started is not None:
            self.started = started
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            # publisher() returns once serving: a failure ends the process, with its traceback
            loop.run_until_complete(
                self.publisher(publish_payload, presence_callback, remove_presence_callback, loop)
            )
            loop.run_forever()
        finally:
            self.close()
            loop.close()

    async def publisher(
        self,
        publish_payload,
        presence_callback=None,
        remove_presence_callback=None,
        io_loop=None,
    ):
        loop = _running_loop(io_loop)

        async def on_message(msg):
            if msg.salt is None or msg.error is not None:
                return
            if msg.src[0] is not None or msg.yard == _native.MANOR:
                # Salt signs and sends whatever reaches this yard: only a process of this
                # host hands it publications, straight over the lane (see publish()); a
                # message relayed by the daemon (from the road or not) has a source estate
                log.warning(
                    "RAET publisher: dropping a message from %s/%s (lane yard %s): "
                    "publications come straight from a local yard only",
                    msg.src[0],
                    msg.src[1],
                    msg.yard,
                )
                return
            refused = getattr(self._endpoint, "version_error", None)
            if refused is not None:
                log.error("RAET publisher: publication dropped: %s", refused)
                return
            await publish_payload(_unpack(msg))

        self._endpoint = Endpoint(
            self.opts, loop, PUBLISHER_YARD, on_message=on_message, name=PUBLISHER_YARD
        )
        # no share: registering checks the daemon's version (and is repeated, as the
        # daemon may be replaced); publications are refused meanwhile
        self._endpoint.serve([])
        self.mark_ready()

    def _lane(self):
        if self._endpoint is None:
            self._endpoint = Endpoint(self.opts, asyncio.get_event_loop(), "pub")
        return self._endpoint

    async def publish_payload(self, payload, topic_list=None, raw_payload=None):
        """Sends a publication to the minions of ``topic_list`` (all when empty)."""
        self.send_to(payload, topic_list)

    def send_to(self, payload, minions=None):
        """
        Sends ``payload`` (bytes, or an object :func:`_pack` packs) to share
        ``pub`` of each minion of ``minions`` (a message each, so that an
        absent minion does not stop the others), or of every joined minion
        when ``minions`` is None.
        """
        lane = self._lane()
        load, data = _pack(payload)
        for estate in ["*"] if minions is None else minions:
            try:
                lane.send((estate, None, PUB_SHARE), load, data)
            except OSError as exc:
                log.warning("RAET publication to %s not sent: %s", estate, exc)

    async def publish(self, payload, **kwargs):
        """Hands a publication (bytes, or an object) to the publish daemon."""
        load, data = _pack(payload)
        self._lane().send((None, PUBLISHER_YARD, None), load, data, PUBLISHER_YARD)

    def pre_fork(self, process_manager, *args, **kwargs):
        process_manager.add_process(self.publish_daemon, args=(self.publish_payload,))

    def connect(self, timeout=None):
        self._lane()

    def close(self):
        if self._endpoint is not None:
            self._endpoint.close()
            self._endpoint = None


class PublishClient(_EndpointClient, salt.transport.base.PublishClient):
    """
    The minion's subscriber: a yard serving share ``pub`` (publications) and
    ``presence`` (the daemon's view of its masters).
    """

    ttype = "raet"

    def __init__(self, opts, io_loop, host=None, port=None, path=None, **kwargs):
        super().__init__(opts, io_loop, **kwargs)
        self.opts = opts
        self.io_loop = io_loop
        self._endpoint = None
        self._callback = None
        self._queue = asyncio.Queue()
        self._receiving = False
        self._connect_callback = None
        self._disconnect_callback = None
        self._failback_callback = None
        self._closing = False
        #: The estate of this connection's master on a multi-master minion.
        self._master = None

    async def connect(  # pylint: disable=arguments-differ,invalid-overridden-method
        self,
        port=None,
        connect_callback=None,
        disconnect_callback=None,
        timeout=None,
        failback_callback=None,
    ):
        """
        ``failback_callback(master)``: called once when the first master of a
        ``master_type: failover`` list with ``master_failback`` is joined and
        allowed again while this connection is on another master.
        """
        self._connect_called = True
        self._connect_callback = connect_callback
        self._disconnect_callback = disconnect_callback
        self._failback_callback = failback_callback
        if self._endpoint is None:
            self._endpoint = Endpoint(
                self.opts, asyncio.get_running_loop(), "sub", on_message=self._on_message
            )
            # share pub only once someone takes publications (on_recv or recv): salt-call's
            # SMinion connects a subscriber only to close it, it must not get jobs
            registered = self._endpoint.serve(self._shares())
            try:
                await asyncio.wait_for(asyncio.shield(registered), timeout or 60)
            except asyncio.TimeoutError:
                raise salt.exceptions.SaltClientError(
                    "RAET: the local salt-raet-minion daemon does not answer on "
                    f"{_native.lane_dir(lane_sock_dir(self.opts))}"
                )
            except DaemonVersionError:
                # not connected: the next connect registers (and is checked) again
                self._endpoint.close()
                self._endpoint = None
                raise
            await self._await_master()
        if connect_callback is not None:
            await connect_callback(True)

    async def _await_master(self):
        """
        Waits until the daemon has a joined, allowed master: what Salt's
        ``_auth`` wait is for a ZeroMQ minion (its key pending on the master).
        """
        told = checked_id = False
        # master_type failover: a master that does not answer the daemon's joins is given
        # up, and Salt tunes in to the next one; a pending key is waited for
        unanswered = None
        if self.opts.get("master_type") == "failover":
            unanswered = UnansweredJoins(self.opts.get("auth_timeout", 5))
        while True:
            try:
                status = await self._endpoint.status()
            except (asyncio.TimeoutError, OSError) as exc:
                status = {}
                log.debug("RAET: no status from the minion daemon yet: %s", exc)
            if not checked_id and status.get("estate"):
                checked_id = True
                _check_syndic_id(status, self.opts)
            row = master_row(status, self.opts)
            if row is not None:
                # one connection per master: this one takes its master's publications
                if row.get("allowed") and row.get("id"):
                    self._master = row["id"]
                    self._endpoint.set_accept({PUB_SHARE: [self._master]})
                    return
                if unanswered is not None and unanswered.given_up(row, time.monotonic()):
                    log.warning(
                        "RAET: master %s does not answer this minion's joins: giving it up "
                        "(master_type failover)",
                        self.opts.get("master"),
                    )
                    raise salt.exceptions.SaltClientError(
                        f"RAET: master {self.opts.get('master')} does not answer this "
                        "minion's joins"
                    )
            elif any(remote.get("allowed") for remote in status.get("remotes", [])):
                return
            if not told:
                log.info("RAET: waiting for the master to accept this minion's key")
                told = True
            await asyncio.sleep(ACCEPTANCE_POLL)

    async def _on_message(self, msg):
        share = msg.src[2]
        if share == PRESENCE_SHARE:
            await self._on_presence(json.loads(msg.load))
            return
        if msg.error is not None or msg.salt is None:
            log.debug("RAET subscriber: ignoring %s (%s)", msg.error, msg.kind)
            return
        payload = _unpack(msg)
        if self._callback is not None:
            await self._callback(payload)
        else:
            self._queue.put_nowait(payload)

    async def _on_presence(self, load):
        change = load.get("change")
        if self._master is not None and load.get("id") != self._master:
            if change in ("new", "present"):
                await self._fail_back_to(load.get("id"))
            return
        if change == "lost" and self._disconnect_callback is not None:
            self._disconnect_callback()
        elif change in ("new", "present") and self._connect_callback is not None:
            await self._connect_callback(True)

    async def _fail_back_to(self, estate):
        """
        Salt's ``master_failback`` with RAET presence as the liveness signal:
        when ``estate``, back, is the first master of the failover list and
        this connection is on another one, calls the failback callback (Salt
        fires ``__master_failback`` and connects to the first master again).
        """
        first = failback_master(self.opts)
        if first is None or self._failback_callback is None:
            return
        try:
            status = await self._endpoint.status()
        except (asyncio.TimeoutError, OSError) as exc:
            log.debug("RAET: no status from the minion daemon: %s", exc)
            return
        row = master_row(status, {"master": first})
        if row is None or row.get("id") != estate or not row.get("allowed"):
            return
        callback, self._failback_callback = self._failback_callback, None
        log.info("RAET: master %s is back: failing back to it (master_failback)", first)
        callback(first)

    def _shares(self):
        taking = self._callback is not None or self._receiving
        return [PUB_SHARE, PRESENCE_SHARE] if taking else [PRESENCE_SHARE]

    def on_recv(self, callback):
        self._callback = callback
        if self._endpoint is not None:
            self._endpoint.set_shares(self._shares())

    def _decode_messages(self, messages):
        if isinstance(messages, dict):
            return messages
        return salt.payload.loads(messages)

    async def recv(self, timeout=None):
        if not self._receiving:
            self._receiving = True
            if self._endpoint is not None:
                self._endpoint.set_shares(self._shares())
        if timeout == 0:
            try:
                return self._queue.get_nowait()
            except asyncio.QueueEmpty:
                return None
        if timeout is None:
            return await self._queue.get()
        return await asyncio.wait_for(self._queue.get(), timeout)

    async def send(self, msg):
        """Presence is RAET's own (alive heartbeats): nothing to send."""

