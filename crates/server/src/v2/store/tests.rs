use super::*;
use crate::v2::error::Code;
use oxcd_api::etcdserverpb::Request;

fn tree() -> Tree {
    Tree::default()
}

fn far() -> Option<i64> {
    Some(i64::MAX / 2)
}

#[test]
fn set_get_and_prev_node() {
    let mut t = tree();
    let e = t.set("/1/foo", false, "bar", None, false).unwrap();
    assert!(e.is_created());
    assert_eq!(e.to_json("/1", false), "{\"action\":\"set\",\"node\":{\"key\":\"/foo\",\"value\":\"bar\",\"modifiedIndex\":1,\"createdIndex\":1}}\n");
    let e = t.set("/1/foo", false, "baz", None, false).unwrap();
    assert_eq!(e.prev_node.as_ref().unwrap().value.as_deref(), Some("bar"));
    assert!(!e.is_created());
    let g = t.get("/1", true).unwrap();
    assert_eq!(g.to_json("/1", false), "{\"action\":\"get\",\"node\":{\"dir\":true,\"nodes\":[{\"key\":\"/foo\",\"value\":\"baz\",\"modifiedIndex\":2,\"createdIndex\":2}]}}\n");
    assert_eq!(g.etcd_index, 2);
}

#[test]
fn errors_carry_etcds_causes_and_indexes() {
    let mut t = tree();
    t.set("/1/foo", false, "bar", None, false).unwrap();
    let e = t.set("/1/foo/x", false, "v", None, false).unwrap_err();
    assert_eq!(
        (e.code, e.cause.as_str(), e.index),
        (Code::NotDir, "/1/foo", 1)
    );
    let e = t.get("/1/nope", false).unwrap_err();
    assert_eq!((e.code, e.cause.as_str()), (Code::KeyNotFound, "/1/nope"));
    let e = t.create("/1/foo", false, "v", false, None).unwrap_err();
    assert_eq!(e.code, Code::NodeExist);
    let e = t
        .compare_and_swap("/1/foo", "zz", 0, "v", None, false)
        .unwrap_err();
    assert_eq!(
        (e.code, e.cause.as_str()),
        (Code::TestFailed, "[zz != bar]")
    );
    let e = t
        .compare_and_swap("/1/foo", "zz", 7, "v", None, false)
        .unwrap_err();
    assert_eq!(e.cause, "[zz != bar] [7 != 1]");
    let e = t.delete("/1", true, true).unwrap_err();
    assert_eq!((e.code, e.cause.as_str()), (Code::RootReadOnly, "/"));
    t.set("/1/d/x", false, "v", None, false).unwrap();
    assert_eq!(
        t.delete("/1/d", false, false).unwrap_err().code,
        Code::NotFile
    );
    assert_eq!(
        t.delete("/1/d", true, false).unwrap_err().code,
        Code::DirNotEmpty
    );
    assert_eq!(t.index(), 2);
}

#[test]
fn cas_cad_update_and_in_order_keys() {
    let mut t = tree();
    t.set("/1/k", false, "a", None, false).unwrap();
    let e = t
        .compare_and_swap("/1/k", "a", 1, "b", None, false)
        .unwrap();
    assert_eq!(
        (
            e.action.as_str(),
            e.node.modified_index,
            e.node.created_index
        ),
        ("compareAndSwap", 2, 1)
    );
    let e = t.update("/1/k", "c", None, false).unwrap();
    assert_eq!(e.action, "update");
    assert_eq!(
        t.update("/1/none", "c", None, false).unwrap_err().code,
        Code::KeyNotFound
    );
    let e = t.compare_and_delete("/1/k", "c", 0).unwrap();
    assert_eq!(e.action, "compareAndDelete");
    let e = t.create("/1/q", false, "job", true, None).unwrap();
    assert_eq!(e.node.key, "/1/q/00000000000000000005");
}

