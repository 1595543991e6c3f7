//! A fault-injecting TCP proxy in front of every member's peer port: the network as a value.
//!
//! Each member listens for peer traffic on its real peer port but advertises a proxy port
//! (`--initial-advertise-peer-urls`, `--initial-cluster`), so every byte one member sends to
//! another crosses a [`PeerNetwork`] proxy in this test process. The test can then cut links:
//!
//! - [`PeerNetwork::cut_one_way`]`(a, b)`: bytes that `a` sends to `b` are held back.
//! - [`PeerNetwork::cut_both_ways`]`(a, b, mode)`: both directions, either held back
//!   ([`CutMode::Blackhole`]) or with connections closed and refused ([`CutMode::Refuse`]).
//! - [`PeerNetwork::isolate`]: a member against everyone else; [`PeerNetwork::heal`] undoes all.
//!
//! ## Who is talking
//!
//! All members run on 127.0.0.1, so the proxy cannot tell senders apart by address. When it
//! accepts a connection it looks the connecting socket up in `/proc/net/tcp` (its inode) and
//! finds which child process of this test holds that socket, then reads that process's
//! `--name=` argument. This works for any server binary (real etcd or oxcd) and survives
//! restarts, which change pids. A connection whose sender cannot be identified (it closed at
//! once, or it is not one of our children) is never cut, and is counted
//! ([`PeerNetwork::unidentified_connections`]).
//!
//! ## How faithful a cut is
//!
//! A TCP connection carries bytes both ways, and Raft messages from `a` to `b` may travel in
//! either: on a connection `a` opened to `b` (a request), or on one `b` opened to `a` (a
//! response stream, as etcd's stream transport does). A cut of `a → b` therefore holds back
//! every byte `a` writes towards `b`, whichever side opened the connection. Holding back means
//! the proxy stops reading that side of the connection: the sender's socket buffer fills and
//! its writes block, as when a network drops packets. When the cut is healed, the held bytes
//! flow again in order, as TCP retransmission would deliver them after a partition heals; the
//! sender's own timeouts may of course have closed the connection meanwhile.
//!
//! What differs from a real network partition: TCP handshakes and acknowledgements still
//! complete (the proxy is a TCP endpoint), so connecting to a cut peer succeeds at once and
//! then nothing arrives, instead of the connect timing out; and up to one read buffer
//! (16 KiB) that the proxy had already read when the cut began is held, not lost.
//! [`CutMode::Refuse`] models the other common failure, a peer that resets connections.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio::sync::watch;
use tokio::task::AbortHandle;

/// Bytes read from one side of a connection before they are written to the other.
const CHUNK: usize = 16 * 1024;

/// How long connecting to a member's real peer port may take.
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How a cut link behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CutMode {
    /// Bytes are held back (not read) until the link heals: like dropped packets.
    Blackhole,
    /// Existing connections between the two members are closed and new ones are closed as
    /// soon as they are accepted: like a peer that resets connections. Only for both-way cuts,
    /// as it ends connections, which carry both directions.
    Refuse,
}

/// Proxies in front of members' peer ports, and the link state they enforce. See the module
/// documentation.
///
/// It owns a small tokio runtime of its own, so it serves synchronous tests and async ones
/// alike; dropping it closes every proxy and connection.
pub struct PeerNetwork {
    shared: Arc<Shared>,
    runtime: Option<Runtime>,
    /// Member name → its proxy's accept loop.
    proxies: Mutex<HashMap<String, ProxyHandle>>,
}

struct ProxyHandle {
    port: u16,
    accept_loop: AbortHandle,
}

/// State shared by the controlling test and the proxy tasks.
struct Shared {
    /// (sender, receiver) → how bytes from sender to receiver are cut. No entry: they flow.
    cuts: Mutex<HashMap<(String, String), CutMode>>,
    /// Bumped on every change of `cuts`, so that held-back pumps look again.
    changes: watch::Sender<u64>,
    connections: Mutex<HashMap<u64, Connection>>,
    next_connection: AtomicU64,
    unidentified: AtomicU64,
    accepted: AtomicU64,
}

/// One proxied connection: `client` opened it to `server`'s proxy.
struct Connection {
    client: Option<String>,
    server: String,
    task: AbortHandle,
}

