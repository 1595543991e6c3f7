#!/usr/bin/env bash
# Install the Debian packages the test suite needs, only those missing.
#
#   etcd-server             real etcd 3.4.23 (/usr/bin/etcd): the reference the e2e tests compare with
#   etcd-client             real etcdctl 3.4.23 (/usr/bin/etcdctl): drives the e2e tests
#   protobuf-compiler       protoc, needed to build the etcd-client crate used by the tests
#   golang-go               go, to build etcd's own e2e test suite
#   golang-etcd-server-dev  etcd 3.4.23's Go source, with that suite (tests/e2e)
#   curl                    used by etcd's e2e tests
#   python3-etcd            python-etcd, a real v2 client (tests/tests/v2_python.rs)
#
# usage: scripts/deps.sh [PACKAGE...]     (default: all of the above)
# Needs root (or sudo) when something is missing; runs `apt-get update` once, only then.
set -euo pipefail

PACKAGES=("$@")
if [[ ${#PACKAGES[@]} -eq 0 ]]; then
  PACKAGES=(etcd-server etcd-client protobuf-compiler golang-go golang-etcd-server-dev curl python3-etcd)
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$pkg")
  fi
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

echo "installing: ${missing[*]}"
SUDO=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "need root to install: ${missing[*]}" >&2; exit 1; }
  SUDO=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -q
"${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
