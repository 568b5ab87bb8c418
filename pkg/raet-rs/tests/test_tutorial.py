"""The reference raet tutorial's examples, with ``import raet_rs as raet``."""

import os

import pytest

import raet_rs as raet
from conftest import serviceStacks, serviceUntil
from raet_rs.lane import stacking as lanestacking
from raet_rs.lane import yarding
from raet_rs.road import estating, stacking

AUTO = raet.raeting.AutoMode.always.value


def road_pair(closing, auto=AUTO, **beta_kwa):
    """alpha, beta (main), and alpha's remote for beta, as in the tutorial."""
    alpha = stacking.RoadStack(name="alpha", ha=("127.0.0.1", 0), auto=AUTO)
    closing(alpha)
    beta = stacking.RoadStack(name="beta", ha=("127.0.0.1", 0), main=True, auto=auto, **beta_kwa)
    closing(beta)
    remote = estating.RemoteEstate(stack=alpha, ha=beta.ha)
    alpha.addRemote(remote)
    return alpha, beta, remote


def test_two_road_stacks_join(closing):
    alpha, beta, remote = road_pair(closing)
    alpha.join(uid=remote.uid, cascade=True)
    assert alpha.transactions, "the join is a transaction until it completes"
    assert serviceStacks([alpha, beta])

    assert list(alpha.remotes.values()) == [remote]
    assert alpha.nameRemotes == {"beta": remote}
    assert remote.uid in alpha.remotes
    assert (remote.joined, remote.allowed, remote.main) == (True, True, True)
    assert remote.ha == beta.ha
    [theirs] = beta.remotes.values()
    assert beta.nameRemotes == {"alpha": theirs}
    assert (theirs.name, theirs.joined, theirs.allowed, theirs.ha) == ("alpha", True, True, alpha.ha)
    assert theirs.acceptance == raet.raeting.Acceptance.accepted


def test_messages_both_ways(closing):
    alpha, beta, remote = road_pair(closing)
    alpha.join(uid=remote.uid, cascade=True)
    assert serviceStacks([alpha, beta])

    sent = [{"subject": f"Alpha to Beta {i}", "content": "Hello", "n": i} for i in range(5)]
    for msg in sent:
        alpha.transmit(msg, remote.uid)
    reply = {"subject": "Beta to Alpha", "content": {"nested": [1, 2.5, None, True]}}
    beta.transmit(reply, beta.nameRemotes["alpha"].uid)
    assert len(alpha.transactions) == 5 and len(beta.transactions) == 1
    assert serviceStacks([alpha, beta])

    assert list(beta.rxMsgs) == [(msg, "alpha") for msg in sent]
    assert list(alpha.rxMsgs) == [(reply, "beta")]
    # A message larger than one packet is segmented and reassembled.
    big = {"blob": "x" * 100_000}
    beta.transmit(big)
    assert serviceStacks([alpha, beta])
    assert alpha.rxMsgs[-1] == (big, "beta")


def test_msgpack_bodies_as_the_stack_is_configured(closing):
    """beta sends msgpack (``Bk``), alpha json; each reads the other's messages."""
    alpha, beta, remote = road_pair(closing, Bk=raet.raeting.BodyKind.msgpack)
    assert beta.Bk == raet.raeting.BodyKind.msgpack and alpha.Bk == raet.raeting.BodyKind.json
    alpha.join(uid=remote.uid, cascade=True)
    assert serviceStacks([alpha, beta])
    to_alpha = {"subject": "msgpack", "content": {"nested": [1, 2.5, None, True]}, "blob": "y" * 50_000}
    beta.transmit(to_alpha, beta.nameRemotes["alpha"].uid)
    alpha.transmit({"subject": "json"}, remote.uid)
    assert serviceStacks([alpha, beta])
    assert list(alpha.rxMsgs) == [(to_alpha, "beta")]
    assert list(beta.rxMsgs) == [({"subject": "json"}, "alpha")]


def test_an_unknown_body_kind_is_refused(closing):
    with pytest.raises(ValueError):
        closing(stacking.RoadStack(name="gamma", ha=("127.0.0.1", 0), Bk=raet.raeting.BodyKind.raw))


