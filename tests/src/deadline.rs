//! Bounded waiting.

use std::time::{Duration, Instant};

/// Calls `poll` every 50 ms until it returns `Some`, and returns that value; panics naming
/// `what` once `timeout` has passed.
pub fn wait_until<T>(what: &str, timeout: Duration, mut poll: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = poll() {
            return value;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// As [`wait_until`], but returns `None` at the deadline instead of panicking.
pub fn wait_until_or_none<T>(timeout: Duration, mut poll: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = poll() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// How long a server may take to become ready: `$OXCD_TEST_START_TIMEOUT` seconds, default 30.
pub fn start_timeout() -> Duration {
    let secs = std::env::var("OXCD_TEST_START_TIMEOUT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    Duration::from_secs(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_first_value() {
        let mut n = 0;
        let got = wait_until("n to reach 3", Duration::from_secs(5), || {
            n += 1;
            (n >= 3).then_some(n)
        });
        assert_eq!(got, 3);
    }

    #[test]
    fn or_none_gives_up_quietly() {
        assert_eq!(
            wait_until_or_none::<()>(Duration::from_millis(100), || None),
            None
        );
        assert_eq!(
            wait_until_or_none(Duration::from_secs(1), || Some(7)),
            Some(7)
        );
    }

    #[test]
    #[should_panic(expected = "timed out")]
    fn panics_at_the_deadline() {
        wait_until::<()>("nothing", Duration::from_millis(100), || None);
    }
}
