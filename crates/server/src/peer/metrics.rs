//! etcd's peer network families (`etcd_network_*`, its rafthttp `metrics.go`), under etcd's
//! names and label names (`To`, `From`, `Local`, `Remote`, member ids in hex):
//!
//! - bytes of raft messages sent to and received from each peer, and messages that could not
//!   be sent (queue full, stream broken, peer unreachable) or received (bad message);
//! - each peer's connection: 1 in `active_peers` while the stream to it stands, and one
//!   `disconnected_peers_total` each time it is lost;
//! - `peer_round_trip_time_seconds`: a small call to the peer every [`PROBE_INTERVAL`], timed
//!   (etcd probes each peer's `/raft/probing` the same way);
//! - snapshots sent and received: successes, failures, in flight, total durations.
//!
//! The per-message counters are handles looked up once per peer connection, so a message
//! costs one atomic add.

use std::time::{Duration, Instant};

use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};

/// How often each peer's round trip is measured (etcd's prober interval).
pub const PROBE_INTERVAL: Duration = Duration::from_secs(4);

/// etcd writes member ids in hex without leading zeros.
fn id(member: u64) -> String {
    format!("{member:x}")
}

/// The sending side's handles for one peer.
pub struct PeerLink {
    sent_bytes: Counter,
    sent_failures: Counter,
    active: Gauge,
    disconnected: Counter,
    round_trip: Histogram,
}

impl PeerLink {
    pub fn new(local: u64, remote: u64) -> PeerLink {
        let (local, remote) = (id(local), id(remote));
        PeerLink {
            sent_bytes: counter!("etcd_network_peer_sent_bytes_total", "To" => remote.clone()),
            sent_failures: counter!("etcd_network_peer_sent_failures_total", "To" => remote.clone()),
            active: gauge!("etcd_network_active_peers", "Local" => local.clone(), "Remote" => remote.clone()),
            disconnected: counter!("etcd_network_disconnected_peers_total", "Local" => local, "Remote" => remote.clone()),
            round_trip: histogram!("etcd_network_peer_round_trip_time_seconds", "To" => remote),
        }
    }

    pub fn sent(&self, bytes: usize) {
        self.sent_bytes.increment(bytes as u64);
    }

    pub fn send_failed(&self) {
        self.sent_failures.increment(1);
    }

    /// A stream to the peer stands.
    pub fn activated(&self) {
        self.active.set(1.0);
    }

    /// The stream to the peer was lost.
    pub fn deactivated(&self) {
        self.active.set(0.0);
        self.disconnected.increment(1);
    }

    pub fn round_trip(&self, took: Duration) {
        self.round_trip.record(took.as_secs_f64());
    }
}

/// A message to `to` dropped before its sender task saw it (its queue was full).
pub fn send_dropped(to: u64) {
    counter!("etcd_network_peer_sent_failures_total", "To" => id(to)).increment(1);
}

/// The receiving side's handles for one peer's stream.
pub struct PeerInbound {
    from: u64,
    received_bytes: Counter,
}

impl PeerInbound {
    pub fn new(from: u64) -> PeerInbound {
        PeerInbound {
            from,
            received_bytes: counter!("etcd_network_peer_received_bytes_total", "From" => id(from)),
        }
    }

    /// Counts a message of `bytes` from `from`; the handles follow the sender's id.
    pub fn received(&mut self, from: u64, bytes: usize) {
        if from != self.from {
            *self = PeerInbound::new(from);
        }
        self.received_bytes.increment(bytes as u64);
    }
}

/// A message from `from` that could not be taken.
pub fn receive_failed(from: u64) {
    counter!("etcd_network_peer_received_failures_total", "From" => id(from)).increment(1);
}

/// Which way a snapshot travels.
#[derive(Clone, Copy)]
pub enum SnapshotWay {
    Send,
    Receive,
}

/// One snapshot transfer: in flight from [`SnapshotTransfer::start`] until it is finished
/// or dropped (a failure).
pub struct SnapshotTransfer {
    way: SnapshotWay,
    peer: String,
    started: Instant,
    done: bool,
}

impl SnapshotTransfer {
    pub fn start(way: SnapshotWay, peer: u64) -> SnapshotTransfer {
        let transfer = SnapshotTransfer {
            way,
            peer: id(peer),
            started: Instant::now(),
            done: false,
        };
        transfer.inflight().increment(1.0);
        transfer
    }

