//! Helpers shared by the storage benches (ignored tests run by hand).

use std::time::Duration;

/// `name` from the environment as a number, else `default`.
pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// "n N p50 … p99 … max …" of `v`.
pub fn quantiles(mut v: Vec<Duration>) -> String {
    v.sort();
    let Some(max) = v.last() else {
        return "n 0".into();
    };
    let at = |p: f64| v[((v.len() - 1) as f64 * p) as usize];
    format!(
        "n {} p50 {:?} p99 {:?} max {max:?}",
        v.len(),
        at(0.5),
        at(0.99)
    )
}
