"""Constants and exceptions of the reference's ``raet.raeting`` that programs use."""

import collections
import enum

from ._native import StackClosedError, StackError

__all__ = [
    "RAET_PORT",
    "RAET_TEST_PORT",
    "Acceptance",
    "AutoMode",
    "BodyKind",
    "StackClosedError",
    "StackError",
    "autoModes",
]

RAET_PORT = 7530
RAET_TEST_PORT = 7531


class AutoMode(enum.IntEnum):
    """How the keys of a joining remote are accepted."""

    never = 0
    once = 1
    always = 2


class BodyKind(enum.IntEnum):
    """How a message body is encoded (a stack's ``Bk``: json or msgpack)."""

    nada = 0
    json = 1
    raw = 2
    msgpack = 3


class Acceptance(enum.IntEnum):
    """The decision on a remote role's keys."""

    pending = 0
    accepted = 1
    rejected = 2


# The older tutorial's spelling: ``raeting.autoModes.once == 1``.
autoModes = collections.namedtuple("AutoModes", [m.name for m in AutoMode])(
    *[m.value for m in AutoMode]
)
