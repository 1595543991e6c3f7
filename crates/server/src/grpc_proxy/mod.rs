//! `oxcd grpc-proxy start`: a proxy in front of a cluster's client URLs that speaks gRPC
//! (etcd's `etcdmain/grpc_proxy.go`), with etcd's flags.
//!
//! Unlike etcd's proxy, which decodes each call and re-issues it through a client (and so
//! coalesces watches and caches serializable ranges), this one forwards at the HTTP/2 level:
//! each call goes to one endpoint, chosen round robin, with its headers (auth tokens
//! included) and message frames passed through unchanged, and the answer comes back the same
//! way ([`forward`]). An endpoint that cannot be dialed is passed over for the next one
//! ([`upstream`]). The proxy listens in plain text or with TLS (`--cert-file`, `--key-file`,
//! `--trusted-ca-file`, `--listen-cipher-suites`, `--client-crl-file`, `--auto-tls`), and
//! dials the endpoints in plain text or with TLS (`--cert`, `--key`, `--cacert`,
//! `--insecure-skip-tls-verify`); as etcd, it refuses a client certificate with a Common
//! Name, since the members would take that name as the user of every forwarded call. Over
//! HTTP/1, `GET /metrics` and `GET /health` answer with an endpoint's, as etcd's proxy
//! fetches a member's `/metrics`.
//!
//! Flags of etcd's proxy that are not built are accepted and named in a warning at start,
//! except `--namespace` and `--discovery-srv`, which change which keys or which cluster the
//! calls reach, and are refused.

mod forward;
mod upstream;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{ArgAction, CommandFactory, FromArgMatches, Parser, Subcommand};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::config::flags::parse_go_bool;
use crate::tls::{self, Side, TlsInfo};
use upstream::{Endpoint, Upstreams};

/// How long a client may take to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// etcd's `grpc-proxy` command line; its flags may come before or after `start`.
#[derive(Parser, Debug)]
#[command(
    name = "oxcd grpc-proxy",
    about = "grpc-proxy related command",
    after_help = "oxcd's proxy forwards each gRPC call unchanged to one endpoint (round robin, \
                  failing over to the next when one cannot be dialed); it does not coalesce \
                  watches or cache ranges as etcd's proxy does."
)]
pub struct GrpcProxyArgs {
    #[command(subcommand)]
    command: GrpcProxyCommand,

    /// Listen address.
    #[arg(long, global = true, default_value = "127.0.0.1:23790")]
    listen_addr: String,

