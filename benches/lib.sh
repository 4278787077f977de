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

# engine_config BACKEND OUT: writes configs/default.toml with BACKEND and its default options to
# OUT, with the model path made absolute and no gRPC listener.
engine_config() {
    sed "s/^backend = \"onnx\"/backend = \"$1\"/; s/^options = .*/options = {}/; s|^path = \"../|path = \"$PWD/|; s/^grpc = .*//" \
        configs/default.toml > "$2"
}
