//! `/metrics` against real etcd 3.4.23 (issue 9): the same operations through the real
//! etcdctl on one etcd member and one oxcd member, then both scrapes compared family by family
//! (name, type, label names), and the counters that count those operations compared by how
//! far they moved, with each other and with what the operations must add.

mod http_support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use http_support::{get, request};
use oxcd_e2e::fault_run::cluster_lock;
use oxcd_e2e::{etcdctl_bin, oxcd_only, real_etcd_bin, wait_until, Cluster, Member};

/// Families of etcd 3.4 that oxcd leaves out, each for a reason (see `http/families.rs`).
const NOT_EXPORTED: &[&str] = &[
    // No Go runtime; oxcd's gRPC proxy keeps no metrics.
    "go_",
    "etcd_server_go_version",
    "etcd_grpc_proxy_",
    // bbolt's commit phases; redb commits in one step.
    "etcd_debugging_disk_backend_commit_",
    // redb read transactions are not tracked.
    "etcd_mvcc_db_open_read_transactions",
];

/// One scrape, parsed.
#[derive(Debug, Default)]
struct Scrape {
    /// Family → type.
    types: BTreeMap<String, String>,
    /// Family → the label names of its series (without `le`).
    labels: BTreeMap<String, BTreeSet<Vec<String>>>,
    /// Series as written (`name{labels}`) → value.
    values: BTreeMap<String, f64>,
}

impl Scrape {
    fn take(addr: &str) -> Scrape {
        let r = get(addr, "/metrics");
        assert_eq!(r.status, 200, "{}", r.text());
        let mut s = Scrape::default();
        for line in r.text().lines() {
            if let Some(t) = line.strip_prefix("# TYPE ") {
                let (name, kind) = t.split_once(' ').expect("a TYPE line names a type");
                s.types.insert(name.to_owned(), kind.to_owned());
                continue;
            }
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect("a sample has a value");
            let value = match value {
                "+Inf" => f64::INFINITY,
                v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
            };
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, label_names(rest.trim_end_matches('}'))),
                None => (series, Vec::new()),
            };
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|sfx| name.strip_suffix(sfx).filter(|f| s.types.contains_key(*f)))
                .unwrap_or(name);
            s.labels
                .entry(family.to_owned())
                .or_default()
                .insert(labels);
            s.values.insert(series.to_owned(), value);
        }
        s
    }

    fn value(&self, series: &str) -> f64 {
        self.values.get(series).copied().unwrap_or(0.0)
    }
}

/// `a="x",b="y"` → `[a, b]` (sorted, `le` left out); values hold no `"` here.
fn label_names(labels: &str) -> Vec<String> {
    let mut names: Vec<String> = labels
        .split("\",")
        .filter_map(|kv| kv.split_once('=').map(|(k, _)| k.trim().to_owned()))
        .filter(|k| k != "le" && !k.is_empty())
        .collect();
    names.sort();
    names
}

/// `etcdctl watch a` running in the background.
struct Watcher(Child);

