#!/usr/bin/env bash
# Snapshot benchmark (not a test; issue 15): a store of N keys with SIZE-byte values, restored
# into real etcd (`etcdctl snapshot restore`) and into oxcd (`oxcdutl snapshot restore`) from
# one generated snapshot file, then saved again from each running server with
# `etcdctl snapshot save`. Prints restore and save times and the servers' RSS (before, peak
# during the save).
#
# usage: scripts/bench-snapshot.sh [N=1000000] [SIZE=256]
# env:   ETCD (default /usr/bin/etcd), ETCDCTL (default /usr/bin/etcdctl)
# Needs target/release/{oxcd,oxcdutl} and the example generator (built here if missing).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
N=${1:-1000000} SIZE=${2:-256}
ETCD=${ETCD:-/usr/bin/etcd} CTL=${ETCDCTL:-/usr/bin/etcdctl}
OXCD="$ROOT/target/release/oxcd" UTL="$ROOT/target/release/oxcdutl"
GEN="$ROOT/target/release/examples/bench_snapshot_file"
[[ -x "$GEN" ]] || cargo build --release -p oxcd-storage --example bench_snapshot_file
W=$(mktemp -d /tmp/oxcd-snapbench.XXXXXX)
PIDS=()
cleanup() {
  local rc=$?
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null
  if (( rc == 0 )); then rm -rf "$W"; else echo "failed; logs kept in $W" >&2; fi
}
trap cleanup EXIT
export ETCDCTL_API=3

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
EC=$(free_port) EP=$(free_port) OC=$(free_port) OP=$(free_port)
secs() { local s=$1; echo "$(( $(date +%s%N) / 1000000 - s ))"; }
now() { echo $(( $(date +%s%N) / 1000000 )); }
rss_mib() { awk '/VmRSS/ {printf "%d", $2/1024}' "/proc/$1/status"; }

"$GEN" "$N" "$SIZE" "$W/gen.db"
echo "snapshot file: $N keys of $SIZE B, $(du -m "$W/gen.db" | cut -f1) MiB"

t=$(now); "$CTL" snapshot restore "$W/gen.db" --name e --data-dir "$W/etcd" \
  --initial-cluster e=http://127.0.0.1:$EP --initial-advertise-peer-urls http://127.0.0.1:$EP >/dev/null 2>&1
etcd_restore=$(secs "$t")
t=$(now); "$UTL" snapshot restore "$W/gen.db" --name o --data-dir "$W/oxcd" \
  --initial-cluster o=http://127.0.0.1:$OP --initial-advertise-peer-urls http://127.0.0.1:$OP 2>/dev/null
oxcd_restore=$(secs "$t")

serve() { # NAME BIN DATA CPORT PPORT
  "$2" --name "$1" --data-dir "$3" --listen-client-urls "http://127.0.0.1:$4" \
    --advertise-client-urls "http://127.0.0.1:$4" --listen-peer-urls "http://127.0.0.1:$5" \
    --initial-advertise-peer-urls "http://127.0.0.1:$5" --initial-cluster "$1=http://127.0.0.1:$5" \
    >"$W/$1.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 600); do
    "$CTL" --endpoints="127.0.0.1:$4" endpoint health >/dev/null 2>&1 && return
    sleep 0.2
  done
  echo "$1 did not start; see $W/$1.log" >&2; exit 1
}

save() { # PID CPORT -> "ms base_rss peak_rss"
  local pid=$1 port=$2 peak base
  base=$(rss_mib "$pid"); peak=$base
  "$CTL" --endpoints="127.0.0.1:$port" snapshot save "$W/save-$port.db" >/dev/null 2>&1 &
  local ctl=$! t; t=$(now)
  while kill -0 "$ctl" 2>/dev/null; do
    local r; r=$(rss_mib "$pid"); (( r > peak )) && peak=$r; sleep 0.05
  done
  wait "$ctl"
  echo "$(secs "$t") $base $peak"
}

serve e "$ETCD" "$W/etcd" "$EC" "$EP"; epid=${PIDS[-1]}
read -r etcd_save etcd_base etcd_peak < <(save "$epid" "$EC")
kill "$epid"; wait "$epid" 2>/dev/null || true
serve o "$OXCD" "$W/oxcd" "$OC" "$OP"; opid=${PIDS[-1]}
read -r oxcd_save oxcd_base oxcd_peak < <(save "$opid" "$OC")

printf '%-26s %12s %12s\n' "" "etcd $("$ETCD" --version | awk '/etcd Version/ {print $3}')" oxcd
printf '%-26s %12s %12s\n' "restore (ms)" "$etcd_restore" "$oxcd_restore"
printf '%-26s %12s %12s\n' "snapshot save (ms)" "$etcd_save" "$oxcd_save"
printf '%-26s %12s %12s\n' "RSS before save (MiB)" "$etcd_base" "$oxcd_base"
printf '%-26s %12s %12s\n' "peak RSS during save (MiB)" "$etcd_peak" "$oxcd_peak"
printf '%-26s %12s %12s\n' "saved file (MiB)" "$(du -m "$W/save-$EC.db" | cut -f1)" "$(du -m "$W/save-$OC.db" | cut -f1)"
