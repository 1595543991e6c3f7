//! Calling the gRPC services in-process: the gateway hands the very router that serves gRPC
//! clients an HTTP/2-shaped gRPC request and reads its framed answer, so a JSON request runs
//! exactly the code a gRPC request runs (validation, limits, auth, metrics), with no socket
//! in between.
//!
//! gRPC framing: each message is a 1-byte compressed flag (always 0 here), a 4-byte
//! big-endian length and the protobuf bytes. The call's outcome is `grpc-status` (and
//! `grpc-message`) in the trailers, or in the headers of a response that has no body.
//!
//! etcd's gateway reaches its gRPC server over one client connection per listener, so
//! `--max-concurrent-streams` caps the gateway's calls in flight (a watch holds its stream
//! for as long as it runs) and further calls wait for a stream to end. A semaphore holds
//! that cap here: a call takes a permit before it starts and gives it back when its
//! [`ResponseStream`] is dropped.

use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request};
use http_body_util::BodyExt as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::{Code, Status};
use tower::ServiceExt as _;

use axum::body::Body;

/// Length of a gRPC message prefix: compressed flag and length.
const PREFIX_LEN: usize = 5;

/// `message` as one gRPC frame.
pub fn frame(message: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(PREFIX_LEN + message.len());
    buf.put_u8(0);
    buf.put_u32(message.len() as u32);
    buf.put_slice(message);
    buf.freeze()
}

/// The gRPC router the gateway calls into.
#[derive(Clone)]
pub struct Loopback {
    grpc: axum::Router,
    /// One permit per call that may be in flight (`--max-concurrent-streams`).
    streams: Arc<Semaphore>,
}

impl Loopback {
    pub fn new(grpc: axum::Router, max_streams: u32) -> Loopback {
        let permits = (max_streams as usize).min(Semaphore::MAX_PERMITS);
        Loopback {
            grpc,
            streams: Arc::new(Semaphore::new(permits)),
        }
    }

    /// Starts a call of `path` (`/etcdserverpb.KV/Range`) whose request stream is `body`
    /// (gRPC frames), with `metadata` as request headers. Resolves once the service has
    /// answered with headers; a call refused outright is an `Err`.
    pub async fn call(
        &self,
        path: &str,
        metadata: HeaderMap,
        body: Body,
    ) -> Result<ResponseStream, Status> {
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(path)
            .version(http::Version::HTTP_2)
            .body(body)
            .map_err(|e| Status::internal(format!("gateway request for {path}: {e}")))?;
        let headers = req.headers_mut();
        headers.extend(metadata);
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        headers.insert(http::header::TE, HeaderValue::from_static("trailers"));

        let permit = self
            .streams
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Status::unavailable("gateway is shutting down"))?;
        let resp = match self.grpc.clone().oneshot(req).await {
            Ok(resp) => resp,
            Err(never) => match never {},
        };
        if resp.status() != http::StatusCode::OK {
            return Err(Status::unknown(format!(
                "gRPC call {path} answered HTTP {}",
                resp.status()
            )));
        }
        // A response with grpc-status in its headers is trailers-only: the call is over.
        if let Some(status) = Status::from_header_map(resp.headers()) {
            return match status.code() {
                Code::Ok => Ok(ResponseStream::finished(resp.into_body(), permit)),
                _ => Err(status),
            };
        }
        Ok(ResponseStream::new(resp.into_body(), permit))
    }
}

/// The response messages of one call, in order, then its status.
pub struct ResponseStream {
    body: Body,
    buf: BytesMut,
    /// Set once the status has been read (or the body ended).
    done: bool,
    /// The call's stream, held until the response is dropped.
    _permit: OwnedSemaphorePermit,
}

impl ResponseStream {
    fn new(body: Body, permit: OwnedSemaphorePermit) -> ResponseStream {
        ResponseStream {
            body,
            buf: BytesMut::new(),
            done: false,
            _permit: permit,
        }
    }

    fn finished(body: Body, permit: OwnedSemaphorePermit) -> ResponseStream {
        ResponseStream {
            done: true,
            ..ResponseStream::new(body, permit)
        }
    }

    /// The next message (protobuf bytes); `Err` with the call's status if it failed; `None`
    /// once it finished with OK.
    pub async fn next(&mut self) -> Option<Result<Bytes, Status>> {
        loop {
            match self.take_message() {
                Ok(Some(message)) => return Some(Ok(message)),
                Ok(None) => {}
                Err(status) => {
                    self.done = true;
                    return Some(Err(status));
                }
            }
            if self.done {
                if !self.buf.is_empty() {
                    return Some(Err(Status::internal(
                        "gRPC response ended inside a message",
                    )));
                }
                return None;
            }
            match self.body.frame().await {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => self.buf.extend_from_slice(&data),
                    Err(frame) => {
                        self.done = true;
                        let status = frame
                            .trailers_ref()
                            .and_then(Status::from_header_map)
                            .unwrap_or_else(|| {
                                Status::internal("gRPC response trailers carry no grpc-status")
                            });
                        if status.code() != Code::Ok {
                            self.buf.clear();
                            return Some(Err(status));
                        }
                    }
                },
                Some(Err(e)) => {
                    self.done = true;
                    return Some(Err(Status::from_error(e.into())));
                }
                None => {
                    self.done = true;
                    if self.buf.is_empty() {
                        return Some(Err(Status::internal(
                            "gRPC response ended without a status",
                        )));
                    }
                }
            }
        }
    }

    /// Splits one whole message off the buffer, if there is one.
    fn take_message(&mut self) -> Result<Option<Bytes>, Status> {
        if self.buf.len() < PREFIX_LEN {
            return Ok(None);
        }
        if self.buf[0] != 0 {
            return Err(Status::internal("gRPC response is compressed"));
        }
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
        if self.buf.len() < PREFIX_LEN + len {
            return Ok(None);
        }
        self.buf.advance(PREFIX_LEN);
        Ok(Some(self.buf.split_to(len).freeze()))
    }
}

