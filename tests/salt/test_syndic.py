"""End to end: Salt's syndic (a master of masters, a syndic, a minion below it).

``master`` (127.0.0.1, ``order_masters: True``) is the master of masters; ``master2``
(127.0.0.2) runs salt-master, salt-raet-master and salt-syndic with ``syndic_master`` in its
master config: its salt-raet-master joins the top master under the syndic's id, whose key
the top's operator accepts with ``salt-key``. The minion has master2 only. The tests share
one lab (module scope) and run in file order. There is no ZeroMQ baseline of this file:
with ``SALT_RAET_TRANSPORT=zeromq`` (Salt 3008.5, 2026-12-07) the syndic's key is accepted on
the top ("Authentication accepted from lab_master2") but every request of salt-syndic to the
top then times out ("fire_master failed: master could not be contacted. Request timed
out"), so no job of the top reaches the minion below; not investigated further, the file is
skipped on ZeroMQ.
"""

import os
import re
import signal
import subprocess
import time
import uuid

import pytest

import saltlab
from conftest import running_lab

MID = "below-1"

pytestmark = pytest.mark.skipif(
    os.environ.get("SALT_RAET_TRANSPORT", "raet") != "raet",
    reason="no ZeroMQ baseline: salt-syndic's requests to the top time out in this lab "
           "(module docstring)")


@pytest.fixture(scope="module")
def lab(tmp_path_factory, bin_dir):
    """A master of masters, a syndic and a minion of the syndic, keys unaccepted."""
    with running_lab(tmp_path_factory, bin_dir, [MID], masters=2, syndic=True) as lab:
        yield lab


def syndic_id(lab):
    return lab.syndic.config["id"]


@pytest.mark.core
def test_the_syndic_answers_for_its_minion_once_the_top_accepts_its_key(lab):
    top, syndic = lab.masters()
    lab.wait_pending([MID], deadline_s=180, node=syndic)
    lab.accept(MID, node=syndic)
    lab.wait_ping([MID], deadline_s=180, node=syndic)
    # the syndic's key waits on the top as a minion's would, under the syndic's id
    lab.wait_pending([syndic_id(lab)], deadline_s=180, node=top)
    assert MID not in lab.salt("*", "test.ping", timeout_s=5, node=top)
    lab.accept(syndic_id(lab), node=top)
    started = time.monotonic()
    lab.wait_ping([MID], deadline_s=180, node=top)
    print(f"first test.ping of {MID} through the syndic: {time.monotonic() - started:.1f} s "
          "after salt-key -a")
    # the top's daemon sees the syndic as a main estate (what makes it a syndic there)
    row = lab.raet_row(syndic_id(lab), node=top)
    assert row.get("allowed") and row.get("main"), row
    # and the syndic's daemon its master of masters
    status = lab.raet_status(node=syndic)
    assert [m["state"] for m in status.get("masters", [])] == ["joined"], status


@pytest.mark.core
def test_cmd_run_from_the_top_and_its_return_looked_up_there(lab):
    top, _ = lab.masters()
    lab.wait_ping([MID], deadline_s=120, node=top)
    token = uuid.uuid4().hex[:12]
    returns = lab.salt(MID, "cmd.run", f"echo {token}", timeout_s=30, node=top)
    assert returns.get(MID) == token, returns
    proc = lab.run("salt", "--async", MID, "test.echo", token, node=top)
    found = re.search(r"job ID: (\d+)", proc.stdout)
    assert found, (proc.stdout, proc.stderr[-2000:])
    jid = found.group(1)
    saltlab.wait_for(f"the return of job {jid} in the top's job cache",
                     lambda: lab.lookup_jid(jid, top) == {MID: token}, 60)


def test_a_glob_of_the_top_lists_the_minions_below(lab):
    top, _ = lab.masters()
    returns = lab.wait_ping([MID], deadline_s=120, node=top)
    assert returns.get(MID) is True, returns
    # a target the top has no key for reaches the syndic's minion too
    returns = lab.salt("below-*", "test.ping", timeout_s=10, node=top)
    assert returns == {MID: True}, returns



# Sends, as the minion of the config file argv[1], a `_syndic_return` in the name of a
# minion "ghost"; prints the jid, then the master's answer.
FORGED_SYNDIC_RETURN = """
import sys
import saltext_raet
import salt.channel.client, salt.config, salt.utils.jid
opts = salt.config.minion_config(sys.argv[1])
jid = salt.utils.jid.gen_jid(opts)
print(jid)
load = {"cmd": "_syndic_return", "load": [{"id": opts["id"], "jid": jid, "fun": "test.ping",
        "return": {"ghost": {"return": True, "retcode": 0, "success": True}}}]}
with salt.channel.client.ReqChannel.factory(opts) as channel:
    print(repr(channel.send(load, timeout=30)))
"""


