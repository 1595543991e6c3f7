//! The KV service: validates at the edge, serves reads locally (after a ReadIndex unless
//! serializable), and proposes writes through Raft.

use std::sync::Arc;

use oxcd_api::etcdserverpb::kv_server::Kv;
use oxcd_api::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse,
    InternalRaftRequest, PutRequest, PutResponse, RangeRequest, RangeResponse, TxnRequest,
    TxnResponse,
};
use prost::Message as _;
use tonic::{Request, Response, Status};

use super::auth::{lease_keys, sender, Credentials};
use super::status::status;
use crate::apply::ApplyResponse;
use crate::auth::AuthInfo;
use crate::error::ServerError;
use crate::kv::{range, txn, validate};
use crate::server::EtcdServer;
use oxcd_api::EtcdError;

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

    /// Runs a blocking MVCC read off the async runtime.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&EtcdServer) -> Result<T, ServerError> + Send + 'static,
    ) -> Result<T, Status> {
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

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(
        &self,
        request: Request<RangeRequest>,
    ) -> Result<Response<RangeResponse>, Status> {
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
        let mut resp = self
            .read(move |s| {
                let sender = credentials.resolve(&s.auth)?.unwrap_or_default();
                s.auth.check_range(&sender, &req)?;
                let resp = range::range(&mut s.kv.as_ref(), &req)?;
                still_allowed(s, &sender)?;
                Ok(resp)
            })
            .await?;
        self.fill_header(&mut resp.header);
        Ok(Response::new(resp))
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
            let resp = self
                .read(move |s| {
                    let sender = credentials.resolve(&s.auth)?.unwrap_or_default();
                    s.auth.check_txn(&sender, &req, &lease_keys(s))?;
                    let mut view = s.kv.as_ref();
                    let mut resp = txn::read_txn(&mut view, &req)?;
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
