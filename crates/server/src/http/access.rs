//! Who may use the HTTP side, as etcd's access controller decides it, before any route runs:
//!
//! - `--host-whitelist`: on a plain (non-TLS) listener, a request whose `Host` names a host
//!   not listed is refused with 421, against DNS-rebinding attacks. `*` (the default) or an
//!   empty list allows any host; TLS listeners are not checked.
//! - `--cors`: which browser origins get CORS headers. `*` (the default) or an empty list
//!   answers every request with `Access-Control-Allow-Origin: *`; otherwise a request whose
//!   `Origin` is listed gets its origin echoed back, others get no CORS headers.
//! - `OPTIONS` (a CORS preflight) is answered 200 at once, on any path.
//! - An unclean path is redirected ([`super::clean_path`]), as etcd's Go mux does after its
//!   access controller.
//!
//! gRPC requests pass untouched.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, Method, StatusCode};

/// A list of allowed names (origins or hosts), as etcd reads `--cors` and `--host-whitelist`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Allowed {
    /// `*`, or nothing listed.
    Any,
    Only(BTreeSet<String>),
}

impl Allowed {
    /// Parses a comma-separated flag value.
    pub fn parse(list: &str) -> Allowed {
        let names: BTreeSet<String> = list
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_owned)
            .collect();
        if names.is_empty() || names.contains("*") {
            Allowed::Any
        } else {
            Allowed::Only(names)
        }
    }

    fn allows(&self, name: &str) -> bool {
        match self {
            Allowed::Any => true,
            Allowed::Only(names) => names.contains(name),
        }
    }
}

/// The access rules of one listener.
#[derive(Clone, Debug)]
pub struct Access {
    pub cors: Allowed,
    pub hosts: Allowed,
    /// Whether the listener is TLS (then hosts are not checked).
    pub secure: bool,
}

impl Access {
    /// Wraps `router` in these rules.
    pub fn wrap(self, router: axum::Router) -> axum::Router {
        let access = Arc::new(self);
        router.layer(axum::middleware::from_fn(
            move |req: Request, next: Next| {
                let access = access.clone();
                async move { access.check(req, next).await }
            },
        ))
    }

    async fn check(&self, req: Request, next: Next) -> Response {
        if super::is_grpc(&req) {
            return next.run(req).await;
        }
        if !self.secure {
            let host = hostname(&req);
            if !self.hosts.allows(&host) {
                tracing::warn!(
                    host = host.as_str(),
                    "rejecting HTTP request to prevent DNS rebinding attacks"
                );
                return super::plain_text(
                    StatusCode::MISDIRECTED_REQUEST,
                    &format!(
                        "oxcd received this request, but its Host header ({host:?}) is not \
                         allowed.\nServe clients over TLS, or add the host name to \
                         --host-whitelist.\nThis check guards against DNS rebinding attacks \
                         (CVE-2018-5702).\n"
                    ),
                );
            }
        }
        let origin = match &self.cors {
            Allowed::Any => Some(HeaderValue::from_static("*")),
            Allowed::Only(_) => req
                .headers()
                .get(header::ORIGIN)
                .filter(|o| o.to_str().is_ok_and(|o| self.cors.allows(o)))
                .cloned(),
        };
        let mut resp = if req.method() == Method::OPTIONS {
            StatusCode::OK.into_response()
        } else if let Some(redirect) = super::clean_path::redirect(&req) {
            redirect
        } else {
            next.run(req).await
        };
        if let Some(origin) = origin {
            let headers = resp.headers_mut();
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("POST, GET, OPTIONS, PUT, DELETE"),
            );
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static("accept, content-type, authorization"),
            );
        }
        resp
    }
}

/// The host a request names, without its port (Go's `httputil.GetHostname`).
fn hostname(req: &Request) -> String {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().host())
        .unwrap_or("");
    strip_port(host).to_owned()
}

/// `host:port` → `host`; `[::1]:2379` → `::1`; anything without a port as it is.
fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        if let Some((inner, after)) = rest.split_once(']') {
            if after.is_empty() || after.starts_with(':') {
                return inner;
            }
        }
        return host;
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_parse_as_etcd_reads_them() {
        assert_eq!(Allowed::parse("*"), Allowed::Any);
        assert_eq!(Allowed::parse(""), Allowed::Any);
        assert_eq!(Allowed::parse("http://a.com, *"), Allowed::Any);
        let only = Allowed::parse("http://a.com,http://b.com");
        assert!(only.allows("http://a.com"));
        assert!(!only.allows("http://c.com"));
    }

    #[test]
    fn hostnames_lose_their_port() {
        assert_eq!(strip_port("localhost:2379"), "localhost");
        assert_eq!(strip_port("localhost"), "localhost");
        assert_eq!(strip_port("[::1]:2379"), "::1");
        assert_eq!(strip_port("::1"), "::1");
        assert_eq!(strip_port("10.0.0.1:80"), "10.0.0.1");
    }
}
