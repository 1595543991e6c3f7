//! How the raft thread reaches its peers. The raft loop only sees this trait, so a test can
//! put an in-memory network (with cuts and drops) in place of the real peer transport.

use raft::eraftpb::Message;

/// Delivers raft messages to other members. Called only from the raft thread; must not block
/// (queue and return): raft retries anything lost, so dropping a message is always safe.
pub trait Transport: Send {
    fn send(&mut self, msgs: Vec<Message>);
}

/// The transport of a cluster of one: there is nobody to talk to, so any message addressed
/// elsewhere is a bug in membership, logged and dropped.
pub struct NoPeers;

impl Transport for NoPeers {
    fn send(&mut self, msgs: Vec<Message>) {
        for msg in msgs {
            tracing::warn!(to = msg.to, "no peer transport for raft message; dropped");
        }
    }
}
