//! The v2 store replicated: TTL expiry decided once for the cluster (the leader proposes
//! it), so every member removes the same keys at the same index, also across a leader
//! change; and the store survives a restart and a snapshot catch-up.

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

/// Every event under `/ttl` from `from` on, as `action key index`, read from the member's
/// history with one `waitIndex` watch per event.
fn events(member: &Member, from: u64) -> Vec<String> {
    let addr = member.endpoint();
    let last = index(&get(&addr, "/v2/keys/"));
    let mut out = Vec::new();
    let mut next = from;
    while next <= last {
        let r = get(
            &addr,
            &format!("/v2/keys/ttl?wait=true&recursive=true&waitIndex={next}"),
        );
        let v = r.json();
        let at = v["node"]["modifiedIndex"].as_u64().unwrap();
        out.push(format!(
            "{} {} {at}",
            v["action"].as_str().unwrap(),
            v["node"]["key"].as_str().unwrap()
        ));
        next = at + 1;
        if at >= last {
            break;
        }
    }
    out
}

fn all_gone(member: &Member, keys: &[String]) -> bool {
    keys.iter()
        .all(|k| get(&member.endpoint(), &format!("/v2/keys{k}")).status == 404)
}

#[test]
fn ttl_expiry_is_the_same_on_every_member_across_a_leader_change() {
    oxcd_only!();
    let _lock = cluster_lock();
    let mut cluster = Cluster::start_with(3, |b| b.arg("--enable-v2"));
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
    let expected = events(cluster.member(0), start);
    assert_eq!(
        expected.iter().filter(|e| e.starts_with("expire ")).count(),
        6,
        "{expected:?}"
    );
    for m in cluster.members() {
        assert_eq!(events(m, start), expected, "events on {}", m.name());
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
    let expected = events(cluster.member(alive[0]), start);
    assert_eq!(
        expected.iter().filter(|e| e.starts_with("expire ")).count(),
        2,
        "{expected:?}"
    );
    assert_eq!(events(cluster.member(alive[1]), start), expected);
    cluster.member_mut(leader).restart();
    let back = cluster.member(leader);
    wait_until("the old leader catches up", Duration::from_secs(20), || {
        (all_gone(back, &later)).then_some(())
    });
    assert_eq!(events(back, start), expected);
}

#[test]
fn restart_and_snapshot_catch_up_keep_the_v2_store() {
    oxcd_only!();
    let _lock = cluster_lock();
    let mut cluster = Cluster::start_with(3, |b| {
        b.args([
            "--enable-v2",
            "--snapshot-count=20",
            "--experimental-snapshot-catchup-entries=5",
        ])
    });
    let addr = cluster.member(0).endpoint();
    put(&addr, "/before", "value=1");
    cluster.member_mut(2).stop();
    for i in 0..100 {
        put(&addr, &format!("/dir/k{i}"), &format!("value={i}"));
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
    let deadline = Instant::now() + Duration::from_secs(5);
    let same = |r: &Response| {
        r.text().split("\"ttl\":").next() == want.text().split("\"ttl\":").next()
            && index(r) == index(&want)
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
    assert_eq!(index(&after), index(&want));
    assert_eq!(
        after.text().split("\"ttl\":").next(),
        want.text().split("\"ttl\":").next()
    );
    let from_history = get(
        &addr,
        &format!("/v2/keys/dir/k5?wait=true&waitIndex={}", index(&want) - 20),
    );
    assert_eq!(from_history.status, 200, "{}", from_history.text());
}
