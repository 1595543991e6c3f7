//! etcd's grpc-gateway: the v3 API as JSON over HTTP (`POST /v3/kv/range` and so on).
//!
//! Each path of `routes::ROUTES` names one RPC. A request body is decoded into the RPC's
//! request message through the protos' descriptors (`codec`), the RPC is called
//! in-process through the same router that serves gRPC clients (`loopback`), and the
//! answer is written back as JSON the way etcd's gateway writes it. There is no second
//! implementation of any service here: what gRPC answers, the gateway answers.
//!
//! Three shapes of call:
//! - unary (`/v3/kv/put`): one JSON object in, one out; a failure is a JSON error body
//!   with the HTTP status grpc-gateway maps the gRPC code to (`error`).
//! - server streaming (`/v3/maintenance/snapshot`, `/v3/election/observe`): one object in,
//!   a chunked stream of `{"result":…}` lines out, ended by an `{"error":…}` chunk if the
//!   call fails.
//! - bidirectional (`/v3/watch`, `/v3/lease/keepalive`): the request body is itself a
//!   stream of JSON objects, each sent as it arrives; answers stream out as above for as long
//!   as the call lasts (a watch outlives the end of its request body, as in etcd).
//!
//! The response headers wait for the first answer, as Go's lazily written headers do, so a
//! call that fails at once gets its error's HTTP status.

mod codec;
mod error;
mod go_base64;
mod loopback;
mod routes;

use std::sync::Arc;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use axum::routing::{post, MethodRouter};
use bytes::{Bytes, BytesMut};
use futures::StreamExt as _;
use http::{header, HeaderMap, HeaderValue, StatusCode};
use http_body_util::BodyExt as _;
use prost_reflect::{MessageDescriptor, MethodDescriptor};
use tokio::sync::{mpsc, oneshot};
use tonic::{Code, Status};

pub use codec::json_string;
pub use loopback::Loopback;

/// How many encoded request messages of a stream may wait for the service to take them.
/// Small: the client's body is read only as fast as the service consumes it.
const REQUEST_QUEUE: usize = 16;

/// How many encoded answers may wait for the HTTP client to read them; when full, the
/// service's stream is not read until the client catches up.
const RESPONSE_QUEUE: usize = 16;

/// The gateway's state: where calls go and how large a request body may be.
#[derive(Clone)]
pub struct Gateway {
    loopback: Loopback,
    /// Largest JSON request (a unary body, or one message of a stream), in bytes.
    max_body: usize,
}

impl Gateway {
    /// A gateway calling `grpc` (the router serving the client gRPC services). `max_body`
    /// bounds a JSON request; JSON with base64 bytes is about 4/3 of the protobuf, so give it
    /// comfortably more than the gRPC receive limit. At most `max_streams` calls run at
    /// once; more wait (see [`Loopback`]).
    pub fn new(grpc: axum::Router, max_body: usize, max_streams: u32) -> Gateway {
        Gateway {
            loopback: Loopback::new(grpc, max_streams),
            max_body,
        }
    }

    /// Routes every gateway path, under `/v3/` and `/v3beta/`.
    pub fn router(self) -> axum::Router {
        let mut router = axum::Router::new();
        for (path, service, method) in routes::ROUTES {
            let desc = codec::method(service, method)
                .unwrap_or_else(|| panic!("gateway route {path} names {service}.{method}, which the protos do not declare"));
            let rpc = Arc::new(Rpc {
                grpc_path: format!("/{service}/{method}"),
                service: service.to_string(),
                desc,
            });
            let handler = self.handler(rpc);
            let beta = routes::beta_alias(path);
            router = router.route(path, handler.clone()).route(&beta, handler);
        }
        router
    }

    fn handler(&self, rpc: Arc<Rpc>) -> MethodRouter {
        let gateway = self.clone();
        post(move |headers: HeaderMap, body: Body| {
            let gateway = gateway.clone();
            let rpc = rpc.clone();
            async move { gateway.call(&rpc, &headers, body).await }
        })
        .fallback(super::method_not_allowed)
    }

    async fn call(&self, rpc: &Arc<Rpc>, headers: &HeaderMap, body: Body) -> Response {
        let metadata = loopback::metadata_from(headers);
        if rpc.desc.is_client_streaming() {
            return self.bidi(rpc, metadata, body).await;
        }
        let request = match self.read_request(&rpc.desc.input(), body).await {
            Ok(request) => request,
            Err(response) => return *response,
        };
        let body = Body::from(loopback::frame(&request));
        if rpc.desc.is_server_streaming() {
            let (_no_decode_errors, failures) = oneshot::channel();
            let call = self.start(rpc, metadata, body);
            return stream_response(rpc, call, failures).await;
        }
        self.unary(rpc, metadata, body).await
    }

