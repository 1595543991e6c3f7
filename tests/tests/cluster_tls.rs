//! Peer TLS (issue 5), as etcd's e2e clusters configure it: `https` peer URLs with
//! `--peer-auto-tls`, and with the fixture certificates (`--peer-cert-file`,
//! `--peer-key-file`, `--peer-trusted-ca-file`, `--peer-client-cert-auth`). The clusters must
//! form, survive faults and membership changes over TLS (the peer proxies pass TLS through
//! untouched), and with client certificate auth refuse a peer connection without one.
//!
//! The same tests pass against real etcd:
//! `OXCD_BIN=/usr/bin/etcd cargo test -p oxcd-e2e --test cluster_tls`.

use std::process::Command;
use std::time::Duration;

use oxcd_e2e::fault_run::{cluster_lock, run_or_panic, Scenario};
use oxcd_e2e::faults::Fault;
use oxcd_e2e::{fixture, Cluster, CutMode, PeerTls};

/// Faults that make members reconnect (and so redo TLS handshakes) and a membership change.
const FAULTS: [Fault; 5] = [
    Fault::KillLeader,
    Fault::IsolateFollower(CutMode::Refuse),
    Fault::LeaderCannotSend,
    Fault::PauseLeader,
    Fault::ReplaceFollower,
];

fn assert_https_peers(cluster: &Cluster) {
    let list = cluster.member_list().expect("member list");
    assert_eq!(list.len(), cluster.len(), "{list:?}");
    for member in &list {
        assert!(
            member.peer_urls.iter().all(|u| u.starts_with("https://")),
            "{list:?}"
        );
    }
}

#[test]
fn peer_auto_tls_cluster_forms_and_survives_faults() {
    {
        let _lock = cluster_lock();
        let cluster = Cluster::builder(3).peer_tls(PeerTls::Auto).start();
        assert_https_peers(&cluster);
        cluster.etcdctl(&["put", "k", "v"]).expect_success();
        let got = cluster
            .member(2)
            .etcdctl(&["get", "k", "--print-value-only"]);
        assert_eq!(got.expect_success().trim(), "v");
    }
    let scenario = Scenario::new("peer-auto-tls", &FAULTS)
        .peer_tls(PeerTls::Auto)
        .fault_phase(Duration::from_secs(6));
    run_or_panic(&scenario);
}

#[test]
fn peer_cert_tls_with_client_cert_auth_forms_and_survives_faults() {
    let tls = PeerTls::Certs {
        client_cert_auth: true,
    };
    {
        let _lock = cluster_lock();
        let cluster = Cluster::builder(3).peer_tls(tls).start();
        assert_https_peers(&cluster);
        cluster.etcdctl(&["put", "k", "v"]).expect_success();
        let got = cluster
            .member(1)
            .etcdctl(&["get", "k", "--print-value-only"]);
        assert_eq!(got.expect_success().trim(), "v");
    }
    let scenario = Scenario::new("peer-cert-tls", &FAULTS)
        .peer_tls(tls)
        .fault_phase(Duration::from_secs(6));
    run_or_panic(&scenario);
}

/// Who curl says it is, and what it trusts.
#[derive(Clone, Copy, Debug)]
enum Curl {
    /// Trusts the fixture CA and presents a certificate it signed.
    WithCert,
    /// Trusts the fixture CA, presents no certificate.
    WithoutCert,
    /// Trusts any server (for self-signed auto TLS), presents no certificate.
    Insecure,
}

/// curl (HTTP/1.1) to a member's peer port: true when an HTTP answer came back, so the TLS
/// handshake completed.
fn peer_handshake(url: &str, how: Curl) -> bool {
    let mut curl = Command::new("curl");
    curl.args(["-s", "--http1.1", "-o", "/dev/null", "-w", "%{http_code}"])
        .args(["--max-time", "5"]);
    match how {
        Curl::WithCert => {
            curl.arg("--cacert").arg(fixture("ca.crt"));
            curl.arg("--cert").arg(fixture("server2.crt"));
            curl.arg("--key").arg(fixture("server2.key.insecure"));
        }
        Curl::WithoutCert => {
            curl.arg("--cacert").arg(fixture("ca.crt"));
        }
        Curl::Insecure => {
            curl.arg("--insecure");
        }
    }
    let out = curl
        .arg(format!("{url}/version"))
        .output()
        .expect("run curl (apt-get install curl)");
    let code = String::from_utf8_lossy(&out.stdout);
    !code.is_empty() && code != "000"
}

#[test]
fn peer_client_cert_auth_refuses_peers_without_a_certificate() {
    let _lock = cluster_lock();
    for client_cert_auth in [true, false] {
        let cluster = Cluster::builder(3)
            .peer_tls(PeerTls::Certs { client_cert_auth })
            .start();
        for member in cluster.members() {
            let url = member.peer_url();
            assert!(
                peer_handshake(&url, Curl::WithCert),
                "{}: a peer with a certificate from the trusted CA was refused at {url}",
                member.name()
            );
            // As etcd: a trusted CA file alone already requires peers to present a
            // certificate it signed (etcd's pkg/transport), --peer-client-cert-auth or not.
            assert!(
                !peer_handshake(&url, Curl::WithoutCert),
                "{} (client cert auth {client_cert_auth}): a peer without a certificate was let in at {url}",
                member.name()
            );
        }
    }
}

#[test]
fn peer_auto_tls_serves_https_without_client_certificates() {
    let _lock = cluster_lock();
    let cluster = Cluster::builder(3).peer_tls(PeerTls::Auto).start();
    for member in cluster.members() {
        let url = member.peer_url();
        assert!(
            peer_handshake(&url, Curl::Insecure),
            "{}: no TLS handshake at {url}",
            member.name()
        );
    }
}
