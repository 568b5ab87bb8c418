"""RAET on salt-raet's Rust stacks, with the reference ``raet`` package's API.

``import raet_rs as raet`` and a program written for the reference's tutorial runs on the
Rust road (UDP) and lane (Unix datagram) stacks: ``raet.road.stacking.RoadStack``,
``raet.road.estating.RemoteEstate``, ``raet.lane.stacking.LaneStack``,
``raet.lane.yarding.RemoteYard``, ``raet.raeting.AutoMode``. See docs/python.md.
"""

from . import lane, raeting, road

__version__ = "0.1.0"
__all__ = ["lane", "raeting", "road"]