    /// Reads a whole body, within the size limit, into an encoded request message.
    async fn read_request(
        &self,
        input: &MessageDescriptor,
        body: Body,
    ) -> Result<Vec<u8>, Box<Response>> {
        let bytes = read_body(body, self.max_body).await.map_err(Box::new)?;
        codec::json_to_proto(input, &bytes).map_err(|e| Box::new(error::bad_request(&e.0)))
    }

    fn start(
        &self,
        rpc: &Arc<Rpc>,
        metadata: HeaderMap,
        body: Body,
    ) -> impl std::future::Future<Output = Result<loopback::ResponseStream, Status>> + Send + 'static
    {
        let loopback = self.loopback.clone();
        let rpc = rpc.clone();
        async move { loopback.call(&rpc.grpc_path, metadata, body).await }
    }

    async fn unary(&self, rpc: &Rpc, metadata: HeaderMap, body: Body) -> Response {
        let fail = |status: Status| error::status_response(&error::describe(status, &rpc.service));
        let mut answers = match self.loopback.call(&rpc.grpc_path, metadata, body).await {
            Ok(answers) => answers,
            Err(status) => return fail(status),
        };
        let message = match answers.next().await {
            Some(Ok(message)) => message,
            Some(Err(status)) => return fail(status),
            None => return fail(Status::internal("unary call answered no message")),
        };
        match answers.next().await {
            None => {}
            Some(Err(status)) => return fail(status),
            Some(Ok(_)) => return fail(Status::internal("unary call answered twice")),
        }
        match codec::proto_to_json(&rpc.desc.output(), &message) {
            Ok(json) => json_ok(Body::from(json)),
            Err(e) => fail(Status::internal(e)),
        }
    }

    /// A call whose request is a stream: the body's JSON objects are sent as they arrive.
    async fn bidi(&self, rpc: &Arc<Rpc>, metadata: HeaderMap, body: Body) -> Response {
        let (requests_tx, requests_rx) =
            mpsc::channel::<Result<Bytes, std::io::Error>>(REQUEST_QUEUE);
        let (failure_tx, failures) = oneshot::channel();
        tokio::spawn(pump_requests(
            body,
            rpc.desc.input(),
            self.max_body,
            requests_tx,
            failure_tx,
        ));
        let requests = futures::stream::unfold(requests_rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        let call = self.start(rpc, metadata, Body::from_stream(requests));
        stream_response(rpc, call, failures).await
    }
}

/// The call type of `service`/`method` as go-grpc-prometheus labels it (`unary`,
/// `client_stream`, `server_stream`, `bidi_stream`), if the protos declare the method.
pub fn method_kind(service: &str, method: &str) -> Option<&'static str> {
    let m = codec::method(service, method)?;
    Some(match (m.is_client_streaming(), m.is_server_streaming()) {
        (false, false) => "unary",
        (true, false) => "client_stream",
        (false, true) => "server_stream",
        (true, true) => "bidi_stream",
    })
}

/// One gateway path's RPC.
struct Rpc {
    /// `/etcdserverpb.KV/Range`.
    grpc_path: String,
    /// `etcdserverpb.KV`.
    service: String,
    desc: MethodDescriptor,
}

/// A 200 JSON answer, with the header etcd's gateway forwards from the gRPC response.
fn json_ok(body: Body) -> Response {
    (
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (
                header::HeaderName::from_static("grpc-metadata-content-type"),
                HeaderValue::from_static("application/grpc"),
            ),
        ],
        body,
    )
        .into_response()
}

/// Reads all of `body`, refusing more than `limit` bytes.
async fn read_body(mut body: Body, limit: usize) -> Result<Bytes, Response> {
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| error::bad_request(&format!("reading request body: {e}")))?;
        let Some(data) = frame.data_ref() else {
            continue;
        };
        if buf.len() + data.len() > limit {
            // Read on (within reason) so the client is not reset before it sees the answer.
            super::drain(body, limit.saturating_mul(4)).await;
            return Err(error::bad_request(&format!(
                "http: request body too large (limit {limit} bytes)"
            )));
        }
        buf.extend_from_slice(data);
    }
    Ok(buf.freeze())
}

/// What the driver of a streaming call hands the HTTP response, in order.
enum Out {
    /// One answer, as JSON.
    Result(Bytes),
    /// The call failed.
    Failed(Status),
    /// The client's request stream could not be decoded.
    BadRequest(String),
}

