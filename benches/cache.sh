#!/usr/bin/env bash
# The embedding cache under load: 60 concurrent single-sentence clients on the default model, with
# half of the inputs repeating (the other half unique) and with none repeating, each with the cache
# off, in-process only, and Redis only (a local redis-server started here). One server at a time,
# the same load generator; prints a Markdown table, JSON in target/bench-results/.
# Usage: benches/cache.sh [SECONDS_PER_RUN] [ENGINE] (engine as in compare.sh; default onnx)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
seconds="${1:-15}"
engine="${2:-onnx}"
results="$root/target/bench-results"
mkdir -p "$results"

source benches/lib.sh
build_release

redis_port=18379
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no >/dev/null &
redis_pid=$!
trap 'kill "$redis_pid" 2>/dev/null || true' EXIT
until redis-cli -p "$redis_port" ping >/dev/null 2>&1; do sleep 0.1; done

echo "| repeated inputs | cache | req/s | p50 ms | p95 ms | p99 ms | errors |"
echo "|---|---|---:|---:|---:|---:|---:|"
for unique in 0.5 1.0; do
    for mode in off memory redis; do
        config="$results/cache-$mode.toml"
        engine_config "$engine" "$config"
        case "$mode" in
            memory) cache='[cache]\nmemory_bytes = 268435456\n' ;;
            redis) cache="[cache]\\nredis_url = \"redis://127.0.0.1:$redis_port\"\\n" ;;
            off) cache='' ;;
        esac
        # The [cache] table goes before the first [[models]] table.
        sed -i "0,/^\[\[models\]\]/s//${cache//\//\\/}[[models]]/" "$config"
        redis-cli -p "$redis_port" flushall >/dev/null
        target/release/embedrt serve --config "$config" --http 127.0.0.1:18084 2>"$results/cache-$mode.log" &
        pid=$!
        wait_ready http://127.0.0.1:18084/ready
        label="cache-$mode-unique$unique"
        target/release/embedrt-bench --url http://127.0.0.1:18084/v1/embeddings -c 60 -b 1 \
            -d "$seconds" --warmup 5 --unique "$unique" --label "$label" --json "$results/$label.json" >/dev/null
        kill "$pid"; wait "$pid" 2>/dev/null || true
        python3 - "$results/$label.json" "$unique" "$mode" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
repeated = "none" if float(sys.argv[2]) == 1.0 else f"{1 - float(sys.argv[2]):.0%}"
print(f"| {repeated} | {sys.argv[3]} | {r['requests_per_s']:.1f} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} "
      f"| {r['p99_ms']:.1f} | {r['errors']} |")
PY
    done
done
