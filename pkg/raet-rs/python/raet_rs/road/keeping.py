"""The keep of a road stack (the reference's ``raet.road.keeping.RoadKeep``)."""

import os
import shutil

__all__ = ["RoadKeep"]


class RoadKeep:
    """Where a road stack persists its identity and remotes (``dirpath``; ``None``: memory),
    and the operator's decisions on keys for auto mode ``never``."""

    def __init__(self, stack, dirpath, auto):
        self._stack = stack
        self.dirpath = dirpath
        self.auto = auto

    def acceptRemote(self, remote):
        """Accepts the keys of ``remote`` (a pending join completes)."""
        self._stack._road.decide(remote.name, True)

    def rejectRemote(self, remote):
        """Rejects the keys of ``remote`` (it is removed)."""
        self._stack._road.decide(remote.name, False)

    def clearAllDir(self):
        """Removes the keep's directory (nothing for a keep in memory)."""
        if self.dirpath and os.path.exists(self.dirpath):
            shutil.rmtree(self.dirpath)