/// The gRPC metadata a gateway request carries, from its HTTP headers, as etcd's gateway
/// forwards them: `Authorization` as `authorization` (etcd's auth token), `Grpc-Metadata-X`
/// as `x` (`hasleader` for instance), and `Grpc-Timeout`.
pub fn metadata_from(headers: &HeaderMap) -> HeaderMap {
    let mut md = HeaderMap::new();
    for (name, value) in headers {
        if name == http::header::AUTHORIZATION || name.as_str() == "grpc-timeout" {
            md.append(name.clone(), value.clone());
        } else if let Some(key) = name.as_str().strip_prefix("grpc-metadata-") {
            // Names arrive lower-cased from the HTTP layer, so any suffix is a valid name.
            if let Ok(key) = HeaderName::from_bytes(key.as_bytes()) {
                if !key.as_str().is_empty() && !key.as_str().starts_with("grpc-") {
                    md.append(key, value.clone());
                }
            }
        }
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    fn permit() -> OwnedSemaphorePermit {
        Arc::new(Semaphore::new(1)).try_acquire_owned().unwrap()
    }

    #[test]
    fn frames_have_etcd_grpc_prefix() {
        assert_eq!(&frame(b"ab")[..], &[0, 0, 0, 0, 2, b'a', b'b']);
        assert_eq!(&frame(b"")[..], &[0, 0, 0, 0, 0]);
    }

    #[tokio::test]
    async fn split_messages_and_trailers_are_read() {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        let mut joined = frame(b"one").to_vec();
        joined.extend_from_slice(&frame(b"two"));
        // Split mid-prefix and mid-message.
        let chunks = vec![
            Ok::<_, std::convert::Infallible>(http_body::Frame::data(Bytes::copy_from_slice(
                &joined[..3],
            ))),
            Ok(http_body::Frame::data(Bytes::copy_from_slice(
                &joined[3..9],
            ))),
            Ok(http_body::Frame::data(Bytes::copy_from_slice(&joined[9..]))),
            Ok(http_body::Frame::trailers(trailers)),
        ];
        let body = Body::new(http_body_util::StreamBody::new(futures::stream::iter(
            chunks,
        )));
        let mut stream = ResponseStream::new(body, permit());
        assert_eq!(&stream.next().await.unwrap().unwrap()[..], b"one");
        assert_eq!(&stream.next().await.unwrap().unwrap()[..], b"two");
        assert!(stream.next().await.is_none());
    }

    #[tokio::test]
    async fn error_trailers_become_the_status() {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("11"));
        trailers.insert(
            "grpc-message",
            HeaderValue::from_static("etcdserver: mvcc: required revision has been compacted"),
        );
        let chunks = vec![Ok::<_, std::convert::Infallible>(
            http_body::Frame::trailers(trailers),
        )];
        let body = Body::new(http_body_util::StreamBody::new(futures::stream::iter(
            chunks,
        )));
        let mut stream = ResponseStream::new(body, permit());
        let status = stream.next().await.unwrap().unwrap_err();
        assert_eq!(status.code(), Code::OutOfRange);
        assert_eq!(
            status.message(),
            "etcdserver: mvcc: required revision has been compacted"
        );
        assert!(stream.next().await.is_none());
    }

    #[tokio::test]
    async fn truncated_or_statusless_bodies_are_errors() {
        let body = Body::from(frame(b"whole")[..4].to_vec());
        let mut stream = ResponseStream::new(body, permit());
        assert_eq!(
            stream.next().await.unwrap().unwrap_err().code(),
            Code::Internal
        );
        let mut stream = ResponseStream::new(Body::empty(), permit());
        assert_eq!(
            stream.next().await.unwrap().unwrap_err().code(),
            Code::Internal
        );
    }

    #[test]
    fn metadata_forwarding() {
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_static("tok"));
        h.insert("grpc-metadata-hasleader", HeaderValue::from_static("true"));
        h.insert("grpc-metadata-grpc-status", HeaderValue::from_static("0"));
        h.insert("grpc-timeout", HeaderValue::from_static("5S"));
        h.insert("content-type", HeaderValue::from_static("application/json"));
        let md = metadata_from(&h);
        assert_eq!(md.get("authorization").unwrap(), "tok");
        assert_eq!(md.get("hasleader").unwrap(), "true");
        assert_eq!(md.get("grpc-timeout").unwrap(), "5S");
        assert!(md.get("grpc-status").is_none());
        assert!(md.get("content-type").is_none());
    }
}