    /// Comma separated etcd cluster endpoints.
    #[arg(
        long,
        global = true,
        default_value = "127.0.0.1:2379",
        value_delimiter = ','
    )]
    endpoints: Vec<String>,

    /// Domain name to query for SRV records describing cluster endpoints (not implemented;
    /// refused).
    #[arg(long, global = true, default_value = "")]
    discovery_srv: String,

    /// Service name to query when using DNS discovery (not implemented).
    #[arg(long, global = true, default_value = "")]
    discovery_srv_name: String,

    /// Listen for endpoint /metrics requests on an additional interface (not implemented).
    #[arg(long, global = true, default_value = "")]
    metrics_addr: String,

    /// Accept insecure SRV records (not implemented).
    #[arg(long, global = true, num_args = 0..=1, require_equals = true, default_value = "false",
        default_missing_value = "true", value_parser = parse_go_bool, action = ArgAction::Set)]
    insecure_discovery: bool,

    /// Advertise address to register (not implemented: calls are forwarded, MemberList shows
    /// the members' own URLs).
    #[arg(long, global = true, default_value = "127.0.0.1:23790")]
    advertise_client_url: String,

    /// Prefix to use for registering proxy (not implemented).
    #[arg(long, global = true, default_value = "")]
    resolver_prefix: String,

    /// TTL, in seconds, when registering proxy endpoints (not implemented).
    #[arg(long, global = true, default_value_t = 0)]
    resolver_ttl: i64,

    /// String to prefix to all keys for namespacing requests (not implemented; refused).
    #[arg(long, global = true, default_value = "")]
    namespace: String,

    /// Enable runtime profiling data via HTTP server (not implemented).
    #[arg(long, global = true, num_args = 0..=1, require_equals = true, default_value = "false",
        default_missing_value = "true", value_parser = parse_go_bool, action = ArgAction::Set)]
    enable_pprof: bool,

    /// Data directory for persistent data (where --auto-tls keeps its certificate).
    #[arg(long, global = true, default_value = "default.proxy")]
    data_dir: PathBuf,

    /// Message send limits in bytes (not implemented: messages pass through; the members'
    /// limits apply).
    #[arg(long, global = true, default_value_t = 1572864)]
    max_send_bytes: i64,

    /// Message receive limits in bytes (not implemented: messages pass through; the members'
    /// limits apply).
    #[arg(long, global = true, default_value_t = i64::from(i32::MAX))]
    max_recv_bytes: i64,

    /// Identify secure connections with etcd servers using this TLS certificate file.
    #[arg(long, global = true, default_value = "")]
    cert: String,

    /// Identify secure connections with etcd servers using this TLS key file.
    #[arg(long, global = true, default_value = "")]
    key: String,

    /// Verify certificates of TLS-enabled secure etcd servers using this CA bundle.
    #[arg(long, global = true, default_value = "")]
    cacert: String,

    /// Skip authentication of etcd server TLS certificates (CAUTION: for testing only).
    #[arg(long, global = true, num_args = 0..=1, require_equals = true, default_value = "false",
        default_missing_value = "true", value_parser = parse_go_bool, action = ArgAction::Set)]
    insecure_skip_tls_verify: bool,

    /// Identify secure connections to the proxy using this TLS certificate file.
    #[arg(long, global = true, default_value = "")]
    cert_file: String,

    /// Identify secure connections to the proxy using this TLS key file.
    #[arg(long, global = true, default_value = "")]
    key_file: String,

    /// Verify certificates of TLS-enabled secure proxy using this CA bundle.
    #[arg(long, global = true, default_value = "")]
    trusted_ca_file: String,

    /// Comma-separated list of supported TLS cipher suites between client/proxy.
    #[arg(long, global = true, value_delimiter = ',')]
    listen_cipher_suites: Vec<String>,

    /// Proxy TLS using generated certificates.
    #[arg(long, global = true, num_args = 0..=1, require_equals = true, default_value = "false",
        default_missing_value = "true", value_parser = parse_go_bool, action = ArgAction::Set)]
    auto_tls: bool,

    /// Proxy client certificate revocation list file.
    #[arg(long, global = true, default_value = "")]
    client_crl_file: String,

    /// Ensure serializable reads have monotonically increasing store revisions across
    /// endpoints (not implemented).
    #[arg(long, global = true, num_args = 0..=1, require_equals = true, default_value = "false",
        default_missing_value = "true", value_parser = parse_go_bool, action = ArgAction::Set)]
    experimental_serializable_ordering: bool,

    /// Leasing metadata prefix for disconnected linearized reads (not implemented).
    #[arg(long, global = true, default_value = "")]
    experimental_leasing_prefix: String,

    /// Enable debug-level logging for grpc-proxy.
    #[arg(long, global = true, num_args = 0..=1, require_equals = true, default_value = "false",
        default_missing_value = "true", value_parser = parse_go_bool, action = ArgAction::Set)]
    pub debug: bool,

    /// Maximum concurrent streams that each client can open at a time.
    #[arg(long, global = true, default_value_t = u32::MAX)]
    max_concurrent_streams: u32,
}

#[derive(Subcommand, Debug)]
enum GrpcProxyCommand {
    /// Start the grpc proxy.
    Start,
}

/// Flags accepted for etcd's sake but not built: given, they are named in a warning.
const NOT_BUILT: [&str; 11] = [
    "discovery_srv_name",
    "insecure_discovery",
    "metrics_addr",
    "advertise_client_url",
    "resolver_prefix",
    "resolver_ttl",
    "enable_pprof",
    "max_send_bytes",
    "max_recv_bytes",
    "experimental_serializable_ordering",
    "experimental_leasing_prefix",
];

/// The parsed command line and the not-built flags it gave (as `--flag-name`).
pub struct Invocation {
    pub args: GrpcProxyArgs,
    pub ignored_flags: Vec<String>,
}

/// Parses `oxcd grpc-proxy ...` (`argv` without the program name).
pub fn parse<I, T>(argv: I) -> Result<Invocation, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let matches = GrpcProxyArgs::command().try_get_matches_from(argv)?;
    let given = |id: &str| {
        let sub = matches.subcommand_matches("start");
        [Some(&matches), sub]
            .into_iter()
            .flatten()
            .any(|m| m.value_source(id) == Some(ValueSource::CommandLine))
    };
    let ignored_flags = NOT_BUILT
        .iter()
        .filter(|id| given(id))
        .map(|id| format!("--{}", id.replace('_', "-")))
        .collect();
    let args = GrpcProxyArgs::from_arg_matches(&matches)?;
    Ok(Invocation {
        args,
        ignored_flags,
    })
}

