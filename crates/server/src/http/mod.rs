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
//!
//! With `--listen-client-http-urls`, HTTP moves to those URLs and the client URLs serve gRPC
//! only; `--listen-metrics-urls` serve `/metrics` and the health endpoints;
//! `--enable-grpc-gateway=false` leaves the `/v3/` paths out. `access` applies `--cors` and
//! `--host-whitelist` to every HTTP request of the client listeners.

mod access;
pub mod gateway;
pub mod grpc_metrics;
mod health;
pub mod metrics;
mod process;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{header, HeaderValue, StatusCode};
use http_body_util::BodyExt as _;
use metrics_exporter_prometheus::PrometheusHandle;
use tower::ServiceExt as _;

use crate::config::{ServerConfig, ETCD_CLUSTER_VERSION, ETCD_VERSION};
use crate::server::EtcdServer;

/// A JSON gateway request may be this many times the gRPC receive limit: base64 makes bytes
/// 4/3 as long, and field names add their own.
const JSON_OVER_PROTO: usize = 2;

/// The HTTP services of one member, and the gRPC router they share a port with.
#[derive(Clone)]
pub struct HttpServices {
    server: Arc<EtcdServer>,
    /// The client gRPC services, counted by [`grpc_metrics`].
    grpc: axum::Router,
    metrics: PrometheusHandle,
    quota_bytes: Option<u64>,
    max_body: usize,
    /// `--max-concurrent-streams`: gateway calls open at once on one listener.
    max_streams: u32,
    /// `--enable-grpc-gateway`.
    gateway: bool,
    /// `--cors`.
    cors: access::Allowed,
    /// `--host-whitelist`.
    hosts: access::Allowed,
}

impl HttpServices {
    /// `grpc` is the router of the client gRPC services; `metrics` renders the process's
    /// recorder ([`metrics::install`]).
    pub fn new(
        server: Arc<EtcdServer>,
        grpc: axum::Router,
        metrics: PrometheusHandle,
        cfg: &ServerConfig,
    ) -> HttpServices {
        HttpServices {
            server,
            grpc: grpc_metrics::layer(grpc),
            metrics,
            quota_bytes: cfg.quota_backend_bytes,
            max_body: cfg.max_recv_msg_size().saturating_mul(JSON_OVER_PROTO),
            max_streams: cfg.flags.max_concurrent_streams,
            gateway: cfg.flags.enable_grpc_gateway,
            cors: access::Allowed::parse(&cfg.flags.cors),
            hosts: access::Allowed::parse(&cfg.flags.host_whitelist),
        }
    }

    /// gRPC and HTTP on one port: the client URLs' router. `secure`: the listener is TLS.
    pub fn client_router(&self, secure: bool) -> axum::Router {
        self.access(secure)
            .wrap(self.http_routes().fallback_service(Steer {
                grpc: Some(self.grpc.clone()),
                gateway: self.gateway,
            }))
    }

    /// gRPC only: the client URLs' router when `--listen-client-http-urls` takes HTTP away.
    pub fn grpc_router(&self) -> axum::Router {
        axum::Router::new().fallback_service(Steer {
            grpc: Some(self.grpc.clone()),
            gateway: false,
        })
    }

    /// HTTP only, for `--listen-client-http-urls`. `secure`: the listener is TLS.
    pub fn http_router(&self, secure: bool) -> axum::Router {
        self.access(secure)
            .wrap(self.http_routes().fallback_service(Steer {
                grpc: None,
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
        self.metrics_and_health().fallback_service(Steer {
            grpc: None,
            gateway: false,
        })
    }

    fn http_routes(&self) -> axum::Router {
        let routes = self
            .metrics_and_health()
            .route("/version", get(version).fallback(method_not_allowed));
        if !self.gateway {
            return routes;
        }
        routes.merge(
            gateway::Gateway::new(self.grpc.clone(), self.max_body, self.max_streams).router(),
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

/// What the routes do not match: gRPC calls go to the gRPC services (when this port serves
/// them), anything else is not found, worded as Go's HTTP server words it.
#[derive(Clone)]
struct Steer {
    grpc: Option<axum::Router>,
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
        let grpc = self.grpc.clone().filter(|_| is_grpc(&req));
        let gateway = self.gateway;
        Box::pin(async move {
            if let Some(grpc) = grpc {
                return grpc.oneshot(req).await;
            }
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
        format!(r#"{{"etcdserver":"{ETCD_VERSION}","etcdcluster":"{ETCD_CLUSTER_VERSION}"}}"#),
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
