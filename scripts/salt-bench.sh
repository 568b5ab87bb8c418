#!/usr/bin/env bash
# Benchmark (not a test): 200 sequential LocalClient.cmd('*', 'test.ping') jobs with one
# minion, then cp.get_file of a 64 MB file 3 times, on transport raet and then on zeromq in
# the same session; prints median, p90, p99, max, the file times and the ratios of the
# medians (tests/salt/bench_jobs.py).
#
# Options: --jobs N, --warmup N, --file-mb N, --files N, --transports raet,zeromq[,tcp],
# --bin-dir DIR, --venv DIR. Run it on an otherwise idle machine.
set -euo pipefail
# shellcheck source=lib/salt-prep.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/salt-prep.sh"

exec "$venv/bin/python" "$root/tests/salt/bench_jobs.py" --venv "$venv" \
    --bin-dir "$root/target/release" "$@"
