#!/usr/bin/env bash
# What auth costs (issue 10's benchmark; not a test, not in CI): etcd 3.5.1 and oxcd side by
# side, auth off and on, in one run.
#
# Each case is a fresh single member pinned to CPU 0, loaded by etcd's Go `benchmark` pinned to
# CPU 1 with bench-etcd.sh's settings (10 connections, 100 clients, 20000 requests, 8-byte keys,
# 256-byte values): put 10x100, range linearizable, range serializable. With auth on, the
# benchmark runs as user `bench` (simple token, bcrypt cost 10), whose role has readwrite on
# two prefixes: "\0" (the key the put benchmark writes) and "range". Then Authenticate/s:
# LOGINS logins through the gateway, CONCURRENCY at a time (bcrypt-bound).
#
# Cells: req/s and server CPU µs per request (user+sys from /proc/PID/stat around the run;
# on a shared machine req/s moves with the load, CPU per request much less). With auth on, the
# benchmark logs in once per connection before it starts: the CPU of those 10 logins (at the
# CPU per login measured below) is taken out of the put and range rows.
#
# usage: scripts/bench-auth.sh
# env:   OXCD=target/release/oxcd  ETCD35=<etcd 3.5.1 binary> (default: the etcd-tools cache,
#        else scripts/install-etcd35.sh)  GO_BENCH=~/.cache/etcd-tools/bin/etcd-benchmark (the
#        shared tools' build-etcd-benchmark.sh)  LOGINS=60  CONCURRENCY=4
#        OUT=<dir for raw outputs> (default a new /tmp/oxcd-bench-auth.*; kept)
# The members listen on fixed ports (2379/2380): the script runs in a network namespace of its
# own where it can.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS_CACHE=${ETCD_TOOLS_DIR:-$HOME/.cache/etcd-tools}
OXCD=${OXCD:-$ROOT/target/release/oxcd}
GO_BENCH=${GO_BENCH:-$TOOLS_CACHE/bin/etcd-benchmark}
LOGINS=${LOGINS:-60}
CONCURRENCY=${CONCURRENCY:-4}
export ETCDCTL_API=3

die() { echo "bench-auth: $*" >&2; exit 2; }
if [[ -z "${OXCD_BENCH_NETNS:-}" ]] && command -v ip >/dev/null && unshare -n true 2>/dev/null; then
  exec unshare -n env OXCD_BENCH_NETNS=1 bash -c 'ip link set lo up && exec "$0" "$@"' "$0" "$@"
fi
if [[ -z "${ETCD35:-}" ]]; then
  if [[ -x "$TOOLS_CACHE/etcd-3.5.1/etcd" ]]; then ETCD35=$TOOLS_CACHE/etcd-3.5.1/etcd
  else ETCD35=$("$ROOT/scripts/install-etcd35.sh")/etcd || die "cannot install etcd 3.5.1"; fi
fi
[[ -x "$OXCD" ]] || die "no oxcd binary: $OXCD (cargo build --release -p oxcd-server)"
[[ -x "$ETCD35" ]] || die "no etcd 3.5.1 binary: $ETCD35"
[[ -x "$GO_BENCH" ]] || die "no etcd benchmark tool: $GO_BENCH (/work/shared/tools/build-etcd-benchmark.sh)"
OUT=${OUT:-$(mktemp -d /tmp/oxcd-bench-auth.XXXXXX)}
EP=127.0.0.1:2379
HZ=$(getconf CLK_TCK)
declare -A BIN=([etcd]=$ETCD35 [oxcd]=$OXCD)
declare -A NAME=([etcd]="etcd 3.5.1" [oxcd]=oxcd)

PID=""
cleanup() { [[ -n $PID ]] && kill "$PID" 2>/dev/null; wait 2>/dev/null; }
trap cleanup EXIT
ticks() { sed 's/^.*) //' "/proc/$PID/stat" | awk '{print $12+$13}'; }
ctl() { etcdctl --endpoints="$EP" --dial-timeout=2s "$@"; }
# post PATH JSON: a gateway call (no token: the setup is done before auth is enabled)
post() { curl -sf -XPOST "http://$EP$1" -d "$2" >/dev/null || die "gateway call $1 failed"; }

# bench CASE ROW ARGS...: one benchmark run; appends "ROW REQ/S SERVER_CPU_S" to CASE's rows
bench() {
  local case=$1 row=$2 c0 c1; shift 2
  c0=$(ticks)
  taskset -c 1 "$GO_BENCH" --endpoints="$EP" --dial-timeout=5s --precise --conns=10 --clients=100 \
    "$@" --total=20000 >"$OUT/$case-$row.out" 2>&1
  c1=$(ticks)
  awk -v row="$row" -v t=$((c1 - c0)) -v hz="$HZ" '
    /Requests\/sec/ {r = $2}
    /^Error distribution:/ {errs = 1}
    END {printf "%s %s %.2f\n", row, (errs ? "errors" : sprintf("%.0f", r)), t / hz}' \
    "$OUT/$case-$row.out" >>"$OUT/$case.rows"
}