    fn label(&self) -> &'static str {
        match self.way {
            SnapshotWay::Send => "To",
            SnapshotWay::Receive => "From",
        }
    }

    fn inflight(&self) -> Gauge {
        let name = match self.way {
            SnapshotWay::Send => "etcd_network_snapshot_send_inflights_total",
            SnapshotWay::Receive => "etcd_network_snapshot_receive_inflights_total",
        };
        gauge!(name, self.label() => self.peer.clone())
    }

    /// The snapshot of `bytes` went through.
    pub fn succeeded(mut self, bytes: u64) {
        self.done = true;
        let (success, seconds, bytes_name) = match self.way {
            SnapshotWay::Send => (
                "etcd_network_snapshot_send_success",
                "etcd_network_snapshot_send_total_duration_seconds",
                "etcd_network_peer_sent_bytes_total",
            ),
            SnapshotWay::Receive => (
                "etcd_network_snapshot_receive_success",
                "etcd_network_snapshot_receive_total_duration_seconds",
                "etcd_network_peer_received_bytes_total",
            ),
        };
        let label = self.label();
        counter!(bytes_name, label => self.peer.clone()).increment(bytes);
        counter!(success, label => self.peer.clone()).increment(1);
        histogram!(seconds, label => self.peer.clone())
            .record(self.started.elapsed().as_secs_f64());
    }
}

impl Drop for SnapshotTransfer {
    fn drop(&mut self) {
        self.inflight().decrement(1.0);
        if self.done {
            return;
        }
        let (failures, peer_failures) = match self.way {
            SnapshotWay::Send => (
                "etcd_network_snapshot_send_failures",
                "etcd_network_peer_sent_failures_total",
            ),
            SnapshotWay::Receive => (
                "etcd_network_snapshot_receive_failures",
                "etcd_network_peer_received_failures_total",
            ),
        };
        let label = self.label();
        counter!(failures, label => self.peer.clone()).increment(1);
        counter!(peer_failures, label => self.peer.clone()).increment(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(f: impl FnOnce()) -> String {
        let recorder = crate::http::metrics::builder().unwrap().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, f);
        handle.render()
    }

    #[test]
    fn link_counts_bytes_failures_and_disconnects_per_peer() {
        let text = render(|| {
            let link = PeerLink::new(0x1a, 0x2b);
            link.activated();
            link.sent(100);
            link.sent(20);
            link.send_failed();
            link.deactivated();
            link.round_trip(Duration::from_micros(300));
            send_dropped(0x2b);
            let mut inbound = PeerInbound::new(0x2b);
            inbound.received(0x2b, 7);
            inbound.received(0x3c, 5);
            receive_failed(0x3c);
        });
        for line in [
            "etcd_network_peer_sent_bytes_total{To=\"2b\"} 120",
            "etcd_network_peer_sent_failures_total{To=\"2b\"} 2",
            "etcd_network_active_peers{Local=\"1a\",Remote=\"2b\"} 0",
            "etcd_network_disconnected_peers_total{Local=\"1a\",Remote=\"2b\"} 1",
            "etcd_network_peer_round_trip_time_seconds_bucket{To=\"2b\",le=\"0.0004\"} 1",
            "etcd_network_peer_round_trip_time_seconds_bucket{To=\"2b\",le=\"0.0002\"} 0",
            "etcd_network_peer_received_bytes_total{From=\"2b\"} 7",
            "etcd_network_peer_received_bytes_total{From=\"3c\"} 5",
            "etcd_network_peer_received_failures_total{From=\"3c\"} 1",
        ] {
            assert!(text.contains(line), "no {line} in\n{text}");
        }
    }

    #[test]
    fn a_snapshot_transfer_dropped_unfinished_is_a_failure() {
        let text = render(|| {
            SnapshotTransfer::start(SnapshotWay::Send, 2).succeeded(1000);
            drop(SnapshotTransfer::start(SnapshotWay::Receive, 3));
        });
        for line in [
            "etcd_network_snapshot_send_success{To=\"2\"} 1",
            "etcd_network_snapshot_send_inflights_total{To=\"2\"} 0",
            "etcd_network_snapshot_send_total_duration_seconds_count{To=\"2\"} 1",
            "etcd_network_peer_sent_bytes_total{To=\"2\"} 1000",
            "etcd_network_snapshot_receive_failures{From=\"3\"} 1",
            "etcd_network_peer_received_failures_total{From=\"3\"} 1",
            "etcd_network_snapshot_receive_inflights_total{From=\"3\"} 0",
        ] {
            assert!(text.contains(line), "no {line} in\n{text}");
        }
    }
}
