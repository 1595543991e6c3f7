#!/usr/bin/env bash
# Does a single member answer a put before its WAL entry is on disk? (a measurement, not a test)
#
# For each server: a fresh single member, etcd's Go `benchmark put` with one client (put 1x1),
# and `perf record` of the server's write, pwrite, sendto and fdatasync system calls. For each
# put the script finds the WAL write carrying its entry, the fdatasync of the WAL that follows,
# and the next response written to a client socket, and counts whether that response went out
# while the fdatasync was still running or after it returned. A response sent before the
# fdatasync returns acknowledges a write a power loss can still take away.
#
# Why it matters: etcd 3.5.0-3.5.4 apply and answer a single member's entries in parallel with
# the WAL fdatasync (etcd issue #14370; fixed in 3.5.5 and 3.4.21 by waiting for the WAL when a
# Ready carries new entries and committed ones: `shouldWaitWALSync`), so their put 1x1 latency
# does not contain the fdatasync. oxcd answers only after it, as etcd 3.4.23 does.
#
# usage: scripts/bench-ack-order.sh [SERVER_BIN...]   (needs perf and root)
# env:   PUTS=3000   GO_BENCH=~/.cache/etcd-tools/bin/etcd-benchmark
#        default servers: etcd 3.5.1 from the etcd-tools cache, /usr/bin/etcd, target/release/oxcd
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PUTS=${PUTS:-3000}
GO_BENCH=${GO_BENCH:-$HOME/.cache/etcd-tools/bin/etcd-benchmark}
if (($# == 0)); then
  set -- "$HOME/.cache/etcd-tools/etcd-3.5.1/etcd" /usr/bin/etcd "$ROOT/target/release/oxcd"
fi
die() { echo "bench-ack-order: $*" >&2; exit 2; }
command -v perf >/dev/null || die "perf is not installed (apt-get install linux-perf)"
[[ -x $GO_BENCH ]] || die "etcd's benchmark not found at $GO_BENCH (build-etcd-benchmark.sh)"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
export ETCDCTL_API=3

echo "| server | put 1x1 p50 ms | responses sent while their WAL fdatasync ran | after it returned |"
echo "|---|---|---|---|"
for bin in "$@"; do
  [[ -x $bin ]] || die "not an executable: $bin"
  dir=$(mktemp -d /tmp/ack-order.XXXXXX)
  cp=$(free_port); pp=$(free_port)
  "$bin" --name m1 --data-dir "$dir/m1" \
    --listen-client-urls "http://127.0.0.1:$cp" --advertise-client-urls "http://127.0.0.1:$cp" \
    --listen-peer-urls "http://127.0.0.1:$pp" --initial-advertise-peer-urls "http://127.0.0.1:$pp" \
    --initial-cluster "m1=http://127.0.0.1:$pp" >"$dir/log" 2>&1 </dev/null &
  pid=$!
  for _ in $(seq 1 100); do
    etcdctl --endpoints="127.0.0.1:$cp" --dial-timeout=1s endpoint health >/dev/null 2>&1 && break
    sleep 0.2
  done
  perf record -q -o "$dir/perf.data" -p "$pid" -e 'syscalls:sys_enter_write,syscalls:sys_enter_pwrite64,syscalls:sys_enter_sendto,syscalls:sys_enter_fdatasync,syscalls:sys_exit_fdatasync' >/dev/null 2>&1 &
  perf_pid=$!
  sleep 1
  p50=$("$GO_BENCH" --endpoints="127.0.0.1:$cp" --precise --conns=1 --clients=1 put \
    --key-size=8 --val-size=256 --sequential-keys --total="$PUTS" 2>&1 |
    awk '/50% in/ {printf "%.3f", $3 * 1000}')
  kill -INT "$perf_pid"; wait "$perf_pid"
  # The files the server holds open: their descriptors are not client sockets.
  files=$(for fd in /proc/"$pid"/fd/*; do
    target=$(readlink "$fd") && [[ $target == /* ]] && echo "${fd##*/}"
  done | tr '\n' ' ')
  kill "$pid"; wait "$pid" 2>/dev/null
  perf script -i "$dir/perf.data" -F tid,time,event,trace 2>/dev/null >"$dir/trace"
  counts=$(python3 - "$dir/trace" "$files" <<'PY'
import collections, re, sys

trace, files = sys.argv[1], {int(fd) for fd in sys.argv[2].split()}
events = []
for line in open(trace):
    m = re.match(r"\s*(\d+)\s+([\d.]+):\s+syscalls:(\w+):\s*(.*)", line)
    if m:
        fd = re.search(r"fd: (0x[0-9a-f]+)", m.group(4))
        size = re.search(r"(?:count|len): (0x[0-9a-f]+)", m.group(4))
        events.append((m.group(1), m.group(3), int(fd.group(1), 16) if fd else None,
                       int(size.group(1), 16) if size else 0))
# The WAL is the file synced most often; the backend syncs only now and then.
syncs = collections.Counter(fd for _, name, fd, _ in events if name == "sys_enter_fdatasync")
wal = syncs.most_common(1)[0][0] if syncs else None
before = after = 0
state = None  # None -> "written" -> "syncing" -> "synced" -> counted at the response
syncer = None  # the thread in the WAL's fdatasync: an exit is its own only on that thread
for tid, name, fd, size in events:
    if name in ("sys_enter_write", "sys_enter_pwrite64") and fd == wal:
        state = "written"
    elif name == "sys_enter_fdatasync" and fd == wal and state == "written":
        state, syncer = "syncing", tid
    elif name == "sys_exit_fdatasync" and state == "syncing" and tid == syncer:
        state = "synced"
    elif name in ("sys_enter_write", "sys_enter_sendto") and fd not in files and size >= 0x30:
        # A response frame (small writes are wake-ups, pings and window updates).
        if state == "syncing":
            before += 1
        elif state == "synced":
            after += 1
        if state in ("syncing", "synced"):
            state = None
print(before, after)
PY
)
  read -r before after <<<"$counts"
  version=$("$bin" --version 2>/dev/null | awk '/Version:/ {print $NF; exit}')
  echo "| $(basename "$bin") $version | $p50 | $before | $after |"
  rm -rf "$dir"
done
