#!/usr/bin/env bash
# The model families at their real sizes (random weights: speed does not depend on the values),
# side by side on this machine: embedrt onnx (fp32), onnx-int8 and candle, Infinity's torch and
# ONNX (optimum) engines serving the same folder, one server at a time, each at 1 client with 1
# and 10 sentences per request and at 60 clients with 1; then sentence-transformers in-process at
# its best batch, the ceiling of a Python app without a server. Each row has its server's CPU time
# per sentence and peak resident memory (process tree) up to that load, or the
# sentence-transformers process's peak.
# Usage: benches/families.sh [SECONDS_PER_RUN] [SIZE...] (sizes: bge-m3 multilingual-e5-small
# all-mpnet-base-v2 modernbert-embed-base, the default, and the decoder qwen3-embedding-0.6b,
# whose Infinity runs in a venv with transformers 4.51.3, torch engine only); SERVERS overrides
# the servers, default "onnx onnx-int8 candle infinity infinity-onnx st"; LOADS the loads, default
# "1x1 1x10 60x1" as CLIENTSxINPUTS; BATCH_ROWS embedrt's max_batch_requests, default 64, in the
# label when set; ENGINE_OPTIONS embedrt's backend options, with NOTE naming them in the label,
# e.g. ENGINE_OPTIONS='{ file = "onnx/model_fused.onnx" }' NOTE=fused). Prints one Markdown table
# per size; JSON in target/bench-results/. The checkpoints are made once by
# benches/make_random_encoder.py into .assets/models/SIZE-random (torch from Infinity's venv),
# their int8 graphs by scripts/quantize_onnx.py.
source "$(dirname "$0")/lib.sh"
seconds="${1:-15}"
shift || true
sizes=("${@:-bge-m3 multilingual-e5-small all-mpnet-base-v2 modernbert-embed-base}")
sizes=(${sizes[*]})
servers=(${SERVERS:-onnx onnx-int8 candle infinity infinity-onnx st})
sentences="$root/benches/data/sentences.txt"

build_release

run_load() { # LABEL URL MODEL SIZE SERVER PID
    local loaded=()
    for load in ${LOADS:-1x1 1x10 60x1}; do
        target/release/embedrt-bench --url "$2" --model "$3" -c "${load%x*}" -b "${load#*x}" \
            -d "$seconds" --warmup 3 --label "$1" --tag "size=$4" --tag "server=$5" \
            --server-pid "$6" --json "$results/$1-$load.json"
        loaded+=("$results/$1-$load.json")
    done
    record_peak_memory "$6" "${loaded[@]}"
    files+=("${loaded[@]}")
}

for size in "${sizes[@]}"; do
    model="$root/.assets/models/$size-random"
    # Qwen3 is newer than the transformers of Infinity's pinned venv: its own venv, torch engine
    # only (benches/peers/infinity.sh).
    unset TRANSFORMERS
    case "$size" in qwen3-*) export TRANSFORMERS=4.51.3 ;; esac
    venv="$(benches/peers/infinity.sh --venv)"
    if [ ! -f "$model/onnx/model.onnx" ]; then
        "$venv" benches/make_random_encoder.py "$size" "$model" .assets/models/all-MiniLM-L6-v2
    fi
    if [[ " ${servers[*]} " == *" onnx-int8 "* ]]; then
        .assets/venv/bin/python scripts/quantize_onnx.py "$model"
    fi
    files=()
    for server in "${servers[@]}"; do
        label="$size-$server"
        case "$server" in
            onnx*|candle*)
                label="$label${BATCH_ROWS:+-rows$BATCH_ROWS}${NOTE:+-$NOTE}"
                model_table "$server" "$size" "$model" > "$results/$label.toml"
                start_server "$results/$label.log" --config "$results/$label.toml"
                run_load "$label" "$SERVER_URL/v1/embeddings" "$size" "$size" \
                    "embedrt-$server${NOTE:+-$NOTE}${BATCH_ROWS:+ (rows $BATCH_ROWS)}" "$SERVER_PID"
                ;;
            infinity|infinity-onnx)
                engine=torch folder="$model"
                if [ "$server" = infinity-onnx ]; then
                    # Its ONNX engine prefers a quantized file when the folder has one: give it
                    # the folder without our int8 graph, so it runs fp32 like embedrt-onnx.
                    engine=optimum folder="$results/$size-fp32"
                    rm -rf "$folder" && mkdir -p "$folder/onnx"
                    for file in "$model"/* "$model"/onnx/*; do
                        case "$file" in
                            *_int8*|*/onnx) ;;
                            "$model"/onnx/*) ln -s "$file" "$folder/onnx/" ;;
                            *) ln -s "$file" "$folder/" ;;
                        esac
                    done
                fi
                start_infinity "$results/$label.log" "$folder" "$size" "$engine" || continue
                run_load "$label" "$INFINITY_URL/v1/embeddings" "$size" "$size" "$server" \
                    "$BACKGROUND_PID"
                ;;
            st)
                "$venv" benches/peers/st_inprocess.py "$model" "$sentences" "$results/$label.json" \
                    --seconds "$seconds" --tag "size=$size" --tag "server=sentence-transformers"
                files+=("$results/$label.json")
                ;;
            *) echo "unknown server $server" >&2; exit 2 ;;
        esac
        stop_background
    done
    echo
    echo "### $size"
    echo
    table server concurrency=clients batch=inputs/req inputs_per_s=sentences/s \
        "p50_ms=p50 ms" "p95_ms=p95 ms" errors "server_cpu_ms_per_input=server CPU ms/input" \
        "peak_rss_mb:.0f=peak RSS MB" -- "${files[@]}"
done
