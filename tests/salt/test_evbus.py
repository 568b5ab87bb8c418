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


def test_salt_key_accept_reaches_salt_raet_master_through_the_bus(lab):
    lab.wait_pending(MINIONS, deadline_s=180)
    saltlab.wait_for("salt-raet-master subscribed to Salt's bus",
                     lambda: lab.raet_status().get("event_bus", {}).get("subscribed"), 60)
    before = lab.raet_status()["event_bus"]["received"]
    lab.accept(WEB)
    saltlab.wait_for(f"{WEB} allowed", lambda: lab.raet_row(WEB).get("allowed"), 60)
    bus = saltlab.wait_for("the salt/key event counted",
                           lambda: (lambda b: b if b["received"] > before else None)(
                               lab.raet_status()["event_bus"]), 30)
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
    assert lab.raet_status()["event_bus"]["published"] >= 1
