//! The Lock service (v3lockpb), and the key recipes it shares with the Election service.
//!
//! Both are etcd's client-side concurrency recipes run inside the server, as etcd runs them:
//! a contender puts a key `NAME/LEASE` (hex) under the caller's lease, so the key's create
//! revision is its place in the queue, and then waits until every key of the prefix created
//! before it is deleted. Only the key with the lowest create revision holds the lock (or
//! leads the election); it keeps it until it is deleted (Unlock, Resign) or its lease ends.
//! Waiting watches one key at a time: the latest one created before ours, so a release wakes
//! only the next in line.
//!
//! Errors met on the way keep etcd's texts but come back with code `Unknown`, as they do from
//! etcd, whose services call the store through an embedded client that drops the codes.

use std::sync::Arc;

use oxcd_api::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use oxcd_api::etcdserverpb::range_request::{SortOrder, SortTarget};
use oxcd_api::etcdserverpb::request_op::Request as Op;
use oxcd_api::etcdserverpb::{
    Compare, DeleteRangeRequest, DeleteRangeResponse, InternalRaftRequest, LeaseGrantRequest,
    PutRequest, RangeRequest, RangeResponse, RequestOp, ResponseHeader, TxnRequest, TxnResponse,
    WatchCreateRequest,
};
use oxcd_api::mvccpb::event::EventType;
use oxcd_api::v3lockpb::lock_server::Lock;
use oxcd_api::v3lockpb::{LockRequest, LockResponse, UnlockRequest, UnlockResponse};
use oxcd_api::EtcdError;
use tonic::{Code, Request, Response, Status};

use crate::apply::ApplyResponse;
use crate::auth::AuthInfo;
use crate::error::ServerError;
use crate::kv::{range, validate};
use crate::lease::NO_LEASE;
use crate::server::EtcdServer;

/// TTL in seconds of the lease granted for a request that names none (etcd's default
/// session TTL).
pub(super) const SESSION_TTL: i64 = 60;

/// Reads, writes and waits on keys for the Lock and Election services.
#[derive(Clone)]
pub(super) struct Keys {
    server: Arc<EtcdServer>,
    /// Whose requests these are: reads are checked here, writes at apply, as the sender's.
    sender: Option<AuthInfo>,
}

/// A store error as etcd's Lock and Election services return it: its text, code `Unknown`.
pub(super) fn recipe_error(e: ServerError) -> Status {
    let status: Status = e.into();
    Status::new(Code::Unknown, status.message())
}

impl Keys {
    pub(super) fn new(server: Arc<EtcdServer>) -> Keys {
        Keys {
            server,
            sender: None,
        }
    }

    /// The same keys, used on behalf of whoever sent `request`.
    pub(super) async fn for_request<T>(&self, request: &Request<T>) -> Result<Keys, Status> {
        Ok(Keys {
            server: self.server.clone(),
            sender: super::auth::sender(&self.server, request).await?,
        })
    }

    /// The lease a request runs under: its own, or, when it names none (0), a new lease of
    /// [`SESSION_TTL`] seconds, as etcd's recipes open a session then.
    pub(super) async fn session_lease(&self, lease: i64) -> Result<i64, ServerError> {
        if lease != NO_LEASE {
            return Ok(lease);
        }
        let mut id = NO_LEASE;
        while id == NO_LEASE {
            id = (self.server.next_id() & (i64::MAX as u64)) as i64;
        }
        let internal = InternalRaftRequest {
            lease_grant: Some(LeaseGrantRequest {
                ttl: SESSION_TTL,
                id,
            }),
            ..Default::default()
        };
        match self
            .server
            .propose_as(internal, self.sender.as_ref())
            .await?
        {
            ApplyResponse::LeaseGrant(resp) => Ok(resp.id),
            _ => Err(ServerError::Raft(
                "apply answered a lease grant with another kind of response".into(),
            )),
        }
    }

    /// A full response header at `revision`.
    pub(super) fn header(&self, revision: i64) -> ResponseHeader {
        self.server.header(revision)
    }

