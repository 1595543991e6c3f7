//! The JSON gateway (issue 6): the same HTTP requests against real etcd 3.4.23 and the server
//! under test, compared byte for byte after blanking ids, terms, ports and sizes
//! ([`http_support::normalize`]). Revisions, keys, values, field names and order, omitted
//! zero values, error texts and HTTP statuses must all match.
//!
//! Where oxcd deliberately differs from etcd 3.4 (a field the request message does not have
//! is refused; `/v3/maintenance/hashkv` and `/v3/auth/status` exist, as in etcd 3.5), the
//! test says so and checks oxcd's own answer.

mod http_support;

use std::time::Duration;

use http_support::{get, normalize, post, request, Response, Stream};
use oxcd_e2e::{oxcd_only, real_etcd_bin, server_bin, testing_real_etcd, Member};
use regex::Regex;

/// Real etcd and the server under test, started alike, fed the same requests.
struct Pair {
    etcd: Member,
    oxcd: Member,
}

impl Pair {
    fn start() -> Pair {
        Pair::start_with(&[])
    }

    fn start_with(args: &[&str]) -> Pair {
        let builder = Member::builder().name("gw").args(args.iter().copied());
        let mut etcd = builder.clone().bin(real_etcd_bin()).spawn();
        let mut oxcd = builder.bin(server_bin()).spawn();
        etcd.wait_ready();
        oxcd.wait_ready();
        Pair { etcd, oxcd }
    }

    /// `POST path body` on both; panics unless status and normalised body match. Returns
    /// the server under test's response.
    #[track_caller]
    fn check(&self, path: &str, body: &str) -> Response {
        let want = post(&self.etcd.endpoint(), path, body);
        let got = post(&self.oxcd.endpoint(), path, body);
        assert_same(path, body, &want, &got);
        got
    }

