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

# A second oxcd with failpoints compiled in (issue 16), for tests/tests/failpoints.rs; then the
# plain one again (cached), which every other test runs.
echo "== build: cargo build --release -p oxcd-server --features failpoints"
cargo build --release -p oxcd-server --features failpoints
cp "$ROOT/target/release/oxcd" "$ROOT/target/release/oxcd-failpoints"
export OXCD_FAILPOINTS_BIN="$ROOT/target/release/oxcd-failpoints"

echo "== build: cargo build --release -p oxcd-server -p oxcd-bench -p oxcd-ctl -p oxcd-utl"
cargo build --release -p oxcd-server -p oxcd-bench -p oxcd-ctl -p oxcd-utl
# The client library's examples, which tests/tests/ctl_client_examples.rs runs.
cargo build --release -p oxcd-client --examples

# The end-to-end tests spawn this binary (and not a debug one cargo may build meanwhile).
export OXCD_BIN="$ROOT/target/release/oxcd"
export OXCDCTL_BIN="$ROOT/target/release/oxcdctl"

# etcd 3.5.1 for the snapshot round trips (tests/tests/snapshot_etcd.rs); they skip without it.
if [[ -z "${ETCD35_DIR:-}" ]]; then
  ETCD35_DIR="$("$ROOT/scripts/install-etcd35.sh")" && export ETCD35_DIR ||
    echo "etcd 3.5.1 could not be installed: its tests skip"
fi

# Tests build in the release profile too: one build of the dependencies instead of two
# keeps CI on two cores well inside its time limit.
echo "== tests: workspace"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --release --no-fail-fast
  cargo test --workspace --release --doc
else
  cargo test --workspace --release --no-fail-fast
fi

echo "== tests: a crash at every failpoint (tests/tests/failpoints.rs)"
cargo test --release -p oxcd-e2e --features failpoints --test failpoints -- --test-threads=1

if [[ "${SKIP_ETCD_E2E:-0}" != 1 ]]; then
  echo "== etcd's own e2e conformance subset"
  "$ROOT/scripts/etcd-e2e.sh" "$OXCD_BIN"
  echo "== the lists oxcdctl covers, with oxcdctl as the suite's etcdctl"
  ETCDCTL_BIN="$OXCDCTL_BIN" "$ROOT/scripts/etcd-e2e.sh" "$OXCD_BIN" oxcdctl
fi
echo "== all tests passed"
