//! The KV service: validates at the edge, serves reads locally (after a ReadIndex unless
//! serializable), and proposes writes through Raft.

use std::sync::Arc;

use oxcd_api::etcdserverpb::kv_server::Kv;
use oxcd_api::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse,
    InternalRaftRequest, PutRequest, PutResponse, RangeRequest, RangeResponse, RangeStreamResponse,
    TxnRequest, TxnResponse,
};
use prost::Message as _;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::auth::{lease_keys, sender, Credentials};
use super::status::status;
use crate::apply::ApplyResponse;
use crate::auth::AuthInfo;
use crate::error::ServerError;
use crate::kv::range::WireRange;
use crate::kv::{range, range_stream, txn, validate};
use crate::server::EtcdServer;
use oxcd_api::EtcdError;

/// Pieces of a RangeStream answer read ahead of the client: the server holds at most this
/// many (plus one held back and one being read) whatever the range's size.
const RANGE_STREAM_QUEUE: usize = 2;

pub struct KvService {
    server: Arc<EtcdServer>,
}

impl KvService {
    pub fn new(server: Arc<EtcdServer>) -> KvService {
        KvService { server }
    }

    fn fill_header(&self, header: &mut Option<oxcd_api::etcdserverpb::ResponseHeader>) {
        let revision = header.as_ref().map_or(0, |h| h.revision);
        *header = Some(self.server.header(revision));
    }

    async fn read_barrier(&self, serializable: bool) -> Result<(), Status> {
        if !serializable {
            self.server.linearizable_read_barrier().await?;
        }
        Ok(())
    }

    /// Runs an MVCC read: a point read (one key, so at most one value) on the calling task,
    /// as handing it to another thread costs more than the read itself; anything that may
    /// scan many keys off the async runtime.
    async fn read<T: Send + 'static>(
        &self,
        point: bool,
        f: impl FnOnce(&EtcdServer) -> Result<T, ServerError> + Send + 'static,
    ) -> Result<T, Status> {
        if point {
            return Ok(f(&self.server)?);
        }
        let server = self.server.clone();
        let result = tokio::task::spawn_blocking(move || f(&server))
            .await
            .map_err(|e| Status::internal(format!("read task failed: {e}")))?;
        Ok(result?)
    }
}

fn unexpected(what: &str) -> Status {
    Status::internal(format!(
        "apply answered a {what} request with another kind of response"
    ))
}

impl KvService {
    /// Range, answered in wire form (see `range_route`, which serves the RPC with it).
    pub async fn range_wire(&self, request: Request<RangeRequest>) -> Result<WireRange, Status> {
        let credentials = Credentials::of(&request);
        let req = request.into_inner();
        if !req.serializable {
            self.server.refuse_on_learner()?;
        }
        validate::check_range(&req).map_err(status)?;
        self.read_barrier(req.serializable).await?;
        credentials
            .wait_issued(&self.server)
            .await
            .map_err(status)?;
        let point = is_point(&req);
        let max_bytes = self.server.limits.max_send_bytes;
        let mut resp = self
            .read(point, move |s| {
                let sender = credentials.resolve(&s.auth)?.unwrap_or_default();
                s.auth.check_range(&sender, &req)?;
                let resp = range::range_wire(&s.kv, &req, Some(max_bytes))?;
                still_allowed(s, &sender)?;
                Ok(resp)
            })
            .await?;
        resp.header = self.server.header(resp.header.revision);
        Ok(resp)
    }
}

#[tonic::async_trait]
impl Kv for KvService {
    /// Served by `range_route` on the client port; here for callers of the generated service.
    async fn range(
        &self,
        request: Request<RangeRequest>,
    ) -> Result<Response<RangeResponse>, Status> {
        let wire = self.range_wire(request).await?;
        let kvs = RangeResponse::decode(&wire.kvs[..])
            .map_err(|e| Status::internal(format!("range answer does not decode: {e}")))?
            .kvs;
        Ok(Response::new(RangeResponse {
            header: Some(wire.header),
            kvs,
            more: wire.more,
            count: wire.count,
        }))
    }