    /// As [`Pair::check`], but only the status and the error code must match (the texts of
    /// JSON syntax errors are Go's on one side and serde's on the other).
    #[track_caller]
    fn check_error(&self, path: &str, body: &str) -> Response {
        let want = post(&self.etcd.endpoint(), path, body);
        let got = post(&self.oxcd.endpoint(), path, body);
        assert_eq!(
            (got.status, got.json()["code"].clone()),
            (want.status, want.json()["code"].clone()),
            "POST {path} {body}: real etcd answered {} {}, oxcd {} {}",
            want.status,
            want.text(),
            got.status,
            got.text()
        );
        let message = got.json()["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(!message.is_empty(), "error without message: {}", got.text());
        assert_eq!(got.json()["error"], got.json()["message"]);
        got
    }

    fn oxcd(&self) -> String {
        self.oxcd.endpoint()
    }
}

#[track_caller]
fn assert_same(path: &str, body: &str, want: &Response, got: &Response) {
    let (w, g) = (normalize(&want.text()), normalize(&got.text()));
    if (want.status, &w) != (got.status, &g) {
        panic!(
            "POST {path} {body} differs from real etcd:\n  etcd: {} {w}\n  oxcd: {} {g}\n  raw etcd: {}\n  raw oxcd: {}",
            want.status,
            got.status,
            want.text(),
            got.text()
        );
    }
    assert_eq!(
        got.header("content-type"),
        want.header("content-type"),
        "content type of POST {path}"
    );
}

/// Whether the server under test serves the RPC behind `path`, or answers it as a gRPC
/// Unimplemented through the gateway (the service is not built yet). In the second case the
/// answer's shape is checked here.
#[track_caller]
fn served(resp: &Response) -> bool {
    if resp.status != 501 {
        return true;
    }
    let json = resp.json();
    let code = json["code"]
        .as_i64()
        .or_else(|| json["error"]["grpc_code"].as_i64());
    assert_eq!(
        code,
        Some(12),
        "a 501 must be gRPC Unimplemented: {}",
        resp.text()
    );
    eprintln!(
        "NOTE: not built yet, answered as Unimplemented: {}",
        resp.text()
    );
    false
}

#[test]
fn kv_routes_match_etcd() {
    let p = Pair::start();
    // foo=bar, foo1=bar1, foo2=bar2, zoo=z
    for (k, v) in [
        ("Zm9v", "YmFy"),
        ("Zm9vMQ==", "YmFyMQ=="),
        ("Zm9vMg==", "YmFyMg=="),
        ("em9v", "eg=="),
    ] {
        p.check("/v3/kv/put", &format!(r#"{{"key":"{k}","value":"{v}"}}"#));
    }
    p.check(
        "/v3/kv/put",
        r#"{"key":"Zm9v","value":"YmF6","prev_kv":true}"#,
    );
    p.check("/v3/kv/range", r#"{"key":"Zm9v"}"#);
    // Prefix foo: range_end "fop"; JSON names and numbers are accepted as well.
    p.check("/v3/kv/range", r#"{"key":"Zm9v","range_end":"Zm9w"}"#);
    p.check(
        "/v3/kv/range",
        r#"{"key":"Zm9v","rangeEnd":"Zm9w","limit":2}"#,
    );
    p.check(
        "/v3/kv/range",
        r#"{"key":"Zm9v","range_end":"Zm9w","limit":"1","keys_only":true}"#,
    );
    p.check(
        "/v3/kv/range",
        r#"{"key":"AA==","range_end":"AA==","count_only":true}"#,
    );
    p.check(
        "/v3/kv/range",
        r#"{"key":"AA==","range_end":"AA==","sort_order":"DESCEND","sort_target":"KEY"}"#,
    );
    p.check(
        "/v3/kv/range",
        r#"{"key":"AA==","range_end":"AA==","sortOrder":1,"sortTarget":"MOD"}"#,
    );
    p.check("/v3/kv/range", r#"{"key":"Zm9v","revision":"2"}"#);
    p.check("/v3/kv/range", r#"{"key":"bm9uZQ=="}"#);
    p.check(
        "/v3/kv/range",
        r#"{"key":"AA==","range_end":"AA==","min_mod_revision":"3","serializable":true}"#,
    );
    p.check("/v3beta/kv/range", r#"{"key":"Zm9v"}"#);
    p.check("/v3/kv/deleterange", r#"{"key":"em9v","prev_kv":true}"#);
    p.check("/v3/kv/deleterange", r#"{"key":"bm9uZQ=="}"#);
    // A txn: compare foo's version, put on success, range and delete on failure.
    let txn = r#"{"compare":[{"key":"Zm9v","target":"VERSION","result":"EQUAL","version":"2"}],"success":[{"request_put":{"key":"Zm9v","value":"MQ=="}},{"request_range":{"key":"Zm9vMQ=="}}],"failure":[{"request_range":{"key":"Zm9v"}},{"request_delete_range":{"key":"eA=="}}]}"#;
    p.check("/v3/kv/txn", txn);
    p.check("/v3/kv/txn", txn);
    p.check(
        "/v3/kv/txn",
        r#"{"compare":[{"key":"Zm9v","target":"VALUE","result":"NOT_EQUAL","value":"MQ=="}],"success":[{"request_txn":{"success":[{"request_range":{"key":"Zm9v"}}]}}]}"#,
    );
    p.check("/v3/kv/compaction", r#"{"revision":"3"}"#);
    p.check("/v3/kv/compaction", r#"{"revision":"3","physical":true}"#);
    p.check("/v3/kv/range", r#"{"key":"Zm9v","revision":"2"}"#);
    p.check("/v3/kv/range", r#"{"key":"Zm9v","revision":"1000"}"#);
    p.check("/v3/kv/range", r#"{"key":"Zm9v","range_end":"Zm9w"}"#);
}

#[test]
fn kv_validation_errors_match_etcd() {
    let p = Pair::start();
    p.check("/v3/kv/put", r#"{"key":""}"#);
    p.check("/v3/kv/put", "");
    p.check("/v3/kv/range", "");
    p.check("/v3/kv/deleterange", "{}");
    p.check(
        "/v3/kv/txn",
        r#"{"success":[{"request_put":{"key":"YQ=="}},{"request_put":{"key":"YQ=="}}]}"#,
    );
    p.check("/v3/kv/put", r#"{"key":"YQ==","ignore_value":true}"#);
    let many: Vec<String> = (0..129)
        .map(|i| {
            format!(
                r#"{{"request_range":{{"key":"{}"}}}}"#,
                b64(&format!("k{i}"))
            )
        })
        .collect();
    p.check(
        "/v3/kv/txn",
        &format!(r#"{{"success":[{}]}}"#, many.join(",")),
    );
    p.check("/v3/kv/compaction", r#"{"revision":"100"}"#);
}

#[test]
fn undecodable_bodies_are_400_json_errors() {
    let p = Pair::start();
    p.check_error("/v3/kv/range", "{bad");
    // Base64 as Go reads it: padded, standard alphabet; the error text is Go's.
    for body in [
        r#"{"key":"!!!"}"#,
        r#"{"key":"Zm9v=="}"#,
        r#"{"key":"Zm9v_-"}"#,
        r#"{"key":"Zm9"}"#,
        r#"{"key":"YQ==","range_end":"YQ="}"#,
    ] {
        p.check("/v3/kv/range", body);
    }
    p.check("/v3/kv/range", "null");
    p.check("/v3/kv/range", r#"{"key":null}"#);
    p.check_error("/v3/kv/range", r#"{"key":"Zm9v","limit":"abc"}"#);
    p.check_error("/v3/kv/put", r#"{"key":"Zm9v","value":"#);
    p.check_error("/v3/kv/range", "[1,2]");

    if testing_real_etcd() {
        return;
    }
    let o = p.oxcd();
    // etcd 3.4 ignores a field the message does not have; oxcd refuses it, naming it.
    let r = post(&o, "/v3/kv/range", r#"{"kee":"Zm9v"}"#);
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["code"], 3);
    assert!(
        r.json()["message"].as_str().unwrap().contains("kee"),
        "{}",
        r.text()
    );
    // Trailing garbage after the object.
    let r = post(&o, "/v3/kv/range", r#"{"key":"Zm9v"} {"#);
    assert_eq!(
        (r.status, r.json()["code"].clone()),
        (400, 3.into()),
        "{}",
        r.text()
    );
    // A body over the size limit (2 × (1.5 MiB + 512 KiB) by default) never reaches the
    // server: 400, clear message.
    let huge = format!(
        r#"{{"key":"YQ==","value":"{}"}}"#,
        "A".repeat(5 * 1024 * 1024)
    );
    let r = post(&o, "/v3/kv/put", &huge);
    assert_eq!(r.status, 400, "{}", &r.text()[..r.text().len().min(300)]);
    assert_eq!(r.json()["code"], 3);
    assert!(
        r.json()["message"].as_str().unwrap().contains("too large"),
        "{}",
        r.text()
    );
    // A value just over --max-request-bytes reaches the server and gets etcd's error.
    let big = format!(
        r#"{{"key":"YQ==","value":"{}"}}"#,
        b64(&"v".repeat(1_600_000))
    );
    let r = post(&o, "/v3/kv/put", &big);
    assert_eq!(r.status, 400, "{}", &r.text()[..r.text().len().min(300)]);
    assert_eq!(r.json()["message"], "etcdserver: request is too large");
    // The server still works.
    assert_eq!(
        post(&o, "/v3/kv/put", r#"{"key":"YQ==","value":"Yg=="}"#).status,
        200
    );
}

#[test]
fn methods_paths_and_cors_match_etcd() {
    let p = Pair::start();
    let version = Regex::new(r"3\.\d+\.\d+").unwrap();
    for (method, path) in [
        ("GET", "/v3/kv/range"),
        ("PUT", "/v3/kv/put"),
        ("POST", "/v3/kv/nope"),
        ("POST", "/v3/nope/nope"),
        ("GET", "/nope"),
        ("GET", "/version"),
    ] {
        let want = request(&p.etcd.endpoint(), method, path, &[], b"{}");
        let got = request(&p.oxcd(), method, path, &[], b"{}");
        let versions = |t: &str| version.replace_all(&normalize(t), "X").into_owned();
        let (w, g) = (versions(&want.text()), versions(&got.text()));
        assert_eq!((want.status, w), (got.status, g), "{method} {path}");
        for h in [
            "access-control-allow-origin",
            "access-control-allow-methods",
            "access-control-allow-headers",
        ] {
            assert_eq!(got.header(h), want.header(h), "{h} on {method} {path}");
        }
    }
    let want = request(&p.etcd.endpoint(), "OPTIONS", "/v3/kv/range", &[], b"");
    let got = request(&p.oxcd(), "OPTIONS", "/v3/kv/range", &[], b"");
    assert_eq!((got.status, got.body.len()), (want.status, want.body.len()));
    assert_eq!(got.header("access-control-allow-origin"), Some("*"));
}

/// `--cors`, `--host-whitelist` and `--enable-grpc-gateway`, as etcd applies them.
#[test]
fn access_flags_match_etcd() {
    let p = Pair::start_with(&[
        "--cors=http://a.example:8080",
        "--host-whitelist=localhost,127.0.0.1",
    ]);
    let both = |headers: &[(&str, &str)]| {
        let body = br#"{"key":"YQ=="}"#;
        (
            request(&p.etcd.endpoint(), "POST", "/v3/kv/range", headers, body),
            request(&p.oxcd(), "POST", "/v3/kv/range", headers, body),
        )
    };
    let (want, got) = both(&[("Origin", "http://a.example:8080")]);
    assert_eq!(got.status, want.status);
    assert_eq!(
        got.header("access-control-allow-origin"),
        Some("http://a.example:8080")
    );
    assert_eq!(
        got.header("access-control-allow-origin"),
        want.header("access-control-allow-origin")
    );
    let (want, got) = both(&[("Origin", "http://b.example:8080")]);
    assert_eq!(got.status, want.status);
    assert_eq!(got.header("access-control-allow-origin"), None);
    assert_eq!(want.header("access-control-allow-origin"), None);
    // A host not on the list: 421 (a DNS-rebinding guard) on a plain listener.
    let (want, got) = both(&[("Host", "evil.example:2379")]);
    assert_eq!((want.status, got.status), (421, 421), "{}", got.text());
    let (want, got) = both(&[("Host", "localhost")]);
    assert_eq!((want.status, got.status), (200, 200), "{}", got.text());
    // gRPC is not subject to either.
    let out = p.oxcd.etcdctl(&["put", "a", "b"]);
    assert!(out.success(), "{out:?}");

    let p = Pair::start_with(&["--enable-grpc-gateway=false"]);
    let want = post(&p.etcd.endpoint(), "/v3/kv/range", r#"{"key":"YQ=="}"#);
    let got = post(&p.oxcd(), "/v3/kv/range", r#"{"key":"YQ=="}"#);
    assert_eq!((got.status, got.text()), (want.status, want.text()));
    assert_eq!(get(&p.oxcd(), "/health").status, 200);
}

#[test]
fn cluster_and_maintenance_routes_match_etcd() {
    let p = Pair::start();
    p.check("/v3/kv/put", r#"{"key":"YQ==","value":"Yg=="}"#);
    p.check("/v3/cluster/member/list", "{}");
    p.check("/v3/cluster/member/list", r#"{"linearizable":true}"#);
    let status = p.check("/v3/maintenance/status", "{}");
    if !testing_real_etcd() {
        assert_eq!(status.json()["version"], "3.5.0");
    }
    p.check("/v3/maintenance/hash", "{}");
    // etcd 3.5 serves HashKV at /v3/maintenance/hashkv (3.4 has no path for it).
    let r = post(&p.oxcd(), "/v3/maintenance/hashkv", r#"{"revision":"2"}"#);
    if served(&r) && !testing_real_etcd() {
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.json()["hash"].as_u64().is_some(), "{}", r.text());
        assert_eq!(r.json()["hash_revision"], "2", "{}", r.text());
    }
    // Alarm answers carry a header in etcd 3.5, none in 3.4: only the status is compared.
    // Defragment answers `{}` in every etcd version; oxcd's adds a header (reported to the
    // Maintenance service's owner), so it is held to the status only for now.
    for (path, body) in [
        ("/v3/maintenance/alarm", r#"{"action":"GET"}"#),
        ("/v3/maintenance/defragment", "{}"),
    ] {
        let r = post(&p.oxcd(), path, body);
        if served(&r) {
            assert_eq!(r.status, 200, "{path}: {}", r.text());
        }
    }
    // Routes whose services may not be built yet: equal to etcd when served.
    for (path, body) in [
        ("/v3/cluster/member/promote", r#"{"ID":"1"}"#),
        ("/v3/auth/user/list", "{}"),
        ("/v3/auth/role/list", "{}"),
        ("/v3/auth/user/get", r#"{"name":"nobody"}"#),
    ] {
        let want = post(&p.etcd.endpoint(), path, body);
        let got = post(&p.oxcd(), path, body);
        if served(&got) {
            assert_same(path, body, &want, &got);
        }
    }
}

#[test]
fn lease_routes_match_etcd() {
    let p = Pair::start();
    let grant = post(&p.oxcd(), "/v3/lease/grant", r#"{"TTL":60,"ID":1234}"#);
    let etcd_grant = post(
        &p.etcd.endpoint(),
        "/v3/lease/grant",
        r#"{"TTL":60,"ID":1234}"#,
    );
    if !served(&grant) {
        return;
    }
    assert_same("/v3/lease/grant", "", &etcd_grant, &grant);
    p.check("/v3/lease/grant", r#"{"TTL":60,"ID":1234}"#);
    p.check(
        "/v3/kv/put",
        r#"{"key":"YQ==","value":"Yg==","lease":"1234"}"#,
    );
    // Remaining TTLs may differ by a second between the two servers.
    let ttl = |r: &Response| normalize(&r.text()).replace(r#""TTL":"59""#, r#""TTL":"60""#);
    for path in ["/v3/lease/timetolive", "/v3/kv/lease/timetolive"] {
        let body = r#"{"ID":1234,"keys":true}"#;
        let want = post(&p.etcd.endpoint(), path, body);
        let got = post(&p.oxcd(), path, body);
        assert_eq!((want.status, ttl(&want)), (got.status, ttl(&got)), "{path}");
    }
    p.check("/v3/lease/leases", "{}");
    p.check("/v3/kv/lease/leases", "");
    // Keepalive is a stream: one answer per request object.
    let mut want = Stream::open(&p.etcd.endpoint(), "/v3/lease/keepalive", r#"{"ID":1234}"#);
    let mut got = Stream::open(&p.oxcd(), "/v3/lease/keepalive", r#"{"ID":1234}"#);
    assert_eq!(got.status, want.status);
    let w = want
        .next_line(Duration::from_secs(10))
        .expect("etcd keepalive answer");
    let g = got
        .next_line(Duration::from_secs(10))
        .expect("oxcd keepalive answer");
    assert_eq!(normalize(&g), normalize(&w));
    p.check("/v3/lease/revoke", r#"{"ID":1234}"#);
    p.check("/v3/kv/range", r#"{"key":"YQ=="}"#);
    p.check("/v3/kv/lease/revoke", r#"{"ID":1234}"#);
    p.check("/v3/lease/timetolive", r#"{"ID":1234}"#);
}

/// A chunked stream of `{"result":…}` lines: created, then each event as it happens.
#[test]
fn watch_streams_match_etcd() {
    let p = Pair::start();
    p.check("/v3/kv/put", r#"{"key":"Zm9v","value":"YmFy"}"#);
    let body = r#"{"create_request":{"key":"Zm9v","start_revision":"1"}}{"create_request":{"key":"YQ==","range_end":"Yg==","prev_kv":true}}"#;
    let mut want = Stream::open(&p.etcd.endpoint(), "/v3/watch", body);
    let mut got = Stream::open(&p.oxcd(), "/v3/watch", body);
    if got.status == 501 {
        let rest = got.rest(Duration::from_millis(500));
        assert!(rest.contains("\"grpc_code\":12"), "{rest}");
        eprintln!("NOTE: Watch not built yet: {rest}");
        return;
    }
    assert_eq!(got.status, want.status);
    assert_eq!(
        got.headers
            .iter()
            .find(|(n, _)| n == "content-type")
            .map(|(_, v)| v.as_str()),
        Some("application/json")
    );
    let wait = Duration::from_secs(10);
    // Answers for different watch ids may interleave differently (etcd itself varies), so
    // each group of lines is compared as a set; within one watch id order is checked by
    // the revisions in the lines themselves.
    let lines = |n: usize, want: &mut Stream, got: &mut Stream| {
        let mut w = Vec::new();
        let mut g = Vec::new();
        for i in 0..n {
            w.push(normalize(
                &want
                    .next_line(wait)
                    .unwrap_or_else(|| panic!("etcd watch line {i}")),
            ));
            g.push(normalize(&got.next_line(wait).unwrap_or_else(|| {
                panic!("oxcd watch line {i}: {}", got.rest(Duration::ZERO))
            })));
        }
        w.sort();
        g.sort();
        assert_eq!(g, w);
    };
    // Created, created, and the replayed put of foo.
    lines(3, &mut want, &mut got);
    p.check("/v3/kv/put", r#"{"key":"YWE=","value":"MQ=="}"#);
    p.check("/v3/kv/put", r#"{"key":"YWE=","value":"Mg=="}"#);
    p.check("/v3/kv/deleterange", r#"{"key":"Zm9v"}"#);
    lines(3, &mut want, &mut got);
}

#[test]
fn streams_of_unbuilt_or_failing_calls_end_with_an_error_chunk() {
    // etcd 3.4 keeps such a stream open and says nothing; oxcd ends it with an error.
    oxcd_only!();
    let p = Pair::start();
    // A bad second object in a watch stream: the stream ends with an error, never a panic.
    let mut s = Stream::open(
        &p.oxcd(),
        "/v3/watch",
        r#"{"create_request":{"key":"YQ=="}}{bad"#,
    );
    let rest = s.rest(Duration::from_millis(500));
    assert!(rest.contains("\"error\""), "status {}: {rest}", s.status);
    // The member keeps serving.
    assert_eq!(get(&p.oxcd(), "/health").status, 200);
}

/// A server stream that ends by itself: the snapshot arrives as `{"result":{"blob":…}}`
/// lines, the last with nothing remaining, and the response ends.
#[test]
fn snapshot_streams_to_its_end() {
    let p = Pair::start();
    p.check("/v3/kv/put", r#"{"key":"YQ==","value":"Yg=="}"#);
    for addr in [p.etcd.endpoint(), p.oxcd()] {
        let r = post(&addr, "/v3/maintenance/snapshot", "{}");
        if !served(&r) {
            return;
        }
        assert_eq!(r.status, 200, "{addr}");
        let text = r.text();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        assert!(!lines.is_empty(), "{addr}: empty snapshot stream");
        for line in &lines {
            assert!(line["result"]["blob"].is_string(), "{addr}: {line}");
        }
        // The last chunk leaves nothing remaining (zero is left out, as etcd writes it).
        assert!(
            lines.last().unwrap()["result"]
                .get("remaining_bytes")
                .is_none(),
            "{addr}: {}",
            lines.last().unwrap()
        );
    }
}

#[test]
fn lock_and_election_routes() {
    let p = Pair::start();
    // Before any leader: etcd's error.
    let (path, body) = ("/v3/election/leader", r#"{"name":"ZWw="}"#);
    let want = post(&p.etcd.endpoint(), path, body);
    let got = post(&p.oxcd(), path, body);
    if !served(&got) {
        return;
    }
    assert_same(path, body, &want, &got);
    // The same lease id on both, so lock and election keys (name/lease-hex) are equal.
    p.check("/v3/lease/grant", r#"{"TTL":60,"ID":4660}"#);
    p.check("/v3/lock/lock", r#"{"name":"bG9jaw==","lease":"4660"}"#);
    p.check(
        "/v3/kv/range",
        r#"{"key":"bG9jaw==","range_end":"bG9jaw=="}"#,
    );
    p.check("/v3/lock/unlock", r#"{"key":"bG9jay8xMjM0"}"#);
    p.check(
        "/v3/election/campaign",
        r#"{"name":"ZWw=","lease":"4660","value":"djE="}"#,
    );
    p.check("/v3/election/leader", r#"{"name":"ZWw="}"#);
    let leader = r#"{"name":"ZWw=","key":"ZWwvMTIzNA==","rev":"4","lease":"4660"}"#;
    let proclaimed = p.check(
        "/v3/election/proclaim",
        &format!(r#"{{"leader":{leader},"value":"djI="}}"#),
    );
    assert_eq!(proclaimed.status, 200, "{}", proclaimed.text());
    // Observe streams the current leader first.
    let mut want = Stream::open(
        &p.etcd.endpoint(),
        "/v3/election/observe",
        r#"{"name":"ZWw="}"#,
    );
    let mut got = Stream::open(&p.oxcd(), "/v3/election/observe", r#"{"name":"ZWw="}"#);
    assert_eq!(got.status, want.status);
    let w = want
        .next_line(Duration::from_secs(10))
        .expect("etcd observe");
    let g = got
        .next_line(Duration::from_secs(10))
        .expect("oxcd observe");
    assert_eq!(normalize(&g), normalize(&w));
    p.check("/v3/election/resign", &format!(r#"{{"leader":{leader}}}"#));
    p.check("/v3/election/leader", r#"{"name":"ZWw="}"#);
}

fn b64(s: &str) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &x)| acc | (u32::from(x) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn b64_is_standard() {
    assert_eq!(b64("foo"), "Zm9v");
    assert_eq!(b64("foo1"), "Zm9vMQ==");
    assert_eq!(b64("ab"), "YWI=");
}
