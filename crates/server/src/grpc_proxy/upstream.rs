//! The proxy's side towards the cluster: one HTTP/2 connection per endpoint, dialed when
//! first needed and again after it breaks, and a round-robin choice among the endpoints that
//! skips those that just refused a dial.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::{Authority, Scheme};
use http::{Request, Response};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// How long a dial may take, as etcd's proxy client (`DialTimeout`).
const DIAL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an endpoint that refused a dial is passed over before it is dialed again.
const REDIAL_DELAY: Duration = Duration::from_secs(1);
/// HTTP/2 pings on idle upstream connections, so a member that stops answering is noticed
/// and its connection dropped (the next request then goes to another endpoint).
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// Where one endpoint is and how to talk to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// `host:port`, also the `:authority` of forwarded requests.
    pub authority: Authority,
    /// Dial with TLS.
    pub tls: bool,
}

impl Endpoint {
    /// An endpoint as etcd's client takes it: `https://` means TLS, `http://` plain text, and
    /// no scheme means TLS when the proxy has client TLS settings.
    pub fn parse(text: &str, tls_configured: bool) -> Result<Endpoint, String> {
        let (tls, rest) = match text.split_once("://") {
            Some(("https", rest)) => (true, rest),
            Some(("http", rest)) => (false, rest),
            Some((scheme, _)) => {
                return Err(format!("unknown endpoint scheme {scheme:?} in {text:?}"))
            }
            None => (tls_configured, text),
        };
        let authority = rest
            .trim_end_matches('/')
            .parse::<Authority>()
            .map_err(|e| format!("invalid endpoint {text:?}: {e}"))?;
        if authority.port().is_none() {
            return Err(format!("invalid endpoint {text:?}: missing port"));
        }
        Ok(Endpoint { authority, tls })
    }

    fn scheme(&self) -> Scheme {
        if self.tls {
            Scheme::HTTPS
        } else {
            Scheme::HTTP
        }
    }
}

/// What is known of one endpoint's connection.
enum Conn {
    /// Not dialed yet, or the last connection closed.
    Idle,
    Ready(SendRequest<Incoming>),
    /// The last dial failed; not dialed again before this instant.
    Down(Instant),
}

struct Upstream {
    endpoint: Endpoint,
    /// A tokio mutex: it is held across the dial, so concurrent requests share one dial.
    conn: tokio::sync::Mutex<Conn>,
}

/// The endpoints and how to reach them.
pub struct Upstreams {
    list: Vec<Upstream>,
    next: AtomicUsize,
    /// TLS offering `h2`, for the forwarded calls.
    tls: Option<TlsConnector>,
    /// TLS offering `http/1.1`, for `/metrics` and `/health`.
    tls_http1: Option<TlsConnector>,
}

/// A connection to forward one request on.
pub struct Picked {
    pub sender: SendRequest<Incoming>,
    pub scheme: Scheme,
    pub authority: Authority,
    pub(super) index: usize,
}

impl Upstreams {
    /// `tls`: how to dial the endpoints that use TLS (its ALPN is set here).
    pub fn new(endpoints: Vec<Endpoint>, tls: Option<rustls::ClientConfig>) -> Upstreams {
        let connector = |alpn: &[u8]| {
            tls.clone().map(|mut config| {
                config.alpn_protocols = vec![alpn.to_vec()];
                TlsConnector::from(Arc::new(config))
            })
        };
        Upstreams {
            list: endpoints
                .into_iter()
                .map(|endpoint| Upstream {
                    endpoint,
                    conn: tokio::sync::Mutex::new(Conn::Idle),
                })
                .collect(),
            next: AtomicUsize::new(0),
            tls: connector(b"h2"),
            tls_http1: connector(b"http/1.1"),
        }
    }

    /// `GET path` over HTTP/1 on a connection of its own, from the endpoints round robin
    /// until one answers (the proxy's `/metrics` and `/health` are the members').
    pub async fn http1_get(&self, path: &str) -> Result<Response<Incoming>, String> {
        let n = self.list.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut last_error = String::from("no endpoint");
        for i in 0..n {
            let endpoint = &self.list[(start + i) % n].endpoint;
            match http1_get(endpoint, self.tls_http1.as_ref(), path).await {
                Ok(response) => return Ok(response),
                Err(e) => last_error = e,
            }
        }
        Err(last_error)
    }

    /// A ready connection, trying the endpoints round robin from the next one; endpoints whose
    /// last dial failed a moment ago are tried last. `skip` lists endpoints already tried for
    /// this request. Returns the last dial error when none can be reached.
    pub async fn pick(&self, skip: &[usize]) -> Result<Picked, String> {
        let n = self.list.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let order = (0..n)
            .map(|i| (start + i) % n)
            .filter(|i| !skip.contains(i));
        let mut deferred = Vec::new();
        let mut last_error = String::from("no endpoint left to try");
        for index in order {
            match self.connect(index, false).await {
                Ok(Some(picked)) => return Ok(picked),
                Ok(None) => deferred.push(index),
                Err(e) => last_error = e,
            }
        }
        for index in deferred {
            match self.connect(index, true).await {
                Ok(Some(picked)) => return Ok(picked),
                Ok(None) => {}
                Err(e) => last_error = e,
            }
        }
        Err(last_error)
    }