impl Watcher {
    fn start(endpoint: &str) -> Watcher {
        let child = Command::new(etcdctl_bin())
            .arg(format!("--endpoints={endpoint}"))
            .args(["watch", "a"])
            .env("ETCDCTL_API", "3")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcdctl watch starts");
        Watcher(child)
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The scrapes of one member: before, while a watch is open, and after.
struct Scrapes {
    before: Scrape,
    watching: Scrape,
    after: Scrape,
}

/// Runs the operations on `m`: 5 puts (one inside a txn), 4 ranges (one a txn's compare, one
/// inside the txn) and the one etcd counts for a compaction, 1 multi-operation txn, 1 delete, a watch, a lease granted, renewed and
/// revoked, compaction, defrag, snapshot, hashkv.
fn run_operations(m: &Member, dir: &std::path::Path) -> Scrapes {
    let e = m.endpoint();
    let before = Scrape::take(&e);
    for (k, v) in [("a", "1"), ("b", "2"), ("c", "3")] {
        m.etcdctl(&["put", k, v]).expect_success();
    }
    m.etcdctl(&["get", "a"]).expect_success();
    m.etcdctl(&["get", "--prefix", ""]).expect_success();
    let txn = oxcd_e2e::etcdctl_stdin(&e, &["txn"], "value(\"a\") = \"1\"\n\nput d 4\nget a\n\n\n");
    assert!(txn.stdout.starts_with("SUCCESS"), "{txn}");
    m.etcdctl(&["del", "b"]).expect_success();

    let watcher = Watcher::start(&e);
    let watching = wait_until(
        "the watch to be registered",
        Duration::from_secs(10),
        || {
            let s = Scrape::take(&e);
            (s.value("etcd_debugging_mvcc_watcher_total") >= 1.0).then_some(s)
        },
    );
    m.etcdctl(&["put", "a", "5"]).expect_success();
    drop(watcher);

    let granted = m.etcdctl(&["lease", "grant", "60"]);
    let id = granted
        .expect_success()
        .split_whitespace()
        .nth(1)
        .expect("lease <id> granted")
        .to_owned();
    m.etcdctl(&["lease", "keep-alive", "--once", &id])
        .expect_success();
    m.etcdctl(&["lease", "revoke", &id]).expect_success();

    let status = m.etcdctl(&["endpoint", "status", "-w", "json"]);
    let status: serde_json::Value =
        serde_json::from_str(status.expect_success()).expect("status is JSON");
    let rev = status[0]["Status"]["header"]["revision"]
        .as_i64()
        .expect("a revision");
    m.etcdctl(&["compact", &rev.to_string()]).expect_success();
    m.etcdctl(&["defrag"]).expect_success();
    std::fs::create_dir_all(dir).unwrap();
    let snap = dir.join("snap.db");
    m.etcdctl(&["snapshot", "save", snap.to_str().unwrap()])
        .expect_success();
    m.etcdctl(&["endpoint", "hashkv"]).expect_success();
    // Compaction finishes in the background; counters settle.
    std::thread::sleep(Duration::from_millis(500));
    Scrapes {
        before,
        watching,
        after: Scrape::take(&e),
    }
}

fn left_out(family: &str) -> bool {
    NOT_EXPORTED.iter().any(|p| family.starts_with(p))
}

#[test]
fn metrics_match_etcd_family_by_family_and_move_alike() {
    oxcd_only!();
    let dir = tempfile::tempdir().unwrap();
    let mut etcd = Member::builder().bin(real_etcd_bin()).spawn();
    let oxcd = Member::start_single();
    etcd.wait_ready();
    let want = run_operations(&etcd, &dir.path().join("etcd"));
    let got = run_operations(&oxcd, &dir.path().join("oxcd"));

    // Every family etcd exports, oxcd exports, with the same type and label names.
    let mut missing = Vec::new();
    for (family, kind) in &want.after.types {
        if left_out(family) {
            continue;
        }
        match got.after.types.get(family) {
            None => missing.push(family.clone()),
            Some(k) => assert_eq!(k, kind, "type of {family}"),
        }
        if let (Some(w), Some(g)) = (want.after.labels.get(family), got.after.labels.get(family)) {
            assert!(
                g.is_subset(w),
                "label names of {family}: oxcd {g:?}, etcd {w:?}"
            );
        }
    }
    assert!(
        missing.is_empty(),
        "families oxcd does not export: {missing:?}"
    );
    let extra: Vec<&String> = got
        .after
        .types
        .keys()
        .filter(|f| !want.after.types.contains_key(*f))
        .collect();
    assert!(extra.is_empty(), "families etcd does not export: {extra:?}");

    // The counters moved as the operations say, on both.
    let moved = |s: &Scrapes, series: &str| s.after.value(series) - s.before.value(series);
    for (series, by) in [
        ("etcd_mvcc_put_total", 5.0),
        ("etcd_debugging_mvcc_put_total", 5.0),
        // etcd also counts a range for each compaction (it reads a key for the revision).
        ("etcd_mvcc_range_total", 5.0),
        ("etcd_mvcc_txn_total", 1.0),
        ("etcd_mvcc_delete_total", 1.0),
        ("etcd_debugging_lease_granted_total", 1.0),
        ("etcd_debugging_lease_renewed_total", 1.0),
        ("etcd_debugging_lease_revoked_total", 1.0),
        ("etcd_debugging_lease_ttl_total_count", 1.0),
        ("etcd_disk_backend_defrag_duration_seconds_count", 1.0),
        ("etcd_disk_backend_snapshot_duration_seconds_count", 1.0),
        ("etcd_mvcc_hash_rev_duration_seconds_count", 1.0),
        (
            "etcd_debugging_mvcc_db_compaction_total_duration_milliseconds_count",
            1.0,
        ),
        (
            "etcd_debugging_mvcc_index_compaction_pause_duration_milliseconds_count",
            1.0,
        ),
    ] {
        assert_eq!(moved(&want, series), by, "etcd's {series}");
        assert_eq!(moved(&got, series), by, "oxcd's {series}");
    }
    for series in [
        "etcd_debugging_mvcc_total_put_size_in_bytes",
        "etcd_disk_wal_write_bytes_total",
        "etcd_debugging_mvcc_db_compaction_keys_total",
        "grpc_server_msg_received_total{grpc_method=\"Put\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"}",
        "grpc_server_msg_sent_total{grpc_method=\"Put\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"}",
    ] {
        assert!(moved(&want, series) > 0.0, "etcd's {series} moved");
        assert!(moved(&got, series) > 0.0, "oxcd's {series} moved");
    }
    for series in [
        "etcd_debugging_mvcc_total_put_size_in_bytes",
        r#"etcd_server_client_requests_total{client_api_version="3.4",type="unary"}"#,
        r#"etcd_server_client_requests_total{client_api_version="3.4",type="stream"}"#,
    ] {
        assert_eq!(moved(&got, series), moved(&want, series), "{series}");
    }
    // While the watch was open: one watcher on one stream; none after.
    for (who, s) in [("etcd", &want), ("oxcd", &got)] {
        assert_eq!(
            s.watching.value("etcd_debugging_mvcc_watcher_total"),
            1.0,
            "{who}"
        );
        assert_eq!(
            s.watching.value("etcd_debugging_mvcc_watch_stream_total"),
            1.0,
            "{who}"
        );
        assert_eq!(
            s.after.value("etcd_debugging_mvcc_watcher_total"),
            0.0,
            "{who}"
        );
        assert_eq!(s.after.value("etcd_server_is_learner"), 0.0, "{who}");
        assert_eq!(
            s.after.value("etcd_debugging_mvcc_keys_total"),
            3.0,
            "{who}"
        );
        assert!(s.after.value("os_fd_used") > 0.0, "{who}");
        assert!(s.after.value("os_fd_limit") > 0.0, "{who}");
    }
}

