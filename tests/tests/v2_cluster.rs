//! The v2 store replicated: TTL expiry decided once for the cluster (the leader proposes
//! it), so every member removes the same keys at the same index, also across a leader
//! change; the store survives a restart and a snapshot catch-up; and the raft statistics of
//! `/v2/stats` move with writes.

mod http_support;

use std::time::{Duration, Instant};

use http_support::{request, Response};
use oxcd_e2e::fault_run::cluster_lock;
use oxcd_e2e::{oxcd_only, wait_until, Cluster, Member};

fn put(addr: &str, key: &str, body: &str) -> Response {
    let r = request(
        addr,
        "PUT",
        &format!("/v2/keys{key}"),
        &[("Content-Type", "application/x-www-form-urlencoded")],
        body.as_bytes(),
    );
    assert!(
        r.status < 300,
        "PUT {key} {body}: {} {}",
        r.status,
        r.text()
    );
    r
}

fn get(addr: &str, path: &str) -> Response {
    request(addr, "GET", path, &[], b"")
}

fn index(r: &Response) -> u64 {
    r.header("x-etcd-index").unwrap().parse().unwrap()
}

/// Every event under `/ttl` from `from` up to the write of `end` (a key under `/ttl`), as
/// `action key index`, read from the member's history with one `waitIndex` watch per event.
fn events(member: &Member, from: u64, end: &str) -> Vec<String> {
    let addr = member.endpoint();
    wait_until(
        "the end marker reaches the member",
        Duration::from_secs(20),
        || (get(&addr, &format!("/v2/keys{end}")).status == 200).then_some(()),
    );
    let mut out = Vec::new();
    let mut next = from;
    loop {
        let r = get(
            &addr,
            &format!("/v2/keys/ttl?wait=true&recursive=true&waitIndex={next}"),
        );
        let v = r.json();
        let at = v["node"]["modifiedIndex"].as_u64().unwrap();
        let key = v["node"]["key"].as_str().unwrap().to_owned();
        out.push(format!("{} {key} {at}", v["action"].as_str().unwrap()));
        if key == end {
            return out;
        }
        next = at + 1;
    }
}

fn all_gone(member: &Member, keys: &[String]) -> bool {
    keys.iter()
        .all(|k| get(&member.endpoint(), &format!("/v2/keys{k}")).status == 404)
}

/// The raft statistics move with writes: the leader's appends sent and each follower's
/// successes and latencies (`/v2/stats/leader`), a follower's appends received, and the
/// rates while traffic flows (`/v2/stats/self`), as etcd 3.4 counts them.
fn check_raft_stats_move(cluster: &Cluster) {
    let leader = cluster.leader().expect("a leader");
    let lead = cluster.member(leader).endpoint();
    let follower = cluster.member((leader + 1) % 3).endpoint();
    let counts = || {
        let stats = get(&lead, "/v2/stats/leader").json();
        let followers: Vec<serde_json::Value> = stats["followers"]
            .as_object()
            .expect("followers")
            .values()
            .cloned()
            .collect();
        let sent = get(&lead, "/v2/stats/self").json()["sendAppendRequestCnt"]
            .as_u64()
            .unwrap();
        let received = get(&follower, "/v2/stats/self").json()["recvAppendRequestCnt"]
            .as_u64()
            .unwrap();
        (followers, sent, received)
    };
    let (before, sent_before, received_before) = counts();
    const WRITES: u64 = 20;
    for i in 0..WRITES {
        put(&lead, &format!("/stats/k{i}"), "value=v");
    }
    let lead_self = get(&lead, "/v2/stats/self").json();
    let follower_self = get(&follower, "/v2/stats/self").json();
    let (after, sent, received) = counts();
    assert!(sent >= sent_before + WRITES, "{sent_before} -> {sent}");
    assert!(
        received >= received_before + WRITES,
        "{received_before} -> {received}"
    );
    assert!(
        lead_self["sendPkgRate"].as_f64().unwrap_or(0.0) > 0.0,
        "{lead_self}"
    );
    assert!(
        lead_self["sendBandwidthRate"].as_f64().unwrap_or(0.0) > 0.0,
        "{lead_self}"
    );
    assert!(
        follower_self["recvPkgRate"].as_f64().unwrap_or(0.0) > 0.0,
        "{follower_self}"
    );
    assert_eq!(after.len(), 2, "{after:?}");
    for (b, a) in before.iter().zip(&after) {
        let success = |f: &serde_json::Value| f["counts"]["success"].as_u64().unwrap();
        assert!(success(a) >= success(b) + WRITES, "{b} -> {a}");
        let latency = &a["latency"];
        let (min, max) = (
            latency["minimum"].as_f64().unwrap(),
            latency["maximum"].as_f64().unwrap(),
        );
        assert!(
            min <= latency["average"].as_f64().unwrap() && min <= max,
            "{a}"
        );
        assert!(latency["current"].as_f64().unwrap() > 0.0, "{a}");
    }
}

