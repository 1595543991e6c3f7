//! Member-to-member transport: raft messages travel as bytes over one client-streaming gRPC
//! call per peer (`oxcdpb.Peer/Stream`), on the peer URLs, in TLS when configured.

pub mod activity;
mod client;
mod lease;
pub mod metrics;
mod promote;
mod server;
pub mod stats;

pub(crate) use client::dial;
pub use client::{discover_self, PeerContext, PeerTransport};
pub use lease::PeerLeaseForwarder;
pub use promote::forward_promote;
pub use server::PeerService;
pub use stats::TransportStats;
