"""What the road and lane stacks share (the reference's ``raet.stacking.Stack``)."""

import collections
import json
from collections.abc import Mapping

from .raeting import StackError

__all__ = ["Stack"]


class Stack:
    """Remotes by uid and by name, received messages, message checks."""

    def __init__(self, name):
        if not isinstance(name, str) or not name:
            raise TypeError(f"name must be a non-empty str, not {name!r}")
        self.name = name
        self.remotes = {}
        self.nameRemotes = {}
        self.rxMsgs = collections.deque()

    def addRemote(self, remote):
        """Adds ``remote`` (made for this stack) under its uid and name."""
        if remote.stack is not self:
            raise StackError(f"remote {remote.name!r} was made for another stack")
        if remote.uid in self.remotes:
            raise StackError(f"a remote with uid {remote.uid} is already on {self.name!r}")
        self.remotes[remote.uid] = remote
        if remote.name:
            self.nameRemotes[remote.name] = remote

    def removeRemote(self, remote):
        """Forgets ``remote``."""
        self.remotes.pop(remote.uid, None)
        if self.nameRemotes.get(remote.name) is remote:
            del self.nameRemotes[remote.name]

    def fetchUidByName(self, name):
        """The uid of the remote called ``name`` (``None`` if unknown)."""
        remote = self.nameRemotes.get(name)
        return remote.uid if remote is not None else None

    def _remote(self, uid):
        """The remote ``uid`` (``None``: the first one)."""
        if uid is None:
            if not self.remotes:
                raise StackError(f"{self.name!r} has no remote")
            return next(iter(self.remotes.values()))
        if not isinstance(uid, int) or isinstance(uid, bool):
            raise TypeError(f"uid must be an int, not {uid!r}")
        try:
            return self.remotes[uid]
        except KeyError:
            raise StackError(f"{self.name!r} has no remote with uid {uid}") from None

    @staticmethod
    def _encode(msg):
        """The JSON text of a message (a mapping with string keys)."""
        if not isinstance(msg, Mapping):
            raise TypeError(f"a message must be a mapping, not {type(msg).__name__}")
        try:
            return json.dumps(msg, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as e:
            raise TypeError(f"message cannot be sent as JSON: {e}") from None

    def _received(self, text, source):
        """Appends a received message to ``rxMsgs``."""
        self.rxMsgs.append((json.loads(text), source))
