"""The road stack for asyncio: ``await stack.join()``, ``await stack.transmit(msg)``,
``async for msg, source in stack``, without a busy loop.

``RoadStack`` takes the keywords of ``raet_rs.road.stacking.RoadStack`` (``stack.sync``) and
offers its other names (``remotes``, ``nameRemotes``, ``addRemote``, ``keep``, ``ha``...)
as they are. The event loop waits on a socket the Rust stack makes readable when it has
something, then services the stack.
"""

import asyncio

from ..raeting import StackClosedError, StackError
from . import stacking

__all__ = ["RoadStack"]


class RoadStack:
    """A road stack whose joins, messages and receptions are awaited."""

    def __init__(self, **kwa):
        self.sync = stacking.RoadStack(**kwa)
        self._turn = None

    def __getattr__(self, name):
        return getattr(self.sync, name)

    def _serviced(self):
        """The stack's socket is readable: service it and wake the waiters."""
        turn, self._turn = self._turn, None
        asyncio.get_running_loop().remove_reader(self.sync._road.fileno())
        try:
            self.sync.serviceAll()
        except Exception as e:  # handed to the waiters
            turn.set_exception(e)
        else:
            turn.set_result(None)

    async def _next_turn(self):
        """Waits until the stack was serviced once more."""
        if self.sync.server.closed:
            raise StackClosedError(f"road stack {self.sync.name!r} is closed")
        if self._turn is None:
            loop = asyncio.get_running_loop()
            self._turn = loop.create_future()
            loop.add_reader(self.sync._road.fileno(), self._serviced)
        await asyncio.shield(self._turn)

    async def _finish(self, op):
        """Waits for the end of the join or message ``op``; raises ``StackError`` if it failed."""
        done = asyncio.get_running_loop().create_future()
        self.sync._waiters[op] = done.set_result
        while not done.done():
            await self._next_turn()
        if done.result() is not None:
            raise StackError(done.result())

    async def join(self, uid=None, cascade=True, timeout=None, **kwa):
        """Joins (then allows) the remote ``uid`` (default: the first one); returns it once
        allowed, or raises ``StackError``."""
        op = self.sync.join(uid=uid)
        remote = self.sync._ops[op][1]
        await self._finish(op)
        return remote

    async def transmit(self, msg, uid=None, timeout=None):
        """Sends ``msg`` to the remote ``uid`` (default: the first one); returns once the
        remote acknowledged it, or raises ``StackError``."""
        await self._finish(self.sync.transmit(msg, uid=uid))

    def __aiter__(self):
        return self

    async def __anext__(self):
        """The next received ``(msg, source_name)``."""
        while not self.sync.rxMsgs:
            await self._next_turn()
        return self.sync.rxMsgs.popleft()

    def close(self):
        """Closes the stack; whoever awaits it gets ``StackClosedError``."""
        turn, self._turn = self._turn, None
        self.sync.server.close()
        if turn is not None:
            asyncio.get_running_loop().remove_reader(self.sync._road.fileno())
            turn.set_exception(StackClosedError(f"road stack {self.sync.name!r} is closed"))
