"""The lane stack (the reference's ``raet.lane.stacking.LaneStack``) on the Rust yard."""

import itertools
import os

from .. import stacking
from .._native import Yard
from .yarding import RemoteYard

__all__ = ["LaneStack"]

# The reference's default directory of the lanes' sockets.
YARD_UXD_DIR = os.path.join("/var", "cache", "raet")


class LaneStack(stacking.Stack):
    """A yard on a lane: a Unix datagram socket ``<sockdirpath>/<lanename>.<name>.uxd``.

    ``transmit`` sends at once; ``serviceAll`` reads what arrived into ``rxMsgs`` (a
    message from a yard not in ``remotes`` adds it, as the reference's default does).
    """

    def __init__(self, name="", uid=None, lanename="lane", sockdirpath="", **kwa):
        super().__init__(name)
        if not isinstance(lanename, str) or not lanename:
            raise TypeError(f"lanename must be a non-empty str, not {lanename!r}")
        self.uid = uid
        self.lanename = lanename
        self.dirpath = os.path.abspath(os.path.expanduser(sockdirpath or YARD_UXD_DIR))
        self._yard = Yard(self.dirpath, lanename, name)
        self.ha = os.fspath(self._yard.ha)
        self.server = self._yard
        self._uids = itertools.count(1)

    def nextUid(self):
        """A uid for a new remote yard."""
        return next(self._uids)

    def serviceAll(self):
        """Reads every message waiting, without blocking."""
        for source, text in self._yard.recv():
            if source not in self.nameRemotes:
                self.addRemote(RemoteYard(stack=self, name=source))
            self._received(text, source)

    def transmit(self, msg, uid=None):
        """Sends the mapping ``msg`` to the remote yard ``uid`` (default: the first one)."""
        text = self._encode(msg)
        self._yard.send(self._remote(uid).name, text)

    def __repr__(self):
        return f"<LaneStack {self.name!r} at {self.ha}>"