def test_a_minion_cannot_return_for_other_minions(lab):
    """A minion's `_syndic_return` (returns in other minions' names) is refused: it is no
    syndic of its master; nothing reaches the job cache."""
    _, syndic = lab.masters()
    lab.wait_ping([MID], deadline_s=120, node=syndic)
    node = lab.minions[MID]
    proc = subprocess.run([str(lab.venv / "bin" / "python"), "-c", FORGED_SYNDIC_RETURN,
                           str(node.conf_dir / "minion")],
                          capture_output=True, text=True, timeout=120)
    lines = proc.stdout.split()
    assert proc.returncode == 0 and len(lines) >= 2, (proc.stdout, proc.stderr[-2000:])
    jid = lines[0]
    assert "bad load: not a syndic" in proc.stdout, proc.stdout
    assert lab.lookup_jid(jid, syndic) == {}


def test_a_star_on_the_top_lists_the_minion_below_and_not_the_syndic(lab):
    top, _ = lab.masters()
    lab.wait_ping([MID], deadline_s=120, node=top)
    started = time.monotonic()
    returns = lab.salt("*", "test.ping", timeout_s=10, node=top)
    print(f"salt '*' test.ping -t 10 on the top: {time.monotonic() - started:.1f} s")
    assert returns == {MID: True}, returns


def top_finger(lab, top):
    """The fingerprint of the top's road key, as ``salt-raet-master --finger`` prints it."""
    out = subprocess.run([str(lab.bin_dir / "salt-raet-master"), "-c", str(top.conf_dir),
                          "--finger"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()[-1]


def test_the_syndic_down_and_back(lab):
    """The syndic's daemon stopped: the top's jobs do not reach the minion below;
    restarted, it rejoins the top by itself. The top's key stays pinned across the restart:
    a daemon whose pin names other keys refuses the top (and says so), and with the pin
    corrected, SIGHUP makes it join again."""
    top, syndic = lab.masters()
    lab.wait_ping([MID], deadline_s=120, node=top)
    daemon = syndic.daemon("salt-raet-master")
    pin = syndic.pki_dir / "syndic_master.raet"
    finger = top_finger(lab, top)
    assert pin.read_text().strip() == finger
    daemon.stop()
    wrong = ":".join(["00"] * 32)
    pin.write_text(wrong + "\n")
    daemon.start()

    def rejected():
        rows = lab.raet_status(node=syndic).get("masters") or [{}]
        return rows[0] if rows[0].get("state") == "rejected" else None
    saltlab.wait_for("the syndic's daemon refusing a top that is not the pinned one",
                     rejected, 90)
    log = (syndic.root / "log" / "master").read_text(errors="replace")
    assert f"is not {wrong}, pinned in {pin}" in log
    # the operator corrects the pin; SIGHUP reads it again and asks the top again
    pin.write_text(finger + "\n")
    os.kill(daemon.pid, signal.SIGHUP)
    lab.wait_ping([MID], deadline_s=180, node=top)
    daemon.stop()
    try:
        returns = lab.salt("*", "test.ping", timeout_s=5, node=top)
        assert MID not in returns, returns
    finally:
        daemon.start()
    started = time.monotonic()
    lab.wait_ping([MID], deadline_s=180, node=top)
    print(f"the syndic restarted: {MID} answers the top again after "
          f"{time.monotonic() - started:.1f} s")


def test_the_master_of_masters_down_and_back(lab):
    """The top's daemon stopped: the syndic's own jobs work, the syndic's daemon sees the
    top lost; restarted, the top reaches the minion again."""
    top, syndic = lab.masters()
    lab.wait_ping([MID], deadline_s=120, node=top)
    daemon = top.daemon("salt-raet-master")
    daemon.stop()
    try:
        assert lab.salt(MID, "test.ping", timeout_s=10, node=syndic) == {MID: True}

        def lost():
            rows = lab.raet_status(node=syndic).get("masters") or [{}]
            return rows[0] if rows[0].get("presence") == "lost" or not rows[0].get(
                "allowed") else None
        started = time.monotonic()
        saltlab.wait_for("the syndic's daemon losing the master of masters", lost, 90)
        print(f"the syndic lost the top {time.monotonic() - started:.1f} s after its stop")
    finally:
        daemon.start()
    started = time.monotonic()
    lab.wait_ping([MID], deadline_s=180, node=top)
    print(f"the top restarted: {MID} answers it again after {time.monotonic() - started:.1f} s")
