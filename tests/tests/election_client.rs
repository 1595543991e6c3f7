//! The Election service (v3electionpb) through the `etcd-client` crate (issue 4): campaign,
//! leader, proclaim, observe and resign, leadership passing in queue order, and etcd's errors.

use std::time::Duration;

use etcd_client::{Client, Error, LeaderKey, ProclaimOptions, ResignOptions};
use oxcd_e2e::Member;
use tokio::sync::mpsc;
use tonic::Code;

async fn connect(member: &Member) -> Client {
    Client::connect([member.endpoint()], None)
        .await
        .unwrap_or_else(|e| panic!("connect to {}: {e}", member.endpoint()))
}

async fn lease(c: &mut Client, ttl: i64) -> i64 {
    c.lease_grant(ttl, None).await.unwrap().id()
}

#[track_caller]
fn expect_unknown<T: std::fmt::Debug>(result: Result<T, Error>, message: &str) {
    match result {
        Err(Error::GRpcStatus(s)) => {
            assert_eq!((s.code(), s.message()), (Code::Unknown, message))
        }
        other => panic!("expected {message:?}, got {other:?}"),
    }
}

/// Observes election `name` from a task: real etcd answers an Observe call only once there is
/// a leader to report, so opening the stream may itself wait.
fn observe(member: &Member, name: &str) -> mpsc::UnboundedReceiver<String> {
    let endpoint = member.endpoint();
    let name = name.to_owned();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut c = Client::connect([endpoint], None).await.unwrap();
        let mut stream = c.observe(name).await.unwrap();
        while let Ok(Some(resp)) = stream.message().await {
            let value = resp.kv().unwrap().value_str().unwrap().to_owned();
            if tx.send(value).is_err() {
                return;
            }
        }
    });
    rx
}

/// The next value an observer sees, within 5 s.
async fn next_value(observer: &mut mpsc::UnboundedReceiver<String>) -> String {
    tokio::time::timeout(Duration::from_secs(5), observer.recv())
        .await
        .expect("an observation")
        .expect("the stream stays open")
}

/// Starts a campaign in a task; the handle yields the leader key once elected.
fn campaign_in_background(
    member: &Member,
    name: &str,
    value: &str,
    lease: i64,
) -> tokio::task::JoinHandle<LeaderKey> {
    let endpoint = member.endpoint();
    let (name, value) = (name.to_owned(), value.to_owned());
    tokio::spawn(async move {
        let mut c = Client::connect([endpoint], None).await.unwrap();
        let mut resp = c.campaign(name, value, lease).await.unwrap();
        resp.take_leader().expect("a leader key")
    })
}

#[tokio::test]
async fn leadership_passes_in_order_and_observers_see_every_value() {
    let member = Member::start_single();
    let mut c = connect(&member).await;
    expect_unknown(c.leader("office").await, "election: no leader");

    let mut observer = observe(&member, "office");
    let (l1, l2) = (lease(&mut c, 60).await, lease(&mut c, 60).await);
    let mut won = c.campaign("office", "alice", l1).await.unwrap();
    let alice = won.take_leader().expect("a leader key");
    assert_eq!(alice.name(), b"office");
    assert_eq!(alice.key(), format!("office/{l1:x}").as_bytes());
    assert_eq!(alice.lease(), l1);
    assert!(alice.rev() > 0);
    assert_eq!(won.header().unwrap().revision(), alice.rev());
    assert_eq!(next_value(&mut observer).await, "alice");

    let leader = c.leader("office").await.unwrap();
    let kv = leader.kv().unwrap();
    assert_eq!((kv.key(), kv.value()), (alice.key(), &b"alice"[..]));

    let mut bob = campaign_in_background(&member, "office", "bob", l2);
    assert!(
        tokio::time::timeout(Duration::from_millis(800), &mut bob)
            .await
            .is_err(),
        "two leaders at once"
    );

    c.proclaim(
        "alice again",
        Some(ProclaimOptions::new().with_leader(alice.clone())),
    )
    .await
    .unwrap();
    assert_eq!(next_value(&mut observer).await, "alice again");
    let leader = c.leader("office").await.unwrap();
    assert_eq!(leader.kv().unwrap().value(), b"alice again");

    c.resign(Some(ResignOptions::new().with_leader(alice.clone())))
        .await
        .unwrap();
    let bob = tokio::time::timeout(Duration::from_secs(5), bob)
        .await
        .expect("bob leads once alice resigns")
        .unwrap();
    assert_eq!(bob.key(), format!("office/{l2:x}").as_bytes());
    assert_eq!(next_value(&mut observer).await, "bob");

    // Alice no longer leads.
    expect_unknown(
        c.proclaim("late", Some(ProclaimOptions::new().with_leader(alice)))
            .await,
        "election: not leader",
    );

    // Bob's lease ends: nobody leads, and an observer opened now sees the next leader.
    c.lease_revoke(l2).await.unwrap();
    expect_unknown(c.leader("office").await, "election: no leader");
    let mut late_observer = observe(&member, "office");
    let l3 = lease(&mut c, 60).await;
    c.campaign("office", "carol", l3).await.unwrap();
    assert_eq!(next_value(&mut late_observer).await, "carol");
    assert_eq!(next_value(&mut observer).await, "carol");
}

#[tokio::test]
async fn campaigning_again_with_the_same_lease_proclaims_the_new_value() {
    let member = Member::start_single();
    let mut c = connect(&member).await;
    let l = lease(&mut c, 60).await;
    let first = c
        .campaign("e", "v1", l)
        .await
        .unwrap()
        .take_leader()
        .unwrap();
    let second = c
        .campaign("e", "v2", l)
        .await
        .unwrap()
        .take_leader()
        .unwrap();
    assert_eq!((second.key(), second.rev()), (first.key(), first.rev()));
    assert_eq!(c.leader("e").await.unwrap().kv().unwrap().value(), b"v2");
}

#[tokio::test]
async fn requests_without_a_leader_key_or_lease_fail_as_etcd() {
    let member = Member::start_single();
    let mut c = connect(&member).await;
    expect_unknown(
        c.proclaim("v", None).await,
        "\"leader\" field must be provided",
    );
    expect_unknown(c.resign(None).await, "\"leader\" field must be provided");
    expect_unknown(
        c.campaign("e", "v", 0x4242).await,
        "etcdserver: requested lease not found",
    );
}
