#!/usr/bin/env bash
# Run etcd 3.4.23's own end-to-end suite (tests/e2e, from Debian's golang-etcd-server-dev)
# against a server binary, driven by the real etcdctl.
#
# usage: scripts/etcd-e2e.sh [SERVER_BIN] [LIST|TEST_REGEX]
#   SERVER_BIN  default target/release/oxcd. The suite execs it as "etcd" with etcd's flags and
#               waits for log lines containing "enabled capabilities for version" or "published".
#   LIST        a named list below (issue2, issue5, ...), "all" for every list, or "oxcdctl"
#               for the lists in OXCDCTL_LISTS;
#   TEST_REGEX  or any Go -test.run regexp. Default: the lists in CI_LISTS.
# env: ETCDCTL_BIN  the etcdctl the suite drives (default /usr/bin/etcdctl; oxcdctl to check it)
#      E2E_TIMEOUT  seconds for the whole run (default 1500)
#      E2E_CACHE    where the compiled suite is kept (default ~/.cache/oxcd/etcd-e2e)
# The suite uses ports localhost:20000-20100 (in a network namespace of its own where it can).
# Exit status: 0 only if every selected test passed
# and at least one test ran.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# The etcd e2e tests each issue requires to pass, one Go regexp per issue.
declare -A LISTS=(
  # single-member KV
  [issue2]='^TestCtlV3(Put|PutNoTLS|PutTimeout|PutIgnoreValue|Get|GetNoTLS|GetTimeout|GetFormat|GetRev|GetKeysOnly|Del|DelNoTLS|DelTimeout|TxnInteractiveSuccess|TxnInteractiveSuccessNoTLS|TxnInteractiveFail|Compact|CompactPhysical|EndpointStatus|EndpointHealth|EndpointHashKV|MemberList|MemberListNoTLS)$'
  # watch
  [issue3]='^TestCtlV3(Watch|WatchNoTLS|WatchTimeout|WatchInteractive|WatchInteractiveNoTLS)$'
  # leases, lock, election
  [issue4]='^TestCtlV3(LeaseGrantTimeToLive|LeaseGrantTimeToLiveNoTLS|LeaseGrantLeases|LeaseGrantLeasesNoTLS|LeaseTestTimeToLiveExpired|LeaseTestTimeToLiveExpiredNoTLS|LeaseKeepAlive|LeaseKeepAliveNoTLS|LeaseKeepAliveOnce|LeaseKeepAliveOnceNoTLS|LeaseRevoke|LeaseRevokeNoTLS|PutIgnoreLease|Lock|Elect)$'
  # clusters: membership, quorum reads, peer TLS
  [issue5]='^TestCtlV3(MemberAdd|MemberAddNoTLS|MemberAddForLearner|MemberAddPeerTLS|MemberListPeerTLS|MemberRemove|MemberRemoveNoTLS|MemberRemovePeerTLS|MemberUpdate|MemberUpdateNoTLS|MemberUpdatePeerTLS|GetQuorum|PutPeerTLS|GetPeerTLS|DelPeerTLS|WatchPeerTLS|LeaseRevokePeerTLS)$|^TestEtcdMultiPeer$'
  # big stores: defragment (now without stopping writes)
  [issue14]='^TestCtlV3Defrag$'
)
# auth (issue 10): every TestCtlV3Auth*, TestCtlV3User*, TestCtlV3Role*, TestV3CurlAuth*.
# TestCtlV3AuthFromKeyPerm runs 66 etcdctl commands within the suite's 15 s, each logging in
# with one bcrypt at cost 10: ~3.8 s of server CPU in all, on oxcd as on etcd 3.4. It passes
# wherever the server gets a fair share of a core; on a 2-core machine shared with ~15 runnable
# tasks it nears the limit, with oxcd and real etcd alike.
LISTS[issue10]='^TestCtlV3(AuthFromKeyPerm|AuthCertCN|AuthSnapshot|AuthSnapshotJWT|AuthCertCNWithWithConcurrentOperation|AuthTxnJWT|AuthAndWatchJWT|AuthLeaseGrantLeasesJWT|AuthJWTExpire|AuthCertCNAndUsername|AuthCertCNAndUsernameNoPassword|AuthEnable|AuthDisable|AuthWriteKey|AuthRoleUpdate|AuthUserDeleteDuringOps|AuthRoleRevokeDuringOps|AuthTxn|AuthPrefixPerm|AuthMemberAdd|AuthMemberRemove|AuthMemberUpdate|AuthRevokeWithDelete|AuthInvalidMgmt|AuthAndWatch|AuthLeaseTestKeepAlive|AuthLeaseTestTimeToLiveExpired|AuthLeaseGrantLeases|AuthLeaseRevoke|AuthRoleGet|AuthUserGet|AuthRoleList|AuthDefrag|AuthEndpointHealth|AuthTestCacheReload|RoleAdd|RoleAddNoTLS|RoleAddClientTLS|RoleAddPeerTLS|RoleAddTimeout|RoleGrant|UserAdd|UserAddNoTLS|UserAddClientTLS|UserAddPeerTLS|UserAddTimeout|UserAddClientAutoTLS|UserList|UserListNoTLS|UserListClientTLS|UserListPeerTLS|UserListClientAutoTLS|UserDelete|UserDeleteNoTLS|UserDeleteClientTLS|UserDeletePeerTLS|UserDeleteClientAutoTLS|UserPasswd|UserPasswdNoTLS|UserPasswdClientTLS|UserPasswdPeerTLS|UserPasswdClientAutoTLS)$|^TestV3CurlAuth(ClientTLSCertAuth)?$'
# clients dialing endpoints one by one (the whole URL as :authority), TLS and transport
# flags, the backend quota, the example config file, L4 gateway, gRPC proxy, /metrics. TestCtlV3Alarm,
# TestV3CurlCipherSuitesValid and TestV3Metrics* check etcd 3.4's /health body and version: oxcd presents
# itself as 3.4 to this suite (ETCD_EXPERIMENTAL_EMULATE_ETCD_VERSION below).
LISTS[issue9]='^TestCtlV3(Defrag|EndpointHashKV|MoveLeaderScenarios|GetRevokedCRL)$|^TestEtcd(PeerCNAuth|PeerNameAuth|UnixPeers|ExampleConfig)$|^TestCtlV3Alarm$|^TestV3Metrics(Secure|Insecure)$|^TestGateway$|^TestV3CurlCipherSuites(Valid|Mismatch)$|^TestV3Curl_MaxStreams_(BelowLimit|ReachLimit)_(NoTLS|TLS)_(Small|Medium)$|^TestGrpcproxyAnd(CommonName|ListenCipherSuite)$'
# issue 11, the v2 API: every TestCtlV2* but the four TestCtlV2Backup* (etcdctl backup reads
# etcd's own data dir; out of scope), and every TestV2Curl* but two that need what oxcd's
# listeners lack: TestV2CurlClientBoth (http and https on one port) and
# TestCtlV2AuthWithCommonName (v2 users named by a client certificate's common name).
LISTS[issue11]='^TestCtlV2(Set|SetQuorum|SetClientTLS|SetPeerTLS|SetTLS|Mk|MkQuorum|MkTLS|Rm|RmTLS|Ls|LsQuorum|LsTLS|Watch|WatchTLS|GetRoleUser|UserListUsername|UserListRoot|RoleList|ClusterHealth|AuthWithCommonName)$|^TestV2Curl(NoTLS|AutoTLS|AllTLS|PeerTLS|ClientTLS|ClientBoth|Issue5182)$'
# etcd-format snapshots: save, status, restore by etcdctl, and a server started on what
# `etcdctl snapshot restore` wrote (TestIssue6361).
LISTS[issue15]='^TestCtlV3(Snapshot|SnapshotCorrupt|SnapshotStatusBeforeRestore|AuthSnapshot)$|^TestIssue6361$'
# oxcdctl's make-mirror (issue 13), through the real etcdctl and through oxcdctl.
LISTS[issue13]='^TestCtlV3MakeMirror(|ModifyDestPrefix|NoDestPrefix)$'
# `etcdctl migrate` (issue 13) through oxcdctl: the suite writes its v2 keys without turning
# the v2 API on (it fails so on etcd 3.4.23 too), so it runs with ETCD_ENABLE_V2 (LIST_ENV).
# Real etcdctl cannot take part: its migrate opens the backend with bbolt, and oxcd's is redb.
LISTS[migrate]='^TestCtlV3Migrate$'
declare -A LIST_ENV=([migrate]='ETCD_ENABLE_V2=true')
# The lists CI runs (scripts/test.sh): add an issue's name once oxcd passes its list.
CI_LISTS=(issue2 issue3 issue4 issue5 issue9 issue10 issue13 issue14 issue15)
# Lists CI runs each in a suite process of its own: TestCtlV2* set ETCDCTL_API=2 in the
# suite's environment, which must never reach a v3 test.
CI_APART_LISTS=(issue11)
# The lists CI runs a second time with oxcdctl as the suite's etcdctl (selected by "oxcdctl"):
# the ones oxcdctl covers every command of.
OXCDCTL_LISTS=(issue2 issue3 issue4 issue5 issue13 issue14 issue15)
# ... and those of them to run apart (the v2 ones, as above).
OXCDCTL_APART_LISTS=(issue11 migrate)