impl std::fmt::Debug for PeerNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let proxies: Vec<(String, u16)> = lock(&self.proxies)
            .iter()
            .map(|(name, proxy)| (name.clone(), proxy.port))
            .collect();
        f.debug_struct("PeerNetwork")
            .field("proxies", &proxies)
            .field("cuts", &self.cuts())
            .finish()
    }
}

impl Default for PeerNetwork {
    fn default() -> Self {
        PeerNetwork::new()
    }
}

impl PeerNetwork {
    /// A network with no proxies and no cuts.
    pub fn new() -> PeerNetwork {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("peer-proxy")
            .enable_all()
            .build()
            .expect("build the peer proxy runtime");
        let (changes, _) = watch::channel(0);
        PeerNetwork {
            shared: Arc::new(Shared {
                cuts: Mutex::new(HashMap::new()),
                changes,
                connections: Mutex::new(HashMap::new()),
                next_connection: AtomicU64::new(0),
                unidentified: AtomicU64::new(0),
                accepted: AtomicU64::new(0),
            }),
            runtime: Some(runtime),
            proxies: Mutex::new(HashMap::new()),
        }
    }

    /// Starts a proxy for `member` on `127.0.0.1:proxy_port` that forwards to
    /// `127.0.0.1:target_port`, the member's real peer port. Panics if the port is taken.
    pub fn add_proxy(&self, member: &str, proxy_port: u16, target_port: u16) {
        let runtime = self.runtime();
        let listener = runtime
            .block_on(TcpListener::bind(("127.0.0.1", proxy_port)))
            .unwrap_or_else(|e| panic!("bind the peer proxy of {member} on {proxy_port}: {e}"));
        let shared = self.shared.clone();
        let server = member.to_owned();
        let accept_loop = runtime
            .spawn(accept_loop(listener, shared, server, target_port))
            .abort_handle();
        let old = lock(&self.proxies).insert(
            member.to_owned(),
            ProxyHandle {
                port: proxy_port,
                accept_loop,
            },
        );
        if let Some(old) = old {
            old.accept_loop.abort();
        }
    }

    /// Stops `member`'s proxy and closes its connections (a member that left the cluster).
    pub fn remove_proxy(&self, member: &str) {
        if let Some(proxy) = lock(&self.proxies).remove(member) {
            proxy.accept_loop.abort();
        }
        self.close_connections(|c| c.server == member || c.client.as_deref() == Some(member));
    }

    /// The proxy port of `member`, if it has a proxy.
    pub fn proxy_port(&self, member: &str) -> Option<u16> {
        lock(&self.proxies).get(member).map(|p| p.port)
    }

    /// Holds back every byte `from` sends to `to`; the other direction keeps flowing.
    pub fn cut_one_way(&self, from: &str, to: &str) {
        self.set_cuts(&[(from, to)], CutMode::Blackhole);
    }

    /// Cuts both directions between `a` and `b`.
    pub fn cut_both_ways(&self, a: &str, b: &str, mode: CutMode) {
        self.set_cuts(&[(a, b), (b, a)], mode);
    }

    /// Cuts `member` off from each of `others`, both ways.
    pub fn isolate(&self, member: &str, others: &[&str], mode: CutMode) {
        let pairs: Vec<(&str, &str)> = others
            .iter()
            .filter(|other| **other != member)
            .flat_map(|other| [(member, *other), (*other, member)])
            .collect();
        self.set_cuts(&pairs, mode);
    }

    /// Removes every cut; held-back bytes flow again.
    pub fn heal(&self) {
        lock(&self.shared.cuts).clear();
        self.shared.changes.send_modify(|n| *n += 1);
    }

    /// The current cuts, sorted: (sender, receiver, mode).
    pub fn cuts(&self) -> Vec<(String, String, CutMode)> {
        let mut cuts: Vec<_> = lock(&self.shared.cuts)
            .iter()
            .map(|((from, to), mode)| (from.clone(), to.clone(), *mode))
            .collect();
        cuts.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        cuts
    }

    /// How many connections the proxies have accepted.
    pub fn accepted_connections(&self) -> u64 {
        self.shared.accepted.load(Ordering::Relaxed)
    }

