//! The real etcdctl 3.4.23's lease commands (issue 4): `lease grant / revoke / timetolive
//! [--keys] / list / keep-alive [--once]` and `put --lease`, compared with real etcd where the
//! output is deterministic, and checked by pattern where it holds fresh ids.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use etcd_client::{Client, LeaseGrantOptions};
use oxcd_e2e::{etcdctl_bin, Member, Oracle};
use regex::Regex;

/// Grants lease `id` (hex as etcdctl shows it) with `ttl` on a member, through gRPC: etcdctl
/// cannot choose an id, and fixed ids make the outputs of both servers comparable.
async fn grant(member: &Member, id: i64, ttl: i64) {
    let mut c = Client::connect([member.endpoint()], None).await.unwrap();
    c.lease_grant(ttl, Some(LeaseGrantOptions::new().with_id(id)))
        .await
        .unwrap();
}

#[tokio::test]
async fn lease_commands_print_what_real_etcd_prints() {
    let oracle = Oracle::start();
    for member in [oracle.reference(), oracle.subject()] {
        grant(member, 0x1234, 600).await;
        grant(member, 0x5678, 900).await;
    }
    for w in ["simple", "json", "fields"] {
        oracle.check(&["put", "--lease=1234", &format!("a-{w}"), "1", "-w", w]);
    }
    oracle.check(&["put", "--lease=5678", "b", "2"]);
    oracle.check(&["get", "a-json", "-w", "json"]);
    oracle.check(&["get", "", "--prefix", "-w", "fields"]);
    oracle.check(&["lease", "keep-alive", "--once", "1234"]);
    oracle.check(&["lease", "keep-alive", "--once", "5678", "-w", "json"]);
    oracle.check(&["lease", "timetolive", "99"]);
    oracle.check(&["lease", "timetolive", "99", "-w", "json"]);
    oracle.check(&["lease", "keep-alive", "--once", "99"]);
    oracle.check(&["put", "--lease=99", "x", "y"]);
    oracle.check(&["lease", "revoke", "99"]);
    oracle.check(&["lease", "grant", "9000000001"]);
    oracle.check(&["lease", "revoke", "1234"]);
    oracle.check(&["get", "", "--prefix", "-w", "json"]);
    oracle.check(&["lease", "list"]);
    oracle.check(&["put", "b", "3", "--ignore-lease"]);
    oracle.check(&["get", "b", "-w", "json"]);
    oracle.check(&["lease", "revoke", "5678", "-w", "json"]);
    oracle.check(&["get", "", "--prefix", "--keys-only"]);
}

fn granted_id(out: &str) -> String {
    let re = Regex::new(r"^lease ([0-9a-f]+) granted with TTL\((\d+)s\)").unwrap();
    let caps = re
        .captures(out.trim())
        .unwrap_or_else(|| panic!("unexpected grant output {out:?}"));
    caps[1].to_string()
}

#[test]
fn grant_put_timetolive_keys_list_and_revoke() {
    let member = Member::start_single();
    let out = member.etcdctl(&["lease", "grant", "100"]);
    let id = granted_id(out.expect_success());
    assert!(out.stdout.contains("granted with TTL(100s)"), "{out}");
    member
        .etcdctl(&["put", &format!("--lease={id}"), "k1", "v"])
        .expect_success();
    member
        .etcdctl(&["put", &format!("--lease={id}"), "k2", "v"])
        .expect_success();

    let ttl = member.etcdctl(&["lease", "timetolive", "--keys", &id]);
    let re = Regex::new(&format!(
        r"^lease {id} granted with TTL\(100s\), remaining\((99|100)s\), attached keys\(\[k1 k2\]\)$"
    ))
    .unwrap();
    assert!(re.is_match(ttl.expect_success().trim()), "{ttl}");

    let list = member.etcdctl(&["lease", "list"]);
    assert_eq!(list.expect_success(), format!("found 1 leases\n{id}\n"));

    let revoked = member.etcdctl(&["lease", "revoke", &id]);
    assert_eq!(revoked.expect_success(), format!("lease {id} revoked\n"));
    let left = member.etcdctl(&["get", "k", "--prefix"]);
    assert_eq!(left.expect_success(), "");
    let gone = member.etcdctl(&["lease", "timetolive", &id]);
    assert_eq!(
        gone.expect_success(),
        format!("lease {id} already expired\n")
    );
    let list = member.etcdctl(&["lease", "list"]);
    assert_eq!(list.expect_success(), "found 0 leases\n");
}

#[test]
fn keep_alive_keeps_the_key_until_it_stops() {
    let member = Member::start_single();
    let id = granted_id(member.etcdctl(&["lease", "grant", "2"]).expect_success());
    member
        .etcdctl(&["put", &format!("--lease={id}"), "alive", "v"])
        .expect_success();

    let mut keeper = Command::new(etcdctl_bin())
        .arg(format!("--endpoints={}", member.endpoint()))
        .args(["lease", "keep-alive", &id])
        .env("ETCDCTL_API", "3")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start etcdctl lease keep-alive");
    std::thread::sleep(Duration::from_secs(5));
    let present = member.etcdctl(&["get", "alive", "--print-value-only"]);
    let _ = keeper.kill();
    let output = keeper.wait_with_output().unwrap();
    assert_eq!(present.expect_success(), "v\n", "kept alive past its TTL");
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(
        printed.contains(&format!("lease {id} keepalived with TTL(2)")),
        "keep-alive printed {printed:?}"
    );

    // Once nobody renews it, the lease ends within its TTL and a second.
    let stopped = Instant::now();
    loop {
        let out = member.etcdctl(&["get", "alive", "--print-value-only"]);
        if out.expect_success().is_empty() {
            break;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(4),
            "key still there 4 s after the last keepalive"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
