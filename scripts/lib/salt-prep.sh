# Sourced by scripts/salt-demo.sh and scripts/salt-bench.sh: sets $root and $venv, builds what
# is missing (Salt's venv with saltext_raet through scripts/setup-salt-venv.sh unless
# SALT_RAET_VENV names one, and the release daemons).
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
venv="${SALT_RAET_VENV:-$root/target/salt-venv}"
prog="$(basename "$0" .sh)"

if [ -z "${SALT_RAET_VENV:-}" ] && ! "$venv/bin/python" -c 'import saltext_raet' 2>/dev/null; then
    echo "$prog: creating $venv (scripts/setup-salt-venv.sh)"
    scripts/setup-salt-venv.sh
fi
echo "$prog: cargo build --release -p salt-raet-master -p salt-raet-minion"
cargo build --release --quiet -p salt-raet-master -p salt-raet-minion
