"""
RAET-native channels: one key layer.

With ``transport: raet`` (and ``raet_salt_crypto`` unset or False) Salt's
channel classes are replaced by these. RAET already authenticates and
encrypts every packet between the two daemons with the keys ``salt-key``
manages, so:

* no RSA ``_auth`` and no AES session keys go on the wire; a minion is
  accepted when its RAET key is (``salt-key -a``);
* the master binds every request to the minion the RAET road authenticated:
  a load naming another minion id is refused;
* the master resolves the target of a publication itself and sends it only
  to the matched minions;
* a master of masters (``order_masters: True``) also sends every
  publication to its syndics, and takes ``_syndic_return`` (returns for other
  minions) from them only. A syndic is an accepted key whose RAET road joined
  as a main estate (a ``salt-raet-master`` with ``syndic_master``).
"""

import logging

import tornado.ioloop

import salt.channel.client
import salt.crypt
import salt.exceptions
import salt.payload
import salt.utils.minions

import saltext_raet.transport

log = logging.getLogger(__name__)

#: The request of a syndic carrying its minions' returns.
SYNDIC_RETURN = "_syndic_return"

#: The minion event of Salt's master failback (``salt.minion.master_event(type="failback")``).
FAILBACK_TAG = "__master_failback"

#: Options of Salt that need its RSA keys on the wire; refused in native mode.
#: (``sign_pub_messages``, on by default, is met by RAET itself: every packet
#: of a publication is signed with the master's Ed25519 key.)
UNSUPPORTED_OPTIONS = (
    "minion_sign_messages",
    "master_sign_pubkey",
    "verify_master_pubkey_sign",
    "cluster_id",
)


def check_options(opts):
    """Refuses, with a clear message, options that native mode cannot honour."""
    used = [name for name in UNSUPPORTED_OPTIONS if opts.get(name)]
    if used:
        raise salt.exceptions.SaltConfigurationError(
            "transport raet (native mode) does not support "
            + ", ".join(used)
            + "; unset them or set raet_salt_crypto: True to keep Salt's RSA layer"
        )


class NativeAuth:
    """
    Stands in for ``salt.crypt.AsyncAuth`` where the channels and the minion
    expect one: always authenticated (the RAET join is the authentication).
    Tokens are not checked by a native master; ``gen_token`` returns a fixed
    marker instead of an RSA signature.
    """

    mpub = "minion_master.pub"

    def __init__(self, opts):
        self.opts = opts

    @property
    def authenticated(self):
        return True

    async def authenticate(self, callback=None):
        return True

    def gen_token(self, clear_tok):
        return b"raet"

    def invalidate(self):
        pass

    @property
    def creds(self):
        return {"publish_port": self.opts.get("publish_port")}


def syndics(opts):
    """
    The ids of the syndics of a master of masters (``order_masters: True``):
    its daemon's allowed peers that joined as main estates (a syndic's
    ``salt-raet-master``; a minion's road is never main). Empty on any
    other master, or when the daemon does not answer (logged).
    """
    if not opts.get("order_masters"):
        return []
    try:
        status = saltext_raet.transport.daemon_status(opts)
    except (OSError, TimeoutError, salt.exceptions.SaltClientError) as exc:
        log.warning("RAET: no syndic list from the master daemon: %s", exc)
        return []
    return [
        remote["id"]
        for remote in status.get("remotes", [])
        if remote.get("main") and remote.get("allowed")
    ]


def _factory_loop(opts, kwargs):
    """What Salt's channel factories do first: ``master_uri`` from kwargs, the io_loop."""
    if "master_uri" not in opts and "master_uri" in kwargs:
        opts["master_uri"] = kwargs["master_uri"]
    return kwargs.get("io_loop") or tornado.ioloop.IOLoop.current()


def _package(opts, load):
    return {"enc": "aes", "load": load, "version": 3, "id": opts.get("id")}


class NativeReqChannel(salt.channel.client.AsyncReqChannel):
    """Requests in the clear over the RAET-encrypted road."""

    @classmethod
    def factory(cls, opts, **kwargs):
        io_loop = _factory_loop(opts, kwargs)
        crypt = kwargs.get("crypt", "aes")
        auth = NativeAuth(opts) if crypt != "clear" else None
        transport = salt.transport.request_client(opts, io_loop=io_loop)
        return cls(
            opts,
            transport,
            auth,
            timeout=opts.get("request_channel_timeout", salt.channel.client.REQUEST_CHANNEL_TIMEOUT),
            tries=opts.get("request_channel_tries", salt.channel.client.REQUEST_CHANNEL_TRIES),
        )

    async def _crypted_transfer(self, load, timeout, raw=False):
        return await self.transport.send(_package(self.opts, load), timeout=timeout)

    async def crypted_transfer_decode_dictentry(self, load, dictkey=None, timeout=None, tries=None):
        ret = await self._send_with_retry(
            _package(self.opts, load),
            self.tries if tries is None else tries,
            self.timeout if timeout is None else timeout,
        )
        if not isinstance(ret, dict) or dictkey not in ret:
            raise salt.crypt.AuthenticationError(f"The master's reply has no {dictkey!r}: {ret!r}")
        return ret[dictkey]


