//! The primary lessor's duties, as one task on the async runtime: while this member leads,
//! propose the revoke of every expired lease and the checkpoints that are due; when it stops
//! leading, demote the lessor.
//!
//! Revokes go through Raft like a client's, each its own proposal, at most
//! [`REVOKES_PER_ROUND`] per [`ROUND`] and [`MAX_PENDING_REVOKES`] in flight: a mass expiry
//! then trickles out at [`REVOKE_RATE`](super::REVOKE_RATE) per second at most instead of
//! flooding the log; checkpoints likewise. The task wakes when the earliest lease is due (so
//! a lease ends within milliseconds of its TTL), and at least every [`ROUND`].

use std::sync::Arc;
use std::time::Duration;

use oxcd_api::etcdserverpb::{
    InternalRaftRequest, LeaseCheckpoint, LeaseCheckpointRequest, LeaseRevokeRequest,
};
use oxcd_api::EtcdError;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::REVOKE_RATE;
use crate::error::ServerError;
use crate::server::EtcdServer;

/// The longest the task sleeps between two looks (etcd's lessor loop period).
pub const ROUND: Duration = Duration::from_millis(500);

/// Shortest sleep between rounds, so a lease retried in a tight spot cannot spin the task.
const MIN_SLEEP: Duration = Duration::from_millis(10);

/// Revokes proposed per round: half the per-second rate, as rounds come every half second.
pub const REVOKES_PER_ROUND: usize = REVOKE_RATE / 2;

/// Revoke proposals in flight at once (etcd's `maxPendingRevokes`).
pub const MAX_PENDING_REVOKES: usize = 16;

/// Checkpoints per Raft entry (etcd's `maxLeaseCheckpointBatchSize`).
pub const CHECKPOINTS_PER_ENTRY: usize = 1000;

/// Checkpoints proposed per round: half of etcd's `leaseCheckpointRate` of 1000 per second.
pub const CHECKPOINTS_PER_ROUND: usize = 500;

/// How long a member that is stopping waits for its final checkpoints.
const STOP_CHECKPOINT_TIMEOUT: Duration = Duration::from_secs(2);

/// How many of something may still be done in the current [`ROUND`]-long window: keeps
/// revokes and checkpoints at their per-second rates however often the task wakes.
struct Budget {
    per_round: usize,
    window: std::time::Instant,
    spent: usize,
}

impl Budget {
    fn new(per_round: usize) -> Budget {
        Budget {
            per_round,
            window: std::time::Instant::now(),
            spent: 0,
        }
    }

    /// What is left in the current window (a new window starts every round).
    fn left(&mut self) -> usize {
        if self.window.elapsed() >= ROUND {
            self.window = std::time::Instant::now();
            self.spent = 0;
        }
        self.per_round - self.spent
    }

    fn spend(&mut self, n: usize) {
        self.spent = (self.spent + n).min(self.per_round);
    }

    /// Time until the next window, when this one is used up.
    fn wait(&self) -> Option<Duration> {
        (self.spent == self.per_round).then(|| ROUND.saturating_sub(self.window.elapsed()))
    }
}

