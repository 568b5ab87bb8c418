"""The road: RAET over UDP (``stacking.RoadStack``, ``estating.RemoteEstate``; ``aio.RoadStack``
for asyncio)."""

from . import aio, estating, keeping, stacking

__all__ = ["aio", "estating", "keeping", "stacking"]
