"""Salt's master event bus between stock Salt 3008 and salt-raet-master.

The lab's salt-master and salt-raet-master share the master's ``sock_dir``, so
salt-raet-master publishes into Salt's own bus and reads salt-key's events from it. Checked
here with Salt's tools only: ``salt-key`` fires ``salt/key`` (our daemon must act on it), and
``salt-run state.event`` must print the ``salt/auth`` events our daemon fires.
"""

import json
import subprocess

import saltlab
from conftest import MINIONS

WEB, DB = MINIONS


def raet_status(lab) -> dict:
    """``salt-raet-master status --json`` of the lab's master ({} while it does not answer)."""
    proc = subprocess.run([str(lab.bin_dir / "salt-raet-master"), "-c", str(lab.master.conf_dir),
                           "status", "--json"], capture_output=True, text=True, timeout=30)
    return json.loads(proc.stdout) if proc.returncode == 0 else {}


def row(lab, minion: str) -> dict:
    rows = raet_status(lab).get("remotes", [])
    return next((r for r in rows if r["id"] == minion), {})


def test_salt_key_accept_reaches_salt_raet_master_through_the_bus(lab):
    lab.wait_pending(MINIONS, deadline_s=180)
    saltlab.wait_for("salt-raet-master subscribed to Salt's bus",
                     lambda: raet_status(lab).get("event_bus", {}).get("subscribed"), 60)
    before = raet_status(lab)["event_bus"]["received"]
    lab.accept(WEB)
    saltlab.wait_for(f"{WEB} allowed", lambda: row(lab, WEB).get("allowed"), 60)
    bus = saltlab.wait_for("the salt/key event counted",
                           lambda: (lambda b: b if b["received"] > before else None)(
                               raet_status(lab)["event_bus"]), 30)
    assert bus["garbage"] == 0 and bus["bad_events"] == 0, bus


def test_salt_auth_events_reach_salts_bus(lab):
    listener = subprocess.Popen(
        [str(lab.venv / "bin" / "salt-run"), "-c", str(lab.master.conf_dir), "state.event",
         "salt/auth", "count=1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        def heard():
            # Until the runner has subscribed, events are lost: make the pending minion
            # join again (each join of a pending minion fires salt/auth "pend").
            if listener.poll() is not None:
                return True
            lab.restart(lab.minions[DB], "salt-raet-minion")
            return listener.poll() is not None

        saltlab.wait_for("state.event to print salt/auth", heard, deadline_s=120,
                         interval_s=3)
        out, err = listener.communicate(timeout=30)
    finally:
        if listener.poll() is None:
            listener.kill()
            listener.wait()
    line = next((ln for ln in out.splitlines() if ln.startswith("salt/auth")), None)
    assert line is not None, (out, err)
    data = json.loads(line.partition("\t")[2])
    assert data["id"] == DB and data["act"] == "pend" and data["result"] is True, data
    pem = (lab.master.pki_dir / "minions_pre" / DB).read_text()
    assert data["pub"] == pem
    assert data["_stamp"].endswith("+00:00")
    assert raet_status(lab)["event_bus"]["published"] >= 1
