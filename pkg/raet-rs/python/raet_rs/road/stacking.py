"""The road stack (the reference's ``raet.road.stacking.RoadStack``) on the Rust stack."""

import collections
import itertools
import os

from .. import stacking
from .._native import Road
from ..raeting import RAET_PORT, Acceptance, AutoMode, BodyKind, StackError
from .estating import RemoteEstate, _address
from .keeping import RoadKeep

__all__ = ["RoadStack", "Transaction"]

Transaction = collections.namedtuple("Transaction", ["kind", "uid"])
Transaction.__doc__ = """A join or message in progress: ``kind`` is 'join' or 'message'."""

# Provisional uids of remotes the program made, until their join tells the stack's own
# (which are 32-bit).
_PROVISIONAL = 1 << 32
_provisional_uids = itertools.count(_PROVISIONAL)


class _Server:
    """The stack's socket, as far as programs use it (``stack.server.close()``)."""

    def __init__(self, road):
        self._road = road

    @property
    def ha(self):
        return self._road.ha

    @property
    def closed(self):
        return self._road.closed

    def close(self):
        """Stops the stack and closes its socket; later calls on the stack raise
        ``StackClosedError``."""
        self._road.close()


class RoadStack(stacking.Stack):
    """A RAET estate on a UDP socket.

    The Rust stack runs on a background thread: it receives, answers, retries and keeps
    presence whether or not the program calls ``serviceAll``; ``serviceAll`` hands over what
    happened since (messages into ``rxMsgs``, the remotes' states, the end of joins and
    messages). ``dirpath`` (or ``basedirpath``/``name``) persists the estate's identity and
    remotes; without either the keep is in memory. ``Bk`` (as the reference's class
    attribute, read when the stack is built: set it on a subclass or pass ``Bk=``) is the
    body kind of the messages it sends; received ones are read in either kind.
    """

    Bk = BodyKind.json

    def __init__(
        self,
        name="",
        ha=None,
        main=None,
        auto=None,
        dirpath="",
        basedirpath="",
        role=None,
        Bk=None,
        **kwa,
    ):
        super().__init__(name)
        if Bk is not None:
            self.Bk = BodyKind(Bk)
        ha = _address(ha if ha is not None else ("", RAET_PORT))
        auto = AutoMode(auto if auto is not None else AutoMode.never)
        if not dirpath and basedirpath:
            dirpath = os.path.join(basedirpath, name)
        dirpath = os.path.abspath(os.path.expanduser(dirpath)) if dirpath else None
        self.main = bool(main)
        self._road = Road(name, ha, self.main, int(auto), dirpath, role, int(self.Bk))
        self.ha = self._road.ha
        self.server = _Server(self._road)
        self.keep = RoadKeep(self, dirpath, auto)
        self._ops = {}
        # Callbacks of raet_rs.road.aio: op id -> called with the error (None: success).
        self._waiters = {}
        self.stats = collections.Counter()
        self._refresh()  # the remotes restored from the keep

    def _provisionalUid(self):
        return next(_provisional_uids)

    @property
    def transactions(self):
        """Joins and messages in progress: ours, and the joins of remotes whose keys wait
        for the operator (auto mode never)."""
        ours = [transaction for transaction, _ in self._ops.values()]
        theirs = [
            Transaction("join", remote.uid)
            for remote in self.remotes.values()
            if remote.acceptance == Acceptance.pending and not remote.joined
        ]
        return ours + [t for t in theirs if t not in ours]

    def serviceAll(self):
        """Hands over, without blocking, what the stack did since the last call."""
        changed = False
        for item in self._road.poll():
            if item[0] == "message":
                _, name, _uid, text = item
                self._received(text, name)
            elif item[0] == "event":
                changed = True
            else:
                changed |= self._done(*item[1:])
        if changed:
            self._refresh()

    def _done(self, op, uid, error):
        """A join or message ended; whether the remotes must be refreshed."""
        transaction, remote = self._ops.pop(op)
        if error is not None:
            self.stats[f"{transaction.kind}_failed"] += 1
        joined = transaction.kind == "join" and uid is not None
        if joined and remote.uid != uid:
            self.removeRemote(remote)
            self.remotes.pop(uid, None)
            remote.uid = uid
            self.remotes[uid] = remote
        waiter = self._waiters.pop(op, None)
        if waiter is not None:
            waiter(error)
        return joined

    def _refresh(self):
        """Brings ``remotes`` and ``nameRemotes`` up to date with the stack."""
        known = {}
        for snapshot in self._road.remotes():
            remote = self.remotes.get(snapshot[0]) or RemoteEstate(stack=self, ha=snapshot[3])
            remote._update(snapshot)
            known[remote.uid] = remote
        provisional = {uid: r for uid, r in self.remotes.items() if uid >= _PROVISIONAL}
        self.remotes = {**provisional, **known}
        self.nameRemotes = {r.name: r for r in self.remotes.values() if r.name}

    def join(self, uid=None, cascade=False, timeout=None, **kwa):
        """Joins the remote ``uid`` (default: the first one), then allows it: the Rust stack
        always cascades to the allow, and bounds the join by its own timers. Returns the
        join's id (for raet_rs.road.aio)."""
        remote = self._remote(uid)
        op = self._road.join(*remote.ha)
        self._ops[op] = (Transaction("join", remote.uid), remote)
        return op

    def allow(self, uid=None, cascade=False, timeout=None, **kwa):
        """Allows the remote ``uid``: a join then an allow on the Rust stack (a join of a
        remote that knows us is a short one)."""
        return self.join(uid=uid)

    def alive(self, uid=None, cascade=False, timeout=None, **kwa):
        """Checks that the remote ``uid`` exists. The Rust stack checks every remote's
        presence on its own timers (``remote.alived``); there is nothing to start."""
        self._remote(uid)

    def transmit(self, msg, uid=None, timeout=None):
        """Sends the mapping ``msg`` to the remote ``uid`` (default: the first one). It
        waits for the remote's allow if that is still to come. Returns the message's id
        (for raet_rs.road.aio)."""
        text = self._encode(msg)
        remote = self._remote(uid)
        if remote.uid >= _PROVISIONAL:
            raise StackError(f"remote {remote.uid} has not joined yet: join it first")
        op = self._road.transmit(remote.uid, text)
        self._ops[op] = (Transaction("message", remote.uid), None)
        return op

    def __repr__(self):
        return f"<RoadStack {self.name!r} at {self.ha}>"
