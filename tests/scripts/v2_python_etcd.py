"""Drives a v2 server through the python-etcd library (Debian python3-etcd).

usage: python3 v2_python_etcd.py PORT
Prints one line per step; exits non-zero at the first step that fails.
"""
import sys
import threading
import time

import etcd

port = int(sys.argv[1])
c = etcd.Client(host="127.0.0.1", port=port)


def step(name):
    print(name, flush=True)


step("write/read/delete")
c.write("/py/k", "v1")
assert c.read("/py/k").value == "v1"
r = c.write("/py/k", "v2")
assert r.value == "v2" and r._prev_node.value == "v1"
c.delete("/py/k")
try:
    c.read("/py/k")
    raise AssertionError("deleted key still there")
except etcd.EtcdKeyNotFound:
    pass

step("directories")
c.write("/py/dir", None, dir=True)
c.write("/py/dir/a", "1")
c.write("/py/dir/b/c", "2")
r = c.read("/py/dir", recursive=True, sorted=True)
assert sorted(x.key for x in r.leaves) == ["/py/dir/a", "/py/dir/b/c"], [x.key for x in r.leaves]
try:
    c.delete("/py/dir")
    raise AssertionError("deleted a directory without dir=True")
except etcd.EtcdNotFile:
    pass
try:
    c.delete("/py/dir", dir=True)
    raise AssertionError("deleted a non-empty directory without recursive")
except etcd.EtcdDirNotEmpty:
    pass
c.delete("/py/dir", recursive=True)

step("in-order keys")
a = c.write("/py/queue", "job1", append=True)
b = c.write("/py/queue", "job2", append=True)
assert a.key < b.key and len(a.key.split("/")[-1]) == 20
assert [x.value for x in c.read("/py/queue", sorted=True).leaves] == ["job1", "job2"]

step("ttl")
r = c.write("/py/ttl", "v", ttl=1)
assert r.ttl == 1
deadline = time.time() + 10
while time.time() < deadline:
    try:
        c.read("/py/ttl")
        time.sleep(0.2)
    except etcd.EtcdKeyNotFound:
        break
else:
    raise AssertionError("the key did not expire")

step("test_and_set")
c.write("/py/cas", "old")
c.test_and_set("/py/cas", "new", "old")
assert c.read("/py/cas").value == "new"
try:
    c.test_and_set("/py/cas", "x", "old")
    raise AssertionError("compare-and-swap on a wrong value succeeded")
except etcd.EtcdCompareFailed:
    pass
try:
    c.write("/py/cas", "x", prevExist=False)
    raise AssertionError("create of an existing key succeeded")
except etcd.EtcdAlreadyExist:
    pass

step("watch")
start = c.read("/py/cas").etcd_index
seen = []


def watcher():
    seen.append(c.watch("/py/w", timeout=10))


t = threading.Thread(target=watcher)
t.start()
time.sleep(0.5)
c.write("/py/w", "hello")
t.join(15)
assert seen and seen[0].value == "hello", seen
r = c.watch("/py/cas", index=start - 1, timeout=5)
assert r.value in ("old", "new"), r.value

step("lock")
lock = etcd.Lock(c, "pylock")
lock.acquire(blocking=True, lock_ttl=20)
assert lock.is_acquired
other = etcd.Lock(c, "pylock")
assert not other.acquire(blocking=False, lock_ttl=20)
lock.release()
assert other.acquire(blocking=True, lock_ttl=20, timeout=5)
other.release()

step("ok")
