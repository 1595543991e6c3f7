//! TTL expiry, decided once for the cluster: while this member leads and the v2 store holds
//! nodes with a TTL, it proposes a SYNC carrying its clock twice a second (as etcd's
//! SyncTicker); every member applies it by removing the nodes expired by that time, so all
//! remove the same nodes at the same index, whatever their own clocks say.

use std::sync::Arc;
use std::time::Duration;

use oxcd_api::etcdserverpb::{InternalRaftRequest, Request};

use crate::server::EtcdServer;

/// How often the leader proposes a SYNC (etcd: 500 ms).
const SYNC_INTERVAL: Duration = Duration::from_millis(500);

/// Runs until the process stops.
pub async fn run(server: Arc<EtcdServer>) {
    let mut tick = tokio::time::interval(SYNC_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if !server.raft_status.is_leader() || !server.v2.has_ttl_keys() {
            continue;
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64);
        let sync = InternalRaftRequest {
            v2: Some(Request {
                method: Some("SYNC".into()),
                time: Some(now),
                ..Default::default()
            }),
            ..Default::default()
        };
        if let Err(e) = server.propose(sync).await {
            tracing::warn!(error = %e, "failed to propose a v2 store SYNC");
        }
    }
}