    /// How many accepted connections came from a process the proxy could not name (never
    /// cut). A few are normal (a socket closed before it was looked up); many mean the cuts
    /// are not working.
    pub fn unidentified_connections(&self) -> u64 {
        self.shared.unidentified.load(Ordering::Relaxed)
    }

    /// Open connections as (client, server) pairs, client `None` when unidentified.
    pub fn open_connections(&self) -> Vec<(Option<String>, String)> {
        lock(&self.shared.connections)
            .values()
            .map(|c| (c.client.clone(), c.server.clone()))
            .collect()
    }

    fn set_cuts(&self, pairs: &[(&str, &str)], mode: CutMode) {
        {
            let mut cuts = lock(&self.shared.cuts);
            for (from, to) in pairs {
                assert_ne!(from, to, "a member cannot be cut from itself");
                cuts.insert(((*from).to_owned(), (*to).to_owned()), mode);
            }
        }
        if mode == CutMode::Refuse {
            self.close_connections(|c| {
                pairs.iter().any(|(from, to)| {
                    let client = c.client.as_deref();
                    (client == Some(*from) && c.server == *to)
                        || (client == Some(*to) && c.server == *from)
                })
            });
        }
        self.shared.changes.send_modify(|n| *n += 1);
    }

    fn close_connections(&self, which: impl Fn(&Connection) -> bool) {
        lock(&self.shared.connections).retain(|_, c| {
            let close = which(c);
            if close {
                c.task.abort();
            }
            !close
        });
    }

    fn runtime(&self) -> &Runtime {
        self.runtime.as_ref().expect("the runtime lives until drop")
    }
}

impl Drop for PeerNetwork {
    fn drop(&mut self) {
        // Not `drop(runtime)`: that blocks, which panics when the network is dropped inside
        // an async test. Tasks are cancelled and their sockets closed in the background.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn cut(&self, from: Option<&str>, to: Option<&str>) -> Option<CutMode> {
        let (Some(from), Some(to)) = (from, to) else {
            return None;
        };
        lock(&self.cuts)
            .get(&(from.to_owned(), to.to_owned()))
            .copied()
    }

    fn refused(&self, client: Option<&str>, server: &str) -> bool {
        self.cut(client, Some(server)) == Some(CutMode::Refuse)
            || self.cut(Some(server), client) == Some(CutMode::Refuse)
    }

    /// Returns once bytes from `from` to `to` may flow.
    async fn wait_open(&self, from: Option<&str>, to: Option<&str>) {
        let mut changes = self.changes.subscribe();
        while self.cut(from, to).is_some() {
            if changes.changed().await.is_err() {
                // The network is going away; the task will be cancelled.
                std::future::pending::<()>().await;
            }
        }
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, server: String, target: u16) {
    let proxy_port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        shared.accepted.fetch_add(1, Ordering::Relaxed);
        let shared = shared.clone();
        let server = server.clone();
        tokio::spawn(async move {
            let client = tokio::task::spawn_blocking(move || identify(peer, proxy_port))
                .await
                .ok()
                .flatten();
            if client.is_none() {
                shared.unidentified.fetch_add(1, Ordering::Relaxed);
            }
            if shared.refused(client.as_deref(), &server) {
                return; // dropping the stream closes it
            }
            let connect = TcpStream::connect(("127.0.0.1", target));
            let Ok(Ok(upstream)) = tokio::time::timeout(UPSTREAM_CONNECT_TIMEOUT, connect).await
            else {
                return; // the member is down: the sender sees its connection closed
            };
            let _ = stream.set_nodelay(true);
            let _ = upstream.set_nodelay(true);
            let id = shared.next_connection.fetch_add(1, Ordering::Relaxed);
            let relay = tokio::spawn(relay(
                shared.clone(),
                stream,
                upstream,
                client.clone(),
                server.clone(),
            ));
            lock(&shared.connections).insert(
                id,
                Connection {
                    client,
                    server,
                    task: relay.abort_handle(),
                },
            );
            let _ = relay.await;
            lock(&shared.connections).remove(&id);
        });
    }
}

