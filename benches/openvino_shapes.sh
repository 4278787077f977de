#!/usr/bin/env bash
# What padding batches up to a few shapes costs and saves on the openvino backend: for each dtype
# given, all-MiniLM-L6-v2 with the default (bucketed shapes) and with `exact_shapes = true`, one
# server at a time. Throughput: 1 and 60 clients, 1 and 10 inputs a request, short sentences and
# ~60-word passages. Memory: benches/memory_rounds.py's rounds of varied shapes from 32 clients,
# resident memory after each round. Prints two Markdown tables; JSON goes to
# target/bench-results/openvino-shapes/.
# Usage: benches/openvino_shapes.sh [SECONDS_PER_RUN] [DTYPE...]   (default: 10 f32 int8)
source "$(dirname "$0")/lib.sh"
results="$results/openvino-shapes"
mkdir -p "$results"
seconds="${1:-10}"
shift || true
dtypes=("${@:-f32 int8}")
dtypes=(${dtypes[*]})
rounds="${ROUNDS:-12}"

scripts/setup.sh
cargo build --release -p embedrt-api -p embedrt-plugin-openvino -p embedrt-bench
sentences="$root/benches/data/sentences.txt"
passages="$results/passages.txt"
write_passages "$passages"

files=()
memory=()
for dtype in "${dtypes[@]}"; do
    for shapes in bucketed exact; do
        label="openvino-$dtype-$shapes"
        options='{}'
        [ "$shapes" = exact ] && options='{ exact_shapes = true }'
        ENGINE_OPTIONS="$options" model_table "openvino-$dtype" > "$results/$label.toml"
        start_server "$results/$label.log" --config "$results/$label.toml"
        for inputs in sentences passages; do
            for c in 1 60; do
                for b in 1 10; do
                    out="$results/$label-$inputs-c$c-b$b.json"
                    target/release/embedrt-bench --url "$SERVER_URL/v1/embeddings" -c "$c" \
                        -b "$b" -d "$seconds" --label "$label" --inputs "${!inputs}" \
                        --tag "inputs=$inputs" --json "$out"
                    files+=("$out")
                done
            done
        done
        stop_background "$SERVER_PID"
        # Memory on a fresh server: the load above already met most shapes.
        start_server "$results/$label-memory.log" --config "$results/$label.toml"
        python3 benches/memory_rounds.py "$SERVER_URL" "$SERVER_PID" "$rounds" 32 \
            "$results/$label-memory.json" > /dev/null
        memory+=("$label")
        stop_background "$SERVER_PID"
    done
done

table label=server inputs concurrency=clients batch=inputs/req requests_per_s=req/s \
    inputs_per_s=inputs/s "p50_ms=p50 ms" "p99_ms=p99 ms" errors -- "${files[@]}"
echo
echo "| server | ready MB | after round 1 | after round $rounds | growth after round 1 |"
echo "|---|---:|---:|---:|---:|"
for label in "${memory[@]}"; do
    python3 - "$results/$label-memory.json" "$label" <<'PY'
import json, sys
mb = json.load(open(sys.argv[1]))["rss_mb"]
print(f"| {sys.argv[2]} | {mb[0]:.0f} | {mb[1]:.0f} | {mb[-1]:.0f} | {mb[-1] / mb[1] - 1:+.0%} |")
PY
done
