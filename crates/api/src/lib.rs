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
