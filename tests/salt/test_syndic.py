"""End to end: Salt's syndic (a master of masters, a syndic, a minion below it).

``master`` (127.0.0.1, ``order_masters: True``) is the master of masters; ``master2``
(127.0.0.2) runs salt-master, salt-raet-master and salt-syndic with ``syndic_master`` in its
master config: its salt-raet-master joins the top master under the syndic's id, whose key
the top's operator accepts with ``salt-key``. The minion has master2 only. The tests share
one lab (module scope) and run in file order. With ``SALT_RAET_TRANSPORT=zeromq`` the same
tests run on Salt's ZeroMQ (the baseline).
"""

import re
import time
import uuid

import pytest

import saltlab
from conftest import running_lab

MID = "below-1"


@pytest.fixture(scope="module")
def lab(tmp_path_factory, bin_dir):
    """A master of masters, a syndic and a minion of the syndic, keys unaccepted."""
    with running_lab(tmp_path_factory, bin_dir, [MID], masters=2, syndic=True) as lab:
        yield lab


def syndic_id(lab):
    return lab.syndic.config["id"]


def lookup(lab, node, jid):
    """``salt-run jobs.lookup_jid JID`` on ``node``: the returns by minion ({} if none)."""
    proc = lab.run("salt-run", "jobs.lookup_jid", jid, "--out=json", node=node)
    returns = {}
    for doc in saltlab.json_documents(proc.stdout):
        if isinstance(doc, dict):
            returns.update(doc)
    return returns


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
    if lab.raet:
        # the top's daemon sees the syndic as a main estate (what makes it a syndic there)
        row = lab.raet_row(syndic_id(lab), node=top)
        assert row.get("allowed") and row.get("main"), row
        # and the syndic's daemon its master of masters
        status = lab.raet_status(node=syndic)
        assert [m["state"] for m in status.get("masters", [])] == ["joined"], status


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
                     lambda: lookup(lab, top, jid) == {MID: token}, 60)


def test_a_glob_of_the_top_lists_the_minions_below(lab):
    top, _ = lab.masters()
    returns = lab.wait_ping([MID], deadline_s=120, node=top)
    assert returns.get(MID) is True, returns
    # a target the top has no key for reaches the syndic's minion too
    returns = lab.salt("below-*", "test.ping", timeout_s=10, node=top)
    assert returns == {MID: True}, returns
