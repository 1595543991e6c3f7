//! gRPC server metrics, as go-grpc-prometheus names them for etcd: `grpc_server_started_total`
//! and `grpc_server_handled_total` per service, method and call type (with the status code
//! when handled), and etcd's client byte counters. A tower service in front of the gRPC
//! services ([`Tracked`]), with each method's counters looked up once: the
//! status is read where tonic writes it, in the response headers of a call refused at once or
//! in the trailers at the end of the body. A call whose body is dropped before its trailers
//! (the client went away) counts as `Canceled`.
//!
//! Also as etcd: messages received and sent per method (gRPC frames counted as they pass),
//! `etcd_server_client_requests_total` by the client's `client-api-version` metadata, and with
//! `--metrics=extensive` the `grpc_server_handling_seconds` histogram.

use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use bytes::Bytes;
use futures::future::BoxFuture;
use http_body::{Frame, SizeHint};
use metrics::{counter, describe_counter, describe_histogram, histogram, Counter, Histogram};
use tonic::Code;

use super::gateway::method_kind;

/// Counts requests received and bytes sent and received on the client gRPC port.
pub fn describe() {
    describe_counter!(
        "grpc_server_started_total",
        "gRPC calls started on the server."
    );
    describe_counter!(
        "grpc_server_handled_total",
        "gRPC calls completed on the server, whatever their status."
    );
    describe_counter!(
        "grpc_server_msg_received_total",
        "gRPC messages received on the server, per method."
    );
    describe_counter!(
        "grpc_server_msg_sent_total",
        "gRPC messages sent by the server, per method."
    );
    describe_histogram!(
        HANDLING_SECONDS,
        "Time from a gRPC call's start to its status (--metrics=extensive)."
    );
    describe_counter!(
        "etcd_server_client_requests_total",
        "gRPC client requests, by call type and the client's API version."
    );
    describe_counter!(
        "etcd_network_client_grpc_received_bytes_total",
        "Bytes received from gRPC clients."
    );
    describe_counter!(
        "etcd_network_client_grpc_sent_bytes_total",
        "Bytes sent to gRPC clients."
    );
}

/// The handling-time histogram of `--metrics=extensive`.
pub const HANDLING_SECONDS: &str = "grpc_server_handling_seconds";

/// go-grpc-prometheus' default buckets for [`HANDLING_SECONDS`].
pub const HANDLING_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The client API versions counted by name; any other value counts as `unknown`, so a client
/// cannot create label values at will.
const CLIENT_VERSIONS: [&str; 8] = ["3.0", "3.1", "3.2", "3.3", "3.4", "3.5", "3.6", "unknown"];

/// Client requests by [call type][unary, stream] and [`CLIENT_VERSIONS`] index: atomics, read
/// at scrape time by [`export_client_requests`].
static CLIENT_REQUESTS: [[AtomicU64; CLIENT_VERSIONS.len()]; 2] =
    [const { [const { AtomicU64::new(0) }; CLIENT_VERSIONS.len()] }; 2];

/// The client gRPC services, counted: a tower service in front of them.
#[derive(Clone)]
pub struct Tracked<S> {
    inner: S,
    calls: Arc<Calls>,
}

/// Wraps the client gRPC services in the metrics counters; `extensive` (`--metrics`) adds the
/// handling-time histogram.
pub fn layer<S>(grpc: S, extensive: bool) -> Tracked<S> {
    Tracked {
        inner: grpc,
        calls: Arc::new(Calls {
            known: RwLock::new(HashMap::new()),
            received: counter!("etcd_network_client_grpc_received_bytes_total"),
            sent: counter!("etcd_network_client_grpc_sent_bytes_total"),
            extensive,
        }),
    }
}

/// Sets `etcd_server_client_requests_total` from the counts (only the series seen, as etcd).
pub fn export_client_requests() {
    for (kind, by_version) in ["unary", "stream"].into_iter().zip(&CLIENT_REQUESTS) {
        for (version, n) in CLIENT_VERSIONS.into_iter().zip(by_version) {
            let n = n.load(Ordering::Relaxed);
            if n > 0 {
                counter!(
                    "etcd_server_client_requests_total",
                    "client_api_version" => version,
                    "type" => kind,
                )
                .absolute(n);
            }
        }
    }
}

/// The metadata etcd's clients send their API version in.
const CLIENT_API_VERSION: http::HeaderName = http::HeaderName::from_static("client-api-version");

/// Where tonic writes a call's status code: the trailers, or the headers of a call refused
/// at once.
const GRPC_STATUS: http::HeaderName = http::HeaderName::from_static("grpc-status");