join_lists() {
  local out="" name
  for name in "$@"; do
    [[ -n "${LISTS[$name]:-}" ]] || { echo "no list named $name (have: ${!LISTS[*]})" >&2; exit 2; }
    out="${out:+$out|}${LISTS[$name]}"
  done
  printf '%s' "$out"
}

SERVER_BIN="${1:-$ROOT/target/release/oxcd}"
SELECT="${2:-}"
if [[ -z "$SELECT" ]]; then
  REGEX="$(join_lists "${CI_LISTS[@]}")"
elif [[ "$SELECT" == oxcdctl ]]; then
  REGEX="$(join_lists "${OXCDCTL_LISTS[@]}")"
elif [[ "$SELECT" == all ]]; then
  mapfile -t ALL < <(printf '%s\n' "${!LISTS[@]}" | sort)
  REGEX="$(join_lists "${ALL[@]}")"
elif [[ -n "${LISTS[$SELECT]:-}" ]]; then
  REGEX="${LISTS[$SELECT]}"
else
  REGEX="$SELECT"
fi
[[ -x "$SERVER_BIN" ]] || { echo "not an executable: $SERVER_BIN (cargo build --release -p oxcd-server)" >&2; exit 2; }
SERVER_BIN="$(readlink -f "$SERVER_BIN")"