/// Copies bytes both ways until both directions have ended.
async fn relay(
    shared: Arc<Shared>,
    downstream: TcpStream,
    upstream: TcpStream,
    client: Option<String>,
    server: String,
) {
    let (down_read, down_write) = downstream.into_split();
    let (up_read, up_write) = upstream.into_split();
    let client = client.as_deref();
    tokio::join!(
        pump(&shared, down_read, up_write, client, Some(&server)),
        pump(&shared, up_read, down_write, Some(&server), client),
    );
}

/// Copies bytes from `from` (written by `sender`) to `to` (read by `receiver`), holding them
/// back while that direction is cut. Ends at end of stream or on an error, closing `to`'s
/// write side so the far end sees the end too.
async fn pump(
    shared: &Shared,
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    sender: Option<&str>,
    receiver: Option<&str>,
) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        shared.wait_open(sender, receiver).await;
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // The link may have been cut while we were reading: hold these bytes too.
        shared.wait_open(sender, receiver).await;
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// The `--name` of the child process of this test that owns the socket connected from
/// `peer` (127.0.0.1:ephemeral) to our proxy port, if any.
fn identify(peer: SocketAddr, proxy_port: u16) -> Option<String> {
    let inode = socket_inode(peer.port(), proxy_port)?;
    let target = format!("socket:[{inode}]");
    child_pids().into_iter().find_map(|pid| {
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
        let owns = fds
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|link| link.as_os_str() == &*target));
        if owns {
            member_name(pid)
        } else {
            None
        }
    })
}

/// The inode of the TCP socket whose local port is `local` and remote port is `remote`, from
/// `/proc/net/tcp` and `/proc/net/tcp6`.
fn socket_inode(local: u16, remote: u16) -> Option<u64> {
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().find_map(|path| {
        let table = std::fs::read_to_string(path).ok()?;
        find_socket_inode(&table, local, remote)
    })
}

/// Parses a `/proc/net/tcp` table: lines of `sl local rem st tx:rx tr:when retrnsmt uid
/// timeout inode ...`, addresses as `HEXADDR:HEXPORT`.
fn find_socket_inode(table: &str, local: u16, remote: u16) -> Option<u64> {
    fn port(field: &str) -> Option<u16> {
        u16::from_str_radix(field.rsplit(':').next()?, 16).ok()
    }
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 10 {
            return None;
        }
        if port(fields[1])? == local && port(fields[2])? == remote {
            fields[9].parse().ok().filter(|inode| *inode != 0)
        } else {
            None
        }
    })
}

/// Processes whose parent is this process.
fn child_pids() -> Vec<u32> {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| parent_pid(*pid) == Some(me))
        .collect()
}

/// The parent pid from `/proc/PID/stat` (`pid (comm) state ppid ...`; comm may hold spaces
/// and parentheses, so parse after the last `)`).
fn parent_pid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_parent_pid(&stat)
}

fn parse_parent_pid(stat: &str) -> Option<u32> {
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(1)?.parse().ok()
}

/// The value of `--name=X` or `--name X` in the process's command line.
fn member_name(pid: u32) -> Option<String> {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    name_from_args(&args)
}

