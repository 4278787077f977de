#!/usr/bin/env bash
# HTTP against gRPC on one embedrt server (the default config: all-MiniLM-L6-v2 on ONNX Runtime):
# the same load generator sends the same requests as `POST /v1/embeddings`, as gRPC `Embed`, and
# on gRPC `EmbedStream` (one stream per client, one request in flight), with 1 and 60 concurrent
# clients and 1 and 10 sentences per request. The three protocols run back to back for each
# setting, so they see the same machine state. Raw JSON goes to target/bench-results/.
# Usage: benches/protocols.sh [SECONDS_PER_RUN]
source "$(dirname "$0")/lib.sh"
seconds="${1:-15}"
build_release

start_server "$results/protocols.log" --config configs/default.toml

files=()
for c in 1 60; do
    for b in 1 10; do
        target/release/embedrt-bench --protocol http --url "$SERVER_URL/v1/embeddings" \
            -c "$c" -b "$b" -d "$seconds" --label http --json "$results/http-c$c-b$b.json"
        files+=("$results/http-c$c-b$b.json")
        for protocol in grpc grpc-stream; do
            target/release/embedrt-bench --protocol "$protocol" --url "$SERVER_GRPC" \
                -c "$c" -b "$b" -d "$seconds" --label "$protocol" \
                --json "$results/$protocol-c$c-b$b.json"
            files+=("$results/$protocol-c$c-b$b.json")
        done
    done
done
table label=protocol concurrency=clients batch=inputs/req requests_per_s=req/s \
    "p50_ms=p50 ms" "p99_ms=p99 ms" errors -- "${files[@]}"
