//! The Range RPC served by hand rather than through tonic's codec, so that its answer is held
//! once. tonic encodes a message into a buffer of its own, which would be a second copy of an
//! answer that the store already reads in wire form ([`WireRange`]). Here the answer's bytes
//! go to the connection as they are: the 5-byte gRPC prefix and the header, the key-values,
//! then `more` and `count`, each a body frame of its own, then the `grpc-status` trailer.
//! Errors are trailers-only responses, as tonic writes them.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use bytes::{BufMut, Bytes, BytesMut};
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

/// Adds the Range route to the client gRPC router, ahead of tonic's KV service.
pub fn add(router: axum::Router, kv: Arc<KvService>, max_recv_msg_size: usize) -> axum::Router {
    router.route_service(
        PATH,
        tower::service_fn(move |req: Request| {
            let kv = kv.clone();
            async move {
                let answer = match call(&kv, req, max_recv_msg_size).await {
                    Ok(frames) => ok(frames),
                    Err(status) => status.into_http(),
                };
                Ok::<_, Infallible>(answer)
            }
        }),
    )
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
        buf.extend_from_slice(&data);
        if len.is_none() && buf.len() >= PREFIX_LEN {
            if buf[0] != 0 {
                return Err(Status::unimplemented(
                    "compressed requests are not supported by this server",
                ));
            }
            let n = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
            if n > max {
                return Err(Status::resource_exhausted(format!(
                    "grpc: received message larger than max ({n} vs. {max})"
                )));
            }
            len = Some(n);
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

/// The answer as body frames: prefix and header, the key-values, `more` and `count`.
fn frames(wire: WireRange) -> Result<Vec<Bytes>, Status> {
    let mut head = BytesMut::new();
    head.put_bytes(0, PREFIX_LEN);
    prost::encoding::message::encode(1, &wire.header, &mut head);
    let mut tail = BytesMut::new();
    if wire.more {
        prost::encoding::bool::encode(3, &wire.more, &mut tail);
    }
    if wire.count != 0 {
        prost::encoding::int64::encode(4, &wire.count, &mut tail);
    }
    let len = head.len() - PREFIX_LEN + wire.kvs.len() + tail.len();
    let Ok(len32) = u32::try_from(len) else {
        return Err(Status::resource_exhausted(format!(
            "grpc: trying to send message larger than max ({len} vs. {})",
            u32::MAX
        )));
    };
    head[1..PREFIX_LEN].copy_from_slice(&len32.to_be_bytes());
    Ok(vec![head.freeze(), Bytes::from(wire.kvs), tail.freeze()])
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
            let joined: Vec<u8> = frames(WireRange {
                header,
                kvs: kvs.clone(),
                more,
                count,
            })
            .unwrap()
            .concat();
            let want = RangeResponse {
                header: Some(header),
                kvs: vec![kv.clone(), kv.clone()],
                more,
                count,
            };
            assert_eq!(joined[0], 0);
            assert_eq!(
                u32::from_be_bytes(joined[1..5].try_into().unwrap()) as usize,
                joined.len() - PREFIX_LEN
            );
            assert_eq!(joined[PREFIX_LEN..], want.encode_to_vec()[..]);
        }
    }
}
