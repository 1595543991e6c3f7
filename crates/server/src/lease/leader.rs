//! Requests only the leader's lessor can answer (renew, time-to-live): served locally when
//! this member leads, forwarded to the leader otherwise.
//!
//! Forwarding is a seam, [`LeaseForwarder`], that the peer transport fills in; a member
//! without peers uses [`NoForwarding`], which can only ever be asked when there is no leader.

use std::time::Duration;

use oxcd_api::etcdserverpb::{InternalRaftRequest, LeaseCheckpoint, LeaseCheckpointRequest};
use oxcd_api::EtcdError;
use tokio::time::Instant;

use super::{LeaseStatus, RenewError};
use crate::error::ServerError;
use crate::server::EtcdServer;

/// How long a renewal waits at most between two looks at who leads, while the local lessor is
/// not ready to answer (not yet promoted, or the lease's revoke is on its way).
const RECHECK: Duration = Duration::from_millis(100);

/// Asks the leader's lessor. Implemented by the peer transport.
///
/// Called from request handlers on the async runtime; each call may take a network round
/// trip. An error is handed to the client as it is, so it should be one of etcd's
/// (`LeaseNotFound` when the leader does not know the lease).
#[tonic::async_trait]
pub trait LeaseForwarder: Send + Sync {
    /// Renews lease `id` on member `leader`; returns the TTL it was renewed to.
    async fn renew(&self, leader: u64, id: i64) -> Result<i64, ServerError>;

    /// Lease `id` as member `leader` sees it; `None` when it has no such lease.
    async fn time_to_live(
        &self,
        leader: u64,
        id: i64,
        with_keys: bool,
    ) -> Result<Option<LeaseStatus>, ServerError>;
}

/// The forwarder of a member with no peers: it is its own leader whenever there is one.
pub struct NoForwarding;

#[tonic::async_trait]
impl LeaseForwarder for NoForwarding {
    async fn renew(&self, _leader: u64, _id: i64) -> Result<i64, ServerError> {
        Err(EtcdError::NoLeader.into())
    }

    async fn time_to_live(
        &self,
        _leader: u64,
        _id: i64,
        _with_keys: bool,
    ) -> Result<Option<LeaseStatus>, ServerError> {
        Err(EtcdError::NoLeader.into())
    }
}

/// Renews lease `id` and returns its TTL (etcd's `LeaseRenew`). `LeaseNotFound` when the
/// lease does not exist or expired before it could be renewed.
pub async fn renew(server: &EtcdServer, id: i64) -> Result<i64, ServerError> {
    let deadline = Instant::now() + server.limits.request_timeout;
    loop {
        if !server.raft_status.is_leader() {
            match forward(server, deadline, |leader| {
                server.lease_forwarder.renew(leader, id)
            })
            .await
            {
                Some(result) => return result,
                None => continue,
            }
        }
        // A lease granted just before must be applied before this lessor can know it.
        server
            .wait_applied(server.raft_status.commit(), deadline)
            .await?;
        let mut changes = server.lessor.subscribe();
        match server.lessor.renew(id) {
            Ok(renewal) => {
                if renewal.clear_checkpoint {
                    clear_checkpoint(server, id).await?;
                }
                return Ok(renewal.ttl);
            }
            Err(RenewError::NotFound) => return Err(EtcdError::LeaseNotFound.into()),
            Err(RenewError::NotPrimary) | Err(RenewError::Expired) => {
                // Wait for the revoke, the promotion, or a look at leadership again.
                if Instant::now() >= deadline {
                    return Err(EtcdError::Timeout.into());
                }
                let wait = deadline.min(Instant::now() + RECHECK);
                let _ = tokio::time::timeout_at(wait, changes.changed()).await;
            }
        }
    }
}

/// Lease `id` as the leader's lessor sees it (etcd's `LeaseTimeToLive`); `None` when there is
/// no such lease.
pub async fn time_to_live(
    server: &EtcdServer,
    id: i64,
    with_keys: bool,
) -> Result<Option<LeaseStatus>, ServerError> {
    let deadline = Instant::now() + server.limits.request_timeout;
    while !server.raft_status.is_leader() {
        let asked = forward(server, deadline, |leader| {
            server.lease_forwarder.time_to_live(leader, id, with_keys)
        });
        if let Some(result) = asked.await {
            return result;
        }
    }
    server
        .wait_applied(server.raft_status.commit(), deadline)
        .await?;
    Ok(server.lessor.time_to_live(id, with_keys))
}

/// Runs `ask` against the leader, waiting for one to be known, until `deadline`; `None` when
/// this member became the leader meanwhile and should answer itself.
async fn forward<T, F>(
    server: &EtcdServer,
    deadline: Instant,
    ask: impl Fn(u64) -> F,
) -> Option<Result<T, ServerError>>
where
    F: std::future::Future<Output = Result<T, ServerError>>,
{
    loop {
        let leader = server.raft_status.leader();
        if leader != raft::INVALID_ID && leader != server.member_id {
            return Some(match tokio::time::timeout_at(deadline, ask(leader)).await {
                Ok(result) => result,
                Err(_) => Err(EtcdError::Timeout.into()),
            });
        }
        if server.raft_status.is_leader() {
            return None;
        }
        if Instant::now() >= deadline {
            return Some(Err(EtcdError::NoLeader.into()));
        }
        tokio::time::sleep_until(deadline.min(Instant::now() + RECHECK)).await;
    }
}

/// Proposes a checkpoint of 0 for `id`: the lease was renewed, so an older checkpointed
/// remaining TTL must not survive a leader change.
async fn clear_checkpoint(server: &EtcdServer, id: i64) -> Result<(), ServerError> {
    let req = InternalRaftRequest {
        lease_checkpoint: Some(LeaseCheckpointRequest {
            checkpoints: vec![LeaseCheckpoint {
                id,
                remaining_ttl: 0,
            }],
        }),
        ..Default::default()
    };
    server.propose(req).await.map(|_| ())
}
