//! etcd's v3 API for oxcd: the protobuf messages and gRPC services that etcd 3.5 clients
//! speak, oxcd's own peer protocol, and etcd's error texts and codes.
//!
//! # What is here
//!
//! | module | proto package | holds |
//! |---|---|---|
//! | [`etcdserverpb`] | `etcdserverpb` | the KV, Watch, Lease, Cluster, Maintenance and Auth services; the [`InternalRaftRequest`](etcdserverpb::InternalRaftRequest) a member proposes through Raft; the v2 `Request` and WAL `Metadata` |
//! | [`mvccpb`] | `mvccpb` | `KeyValue` and watch `Event` |
//! | [`authpb`] | `authpb` | `User`, `Role`, `Permission` as the auth store keeps them |
//! | [`leasepb`] | `leasepb` | `Lease` as the lease table keeps it |
//! | [`membershippb`] | `membershippb` | member attributes and cluster version, replicated through Raft |
//! | [`v3lockpb`] | `v3lockpb` | the Lock service |
//! | [`v3electionpb`] | `v3electionpb` | the Election service |
//! | [`oxcdpb`] | `oxcdpb` | oxcd's member-to-member `Peer` service (Raft messages, snapshots, lease forwarding) |
//! | [`rpctypes`] | — | [`EtcdError`]: every etcd v3 RPC error with its exact text and gRPC code |
//!
//! Every etcd package keeps etcd's package, message, field and method names and numbers,
//! so service paths are etcd's (`/etcdserverpb.KV/Range`, `/v3lockpb.Lock/Lock`,
//! `/v3electionpb.Election/Campaign`) and any etcd client interoperates. Each generated
//! module has a `*_client` and a `*_server` submodule per service (for instance
//! [`etcdserverpb::kv_server::KvServer`]).
//!
//! # How it is generated
//!
//! The `.proto` files under `proto/` are ours, written from etcd's wire facts without
//! gogoproto or google.api annotations. `build.rs` compiles them with protox (pure Rust;
//! no system `protoc`) into one `FileDescriptorSet`, which is both handed to
//! tonic-prost-build to generate the Rust below and embedded as [`FILE_DESCRIPTOR_SET`],
//! for the HTTP/JSON gateway and gRPC reflection.
//!
//! Field names are turned into Rust by prost's snake-case rule, so etcd's mixed-case
//! names come out as `ttl`, `id`, `granted_ttl`, `is_learner`, and `peerURLs` as
//! `peer_ur_ls` (as in every prost-generated etcd client).

#![deny(missing_docs)]

/// etcd's public v3 API: services KV, Watch, Lease, Cluster, Maintenance, Auth, and the
/// internal Raft request.
#[allow(missing_docs, clippy::all)]
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}

/// Stored key-values and watch events.
#[allow(missing_docs, clippy::all)]
pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}

/// Users, roles and permissions as the auth store keeps them.
#[allow(missing_docs, clippy::all)]
pub mod authpb {
    tonic::include_proto!("authpb");
}

/// Leases as the lease table keeps them.
#[allow(missing_docs, clippy::all)]
pub mod leasepb {
    tonic::include_proto!("leasepb");
}

/// Member attributes and cluster version, replicated through Raft.
#[allow(missing_docs, clippy::all)]
pub mod membershippb {
    tonic::include_proto!("membershippb");
}

/// The Lock service.
#[allow(missing_docs, clippy::all)]
pub mod v3lockpb {
    tonic::include_proto!("v3lockpb");
}

/// The Election service.
#[allow(missing_docs, clippy::all)]
pub mod v3electionpb {
    tonic::include_proto!("v3electionpb");
}

/// oxcd's member-to-member transport.
#[allow(missing_docs, clippy::all)]
pub mod oxcdpb {
    tonic::include_proto!("oxcdpb");
}

pub mod rpctypes;

pub use rpctypes::EtcdError;

