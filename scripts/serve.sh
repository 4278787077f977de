#!/usr/bin/env bash
# Fetches what is missing, builds in release mode and serves configs/default.toml
# (all-MiniLM-L6-v2 on ONNX Runtime at http://127.0.0.1:8080). Extra arguments go to `embedrt serve`,
# e.g. `scripts/serve.sh --config configs/other.toml` or `--http 0.0.0.0:8080`.
source "$(dirname "$0")/lib.sh"
build_release
config=(--config configs/default.toml)
for arg in "$@"; do [[ "$arg" == --config || "$arg" == -c ]] && config=(); done
exec target/release/embedrt serve "${config[@]}" "$@"
