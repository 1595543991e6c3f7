//! What the peer transport measures, as etcd's v2stats does, for `/v2/stats/self` and
//! `/v2/stats/leader`:
//!
//! - append messages (`MsgAppend`) sent to followers and received from the leader: a count,
//!   and packet and byte rates over the last [`RATE_WINDOW`] of them (etcd's statsQueue);
//! - per follower, how long handing an append to its stream took (etcd times the same: the
//!   encoding and write onto the stream, not a round trip), and how many appends could not
//!   be sent (its stream was broken or its queue full).
//!
//! Written by the peer tasks, read by the HTTP handlers; every method takes the lock briefly.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Appends a rate is computed over: etcd's statsQueue capacity.
const RATE_WINDOW: usize = 200;

/// A rate whose latest append is older than this is 0: the traffic stopped (etcd's rule).
const RATE_STALE: Duration = Duration::from_secs(1);

/// The peer transport's counters for one member.
#[derive(Default)]
pub struct TransportStats {
    inner: Mutex<Inner>,
    /// Since when each peer has been reachable.
    pub activity: super::activity::PeerActivity,
}

#[derive(Default)]
struct Inner {
    sent: Appends,
    received: Appends,
    followers: HashMap<u64, FollowerStats>,
}

/// Appends counted, and the latest ones (time, bytes) for the rates.
#[derive(Default)]
struct Appends {
    count: u64,
    recent: VecDeque<(Instant, usize)>,
    recent_bytes: usize,
}

impl Appends {
    fn record(&mut self, now: Instant, size: usize) {
        if self.recent.len() == RATE_WINDOW {
            if let Some((_, bytes)) = self.recent.pop_front() {
                self.recent_bytes -= bytes;
            }
        }
        self.recent.push_back((now, size));
        self.recent_bytes += size;
        self.count += 1;
    }

    /// The count, and appends and bytes per second between the oldest and the newest
    /// append kept; 0 when fewer than two are kept or the newest is stale.
    fn summary(&mut self, now: Instant) -> AppendSummary {
        let mut summary = AppendSummary {
            count: self.count,
            ..AppendSummary::default()
        };
        let (Some(&(first, _)), Some(&(last, _))) = (self.recent.front(), self.recent.back())
        else {
            return summary;
        };
        if now.duration_since(last) > RATE_STALE {
            self.recent.clear();
            self.recent_bytes = 0;
            return summary;
        }
        let span = last.duration_since(first).as_secs_f64();
        if span > 0.0 {
            summary.packet_rate = self.recent.len() as f64 / span;
            summary.byte_rate = self.recent_bytes as f64 / span;
        }
        summary
    }
}

/// Appends counted in one direction, with their rates (0 when unknown).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct AppendSummary {
    pub count: u64,
    pub packet_rate: f64,
    pub byte_rate: f64,
}

/// How appends to one follower fared. Latencies are in milliseconds.
#[derive(Clone, Debug, PartialEq)]
pub struct FollowerStats {
    pub current: f64,
    pub average: f64,
    average_square: f64,
    pub standard_deviation: f64,
    pub minimum: f64,
    pub maximum: f64,
    pub fail: u64,
    pub success: u64,
}

impl Default for FollowerStats {
    /// No sample yet: etcd starts the minimum at 2^63.
    fn default() -> Self {
        FollowerStats {
            current: 0.0,
            average: 0.0,
            average_square: 0.0,
            standard_deviation: 0.0,
            minimum: 9_223_372_036_854_775_808.0,
            maximum: 0.0,
            fail: 0,
            success: 0,
        }
    }
}

impl FollowerStats {
    fn succeeded(&mut self, took: Duration) {
        let n = self.success as f64;
        let ms = took.as_nanos() as f64 / 1_000_000.0;
        self.success += 1;
        self.current = ms;
        self.maximum = self.maximum.max(ms);
        self.minimum = self.minimum.min(ms);
        self.average = (n * self.average + ms) / (n + 1.0);
        self.average_square = (n * self.average_square + ms * ms) / (n + 1.0);
        // sd = sqrt(avg(x²) - avg(x)²), clamped: rounding may leave it just below 0.
        self.standard_deviation = (self.average_square - self.average * self.average)
            .max(0.0)
            .sqrt();
    }
}

impl TransportStats {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// This member, leading, handed an append of `size` bytes to follower `to`'s stream,
    /// which took `took`.
    pub fn sent_append(&self, to: u64, size: usize, took: Duration) {
        let mut inner = self.lock();
        inner.sent.record(Instant::now(), size);
        inner.followers.entry(to).or_default().succeeded(took);
    }

    /// An append to follower `to` could not be sent.
    pub fn append_failed(&self, to: u64) {
        self.lock().followers.entry(to).or_default().fail += 1;
    }

    /// This member received an append of `size` bytes from the leader.
    pub fn received_append(&self, size: usize) {
        self.lock().received.record(Instant::now(), size);
    }

    /// Appends received and sent.
    pub fn appends(&self) -> (AppendSummary, AppendSummary) {
        let now = Instant::now();
        let mut inner = self.lock();
        (inner.received.summary(now), inner.sent.summary(now))
    }

    /// How appends to follower `id` fared (no sample yet when none was sent).
    pub fn follower(&self, id: u64) -> FollowerStats {
        self.lock().followers.get(&id).cloned().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follower_latency_is_etcds_running_statistics() {
        let stats = TransportStats::default();
        assert_eq!(stats.follower(2), FollowerStats::default());
        stats.sent_append(2, 100, Duration::from_millis(1));
        stats.sent_append(2, 100, Duration::from_millis(3));
        stats.append_failed(2);
        let f = stats.follower(2);
        assert_eq!((f.success, f.fail), (2, 1));
        assert_eq!((f.current, f.minimum, f.maximum), (3.0, 1.0, 3.0));
        assert!((f.average - 2.0).abs() < 1e-9);
        assert!((f.standard_deviation - 1.0).abs() < 1e-9);
    }

    #[test]
    fn rates_cover_the_recent_window_and_go_stale() {
        let mut appends = Appends::default();
        let start = Instant::now();
        for i in 0..=RATE_WINDOW as u64 + 10 {
            appends.record(start + Duration::from_millis(i), 10);
        }
        let now = start + Duration::from_millis(RATE_WINDOW as u64 + 10);
        let s = appends.summary(now);
        assert_eq!(s.count, RATE_WINDOW as u64 + 11);
        // 200 appends kept, 199 ms apart end to end.
        assert!((s.packet_rate - 200.0 / 0.199).abs() < 1e-6, "{s:?}");
        assert!((s.byte_rate - 2000.0 / 0.199).abs() < 1e-6, "{s:?}");
        let later = appends.summary(now + RATE_STALE + Duration::from_millis(1));
        assert_eq!((later.packet_rate, later.byte_rate), (0.0, 0.0));
        assert_eq!(later.count, s.count);
    }
}