/// Counts a request by the `client-api-version` the client sent.
fn count_client_request(req: &Request, unary: bool) {
    let version = req
        .headers()
        .get(CLIENT_API_VERSION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("unknown");
    let at = CLIENT_VERSIONS
        .iter()
        .position(|v| *v == version)
        .unwrap_or(CLIENT_VERSIONS.len() - 1);
    CLIENT_REQUESTS[usize::from(!unary)][at].fetch_add(1, Ordering::Relaxed);
}

impl<S> tower::Service<Request> for Tracked<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    /// Counts the start, and watches the response for the end.
    fn call(&mut self, req: Request) -> Self::Future {
        let Some(call) = self.calls.get(req.uri().path()) else {
            return Box::pin(self.inner.call(req));
        };
        let started = Instant::now();
        call.started.increment(1);
        count_client_request(&req, call.kind == "unary");
        let received = self.calls.received.clone();
        let messages = call.received.clone();
        let req = req.map(|body| {
            Body::new(Counted {
                inner: body,
                bytes: received,
                messages,
                frames: Frames::default(),
                end: None,
            })
        });
        let response = self.inner.call(req);
        let sent = self.calls.sent.clone();
        Box::pin(async move {
            let resp = response.await?;
            if let Some(code) = status_code(resp.headers()) {
                call.handled(code, started);
                return Ok(resp);
            }
            let messages = call.sent.clone();
            Ok(resp.map(|body| {
                Body::new(Counted {
                    inner: body,
                    bytes: sent,
                    messages,
                    frames: Frames::default(),
                    end: Some((call, started)),
                })
            }))
        })
    }
}

/// The call's status code, if `headers` hold one: only the code, which is all the counters
/// need (tonic's `Status::from_header_map` would also copy every other header).
fn status_code(headers: &http::HeaderMap) -> Option<Code> {
    headers
        .get(GRPC_STATUS)
        .map(|code| Code::from_bytes(code.as_bytes()))
}

/// The labels and counters of every method called so far, so a call costs a map lookup
/// rather than a label lookup in the registry.
struct Calls {
    /// By path (`/etcdserverpb.KV/Range`); only methods the protos declare, so a client
    /// cannot grow it.
    known: RwLock<HashMap<String, Arc<Call>>>,
    received: Counter,
    sent: Counter,
    /// `--metrics=extensive`: record handling times.
    extensive: bool,
}

impl Calls {
    fn get(&self, path: &str) -> Option<Arc<Call>> {
        if let Some(call) = self.known.read().ok()?.get(path) {
            return Some(call.clone());
        }
        let call = Arc::new(Call::for_path(path, self.extensive)?);
        self.known
            .write()
            .ok()?
            .insert(path.to_owned(), call.clone());
        Some(call)
    }
}

/// One method's labels, and the counters every call of it moves.
struct Call {
    service: String,
    method: String,
    kind: &'static str,
    started: Counter,
    handled_ok: Counter,
    /// Messages received and sent.
    received: Counter,
    sent: Counter,
    /// Handling times, with `--metrics=extensive`.
    handling: Option<Histogram>,
}

impl Call {
    /// The labels of `/service/method`, if the protos declare it (anything else would let a
    /// client create label values at will).
    fn for_path(path: &str, extensive: bool) -> Option<Call> {
        let (service, method) = path.strip_prefix('/')?.split_once('/')?;
        let kind = method_kind(service, method)?;
        // Labels in the order Prometheus' Go client writes them: sorted by name.
        let started = counter!(
            "grpc_server_started_total",
            "grpc_method" => method.to_owned(),
            "grpc_service" => service.to_owned(),
            "grpc_type" => kind,
        );
        let handled_ok = handled_counter(service, method, kind, Code::Ok);
        let labels = [
            ("grpc_method", method.to_owned()),
            ("grpc_service", service.to_owned()),
            ("grpc_type", kind.to_owned()),
        ];
        Some(Call {
            service: service.to_owned(),
            method: method.to_owned(),
            kind,
            started,
            handled_ok,
            received: counter!("grpc_server_msg_received_total", &labels),
            sent: counter!("grpc_server_msg_sent_total", &labels),
            handling: extensive.then(|| histogram!(HANDLING_SECONDS, &labels)),
        })
    }

    fn handled(&self, code: Code, started: Instant) {
        if let Some(h) = &self.handling {
            h.record(started.elapsed().as_secs_f64());
        }
        if code == Code::Ok {
            self.handled_ok.increment(1);
        } else {
            handled_counter(&self.service, &self.method, self.kind, code).increment(1);
        }
    }
}

