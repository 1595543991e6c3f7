//! The Range RPC served by hand rather than through tonic's codec (and ahead of the router:
//! [`super::ClientGrpc`] hands its calls here by path), so that its answer is held once. tonic
//! encodes a message into a buffer of its own, which would be a second copy of an answer that
//! the store already reads in wire form ([`WireRange`]). Here a small answer goes to the
//! connection as one body frame (the 5-byte gRPC prefix, the header, the key-values, then
//! `more` and `count`); a large one as three, so that its key-values are never copied. Then
//! the `grpc-status` trailer. Errors are trailers-only responses, as tonic writes them.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use http::{header::CONTENT_TYPE, HeaderMap, HeaderValue};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use oxcd_api::etcdserverpb::RangeRequest;
use prost::Message;
use tonic::metadata::MetadataMap;
use tonic::Status;

use super::kv::KvService;
use crate::kv::range::WireRange;

/// The RPC's path on the client port.
pub const PATH: &str = "/etcdserverpb.KV/Range";

/// A gRPC message's prefix: the compressed flag and the length (big-endian u32).
const PREFIX_LEN: usize = 5;

/// Answers up to this size go out as one body frame (one HTTP/2 DATA frame at the default
/// frame size): copying the key-values costs less than two more frames would.
const JOIN_LIMIT: usize = 16 * 1024;

/// The Range RPC of the client port.
#[derive(Clone)]
pub struct RangeRoute {
    kv: Arc<KvService>,
    /// `--max-request-bytes` plus gRPC's overhead: larger requests are refused.
    max_recv: usize,
}

impl RangeRoute {
    pub fn new(kv: Arc<KvService>, max_recv: usize) -> RangeRoute {
        RangeRoute { kv, max_recv }
    }

    /// Answers one call.
    pub async fn serve(self, req: Request) -> Response {
        match call(&self.kv, req, self.max_recv).await {
            Ok(frames) => ok(frames),
            Err(status) => status.into_http(),
        }
    }
}

async fn call(kv: &KvService, req: Request, max_recv: usize) -> Result<Vec<Bytes>, Status> {
    let (parts, body) = req.into_parts();
    let message = read_message(body, max_recv).await?;
    let range = RangeRequest::decode(message)
        .map_err(|e| Status::internal(format!("failed to decode Protobuf message: {e}")))?;
    let request = tonic::Request::from_parts(
        MetadataMap::from_headers(parts.headers),
        parts.extensions,
        range,
    );
    frames(kv.range_wire(request).await?)
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

/// The answer as body frames: all of it in one when it is small, else prefix and header, the
/// key-values, `more` and `count`.
fn frames(wire: WireRange) -> Result<Vec<Bytes>, Status> {
    // Encoded into `Vec`s: prost writes a varint a byte at a time, which a `Vec` takes in
    // far fewer instructions than a `BytesMut`.
    let mut tail = Vec::new();
    if wire.more {
        prost::encoding::bool::encode(3, &wire.more, &mut tail);
    }
    if wire.count != 0 {
        prost::encoding::int64::encode(4, &wire.count, &mut tail);
    }
    let header_len = prost::encoding::message::encoded_len(1, &wire.header);
    let len = header_len + wire.kvs.len() + tail.len();
    let Ok(len32) = u32::try_from(len) else {
        return Err(Status::resource_exhausted(format!(
            "grpc: trying to send message larger than max ({len} vs. {})",
            u32::MAX
        )));
    };
    let joined = PREFIX_LEN + len <= JOIN_LIMIT;
    let mut head = Vec::with_capacity(if joined {
        PREFIX_LEN + len
    } else {
        PREFIX_LEN + header_len
    });
    head.push(0);
    head.extend_from_slice(&len32.to_be_bytes());
    prost::encoding::message::encode(1, &wire.header, &mut head);
    if joined {
        head.extend_from_slice(&wire.kvs);
        head.extend_from_slice(&tail);
        return Ok(vec![head.into()]);
    }
    Ok(vec![head.into(), wire.kvs.into(), tail.into()])
}

fn ok(frames: Vec<Bytes>) -> Response {
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    let frames = frames
        .into_iter()
        .filter(|b| !b.is_empty())
        .map(Frame::data)
        .chain([Frame::trailers(trailers)])
        .map(Ok::<_, Infallible>);
    let mut resp = Response::new(Body::new(StreamBody::new(futures::stream::iter(frames))));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    resp
}

#[cfg(test)]
mod tests {
    use oxcd_api::etcdserverpb::{RangeResponse, ResponseHeader};
    use oxcd_api::mvccpb::KeyValue;

    use super::*;

    #[test]
    fn frames_join_into_the_prefixed_range_response() {
        let kv = KeyValue {
            key: b"a".to_vec(),
            value: b"1".to_vec(),
            create_revision: 2,
            mod_revision: 3,
            version: 2,
            lease: 7,
        };
        let mut kvs = Vec::new();
        prost::encoding::message::encode(2, &kv, &mut kvs);
        prost::encoding::message::encode(2, &kv, &mut kvs);
        let header = ResponseHeader {
            cluster_id: 1,
            member_id: 2,
            revision: 3,
            raft_term: 4,
        };
        for (more, count) in [(false, 0), (false, 2), (true, 5)] {
            let frames = frames(WireRange {
                header,
                kvs: kvs.clone(),
                more,
                count,
            })
            .unwrap();
            assert_eq!(frames.len(), 1, "a small answer is one frame");
            let want = RangeResponse {
                header: Some(header),
                kvs: vec![kv.clone(), kv.clone()],
                more,
                count,
            };
            assert_prefixed(&frames.concat(), &want);
        }
    }

    #[test]
    fn a_large_answer_keeps_its_key_values_in_a_frame_of_their_own() {
        let kv = KeyValue {
            key: b"big".to_vec(),
            value: vec![7; JOIN_LIMIT],
            ..Default::default()
        };
        let mut kvs = Vec::new();
        prost::encoding::message::encode(2, &kv, &mut kvs);
        let header = ResponseHeader::default();
        let frames = frames(WireRange {
            header,
            kvs: kvs.clone(),
            more: true,
            count: 9,
        })
        .unwrap();
        assert_eq!(frames.len(), 3);
        assert_eq!(frames[1][..], kvs[..]);
        let want = RangeResponse {
            header: Some(header),
            kvs: vec![kv],
            more: true,
            count: 9,
        };
        assert_prefixed(&frames.concat(), &want);
    }

    fn assert_prefixed(joined: &[u8], want: &RangeResponse) {
        assert_eq!(joined[0], 0);
        assert_eq!(
            u32::from_be_bytes(joined[1..5].try_into().unwrap()) as usize,
            joined.len() - PREFIX_LEN
        );
        assert_eq!(joined[PREFIX_LEN..], want.encode_to_vec()[..]);
    }

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
}
