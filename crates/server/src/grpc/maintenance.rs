//! The Maintenance service: status and hashes now; the other RPCs answer Unimplemented
//! until they are built.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use oxcd_api::etcdserverpb::maintenance_server::Maintenance;
use oxcd_api::etcdserverpb::*;
use tonic::{Request, Response, Status};

use super::auth::{require_admin, sender};
use super::status::status;
use crate::apply::ApplyResponse;
use crate::config::ETCD_VERSION;
use crate::error::ServerError;
use crate::server::EtcdServer;
use oxcd_api::etcdserverpb::alarm_request::AlarmAction;
use oxcd_api::EtcdError;
use sha2::{Digest, Sha256};

pub struct MaintenanceService {
    server: Arc<EtcdServer>,
}

impl MaintenanceService {
    pub fn new(server: Arc<EtcdServer>) -> MaintenanceService {
        MaintenanceService { server }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&EtcdServer) -> Result<T, ServerError> + Send + 'static,
    ) -> Result<T, Status> {
        let server = self.server.clone();
        let result = tokio::task::spawn_blocking(move || f(&server))
            .await
            .map_err(|e| Status::internal(format!("maintenance task failed: {e}")))?;
        Ok(result?)
    }
}

fn not_built(rpc: &str) -> Status {
    Status::unimplemented(format!("{rpc} is not implemented in this oxcd version"))
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn alarm(
        &self,
        request: Request<AlarmRequest>,
    ) -> Result<Response<AlarmResponse>, Status> {
        let sender = sender(&self.server, &request).await?;
        let req = request.into_inner();
        if req.action == AlarmAction::Deactivate as i32 {
            // Disarming lifts a cluster-wide protection: root only.
            self.server
                .auth
                .check_admin(&sender.clone().unwrap_or_default())
                .map_err(status)?;
        }
        // Alarms go through Raft so every member agrees on them, GET included.
        let internal = InternalRaftRequest {
            alarm: Some(req),
            ..Default::default()
        };
        match self.server.propose_as(internal, sender.as_ref()).await? {
            ApplyResponse::Alarm(mut resp) => {
                resp.header = Some(self.server.header(self.server.kv.current_revision()));
                Ok(Response::new(resp))
            }
            _ => Err(Status::internal(
                "apply answered an alarm request with another kind of response",
            )),
        }
    }

    async fn status(&self, _: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        let resp = self
            .blocking(|s| {
                let backend = s.kv.backend();
                Ok(StatusResponse {
                    header: Some(s.header(s.kv.current_revision())),
                    version: ETCD_VERSION.to_string(),
                    db_size: backend.size()? as i64,
                    leader: s.raft_status.leader(),
                    raft_index: s.raft_status.commit(),
                    raft_term: s.raft_status.term(),
                    raft_applied_index: s.applied_index(),
                    errors: s.alarms.status_errors(),
                    db_size_in_use: backend.size_in_use()? as i64,
                    is_learner: s.is_learner(),
                })
            })
            .await?;
        Ok(Response::new(resp))
    }

    async fn defragment(
        &self,
        request: Request<DefragmentRequest>,
    ) -> Result<Response<DefragmentResponse>, Status> {
        require_admin(&self.server, &request).await?;
        tracing::info!("starting defragment");
        let resp = self
            .blocking(|s| {
                let before = s.kv.backend().size()?;
                let started = std::time::Instant::now();
                s.kv.backend().defrag()?;
                tracing::info!(
                    "current-db-size-bytes" = before,
                    "new-db-size-bytes" = s.kv.backend().size()?,
                    took = ?started.elapsed(),
                    "finished defragment"
                );
                // etcd answers an empty response, without a header.
                Ok(DefragmentResponse { header: None })
            })
            .await?;
        Ok(Response::new(resp))
    }

    async fn hash(&self, request: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        require_admin(&self.server, &request).await?;
        let resp = self
            .blocking(|s| {
                let (hash, revision) = s.kv.hash()?;
                Ok(HashResponse {
                    header: Some(s.header(revision)),
                    hash,
                })
            })
            .await?;
        Ok(Response::new(resp))
    }

    async fn hash_kv(
        &self,
        request: Request<HashKvRequest>,
    ) -> Result<Response<HashKvResponse>, Status> {
        require_admin(&self.server, &request).await?;
        let rev = request.into_inner().revision;
        let resp = self
            .blocking(move |s| {
                let h = s.kv.hash_kv(rev)?;
                Ok(HashKvResponse {
                    header: Some(s.header(h.current_revision)),
                    hash: h.hash,
                    // etcd reports -1 until the first compaction.
                    compact_revision: if h.compact_revision == 0 {
                        -1
                    } else {
                        h.compact_revision
                    },
                    hash_revision: h.hash_revision,
                })
            })
            .await?;
        Ok(Response::new(resp))
    }

    type SnapshotStream = Pin<Box<dyn Stream<Item = Result<SnapshotResponse, Status>> + Send>>;

    async fn snapshot(
        &self,
        request: Request<SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        require_admin(&self.server, &request).await?;
        // The backend's contents, streamed in chunks as they are dumped from one read
        // transaction, followed (as etcd does) by the SHA-256 of everything before it.
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<SnapshotResponse, Status>>(4);
        let server = self.server.clone();
        tokio::task::spawn_blocking(move || {
            let header = server.header(server.kv.current_revision());
            let estimate = server.kv.backend().size().unwrap_or(0);
            let mut writer = SnapshotWriter {
                buf: Vec::new(),
                hasher: Sha256::new(),
                tx: tx.clone(),
                header,
                sent: 0,
                estimate,
            };
            let result = server.kv.backend().dump(&mut writer, |_| {});
            let result = result
                .map_err(|e| e.to_string())
                .and_then(|_| writer.finish().map_err(|e| e.to_string()));
            match result {
                Ok(total) => tracing::info!(bytes = total, "sent database snapshot to client"),
                Err(e) => {
                    let _ =
                        tx.blocking_send(Err(Status::internal(format!("snapshot failed: {e}"))));
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn move_leader(
        &self,
        request: Request<MoveLeaderRequest>,
    ) -> Result<Response<MoveLeaderResponse>, Status> {
        require_admin(&self.server, &request).await?;
        let target = request.into_inner().target_id;
        if !self.server.raft_status.is_leader() {
            return Err(ServerError::from(EtcdError::NotLeader).into());
        }
        match self.server.membership.get(target) {
            Some(member) if !member.is_learner => {}
            _ => return Err(ServerError::from(EtcdError::BadLeaderTransferee).into()),
        }
        if target != self.server.member_id {
            self.server.move_leader(target).await?;
        }
        Ok(Response::new(MoveLeaderResponse {
            header: Some(self.server.header(self.server.kv.current_revision())),
        }))
    }

    async fn downgrade(
        &self,
        request: Request<DowngradeRequest>,
    ) -> Result<Response<DowngradeResponse>, Status> {
        require_admin(&self.server, &request).await?;
        Err(not_built("Downgrade"))
    }
}

/// Bytes of snapshot per response message.
const SNAPSHOT_CHUNK: usize = 32 * 1024;

/// Cuts a backend dump into `SnapshotResponse`s, hashing as it goes.
struct SnapshotWriter {
    buf: Vec<u8>,
    hasher: Sha256,
    tx: tokio::sync::mpsc::Sender<Result<SnapshotResponse, Status>>,
    header: ResponseHeader,
    sent: u64,
    /// The backend file's size: the dump's length is only known at its end, so
    /// `remaining_bytes` counts down from this estimate (never reaching 0 before the end).
    estimate: u64,
}

impl SnapshotWriter {
    fn send(&mut self, blob: Vec<u8>, remaining_bytes: u64) -> std::io::Result<()> {
        self.sent += blob.len() as u64;
        let resp = SnapshotResponse {
            header: Some(self.header),
            remaining_bytes,
            blob,
        };
        self.tx
            .blocking_send(Ok(resp))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))
    }

    /// Sends what is buffered and the trailing SHA-256; returns the bytes sent.
    fn finish(mut self) -> std::io::Result<u64> {
        let rest = std::mem::take(&mut self.buf);
        if !rest.is_empty() {
            self.send(rest, 32)?;
        }
        let digest = self.hasher.clone().finalize().to_vec();
        self.send(digest, 0)?;
        Ok(self.sent)
    }
}

impl std::io::Write for SnapshotWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.hasher.update(data);
        self.buf.extend_from_slice(data);
        while self.buf.len() >= SNAPSHOT_CHUNK {
            let rest = self.buf.split_off(SNAPSHOT_CHUNK);
            let chunk = std::mem::replace(&mut self.buf, rest);
            let remaining = self
                .estimate
                .saturating_sub(self.sent + chunk.len() as u64)
                .max(1);
            self.send(chunk, remaining)?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