/// `--metrics=extensive` adds the handling-time histogram, with go-grpc-prometheus' labels.
#[test]
fn extensive_metrics_add_grpc_handling_seconds() {
    oxcd_only!();
    let basic = Member::start_single();
    let extensive = Member::builder().arg("--metrics=extensive").start();
    for m in [&basic, &extensive] {
        m.etcdctl(&["put", "k", "v"]).expect_success();
    }
    let series = r#"grpc_server_handling_seconds_count{grpc_method="Put",grpc_service="etcdserverpb.KV",grpc_type="unary"}"#;
    let s = Scrape::take(&extensive.endpoint());
    assert_eq!(s.types["grpc_server_handling_seconds"], "histogram");
    assert_eq!(s.value(series), 1.0);
    assert!(s.values.contains_key(
        r#"grpc_server_handling_seconds_bucket{grpc_method="Put",grpc_service="etcdserverpb.KV",grpc_type="unary",le="0.005"}"#
    ));
    let s = Scrape::take(&basic.endpoint());
    assert!(!s.types.contains_key("grpc_server_handling_seconds"));
}

/// One cluster's view from its leader: its scrape, and the member ids by index.
struct PeerView {
    leader: usize,
    ids: Vec<String>,
}

fn peer_view(cluster: &Cluster) -> PeerView {
    let leader = wait_until("a leader", Duration::from_secs(30), || cluster.leader());
    let ids = cluster
        .names()
        .iter()
        .map(|name| format!("{:x}", cluster.member_id(name).expect("member id")))
        .collect();
    PeerView { leader, ids }
}

