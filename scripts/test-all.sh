#!/usr/bin/env bash
# Run every check and test of salt-raet, failing fast:
#   1. cargo fmt --check            2. cargo clippy (all targets, -D warnings)
#   3. reference raet venv (tests/interop/setup-ref.sh) + its pytest self-test
#   4. cargo test --workspace (debug), with the Rust<->reference interop tests required,
#      then the 5 MB simulation scenarios in release (too slow in debug)
#      and the delivery contract property over many seeds (release)
#   5. Salt's venv (scripts/setup-salt-venv.sh: Salt 3008.5, the extension built by maturin),
#      the extension's pytest (salt-ext/tests), stock Salt end to end on transport raet
#      (tests/salt, salt-api included), beside it (in the background, other ports) on Salt
#      3007.17 (its own venv, target/salt3007-venv) the extension's pytest and the
#      end-to-end tests marked `core`, Salt's own transport
#      and channel tests run for raet
#      (tests/salt-transport); the raet-rs Python package's pytest (pkg/raet-rs/tests, a
#      debug build in target/raet-rs-venv)
#   6. the wheels (scripts/build-dist.sh into target/wheels), installed by pip into a fresh venv
#      and run without a Rust toolchain on PATH (scripts/check-dist.sh)
#   7. the bounded fuzz run (fuzz/run.sh 30), when fuzz/ exists
# The last line is "N passed, N failed": N counts test cases of cargo test and pytest,
# plus one per check (fmt, clippy, wheels built, wheels installed, fuzz).  Exit status 0 only if everything passed.
#
# Environment: RAET_REF_VENV (default target/ref-venv) is where the reference venv lives;
# SALT_RAET_VENV (default target/salt-venv) is Salt's venv with saltext_raet;
# SALT_RAET_VENV_3007 (default target/salt3007-venv) the one with Salt 3007.
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root" || exit 1
export CARGO_TERM_COLOR=never
venv="${RAET_REF_VENV:-$root/target/ref-venv}"
logdir="$root/target/test-all"
mkdir -p "$logdir"
passed=0
failed=0

summary() {
    echo
    echo "test-all: $1"
    echo "${passed} passed, ${failed} failed"
}

fail() {
    failed=$((failed + ${2:-1}))
    echo "test-all: FAILED: $1 (log: ${3:-see above})" >&2
    summary "stopped at the first failure: $1"
    exit 1
}

# step NAME LOG CMD...: run CMD, its output shown and kept in LOG; returns CMD's status.
step() {
    local name="$1" log="$2"
    shift 2
    echo "=== $name: $*"
    local start=$SECONDS
    "$@" 2>&1 | tee "$log"
    local rc=${PIPESTATUS[0]}
    echo "=== $name: exit $rc after $((SECONDS - start)) s"
    return "$rc"
}

# Sum "N passed" / "N failed" over cargo test's "test result:" lines.
cargo_counts() {
    awk '/^test result:/ {
            for (i = 1; i <= NF; i++) {
                if ($(i+1) ~ /^passed/) p += $i
                if ($(i+1) ~ /^failed/) f += $i
            }
         } END { print p + 0, f + 0 }' "$1"
}

# "N passed" / "N failed" of pytest's closing line (the last line "... in N.NNs"; output
# after it, such as logging errors printed while the interpreter exits, is not counted).
pytest_counts() {
    grep -E '(passed|failed|errors?|skipped|deselected).* in [0-9.]+s( \([0-9:]+\))?( =+)?$' "$1" |
        tail -n 1 | awk '{
            for (i = 1; i <= NF; i++) {
                if ($(i+1) ~ /^passed/) p += $i
                if ($(i+1) ~ /^(failed|errors?)/) f += $i
            }
         } END { print p + 0, f + 0 }'
}

step "rustfmt" "$logdir/fmt.log" cargo fmt --all -- --check --color never \
    || fail "cargo fmt --check (run: cargo fmt --all)" 1 "$logdir/fmt.log"
passed=$((passed + 1))

step "clippy" "$logdir/clippy.log" cargo clippy --workspace --all-targets -- -D warnings \
    || fail "cargo clippy" 1 "$logdir/clippy.log"
passed=$((passed + 1))

step "reference venv" "$logdir/setup-ref.log" tests/interop/setup-ref.sh "$venv" \
    || fail "tests/interop/setup-ref.sh $venv" 1 "$logdir/setup-ref.log"
