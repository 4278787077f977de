#!/usr/bin/env bash
# CPU time the server spends per 1,000 sentences: the server's user + system CPU seconds (all its
# threads, from /proc/PID/stat) over a load run, divided by the sentences it answered. One and 60
# concurrent single-sentence clients, per server. Prints a Markdown table; raw JSON goes to
# target/bench-results/. Usage: benches/cpu.sh [SECONDS_PER_RUN] [SERVER...]
# (servers: onnx onnx-int8 candle; default onnx onnx-int8). ENGINE_OPTIONS='{ intra_threads = 1 }'
# replaces the engine's default options.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
seconds="${1:-15}"
shift || true
servers=("${@:-onnx onnx-int8}")
servers=(${servers[*]})
results="$root/target/bench-results"
mkdir -p "$results"

source benches/lib.sh
build_release

# cpu_seconds PID: the process's user + system CPU time so far, in seconds.
cpu_seconds() {
    awk -v tick="$(getconf CLK_TCK)" '{ print ($14 + $15) / tick }' "/proc/$1/stat"
}

echo "| server | clients | sentences/s | server CPU s per 1,000 sentences (= CPU ms per sentence) |"
echo "|---|---:|---:|---:|"
for server in "${servers[@]}"; do
    config="$results/cpu-$server.toml"
    engine_config "$server" "$config"
    sed -i "s/^options = {}/options = ${ENGINE_OPTIONS:-{\}}/" "$config"
    target/release/embedrt serve --config "$config" --http 127.0.0.1:18083 2>"$results/cpu-$server.log" &
    pid=$!
    wait_ready http://127.0.0.1:18083/ready
    # Warm the server up, unmeasured.
    target/release/embedrt-bench --url http://127.0.0.1:18083/v1/embeddings -c 60 -d 3 --warmup 0 >/dev/null
    for c in 1 60; do
        before="$(cpu_seconds "$pid")"
        target/release/embedrt-bench --url http://127.0.0.1:18083/v1/embeddings -c "$c" -b 1 \
            -d "$seconds" --warmup 0 --label "$server" --json "$results/cpu-$server-c$c.json" >/dev/null
        after="$(cpu_seconds "$pid")"
        python3 - "$results/cpu-$server-c$c.json" "$before" "$after" "$server" "$c" <<'PY'
import json, sys
run = json.load(open(sys.argv[1]))
cpu = float(sys.argv[3]) - float(sys.argv[2])
sentences = run["requests"] * run["batch"]
print(f"| {sys.argv[4]} | {sys.argv[5]} | {run['inputs_per_s']:.1f} | {1000 * cpu / sentences:.2f} |")
PY
    done
    kill "$pid"; wait "$pid" 2>/dev/null || true
done
