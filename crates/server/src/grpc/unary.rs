//! Unary gRPC calls served by hand, ahead of tonic's router: [`super::ClientGrpc`] hands the
//! busiest KV calls here by path, so that they skip the router, tonic's codec and its body
//! wrappers. The request's one message is read from the body (without a copy when one body
//! frame holds it, the usual case), the answer goes out as one exactly-sized body frame, then
//! the `grpc-status` trailer. Errors are trailers-only responses, as tonic writes them.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use http::{header::CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use http_body::Frame;
use http_body_util::BodyExt;
use prost::Message;
use tonic::metadata::MetadataMap;
use tonic::Status;

/// A gRPC message's prefix: the compressed flag and the length (big-endian u32).
pub const PREFIX_LEN: usize = 5;

/// Answers one call: decodes its request, runs `handler` on it and encodes the answer.
pub async fn serve<Req, Resp, F, Fut>(req: Request, max_recv: usize, handler: F) -> Response
where
    Req: Message + Default,
    Resp: Message,
    F: FnOnce(tonic::Request<Req>) -> Fut,
    Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
{
    let answered = match request(req, max_recv).await {
        Ok(request) => handler(request).await,
        Err(status) => Err(status),
    };
    match answered.and_then(|resp| encode(resp.get_ref())) {
        Ok(frame) => answer(vec![frame]),
        Err(status) => status.into_http(),
    }
}

/// The call's request message, with its metadata and extensions as tonic hands them over.
pub async fn request<M: Message + Default>(
    req: Request,
    max_recv: usize,
) -> Result<tonic::Request<M>, Status> {
    let (parts, body) = req.into_parts();
    let message = read_message(body, max_recv).await?;
    let message = M::decode(message)
        .map_err(|e| Status::internal(format!("failed to decode Protobuf message: {e}")))?;
    Ok(tonic::Request::from_parts(
        MetadataMap::from_headers(parts.headers),
        parts.extensions,
        message,
    ))
}

/// `message` with its gRPC prefix, in one buffer of exactly its size.
fn encode<M: Message>(message: &M) -> Result<Bytes, Status> {
    let len = message.encoded_len();
    let mut buf = Vec::with_capacity(PREFIX_LEN + len);
    buf.push(0);
    buf.extend_from_slice(&prefix_len(len)?.to_be_bytes());
    message
        .encode(&mut buf)
        .map_err(|e| Status::internal(format!("failed to encode Protobuf message: {e}")))?;
    Ok(buf.into())
}

/// A message's length as its prefix holds it; longer messages cannot be sent.
pub fn prefix_len(len: usize) -> Result<u32, Status> {
    u32::try_from(len).map_err(|_| {
        Status::resource_exhausted(format!(
            "grpc: trying to send message larger than max ({len} vs. {})",
            u32::MAX
        ))
    })
}

/// A successful answer: `frames` (which together hold one prefixed message), then the
/// `grpc-status` trailer.
pub fn answer(frames: Vec<Bytes>) -> Response {
    let mut resp = Response::new(Body::new(AnswerBody {
        frames: frames.into_iter(),
        ended: false,
    }));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    resp
}

/// The `grpc-status` trailer's name, not parsed from text on every answer.
const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");

/// A successful answer's body: its data frames, then the `grpc-status: 0` trailer.
struct AnswerBody {
    frames: std::vec::IntoIter<Bytes>,
    /// The trailer went out.
    ended: bool,
}

impl http_body::Body for AnswerBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(data) = self.frames.find(|b| !b.is_empty()) {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        if self.ended {
            return Poll::Ready(None);
        }
        self.ended = true;
        let mut trailers = HeaderMap::with_capacity(1);
        trailers.insert(GRPC_STATUS, HeaderValue::from_static("0"));
        Poll::Ready(Some(Ok(Frame::trailers(trailers))))
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }
}

/// The request's one message, refused past `max` bytes as grpc-go does.
async fn read_message(mut body: Body, max: usize) -> Result<Bytes, Status> {
    let mut buf = BytesMut::new();
    let mut len = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Status::internal(format!("reading the request: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if buf.is_empty() {
            if let Some(message) = whole_message(&data) {
                return check_prefix(&data, max).map(|()| message);
            }
        }
        buf.extend_from_slice(&data);
        if len.is_none() && buf.len() >= PREFIX_LEN {
            check_prefix(&buf, max)?;
            len = Some(message_len(&buf));
        }
        if len.is_some_and(|n| buf.len() >= PREFIX_LEN + n) {
            break;
        }
    }
    match len {
        Some(n) if buf.len() >= PREFIX_LEN + n => {
            Ok(buf.freeze().slice(PREFIX_LEN..PREFIX_LEN + n))
        }
        _ => Err(Status::internal("Missing request message.")),
    }
}

/// The message's length from the prefix at the start of `data` (which holds one).
fn message_len(data: &[u8]) -> usize {
    u32::from_be_bytes([data[1], data[2], data[3], data[4]]) as usize
}

