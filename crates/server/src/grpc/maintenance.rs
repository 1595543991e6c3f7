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
use crate::config::etcd_release;
use crate::error::ServerError;
use crate::server::EtcdServer;
use crate::stats::{InProgress, SERVER};
use oxcd_api::etcdserverpb::alarm_request::AlarmAction;
use oxcd_api::EtcdError;

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
                    version: etcd_release().server_version().to_string(),
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
        require_root(&self.server, &request).await?;
        tracing::info!("starting defragment");
        let resp = self
            .blocking(|s| {
                let before = s.kv.backend().size()?;
                let started = std::time::Instant::now();
                let _running = InProgress::start(&SERVER.defrags_running);
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
        require_root(&self.server, &request).await?;
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
        require_root(&self.server, &request).await?;
        let rev = request.into_inner().revision;
        let resp = self
            .blocking(move |s| crate::corrupt::hash_kv(s, rev))
            .await?;
        Ok(Response::new(resp))
    }

    type SnapshotStream = Pin<Box<dyn Stream<Item = Result<SnapshotResponse, Status>> + Send>>;

    async fn snapshot(
        &self,
        request: Request<SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        require_root(&self.server, &request).await?;
        // etcd's format: a bbolt database of one read transaction's view, followed by its
        // SHA-256, streamed in chunks as it is laid out (oxcd_storage::SnapshotFile reads it).
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<SnapshotResponse, Status>>(4);
        let server = self.server.clone();
        tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            let header = server.header(server.kv.current_revision());
            let result = server.kv.backend().begin_etcd_snapshot().and_then(|snap| {
                let mut writer = SnapshotWriter {
                    buf: Vec::with_capacity(SNAPSHOT_CHUNK),
                    tx: tx.clone(),
                    header,
                    total: snap.size(),
                    sent: 0,
                };
                snap.write_to(&mut writer, &mut |_| {})?;
                writer.finish()?;
                Ok(snap.size())
            });
            match result {
                Ok(total) => {
                    metrics::histogram!("etcd_disk_backend_snapshot_duration_seconds")
                        .record(started.elapsed().as_secs_f64());
                    tracing::info!(bytes = total, "sent database snapshot to client");
                }
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

/// Cuts the snapshot stream into `SnapshotResponse`s.
struct SnapshotWriter {
    buf: Vec<u8>,
    tx: tokio::sync::mpsc::Sender<Result<SnapshotResponse, Status>>,
    header: ResponseHeader,
    /// Bytes of the whole stream, known before it starts.
    total: u64,
    sent: u64,
}

impl SnapshotWriter {
    fn send(&mut self) -> std::io::Result<()> {
        let blob = std::mem::replace(&mut self.buf, Vec::with_capacity(SNAPSHOT_CHUNK));
        self.sent += blob.len() as u64;
        let resp = SnapshotResponse {
            header: Some(self.header),
            remaining_bytes: self.total.saturating_sub(self.sent),
            blob,
        };
        self.tx
            .blocking_send(Ok(resp))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))
    }

    /// Sends what is still buffered.
    fn finish(mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            self.send()?;
        }
        Ok(())
    }
}

impl std::io::Write for SnapshotWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = data.len().min(SNAPSHOT_CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == SNAPSHOT_CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Root only, refused as etcd's maintenance service refuses: it passes the auth store's own
/// error through untranslated, so the client sees gRPC Unknown with `auth: permission denied`
/// (not the `etcdserver: permission denied` of the KV calls). Defragment, Snapshot, Hash and
/// HashKV answer this way in etcd 3.4 and 3.5.
async fn require_root<T>(server: &EtcdServer, request: &Request<T>) -> Result<(), Status> {
    let sender = sender(server, request).await?.unwrap_or_default();
    server.auth.check_admin(&sender).map_err(|e| match e {
        EtcdError::PermissionDenied => Status::unknown("auth: permission denied"),
        EtcdError::UserEmpty => Status::unknown("auth: user name is empty"),
        EtcdError::UserNotFound => Status::unknown("auth: user not found"),
        other => status(other),
    })
}
