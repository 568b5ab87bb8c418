#!/usr/bin/env bash
# Builds the wheels an operator installs with pip and no Rust toolchain, into dist/:
#   saltext_raet-<v>-cp39-abi3-manylinux2014_x86_64.manylinux_2_17_x86_64.whl
#       the Salt extension (salt-ext/, module saltext_raet._native; abi3: CPython >= 3.9)
#   salt_raet-<v>-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl
#       the daemons salt-raet-master, salt-raet-minion and the raet command as the wheel's
#       scripts (pkg/wheel/: maturin `bindings = "bin"`)
#   raet_rs-<v>-cp39-abi3-manylinux2014_x86_64.manylinux_2_17_x86_64.whl
#       RAET for Python (pkg/raet-rs/, module raet_rs._native; docs/python.md)
# All are built by maturin with the cargo profile `dist` (release without debug info,
# stripped) and linked by zig against glibc 2.17 symbols (`--zig --compatibility
# manylinux2014`: maturin refuses a symbol newer than the policy allows), so they install on
# any x86_64 Linux with glibc >= 2.17 whatever glibc built them. At the end the script
# checks that again, printing what it finds, and fails otherwise: auditwheel show must find
# each wheel consistent with manylinux_2_17_x86_64, and each ELF file in them must need no
# GLIBC_ symbol version newer than 2.17 and carry no debug or symbol table sections.
#
# usage: scripts/build-dist.sh [OUT_DIR]      (default: dist/ in the repository)
# Environment: SALT_RAET_DIST_VENV, the build tools' venv (default target/dist-venv:
# maturin, ziglang and auditwheel from PyPI, installed once, pinned below);
# PYTHON (default python3) makes that venv.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$(mkdir -p "${1:-$root/dist}" && cd "${1:-$root/dist}" && pwd)"
venv="${SALT_RAET_DIST_VENV:-$root/target/dist-venv}"
tools=(maturin==1.16.0 ziglang==0.17.1 auditwheel==6.8.2)
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
start=$SECONDS

say() { echo "build-dist: [$((SECONDS - start)) s] $*"; }

# --- the build tools (stamp: the pinned list) ------------------------------------------
if [ "$(cat "$venv/.salt-raet-dist-tools" 2>/dev/null)" != "${tools[*]}" ]; then
    say "installing ${tools[*]} into $venv"
    [ -x "$venv/bin/python" ] || "${PYTHON:-python3}" -m venv "$venv"
    "$venv/bin/python" -m pip install -q "${tools[@]}"
    echo "${tools[*]}" >"$venv/.salt-raet-dist-tools"
fi
# maturin finds zig (the ziglang package) through the venv's python on PATH.
export PATH="$venv/bin:$PATH"

# --- the wheels -------------------------------------------------------------------------
rm -f "$out"/saltext_raet-*.whl "$out"/salt_raet-*.whl "$out"/raet_rs-*.whl
for project in salt-ext pkg/wheel pkg/raet-rs; do
    say "maturin build $project"
    maturin build --manifest-path "$root/$project/Cargo.toml" --profile dist --strip \
        --zig --compatibility manylinux2014 --out "$out"
done

# --- what was built ---------------------------------------------------------------------
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
for wheel in "$out"/saltext_raet-*.whl "$out"/salt_raet-*.whl "$out"/raet_rs-*.whl; do
    say "$(basename "$wheel"): $(du -k "$wheel" | cut -f1) KiB"
    tag="$(auditwheel show "$wheel" | tr '\n' ' ' |
        sed -n 's/.*consistent with the following platform tag: *"\([^"]*\)".*/\1/p')"
    echo "  auditwheel show: consistent with $tag"
    [ "$tag" = manylinux_2_17_x86_64 ] || { say "FAILED: $wheel is not manylinux2014"; exit 1; }
    rm -rf "$tmp/w" && mkdir "$tmp/w"
    (cd "$tmp/w" && python3 -m zipfile -e "$wheel" .)
    while IFS= read -r -d '' file; do
        [ "$(head -c 4 "$file" | od -An -c | tr -d ' ')" = '177ELF' ] || continue
        newest="$(objdump -T "$file" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -n 1)"
        symbols="$(readelf -S "$file" | grep -cE '\.(debug_|symtab)' || true)"
        echo "  ${file#"$tmp/w/"}: $(du -k "$file" | cut -f1) KiB, needs $newest," \
            "$symbols debug or symbol table sections"
        [ "$(printf '%s\n' "$newest" GLIBC_2.17 | sort -V | tail -n 1)" = GLIBC_2.17 ] ||
            { say "FAILED: $file needs $newest"; exit 1; }
        [ "$symbols" = 0 ] || { say "FAILED: $file is not stripped"; exit 1; }
    done < <(find "$tmp/w" -type f -print0)
done
say "done: wheels in $out"
