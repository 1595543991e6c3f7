#!/usr/bin/env bash
# Run etcd 3.4.23's e2e suite against a server binary one test at a time, each with its own
# time limit, so that a test that hangs or leaks ETCDCTL_API=2 cannot spoil the others. This
# is how the whole suite is counted (the note of each session gives the count).
#
# usage: scripts/etcd-e2e-each.sh SERVER_BIN [TEST_REGEX]     (default: every test)
# env:   ETCDCTL_BIN  the etcdctl the suite drives (default /usr/bin/etcdctl)
#        PER_TEST_S   seconds allowed to each test (default 150)
# Prints one line per test (PASS, FAIL with the first assertion line, SKIP, TIMEOUT) and a
# count. The suite uses fixed ports; where it can (root and iproute2), the run takes a network
# namespace of its own, so that two runs may go at once.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SERVER_BIN="$(readlink -f "${1:?usage: etcd-e2e-each.sh SERVER_BIN [TEST_REGEX]}")"
SELECT="${2:-.}"
PER_TEST_S="${PER_TEST_S:-150}"

# One run of etcd-e2e.sh builds the suite if needed and checks the tools.
"$ROOT/scripts/etcd-e2e.sh" "$SERVER_BIN" '^TestCtlV3PutNoTLS$' >/dev/null || true
if [[ -z "${OXCD_E2E_NETNS:-}" ]] && command -v ip >/dev/null && unshare -n true 2>/dev/null; then
  exec unshare -n env OXCD_E2E_NETNS=1 bash -c 'ip link set lo up && exec "$0" "$@"' "$0" "$@"
fi
SRC=/usr/share/gocode/src/go.etcd.io/etcd
# The suite is etcd 3.4.23's and checks that version's text (/health, version metrics): oxcd
# presents itself as etcd 3.4 to it. Real etcd warns about the variable and goes on.
export ETCD_EXPERIMENTAL_EMULATE_ETCD_VERSION="${ETCD_EXPERIMENTAL_EMULATE_ETCD_VERSION:-3.4}"
SUITE="${E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/oxcd/etcd-e2e}/e2e.test"

RUN="$(mktemp -d "${TMPDIR:-/tmp}/oxcd-etcd-e2e-each.XXXXXX")"
mkdir -p "$RUN/bin" "$RUN/tests/e2e" "$RUN/integration"
ln -s "$SERVER_BIN" "$RUN/bin/etcd"
ln -s "$(readlink -f "${ETCDCTL_BIN:-/usr/bin/etcdctl}")" "$RUN/bin/etcdctl"
ln -s "$SRC/integration/fixtures" "$RUN/integration/fixtures"
ln -s "$ROOT/oxcd.conf.yml.sample" "$RUN/etcd.conf.yml.sample"

mapfile -t TESTS < <(cd "$RUN" && "$SUITE" -test.list "$SELECT" | grep '^Test')
passed=0 failed=0 skipped=0 timed_out=0
for t in "${TESTS[@]}"; do
  out="$(cd "$RUN/tests/e2e" && timeout -k 5 "$PER_TEST_S" "$SUITE" -bin-dir="$RUN/bin" \
    -cert-dir="$RUN/integration/fixtures" -test.run "^$t\$" -test.v 2>&1)"
  rc=$?
  if [[ $rc -eq 124 || $rc -eq 137 ]]; then
    echo "TIMEOUT $t"; timed_out=$((timed_out + 1)); failed=$((failed + 1))
  elif grep -q "^--- PASS: $t " <<<"$out"; then
    echo "PASS $t"; passed=$((passed + 1))
  elif grep -q "^--- SKIP: $t " <<<"$out"; then
    echo "SKIP $t"; skipped=$((skipped + 1))
  else
    echo "FAIL $t: $(grep -m1 -E '_test.go:[0-9]+:' <<<"$out" | sed 's/^ *//' | cut -c1-240)"
    failed=$((failed + 1))
  fi
  # A killed test leaves its servers holding the suite's ports: end those of this binary.
  for pid in $(pgrep -f "^$RUN/bin/etcd " || true); do kill -9 "$pid" 2>/dev/null || true; done
done
rm -rf "$RUN"
echo "etcd e2e, each test alone: $passed passed, $failed failed ($timed_out timed out), $skipped skipped, of ${#TESTS[@]}"
