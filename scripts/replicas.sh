#!/usr/bin/env bash
# Starts N embedrt replicas and an nginx in front of them on this machine, to try the
# load-balanced setup (deploy/nginx/nginx.conf.template): clients use http://127.0.0.1:8080 and
# gRPC 127.0.0.1:50051 as with one server; replica i listens on 8081+i (HTTP) and 50061+i (gRPC).
# Ctrl-C stops everything. Needs nginx (Debian: nginx-light) and the release build
# (scripts/serve.sh builds it).
# Usage: scripts/replicas.sh N [CONFIG] (default configs/default.toml)
source "$(dirname "$0")/lib.sh"
count="${1:?usage: scripts/replicas.sh N [CONFIG]}"
config="${2:-configs/default.toml}"
command -v nginx >/dev/null || { echo "nginx is missing: apt-get install nginx-light" >&2; exit 1; }

build_release

run="$root/target/replicas"
rm -rf "$run" && mkdir -p "$run"

http_servers="" grpc_servers=""
replicas=()
for i in $(seq 0 $((count - 1))); do
    http_port=$((8081 + i)) grpc_port=$((50061 + i))
    start_background "$run/replica-$i.log" target/release/embedrt serve --config "$config" \
        --http "127.0.0.1:$http_port" --grpc "127.0.0.1:$grpc_port"
    replicas+=("$BACKGROUND_PID")
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
start_background "$run/nginx.log" nginx -e stderr -p "$run" -c "$run/nginx.conf" -g 'daemon off;'

for i in $(seq 0 $((count - 1))); do
    wait_ready "http://127.0.0.1:$((8081 + i))/ready" "${replicas[$i]}"
done
echo "$count replicas behind nginx: http://127.0.0.1:8080 (gRPC 127.0.0.1:50051); logs in $run; Ctrl-C stops" >&2
wait
