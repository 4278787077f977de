#!/usr/bin/env bash
# One embedrt against the same engine behind nginx (deploy/nginx via scripts/replicas.sh): one
# replica behind nginx (nginx's own cost) and two replicas behind nginx (on this 2-core machine
# the replicas share the cores). 1 and 60 concurrent single-sentence clients, 15 s each after
# 2 s of warm-up. Prints a Markdown table, JSON in target/bench-results/.
# Usage: benches/nginx.sh [SECONDS_PER_RUN] [ENGINE] (engine as in compare.sh; default onnx)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
seconds="${1:-15}"
engine="${2:-onnx}"
results="$root/target/bench-results"
mkdir -p "$results"

source benches/lib.sh
build_release
config="$results/nginx-$engine.toml"
engine_config "$engine" "$config"

measure() { # LABEL URL
    for c in 1 60; do
        target/release/embedrt-bench --url "$2" -c "$c" -b 1 -d "$seconds" --label "$1" \
            --json "$results/$1-c$c.json" >/dev/null
    done
}

target/release/embedrt serve --config "$config" --http 127.0.0.1:8081 2>"$results/nginx-direct.log" &
pid=$!
wait_ready http://127.0.0.1:8081/ready
measure direct http://127.0.0.1:8081/v1/embeddings
kill "$pid"; wait "$pid" 2>/dev/null || true

for replicas in 1 2; do
    scripts/replicas.sh "$replicas" "$config" 2>"$results/nginx-$replicas.log" &
    pid=$!
    for i in $(seq 0 $((replicas - 1))); do wait_ready "http://127.0.0.1:$((8081 + i))/ready"; done
    wait_ready http://127.0.0.1:8080/ready
    measure "nginx-x$replicas" http://127.0.0.1:8080/v1/embeddings
    kill "$pid"; wait "$pid" 2>/dev/null || true
done

python3 - "$results" <<'PY'
import json, sys, pathlib
results = pathlib.Path(sys.argv[1])
print("| setup | clients | req/s | p50 ms | p95 ms | p99 ms | errors |")
print("|---|---:|---:|---:|---:|---:|---:|")
names = {"direct": "one embedrt, no nginx", "nginx-x1": "nginx + 1 replica", "nginx-x2": "nginx + 2 replicas"}
for label, name in names.items():
    for c in (1, 60):
        r = json.loads((results / f"{label}-c{c}.json").read_text())
        print(f"| {name} | {c} | {r['requests_per_s']:.1f} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} "
              f"| {r['p99_ms']:.1f} | {r['errors']} |")
PY
