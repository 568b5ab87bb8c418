"""End to end: Salt's multi-master failover (``master_type: failover``) with RAET presence
as the liveness signal (``master_alive_interval: 0``: no TCP check).

Two masters (``master`` on 127.0.0.1, ``master2`` on 127.0.0.2) and one minion listing both
with ``master_type: failover``: Salt connects it to the first; when salt-raet-minion reports
that master lost, the extension's subscriber tells Salt (``__master_disconnected``) and Salt
tunes in to the next master of the list, whose jobs then return to it. With
``master_failback``, once salt-raet-minion has joined the first master again the subscriber
fires Salt's ``__master_failback`` and Salt goes back to it.
"""

import re
import time
import uuid

import pytest

import saltlab
from conftest import running_lab

MID = "fo-1"


@pytest.fixture(scope="module")
def lab(tmp_path_factory, bin_dir):
    # auth_timeout: how long a connection waits for a master that does not answer before
    # Salt tunes in to the next one (Salt's default: 5 s)
    config = {"master_type": "failover", "auth_timeout": 2, "master_failback": True}
    with running_lab(tmp_path_factory, bin_dir, [MID], masters=2,
                     extra_config=config) as lab:
        yield lab


def echo_returns_to(lab, master, deadline_s):
    """Publishes test.echo from ``master`` until the minion's return lands in that master's
    job cache; returns the job id."""
    def probe():
        lab.check_alive()
        token = f"{master.name}-{uuid.uuid4().hex[:8]}"
        proc = lab.run("salt", "--async", MID, "test.echo", token, node=master)
        found = re.search(r"job ID: (\d+)", proc.stdout)
        if not found:
            return None
        jid = found.group(1)
        def landed():
            proc = lab.run("salt-run", "jobs.lookup_jid", jid, "--out=json", node=master)
            docs = saltlab.json_documents(proc.stdout)
            return any(doc == {MID: token} for doc in docs)
        try:
            saltlab.wait_for(f"job {jid} returned to {master.name}", landed, 15)
        except saltlab.LabError:
            return None
        return jid
    return saltlab.wait_for(f"a job of {master.name} returned", probe, deadline_s, interval_s=1)


def accept_on_both_masters(lab):
    """Accepts the minion's key on each master where it is not accepted yet (a test selected
    alone starts from a fresh lab)."""
    for master in lab.masters():
        if MID not in lab.keys(master).get("minions", []):
            lab.wait_pending([MID], deadline_s=180, node=master)
            lab.accept(MID, node=master)


def stop_first_master(lab):
    """Stops the first master's daemons and waits until salt-raet-minion reports it lost
    (about two ``raet_alive_period`` after the stop; at once if it is already)."""
    first = lab.master
    for name in reversed([d.name for d in first.daemons]):
        first.daemon(name).stop()

    def lost():
        lab.check_alive()
        rows = lab.raet_status(lab.minions[MID]).get("masters", [])
        return any(row.get("id") == first.config["id"] and row.get("presence") == "lost"
                   for row in rows)
    saltlab.wait_for("salt-raet-minion reporting the first master lost", lost, 90)


@pytest.mark.core
def test_the_minion_fails_over_to_the_next_master_when_its_master_is_lost(lab):
    if not lab.raet:
        pytest.skip("failover on presence is RAET's (ZeroMQ needs master_alive_interval)")
    first, second = lab.masters()
    accept_on_both_masters(lab)
    # connected to the first master only: a job of the second, published before one of the
    # first that returns, does not (the minion takes its master's publications only)
    token = uuid.uuid4().hex
    proc = lab.run("salt", "--async", MID, "test.echo", token, node=second)
    early = re.search(r"job ID: (\d+)", proc.stdout)
    assert early, proc.stdout
    echo_returns_to(lab, first, 180)
    proc = lab.run("salt-run", "jobs.lookup_jid", early.group(1), "--out=json", node=second)
    assert token not in proc.stdout, proc.stdout
    stop_first_master(lab)
    echo_returns_to(lab, second, 180)
    log = (lab.minions[MID].root / "log" / "minion").read_text()
    assert "Connection to master 127.0.0.1 lost" in log


def test_a_minion_started_while_its_first_master_is_down_tunes_in_to_the_next(lab):
    """Salt's failover at start: the connection to a master that does not answer the minion
    daemon's joins (status ``joining``, not ``pending``) gives up after auth_timeout, and
    Salt connects to the next master of the list."""
    if not lab.raet:
        pytest.skip("the ZeroMQ lab minion waits for the first master's _auth")
    second = lab.masters()[1]
    accept_on_both_masters(lab)
    stop_first_master(lab)
    node = lab.minions[MID]
    log = node.root / "log" / "minion"
    before = log.read_text() if log.exists() else ""
    lab.restart(node, "salt-minion")
    echo_returns_to(lab, second, 180)
    after = log.read_text()[len(before):]
    assert "does not answer this minion's joins" in after, after[-3000:]
    assert "trying next master" in after, after[-3000:]


@pytest.mark.core
def test_the_minion_fails_back_to_its_first_master_once_it_is_back(lab):
    """Salt's master_failback with RAET presence as the liveness signal: on the second master
    (the first stopped), the minion goes back to the first once its salt-raet-minion has
    joined it again; the first's jobs return to it, the second's no longer reach it."""
    if not lab.raet:
        pytest.skip("failback on presence is RAET's (ZeroMQ needs master_alive_interval)")
    first, second = lab.masters()
    accept_on_both_masters(lab)
    stop_first_master(lab)  # already stopped after the tests above
    echo_returns_to(lab, second, 180)
    log = lab.minions[MID].root / "log" / "minion"
    before = log.read_text()
    started = time.monotonic()
    for daemon in first.daemons:
        daemon.start()
    lab.record_pids()
    echo_returns_to(lab, first, 180)
    print(f"failback: a job of the first master returned {time.monotonic() - started:.1f} s "
          "after its restart")
    after = log.read_text()[len(before):]
    assert "failing back to it (master_failback)" in after, after[-3000:]
    # on the first master only: a job of the second, published before one of the first that
    # returns, does not
    token = uuid.uuid4().hex
    proc = lab.run("salt", "--async", MID, "test.echo", token, node=second)
    late = re.search(r"job ID: (\d+)", proc.stdout)
    assert late, proc.stdout
    echo_returns_to(lab, first, 60)
    assert token not in lab.lookup_jid(late.group(1), node=second).values()
