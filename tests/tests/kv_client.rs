//! The KV, Maintenance and Cluster gRPC services through the `etcd-client` crate (issue 2,
//! item 3): range options, revision rules, txn, compaction, validation errors with etcd's
//! gRPC codes and messages, status, hashes, member list.

use std::fmt::Debug;

use etcd_client::{
    Client, CompactionOptions, Compare, CompareOp, DeleteOptions, Error, GetOptions, PutOptions,
    SortOrder, SortTarget, Txn, TxnOp, TxnOpResponse,
};
use oxcd_e2e::{testing_real_etcd, Member};
use tonic::Code;

async fn connect(member: &Member) -> Client {
    Client::connect([member.endpoint()], None)
        .await
        .unwrap_or_else(|e| panic!("connect to {}: {e}", member.endpoint()))
}

/// Asserts that `result` is a gRPC error with `code` and exactly `message`.
#[track_caller]
fn expect_status<T: Debug>(result: Result<T, Error>, code: Code, message: &str) {
    match result {
        Err(Error::GRpcStatus(status)) => {
            assert_eq!(
                (status.code(), status.message()),
                (code, message),
                "wrong gRPC status"
            );
        }
        other => panic!("expected gRPC {code:?} {message:?}, got {other:?}"),
    }
}

fn keys(kvs: &[etcd_client::KeyValue]) -> Vec<String> {
    kvs.iter()
        .map(|kv| kv.key_str().expect("utf-8 key").to_owned())
        .collect()
}

fn values(kvs: &[etcd_client::KeyValue]) -> Vec<String> {
    kvs.iter()
        .map(|kv| kv.value_str().expect("utf-8 value").to_owned())
        .collect()
}

fn revision_of(header: Option<&etcd_client::ResponseHeader>) -> i64 {
    header.expect("response has a header").revision()
}

