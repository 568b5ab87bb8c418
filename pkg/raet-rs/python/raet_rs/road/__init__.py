"""The road: RAET over UDP (``stacking.RoadStack``, ``estating.RemoteEstate``)."""

from . import estating, keeping, stacking

__all__ = ["estating", "keeping", "stacking"]