/// Runs the proxy until the process is stopped; an error is what to print before exiting 1.
pub async fn run(invocation: Invocation) -> Result<(), String> {
    let Invocation {
        args,
        ignored_flags,
    } = invocation;
    let GrpcProxyCommand::Start = args.command;
    check_args(&args)?;
    for flag in &ignored_flags {
        tracing::warn!(flag = %flag, "flag not implemented by oxcd's grpc-proxy, ignored");
    }

    let listen_tls = listen_tls(&args)?;
    let acceptor = match &listen_tls {
        Some(info) => {
            tracing::info!(tls_info = ?info, "gRPC proxy server TLS");
            let config = info.server_config().map_err(|e| e.to_string())?;
            Some(TlsAcceptor::from(Arc::new(config)))
        }
        None => None,
    };
    let listener = TcpListener::bind(&args.listen_addr)
        .await
        .map_err(|e| format!("listen tcp {}: bind: {e}", args.listen_addr))?;
    tracing::info!(address = %args.listen_addr, "listening for gRPC proxy client requests");

    let connector = client_tls(&args)?;
    let endpoints = args
        .endpoints
        .iter()
        .map(|e| e.trim())
        .filter(|e| !e.is_empty())
        .map(|e| Endpoint::parse(e, connector.is_some()))
        .collect::<Result<Vec<_>, _>>()?;
    if endpoints.is_empty() {
        return Err("no endpoints given".into());
    }
    if endpoints.iter().any(|e| e.tls) && connector.is_none() {
        return Err(
            "https endpoints need --cacert (or --insecure-skip-tls-verify) to verify them".into(),
        );
    }
    let upstreams = Arc::new(Upstreams::new(endpoints, connector));
    tracing::info!(address = %args.listen_addr, endpoints = ?args.endpoints, "started gRPC proxy");

    loop {
        match listener.accept().await {
            Ok((conn, remote)) => {
                tokio::spawn(serve(
                    conn,
                    remote.to_string(),
                    acceptor.clone(),
                    upstreams.clone(),
                    args.max_concurrent_streams,
                ));
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// etcd's `checkArgs` (resolver flags go together), then the flags oxcd refuses.
fn check_args(args: &GrpcProxyArgs) -> Result<(), String> {
    if !args.resolver_prefix.is_empty() && args.resolver_ttl < 1 {
        return Err(format!("invalid resolver-ttl {}", args.resolver_ttl));
    }
    if args.resolver_prefix.is_empty() && args.resolver_ttl > 0 {
        return Err(format!(
            "invalid resolver-prefix {:?}",
            args.resolver_prefix
        ));
    }
    if !args.namespace.is_empty() {
        return Err("--namespace is not implemented by oxcd's grpc-proxy".into());
    }
    if !args.discovery_srv.is_empty() {
        return Err(
            "--discovery-srv: DNS discovery is not implemented by oxcd's grpc-proxy".into(),
        );
    }
    Ok(())
}

/// TLS for the proxy's own listener, as etcd's `newTLS` / `--auto-tls`: any of
/// `--cert-file`, `--key-file`, `--trusted-ca-file` turns it on; a trusted CA makes client
/// certificates required.
fn listen_tls(args: &GrpcProxyArgs) -> Result<Option<TlsInfo>, String> {
    let cipher_suites: Vec<String> = args
        .listen_cipher_suites
        .iter()
        .filter(|s| !s.is_empty())
        .cloned()
        .collect();
    for warning in tls::cipher_suites::validate(&cipher_suites)? {
        tracing::warn!("{warning}");
    }
    let optional = |s: &str| (!s.is_empty()).then(|| PathBuf::from(s));
    let mut info = if !args.cert_file.is_empty()
        || !args.key_file.is_empty()
        || !args.trusted_ca_file.is_empty()
    {
        TlsInfo {
            cert_file: PathBuf::from(&args.cert_file),
            key_file: PathBuf::from(&args.key_file),
            ..TlsInfo::new(Side::Client)
        }
    } else if args.auto_tls {
        let host = args
            .listen_addr
            .rsplit_once(':')
            .map_or(args.listen_addr.as_str(), |(host, _)| host);
        let dir = args.data_dir.join("fixtures").join("proxy");
        tls::self_cert(Side::Client, &dir, &[host.to_string()], 1).map_err(|e| e.to_string())?
    } else {
        if !cipher_suites.is_empty() {
            tracing::warn!(
                "--listen-cipher-suites has no effect: the proxy listens in plain text (no --cert-file or --auto-tls)"
            );
        }
        return Ok(None);
    };
    info.trusted_ca_file = optional(&args.trusted_ca_file);
    info.crl_file = optional(&args.client_crl_file);
    info.cipher_suites = cipher_suites;
    Ok(Some(info))
}

/// TLS for dialing the endpoints, when `--cert`, `--key`, `--cacert` or
/// `--insecure-skip-tls-verify` ask for it. As etcd, a client certificate must have an empty
/// Common Name.
fn client_tls(args: &GrpcProxyArgs) -> Result<Option<rustls::ClientConfig>, String> {
    let any_file = !args.cert.is_empty() || !args.key.is_empty() || !args.cacert.is_empty();
    if !any_file && !args.insecure_skip_tls_verify {
        return Ok(None);
    }
    let client_cert = match (args.cert.as_str(), args.key.as_str()) {
        ("", "") => None,
        (cert, key) => {
            let certs = tls::load_certs(cert.as_ref()).map_err(|e| e.to_string())?;
            if let Some(cn) = certs.first().and_then(tls::allowed::common_name) {
                if !cn.is_empty() {
                    return Err(format!("cert has non empty Common Name ({cn})"));
                }
            }
            Some((PathBuf::from(cert), PathBuf::from(key)))
        }
    };
    if args.insecure_skip_tls_verify {
        tracing::warn!("--insecure-skip-tls-verify was given, this grpc proxy process skips authentication of etcd server TLS certificates. This option should be enabled only for testing purposes.");
    }
    let ca = (!args.cacert.is_empty()).then(|| PathBuf::from(&args.cacert));
    if ca.is_none() && !args.insecure_skip_tls_verify {
        return Err(
            "--cacert is required to verify the endpoints' certificates (oxcd has no system roots)"
                .into(),
        );
    }
    let config = tls::dial_config(
        ca.as_deref(),
        client_cert
            .as_ref()
            .map(|(c, k)| (c.as_path(), k.as_path())),
        args.insecure_skip_tls_verify,
    )
    .map_err(|e| e.to_string())?;
    tracing::info!(cert = %args.cert, key = %args.key, cacert = %args.cacert, "gRPC proxy client TLS");
    Ok(Some(config))
}

/// One client connection: TLS if the listener has it, then HTTP/1 or HTTP/2 as the client
/// speaks, each request forwarded.
async fn serve(
    conn: TcpStream,
    remote: String,
    acceptor: Option<TlsAcceptor>,
    upstreams: Arc<Upstreams>,
    max_concurrent_streams: u32,
) {
    let _ = conn.set_nodelay(true);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http2()
        .max_concurrent_streams(max_concurrent_streams);
    let service = hyper::service::service_fn(move |req| forward::forward(upstreams.clone(), req));
    let served = match acceptor {
        None => builder.serve_connection(TokioIo::new(conn), service).await,
        Some(acceptor) => {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(conn)).await {
                Ok(Ok(tls)) => builder.serve_connection(TokioIo::new(tls), service).await,
                Ok(Err(e)) => {
                    tracing::warn!("remote-addr" = %remote, error = %tls::describe_error(&e), "rejected connection");
                    return;
                }
                Err(_) => {
                    tracing::warn!("remote-addr" = %remote, error = "TLS handshake timeout", "rejected connection");
                    return;
                }
            }
        }
    };
    if let Err(e) = served {
        tracing::debug!("remote-addr" = %remote, error = %e, "connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_before_or_after_start_and_ignored_ones_named() {
        let inv = parse([
            "grpc-proxy",
            "--endpoints=http://a:1,b:2",
            "start",
            "--metrics-addr=http://x:1",
            "--debug",
            "--max-recv-bytes",
            "5",
        ])
        .unwrap();
        assert_eq!(inv.args.endpoints, ["http://a:1", "b:2"]);
        assert_eq!(inv.args.listen_addr, "127.0.0.1:23790");
        assert!(inv.args.debug);
        assert_eq!(inv.ignored_flags, ["--metrics-addr", "--max-recv-bytes"]);
        let inv = parse(["grpc-proxy", "start", "--listen-cipher-suites", ""]).unwrap();
        assert!(inv.ignored_flags.is_empty());
        assert!(parse(["grpc-proxy"]).is_err());
    }

    #[test]
    fn resolver_flags_go_together_and_namespace_is_refused() {
        let check = |argv: &[&str]| check_args(&parse(argv).unwrap().args);
        assert_eq!(
            check(&["grpc-proxy", "start", "--resolver-prefix=p"]).unwrap_err(),
            "invalid resolver-ttl 0"
        );
        assert_eq!(
            check(&["grpc-proxy", "start", "--resolver-ttl=3"]).unwrap_err(),
            "invalid resolver-prefix \"\""
        );
        assert!(check(&["grpc-proxy", "start", "--namespace=x/"]).is_err());
        assert!(check(&["grpc-proxy", "start"]).is_ok());
    }
}
