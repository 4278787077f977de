#!/usr/bin/env bash
# Serves the same all-MiniLM-L6-v2 folder with Infinity (infinity-emb, CPU) at
# http://127.0.0.1:${PORT:-7997}/v1/embeddings, for side-by-side benchmarks: the torch engine, or
# with `--engine optimum` its ONNX Runtime engine. Installs Infinity into .assets/infinity-venv on
# first use (torch from PyPI: several GB), every package at the version of
# infinity-constraints.txt beside this script, so the peer is the same next month; the venv is
# made again when that file changes. MODEL_DIR overrides the model folder, MODEL_NAME the name it is
# served as.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="$root/.assets/infinity-venv"
constraints="$here/infinity-constraints.txt"
stamp="$venv/constraints.txt"
if ! cmp -s "$constraints" "$stamp" || [ ! -x "$venv/bin/infinity_emb" ]; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -c "$constraints" \
        "infinity-emb[server,torch,optimum]" transformers optimum
    cp "$constraints" "$stamp"
fi
[ $# -eq 0 ] && set -- --engine torch
export HF_HUB_OFFLINE=1 DO_NOT_TRACK=1 INFINITY_ANONYMOUS_USAGE_STATS=0
exec "$venv/bin/infinity_emb" v2 \
    --model-id "${MODEL_DIR:-$root/.assets/models/all-MiniLM-L6-v2}" \
    --served-model-name "${MODEL_NAME:-all-MiniLM-L6-v2}" \
    --device cpu --url-prefix /v1 --port "${PORT:-7997}" "$@"
