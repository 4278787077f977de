#!/usr/bin/env bash
# Builds the candle backend plugin with CUDA, without a system CUDA install: the CUDA 13 toolchain
# (nvcc, headers, and the libraries the plugin links) comes from NVIDIA's PyPI wheels into
# `.assets/cuda-toolkit/`, and the plugin lands in `.assets/plugins-cuda/libembedrt_plugin_candle.so`.
# Put that folder first in `[server] plugin_dirs` (or copy the file beside the `embedrt` binary).
#
# Needs: python3 with pip, a C compiler, and the Rust toolchain. No GPU: candle's kernels are
# compiled to PTX for CUDA_COMPUTE_CAP (default 80, which the driver JIT-compiles for newer GPUs:
# sm_86 RTX 3090, sm_90 H100). At run time the plugin needs the NVIDIA driver (libcuda.so.1) and
# CUDA 13's cuBLAS, cuRAND and NVRTC libraries on the library path.
#
# The wheels ship no `libcuda.so` to link against (it comes with the driver), so when the machine
# has none this script makes a link-time stub exporting the driver functions cudarc declares; the
# real driver library replaces it at run time.
set -euo pipefail

CUDA_WHEEL_VERSION="${CUDA_WHEEL_VERSION:-13.0.*}"
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
python="${PYTHON:-python3}"
prefix="$root/.assets/cuda-toolkit"
toolkit="$prefix/nvidia/cu13"
out="$root/.assets/plugins-cuda"

log() { echo "[build-cuda-plugin] $*" >&2; }

if [ ! -x "$toolkit/bin/nvcc" ]; then
    log "fetching the CUDA $CUDA_WHEEL_VERSION toolchain wheels into $prefix"
    "$python" -m pip install --quiet --disable-pip-version-check --no-deps --target "$prefix" \
        "nvidia-cuda-nvcc==$CUDA_WHEEL_VERSION" "nvidia-nvvm==$CUDA_WHEEL_VERSION" \
        "nvidia-cuda-crt==$CUDA_WHEEL_VERSION" "nvidia-cuda-runtime==$CUDA_WHEEL_VERSION" \
        "nvidia-cuda-cccl==$CUDA_WHEEL_VERSION" "nvidia-cuda-nvrtc==$CUDA_WHEEL_VERSION" \
        "nvidia-cublas" "nvidia-curand"
fi
[ -x "$toolkit/bin/nvcc" ] || { log "no nvcc in $toolkit/bin after installing the wheels"; exit 1; }

# The linker wants unversioned names (libcublas.so); the wheels ship versioned ones only.
lib="$toolkit/lib"
for versioned in "$lib"/lib*.so.*; do
    name="$(basename "$versioned")"
    plain="$lib/${name%%.so.*}.so"
    [ -e "$plain" ] || ln -s "$name" "$plain"
done

# A link-time stub of the driver library, unless the machine has a real one.
if ! ldconfig -p 2>/dev/null | grep -q 'libcuda\.so '; then
    stub_dir="$lib/stubs"
    if [ ! -f "$stub_dir/libcuda.so" ]; then
        cudarc="$(cargo metadata --all-features --format-version 1 --manifest-path "$root/Cargo.toml" \
            | "$python" -c 'import json,sys; print(next(p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"] == "cudarc"))')"
        bindings="$(dirname "$cudarc")/src/driver/sys/mod.rs"
        log "making a link-time libcuda.so stub from $bindings"
        mkdir -p "$stub_dir"
        grep -oE '^ *fn cu[A-Za-z0-9_]+\(' "$bindings" | sed -E 's/^ *fn ([A-Za-z0-9_]+)\(/void \1(void) {}/' \
            | sort -u > "$stub_dir/libcuda.c"
        cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$stub_dir/libcuda.so" "$stub_dir/libcuda.c"
    fi
fi

export CUDA_HOME="$toolkit" CUDA_PATH="$toolkit" PATH="$toolkit/bin:$PATH"
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-80}"
export LIBRARY_PATH="$lib:$lib/stubs${LIBRARY_PATH:+:$LIBRARY_PATH}"
log "building the candle plugin with CUDA (compute capability $CUDA_COMPUTE_CAP)"
cargo build --release -p embedrt-plugin-candle --features cuda --target-dir "$root/target/cuda"
mkdir -p "$out"
# Without debug info the plugin (candle's kernels included) is about 46 MB instead of 126 MB.
strip --strip-debug -o "$out/libembedrt_plugin_candle.so" "$root/target/cuda/release/libembedrt_plugin_candle.so"
log "built $out/libembedrt_plugin_candle.so"
