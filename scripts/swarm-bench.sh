#!/usr/bin/env bash
# Benchmark (not a test) of issue 11: N minion roads, each on its own loopback address
# (127.1.x.y) and configured as salt-raet-minion configures its road, against the real
# salt-raet-master (auto_accept, alive period 10 s, temporary configuration and pki), all
# minions in one `raet swarm` process. Prints one line per phase: the join storm (all N at
# once), a steady window (master and harness CPU s/s, master RSS, load), `status --json`
# latency, and the recovery after `kill -9` and a restart of the master.
#
# Usage: scripts/swarm-bench.sh [N] [raet swarm options...]   (default 300; release binaries)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
n=${1:-300}
shift || true
cargo build --release --quiet --manifest-path "$root/Cargo.toml" -p salt-raet-master -p raet-cli
exec "$root/target/release/raet" swarm --minions "$n" "$@"
