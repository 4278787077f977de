#!/usr/bin/env bash
# Side-by-side load benchmark on this machine: embedrt (onnx, candle) and Infinity (torch), same
# model folder, same load generator, one server at a time. For each server: 1 and 60 concurrent
# clients, 1 and 10 sentences per request. Prints a Markdown table; raw JSON goes to
# target/bench-results/. Usage: benches/compare.sh [SECONDS_PER_RUN] [SERVER...]
# (servers: embedrt's as BACKEND[-DTYPE][-xN], e.g. onnx, onnx-int8, candle, openvino-bf16,
# onnx-int8-x2 for 2 replicas (see benches/lib.sh's engine_keys); infinity, infinity-onnx;
# default onnx candle infinity).
source "$(dirname "$0")/lib.sh"
seconds="${1:-15}"
shift || true
servers=("${@:-onnx candle infinity}")
servers=(${servers[*]})
build_release

files=()
run_matrix() { # LABEL URL
    for c in 1 60; do
        for b in 1 10; do
            target/release/embedrt-bench --url "$2" -c "$c" -b "$b" -d "$seconds" --label "$1" \
                --json "$results/$1-c$c-b$b.json"
            files+=("$results/$1-c$c-b$b.json")
        done
    done
}

for server in "${servers[@]}"; do
    case "$server" in
        onnx*|candle*|openvino*)
            # The default model on this backend with its default options (see engine_keys).
            model_table "$server" > "$results/$server.toml"
            start_server "$results/$server.log" --config "$results/$server.toml"
            run_matrix "embedrt-$server" "$SERVER_URL/v1/embeddings"
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
            start_infinity "$results/$server.log" "$model" all-MiniLM-L6-v2 "$engine"
            run_matrix "$server" "$INFINITY_URL/v1/embeddings"
            ;;
        *) echo "unknown server $server" >&2; exit 2 ;;
    esac
    stop_background
done

table label=server concurrency=clients batch=inputs/req requests_per_s=req/s \
    inputs_per_s=inputs/s "p50_ms=p50 ms" "p95_ms=p95 ms" "p99_ms=p99 ms" "max_ms=max ms" \
    errors -- "${files[@]}"