/// Runs the primary's duties for as long as the runtime runs.
pub async fn run(server: Arc<EtcdServer>) {
    let pending = Arc::new(Semaphore::new(MAX_PENDING_REVOKES));
    let mut revokes = Budget::new(REVOKES_PER_ROUND);
    let mut checkpoints = Budget::new(CHECKPOINTS_PER_ROUND);
    loop {
        let mut sleep = ROUND;
        let lessor = &server.lessor;
        if !server.raft_status.is_leader() {
            lessor.demote_unless(|| server.raft_status.is_leader());
        } else if lessor.is_primary() {
            let expired = lessor.expired(revokes.left());
            revokes.spend(expired.len());
            for id in expired {
                let Ok(permit) = pending.clone().acquire_owned().await else {
                    return;
                };
                let server = server.clone();
                tokio::spawn(async move {
                    revoke_expired(&server, id).await;
                    drop(permit);
                });
            }
            let due = lessor.due_checkpoints(checkpoints.left());
            checkpoints.spend(due.len());
            if !due.is_empty() {
                let server = server.clone();
                tokio::spawn(async move {
                    if let Err(e) = propose_checkpoints(&server, due).await {
                        tracing::warn!(error = %e, "failed to checkpoint leases");
                    }
                });
            }
            sleep = match revokes.wait() {
                Some(next_window) => next_window,
                None => lessor.next_expiry().map_or(ROUND, |next| {
                    next.saturating_duration_since(std::time::Instant::now())
                }),
            };
            sleep = sleep.clamp(MIN_SLEEP, ROUND);
        }
        tokio::time::sleep(sleep).await;
    }
}

async fn revoke_expired(server: &EtcdServer, id: i64) {
    // A member that lost leadership since must not end leases on a clock it no longer keeps.
    if !server.raft_status.is_leader() {
        return;
    }
    let req = InternalRaftRequest {
        lease_revoke: Some(LeaseRevokeRequest { id }),
        ..Default::default()
    };
    match server
        .propose_as(req, Some(&crate::auth::AuthInfo::member()))
        .await
    {
        Ok(_) => {
            crate::stats::inc(&crate::stats::SERVER.leases_expired);
            tracing::debug!("lease-id" = format!("{id:016x}"), "revoked expired lease");
        }
        // Revoked meanwhile by a client: nothing left to do.
        Err(ServerError::Etcd(EtcdError::LeaseNotFound)) => {}
        Err(e) => tracing::warn!(
            "lease-id" = format!("{id:016x}"),
            error = %e,
            "failed to revoke lease"
        ),
    }
}

async fn propose_checkpoints(
    server: &EtcdServer,
    checkpoints: Vec<LeaseCheckpoint>,
) -> Result<(), ServerError> {
    let req = InternalRaftRequest {
        lease_checkpoint: Some(LeaseCheckpointRequest { checkpoints }),
        ..Default::default()
    };
    server.propose(req).await.map(|_| ())
}

/// Checkpoints the remaining TTL of every lease that has used some of its TTL, so that a
/// restart resumes leases where they were rather than granting them their full TTL again.
/// Only the leader does it; bounded by a short timeout so a stop is never held up long.
pub async fn checkpoint_before_stop(server: &EtcdServer) {
    if !server.raft_status.is_leader() {
        return;
    }
    let all = server.lessor.checkpoints_for_stop();
    if all.is_empty() {
        return;
    }
    let count = all.len();
    let deadline = Instant::now() + STOP_CHECKPOINT_TIMEOUT;
    let work = async {
        for chunk in all.chunks(CHECKPOINTS_PER_ENTRY) {
            propose_checkpoints(server, chunk.to_vec()).await?;
        }
        Ok::<(), ServerError>(())
    };
    match tokio::time::timeout_at(deadline, work).await {
        Ok(Ok(())) => tracing::info!(leases = count, "checkpointed lease TTLs before stopping"),
        Ok(Err(e)) => tracing::warn!(error = %e, "failed to checkpoint lease TTLs before stopping"),
        Err(_) => tracing::warn!("timed out checkpointing lease TTLs before stopping"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_refills_each_round_and_says_how_long_to_wait_when_spent() {
        let mut b = Budget::new(3);
        assert_eq!(b.left(), 3);
        assert_eq!(b.wait(), None);
        b.spend(2);
        assert_eq!(b.left(), 1);
        b.spend(5);
        assert_eq!(b.left(), 0);
        let wait = b.wait().expect("spent");
        assert!(wait <= ROUND);
        std::thread::sleep(ROUND);
        assert_eq!(b.left(), 3, "a new round");
        assert_eq!(b.wait(), None);
    }
}
