#!/usr/bin/env bash
# The speed comparison of issue 12 in one go (a benchmark, not a test: not in CI).
#
# For each round, and interleaved so that a change in the machine's load hits every server alike:
# fresh single members of etcd 3.4.23, etcd 3.5.1 and oxcd, each loaded with the shared
# bench-etcd.sh set (SKIP_CHECK_PERF=1), once with etcd's Go `benchmark` and once with oxcd-bench,
# unpinned and pinned (server on CPU 0, load tool on CPU 1). Then 3 members of each on 127.0.0.1:
# put 10x100 to the leader, linearizable range 10x100 on a follower (Go tool). Prints markdown
# tables of the median over the rounds: req/s / p99 ms / server CPU us per request (from
# /proc/PID/stat around each run), put 1x1's p50, and the servers' RSS after the set.
#
# usage: scripts/bench-referee.sh
# env:   ROUNDS=3                 rounds (median over them)
#        SERVERS="etcd34 etcd35 oxcd"   TOOLS="go oxcd"   PINS="0 1"   CLUSTER=1 (0 skips the 3-member rows; TOOLS="" runs only those)
#        ETCD34=/usr/bin/etcd     ETCD35=<dir holding etcd 3.5.1's etcd> (default: the etcd-tools
#                                 cache, else scripts/install-etcd35.sh fetches it)
#        OXCD=target/release/oxcd OXCD_BENCH=target/release/oxcd-bench
#        GO_BENCH=~/.cache/etcd-tools/bin/etcd-benchmark (built by the shared tools'
#                                 build-etcd-benchmark.sh)
#        SHARED_TOOLS=<dir with bench-etcd.sh> (default: ../shared/tools next to the checkout,
#                                 or /work/shared/tools)
#        OUT=<dir for raw outputs> (default a new /tmp/oxcd-referee.*; kept)
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROUNDS=${ROUNDS:-3}
SERVERS=${SERVERS-etcd34 etcd35 oxcd}
TOOLS=${TOOLS-go oxcd}
PINS=${PINS-0 1}
CLUSTER=${CLUSTER:-1}
TOOLS_CACHE=${ETCD_TOOLS_DIR:-$HOME/.cache/etcd-tools}
GO_BENCH=${GO_BENCH:-$TOOLS_CACHE/bin/etcd-benchmark}
OXCD=${OXCD:-$ROOT/target/release/oxcd}
OXCD_BENCH=${OXCD_BENCH:-$ROOT/target/release/oxcd-bench}
ETCD34=${ETCD34:-/usr/bin/etcd}
OUT=${OUT:-$(mktemp -d /tmp/oxcd-referee.XXXXXX)}
export ETCDCTL_API=3

die() { echo "bench-referee: $*" >&2; exit 2; }
if [[ -z "${SHARED_TOOLS:-}" ]]; then
  for d in "$ROOT/../shared/tools" "$ROOT/../../shared/tools" /work/shared/tools; do
    [[ -x "$d/bench-etcd.sh" ]] && { SHARED_TOOLS=$(cd "$d" && pwd); break; }
  done
fi
[[ -x "${SHARED_TOOLS:-}/bench-etcd.sh" ]] || die "bench-etcd.sh not found; set SHARED_TOOLS"
if [[ -z "${ETCD35:-}" ]]; then
  if [[ -x "$TOOLS_CACHE/etcd-3.5.1/etcd" ]]; then ETCD35=$TOOLS_CACHE/etcd-3.5.1
  else ETCD35=$("$ROOT/scripts/install-etcd35.sh") || die "cannot install etcd 3.5.1"; fi
fi
declare -A BIN=([etcd34]=$ETCD34 [etcd35]=$ETCD35/etcd [oxcd]=$OXCD)
declare -A NAME=([etcd34]="etcd 3.4.23" [etcd35]="etcd 3.5.1" [oxcd]=oxcd)
declare -A TOOL=([go]=$GO_BENCH [oxcd]=$OXCD_BENCH)
declare -A TOOLNAME=([go]="Go tool (etcd 3.4 benchmark)" [oxcd]=oxcd-bench)
for s in $SERVERS; do [[ -x "${BIN[$s]}" ]] || die "server binary missing: ${BIN[$s]}"; done
for t in $TOOLS; do [[ -x "${TOOL[$t]}" ]] || die "load tool missing: ${TOOL[$t]}"; done
ROWS="put-1x1 put-10x100 range-l range-s txn-put watch"

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12+$13}'; }

