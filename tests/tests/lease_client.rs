//! The Lease service through the `etcd-client` crate (issue 4): grant, revoke, keepalive,
//! time-to-live and list with etcd's answers and errors; expiry timing; keys attached by put
//! and txn; a revoke as one revision; leases across restarts.

use std::fmt::Debug;
use std::time::{Duration, Instant};

use etcd_client::{
    Client, Compare, CompareOp, Error, EventType, GetOptions, LeaseGrantOptions,
    LeaseTimeToLiveOptions, PutOptions, Txn, TxnOp, WatchOptions,
};
use oxcd_e2e::{oxcd_only, Member};
use tonic::Code;

async fn connect(member: &Member) -> Client {
    Client::connect([member.endpoint()], None)
        .await
        .unwrap_or_else(|e| panic!("connect to {}: {e}", member.endpoint()))
}

#[track_caller]
fn expect_status<T: Debug>(result: Result<T, Error>, code: Code, message: &str) {
    match result {
        Err(Error::GRpcStatus(status)) => assert_eq!(
            (status.code(), status.message()),
            (code, message),
            "wrong gRPC status"
        ),
        other => panic!("expected gRPC {code:?} {message:?}, got {other:?}"),
    }
}

async fn exists(c: &mut Client, key: &str) -> bool {
    !c.get(key, None).await.unwrap().kvs().is_empty()
}

async fn ttl_of(c: &mut Client, id: i64) -> i64 {
    c.lease_time_to_live(id, None).await.unwrap().ttl()
}

#[tokio::test]
async fn grant_assigns_ids_raises_short_ttls_and_refuses_duplicates_and_huge_ttls() {
    let member = Member::start_single();
    let mut c = connect(&member).await;

    let a = c.lease_grant(1, None).await.unwrap();
    assert!(a.id() > 0, "assigned ids are positive: {}", a.id());
    assert_eq!(a.ttl(), 2, "etcd's minimum TTL with default timeouts");
    let b = c.lease_grant(30, None).await.unwrap();
    assert_ne!(a.id(), b.id());
    assert_eq!(b.ttl(), 30);

    let chosen = c
        .lease_grant(10, Some(LeaseGrantOptions::new().with_id(0x1234)))
        .await
        .unwrap();
    assert_eq!((chosen.id(), chosen.ttl()), (0x1234, 10));
    expect_status(
        c.lease_grant(10, Some(LeaseGrantOptions::new().with_id(0x1234)))
            .await,
        Code::FailedPrecondition,
        "etcdserver: lease already exists",
    );
    expect_status(
        c.lease_grant(9_000_000_001, None).await,
        Code::OutOfRange,
        "etcdserver: too large lease TTL",
    );
    let max = c.lease_grant(9_000_000_000, None).await.unwrap();
    assert_eq!(max.ttl(), 9_000_000_000);

    let mut listed: Vec<i64> = c
        .leases()
        .await
        .unwrap()
        .leases()
        .iter()
        .map(|l| l.id())
        .collect();
    listed.sort();
    let mut want = vec![a.id(), b.id(), 0x1234, max.id()];
    want.sort();
    assert_eq!(listed, want);
}

#[tokio::test]
async fn revoke_and_time_to_live_of_unknown_leases() {
    let member = Member::start_single();
    let mut c = connect(&member).await;
    expect_status(
        c.lease_revoke(0x77).await,
        Code::NotFound,
        "etcdserver: requested lease not found",
    );
    // Not an error: TTL -1, as etcd.
    let ttl = c.lease_time_to_live(0x77, None).await.unwrap();
    assert_eq!((ttl.id(), ttl.ttl(), ttl.granted_ttl()), (0x77, -1, 0));
}

