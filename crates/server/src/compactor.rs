//! Auto-compaction (`--auto-compaction-mode`, `--auto-compaction-retention`), run by the
//! leader only and proposed through Raft like a client's Compact.
//!
//! - periodic: every tenth of the retention (of an hour at most) the current revision is
//!   sampled; once a full retention of samples exists, the store is compacted to the oldest,
//!   so about `retention` of history is kept.
//! - revision: every five minutes, the store is compacted to `current - retention`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use oxcd_api::etcdserverpb::{CompactionRequest, InternalRaftRequest};
use oxcd_api::EtcdError;

use crate::config::AutoCompaction;
use crate::error::ServerError;
use crate::server::EtcdServer;

/// How often revision mode checks (etcd's revInterval).
const REVISION_CHECK_INTERVAL: Duration = Duration::from_secs(5 * 60);

/// Periodic mode samples this many times per retention (etcd's retryDivisor).
const SAMPLES_PER_RETENTION: u32 = 10;

/// Periodic mode never waits longer than this between compactions.
const MAX_PERIODIC_INTERVAL: Duration = Duration::from_secs(3600);

/// Runs auto-compaction until the process ends; returns at once when disabled.
pub async fn run(server: Arc<EtcdServer>, mode: AutoCompaction) {
    match mode {
        AutoCompaction::Disabled => {}
        AutoCompaction::Periodic(retention) => periodic(server, retention).await,
        AutoCompaction::Revision(retention) => by_revision(server, retention).await,
    }
}

async fn periodic(server: Arc<EtcdServer>, retention: Duration) {
    if retention.is_zero() {
        return;
    }
    let interval = retention.min(MAX_PERIODIC_INTERVAL) / SAMPLES_PER_RETENTION;
    let keep = (retention.as_secs_f64() / interval.as_secs_f64())
        .round()
        .max(1.0) as usize;
    let mut samples: VecDeque<i64> = VecDeque::new();
    loop {
        tokio::time::sleep(interval).await;
        if !server.raft_status.is_leader() {
            // A new leader starts its own history.
            samples.clear();
            continue;
        }
        samples.push_back(server.kv.current_revision());
        if samples.len() > keep {
            let rev = samples.pop_front().unwrap_or(0);
            tracing::info!(revision = rev, "retention" = ?retention, "starting auto periodic compaction");
            compact(&server, rev).await;
        }
    }
}

async fn by_revision(server: Arc<EtcdServer>, retention: u64) {
    let mut last = 0;
    loop {
        tokio::time::sleep(REVISION_CHECK_INTERVAL).await;
        if !server.raft_status.is_leader() {
            continue;
        }
        let rev = server.kv.current_revision() - retention as i64;
        if rev <= 0 || rev == last {
            continue;
        }
        tracing::info!(
            revision = rev,
            "revision-compaction-retention" = retention,
            "starting auto revision compaction"
        );
        if compact(&server, rev).await {
            last = rev;
        }
    }
}

/// Proposes a compaction; returns whether the store is now compacted at `rev` or beyond.
async fn compact(server: &EtcdServer, rev: i64) -> bool {
    let req = InternalRaftRequest {
        compaction: Some(CompactionRequest {
            revision: rev,
            physical: false,
        }),
        ..Default::default()
    };
    match server.propose(req).await {
        Ok(_) => {
            tracing::info!(revision = rev, "completed auto compaction");
            true
        }
        Err(ServerError::Etcd(EtcdError::Compacted)) => true,
        Err(e) => {
            tracing::warn!(revision = rev, error = %e, "failed auto compaction");
            false
        }
    }
}