/// The peer network families (`etcd_network_*` but the client ones) of a scrape: name → type.
fn network_families(s: &Scrape) -> BTreeMap<String, String> {
    s.types
        .iter()
        .filter(|(f, _)| f.starts_with("etcd_network_") && !f.starts_with("etcd_network_client_"))
        .map(|(f, t)| (f.clone(), t.clone()))
        .collect()
}

/// Three members each of real etcd and oxcd: the leader's peer families match etcd's by name,
/// type and label names; bytes flow both ways to each follower, each follower is an active
/// peer, round trips are probed; a killed follower shows as disconnected and its messages
/// as failed sends.
#[test]
fn peer_network_metrics_match_etcd_on_three_members() {
    oxcd_only!();
    let _lock = cluster_lock();
    let etcd = Cluster::builder(3)
        .configure(|b| b.bin(real_etcd_bin()))
        .start();
    let oxcd = Cluster::start(3);
    let mut clusters = [("etcd", etcd), ("oxcd", oxcd)];
    let mut views = Vec::new();
    for (who, cluster) in &clusters {
        let view = peer_view(cluster);
        let endpoint = cluster.member(view.leader).endpoint();
        let before = Scrape::take(&endpoint);
        for i in 0..5 {
            cluster
                .etcdctl(&["put", &format!("k{i}"), "some value"])
                .expect_success();
        }
        let me = &view.ids[view.leader];
        let scrape = wait_until(
            &format!("{who}'s leader to probe its peers' round trips"),
            Duration::from_secs(30),
            || {
                let s = Scrape::take(&endpoint);
                view.ids
                    .iter()
                    .filter(|id| *id != me)
                    .all(|id| {
                        s.value(&format!(
                            "etcd_network_peer_round_trip_time_seconds_count{{To=\"{id}\"}}"
                        )) > 0.0
                    })
                    .then_some(s)
            },
        );
        for id in view.ids.iter().filter(|id| *id != me) {
            for series in [
                format!("etcd_network_peer_sent_bytes_total{{To=\"{id}\"}}"),
                format!("etcd_network_peer_received_bytes_total{{From=\"{id}\"}}"),
            ] {
                assert!(
                    scrape.value(&series) > before.value(&series),
                    "{who}'s {series} moved with the puts"
                );
            }
            let active = format!("etcd_network_active_peers{{Local=\"{me}\",Remote=\"{id}\"}}");
            assert_eq!(scrape.value(&active), 1.0, "{who}'s {active}");
        }
        views.push((view, scrape));
    }
    assert_peer_families_match(&views[1].1, &views[0].1);

    // A follower killed: the leader loses its stream and fails to send to it.
    let mut after_kill = Vec::new();
    for ((who, cluster), (view, _)) in clusters.iter_mut().zip(&views) {
        let victim = (view.leader + 1) % 3;
        let (me, gone) = (&view.ids[view.leader], &view.ids[victim]);
        cluster.member_mut(victim).kill();
        let endpoint = cluster.member(view.leader).endpoint();
        let disconnected =
            format!("etcd_network_disconnected_peers_total{{Local=\"{me}\",Remote=\"{gone}\"}}");
        let active = format!("etcd_network_active_peers{{Local=\"{me}\",Remote=\"{gone}\"}}");
        let failed = format!("etcd_network_peer_sent_failures_total{{To=\"{gone}\"}}");
        let s = wait_until(
            &format!("{who}'s leader to count the lost follower"),
            Duration::from_secs(30),
            || {
                let s = Scrape::take(&endpoint);
                (s.value(&disconnected) >= 1.0 && s.value(&active) == 0.0 && s.value(&failed) > 0.0)
                    .then_some(s)
            },
        );
        after_kill.push(s);
    }
    assert_peer_families_match(&after_kill[1], &after_kill[0]);
}