#[tokio::test]
async fn a_key_is_gone_within_a_second_after_its_lease_ttl() {
    let member = Member::start_single();
    let mut c = connect(&member).await;
    let before_grant = Instant::now();
    let lease = c.lease_grant(3, None).await.unwrap().id();
    let after_grant = Instant::now();
    c.put("ephemeral", "v", Some(PutOptions::new().with_lease(lease)))
        .await
        .unwrap();

    // Not before its time...
    tokio::time::sleep_until((before_grant + Duration::from_millis(2500)).into()).await;
    assert!(exists(&mut c, "ephemeral").await, "expired early");
    // ...and within a second after it.
    let deadline = after_grant + Duration::from_secs(4);
    while exists(&mut c, "ephemeral").await {
        assert!(
            Instant::now() < deadline,
            "key still there 1 s after its lease's TTL"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let gone_after = before_grant.elapsed();
    assert!(gone_after >= Duration::from_secs(3), "{gone_after:?}");
    assert_eq!(ttl_of(&mut c, lease).await, -1, "the lease is gone too");
}

#[tokio::test]
async fn keepalive_keeps_a_lease_and_its_keys() {
    let member = Member::start_single();
    let mut c = connect(&member).await;
    let lease = c.lease_grant(2, None).await.unwrap().id();
    c.put("kept", "v", Some(PutOptions::new().with_lease(lease)))
        .await
        .unwrap();
    let (mut keeper, mut responses) = c.lease_keep_alive(lease).await.unwrap();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        keeper.keep_alive().await.unwrap();
        let resp = responses.message().await.unwrap().expect("a response");
        assert_eq!((resp.id(), resp.ttl()), (lease, 2));
        assert!(resp.header().unwrap().revision() > 0);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        exists(&mut c, "kept").await,
        "kept alive for 5 s of a 2 s TTL"
    );
    let ttl = ttl_of(&mut c, lease).await;
    assert!((1..=2).contains(&ttl), "ttl {ttl}");

    // Unknown (here: revoked) leases get TTL 0 on the stream, not an error.
    c.lease_revoke(lease).await.unwrap();
    keeper.keep_alive().await.unwrap();
    let resp = responses.message().await.unwrap().expect("a response");
    assert_eq!((resp.id(), resp.ttl()), (lease, 0));
    assert!(!exists(&mut c, "kept").await);
}

#[tokio::test]
async fn revoke_deletes_every_attached_key_in_one_revision_seen_once_by_a_watcher() {
    let member = Member::start_single();
    let mut c = connect(&member).await;
    let lease = c.lease_grant(60, None).await.unwrap().id();
    for key in ["job/a", "job/b", "job/c"] {
        c.put(key, "v", Some(PutOptions::new().with_lease(lease)))
            .await
            .unwrap();
    }
    c.put("job/free", "v", None).await.unwrap();
    let ttl = c
        .lease_time_to_live(lease, Some(LeaseTimeToLiveOptions::new().with_keys()))
        .await
        .unwrap();
    let mut keys: Vec<&[u8]> = ttl.keys().iter().map(Vec::as_slice).collect();
    keys.sort();
    assert_eq!(keys, [&b"job/a"[..], b"job/b", b"job/c"]);
    assert_eq!(ttl.granted_ttl(), 60);

    let mut watch = c
        .watch("job/", Some(WatchOptions::new().with_prefix()))
        .await
        .unwrap();
    let created = watch.message().await.unwrap().expect("created");
    assert!(created.created());

    let rev_before = c
        .get("job/free", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    let revoked = c.lease_revoke(lease).await.unwrap();
    let rev = revoked.header().unwrap().revision();
    assert_eq!(rev, rev_before + 1, "one revision for all deletions");

    let resp = tokio::time::timeout(Duration::from_secs(5), watch.message())
        .await
        .expect("watch response")
        .unwrap()
        .expect("a response");
    let mut deleted: Vec<(Vec<u8>, i64)> = resp
        .events()
        .iter()
        .map(|e| {
            assert_eq!(e.event_type(), EventType::Delete);
            let kv = e.kv().unwrap();
            (kv.key().to_vec(), kv.mod_revision())
        })
        .collect();
    deleted.sort();
    assert_eq!(
        deleted,
        [
            (b"job/a".to_vec(), rev),
            (b"job/b".to_vec(), rev),
            (b"job/c".to_vec(), rev)
        ]
    );
    // Nothing more: each deletion was seen exactly once.
    let more = tokio::time::timeout(Duration::from_millis(700), watch.message()).await;
    assert!(more.is_err(), "unexpected second response: {more:?}");
    let left = c
        .get("job/", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    assert_eq!(left.kvs().len(), 1);
}

#[tokio::test]
async fn puts_and_txns_check_leases_and_ignore_lease_keeps_one() {
    let member = Member::start_single();
    let mut c = connect(&member).await;
    expect_status(
        c.put("k", "v", Some(PutOptions::new().with_lease(0x99)))
            .await,
        Code::NotFound,
        "etcdserver: requested lease not found",
    );
    let txn = Txn::new().and_then([TxnOp::put(
        "k",
        "v",
        Some(PutOptions::new().with_lease(0x99)),
    )]);
    expect_status(
        c.txn(txn).await,
        Code::NotFound,
        "etcdserver: requested lease not found",
    );

    let lease = c.lease_grant(60, None).await.unwrap().id();
    c.put("k", "v1", Some(PutOptions::new().with_lease(lease)))
        .await
        .unwrap();
    c.put("k", "v2", Some(PutOptions::new().with_ignore_lease()))
        .await
        .unwrap();
    let kv = c.get("k", None).await.unwrap().kvs()[0].clone();
    assert_eq!((kv.value(), kv.lease()), (&b"v2"[..], lease));

    // Compare on the lease.
    let same = Txn::new()
        .when([Compare::lease("k", CompareOp::Equal, lease)])
        .and_then([TxnOp::put("matched", "yes", None)]);
    assert!(c.txn(same).await.unwrap().succeeded());
    let other = Txn::new().when([Compare::lease("k", CompareOp::Equal, lease + 1)]);
    assert!(!c.txn(other).await.unwrap().succeeded());

    // A put without a lease detaches the key: revoking leaves it.
    c.put("k", "v3", None).await.unwrap();
    c.lease_revoke(lease).await.unwrap();
    assert!(exists(&mut c, "k").await);
}

#[tokio::test]
async fn leases_survive_a_restart_with_their_remaining_ttl() {
    oxcd_only!();
    let mut member = Member::start_single();
    let mut c = connect(&member).await;
    let long = c.lease_grant(120, None).await.unwrap().id();
    c.put("long", "v", Some(PutOptions::new().with_lease(long)))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let before = ttl_of(&mut c, long).await;
    assert!((112..=114).contains(&before), "ttl {before}");

    // A clean stop records the remaining TTL; the restart resumes from it plus one election
    // timeout, never from the full 120 s.
    member.stop();
    member.restart();
    let mut c = connect(&member).await;
    let after = ttl_of(&mut c, long).await;
    assert!(
        after <= before + 1 && after >= before - 5,
        "ttl {before} before the restart, {after} after"
    );
    assert!(exists(&mut c, "long").await);
    let keys = c
        .lease_time_to_live(long, Some(LeaseTimeToLiveOptions::new().with_keys()))
        .await
        .unwrap();
    assert_eq!(keys.keys(), [b"long".to_vec()]);

    // After a crash the lease and its keys are still there (with no fresher checkpoint the
    // TTL may restart from the last one recorded).
    member.kill();
    member.restart();
    let mut c = connect(&member).await;
    let crashed = ttl_of(&mut c, long).await;
    assert!(crashed > 0 && crashed <= 121, "ttl {crashed}");
    assert!(exists(&mut c, "long").await);
}

#[tokio::test]
async fn a_lease_that_ran_out_while_the_member_was_down_ends_after_the_restart() {
    let mut member = Member::start_single();
    let mut c = connect(&member).await;
    let lease = c.lease_grant(2, None).await.unwrap().id();
    c.put("short", "v", Some(PutOptions::new().with_lease(lease)))
        .await
        .unwrap();
    member.kill();
    std::thread::sleep(Duration::from_secs(3));
    member.restart();
    let mut c = connect(&member).await;
    // Restored with its TTL plus one election timeout, then revoked by the new leader.
    let deadline = Instant::now() + Duration::from_secs(6);
    while exists(&mut c, "short").await {
        assert!(
            Instant::now() < deadline,
            "lease never expired after restart"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ttl_of(&mut c, lease).await, -1);
}
