//! Endpoints, channels, the auth token, and the retry rules every request goes through.
//!
//! A [`Connection`] holds one lazily connected gRPC channel per endpoint and a cursor on the
//! one in use. Each request runs through [`Connection::unary`]:
//!
//! - an endpoint that cannot be reached (the request was never sent) moves the cursor to the
//!   next endpoint and the request is retried, whatever it is, until `retry_timeout` runs out;
//! - a request that reached a member which then failed (`Unavailable`, or the connection
//!   closing under it: killed member, lost leader) moves the cursor too, and is retried only if it is safe to repeat
//!   ([`Retry::Safe`]: reads and other requests with no effect); a write is not, as etcd's
//!   Go client does, because it may have been applied;
//! - `etcdserver: invalid auth token` (the member restarted, or the token expired) makes the
//!   client authenticate again with its user and password and retry once.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use oxcd_api::etcdserverpb::auth_client::AuthClient;
use oxcd_api::etcdserverpb::AuthenticateRequest;
use oxcd_api::EtcdError;
use tonic::metadata::AsciiMetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use crate::error::{Error, Result};
use crate::tls::TlsOptions;

/// The metadata key etcd reads the auth token from.
const TOKEN_KEY: &str = "token";

/// Pause between two rounds over every endpoint, so that a cluster that is restarting is
/// not hammered.
const ROUND_BACKOFF: Duration = Duration::from_millis(100);

/// A channel that adds the auth token to every request.
pub(crate) type Svc = InterceptedService<Channel, TokenInterceptor>;

/// Whether a request may be sent again after it possibly reached a member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Reads, and requests whose repetition changes nothing.
    Safe,
    /// Writes: retried only when they were certainly not sent.
    Unsafe,
}

/// How to connect: timeouts, TLS, credentials.
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    pub(crate) dial_timeout: Duration,
    pub(crate) keep_alive: Option<(Duration, Duration)>,
    pub(crate) retry_timeout: Duration,
    pub(crate) tls: Option<TlsOptions>,
    pub(crate) user: Option<(String, String)>,
}

impl Default for ConnectOptions {
    fn default() -> ConnectOptions {
        ConnectOptions {
            dial_timeout: Duration::from_secs(2),
            keep_alive: None,
            retry_timeout: Duration::from_secs(5),
            tls: None,
            user: None,
        }
    }
}

impl ConnectOptions {
    /// Options with etcd's client defaults: 2 s to connect, requests retried for 5 s while
    /// no endpoint answers, no TLS, no credentials.
    pub fn new() -> ConnectOptions {
        ConnectOptions::default()
    }

    /// How long one connection attempt to one endpoint may take.
    pub fn with_dial_timeout(mut self, timeout: Duration) -> ConnectOptions {
        self.dial_timeout = timeout;
        self
    }

    /// HTTP/2 keep-alive pings every `interval`; the connection is dropped when one is not
    /// answered within `timeout`.
    pub fn with_keep_alive(mut self, interval: Duration, timeout: Duration) -> ConnectOptions {
        self.keep_alive = Some((interval, timeout));
        self
    }

    /// How long a request is retried over the endpoints while none can take it.
    pub fn with_retry_timeout(mut self, timeout: Duration) -> ConnectOptions {
        self.retry_timeout = timeout;
        self
    }

    /// Connect with TLS (endpoints without a scheme become `https://`).
    pub fn with_tls(mut self, tls: TlsOptions) -> ConnectOptions {
        self.tls = Some(tls);
        self
    }

    /// Authenticate as `user`; the token is sent with every request and renewed when the
    /// server no longer accepts it.
    pub fn with_user(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.user = Some((user.into(), password.into()));
        self
    }
}

/// Adds the current auth token, if any, to each request.
#[derive(Clone, Debug, Default)]
pub(crate) struct TokenInterceptor {
    token: Arc<RwLock<Option<AsciiMetadataValue>>>,
}

impl Interceptor for TokenInterceptor {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> std::result::Result<tonic::Request<()>, Status> {
        let token = self.token.read().expect("token lock").clone();
        if let Some(token) = token {
            request.metadata_mut().insert(TOKEN_KEY, token);
        }
        Ok(request)
    }
}

/// One endpoint as given and its channel.
#[derive(Clone, Debug)]
struct Member {
    endpoint: String,
    channel: Channel,
}

/// Every endpoint's channel, the one in use, and the auth state.
#[derive(Debug)]
pub(crate) struct Connection {
    members: Vec<Member>,
    /// Index into `members` of the endpoint requests go to.
    current: AtomicUsize,
    token: TokenInterceptor,
    user: Option<(String, String)>,
    retry_timeout: Duration,
}

impl Connection {
    /// Prepares a channel per endpoint (connected on first use) and, with credentials,
    /// authenticates.
    pub(crate) async fn open(endpoints: &[String], options: ConnectOptions) -> Result<Connection> {
        if endpoints.is_empty() {
            return Err(Error::NoEndpoints);
        }
        let tls = match &options.tls {
            Some(tls) => Some(tls.to_tonic()?),
            None => None,
        };
        let mut members = Vec::with_capacity(endpoints.len());
        for endpoint in endpoints {
            let url = endpoint_url(endpoint, options.tls.is_some());
            let invalid = |reason: String| Error::InvalidEndpoint {
                endpoint: endpoint.clone(),
                reason,
            };
            let mut builder = Endpoint::from_shared(url.clone())
                .map_err(|e| invalid(e.to_string()))?
                .connect_timeout(options.dial_timeout)
                .tcp_nodelay(true);
            if let Some((interval, timeout)) = options.keep_alive {
                builder = builder
                    .http2_keep_alive_interval(interval)
                    .keep_alive_timeout(timeout)
                    .keep_alive_while_idle(true);
            }
            if url.starts_with("https://") {
                let (config, verifier) = match &tls {
                    Some(tls) => tls.clone(),
                    None => TlsOptions::new().to_tonic()?,
                };
                builder = match verifier {
                    Some(verifier) => builder.tls_config_with_verifier(config, verifier),
                    None => builder.tls_config(config),
                }
                .map_err(|e| invalid(e.to_string()))?;
            }
            members.push(Member {
                endpoint: endpoint.clone(),
                channel: builder.connect_lazy(),
            });
        }
        let connection = Connection {
            members,
            current: AtomicUsize::new(0),
            token: TokenInterceptor::default(),
            user: options.user,
            retry_timeout: options.retry_timeout,
        };
        if connection.user.is_some() {
            connection.authenticate().await?;
        }
        Ok(connection)
    }

