"""Salt-crypto mode end to end: ``raet_salt_crypto: True`` in master and minion config.

Salt's own channels (RSA ``_auth``, AES session and publish keys, 3008's worker pools) run on
top of the RAET transport classes: RAET carries Salt's encrypted payloads between the two
daemons. One lab (a master and one minion), tests in file order: Salt's RSA key pends while
RAET already trusts the minion (trust on first use), ``salt-key -a``, jobs, salt-api's local
client, pillar (RSA ``send_private``) and the file server, then ``salt-key -d`` makes Salt
refuse it.
"""

import json
import os
import subprocess

import pytest

import saltlab
from conftest import running_lab

MINION = "crypto-1"

# Loads a PEM the way Salt's master does (salt.crypt.PublicKey) and describes the key.
DESCRIBE_KEY = """
import json, sys
import salt.crypt
from cryptography.hazmat.primitives.asymmetric import rsa
key = salt.crypt.PublicKey.from_str(sys.stdin.read()).key
print(json.dumps({"rsa": isinstance(key, rsa.RSAPublicKey), "bits": key.key_size}))
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory, bin_dir):
    """One master and one minion, both with ``raet_salt_crypto: True``."""
    if (os.environ.get("SALT_RAET_TRANSPORT") or "raet") != "raet":
        pytest.skip("Salt-crypto mode is a mode of transport raet")
    with running_lab(tmp_path_factory, bin_dir, [MINION], salt_api=True,
                     extra_config={"raet_salt_crypto": True}) as lab:
        yield lab


def describe_key(lab, pem: str) -> dict:
    proc = subprocess.run([str(lab.venv / "bin" / "python"), "-c", DESCRIBE_KEY], input=pem,
                          capture_output=True, text=True, timeout=60, check=True)
    return json.loads(proc.stdout)


def test_salts_rsa_key_pends_while_raet_trusts_the_minion_on_first_use(lab):
    keys = lab.wait_pending([MINION], deadline_s=180)
    assert keys["minions_pre"] == [MINION] and keys["minions"] == []
    # The key salt-key shows is the minion's own Salt RSA key, written by Salt's _auth (it
    # came over RAET; Salt strips it), not a RAET key written by salt-raet-master.
    pem = (lab.master.pki_dir / "minions_pre" / MINION).read_text()
    assert pem.strip() == (lab.minions[MINION].pki_dir / "minion.pub").read_text().strip()
    described = describe_key(lab, pem)
    assert described["rsa"] is True and described["bits"] >= 2048, described
    # RAET accepted the minion's road keys on first use and pinned them in its keep.
    status = lab.raet_status()
    assert status["salt_crypto"] is True, status
    row = lab.raet_row(MINION)
    assert row["acceptance"] == "accepted" and row["allowed"] is True, row
    pinned = lab.master.pki_dir / "raet" / "role" / "remote" / f"role.{MINION}.json"
    assert json.loads(pinned.read_text())["acceptance"] == 1
    assert lab.raet_status(lab.minions[MINION])["salt_crypto"] is True
    # Salt 3008's worker pools: the PoolRouter serves RAET and hands requests to the
    # MWorkers over Salt's tcp IPC transport (the extension maps the pool hop to tcp).
    assert (lab.master.sock_dir / "workers-default.ipc").exists()


def test_accepted_minion_answers(lab):
    lab.accept(MINION)
    assert lab.wait_ping([MINION], deadline_s=180) == {MINION: True}


def test_salt_api_reaches_the_minion(lab):
    # salt-api finds the master available (workers.ipc) and its local client's clear load
    # goes through Salt's own request channel on RAET
    lab.wait_api()
    token = lab.api_login()
    low = {"client": "local", "tgt": MINION, "fun": "test.ping", "timeout": 15}
    assert lab.api_request("/", low, token=token) == (200, {"return": [{MINION: True}]})


def test_pillar_get(lab):
    # Pillar travels as Salt's send_private: an AES key encrypted to the minion's RSA key.
    got = lab.salt(MINION, "pillar.get", "lab:greeting", "unmask=True")
    assert got == {MINION: saltlab.PILLAR_GREETING}


def test_file_server(lab):
    got = lab.salt(MINION, "cp.get_file_str", "salt://files/greeting.txt")
    assert got == {MINION: saltlab.STATE_TEXT}
    # salt-call authenticates by itself (its own _auth through the minion's daemon)
    got = lab.run_json("salt-call", "cp.get_file_str", "salt://files/greeting.txt",
                       node=lab.minions[MINION])
    assert got == {"local": saltlab.STATE_TEXT}


def test_deleted_key_is_refused_by_salt(lab):
    proc = lab.run("salt-key", "-d", MINION, "-y")
    assert MINION not in lab.keys().get("minions", []), proc.stdout
    assert lab.salt(MINION, "test.ping") == {}
    assert lab.salt("*", "test.ping") == {}
    # Salt's _auth refuses it (and files its RSA key as pending again, as with ZeroMQ) ...
    proc = lab.run("salt-call", "--out=json", "cp.get_file_str", "salt://files/greeting.txt",
                   node=lab.minions[MINION], timeout=120)
    assert proc.returncode != 0, proc.stdout
    assert "has the minion key been accepted" in proc.stdout + proc.stderr, proc
    assert lab.keys()["minions_pre"] == [MINION]
    # ... while RAET still carries its traffic: the refusal is Salt's own.
    assert lab.raet_row(MINION)["allowed"] is True
