#!/usr/bin/env bash
# CPU time the server spends per 1,000 sentences: the server's user + system CPU seconds (all its
# threads, from /proc/PID/stat, measured by the load generator) over a load run, divided by the
# sentences it answered. One and 60 concurrent single-sentence clients, per server. Prints a
# Markdown table; raw JSON goes to target/bench-results/. Usage: benches/cpu.sh [SECONDS_PER_RUN]
# [SERVER...] (servers: onnx onnx-int8 candle; default onnx onnx-int8). ENGINE_OPTIONS='{
# intra_threads = 1 }' replaces the engine's default options.
source "$(dirname "$0")/lib.sh"
seconds="${1:-15}"
shift || true
servers=("${@:-onnx onnx-int8}")
servers=(${servers[*]})
build_release

files=()
for server in "${servers[@]}"; do
    model_table "$server" > "$results/cpu-$server.toml"
    start_server "$results/cpu-$server.log" --config "$results/cpu-$server.toml"
    # Warm the server up, unmeasured.
    target/release/embedrt-bench --url "$SERVER_URL/v1/embeddings" -c 60 -d 3 --warmup 0 >/dev/null
    for c in 1 60; do
        target/release/embedrt-bench --url "$SERVER_URL/v1/embeddings" -c "$c" -b 1 \
            -d "$seconds" --warmup 0 --label "$server" --tag "server=$server" \
            --server-pid "$SERVER_PID" --json "$results/cpu-$server-c$c.json" >/dev/null
        files+=("$results/cpu-$server-c$c.json")
    done
    stop_background "$SERVER_PID"
done
table server concurrency=clients inputs_per_s=sentences/s \
    "server_cpu_ms_per_input:.2f=server CPU s per 1,000 sentences (= CPU ms per sentence)" \
    -- "${files[@]}"
