#!/usr/bin/env bash
# Big-store benchmark (not a test; issue 14): the ignored `bench_big_store` of
# tests/tests/big_store.rs run against oxcd and etcd 3.5.1 (and etcd 3.4.23 with ETCD34=1), one
# server after the other, with N keys of SIZE-byte values. Per server it prints: fill time,
# RSS after the fill, time and peak RSS of one full plain Range (and of a RangeStream on oxcd),
# restart to ready, RSS after the restart, and put latencies while a defrag runs (after half
# of the keys were deleted and compacted).
#
# usage: scripts/bench-big.sh [N=1000000] [SIZE=256]
#   an 8 GiB store: scripts/bench-big.sh 1000000 8192 (needs about 3 × 8 GiB free per server)
# env:   ETCD35 (default ~/.cache/etcd-tools/etcd-3.5.1/etcd, see scripts/install-etcd35.sh),
#        TMPDIR (where the data directories go)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
N=${1:-1000000} SIZE=${2:-256}
ETCD35=${ETCD35:-$HOME/.cache/etcd-tools/etcd-3.5.1/etcd}
SERVERS=("$ROOT/target/release/oxcd" "$ETCD35")
[[ "${ETCD34:-0}" == 1 ]] && SERVERS+=(/usr/bin/etcd)

need_mib=$(( N * (SIZE + 64) * 3 / 1048576 ))
free_mib=$(df -Pm "${TMPDIR:-/tmp}" | awk 'NR == 2 {print $4}')
if (( free_mib < need_mib )); then
  echo "about $need_mib MiB needed in ${TMPDIR:-/tmp}, $free_mib free" >&2
  exit 1
fi

cd "$ROOT"
for bin in "${SERVERS[@]}"; do
  echo "== $bin: $N keys of $SIZE B"
  OXCD_BIN="$bin" BIG_BENCH_KEYS="$N" BIG_BENCH_VALUE="$SIZE" \
    cargo test --release -p oxcd-e2e --test big_store bench_big_store -- --ignored --nocapture 2>&1 |
    grep -E '^(fill|RSS|full|restart|defrag|test result)'
done
