//! Load on the v2 API, for comparing oxcd with etcd 3.4 (`--enable-v2`) on the same machine:
//! `set` throughput, quorum `get` throughput, and watch fan-out. Not a test.
//!
//! ```text
//! cargo run --release -p oxcd-e2e --example v2_load -- ENDPOINT SERVER_PID [CLIENTS] [SECONDS] [WATCHERS]
//! ```
//! Each phase runs CLIENTS (default 32) keep-alive HTTP/1.1 connections for SECONDS (default
//! 10): `PUT /v2/keys/bench/kN`, then `GET /v2/keys/bench/kN?quorum=true`. The fan-out phase
//! opens WATCHERS (default 200) `wait=true&stream=true` watches on one key, writes 200 values
//! and measures how long until every watcher has seen every event. Prints requests per
//! second, p50/p99 latency, and the server's CPU time per operation (from /proc/PID/stat).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11).and_then(|s| s.parse().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|s| s.parse().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// One keep-alive connection.
struct Conn {
    reader: BufReader<TcpStream>,
    addr: String,
}

impl Conn {
    fn open(addr: &str) -> Conn {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_nodelay(true).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        Conn {
            reader: BufReader::new(stream),
            addr: addr.to_owned(),
        }
    }

    /// Sends a request and reads the whole answer; returns the status.
    fn call(&mut self, method: &str, path: &str, body: &str) -> u16 {
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        self.reader
            .get_mut()
            .write_all(req.as_bytes())
            .expect("write");
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("status line");
        let status = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut length = 0;
        loop {
            line.clear();
            self.reader.read_line(&mut line).expect("header");
            if line == "\r\n" {
                break;
            }
            let lower = line.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body).expect("body");
        status
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

/// Runs `op` on `clients` connections for `secs`; prints the numbers.
fn phase(
    name: &str,
    addr: &str,
    pid: u32,
    clients: usize,
    secs: u64,
    op: fn(&mut Conn, usize, usize) -> u16,
) {
    let barrier = Arc::new(Barrier::new(clients + 1));
    let stop = Instant::now() + Duration::from_secs(secs) + Duration::from_millis(200);
    let handles: Vec<_> = (0..clients)
        .map(|c| {
            let barrier = barrier.clone();
            let addr = addr.to_owned();
            std::thread::spawn(move || {
                let mut conn = Conn::open(&addr);
                let mut latencies = Vec::new();
                let mut errors = 0;
                barrier.wait();
                let mut i = 0;
                while Instant::now() < stop {
                    let t = Instant::now();
                    let status = op(&mut conn, c, i);
                    latencies.push(t.elapsed());
                    if status >= 300 {
                        errors += 1;
                    }
                    i += 1;
                }
                (latencies, errors)
            })
        })
        .collect();
    let cpu0 = cpu_seconds(pid);
    let t0 = Instant::now();
    barrier.wait();
    let mut all = Vec::new();
    let mut errors = 0;
    for h in handles {
        let (l, e) = h.join().unwrap();
        all.extend(l);
        errors += e;
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid) - cpu0;
    all.sort();
    println!(
        "{name:<12} {:>9.0} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms  server CPU {:>6.1} µs/op  ({} ops, {errors} errors)",
        all.len() as f64 / elapsed,
        percentile(&all, 0.5).as_secs_f64() * 1e3,
        percentile(&all, 0.99).as_secs_f64() * 1e3,
        cpu / all.len().max(1) as f64 * 1e6,
        all.len()
    );
}

fn set(conn: &mut Conn, client: usize, i: usize) -> u16 {
    conn.call(
        "PUT",
        &format!("/v2/keys/bench/k{}", (client * 7919 + i) % 1000),
        "value=0123456789abcdef0123456789abcdef",
    )
}

fn quorum_get(conn: &mut Conn, client: usize, i: usize) -> u16 {
    conn.call(
        "GET",
        &format!("/v2/keys/bench/k{}?quorum=true", (client * 7919 + i) % 1000),
        "",
    )
}

fn fan_out(addr: &str, pid: u32, watchers: usize) {
    const EVENTS: usize = 200;
    let ready = Arc::new(Barrier::new(watchers + 1));
    let handles: Vec<_> = (0..watchers)
        .map(|_| {
            let addr = addr.to_owned();
            let ready = ready.clone();
            std::thread::spawn(move || {
                let mut stream = TcpStream::connect(&addr).unwrap();
                write!(
                    stream,
                    "GET /v2/keys/fan?wait=true&stream=true HTTP/1.1\r\nHost: {addr}\r\n\r\n"
                )
                .unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(60)))
                    .unwrap();
                let mut reader = BufReader::new(stream);
                let mut line = String::new();
                // The head arrives when the watch is registered.
                while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) && line != "\r\n"
                {
                    line.clear();
                }
                ready.wait();
                let mut seen = 0;
                while seen < EVENTS {
                    line.clear();
                    match reader.read_line(&mut line) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => seen += line.matches("\"action\"").count(),
                    }
                }
                (seen, Instant::now())
            })
        })
        .collect();
    ready.wait();
    let cpu0 = cpu_seconds(pid);
    let t0 = Instant::now();
    let mut conn = Conn::open(addr);
    for i in 0..EVENTS {
        conn.call("PUT", "/v2/keys/fan", &format!("value={i}"));
    }
    let mut complete = 0;
    let mut last = t0;
    for h in handles {
        let (seen, at) = h.join().unwrap();
        if seen >= EVENTS {
            complete += 1;
        }
        last = last.max(at);
    }
    let elapsed = (last - t0).as_secs_f64();
    let cpu = cpu_seconds(pid) - cpu0;
    let delivered = (complete * EVENTS) as f64;
    println!(
        "watch fan-out {watchers} watchers x {EVENTS} events: {complete} complete, {:.0} events/s delivered, all in {:.2} s, server CPU {:.1} µs/event",
        delivered / elapsed,
        elapsed,
        cpu / delivered.max(1.0) * 1e6
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let addr = args
        .first()
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:2379".into());
    let pid: u32 = args
        .get(1)
        .and_then(|s| s.parse().ok())
        .expect("SERVER_PID");
    let clients = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(32);
    let secs = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(10);
    let watchers = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(200);
    phase("set", &addr, pid, clients, secs, set);
    phase("quorum get", &addr, pid, clients, secs, quorum_get);
    fan_out(&addr, pid, watchers);
}
