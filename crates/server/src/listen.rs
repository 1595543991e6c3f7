//! Listeners for client and peer URLs: TCP, optionally wrapped in TLS, served with axum
//! (HTTP/1 and HTTP/2 on one port, so gRPC and HTTP share it as in etcd).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::config::EtcdUrl;
use crate::grpc::auth::ClientCommonName;

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

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TlsListener>>
    for ClientCommonName
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, TlsListener>) -> ClientCommonName {
        let (_, conn) = stream.io().get_ref();
        ClientCommonName(
            conn.peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(|cert| crate::auth::cert::common_name(cert)),
        )
    }
}

/// Serves `router` on `tcp`, in TLS when `tls` is given, until the process ends.
pub fn spawn_serve(tcp: TcpListener, tls: Option<Arc<rustls::ServerConfig>>, router: axum::Router) {
    tokio::spawn(async move {
        let result = match tls {
            // The verified client certificate's Common Name rides along with each request:
            // with --client-cert-auth it names the user when no token does.
            Some(config) => {
                axum::serve(
                    TlsListener::new(tcp, config),
                    router.into_make_service_with_connect_info::<ClientCommonName>(),
                )
                .await
            }
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