# start_member DIR NAME CPORT PPORT CLUSTER PIN BIN: starts one member in the background (PID in $!)
start_member() {
  local dir=$1 name=$2 cp=$3 pp=$4 cluster=$5 pin=$6 bin=$7 pre=()
  [[ $pin == 1 ]] && pre=(taskset -c 0)
  "${pre[@]}" "$bin" --name "$name" --data-dir "$dir/$name" \
    --listen-client-urls "http://127.0.0.1:$cp" --advertise-client-urls "http://127.0.0.1:$cp" \
    --listen-peer-urls "http://127.0.0.1:$pp" --initial-advertise-peer-urls "http://127.0.0.1:$pp" \
    --initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token "referee-${dir##*/}" \
    >"$dir/$name.log" 2>&1 </dev/null &
}

wait_ready() {  # wait_ready CPORT
  for _ in $(seq 1 150); do
    etcdctl --endpoints="127.0.0.1:$1" --dial-timeout=1s endpoint health >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  die "member on port $1 did not become healthy"
}

# one_set ROUND SERVER TOOL PIN: a fresh single member and the bench-etcd.sh set against it.
one_set() {
  local round=$1 s=$2 t=$3 pin=$4 dir cp pp pid wrap
  dir="$OUT/r$round-$s-$t-pin$pin"; mkdir -p "$dir"
  cp=$(free_port); pp=$(free_port)
  start_member "$dir" m1 "$cp" "$pp" "m1=http://127.0.0.1:$pp" "$pin" "${BIN[$s]}"
  pid=$!; PIDS+=("$pid")
  wait_ready "$cp"
  # The load tool runs through a wrapper that pins it and records the server's CPU ticks
  # around each run (bench-etcd.sh prints them to 0.1 s only).
  wrap="$dir/bench"
  cat >"$wrap" <<EOF
#!/bin/sh
t0=\$(sed 's/^.*) //' /proc/$pid/stat | awk '{print \$12+\$13}')
$([[ $pin == 1 ]] && echo "taskset -c 1 ")"${TOOL[$t]}" "\$@"
rc=\$?
t1=\$(sed 's/^.*) //' /proc/$pid/stat | awk '{print \$12+\$13}')
echo \$((t1 - t0)) >>"$dir/ticks"
exit \$rc
EOF
  chmod +x "$wrap"
  echo ">> round $round: ${NAME[$s]}, ${TOOLNAME[$t]}, pinned=$pin" >&2
  BENCH=$wrap SERVER_PID=$pid SKIP_CHECK_PERF=1 OUT_DIR="$dir/out" \
    "$SHARED_TOOLS/bench-etcd.sh" "127.0.0.1:$cp" >"$dir/summary" 2>"$dir/bench.err"
  kill "$pid"; wait "$pid" 2>/dev/null
  rm -rf "$dir/m1"
  # One line per row: ROW REQ/S P99_MS CPU_US_PER_REQ, then p50 of put 1x1 and the RSS.
  local hz; hz=$(getconf CLK_TCK)
  paste <(awk '$1 ~ /^(put-1x1|put-10x100|range-l|range-s|txn-put|watch|watch-lat)$/ {print $1, $2, $3, $5}' "$dir/summary") "$dir/ticks" |
    awk -v hz="$hz" '{ printf "%s %s %s %.1f\n", $1, $3, $4, ($2 > 0 ? $5 / hz / $2 * 1e6 : 0) }' >"$dir/rows"
  awk '/50% in/ {printf "p50 %.3f\n", $3 * 1000}' "$dir/out/put-1x1.out" >>"$dir/rows"
  awk '$1 == "watch-lat" {print "rss", $7}' "$dir/summary" >>"$dir/rows"
}

