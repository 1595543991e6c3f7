//! HTTP beside gRPC, as etcd serves it.
//!
//! The client URLs answer gRPC and HTTP on one port: a request with a gRPC content type goes
//! to the gRPC services, anything else to the HTTP routes:
//!
//! | path | module |
//! |---|---|
//! | `/v3/...`, `/v3beta/...` | [`gateway`]: the JSON gateway, calling the gRPC services in-process |
//! | `/version` | this module |
//! | `/health`, `/livez`, `/readyz` | `health` |
//! | `/metrics` | [`metrics`], fed also by [`grpc_metrics`] and `process` |
//! | `/v2/...` | `v2`: etcd's v2 API, with `--enable-v2` |
//!
//! With `--listen-client-http-urls`, HTTP moves to those URLs and the client URLs serve gRPC
//! only; `--listen-metrics-urls` serve `/metrics` and the health endpoints;
//! `--enable-grpc-gateway=false` leaves the `/v3/` paths out. `access` applies `--cors` and
//! `--host-whitelist` to every HTTP request of the client listeners.

mod access;
pub mod families;
pub mod gateway;
pub mod grpc_metrics;
mod health;
pub mod metrics;
mod process;
mod v2;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{header, HeaderValue, StatusCode};
use http_body_util::BodyExt as _;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::config::{etcd_release, ServerConfig};
use crate::grpc::ClientGrpc;
use crate::server::EtcdServer;

/// A JSON gateway request may be this many times the gRPC receive limit: base64 makes bytes
/// 4/3 as long, and field names add their own.
const JSON_OVER_PROTO: usize = 2;

/// The HTTP services of one member, and the gRPC services they share a port with.
#[derive(Clone)]
pub struct HttpServices {
    server: Arc<EtcdServer>,
    /// The client gRPC services, counted by [`grpc_metrics`].
    grpc: grpc_metrics::Tracked<ClientGrpc>,
    /// The same as a router, for the gateway and the HTTP routes' fallback.
    grpc_router: axum::Router,
    metrics: PrometheusHandle,
    quota_bytes: Option<u64>,
    max_body: usize,
    /// `--max-concurrent-streams`: gateway calls open at once on one listener.
    max_streams: u32,
    /// `--enable-grpc-gateway`.
    gateway: bool,
    /// `--enable-v2`.
    v2: bool,
    /// `--cors`.
    cors: access::Allowed,
    /// `--host-whitelist`.
    hosts: access::Allowed,
}

impl HttpServices {
    /// `grpc` is the client gRPC services; `metrics` renders the process's recorder
    /// ([`metrics::install`]).
    pub fn new(
        server: Arc<EtcdServer>,
        grpc: ClientGrpc,
        metrics: PrometheusHandle,
        cfg: &ServerConfig,
    ) -> HttpServices {
        let grpc = grpc_metrics::layer(grpc, cfg.flags.metrics == "extensive");
        HttpServices {
            server,
            grpc_router: axum::Router::new().fallback_service(grpc.clone()),
            grpc,
            metrics,
            quota_bytes: cfg.quota_backend_bytes,
            max_body: cfg.max_recv_msg_size().saturating_mul(JSON_OVER_PROTO),
            max_streams: cfg.flags.max_concurrent_streams,
            gateway: cfg.flags.enable_grpc_gateway,
            v2: cfg.enable_v2,
            cors: access::Allowed::parse(&cfg.flags.cors),
            hosts: access::Allowed::parse(&cfg.flags.host_whitelist),
        }
    }

    /// gRPC and HTTP on one port: the client URLs' service. `secure`: the listener is TLS.
    pub fn client_service(&self, secure: bool) -> ClientService {
        ClientService {
            grpc: self.grpc.clone(),
            http: self.http_router(secure),
        }
    }

    /// gRPC only: the client URLs' service when `--listen-client-http-urls` takes HTTP away.
    pub fn grpc_service(&self) -> ClientService {
        ClientService {
            grpc: self.grpc.clone(),
            http: axum::Router::new().fallback_service(Steer { gateway: false }),
        }
    }

    /// HTTP only, for `--listen-client-http-urls`. `secure`: the listener is TLS.
    pub fn http_router(&self, secure: bool) -> axum::Router {
        self.access(secure)
            .wrap(self.http_routes().fallback_service(Steer {
                gateway: self.gateway,
            }))
    }

