#!/usr/bin/env bash
# Starts N embedrt replicas and an nginx in front of them on this machine, to try the
# load-balanced setup (deploy/nginx/nginx.conf.template): clients use http://127.0.0.1:8080 and
# gRPC 127.0.0.1:50051 as with one server; replica i listens on 8081+i (HTTP) and 50061+i (gRPC).
# Ctrl-C stops everything. Needs nginx (Debian: nginx-light) and the release build
# (scripts/serve.sh builds it).
# Usage: scripts/replicas.sh N [CONFIG] (default configs/default.toml)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
count="${1:?usage: scripts/replicas.sh N [CONFIG]}"
config="${2:-configs/default.toml}"
command -v nginx >/dev/null || { echo "nginx is missing: apt-get install nginx-light" >&2; exit 1; }

scripts/setup.sh
cargo build --release -p embedrt-api -p embedrt-plugin-onnx -p embedrt-plugin-candle

run="$root/target/replicas"
rm -rf "$run" && mkdir -p "$run"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

http_servers="" grpc_servers=""
for i in $(seq 0 $((count - 1))); do
    http_port=$((8081 + i)) grpc_port=$((50061 + i))
    target/release/embedrt serve --config "$config" --http "127.0.0.1:$http_port" \
        --grpc "127.0.0.1:$grpc_port" 2>"$run/replica-$i.log" &
    pids+=($!)
    http_servers+="        server 127.0.0.1:$http_port max_fails=0;"$'\n'
    grpc_servers+="        server 127.0.0.1:$grpc_port max_fails=0;"$'\n'
done

python3 - "$run" "$http_servers" "$grpc_servers" <<'PY'
import sys, pathlib
run, http_servers, grpc_servers = sys.argv[1:]
text = pathlib.Path("deploy/nginx/nginx.conf.template").read_text()
for field, value in {"@PREFIX@": run, "@HTTP_SERVERS@": http_servers.rstrip("\n"),
                     "@GRPC_SERVERS@": grpc_servers.rstrip("\n"),
                     "@HTTP_LISTEN@": "127.0.0.1:8080", "@GRPC_LISTEN@": "127.0.0.1:50051"}.items():
    text = text.replace(field, value)
pathlib.Path(run, "nginx.conf").write_text(text)
PY
nginx -e stderr -p "$run" -c "$run/nginx.conf" -g 'daemon off;' 2>"$run/nginx.log" &
pids+=($!)

for i in $(seq 0 $((count - 1))); do
    until curl -sf "http://127.0.0.1:$((8081 + i))/ready" >/dev/null; do sleep 0.5; done
done
echo "$count replicas behind nginx: http://127.0.0.1:8080 (gRPC 127.0.0.1:50051); logs in $run; Ctrl-C stops" >&2
wait
