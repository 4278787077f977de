#!/usr/bin/env bash
# One embedrt against the same engine behind nginx (deploy/nginx via scripts/replicas.sh): one
# replica behind nginx (nginx's own cost) and two replicas behind nginx (on this 2-core machine
# the replicas share the cores). 1 and 60 concurrent single-sentence clients, 15 s each after
# 2 s of warm-up. Prints a Markdown table, JSON in target/bench-results/.
# Usage: benches/nginx.sh [SECONDS_PER_RUN] [ENGINE] (engine as in compare.sh; default onnx)
source "$(dirname "$0")/lib.sh"
seconds="${1:-15}"
engine="${2:-onnx}"
build_release
config="$results/nginx-$engine.toml"
model_table "$engine" > "$config"

files=()
measure() { # SETUP URL
    local c out
    for c in 1 60; do
        out="$results/nginx-${#files[@]}.json"
        target/release/embedrt-bench --url "$2" -c "$c" -b 1 -d "$seconds" --label "$1" \
            --tag "setup=$1" --json "$out" >/dev/null
        files+=("$out")
    done
}

start_server "$results/nginx-direct.log" --config "$config"
measure "one embedrt, no nginx" "$SERVER_URL/v1/embeddings"
stop_background "$SERVER_PID"

for replicas in 1 2; do
    # replicas.sh serves the replicas on 8081.. and nginx on 8080, and stops them when stopped.
    start_background "$results/nginx-$replicas.log" scripts/replicas.sh "$replicas" "$config"
    replicas_pid="$BACKGROUND_PID"
    for i in $(seq 0 $((replicas - 1))); do
        wait_ready "http://127.0.0.1:$((8081 + i))/ready" "$replicas_pid"
    done
    wait_ready http://127.0.0.1:8080/ready "$replicas_pid"
    label="nginx + 1 replica"
    [ "$replicas" = 2 ] && label="nginx + 2 replicas"
    measure "$label" http://127.0.0.1:8080/v1/embeddings
    stop_background "$replicas_pid"
done

table "setup=setup" concurrency=clients requests_per_s=req/s "p50_ms=p50 ms" "p95_ms=p95 ms" \
    "p99_ms=p99 ms" errors -- "${files[@]}"
