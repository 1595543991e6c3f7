//! gRPC server metrics, as go-grpc-prometheus names them for etcd: `grpc_server_started_total`
//! and `grpc_server_handled_total` per service, method and call type (with the status code
//! when handled), and etcd's client byte counters. A tower service in front of the gRPC
//! services ([`Tracked`]), with each method's counters looked up once: the
//! status is read where tonic writes it, in the response headers of a call refused at once or
//! in the trailers at the end of the body. A call whose body is dropped before its trailers
//! (the client went away) counts as `Canceled`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use bytes::Bytes;
use futures::future::BoxFuture;
use http_body::{Frame, SizeHint};
use metrics::{counter, describe_counter, Counter};
use tonic::{Code, Status};

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
        "etcd_network_client_grpc_received_bytes_total",
        "Bytes received from gRPC clients."
    );
    describe_counter!(
        "etcd_network_client_grpc_sent_bytes_total",
        "Bytes sent to gRPC clients."
    );
}

/// The client gRPC services, counted: a tower service in front of them.
#[derive(Clone)]
pub struct Tracked<S> {
    inner: S,
    calls: Arc<Calls>,
}

/// Wraps the client gRPC services in the metrics counters.
pub fn layer<S>(grpc: S) -> Tracked<S> {
    Tracked {
        inner: grpc,
        calls: Arc::new(Calls {
            known: RwLock::new(HashMap::new()),
            received: counter!("etcd_network_client_grpc_received_bytes_total"),
            sent: counter!("etcd_network_client_grpc_sent_bytes_total"),
        }),
    }
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
        call.started.increment(1);
        let received = self.calls.received.clone();
        let req = req.map(|body| {
            Body::new(Counted {
                inner: body,
                bytes: received,
                end: None,
            })
        });
        let response = self.inner.call(req);
        let sent = self.calls.sent.clone();
        Box::pin(async move {
            let resp = response.await?;
            if let Some(status) = Status::from_header_map(resp.headers()) {
                call.handled(status.code());
                return Ok(resp);
            }
            Ok(resp.map(|body| {
                Body::new(Counted {
                    inner: body,
                    bytes: sent,
                    end: Some(call),
                })
            }))
        })
    }
}

/// The labels and counters of every method called so far, so a call costs a map lookup
/// rather than a label lookup in the registry.
struct Calls {
    /// By path (`/etcdserverpb.KV/Range`); only methods the protos declare, so a client
    /// cannot grow it.
    known: RwLock<HashMap<String, Arc<Call>>>,
    received: Counter,
    sent: Counter,
}

impl Calls {
    fn get(&self, path: &str) -> Option<Arc<Call>> {
        if let Some(call) = self.known.read().ok()?.get(path) {
            return Some(call.clone());
        }
        let call = Arc::new(Call::for_path(path)?);
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
}

impl Call {
    /// The labels of `/service/method`, if the protos declare it (anything else would let a
    /// client create label values at will).
    fn for_path(path: &str) -> Option<Call> {
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
        Some(Call {
            service: service.to_owned(),
            method: method.to_owned(),
            kind,
            started,
            handled_ok,
        })
    }

    fn handled(&self, code: Code) {
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
    /// The call to report when the trailers pass; `None` once reported, or for a request.
    end: Option<Arc<Call>>,
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
                } else if let Some(trailers) = frame.trailers_ref() {
                    if let Some(call) = self.end.take() {
                        let code =
                            Status::from_header_map(trailers).map_or(Code::Unknown, |s| s.code());
                        call.handled(code);
                    }
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(call) = self.end.take() {
                    call.handled(Code::Unknown);
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
        if let Some(call) = self.end.take() {
            call.handled(Code::Cancelled);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_declared_methods_get_labels() {
        let call = Call::for_path("/etcdserverpb.KV/Range").unwrap();
        assert_eq!(
            (call.service.as_str(), call.method.as_str(), call.kind),
            ("etcdserverpb.KV", "Range", "unary")
        );
        assert_eq!(
            Call::for_path("/etcdserverpb.Watch/Watch").unwrap().kind,
            "bidi_stream"
        );
        assert_eq!(
            Call::for_path("/etcdserverpb.Maintenance/Snapshot")
                .unwrap()
                .kind,
            "server_stream"
        );
        assert!(Call::for_path("/etcdserverpb.KV/Nope").is_none());
        let calls = layer(()).calls;
        assert!(calls.get("/etcdserverpb.KV/Range").is_some());
        assert!(calls.get("/etcdserverpb.KV/Nope").is_none());
        assert_eq!(calls.known.read().unwrap().len(), 1);
        assert!(Call::for_path("/random").is_none());
        assert!(Call::for_path("/v3/kv/range").is_none());
    }

    #[test]
    fn codes_are_spelled_as_grpc_go() {
        assert_eq!(code_name(Code::Cancelled), "Canceled");
        assert_eq!(code_name(Code::Ok), "OK");
    }
}
