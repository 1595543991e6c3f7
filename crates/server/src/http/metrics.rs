//! `/metrics`: Prometheus text with etcd's metric names, so etcd's dashboards and alerts work
//! unchanged.
//!
//! Four kinds of source:
//! - durations and rare events recorded where they happen, through the `metrics` facade:
//!   WAL fsync, backend commit, defrag, snapshot, hash and compaction times (storage), failed
//!   and pending proposals (raft node and apply), gRPC calls ([`super::grpc_metrics`]),
//!   health checks;
//! - counts of hot-path work kept as plain atomics (`oxcd_storage::stats` for mvcc and watch,
//!   [`crate::stats`] for leases, applies, read indexes, heartbeats), set at scrape time;
//! - state read at scrape time from the server ([`refresh`]): leader, indexes, db size, keys,
//!   revisions, watchers, learner, auth revision;
//! - the process itself (`process`): memory, CPU, file descriptors.
//!
//! Which families exist, their types, help texts and buckets: [`super::families`]. One
//! recorder serves the whole process; [`install`] sets it up once, at startup.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, StatusCode};
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use oxcd_storage::stats::{MvccStats, MVCC};

use super::families::{buckets, Kind, FAMILIES};
use crate::config::{api_version, etcd_release};
use crate::server::EtcdServer;
use crate::stats::{self, SERVER};

/// WAL fsync duration, as etcd names it.
pub const WAL_FSYNC: &str = "etcd_disk_wal_fsync_duration_seconds";
/// Backend commit duration.
pub const BACKEND_COMMIT: &str = "etcd_disk_backend_commit_duration_seconds";

/// Families recorded as gauges (the facade's counters hold whole numbers) that are counters in
/// etcd; their `# TYPE` line is rewritten when rendering.
const COUNTERS_WITH_FRACTIONS: &[&str] = &["process_cpu_seconds_total"];

/// A recorder with etcd's buckets, not yet installed.
pub fn builder() -> Result<PrometheusBuilder, BuildError> {
    let mut b = PrometheusBuilder::new().set_buckets_for_metric(
        Matcher::Full(super::grpc_metrics::HANDLING_SECONDS.into()),
        super::grpc_metrics::HANDLING_BUCKETS,
    )?;
    for f in FAMILIES {
        if let Kind::Histogram { start, count } = f.kind {
            b = b.set_buckets_for_metric(Matcher::Full(f.name.into()), &buckets(start, count))?;
        }
    }
    Ok(b)
}

/// Installs the process-wide recorder and describes etcd's metrics; returns the handle that
/// renders them. Call before the storage starts recording; later calls (several members in
/// one test process) share the first recorder.
pub fn install() -> Result<PrometheusHandle, BuildError> {
    static HANDLE: Mutex<Option<PrometheusHandle>> = Mutex::new(None);
    let mut installed = HANDLE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(handle) = &*installed {
        return Ok(handle.clone());
    }
    let handle = builder()?.install_recorder()?;
    describe();
    register();
    *installed = Some(handle.clone());
    Ok(handle)
}

/// Help texts, in our words, for the metrics oxcd exports.
pub fn describe() {
    for f in FAMILIES {
        match f.kind {
            Kind::Counter => describe_counter!(f.name, f.help),
            Kind::Gauge => describe_gauge!(f.name, f.help),
            Kind::Histogram { .. } => describe_histogram!(f.name, f.help),
        }
    }
    super::grpc_metrics::describe();
    super::process::describe();
}

/// Makes every family without labels exist from the start, at zero, as etcd registers its
/// families when it starts.
fn register() {
    for f in FAMILIES.iter().filter(|f| !f.labelled) {
        match f.kind {
            Kind::Counter => {
                counter!(f.name).absolute(0);
            }
            Kind::Gauge => {
                gauge!(f.name).increment(0.0);
            }
            Kind::Histogram { .. } => {
                // Looking the handle up registers the family.
                let _registered = histogram!(f.name);
            }
        }
    }
}

/// What `/metrics` reads.
#[derive(Clone)]
pub struct MetricsState {
    pub handle: PrometheusHandle,
    pub server: Arc<EtcdServer>,
    /// `--quota-backend-bytes`; `None` when disabled.
    pub quota_bytes: Option<u64>,
}