#[tokio::test]
async fn range_limit_more_count_keys_only_count_only() {
    let member = Member::start_single();
    let mut c = connect(&member).await;
    for i in 0..10 {
        c.put(format!("k{i}"), format!("v{i}"), None).await.unwrap();
    }
    c.put("other", "x", None).await.unwrap();

    let r = c
        .get("k", Some(GetOptions::new().with_prefix().with_limit(3)))
        .await
        .unwrap();
    assert_eq!(keys(r.kvs()), ["k0", "k1", "k2"]);
    assert!(r.more());
    assert_eq!(r.count(), 10);

    let r = c
        .get("k", Some(GetOptions::new().with_prefix().with_limit(10)))
        .await
        .unwrap();
    assert_eq!(r.kvs().len(), 10);
    assert!(!r.more());

    let r = c
        .get("k", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    assert_eq!(r.kvs().len(), 10);
    assert!(!r.more());
    assert_eq!(r.count(), 10);

    let r = c
        .get("k", Some(GetOptions::new().with_prefix().with_count_only()))
        .await
        .unwrap();
    assert!(r.kvs().is_empty());
    assert_eq!(r.count(), 10);

    let r = c
        .get("k", Some(GetOptions::new().with_prefix().with_keys_only()))
        .await
        .unwrap();
    assert_eq!(r.kvs().len(), 10);
    assert!(r.kvs().iter().all(|kv| kv.value().is_empty()));
    assert!(r.kvs().iter().all(|kv| kv.version() == 1));

    let r = c
        .get("k5", Some(GetOptions::new().with_from_key().with_limit(2)))
        .await
        .unwrap();
    assert_eq!(keys(r.kvs()), ["k5", "k6"]);
    assert_eq!(r.count(), 6, "k5..k9 and other");

    let r = c
        .get("k3", Some(GetOptions::new().with_range("k6")))
        .await
        .unwrap();
    assert_eq!(keys(r.kvs()), ["k3", "k4", "k5"]);

    let r = c
        .get(
            "\0",
            Some(GetOptions::new().with_from_key().with_serializable()),
        )
        .await
        .unwrap();
    assert_eq!(r.count(), 11);

    let r = c.get("nothing", None).await.unwrap();
    assert!(r.kvs().is_empty());
    assert_eq!(r.count(), 0);
    assert!(!r.more());
}

#[tokio::test]
async fn range_sort() {
    let member = Member::start_single();
    let mut c = connect(&member).await;
    c.put("s/b", "3", None).await.unwrap();
    c.put("s/a", "2", None).await.unwrap();
    c.put("s/c", "1", None).await.unwrap();
    c.put("s/a", "4", None).await.unwrap();
    c.put("s/a", "0", None).await.unwrap();

    let sorted = |target, order| GetOptions::new().with_prefix().with_sort(target, order);
    let r = c
        .get("s/", Some(sorted(SortTarget::Key, SortOrder::Descend)))
        .await
        .unwrap();
    assert_eq!(keys(r.kvs()), ["s/c", "s/b", "s/a"]);
    let r = c
        .get("s/", Some(sorted(SortTarget::Value, SortOrder::Ascend)))
        .await
        .unwrap();
    assert_eq!(values(r.kvs()), ["0", "1", "3"]);
    let r = c
        .get("s/", Some(sorted(SortTarget::Create, SortOrder::Ascend)))
        .await
        .unwrap();
    assert_eq!(keys(r.kvs()), ["s/b", "s/a", "s/c"]);
    let r = c
        .get("s/", Some(sorted(SortTarget::Mod, SortOrder::Descend)))
        .await
        .unwrap();
    assert_eq!(keys(r.kvs()), ["s/a", "s/c", "s/b"]);
    let r = c
        .get("s/", Some(sorted(SortTarget::Version, SortOrder::Descend)))
        .await
        .unwrap();
    assert_eq!(keys(r.kvs())[0], "s/a");
    // Sorting applies before the limit.
    let r = c
        .get(
            "s/",
            Some(sorted(SortTarget::Value, SortOrder::Descend).with_limit(1)),
        )
        .await
        .unwrap();
    assert_eq!(values(r.kvs()), ["3"]);
    assert!(r.more());
    // Values not returned still order the keys (`etcdctl get --keys-only --sort-by=VALUE`).
    let r = c
        .get(
            "s/",
            Some(sorted(SortTarget::Value, SortOrder::Ascend).with_keys_only()),
        )
        .await
        .unwrap();
    assert_eq!(keys(r.kvs()), ["s/a", "s/c", "s/b"]);
    assert_eq!(values(r.kvs()), ["", "", ""]);
}

#[tokio::test]
async fn revisions_versions_and_filters() {
    let member = Member::start_single();
    let mut c = connect(&member).await;
    let r1 = revision_of(c.put("a", "1", None).await.unwrap().header());
    let r2 = revision_of(c.put("b", "1", None).await.unwrap().header());
    let r3 = revision_of(c.put("a", "2", None).await.unwrap().header());
    assert_eq!((r2, r3), (r1 + 1, r1 + 2), "one main revision per put");

    let a = c.get("a", None).await.unwrap();
    let kv = &a.kvs()[0];
    assert_eq!(
        (kv.create_revision(), kv.mod_revision(), kv.version()),
        (r1, r3, 2)
    );
    assert_eq!(revision_of(a.header()), r3);

    let old = c
        .get("a", Some(GetOptions::new().with_revision(r1)))
        .await
        .unwrap();
    assert_eq!(values(old.kvs()), ["1"]);
    assert_eq!(
        revision_of(old.header()),
        r3,
        "the header carries the current revision"
    );
    let none = c
        .get("b", Some(GetOptions::new().with_revision(r1)))
        .await
        .unwrap();
    assert!(none.kvs().is_empty());

    // A txn of several writes takes one main revision.
    let txn = Txn::new().and_then(vec![
        TxnOp::put("t1", "x", None),
        TxnOp::put("t2", "y", None),
        TxnOp::delete("b", None),
    ]);
    let r4 = revision_of(c.txn(txn).await.unwrap().header());
    assert_eq!(r4, r3 + 1);
    let t = c
        .get("t", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    assert!(t.kvs().iter().all(|kv| kv.mod_revision() == r4));

    // Deleting nothing and reading do not take a revision.
    let d = c.delete("nothing", None).await.unwrap();
    assert_eq!((d.deleted(), revision_of(d.header())), (0, r4));
    let read_only = Txn::new().and_then(vec![TxnOp::get("a", None)]);
    assert_eq!(revision_of(c.txn(read_only).await.unwrap().header()), r4);

    // A deleted and re-created key starts a new generation.
    c.delete("a", None).await.unwrap();
    let r6 = revision_of(c.put("a", "3", None).await.unwrap().header());
    let kv = c.get("a", None).await.unwrap().kvs()[0].clone();
    assert_eq!(
        (kv.create_revision(), kv.mod_revision(), kv.version()),
        (r6, r6, 1)
    );

    // Mod and create revision filters.
    let all = || GetOptions::new().with_prefix();
    let r = c
        .get("", Some(all().with_min_mod_revision(r4)))
        .await
        .unwrap();
    assert_eq!(keys(r.kvs()), ["a", "t1", "t2"]);
    let r = c
        .get("", Some(all().with_max_mod_revision(r4 - 1)))
        .await
        .unwrap();
    assert!(r.kvs().is_empty());
    let r = c
        .get("", Some(all().with_min_create_revision(r6)))
        .await
        .unwrap();
    assert_eq!(keys(r.kvs()), ["a"]);
    let r = c
        .get("", Some(all().with_max_create_revision(r4)))
        .await
        .unwrap();
    assert_eq!(keys(r.kvs()), ["t1", "t2"]);
}

#[tokio::test]
async fn put_and_delete_prev_kv() {
    let member = Member::start_single();
    let mut c = connect(&member).await;
    let first = c
        .put("p", "1", Some(PutOptions::new().with_prev_key()))
        .await
        .unwrap();
    assert!(first.prev_key().is_none());
    let second = c
        .put("p", "2", Some(PutOptions::new().with_prev_key()))
        .await
        .unwrap();
    let prev = second.prev_key().expect("prev kv");
    assert_eq!((prev.value_str().unwrap(), prev.version()), ("1", 1));
    let plain = c.put("p", "3", None).await.unwrap();
    assert!(plain.prev_key().is_none(), "no prev kv unless asked");

    let ignore = c
        .put(
            "p",
            "",
            Some(PutOptions::new().with_ignore_value().with_prev_key()),
        )
        .await
        .unwrap();
    assert_eq!(ignore.prev_key().unwrap().value_str().unwrap(), "3");
    assert_eq!(values(c.get("p", None).await.unwrap().kvs()), ["3"]);
    expect_status(
        c.put("missing", "", Some(PutOptions::new().with_ignore_value()))
            .await,
        Code::InvalidArgument,
        "etcdserver: key not found",
    );

    c.put("p/a", "a", None).await.unwrap();
    c.put("p/b", "b", None).await.unwrap();
    let d = c
        .delete(
            "p/",
            Some(DeleteOptions::new().with_prefix().with_prev_key()),
        )
        .await
        .unwrap();
    assert_eq!(d.deleted(), 2);
    assert_eq!(keys(d.prev_kvs()), ["p/a", "p/b"]);
    let d = c.delete("p", None).await.unwrap();
    assert_eq!(d.deleted(), 1);
    assert!(d.prev_kvs().is_empty(), "no prev kvs unless asked");
}

#[tokio::test]
async fn txn_compares_branches_and_nesting() {
    let member = Member::start_single();
    let mut c = connect(&member).await;
    let rev = revision_of(c.put("x", "1", None).await.unwrap().header());

    let txn = Txn::new()
        .when(vec![
            Compare::value("x", CompareOp::Equal, "1"),
            Compare::version("x", CompareOp::Equal, 1),
            Compare::create_revision("x", CompareOp::Equal, rev),
            Compare::mod_revision("x", CompareOp::Less, rev + 1),
        ])
        .and_then(vec![TxnOp::put("x", "2", None), TxnOp::get("x", None)])
        .or_else(vec![TxnOp::put("failed", "1", None)]);
    let r = c.txn(txn).await.unwrap();
    assert!(r.succeeded());
    match &r.op_responses()[1] {
        TxnOpResponse::Get(get) => assert_eq!(values(get.kvs()), ["2"], "reads see earlier ops"),
        other => panic!("expected a get response, got {other:?}"),
    }

    let txn = Txn::new()
        .when(vec![Compare::value("x", CompareOp::Greater, "5")])
        .and_then(vec![TxnOp::put("never", "1", None)])
        .or_else(vec![TxnOp::get("x", None)]);
    let r = c.txn(txn).await.unwrap();
    assert!(!r.succeeded());
    assert!(c.get("never", None).await.unwrap().kvs().is_empty());

    // Nested: the inner txn's branch is chosen by its own compares.
    let inner = Txn::new()
        .when(vec![Compare::value("x", CompareOp::Equal, "2")])
        .and_then(vec![TxnOp::put("inner", "yes", None)])
        .or_else(vec![TxnOp::put("inner", "no", None)]);
    let outer = Txn::new()
        .when(vec![Compare::version("x", CompareOp::Equal, 2)])
        .and_then(vec![TxnOp::put("outer", "1", None), TxnOp::txn(inner)]);
    let r = c.txn(outer).await.unwrap();
    assert!(r.succeeded());
    match &r.op_responses()[1] {
        TxnOpResponse::Txn(t) => assert!(t.succeeded()),
        other => panic!("expected a txn response, got {other:?}"),
    }
    let got = c.get("inner", None).await.unwrap();
    assert_eq!(values(got.kvs()), ["yes"]);
    let outer_rev = c.get("outer", None).await.unwrap().kvs()[0].mod_revision();
    assert_eq!(
        got.kvs()[0].mod_revision(),
        outer_rev,
        "nested writes share one revision"
    );
}

#[tokio::test]
async fn compaction_errors() {
    let member = Member::start_single();
    let mut c = connect(&member).await;
    for i in 0..5 {
        c.put("c", i.to_string(), None).await.unwrap();
    }
    let current = revision_of(c.get("c", None).await.unwrap().header());
    const FUTURE: &str = "etcdserver: mvcc: required revision is a future revision";
    const COMPACTED: &str = "etcdserver: mvcc: required revision has been compacted";

    expect_status(c.compact(current + 1, None).await, Code::OutOfRange, FUTURE);
    expect_status(
        c.get("c", Some(GetOptions::new().with_revision(current + 1)))
            .await,
        Code::OutOfRange,
        FUTURE,
    );

    c.compact(current - 2, Some(CompactionOptions::new().with_physical()))
        .await
        .unwrap();
    expect_status(
        c.compact(current - 2, None).await,
        Code::OutOfRange,
        COMPACTED,
    );
    expect_status(
        c.compact(current - 3, None).await,
        Code::OutOfRange,
        COMPACTED,
    );
    expect_status(
        c.get("c", Some(GetOptions::new().with_revision(current - 3)))
            .await,
        Code::OutOfRange,
        COMPACTED,
    );
    // The compaction revision itself stays readable.
    let at = c
        .get("c", Some(GetOptions::new().with_revision(current - 2)))
        .await
        .unwrap();
    assert_eq!(values(at.kvs()), ["2"]);
    let hash = c.hash_kv(0).await.unwrap();
    assert_eq!(hash.compact_version(), current - 2);
    c.compact(current, None).await.unwrap();
    assert_eq!(values(c.get("c", None).await.unwrap().kvs()), ["4"]);
}

#[tokio::test]
async fn validation_errors() {
    let member = Member::start_single();
    let mut c = connect(&member).await;
    const EMPTY: &str = "etcdserver: key is not provided";
    expect_status(c.put("", "v", None).await, Code::InvalidArgument, EMPTY);
    expect_status(c.get("", None).await, Code::InvalidArgument, EMPTY);
    expect_status(c.delete("", None).await, Code::InvalidArgument, EMPTY);
    let txn = Txn::new().and_then(vec![TxnOp::put("", "v", None)]);
    expect_status(c.txn(txn).await, Code::InvalidArgument, EMPTY);

    // --max-txn-ops defaults to 128.
    let ops = |n: usize| {
        (0..n)
            .map(|i| TxnOp::put(format!("op{i}"), "v", None))
            .collect::<Vec<_>>()
    };
    c.txn(Txn::new().and_then(ops(128))).await.unwrap();
    expect_status(
        c.txn(Txn::new().and_then(ops(129))).await,
        Code::InvalidArgument,
        "etcdserver: too many operations in txn request",
    );
    expect_status(
        c.txn(Txn::new().or_else(ops(129))).await,
        Code::InvalidArgument,
        "etcdserver: too many operations in txn request",
    );

    const DUPLICATE: &str = "etcdserver: duplicate key given in txn request";
    let dup = Txn::new().and_then(vec![TxnOp::put("d", "1", None), TxnOp::put("d", "2", None)]);
    expect_status(c.txn(dup).await, Code::InvalidArgument, DUPLICATE);
    let dup = Txn::new().and_then(vec![
        TxnOp::put("d/1", "1", None),
        TxnOp::delete("d/", Some(DeleteOptions::new().with_prefix())),
    ]);
    expect_status(c.txn(dup).await, Code::InvalidArgument, DUPLICATE);
    // The same key in different branches is fine.
    let ok = Txn::new()
        .and_then(vec![TxnOp::put("d", "1", None)])
        .or_else(vec![TxnOp::put("d", "2", None)]);
    c.txn(ok).await.unwrap();

    // --max-request-bytes defaults to 1.5 MiB; gRPC takes up to 512 KiB more.
    let big = vec![b'x'; 1024 * 1024 * 3 / 2 + 1024];
    expect_status(
        c.put("big", big, None).await,
        Code::InvalidArgument,
        "etcdserver: request is too large",
    );
    let huge = vec![b'x'; 3 * 1024 * 1024];
    match c.put("huge", huge, None).await {
        Err(Error::GRpcStatus(status)) => assert_eq!(status.code(), Code::ResourceExhausted),
        other => panic!("expected ResourceExhausted, got {other:?}"),
    }
    // Just under the limit is fine.
    let fits = vec![b'x'; 1024 * 1024 * 3 / 2 - 1024];
    c.put("fits", fits, None).await.unwrap();
    assert!(c.get("big", None).await.unwrap().kvs().is_empty());
}

#[tokio::test]
async fn maintenance_status_hashes_and_member_list() {
    let member = Member::start_single();
    let mut c = connect(&member).await;
    c.put("h", "1", None).await.unwrap();

    let status = c.status().await.unwrap();
    let member_id = status.header().unwrap().member_id();
    assert_eq!(status.leader(), member_id, "a single member leads itself");
    assert!(status.raft_term() >= 1);
    assert!(status.raft_index() >= status.raft_applied_index());
    assert!(status.raft_applied_index() >= 1);
    assert!(status.db_size() > 0);
    assert!(!status.is_learner());
    let version: Vec<u32> = status
        .version()
        .split('.')
        .map(|p| p.parse().expect("numeric version part"))
        .collect();
    assert_eq!(version[0], 3, "an etcd version: {}", status.version());
    if !testing_real_etcd() {
        assert!(
            version[1] >= 5,
            "oxcd reports a 3.5-series etcd version or later"
        );
        assert!(status.raft_used_db_size() > 0);
    }

    let h1 = c.hash_kv(0).await.unwrap();
    let h1_rev = h1.header().unwrap().revision();
    assert_eq!(
        c.hash_kv(0).await.unwrap().hash(),
        h1.hash(),
        "stable without writes"
    );
    c.put("h", "2", None).await.unwrap();
    let h2 = c.hash_kv(0).await.unwrap();
    assert_ne!(h2.hash(), h1.hash(), "a write changes the hash");
    assert_eq!(
        c.hash_kv(h1_rev).await.unwrap().hash(),
        h1.hash(),
        "the hash at an old revision does not move"
    );
    expect_status(
        c.hash_kv(h1_rev + 100).await,
        Code::OutOfRange,
        "etcdserver: mvcc: required revision is a future revision",
    );
    c.hash().await.unwrap();

    let list = c.member_list().await.unwrap();
    let members = list.members();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].id(), member_id);
    assert_eq!(members[0].name(), member.name());
    assert_eq!(members[0].peer_urls(), [member.peer_url()]);
    assert_eq!(members[0].client_urls(), [member.client_url()]);
    assert!(!members[0].is_learner());
}