    type RangeStreamStream = ReceiverStream<Result<RangeStreamResponse, Status>>;

    async fn range_stream(
        &self,
        request: Request<RangeRequest>,
    ) -> Result<Response<Self::RangeStreamStream>, Status> {
        let credentials = Credentials::of(&request);
        let req = request.into_inner();
        if !req.serializable {
            self.server.refuse_on_learner()?;
        }
        validate::check_range(&req).map_err(status)?;
        if !range_stream::is_supported(&req) {
            return Err(Status::unimplemented(
                "RangeStream does not sort: use Range for a sort order other than by key",
            ));
        }
        self.read_barrier(req.serializable).await?;
        credentials
            .wait_issued(&self.server)
            .await
            .map_err(status)?;
        let sender = credentials
            .resolve(&self.server.auth)
            .map_err(status)?
            .unwrap_or_default();
        self.server
            .auth
            .check_range(&sender, &req)
            .map_err(status)?;
        let (key, end, rev) = (req.key.clone(), req.range_end.clone(), req.revision);
        let cursor = self
            .read(false, move |s| Ok(s.kv.range_cursor(&key, &end, rev)?))
            .await?;
        let (tx, rx) = mpsc::channel(RANGE_STREAM_QUEUE);
        let server = self.server.clone();
        tokio::task::spawn_blocking(move || {
            let sent = range_stream::stream(cursor, &req, |mut piece| {
                if let Some(h) = &piece.header {
                    piece.header = Some(server.header(h.revision));
                }
                let chunk = RangeStreamResponse {
                    range_response: Some(piece),
                };
                tx.blocking_send(Ok(chunk)).is_ok()
            });
            if let Err(e) = sent {
                let _ = tx.blocking_send(Err(ServerError::from(e).into()));
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let sender = sender(&self.server, &request).await;
        let req = request.into_inner();
        self.server.refuse_on_learner()?;
        validate::check_put(&req).map_err(status)?;
        let sender = sender?;
        self.server
            .auth
            .check_put(
                &sender.clone().unwrap_or_default(),
                &req,
                &lease_keys(&self.server),
            )
            .map_err(status)?;
        self.server.check_quota(req.encoded_len()).await?;
        let internal = InternalRaftRequest {
            put: Some(req),
            ..Default::default()
        };
        match self.server.propose_as(internal, sender.as_ref()).await? {
            ApplyResponse::Put(mut resp) => {
                self.fill_header(&mut resp.header);
                Ok(Response::new(resp))
            }
            _ => Err(unexpected("put")),
        }
    }

    async fn delete_range(
        &self,
        request: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        let sender = sender(&self.server, &request).await;
        let req = request.into_inner();
        self.server.refuse_on_learner()?;
        validate::check_delete(&req).map_err(status)?;
        let sender = sender?;
        self.server
            .auth
            .check_delete(&sender.clone().unwrap_or_default(), &req)
            .map_err(status)?;
        let internal = InternalRaftRequest {
            delete_range: Some(req),
            ..Default::default()
        };
        match self.server.propose_as(internal, sender.as_ref()).await? {
            ApplyResponse::DeleteRange(mut resp) => {
                self.fill_header(&mut resp.header);
                Ok(Response::new(resp))
            }
            _ => Err(unexpected("delete")),
        }
    }

    async fn txn(&self, request: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        let credentials = Credentials::of(&request);
        let req = request.into_inner();
        self.server.refuse_on_learner()?;
        validate::check_txn(&req, self.server.limits.max_txn_ops).map_err(status)?;
        if txn::is_read_only(&req) {
            // Reads need no Raft round; a txn whose every range is serializable needs no
            // ReadIndex either.
            self.read_barrier(is_serializable(&req)).await?;
            credentials
                .wait_issued(&self.server)
                .await
                .map_err(status)?;
            let point = is_point_txn(&req);
            let max_bytes = self.server.limits.max_send_bytes;
            let resp = self
                .read(point, move |s| {
                    let sender = credentials.resolve(&s.auth)?.unwrap_or_default();
                    s.auth.check_txn(&sender, &req, &lease_keys(s))?;
                    let mut view = s.kv.as_ref();
                    let mut resp = txn::read_txn(&mut view, &req, max_bytes)?;
                    still_allowed(s, &sender)?;
                    resp.header = Some(s.header(s.kv.current_revision()));
                    Ok(resp)
                })
                .await?;
            return Ok(Response::new(resp));
        }
        credentials
            .wait_issued(&self.server)
            .await
            .map_err(status)?;
        let sender = credentials.resolve(&self.server.auth).map_err(status)?;
        self.server
            .auth
            .check_txn(
                &sender.clone().unwrap_or_default(),
                &req,
                &lease_keys(&self.server),
            )
            .map_err(status)?;
        self.server.check_quota(req.encoded_len()).await?;
        let internal = InternalRaftRequest {
            txn: Some(req),
            ..Default::default()
        };
        match self.server.propose_as(internal, sender.as_ref()).await? {
            ApplyResponse::Txn(mut resp) => {
                // Applied everywhere already; only the answer is refused, as grpc-go refuses
                // to send a message over its limit.
                let (size, max) = (resp.encoded_len(), self.server.limits.max_send_bytes);
                if size > max {
                    return Err(ServerError::ResponseTooLarge { size, max }.into());
                }
                self.fill_header(&mut resp.header);
                Ok(Response::new(resp))
            }
            _ => Err(unexpected("txn")),
        }
    }

    async fn compact(
        &self,
        request: Request<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        self.server.refuse_on_learner()?;
        let sender = sender(&self.server, &request).await?;
        let req = request.into_inner();
        let physical = req.physical;
        let internal = InternalRaftRequest {
            compaction: Some(req),
            ..Default::default()
        };
        match self.server.propose_as(internal, sender.as_ref()).await? {
            ApplyResponse::Compaction(mut resp, wait) => {
                if physical {
                    // --physical: answer once the old revisions are gone from the backend.
                    tokio::task::spawn_blocking(move || wait.wait())
                        .await
                        .map_err(|e| Status::internal(format!("compaction wait failed: {e}")))?
                        .map_err(ServerError::from)?;
                }
                self.fill_header(&mut resp.header);
                Ok(Response::new(resp))
            }
            _ => Err(unexpected("compaction")),
        }
    }
}

/// A range over one key: at most one value to read.
fn is_point(req: &RangeRequest) -> bool {
    req.range_end.is_empty()
}

/// A read-only txn whose compares and ranges all name single keys.
fn is_point_txn(req: &TxnRequest) -> bool {
    use oxcd_api::etcdserverpb::request_op::Request as Op;
    req.compare.iter().all(|c| c.range_end.is_empty())
        && req
            .success
            .iter()
            .chain(&req.failure)
            .all(|op| match &op.request {
                Some(Op::RequestRange(r)) => is_point(r),
                Some(Op::RequestTxn(inner)) => is_point_txn(inner),
                _ => true,
            })
}

/// A read served at the edge is refused when the auth store changed while it ran (etcd's
/// doSerialize): the sender's permissions may have been revoked meanwhile.
fn still_allowed(server: &EtcdServer, sender: &AuthInfo) -> Result<(), ServerError> {
    if sender.revision != 0 && sender.revision != server.auth.revision() {
        return Err(EtcdError::AuthOldRevision.into());
    }
    Ok(())
}

/// A read-only txn is serializable when every range in it is.
fn is_serializable(req: &TxnRequest) -> bool {
    use oxcd_api::etcdserverpb::request_op::Request as Op;
    req.success
        .iter()
        .chain(&req.failure)
        .all(|op| match &op.request {
            Some(Op::RequestRange(r)) => r.serializable,
            Some(Op::RequestTxn(inner)) => is_serializable(inner),
            _ => true,
        })
}
