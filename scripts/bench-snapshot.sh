#!/usr/bin/env bash
# Snapshot benchmark (not a test; issue 15): a store of N keys with SIZE-byte values, restored
# into each real etcd (`etcdctl snapshot restore` for 3.4, `etcdutl snapshot restore` where
# etcdutl sits beside etcd, as for 3.5) and into oxcd (`oxcdutl snapshot restore`) from one
# generated snapshot file, then saved again from each running server with `etcdctl snapshot
# save`. Prints restore times (wall and CPU), save times and the servers' RSS (before, peak
# during the save).
#
# usage: scripts/bench-snapshot.sh [N=1000000] [SIZE=256]
# env:   ETCDS (etcd binaries, default "/usr/bin/etcd ~/.cache/etcd-tools/etcd-3.5.1/etcd",
#        missing ones skipped), ETCDCTL (default /usr/bin/etcdctl), OXCD_DIR (where oxcd and
#        oxcdutl are, default target/release)
# Needs oxcd, oxcdutl and the example generator (built here if missing).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
N=${1:-1000000} SIZE=${2:-256}
ETCDS=${ETCDS:-/usr/bin/etcd $HOME/.cache/etcd-tools/etcd-3.5.1/etcd} CTL=${ETCDCTL:-/usr/bin/etcdctl}
OXCD_DIR=${OXCD_DIR:-$ROOT/target/release}
OXCD="$OXCD_DIR/oxcd" UTL="$OXCD_DIR/oxcdutl"
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
rss_mib() { awk '/VmRSS/ {printf "%d", $2/1024}' "/proc/$1/status"; }
now() { echo $(( $(date +%s%N) / 1000000 )); }
secs() { local s=$1; echo "$(( $(date +%s%N) / 1000000 - s ))"; }

"$GEN" "$N" "$SIZE" "$W/gen.db"
echo "snapshot file: $N keys of $SIZE B, $(du -m "$W/gen.db" | cut -f1) MiB"

restore() { # NAME TOOL DATA PPORT -> "wall_ms cpu_ms"
  local t; t=$(now)
  /usr/bin/time -f '%U %S' -o "$W/$1.time" "$2" snapshot restore "$W/gen.db" --name "$1" \
    --data-dir "$3" --initial-cluster "$1=http://127.0.0.1:$4" \
    --initial-advertise-peer-urls "http://127.0.0.1:$4" >"$W/$1.restore.log" 2>&1
  echo "$(secs "$t") $(awk '{printf "%d", ($1 + $2) * 1000}' "$W/$1.time")"
}

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

# One column per server: NAME BIN RESTORE-TOOL.
COLS=()
for etcd in $ETCDS; do
  [[ -x "$etcd" ]] || { echo "skipped $etcd: missing" >&2; continue; }
  tool="$(dirname "$etcd")/etcdutl"; [[ -x "$tool" ]] || tool=$CTL
  COLS+=("etcd-$("$etcd" --version | awk '/etcd Version/ {print $3}') $etcd $tool")
done
COLS+=("oxcd $OXCD $UTL")

declare -A R_WALL R_CPU S_MS S_BASE S_PEAK S_SIZE
for col in "${COLS[@]}"; do
  read -r name bin tool <<<"$col"
  id=${name//./}
  cport=$(free_port) pport=$(free_port)
  read -r R_WALL[$name] R_CPU[$name] < <(restore "$id" "$tool" "$W/$id" "$pport")
  serve "$id" "$bin" "$W/$id" "$cport" "$pport"; pid=${PIDS[-1]}
  read -r S_MS[$name] S_BASE[$name] S_PEAK[$name] < <(save "$pid" "$cport")
  S_SIZE[$name]=$(du -m "$W/save-$cport.db" | cut -f1)
  kill "$pid"; wait "$pid" 2>/dev/null || true
done

row() { # LABEL ARRAY
  local -n a=$2; printf '%-28s' "$1"
  for col in "${COLS[@]}"; do read -r name _ <<<"$col"; printf ' %12s' "${a[$name]}"; done
  echo
}
printf '%-28s' ""; for col in "${COLS[@]}"; do read -r name _ <<<"$col"; printf ' %12s' "$name"; done; echo
row "restore wall (ms)" R_WALL
row "restore CPU user+sys (ms)" R_CPU
row "snapshot save (ms)" S_MS
row "RSS before save (MiB)" S_BASE
row "peak RSS during save (MiB)" S_PEAK
row "saved file (MiB)" S_SIZE
