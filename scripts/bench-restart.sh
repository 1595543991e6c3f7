#!/usr/bin/env bash
# Restart to ready of a big store (issue 14), for any etcd-compatible server binary.
#
# Fills a fresh single member with KEYS puts of SIZE-byte values (etcd's own load tool,
# sequential keys), stops it with SIGTERM, then restarts it ROUNDS times on the same data and
# prints, for each restart, the time from spawn until `etcdctl endpoint health` succeeds and
# the RSS 3 s later. Runs in a private network namespace (fixed ports, nothing shared).
#
# usage: scripts/bench-restart.sh SERVER_BIN [KEYS=1000000] [SIZE=256]
# env:   ROUNDS (default 3), SNAPSHOT_COUNT (default 100000, etcd's default), TMPDIR (data),
#        KEEP=1 keeps the data dir, DATA=DIR reuses a filled data dir (no fill), PIN=1 runs the
#        server on CPU 0 and the load tool on CPU 1, PERF=FILE records the first restart with
#        `perf record -g` into FILE, COMPACT=N then overwrites the first N keys and times a
#        physical compaction of the N revisions overwritten. QUOTA sets --quota-backend-bytes
#        (default 32 GiB); ARGS adds server flags to every restart (not to the fill).
set -euo pipefail
[[ $# -ge 1 ]] || { sed -n '2,15p' "$0"; exit 2; }
if [[ "${OXCD_IN_NETNS:-}" != 1 ]]; then
  exec unshare -n env OXCD_IN_NETNS=1 sh -c 'ip link set lo up && exec "$0" "$@"' "$0" "$@"
fi
BIN=$(realpath "$1") KEYS=${2:-1000000} SIZE=${3:-256}
ROUNDS=${ROUNDS:-3} SNAPSHOT_COUNT=${SNAPSHOT_COUNT:-100000}
BENCH=${BENCH:-$HOME/.cache/etcd-tools/bin/etcd-benchmark}
ETCDCTL=${ETCDCTL:-/usr/bin/etcdctl}
URL=http://127.0.0.1:2379
pin_server=() pin_tool=()
[[ "${PIN:-0}" == 1 ]] && pin_server=(taskset -c 0) pin_tool=(taskset -c 1)

if [[ -n "${DATA:-}" ]]; then
  dir=$DATA
else
  dir=$(mktemp -d "${TMPDIR:-/tmp}/bench-restart.XXXXXX")
fi
pid= restart_args=
cleanup() {
  [[ -n "$pid" ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  [[ -z "${DATA:-}" && "${KEEP:-0}" != 1 ]] && rm -rf "$dir"
  true
}
trap cleanup EXIT

start() { # extra command prefix...
  "$@" "${pin_server[@]}" "$BIN" --name m0 --data-dir "$dir/data" $restart_args \
    --listen-client-urls $URL --advertise-client-urls $URL \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster m0=http://127.0.0.1:2380 --quota-backend-bytes="${QUOTA:-34359738368}" \
    --snapshot-count="$SNAPSHOT_COUNT" >>"$dir/log" 2>&1 &
  pid=$!
}
ready() {
  until ETCDCTL_API=3 "$ETCDCTL" --endpoints=$URL --dial-timeout=1s --command-timeout=2s \
    endpoint health >/dev/null 2>&1; do
    kill -0 "$pid" 2>/dev/null || { echo "server exited, see $dir/log" >&2; tail "$dir/log" >&2; exit 1; }
    sleep 0.02
  done
}
revision() {
  ETCDCTL_API=3 "$ETCDCTL" --endpoints=$URL --command-timeout=120s endpoint status -w json |
    grep -o '"revision":[0-9]*' | cut -d: -f2
}
cpu_s() { # user + system CPU seconds of a process
  awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$1/stat"
}
rss_mib() { awk '/^VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }
stop() {
  kill -TERM "$pid"
  wait "$pid" || true
  pid=
}
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN {printf "%.2f", b - a}'; }

if [[ -z "${DATA:-}" ]]; then
  start
  ready
  t=$(now)
  "${pin_tool[@]}" "$BENCH" --endpoints=$URL --conns=10 --clients=100 put --total="$KEYS" \
    --key-size=16 --key-space-size="$KEYS" --sequential-keys --val-size="$SIZE" >/dev/null 2>&1
  echo "fill $KEYS keys of $SIZE B: $(elapsed "$t") s, RSS $(rss_mib "$pid") MiB, load $(cut -d' ' -f1-3 /proc/loadavg)"
  stop
fi
du -sh "$dir/data"/* 2>/dev/null | tr '\n' ' '
echo
restart_args=${ARGS:-}
for round in $(seq "$ROUNDS"); do
  prefix=()
  if [[ -n "${PERF:-}" && $round == 1 ]]; then
    prefix=(perf record -g -o "$PERF" --)
  fi
  t=$(now)
  start "${prefix[@]}"
  ready
  took=$(elapsed "$t")
  child=$(pgrep -P "$pid" -f "$BIN" || echo "$pid")
  cpu=$(cpu_s "$child")
  sleep 3
  echo "restart $round: ready after $took s ($cpu s of server CPU), RSS $(rss_mib "$child") MiB, load $(cut -d' ' -f1-3 /proc/loadavg)"
  stop
done
if (( ${COMPACT:-0} > 0 )); then
  start
  ready
  "${pin_tool[@]}" "$BENCH" --endpoints=$URL --conns=10 --clients=100 put --total="$COMPACT" \
    --key-size=16 --key-space-size="$COMPACT" --sequential-keys --val-size="$SIZE" >/dev/null 2>&1
  rev=$(revision)
  t=$(now)
  ETCDCTL_API=3 "$ETCDCTL" --endpoints=$URL --command-timeout=3600s compaction --physical "$rev" >/dev/null
  echo "compaction of $COMPACT revisions at revision $rev: $(elapsed "$t") s, RSS $(rss_mib "$pid") MiB, load $(cut -d' ' -f1-3 /proc/loadavg)"
  stop
fi
du -sh "$dir/data"/* 2>/dev/null | tr '\n' ' '
echo
