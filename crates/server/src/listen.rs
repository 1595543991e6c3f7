//! Listeners for client and peer URLs: TCP or unix sockets (`unix://`, `unixs://`, whose
//! path is the URL's `host:port`, as etcd's), optionally wrapped in TLS, each connection
//! served by hyper with HTTP/1 and HTTP/2 on one port, so gRPC and HTTP share it as in etcd.
//!
//! Every connection is handshaken in its own task, so a client that stalls in its TLS
//! handshake holds up no one else (etcd's tlsListener does the same with goroutines).
//!
//! An http:// and an https:// URL with the same `host:port` share one socket, as in etcd
//! (its cmux): each connection's first byte tells a TLS handshake record from plain text.

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
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio_rustls::TlsAcceptor;

use crate::coalesce::serve_coalesced;
use crate::config::{EtcdUrl, Scheme};
use crate::grpc::auth::ClientCommonName;
use crate::serve_threads;

/// How long a client may take to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long to wait before accepting again after `accept` failed (say, out of descriptors).
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// The certificates a TLS client presented (leaf first), verified by the handshake; in every
/// request's extensions, where v2 auth looks for a user named by any of them.
#[derive(Clone, Debug)]
pub struct ClientCertificates(pub Arc<[rustls::pki_types::CertificateDer<'static>]>);

/// The first byte of a TLS connection: a handshake record (RFC 8446, 5.1). Plain HTTP/1
/// starts with a method name, HTTP/2 with its `PRI` preface, so neither can be mistaken.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

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

/// The client URLs that share one socket: an http:// and an https:// URL with the same
/// `host:port` are served on one port, as etcd groups its client URLs by host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Port {
    /// Every URL served here, in the order given; the first one is bound.
    pub urls: Vec<EtcdUrl>,
}

impl Port {
    /// Groups `urls` by socket, keeping their order. Unix sockets are never shared: a unix
    /// stream cannot be peeked at.
    pub fn group(urls: &[EtcdUrl]) -> Vec<Port> {
        let mut ports: Vec<Port> = Vec::new();
        for url in urls {
            let tcp = matches!(url.scheme, Scheme::Http | Scheme::Https);
            match ports
                .iter_mut()
                .find(|p| tcp && p.urls[0].authority == url.authority && p.is_tcp())
            {
                Some(port) => port.urls.push(url.clone()),
                None => ports.push(Port {
                    urls: vec![url.clone()],
                }),
            }
        }
        ports
    }

    fn is_tcp(&self) -> bool {
        matches!(self.urls[0].scheme, Scheme::Http | Scheme::Https)
    }

    /// What this port speaks: plain text for http:// (and unix://) URLs, TLS for https://
    /// (and unixs://) ones when `tls` is configured, both when it has one of each.
    /// `service(secure)` builds the service for either side.
    pub fn protocols<S>(
        &self,
        tls: Option<Arc<rustls::ServerConfig>>,
        service: impl Fn(bool) -> S,
    ) -> Protocols<S> {
        let plain = self.urls.iter().any(|u| !u.scheme.is_tls());
        match tls.filter(|_| self.urls.iter().any(|u| u.scheme.is_tls())) {
            Some(config) if plain => Protocols::Both {
                plain: service(false),
                tls: service(true),
                acceptor: TlsAcceptor::from(config),
            },
            Some(config) => Protocols::Tls(TlsAcceptor::from(config), service(true)),
            None => Protocols::Plain(service(false)),
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

/// What a listener speaks, and the service behind each protocol.
#[derive(Clone)]
pub enum Protocols<S> {
    Plain(S),
    Tls(TlsAcceptor, S),
    /// Plain text and TLS on one TCP port, chosen per connection by its first byte.
    Both {
        plain: S,
        tls: S,
        acceptor: TlsAcceptor,
    },
}

impl<S> Protocols<S> {
    /// One protocol: TLS when `tls` is given, plain text otherwise.
    pub fn one(tls: Option<Arc<rustls::ServerConfig>>, service: S) -> Self {
        match tls {
            Some(config) => Protocols::Tls(TlsAcceptor::from(config), service),
            None => Protocols::Plain(service),
        }
    }

    /// Resolves `Both` for one TCP connection by peeking at its first byte (without reading
    /// it). A connection that closes before sending anything is served as plain text, which
    /// ends at once.
    async fn choose(self, stream: &TcpStream) -> Self {
        let Protocols::Both {
            plain,
            tls,
            acceptor,
        } = self
        else {
            return self;
        };
        let mut first = [0u8; 1];
        match stream.peek(&mut first).await {
            Ok(1) if first[0] == TLS_HANDSHAKE_RECORD => Protocols::Tls(acceptor, tls),
            _ => Protocols::Plain(plain),
        }
    }
}

/// Serves `service` on `listener`, in TLS when `tls` is given, until the process ends.
pub fn spawn_serve<S>(
    listener: Listener,
    tls: Option<Arc<rustls::ServerConfig>>,
    service: S,
    opts: ServeOptions,
) where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    spawn_serve_protocols(listener, Protocols::one(tls, service), opts)
}

/// Serves `protocols` on `listener` until the process ends. Each connection is its own task;
/// its writes are gathered by [`crate::coalesce::Coalesce`].
pub fn spawn_serve_protocols<S>(listener: Listener, protocols: Protocols<S>, opts: ServeOptions)
where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    tokio::spawn(async move {
        loop {
            // The socket moves to a serving thread's runtime (see `serve_threads`) as a std
            // socket, and is registered with that runtime's reactor there.
            let accepted = match &listener {
                Listener::Tcp(tcp) => tcp.accept().await.map(|(stream, addr)| {
                    // Without TCP_NODELAY, Nagle's algorithm holds small responses (watch
                    // events, unary answers) back by up to tens of milliseconds.
                    let _ = stream.set_nodelay(true);
                    let stream = match stream.into_std() {
                        Ok(stream) => stream,
                        Err(e) => return not_served(&addr.to_string(), &e),
                    };
                    let protocols = protocols.clone();
                    serve_threads::spawn(async move {
                        let stream = match TcpStream::from_std(stream) {
                            Ok(stream) => stream,
                            Err(e) => return not_served(&addr.to_string(), &e),
                        };
                        let protocols = protocols.choose(&stream).await;
                        handle(stream, addr.to_string(), protocols, opts).await
                    });
                }),
                Listener::Unix(unix) => unix.accept().await.map(|(stream, _)| {
                    let stream = match stream.into_std() {
                        Ok(stream) => stream,
                        Err(e) => return not_served("unix", &e),
                    };
                    let protocols = protocols.clone();
                    serve_threads::spawn(async move {
                        match UnixStream::from_std(stream) {
                            Ok(stream) => handle(stream, "unix".into(), protocols, opts).await,
                            Err(e) => not_served("unix", &e),
                        }
                    });
                }),
            };
            if let Err(e) = accepted {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_RETRY).await;
            }
        }
    });
}

fn not_served(remote: &str, e: &io::Error) {
    tracing::warn!("remote-addr" = %remote, error = %e, "cannot serve an accepted connection");
}

/// Handshakes (with TLS) and serves one connection. `Both` is only ever bound for TCP,
/// where it is resolved before this; were it to reach here, TLS is the safe choice.
async fn handle<I, S>(io: I, remote: String, protocols: Protocols<S>, opts: ServeOptions)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: tower::Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let (acceptor, service) = match protocols {
        Protocols::Plain(service) => return serve_connection(io, service, opts, None, None).await,
        Protocols::Tls(acceptor, service) => (acceptor, service),
        Protocols::Both { tls, acceptor, .. } => (acceptor, tls),
    };
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(io)).await {
        Ok(Ok(tls)) => {
            // The verified client certificate's Common Name rides along with each request:
            // with --client-cert-auth it names the user when no token does.
            let chain = tls.get_ref().1.peer_certificates();
            let common_name = chain
                .and_then(|chain| chain.first())
                .and_then(|cert| crate::auth::cert::common_name(cert));
            let chain = chain.map(|chain| ClientCertificates(chain.to_vec().into()));
            serve_connection(tls, service, opts, common_name, chain).await
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
async fn serve_connection<I, S>(
    io: I,
    service: S,
    opts: ServeOptions,
    common_name: Option<String>,
    certificates: Option<ClientCertificates>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: tower::Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // HTTP/1 header names as Go's net/http writes them (`X-Etcd-Index`), for clients that
    // match them case-sensitively.
    builder.http1().title_case_headers(true);
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
            if let Some(certificates) = &certificates {
                req.extensions_mut().insert(certificates.clone());
            }
            req
        },
    ));
    let served = serve_coalesced(io, |conn| {
        builder.serve_connection_with_upgrades(TokioIo::new(conn), service)
    })
    .await;
    if let Err(e) = served {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(list: &[&str]) -> Vec<EtcdUrl> {
        list.iter().map(|u| EtcdUrl::parse(u).unwrap()).collect()
    }

    #[test]
    fn http_and_https_on_one_address_share_a_port() {
        let ports = Port::group(&urls(&[
            "http://localhost:2379",
            "https://127.0.0.1:2379",
            "https://localhost:2379",
            "unix://localhost:2379",
            "unixs://localhost:2379",
        ]));
        let names: Vec<Vec<String>> = ports
            .iter()
            .map(|p| p.urls.iter().map(ToString::to_string).collect())
            .collect();
        assert_eq!(
            names,
            [
                vec!["http://localhost:2379", "https://localhost:2379"],
                vec!["https://127.0.0.1:2379"],
                vec!["unix://localhost:2379"],
                vec!["unixs://localhost:2379"],
            ]
        );
    }
}
