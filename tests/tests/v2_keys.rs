//! The v2 keys API (`--enable-v2`) against real etcd 3.4: every option of `/v2/keys`, sent
//! to both servers alike as form bodies or query parameters; status, the v2 headers and the
//! body must match byte for byte, apart from what must differ (the cluster id, expiration
//! times and ports). Also `waitIndex` history and its cleared error, stream watches (also
//! from the history), unclean paths (Go's mux redirects them), the members, machines and
//! auth paths, and what a server without `--enable-v2` answers.

mod http_support;

use std::cell::Cell;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use http_support::{request, Response};
use oxcd_e2e::{real_etcd_bin, server_bin, Member};
use regex::Regex;

const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");

/// Real etcd and the server under test, both with `--enable-v2`, fed the same requests.
struct Pair {
    etcd: Member,
    oxcd: Member,
    /// Whether `X-Raft-Index` must be equal. Once keys with a TTL exist, each leader proposes
    /// a SYNC twice a second on its own clock, so the two raft logs grow apart by timing.
    exact_raft_index: Cell<bool>,
}

impl Pair {
    fn start() -> Pair {
        let builder = Member::builder().name("v2").arg("--enable-v2");
        let mut etcd = builder.clone().bin(real_etcd_bin()).spawn();
        let mut oxcd = builder.bin(server_bin()).spawn();
        etcd.wait_ready();
        oxcd.wait_ready();
        Pair {
            etcd,
            oxcd,
            exact_raft_index: Cell::new(true),
        }
    }

    /// Sends `method path` with a form `body` to both; panics unless they answer the same.
    #[track_caller]
    fn check(&self, method: &str, path: &str, body: &str) -> Response {
        let want = send(&self.etcd.endpoint(), method, path, body);
        let got = send(&self.oxcd.endpoint(), method, path, body);
        let exact = self.exact_raft_index.get();
        let (w, g) = (comparable(&want, exact), comparable(&got, exact));
        assert!(
            w == g,
            "{method} {path} {body}\n real etcd: {w}\n oxcd:      {g}"
        );
        got
    }
}

fn send(addr: &str, method: &str, path: &str, body: &str) -> Response {
    let headers: &[(&str, &str)] = if body.is_empty() { &[] } else { &[FORM] };
    request(addr, method, path, headers, body.as_bytes())
}

/// Status, the v2 headers and the body, with times and ports blanked; the raft index
/// blanked too unless `exact_raft_index`, but then it must still be at least the etcd index
/// (every v2 write is one raft entry).
fn comparable(r: &Response, exact_raft_index: bool) -> String {
    let mut out = format!("{}", r.status);
    for name in [
        "content-type",
        "x-etcd-index",
        "x-raft-index",
        "x-raft-term",
        "allow",
        "location",
    ] {
        let Some(v) = r.header(name) else { continue };
        if name == "x-raft-index" && !exact_raft_index {
            let raft: u64 = v.parse().expect("X-Raft-Index is a number");
            if let Some(etcd_index) = r.header("x-etcd-index") {
                let etcd_index: u64 = etcd_index.parse().expect("X-Etcd-Index is a number");
                assert!(
                    raft >= etcd_index,
                    "X-Raft-Index {raft} < X-Etcd-Index {etcd_index}"
                );
            }
            out.push_str(" x-raft-index=<n>");
        } else {
            out.push_str(&format!(" {name}={v}"));
        }
    }
    if r.header("x-etcd-cluster-id").is_some() {
        out.push_str(" x-etcd-cluster-id");
    }
    // Header names as written (Go's canonical case), in a fixed order.
    let mut names = r.names.clone();
    names.sort();
    out.push_str(&format!(" {names:?} "));
    out.push_str(&blank(&r.text()));
    out
}

