"""Bad arguments and closed stacks raise Python exceptions (and nothing panics)."""

import socket

import pytest

import raet_rs as raet
from conftest import serviceStacks
from raet_rs.lane import stacking as lanestacking
from raet_rs.lane import yarding
from raet_rs.road import estating, stacking

StackError = raet.raeting.StackError
StackClosedError = raet.raeting.StackClosedError


@pytest.mark.parametrize(
    "kwa, error",
    [
        ({"name": ""}, TypeError),
        ({"name": 7}, TypeError),
        ({"ha": "127.0.0.1:7531"}, TypeError),
        ({"ha": ("127.0.0.1", "7531")}, TypeError),
        ({"ha": ("127.0.0.1", 70000)}, TypeError),
        ({"ha": ("localhost.invalid", 0)}, ValueError),
        ({"auto": 3}, ValueError),
    ],
)
def test_bad_road_stack_arguments(kwa, error):
    args = {"name": "alpha", "ha": ("127.0.0.1", 0), **kwa}
    with pytest.raises(error):
        stacking.RoadStack(**args)


def test_port_in_use_raises():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        with pytest.raises(StackError, match="alpha"):
            stacking.RoadStack(name="alpha", ha=s.getsockname())


def test_bad_messages_and_remotes(closing):
    alpha = stacking.RoadStack(name="alpha", ha=("127.0.0.1", 0), auto=2)
    closing(alpha)
    with pytest.raises(StackError, match="no remote"):
        alpha.transmit({"a": 1})
    with pytest.raises(StackError, match="no remote"):
        alpha.join()
    beta = stacking.RoadStack(name="beta", ha=("127.0.0.1", 0), main=True, auto=2)
    closing(beta)
    remote = estating.RemoteEstate(stack=alpha, ha=beta.ha)
    alpha.addRemote(remote)
    with pytest.raises(StackError, match="already"):
        alpha.addRemote(remote)
    with pytest.raises(StackError, match="another stack"):
        beta.addRemote(remote)
    with pytest.raises(StackError, match="not joined"):
        alpha.transmit({"a": 1}, remote.uid)
    alpha.join(uid=remote.uid)
    assert serviceStacks([alpha, beta])
    for msg in (["not", "a", "mapping"], "text", {"obj": object()}, {"nan": float("nan")}):
        with pytest.raises(TypeError):
            alpha.transmit(msg)
    with pytest.raises(TypeError):
        alpha.transmit({"a": 1}, uid="2")
    with pytest.raises(StackError, match="uid 99"):
        alpha.transmit({"a": 1}, uid=99)
    with pytest.raises(StackError, match="uid 99"):
        alpha.alive(uid=99)
    assert not alpha.transactions, "nothing was queued by the failed calls"


def test_closed_road_stack_raises(closing):
    alpha = stacking.RoadStack(name="alpha", ha=("127.0.0.1", 0))
    beta = stacking.RoadStack(name="beta", ha=("127.0.0.1", 0), main=True, auto=2)
    closing(beta)
    remote = estating.RemoteEstate(stack=alpha, ha=beta.ha)
    alpha.addRemote(remote)
    alpha.server.close()
    assert alpha.server.closed
    alpha.server.close()  # idempotent
    for call in (alpha.serviceAll, alpha.join, lambda: alpha.keep.acceptRemote(remote)):
        with pytest.raises(StackClosedError, match="closed"):
            call()
    assert issubclass(StackClosedError, StackError)
    # The port is free again.
    again = stacking.RoadStack(name="alpha", ha=alpha.ha)
    again.server.close()


def test_bad_lane_arguments_and_closed_lane(tmp_path):
    with pytest.raises(ValueError):
        lanestacking.LaneStack(name="bad name", lanename="lane", sockdirpath=str(tmp_path))
    with pytest.raises(TypeError):
        lanestacking.LaneStack(name="main", lanename=None, sockdirpath=str(tmp_path))
    main = lanestacking.LaneStack(name="main", lanename="lane", sockdirpath=str(tmp_path))
    with pytest.raises(ValueError, match="not on lane"):
        yarding.RemoteYard(stack=main, ha=str(tmp_path / "other.yard.uxd"))
    with pytest.raises(ValueError, match="yard address"):
        yarding.RemoteYard(stack=main, ha=str(tmp_path / "lane.yard.sock"))
    main.addRemote(yarding.RemoteYard(stack=main, name="absent"))
    with pytest.raises(StackError):
        main.transmit({"to": "nobody"})
    with pytest.raises(TypeError):
        main.transmit(b"bytes")
    main.server.close()
    for call in (main.serviceAll, lambda: main.transmit({"a": 1})):
        with pytest.raises(StackClosedError, match="closed"):
            call()
