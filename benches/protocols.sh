#!/usr/bin/env bash
# HTTP against gRPC on one embedrt server (the default config: all-MiniLM-L6-v2 on ONNX Runtime):
# the same load generator sends the same requests as `POST /v1/embeddings`, as gRPC `Embed`, and
# on gRPC `EmbedStream` (one stream per client, one request in flight), with 1 and 60 concurrent
# clients and 1 and 10 sentences per request. The three protocols run back to back for each
# setting, so they see the same machine state. Raw JSON goes to target/bench-results/.
# Usage: benches/protocols.sh [SECONDS_PER_RUN]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
seconds="${1:-15}"
results="$root/target/bench-results"
mkdir -p "$results"

source benches/lib.sh
build_release

target/release/embedrt serve --config configs/default.toml --http 127.0.0.1:18080 \
    --grpc 127.0.0.1:18081 2>"$results/protocols.log" &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
wait_ready http://127.0.0.1:18080/ready

for c in 1 60; do
    for b in 1 10; do
        target/release/embedrt-bench --protocol http --url http://127.0.0.1:18080/v1/embeddings \
            -c "$c" -b "$b" -d "$seconds" --label http --json "$results/http-c$c-b$b.json"
        for protocol in grpc grpc-stream; do
            target/release/embedrt-bench --protocol "$protocol" --url http://127.0.0.1:18081 \
                -c "$c" -b "$b" -d "$seconds" --label "$protocol" \
                --json "$results/$protocol-c$c-b$b.json"
        done
    done
done