/// The encoded `google.protobuf.FileDescriptorSet` of every proto in this crate (with
/// imports and source info), for prost-reflect and gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/oxcd_descriptor.bin"));

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// Just enough of `google.protobuf.FileDescriptorSet` to list packages, services
    /// and methods (prost skips the fields not named here).
    mod descriptor {
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct FileDescriptorSet {
            #[prost(message, repeated, tag = "1")]
            pub file: Vec<FileDescriptorProto>,
        }
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct FileDescriptorProto {
            #[prost(string, optional, tag = "1")]
            pub name: Option<String>,
            #[prost(string, optional, tag = "2")]
            pub package: Option<String>,
            #[prost(message, repeated, tag = "6")]
            pub service: Vec<ServiceDescriptorProto>,
        }
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct ServiceDescriptorProto {
            #[prost(string, optional, tag = "1")]
            pub name: Option<String>,
            #[prost(message, repeated, tag = "2")]
            pub method: Vec<MethodDescriptorProto>,
        }
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct MethodDescriptorProto {
            #[prost(string, optional, tag = "1")]
            pub name: Option<String>,
        }
    }

    /// Every gRPC path (`/package.Service/Method`) in the descriptor set.
    fn method_paths() -> Vec<String> {
        let fds = descriptor::FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).unwrap();
        let mut paths = Vec::new();
        for file in &fds.file {
            let package = file.package.clone().unwrap_or_default();
            for service in &file.service {
                let service_name = service.name.clone().unwrap_or_default();
                for method in &service.method {
                    let method_name = method.name.clone().unwrap_or_default();
                    paths.push(format!("/{package}.{service_name}/{method_name}"));
                }
            }
        }
        paths
    }

    #[test]
    fn descriptor_set_has_etcd_service_paths() {
        let paths = method_paths();
        for expected in [
            "/etcdserverpb.KV/Range",
            "/etcdserverpb.KV/RangeStream",
            "/etcdserverpb.KV/Txn",
            "/etcdserverpb.Watch/Watch",
            "/etcdserverpb.Lease/LeaseKeepAlive",
            "/etcdserverpb.Cluster/MemberPromote",
            "/etcdserverpb.Maintenance/Downgrade",
            "/etcdserverpb.Maintenance/MoveLeader",
            "/etcdserverpb.Auth/AuthStatus",
            "/etcdserverpb.Auth/RoleRevokePermission",
            "/v3lockpb.Lock/Lock",
            "/v3lockpb.Lock/Unlock",
            "/v3electionpb.Election/Campaign",
            "/v3electionpb.Election/Observe",
            "/oxcdpb.Peer/Stream",
            "/oxcdpb.Peer/Snapshot",
            "/oxcdpb.Peer/LeaseRenew",
            "/oxcdpb.Peer/Members",
            "/oxcdpb.Peer/HashKV",
            "/oxcdpb.Peer/MemberPromote",
        ] {
            assert!(paths.iter().any(|p| p == expected), "missing {expected}");
        }
        // KV 6, Watch 1, Lease 5, Cluster 5, Maintenance 8, Auth 17, Lock 2, Election 5, Peer 7.
        assert_eq!(paths.len(), 56, "{paths:#?}");
    }

    #[test]
    fn generated_servers_are_named_as_etcd() {
        assert_eq!(etcdserverpb::kv_server::SERVICE_NAME, "etcdserverpb.KV");
        assert_eq!(
            etcdserverpb::maintenance_server::SERVICE_NAME,
            "etcdserverpb.Maintenance"
        );
        assert_eq!(v3lockpb::lock_server::SERVICE_NAME, "v3lockpb.Lock");
        assert_eq!(
            v3electionpb::election_server::SERVICE_NAME,
            "v3electionpb.Election"
        );
        assert_eq!(oxcdpb::peer_server::SERVICE_NAME, "oxcdpb.Peer");
    }

    #[test]
    fn put_request_encodes_as_etcd() {
        let put = etcdserverpb::PutRequest {
            key: b"foo".to_vec(),
            value: b"bar".to_vec(),
            lease: 7,
            prev_kv: true,
            ..Default::default()
        };
        // key=1 "foo", value=2 "bar", lease=3 varint 7, prev_kv=4 true.
        let expected = [
            0x0a, 3, b'f', b'o', b'o', 0x12, 3, b'b', b'a', b'r', 0x18, 7, 0x20, 1,
        ];
        assert_eq!(put.encode_to_vec(), expected);
        assert_eq!(
            etcdserverpb::PutRequest::decode(&expected[..]).unwrap(),
            put
        );
    }

    #[test]
    fn mixed_case_fields_keep_etcd_numbers() {
        // LeaseGrantRequest: TTL=1, ID=2. Member: ID=1, name=2, peerURLs=3, clientURLs=4, isLearner=5.
        let grant = etcdserverpb::LeaseGrantRequest { ttl: 5, id: 0x10 };
        assert_eq!(grant.encode_to_vec(), [0x08, 5, 0x10, 0x10]);
        let member = etcdserverpb::Member {
            id: 1,
            name: "a".into(),
            peer_ur_ls: vec!["p".into()],
            client_ur_ls: vec!["c".into()],
            is_learner: true,
        };
        assert_eq!(
            member.encode_to_vec(),
            [0x08, 1, 0x12, 1, b'a', 0x1a, 1, b'p', 0x22, 1, b'c', 0x28, 1]
        );
        // MemberListRequest.linearizable (3.5) is field 1.
        let list = etcdserverpb::MemberListRequest { linearizable: true };
        assert_eq!(list.encode_to_vec(), [0x08, 1]);
    }

    #[test]
    fn txn_round_trips_through_internal_raft_request() {
        use etcdserverpb::{compare, request_op, Compare, RequestOp, TxnRequest};
        let txn = TxnRequest {
            compare: vec![Compare {
                result: compare::CompareResult::Equal as i32,
                target: compare::CompareTarget::Version as i32,
                key: b"k".to_vec(),
                target_union: Some(compare::TargetUnion::Version(0)),
                range_end: vec![],
            }],
            success: vec![RequestOp {
                request: Some(request_op::Request::RequestPut(etcdserverpb::PutRequest {
                    key: b"k".to_vec(),
                    value: b"v".to_vec(),
                    ..Default::default()
                })),
            }],
            failure: vec![],
        };
        let req = etcdserverpb::InternalRaftRequest {
            header: Some(etcdserverpb::RequestHeader {
                id: 42,
                username: "root".into(),
                auth_revision: 3,
            }),
            txn: Some(txn.clone()),
            ..Default::default()
        };
        let bytes = req.encode_to_vec();
        // txn is field 6 (tag 0x32); header is field 100, tag 802 = varint [0xa2, 0x06].
        assert_eq!(bytes[0], 0x32);
        assert!(bytes.windows(2).any(|w| w == [0xa2, 0x06]));
        let back = etcdserverpb::InternalRaftRequest::decode(bytes.as_slice()).unwrap();
        assert_eq!(back.txn, Some(txn));
        assert_eq!(back.header.unwrap().id, 42);
        assert!(back.put.is_none());
    }

    #[test]
    fn watch_response_events_are_field_11() {
        let resp = etcdserverpb::WatchResponse {
            events: vec![mvccpb::Event {
                r#type: mvccpb::event::EventType::Delete as i32,
                kv: Some(mvccpb::KeyValue {
                    key: b"a".to_vec(),
                    mod_revision: 9,
                    ..Default::default()
                }),
                prev_kv: None,
            }],
            ..Default::default()
        };
        let bytes = resp.encode_to_vec();
        assert_eq!(bytes[0], 0x5a); // 11 << 3 | 2
        assert_eq!(
            etcdserverpb::WatchResponse::decode(bytes.as_slice()).unwrap(),
            resp
        );
    }

    #[test]
    fn garbage_does_not_decode() {
        // A length prefix running past the end of the buffer.
        assert!(etcdserverpb::RangeRequest::decode(&[0x0a, 0x05, b'x'][..]).is_err());
        assert!(oxcdpb::PeerMessage::decode(&[0xff][..]).is_err());
    }

    #[test]
    fn peer_message_payload_is_bytes() {
        let msg = oxcdpb::PeerMessage {
            cluster_id: 1,
            from: 2,
            message: bytes::Bytes::from_static(b"raft"),
        };
        let back = oxcdpb::PeerMessage::decode(msg.encode_to_vec().as_slice()).unwrap();
        assert_eq!(back, msg);
    }
}
