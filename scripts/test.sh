#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: fetches the assets, builds every crate (the
# end-to-end tests start the real `embedrt` binary and load the real plugins), then tests.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
scripts/setup.sh
cargo build --workspace
cargo test --workspace "$@"
