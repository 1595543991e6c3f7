//! JSON ↔ protobuf for the gateway, through the descriptors of etcd's protos.
//!
//! Requests follow the proto3 JSON mapping as etcd's gateway reads it: a field by its proto
//! name (`range_end`) or JSON name (`rangeEnd`), 64-bit integers as numbers or strings, bytes
//! as padded standard base64 (Go's rules, [`go_base64`]), enums by name or number, `null` for
//! a default. Unlike etcd's gateway, a field the message does not have is refused, so a typo
//! (`"kee"`) is an error instead of an empty request.
//!
//! Responses are written as etcd's gateway writes them (Go's jsonpb with `OrigName`): proto
//! field names, 64-bit integers as strings, bytes as standard base64, enums by name, fields at
//! their zero value left out (a message field that is set is written even when empty), no
//! whitespace, and `<`, `>`, `&`, U+2028 and U+2029 escaped as `\u003c`… as Go's encoder does.

use std::sync::LazyLock;

use bytes::Bytes;
use prost::Message as _;
use prost_reflect::{
    DescriptorPool, DeserializeOptions, DynamicMessage, Kind, MessageDescriptor, MethodDescriptor,
    SerializeOptions,
};

use super::go_base64;

/// The descriptors of every etcd proto, decoded once.
pub fn pool() -> &'static DescriptorPool {
    static POOL: LazyLock<DescriptorPool> = LazyLock::new(|| {
        DescriptorPool::decode(oxcd_api::FILE_DESCRIPTOR_SET)
            .expect("the API crate embeds a valid descriptor set")
    });
    &POOL
}

/// The RPC `service` / `method` (say `etcdserverpb.KV` / `Range`), if the protos declare it.
pub fn method(service: &str, method: &str) -> Option<MethodDescriptor> {
    pool()
        .get_service_by_name(service)?
        .methods()
        .find(|m| m.name() == method)
}

/// Why a request body could not become a request message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub String);

/// Decodes one JSON request (an empty or all-whitespace body, or `null`, is the empty
/// message, as in etcd) and encodes it as protobuf.
pub fn json_to_proto(desc: &MessageDescriptor, json: &[u8]) -> Result<Vec<u8>, DecodeError> {
    if json.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let mut value: serde_json::Value =
        serde_json::from_slice(json).map_err(|e| DecodeError(describe_json_error(&e)))?;
    if value.is_null() {
        return Ok(Vec::new());
    }
    check_bytes_fields(desc, &mut value)?;
    let options = DeserializeOptions::new().deny_unknown_fields(true);
    let message = DynamicMessage::deserialize_with_options(desc.clone(), value, &options)
        .map_err(|e| DecodeError(e.to_string()))?;
    Ok(message.encode_to_vec())
}

