//! Free TCP ports on 127.0.0.1.
//!
//! Ports come from outside the kernel's ephemeral range (`ip_local_port_range`): a port the
//! kernel chose for `bind(0)` can be taken a moment later as the source port of any outgoing
//! connection on the machine, before the server under test binds it (CI saw etcd fail with
//! "address already in use" that way). Tests run as many processes at once, so each port is
//! also claimed with an exclusive `flock` on a file under the temp dir, held until the test
//! process exits; and it must bind on 127.0.0.1 when it is handed out.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use rand::Rng;

/// Ports this process handed out, with the locked file that claims each one.
fn claimed() -> &'static Mutex<HashMap<u16, File>> {
    static PORTS: OnceLock<Mutex<HashMap<u16, File>>> = OnceLock::new();
    PORTS.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The ports tests may use: below the ephemeral range when there is room for them there,
/// otherwise above it; never etcd's 2379 and 2380.
fn usable_range() -> (u16, u16) {
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut bounds = text.split_whitespace().map(|s| s.parse::<u16>().ok());
            Some((bounds.next()??, bounds.next()??))
        })
        .unwrap_or((32768, 60999));
    match ephemeral {
        (low, _) if low > 12_000 => (10_000, low - 1),
        (_, high) if high < 63_000 => (high + 1, 65_535),
        // The whole range is ephemeral: the lock and the bind check still apply.
        _ => (10_000, 65_535),
    }
}

/// Where the lock files are, created on first use.
fn lock_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join("oxcd-e2e-ports");
        std::fs::create_dir_all(&dir).expect("create the port lock dir");
        dir
    })
}

/// Claims `port` for this process if no other test process holds it.
fn try_claim(port: u16) -> Option<File> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock_dir().join(port.to_string()))
        .ok()?;
    // SAFETY: flock on a descriptor this function owns; the lock lives as long as the file.
    let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
    locked.then_some(file)
}

/// A port on 127.0.0.1 that was free a moment ago and that no test process was handed out
/// and still runs.
pub fn free_port() -> u16 {
    let (low, high) = usable_range();
    let mut rng = rand::rng();
    for _ in 0..10_000 {
        let port = rng.random_range(low..=high);
        let mut ports = claimed().lock().unwrap_or_else(|e| e.into_inner());
        if ports.contains_key(&port) {
            continue;
        }
        let Some(lock) = try_claim(port) else {
            continue;
        };
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            ports.insert(port, lock);
            return port;
        }
    }
    panic!("no free port found on 127.0.0.1 in {low}..={high} after 10000 tries");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ports_are_never_repeated_and_not_ephemeral() {
        let (low, high) = usable_range();
        let mut seen = HashSet::new();
        for _ in 0..200 {
            let port = free_port();
            assert!(
                (low..=high).contains(&port),
                "{port} outside {low}..={high}"
            );
            assert!(seen.insert(port));
        }
    }

    #[test]
    fn a_claimed_port_cannot_be_claimed_again() {
        let port = free_port();
        assert!(try_claim(port).is_none());
    }
}
