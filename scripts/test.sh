#!/usr/bin/env bash
# Install what the tests need, build oxcd, and run every test:
#   1. unit and in-process tests of every crate, and the end-to-end tests in tests/
#      (real oxcd processes driven by the real etcdctl and the etcd-client crate, compared
#      with real etcd), against target/release/oxcd;
#   2. etcd 3.4.23's own e2e conformance subset (scripts/etcd-e2e.sh).
#
# usage: scripts/test.sh            everything
# env:   SKIP_ETCD_E2E=1            skip step 2
#        OXCD_TEST_SEED=N           replay the random tests with a seed they printed
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

"$ROOT/scripts/deps.sh"
command -v cargo >/dev/null || { echo "cargo not found: install Rust (https://rustup.rs)" >&2; exit 1; }

echo "== build: cargo build --release -p oxcd-server -p oxcd-bench -p oxcd-ctl -p oxcd-utl"
cargo build --release -p oxcd-server -p oxcd-bench -p oxcd-ctl -p oxcd-utl

# The end-to-end tests spawn this binary (and not a debug one cargo may build meanwhile).
export OXCD_BIN="$ROOT/target/release/oxcd"
export OXCDCTL_BIN="$ROOT/target/release/oxcdctl"

# Tests build in the release profile too: one build of the dependencies instead of two
# keeps CI on two cores well inside its time limit.
echo "== tests: workspace"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --release --no-fail-fast
  cargo test --workspace --release --doc
else
  cargo test --workspace --release --no-fail-fast
fi

if [[ "${SKIP_ETCD_E2E:-0}" != 1 ]]; then
  echo "== etcd's own e2e conformance subset"
  "$ROOT/scripts/etcd-e2e.sh" "$OXCD_BIN"
fi
echo "== all tests passed"