/// Holds every `bytes` field of `value` (a `desc` message) to Go's base64 rules, dropping
/// the line breaks Go skips; other mistakes are left for the decoder to name.
fn check_bytes_fields(
    desc: &MessageDescriptor,
    value: &mut serde_json::Value,
) -> Result<(), DecodeError> {
    let serde_json::Value::Object(fields) = value else {
        return Ok(());
    };
    for (name, field_value) in fields.iter_mut() {
        let Some(field) = desc
            .get_field_by_json_name(name)
            .or_else(|| desc.get_field_by_name(name))
        else {
            continue;
        };
        let items: Vec<&mut serde_json::Value> = match field_value {
            serde_json::Value::Array(items) if field.is_list() => items.iter_mut().collect(),
            other => vec![other],
        };
        for item in items {
            match (field.kind(), item) {
                (Kind::Bytes, serde_json::Value::String(text)) => {
                    go_base64::check(text.as_bytes())
                        .map_err(|at| DecodeError(go_base64::message(at)))?;
                    if text.contains(['\n', '\r']) {
                        text.retain(|c| c != '\n' && c != '\r');
                    }
                }
                (Kind::Message(inner), item) if !field.is_map() => {
                    check_bytes_fields(&inner, item)?
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// The length of the first whole JSON value in `buf` (with the whitespace before it), for a
/// request stream of concatenated objects; `None` while it is incomplete or `buf` holds only
/// whitespace.
pub fn split_json_value(buf: &[u8]) -> Result<Option<usize>, DecodeError> {
    let mut values = serde_json::Deserializer::from_slice(buf).into_iter::<serde::de::IgnoredAny>();
    match values.next() {
        None => Ok(None),
        Some(Ok(_)) => Ok(Some(values.byte_offset())),
        Some(Err(e)) if e.is_eof() => Ok(None),
        Some(Err(e)) => Err(DecodeError(describe_json_error(&e))),
    }
}

/// serde_json's text, without the position when the whole body is one line anyway.
fn describe_json_error(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match e.classify() {
        serde_json::error::Category::Eof => "unexpected end of JSON input".to_owned(),
        _ => text,
    }
}

/// Encodes a protobuf `desc` message as etcd's gateway does. Fails only when `proto` does not
/// decode, which means the server produced a response its own protos do not describe.
pub fn proto_to_json(desc: &MessageDescriptor, proto: &[u8]) -> Result<Bytes, String> {
    let message = DynamicMessage::decode(desc.clone(), proto)
        .map_err(|e| format!("response does not decode as {}: {e}", desc.full_name()))?;
    Ok(Bytes::from(message_to_json(&message)))
}

/// Writes `message` with etcd's gateway conventions.
pub fn message_to_json(message: &DynamicMessage) -> Vec<u8> {
    let options = SerializeOptions::new()
        .use_proto_field_name(true)
        .stringify_64_bit_integers(true)
        .use_enum_numbers(false)
        .skip_default_fields(true);
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::new(&mut out);
    message
        .serialize_with_options(&mut ser, &options)
        .expect("writing JSON to memory cannot fail");
    escape_like_go(out)
}

/// Escapes what Go's JSON encoder escapes and serde_json does not. These characters can only
/// occur inside strings in JSON text, so replacing them anywhere is safe.
pub fn escape_like_go(json: Vec<u8>) -> Vec<u8> {
    const LS: &[u8] = "\u{2028}".as_bytes();
    const PS: &[u8] = "\u{2029}".as_bytes();
    let needs = json.iter().any(|b| matches!(b, b'<' | b'>' | b'&' | 0xe2));
    if !needs {
        return json;
    }
    let mut out = Vec::with_capacity(json.len() + 16);
    let mut i = 0;
    while i < json.len() {
        let rest = &json[i..];
        match rest[0] {
            b'<' => out.extend_from_slice(b"\\u003c"),
            b'>' => out.extend_from_slice(b"\\u003e"),
            b'&' => out.extend_from_slice(b"\\u0026"),
            _ if rest.starts_with(LS) => {
                out.extend_from_slice(b"\\u2028");
                i += LS.len();
                continue;
            }
            _ if rest.starts_with(PS) => {
                out.extend_from_slice(b"\\u2029");
                i += PS.len();
                continue;
            }
            b => out.push(b),
        }
        i += 1;
    }
    out
}

/// A JSON string literal as Go writes it.
pub fn json_string(s: &str) -> String {
    let quoted = serde_json::to_vec(s).expect("strings always serialize");
    String::from_utf8(escape_like_go(quoted)).expect("escaping keeps UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(name: &str) -> MessageDescriptor {
        pool()
            .get_message_by_name(name)
            .unwrap_or_else(|| panic!("{name} is in the pool"))
    }

    #[test]
    fn every_etcd_service_is_in_the_pool() {
        for svc in [
            "etcdserverpb.KV",
            "etcdserverpb.Watch",
            "etcdserverpb.Lease",
            "etcdserverpb.Cluster",
            "etcdserverpb.Maintenance",
            "etcdserverpb.Auth",
            "v3lockpb.Lock",
            "v3electionpb.Election",
        ] {
            assert!(pool().get_service_by_name(svc).is_some(), "{svc}");
        }
        assert!(method("etcdserverpb.KV", "Range").is_some());
        assert!(method("etcdserverpb.KV", "Nope").is_none());
    }

    #[test]
    fn request_accepts_proto_and_json_names_strings_and_numbers() {
        use oxcd_api::etcdserverpb::{range_request::SortOrder, RangeRequest};
        let d = desc("etcdserverpb.RangeRequest");
        let bytes = json_to_proto(
            &d,
            br#"{"key":"Zm9v","rangeEnd":"Zm9w","limit":"5","revision":7,"sort_order":"DESCEND","keys_only":true}"#,
        )
        .unwrap();
        let req = RangeRequest::decode(&bytes[..]).unwrap();
        assert_eq!(req.key, b"foo");
        assert_eq!(req.range_end, b"fop");
        assert_eq!((req.limit, req.revision), (5, 7));
        assert_eq!(req.sort_order, SortOrder::Descend as i32);
        assert!(req.keys_only);
    }

    #[test]
    fn empty_body_is_the_empty_message() {
        let d = desc("etcdserverpb.RangeRequest");
        assert_eq!(json_to_proto(&d, b"").unwrap(), Vec::<u8>::new());
        assert_eq!(json_to_proto(&d, b" \n").unwrap(), Vec::<u8>::new());
        assert_eq!(json_to_proto(&d, b"null").unwrap(), Vec::<u8>::new());
        assert_eq!(
            json_to_proto(&d, br#"{"key":null}"#).unwrap(),
            Vec::<u8>::new()
        );
    }

    #[test]
    fn bytes_follow_gos_base64_rules_everywhere() {
        use oxcd_api::etcdserverpb::{request_op, TxnRequest};
        let d = desc("etcdserverpb.RangeRequest");
        for (body, at) in [
            (&br#"{"key":"Zm9v=="}"#[..], 4),
            (br#"{"key":"Zm9v_-"}"#, 4),
            (br#"{"key":"Zm9"}"#, 0),
            (br#"{"range_end":"!"}"#, 0),
            (br#"{"rangeEnd":"YQ="}"#, 3),
        ] {
            let err = json_to_proto(&d, body).unwrap_err();
            assert_eq!(err.0, format!("illegal base64 data at input byte {at}"));
        }
        // Nested in repeated messages and oneofs too.
        let t = desc("etcdserverpb.TxnRequest");
        let err = json_to_proto(
            &t,
            br#"{"compare":[{"key":"YQ=="}],"success":[{"request_put":{"key":"YQ==","value":"x-y"}}]}"#,
        )
        .unwrap_err();
        assert_eq!(err.0, "illegal base64 data at input byte 1");
        // Line breaks are skipped, as Go does.
        let bytes = json_to_proto(
            &t,
            br#"{"success":[{"request_put":{"key":"Zm9v\nYmFy","value":"YQ==\r\n"}}]}"#,
        )
        .unwrap();
        let txn = TxnRequest::decode(&bytes[..]).unwrap();
        match &txn.success[0].request {
            Some(request_op::Request::RequestPut(put)) => {
                assert_eq!(
                    (put.key.as_slice(), put.value.as_slice()),
                    (&b"foobar"[..], &b"a"[..])
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_requests_are_errors_not_panics() {
        let d = desc("etcdserverpb.RangeRequest");
        for bad in [
            &b"{bad"[..],
            b"{\"key\":\"!!!\"}",
            b"{\"kee\":\"Zm9v\"}",
            b"{\"limit\":\"abc\"}",
            b"{\"key\":\"Zm9v\"} trailing",
            b"[1,2]",
            b"\"str\"",
            b"{\"key\":",
            b"{\"sort_order\":\"SIDEWAYS\"}",
            b"\xff\xfe",
        ] {
            let err = json_to_proto(&d, bad).expect_err(&String::from_utf8_lossy(bad));
            assert!(!err.0.is_empty());
        }
        let err = json_to_proto(&d, b"{\"kee\":\"Zm9v\"}").unwrap_err();
        assert!(err.0.contains("kee"), "{err}");
    }

    #[test]
    fn request_streams_split_into_objects() {
        let stream = br#" {"a":{"b":"}"}} {"c":1}{"d""#;
        let first = split_json_value(stream).unwrap().unwrap();
        assert_eq!(&stream[..first], br#" {"a":{"b":"}"}}"#);
        let rest = &stream[first..];
        let second = split_json_value(rest).unwrap().unwrap();
        assert_eq!(&rest[..second], br#" {"c":1}"#);
        assert_eq!(split_json_value(&rest[second..]).unwrap(), None);
        assert_eq!(split_json_value(b"  \n").unwrap(), None);
        assert!(split_json_value(b"{bad").is_err());
    }

    #[test]
    fn response_is_written_as_etcds_gateway_writes_it() {
        use oxcd_api::etcdserverpb::{RangeResponse, ResponseHeader};
        use oxcd_api::mvccpb::KeyValue;
        let resp = RangeResponse {
            header: Some(ResponseHeader {
                cluster_id: 324952591200643719,
                member_id: 3319814642761637952,
                revision: 2,
                raft_term: 2,
            }),
            kvs: vec![KeyValue {
                key: b"foo".to_vec(),
                create_revision: 2,
                mod_revision: 2,
                version: 1,
                value: b"bar".to_vec(),
                lease: 0,
            }],
            more: false,
            count: 1,
        };
        let json =
            proto_to_json(&desc("etcdserverpb.RangeResponse"), &resp.encode_to_vec()).unwrap();
        assert_eq!(
            std::str::from_utf8(&json).unwrap(),
            r#"{"header":{"cluster_id":"324952591200643719","member_id":"3319814642761637952","revision":"2","raft_term":"2"},"kvs":[{"key":"Zm9v","create_revision":"2","mod_revision":"2","version":"1","value":"YmFy"}],"count":"1"}"#
        );
    }

    #[test]
    fn set_but_empty_messages_and_oneofs_are_written() {
        use oxcd_api::etcdserverpb::{response_op, PutResponse, ResponseOp, TxnResponse};
        let resp = TxnResponse {
            header: None,
            succeeded: true,
            responses: vec![ResponseOp {
                response: Some(response_op::Response::ResponsePut(PutResponse::default())),
            }],
        };
        let json = proto_to_json(&desc("etcdserverpb.TxnResponse"), &resp.encode_to_vec()).unwrap();
        assert_eq!(
            std::str::from_utf8(&json).unwrap(),
            r#"{"succeeded":true,"responses":[{"response_put":{}}]}"#
        );
    }

    #[test]
    fn enums_by_name_and_etcd_field_names() {
        use oxcd_api::etcdserverpb::{Member, MemberListResponse};
        use oxcd_api::mvccpb::{event::EventType, Event};
        let ev = Event {
            r#type: EventType::Delete as i32,
            kv: None,
            prev_kv: None,
        };
        let json = proto_to_json(&desc("mvccpb.Event"), &ev.encode_to_vec()).unwrap();
        assert_eq!(&json[..], br#"{"type":"DELETE"}"#);
        let list = MemberListResponse {
            header: None,
            members: vec![Member {
                id: 1,
                name: "a<b&c>".into(),
                peer_ur_ls: vec!["http://x".into()],
                client_ur_ls: vec![],
                is_learner: true,
            }],
        };
        let json = proto_to_json(
            &desc("etcdserverpb.MemberListResponse"),
            &list.encode_to_vec(),
        )
        .unwrap();
        assert_eq!(
            std::str::from_utf8(&json).unwrap(),
            r#"{"members":[{"ID":"1","name":"a\u003cb\u0026c\u003e","peerURLs":["http://x"],"isLearner":true}]}"#
        );
    }

    #[test]
    fn go_escaping_of_separators() {
        assert_eq!(json_string("a\u{2028}b\u{2029}"), r#""a\u2028b\u2029""#);
        assert_eq!(json_string("é"), "\"é\"");
    }

    #[test]
    fn undecodable_response_is_an_error() {
        let d = desc("etcdserverpb.RangeResponse");
        assert!(proto_to_json(&d, &[0xff, 0xff, 0xff]).is_err());
    }
}
