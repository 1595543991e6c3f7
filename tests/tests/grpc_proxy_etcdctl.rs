//! `oxcd grpc-proxy start` (issue 9): the real etcdctl talks to a member through the proxy:
//! put, get, txn, watch and lease keep-alive streams, in plain text and with TLS on both
//! sides; a proxy client certificate with a Common Name is refused with etcd's message; an
//! endpoint that cannot be dialed is passed over for the next one.
//!
//! The same tests pass with etcd's own proxy:
//! `OXCD_BIN=/usr/bin/etcd cargo test -p oxcd-e2e --test grpc_proxy_etcdctl`.

mod http_support;

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use http_support::get;
use oxcd_e2e::ports::free_port;
use oxcd_e2e::{etcdctl, etcdctl_stdin, fixture, server_bin, wait_until, Member};

/// How long a proxy may take to log that it started, and a watch to show an event.
const START_TIMEOUT: Duration = Duration::from_secs(20);

fn file(name: &str) -> String {
    fixture(name).display().to_string()
}

/// One `grpc-proxy start` process, killed when dropped; its stderr goes to a file.
struct Proxy {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Proxy {
    /// Spawns the proxy on a free port with `args`; does not wait for it.
    fn spawn(args: &[String]) -> Proxy {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let log = dir.path().join("proxy.log");
        let child = Command::new(server_bin())
            .args(["grpc-proxy", "start"])
            .arg(format!("--listen-addr=127.0.0.1:{port}"))
            .arg(format!("--data-dir={}", dir.path().join("proxy").display()))
            .args(args)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log).expect("create proxy log"))
            .spawn()
            .expect("spawn grpc-proxy");
        Proxy {
            child,
            port,
            log,
            _dir: dir,
        }
    }

    /// Spawns the proxy and waits until it says it started.
    fn start(args: &[String]) -> Proxy {
        let mut proxy = Proxy::spawn(args);
        wait_until("the proxy to start", START_TIMEOUT, || {
            if let Ok(Some(status)) = proxy.child.try_wait() {
                panic!("proxy exited ({status}):\n{}", proxy.log());
            }
            proxy.log().contains("started gRPC proxy").then_some(())
        });
        proxy
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn endpoint(&self, scheme: &str) -> String {
        format!("{scheme}://127.0.0.1:{}", self.port)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `etcdctl watch`, its stdout in a file; killed when dropped.
struct Watch {
    child: Child,
    out: PathBuf,
    _dir: tempfile::TempDir,
}

impl Watch {
    fn start(endpoint: &str, args: &[&str]) -> Watch {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = dir.path().join("watch.out");
        let child = Command::new(oxcd_e2e::etcdctl_bin())
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={endpoint}"))
            .arg("watch")
            .args(args)
            .stdin(Stdio::null())
            .stdout(File::create(&out).expect("create watch output"))
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn etcdctl watch");
        Watch {
            child,
            out,
            _dir: dir,
        }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn etcdctl_through_the_proxy_in_plain_text() {
    let member = Member::start_single();
    let proxy = Proxy::start(&[format!("--endpoints={}", member.client_url())]);
    let via = proxy.endpoint("http");

    assert_eq!(etcdctl(&via, &["put", "k1", "v1"]).expect_success(), "OK\n");
    assert_eq!(etcdctl(&via, &["get", "k1"]).expect_success(), "k1\nv1\n");
    // What went through the proxy is in the member.
    assert_eq!(
        member
            .etcdctl(&["get", "k1", "--print-value-only"])
            .expect_success(),
        "v1\n"
    );

    let txn = etcdctl_stdin(
        &via,
        &["txn"],
        "value(\"k1\") = \"v1\"\n\nput k2 v2\n\nput k2 other\n\n",
    );
    assert_eq!(txn.expect_success(), "SUCCESS\n\nOK\n");
    assert_eq!(
        member
            .etcdctl(&["get", "k2", "--print-value-only"])
            .expect_success(),
        "v2\n"
    );

    // A watch stream through the proxy sees a put made directly on the member.
    let watch = Watch::start(&via, &["w"]);
    wait_until("the watch to see the put", START_TIMEOUT, || {
        member.etcdctl(&["put", "w", "seen"]).expect_success();
        watch.output().contains("PUT\nw\nseen\n").then_some(())
    });
    drop(watch);

    // Leases: grant, a keep-alive stream, time-to-live, a key attached, revoke.
    let granted = etcdctl(&via, &["lease", "grant", "60"]);
    let id = granted
        .expect_success()
        .split_whitespace()
        .nth(1)
        .expect("lease id in `lease grant` output")
        .to_owned();
    let kept = etcdctl(&via, &["lease", "keep-alive", "--once", &id]);
    assert!(
        kept.expect_success()
            .contains(&format!("lease {id} keepalived with TTL(")),
        "{kept}"
    );
    etcdctl(&via, &["put", "leased", "x", &format!("--lease={id}")]).expect_success();
    let ttl = etcdctl(&via, &["lease", "timetolive", &id, "--keys"]);
    assert!(
        ttl.expect_success().contains("attached keys([leased])"),
        "{ttl}"
    );
    etcdctl(&via, &["lease", "revoke", &id]).expect_success();
    assert_eq!(member.etcdctl(&["get", "leased"]).expect_success(), "");

    // Calls that dial the endpoint alone (whole URL as :authority) go through too.
    let status = etcdctl(&via, &["endpoint", "status"]);
    assert!(status.expect_success().contains(&via), "{status}");

    // Over HTTP/1 the proxy serves a member's /metrics and /health.
    let addr = format!("127.0.0.1:{}", proxy.port);
    let metrics = get(&addr, "/metrics");
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.text().contains("etcd_server_has_leader 1"),
        "{}",
        metrics.text()
    );
    let health = get(&addr, "/health");
    assert_eq!(health.status, 200);
    assert!(
        health.text().contains(r#""health":"true""#),
        "{}",
        health.text()
    );
}

#[test]
fn tls_towards_the_member_and_from_the_client() {
    let member = Member::builder().client_tls(true).start();
    let proxy = Proxy::start(&[
        format!("--endpoints={}", member.client_url()),
        // Towards the member: a client certificate without a Common Name, as etcd requires.
        format!("--cert={}", file("server3.crt")),
        format!("--key={}", file("server3.key.insecure")),
        format!("--cacert={}", file("ca.crt")),
        // Towards etcdctl: the proxy's own certificate, with etcd's cipher suite flag.
        format!("--cert-file={}", file("server.crt")),
        format!("--key-file={}", file("server.key.insecure")),
        "--listen-cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256".to_owned(),
    ]);
    let via = proxy.endpoint("https");
    let cacert = format!("--cacert={}", file("ca.crt"));
    assert_eq!(
        etcdctl(&via, &[&cacert, "put", "secure", "yes"]).expect_success(),
        "OK\n"
    );
    assert_eq!(
        member
            .etcdctl(&["get", "secure", "--print-value-only"])
            .expect_success(),
        "yes\n"
    );
    // A client that does not trust the proxy's certificate is refused.
    let untrusting = etcdctl(&via, &["--dial-timeout=2s", "get", "secure"]);
    assert!(!untrusting.success(), "{untrusting}");
}

#[test]
fn a_client_certificate_with_a_common_name_is_refused() {
    let mut proxy = Proxy::spawn(&[
        format!("--cert={}", file("server2.crt")),
        format!("--key={}", file("server2.key.insecure")),
        format!("--cacert={}", file("ca.crt")),
    ]);
    let status = wait_until("the proxy to exit", START_TIMEOUT, || {
        proxy.child.try_wait().expect("wait on the proxy")
    });
    assert!(!status.success());
    let log = proxy.log();
    assert!(
        log.contains("cert has non empty Common Name (example2.com)"),
        "{log}"
    );
}

#[test]
fn an_endpoint_that_cannot_be_dialed_is_passed_over() {
    let member = Member::start_single();
    let nobody = format!("http://127.0.0.1:{}", free_port());
    let proxy = Proxy::start(&[format!("--endpoints={nobody},{}", member.client_url())]);
    let via = proxy.endpoint("http");
    for i in 0..6 {
        let key = format!("f{i}");
        assert_eq!(etcdctl(&via, &["put", &key, "v"]).expect_success(), "OK\n");
    }
    assert_eq!(
        member
            .etcdctl(&["get", "f", "--prefix", "--keys-only"])
            .expect_success()
            .lines()
            .filter(|l| !l.is_empty())
            .count(),
        6
    );
}
