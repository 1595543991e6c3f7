//! The receiving side: every message of a peer's stream is handed to the raft thread.

use std::path::PathBuf;
use std::sync::{mpsc, Arc};

use tokio::io::AsyncWriteExt;

use oxcd_api::etcdserverpb::{
    HashKvRequest, HashKvResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse,
};
use oxcd_api::oxcdpb::peer_server::Peer;
use oxcd_api::oxcdpb::{PeerAck, PeerMessage, SnapshotAck, SnapshotChunk};
use protobuf::Message as _;
use raft::eraftpb::Message;
use tonic::{Request, Response, Status, Streaming};

use super::metrics::{self as peer_metrics, PeerInbound, SnapshotTransfer, SnapshotWay};
use crate::raft::RaftInput;
use crate::server::EtcdServer;

/// Serves `oxcdpb.Peer` for one member.
pub struct PeerService {
    cluster_id: u64,
    raft: mpsc::Sender<RaftInput>,
    server: Arc<EtcdServer>,
    /// Where received snapshot dumps are written (`member/snap`).
    snap_dir: PathBuf,
}

impl PeerService {
    pub fn new(server: Arc<EtcdServer>, snap_dir: PathBuf) -> PeerService {
        PeerService {
            cluster_id: server.cluster_id,
            raft: server.raft_sender(),
            server,
            snap_dir,
        }
    }
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn stream(
        &self,
        request: Request<Streaming<PeerMessage>>,
    ) -> Result<Response<PeerAck>, Status> {
        let mut stream = request.into_inner();
        let mut received = 0;
        let mut inbound: Option<PeerInbound> = None;
        while let Some(peer_msg) = stream.message().await? {
            if peer_msg.cluster_id != self.cluster_id {
                peer_metrics::receive_failed(peer_msg.from);
                tracing::warn!(
                    "remote-peer-id" = format!("{:x}", peer_msg.from),
                    "remote-cluster-id" = format!("{:x}", peer_msg.cluster_id),
                    "local-cluster-id" = format!("{:x}", self.cluster_id),
                    "rejected a peer stream from another cluster"
                );
                return Err(Status::failed_precondition("cluster ID mismatch"));
            }
            let msg = Message::parse_from_bytes(&peer_msg.message).map_err(|e| {
                peer_metrics::receive_failed(peer_msg.from);
                Status::invalid_argument(format!("raft message does not decode: {e}"))
            })?;
            inbound
                .get_or_insert_with(|| PeerInbound::new(peer_msg.from))
                .received(peer_msg.from, peer_msg.message.len());
            if msg.get_msg_type() == raft::eraftpb::MessageType::MsgAppend {
                self.server
                    .transport_stats
                    .received_append(peer_msg.message.len());
            }
            if self.raft.send(RaftInput::Step(msg)).is_err() {
                return Err(Status::unavailable("member is stopping"));
            }
            received += 1;
        }
        Ok(Response::new(PeerAck { received }))
    }

