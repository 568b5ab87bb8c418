"""The asyncio API: awaited joins and messages, ``async for`` over received messages."""

import asyncio

import pytest

import raet_rs as raet
from raet_rs.road import aio, estating

AUTO = raet.raeting.AutoMode.always.value


async def pair():
    alpha = aio.RoadStack(name="alpha", ha=("127.0.0.1", 0), auto=AUTO)
    beta = aio.RoadStack(name="beta", ha=("127.0.0.1", 0), main=True, auto=AUTO)
    alpha.addRemote(estating.RemoteEstate(stack=alpha.sync, ha=beta.ha))
    return alpha, beta


def test_join_transmit_and_receive():
    async def main():
        alpha, beta = await pair()
        remote = await asyncio.wait_for(alpha.join(), 10)
        assert (remote.name, remote.allowed) == ("beta", True)
        assert alpha.remotes == {remote.uid: remote}

        async def receive(stack, count):
            got = []
            async for msg, source in stack:
                got.append((msg, source))
                if len(got) == count:
                    return got

        receiving = asyncio.ensure_future(receive(beta, 3))
        for n in range(3):
            await asyncio.wait_for(alpha.transmit({"n": n}, remote.uid), 10)
        assert await asyncio.wait_for(receiving, 10) == [({"n": n}, "alpha") for n in range(3)]
        assert not alpha.transactions

        # A message is acknowledged once the receiving program has it: alpha must be reading.
        reading = asyncio.ensure_future(alpha.__anext__())
        await asyncio.wait_for(beta.transmit({"back": True}, beta.nameRemotes["alpha"].uid), 10)
        assert await asyncio.wait_for(reading, 10) == ({"back": True}, "beta")
        alpha.close()
        beta.close()

    asyncio.run(main())


def test_closing_wakes_the_waiters():
    async def main():
        alpha, beta = await pair()
        waiting = asyncio.ensure_future(beta.__anext__())
        await asyncio.sleep(0.05)
        beta.close()
        with pytest.raises(raet.raeting.StackClosedError):
            await asyncio.wait_for(waiting, 10)
        with pytest.raises(raet.raeting.StackClosedError):
            await beta.__anext__()
        alpha.close()

    asyncio.run(main())


def test_a_rejected_join_raises():
    async def main():
        alpha = aio.RoadStack(name="alpha", ha=("127.0.0.1", 0), auto=AUTO)
        beta = aio.RoadStack(name="beta", ha=("127.0.0.1", 0), main=True,
                             auto=raet.raeting.AutoMode.never.value)
        alpha.addRemote(estating.RemoteEstate(stack=alpha.sync, ha=beta.ha))
        joining = asyncio.ensure_future(alpha.join())

        async def reject():
            while "alpha" not in beta.nameRemotes:
                await beta._next_turn()
            beta.keep.rejectRemote(beta.nameRemotes["alpha"])

        await asyncio.wait_for(reject(), 10)
        with pytest.raises(raet.raeting.StackError, match="failed|rejected"):
            await asyncio.wait_for(joining, 10)
        alpha.close()
        beta.close()

    asyncio.run(main())
