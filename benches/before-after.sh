#!/usr/bin/env bash
# Before and after a change, side by side: the server built from BASE_REV (a git revision) and
# the one built from the working tree, same config, same load generator (the working tree's),
# one server at a time, alternating base and head for every row so both see the same machine.
# Rows: both engines (onnx, candle), 60 concurrent clients, 1 and 10 sentences per request, as in
# BENCHMARKS.md's server table. Prints a Markdown table with head/base ratios; raw JSON goes to
# target/bench-results/before-after/.
# Usage: benches/before-after.sh BASE_REV [SECONDS_PER_RUN]
# BASE_BIN=DIR skips building BASE_REV and takes its `embedrt` and plugins from DIR.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
base_rev="${1:?usage: benches/before-after.sh BASE_REV [SECONDS_PER_RUN]}"
seconds="${2:-15}"
results="$root/target/bench-results/before-after"
mkdir -p "$results"

head_bin="$root/target/release"
if [ -z "${BASE_BIN:-}" ]; then
    tree="$root/target/bench-rev/$(git rev-parse --short "$base_rev")"
    [ -d "$tree" ] || git worktree add --detach "$tree" "$base_rev"
    (cd "$tree" && cargo build --release -p embedrt-api -p embedrt-plugin-onnx -p embedrt-plugin-candle)
    BASE_BIN="$tree/target/release"
fi
# Revisions before the onnx backend found the library by itself need to be told where it is.
export ORT_DYLIB_PATH="$root/.assets/onnxruntime/libonnxruntime.so"
source benches/lib.sh
build_release

run() { # LABEL BIN_DIR ENGINE INPUTS
    local config="$results/$3.toml"
    engine_config "$3" "$config"
    "$2/embedrt" serve --config "$config" --http 127.0.0.1:18090 2>"$results/$1-$3.log" &
    local pid=$!
    wait_ready http://127.0.0.1:18090/ready
    "$head_bin/embedrt-bench" --url http://127.0.0.1:18090/v1/embeddings -c 60 -b "$4" \
        -d "$seconds" --label "$1-$3" --json "$results/$1-$3-b$4.json"
    kill "$pid"; wait "$pid" 2>/dev/null || true
}

for engine in onnx candle; do
    for b in 1 10; do
        run base "$BASE_BIN" "$engine" "$b"
        run head "$head_bin" "$engine" "$b"
    done
done

python3 - "$results" <<'PY'
import json, sys, pathlib
results = pathlib.Path(sys.argv[1])
print("| engine | inputs/req | build | req/s | inputs/s | p50 ms | p95 ms | p99 ms | errors |")
print("|---|---:|---|---:|---:|---:|---:|---:|---:|")
ratios = []
for engine in ("onnx", "candle"):
    for b in (1, 10):
        rows = {which: json.loads((results / f"{which}-{engine}-b{b}.json").read_text()) for which in ("base", "head")}
        for which, r in rows.items():
            print(f"| {engine} | {b} | {which} | {r['requests_per_s']:.1f} | {r['inputs_per_s']:.1f} | {r['p50_ms']:.1f} "
                  f"| {r['p95_ms']:.1f} | {r['p99_ms']:.1f} | {r['errors']} |")
        ratios.append((engine, b, rows["head"]["requests_per_s"] / rows["base"]["requests_per_s"],
                       rows["head"]["p50_ms"] / rows["base"]["p50_ms"]))
print()
print("| engine | inputs/req | head/base req/s | head/base p50 |")
print("|---|---:|---:|---:|")
for engine, b, rps, p50 in ratios:
    print(f"| {engine} | {b} | {rps:.2f}x | {p50:.2f}x |")
PY
