//! The Maintenance service: status and hashes now; the other RPCs answer Unimplemented
//! until they are built.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use oxcd_api::etcdserverpb::maintenance_server::Maintenance;
use oxcd_api::etcdserverpb::*;
use tonic::{Request, Response, Status};

use crate::config::ETCD_VERSION;
use crate::error::ServerError;
use crate::server::EtcdServer;
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
    async fn alarm(&self, _: Request<AlarmRequest>) -> Result<Response<AlarmResponse>, Status> {
        Err(not_built("Alarm"))
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
                    errors: Vec::new(),
                    db_size_in_use: backend.size_in_use()? as i64,
                    is_learner: false,
                })
            })
            .await?;
        Ok(Response::new(resp))
    }

    async fn defragment(
        &self,
        _: Request<DefragmentRequest>,
    ) -> Result<Response<DefragmentResponse>, Status> {
        Err(not_built("Defragment"))
    }

    async fn hash(&self, _: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
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
        _: Request<SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        Err(not_built("Snapshot"))
    }

    async fn move_leader(
        &self,
        request: Request<MoveLeaderRequest>,
    ) -> Result<Response<MoveLeaderResponse>, Status> {
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
        _: Request<DowngradeRequest>,
    ) -> Result<Response<DowngradeResponse>, Status> {
        Err(not_built("Downgrade"))
    }
}