/// Every peer family etcd shows, oxcd shows with the same type and label names. A family
/// appears once its first event happened (a failed send while peers start, say), so oxcd
/// may show more of etcd's peer families than etcd does at that moment, never others.
fn assert_peer_families_match(got: &Scrape, want: &Scrape) {
    let (got_families, want_families) = (network_families(got), network_families(want));
    for (family, kind) in &want_families {
        assert_eq!(got_families.get(family), Some(kind), "oxcd's {family}");
        assert_eq!(got.labels.get(family), want.labels.get(family), "{family}");
    }
    for family in got_families.keys() {
        assert!(
            ETCD_PEER_FAMILIES.contains(&family.as_str()),
            "{family} is not etcd's"
        );
    }
}

/// etcd 3.4's peer families (`rafthttp/metrics.go`).
const ETCD_PEER_FAMILIES: &[&str] = &[
    "etcd_network_active_peers",
    "etcd_network_disconnected_peers_total",
    "etcd_network_peer_sent_bytes_total",
    "etcd_network_peer_received_bytes_total",
    "etcd_network_peer_sent_failures_total",
    "etcd_network_peer_received_failures_total",
    "etcd_network_peer_round_trip_time_seconds",
    "etcd_network_snapshot_send_success",
    "etcd_network_snapshot_send_failures",
    "etcd_network_snapshot_send_inflights_total",
    "etcd_network_snapshot_send_total_duration_seconds",
    "etcd_network_snapshot_receive_success",
    "etcd_network_snapshot_receive_failures",
    "etcd_network_snapshot_receive_inflights_total",
    "etcd_network_snapshot_receive_total_duration_seconds",
];

