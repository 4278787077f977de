#!/usr/bin/env bash
# The Python client against one embedrt server (the default model): 10,000 distinct sentences as
# a naive loop, `Client.embed`, and `AsyncClient` with 200 one-text callers, coalescing on and
# off (benches/client_bench.py), then the server's own ceiling for that request shape: the Rust
# load generator with 8 clients of 64 sentences each (what `Client.embed` sends), for 15 s.
# The client runs in .assets/bench-client-venv (made here, pinned).
# Prints a Markdown table; JSON in target/bench-results/client*.json.
# Usage: benches/client.sh [COUNT] [ENGINE] (engine as in compare.sh; default onnx)
source "$(dirname "$0")/lib.sh"
count="${1:-10000}"
engine="${2:-onnx}"
build_release

venv=.assets/bench-client-venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check \
    httpx==0.28.1 numpy==2.4.6 requests==2.34.2 setuptools==84.2.1
copy="$(mktemp -d)"
cp -r clients/python/{pyproject.toml,README.md,src} "$copy"
"$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps --no-build-isolation \
    --force-reinstall "$copy"
rm -rf "$copy"

config="$results/client-$engine.toml"
model_table "$engine" > "$config"
start_server "$results/client.log" --config "$config"
"$venv/bin/python" benches/client_bench.py "$SERVER_URL" benches/data/sentences.txt \
    "$results/client-$engine.json" "$count"
ceiling="$results/client-ceiling-$engine.json"
target/release/embedrt-bench --url "$SERVER_URL/v1/embeddings" -c 8 -b 64 -d 15 --warmup 3 \
    --label "reference: Rust load generator, 8 clients x 64 sentences, 15 s" \
    --json "$ceiling" >/dev/null
# One more row of client_bench.py's table: the server's ceiling for the same request shape.
table --no-header label - inputs_per_s:.0f - - - -- "$ceiling"
