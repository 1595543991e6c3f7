//! Since when each peer has been reachable, as etcd's transport tells it (`ActiveSince`),
//! for the strict reconfiguration checks: a member change must not leave fewer members
//! connected than a quorum.
//!
//! A peer becomes active when a stream to it is established, and stays so while it
//! answers: each answer of the transport's probe renews it. It is inactive once its
//! connection breaks, or once it has not answered for [`SILENCE`] (a stopped process keeps
//! its TCP connections; etcd notices it by its stream's read timeout). An answer after that
//! starts a new active period.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::metrics::PROBE_INTERVAL;

/// How long a peer may go unheard before it counts as gone: two probe periods, so that one
/// slow answer on a loaded machine is not taken for a lost peer.
const SILENCE: Duration = Duration::from_secs(2 * PROBE_INTERVAL.as_secs());

#[derive(Default)]
pub struct PeerActivity {
    peers: Mutex<HashMap<u64, Active>>,
}

/// An active period: when it began, and when the peer was last heard.
#[derive(Clone, Copy)]
struct Active {
    since: Instant,
    heard: Instant,
}

impl PeerActivity {
    /// The peer answered (or a stream to it was just established).
    pub fn heard(&self, id: u64) {
        let now = Instant::now();
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        let since = match peers.get(&id) {
            Some(active) if now.duration_since(active.heard) <= SILENCE => active.since,
            _ => now,
        };
        peers.insert(id, Active { since, heard: now });
    }

    /// The connection to the peer broke.
    pub fn lost(&self, id: u64) {
        self.peers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }

    /// Since when the peer has been active, or `None` if it is not.
    pub fn active_since(&self, id: u64) -> Option<Instant> {
        let peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        let active = peers.get(&id)?;
        (active.heard.elapsed() <= SILENCE).then_some(active.since)
    }

    /// Whether the peer has been active since at least `since` (etcd's `isConnectedSince`).
    pub fn connected_since(&self, id: u64, since: Instant) -> bool {
        self.active_since(id).is_some_and(|t| t <= since)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_is_active_from_its_first_answer_until_it_is_lost() {
        let activity = PeerActivity::default();
        assert!(activity.active_since(1).is_none());
        let before = Instant::now();
        activity.heard(1);
        let since = activity.active_since(1).expect("active");
        assert!(since >= before);
        // Later answers keep the period's start.
        activity.heard(1);
        assert_eq!(activity.active_since(1), Some(since));
        assert!(activity.connected_since(1, Instant::now()));
        if let Some(earlier) = since.checked_sub(Duration::from_millis(1)) {
            assert!(!activity.connected_since(1, earlier));
        }
        activity.lost(1);
        assert!(activity.active_since(1).is_none());
    }
}
