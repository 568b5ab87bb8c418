"""docs/migration.md, end to end: a running ZeroMQ deployment moved to raet, and back.

One lab (a master and one minion), tests in file order, the configs rewritten in place as
the doc says (``transport``, ``raet_salt_crypto``; ports and keys kept):

1. stock Salt on ``zeromq``: the key accepted, a job;
2. ``transport: raet`` with ``raet_salt_crypto: True``: the accepted ZeroMQ key stays
   accepted (the same RSA key), jobs run without a salt-key step;
3. rollback to ``zeromq`` from there: nothing to do for keys either;
4. ``transport: raet`` in the native mode: the minion joins with its RAET key, the accepted
   RSA key does not match, so the join is refused and its RAET key lands in
   ``minions_denied``; ``salt-key -d`` and a restart of salt-raet-minion make it pend,
   ``salt-key -a`` accepts the RAET key and jobs run;
5. rollback to ``zeromq`` from there: Salt denies the minion's RSA key (the accepted key is
   its RAET key) and salt-minion exits; ``salt-key -d``, a restart of salt-minion and
   ``salt-key -a`` bring it back.
"""

import os

import pytest

from conftest import running_lab
from saltlab import wait_for

MINION = "moved-1"


@pytest.fixture(scope="module")
def lab(tmp_path_factory, bin_dir):
    if (os.environ.get("SALT_RAET_TRANSPORT") or "raet") != "raet":
        pytest.skip("the migration ends on transport raet")
    with running_lab(tmp_path_factory, bin_dir, [MINION], transport="zeromq") as lab:
        yield lab


def accepted_pem(lab) -> str:
    return (lab.master.pki_dir / "minions" / MINION).read_text()


def switch(lab, transport, **kwargs):
    # the same daemons start again: they get their full grace to exit
    lab.stop(grace_s=20)
    lab.switch_transport(transport, **kwargs)
    lab.start()


def test_zeromq_deployment_with_an_accepted_minion(lab):
    assert not (lab.master.sock_dir / "raet").exists()
    lab.wait_pending([MINION], deadline_s=180)
    lab.accept(MINION)
    assert lab.wait_ping([MINION], deadline_s=180) == {MINION: True}
    # Salt's RSA key of the minion is the accepted one
    rsa = (lab.minions[MINION].pki_dir / "minion.pub").read_text()
    assert accepted_pem(lab).strip() == rsa.strip()


def test_salt_crypto_mode_keeps_the_accepted_zeromq_key(lab):
    before = accepted_pem(lab)
    switch(lab, "raet", set_config={"raet_salt_crypto": True})
    # no salt-key step: Salt's _auth over RAET finds the key it accepted on ZeroMQ
    assert lab.wait_ping([MINION], deadline_s=180) == {MINION: True}
    keys = lab.keys()
    assert keys["minions"] == [MINION] and keys["minions_pre"] == [], keys
    assert accepted_pem(lab) == before
    assert lab.raet_row(MINION)["allowed"] is True
    assert lab.salt(MINION, "cmd.run", "echo moved") == {MINION: "moved"}


def test_rollback_from_salt_crypto_mode_to_zeromq(lab):
    before = accepted_pem(lab)
    switch(lab, "zeromq", unset=("raet_salt_crypto",))
    assert lab.wait_ping([MINION], deadline_s=180) == {MINION: True}
    assert lab.keys()["minions"] == [MINION]
    assert accepted_pem(lab) == before


def test_native_mode_denies_the_raet_key_until_the_zeromq_key_is_deleted(lab):
    rsa = accepted_pem(lab)
    switch(lab, "raet")
    master = lab.master

    def denied():
        lab.check_alive()
        keys = lab.keys()
        return keys if MINION in keys.get("minions_denied", []) else None

    keys = wait_for("the minion's RAET key denied", denied, deadline_s=180)
    # the accepted key is still the ZeroMQ (RSA) one; the offered RAET key is denied
    assert keys["minions"] == [MINION], keys
    assert accepted_pem(lab) == rsa
    denied_pem = (master.pki_dir / "minions_denied" / MINION).read_text()
    assert denied_pem != rsa
    assert lab.raet_row(MINION).get("allowed") is not True
    assert lab.salt(MINION, "test.ping") == {}

    # the doc's step: delete the ZeroMQ key, restart the minion's daemon, accept its RAET key
    lab.run("salt-key", "-d", MINION, "-y")
    keys = lab.keys()
    assert MINION not in keys["minions"] + keys.get("minions_denied", []), keys
    lab.restart(lab.minions[MINION], "salt-raet-minion")
    lab.wait_pending([MINION], deadline_s=180)
    assert (master.pki_dir / "minions_pre" / MINION).read_text() == denied_pem
    lab.accept(MINION)
    assert lab.wait_ping([MINION], deadline_s=180) == {MINION: True}
    assert accepted_pem(lab) == denied_pem


def test_rollback_from_native_mode_to_zeromq(lab):
    raet_key = accepted_pem(lab)
    node = lab.minions[MINION]
    rsa = (node.pki_dir / "minion.pub").read_text()
    switch(lab, "zeromq")

    def denied():
        lab.master.daemon("salt-master").check()
        keys = lab.keys()
        return keys if MINION in keys.get("minions_denied", []) else None

    # Salt's _auth offers the RSA key, which is not the accepted (RAET) one: denied, as Salt
    # does for any changed key, and salt-minion gives up (it exits, 77, unless rejected_retry)
    keys = wait_for("the minion's RSA key denied", denied, deadline_s=180)
    assert keys["minions"] == [MINION] and accepted_pem(lab) == raet_key, keys
    assert (lab.master.pki_dir / "minions_denied" / MINION).read_text().strip() == rsa.strip()
    minion_log = node.root / "log" / "minion"
    wait_for("salt-minion to log its rejection",
             lambda: "has rejected this minion's public key" in minion_log.read_text(), 60)
    assert lab.salt(MINION, "test.ping") == {}
    # the doc's step: delete the key, restart salt-minion, accept its RSA key again
    lab.run("salt-key", "-d", MINION, "-y")
    lab.restart(node, "salt-minion")
    lab.wait_pending([MINION], deadline_s=180)
    lab.accept(MINION)
    assert lab.wait_ping([MINION], deadline_s=180) == {MINION: True}
    assert accepted_pem(lab).strip() == rsa.strip()
