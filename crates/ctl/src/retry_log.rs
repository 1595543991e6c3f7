//! The JSON log lines etcd 3.4's Go client and snapshot code write on stderr, which etcdctl
//! shows: the warning when a unary request fails (before its `Error:` line) and the steps
//! of `snapshot save`. oxcdctl writes the same lines.

use std::hash::{BuildHasher, Hasher};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::go;

/// What clientv3's balancer reports when no endpoint could be reached before the deadline.
pub const UNREACHABLE: &str =
    "rpc error: code = DeadlineExceeded desc = latest balancer error: all SubConns are in TransientFailure";

/// Prints `{"level":"warn",...,"msg":"retrying of unary invoker failed",...}` for a request
/// to `endpoint` that failed with `error` (Go's `rpc error: ...` text).
pub fn warn_failed_request(endpoint: &str, error: &str) {
    let host = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"))
        .unwrap_or(endpoint);
    eprintln!(
        "{{\"level\":\"warn\",\"ts\":\"{}\",\"caller\":\"clientv3/retry_interceptor.go:62\",\"msg\":\"retrying of unary invoker failed\",\"target\":{},\"attempt\":0,\"error\":{}}}",
        timestamp(),
        go::json_string(&format!("endpoint://client-{}/{host}", uuid())),
        go::json_string(error)
    );
}

/// A zap info line of etcd's snapshot package (epoch-seconds time) or of clientv3 (ISO
/// time), with its fields already JSON.
pub fn info(caller: &str, msg: &str, fields: &[(&str, String)], epoch_time: bool) {
    let ts = if epoch_time {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        format!("{:.7}", now.as_secs_f64())
    } else {
        go::json_string(&timestamp())
    };
    let mut line = format!(
        "{{\"level\":\"info\",\"ts\":{ts},\"caller\":{},\"msg\":{}",
        go::json_string(caller),
        go::json_string(msg)
    );
    for (key, value) in fields {
        line.push_str(&format!(",{}:{value}", go::json_string(key)));
    }
    eprintln!("{line}}}");
}

/// Now, as zap's ISO 8601 time in UTC with milliseconds.
fn timestamp() -> String {
    let (date, time, now) = civil_now();
    format!("{date}T{time}.{:03}Z", now.subsec_millis())
}

/// Now, as capnslog (etcd's older logger) prints it: `2006-01-02 15:04:05.000000`.
pub fn capnslog_time() -> String {
    let (date, time, now) = civil_now();
    format!("{date} {time}.{:06}", now.subsec_micros())
}

/// Today's date and the time of day in UTC, and the time since the epoch.
fn civil_now() -> (String, String, std::time::Duration) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        format!("{year:04}-{month:02}-{day:02}"),
        format!("{:02}:{:02}:{:02}", rest / 3600, rest / 60 % 60, rest % 60),
        now,
    )
}

/// A random version-4 UUID, as clientv3 names its resolver.
fn uuid() -> String {
    let random = |salt: u64| {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(salt);
        h.finish()
    };
    let (a, b) = (random(1), random(2));
    let bytes: Vec<u8> = a.to_be_bytes().into_iter().chain(b.to_be_bytes()).collect();
    let mut b = [0u8; 16];
    b.copy_from_slice(&bytes);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}