/// Answers a streaming call: waits for its first outcome to choose the HTTP status, then
/// streams the rest.
async fn stream_response(
    rpc: &Arc<Rpc>,
    call: impl std::future::Future<Output = Result<loopback::ResponseStream, Status>> + Send + 'static,
    failures: oneshot::Receiver<String>,
) -> Response {
    let (out_tx, mut out_rx) = mpsc::channel(RESPONSE_QUEUE);
    tokio::spawn(drive_stream(rpc.clone(), call, failures, out_tx));
    let first = match out_rx.recv().await {
        None => return json_ok(Body::empty()),
        Some(Out::BadRequest(message)) => return error::bad_request(&message),
        Some(Out::Failed(status)) => {
            let code = status.code();
            return (
                error::http_status(code),
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                error::stream_error_chunk(code, status.message()),
            )
                .into_response();
        }
        Some(first @ Out::Result(_)) => first,
    };
    let rest = futures::stream::unfold(out_rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let chunks = futures::stream::iter([first])
        .chain(rest)
        .map(|out| Ok::<_, std::convert::Infallible>(chunk(out)));
    // No length: HTTP/1.1 sends it chunked, as etcd does.
    json_ok(Body::from_stream(chunks))
}

/// One chunk of a streamed answer: `{"result":…}` and a newline, or the closing error.
fn chunk(out: Out) -> Bytes {
    match out {
        Out::Result(json) => {
            let mut buf = BytesMut::with_capacity(json.len() + 12);
            buf.extend_from_slice(b"{\"result\":");
            buf.extend_from_slice(&json);
            buf.extend_from_slice(b"}\n");
            buf.freeze()
        }
        Out::Failed(status) => {
            Bytes::from(error::stream_error_chunk(status.code(), status.message()))
        }
        Out::BadRequest(message) => {
            Bytes::from(error::stream_error_chunk(Code::InvalidArgument, &message))
        }
    }
}

/// Runs a streaming call to its end, or until the HTTP client goes away (`out` closes), or
/// the request stream turns out to be malformed.
async fn drive_stream(
    rpc: Arc<Rpc>,
    call: impl std::future::Future<Output = Result<loopback::ResponseStream, Status>>,
    mut failures: oneshot::Receiver<String>,
    out: mpsc::Sender<Out>,
) {
    let describe = |status| error::describe(status, &rpc.service);
    // Set once the request stream ended well (its failure sender is gone).
    let mut requests_done = false;
    let mut call = std::pin::pin!(call);
    let mut answers = loop {
        tokio::select! {
            answers = &mut call => match answers {
                Ok(answers) => break answers,
                Err(status) => {
                    let _ = out.send(Out::Failed(describe(status))).await;
                    return;
                }
            },
            failure = &mut failures, if !requests_done => match failure {
                Ok(message) => {
                    let _ = out.send(Out::BadRequest(message)).await;
                    return;
                }
                Err(_) => requests_done = true,
            },
            () = out.closed() => return,
        }
    };
    let output = rpc.desc.output();
    loop {
        let item = tokio::select! {
            item = answers.next() => item,
            // The HTTP client went away: end the call now, not at the next answer.
            () = out.closed() => return,
            failure = &mut failures, if !requests_done => match failure {
                Ok(message) => {
                    let _ = out.send(Out::BadRequest(message)).await;
                    return;
                }
                Err(_) => {
                    requests_done = true;
                    continue;
                }
            },
        };
        let out_item = match item {
            None => return,
            Some(Ok(message)) => match codec::proto_to_json(&output, &message) {
                Ok(json) => Out::Result(json),
                Err(e) => Out::Failed(Status::internal(e)),
            },
            Some(Err(status)) => Out::Failed(describe(status)),
        };
        let last = matches!(out_item, Out::Failed(_));
        if out.send(out_item).await.is_err() || last {
            return;
        }
    }
}

/// Reads a stream of JSON request objects from `body`, sending each, encoded and framed, to
/// the call. A malformed object ends the call: its error goes to `failure`.
async fn pump_requests(
    mut body: Body,
    input: MessageDescriptor,
    max_message: usize,
    requests: mpsc::Sender<Result<Bytes, std::io::Error>>,
    failure: oneshot::Sender<String>,
) {
    let mut buf = BytesMut::new();
    loop {
        // Send every whole object buffered so far.
        loop {
            match codec::split_json_value(&buf) {
                Ok(Some(len)) => {
                    let object = buf.split_to(len);
                    match codec::json_to_proto(&input, &object) {
                        Ok(message) => {
                            if requests.send(Ok(loopback::frame(&message))).await.is_err() {
                                return; // the call is over
                            }
                        }
                        Err(e) => {
                            let _ = failure.send(e.0);
                            super::drain(body, max_message).await;
                            return;
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = failure.send(e.0);
                    super::drain(body, max_message).await;
                    return;
                }
            }
        }
        if buf.len() > max_message {
            let _ = failure.send(format!(
                "http: request message too large (limit {max_message} bytes)"
            ));
            super::drain(body, max_message).await;
            return;
        }
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    buf.extend_from_slice(&data);
                }
            }
            Some(Err(e)) => {
                // The client went away or broke the body: end the request stream with an
                // error so the service sees the call aborted.
                let _ = requests
                    .send(Err(std::io::Error::other(e.to_string())))
                    .await;
                return;
            }
            None => {
                if buf.iter().any(|b| !b.is_ascii_whitespace()) {
                    let _ = failure.send("unexpected end of JSON input".to_owned());
                }
                // Dropping `requests` half-closes the call, as the end of a gRPC request
                // stream does; the answers go on.
                return;
            }
        }
    }
}
