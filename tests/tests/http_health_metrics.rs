//! `/version`, `/health`, `/livez`, `/readyz` and `/metrics` (issue 6), on the client port,
//! on `--listen-metrics-urls` and with `--listen-client-http-urls`; `/metrics` parsed as
//! Prometheus text, with etcd's metric names present and moving under load.

mod http_support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use http_support::{get, post, request};
use oxcd_e2e::{oxcd_only, ports::free_port, real_etcd_bin, Member};

#[test]
fn version_and_health_match_etcd() {
    let mut etcd = Member::builder().bin(real_etcd_bin()).spawn();
    let oxcd = Member::start_single();
    etcd.wait_ready();
    let (e, o) = (etcd.endpoint(), oxcd.endpoint());

    let want = get(&e, "/version").json();
    let got = get(&o, "/version");
    assert_eq!(got.status, 200);
    assert_eq!(got.header("content-type"), Some("application/json"));
    let got = got.json();
    let keys = |v: &serde_json::Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&got), keys(&want));
    if !oxcd_e2e::testing_real_etcd() {
        assert_eq!(
            got.to_string(),
            r#"{"etcdcluster":"3.5.0","etcdserver":"3.5.0"}"#
        );
    }

    for path in ["/health", "/health?serializable=true"] {
        let want = get(&e, path);
        let got = get(&o, path);
        assert_eq!(got.status, want.status, "{path}");
        assert_eq!(got.json()["health"], want.json()["health"], "{path}");
        assert_eq!(
            got.header("content-type"),
            want.header("content-type"),
            "{path}"
        );
        if !oxcd_e2e::testing_real_etcd() {
            // etcd 3.5's shape: a reason beside the verdict.
            assert_eq!(got.text(), r#"{"health":"true","reason":""}"#, "{path}");
        }
    }
    let want = request(&e, "POST", "/health", &[], b"");
    let got = request(&o, "POST", "/health", &[], b"");
    assert_eq!((got.status, got.text()), (want.status, want.text()));
}

/// Presenting as etcd 3.4 (`--experimental-emulate-etcd-version=3.4`), `/version`, `/health`
/// and the version metrics read byte for byte as Debian's etcd 3.4.23's.
#[test]
fn presenting_as_etcd_3_4_reads_as_etcd_3_4_23() {
    oxcd_only!();
    let mut etcd = Member::builder().bin(real_etcd_bin()).spawn();
    let oxcd = Member::builder()
        .arg("--experimental-emulate-etcd-version=3.4")
        .start();
    etcd.wait_ready();
    let (e, o) = (etcd.endpoint(), oxcd.endpoint());
    for path in ["/version", "/health"] {
        let (want, got) = (get(&e, path), get(&o, path));
        assert_eq!(
            (got.status, got.text()),
            (want.status, want.text()),
            "{path}"
        );
    }
    let metrics = get(&o, "/metrics").text();
    for line in [
        r#"etcd_server_version{server_version="3.4.23"} 1"#,
        r#"etcd_cluster_version{cluster_version="3.4"} 1"#,
    ] {
        assert!(get(&e, "/metrics").text().contains(line), "etcd: {line}");
        assert!(metrics.contains(line), "oxcd lacks {line}");
    }
    let status = oxcd.etcdctl(&["endpoint", "status", "-w", "json"]);
    assert!(
        status.expect_success().contains(r#""version":"3.4.23""#),
        "{status}"
    );

    let refused = Member::builder()
        .arg("--experimental-emulate-etcd-version=3.3")
        .spawn()
        .wait_exit(Duration::from_secs(10));
    assert_eq!(refused.code(), Some(1), "an unknown release is refused");
}

#[test]
fn livez_and_readyz() {
    oxcd_only!();
    let oxcd = Member::start_single();
    let o = oxcd.endpoint();
    for path in [
        "/livez",
        "/readyz",
        "/readyz/linearizable_read",
        "/livez/serializable_read",
    ] {
        let r = get(&o, path);
        assert_eq!((r.status, r.text()), (200, "ok\n".to_owned()), "{path}");
    }
    let r = get(&o, "/readyz?verbose");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.text(),
        "[+]data_corruption ok\n[+]serializable_read ok\n[+]linearizable_read ok\n[+]non_learner ok\nok\n"
    );
    let r = get(
        &o,
        "/readyz?verbose&exclude=linearizable_read&exclude=nonexistent",
    );
    assert_eq!(
        r.text(),
        "[+]data_corruption ok\n[+]serializable_read ok\n[+]non_learner ok\nok\n"
    );
    let r = get(&o, "/livez?verbose");
    assert_eq!(r.text(), "[+]serializable_read ok\nok\n");
    assert_eq!(get(&o, "/readyz/nope").status, 404);
    assert_eq!(request(&o, "POST", "/livez", &[], b"").status, 405);
}