#[test]
fn hidden_keys_are_not_listed() {
    let mut t = tree();
    t.set("/1/_hidden", false, "h", None, false).unwrap();
    t.set("/1/shown", false, "s", None, false).unwrap();
    let g = t.get("/1", false).unwrap();
    let keys: Vec<_> = g.node.nodes.unwrap().into_iter().map(|n| n.key).collect();
    assert_eq!(keys, ["/1/shown"]);
    assert_eq!(
        t.get("/1/_hidden", false).unwrap().node.value.as_deref(),
        Some("h")
    );
}

#[test]
fn expiry_removes_keys_and_dirs_with_one_event_each() {
    let mut t = tree();
    let soon = 2_000_000_000_000_000_000;
    t.set("/1/a", false, "v", Some(soon), false).unwrap();
    t.set("/1/d", true, "", Some(soon + 1), false).unwrap();
    t.set("/1/d/child", false, "v", None, false).unwrap();
    t.set("/1/keep", false, "v", far(), false).unwrap();
    t.delete_expired(soon);
    assert_eq!(t.index(), 5);
    assert!(t.get("/1/a", false).is_err());
    assert!(t.get("/1/d/child", false).is_ok());
    t.delete_expired(soon + 1);
    assert!(t.get("/1/d/child", false).is_err());
    assert_eq!(t.index(), 6);
    assert!(t.has_ttl_keys());
    let e = t.history.scan("/1/d/child", false, 6).unwrap().unwrap();
    assert_eq!(e.action, "expire");
}

#[test]
fn refresh_keeps_value_and_does_not_wake_watchers() {
    let mut t = tree();
    t.set("/1/k", false, "v", far(), false).unwrap();
    let (_, mut rx) = t.hub.add("/1/k", false, false, 2);
    let e = t.set("/1/k", false, "", far(), true).unwrap();
    assert_eq!(e.node.value.as_deref(), Some("v"));
    assert!(e.refresh);
    assert!(rx.try_recv().is_err());
    assert_eq!(
        t.set("/1/none", false, "", far(), true).unwrap_err().code,
        Code::KeyNotFound
    );
}

#[test]
fn deleting_a_dir_tells_watchers_below_it() {
    let mut t = tree();
    t.set("/1/d/x", false, "v", None, false).unwrap();
    let (_, mut child) = t.hub.add("/1/d/x", false, false, 0);
    t.delete("/1/d", true, true).unwrap();
    let e = child.try_recv().unwrap();
    assert_eq!((e.action.as_str(), e.node.key.as_str()), ("delete", "/1/d"));
}

#[test]
fn persisted_store_reloads_with_history() {
    let dir = tempfile::tempdir().unwrap();
    let backend = oxcd_storage::Backend::open(dir.path().join("db"), Default::default()).unwrap();
    let store = V2Store::load(&backend).unwrap();
    let mut req = Request {
        method: Some("PUT".into()),
        path: Some("/1/a/b".into()),
        val: Some("v".into()),
        ..Default::default()
    };
    for val in ["1", "2"] {
        req.val = Some(val.into());
        let batch = backend.begin_write().unwrap();
        store
            .apply(crate::v2::apply::Committed::V2(&req), |_| None, batch.txn())
            .unwrap()
            .unwrap()
            .unwrap();
        batch.commit().unwrap();
    }
    let batch = backend.begin_write().unwrap();
    store
        .with_tree(batch.txn(), |t| {
            t.member_added(0x10, &["http://a".into()], false)
        })
        .unwrap();
    batch.commit().unwrap();
    let again = V2Store::load(&backend).unwrap();
    assert_eq!(again.index(), 3);
    assert_eq!(
        again.get("/1/a/b", false).unwrap().node.value.as_deref(),
        Some("2")
    );
    assert_eq!(
        again
            .get("/0/members/10/raftAttributes", false)
            .unwrap()
            .node
            .value
            .as_deref(),
        Some(r#"{"peerURLs":["http://a"]}"#)
    );
    let mut w = again.watch("/1/a/b", false, false, 1).unwrap();
    assert_eq!(w.start_index, 3);
    assert_eq!(
        w.events.try_recv().unwrap().node.value.as_deref(),
        Some("1")
    );
}