# cluster_set ROUND SERVER: 3 members; put 10x100 to the leader, range-l on a follower.
cluster_set() {
  local round=$1 s=$2 dir cps=() pps=() pids=() ic="" leader="" follower="" hz
  dir="$OUT/r$round-$s-cluster"; mkdir -p "$dir"
  for i in 0 1 2; do cps+=("$(free_port)"); pps+=("$(free_port)"); done
  for i in 0 1 2; do ic+="${ic:+,}m$i=http://127.0.0.1:${pps[$i]}"; done
  for i in 0 1 2; do
    start_member "$dir" "m$i" "${cps[$i]}" "${pps[$i]}" "$ic" 0 "${BIN[$s]}"
    pids+=($!); PIDS+=($!)
  done
  for i in 0 1 2; do wait_ready "${cps[$i]}"; done
  for i in 0 1 2; do
    if etcdctl --endpoints="127.0.0.1:${cps[$i]}" endpoint status -w json 2>/dev/null |
      python3 -c 'import json,sys; s=json.load(sys.stdin)[0]["Status"]; sys.exit(0 if s["header"]["member_id"]==s["leader"] else 1)'; then
      leader=${cps[$i]}
    else follower=${cps[$i]}; fi
  done
  [[ -n $leader && -n $follower ]] || die "no leader found among ${cps[*]} (${NAME[$s]})"
  etcdctl --endpoints="127.0.0.1:$leader" put rangekey "$(head -c 256 /dev/zero | tr '\0' v)" >/dev/null
  hz=$(getconf CLK_TCK)
  cluster_ticks() { local sum=0; for p in "${pids[@]}"; do sum=$((sum + $(ticks "$p"))); done; echo $sum; }
  run3() {  # run3 ROW PORT ARGS...
    local row=$1 port=$2 c0 c1; shift 2
    c0=$(cluster_ticks)
    "$GO_BENCH" --endpoints="127.0.0.1:$port" --precise "$@" >"$dir/$row.out" 2>&1
    c1=$(cluster_ticks)
    awk -v row="$row" -v t=$((c1 - c0)) -v hz="$hz" '/Requests\/sec/ {r=$2} /  99% in/ {p=$3*1000}
      END {printf "%s %.0f %.1f %.1f\n", row, r, p, t / hz / 20000 * 1e6}' "$dir/$row.out" >>"$dir/rows"
  }
  echo ">> round $round: 3 members of ${NAME[$s]}" >&2
  run3 put-leader "$leader" --conns=10 --clients=100 put --key-size=8 --val-size=256 --sequential-keys --total=20000
  run3 range-l-follower "$follower" --conns=10 --clients=100 range rangekey --consistency=l --total=20000
  for p in "${pids[@]}"; do kill "$p"; done; wait "${pids[@]}" 2>/dev/null
  rm -rf "$dir"/m0 "$dir"/m1 "$dir"/m2
}

for round in $(seq 1 "$ROUNDS"); do
  for pin in $PINS; do for t in $TOOLS; do for s in $SERVERS; do
    one_set "$round" "$s" "$t" "$pin"
  done; done; done
  if [[ $CLUSTER == 1 ]]; then for s in $SERVERS; do cluster_set "$round" "$s"; done; fi
done

# median FILES... ROW FIELD: the median of one field of one row over the rounds
median() {
  local field=$1 row=$2; shift 2
  awk -v row="$row" -v f="$field" '$1 == row {print $f}' "$@" | sort -g |
    awk '{v[NR]=$1} END {if (NR == 0) print "-"; else if (NR % 2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'
}

{
  echo "# oxcd speed referee, $(date -u '+%F %T') UTC, $(nproc) cores, load at the end $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  echo "Median of $ROUNDS rounds. Cells: req/s / p99 ms / server CPU µs per request (watch: events/s)."
  for t in $TOOLS; do for pin in $PINS; do
    echo
    echo "## Single member, ${TOOLNAME[$t]}, $([[ $pin == 1 ]] && echo "pinned (server CPU 0, tool CPU 1)" || echo unpinned)"
    echo
    header="| row |"; sep="|---|"
    for s in $SERVERS; do header+=" ${NAME[$s]} |"; sep+="---|"; done
    echo "$header"; echo "$sep"
    for row in $ROWS p50 rss; do
      line="| $row |"
      [[ $row == p50 ]] && line="| put 1x1 p50 ms |"
      [[ $row == rss ]] && line="| RSS after the set, MiB |"
      for s in $SERVERS; do
        files=("$OUT"/r*-"$s-$t-pin$pin"/rows)
        case $row in
          p50|rss) line+=" $(median 2 "$row" "${files[@]}") |" ;;
          *) line+=" $(median 2 "$row" "${files[@]}") / $(median 3 "$row" "${files[@]}") / $(median 4 "$row" "${files[@]}") |" ;;
        esac
      done
      echo "$line"
    done
  done; done
  if [[ $CLUSTER == 1 ]]; then
    echo
    echo "## 3 members on 127.0.0.1, Go tool (cells: req/s / p99 ms / CPU µs per request of all 3 members)"
    echo
    header="| row |"; sep="|---|"
    for s in $SERVERS; do header+=" ${NAME[$s]} |"; sep+="---|"; done
    echo "$header"; echo "$sep"
    for row in put-leader range-l-follower; do
      line="| $row |"
      for s in $SERVERS; do
        files=("$OUT"/r*-"$s"-cluster/rows)
        line+=" $(median 2 "$row" "${files[@]}") / $(median 3 "$row" "${files[@]}") / $(median 4 "$row" "${files[@]}") |"
      done
      echo "$line"
    done
  fi
  echo
  echo "Raw outputs: $OUT"
} | tee "$OUT/tables.md"
