# Helpers the benchmark scripts share; `source` it from the repository root.

# wait_ready URL: waits until URL answers 2xx (at most 5 minutes); fails otherwise.
wait_ready() {
    for _ in $(seq 1 600); do
        curl -sf "$1" >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    echo "server at $1 did not come up" >&2
    return 1
}

# engine_config ENGINE OUT: writes configs/default.toml with ENGINE's backend and its default
# options to OUT, with the model path made absolute and no gRPC listener. ENGINE is a backend, or
# a backend with `-int8` (e.g. onnx-int8) for that backend with dtype = "int8".
engine_config() {
    local backend="${1%-int8}"
    sed "s/^backend = \"onnx\"/backend = \"$backend\"/; s/^options = .*/options = {}/; s|^path = \"../|path = \"$PWD/|; s/^grpc = .*//" \
        configs/default.toml > "$2"
    if [ "$backend" != "$1" ]; then
        sed -i "s/^backend = \"$backend\"/&\ndtype = \"int8\"/" "$2"
    fi
}

# build_release: the assets (scripts/setup.sh) and the release binaries the benchmarks run.
build_release() {
    scripts/setup.sh
    cargo build --release -p embedrt-api -p embedrt-plugin-onnx -p embedrt-plugin-candle -p embedrt-bench
}