    /// Forgets a connection that failed to take a request, so the next pick dials again.
    pub async fn broken(&self, picked: &Picked) {
        let mut conn = self.list[picked.index].conn.lock().await;
        if matches!(&*conn, Conn::Ready(s) if s.is_closed()) {
            *conn = Conn::Idle;
        }
    }

    /// The endpoint's connection, dialed if needed; `None` when it is resting after a failed
    /// dial and `even_if_down` is false.
    async fn connect(&self, index: usize, even_if_down: bool) -> Result<Option<Picked>, String> {
        let upstream = &self.list[index];
        let mut conn = upstream.conn.lock().await;
        let sender = match &*conn {
            Conn::Ready(sender) if !sender.is_closed() => sender.clone(),
            Conn::Down(until) if !even_if_down && Instant::now() < *until => return Ok(None),
            _ => match self.dial(&upstream.endpoint).await {
                Ok(sender) => {
                    *conn = Conn::Ready(sender.clone());
                    sender
                }
                Err(e) => {
                    tracing::warn!(address = %upstream.endpoint.authority, error = %e, "failed to dial endpoint");
                    *conn = Conn::Down(Instant::now() + REDIAL_DELAY);
                    return Err(e);
                }
            },
        };
        Ok(Some(Picked {
            sender,
            scheme: upstream.endpoint.scheme(),
            authority: upstream.endpoint.authority.clone(),
            index,
        }))
    }

    async fn dial(&self, endpoint: &Endpoint) -> Result<SendRequest<Incoming>, String> {
        handshake(connect(endpoint, self.tls.as_ref()).await?).await
    }
}

/// A byte stream to an endpoint, plain or TLS.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Dials `endpoint`, with TLS through `connector` when the endpoint uses it.
async fn connect(
    endpoint: &Endpoint,
    connector: Option<&TlsConnector>,
) -> Result<Box<dyn Io>, String> {
    let address = endpoint.authority.as_str();
    let tcp = tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(address))
        .await
        .map_err(|_| format!("dial tcp {address}: i/o timeout"))?
        .map_err(|e| format!("dial tcp {address}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    if !endpoint.tls {
        return Ok(Box::new(tcp));
    }
    let connector = connector.ok_or_else(|| {
        format!("{address}: an https endpoint needs --cacert (or --insecure-skip-tls-verify)")
    })?;
    let name = ServerName::try_from(endpoint.authority.host().to_string())
        .map_err(|e| format!("{address}: {e}"))?;
    let tls = tokio::time::timeout(DIAL_TIMEOUT, connector.connect(name, tcp))
        .await
        .map_err(|_| format!("{address}: TLS handshake timeout"))?
        .map_err(|e| format!("{address}: {}", crate::tls::describe_error(&e)))?;
    Ok(Box::new(tls))
}

/// One `GET path` over HTTP/1 to `endpoint`.
async fn http1_get(
    endpoint: &Endpoint,
    connector: Option<&TlsConnector>,
    path: &str,
) -> Result<Response<Incoming>, String> {
    let io = connect(endpoint, connector).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| format!("{}: {e}", endpoint.authority))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let request = Request::get(path)
        .header(http::header::HOST, endpoint.authority.as_str())
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    tokio::time::timeout(DIAL_TIMEOUT, sender.send_request(request))
        .await
        .map_err(|_| format!("{}: GET {path}: timeout", endpoint.authority))?
        .map_err(|e| format!("{}: GET {path}: {e}", endpoint.authority))
}

/// The HTTP/2 handshake on a dialed stream; the connection is driven by a task of its own.
async fn handshake<S>(io: S) -> Result<SendRequest<Incoming>, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .adaptive_window(true)
        .handshake(TokioIo::new(io))
        .await
        .map_err(|e| format!("HTTP/2 handshake: {e}"))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "upstream connection ended");
        }
    });
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_schemes() {
        let plain = Endpoint::parse("http://127.0.0.1:2379", true).unwrap();
        assert!(!plain.tls);
        assert_eq!(plain.authority.as_str(), "127.0.0.1:2379");
        assert!(
            Endpoint::parse("https://localhost:2379/", false)
                .unwrap()
                .tls
        );
        assert!(Endpoint::parse("127.0.0.1:2379", true).unwrap().tls);
        assert!(!Endpoint::parse("127.0.0.1:2379", false).unwrap().tls);
        assert!(Endpoint::parse("127.0.0.1", false).is_err());
        assert!(Endpoint::parse("ftp://h:1", false).is_err());
    }

    #[tokio::test]
    async fn unreachable_endpoints_report_the_dial_error() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let endpoint = Endpoint::parse(&format!("127.0.0.1:{port}"), false).unwrap();
        let upstreams = Upstreams::new(vec![endpoint], None);
        let err = upstreams.pick(&[]).await.err().unwrap();
        assert!(
            err.starts_with(&format!("dial tcp 127.0.0.1:{port}")),
            "{err}"
        );
        // Resting after the failed dial, it is still tried when nothing else is left.
        assert!(upstreams.pick(&[]).await.is_err());
        assert!(upstreams.pick(&[0]).await.is_err());
    }
}