#[test]
fn ttl_expiry_is_the_same_on_every_member_across_a_leader_change() {
    oxcd_only!();
    let _lock = cluster_lock();
    let mut cluster = Cluster::start_with(3, |b| b.arg("--enable-v2"));
    check_raft_stats_move(&cluster);
    let first = cluster.member(0).endpoint();
    let start = index(&put(&first, "/ttl/dir", "dir=true&ttl=1"));
    put(&first, "/ttl/dir/child", "value=c");
    let mut keys = vec!["/ttl/dir".to_owned()];
    for i in 0..5 {
        let key = format!("/ttl/k{i}");
        put(&first, &key, "value=v&ttl=1");
        keys.push(key);
    }
    put(&first, "/ttl/keep", "value=v");
    for m in cluster.members() {
        wait_until(
            "keys expire on every member",
            Duration::from_secs(15),
            || (all_gone(m, &keys)).then_some(()),
        );
    }
    put(&first, "/ttl/end1", "value=e");
    let expected = events(cluster.member(0), start, "/ttl/end1");
    assert_eq!(
        expected.iter().filter(|e| e.starts_with("expire ")).count(),
        6,
        "{expected:?}"
    );
    for m in cluster.members() {
        assert_eq!(
            events(m, start, "/ttl/end1"),
            expected,
            "events on {}",
            m.name()
        );
    }

    // Keys set just before the leader dies expire once, by the next leader's clock.
    let leader = cluster.leader().expect("a leader");
    let other = cluster.member((leader + 1) % 3).endpoint();
    let start = index(&put(&other, "/ttl/later0", "value=v&ttl=2"));
    put(&other, "/ttl/later1", "value=v&ttl=2");
    cluster.member_mut(leader).kill();
    let later = vec!["/ttl/later0".to_owned(), "/ttl/later1".to_owned()];
    let alive: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    for &i in &alive {
        wait_until(
            "keys expire after the leader change",
            Duration::from_secs(20),
            || (all_gone(cluster.member(i), &later)).then_some(()),
        );
    }
    put(&cluster.member(alive[0]).endpoint(), "/ttl/end2", "value=e");
    let expected = events(cluster.member(alive[0]), start, "/ttl/end2");
    assert_eq!(
        expected.iter().filter(|e| e.starts_with("expire ")).count(),
        2,
        "{expected:?}"
    );
    assert_eq!(
        events(cluster.member(alive[1]), start, "/ttl/end2"),
        expected
    );
    cluster.member_mut(leader).restart();
    let back = cluster.member(leader);
    wait_until("the old leader catches up", Duration::from_secs(20), || {
        (all_gone(back, &later)).then_some(())
    });
    assert_eq!(events(back, start, "/ttl/end2"), expected);
}

