//! Forwarding one request: an HTTP/2 request (every gRPC call, unary or streaming) goes to
//! an endpoint as it came, headers and body frames unchanged, and its response (headers, body
//! frames, trailers) comes back the same way, so watch and keep-alive streams flow both ways
//! while they last. A request is sent to the next endpoint when a connection cannot take it;
//! once sent it is never sent again (it may have been applied).

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderName};
use http::{HeaderValue, Request, Response, StatusCode, Uri, Version};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;

use super::upstream::Upstreams;

/// Response bodies: the endpoint's, or one the proxy writes itself.
pub type ProxyBody = UnsyncBoxBody<Bytes, hyper::Error>;

/// gRPC's code for "try again later": no endpoint could take the call.
const GRPC_UNAVAILABLE: &str = "14";

/// Connection-level headers, which belong to one hop and are not forwarded.
const HOP_HEADERS: [HeaderName; 5] = [
    header::CONNECTION,
    header::HOST,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    HeaderName::from_static("keep-alive"),
];

/// Answers one request from a client of the proxy.
pub async fn forward(
    upstreams: Arc<Upstreams>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    if req.version() != Version::HTTP_2 {
        return Ok(http1_answer(&upstreams, &req).await);
    }
    let (mut parts, body) = req.into_parts();
    for name in &HOP_HEADERS {
        parts.headers.remove(name);
    }
    let path = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    let mut req = Request::from_parts(parts, body);
    let mut tried = Vec::new();
    loop {
        let mut picked = match upstreams.pick(&tried).await {
            Ok(picked) => picked,
            Err(e) => return Ok(unavailable(&format!("all endpoints are unavailable: {e}"))),
        };
        *req.uri_mut() = Uri::builder()
            .scheme(picked.scheme.clone())
            .authority(picked.authority.clone())
            .path_and_query(path.clone())
            .build()
            .expect("scheme, authority and path were each parsed already");
        match picked.sender.try_send_request(req).await {
            Ok(response) => return Ok(response.map(BodyExt::boxed_unsync)),
            Err(mut e) => {
                upstreams.broken(&picked).await;
                match e.take_message() {
                    // Not sent: the next endpoint gets it.
                    Some(unsent) => {
                        tried.push(picked.index);
                        req = unsent;
                    }
                    None => {
                        let message = format!("{}: {}", picked.authority, e.into_error());
                        return Ok(unavailable(&message));
                    }
                }
            }
        }
    }
}

/// A gRPC response with no body and the status in its headers ("trailers only").
fn unavailable(message: &str) -> Response<ProxyBody> {
    let mut response = Response::new(empty());
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert("grpc-status", HeaderValue::from_static(GRPC_UNAVAILABLE));
    if let Ok(value) = HeaderValue::from_str(&grpc_message(message)) {
        headers.insert("grpc-message", value);
    }
    response
}

/// Percent-encodes what gRPC's `grpc-message` may not carry as is.
fn grpc_message(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if (0x20..=0x7e).contains(&byte) && byte != b'%' {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// HTTP/1 requests: `GET /metrics` and `GET /health` answer with an endpoint's (etcd's
/// proxy fetches a member's `/metrics` the same way); anything else is not found.
async fn http1_answer(upstreams: &Upstreams, req: &Request<Incoming>) -> Response<ProxyBody> {
    let path = req.uri().path();
    if req.method() == http::Method::GET && matches!(path, "/metrics" | "/health") {
        return match upstreams.http1_get(path).await {
            Ok(response) => response.map(BodyExt::boxed_unsync),
            Err(e) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("all endpoints are unavailable: {e}\n"),
            ),
        };
    }
    text(StatusCode::NOT_FOUND, "404 page not found\n".to_owned())
}

fn text(status: StatusCode, text: String) -> Response<ProxyBody> {
    let mut response = Response::new(
        Full::new(Bytes::from(text))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn empty() -> ProxyBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_message_is_percent_encoded() {
        assert_eq!(grpc_message("a b:1"), "a b:1");
        assert_eq!(grpc_message("100%\né"), "100%25%0A%C3%A9");
    }

    #[test]
    fn unavailable_is_trailers_only() {
        let r = unavailable("all endpoints are unavailable: dial tcp 127.0.0.1:1: refused");
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["grpc-status"], "14");
        assert_eq!(r.headers()["content-type"], "application/grpc");
    }
}