/// Active alarms fail `/health` (unless excluded) as in etcd; a CORRUPT alarm fails
/// `/readyz`, NOSPACE does not.
#[test]
fn alarms_fail_health() {
    let mut etcd = Member::builder().bin(real_etcd_bin()).spawn();
    let oxcd = Member::start_single();
    etcd.wait_ready();
    let alarm = |addr: &str, action: &str, kind: &str| {
        let id = post(addr, "/v3/cluster/member/list", "{}").json()["header"]["member_id"]
            .as_str()
            .expect("member id")
            .to_owned();
        let body = format!(r#"{{"action":"{action}","memberID":"{id}","alarm":"{kind}"}}"#);
        let r = post(addr, "/v3/maintenance/alarm", &body);
        assert_eq!(r.status, 200, "{body}: {}", r.text());
    };
    let (e, o) = (etcd.endpoint(), oxcd.endpoint());
    for addr in [&e, &o] {
        alarm(addr, "ACTIVATE", "NOSPACE");
    }
    for path in [
        "/health",
        "/health?exclude=NOSPACE",
        "/health?exclude=CORRUPT",
    ] {
        let (want, got) = (get(&e, path), get(&o, path));
        assert_eq!(got.status, want.status, "{path}: {}", got.text());
        assert_eq!(got.json()["health"], want.json()["health"], "{path}");
    }
    if oxcd_e2e::testing_real_etcd() {
        return;
    }
    assert_eq!(
        get(&o, "/health").text(),
        "{\"health\":\"false\",\"reason\":\"ALARM NOSPACE\"}\n"
    );
    assert_eq!(get(&o, "/readyz").status, 200);
    assert_eq!(get(&o, "/livez").status, 200);
    alarm(&o, "ACTIVATE", "CORRUPT");
    let r = get(&o, "/readyz");
    assert_eq!(r.status, 503);
    assert!(
        r.text()
            .starts_with("[-]data_corruption failed: alarm activated: CORRUPT\n"),
        "{}",
        r.text()
    );
    assert_eq!(get(&o, "/readyz?exclude=data_corruption").status, 200);
    assert_eq!(get(&o, "/livez").status, 200);
    alarm(&o, "DEACTIVATE", "NOSPACE");
    alarm(&o, "DEACTIVATE", "CORRUPT");
    assert_eq!(get(&o, "/health").status, 200);
    assert_eq!(get(&o, "/readyz").status, 200);
}

#[test]
fn health_reports_no_leader_when_quorum_is_lost() {
    oxcd_only!();
    // A member of a 3-member cluster whose peers are gone has no leader: /health says so
    // (503, RAFT NO LEADER), /health?serializable=true and /livez still pass (local reads).
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
    let cluster = ports
        .iter()
        .enumerate()
        .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut members: Vec<Member> = ports
        .iter()
        .enumerate()
        .map(|(i, (client, peer))| {
            Member::builder()
                .name(&format!("m{i}"))
                .ports(*client, *peer)
                .initial_cluster(&cluster)
                .args(["--heartbeat-interval=50", "--election-timeout=500"])
                .spawn()
        })
        .collect();
    for m in &mut members {
        m.wait_ready();
    }
    let o = members[0].endpoint();
    assert_eq!(get(&o, "/health").status, 200);
    members[1].kill();
    members[2].kill();
    // A leader steps down once it misses its quorum (CheckQuorum); until then reads time out.
    let deadline = Instant::now() + Duration::from_secs(30);
    let r = loop {
        let r = get(&o, "/health");
        if r.text().contains("RAFT NO LEADER") || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(
        r.text(),
        "{\"health\":\"false\",\"reason\":\"RAFT NO LEADER\"}\n"
    );
    let r = get(&o, "/health?serializable=true");
    assert_eq!(
        (r.status, r.text()),
        (200, r#"{"health":"true","reason":""}"#.to_owned())
    );
    assert_eq!(get(&o, "/livez").status, 200);
    let r = get(&o, "/readyz");
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(
        r.text().contains("[-]linearizable_read failed"),
        "{}",
        r.text()
    );
    assert!(r.text().contains("[+]serializable_read ok"), "{}", r.text());
}

/// One scrape: metric name with labels → value, checked to be well-formed Prometheus text.
fn scrape(addr: &str) -> BTreeMap<String, f64> {
    let r = get(addr, "/metrics");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.header("content-type")
            .unwrap_or("")
            .starts_with("text/plain"),
        "{:?}",
        r.header("content-type")
    );
    parse_prometheus(&r.text())
}

/// Parses the Prometheus text format, panicking on any line that is not a comment, blank, or
/// `name{labels} value`; checks every sample's family has a `# TYPE` line.
fn parse_prometheus(text: &str) -> BTreeMap<String, f64> {
    let mut samples = BTreeMap::new();
    let mut types = BTreeMap::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with("# HELP ") {
            continue;
        }
        if let Some(t) = line.strip_prefix("# TYPE ") {
            let (name, kind) = t.split_once(' ').expect("TYPE line has a kind");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            types.insert(name.to_owned(), kind.to_owned());
            continue;
        }
        assert!(!line.starts_with('#'), "unexpected comment {line}");
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line {line}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
        };
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line}"
        );
        if let Some(labels) = series.strip_prefix(name) {
            if !labels.is_empty() {
                assert!(labels.starts_with('{') && labels.ends_with('}'), "{line}");
            }
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| types.contains_key(*f)))
            .unwrap_or(name);
        assert!(types.contains_key(family), "no # TYPE for {name}");
        samples.insert(series.to_owned(), value);
    }
    samples
}

