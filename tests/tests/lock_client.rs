//! The Lock service (v3lockpb) through the `etcd-client` crate (issue 4): mutual exclusion
//! while the holder's lease lives, hand-over on unlock and on lease end, a waiter that gives
//! up leaves the queue, and etcd's errors.

use std::time::{Duration, Instant};

use etcd_client::{Client, Error, GetOptions, LockOptions};
use oxcd_e2e::Member;
use tonic::Code;

async fn connect(member: &Member) -> Client {
    Client::connect([member.endpoint()], None)
        .await
        .unwrap_or_else(|e| panic!("connect to {}: {e}", member.endpoint()))
}

async fn lease(c: &mut Client, ttl: i64) -> i64 {
    c.lease_grant(ttl, None).await.unwrap().id()
}

async fn queued(c: &mut Client, prefix: &str) -> Vec<String> {
    c.get(prefix, Some(GetOptions::new().with_prefix()))
        .await
        .unwrap()
        .kvs()
        .iter()
        .map(|kv| kv.key_str().unwrap().to_owned())
        .collect()
}

/// Starts `Lock(name, lease)` in a task; the handle yields the lock key.
fn lock_in_background(member: &Member, name: &str, lease: i64) -> tokio::task::JoinHandle<String> {
    let endpoint = member.endpoint();
    let name = name.to_owned();
    tokio::spawn(async move {
        let mut c = Client::connect([endpoint], None).await.unwrap();
        let resp = c
            .lock(name, Some(LockOptions::new().with_lease(lease)))
            .await
            .unwrap();
        String::from_utf8(resp.key().to_vec()).unwrap()
    })
}

#[tokio::test]
async fn a_second_locker_waits_until_the_first_unlocks() {
    let member = Member::start_single();
    let mut c = connect(&member).await;
    let (l1, l2) = (lease(&mut c, 60).await, lease(&mut c, 60).await);

    let first = c
        .lock("mutex", Some(LockOptions::new().with_lease(l1)))
        .await
        .unwrap();
    let first_key = String::from_utf8(first.key().to_vec()).unwrap();
    assert_eq!(first_key, format!("mutex/{l1:x}"));
    let header = first.header().expect("a header");
    assert!(header.revision() > 0 && header.member_id() != 0);

    // The same lease locks again at once: it is already first in line.
    let again = c
        .lock("mutex", Some(LockOptions::new().with_lease(l1)))
        .await
        .unwrap();
    assert_eq!(again.key(), first.key());

    let mut second = lock_in_background(&member, "mutex", l2);
    assert!(
        tokio::time::timeout(Duration::from_millis(800), &mut second)
            .await
            .is_err(),
        "the lock was given twice"
    );
    let unlocked = c.unlock(first.key()).await.unwrap();
    assert!(unlocked.header().unwrap().revision() > header.revision());
    let second_key = tokio::time::timeout(Duration::from_secs(5), second)
        .await
        .expect("the second locker gets the lock after unlock")
        .unwrap();
    assert_eq!(second_key, format!("mutex/{l2:x}"));
    assert_eq!(queued(&mut c, "mutex/").await, [second_key]);
}

#[tokio::test]
async fn the_lock_passes_on_when_the_holders_lease_ends() {
    let member = Member::start_single();
    let mut c = connect(&member).await;
    let short = lease(&mut c, 2).await;
    let long = lease(&mut c, 60).await;
    c.lock("expiring", Some(LockOptions::new().with_lease(short)))
        .await
        .unwrap();
    let start = Instant::now();
    let waiter = lock_in_background(&member, "expiring", long);
    let key = tokio::time::timeout(Duration::from_secs(6), waiter)
        .await
        .expect("the waiter gets the lock once the holder's lease expires")
        .unwrap();
    assert_eq!(key, format!("expiring/{long:x}"));
    assert!(
        start.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        start.elapsed()
    );

    // Revoking the holder's lease hands the lock over too.
    let third = lease(&mut c, 60).await;
    let waiter = lock_in_background(&member, "expiring", third);
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.lease_revoke(long).await.unwrap();
    let key = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("the waiter gets the lock once the holder's lease is revoked")
        .unwrap();
    assert_eq!(key, format!("expiring/{third:x}"));
}

#[tokio::test]
async fn a_waiter_that_gives_up_leaves_the_queue() {
    let member = Member::start_single();
    let mut c = connect(&member).await;
    let (l1, l2) = (lease(&mut c, 60).await, lease(&mut c, 60).await);
    c.lock("q", Some(LockOptions::new().with_lease(l1)))
        .await
        .unwrap();
    let mut c2 = connect(&member).await;
    let gave_up = tokio::time::timeout(
        Duration::from_millis(500),
        c2.lock("q", Some(LockOptions::new().with_lease(l2))),
    )
    .await;
    assert!(gave_up.is_err(), "the lock was given twice");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let keys = queued(&mut c, "q/").await;
        if keys == [format!("q/{l1:x}")] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "abandoned waiter still queued: {keys:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn locking_with_an_unknown_lease_fails_as_etcd() {
    let member = Member::start_single();
    let mut c = connect(&member).await;
    match c
        .lock("m", Some(LockOptions::new().with_lease(0x4242)))
        .await
    {
        // etcd's Lock service calls the store through a client that drops the status code.
        Err(Error::GRpcStatus(s)) => assert_eq!(
            (s.code(), s.message()),
            (Code::Unknown, "etcdserver: requested lease not found")
        ),
        other => panic!("expected lease not found, got {other:?}"),
    }
    assert!(queued(&mut c, "m/").await.is_empty());
}

#[tokio::test]
async fn a_lock_without_a_lease_runs_under_a_fresh_sixty_second_lease() {
    let member = Member::start_single();
    let mut c = connect(&member).await;
    let resp = c.lock("free", None).await.unwrap();
    let key = String::from_utf8(resp.key().to_vec()).unwrap();
    let hex = key
        .strip_prefix("free/")
        .expect("a key under the lock's prefix");
    let lease = i64::from_str_radix(hex, 16).unwrap();
    let ttl = c.lease_time_to_live(lease, None).await.unwrap();
    assert_eq!(ttl.granted_ttl(), 60);
    let kv = c.get(key.as_str(), None).await.unwrap().kvs()[0].clone();
    assert_eq!(kv.lease(), lease);
}
