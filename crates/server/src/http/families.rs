//! Every metric family oxcd exports under etcd's names: its type, help text (our words) and,
//! for histograms, etcd's buckets. One table, read by the recorder set-up (buckets), by
//! `describe` (help texts) and at install (families without labels exist from the start, at
//! zero, as etcd registers them).
//!
//! Families left out, and why: the Go runtime's `go_*` and `etcd_server_go_version` (no Go
//! runtime here); `etcd_grpc_proxy_*` (etcd registers its proxy's families in every member;
//! `oxcd grpc-proxy` forwards calls unchanged and keeps no such counts); bbolt's commit phases
//! `etcd_debugging_disk_backend_commit_{rebalance,spill,write}_duration_seconds` (redb has no
//! such phases; the whole commit is `etcd_disk_backend_commit_duration_seconds`);
//! `etcd_mvcc_db_open_read_transactions` (redb read transactions are not tracked).

/// What a family is.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    Counter,
    Gauge,
    /// Buckets `start`, `2 × start`, … (`count` of them), as etcd's exponential buckets.
    Histogram {
        start: f64,
        count: u32,
    },
}

/// One metric family.
#[derive(Debug)]
pub struct Family {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
    /// Its series carry labels: it appears once a series exists.
    pub labelled: bool,
}

const fn family(name: &'static str, kind: Kind, help: &'static str) -> Family {
    Family {
        name,
        kind,
        help,
        labelled: false,
    }
}

const fn labelled(name: &'static str, kind: Kind, help: &'static str) -> Family {
    Family {
        name,
        kind,
        help,
        labelled: true,
    }
}

use Kind::{Counter, Gauge};

const fn hist(start: f64, count: u32) -> Kind {
    Kind::Histogram { start, count }
}

/// Disk latencies: 1 ms doubling to about 8 s.
const DISK: Kind = hist(0.001, 14);

