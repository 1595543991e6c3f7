//! Waiters for proposals: the handler that proposed request `id` parks on a one-slot channel,
//! and only the apply task fires it, with the result of applying that request.
//!
//! A handler on a connection-serving thread (see `serve_threads`) is woken through that
//! thread: the answers of one applied batch for the handlers of one serving thread go there
//! together, in one task, so the thread is woken once per batch rather than once per answer,
//! and its connections write the batch's answers together.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::oneshot;

use crate::serve_threads;

/// Maps a request id to the sender that wakes its proposer.
pub struct Wait<T> {
    pending: Mutex<HashMap<u64, Waiter<T>>>,
}

struct Waiter<T> {
    tx: oneshot::Sender<T>,
    /// The serving thread the proposer runs on, if it does.
    thread: Option<usize>,
}

impl<T> Default for Wait<T> {
    fn default() -> Self {
        Wait {
            pending: Mutex::new(HashMap::new()),
        }
    }
}

impl<T: Send + 'static> Wait<T> {
    /// Registers `id`; the receiver yields the value given to [`Wait::trigger`].
    pub fn register(&self, id: u64) -> oneshot::Receiver<T> {
        let (tx, rx) = oneshot::channel();
        let waiter = Waiter {
            tx,
            thread: serve_threads::current(),
        };
        let previous = self.pending.lock().unwrap().insert(id, waiter);
        assert!(previous.is_none(), "duplicate request id {id:x}");
        rx
    }

    /// Wakes the proposer of `id`, if it still waits. Returns whether one was registered.
    pub fn trigger(&self, id: u64, value: T) -> bool {
        self.trigger_all([(id, value)]) == 1
    }

    /// Wakes the proposers of `answers` that still wait, each with its value; returns how
    /// many there were.
    pub fn trigger_all(&self, answers: impl IntoIterator<Item = (u64, T)>) -> usize {
        let mut by_thread: Vec<Vec<(oneshot::Sender<T>, T)>> = Vec::new();
        let mut woken = 0;
        {
            let mut pending = self.pending.lock().unwrap();
            for (id, value) in answers {
                // The proposer may have timed out and dropped its receiver: nothing to do then.
                let Some(waiter) = pending.remove(&id) else {
                    continue;
                };
                woken += 1;
                match waiter.thread {
                    Some(i) => {
                        if by_thread.len() <= i {
                            by_thread.resize_with(i + 1, Vec::new);
                        }
                        by_thread[i].push((waiter.tx, value));
                    }
                    None => {
                        let _ = waiter.tx.send(value);
                    }
                }
            }
        }
        for (i, answers) in by_thread.into_iter().enumerate() {
            match answers.len() {
                0 => {}
                // One wake-up either way.
                1 => answers.into_iter().for_each(|(tx, value)| {
                    let _ = tx.send(value);
                }),
                _ => serve_threads::spawn_on(i, async move {
                    for (tx, value) in answers {
                        let _ = tx.send(value);
                    }
                }),
            }
        }
        woken
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

    #[tokio::test]
    async fn proposers_on_serving_threads_are_woken_with_their_values() {
        let wait = std::sync::Arc::new(Wait::default());
        let mut done = Vec::new();
        for id in 0..4u64 {
            let (registered_tx, registered) = oneshot::channel();
            let (done_tx, done_rx) = oneshot::channel();
            let w = wait.clone();
            let thread = id as usize % serve_threads::count();
            // Registered on a serving thread, as the handler of a client's call is.
            serve_threads::spawn_on(thread, async move {
                let answer = w.register(id);
                let _ = registered_tx.send(());
                let value = answer.await.ok();
                let _ = done_tx.send((value, serve_threads::current()));
            });
            registered.await.unwrap();
            done.push((id, thread, done_rx));
        }
        let outside = wait.register(9);
        let answers = (0..4).map(|id| (id, id * 10)).chain([(9, 90), (7, 70)]);
        assert_eq!(wait.trigger_all(answers), 5, "id 7 was never registered");
        assert_eq!(outside.await.unwrap(), 90);
        for (id, thread, done_rx) in done {
            assert_eq!(done_rx.await.unwrap(), (Some(id * 10), Some(thread)));
        }
    }
}
