#!/usr/bin/env bash
# Runs every test of swarm on this machine: installs what the tests need, builds the whole
# workspace once (the end-to-end tests drive the built binaries), then runs all tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cargo build --workspace --all-targets --locked
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
  cargo test --workspace --doc --locked
else
  cargo test --workspace --locked --no-fail-fast
fi
