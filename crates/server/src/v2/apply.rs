//! What a committed entry does to the v2 store: a replicated v2 request (etcd's
//! applierV2store: the request's method and fields choose the store operation), and the
//! cluster's own entries under `/0` that etcd 3.4 keeps beside the keys (members, their
//! attributes, the cluster version). The server's apply and `oxcdctl migrate`'s WAL replay
//! both go through [`apply_committed`], so the two cannot part.

use oxcd_api::etcdserverpb::{Member, Request};
use oxcd_api::membershippb::ClusterMemberAttrSetRequest;
use raft::eraftpb::ConfChangeType;

use super::store::{Tree, V2Result};

/// The part of a committed entry the v2 store follows.
pub enum Committed<'a> {
    /// A v2 request.
    V2(&'a Request),
    /// A member published its name and client URLs.
    MemberAttributes(&'a ClusterMemberAttrSetRequest),
    /// The cluster version was set.
    ClusterVersion(&'a str),
    /// A membership change of member `id`.
    ConfChange(ConfChangeType, u64),
}

/// Applies `committed` to the tree. `member` looks a member up in the member table as it
/// is once the entry's own membership change is applied. Answers a v2 request's result
/// (`None` for a SYNC and for the cluster's entries).
pub fn apply_committed(
    tree: &mut Tree,
    committed: Committed<'_>,
    member: impl Fn(u64) -> Option<Member>,
) -> Option<V2Result> {
    match committed {
        Committed::V2(req) => return apply(tree, req),
        Committed::MemberAttributes(attr) => {
            if member(attr.member_id).is_some() {
                let attributes = attr.member_attributes.clone().unwrap_or_default();
                tree.member_attributes(attr.member_id, &attributes.name, &attributes.client_urls);
            }
        }
        Committed::ClusterVersion(version) => tree.cluster_version(version),
        Committed::ConfChange(change, id) => match (change, member(id)) {
            (ConfChangeType::RemoveNode, _) => tree.member_removed(id),
            (_, Some(m))
                if tree
                    .get(&format!("/0/members/{id:x}/raftAttributes"), false)
                    .is_ok() =>
            {
                tree.member_updated(id, &m.peer_ur_ls, m.is_learner)
            }
            (_, Some(m)) => tree.member_added(id, &m.peer_ur_ls, m.is_learner),
            (_, None) => {}
        },
    }
    None
}

/// Applies `req`; `None` for a SYNC, which answers nothing.
fn apply(tree: &mut Tree, req: &Request) -> Option<V2Result> {
    let path = req.path();
    let expire = Some(req.expiration()).filter(|&e| e != 0);
    let refresh = req.refresh();
    let compared = req.prev_index() > 0 || !req.prev_value().is_empty();
    Some(match req.method() {
        "POST" => tree.create(path, req.dir(), req.val(), true, expire),
        "PUT" => match req.prev_exist {
            Some(true) if !compared => tree.update(path, req.val(), expire, refresh),
            Some(true) => tree.compare_and_swap(
                path,
                req.prev_value(),
                req.prev_index(),
                req.val(),
                expire,
                refresh,
            ),
            Some(false) => tree.create(path, req.dir(), req.val(), false, expire),
            None if compared => tree.compare_and_swap(
                path,
                req.prev_value(),
                req.prev_index(),
                req.val(),
                expire,
                refresh,
            ),
            None => tree.set(path, req.dir(), req.val(), expire, refresh),
        },
        "DELETE" if compared => tree.compare_and_delete(path, req.prev_value(), req.prev_index()),
        "DELETE" => tree.delete(path, req.dir(), req.recursive()),
        "QGET" => tree.get(path, req.recursive()),
        "SYNC" => {
            tree.delete_expired(req.time());
            return None;
        }
        other => {
            tracing::warn!(method = other, "unknown v2 request method");
            return None;
        }
    })
}
