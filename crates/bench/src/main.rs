//! `oxcd-bench`: a load generator with etcd benchmark's subcommands, flags and summary output
//! (`put`, `range`, `txn-put`, `txn-mixed`, `watch`, `watch-get`, `watch-latency`,
//! `lease-keepalive`), speaking etcd's gRPC API through the tonic clients of `oxcd-api`.
//!
//! It is lighter than the Go tool: compare servers with either, but with the same one. The
//! pieces: [`conn`] opens the connections and paces requests, [`run`] drives clients,
//! [`report`] prints etcd's summary, and one module per family of subcommands.

mod conn;
mod kv;
mod lease;
mod report;
mod run;
mod watch;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// A low-level benchmark tool for etcd-compatible servers (etcd benchmark's commands).
#[derive(Parser)]
#[command(name = "oxcd-bench", version)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Flags every subcommand takes.
#[derive(clap::Args, Clone)]
pub struct Global {
    /// gRPC endpoints
    #[arg(
        long,
        global = true,
        value_delimiter = ',',
        default_value = "127.0.0.1:2379"
    )]
    pub endpoints: Vec<String>,
    /// Total number of gRPC connections
    #[arg(long, global = true, default_value_t = 1)]
    pub conns: usize,
    /// Total number of gRPC clients
    #[arg(long, global = true, default_value_t = 1)]
    pub clients: usize,
    /// use full floating point precision
    #[arg(long, global = true)]
    pub precise: bool,
    /// 'true' to sample requests for every second
    #[arg(long, global = true)]
    pub sample: bool,
    /// identify HTTPS client using this SSL certificate file
    #[arg(long, global = true)]
    pub cert: Option<String>,
    /// identify HTTPS client using this SSL key file
    #[arg(long, global = true)]
    pub key: Option<String>,
    /// verify certificates of HTTPS-enabled servers using this CA bundle
    #[arg(long, global = true)]
    pub cacert: Option<String>,
    /// provide username:password
    #[arg(long, global = true)]
    pub user: Option<String>,
    /// dial timeout for client connections
    #[arg(long, global = true, value_parser = parse_duration)]
    pub dial_timeout: Option<Duration>,
    /// connect only to the leader node
    #[arg(long, global = true)]
    pub target_leader: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Benchmark put
    Put(kv::PutArgs),
    /// Benchmark range
    Range(kv::RangeArgs),
    /// Benchmark put with transactions
    TxnPut(kv::TxnPutArgs),
    /// Benchmark a mixed load of read and write transactions
    TxnMixed(kv::TxnMixedArgs),
    /// Benchmark watch
    Watch(watch::WatchArgs),
    /// Benchmark serializable gets while unsynced watchers catch up
    WatchGet(watch::WatchGetArgs),
    /// Benchmark watch latency
    WatchLatency(watch::WatchLatencyArgs),
    /// Benchmark lease keepalive
    LeaseKeepalive(lease::KeepaliveArgs),
}

/// A Go duration as etcd's flags take it: `5s`, `500ms`, `1m`, `2m30s`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let mut total = Duration::ZERO;
    let mut rest = s;
    if rest == "0" {
        return Ok(total);
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("missing unit in duration {s:?}"))?;
        let value: f64 = rest[..digits]
            .parse()
            .map_err(|_| format!("invalid duration {s:?}"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            unit => return Err(format!("unknown unit {unit:?} in duration {s:?}")),
        };
        total += Duration::from_secs_f64(value * scale);
        rest = &rest[unit_len..];
    }
    Ok(total)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let global = cli.global;
    report::SAMPLE.store(global.sample, std::sync::atomic::Ordering::Relaxed);
    let outcome = runtime.block_on(async move {
        match cli.command {
            Command::Put(args) => kv::put(&global, args).await,
            Command::Range(args) => kv::range(&global, args).await,
            Command::TxnPut(args) => kv::txn_put(&global, args).await,
            Command::TxnMixed(args) => kv::txn_mixed(&global, args).await,
            Command::Watch(args) => watch::watch(&global, args).await,
            Command::WatchGet(args) => watch::watch_get(&global, args).await,
            Command::WatchLatency(args) => watch::watch_latency(&global, args).await,
            Command::LeaseKeepalive(args) => lease::keepalive(&global, args).await,
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_as_go_writes_them() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m30s"), Ok(Duration::from_secs(150)));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5x").is_err());
    }
}