export RAET_REF_PYTHON="$venv/bin/python"
export RAET_REQUIRE_INTEROP=1

# counted_step COUNTS NAME LOG CMD...: a test run whose cases are counted by the function
# COUNTS (cargo_counts or pytest_counts) over LOG; it fails if CMD fails or nothing passed.
counted_step() {
    local counts="$1" name="$2" log="$3"
    shift
    step "$@"
    local rc=$?
    read -r p f < <("$counts" "$log")
    passed=$((passed + p))
    if [ "$rc" != 0 ] || [ "$p" = 0 ]; then
        fail "$name (exit $rc, $p passed)" "$((f > 0 ? f : 1))" "$log"
    fi
    failed=$((failed + f))
}

counted_step pytest_counts "harness self-test" "$logdir/pytest.log" \
    "$RAET_REF_PYTHON" -m pytest -q -p no:cacheprovider tests/interop

counted_step cargo_counts "cargo test" "$logdir/cargo-test.log" cargo test --workspace

# The 5 MB simulation scenarios are skipped by debug builds (~16 s of CPU each there).
counted_step cargo_counts "simulation 5 MB (release)" "$logdir/sim-release.log" \
    cargo test --release -p raet-sim --test sim_messaging -- 5mb

# The fast profile's bulk transfer: 64 MB at 0, 1, 5 and 20 % loss over 100 MB/s (release).
counted_step cargo_counts "fast profile goodput (release)" "$logdir/sim-fast.log" \
    cargo test --release -p raet-sim --test sim_fast -- --include-ignored --nocapture

# The delivery contract over 200 seeds at 60 % loss and 40 at 90 % (ignored in debug).
counted_step cargo_counts "delivery contract (release)" "$logdir/delivery-contract.log" \
    cargo test --release -p raet-sim --test delivery_contract -- --include-ignored --nocapture

# Salt's venv: Salt 3008.5 from PyPI, pytest and saltext_raet built by maturin (pip install
# ./salt-ext); fast when nothing changed (stamps in the venv).
salt_venv="${SALT_RAET_VENV:-$root/target/salt-venv}"
step "salt venv" "$logdir/setup-salt.log" scripts/setup-salt-venv.sh "$salt_venv" \
    || fail "scripts/setup-salt-venv.sh $salt_venv" 1 "$logdir/setup-salt.log"

# The minion id against Salt's own generate_minion_id (it needs Salt: skipped by the cargo
# test above on a machine without the venv, required here).
counted_step cargo_counts "minion id as Salt's" "$logdir/minion-id.log" \
    env SALT_RAET_VENV="$salt_venv" SALT_RAET_REQUIRE_SALT=1 \
    cargo test -p salt-raet --lib minion_id::tests::the_choice_is_salts_own_for_the_same_host

# salt_ext_tests NAME LOG VENV: the extension's own tests (salt-ext/tests), counted: the
# native module (yards, the real salt-raet-master built by cargo test above) and the Python
# side against the Salt of VENV.
salt_ext_tests() {
    counted_step pytest_counts "$1" "$2" env SALT_RAET_BIN_DIR="$root/target/debug" \
        "$3/bin/python" -m pytest -q -p no:cacheprovider salt-ext/tests
}
salt_ext_tests "salt-ext pytest" "$logdir/salt-ext.log" "$salt_venv"

# raet-rs, the Python package on the Rust stacks: a debug build by maturin into its own venv
# (scripts/setup-raet-rs-venv.sh), its pytest (the tutorial's examples, errors, and the
# interop tests against the reference venv, required here).
raet_rs_venv="$root/target/raet-rs-venv"
step "raet-rs venv" "$logdir/setup-raet-rs.log" scripts/setup-raet-rs-venv.sh "$raet_rs_venv" \
    || fail "scripts/setup-raet-rs-venv.sh $raet_rs_venv" 1 "$logdir/setup-raet-rs.log"
counted_step pytest_counts "raet-rs pytest" "$logdir/raet-rs.log" \
    "$raet_rs_venv/bin/python" -m pytest -q -p no:cacheprovider pkg/raet-rs/tests

