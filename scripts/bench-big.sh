#!/usr/bin/env bash
# Big-store benchmarks (not tests; issue 14), run against oxcd and etcd 3.5.1 (and etcd
# 3.4.23 with ETCD34=1), one server after the other, from tests/tests/big_store.rs:
#
# - `bench_big_store` once per key count in KEYS, with SIZE-byte values: fill time, RSS after
#   the fill and per key, time and peak RSS of one full plain Range (and of a RangeStream on
#   oxcd), restart to ready, RSS after the restart, put and read latencies (steady open-loop
#   load) while a compaction removes two thirds of the stored revisions and while a defrag
#   runs, and the time a member added to the cluster takes to catch up from a snapshot.
#   Several key counts tell whether memory per key and restart time grow with the data.
# - `bench_defrag` (DEFRAG_MIB > 0): a store of DEFRAG_MIB MiB defragmented three times under
#   a steady load; latencies during each defrag and in a window as long just before it. Its
#   two readers each count every key after their start, as etcd does, which saturates a
#   loaded 2-core machine: BIG_BENCH_DEFRAG_READERS=0 (or BIG_BENCH_DEFRAG_WRITERS=N) in the
#   environment changes the load.
# - `bench_watchers` (WATCHERS=1): 100,000 watchers on 10,000 keys, memory per watcher and
#   delivery latency.
#
# usage: scripts/bench-big.sh [KEYS="250000 500000 1000000"] [SIZE=256]
#   an 8 GiB store: scripts/bench-big.sh 1000000 8192 (needs about 3 × 8 GiB free per server)
# env:   DEFRAG_MIB (default 1024; 0 skips), WATCHERS (default 0), ETCD35 (default
#        ~/.cache/etcd-tools/etcd-3.5.1/etcd, see scripts/install-etcd35.sh), TMPDIR (where the
#        data directories go)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KEYS=${1:-250000 500000 1000000} SIZE=${2:-256}
DEFRAG_MIB=${DEFRAG_MIB:-1024} WATCHERS=${WATCHERS:-0}
ETCD35=${ETCD35:-$HOME/.cache/etcd-tools/etcd-3.5.1/etcd}
SERVERS=("$ROOT/target/release/oxcd" "$ETCD35")
[[ "${ETCD34:-0}" == 1 ]] && SERVERS+=(/usr/bin/etcd)
# A new member receives the whole store before it is ready.
export OXCD_TEST_START_TIMEOUT=${OXCD_TEST_START_TIMEOUT:-900}

need_mib=$DEFRAG_MIB
for n in $KEYS; do
  need_mib=$(( n * (SIZE + 64) * 4 / 1048576 > need_mib ? n * (SIZE + 64) * 4 / 1048576 : need_mib ))
done
need_mib=$(( need_mib * 3 ))
free_mib=$(df -Pm "${TMPDIR:-/tmp}" | awk 'NR == 2 {print $4}')
if (( free_mib < need_mib )); then
  echo "about $need_mib MiB needed in ${TMPDIR:-/tmp}, $free_mib free" >&2
  exit 1
fi

cd "$ROOT"
cargo test --release -p oxcd-e2e --test big_store --no-run
bench() { # server, test name, env...
  local bin=$1 name=$2
  shift 2
  env OXCD_BIN="$bin" "$@" cargo test --release -p oxcd-e2e --test big_store "$name" \
    -- --ignored --exact --nocapture 2>&1 |
    grep -E '^(fill|RSS|full|restart|compaction|defrag|during|without|new member|failed|[0-9]+ watchers|delivery|test result)'
}
# Each measurement runs on every server in turn, so that they meet about the same machine load.
for n in $KEYS; do
  for bin in "${SERVERS[@]}"; do
    echo "== $bin: $n keys of $SIZE B"
    bench "$bin" bench_big_store BIG_BENCH_KEYS="$n" BIG_BENCH_VALUE="$SIZE"
  done
done
if (( DEFRAG_MIB > 0 )); then
  for bin in "${SERVERS[@]}"; do
    echo "== $bin: defrag of $DEFRAG_MIB MiB under load"
    bench "$bin" bench_defrag BIG_BENCH_DEFRAG_MIB="$DEFRAG_MIB"
  done
fi
if [[ "$WATCHERS" == 1 ]]; then
  for bin in "${SERVERS[@]}"; do
    echo "== $bin: watchers"
    bench "$bin" bench_watchers
  done
fi