    /// Runs a txn through Raft.
    pub(super) async fn txn(&self, req: TxnRequest) -> Result<TxnResponse, ServerError> {
        let internal = InternalRaftRequest {
            txn: Some(req),
            ..Default::default()
        };
        match self
            .server
            .propose_as(internal, self.sender.as_ref())
            .await?
        {
            ApplyResponse::Txn(mut resp) => {
                let revision = resp.header.map_or(0, |h| h.revision);
                resp.header = Some(self.header(revision));
                Ok(resp)
            }
            _ => Err(ServerError::Raft(
                "apply answered a txn with another kind of response".into(),
            )),
        }
    }

    /// Deletes one key through Raft.
    pub(super) async fn delete(&self, key: Vec<u8>) -> Result<DeleteRangeResponse, ServerError> {
        let req = DeleteRangeRequest {
            key,
            ..Default::default()
        };
        validate::check_delete(&req)?;
        let internal = InternalRaftRequest {
            delete_range: Some(req),
            ..Default::default()
        };
        match self
            .server
            .propose_as(internal, self.sender.as_ref())
            .await?
        {
            ApplyResponse::DeleteRange(mut resp) => {
                let revision = resp.header.map_or(0, |h| h.revision);
                resp.header = Some(self.header(revision));
                Ok(resp)
            }
            _ => Err(ServerError::Raft(
                "apply answered a delete with another kind of response".into(),
            )),
        }
    }

    /// A linearizable range.
    pub(super) async fn range(&self, req: RangeRequest) -> Result<RangeResponse, ServerError> {
        self.server.linearizable_read_barrier().await?;
        let server = self.server.clone();
        let sender = self.sender.clone().unwrap_or_default();
        let mut resp = tokio::task::spawn_blocking(move || {
            server.auth.check_range(&sender, &req)?;
            range::range(&mut server.kv.as_ref(), &req).map_err(ServerError::from)
        })
        .await
        .map_err(|e| ServerError::Raft(format!("read task failed: {e}")))??;
        let revision = resp.header.map_or(0, |h| h.revision);
        resp.header = Some(self.header(revision));
        Ok(resp)
    }

    /// Waits until no key under `prefix` with a create revision up to `max_create_rev`
    /// remains (etcd's `waitDeletes`); returns the header of the read that found none.
    pub(super) async fn wait_deletes(
        &self,
        prefix: &[u8],
        max_create_rev: i64,
    ) -> Result<ResponseHeader, ServerError> {
        loop {
            let mut req = by_create_revision(prefix, SortOrder::Descend);
            req.max_create_revision = max_create_rev;
            let resp = self.range(req).await?;
            let header = resp.header.unwrap_or_default();
            let Some(last) = resp.kvs.first() else {
                return Ok(header);
            };
            self.wait_delete(&last.key, header.revision).await?;
        }
    }

    /// Waits until `key` is deleted at or after revision `rev`.
    async fn wait_delete(&self, key: &[u8], rev: i64) -> Result<(), ServerError> {
        let mut watcher = self.watch(key, &[], rev)?;
        loop {
            let resp = watcher.next().await?;
            if resp
                .events
                .iter()
                .any(|e| e.r#type == EventType::Delete as i32)
            {
                return Ok(());
            }
        }
    }

    /// Watches `[key, range_end)` from revision `rev`.
    pub(super) fn watch(
        &self,
        key: &[u8],
        range_end: &[u8],
        rev: i64,
    ) -> Result<Watcher, ServerError> {
        let stream = self.server.watchable.new_stream();
        let req = WatchCreateRequest {
            key: key.to_vec(),
            range_end: range_end.to_vec(),
            start_revision: rev,
            ..Default::default()
        };
        stream
            .watch(&req)
            .map_err(|e| ServerError::Raft(format!("cannot watch: {e}")))?;
        Ok(Watcher { stream })
    }
}

/// One watcher on its own stream; dropping it cancels the watch.
pub(super) struct Watcher {
    stream: oxcd_storage::WatchStream,
}

impl Watcher {
    /// The next response that carries events. A watch cut short by compaction is etcd's
    /// `compacted` error; a store shutting down is `server stopped`.
    pub(super) async fn next(&mut self) -> Result<oxcd_storage::WatchResponse, ServerError> {
        loop {
            let Some(resp) = self.stream.recv().await else {
                return Err(EtcdError::Stopped.into());
            };
            if resp.compact_revision != 0 {
                return Err(EtcdError::Compacted.into());
            }
            if resp.canceled {
                return Err(ServerError::Raft(format!(
                    "watch canceled: {}",
                    resp.cancel_reason
                )));
            }
            if !resp.events.is_empty() {
                return Ok(resp);
            }
        }
    }
}

/// The end of the range of every key starting with `prefix` (etcd's `GetPrefixRangeEnd`).
pub(super) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // All 0xff (or empty): every key from the prefix on.
    vec![0]
}

