#!/usr/bin/env bash
# Install the reference RAET implementation (Python raet 0.6.8) into a venv, for
# the interop tests: tests/interop/setup-ref.sh VENV_DIR
#
# Idempotent: a venv that already has the pinned packages is reused (no network),
# and the Python 3.11 fixes (tests/interop/patch_ref.py) are re-checked every time.
# Needs python3 (3.11) with venv, PyPI, and libsodium (installed from Debian's
# packages when missing and we are root).  Then: VENV_DIR/bin/python refpeer.py ...
set -euo pipefail

if [ $# -ne 1 ] || [ -z "$1" ]; then
    echo "usage: $0 VENV_DIR" >&2
    exit 3
fi
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$1"
python="${PYTHON:-python3}"
# Versions known to work together; msgpack is deliberately absent (optional in raet).
pins=(raet==0.6.8 ioflo==2.0.3 libnacl==2.1.0 six==1.17.0)
stamp="$venv/.salt-raet-ref-pins"

say() { echo "setup-ref: $*" >&2; }
die() { say "ERROR: $*"; exit 1; }

apt_updated=0
apt_install() {
    [ "$(id -u)" = 0 ] || die "need Debian package(s) $* but not root: run apt-get install -y $*"
    command -v apt-get >/dev/null || die "need package(s) $* and there is no apt-get"
    if [ "$apt_updated" = 0 ]; then
        say "apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null || die "apt-get update failed"
        apt_updated=1
    fi
    say "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null || die "apt-get install $* failed"
}

# libnacl loads libsodium with ctypes at import time.
if ! ldconfig -p 2>/dev/null | grep -q 'libsodium\.so\.23'; then
    apt_install libsodium23
fi

command -v "$python" >/dev/null || die "$python not found (set PYTHON=...)"
"$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 8) else 1)' \
    || die "$python is older than 3.8"

if [ ! -x "$venv/bin/python" ]; then
    if ! "$python" -c 'import ensurepip, venv' 2>/dev/null; then
        apt_install python3-venv   # Debian's python3 ships venv/ensurepip separately
    fi
    say "creating venv $venv"
    "$python" -m venv "$venv" || die "python3 -m venv $venv failed"
fi
vpy="$venv/bin/python"

if [ "$(cat "$stamp" 2>/dev/null)" != "${pins[*]}" ]; then
    say "pip install ${pins[*]}"
    export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
    if ! "$vpy" -m pip install -q "${pins[@]}"; then
        say "pip install failed, retrying once"
        "$vpy" -m pip install -q "${pins[@]}" || die "pip install ${pins[*]} failed"
    fi
    "$vpy" -m pip install -q "pytest>=8,<10" || die "pip install pytest failed"
    echo "${pins[*]}" >"$stamp"
fi

"$vpy" "$here/patch_ref.py" >&2 || die "patching raet for Python 3.11 failed (see above)"
say "ready: $vpy ($("$vpy" -c 'from importlib.metadata import version as v; print("raet", v("raet"), "ioflo", v("ioflo"), "libnacl", v("libnacl"))'))"
