#!/usr/bin/env bash
# The main job in one command: stock Salt on `transport: raet` over loopback.
#
# Builds what is missing (Salt's venv with saltext_raet through scripts/setup-salt-venv.sh,
# salt-raet-master/-minion in release), then tests/salt/saltlab.py's demo: in a scratch
# directory (mktemp; --keep keeps it) it writes master and minion configs on free loopback
# ports, starts salt-master, salt-raet-master, salt-raet-minion and salt-minion (each in
# its own session, PIDs recorded), waits for the minion's key in `salt-key -L`, accepts it
# with `salt-key -a demo-minion -y`, runs `salt '*' test.ping`, prints the result and the
# time to the first ping, then stops everything it started by PID (also on failure or
# Ctrl-C). Exit status 0 only if the minion answered True.
#
# Options (passed to the demo): --keep, --deadline S, --bin-dir DIR, --venv DIR.
# Environment: SALT_RAET_VENV (Salt's venv, default target/salt-venv; a venv given this
# way is used as it is), SALT_RAET_PORTS (e.g. 29000-29999; default: kernel-chosen ports).
set -euo pipefail

# shellcheck source=lib/salt-prep.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/salt-prep.sh"

exec "$venv/bin/python" "$root/tests/salt/saltlab.py" demo --venv "$venv" \
    --bin-dir "$root/target/release" "$@"