"$ROOT/scripts/deps.sh" golang-go golang-etcd-server-dev etcd-client curl

SRC=/usr/share/gocode/src/go.etcd.io/etcd
# The suite is etcd 3.4.23's and checks that version's text (/health, version metrics): oxcd
# presents itself as etcd 3.4 to it. Real etcd warns about the variable and goes on.
export ETCD_EXPERIMENTAL_EMULATE_ETCD_VERSION="${ETCD_EXPERIMENTAL_EMULATE_ETCD_VERSION:-3.4}"
CACHE="${E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/oxcd/etcd-e2e}"
SUITE="$CACHE/e2e.test"
mkdir -p "$CACHE"

# Build the suite offline, in GOPATH mode, against Debian's Go sources (about a minute once).
if [[ ! -x "$SUITE" || "$SUITE" -ot "$SRC/tests/e2e/main_test.go" ]]; then
  echo "building etcd's e2e suite into $SUITE"
  GO111MODULE=off GOFLAGS= GOPROXY=off GOPATH=/usr/share/gocode GOCACHE="$CACHE/gocache" \
    go test -c -o "$SUITE.tmp" go.etcd.io/etcd/tests/e2e
  mv "$SUITE.tmp" "$SUITE"
fi

# The suite's servers listen on fixed ports (20000-20100, and 2379/2380 for
# TestEtcdExampleConfig): run it in a network namespace of its own when this machine allows
# it (root and iproute2), so that it never meets another server on this machine.
if [[ -z "${OXCD_E2E_NETNS:-}" ]] && command -v ip >/dev/null && unshare -n true 2>/dev/null; then
  exec unshare -n env OXCD_E2E_NETNS=1 bash -c 'ip link set lo up && exec "$0" "$@"' "$0" "$@"
