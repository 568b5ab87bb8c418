#!/usr/bin/env bash
# Benchmark (not a test) of issue 10's join flood against the real master: an accepted minion
# and a master (auto_accept False, raet_first_contacts as configured), then `raet flood`
# (fresh names and valid keys from 64 source addresses) at RATE joins/s for SECONDS; a new
# minion is started 5 s into the flood. Prints the master's RSS before/after, CPU seconds per
# second during the flood and 20 s after it, the junk keys in minions_pre and in the keep,
# how long the new minion took to become pending, the accepted minion's state, and the
# road's first-contact counters.
#
# Usage: scripts/flood-bench.sh [RATE] [SECONDS]   (defaults 2000 60; release binaries)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
rate=${1:-2000}
seconds=${2:-60}
bin="$root/target/release"
cargo build --release --quiet --manifest-path "$root/Cargo.toml" \
    -p salt-raet-master -p salt-raet-minion -p raet-cli
site=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$site"' EXIT
port=$((20000 + RANDOM % 20000))

# A master and the configuration of one minion called $1 (each in its own directory).
config() { # dir extra...
    mkdir -p "$site/$1/etc" "$site/$1/pki" "$site/$1/sock"
    printf 'pki_dir: %s\nsock_dir: %s\nlog_file: %s\nraet_alive_period: 1\n%s' \
        "$site/$1/pki" "$site/$1/sock" "$site/$1/log" "$2" >"$site/$1/etc/$3"
}
config master "interface: 127.0.0.1
raet_port: $port
id: bench_master
" master
config m1 "id: m1
master: 127.0.0.1:$port
raet_port: 0
" minion
config legit "id: legit
master: 127.0.0.1:$port
raet_port: 0
" minion
pre="$site/master/pki/minions_pre"

"$bin/salt-raet-master" -c "$site/master/etc" 2>>"$site/master.err" &
master=$!
sleep 1
"$bin/salt-raet-minion" -c "$site/m1/etc" 2>>"$site/m1.err" &
for _ in $(seq 100); do [ -e "$pre/m1" ] && break; sleep 0.1; done
mv "$pre/m1" "$site/master/pki/minions/m1"
sleep 3

rss() { awk '/VmRSS/ {print $2}' "/proc/$master/status"; }
cpu() { awk '{print $14 + $15}' "/proc/$master/stat"; } # clock ticks
tick=$(getconf CLK_TCK)
calc() { python3 -c "print(round($1, 3))"; }
status() { "$bin/salt-raet-master" -c "$site/master/etc" status --json; }

rss0=$(rss)
cpu0=$(cpu)
"$bin/raet" flood --to "127.0.0.1:$port" --rate "$rate" --seconds "$seconds" --sources 64 \
    >"$site/flood.out" &
flood=$!
sleep 5
"$bin/salt-raet-minion" -c "$site/legit/etc" 2>>"$site/legit.err" &
start=$(date +%s.%N)
pending_after=never
for _ in $(seq 300); do
    if [ -e "$pre/legit" ]; then
        pending_after=$(calc "$(date +%s.%N) - $start")
        break
    fi
    sleep 0.1
done
m1_mid=$(status | python3 -c 'import json,sys; s=json.load(sys.stdin); print([(r["id"], r["allowed"], r["presence"]) for r in s["remotes"] if r["id"]=="m1"])')
wait "$flood"
cpu1=$(cpu)
rss1=$(rss)
junk_pre=$(find "$pre" -name 'flood-*' | wc -l)
junk_keep=$(find "$site/master/pki/raet" -name '*flood-*' | wc -l)
sleep 20
cpu2=$(cpu)
sleep 5
cpu3=$(cpu)
sleep 10
junk_pre_later=$(find "$pre" -name 'flood-*' | wc -l)
m1_end=$(status | python3 -c 'import json,sys; s=json.load(sys.stdin); print([(r["id"], r["allowed"], r["presence"]) for r in s["remotes"] if r["id"]=="m1"])')
counters=$(status | python3 -c 'import json,sys; c=json.load(sys.stdin)["road_counters"]; print({k: v for k, v in c.items() if k.startswith("first_contact") or k in ("joinee_limit", "remote_added")})')
echo "flood: $(cat "$site/flood.out") over ${seconds} s from 64 sources (requested $rate/s)"
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "master RSS: ${rss0} KiB before, ${rss1} KiB at the flood's end (+$(( (rss1 - rss0) / 1024 )) MiB)"
echo "master CPU: $(calc "($cpu1 - $cpu0) / $tick / $seconds") s/s during the flood, $(calc "($cpu3 - $cpu2) / $tick / 5") s/s from 20 to 25 s after it"
echo "junk pending keys in minions_pre: $junk_pre at the flood's end, $junk_pre_later 35 s after; junk in the keep: $junk_keep"
echo "new minion pending after: ${pending_after} s"
echo "accepted minion (id, allowed, presence): during $m1_mid, after $m1_end"
echo "road counters: $counters"