    /// The endpoints, as given.
    pub(crate) fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.endpoint.clone()).collect()
    }

    /// The endpoint requests go to now.
    pub(crate) fn current_endpoint(&self) -> String {
        self.members[self.current.load(Ordering::Relaxed)]
            .endpoint
            .clone()
    }

    /// The channel of the endpoint in use, with the token interceptor.
    pub(crate) fn service(&self) -> (usize, Svc) {
        let index = self.current.load(Ordering::Relaxed) % self.members.len();
        let channel = self.members[index].channel.clone();
        (index, InterceptedService::new(channel, self.token.clone()))
    }

    /// A service on one named endpoint only (maintenance requests aimed at one member).
    pub(crate) fn service_for(&self, endpoint: &str) -> Option<Svc> {
        let member = self.members.iter().find(|m| m.endpoint == endpoint)?;
        Some(InterceptedService::new(
            member.channel.clone(),
            self.token.clone(),
        ))
    }

    /// Moves to the endpoint after `failed`, unless another request already moved on.
    pub(crate) fn fail_over(&self, failed: usize) {
        let next = (failed + 1) % self.members.len();
        let _ = self
            .current
            .compare_exchange(failed, next, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Asks the member in use for a token with the configured user and password.
    async fn authenticate(&self) -> Result<()> {
        let Some((name, password)) = self.user.clone() else {
            return Ok(());
        };
        let request = AuthenticateRequest { name, password };
        let deadline = Instant::now() + self.retry_timeout;
        loop {
            let (index, _) = self.service();
            let channel = self.members[index].channel.clone();
            match AuthClient::new(channel).authenticate(request.clone()).await {
                Ok(response) => {
                    let token = AsciiMetadataValue::try_from(response.into_inner().token)
                        .map_err(|e| Error::Status(Status::internal(e.to_string())))?;
                    *self.token.token.write().expect("token lock") = Some(token);
                    return Ok(());
                }
                Err(status) if member_failed(&status) && Instant::now() < deadline => {
                    self.fail_over(index);
                    tokio::time::sleep(ROUND_BACKOFF).await;
                }
                Err(status) => return Err(status.into()),
            }
        }
    }

    /// Runs one unary request with the rules of the module doc. `call` builds and sends the
    /// request on the service it is given; it may be called more than once.
    pub(crate) async fn unary<T, F, Fut>(&self, retry: Retry, mut call: F) -> Result<T>
    where
        F: FnMut(Svc) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<T>, Status>>,
    {
        let deadline = Instant::now() + self.retry_timeout;
        let mut reauthenticated = false;
        let mut tried = 0;
        loop {
            let (index, service) = self.service();
            let status = match call(service).await {
                Ok(response) => return Ok(response.into_inner()),
                Err(status) => status,
            };
            if is_invalid_token(&status) && self.user.is_some() && !reauthenticated {
                reauthenticated = true;
                self.authenticate().await?;
                continue;
            }
            if !member_failed(&status) {
                return Err(status.into());
            }
            self.fail_over(index);
            let repeatable = retry == Retry::Safe || never_sent(&status);
            if !repeatable || Instant::now() >= deadline {
                return Err(status.into());
            }
            tried += 1;
            if tried % self.members.len() == 0 {
                tokio::time::sleep(ROUND_BACKOFF).await;
            }
        }
    }
}

/// `host:port` becomes `http://host:port` (or `https://` with TLS); URLs stay as given.
fn endpoint_url(endpoint: &str, tls: bool) -> String {
    if endpoint.contains("://") {
        endpoint.to_owned()
    } else if tls {
        format!("https://{endpoint}")
    } else {
        format!("http://{endpoint}")
    }
}

fn is_invalid_token(status: &Status) -> bool {
    EtcdError::from_message(status.message()) == Some(EtcdError::InvalidAuthToken)
}

/// True when the status says the connection could not be made, so the request never left.
/// Whether the member failed under the request: `Unavailable`, or the connection failing
/// while the request was in flight, which tonic reports as `Cancelled` or `Unknown` with the
/// transport error as its source (grpc-go reports all of these as `Unavailable`). A status
/// the server sent has no such source and is returned as it is.
fn member_failed(status: &Status) -> bool {
    status.code() == Code::Unavailable || has_source::<tonic::transport::Error>(status)
}

fn never_sent(status: &Status) -> bool {
    has_source::<tonic::ConnectError>(status)
}

fn has_source<E: std::error::Error + 'static>(status: &Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(err) = source {
        if err.is::<E>() {
            return true;
        }
        source = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_get_a_scheme() {
        assert_eq!(
            endpoint_url("127.0.0.1:2379", false),
            "http://127.0.0.1:2379"
        );
        assert_eq!(
            endpoint_url("127.0.0.1:2379", true),
            "https://127.0.0.1:2379"
        );
        assert_eq!(endpoint_url("https://a:1", false), "https://a:1");
    }
}
