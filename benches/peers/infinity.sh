#!/usr/bin/env bash
# Serves the same all-MiniLM-L6-v2 folder with Infinity (infinity-emb, CPU) at
# http://127.0.0.1:${PORT:-7997}/v1/embeddings, for side-by-side benchmarks: the torch engine, or
# with `--engine optimum` its ONNX Runtime engine. Installs Infinity into .assets/infinity-venv on
# first use (torch from PyPI: several GB), every package at the version of
# infinity-constraints.txt beside this script, so the peer is the same next month; the venv is
# made again when that file changes. MODEL_DIR overrides the model folder, MODEL_NAME the name it is
# served as. TRANSFORMERS=VERSION pins another transformers (families newer than the pinned one,
# e.g. Qwen3 needs 4.51) in a venv of its own, .assets/infinity-venv-transformers-VERSION, with the
# torch engine only (the pinned optimum needs transformers < 4.49); `--venv` prints the venv's
# python.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="$root/.assets/infinity-venv${TRANSFORMERS:+-transformers-$TRANSFORMERS}"
constraints="$(sed "${TRANSFORMERS:+s/^transformers==.*/transformers==$TRANSFORMERS/}" "$here/infinity-constraints.txt")"
packages=("infinity-emb[server,torch,optimum]" transformers optimum)
[ -n "${TRANSFORMERS:-}" ] && packages=("infinity-emb[server,torch]" transformers onnx)
# The venv is made again when the pins or the packages change.
stamp="$venv/constraints.txt"
wanted="$constraints"$'\n'"# packages: ${packages[*]}"
if [ "$wanted" != "$(cat "$stamp" 2>/dev/null)" ] || [ ! -x "$venv/bin/infinity_emb" ]; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -c <(echo "$constraints") \
        "${packages[@]}"
    echo "$wanted" > "$stamp"
fi
if [ "${1:-}" = --venv ]; then
    echo "$venv/bin/python"
    exit 0
fi
[ $# -eq 0 ] && set -- --engine torch
export HF_HUB_OFFLINE=1 DO_NOT_TRACK=1 INFINITY_ANONYMOUS_USAGE_STATS=0
exec "$venv/bin/infinity_emb" v2 \
    --model-id "${MODEL_DIR:-$root/.assets/models/all-MiniLM-L6-v2}" \
    --served-model-name "${MODEL_NAME:-all-MiniLM-L6-v2}" \
    --device cpu --url-prefix /v1 --port "${PORT:-7997}" "$@"
