#!/usr/bin/env bash
# Prepares a Python venv with pytest, mypy and the raet-rs package (pip install ./pkg/raet-rs,
# built by maturin; a debug build, quick to make, unless MATURIN_PEP517_ARGS says otherwise),
# for CI and pkg/raet-rs/tests.
#
# usage: scripts/setup-raet-rs-venv.sh [VENV]   (default: target/raet-rs-venv)
#
# Environment: PYTHON (default python3). Idempotent: the package is built again only if its
# sources (pkg/raet-rs, the common crates it links, the Cargo files) changed (a stamp in the venv).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${1:-$root/target/raet-rs-venv}"
python="${PYTHON:-python3}"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
export MATURIN_PEP517_ARGS="${MATURIN_PEP517_ARGS:---profile dev}"
say() { echo "setup-raet-rs-venv: $*"; }

if [ ! -x "$venv/bin/python" ]; then
    say "creating $venv"
    "$python" -m venv "$venv"
fi
if ! "$venv/bin/python" -c 'import pytest, mypy.stubtest' 2>/dev/null; then
    say "installing pytest and mypy (stubtest checks the native module's stubs)"
    "$venv/bin/python" -m pip install -q pytest mypy
fi
stamp="$venv/.salt-raet-raet-rs"
want="$(cd "$root" && find pkg/raet-rs common/proto/src common/raet/src common/*/Cargo.toml Cargo.toml Cargo.lock \
    -type f ! -path 'pkg/raet-rs/tests/*' ! -name '*.pyc' ! -path '*/__pycache__/*' -print0 |
    sort -z | xargs -0 sha256sum | sha256sum | cut -c1-64) $MATURIN_PEP517_ARGS"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || ! "$venv/bin/python" -c 'import raet_rs' 2>/dev/null; then
    say "building and installing ./pkg/raet-rs (maturin, $MATURIN_PEP517_ARGS)"
    "$venv/bin/python" -m pip install -q "$root/pkg/raet-rs"
    "$venv/bin/python" -c 'import raet_rs.road.stacking, raet_rs.lane.stacking'
    echo "$want" >"$stamp"
else
    say "raet-rs already installed from these sources"
fi
say "ready: $venv"
