//! Late heartbeats: a leader that sends a follower's heartbeat more than twice the heartbeat
//! interval after the previous one is overloaded (often a slow disk holding up its loop), and
//! its followers may start an election. Logged and counted as etcd does
//! (`etcd_server_heartbeat_send_failures_total`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use raft::eraftpb::{Message, MessageType};

/// When each follower's last heartbeat went out.
pub(super) struct HeartbeatTimes {
    /// Longer than this between two heartbeats is late: twice the heartbeat interval.
    max_gap: Duration,
    last: HashMap<u64, Instant>,
}

impl HeartbeatTimes {
    pub(super) fn new(heartbeat: Duration) -> HeartbeatTimes {
        HeartbeatTimes {
            max_gap: heartbeat * 2,
            last: HashMap::new(),
        }
    }

    /// Forgets every time: after a change of role, the first heartbeats are not late.
    pub(super) fn reset(&mut self) {
        self.last.clear();
    }

    /// Notes the heartbeats among `msgs`, sent now; returns how many were late.
    pub(super) fn observe(&mut self, msgs: &[Message], now: Instant) -> u64 {
        let mut late = 0;
        for m in msgs {
            if m.get_msg_type() != MessageType::MsgHeartbeat {
                continue;
            }
            if let Some(prev) = self.last.insert(m.to, now) {
                let gap = now.duration_since(prev);
                if gap > self.max_gap {
                    late += 1;
                    tracing::warn!(
                        to = format!("{:x}", m.to),
                        "heartbeat-interval" = ?self.max_gap / 2,
                        "expected-duration" = ?self.max_gap,
                        "exceeded-duration" = ?(gap - self.max_gap),
                        "leader failed to send out heartbeat on time; took too long, leader is overloaded likely from slow disk"
                    );
                }
            }
        }
        late
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heartbeat(to: u64) -> Message {
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgHeartbeat);
        m.to = to;
        m
    }

    #[test]
    fn a_gap_over_twice_the_interval_is_late() {
        let mut t = HeartbeatTimes::new(Duration::from_millis(100));
        let start = Instant::now();
        assert_eq!(t.observe(&[heartbeat(2), heartbeat(3)], start), 0);
        let soon = start + Duration::from_millis(150);
        assert_eq!(t.observe(&[heartbeat(2)], soon), 0);
        let late = soon + Duration::from_millis(250);
        assert_eq!(t.observe(&[heartbeat(2), heartbeat(3)], late), 2);
        t.reset();
        let later = late + Duration::from_secs(5);
        assert_eq!(
            t.observe(&[heartbeat(2)], later),
            0,
            "not late after a reset"
        );
        assert_eq!(
            t.observe(&[Message::default()], later + Duration::from_secs(1)),
            0
        );
    }
}
