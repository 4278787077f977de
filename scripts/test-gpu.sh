#!/usr/bin/env bash
# Checks every GPU engine against the CPU reference, then puts 60 concurrent clients on it.
#
# For each engine: starts `embedrt serve` with all-MiniLM-L6-v2 (`minilm`) and the tiny
# jina-embeddings-v3 fixture (`jina`) on that engine, checks every vector against the reference
# (scripts/check_engine.py: the golden MiniLM vectors; jina's every task, Matryoshka size and the
# mixed-task batch; cosine >= 0.999), then runs 60 single-sentence clients with all five tasks
# mixed for --seconds and prints their throughput and latency.
#
# Usage: scripts/test-gpu.sh [--device cuda:0] [--bin DIR] [--engines "candle-f16 ..."]
#                            [--seconds N] [--fixtures DIR] [--minilm DIR] [--plugins DIR]
#   --bin      where `embedrt`, `embedrt-bench` and the plugins are (default target/release)
#   --engines  BACKEND-DTYPE words (default: candle-f16 candle-bf16 onnx-f32 tensorrt-f16)
#   --plugins  a folder searched for plugins before --bin (default on a GPU: .assets/plugins-cuda,
#              where scripts/build-cuda-plugin.sh puts the CUDA candle plugin, when it exists)
#   --device   cpu runs the same checks on the CPU engines (how CI tests this script).
# Exits non-zero when any engine fails a check or its server does not start.
source "$(dirname "$0")/lib.sh"
device=cuda:0
bin="$root/target/release"
engines="candle-f16 candle-bf16 onnx-f32 tensorrt-f16"
seconds=20
fixtures="$root/../shared/fixtures"
minilm="$root/.assets/models/all-MiniLM-L6-v2"
plugins=""
while [ $# -gt 0 ]; do
    case "$1" in
        --device) device="$2"; shift 2 ;;
        --bin) bin="$(cd "$caller_dir" && cd "$2" && pwd)"; shift 2 ;;
        --engines) engines="$2"; shift 2 ;;
        --seconds) seconds="$2"; shift 2 ;;
        --fixtures) fixtures="$(cd "$caller_dir" && cd "$2" && pwd)"; shift 2 ;;
        --minilm) minilm="$(cd "$caller_dir" && cd "$2" && pwd)"; shift 2 ;;
        --plugins) plugins="$2"; shift 2 ;;
        *) echo "unknown argument $1 (see the header of $0)" >&2; exit 2 ;;
    esac
done
[ -z "$plugins" ] && [ "$device" != cpu ] && plugins="$root/.assets/plugins-cuda"
work="$(mktemp -d)"
on_exit rm -rf "$work"
plugin_dirs="\"$bin\""
[ -n "$plugins" ] && [ -d "$plugins" ] && plugin_dirs="\"$plugins\", $plugin_dirs"
EMBEDRT_BIN="$bin/embedrt"
# TensorRT may build its engines for minutes before a server is ready.
READY_SECONDS=600

echo "device $device; engines: $engines"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
failed=()
for engine in $engines; do
    backend="${engine%-*}"
    dtype="${engine##*-}"
    cat > "$work/$engine.toml" <<TOML
[server]
plugin_dirs = [$plugin_dirs]
[[models]]
name = "minilm"
path = "$minilm"
backend = "$backend"
device = "$device"
dtype = "$dtype"
[[models]]
name = "jina"
path = "$fixtures/jina-v3-tiny"
backend = "$backend"
device = "$device"
dtype = "$dtype"
TOML
    echo "== $engine"
    if ! start_server "$work/$engine.log" --config "$work/$engine.toml" 2>"$work/$engine.failure"; then
        echo "$engine: FAIL the server did not start; its log ends:"
        tail -5 "$work/$engine.failure"
        failed+=("$engine")
        stop_background "$SERVER_PID"
        continue
    fi
    if ! python3 "$root/scripts/check_engine.py" --url "$SERVER_URL" \
        --fixtures "$fixtures" --min-cosine 0.999 --label "$engine"; then
        failed+=("$engine")
    fi
    "$bin/embedrt-bench" --url "$SERVER_URL/v1/embeddings" --model jina -c 60 -b 1 \
        -d "$seconds" --warmup 2 --inputs "$root/benches/data/sentences.txt" \
        --tasks retrieval.query,retrieval.passage,separation,classification,text-matching \
        --label "$engine 60 clients" || failed+=("$engine (load)")
    stop_background "$SERVER_PID"
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "FAILED: ${failed[*]}"
    exit 1
fi
echo "all engines passed on $device"
