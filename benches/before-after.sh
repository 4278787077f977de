#!/usr/bin/env bash
# Before and after a change, side by side: the server built from BASE_REV (a git revision) and
# the one built from the working tree, same config, same load generator (the working tree's),
# one server at a time, alternating base and head for every row so both see the same machine.
# Rows: both engines (onnx, candle), 60 concurrent clients, 1 and 10 sentences per request, as in
# BENCHMARKS.md's server table. Prints a Markdown table with head/base ratios; raw JSON goes to
# target/bench-results/before-after/.
# Usage: benches/before-after.sh BASE_REV [SECONDS_PER_RUN]
# BASE_BIN=DIR skips building BASE_REV and takes its `embedrt` and plugins from DIR.
source "$(dirname "$0")/lib.sh"
base_rev="${1:?usage: benches/before-after.sh BASE_REV [SECONDS_PER_RUN]}"
seconds="${2:-15}"
results="$results/before-after"
mkdir -p "$results"

head_bin="$root/target/release"
if [ -z "${BASE_BIN:-}" ]; then
    tree="$root/target/bench-rev/$(git rev-parse --short "$base_rev")"
    [ -d "$tree" ] || git worktree add --detach "$tree" "$base_rev"
    # The base revision's own list of packages, if it has the shell library; else the server
    # and the CPU plugins, which every revision has.
    if [ -f "$tree/scripts/lib.sh" ]; then
        (cd "$tree" && bash -c 'source scripts/lib.sh && build_release')
    else
        (cd "$tree" && cargo build --release -p embedrt-api -p embedrt-plugin-onnx -p embedrt-plugin-candle)
    fi
    BASE_BIN="$tree/target/release"
fi
# Revisions before the onnx backend found the library by itself need to be told where it is.
export ORT_DYLIB_PATH="$root/.assets/onnxruntime/libonnxruntime.so"
build_release

files=()
run() { # BUILD BIN_DIR ENGINE INPUTS
    local config="$results/$3.toml"
    model_table "$3" > "$config"
    EMBEDRT_BIN="$2/embedrt" start_server "$results/$1-$3.log" --config "$config"
    "$head_bin/embedrt-bench" --url "$SERVER_URL/v1/embeddings" -c 60 -b "$4" \
        -d "$seconds" --label "$1-$3" --tag "engine=$3" --tag "build=$1" \
        --json "$results/$1-$3-b$4.json"
    files+=("$results/$1-$3-b$4.json")
    stop_background "$SERVER_PID"
}

for engine in onnx candle; do
    for b in 1 10; do
        run base "$BASE_BIN" "$engine" "$b"
        run head "$head_bin" "$engine" "$b"
    done
done

table engine batch=inputs/req build requests_per_s=req/s inputs_per_s=inputs/s "p50_ms=p50 ms" \
    "p95_ms=p95 ms" "p99_ms=p99 ms" errors -- "${files[@]}"
echo
table --ratio build=head/base engine batch=inputs/req "requests_per_s=head/base req/s" \
    "p50_ms=head/base p50" -- "${files[@]}"
