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

# engine_keys ENGINE: the model-table keys for ENGINE, written BACKEND[-int8][-xN]: `backend`,
# `dtype = "int8"` with -int8 and `replicas = N` with -xN (e.g. onnx-int8-x2).
engine_keys() {
    local name="$1" replicas=1
    if [[ "$name" =~ -x([0-9]+)$ ]]; then
        replicas="${BASH_REMATCH[1]}"
        name="${name%-x*}"
    fi
    echo "backend = \"${name%-int8}\""
    if [ "$name" != "${name%-int8}" ]; then echo 'dtype = "int8"'; fi
    echo "replicas = $replicas"
}

# engine_config ENGINE OUT: writes configs/default.toml with ENGINE's keys (see engine_keys) and
# the backend's default options to OUT, with the model path made absolute and no gRPC listener.
engine_config() {
    KEYS="$(engine_keys "$1")" awk '/^backend = /{ print ENVIRON["KEYS"]; next } { print }' configs/default.toml |
        sed "s/^options = .*/options = {}/; s|^path = \"../|path = \"$PWD/|; s/^grpc = .*//" > "$2"
}

# build_release: the assets (scripts/setup.sh) and the release binaries the benchmarks run.
build_release() {
    scripts/setup.sh
    cargo build --release -p embedrt-api -p embedrt-plugin-onnx -p embedrt-plugin-candle -p embedrt-bench
}
