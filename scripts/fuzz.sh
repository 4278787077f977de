#!/usr/bin/env bash
# Fuzzes embedrt's parsers of untrusted input: each target of fuzz/ (cargo fuzz, libFuzzer with
# AddressSanitizer, on the nightly toolchain) runs for SECONDS, starting from the seed corpus in
# fuzz/corpus/<target> (read only: what a run finds goes to fuzz/target/corpus/<target>), and one
# line per target says how many inputs ran and whether one crashed.
#
# A crash leaves its input in fuzz/artifacts/<target>/. Copy it into fuzz/regressions/<target>/
# (the property tests of `cargo test` run every file there: tests/tests/parsers.rs), fix the
# parser, and record the run in BENCHMARKS.md ("Fuzzing"). Not part of `cargo test`.
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]   (default: 60 seconds, every target)
# Needs: rustup's nightly toolchain, `cargo install cargo-fuzz`, and scripts/setup.sh's assets
# (the truncation target tokenizes with all-MiniLM-L6-v2).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
seconds="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(http_body grpc_messages config_file truncation)
fi
command -v cargo-fuzz >/dev/null || { echo "fuzz: install cargo-fuzz (cargo install cargo-fuzz)" >&2; exit 1; }

cd "$root/fuzz"
cargo +nightly fuzz build >&2
failed=0
printf '%-14s %8s %12s %10s %8s %s\n' target seconds executions "execs/s" corpus crashes
for target in "${targets[@]}"; do
    scratch="target/corpus/$target"
    mkdir -p "$scratch" "artifacts/$target"
    log="target/fuzz-$target.log"
    status=0
    cargo +nightly fuzz run "$target" "$scratch" "corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -print_final_stats=1 >"$log" 2>&1 || status=$?
    runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
    crashes="$(find "artifacts/$target" -type f | wc -l)"
    corpus="$(find "$scratch" "corpus/$target" -type f | wc -l)"
    printf '%-14s %8s %12s %10s %8s %s\n' "$target" "$seconds" "${runs:-?}" \
        "$(( ${runs:-0} / seconds ))" "$corpus" "$crashes"
    if [ "$status" -ne 0 ] || [ "$crashes" -ne 0 ]; then
        failed=1
        echo "fuzz: $target failed (exit $status); its log: fuzz/$log, inputs: fuzz/artifacts/$target/" >&2
    fi
done
exit "$failed"
