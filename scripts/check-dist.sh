#!/usr/bin/env bash
# Installs the wheels of dist/ (scripts/build-dist.sh) the way an operator does, with pip and
# no Rust toolchain, and runs them:
#   1. a fresh venv; `pip install --no-index --only-binary :all: --find-links DIST salt-raet
#      saltext-raet raet-rs` (wheels only: pip cannot fall back to building anything);
#   2. with PATH=<venv>/bin:/usr/bin:/bin (cargo and rustc must not be found there):
#      salt-raet-master/salt-raet-minion/raet --version resolve to the venv's bin/ (the
#      wheel's scripts), `raet demo` (two road stacks over loopback UDP, joined, a small
#      and a 1 MB message both ways), and `import saltext_raet._native` loads the wheel's
#      module (Salt, which the extension imports, comes from SALT_VENV through a .pth file:
#      the extension is installed into an existing Salt and does not bring one), and
#      raet_rs (the wheel's module) joins two road stacks that exchange messages;
#   3. stock Salt on transport raet (tests/salt/saltlab.py demo: salt-master, salt-minion,
#      salt-key -a, `salt '*' test.ping`) with the daemons of the wheel (Salt and its
#      extension from SALT_VENV);
#   4. salt-pip's way, `pip install --target DIR`: the daemons land in DIR/bin and run.
#
# usage: scripts/check-dist.sh [DIST [SALT_VENV]]
#        (defaults: dist/ and target/salt-venv, made by scripts/setup-salt-venv.sh)
# The fresh venv is target/dist-check-venv (made anew on every run).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dist="$(cd "${1:-$root/dist}" && pwd)"
salt_venv="$(cd "${2:-$root/target/salt-venv}" && pwd)"
venv="$root/target/dist-check-venv"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
start=$SECONDS

say() { echo "check-dist: [$((SECONDS - start)) s] $*"; }
die() { say "FAILED: $*" >&2; exit 1; }

# The environment of an operator's shell without a Rust toolchain.
clean=(env -i "HOME=$HOME" "PATH=$venv/bin:/usr/bin:/bin" LANG=C.UTF-8)

say "fresh venv $venv, the wheels of $dist"
rm -rf "$venv"
"$salt_venv/bin/python" -m venv "$venv"
"$venv/bin/python" -m pip install -q --no-index --only-binary :all: --find-links "$dist" \
    salt-raet saltext-raet raet-rs
"$venv/bin/python" -m pip list --format=freeze | grep -E '^(salt-raet|saltext-raet|saltext_raet|raet-rs|raet_rs)=='

if "${clean[@]}" sh -c 'command -v cargo || command -v rustc'; then
    die "cargo or rustc is on the clean PATH"
fi
for program in salt-raet-master salt-raet-minion raet; do
    found="$("${clean[@]}" sh -c "command -v $program")" || die "$program not on PATH"
    [ "$found" = "$venv/bin/$program" ] || die "$program is $found, not the wheel's"
    say "$found: $("${clean[@]}" "$program" --version)"
done

say "raet demo"
"${clean[@]}" raet demo --timeout 60

salt_site="$("$salt_venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
echo "$salt_site" >"$site/salt-from-salt-venv.pth"
say "import saltext_raet._native (Salt from $salt_venv)"
"${clean[@]}" python -c '
import sys, saltext_raet._native as n
assert n.__file__.startswith(sys.prefix + "/"), n.__file__
assert n.LANE == "salt", n.LANE
print("check-dist: saltext_raet._native from", n.__file__)'

say "raet_rs: two road stacks join and exchange messages"
"${clean[@]}" python - <<'EOF'
import sys, time
import raet_rs as raet
from raet_rs.road import estating, stacking
assert raet._native.__file__.startswith(sys.prefix + "/"), raet._native.__file__
auto = raet.raeting.AutoMode.always.value
alpha = stacking.RoadStack(name="alpha", ha=("127.0.0.1", 0), auto=auto)
beta = stacking.RoadStack(name="beta", ha=("127.0.0.1", 0), main=True, auto=auto)
alpha.addRemote(estating.RemoteEstate(stack=alpha, ha=beta.ha))
alpha.join()
deadline = time.monotonic() + 30
def serve():
    while alpha.transactions or beta.transactions:
        assert time.monotonic() < deadline, "timed out"
        alpha.serviceAll(); beta.serviceAll(); time.sleep(0.01)
serve()
alpha.transmit({"to": "beta"})
beta.transmit({"to": "alpha", "blob": "x" * 100000})
serve()
assert list(beta.rxMsgs) == [({"to": "beta"}, "alpha")], beta.rxMsgs
assert alpha.rxMsgs[0][0]["blob"] == "x" * 100000
print("check-dist: raet_rs from", raet._native.__file__)
EOF

say "Salt on transport raet with the wheel's daemons (saltlab demo)"
env SALT_RAET_VENV="$salt_venv" "$salt_venv/bin/python" "$root/tests/salt/saltlab.py" demo \
    --venv "$salt_venv" --bin-dir "$venv/bin"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
say "pip install --target (salt-pip's way)"
"$venv/bin/python" -m pip install -q --no-index --only-binary :all: --find-links "$dist" \
    --target "$tmp/extras" salt-raet
for program in salt-raet-master salt-raet-minion raet; do
    [ -x "$tmp/extras/bin/$program" ] || die "no $program in --target's bin/"
    "${clean[@]}" "$tmp/extras/bin/$program" --version >/dev/null
done
say "all checks passed"
