"""Remote yards of a lane stack (the reference's ``raet.lane.yarding``)."""

import os

__all__ = ["RemoteYard", "namesFromHa"]


def namesFromHa(ha):
    """``(lanename, yardname)`` of the socket path ``ha`` (``<dir>/<lane>.<yard>.uxd``)."""
    if not isinstance(ha, (str, os.PathLike)):
        raise TypeError(f"ha must be a socket path, not {ha!r}")
    base = os.path.basename(os.fspath(ha))
    stem, ext = os.path.splitext(base)
    lanename, dot, yardname = stem.partition(".")
    if ext != ".uxd" or not dot or not lanename or not yardname:
        raise ValueError(f"not a yard address <dir>/<lane>.<yard>.uxd: {ha!r}")
    return lanename, yardname


class RemoteYard:
    """Another yard of the stack's lane, by its socket path ``ha`` (or its ``name``)."""

    def __init__(self, stack, ha="", name="", uid=None, **kwa):
        if ha:
            lanename, yardname = namesFromHa(ha)
            if lanename != stack.lanename:
                raise ValueError(f"yard {ha!r} is not on lane {stack.lanename!r}")
            if name and name != yardname:
                raise ValueError(f"yard name {name!r} does not match {ha!r}")
            name = yardname
        if not name:
            raise TypeError("a remote yard needs ha or name")
        self.stack = stack
        self.name = name
        self.ha = ha or os.path.join(stack.dirpath, f"{stack.lanename}.{name}.uxd")
        self.uid = uid if uid is not None else stack.nextUid()

    def __repr__(self):
        return f"<RemoteYard {self.name!r} uid={self.uid}>"