def test_three_road_stacks(closing):
    alpha, beta, remote = road_pair(closing)
    gamma = stacking.RoadStack(name="gamma", ha=("127.0.0.1", 0), auto=AUTO)
    closing(gamma)
    gamma.addRemote(estating.RemoteEstate(stack=gamma, ha=beta.ha))
    alpha.join(uid=remote.uid, cascade=True)
    gamma.join(cascade=True)
    stacks = [alpha, beta, gamma]
    assert serviceStacks(stacks)
    assert sorted(beta.nameRemotes) == ["alpha", "gamma"]

    alpha.transmit({"from": "alpha"})
    gamma.transmit({"from": "gamma"})
    for name in ("alpha", "gamma"):
        beta.transmit({"to": name}, beta.nameRemotes[name].uid)
    assert serviceStacks(stacks)
    assert sorted(beta.rxMsgs, key=lambda m: m[1]) == [
        ({"from": "alpha"}, "alpha"),
        ({"from": "gamma"}, "gamma"),
    ]
    assert list(alpha.rxMsgs) == [({"to": "alpha"}, "beta")]
    assert list(gamma.rxMsgs) == [({"to": "gamma"}, "beta")]


def test_never_mode_waits_for_the_operator(closing):
    alpha, beta, remote = road_pair(closing, auto=raet.raeting.AutoMode.never.value)
    alpha.join(uid=remote.uid, cascade=True)
    assert serviceUntil([alpha, beta], lambda: "alpha" in beta.nameRemotes)
    pending = beta.nameRemotes["alpha"]
    assert pending.acceptance == raet.raeting.Acceptance.pending
    assert not serviceStacks([alpha, beta], duration=0.5), "the join waits for a decision"
    assert pending.joined is None and remote.allowed is not True

    beta.keep.acceptRemote(pending)
    assert serviceStacks([alpha, beta])
    assert remote.allowed is True
    assert beta.nameRemotes["alpha"].acceptance == raet.raeting.Acceptance.accepted


def test_rejected_remote_is_removed(closing):
    alpha, beta, remote = road_pair(closing, auto=raet.raeting.AutoMode.never.value)
    alpha.join(uid=remote.uid, cascade=True)
    assert serviceUntil([alpha, beta], lambda: "alpha" in beta.nameRemotes)
    beta.keep.rejectRemote(beta.nameRemotes["alpha"])
    assert serviceUntil([alpha, beta], lambda: "alpha" not in beta.nameRemotes)
    assert serviceUntil([alpha, beta], lambda: not alpha.transactions)
    assert remote.allowed is not True
    assert alpha.stats["join_failed"] == 1


def test_keep_dir_persists_the_estate(closing, tmp_path):
    alpha, beta, remote = road_pair(closing, basedirpath=str(tmp_path))
    assert beta.keep.dirpath == os.path.join(str(tmp_path), "beta")
    alpha.join(uid=remote.uid, cascade=True)
    assert serviceStacks([alpha, beta])
    beta.server.close()

    again = stacking.RoadStack(name="beta", ha=("127.0.0.1", 0), main=True, auto=AUTO,
                               dirpath=beta.keep.dirpath)
    closing(again)
    [restored] = again.remotes.values()
    assert (restored.name, restored.ha, restored.joined) == ("alpha", alpha.ha, True)
    again.server.close()
    assert os.listdir(beta.keep.dirpath)
    beta.keep.clearAllDir()
    assert not os.path.exists(beta.keep.dirpath)


def test_two_lane_stacks(closing, tmp_path):
    lanename = "cherry"
    main = lanestacking.LaneStack(name="main", uid=1, lanename=lanename, sockdirpath=str(tmp_path))
    closing(main)
    other = lanestacking.LaneStack(name="other", uid=1, lanename=lanename, sockdirpath=str(tmp_path))
    closing(other)
    assert main.ha == os.path.join(str(tmp_path), "cherry.main.uxd")
    main.addRemote(yarding.RemoteYard(stack=main, ha=other.ha))
    other.addRemote(yarding.RemoteYard(stack=other, ha=main.ha))

    to_other = [{"subject": f"Main to Other {i}", "content": "Hello"} for i in range(3)]
    for msg in to_other:
        main.transmit(msg)
    other.transmit({"subject": "Other to Main", "content": "x" * 200_000})
    assert serviceUntil([main, other], lambda: len(other.rxMsgs) == 3 and main.rxMsgs)
    assert list(other.rxMsgs) == [(msg, "main") for msg in to_other]
    assert list(main.rxMsgs) == [({"subject": "Other to Main", "content": "x" * 200_000}, "other")]


def test_lane_message_from_an_unknown_yard_adds_it(closing, tmp_path):
    main = lanestacking.LaneStack(name="main", lanename="lane", sockdirpath=str(tmp_path))
    closing(main)
    other = lanestacking.LaneStack(name="other", lanename="lane", sockdirpath=str(tmp_path))
    closing(other)
    other.addRemote(yarding.RemoteYard(stack=other, name="main"))
    other.transmit({"hello": 1})
    assert serviceUntil([main], lambda: main.rxMsgs)
    assert main.rxMsgs[0] == ({"hello": 1}, "other")
    assert list(main.nameRemotes) == ["other"]
