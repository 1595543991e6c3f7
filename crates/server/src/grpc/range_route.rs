//! The Range RPC served by hand rather than through tonic's codec (and ahead of the router:
//! [`super::ClientGrpc`] hands its calls here by path), so that its answer is held once. tonic
//! encodes a message into a buffer of its own, which would be a second copy of an answer that
//! the store already reads in wire form ([`WireRange`]). Here a small answer goes to the
//! connection as one body frame (the 5-byte gRPC prefix, the header, the key-values, then
//! `more` and `count`); a large one as three, so that its key-values are never copied. The
//! request and the rest of the call are read and written as [`super::unary`] does.

use std::sync::Arc;

use axum::extract::Request;
use axum::response::Response;
use bytes::Bytes;
use oxcd_api::etcdserverpb::RangeRequest;
use tonic::Status;

use super::kv::KvService;
use super::unary::{self, PREFIX_LEN};
use crate::kv::range::WireRange;

/// The RPC's path on the client port.
pub const PATH: &str = "/etcdserverpb.KV/Range";

/// Answers up to this size go out as one body frame (one HTTP/2 DATA frame at the default
/// frame size): copying the key-values costs less than two more frames would.
const JOIN_LIMIT: usize = 16 * 1024;

/// Answers one call.
pub async fn serve(kv: Arc<KvService>, req: Request, max_recv: usize) -> Response {
    match call(&kv, req, max_recv).await {
        Ok(frames) => unary::answer(frames),
        Err(status) => status.into_http(),
    }
}

async fn call(kv: &KvService, req: Request, max_recv: usize) -> Result<Vec<Bytes>, Status> {
    let request = unary::request::<RangeRequest>(req, max_recv).await?;
    frames(kv.range_wire(request).await?)
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
    let len32 = unary::prefix_len(len)?;
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

#[cfg(test)]
mod tests {
    use oxcd_api::etcdserverpb::{RangeResponse, ResponseHeader};
    use oxcd_api::mvccpb::KeyValue;
    use prost::Message;

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
}
