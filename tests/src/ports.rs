//! Free TCP ports on 127.0.0.1.
//!
//! A port is found by binding `127.0.0.1:0` and reading the port the kernel chose; the socket
//! is closed again so the server can bind it. A process-wide set makes sure one test process
//! never hands the same port out twice, even after the kernel would offer it again.

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::{Mutex, OnceLock};

fn handed_out() -> &'static Mutex<HashSet<u16>> {
    static PORTS: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    PORTS.get_or_init(|| Mutex::new(HashSet::new()))
}

/// A port on 127.0.0.1 that was free a moment ago and that this process never handed out.
pub fn free_port() -> u16 {
    for _ in 0..1000 {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener
            .local_addr()
            .expect("local addr of a bound socket")
            .port();
        drop(listener);
        let mut ports = handed_out().lock().unwrap_or_else(|e| e.into_inner());
        if ports.insert(port) {
            return port;
        }
    }
    panic!("no free port found on 127.0.0.1 after 1000 tries");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_never_repeated() {
        let mut seen = HashSet::new();
        for _ in 0..200 {
            assert!(seen.insert(free_port()));
        }
    }
}