    async fn snapshot(
        &self,
        request: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<SnapshotAck>, Status> {
        let mut stream = request.into_inner();
        let first = stream
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("empty snapshot stream"))?;
        if first.cluster_id != self.cluster_id {
            peer_metrics::receive_failed(first.from);
            return Err(Status::failed_precondition("cluster ID mismatch"));
        }
        // Dropped on any early return: counted as a failed receive.
        let transfer = SnapshotTransfer::start(SnapshotWay::Receive, first.from);
        let mut msg = Message::parse_from_bytes(&first.metadata).map_err(|e| {
            Status::invalid_argument(format!("snapshot message does not decode: {e}"))
        })?;
        let index = msg.get_snapshot().get_metadata().index;
        let started = std::time::Instant::now();
        let path = self.snap_dir.join(format!("{index:016x}.snap.db"));
        let file = oxcd_storage::dir_ops::create(&path, || std::fs::File::create(&path))
            .map_err(|e| Status::internal(format!("cannot create {}: {e}", path.display())))?;
        let mut file = tokio::fs::File::from_std(file);
        let mut received = first.data.len() as u64;
        file.write_all(&first.data)
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        while let Some(chunk) = stream.message().await? {
            file.write_all(&chunk.data)
                .await
                .map_err(|e| Status::internal(e.to_string()))?;
            received += chunk.data.len() as u64;
        }
        let fsync_started = std::time::Instant::now();
        file.sync_all()
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        // The dump's directory entry must be durable too: once raft saves the snapshot, a
        // restart loads the backend from this file.
        let snap_dir = self.snap_dir.clone();
        let dir_synced =
            tokio::task::spawn_blocking(move || oxcd_storage::dir_ops::sync_dir(&snap_dir))
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        dir_synced.map_err(|e| {
            Status::internal(format!("cannot sync {}: {e}", self.snap_dir.display()))
        })?;
        metrics::histogram!("etcd_snap_db_fsync_duration_seconds")
            .record(fsync_started.elapsed().as_secs_f64());
        metrics::histogram!("etcd_snap_db_save_total_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        tracing::info!(
            "remote-peer-id" = format!("{:x}", first.from),
            "snapshot-index" = index,
            bytes = received,
            "received database snapshot"
        );
        transfer.succeeded(received);
        fail::fail_point!("raft_after_snapshot_receive");
        // Raft carries the snapshot on to the apply thread; `data` tells it where the dump is.
        msg.mut_snapshot().data = path.to_string_lossy().into_owned().into_bytes().into();
        if self.raft.send(RaftInput::Step(msg)).is_err() {
            return Err(Status::unavailable("member is stopping"));
        }
        Ok(Response::new(SnapshotAck {
            received_bytes: received,
        }))
    }

    async fn lease_renew(
        &self,
        request: Request<LeaseKeepAliveRequest>,
    ) -> Result<Response<LeaseKeepAliveResponse>, Status> {
        let id = request.into_inner().id;
        let ttl = crate::lease::leader::renew(&self.server, id).await?;
        Ok(Response::new(LeaseKeepAliveResponse {
            header: Some(self.server.header(self.server.kv.current_revision())),
            id,
            ttl,
        }))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        let req = request.into_inner();
        let status = crate::lease::leader::time_to_live(&self.server, req.id, req.keys).await?;
        let header = Some(self.server.header(self.server.kv.current_revision()));
        let resp = match status {
            Some(s) => LeaseTimeToLiveResponse {
                header,
                id: s.id,
                ttl: s.ttl,
                granted_ttl: s.granted_ttl,
                keys: s.keys,
            },
            None => LeaseTimeToLiveResponse {
                header,
                id: req.id,
                ttl: -1,
                ..Default::default()
            },
        };
        Ok(Response::new(resp))
    }

    async fn members(
        &self,
        _: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        Ok(Response::new(MemberListResponse {
            header: Some(self.server.header(0)),
            members: self.server.membership.list(),
        }))
    }

    async fn hash_kv(
        &self,
        request: Request<HashKvRequest>,
    ) -> Result<Response<HashKvResponse>, Status> {
        let rev = request.into_inner().revision;
        let server = self.server.clone();
        let resp = tokio::task::spawn_blocking(move || crate::corrupt::hash_kv(&server, rev))
            .await
            .map_err(|e| Status::internal(format!("hash task failed: {e}")))??;
        Ok(Response::new(resp))
    }

    /// The leader's half of a promotion a follower forwards. The follower has checked the
    /// caller's permission; peers trust each other, as etcd's peer handler does.
    async fn member_promote(
        &self,
        request: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        let id = request.into_inner().id;
        let members = crate::grpc::cluster::ClusterService::new(self.server.clone())
            .promote_as_leader(id)
            .await?;
        Ok(Response::new(MemberPromoteResponse {
            header: Some(self.server.header(0)),
            members,
        }))
    }
}
