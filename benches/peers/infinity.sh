#!/usr/bin/env bash
# Serves the same all-MiniLM-L6-v2 folder with Infinity (infinity-emb, torch engine, CPU) at
# http://127.0.0.1:${PORT:-7997}/v1/embeddings, for side-by-side benchmarks. Installs Infinity into
# .assets/infinity-venv on first use (torch from PyPI: several GB).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
venv="$root/.assets/infinity-venv"
if [ ! -x "$venv/bin/infinity_emb" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "infinity-emb[server,torch]==0.0.78"
fi
export HF_HUB_OFFLINE=1 DO_NOT_TRACK=1 INFINITY_ANONYMOUS_USAGE_STATS=0
exec "$venv/bin/infinity_emb" v2 \
    --model-id "$root/.assets/models/all-MiniLM-L6-v2" \
    --served-model-name all-MiniLM-L6-v2 \
    --engine torch --device cpu \
    --url-prefix /v1 --port "${PORT:-7997}" "$@"
