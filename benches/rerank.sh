#!/usr/bin/env bash
# Rerankers (cross-encoders) at their real sizes (random weights: speed does not depend on the
# values), side by side on this machine: embedrt onnx and candle, Infinity's /rerank (torch) on
# the same folder, one server at a time, each at 1 and 16 concurrent clients sending a query with
# 20 documents of about 60 words a request; then sentence-transformers' CrossEncoder.predict
# in-process at its best batch, the ceiling of a Python app without a server.
# Usage: benches/rerank.sh [SECONDS_PER_RUN] [SIZE...] (sizes: ms-marco-MiniLM-L6-v2
# bge-reranker-v2-m3, the default both; SERVERS overrides the servers, default "onnx candle
# infinity st"; LOADS the loads, default "1x20 16x20" as CLIENTSxDOCUMENTS; WARMUP the seconds of
# load before each measured run, default 3; BATCH_ROWS embedrt's max_batch_requests, default 64).
# Prints one Markdown
# table per size (pairs/s are (query, document) pairs scored a second); JSON in
# target/bench-results/. The checkpoints are made once by benches/make_random_encoder.py into
# .assets/models/SIZE-random (torch from Infinity's venv), the documents from
# benches/data/sentences.txt (consecutive sentences joined to at least 60 words).
source "$(dirname "$0")/lib.sh"
seconds="${1:-15}"
shift || true
sizes=("${@:-ms-marco-MiniLM-L6-v2 bge-reranker-v2-m3}")
sizes=(${sizes[*]})
servers=(${SERVERS:-onnx candle infinity st})
venv="$root/.assets/infinity-venv/bin/python"
sentences="$root/benches/data/sentences.txt"
passages="$results/passages.txt"
write_passages "$passages"

build_release
[ -x "$venv" ] || benches/peers/infinity.sh --help >/dev/null

run_load() { # LABEL URL MODEL SIZE SERVER
    for load in ${LOADS:-1x20 16x20}; do
        target/release/embedrt-bench --api rerank --url "$2" --model "$3" \
            --inputs "$passages" --queries "$sentences" -c "${load%x*}" -b "${load#*x}" \
            -d "$seconds" --warmup "${WARMUP:-3}" --label "$1" --tag "size=$4" --tag "server=$5" \
            --json "$results/$1-$load.json"
        files+=("$results/$1-$load.json")
    done
}

for size in "${sizes[@]}"; do
    model="$root/.assets/models/$size-random"
    if [ ! -f "$model/onnx/model.onnx" ]; then
        "$venv" benches/make_random_encoder.py "$size" "$model" .assets/models/all-MiniLM-L6-v2
    fi
    files=()
    for server in "${servers[@]}"; do
        label="$size-$server"
        case "$server" in
            onnx*|candle*)
                label="$label${BATCH_ROWS:+-rows$BATCH_ROWS}"
                model_table "$server" "$size" "$model" > "$results/$label.toml"
                start_server "$results/$label.log" --config "$results/$label.toml"
                run_load "$label" "$SERVER_URL/v1/rerank" "$size" "$size" \
                    "embedrt-$server${BATCH_ROWS:+ (rows $BATCH_ROWS)}"
                ;;
            infinity)
                start_infinity "$results/$label.log" "$model" "$size" torch || continue
                run_load "$label" "$INFINITY_URL/v1/rerank" "$size" "$size" "$server"
                ;;
            st)
                "$venv" benches/peers/st_inprocess.py "$model" "$sentences" "$results/$label.json" \
                    --passages "$passages" --seconds "$seconds" --tag "size=$size" \
                    --tag "server=sentence-transformers"
                files+=("$results/$label.json")
                ;;
            *) echo "unknown server $server" >&2; exit 2 ;;
        esac
        stop_background
    done
    echo
    echo "### $size"
    echo
    table server concurrency=clients batch=documents/req inputs_per_s=pairs/s \
        "p50_ms=p50 ms" "p99_ms=p99 ms" errors -- "${files[@]}"
done
