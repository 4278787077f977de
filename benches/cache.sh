#!/usr/bin/env bash
# The embedding cache under load: 60 concurrent single-sentence clients on the default model, with
# half of the inputs repeating (the other half unique) and with none repeating, each with the cache
# off, in-process only, and Redis only (a local redis-server started here). One server at a time,
# the same load generator; prints a Markdown table, JSON in target/bench-results/.
# Usage: benches/cache.sh [SECONDS_PER_RUN] [ENGINE] (engine as in compare.sh; default onnx)
source "$(dirname "$0")/lib.sh"
seconds="${1:-15}"
engine="${2:-onnx}"
build_release

redis_port="$(free_port)"
start_background "$results/cache-redis.log" redis-server --port "$redis_port" --bind 127.0.0.1 \
    --save "" --appendonly no
until redis-cli -p "$redis_port" ping >/dev/null 2>&1; do sleep 0.1; done

files=()
for unique in 0.5 1.0; do
    repeated="none"
    [ "$unique" = 0.5 ] && repeated="50%"
    for mode in off memory redis; do
        config="$results/cache-$mode.toml"
        {
            case "$mode" in
                memory) printf '[cache]\nmemory_bytes = 268435456\n' ;;
                redis) printf '[cache]\nredis_url = "redis://127.0.0.1:%s"\n' "$redis_port" ;;
                off) ;;
            esac
            model_table "$engine"
        } > "$config"
        redis-cli -p "$redis_port" flushall >/dev/null
        start_server "$results/cache-$mode.log" --config "$config"
        label="cache-$mode-unique$unique"
        target/release/embedrt-bench --url "$SERVER_URL/v1/embeddings" -c 60 -b 1 \
            -d "$seconds" --warmup 5 --unique "$unique" --label "$label" \
            --tag "repeated=$repeated" --tag "cache=$mode" --json "$results/$label.json" >/dev/null
        files+=("$results/$label.json")
        stop_background "$SERVER_PID"
    done
done
table "repeated=repeated inputs" cache requests_per_s=req/s "p50_ms=p50 ms" "p95_ms=p95 ms" \
    "p99_ms=p99 ms" errors -- "${files[@]}"