class NativePubChannel(salt.channel.client.AsyncPubChannel):
    """Publications arrive as ``{"enc": "aes", "load": <dict>}``, already decrypted by RAET."""

    @classmethod
    def factory(cls, opts, **kwargs):
        io_loop = _factory_loop(opts, kwargs)
        transport = salt.transport.publish_client(opts, io_loop)
        return cls(opts, transport, NativeAuth(opts), io_loop)

    async def connect(self):
        await self.transport.connect(
            None,
            self.connect_callback,
            self.disconnect_callback,
            failback_callback=self.failback_callback,
        )

    def failback_callback(self, master):
        """
        ``master``, the first of a failover list, is back: fires what Salt's
        ``status.ping_master`` fires when that master answers its ping
        (``master_failback``), and Salt's minion connects to it again.
        """
        if self._closing or self.event is None:
            return
        self.event.fire_event({"master": master}, FAILBACK_TAG)

    async def send_id(self, tok, force_auth):
        return True

    async def _decode_payload(self, payload):
        if (
            not isinstance(payload, dict)
            or payload.get("enc") != "aes"
            or not isinstance(payload.get("load"), dict)
        ):
            log.warning("RAET: dropping a publication that is not a native payload")
            return None
        return payload


class NativeReqServerChannel:
    """
    The master's request channel: hands each request to the MWorker with the
    minion id bound to the RAET-authenticated peer; replies go back in the
    clear (RAET encrypts them).
    """

    @classmethod
    def factory(cls, opts, **kwargs):
        check_options(opts)
        return cls(opts, salt.transport.base.request_server(opts, **kwargs))

    def __init__(self, opts, transport):
        self.opts = opts
        self.transport = transport
        self.payload_handler = None

    def pre_fork(self, process_manager, *args, **kwargs):
        self.transport.pre_fork(process_manager, *args, **kwargs)

    def post_fork(self, payload_handler, io_loop, **kwargs):
        self.payload_handler = payload_handler
        self.transport.post_fork(self.handle_message, io_loop, raet_with_peer=True, **kwargs)

    async def handle_message(self, payload, peer=None):
        """
        ``peer``: the minion id RAET authenticated, or None for a process of
        the master's host (salt, salt-run, LocalClient: clear loads only).
        """
        if not isinstance(payload, dict) or not isinstance(payload.get("load"), dict):
            log.warning("RAET: bad load from %s", peer or "a local client")
            return "bad load"
        enc, load = payload.get("enc"), payload["load"]
        if peer is None:
            if enc != "clear":
                log.warning("RAET: refusing an encrypted load from a local client")
                return "bad load: local clients send clear loads"
        else:
            if enc != "aes":
                log.warning("RAET: refusing a %r load from minion %s", enc, peer)
                return "bad load: minions send aes loads"
            claimed = load.get("id", peer)
            if claimed != peer:
                log.warning("RAET: minion %s sent a load for minion %r: refused", peer, claimed)
                return "bad load: id does not match the RAET peer"
            load["id"] = peer
            if load.get("cmd") == SYNDIC_RETURN and peer not in syndics(self.opts):
                log.warning(
                    "RAET: %s sent returns for other minions (%s) and is no syndic of this "
                    "master (order_masters, a salt-raet-master joined as a syndic): refused",
                    peer,
                    SYNDIC_RETURN,
                )
                return "bad load: not a syndic"
            if load.get("cmd") == "_revoke_auth":
                log.warning(
                    "RAET: minion %s asked to revoke its key (saltutil.revoke_auth), which the "
                    "native mode does not support: use salt-key -d on the master",
                    peer,
                )
                return False
        ret = await self.payload_handler({"enc": enc, "load": load})
        if not isinstance(ret, tuple):
            return ret
        ret, req_opts = ret
        if req_opts.get("fun") == "send_private":
            return {req_opts["key"]: ret}
        return ret

    def close(self):
        self.transport.close()


class NativePubServerChannel:
    """
    The master's publish channel: targets are resolved here (``CkMinions``)
    and the publication goes only to them; no publish daemon process.
    """

    @classmethod
    def factory(cls, opts, **kwargs):
        check_options(opts)
        return cls(opts, salt.transport.publish_server(opts, **kwargs))

    def __init__(self, opts, transport):
        self.opts = opts
        self.transport = transport
        self.ckminions = salt.utils.minions.CkMinions(opts)

    def __getstate__(self):
        return {"opts": self.opts, "transport": self.transport}

    def __setstate__(self, state):
        self.__init__(state["opts"], state["transport"])

    def pre_fork(self, process_manager, *args, **kwargs):
        self.transport.mark_ready()

    async def publish(self, load):
        targets = self.ckminions.check_minions(load["tgt"], load.get("tgt_type", "glob"))
        minions = list(targets.get("minions", []))
        # the syndics match their own minions (Salt's syndics take every publication)
        minions += [syndic for syndic in syndics(self.opts) if syndic not in minions]
        log.debug("RAET publication jid=%s to %s", load.get("jid"), minions)
        self.transport.send_to(salt.payload.dumps({"enc": "aes", "load": load}), minions)

    def close(self):
        self.transport.close()
