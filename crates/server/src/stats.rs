//! Counts of server work that etcd exports as metrics (leases, slow applies, read indexes,
//! heartbeats, client requests).
//!
//! Process-wide atomics, as etcd's Prometheus counters are process-wide: where the work
//! happens pays one relaxed add, no lock and no registry lookup; `/metrics` reads them at
//! scrape time ([`crate::http::metrics`]). The storage's own counts are in
//! [`oxcd_storage::stats`].

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// The server counters; see [`SERVER`].
#[derive(Debug)]
pub struct ServerStats {
    /// Leases granted (`etcd_debugging_lease_granted_total`).
    pub leases_granted: AtomicU64,
    /// Lease renewals (`etcd_debugging_lease_renewed_total`).
    pub leases_renewed: AtomicU64,
    /// Leases revoked, by a client or by expiry (`etcd_debugging_lease_revoked_total`).
    pub leases_revoked: AtomicU64,
    /// Expired leases this member revoked as primary
    /// (`etcd_debugging_server_lease_expired_total`).
    pub leases_expired: AtomicU64,
    /// Applies slower than the warning threshold (`etcd_server_slow_apply_total`).
    pub slow_applies: AtomicU64,
    /// Read index requests that failed (`etcd_server_read_indexes_failed_total`).
    pub read_indexes_failed: AtomicU64,
    /// Read index answers that came for an older request (`etcd_server_slow_read_indexes_total`).
    pub slow_read_indexes: AtomicU64,
    /// Heartbeats the leader sent late (`etcd_server_heartbeat_send_failures_total`).
    pub heartbeat_send_failures: AtomicU64,
    /// Learners this member promoted (`etcd_server_learner_promote_successes`).
    pub learner_promotions: AtomicU64,
    /// 1 while a Raft snapshot is being applied (`etcd_server_snapshot_apply_in_progress_total`).
    pub snapshot_applying: AtomicI64,
    /// Defrags running now (`etcd_disk_defrag_inflight`).
    pub defrags_running: AtomicI64,
}

/// The process's server counters.
pub static SERVER: ServerStats = ServerStats {
    leases_granted: AtomicU64::new(0),
    leases_renewed: AtomicU64::new(0),
    leases_revoked: AtomicU64::new(0),
    leases_expired: AtomicU64::new(0),
    slow_applies: AtomicU64::new(0),
    read_indexes_failed: AtomicU64::new(0),
    slow_read_indexes: AtomicU64::new(0),
    heartbeat_send_failures: AtomicU64::new(0),
    learner_promotions: AtomicU64::new(0),
    snapshot_applying: AtomicI64::new(0),
    defrags_running: AtomicI64::new(0),
};

/// Adds one.
pub fn inc(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Adds `n`.
pub fn add(counter: &AtomicU64, n: u64) {
    if n > 0 {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// Reads a counter.
pub fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// Marks work in progress on a gauge for as long as the guard lives.
pub struct InProgress(&'static AtomicI64);

impl InProgress {
    pub fn start(gauge: &'static AtomicI64) -> InProgress {
        gauge.fetch_add(1, Ordering::Relaxed);
        InProgress(gauge)
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