/// Refuses a compressed message, or one longer than `max`, from the prefix at the start of
/// `data` (which holds one).
fn check_prefix(data: &[u8], max: usize) -> Result<(), Status> {
    if data[0] != 0 {
        return Err(Status::unimplemented(
            "compressed requests are not supported by this server",
        ));
    }
    let n = message_len(data);
    if n > max {
        return Err(Status::resource_exhausted(format!(
            "grpc: received message larger than max ({n} vs. {max})"
        )));
    }
    Ok(())
}

/// The message of a body frame that holds a whole prefixed message, without copying it.
fn whole_message(data: &Bytes) -> Option<Bytes> {
    let n = PREFIX_LEN + message_len(data.get(..PREFIX_LEN)?);
    (data.len() >= n).then(|| data.slice(PREFIX_LEN..n))
}

#[cfg(test)]
mod tests {
    use http_body_util::StreamBody;
    use oxcd_api::etcdserverpb::{PutRequest, PutResponse, ResponseHeader};

    use super::*;

    #[test]
    fn a_frame_holding_the_whole_request_is_taken_as_it_is() {
        let framed = Bytes::from_static(&[0, 0, 0, 0, 2, 10, 0, 99]);
        assert_eq!(whole_message(&framed).unwrap()[..], [10, 0]);
        assert_eq!(whole_message(&framed.slice(..6)), None, "a part of it");
        assert_eq!(
            whole_message(&framed.slice(..3)),
            None,
            "a part of the prefix"
        );
    }

    fn call(frames: &[&[u8]]) -> Request {
        let frames: Vec<Result<Frame<Bytes>, Infallible>> = frames
            .iter()
            .map(|f| Ok(Frame::data(Bytes::copy_from_slice(f))))
            .collect();
        Request::new(Body::new(StreamBody::new(futures::stream::iter(frames))))
    }

    fn put_of_300_bytes() -> PutRequest {
        PutRequest {
            key: b"k".to_vec(),
            value: vec![7; 300],
            ..Default::default()
        }
    }

    fn prefixed(message: &impl Message) -> Vec<u8> {
        encode(message).unwrap().to_vec()
    }

    #[tokio::test]
    async fn a_request_split_over_frames_is_joined() {
        let put = put_of_300_bytes();
        let wire = prefixed(&put);
        let (a, b) = wire.split_at(3);
        let got: tonic::Request<PutRequest> = request(call(&[a, b]), 1024).await.unwrap();
        assert_eq!(got.into_inner(), put);
    }

    #[tokio::test]
    async fn requests_refused_as_grpc_go_refuses_them() {
        let put = put_of_300_bytes();
        let wire = prefixed(&put);
        let err = request::<PutRequest>(call(&[&wire]), 100)
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::ResourceExhausted);
        assert_eq!(
            err.message(),
            format!(
                "grpc: received message larger than max ({} vs. 100)",
                wire.len() - PREFIX_LEN
            )
        );
        let err = request::<PutRequest>(call(&[]), 100).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Internal);
        assert_eq!(err.message(), "Missing request message.");
    }

    #[tokio::test]
    async fn an_answer_is_one_prefixed_frame_then_the_status() {
        let want = PutResponse {
            header: Some(ResponseHeader {
                cluster_id: 1,
                member_id: 2,
                revision: 3,
                raft_term: 4,
            }),
            prev_kv: None,
        };
        let sent = want.clone();
        let resp = serve(
            call(&[&prefixed(&PutRequest::default())]),
            1024,
            |_: tonic::Request<PutRequest>| {
                std::future::ready(Ok::<_, Status>(tonic::Response::new(sent)))
            },
        )
        .await;
        assert_eq!(resp.headers()[CONTENT_TYPE], "application/grpc");
        let mut body = resp.into_body();
        let data = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(data[..], prefixed(&want)[..]);
        let trailers = body
            .frame()
            .await
            .unwrap()
            .unwrap()
            .into_trailers()
            .unwrap();
        assert_eq!(trailers["grpc-status"], "0");
        assert!(body.frame().await.is_none());
    }

    #[tokio::test]
    async fn empty_frames_are_left_out() {
        let resp = answer(vec![
            Bytes::from_static(b"ab"),
            Bytes::new(),
            Bytes::from_static(b"c"),
        ]);
        let mut body = resp.into_body();
        let mut data = Vec::new();
        while let Some(frame) = body.frame().await {
            match frame.unwrap().into_data() {
                Ok(d) => data.push(d),
                Err(f) => assert_eq!(f.into_trailers().unwrap()["grpc-status"], "0"),
            }
        }
        assert_eq!(data, [&b"ab"[..], &b"c"[..]]);
    }

    #[tokio::test]
    async fn an_error_is_a_trailers_only_answer() {
        let resp = serve(
            call(&[&prefixed(&PutRequest::default())]),
            1024,
            |_: tonic::Request<PutRequest>| {
                std::future::ready(Err::<tonic::Response<PutResponse>, _>(
                    Status::invalid_argument("etcdserver: key is not provided"),
                ))
            },
        )
        .await;
        assert_eq!(resp.headers()["grpc-status"], "3");
        assert_eq!(
            resp.headers()["grpc-message"],
            "etcdserver:%20key%20is%20not%20provided"
        );
    }
}
