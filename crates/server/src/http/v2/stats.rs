//! `/v2/stats/store`, `/v2/stats/self` and `/v2/stats/leader`, with etcd's fields. The append
//! counts, rates and follower latencies come from the peer transport
//! ([`crate::peer::stats`]); rates are left out when 0, as etcd omits them.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{Request, State};
use axum::response::Response;
use http::StatusCode;

use super::{http_error, json_response, method_not_allowed_with};
use crate::server::EtcdServer;
use crate::v2::json::{rfc3339_nano, JsonWriter};

/// When this process began serving stats, and since when it has known the current leader.
struct Clock {
    start: i64,
    leader: Mutex<(u64, i64, Instant)>,
}

fn clock() -> &'static Clock {
    static CLOCK: OnceLock<Clock> = OnceLock::new();
    CLOCK.get_or_init(|| {
        let now = unix_nanos();
        Clock {
            start: now,
            leader: Mutex::new((0, now, Instant::now())),
        }
    })
}

fn unix_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// Starts the clocks with the server; a task notes when each leader became known.
pub fn start(server: Arc<EtcdServer>) {
    static STARTED: OnceLock<()> = OnceLock::new();
    clock();
    if STARTED.set(()).is_err() {
        return;
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tick.tick().await;
            note_leader(server.raft_status.leader());
        }
    });
}

/// Records `leader`, restarting its clock when it changed; returns when it became known.
fn note_leader(leader: u64) -> (i64, Instant) {
    let mut known = clock().leader.lock().unwrap_or_else(|e| e.into_inner());
    if known.0 != leader {
        *known = (leader, unix_nanos(), Instant::now());
    }
    (known.1, known.2)
}

pub async fn store(State(server): State<Arc<EtcdServer>>, request: Request) -> Response {
    if request.method() != http::Method::GET {
        return method_not_allowed_with("GET");
    }
    json_response(StatusCode::OK, server.v2.stats_json())
}

pub async fn self_stats(State(server): State<Arc<EtcdServer>>, request: Request) -> Response {
    if request.method() != http::Method::GET {
        return method_not_allowed_with("GET");
    }
    let clock = clock();
    let leader = server.raft_status.leader();
    let (leader_start, leader_since) = note_leader(leader);
    let state = if server.raft_status.is_leader() {
        "StateLeader"
    } else {
        "StateFollower"
    };
    let name = server
        .membership
        .get(server.member_id)
        .map(|m| m.name)
        .unwrap_or_default();
    let mut w = JsonWriter::default();
    w.open();
    w.field_str("name", &name);
    w.field_str("id", &format!("{:x}", server.member_id));
    w.field_str("state", state);
    w.field_str("startTime", &rfc3339_nano(clock.start));
    w.open_field("leaderInfo");
    w.field_str("leader", &format!("{leader:x}"));
    w.field_str("uptime", &go_duration(leader_since.elapsed()));
    w.field_str("startTime", &rfc3339_nano(leader_start));
    w.close();
    let (received, sent) = server.transport_stats.appends();
    w.field_u64("recvAppendRequestCnt", received.count);
    field_nonzero(&mut w, "recvPkgRate", received.packet_rate);
    field_nonzero(&mut w, "recvBandwidthRate", received.byte_rate);
    w.field_u64("sendAppendRequestCnt", sent.count);
    field_nonzero(&mut w, "sendPkgRate", sent.packet_rate);
    field_nonzero(&mut w, "sendBandwidthRate", sent.byte_rate);
    w.close();
    json_response(StatusCode::OK, w.finish())
}

pub async fn leader(State(server): State<Arc<EtcdServer>>, request: Request) -> Response {
    if request.method() != http::Method::GET {
        return method_not_allowed_with("GET");
    }
    if !server.raft_status.is_leader() {
        return http_error(StatusCode::FORBIDDEN, "not current leader");
    }
    let mut w = JsonWriter::default();
    w.open();
    w.field_str("leader", &format!("{:x}", server.member_id));
    w.open_field("followers");
    for m in server.membership.list() {
        if m.id == server.member_id {
            continue;
        }
        let f = server.transport_stats.follower(m.id);
        w.open_field(&format!("{:x}", m.id));
        w.open_field("latency");
        w.field_f64("current", f.current);
        w.field_f64("average", f.average);
        w.field_f64("standardDeviation", f.standard_deviation);
        w.field_f64("minimum", f.minimum);
        w.field_f64("maximum", f.maximum);
        w.close();
        w.open_field("counts");
        w.field_u64("fail", f.fail);
        w.field_u64("success", f.success);
        w.close();
        w.close();
    }
    w.close();
    w.close();
    json_response(StatusCode::OK, w.finish())
}

/// A float field that Go's `omitempty` leaves out when 0.
fn field_nonzero(w: &mut JsonWriter, name: &str, value: f64) {
    if value != 0.0 {
        w.field_f64(name, value);
    }
}

/// A duration as Go's `time.Duration.String` writes it: `2m35.315560529s`, `1h0m0s`.
pub fn go_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    if nanos < 1_000_000_000 {
        let (unit, div) = if nanos < 1_000 {
            ("ns", 1)
        } else if nanos < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        return format!("{}{unit}", fraction(nanos, div));
    }
    let secs = nanos / 1_000_000_000;
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let sub = nanos % 1_000_000_000;
    let seconds = fraction(s * 1_000_000_000 + sub, 1_000_000_000);
    match (h, m) {
        (0, 0) => format!("{seconds}s"),
        (0, m) => format!("{m}m{seconds}s"),
        (h, m) => format!("{h}h{m}m{seconds}s"),
    }
}

/// `v / div` with the remainder as decimals, trailing zeros dropped.
fn fraction(v: u128, div: u128) -> String {
    let whole = v / div;
    let rest = v % div;
    if rest == 0 {
        return whole.to_string();
    }
    let width = div.to_string().len() - 1;
    let digits = format!("{rest:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_go() {
        assert_eq!(
            go_duration(Duration::new(155, 315_560_529)),
            "2m35.315560529s"
        );
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_micros(1500)), "1.5ms");
    }
}
