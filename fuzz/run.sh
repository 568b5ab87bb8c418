#!/usr/bin/env bash
# Build and run every cargo-fuzz target for SECONDS each; fail on any crash.
#
#   fuzz/run.sh 60                 # every target
#   fuzz/run.sh 60 road_packet     # just these
#
# Works on the stable toolchain: cargo-fuzz needs nightly-only rustc flags,
# which RUSTC_BOOTSTRAP=1 unlocks. Needs `cargo install cargo-fuzz --locked`.
# Seeds come from fuzz/corpus-seed/<target>/ (committed); the growing corpus
# lives in fuzz/corpus/<target>/ (ignored). Crashes land in fuzz/artifacts/.
# FUZZ_SANITIZER (default: none, the crates forbid unsafe code) selects the
# sanitizer; debug assertions and overflow checks are always on.
set -euo pipefail

seconds="${1:?usage: fuzz/run.sh SECONDS}"
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
export RUSTC_BOOTSTRAP=1
sanitizer="${FUZZ_SANITIZER:-none}"

command -v cargo-fuzz >/dev/null || {
    echo "cargo-fuzz missing: cargo install cargo-fuzz --locked" >&2
    exit 3
}

shift
targets="${*:-$(cargo fuzz list)}"
for target in $targets; do
    mkdir -p "corpus/$target"
    seeds=()
    [ -d "corpus-seed/$target" ] && seeds=("corpus-seed/$target")
    echo "== fuzz $target for ${seconds}s"
    cargo fuzz run --sanitizer "$sanitizer" --debug-assertions "$target" \
        "corpus/$target" "${seeds[@]}" -- \
        -max_total_time="$seconds" -dict="$here/raet.dict" -max_len=4096 \
        -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
done
echo "fuzz: no crash in $(echo $targets | wc -w) targets"
