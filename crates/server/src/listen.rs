//! Listeners for client and peer URLs: TCP, optionally wrapped in TLS, each connection served
//! by hyper (HTTP/1 and HTTP/2 on one port, so gRPC and HTTP share it as in etcd).

use std::convert::Infallible;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::coalesce::Coalesce;
use crate::config::EtcdUrl;

/// How long a client may take to finish its TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Binds `url`'s address, with etcd's message when it cannot.
pub async fn bind(url: &EtcdUrl) -> io::Result<TcpListener> {
    TcpListener::bind(&url.authority)
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("listen tcp {}: bind: {e}", url.authority)))
}

/// Serves `service` on `tcp`, in TLS when `tls` is given, until the process ends. Each
/// connection is its own task; its writes are gathered by [`Coalesce`].
pub fn spawn_serve<S>(tcp: TcpListener, tls: Option<Arc<rustls::ServerConfig>>, service: S)
where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let acceptor = tls.map(TlsAcceptor::from);
    tokio::spawn(async move {
        loop {
            let (stream, addr) = match tcp.accept().await {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            // Without TCP_NODELAY, Nagle's algorithm holds small responses (watch events,
            // unary answers) back by up to tens of milliseconds.
            let _ = stream.set_nodelay(true);
            let service = service.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                match acceptor {
                    None => serve_connection(stream, service).await,
                    Some(acceptor) => {
                        // A client that never finishes its handshake holds up only itself.
                        match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream))
                            .await
                        {
                            Ok(Ok(tls)) => serve_connection(tls, service).await,
                            Ok(Err(e)) => {
                                tracing::warn!("remote-addr" = %addr, error = %e, "rejected connection: TLS handshake failed")
                            }
                            Err(_) => {
                                tracing::warn!("remote-addr" = %addr, "rejected connection: TLS handshake timed out")
                            }
                        }
                    }
                }
            });
        }
    });
}

/// Serves HTTP/1 or HTTP/2 (as the client speaks) on one connection until it closes.
async fn serve_connection<T, S>(io: T, service: S)
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: tower::Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let service = TowerToHyperService::new(tower::ServiceExt::map_request(
        service,
        |req: http::Request<hyper::body::Incoming>| req.map(Body::new),
    ));
    let io = TokioIo::new(Coalesce::new(io));
    if let Err(e) = Builder::new(TokioExecutor::new())
        .serve_connection_with_upgrades(io, service)
        .await
    {
        tracing::trace!(error = %e, "connection ended");
    }
}
