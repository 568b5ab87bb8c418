#!/usr/bin/env bash
# Prepares a Python venv with Salt from PyPI, the test tools (pytest, and CherryPy for
# salt-api's rest_cherrypy), and this repository's Salt extension (pip install ./salt-ext,
# built by maturin), for CI and the end-to-end tests.
#
# usage: scripts/setup-salt-venv.sh [VENV [SALT_VERSION]]
#        (defaults: target/salt-venv in the repository, Salt 3008.5; CI also makes
#        target/salt3007-venv with Salt 3007.17, the newest 3007.x)
#
# Environment: SALT_VERSION (the default of the second argument), PYTHON (default python3).
#
# Idempotent and fast when done: stamp files in the venv record what is installed; Salt is
# installed again only if the Salt or Python version changed, the test tools only if their
# list changed, the extension only if its sources (salt-ext/, the common crates it links, the Cargo files)
# changed.
#
# Salt 3008.5 and 3007.17 declare certifi>=2026.10.23, newer than some package indexes carry, so a plain
# `pip install salt==3008.5` can fail. Then this script downloads Salt's sdist, installs its
# declared requirements (without extras and without certifi), the newest certifi available,
# and finally Salt itself with --no-deps (certifi only provides the CA bundle).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${1:-$root/target/salt-venv}"
salt_version="${2:-${SALT_VERSION:-3008.5}}"
python="${PYTHON:-python3}"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
start=$SECONDS

say() { echo "setup-salt-venv: [$((SECONDS - start)) s] $*"; }

if [ ! -x "$venv/bin/python" ]; then
    say "creating $venv"
    "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip)
py_version="$("$venv/bin/python" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')"

# --- Salt -------------------------------------------------------------------------------
salt_stamp="$venv/.salt-raet-salt"
salt_want="salt $salt_version python $py_version"
if [ "$(cat "$salt_stamp" 2>/dev/null)" != "$salt_want" ]; then
    say "installing Salt $salt_version"
    "${pip[@]}" install -q --upgrade pip
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    if ! "${pip[@]}" install -q "salt==$salt_version" >"$tmp/plain.log" 2>&1; then
        say "plain install of salt==$salt_version failed" \
            "($(grep -m1 'No matching distribution' "$tmp/plain.log" || tail -n 1 "$tmp/plain.log"));" \
            "installing its requirements with the newest certifi available, then Salt with --no-deps"
        "${pip[@]}" download -q --no-deps --no-binary salt -d "$tmp" "salt==$salt_version"
        sdist="$(find "$tmp" -maxdepth 1 -name "salt-$salt_version.tar.gz" | head -n 1)"
        [ -n "$sdist" ] || { say "no sdist of salt $salt_version downloaded"; exit 1; }
        tar -xzf "$sdist" -C "$tmp" "salt-$salt_version/PKG-INFO"
        sed -n 's/^Requires-Dist: //p' "$tmp/salt-$salt_version/PKG-INFO" |
            grep -v 'extra ==' | grep -v '^certifi' >"$tmp/requirements.txt"
        "${pip[@]}" install -q -r "$tmp/requirements.txt" certifi
        "${pip[@]}" install -q --no-deps "$sdist"
    fi
    rm -rf "$tmp"
    trap - EXIT
    got="$("$venv/bin/python" -c 'import salt.version; print(salt.version.__saltstack_version__)')"
    [ "$got" = "$salt_version" ] || { say "Salt $got installed, wanted $salt_version"; exit 1; }
    echo "$salt_want" >"$salt_stamp"
else
    say "Salt $salt_version already installed"
fi

# --- the test tools ---------------------------------------------------------------------
tools=(pytest CherryPy)
tools_stamp="$venv/.salt-raet-tools"
if [ "$(cat "$tools_stamp" 2>/dev/null)" != "${tools[*]}" ]; then
    say "installing ${tools[*]}"
    "${pip[@]}" install -q "${tools[@]}"
    echo "${tools[*]}" >"$tools_stamp"
else
    say "${tools[*]} already installed"
fi

# --- the extension --------------------------------------------------------------------
ext_stamp="$venv/.salt-raet-ext"
ext_want="$(cd "$root" && find salt-ext common/proto/src common/raet/src common/salt/src common/*/Cargo.toml Cargo.toml Cargo.lock \
    -type f ! -path 'salt-ext/tests/*' ! -path 'salt-ext/target/*' ! -name '*.pyc' \
    ! -path '*/__pycache__/*' -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-64)"
installed_module=("$venv"/lib/python3*/site-packages/saltext_raet/_native*.so)
if [ "$(cat "$ext_stamp" 2>/dev/null)" != "$ext_want" ] || [ ! -f "${installed_module[0]}" ]; then
    say "building and installing ./salt-ext (maturin, release)"
    "${pip[@]}" install -q "$root/salt-ext"
    "$venv/bin/python" -c 'import saltext_raet._native as n; assert n.LANE == "salt"'
    echo "$ext_want" >"$ext_stamp"
else
    say "saltext-raet already installed from these sources"
fi

say "ready: $venv (Salt $salt_version, ${tools[*]}, saltext-raet)"