fi

# Runs the suite once on the tests matching $1; prints the counts; returns its status.
run_suite() {
local REGEX="$1" RUN LOG rc passed failed skipped
# The suite looks for bin/etcd and bin/etcdctl, and for TLS fixtures relative to its cwd.
RUN="$(mktemp -d "${TMPDIR:-/tmp}/oxcd-etcd-e2e.XXXXXX")"
mkdir -p "$RUN/bin" "$RUN/tests/e2e" "$RUN/integration"
ln -s "$SERVER_BIN" "$RUN/bin/etcd"
CTL_BIN="$(readlink -f "${ETCDCTL_BIN:-/usr/bin/etcdctl}")"
[[ -x "$CTL_BIN" ]] || { echo "not an executable: $CTL_BIN" >&2; exit 2; }
ln -s "$CTL_BIN" "$RUN/bin/etcdctl"
ln -s "$SRC/integration/fixtures" "$RUN/integration/fixtures"
# TestEtcdExampleConfig starts the server with the example config file of etcd's tree.
ln -s "$ROOT/oxcd.conf.yml.sample" "$RUN/etcd.conf.yml.sample"
LOG="$RUN/e2e.log"

echo "etcd e2e: server $SERVER_BIN"
echo "          ctl    $CTL_BIN"
echo "          tests  $REGEX"
echo "          log    $LOG"
set +e
(cd "$RUN/tests/e2e" && timeout "${E2E_TIMEOUT:-1500}" "$SUITE" \
  -bin-dir="$RUN/bin" -cert-dir="$RUN/integration/fixtures" \
  -test.run "$REGEX" -test.v -test.timeout "$(( ${E2E_TIMEOUT:-1500} - 30 ))s") >"$LOG" 2>&1
rc=$?
set -e

passed=$(grep -c '^--- PASS' "$LOG" || true)
failed=$(grep -c '^--- FAIL' "$LOG" || true)
skipped=$(grep -c '^--- SKIP' "$LOG" || true)
grep '^--- FAIL' "$LOG" | sed 's/^/  /' || true
if [[ $rc -ne 0 && $failed -eq 0 ]]; then
  echo "suite ended with status $rc before reporting; last lines of $LOG:"
  tail -n 30 "$LOG"
fi
echo "etcd e2e: $passed passed, $failed failed, $skipped skipped"
if [[ $rc -eq 0 && $passed -eq 0 ]]; then
  echo "no test matched $REGEX" >&2
  return 1
fi
return $rc
}

# Exports the environment a list needs (LIST_ENV), if any.
with_list_env() {
  # shellcheck disable=SC2086 # LIST_ENV holds NAME=value words
  if [[ -n "$1" && -n "${LIST_ENV[$1]:-}" ]]; then export ${LIST_ENV[$1]}; fi
}

status=0
with_list_env "$SELECT"
run_suite "$REGEX" || status=$?
APART=()
if [[ -z "$SELECT" ]]; then
  APART=("${CI_APART_LISTS[@]}")
elif [[ "$SELECT" == oxcdctl ]]; then
  APART=("${OXCDCTL_APART_LISTS[@]}")
fi
for name in "${APART[@]}"; do
  (with_list_env "$name" && run_suite "${LISTS[$name]}") || status=$?
done
exit $status
