//! Listeners for client and peer URLs: TCP or unix sockets (`unix://`, `unixs://`, whose
//! path is the URL's `host:port`, as etcd's), optionally wrapped in TLS, each connection
//! served by hyper with HTTP/1 and HTTP/2 on one port, so gRPC and HTTP share it as in etcd.
//!
//! Every connection is handshaken in its own task, so a client that stalls in its TLS
//! handshake holds up no one else (etcd's tlsListener does the same with goroutines).

use std::convert::Infallible;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio_rustls::TlsAcceptor;

use crate::coalesce::Coalesce;
use crate::config::{EtcdUrl, Scheme};
use crate::grpc::auth::ClientCommonName;

/// How long a client may take to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long to wait before accepting again after `accept` failed (say, out of descriptors).
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// A bound listener of either kind.
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

/// HTTP/2 settings for every connection of a listener.
#[derive(Clone, Copy, Debug)]
pub struct ServeOptions {
    /// Streams one connection may have open at once (`--max-concurrent-streams`).
    pub max_concurrent_streams: u32,
}

impl Default for ServeOptions {
    /// etcd's default: no limit (`math.MaxUint32`), where hyper alone would allow 200.
    fn default() -> Self {
        ServeOptions {
            max_concurrent_streams: u32::MAX,
        }
    }
}

/// Binds `url`'s address, with etcd's message when it cannot. A unix socket's file is
/// removed first if it exists, as etcd does.
pub async fn bind(url: &EtcdUrl) -> io::Result<Listener> {
    let bind_error =
        |e: io::Error| io::Error::new(e.kind(), format!("listen tcp {}: bind: {e}", url.authority));
    match url.scheme {
        Scheme::Unix | Scheme::Unixs => {
            let path = Path::new(&url.authority);
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(bind_error(e)),
            }
            UnixListener::bind(path).map(Listener::Unix).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("listen unix {}: bind: {e}", url.authority),
                )
            })
        }
        Scheme::Http | Scheme::Https => TcpListener::bind(&url.authority)
            .await
            .map(Listener::Tcp)
            .map_err(bind_error),
    }
}

/// Serves `service` on `listener`, in TLS when `tls` is given, until the process ends. Each
/// connection is its own task; its writes are gathered by [`Coalesce`].
pub fn spawn_serve<S>(
    listener: Listener,
    tls: Option<Arc<rustls::ServerConfig>>,
    service: S,
    opts: ServeOptions,
) where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let acceptor = tls.map(TlsAcceptor::from);
    tokio::spawn(async move {
        loop {
            let accepted = match &listener {
                Listener::Tcp(tcp) => tcp.accept().await.map(|(stream, addr)| {
                    // Without TCP_NODELAY, Nagle's algorithm holds small responses (watch
                    // events, unary answers) back by up to tens of milliseconds.
                    let _ = stream.set_nodelay(true);
                    let conn = handle(
                        stream,
                        addr.to_string(),
                        acceptor.clone(),
                        service.clone(),
                        opts,
                    );
                    tokio::spawn(conn);
                }),
                Listener::Unix(unix) => unix.accept().await.map(|(stream, _)| {
                    let conn = handle(
                        stream,
                        "unix".into(),
                        acceptor.clone(),
                        service.clone(),
                        opts,
                    );
                    tokio::spawn(conn);
                }),
            };
            if let Err(e) = accepted {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_RETRY).await;
            }
        }
    });
}

/// Handshakes (with TLS) and serves one connection.
async fn handle<I, S>(
    io: I,
    remote: String,
    acceptor: Option<TlsAcceptor>,
    service: S,
    opts: ServeOptions,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: tower::Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let Some(acceptor) = acceptor else {
        return serve_connection(io, service, opts, None).await;
    };
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(io)).await {
        Ok(Ok(tls)) => {
            // The verified client certificate's Common Name rides along with each request:
            // with --client-cert-auth it names the user when no token does.
            let common_name = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(|cert| crate::auth::cert::common_name(cert));
            serve_connection(tls, service, opts, common_name).await
        }
        Ok(Err(e)) => {
            tracing::warn!("remote-addr" = %remote, error = %crate::tls::describe_error(&e), "rejected connection")
        }
        Err(_) => {
            tracing::warn!("remote-addr" = %remote, error = "TLS handshake timeout", "rejected connection")
        }
    }
}

/// Serves HTTP/1 or HTTP/2 (as the client speaks) on one connection until it closes.
async fn serve_connection<I, S>(io: I, service: S, opts: ServeOptions, common_name: Option<String>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: tower::Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http2()
        .max_concurrent_streams(opts.max_concurrent_streams)
        .enable_connect_protocol();
    let service = TowerToHyperService::new(tower::ServiceExt::map_request(
        service,
        move |req: http::Request<hyper::body::Incoming>| {
            let mut req = req.map(Body::new);
            if common_name.is_some() {
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(ClientCommonName(
                        common_name.clone(),
                    )));
            }
            req
        },
    ));
    if let Err(e) = builder
        .serve_connection_with_upgrades(TokioIo::new(Coalesce::new(io)), service)
        .await
    {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}
