//! `/metrics`: Prometheus text with etcd's metric names, so etcd's dashboards and alerts work
//! unchanged.
//!
//! Three kinds of source:
//! - events recorded where they happen, through the `metrics` facade: WAL fsync and backend
//!   commit durations (storage), failed and pending proposals (raft node and apply), gRPC
//!   calls ([`super::grpc_metrics`]), health checks;
//! - state read at scrape time from the server ([`refresh`]): leader, indexes, db size, keys,
//!   revisions;
//! - the process itself (`process`): memory, CPU, file descriptors.
//!
//! One recorder serves the whole process; [`install`] sets it up once, at startup, with
//! etcd's histogram buckets.

use std::sync::{Arc, Mutex};

use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, StatusCode};
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, Unit};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use oxcd_storage::RangeOptions;

use crate::config::{api_version, etcd_release};
use crate::server::EtcdServer;

/// WAL fsync duration, as etcd names it.
pub const WAL_FSYNC: &str = "etcd_disk_wal_fsync_duration_seconds";
/// Backend commit duration.
pub const BACKEND_COMMIT: &str = "etcd_disk_backend_commit_duration_seconds";

/// etcd's disk latency buckets: 1 ms doubling to about 8 s.
fn disk_buckets() -> Vec<f64> {
    (0..14).map(|i| 0.001 * f64::from(1u32 << i)).collect()
}

/// A recorder with etcd's buckets and descriptions, not yet installed.
pub fn builder() -> Result<PrometheusBuilder, BuildError> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(WAL_FSYNC.into()), &disk_buckets())?
        .set_buckets_for_metric(Matcher::Full(BACKEND_COMMIT.into()), &disk_buckets())
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
    *installed = Some(handle.clone());
    Ok(handle)
}

/// Help texts, in our words, for the metrics oxcd exports.
pub fn describe() {
    describe_histogram!(
        WAL_FSYNC,
        Unit::Seconds,
        "Latency of fdatasync calls made by the WAL."
    );
    describe_histogram!(
        BACKEND_COMMIT,
        Unit::Seconds,
        "Latency of durable commits of the backend."
    );
    describe_gauge!(
        "etcd_server_has_leader",
        "1 if this member knows a leader, 0 if not."
    );
    describe_gauge!(
        "etcd_server_is_leader",
        "1 if this member is the leader, 0 if not."
    );
    describe_counter!(
        "etcd_server_leader_changes_seen_total",
        "How many leader changes this member has seen."
    );
    describe_gauge!(
        "etcd_server_proposals_committed_total",
        "Index of the last committed Raft entry."
    );
    describe_gauge!(
        "etcd_server_proposals_applied_total",
        "Index of the last applied Raft entry."
    );
    describe_gauge!(
        "etcd_server_proposals_pending",
        "Proposals made by this member and not yet applied."
    );
    describe_counter!(
        "etcd_server_proposals_failed_total",
        "Proposals Raft refused (no leader, dropped)."
    );
    describe_gauge!("etcd_server_id", "This member's id, as a label.");
    describe_gauge!(
        "etcd_server_version",
        "The etcd version this member serves, as a label."
    );
    describe_gauge!(
        "etcd_cluster_version",
        "The cluster's etcd version, as a label."
    );
    describe_gauge!(
        "etcd_server_quota_backend_bytes",
        "The backend quota in bytes (--quota-backend-bytes)."
    );
    describe_gauge!(
        "etcd_mvcc_db_total_size_in_bytes",
        "Size of the backend file, allocated space included."
    );
    describe_gauge!(
        "etcd_debugging_mvcc_db_total_size_in_bytes",
        "Size of the backend file, allocated space included."
    );
    describe_gauge!(
        "etcd_mvcc_db_total_size_in_use_in_bytes",
        "Bytes of the backend file in use."
    );
    describe_gauge!("etcd_debugging_mvcc_keys_total", "Live keys in the store.");
    describe_gauge!(
        "etcd_debugging_mvcc_current_revision",
        "The store's current revision."
    );
    describe_gauge!(
        "etcd_debugging_mvcc_compact_revision",
        "The store's last compaction revision."
    );
    describe_counter!("etcd_server_health_success", "Health checks that passed.");
    describe_counter!("etcd_server_health_failures", "Health checks that failed.");
    super::grpc_metrics::describe();
    super::process::describe();
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
    let all = RangeOptions {
        count_only: true,
        ..Default::default()
    };
    match kv.range(b"\0", b"\0", all) {
        Ok(r) => gauge!("etcd_debugging_mvcc_keys_total").set(r.count as f64),
        Err(e) => tracing::warn!(error = %e, "failed to count keys for metrics"),
    }
    gauge!("etcd_debugging_mvcc_current_revision").set(kv.current_revision() as f64);
    gauge!("etcd_debugging_mvcc_compact_revision").set(kv.compact_revision() as f64);
    super::process::refresh();
}

/// `GET /metrics`.
pub async fn scrape(state: MetricsState) -> Response {
    let MetricsState {
        handle,
        server,
        quota_bytes,
    } = state;
    let rendered = tokio::task::spawn_blocking(move || {
        refresh(&server, quota_bytes);
        handle.run_upkeep();
        handle.render()
    })
    .await;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_buckets_are_etcds() {
        let b = disk_buckets();
        assert_eq!(b.len(), 14);
        assert!((b[0] - 0.001).abs() < 1e-12);
        assert!((b[13] - 8.192).abs() < 1e-9);
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
