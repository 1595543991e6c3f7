//! The Raft side of the server: the node loop that owns raft-rs, its transport, and the
//! status it publishes to request handlers.

mod heartbeat;
mod log_store;
mod logger;
mod node;
mod term_runs;
mod transport;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

pub use log_store::{LogStore, PAYLOAD_BUDGET};
pub use logger::raft_logger;
pub use node::{Apply, ProposalResult, RaftInput, RaftNode};
pub use transport::Transport;

/// Raft facts that request handlers read without asking the raft thread.
#[derive(Default)]
pub struct RaftStatus {
    leader: AtomicU64,
    is_leader: AtomicBool,
    term: AtomicU64,
    commit: AtomicU64,
    leader_changes: AtomicU64,
}

impl RaftStatus {
    pub fn leader(&self) -> u64 {
        self.leader.load(Ordering::Acquire)
    }

    pub fn is_leader(&self) -> bool {
        self.is_leader.load(Ordering::Acquire)
    }

    pub fn term(&self) -> u64 {
        self.term.load(Ordering::Acquire)
    }

    /// The highest log index this member knows to be committed.
    pub fn commit(&self) -> u64 {
        self.commit.load(Ordering::Acquire)
    }

    pub fn leader_changes(&self) -> u64 {
        self.leader_changes.load(Ordering::Acquire)
    }

    pub(crate) fn set_soft_state(&self, leader: u64, is_leader: bool) {
        let previous = self.leader.swap(leader, Ordering::AcqRel);
        if previous != leader && leader != raft::INVALID_ID {
            self.leader_changes.fetch_add(1, Ordering::AcqRel);
            tracing::info!(leader = format!("{leader:x}"), "raft leader changed");
        }
        self.is_leader.store(is_leader, Ordering::Release);
    }

    pub(crate) fn set_term(&self, term: u64) {
        self.term.store(term, Ordering::Release);
    }

    pub(crate) fn set_commit(&self, index: u64) {
        self.commit.fetch_max(index, Ordering::AcqRel);
    }
}
