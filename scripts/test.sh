#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: fetches the assets, builds every crate (the
# end-to-end tests start the real `embedrt` binary and load the real plugins), then tests.
source "$(dirname "$0")/lib.sh"
scripts/setup.sh
cargo build --workspace
cargo test --workspace "$@"