/// The v2 store's families with `--enable-v2`: the same v2 requests move them alike on etcd
/// and oxcd (reads by action, writes, a watch request and its watcher, an expired key).
#[test]
fn v2_store_metrics_move_alike() {
    oxcd_only!();
    let mut etcd = Member::builder()
        .bin(real_etcd_bin())
        .arg("--enable-v2")
        .spawn();
    let oxcd = Member::builder().arg("--enable-v2").start();
    etcd.wait_ready();
    const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");
    for (who, m) in [("etcd", &etcd), ("oxcd", &oxcd)] {
        let e = m.endpoint();
        let put = |path: &str, body: &str| {
            let r = request(&e, "PUT", path, &[FORM], body.as_bytes());
            assert!(r.status < 300, "{who}: PUT {path}: {}", r.text());
        };
        let before = Scrape::take(&e);
        put("/v2/keys/dir/a", "value=1");
        put("/v2/keys/dir/b", "value=2");
        put("/v2/keys/short", "value=x&ttl=1");
        assert_eq!(get(&e, "/v2/keys/dir/a").status, 200, "{who}");
        assert_eq!(get(&e, "/v2/keys/dir?recursive=true").status, 200, "{who}");
        let watch = {
            let e = e.clone();
            std::thread::spawn(move || get(&e, "/v2/keys/w?wait=true").status)
        };
        wait_until(
            &format!("{who}'s v2 watcher"),
            Duration::from_secs(10),
            || (Scrape::take(&e).value("etcd_debugging_store_watchers") == 1.0).then_some(()),
        );
        put("/v2/keys/w", "value=seen");
        assert_eq!(watch.join().expect("watch thread"), 200, "{who}");
        let after = wait_until(
            &format!("{who}'s v2 key to expire"),
            Duration::from_secs(15),
            || {
                let s = Scrape::take(&e);
                (s.value("etcd_debugging_store_expires_total")
                    > before.value("etcd_debugging_store_expires_total"))
                .then_some(s)
            },
        );
        let moved = |series: &str| after.value(series) - before.value(series);
        // etcd also reads its v2 store for itself (a few gets a second): reads only grow.
        for series in [
            r#"etcd_debugging_store_reads_total{action="get"}"#,
            r#"etcd_debugging_store_reads_total{action="getRecursive"}"#,
        ] {
            assert!(moved(series) >= 1.0, "{who}'s {series}");
        }
        for (series, by) in [
            (r#"etcd_debugging_store_writes_total{action="set"}"#, 4.0),
            ("etcd_debugging_store_watch_requests_total", 1.0),
            ("etcd_debugging_store_expires_total", 1.0),
        ] {
            assert_eq!(moved(series), by, "{who}'s {series}");
        }
        assert_eq!(after.value("etcd_debugging_store_watchers"), 0.0, "{who}");
    }
}

/// A follower that fell behind the leader's log gets a snapshot: the leader counts a
/// snapshot sent to it and the follower one received from the leader, both out of flight,
/// with their durations. (oxcd only: real etcd 3.4 keeps 5000 entries for catching up and
/// has no flag to lower that.)
#[test]
fn snapshot_send_and_receive_are_counted() {
    oxcd_only!();
    let _lock = cluster_lock();
    let mut cluster = Cluster::builder(3)
        .configure(|b| {
            b.args([
                "--snapshot-count=20",
                "--experimental-snapshot-catchup-entries=5",
            ])
        })
        .start();
    let view = peer_view(&cluster);
    let follower = (view.leader + 1) % 3;
    let (leader_id, follower_id) = (&view.ids[view.leader], &view.ids[follower]);
    cluster.member_mut(follower).kill();
    for i in 0..60 {
        cluster
            .member(view.leader)
            .etcdctl(&["put", &format!("s{i}"), "v"])
            .expect_success();
    }
    cluster.member_mut(follower).restart();
    let sent = wait_until(
        "the leader to count the snapshot sent",
        Duration::from_secs(30),
        || {
            let s = Scrape::take(&cluster.member(view.leader).endpoint());
            (s.value(&format!(
                "etcd_network_snapshot_send_success{{To=\"{follower_id}\"}}"
            )) >= 1.0)
                .then_some(s)
        },
    );
    assert_eq!(
        sent.value(&format!(
            "etcd_network_snapshot_send_inflights_total{{To=\"{follower_id}\"}}"
        )),
        0.0
    );
    assert!(
        sent.value(&format!(
            "etcd_network_snapshot_send_total_duration_seconds_count{{To=\"{follower_id}\"}}"
        )) >= 1.0
    );
    let received = wait_until(
        "the follower to count the snapshot received",
        Duration::from_secs(30),
        || {
            let s = Scrape::take(&cluster.member(follower).endpoint());
            (s.value(&format!(
                "etcd_network_snapshot_receive_success{{From=\"{leader_id}\"}}"
            )) >= 1.0)
                .then_some(s)
        },
    );
    assert_eq!(
        received.value(&format!(
            "etcd_network_snapshot_receive_inflights_total{{From=\"{leader_id}\"}}"
        )),
        0.0
    );
    assert!(
        received.value(&format!(
            "etcd_network_snapshot_receive_total_duration_seconds_count{{From=\"{leader_id}\"}}"
        )) >= 1.0
    );
    // The snapshot's bytes count among those received from the leader.
    assert!(
        received.value(&format!(
            "etcd_network_peer_received_bytes_total{{From=\"{leader_id}\"}}"
        )) > 0.0
    );
}