/// Sets the gauges that mirror server state. Reads the backend's size and counts keys, so
/// it runs off the async runtime.
pub fn refresh(server: &EtcdServer, quota_bytes: Option<u64>) {
    let status = &server.raft_status;
    let leader = status.leader();
    gauge!("etcd_server_has_leader").set(f64::from(u8::from(leader != raft::INVALID_ID)));
    gauge!("etcd_server_is_leader").set(f64::from(u8::from(status.is_leader())));
    counter!("etcd_server_leader_changes_seen_total").absolute(status.leader_changes());
    gauge!("etcd_server_proposals_committed_total").set(status.commit() as f64);
    gauge!("etcd_server_proposals_applied_total").set(server.applied_index() as f64);
    gauge!("etcd_server_id", "server_id" => format!("{:x}", server.member_id)).set(1.0);
    gauge!("etcd_server_version", "server_version" => etcd_release().server_version()).set(1.0);
    gauge!("etcd_cluster_version", "cluster_version" => api_version()).set(1.0);
    // -1 when the quota is disabled, as etcd reports it.
    gauge!("etcd_server_quota_backend_bytes").set(quota_bytes.map_or(-1.0, |q| q as f64));

    let kv = &server.kv;
    let backend = kv.backend();
    match backend.size() {
        Ok(size) => {
            gauge!("etcd_mvcc_db_total_size_in_bytes").set(size as f64);
            gauge!("etcd_debugging_mvcc_db_total_size_in_bytes").set(size as f64);
        }
        Err(e) => tracing::warn!(error = %e, "failed to read the backend size for metrics"),
    }
    match backend.size_in_use() {
        Ok(size) => gauge!("etcd_mvcc_db_total_size_in_use_in_bytes").set(size as f64),
        Err(e) => tracing::warn!(error = %e, "failed to read the backend size in use for metrics"),
    }
    match kv.key_count() {
        Ok(n) => gauge!("etcd_debugging_mvcc_keys_total").set(n as f64),
        Err(e) => tracing::warn!(error = %e, "failed to count keys for metrics"),
    }
    gauge!("etcd_debugging_mvcc_current_revision").set(kv.current_revision() as f64);
    gauge!("etcd_debugging_mvcc_compact_revision").set(kv.compact_revision() as f64);
    gauge!("etcd_server_is_learner").set(f64::from(u8::from(
        server.membership.is_learner(server.member_id),
    )));
    gauge!("etcd_debugging_auth_revision").set(server.auth.revision() as f64);
    let (synced, unsynced) = server.watchable.watcher_counts();
    gauge!("etcd_debugging_mvcc_watcher_total").set((synced + unsynced) as f64);
    gauge!("etcd_debugging_mvcc_slow_watcher_total").set(unsynced as f64);
    let (streams, pending) = server.watchable.stream_counts();
    gauge!("etcd_debugging_mvcc_watch_stream_total").set(streams as f64);
    gauge!("etcd_debugging_mvcc_pending_events_total").set(pending as f64);
    export_counts();
    export_v2_store(server);
    super::grpc_metrics::export_client_requests();
    super::process::refresh();
}

/// Sets the families kept as atomics by the storage and the server.
fn export_counts() {
    let mvcc = MvccStats::get;
    for (names, n) in [
        (
            ["etcd_mvcc_range_total", "etcd_debugging_mvcc_range_total"],
            mvcc(&MVCC.ranges),
        ),
        (
            ["etcd_mvcc_put_total", "etcd_debugging_mvcc_put_total"],
            mvcc(&MVCC.puts),
        ),
        (
            ["etcd_mvcc_delete_total", "etcd_debugging_mvcc_delete_total"],
            mvcc(&MVCC.deletes),
        ),
        (
            ["etcd_mvcc_txn_total", "etcd_debugging_mvcc_txn_total"],
            mvcc(&MVCC.txns),
        ),
    ] {
        for name in names {
            counter!(name).absolute(n);
        }
    }
    for (name, n) in [
        (
            "etcd_debugging_mvcc_db_compaction_keys_total",
            mvcc(&MVCC.compacted_keys),
        ),
        ("etcd_debugging_mvcc_events_total", mvcc(&MVCC.events_sent)),
        (
            "etcd_debugging_lease_granted_total",
            stats::get(&SERVER.leases_granted),
        ),
        (
            "etcd_debugging_lease_renewed_total",
            stats::get(&SERVER.leases_renewed),
        ),
        (
            "etcd_debugging_lease_revoked_total",
            stats::get(&SERVER.leases_revoked),
        ),
        (
            "etcd_debugging_server_lease_expired_total",
            stats::get(&SERVER.leases_expired),
        ),
        (
            "etcd_server_slow_apply_total",
            stats::get(&SERVER.slow_applies),
        ),
        (
            "etcd_server_read_indexes_failed_total",
            stats::get(&SERVER.read_indexes_failed),
        ),
        (
            "etcd_server_slow_read_indexes_total",
            stats::get(&SERVER.slow_read_indexes),
        ),
        (
            "etcd_server_heartbeat_send_failures_total",
            stats::get(&SERVER.heartbeat_send_failures),
        ),
        (
            "etcd_server_learner_promote_successes",
            stats::get(&SERVER.learner_promotions),
        ),
    ] {
        counter!(name).absolute(n);
    }
    // Gauges in etcd, though they only grow.
    gauge!("etcd_debugging_mvcc_total_put_size_in_bytes").set(mvcc(&MVCC.put_bytes) as f64);
    gauge!("etcd_disk_wal_write_bytes_total").set(mvcc(&MVCC.wal_bytes) as f64);
    let level = |g: &AtomicI64| g.load(Ordering::Relaxed) as f64;
    gauge!("etcd_server_snapshot_apply_in_progress_total").set(level(&SERVER.snapshot_applying));
    gauge!("etcd_disk_defrag_inflight").set(level(&SERVER.defrags_running));
}

