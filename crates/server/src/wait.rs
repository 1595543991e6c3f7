//! Waiters for proposals: the handler that proposed request `id` parks on a one-slot channel,
//! and only the apply task fires it, with the result of applying that request.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::oneshot;

/// Maps a request id to the sender that wakes its proposer.
pub struct Wait<T> {
    pending: Mutex<HashMap<u64, oneshot::Sender<T>>>,
}

impl<T> Default for Wait<T> {
    fn default() -> Self {
        Wait {
            pending: Mutex::new(HashMap::new()),
        }
    }
}

impl<T> Wait<T> {
    /// Registers `id`; the receiver yields the value given to [`Wait::trigger`].
    pub fn register(&self, id: u64) -> oneshot::Receiver<T> {
        let (tx, rx) = oneshot::channel();
        let previous = self.pending.lock().unwrap().insert(id, tx);
        assert!(previous.is_none(), "duplicate request id {id:x}");
        rx
    }

    /// Wakes the proposer of `id`, if it still waits. Returns whether one was registered.
    pub fn trigger(&self, id: u64, value: T) -> bool {
        let sender = self.pending.lock().unwrap().remove(&id);
        match sender {
            Some(tx) => {
                // The proposer may have timed out and dropped its receiver: nothing to do then.
                let _ = tx.send(value);
                true
            }
            None => false,
        }
    }

    /// Forgets `id` (the proposer gave up before apply answered).
    pub fn cancel(&self, id: u64) {
        self.pending.lock().unwrap().remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn trigger_wakes_only_the_registered_waiter() {
        let wait = Wait::default();
        let rx = wait.register(7);
        assert!(!wait.trigger(8, "other"));
        assert!(wait.trigger(7, "done"));
        assert_eq!(rx.await.unwrap(), "done");
        // Fired once: the id is no longer waited on.
        assert!(!wait.trigger(7, "again"));
    }

    #[tokio::test]
    async fn cancelled_waiter_is_not_triggered() {
        let wait: Wait<u32> = Wait::default();
        let rx = wait.register(1);
        wait.cancel(1);
        assert!(!wait.trigger(1, 5));
        assert!(rx.await.is_err());
    }
}
