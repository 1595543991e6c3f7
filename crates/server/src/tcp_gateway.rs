//! `oxcd gateway start`: etcd's L4 gateway (its `proxy/tcpproxy`), a TCP proxy in front of a
//! cluster's client URLs. Each accepted connection is piped, bytes untouched, to one endpoint
//! chosen round robin among the active ones; an endpoint that refuses a dial is set inactive,
//! and every `--retry-delay` a dial probe brings inactive ones back. TLS passes through, so
//! clients talk to the members' own TLS.
//!
//! Flags as etcd's: `--endpoints` (comma separated, schemes stripped), `--listen-addr`,
//! `--retry-delay`. DNS SRV discovery (`--discovery-srv`) is not built and is refused.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tokio::net::{TcpListener, TcpStream};

use crate::config::flags::GoDuration;

/// etcd's `gateway` command line; its flags may come before or after `start`.
#[derive(Parser, Debug)]
#[command(name = "oxcd gateway", about = "gateway related command")]
pub struct GatewayArgs {
    #[command(subcommand)]
    command: GatewayCommand,

    /// Comma separated etcd cluster endpoints.
    #[arg(
        long,
        global = true,
        default_value = "127.0.0.1:2379",
        value_delimiter = ','
    )]
    endpoints: Vec<String>,

    /// Listen address.
    #[arg(long, global = true, default_value = "127.0.0.1:23790")]
    listen_addr: String,

    /// Duration of delay before retrying failed endpoints.
    #[arg(long, global = true, default_value = "1m")]
    retry_delay: GoDuration,

    /// DNS domain used to bootstrap initial cluster (not built in oxcd).
    #[arg(long, global = true, default_value = "")]
    discovery_srv: String,

    /// Service name to query when using DNS discovery (not built in oxcd).
    #[arg(long, global = true, default_value = "")]
    discovery_srv_name: String,

    /// Accept insecure SRV records.
    #[arg(long, global = true)]
    insecure_discovery: bool,

    /// CA file for verifying discovered endpoints.
    #[arg(long, global = true, default_value = "")]
    trusted_ca_file: String,
}

#[derive(Subcommand, Debug)]
enum GatewayCommand {
    /// Start the gateway.
    Start,
}

/// One endpoint and whether the last dial to it worked.
struct Remote {
    addr: String,
    active: AtomicBool,
}

/// Endpoints and the round-robin cursor.
struct Remotes {
    list: Vec<Remote>,
    next: AtomicUsize,
}

impl Remotes {
    /// The next active endpoint, round robin; `None` when none is active.
    fn pick(&self) -> Option<&Remote> {
        (0..self.list.len())
            .map(|_| &self.list[self.next.fetch_add(1, Ordering::Relaxed) % self.list.len()])
            .find(|r| r.active.load(Ordering::Relaxed))
    }
}

/// `host:port` of an endpoint given with or without a scheme.
fn strip_scheme(endpoint: &str) -> String {
    endpoint
        .split_once("://")
        .map_or(endpoint, |(_, rest)| rest)
        .trim_end_matches('/')
        .to_string()
}

/// Runs `oxcd gateway ...` (`args` without the program name) until the process is stopped.
pub async fn run(args: GatewayArgs) -> Result<(), String> {
    let GatewayCommand::Start = args.command;
    if !args.discovery_srv.is_empty() {
        return Err("--discovery-srv: DNS discovery is not implemented in oxcd".into());
    }
    let endpoints: Vec<String> = args
        .endpoints
        .iter()
        .map(|e| strip_scheme(e.trim()))
        .filter(|e| !e.is_empty())
        .collect();
    if endpoints.is_empty() {
        return Err("no endpoints found".into());
    }
    if let Some(e) = endpoints.iter().find(|e| **e == args.listen_addr) {
        return Err(format!(
            "SRV or endpoint ({e}) should not resolve to the gateway listen addr ({})",
            args.listen_addr
        ));
    }
    let listener = TcpListener::bind(&args.listen_addr)
        .await
        .map_err(|e| format!("listen tcp {}: bind: {e}", args.listen_addr))?;
    let remotes = Arc::new(Remotes {
        list: endpoints
            .iter()
            .map(|addr| Remote {
                addr: addr.clone(),
                active: AtomicBool::new(true),
            })
            .collect(),
        next: AtomicUsize::new(0),
    });
    tracing::info!(endpoints = ?endpoints, "ready to proxy client requests");
    tokio::spawn(monitor(remotes.clone(), args.retry_delay.0));
    loop {
        match listener.accept().await {
            Ok((conn, _)) => {
                tokio::spawn(serve(conn, remotes.clone(), args.retry_delay.0));
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Pipes `conn` to the first active endpoint that takes a dial.
async fn serve(mut conn: TcpStream, remotes: Arc<Remotes>, retry_delay: Duration) {
    let _ = conn.set_nodelay(true);
    while let Some(remote) = remotes.pick() {
        match TcpStream::connect(&remote.addr).await {
            Ok(mut out) => {
                let _ = out.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional(&mut conn, &mut out).await;
                return;
            }
            Err(e) => {
                remote.active.store(false, Ordering::Relaxed);
                tracing::warn!(address = %remote.addr, interval = ?retry_delay, error = %e, "deactivated endpoint");
            }
        }
    }
}

/// Every `retry_delay`, dials each inactive endpoint and reactivates those that answer.
async fn monitor(remotes: Arc<Remotes>, retry_delay: Duration) {
    loop {
        tokio::time::sleep(retry_delay).await;
        for remote in remotes
            .list
            .iter()
            .filter(|r| !r.active.load(Ordering::Relaxed))
        {
            match TcpStream::connect(&remote.addr).await {
                Ok(_) => {
                    remote.active.store(true, Ordering::Relaxed);
                    tracing::info!(address = %remote.addr, "activated");
                }
                Err(e) => {
                    tracing::warn!(address = %remote.addr, interval = ?retry_delay, error = %e, "failed to activate endpoint (stay inactive for another interval)");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_before_or_after_start() {
        let a = GatewayArgs::try_parse_from(["gateway", "--endpoints=http://a:1,b:2", "start"])
            .unwrap();
        assert_eq!(a.endpoints, ["http://a:1", "b:2"]);
        assert_eq!(a.listen_addr, "127.0.0.1:23790");
        assert_eq!(a.retry_delay.0, Duration::from_secs(60));
        let b = GatewayArgs::try_parse_from([
            "gateway",
            "start",
            "--listen-addr=127.0.0.1:1",
            "--retry-delay=5s",
        ])
        .unwrap();
        assert_eq!(b.listen_addr, "127.0.0.1:1");
        assert_eq!(b.retry_delay.0, Duration::from_secs(5));
        assert!(GatewayArgs::try_parse_from(["gateway"]).is_err());
    }

    #[test]
    fn round_robin_skips_inactive() {
        let remotes = Remotes {
            list: ["a", "b", "c"]
                .iter()
                .map(|a| Remote {
                    addr: a.to_string(),
                    active: AtomicBool::new(true),
                })
                .collect(),
            next: AtomicUsize::new(0),
        };
        remotes.list[1].active.store(false, Ordering::Relaxed);
        let picks: Vec<&str> = (0..4)
            .map(|_| remotes.pick().unwrap().addr.as_str())
            .collect();
        assert_eq!(picks, ["a", "c", "a", "c"]);
        for r in &remotes.list {
            r.active.store(false, Ordering::Relaxed);
        }
        assert!(remotes.pick().is_none());
        assert_eq!(strip_scheme("https://h:1/"), "h:1");
    }
}
