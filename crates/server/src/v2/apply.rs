//! What a replicated v2 request does to the store (etcd's applierV2store): the request's
//! method and fields choose the store operation.

use oxcd_api::etcdserverpb::Request;

use super::store::{Tree, V2Result};

/// Applies `req`; `None` for a SYNC, which answers nothing.
pub fn apply(tree: &mut Tree, req: &Request) -> Option<V2Result> {
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