fn value(samples: &BTreeMap<String, f64>, series: &str) -> f64 {
    *samples.get(series).unwrap_or_else(|| {
        panic!(
            "{series} missing from /metrics; have {:?}",
            samples.keys().collect::<Vec<_>>()
        )
    })
}

/// The sum of every series of `name` whose labels include all of `labels`.
fn sum(samples: &BTreeMap<String, f64>, name: &str, labels: &[&str]) -> f64 {
    samples
        .iter()
        .filter(|(s, _)| s.split('{').next() == Some(name))
        .filter(|(s, _)| labels.iter().all(|l| s.contains(l)))
        .map(|(_, v)| v)
        .sum()
}

#[test]
fn metrics_are_etcds_names_and_move_under_load() {
    oxcd_only!();
    let oxcd = Member::start_single();
    let o = oxcd.endpoint();
    let before = scrape(&o);
    for name in [
        "etcd_server_has_leader",
        "etcd_server_is_leader",
        "etcd_server_leader_changes_seen_total",
        "etcd_server_proposals_committed_total",
        "etcd_server_proposals_applied_total",
        "etcd_server_proposals_pending",
        "etcd_mvcc_db_total_size_in_bytes",
        "etcd_mvcc_db_total_size_in_use_in_bytes",
        "etcd_debugging_mvcc_keys_total",
        "etcd_server_quota_backend_bytes",
        "process_resident_memory_bytes",
        "process_open_fds",
    ] {
        value(&before, name);
    }
    assert_eq!(value(&before, "etcd_server_has_leader"), 1.0);
    assert_eq!(value(&before, "etcd_server_is_leader"), 1.0);
    assert!(value(&before, "etcd_server_leader_changes_seen_total") >= 1.0);
    assert_eq!(
        value(&before, "etcd_server_quota_backend_bytes"),
        2147483648.0
    );
    assert!(value(&before, "etcd_mvcc_db_total_size_in_bytes") > 0.0);
    assert_eq!(
        value(&before, r#"etcd_server_version{server_version="3.5.0"}"#),
        1.0
    );

    // Load: puts through gRPC (etcdctl) and through the gateway.
    const PUTS: usize = 40;
    for i in 0..PUTS / 2 {
        let out = oxcd.etcdctl(&["put", &format!("k{i}"), "v"]);
        assert!(out.success(), "{out:?}");
    }
    for i in PUTS / 2..PUTS {
        let body = format!(r#"{{"key":"{}","value":"dg=="}}"#, b64_key(i));
        assert_eq!(post(&o, "/v3/kv/put", &body).status, 200);
    }
    assert_eq!(post(&o, "/v3/kv/range", r#"{"key":""}"#).status, 400);
    // The backend makes commits durable within 100 ms.
    std::thread::sleep(Duration::from_millis(500));
    let after = scrape(&o);

    let grew = |series: &str, by: f64| {
        let (b, a) = (
            before.get(series).copied().unwrap_or(0.0),
            value(&after, series),
        );
        assert!(a >= b + by, "{series}: {b} → {a}, expected +{by}");
    };
    grew("etcd_server_proposals_committed_total", PUTS as f64);
    grew("etcd_server_proposals_applied_total", PUTS as f64);
    grew("etcd_disk_wal_fsync_duration_seconds_count", 1.0);
    grew("etcd_disk_backend_commit_duration_seconds_count", 1.0);
    grew("etcd_network_client_grpc_received_bytes_total", 1.0);
    grew("etcd_network_client_grpc_sent_bytes_total", 1.0);
    assert_eq!(value(&after, "etcd_debugging_mvcc_keys_total"), PUTS as f64);
    assert_eq!(value(&after, "etcd_server_proposals_pending"), 0.0);
    assert!(value(&after, "etcd_debugging_mvcc_current_revision") >= PUTS as f64 + 1.0);
    // etcd's buckets, from 1 ms.
    value(
        &after,
        r#"etcd_disk_wal_fsync_duration_seconds_bucket{le="0.001"}"#,
    );
    value(
        &after,
        r#"etcd_disk_wal_fsync_duration_seconds_bucket{le="+Inf"}"#,
    );
    value(
        &after,
        r#"etcd_disk_backend_commit_duration_seconds_bucket{le="8.192"}"#,
    );

    let puts = |s: &BTreeMap<String, f64>, metric: &str, extra: &[&str]| {
        let mut labels = vec![
            r#"grpc_service="etcdserverpb.KV""#,
            r#"grpc_method="Put""#,
            r#"grpc_type="unary""#,
        ];
        labels.extend_from_slice(extra);
        sum(s, metric, &labels)
    };
    assert!(
        puts(&after, "grpc_server_started_total", &[])
            >= puts(&before, "grpc_server_started_total", &[]) + PUTS as f64
    );
    assert!(
        puts(&after, "grpc_server_handled_total", &[r#"grpc_code="OK""#])
            >= puts(&before, "grpc_server_handled_total", &[r#"grpc_code="OK""#]) + PUTS as f64
    );
    let invalid = sum(
        &after,
        "grpc_server_handled_total",
        &[r#"grpc_method="Range""#, r#"grpc_code="InvalidArgument""#],
    );
    assert!(
        invalid >= 1.0,
        "the empty-key range is counted as InvalidArgument"
    );
}

fn b64_key(i: usize) -> String {
    // "k20".."k39" in base64, built by hand to keep the test free of encoders.
    let key = format!("k{i}");
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = key.as_bytes();
    assert_eq!(b.len(), 3);
    let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
    (0..4)
        .map(|k| T[((n >> (18 - 6 * k)) & 63) as usize] as char)
        .collect()
}

/// A gateway watch whose HTTP client goes away ends its gRPC call at once (counted as
/// Canceled), not at the next event on its key.
#[test]
fn gateway_watch_ends_when_its_client_leaves() {
    oxcd_only!();
    let oxcd = Member::start_single();
    let o = oxcd.endpoint();
    let watch_labels = [
        r#"grpc_service="etcdserverpb.Watch""#,
        r#"grpc_method="Watch""#,
    ];
    let handled = |s: &BTreeMap<String, f64>| sum(s, "grpc_server_handled_total", &watch_labels);
    let before = handled(&scrape(&o));
    let mut stream =
        http_support::Stream::open(&o, "/v3/watch", r#"{"create_request":{"key":"YQ=="}}"#);
    assert_eq!(stream.status, 200);
    let created = stream.next_line(Duration::from_secs(10)).expect("created");
    assert!(created.contains(r#""created":true"#), "{created}");
    let started = sum(&scrape(&o), "grpc_server_started_total", &watch_labels);
    assert!(started >= 1.0);
    drop(stream);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = scrape(&o);
        let canceled = sum(
            &s,
            "grpc_server_handled_total",
            &[watch_labels[0], watch_labels[1], r#"grpc_code="Canceled""#],
        );
        if handled(&s) > before && canceled >= 1.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "watch call still open after its client left"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn metrics_urls_serve_metrics_and_health_only() {
    oxcd_only!();
    let port = free_port();
    let oxcd = Member::builder()
        .arg(format!("--listen-metrics-urls=http://127.0.0.1:{port}"))
        .start();
    let m = format!("127.0.0.1:{port}");
    let samples = scrape(&m);
    assert_eq!(value(&samples, "etcd_server_has_leader"), 1.0);
    assert_eq!(
        get(&m, "/health").text(),
        r#"{"health":"true","reason":""}"#
    );
    assert_eq!(get(&m, "/livez").text(), "ok\n");
    assert_eq!(get(&m, "/readyz").text(), "ok\n");
    let r = post(&m, "/v3/kv/range", r#"{"key":"YQ=="}"#);
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(get(&m, "/version").status, 404);
    // The client port still serves everything.
    assert_eq!(get(&oxcd.endpoint(), "/metrics").status, 200);
    assert_eq!(
        post(&oxcd.endpoint(), "/v3/kv/range", r#"{"key":"YQ=="}"#).status,
        200
    );
}

#[test]
fn client_http_urls_take_http_off_the_client_port() {
    oxcd_only!();
    let port = free_port();
    let oxcd = Member::builder()
        .arg(format!("--listen-client-http-urls=http://127.0.0.1:{port}"))
        .start();
    let h = format!("127.0.0.1:{port}");
    assert_eq!(
        post(&h, "/v3/kv/put", r#"{"key":"YQ==","value":"Yg=="}"#).status,
        200
    );
    let r = post(&h, "/v3/kv/range", r#"{"key":"YQ=="}"#);
    assert_eq!(r.json()["kvs"][0]["value"], "Yg==", "{}", r.text());
    assert_eq!(get(&h, "/version").status, 200);
    assert_eq!(get(&h, "/health").status, 200);
    // The client port serves gRPC (etcdctl) but no longer HTTP.
    let out = oxcd.etcdctl(&["get", "a", "--print-value-only"]);
    assert!(out.success(), "{out:?}");
    assert_eq!(out.stdout.trim(), "b");
    let r = get(&oxcd.endpoint(), "/version");
    assert_eq!(
        (r.status, r.text()),
        (404, "404 page not found\n".to_owned())
    );
}