fn name_from_args(args: &[String]) -> Option<String> {
    let mut name = None;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if let Some(value) = arg
            .strip_prefix("--name=")
            .or_else(|| arg.strip_prefix("-name="))
        {
            name = Some(value.to_owned());
        } else if arg == "--name" || arg == "-name" {
            name = iter.next().cloned();
        }
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpStream as StdStream;
    use std::process::{Command, Stdio};
    use std::time::Instant;

    use crate::ports::free_port;

    #[test]
    fn parses_proc_net_tcp() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
           0: 0100007F:9C40 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 4242 1 0 20 4 30 10 -1\n\
           1: 0100007F:1F90 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 4243 1 0 20 4 30 10 -1\n";
        assert_eq!(find_socket_inode(table, 0x9C40, 0x1F90), Some(4242));
        assert_eq!(find_socket_inode(table, 0x1F90, 0x9C40), Some(4243));
        assert_eq!(find_socket_inode(table, 1, 2), None);
        assert_eq!(find_socket_inode("header\ngarbage line\n", 1, 2), None);
    }

    #[test]
    fn parses_stat_and_names() {
        assert_eq!(parse_parent_pid("12 (a) b) c) S 7 12 12"), Some(7));
        assert_eq!(parse_parent_pid("garbage"), None);
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            name_from_args(&args(&["etcd", "--name=m1", "--data-dir=x"])),
            Some("m1".into())
        );
        assert_eq!(
            name_from_args(&args(&["etcd", "--name", "m2"])),
            Some("m2".into())
        );
        assert_eq!(name_from_args(&args(&["etcd"])), None);
    }

    /// An echo server on a fresh port, in a thread; returns the port.
    fn echo_server() -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut reader = stream.try_clone().unwrap();
                    let mut writer = stream;
                    let _ = std::io::copy(&mut reader, &mut writer);
                });
            }
        });
        port
    }

    fn read_exact_within(stream: &mut StdStream, n: usize, timeout: Duration) -> Option<Vec<u8>> {
        stream.set_read_timeout(Some(timeout)).unwrap();
        let mut buf = vec![0; n];
        stream.read_exact(&mut buf).ok().map(|_| buf)
    }

    /// A connection from the test process itself is not from a child: unidentified, never cut.
    #[test]
    fn forwards_and_counts_unidentified_senders() {
        let network = PeerNetwork::new();
        let proxy = free_port();
        network.add_proxy("b", proxy, echo_server());
        network.cut_both_ways("a", "b", CutMode::Blackhole);
        let mut stream = StdStream::connect(("127.0.0.1", proxy)).unwrap();
        stream.write_all(b"ping").unwrap();
        let echoed = read_exact_within(&mut stream, 4, Duration::from_secs(5));
        assert_eq!(echoed.as_deref(), Some(&b"ping"[..]));
        assert_eq!(network.unidentified_connections(), 1);
    }

    /// A child process named by `--name=a` (a python one-liner standing in for a member)
    /// connects through the proxy; cuts in each direction hold back exactly that direction.
    #[test]
    fn cuts_the_identified_sender_per_direction() {
        let network = PeerNetwork::new();
        let proxy = free_port();
        network.add_proxy("b", proxy, echo_server());
        // The child sends a line every 50 ms and prints every echoed byte it receives.
        let script = format!(
            "import socket,sys,time\n\
             s=socket.create_connection(('127.0.0.1',{proxy}))\n\
             s.settimeout(0.05)\n\
             while True:\n  try:\n    s.sendall(b'x')\n    d=s.recv(100)\n    sys.stdout.write(str(len(d))+'\\n'); sys.stdout.flush()\n  except socket.timeout:\n    pass\n  except OSError:\n    sys.exit(0)\n"
        );
        let mut child = Command::new("python3")
            .args(["-c", &script, "--name=a"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let echoes_within = |d: Duration| {
            while rx.try_recv().is_ok() {}
            let deadline = Instant::now() + d;
            while Instant::now() < deadline {
                if rx.recv_timeout(Duration::from_millis(20)).is_ok() {
                    return true;
                }
            }
            false
        };
        assert!(echoes_within(Duration::from_secs(5)), "no echo at all");
        assert_eq!(
            network.open_connections(),
            vec![(Some("a".to_owned()), "b".to_owned())]
        );

        network.cut_one_way("a", "b");
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            !echoes_within(Duration::from_millis(500)),
            "a→b cut, yet echoes"
        );
        network.heal();
        assert!(echoes_within(Duration::from_secs(5)), "healed, yet no echo");

        network.cut_one_way("b", "a");
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            !echoes_within(Duration::from_millis(500)),
            "b→a cut, yet echoes"
        );
        network.heal();
        assert!(echoes_within(Duration::from_secs(5)), "healed, yet no echo");

        // A cut in an unrelated direction changes nothing.
        network.cut_one_way("c", "b");
        assert!(echoes_within(Duration::from_secs(5)), "c→b cut stopped a→b");

        network.cut_both_ways("a", "b", CutMode::Refuse);
        std::thread::sleep(Duration::from_millis(200));
        assert!(network.open_connections().is_empty());
        let _ = child.kill();
        let _ = child.wait();
    }
}