# logins CASE: LOGINS Authenticate calls through the gateway, CONCURRENCY at a time
logins() {
  local case=$1 c0 c1 t0 t1 ok
  c0=$(ticks); t0=$(date +%s.%N)
  seq "$LOGINS" | xargs -P "$CONCURRENCY" -I{} curl -s -XPOST "http://$EP/v3/auth/authenticate" \
    -d '{"name":"bench","password":"pw"}' -o "$OUT/$case-login-{}.json"
  t1=$(date +%s.%N); c1=$(ticks)
  ok=$(grep -l '"token"' "$OUT/$case"-login-*.json | wc -l)
  awk -v n="$LOGINS" -v ok="$ok" -v t=$((c1 - c0)) -v hz="$HZ" -v a="$t0" -v b="$t1" 'BEGIN {
    printf "authenticate %s %.2f\n", (ok == n ? sprintf("%.1f", n / (b - a)) : "errors"), t / hz }' \
    >>"$OUT/$case.rows"
}

# one_case SERVER AUTH: a fresh member, the setup, the benchmarks
one_case() {
  local s=$1 auth=$2 case="$1-$2" dir user=()
  dir="$OUT/$case"; mkdir -p "$dir"
  taskset -c 0 "${BIN[$s]}" --name m --data-dir "$dir/data" \
    --listen-client-urls "http://$EP" --advertise-client-urls "http://$EP" \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster m=http://127.0.0.1:2380 >"$dir/log" 2>&1 </dev/null &
  PID=$!
  for _ in $(seq 100); do ctl endpoint health >/dev/null 2>&1 && break; sleep 0.2; done
  ctl endpoint health >/dev/null 2>&1 || die "${NAME[$s]} did not become healthy (log: $dir/log)"
  echo ">> ${NAME[$s]}, auth $auth" >&2
  # The same users, role and keys either way; only `auth enable` differs.
  ctl user add root:root >/dev/null && ctl user grant-role root root >/dev/null &&
    ctl user add bench:pw >/dev/null && ctl role add bench >/dev/null &&
    ctl user grant-role bench bench >/dev/null &&
    ctl role grant-permission bench readwrite range --prefix >/dev/null ||
    die "setup failed on ${NAME[$s]}"
  # Prefix "\0" ("AA==" to "AQ=="): etcdctl cannot pass a NUL byte, the gateway can.
  post /v3/auth/role/grant '{"name":"bench","perm":{"permType":2,"key":"AA==","range_end":"AQ=="}}'
  ctl put rangekey "$(head -c 256 /dev/zero | tr '\0' v)" >/dev/null
  if [[ $auth == on ]]; then
    ctl auth enable >/dev/null || die "auth enable failed on ${NAME[$s]}"
    user=(--user bench:pw)
  fi
  bench "$case" put "${user[@]}" put --key-size=8 --val-size=256 --sequential-keys
  bench "$case" range-l "${user[@]}" range rangekey --consistency=l
  bench "$case" range-s "${user[@]}" range rangekey --consistency=s
  [[ $auth == on ]] && logins "$case"
  kill "$PID"; wait "$PID" 2>/dev/null; PID=""
  rm -rf "$dir/data"
}

for auth in off on; do for s in etcd oxcd; do one_case "$s" "$auth"; done; done

cell() { awk -v row="$2" -v f="$3" '$1 == row {print $f}' "$OUT/$1.rows"; }
# cpu_us CASE ROW: server CPU µs per request, less the benchmark's 10 logins when auth is on
cpu_us() {
  local login_s=0
  [[ $1 == *-on ]] && login_s=$(awk -v t="$(cell "$1" authenticate 3)" -v n="$LOGINS" 'BEGIN {print t / n}')
  if [[ $2 == authenticate ]]; then
    awk -v t="$(cell "$1" authenticate 3)" -v n="$LOGINS" 'BEGIN {printf "%.0f", t / n * 1e6}'
  else
    awk -v t="$(cell "$1" "$2" 3)" -v l="$login_s" 'BEGIN {printf "%.0f", (t - 10 * l) / 20000 * 1e6}'
  fi
}
{
  echo "# auth cost, $(date -u '+%F %T') UTC, $(nproc) cores, load at the end $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  echo "Single member on CPU 0, etcd's Go benchmark on CPU 1, 10 conns x 100 clients, 20000 requests."
  echo "Cells: req/s / server CPU µs per request. Auth on: user with prefix permissions, simple token."
  echo
  echo "| row | etcd 3.5.1 off | etcd 3.5.1 on | oxcd off | oxcd on |"
  echo "|---|---|---|---|---|"
  for row in put range-l range-s authenticate; do
    line="| $row |"
    for case in etcd-off etcd-on oxcd-off oxcd-on; do
      if [[ $row == authenticate && $case == *-off ]]; then line+=" – |"; continue; fi
      line+=" $(cell "$case" "$row" 2) / $(cpu_us "$case" "$row") |"
    done
    echo "$line"
  done
  echo
  echo "authenticate: $LOGINS logins through the gateway, $CONCURRENCY at a time (bcrypt cost 10)."
  echo "With auth on, the CPU of the benchmark's 10 logins is taken out of the put and range rows."
  echo "Raw outputs: $OUT"
} | tee "$OUT/table.md"
