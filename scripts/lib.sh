# The shell functions the scripts of scripts/ and benches/ share (as ripgrep's ci/utils.sh).
# Source it first thing:
#     source "$(dirname "$0")/lib.sh"            # from scripts/
#     source "$(dirname "$0")/../scripts/lib.sh" # from benches/
# It sets `set -euo pipefail`, enters the repository root (sets $root; the folder the script was
# started from is $caller_dir) and arranges that every
# process started with `start_background` (servers, nginx, Redis) is stopped when the script
# exits, however it exits: a failed script leaves nothing running.

set -euo pipefail
# Where the script was started from, for arguments that name paths relative to it.
caller_dir="$PWD"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

# The packages of a release build: the server, every backend plugin, and the load generator.
# scripts/serve.sh, scripts/replicas.sh, the benchmarks and the Dockerfile all build these.
RELEASE_PACKAGES=(
    embedrt-api
    embedrt-plugin-onnx
    embedrt-plugin-candle
    embedrt-plugin-tensorrt
    embedrt-plugin-openvino
    embedrt-bench
)

# The embedrt binary start_server runs; override to run another build (benches/before-after.sh).
EMBEDRT_BIN="${EMBEDRT_BIN:-$root/target/release/embedrt}"

# build_release: fetches the assets (scripts/setup.sh) and builds RELEASE_PACKAGES in release
# mode.
build_release() {
    scripts/setup.sh
    local packages=()
    for package in "${RELEASE_PACKAGES[@]}"; do packages+=(-p "$package"); done
    cargo build --release "${packages[@]}"
}

# Commands run when the script exits, in the order they were registered.
_on_exit=()
_run_on_exit() {
    local command
    for command in "${_on_exit[@]}"; do eval "$command" || true; done
}
trap _run_on_exit EXIT
# A signal ends the script through `exit`, so the EXIT trap runs for it too.
trap 'exit 130' INT
trap 'exit 143' TERM

# on_exit COMMAND...: runs COMMAND when the script exits.
on_exit() {
    _on_exit+=("$*")
}

# Processes started by start_background, stopped by stop_background on exit.
_background=()

# start_background LOG COMMAND...: runs COMMAND in the background with stdout and stderr to LOG;
# sets BACKGROUND_PID. The process is stopped when the script exits.
start_background() {
    local log="$1"
    shift
    "$@" >"$log" 2>&1 &
    BACKGROUND_PID=$!
    _background+=("$BACKGROUND_PID")
}

# stop_background [PID...]: stops these background processes (default: every one started) with
# SIGTERM, and SIGKILL after 30 s, and waits for them.
stop_background() {
    local pids=("$@") pid
    [ ${#pids[@]} -eq 0 ] && pids=("${_background[@]}")
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do
        for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
}
on_exit stop_background

# free_port: prints a loopback TCP port that is free now.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# answers URL: whether URL answers 2xx (with curl, or Python's standard library without it).
answers() {
    if command -v curl >/dev/null; then
        curl -sf --max-time 5 "$1" >/dev/null 2>&1
    else
        python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=5)' \
            "$1" >/dev/null 2>&1
    fi
}

# wait_ready URL [PID] [SECONDS]: waits until URL answers 2xx; fails when process PID exits first,
# or after SECONDS (default 300).
wait_ready() {
    local url="$1" pid="${2:-}" seconds="${3:-300}" deadline
    deadline=$((SECONDS + seconds))
    until answers "$url"; do
        if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
            echo "the server for $url exited before it was ready" >&2
            return 1
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "$url did not answer in $seconds s" >&2
            return 1
        fi
        sleep 0.2
    done
}

# start_server LOG ARGS...: starts `$EMBEDRT_BIN serve ARGS` with its HTTP API on a free loopback
# port (and gRPC on another), logging to LOG, and waits until it is ready (READY_SECONDS, default
# 300). Sets SERVER_URL (http://127.0.0.1:PORT), SERVER_GRPC (http://127.0.0.1:PORT) and
# SERVER_PID. The server is stopped when the script exits; stop it earlier with
# `stop_background "$SERVER_PID"`. Fails, showing the log's end, when it does not come up.
start_server() {
    local log="$1" http grpc
    shift
    http="$(free_port)"
    grpc="$(free_port)"
    start_background "$log" "$EMBEDRT_BIN" serve "$@" --http "127.0.0.1:$http" --grpc "127.0.0.1:$grpc"
    SERVER_PID="$BACKGROUND_PID"
    SERVER_URL="http://127.0.0.1:$http"
    SERVER_GRPC="http://127.0.0.1:$grpc"
    if ! wait_ready "$SERVER_URL/ready" "$SERVER_PID" "${READY_SECONDS:-300}"; then
        tail -n 20 "$log" | sed 's/\x1b\[[0-9;]*m//g' >&2
        return 1
    fi
}
