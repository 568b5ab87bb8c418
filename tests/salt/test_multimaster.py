"""End to end: Salt's multi-master, hot/hot (``master: [a, b]``, ``master_type: str``).

Two masters, ``master`` on 127.0.0.1 and ``master2`` on 127.0.0.2 (same ports), each with
its own salt-master and salt-raet-master and its own pillar greeting, and one minion listing
both. Salt runs one connection per master in the minion; each one's requests (returns,
pillar, events) go to its own master's RAET road, and each one takes its master's
publications. The tests share one lab (module scope) and run in file order. With
``SALT_RAET_TRANSPORT=zeromq`` the same tests run on Salt's ZeroMQ (the baseline).
"""

import re
import uuid

import pytest

import saltlab
from conftest import running_lab

MID = "mm-1"


@pytest.fixture(scope="module")
def lab(tmp_path_factory, bin_dir):
    """Two masters and one minion of both, keys unaccepted."""
    with running_lab(tmp_path_factory, bin_dir, [MID], masters=2) as lab:
        yield lab


def accept_on_every_master(lab):
    """Accepts the minion's key on each master where it is not accepted yet, then waits
    until it answers test.ping from each."""
    for master in lab.masters():
        if MID not in lab.keys(master).get("minions", []):
            lab.wait_pending([MID], deadline_s=180, node=master)
            lab.accept(MID, node=master)
    for master in lab.masters():
        lab.wait_ping([MID], deadline_s=180, node=master)


def publish(lab, master, *args):
    """``salt --async MID ARGS`` on ``master``; returns the job id."""
    proc = lab.run("salt", "--async", MID, *args, node=master)
    found = re.search(r"job ID: (\d+)", proc.stdout)
    assert found, (proc.stdout, proc.stderr[-2000:])
    return found.group(1)


def returns_to_its_master(lab, master, others=()):
    """A job published by ``master`` returns to it (its job cache) and to none of
    ``others``."""
    token = f"{master.name}-{uuid.uuid4().hex[:8]}"
    jid = publish(lab, master, "test.echo", token)
    saltlab.wait_for(f"the return of job {jid} in {master.name}'s job cache",
                     lambda: lab.lookup_jid(jid, master) == {MID: token}, 60)
    for other in others:
        assert lab.lookup_jid(jid, other) == {}, f"job {jid} of {master.name} returned to {other.name}"


@pytest.mark.core
def test_a_job_from_each_master_returns_to_that_master(lab):
    accept_on_every_master(lab)
    first, second = lab.masters()
    returns_to_its_master(lab, second, [first])
    returns_to_its_master(lab, first, [second])


def test_pillar_comes_from_the_master_of_the_job(lab):
    """Each of the minion's connections compiled its pillar from its own master (each
    master serves another greeting), and a job runs with the pillar of its master's."""
    accept_on_every_master(lab)
    # Salt 3008 masks pillar values in job output unless unmask=True (3007 has no unmask)
    unmask = ["unmask=True"] if lab.salt_version() >= (3008,) else []
    for master in lab.masters():
        returns = lab.salt(MID, "pillar.get", "lab:greeting", *unmask, node=master)
        assert returns == {MID: lab.pillar_greeting(master)}, (master.name, returns)


# Not `core`: on Salt 3007.17 the second master's job returned nothing to its job cache once
# the first master was stopped (fresh-clone run of this session, reproduced; not
# investigated yet). Passes on 3008.5.
def test_one_master_down_the_other_works_and_a_restarted_one_is_used_again(lab):
    accept_on_every_master(lab)
    first, second = lab.masters()
    names = [d.name for d in first.daemons]
    try:
        for name in reversed(names):
            first.daemon(name).stop()
        if lab.raet:
            saltlab.wait_for("salt-raet-minion reporting the first master lost",
                             lambda: any(row.get("address", "").startswith("127.0.0.1:")
                                         and row.get("presence") == "lost"
                                         for row in lab.raet_status(lab.minions[MID])
                                         .get("masters", [])), 90)
        assert lab.salt(MID, "test.ping", node=second) == {MID: True}
        returns_to_its_master(lab, second)
    finally:
        for name in names:
            if not first.daemon(name).running():
                first.daemon(name).start()
        lab.record_pids()
    lab.wait_ping([MID], deadline_s=180, node=first)
    returns_to_its_master(lab, first, [second])
    returns_to_its_master(lab, second, [first])