    fn access(&self, secure: bool) -> access::Access {
        access::Access {
            cors: self.cors.clone(),
            hosts: self.hosts.clone(),
            secure,
        }
    }

    /// `/metrics` and the health endpoints, for `--listen-metrics-urls`.
    pub fn metrics_router(&self) -> axum::Router {
        self.metrics_and_health()
            .fallback_service(Steer { gateway: false })
    }

    fn http_routes(&self) -> axum::Router {
        let mut routes = self
            .metrics_and_health()
            .route("/version", get(version).fallback(method_not_allowed));
        if self.v2 {
            routes = routes.merge(v2::routes(self.server.clone()));
        }
        if !self.gateway {
            return routes;
        }
        routes.merge(
            gateway::Gateway::new(self.grpc_router.clone(), self.max_body, self.max_streams)
                .router(),
        )
    }

    fn metrics_and_health(&self) -> axum::Router {
        let state = metrics::MetricsState {
            handle: self.metrics.clone(),
            server: self.server.clone(),
            quota_bytes: self.quota_bytes,
        };
        axum::Router::new()
            .route(
                "/metrics",
                get(move || metrics::scrape(state.clone())).fallback(method_not_allowed),
            )
            .merge(health::routes(self.server.clone()))
    }
}

/// A client URL's service: a request with a gRPC content type goes straight to the gRPC
/// services, past the HTTP routes and their access rules (which let gRPC through anyway);
/// anything else to `http`.
#[derive(Clone)]
pub struct ClientService {
    grpc: grpc_metrics::Tracked<ClientGrpc>,
    http: axum::Router,
}

impl tower::Service<Request> for ClientService {
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = futures::future::Either<
        <grpc_metrics::Tracked<ClientGrpc> as tower::Service<Request>>::Future,
        axum::routing::future::RouteFuture<std::convert::Infallible>,
    >;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        // Both are always ready: tonic's router and axum's.
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        use futures::future::Either;
        if is_grpc(&req) {
            Either::Left(self.grpc.call(req))
        } else {
            Either::Right(self.http.call(req))
        }
    }
}

/// What the routes do not match: not found, worded as Go's HTTP server words it.
#[derive(Clone)]
struct Steer {
    /// Whether `/v3/` is the gateway's (its misses are worded as the gateway words them).
    gateway: bool,
}

impl tower::Service<Request> for Steer {
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = futures::future::BoxFuture<'static, Result<Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let gateway = self.gateway;
        Box::pin(async move {
            let path = req.uri().path();
            let text = if gateway && (path.starts_with("/v3/") || path.starts_with("/v3beta/")) {
                "Not Found\n"
            } else {
                "404 page not found\n"
            };
            drain(req.into_body(), DRAIN_LIMIT).await;
            Ok(plain_text(StatusCode::NOT_FOUND, text))
        })
    }
}

fn is_grpc(req: &Request) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc"))
}

/// `GET /version`: the etcd server and cluster versions oxcd provides.
async fn version() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        format!(
            r#"{{"etcdserver":"{}","etcdcluster":"{}"}}"#,
            etcd_release().server_version(),
            etcd_release().cluster_version()
        ),
    )
        .into_response()
}

/// A method the path does not serve.
pub(crate) async fn method_not_allowed(body: Body) -> Response {
    drain(body, DRAIN_LIMIT).await;
    plain_text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n")
}

/// How much of a request body the server reads and drops before answering without it. A
/// connection closed with unread data in it is reset, and the client may lose the answer;
/// Go's server reads this much for the same reason.
const DRAIN_LIMIT: usize = 256 * 1024;

/// Reads and drops up to `limit` bytes of `body`.
pub(crate) async fn drain(mut body: Body, limit: usize) {
    let mut read = 0;
    while read <= limit {
        match body.frame().await {
            Some(Ok(frame)) => read += frame.data_ref().map_or(0, |d| d.len()),
            _ => return,
        }
    }
}

/// A plain-text answer as Go's `http.Error` writes one.
pub(crate) fn plain_text(status: StatusCode, text: &str) -> Response {
    (
        status,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        text.to_owned(),
    )
        .into_response()
}