/// The first (`Ascend`) or last (`Descend`) key under `prefix` by create revision.
pub(super) fn by_create_revision(prefix: &[u8], order: SortOrder) -> RangeRequest {
    RangeRequest {
        key: prefix.to_vec(),
        range_end: prefix_end(prefix),
        limit: 1,
        sort_order: order as i32,
        sort_target: SortTarget::Create as i32,
        ..Default::default()
    }
}

/// A contender's key: the prefix and its lease in hex, as Go's `%x` prints an int64.
pub(super) fn lease_key(prefix: &[u8], lease: i64) -> Vec<u8> {
    let mut key = prefix.to_vec();
    let hex = if lease < 0 {
        format!("-{:x}", lease.unsigned_abs())
    } else {
        format!("{lease:x}")
    };
    key.extend_from_slice(hex.as_bytes());
    key
}

/// `create_revision(key) == rev`.
pub(super) fn created_at(key: &[u8], rev: i64) -> Compare {
    Compare {
        result: CompareResult::Equal as i32,
        target: CompareTarget::Create as i32,
        key: key.to_vec(),
        range_end: Vec::new(),
        target_union: Some(TargetUnion::CreateRevision(rev)),
    }
}

pub(super) fn put_op(key: &[u8], value: &[u8], lease: i64) -> RequestOp {
    RequestOp {
        request: Some(Op::RequestPut(PutRequest {
            key: key.to_vec(),
            value: value.to_vec(),
            lease,
            ..Default::default()
        })),
    }
}

pub(super) fn get_op(req: RangeRequest) -> RequestOp {
    RequestOp {
        request: Some(Op::RequestRange(req)),
    }
}

pub(super) fn get_key(key: &[u8]) -> RangeRequest {
    RangeRequest {
        key: key.to_vec(),
        ..Default::default()
    }
}

pub(super) fn delete_op(key: &[u8]) -> RequestOp {
    RequestOp {
        request: Some(Op::RequestDeleteRange(DeleteRangeRequest {
            key: key.to_vec(),
            ..Default::default()
        })),
    }
}

/// The range response of op `i` of a txn, if it is one.
pub(super) fn range_at(resp: &TxnResponse, i: usize) -> Option<&RangeResponse> {
    use oxcd_api::etcdserverpb::response_op::Response as R;
    match resp.responses.get(i)?.response.as_ref()? {
        R::ResponseRange(r) => Some(r),
        _ => None,
    }
}

/// Deletes a key when dropped unless disarmed: a contender that stops waiting (its client went
/// away, or the wait failed) leaves the queue, as etcd's recipes clean up after themselves.
pub(super) struct DeleteOnDrop {
    keys: Option<Keys>,
    key: Vec<u8>,
    /// Delete only while the key still has this create revision (0: unconditionally).
    create_rev: i64,
}

impl DeleteOnDrop {
    pub(super) fn new(keys: &Keys, key: Vec<u8>, create_rev: i64) -> DeleteOnDrop {
        DeleteOnDrop {
            keys: Some(keys.clone()),
            key,
            create_rev,
        }
    }

