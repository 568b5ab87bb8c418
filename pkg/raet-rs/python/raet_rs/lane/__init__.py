"""The lane: RAET over Unix datagram sockets (``stacking.LaneStack``, ``yarding.RemoteYard``)."""

from . import stacking, yarding

__all__ = ["stacking", "yarding"]