/// The families, by subsystem.
pub const FAMILIES: &[Family] = &[
    // ---- server ----
    family(
        "etcd_server_has_leader",
        Gauge,
        "1 if this member knows a leader, 0 if not.",
    ),
    family(
        "etcd_server_is_leader",
        Gauge,
        "1 if this member is the leader, 0 if not.",
    ),
    family(
        "etcd_server_is_learner",
        Gauge,
        "1 if this member is a learner, 0 if not.",
    ),
    family(
        "etcd_server_leader_changes_seen_total",
        Counter,
        "How many leader changes this member has seen.",
    ),
    family(
        "etcd_server_proposals_committed_total",
        Gauge,
        "Index of the last committed Raft entry.",
    ),
    family(
        "etcd_server_proposals_applied_total",
        Gauge,
        "Index of the last applied Raft entry.",
    ),
    family(
        "etcd_server_proposals_pending",
        Gauge,
        "Proposals made by this member and not yet applied.",
    ),
    family(
        "etcd_server_proposals_failed_total",
        Counter,
        "Proposals Raft refused (no leader, dropped).",
    ),
    family(
        "etcd_server_slow_apply_total",
        Counter,
        "Applies that took longer than 100 ms.",
    ),
    family(
        "etcd_server_read_indexes_failed_total",
        Counter,
        "Linearizable reads whose read index did not come back in time.",
    ),
    family(
        "etcd_server_slow_read_indexes_total",
        Counter,
        "Read index requests sent again because no answer came in time.",
    ),
    family(
        "etcd_server_heartbeat_send_failures_total",
        Counter,
        "Heartbeats the leader sent later than twice the heartbeat interval.",
    ),
    family(
        "etcd_server_learner_promote_successes",
        Counter,
        "Learners promoted to voting members.",
    ),
    family(
        "etcd_server_snapshot_apply_in_progress_total",
        Gauge,
        "1 while a Raft snapshot is being applied.",
    ),
    family(
        "etcd_server_quota_backend_bytes",
        Gauge,
        "The backend quota in bytes (--quota-backend-bytes).",
    ),
    family(
        "etcd_server_health_success",
        Counter,
        "Health checks that passed.",
    ),
    family(
        "etcd_server_health_failures",
        Counter,
        "Health checks that failed.",
    ),
    labelled("etcd_server_id", Gauge, "This member's id, as a label."),
    labelled(
        "etcd_server_version",
        Gauge,
        "The etcd version this member serves, as a label.",
    ),
    labelled(
        "etcd_cluster_version",
        Gauge,
        "The cluster's etcd version, as a label.",
    ),
    labelled(
        "etcd_server_client_requests_total",
        Counter,
        "gRPC client requests, by call type and the client's API version.",
    ),
    family(
        "etcd_debugging_server_lease_expired_total",
        Counter,
        "Expired leases this member revoked as lease primary.",
    ),
    family(
        "etcd_debugging_auth_revision",
        Gauge,
        "The auth store's revision.",
    ),
    // ---- disk ----
    family(
        "etcd_disk_wal_fsync_duration_seconds",
        DISK,
        "Latency of fdatasync calls made by the WAL.",
    ),
    family(
        "etcd_disk_wal_write_bytes_total",
        Gauge,
        "Bytes written to the WAL.",
    ),
    family(
        "etcd_disk_backend_commit_duration_seconds",
        DISK,
        "Latency of durable commits of the backend.",
    ),
    family(
        "etcd_disk_backend_defrag_duration_seconds",
        hist(0.1, 13),
        "Latency of backend defragmentations.",
    ),
    family(
        "etcd_disk_backend_snapshot_duration_seconds",
        hist(0.01, 17),
        "Latency of backend snapshots (streaming the whole database).",
    ),
    family(
        "etcd_disk_defrag_inflight",
        Gauge,
        "1 while a defragmentation runs.",
    ),
    // ---- snapshots ----
    family(
        "etcd_debugging_snap_save_total_duration_seconds",
        DISK,
        "Latency of saving a Raft snapshot file.",
    ),
    family(
        "etcd_debugging_snap_save_marshalling_duration_seconds",
        DISK,
        "Latency of encoding a Raft snapshot.",
    ),
    family(
        "etcd_snap_fsync_duration_seconds",
        DISK,
        "Latency of the fsync of a Raft snapshot file.",
    ),
    family(
        "etcd_snap_db_save_total_duration_seconds",
        hist(0.1, 10),
        "Latency of saving a database received from the leader.",
    ),
    family(
        "etcd_snap_db_fsync_duration_seconds",
        DISK,
        "Latency of the fsync of a database received from the leader.",
    ),
    // ---- mvcc ----
    family("etcd_mvcc_range_total", Counter, "Range operations."),
    family("etcd_mvcc_put_total", Counter, "Put operations."),
    family(
        "etcd_mvcc_delete_total",
        Counter,
        "Delete-range operations.",
    ),
    family(
        "etcd_mvcc_txn_total",
        Counter,
        "Transactions of more than one operation.",
    ),
    family(
        "etcd_mvcc_hash_duration_seconds",
        hist(0.01, 15),
        "Latency of hashing the whole backend.",
    ),
    family(
        "etcd_mvcc_hash_rev_duration_seconds",
        hist(0.01, 15),
        "Latency of hashing the key space at a revision.",
    ),
    family(
        "etcd_mvcc_db_total_size_in_bytes",
        Gauge,
        "Size of the backend file, allocated space included.",
    ),
    family(
        "etcd_mvcc_db_total_size_in_use_in_bytes",
        Gauge,
        "Bytes of the backend file in use.",
    ),
    family(
        "etcd_debugging_mvcc_range_total",
        Counter,
        "Range operations (older name).",
    ),
    family(
        "etcd_debugging_mvcc_put_total",
        Counter,
        "Put operations (older name).",
    ),
    family(
        "etcd_debugging_mvcc_delete_total",
        Counter,
        "Delete-range operations (older name).",
    ),
    family(
        "etcd_debugging_mvcc_txn_total",
        Counter,
        "Transactions of more than one operation (older name).",
    ),
    family(
        "etcd_debugging_mvcc_total_put_size_in_bytes",
        Gauge,
        "Bytes of keys and values put.",
    ),
    family(
        "etcd_debugging_mvcc_keys_total",
        Gauge,
        "Live keys in the store.",
    ),
    family(
        "etcd_debugging_mvcc_current_revision",
        Gauge,
        "The store's current revision.",
    ),
    family(
        "etcd_debugging_mvcc_compact_revision",
        Gauge,
        "The store's last compaction revision.",
    ),
    family(
        "etcd_debugging_mvcc_db_total_size_in_bytes",
        Gauge,
        "Size of the backend file, allocated space included.",
    ),
    family(
        "etcd_debugging_mvcc_db_compaction_keys_total",
        Counter,
        "Key revisions removed by compactions.",
    ),
    family(
        "etcd_debugging_mvcc_db_compaction_pause_duration_milliseconds",
        hist(1.0, 13),
        "Time of each backend compaction batch followed by a pause, in ms.",
    ),
    family(
        "etcd_debugging_mvcc_db_compaction_total_duration_milliseconds",
        hist(100.0, 14),
        "Time of whole compactions, in ms.",
    ),
    family(
        "etcd_debugging_mvcc_index_compaction_pause_duration_milliseconds",
        hist(0.5, 14),
        "Time of compacting the in-memory index, in ms.",
    ),
    family("etcd_debugging_mvcc_watcher_total", Gauge, "Watchers."),
    family(
        "etcd_debugging_mvcc_slow_watcher_total",
        Gauge,
        "Watchers behind the store (catching up from the backend).",
    ),
    family(
        "etcd_debugging_mvcc_watch_stream_total",
        Gauge,
        "Open watch streams.",
    ),
    family(
        "etcd_debugging_mvcc_pending_events_total",
        Gauge,
        "Watch events queued and not yet sent.",
    ),
    family(
        "etcd_debugging_mvcc_events_total",
        Counter,
        "Watch events sent.",
    ),
    // ---- leases ----
    family(
        "etcd_debugging_lease_granted_total",
        Counter,
        "Leases granted.",
    ),
    family(
        "etcd_debugging_lease_renewed_total",
        Counter,
        "Lease renewals.",
    ),
    family(
        "etcd_debugging_lease_revoked_total",
        Counter,
        "Leases revoked.",
    ),
    family(
        "etcd_debugging_lease_ttl_total",
        hist(1.0, 24),
        "TTLs of granted leases, in seconds.",
    ),
    // ---- network and gRPC ----
    family(
        "etcd_network_client_grpc_received_bytes_total",
        Counter,
        "Bytes received from gRPC clients.",
    ),
    family(
        "etcd_network_client_grpc_sent_bytes_total",
        Counter,
        "Bytes sent to gRPC clients.",
    ),
    // The v2 store (`v2::stats::STORE`), membership entries under `/0` included.
    labelled(
        "etcd_debugging_store_reads_total",
        Counter,
        "v2 store reads on this member, by action (get, getRecursive).",
    ),
    labelled(
        "etcd_debugging_store_writes_total",
        Counter,
        "v2 store writes applied on this member, by action, whatever their outcome.",
    ),
    family(
        "etcd_debugging_store_expires_total",
        Counter,
        "v2 keys removed because their TTL ran out.",
    ),
    family(
        "etcd_debugging_store_watch_requests_total",
        Counter,
        "v2 watch requests, new or resumed.",
    ),
    family(
        "etcd_debugging_store_watchers",
        Gauge,
        "v2 watchers waiting now.",
    ),
    // Peer traffic (`peer::metrics`); member ids in hex as labels.
    labelled(
        "etcd_network_peer_sent_bytes_total",
        Counter,
        "Bytes of raft messages and snapshots sent to each peer.",
    ),
    labelled(
        "etcd_network_peer_received_bytes_total",
        Counter,
        "Bytes of raft messages and snapshots received from each peer.",
    ),
    labelled(
        "etcd_network_peer_sent_failures_total",
        Counter,
        "Raft messages and snapshots that could not be sent to each peer.",
    ),
    labelled(
        "etcd_network_peer_received_failures_total",
        Counter,
        "Raft messages and snapshots from each peer that could not be taken.",
    ),
    labelled(
        "etcd_network_peer_round_trip_time_seconds",
        hist(0.0001, 16),
        "Round trips to each peer, probed every few seconds.",
    ),
    labelled(
        "etcd_network_active_peers",
        Gauge,
        "1 while this member's stream to the peer stands.",
    ),
    labelled(
        "etcd_network_disconnected_peers_total",
        Counter,
        "Times this member lost its stream to the peer.",
    ),
    labelled(
        "etcd_network_snapshot_send_success",
        Counter,
        "Snapshots sent to each peer.",
    ),
    labelled(
        "etcd_network_snapshot_send_failures",
        Counter,
        "Snapshots that could not be sent to each peer.",
    ),
    labelled(
        "etcd_network_snapshot_send_inflights_total",
        Gauge,
        "Snapshots being sent to each peer.",
    ),
    labelled(
        "etcd_network_snapshot_send_total_duration_seconds",
        hist(0.1, 10),
        "How long sending a snapshot to a peer took.",
    ),
    labelled(
        "etcd_network_snapshot_receive_success",
        Counter,
        "Snapshots received from each peer.",
    ),
    labelled(
        "etcd_network_snapshot_receive_failures",
        Counter,
        "Snapshots from each peer that could not be received.",
    ),
    labelled(
        "etcd_network_snapshot_receive_inflights_total",
        Gauge,
        "Snapshots being received from each peer.",
    ),
    labelled(
        "etcd_network_snapshot_receive_total_duration_seconds",
        hist(0.1, 10),
        "How long receiving a snapshot from a peer took.",
    ),
    labelled(
        "grpc_server_started_total",
        Counter,
        "gRPC calls started on the server.",
    ),
    labelled(
        "grpc_server_handled_total",
        Counter,
        "gRPC calls completed on the server, whatever their status.",
    ),
    labelled(
        "grpc_server_msg_received_total",
        Counter,
        "gRPC messages received on the server, per method.",
    ),
    labelled(
        "grpc_server_msg_sent_total",
        Counter,
        "gRPC messages sent by the server, per method.",
    ),
    // ---- the scrape itself ----
    family(
        "promhttp_metric_handler_requests_in_flight",
        Gauge,
        "Scrapes being served.",
    ),
    labelled(
        "promhttp_metric_handler_requests_total",
        Counter,
        "Scrapes served, by HTTP status code.",
    ),
];

/// The buckets of a histogram kind.
pub fn buckets(start: f64, count: u32) -> Vec<f64> {
    (0..count).map(|i| start * f64::from(1u32 << i)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique() {
        let mut names: Vec<&str> = FAMILIES.iter().map(|f| f.name).collect();
        names.sort_unstable();
        let len = names.len();
        names.dedup();
        assert_eq!(names.len(), len);
    }

    #[test]
    fn disk_buckets_are_etcds() {
        let Kind::Histogram { start, count } = DISK else {
            panic!("a histogram")
        };
        let b = buckets(start, count);
        assert_eq!(b.len(), 14);
        assert!((b[0] - 0.001).abs() < 1e-12);
        assert!((b[13] - 8.192).abs() < 1e-9);
    }
}