# salt_e2e NAME LOG VENV PORTS [PYTEST ARGS...]: the end-to-end suite tests/salt with the Salt
# of VENV and the debug daemons built by cargo test above, its UDP ports from PORTS, counted.
salt_e2e() {
    local name="$1" log="$2" venv="$3" ports="$4"
    shift 4
    counted_step pytest_counts "$name" "$log" \
        env SALT_RAET_VENV="$venv" SALT_RAET_BIN_DIR="$root/target/debug" \
        SALT_RAET_PORTS="$ports" \
        "$venv/bin/python" -m pytest -q -p no:cacheprovider --durations=5 "$@" tests/salt
}

# Salt 3007.x, the other supported series, in a second venv made by the same script (the
# extension build is reused): the extension's tests, and of the end-to-end suite the tests
# marked `core` (key workflow, jobs, pillar, states and files, events, job cache, key
# deletion, salt-api, multi-master, failover, syndic). Its own counts, as a summary line.
salt3007() {
    passed=0
    failed=0
    local venv="${SALT_RAET_VENV_3007:-$root/target/salt3007-venv}"
    step "salt 3007 venv" "$logdir/setup-salt3007.log" \
        scripts/setup-salt-venv.sh "$venv" 3007.17 \
        || fail "scripts/setup-salt-venv.sh $venv 3007.17" 1 "$logdir/setup-salt3007.log"
    salt_ext_tests "salt-ext pytest (3007)" "$logdir/salt-ext3007.log" "$venv"
    salt_e2e "salt 3007 end-to-end" "$logdir/salt3007-e2e.log" "$venv" 31000-31999 -m core
    summary "salt 3007 passed"
}

# Both end-to-end suites mostly wait on Salt's daemons: Salt 3007's group runs in the
# background (its output shown when it ends) beside stock Salt 3008 on transport raet,
# end to end (tests/salt): a master and two minions, salt-api, raet.status, Salt-crypto mode,
# IPv6 on ::1, the migration from ZeroMQ (docs/migration.md), multi-master, syndic.
salt3007 > "$logdir/salt3007-group.log" 2>&1 &
group3007=$!
# a failure below still waits for it (no daemon of its labs left running)
trap 'wait "$group3007" 2>/dev/null' EXIT
salt_e2e "salt end-to-end" "$logdir/salt-e2e.log" "$salt_venv" \
    "${SALT_RAET_PORTS:-29000-29999}"
wait "$group3007"
rc3007=$?
trap - EXIT
cat "$logdir/salt3007-group.log"
read -r p f < <(tail -n 1 "$logdir/salt3007-group.log" | awk '{ print $1 + 0, $3 + 0 }')
passed=$((passed + p))
failed=$((failed + f))
if [ "$rc3007" != 0 ] || [ "$p" = 0 ]; then
    failed=$((failed + (f > 0 ? 0 : 1)))
    echo "test-all: FAILED: Salt 3007 (log: $logdir/salt3007-group.log)" >&2
    summary "stopped at the first failure: Salt 3007"
    exit 1
fi

# Salt's own transport and channel tests, from Salt's sdist (downloaded once into target/),
# for transport raet next to the stock transports (tests/salt-transport/raet_overlay.py).
counted_step pytest_counts "salt's transport tests" "$logdir/salt-transport.log" \
    env SALT_RAET_VENV="$salt_venv" SALT_RAET_BIN_DIR="$root/target/debug" \
    tests/salt-transport/run.sh

# The wheels an operator installs with pip and no compiler (scripts/build-dist.sh: the
# extension and the daemons, manylinux2014, profile dist), installed into a fresh venv and run
# with no cargo or rustc on PATH, stock Salt with the wheel's daemons included
# (scripts/check-dist.sh).
step "wheels" "$logdir/build-dist.log" scripts/build-dist.sh "$root/target/wheels" \
    || fail "scripts/build-dist.sh target/wheels" 1 "$logdir/build-dist.log"
passed=$((passed + 1))
step "wheels installed" "$logdir/check-dist.log" \
    scripts/check-dist.sh "$root/target/wheels" "$salt_venv" \
    || fail "scripts/check-dist.sh target/wheels $salt_venv" 1 "$logdir/check-dist.log"
passed=$((passed + 1))

if [ -x fuzz/run.sh ]; then
    step "fuzz" "$logdir/fuzz.log" fuzz/run.sh 30 || fail "fuzz/run.sh 30" 1 "$logdir/fuzz.log"
    passed=$((passed + 1))
else
    echo "=== fuzz: no fuzz/run.sh, skipped"
fi

summary "all steps passed"
