//! Listeners for client and peer URLs: TCP, optionally wrapped in TLS, served with axum
//! (HTTP/1 and HTTP/2 on one port, so gRPC and HTTP share it as in etcd).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::config::EtcdUrl;

/// Binds `url`'s address, with etcd's message when it cannot.
pub async fn bind(url: &EtcdUrl) -> io::Result<TcpListener> {
    TcpListener::bind(&url.authority)
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("listen tcp {}: bind: {e}", url.authority)))
}

/// A TCP listener whose connections are TLS, handshaken before they are handed to axum.
pub struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
}

impl TlsListener {
    pub fn new(tcp: TcpListener, config: Arc<rustls::ServerConfig>) -> TlsListener {
        TlsListener {
            tcp,
            acceptor: TlsAcceptor::from(config),
        }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (stream, addr) = match self.tcp.accept().await {
                Ok(conn) => {
                    let _ = conn.0.set_nodelay(true);
                    conn
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            // A client that never finishes its handshake must not hold up the others.
            match tokio::time::timeout(
                std::time::Duration::from_secs(10),
                self.acceptor.accept(stream),
            )
            .await
            {
                Ok(Ok(tls)) => return (tls, addr),
                Ok(Err(e)) => {
                    tracing::warn!("remote-addr" = %addr, error = %e, "rejected connection: TLS handshake failed")
                }
                Err(_) => {
                    tracing::warn!("remote-addr" = %addr, "rejected connection: TLS handshake timed out")
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// Serves `router` on `tcp`, in TLS when `tls` is given, until the process ends.
pub fn spawn_serve(tcp: TcpListener, tls: Option<Arc<rustls::ServerConfig>>, router: axum::Router) {
    tokio::spawn(async move {
        let result = match tls {
            Some(config) => axum::serve(TlsListener::new(tcp, config), router).await,
            // Without TCP_NODELAY, Nagle's algorithm holds small responses (watch events,
            // unary answers) back by up to tens of milliseconds.
            None => {
                use axum::serve::ListenerExt;
                axum::serve(
                    tcp.tap_io(|t| {
                        let _ = t.set_nodelay(true);
                    }),
                    router,
                )
                .await
            }
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "listener stopped");
        }
    });
}
