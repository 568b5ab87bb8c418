"""IPv6 end to end: the master daemon and Salt on ``::1``, a minion whose ``master`` is
``::1``, ``ipv6: True`` on both (saltlab's ``ipv6=True``).

One lab (a master and one minion): the key workflow and a job over a road on ::1, then what
the daemons and Salt report about the addresses.
"""

import pytest

from conftest import running_lab

MINION = "six-1"


@pytest.fixture(scope="module")
def lab(tmp_path_factory, bin_dir):
    with running_lab(tmp_path_factory, bin_dir, [MINION], ipv6=True) as lab:
        yield lab


@pytest.mark.core
def test_the_key_pends_and_an_accepted_minion_answers_over_ipv6(lab):
    keys = lab.wait_pending([MINION], deadline_s=180)
    assert keys["minions_pre"] == [MINION]
    lab.accept(MINION)
    assert lab.wait_ping([MINION], deadline_s=180) == {MINION: True}
    assert lab.salt(MINION, "cmd.run", "echo six") == {MINION: "six"}


@pytest.mark.core
def test_the_daemons_talk_over_the_ipv6_loopback(lab):
    if not lab.raet:
        pytest.skip(f"transport {lab.transport} has no RAET daemons")
    master_port = lab.master.config["raet_port"]
    minion_port = lab.minions[MINION].config["raet_port"]
    status = lab.raet_status()
    assert status["road"] == f"[::1]:{master_port}", status
    assert lab.raet_row(MINION)["address"] == f"[::1]:{minion_port}"
    minion = lab.raet_status(lab.minions[MINION])
    assert minion["road"] == f"[::]:{minion_port}", minion
    (master,) = minion["masters"]
    assert master["address"] == f"[::1]:{master_port}", minion


def test_salt_sees_the_minion_present_at_its_ipv6_address(lab):
    assert lab.run_json("salt-run", "manage.present", timeout=120) == [MINION]
    if lab.raet:
        assert lab.run_json("salt-run", "raet.present", timeout=120) == [MINION]
        present = lab.run_json("salt-run", "manage.present", "show_ip=True", timeout=120)
        assert present == {MINION: "::1"}, present
