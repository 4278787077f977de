#!/usr/bin/env bash
# A soak with faults (benches/soak.py says what runs and what is injected): two release replicas
# behind nginx with a Redis cache, 60 clients of mixed HTTP and gRPC traffic for 10 minutes, a
# config reload every minute, an engine swap, a backend panic, a replica SIGKILLed and Redis
# killed and started again. Prints the per-minute table; soak.json, soak.png and the processes'
# logs go to target/bench-results/soak/. Fails when a valid request failed.
# Usage: benches/soak.sh [SECONDS] [CLIENTS]   (default 600 and 60)
# Needs nginx and redis-server (scripts/setup.sh installs both); the driver runs in
# .assets/soak-venv (made here with benches/soak-requirements.txt, pinned).
source "$(dirname "$0")/lib.sh"
seconds="${1:-600}"
clients="${2:-60}"
results="$results/soak"
rm -rf "$results" && mkdir -p "$results"

# The echo plugin (a backend that panics on one token id) in the same build as the others.
RELEASE_PACKAGES+=(embedrt-plugin-echo)
build_release

venv=.assets/soak-venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r benches/soak-requirements.txt
"$venv/bin/python" benches/soak.py --embedrt target/release/embedrt --out "$results" \
    --seconds "$seconds" --clients "$clients"