fn blank(text: &str) -> String {
    let rules = [
        (r#""expiration":"[^"]+""#, r#""expiration":"<t>""#),
        (r"127\.0\.0\.1:\d+", "127.0.0.1:<port>"),
        (r#""(id|leader)":"[0-9a-f]+""#, r#""$1":"<id>""#),
    ];
    let mut out = text.to_owned();
    for (pattern, replacement) in rules {
        out = Regex::new(pattern)
            .unwrap()
            .replace_all(&out, replacement)
            .into_owned();
    }
    out
}

#[test]
fn keys_options_match_real_etcd() {
    let p = Pair::start();
    // Writes and reads, form and query parameters.
    p.check("PUT", "/v2/keys/foo", "value=bar");
    p.check("GET", "/v2/keys/foo", "");
    p.check("HEAD", "/v2/keys/foo", "");
    p.check("PUT", "/v2/keys/foo?value=query", "");
    p.check("PUT", "/v2/keys/foo?value=query", "value=body");
    p.check("PUT", "/v2/keys/esc", "value=%3Ca%26b%3E%22%5C%0A%E2%80%A8");
    // etcd lists a directory in Go's map order unless sorted: listings of more than one
    // node ask for sorted=true.
    p.check("GET", "/v2/keys/?sorted=true", "");
    p.check("GET", "/v2/keys?sorted=true", "");
    // prevExist, prevValue, prevIndex: create, update, compare-and-swap, their errors.
    p.check("PUT", "/v2/keys/foo", "value=x&prevExist=false");
    p.check("PUT", "/v2/keys/new", "value=x&prevExist=false");
    p.check("PUT", "/v2/keys/foo", "value=y&prevExist=true");
    p.check("PUT", "/v2/keys/none", "value=y&prevExist=true");
    p.check("PUT", "/v2/keys/foo", "value=z&prevValue=y");
    p.check("PUT", "/v2/keys/foo", "value=z&prevValue=nope");
    p.check("PUT", "/v2/keys/foo", "value=z&prevIndex=1");
    p.check("PUT", "/v2/keys/foo", "value=z&prevIndex=1&prevValue=nope");
    p.check("PUT", "/v2/keys/foo", "value=w&prevIndex=9&prevExist=true");
    p.check("PUT", "/v2/keys/foo", "value=z&prevIndex=abc");
    p.check("PUT", "/v2/keys/foo", "value=z&prevValue=");
    p.check("PUT", "/v2/keys/foo", "value=z&prevExist=maybe");
    p.check("PUT", "/v2/keys/foo", "value=v&noValueOnSuccess=true");
    // compare-and-delete.
    p.check("DELETE", "/v2/keys/foo?prevValue=nope", "");
    p.check("DELETE", "/v2/keys/foo?prevIndex=3", "");
    p.check("DELETE", "/v2/keys/foo?prevValue=v", "");
    p.check("DELETE", "/v2/keys/foo", "");
    // Directories, hidden keys, recursive and sorted listings, deletes of directories.
    p.check("PUT", "/v2/keys/dir", "dir=true");
    p.check("PUT", "/v2/keys/dir", "dir=true");
    for key in ["b", "a", "_hidden", "sub/c", "sub/_h/d"] {
        p.check("PUT", &format!("/v2/keys/dir/{key}"), "value=1");
    }
    p.check("GET", "/v2/keys/dir?sorted=true", "");
    p.check("GET", "/v2/keys/dir?recursive=true&sorted=true", "");
    p.check("GET", "/v2/keys/dir/_hidden", "");
    p.check(
        "GET",
        "/v2/keys/dir?quorum=true&recursive=true&sorted=true",
        "",
    );
    p.check("PUT", "/v2/keys/dir/a/x", "value=1");
    p.check("PUT", "/v2/keys/dir", "value=1");
    p.check("DELETE", "/v2/keys/dir", "");
    p.check("DELETE", "/v2/keys/dir?dir=true", "");
    p.check("DELETE", "/v2/keys/dir/sub?recursive=true", "");
    p.check("DELETE", "/v2/keys/dir/a?prevValue=1", "");
    p.check("PUT", "/v2/keys/empty", "dir=true");
    p.check("DELETE", "/v2/keys/empty?dir=true", "");
    // In-order keys.
    p.check("POST", "/v2/keys/queue", "value=job1");
    p.check("POST", "/v2/keys/queue", "value=job2");
    p.check("GET", "/v2/keys/queue?sorted=true", "");
    // TTLs on keys and directories, removing them, refreshing them.
    p.exact_raft_index.set(false);
    p.check("PUT", "/v2/keys/ttl", "value=v&ttl=100");
    p.check("GET", "/v2/keys/ttl", "");
    p.check("PUT", "/v2/keys/ttl", "ttl=200&refresh=true&prevExist=true");
    p.check("PUT", "/v2/keys/ttl", "ttl=&value=v&prevExist=true");
    p.check("PUT", "/v2/keys/ttl", "refresh=true");
    p.check("PUT", "/v2/keys/ttl", "refresh=true&ttl=5&value=x");
    p.check("PUT", "/v2/keys/ttl", "ttl=abc&value=x");
    p.check("PUT", "/v2/keys/tdir", "dir=true&ttl=100");
    p.check("PUT", "/v2/keys/tdir", "dir=true&ttl=200&prevExist=true");
    p.check("PUT", "/v2/keys/missing", "ttl=5&refresh=true");
    // Errors.
    p.check("GET", "/v2/keys/nope", "");
    p.check("GET", "/v2/keys/queue/nope/deeper", "");
    p.check("PUT", "/v2/keys/", "value=x");
    p.check("DELETE", "/v2/keys/?recursive=true", "");
    p.check("GET", "/v2/keys/foo?recursive=maybe", "");
    p.check("PUT", "/v2/keys/foo?wait=true", "value=x");
    p.check("PUT", "/v2/keys/foo?a=%zz", "value=x");
    p.check("PATCH", "/v2/keys/foo", "value=x");
    // A watch answered from the history.
    p.check(
        "GET",
        "/v2/keys/queue?wait=true&waitIndex=1&recursive=true",
        "",
    );
    p.check("GET", "/v2/keys/dir?wait=true&waitIndex=2", "");
    // Members, machines, store stats shape.
    p.check("GET", "/v2/members", "");
    p.check("GET", "/v2/members/leader", "");
    p.check("GET", "/v2/machines", "");
    p.check("GET", "/v2/members/nope", "");
    p.check("DELETE", "/v2/members/zz", "");
    p.check("POST", "/v2/members", "x=1");
    p.check("GET", "/v2/auth/enable", "");
    p.check("GET", "/v2/auth/users", "");
    // Auth bodies escape as Go's encoding/json does.
    p.check(
        "PUT",
        "/v2/auth/roles/esc",
        r#"{"role":"esc","permissions":{"kv":{"read":["/a<b&c>*"],"write":[]}}}"#,
    );
    p.check("GET", "/v2/auth/roles/esc", "");
    p.check("GET", "/v2/auth/roles", "");
    p.check("GET", "/v2/stats/leader", "");
    // Unclean paths: Go's mux in front of etcd answers 301 to the cleaned path.
    for (method, path) in [
        ("GET", "/v2/keys//foo"),
        ("GET", "/v2/keys/a/../foo?recursive=true"),
        ("PUT", "/v2/keys/./x"),
        ("DELETE", "/v2//keys/x/"),
        ("GET", "/v2/keys/a%2F%2Fb"),
        ("GET", "//version"),
        ("GET", "/v2/members/../machines"),
    ] {
        let r = p.check(method, path, "");
        assert_eq!(r.status, 301, "{method} {path}");
    }
    let stats = send(&p.oxcd.endpoint(), "GET", "/v2/stats/store", "");
    assert_eq!(stats.status, 200);
    assert!(
        stats.text().starts_with(r#"{"getsSuccess":"#),
        "{}",
        stats.text()
    );
    let me = send(&p.oxcd.endpoint(), "GET", "/v2/stats/self", "");
    assert!(
        me.text().contains(r#""state":"StateLeader""#),
        "{}",
        me.text()
    );
}

#[test]
fn wait_index_history_and_its_cleared_error_match_real_etcd() {
    let p = Pair::start();
    for i in 0..1010 {
        for addr in [p.etcd.endpoint(), p.oxcd.endpoint()] {
            let r = send(&addr, "PUT", "/v2/keys/k", &format!("value={i}"));
            assert!(r.status == 200 || r.status == 201, "{}", r.text());
        }
    }
    // The history holds the last 1000 events: older indexes are cleared.
    let cleared = p.check("GET", "/v2/keys/k?wait=true&waitIndex=5", "");
    assert_eq!(cleared.status, 400);
    assert!(
        cleared.text().contains(r#""errorCode":401"#),
        "{}",
        cleared.text()
    );
    p.check("GET", "/v2/keys/k?wait=true&waitIndex=100", "");
    p.check(
        "GET",
        "/v2/keys/?wait=true&waitIndex=500&recursive=true",
        "",
    );
}

/// A GET whose body is read as it arrives.
struct Watch {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Watch {
    fn open(addr: &str, path: &str) -> Watch {
        let mut stream = TcpStream::connect(addr).unwrap();
        write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        Watch {
            stream,
            buf: Vec::new(),
        }
    }

    /// The JSON lines received within `timeout` (chunk framing dropped).
    fn events(&mut self, want: usize, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let lines: Vec<String> = String::from_utf8_lossy(&self.buf)
                .lines()
                .filter(|l| l.starts_with('{'))
                .map(str::to_owned)
                .collect();
            if lines.len() >= want || Instant::now() > deadline {
                return lines;
            }
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk) {
                Ok(0) => return lines,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(_) => {}
            }
        }
    }
}

#[test]
fn stream_watches_see_every_write_in_order() {
    let p = Pair::start();
    let mut seen = Vec::new();
    for addr in [p.etcd.endpoint(), p.oxcd.endpoint()] {
        let mut watch = Watch::open(&addr, "/v2/keys/w?wait=true&stream=true&recursive=true");
        let mut once = Watch::open(&addr, "/v2/keys/w/k7?wait=true");
        std::thread::sleep(Duration::from_millis(300));
        for i in 0..200 {
            let r = send(
                &addr,
                "PUT",
                &format!("/v2/keys/w/k{}", i % 10),
                &format!("value={i}"),
            );
            assert!(r.status < 300, "{}", r.text());
        }
        send(&addr, "PUT", "/v2/keys/w/_hidden", "value=h");
        send(&addr, "DELETE", "/v2/keys/w?recursive=true", "");
        // 200 sets; the hidden key is not sent; the directory's delete comes twice, as
        // etcd tells a stream watcher of a deleted directory both as a removed path and as
        // the event's own key.
        let events = watch.events(202, Duration::from_secs(20));
        assert_eq!(events.len(), 202, "stream watch on {addr}");
        let first = once.events(1, Duration::from_secs(5));
        assert_eq!(first.len(), 1);
        seen.push((blank(&events.join("\n")), blank(&first[0])));
    }
    assert_eq!(seen[0], seen[1], "real etcd's events, then oxcd's");
}

/// A stream watch from an index still in the history gets every event from there on: the
/// history's, then the live ones. (etcd 3.4 sends the first one only and then stays silent,
/// as its history lookup answers one event; oxcd does not copy that.)
#[test]
fn stream_watch_from_the_history_sees_every_later_event() {
    let oxcd = Member::builder()
        .name("v2h")
        .arg("--enable-v2")
        .bin(server_bin())
        .start();
    let addr = oxcd.endpoint();
    let put = |key: &str, value: &str| {
        let r = send(
            &addr,
            "PUT",
            &format!("/v2/keys/{key}"),
            &format!("value={value}"),
        );
        assert!(r.status < 300, "{}", r.text());
        r.header("x-etcd-index").unwrap().parse::<u64>().unwrap()
    };
    let first = put("h/a", "0");
    for i in 1..5 {
        put("h/a", &i.to_string());
        put("h/other", &i.to_string());
    }
    let mut watch = Watch::open(
        &addr,
        &format!("/v2/keys/h/a?wait=true&stream=true&waitIndex={first}"),
    );
    let missed = watch.events(5, Duration::from_secs(10));
    assert_eq!(missed.len(), 5, "{missed:?}");
    put("h/a", "5");
    put("h/other", "5");
    put("h/a", "6");
    let all = watch.events(7, Duration::from_secs(10));
    let values: Vec<String> = all
        .iter()
        .map(|e| {
            let v: serde_json::Value = serde_json::from_str(e).unwrap();
            v["node"]["value"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(values, ["0", "1", "2", "3", "4", "5", "6"]);
}

#[test]
fn without_enable_v2_the_v2_paths_are_not_found() {
    let builder = Member::builder().name("nov2");
    let mut etcd = builder.clone().bin(real_etcd_bin()).spawn();
    let mut oxcd = builder.bin(server_bin()).spawn();
    etcd.wait_ready();
    oxcd.wait_ready();
    for path in ["/v2/keys/foo", "/v2/members", "/v2/stats/self"] {
        let want = send(&etcd.endpoint(), "GET", path, "");
        let got = send(&oxcd.endpoint(), "GET", path, "");
        assert_eq!(
            (got.status, got.text()),
            (want.status, want.text()),
            "{path}"
        );
    }
}