#[test]
fn restart_and_snapshot_catch_up_keep_the_v2_store() {
    oxcd_only!();
    let _lock = cluster_lock();
    let mut cluster = Cluster::start_with(3, |b| b.args(["--enable-v2", "--snapshot-count=1000"]));
    let addr = cluster.member(0).endpoint();
    put(&addr, "/before", "value=1");
    cluster.member_mut(2).stop();
    // The stopped member may have led: writes resume once a new leader is elected.
    wait_until("writes resume", Duration::from_secs(20), || {
        let r = request(
            &addr,
            "PUT",
            "/v2/keys/resumed",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            b"value=1",
        );
        (r.status < 300).then_some(())
    });
    // More entries than a leader keeps for slow followers after a snapshot (5000) plus the
    // snapshot interval, so the stopped member can only catch up from a snapshot.
    for i in 0..7000 {
        put(&addr, &format!("/dir/k{}", i % 100), &format!("value={i}"));
    }
    put(&addr, "/ttl/long", "value=v&ttl=3600");
    let want = get(&addr, "/v2/keys/?recursive=true&sorted=true");
    cluster.member_mut(2).restart();
    let lagging = cluster.member(2).endpoint();
    wait_until(
        "the stopped member catches up",
        Duration::from_secs(30),
        || (get(&lagging, "/v2/keys/ttl/long").status == 200).then_some(()),
    );
    // Each restart publishes the member's attributes: one more v2 event, under /0.
    let deadline = Instant::now() + Duration::from_secs(5);
    let same = |r: &Response| {
        r.text().split("\"ttl\":").next() == want.text().split("\"ttl\":").next()
            && index(r) >= index(&want)
    };
    while !same(&get(&lagging, "/v2/keys/?recursive=true&sorted=true")) && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(same(&get(&lagging, "/v2/keys/?recursive=true&sorted=true")));
    assert!(
        cluster
            .member(2)
            .log_since_start()
            .contains("restoring mvcc store from a snapshot"),
        "the member caught up from the log, not from a snapshot"
    );
    // A whole-cluster restart keeps the store, its index and its history.
    for i in 0..3 {
        cluster.member_mut(i).restart();
    }
    let addr = cluster.member(1).endpoint();
    wait_until("the cluster serves again", Duration::from_secs(20), || {
        (get(&addr, "/v2/keys/before").status == 200).then_some(())
    });
    let after = get(&addr, "/v2/keys/?recursive=true&sorted=true");
    assert!(index(&after) >= index(&want));
    assert_eq!(
        after.text().split("\"ttl\":").next(),
        want.text().split("\"ttl\":").next()
    );
    let from_history = get(
        &addr,
        &format!(
            "/v2/keys/dir?wait=true&recursive=true&waitIndex={}",
            index(&want) - 20
        ),
    );
    assert_eq!(
        from_history.json()["node"]["key"],
        "/dir/k80",
        "{}",
        from_history.text()
    );
}

fn ctl2(cluster: &Cluster, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(oxcd_e2e::etcdctl_bin())
        .env("ETCDCTL_API", "2")
        .arg(format!("--endpoints={}", cluster.member(0).client_url()))
        .args(args)
        .output()
        .expect("run etcdctl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn etcdctl_v2_member_add_update_remove() {
    let _lock = cluster_lock();
    let cluster = Cluster::start_with(3, |b| b.arg("--enable-v2"));
    // As etcd's strict reconfiguration check, a member is added only once every voter has been
    // connected for a while; until then the v2 API answers 500 and etcdctl says "has no leader".
    let deadline = Instant::now() + Duration::from_secs(30);
    let (ok, out) = loop {
        let (ok, out) = ctl2(&cluster, &["member", "add", "extra", "http://127.0.0.1:1"]);
        if ok || !out.contains("has no leader") || Instant::now() > deadline {
            break (ok, out);
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(ok && out.contains("Added member named extra"), "{out}");
    let (ok, list) = ctl2(&cluster, &["member", "list"]);
    assert!(ok && list.lines().count() == 4, "{list}");
    let id = list
        .lines()
        .find(|l| {
            l.contains("peerURLs=http://127.0.0.1:1 ") || l.ends_with("peerURLs=http://127.0.0.1:1")
        })
        .and_then(|l| l.split(['[', ':']).next())
        .expect("the added member is listed")
        .to_owned();
    let (ok, out) = ctl2(&cluster, &["member", "update", &id, "http://127.0.0.1:2"]);
    assert!(ok && out.contains("Updated member"), "{out}");
    let (ok, out) = ctl2(&cluster, &["member", "remove", &id]);
    assert!(ok && out.contains("Removed member"), "{out}");
    let (ok, out) = ctl2(&cluster, &["member", "remove", &id]);
    assert!(!ok && out.contains("Couldn't find a member"), "{out}");
    let (ok, out) = ctl2(&cluster, &["cluster-health"]);
    assert!(ok && out.contains("cluster is healthy"), "{out}");
}

/// A one-member cluster that adds a second member loses its quorum until that member starts;
/// `member list` still answers at once from the local member table, as etcd's does.
#[test]
fn member_list_answers_while_an_added_member_has_not_started() {
    let _lock = cluster_lock();
    let cluster = Cluster::start_with(1, |b| b.arg("--enable-v2"));
    let (ok, out) = ctl2(&cluster, &["member", "add", "extra", "http://127.0.0.1:1"]);
    assert!(ok && out.contains("Added member named extra"), "{out}");
    // etcdctl gives up on a request after 2 s (its --timeout): an answer at all is the check.
    let (ok, list) = ctl2(&cluster, &["member", "list"]);
    assert!(ok && list.lines().count() == 2, "{list}");
}
