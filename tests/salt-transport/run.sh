#!/usr/bin/env bash
# Salt's own transport and channel tests, from Salt's sdist, run for transport raet (and the
# stock transports as a control) through the pytest plugin raet_overlay.py of this directory.
#
# usage: tests/salt-transport/run.sh [--raet-only] [pytest args...]
#
# Environment:
#   SALT_RAET_VENV     Salt's venv with saltext_raet (default target/salt-venv; made by
#                      scripts/setup-salt-venv.sh)
#   SALT_RAET_BIN_DIR  the salt-raet-master / salt-raet-minion binaries (default target/debug)
#   SALT_RAET_PORTS    UDP ports for the daemons' roads (default 32000-32999)
#   SALT_VERSION       the sdist whose tests run (default: the Salt installed in the venv)
#
# Everything it writes stays in the clone: the sdist is downloaded once into
# target/salt-transport/ (and unpacked there, with the log pytest.log), the test requirements
# go into the venv.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${SALT_RAET_VENV:-$root/target/salt-venv}"
python="$venv/bin/python"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
say() { echo "salt-transport: $*"; }

[ -x "$python" ] || { say "no venv at $venv (run scripts/setup-salt-venv.sh)"; exit 2; }
bin_dir="${SALT_RAET_BIN_DIR:-$root/target/debug}"
for daemon in salt-raet-master salt-raet-minion; do
    [ -x "$bin_dir/$daemon" ] || {
        say "no $bin_dir/$daemon (cargo build -p $daemon)"
        exit 2
    }
done
export SALT_RAET_BIN_DIR="$bin_dir"
version="${SALT_VERSION:-$("$python" -c 'import salt.version; print(salt.version.__version__)')}"

# --- Salt's sdist (it carries tests/) -------------------------------------------------
work="$root/target/salt-transport"
src="$work/salt-$version"
mkdir -p "$work"
if [ ! -f "$src/tests/conftest.py" ]; then
    if [ ! -f "$work/salt-$version.tar.gz" ]; then
        say "downloading the sdist of salt $version"
        "$python" -m pip download -q --no-deps --no-binary salt -d "$work" "salt==$version"
    fi
    rm -rf "$src"
    tar -xzf "$work/salt-$version.tar.gz" -C "$work"
fi

# --- the test requirements of Salt's suite --------------------------------------------
requirements=("pytest>=8.4.2,<9" pytest-salt-factories pytest-helpers-namespace
    pytest-subtests pytest-timeout pytest-custom-exit-code flaky pyfakefs trustme
    pytest-skip-markers pytest-shell-utilities mock pytest-httpserver)
stamp="$venv/.salt-raet-test-requirements"
if [ "$(cat "$stamp" 2>/dev/null)" != "${requirements[*]}" ]; then
    say "installing Salt's test requirements into $venv"
    "$python" -m pip install -q "${requirements[@]}"
    echo "${requirements[*]}" >"$stamp"
fi

# --- the tests ----------------------------------------------------------------------
tests=(
    # every PublishServer has DaemonizedPublishServer's exact method signatures
    tests/pytests/unit/transport/test_publish_server.py
    # IPC socket permissions; the PublishServer of each transport honours its path perms
    tests/pytests/functional/transport/base.py
    # request_server <-> request_client and publish_server -> publish_client round trips
    tests/pytests/functional/transport/server/test_request_server.py
    tests/pytests/functional/transport/server/test_publish_server.py
    # stock channels (Salt's AES/RSA) over the transport: raet_salt_crypto: True
    tests/pytests/functional/channel/test_server.py::test_pub_server_channel
    tests/pytests/functional/channel/test_req_channel.py
)
cd "$src"
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
say "salt $version from $src, daemons from $bin_dir"
log="$work/pytest.log"
"$python" -m pytest -p saltext_raet -p raet_overlay -p no:cacheprovider --run-slow \
    -q -rfEs --durations=5 "${tests[@]}" "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
# pytest's counts last (messages printed at the interpreter's exit may follow them in the log)
say "$(grep -E '^[0-9]+ (passed|failed|skipped|deselected|errors?)' "$log" | tail -n 1)"
exit "$rc"
