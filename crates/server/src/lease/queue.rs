//! [`TimeQueue`]: lease ids ordered by a time, at most one entry per lease, so that moving a
//! lease (a renewal, a new checkpoint time) replaces its entry instead of piling up stale ones.

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

/// Lease ids by the time something is due for them (expiry check, checkpoint).
#[derive(Default)]
pub(crate) struct TimeQueue {
    /// `(due, id)`, earliest first; ties broken by id so every entry is distinct.
    order: BTreeSet<(Instant, i64)>,
    /// Each queued id's due time: the key of its entry in `order`.
    due: HashMap<i64, Instant>,
}

impl TimeQueue {
    /// Queues `id` at `at`, replacing its previous entry.
    pub(crate) fn set(&mut self, id: i64, at: Instant) {
        if let Some(old) = self.due.insert(id, at) {
            self.order.remove(&(old, id));
        }
        self.order.insert((at, id));
    }

    /// Takes `id` out of the queue.
    pub(crate) fn remove(&mut self, id: i64) {
        if let Some(old) = self.due.remove(&id) {
            self.order.remove(&(old, id));
        }
    }

    /// Takes out and returns the earliest id due at or before `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<i64> {
        let &(at, id) = self.order.first()?;
        if at > now {
            return None;
        }
        self.order.pop_first();
        self.due.remove(&id);
        Some(id)
    }

    /// The earliest due time.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.order.first().map(|&(at, _)| at)
    }

    pub(crate) fn clear(&mut self) {
        self.order.clear();
        self.due.clear();
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.order.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn pops_due_ids_in_time_order_and_keeps_one_entry_per_id() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut q = TimeQueue::default();
        q.set(1, t0 + 3 * s);
        q.set(2, t0 + s);
        q.set(3, t0 + 2 * s);
        q.set(1, t0); // moved earlier: the old entry goes
        assert_eq!(q.len(), 3);
        assert_eq!(q.next_due(), Some(t0));
        assert_eq!(q.pop_due(t0 + 2 * s), Some(1));
        assert_eq!(q.pop_due(t0 + 2 * s), Some(2));
        assert_eq!(q.pop_due(t0 + 2 * s), Some(3));
        assert_eq!(q.pop_due(t0 + 10 * s), None);
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn nothing_is_due_before_its_time_and_removed_ids_never_come_out() {
        let t0 = Instant::now();
        let mut q = TimeQueue::default();
        q.set(7, t0 + Duration::from_secs(5));
        q.set(8, t0 + Duration::from_secs(1));
        q.remove(8);
        assert_eq!(q.pop_due(t0 + Duration::from_secs(4)), None);
        assert_eq!(q.pop_due(t0 + Duration::from_secs(5)), Some(7));
        q.set(9, t0);
        q.clear();
        assert_eq!(q.next_due(), None);
    }
}
