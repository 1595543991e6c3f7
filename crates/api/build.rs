//! Compiles the `.proto` files under `proto/` with protox (pure Rust, no system protoc)
//! into one FileDescriptorSet, writes it to `$OUT_DIR/oxcd_descriptor.bin`, and
//! generates prost messages plus tonic clients and servers from it.

use std::path::PathBuf;

use prost::Message;

/// Every proto file, relative to `proto/` (also the import root).
const PROTOS: &[&str] = &[
    "mvccpb/kv.proto",
    "authpb/auth.proto",
    "etcdserverpb/rpc.proto",
    "etcdserverpb/etcdserver.proto",
    "etcdserverpb/raft_internal.proto",
    "membershippb/membership.proto",
    "leasepb/lease.proto",
    "v3lockpb/v3lock.proto",
    "v3electionpb/v3election.proto",
    "oxcdpb/peer.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("proto");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let files: Vec<PathBuf> = PROTOS.iter().map(|f| root.join(f)).collect();

    let fds = protox::compile(&files, [&root])?;
    std::fs::write(out_dir.join("oxcd_descriptor.bin"), fds.encode_to_vec())?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Raft payloads and snapshot pieces can be megabytes: decode them without a copy.
        .bytes(".oxcdpb.PeerMessage.message")
        .bytes(".oxcdpb.SnapshotChunk.metadata")
        .bytes(".oxcdpb.SnapshotChunk.data")
        .compile_fds(fds)?;

    println!("cargo:rerun-if-changed=proto");
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }
    Ok(())
}
