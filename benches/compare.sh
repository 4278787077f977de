#!/usr/bin/env bash
# Side-by-side load benchmark on this machine: embedrt (onnx, candle) and Infinity (torch), same
# model folder, same load generator, one server at a time. For each server: 1 and 60 concurrent
# clients, 1 and 10 sentences per request. Prints a Markdown table; raw JSON goes to
# target/bench-results/. Usage: benches/compare.sh [SECONDS_PER_RUN] [SERVER...]
# (servers: onnx onnx-int8 candle infinity infinity-onnx, embedrt's with -xN for N replicas, e.g.
# onnx-int8-x2; default onnx candle infinity).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
seconds="${1:-15}"
shift || true
servers=("${@:-onnx candle infinity}")
servers=(${servers[*]})
results="$root/target/bench-results"
mkdir -p "$results"


source benches/lib.sh
build_release

run_matrix() { # LABEL URL
    for c in 1 60; do
        for b in 1 10; do
            target/release/embedrt-bench --url "$2" -c "$c" -b "$b" -d "$seconds" --label "$1" \
                --json "$results/$1-c$c-b$b.json"
        done
    done
}

for server in "${servers[@]}"; do
    case "$server" in
        onnx*|candle*)
            config="$results/$server.toml"
            # The default config with this backend and its default options (see engine_keys).
            engine_config "$server" "$config"
            target/release/embedrt serve --config "$config" --http 127.0.0.1:18080 2>"$results/$server.log" &
            pid=$!
            wait_ready http://127.0.0.1:18080/ready
            run_matrix "embedrt-$server" http://127.0.0.1:18080/v1/embeddings
            ;;
        infinity|infinity-onnx)
            engine=torch model="$root/.assets/models/all-MiniLM-L6-v2"
            if [ "$server" = infinity-onnx ]; then
                # Its ONNX engine prefers a quantized file when the folder has one: give it the
                # folder without our int8 graph, so it runs fp32 like embedrt-onnx.
                engine=optimum model="$results/minilm-fp32"
                rm -rf "$model" && mkdir -p "$model"
                for file in .assets/models/all-MiniLM-L6-v2/*; do
                    case "$file" in *_int8*) ;; *) ln -s "$root/$file" "$model/" ;; esac
                done
            fi
            MODEL_DIR="$model" PORT=17997 benches/peers/infinity.sh --engine "$engine" >"$results/$server.log" 2>&1 &
            pid=$!
            wait_ready http://127.0.0.1:17997/health
            run_matrix "$server" http://127.0.0.1:17997/v1/embeddings
            ;;
        *) echo "unknown server $server" >&2; exit 2 ;;
    esac
    kill "$pid"; wait "$pid" 2>/dev/null || true
done

python3 - "$results" "${servers[@]}" <<'PY'
import json, sys, pathlib
results, servers = pathlib.Path(sys.argv[1]), sys.argv[2:]
labels = [s if s.startswith("infinity") else f"embedrt-{s}" for s in servers]
print("| server | clients | inputs/req | req/s | inputs/s | p50 ms | p95 ms | p99 ms | max ms | errors |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for label in labels:
    for c in (1, 60):
        for b in (1, 10):
            r = json.loads((results / f"{label}-c{c}-b{b}.json").read_text())
            print(f"| {label} | {c} | {b} | {r['requests_per_s']:.1f} | {r['inputs_per_s']:.1f} | {r['p50_ms']:.1f} "
                  f"| {r['p95_ms']:.1f} | {r['p99_ms']:.1f} | {r['max_ms']:.1f} | {r['errors']} |")
PY
