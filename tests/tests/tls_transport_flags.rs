//! TLS and transport flags as etcd applies them (issue 9): `--client-crl-file` refuses a
//! revoked client certificate, `--peer-cert-allowed-cn` and `--peer-cert-allowed-hostname`
//! refuse a member whose certificate does not match, and `unix://` listen URLs serve peers
//! and clients. The scenarios are etcd's own (TestCtlV3GetRevokedCRL, TestEtcdPeerCNAuth,
//! TestEtcdPeerNameAuth, TestEtcdUnixPeers) with free ports and our harness.
//!
//! The same tests pass against real etcd:
//! `OXCD_BIN=/usr/bin/etcd cargo test -p oxcd-e2e --test tls_transport_flags`.

use std::process::Command;
use std::time::{Duration, Instant};

use oxcd_e2e::fault_run::cluster_lock;
use oxcd_e2e::ports::free_port;
use oxcd_e2e::{etcdctl, fixture, Member};

/// How long a refused member may take to log why.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(20);

fn file(name: &str) -> String {
    fixture(name).display().to_string()
}

#[test]
fn revoked_client_certificate_is_refused() {
    let member = Member::builder()
        .client_tls(true)
        .arg(format!("--client-crl-file={}", file("revoke.crl")))
        .start();
    let url = member.client_url();
    let cacert = format!("--cacert={}", file("ca.crt"));
    let revoked = etcdctl(
        &url,
        &[
            &cacert,
            &format!("--cert={}", file("server-revoked.crt")),
            &format!("--key={}", file("server-revoked.key.insecure")),
            "--dial-timeout=3s",
            "put",
            "k",
            "v",
        ],
    );
    assert!(
        !revoked.success(),
        "a revoked certificate was accepted: {revoked}"
    );
    assert!(revoked.stderr.contains("Error:"), "{revoked}");
    // A certificate the list does not name still works.
    assert_eq!(member.etcdctl(&["put", "k", "v"]).expect_success(), "OK\n");
}

/// Three members with `https` peers: m0 and m1 carry `server.crt` (CN example.com, names
/// localhost and 127.0.0.1) and allow `good`; m2 carries `server2.crt` (CN example2.com) and
/// allows `bad`. m0 and m1 form the cluster; m2 never joins, and `m2_logs` appears in its log.
fn peer_rule_refuses_third_member(flag: &str, good: &str, bad: &str, m2_logs: &str) {
    let _lock = cluster_lock();
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
    let initial_cluster = ports
        .iter()
        .enumerate()
        .map(|(i, (_, peer))| format!("m{i}=https://127.0.0.1:{peer}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut members: Vec<Member> = ports
        .iter()
        .enumerate()
        .map(|(i, &(client, peer))| {
            let (cert, key, allowed) = if i < 2 {
                ("server.crt", "server.key.insecure", good)
            } else {
                ("server2.crt", "server2.key.insecure", bad)
            };
            Member::builder()
                .name(&format!("m{i}"))
                .ports(client, peer)
                .peer_scheme("https")
                .initial_cluster(&initial_cluster)
                .args([
                    format!("--peer-cert-file={}", file(cert)),
                    format!("--peer-key-file={}", file(key)),
                    format!("--peer-trusted-ca-file={}", file("ca.crt")),
                    "--peer-client-cert-auth".to_owned(),
                    format!("--{flag}={allowed}"),
                ])
                .spawn()
        })
        .collect();
    members[0].wait_ready();
    members[1].wait_ready();
    assert_eq!(
        members[0].etcdctl(&["put", "k", "v"]).expect_success(),
        "OK\n"
    );

    let deadline = Instant::now() + REFUSAL_TIMEOUT;
    while !members[2].log_since_start().contains(m2_logs) {
        assert!(
            Instant::now() < deadline,
            "m2's log does not say {m2_logs:?}:\n{}",
            members[2].log_tail(40)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // m2 never published its client URLs (etcd lists it by its --initial-cluster name, oxcd
    // as unstarted; neither with client URLs).
    let list = members[0].etcdctl(&["member", "list"]);
    let m2_peer = format!("https://127.0.0.1:{}, ", ports[2].1);
    let m2_line = list
        .expect_success()
        .lines()
        .find(|l| l.contains(&m2_peer))
        .unwrap_or_else(|| panic!("m2 is not in the member list: {list}"));
    assert!(
        m2_line.ends_with(", , false"),
        "m2 must not have joined: {list}"
    );
    assert!(!members[2]
        .etcdctl(&[
            "--dial-timeout=1s",
            "--command-timeout=2s",
            "endpoint",
            "health"
        ])
        .success());
    for member in &mut members {
        member.kill();
    }
}

/// etcd's TestEtcdPeerCNAuth: m0 and m1 refuse m2's server certificate when they dial it, so
/// m2 hears their `bad_certificate` alert.
#[test]
fn peer_with_a_disallowed_common_name_is_refused() {
    peer_rule_refuses_third_member(
        "peer-cert-allowed-cn",
        "example.com",
        "example2.com",
        "remote error: tls: bad certificate",
    );
}

/// etcd's TestEtcdPeerNameAuth: m2 refuses m0's and m1's certificates (not valid for
/// example2.com) when it dials them.
#[test]
fn peer_with_a_disallowed_hostname_is_refused() {
    peer_rule_refuses_third_member(
        "peer-cert-allowed-hostname",
        "localhost",
        "example2.com",
        "client certificate authentication failed",
    );
}

/// etcd's TestEtcdUnixPeers, plus a client unix socket beside the TCP one: the socket names
/// are paths relative to the server's working directory.
#[test]
fn unix_socket_peer_and_client_urls() {
    let peer = "m0.peer:1";
    let client = "m0.client:1";
    let port = free_port();
    let member = Member::builder()
        .in_temp_dir()
        .without_default_flags()
        .args([
            "--name=m0".to_owned(),
            "--data-dir=m0.etcd".to_owned(),
            format!("--listen-peer-urls=unix://{peer}"),
            format!("--initial-advertise-peer-urls=unix://{peer}"),
            format!("--initial-cluster=m0=unix://{peer}"),
            format!("--listen-client-urls=http://127.0.0.1:{port},unix://{client}"),
            format!("--advertise-client-urls=http://127.0.0.1:{port}"),
        ])
        .ports(port, free_port())
        .start();
    assert_eq!(member.etcdctl(&["put", "k", "v"]).expect_success(), "OK\n");
    let dir = member.temp_dir().expect("temp dir").to_path_buf();
    assert!(
        dir.join(peer).exists(),
        "no peer socket in {}",
        dir.display()
    );

    let socket = dir.join(client);
    let out = Command::new("curl")
        .args(["-sS", "-m", "5", "--unix-socket"])
        .arg(&socket)
        .arg("http://localhost/health")
        .output()
        .expect("run curl");
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(body.contains(r#""health":"true""#), "{out:?}");
}
