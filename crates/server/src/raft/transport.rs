//! How the raft thread reaches its peers. The raft loop only sees this trait, so a test can
//! put an in-memory network (with cuts and drops) in place of the real peer transport.

use raft::eraftpb::Message;

/// Delivers raft messages to other members. Called only from the raft thread; must not block
/// (queue and return): raft retries anything lost, so dropping a message is always safe.
pub trait Transport: Send {
    fn send(&mut self, msgs: Vec<Message>);
    /// Starts talking to a member (added, or with new peer URLs).
    fn add_peer(&mut self, id: u64, peer_urls: Vec<String>);
    /// Stops talking to a removed member.
    fn remove_peer(&mut self, id: u64);
}
