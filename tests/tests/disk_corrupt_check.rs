//! Corruption is detected, not served (issue 16): the corruption checks of etcd's
//! `etcdserver/corrupt.go`, on three members, one of whose backend is changed while it is down
//! as etcd's TestEtcdCorruptHash changes its bbolt file: every key's first byte is incremented
//! in place, revisions and the rest untouched, so the file is sound but holds other data than
//! its peers'.
//!
//! - `--experimental-initial-corrupt-check`: the changed member refuses to start, with etcd's
//!   message; an unchanged member passes the same check.
//! - `--experimental-corrupt-check-time`: the leader finds the mismatch and raises the CORRUPT
//!   alarm; writes are then refused with `etcdserver: corrupt cluster`, reads go on.

use std::path::Path;
use std::time::Duration;

use oxcd_api::mvccpb::KeyValue;
use oxcd_e2e::{wait_until, Cluster, Member};
use oxcd_storage::{schema, Backend, BackendConfig};
use prost::Message as _;
use redb::ReadableTable as _;

/// Increments the first byte of every key stored in a stopped member's backend; returns how
/// many revisions were changed.
fn change_every_key(db: &Path) -> usize {
    let backend = Backend::open(db, BackendConfig::default()).expect("open the backend");
    let batch = backend.begin_write().unwrap();
    let mut changed = 0;
    {
        let mut table = batch.txn().open_table(schema::KEY).unwrap();
        let rows: Vec<(Vec<u8>, Vec<u8>)> = table
            .iter()
            .unwrap()
            .map(|row| {
                let (k, v) = row.unwrap();
                (k.value().to_vec(), v.value().to_vec())
            })
            .collect();
        for (revision, value) in rows {
            let mut kv = KeyValue::decode(&value[..]).unwrap();
            kv.key[0] += 1;
            table
                .insert(&revision[..], &kv.encode_to_vec()[..])
                .unwrap();
            changed += 1;
        }
    }
    batch.commit().unwrap();
    backend.close().unwrap();
    changed
}

/// Puts ten keys, then waits until every member reports the same HashKV at the same revision.
fn write_and_converge(cluster: &Cluster) {
    for i in 0..10 {
        cluster
            .etcdctl(&["put", &format!("foo{i:05}"), &format!("v{i:05}")])
            .expect_success();
    }
    wait_until(
        "every member has the same hash",
        Duration::from_secs(20),
        || {
            let hashes: Vec<(u64, u64)> = cluster
                .members()
                .iter()
                .map(|m| hash_kv(m).unwrap_or_default())
                .collect();
            (hashes[0].0 > 0 && hashes.iter().all(|h| *h == hashes[0])).then_some(())
        },
    );
}

/// A member's (revision, hash) as `etcdctl endpoint hashkv` reports it.
fn hash_kv(member: &Member) -> Option<(u64, u64)> {
    let out = member.etcdctl(&["--command-timeout=2s", "endpoint", "hashkv", "-w", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).ok()?;
    let h = &v[0]["HashKV"];
    Some((h["header"]["revision"].as_u64()?, h["hash"].as_u64()?))
}

fn member_id(cluster: &Cluster, index: usize) -> u64 {
    let name = cluster.member(index).name().to_owned();
    cluster.member_id(&name).expect("member id")
}

#[test]
fn initial_check_refuses_a_member_whose_keys_changed() {
    oxcd_e2e::oxcd_only!();
    let mut cluster = Cluster::start(3);
    write_and_converge(&cluster);
    let id = member_id(&cluster, 0);

    // An unchanged member passes the check and serves.
    let healthy = cluster.member_mut(1);
    healthy.stop();
    healthy.set_env("ETCD_EXPERIMENTAL_INITIAL_CORRUPT_CHECK", Some("true"));
    healthy.restart();
    assert!(
        healthy
            .log_since_start()
            .contains("initial corruption checking passed; no corruption"),
        "no check logged:\n{}",
        healthy.log_tail(20)
    );

    let changed = cluster.member_mut(0);
    changed.stop();
    let n = change_every_key(&changed.data_dir().join("member/snap/db"));
    assert!(n >= 10, "only {n} revisions in the backend");
    changed.set_env("ETCD_EXPERIMENTAL_INITIAL_CORRUPT_CHECK", Some("true"));
    changed.respawn();
    let status = changed.wait_exit(Duration::from_secs(60));
    assert!(!status.success(), "a member with changed keys started");
    let log = changed.log_since_start();
    let expected = format!("{id:016x} found data inconsistency with peers");
    assert!(
        log.contains(&expected) && log.contains("found different hash values from remote peer"),
        "expected {expected:?}:\n{}",
        changed.log_tail(20)
    );

    // Without the check the same member starts: the check is what refused it.
    changed.set_env("ETCD_EXPERIMENTAL_INITIAL_CORRUPT_CHECK", None);
    changed.restart();
}

#[test]
fn periodic_check_raises_the_corrupt_alarm() {
    oxcd_e2e::oxcd_only!();
    let mut cluster = Cluster::builder(3)
        .configure(|b| b.arg("--experimental-corrupt-check-time=1s"))
        .start();
    write_and_converge(&cluster);
    // Agreeing members raise nothing, across several checks.
    std::thread::sleep(Duration::from_secs(3));
    let alarms = cluster.etcdctl(&["alarm", "list"]);
    assert_eq!(alarms.expect_success(), "", "alarm on a sound cluster");

    let leader = wait_until("a leader", Duration::from_secs(10), || cluster.leader());
    let follower = (leader + 1) % 3;
    let member = cluster.member_mut(follower);
    member.stop();
    change_every_key(&member.data_dir().join("member/snap/db"));
    member.restart();

    let leader_endpoint = cluster.member(leader).endpoint();
    wait_until("the CORRUPT alarm", Duration::from_secs(30), || {
        let out = oxcd_e2e::etcdctl(&leader_endpoint, &["alarm", "list"]);
        // etcdctl prints the alarm as protobuf text, where member 0 leaves no field.
        (out.stdout.trim() == "alarm:CORRUPT").then_some(())
    });
    let put = cluster.member(leader).etcdctl(&["put", "after", "corrupt"]);
    assert!(
        !put.success() && put.stderr.contains("etcdserver: corrupt cluster"),
        "write accepted on a corrupt cluster: {put}"
    );
    let get = cluster
        .member(leader)
        .etcdctl(&["get", "foo00001", "--print-value-only"]);
    assert_eq!(get.expect_success().trim(), "v00001", "reads go on");
}