    pub(super) fn disarm(mut self) {
        self.keys = None;
    }
}

impl Drop for DeleteOnDrop {
    fn drop(&mut self) {
        let Some(keys) = self.keys.take() else {
            return;
        };
        let key = std::mem::take(&mut self.key);
        let create_rev = self.create_rev;
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let result = if create_rev == 0 {
                keys.delete(key.clone()).await.map(|_| ())
            } else {
                let req = TxnRequest {
                    compare: vec![created_at(&key, create_rev)],
                    success: vec![delete_op(&key)],
                    failure: Vec::new(),
                };
                keys.txn(req).await.map(|_| ())
            };
            if let Err(e) = result {
                tracing::warn!(
                    key = %String::from_utf8_lossy(&key),
                    error = %e,
                    "failed to remove an abandoned lock or election key"
                );
            }
        });
    }
}

/// The etcd Lock service.
pub struct LockService {
    keys: Keys,
}

impl LockService {
    pub fn new(server: Arc<EtcdServer>) -> LockService {
        LockService {
            keys: Keys::new(server),
        }
    }

    async fn lock(&self, req: LockRequest) -> Result<LockResponse, ServerError> {
        let lease = self.keys.session_lease(req.lease).await?;
        let mut prefix = req.name;
        prefix.push(b'/');
        let key = lease_key(&prefix, lease);
        // Join the queue, unless this lease is in it already; in the same txn, find the holder.
        let txn = TxnRequest {
            compare: vec![created_at(&key, 0)],
            success: vec![
                put_op(&key, b"", lease),
                get_op(by_create_revision(&prefix, SortOrder::Ascend)),
            ],
            failure: vec![
                get_op(get_key(&key)),
                get_op(by_create_revision(&prefix, SortOrder::Ascend)),
            ],
        };
        let resp = self.keys.txn(txn).await?;
        let header = resp.header.unwrap_or_default();
        let my_rev = if resp.succeeded {
            header.revision
        } else {
            range_at(&resp, 0)
                .and_then(|r| r.kvs.first())
                .map_or(0, |kv| kv.create_revision)
        };
        let holder = range_at(&resp, 1).and_then(|r| r.kvs.first());
        if holder.is_none_or(|kv| kv.create_revision == my_rev) {
            return Ok(LockResponse {
                header: Some(header),
                key,
            });
        }
        let cleanup = DeleteOnDrop::new(&self.keys, key.clone(), 0);
        let header = self.keys.wait_deletes(&prefix, my_rev - 1).await?;
        cleanup.disarm();
        Ok(LockResponse {
            header: Some(header),
            key,
        })
    }
}

#[tonic::async_trait]
impl Lock for LockService {
    async fn lock(&self, request: Request<LockRequest>) -> Result<Response<LockResponse>, Status> {
        let service = LockService {
            keys: self.keys.for_request(&request).await?,
        };
        let resp = LockService::lock(&service, request.into_inner())
            .await
            .map_err(recipe_error)?;
        Ok(Response::new(resp))
    }

    async fn unlock(
        &self,
        request: Request<UnlockRequest>,
    ) -> Result<Response<UnlockResponse>, Status> {
        let keys = self.keys.for_request(&request).await?;
        let resp = keys
            .delete(request.into_inner().key)
            .await
            .map_err(recipe_error)?;
        Ok(Response::new(UnlockResponse {
            header: resp.header,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_the_last_byte_below_ff() {
        assert_eq!(prefix_end(b"lock/"), b"lock0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), b"\0");
        assert_eq!(prefix_end(b""), b"\0");
    }

    #[test]
    fn lease_keys_print_the_lease_as_go_prints_an_int64_in_hex() {
        assert_eq!(
            lease_key(b"l/", 0x694d_7a1c_3f8a_2b01),
            b"l/694d7a1c3f8a2b01"
        );
        assert_eq!(lease_key(b"l/", 10), b"l/a");
        assert_eq!(lease_key(b"l/", -26), b"l/-1a");
    }
}