/// etcd's `etcd_debugging_store_*`: the v2 store's work ([`crate::v2::stats::STORE`]).
fn export_v2_store(server: &EtcdServer) {
    let store = &crate::v2::stats::STORE;
    let (reads, writes) = store.by_action();
    for (action, n) in reads {
        counter!("etcd_debugging_store_reads_total", "action" => action).absolute(n);
    }
    for (action, n) in writes {
        counter!("etcd_debugging_store_writes_total", "action" => action).absolute(n);
    }
    counter!("etcd_debugging_store_expires_total").absolute(store.expires());
    counter!("etcd_debugging_store_watch_requests_total").absolute(store.watch_requests());
    gauge!("etcd_debugging_store_watchers").set(server.v2.watcher_count() as f64);
}

/// Scrapes being served, for `promhttp_metric_handler_requests_in_flight`.
static SCRAPES_IN_FLIGHT: AtomicI64 = AtomicI64::new(0);

/// `GET /metrics`.
pub async fn scrape(state: MetricsState) -> Response {
    let MetricsState {
        handle,
        server,
        quota_bytes,
    } = state;
    let _in_flight = stats::InProgress::start(&SCRAPES_IN_FLIGHT);
    let rendered = tokio::task::spawn_blocking(move || {
        refresh(&server, quota_bytes);
        gauge!("promhttp_metric_handler_requests_in_flight")
            .set(SCRAPES_IN_FLIGHT.load(Ordering::Relaxed) as f64);
        handle.run_upkeep();
        retype(handle.render())
    })
    .await;
    let code = if rendered.is_ok() { "200" } else { "500" };
    counter!("promhttp_metric_handler_requests_total", "code" => code).increment(1);
    match rendered {
        Ok(text) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            )],
            text,
        )
            .into_response(),
        Err(e) => super::plain_text(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("collecting metrics failed: {e}\n"),
        ),
    }
}

/// Gives [`COUNTERS_WITH_FRACTIONS`] their etcd type.
fn retype(mut text: String) -> String {
    for name in COUNTERS_WITH_FRACTIONS {
        let gauge = format!("# TYPE {name} gauge\n");
        if let Some(at) = text.find(&gauge) {
            text.replace_range(at..at + gauge.len(), &format!("# TYPE {name} counter\n"));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractional_counters_are_typed_as_counters() {
        let text = "# TYPE process_cpu_seconds_total gauge\nprocess_cpu_seconds_total 0.5\n";
        assert_eq!(
            retype(text.to_owned()),
            "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 0.5\n"
        );
    }

    #[test]
    fn recorded_fsyncs_render_as_a_histogram_with_etcd_buckets() {
        let recorder = builder().unwrap().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            describe();
            metrics::histogram!(WAL_FSYNC).record(0.003);
            metrics::histogram!(WAL_FSYNC).record(0.0005);
        });
        let text = handle.render();
        assert!(
            text.contains("# TYPE etcd_disk_wal_fsync_duration_seconds histogram"),
            "{text}"
        );
        assert!(
            text.contains("etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.001\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.004\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("etcd_disk_wal_fsync_duration_seconds_count 2"),
            "{text}"
        );
    }
}
