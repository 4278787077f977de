#!/usr/bin/env bash
# jina-embeddings-v3-sized model (random weights: speed does not depend on the values) on both
# engines, one at a time: 60 concurrent single-sentence clients, all on one task, then the five
# tasks in turn (mixed batches: per-row low-rank on candle, grouped by task on onnx), and the three
# tasks without an instruction prefix in turn (the same tokens as one task: the cost of mixing alone).
# Usage: benches/jina.sh [SECONDS_PER_RUN] [ENGINE...] (engines: candle onnx onnx-int8, with -xN
# for N replicas, e.g. onnx-int8-x2; default candle onnx); prints a Markdown table, JSON in
# target/bench-results/. An -int8 engine quantizes the ONNX graph first (scripts/quantize_onnx.py;
# minutes, once). With MATRIX=1, each engine also runs text-matching only at 1 client with 1 and
# 10 inputs per request and at 60 clients with 1 (a second table; 60 clients x 10 inputs would queue
# minutes of work at this model's speed on 2 cores).
source "$(dirname "$0")/lib.sh"
seconds="${1:-30}"
shift || true
engines=("${@:-candle onnx}")
engines=(${engines[*]})
model="$root/.assets/models/jina-v3-random"

scripts/setup.sh
if [ ! -f "$model/model.safetensors" ]; then
    .assets/venv/bin/python benches/make_random_jina.py "$model" .assets/models/all-MiniLM-L6-v2
fi
if [ ! -f "$model/onnx/model.onnx" ]; then
    (cd scripts && ../.assets/venv/bin/python build_jina_onnx.py "$model" "$model/onnx/model.onnx")
fi
if [[ " ${engines[*]} " == *"-int8"* ]]; then
    .assets/venv/bin/python scripts/quantize_onnx.py "$model"
fi
build_release

modes=() matrix=()
for engine in "${engines[@]}"; do
    config="$results/jina-$engine.toml"
    model_table "$engine" jina "$model" > "$config"
    start_server "$results/jina-$engine.log" --config "$config"
    for mode in one mixed3 mixed5; do
        case "$mode" in
            one) tasks=text-matching label="text-matching only" ;;
            mixed3) tasks=separation,classification,text-matching label="3 mixed, no prefixes" ;;
            mixed5) tasks=retrieval.query,retrieval.passage,separation,classification,text-matching
                label="all 5 mixed" ;;
        esac
        target/release/embedrt-bench --url "$SERVER_URL/v1/embeddings" --model jina -c 60 -b 1 \
            -d "$seconds" --warmup 5 --tasks "$tasks" --label "jina-$engine-$mode" \
            --tag "engine=$engine" --tag "tasks=$label" --json "$results/jina-$engine-$mode.json"
        modes+=("$results/jina-$engine-$mode.json")
    done
    if [ "${MATRIX:-0}" = 1 ]; then
        for load in 1x1 1x10 60x1; do
            target/release/embedrt-bench --url "$SERVER_URL/v1/embeddings" --model jina \
                -c "${load%x*}" -b "${load#*x}" -d "$seconds" --warmup 5 --tasks text-matching \
                --label "jina-$engine-$load" --tag "engine=$engine" \
                --json "$results/jina-$engine-$load.json"
            matrix+=("$results/jina-$engine-$load.json")
        done
    fi
    stop_background "$SERVER_PID"
done

table engine tasks inputs_per_s:.2f=sentences/s "p50_ms:.0f=p50 ms" "p95_ms:.0f=p95 ms" \
    "p99_ms:.0f=p99 ms" errors -- "${modes[@]}"
if [ "${MATRIX:-0}" = 1 ]; then
    echo
    table engine concurrency=clients batch=inputs/req inputs_per_s:.2f=sentences/s \
        "p50_ms:.0f=p50 ms" "p95_ms:.0f=p95 ms" "p99_ms:.0f=p99 ms" errors -- "${matrix[@]}"
fi
