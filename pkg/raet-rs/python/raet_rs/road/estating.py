"""Remote estates of a road stack (the reference's ``raet.road.estating``)."""

from ..raeting import Acceptance

__all__ = ["RemoteEstate"]


def _address(ha):
    """``(host, port)`` checked."""
    if (
        not isinstance(ha, tuple)
        or len(ha) != 2
        or not isinstance(ha[0], str)
        or not isinstance(ha[1], int)
        or isinstance(ha[1], bool)
        or not 0 <= ha[1] <= 65535
    ):
        raise TypeError(f"ha must be a (host: str, port: int) tuple, not {ha!r}")
    return (ha[0] or "0.0.0.0", ha[1])


class RemoteEstate:
    """A remote estate: what the stack knows of it, refreshed by ``serviceAll``.

    Made by the program (``RemoteEstate(stack=alpha, ha=beta.ha)``, then
    ``alpha.addRemote(remote)``), it has a provisional uid until its join tells the stack's
    own; remotes that join us are made by the stack.
    """

    def __init__(self, stack, ha, name="", uid=None, **kwa):
        self.stack = stack
        self.ha = _address(ha)
        self.name = name
        self.uid = uid if uid is not None else stack._provisionalUid()
        self.fuid = 0
        self.role = name
        self.joined = None
        self.allowed = None
        self.alived = None
        self.main = False
        self.acceptance = None

    def _update(self, snapshot):
        """Takes the stack's snapshot of this remote."""
        (
            self.uid,
            self.fuid,
            self.name,
            self.ha,
            self.role,
            self.joined,
            self.allowed,
            self.alived,
            self.main,
            acceptance,
        ) = snapshot
        self.acceptance = Acceptance(acceptance) if acceptance is not None else None

    def __repr__(self):
        return f"<RemoteEstate {self.name!r} uid={self.uid} ha={self.ha}>"