fn handled_counter(service: &str, method: &str, kind: &'static str, code: Code) -> Counter {
    counter!(
        "grpc_server_handled_total",
        "grpc_code" => code_name(code),
        "grpc_method" => method.to_owned(),
        "grpc_service" => service.to_owned(),
        "grpc_type" => kind,
    )
}

/// A gRPC code as grpc-go spells it in metric labels.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

/// A body that counts its data bytes and, for a response, reports the call's status from its
/// trailers (or `Canceled` if dropped before them).
struct Counted {
    inner: Body,
    bytes: Counter,
    /// gRPC messages, counted as their frames start.
    messages: Counter,
    frames: Frames,
    /// The call to report when the trailers pass, with its start; `None` once reported, or
    /// for a request.
    end: Option<(Arc<Call>, Instant)>,
}

/// Where a gRPC byte stream stands: each message is a 5-byte prefix (compressed flag, length
/// in big endian) then the message.
#[derive(Default)]
struct Frames {
    /// Prefix bytes seen of the next message (0 to 4).
    prefix_seen: usize,
    prefix: [u8; 4],
    /// Bytes left of the current message.
    left: u64,
}

impl Frames {
    /// Reads `data`; returns how many messages started in it.
    fn feed(&mut self, mut data: &[u8]) -> u64 {
        let mut started = 0;
        while !data.is_empty() {
            if self.left > 0 {
                let n = data
                    .len()
                    .min(usize::try_from(self.left).unwrap_or(usize::MAX));
                self.left -= n as u64;
                data = &data[n..];
                continue;
            }
            if self.prefix_seen > 0 {
                self.prefix[self.prefix_seen - 1] = data[0];
            }
            self.prefix_seen += 1;
            data = &data[1..];
            if self.prefix_seen == 5 {
                started += 1;
                self.prefix_seen = 0;
                self.left = u64::from(u32::from_be_bytes(self.prefix));
            }
        }
        started
    }
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.bytes.increment(data.len() as u64);
                    let started = self.frames.feed(data);
                    if started > 0 {
                        self.messages.increment(started);
                    }
                } else if let Some(trailers) = frame.trailers_ref() {
                    if let Some((call, started)) = self.end.take() {
                        call.handled(status_code(trailers).unwrap_or(Code::Unknown), started);
                    }
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some((call, started)) = self.end.take() {
                    call.handled(Code::Unknown, started);
                }
            }
            Poll::Ready(None) | Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        if let Some((call, started)) = self.end.take() {
            call.handled(Code::Cancelled, started);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_declared_methods_get_labels() {
        let call = Call::for_path("/etcdserverpb.KV/Range", false).unwrap();
        assert_eq!(
            (call.service.as_str(), call.method.as_str(), call.kind),
            ("etcdserverpb.KV", "Range", "unary")
        );
        assert_eq!(
            Call::for_path("/etcdserverpb.Watch/Watch", false)
                .unwrap()
                .kind,
            "bidi_stream"
        );
        assert_eq!(
            Call::for_path("/etcdserverpb.Maintenance/Snapshot", false)
                .unwrap()
                .kind,
            "server_stream"
        );
        assert!(Call::for_path("/etcdserverpb.KV/Nope", false).is_none());
        let calls = layer((), false).calls;
        assert!(calls.get("/etcdserverpb.KV/Range").is_some());
        assert!(calls.get("/etcdserverpb.KV/Nope").is_none());
        assert_eq!(calls.known.read().unwrap().len(), 1);
        assert!(Call::for_path("/random", false).is_none());
        assert!(Call::for_path("/v3/kv/range", false).is_none());
    }

    #[test]
    fn messages_are_counted_across_frame_boundaries() {
        let mut f = Frames::default();
        // Two messages of 3 and 0 bytes, then the prefix of a third split in two.
        assert_eq!(f.feed(&[0, 0, 0, 0, 3, 1, 2, 3, 0, 0, 0, 0, 0]), 2);
        assert_eq!(f.feed(&[0, 0, 0]), 0);
        assert_eq!(f.feed(&[0, 2, 9]), 1);
        assert_eq!(
            f.feed(&[9, 0]),
            0,
            "the third's last byte, then a prefix byte"
        );
        assert_eq!(f.prefix_seen, 1);
    }

    #[test]
    fn codes_are_spelled_as_grpc_go() {
        assert_eq!(code_name(Code::Cancelled), "Canceled");
        assert_eq!(code_name(Code::Ok), "OK");
    }
}
