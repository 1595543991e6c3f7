//! Linearizable reads share ReadIndex rounds before they reach the raft thread.
//!
//! Every read that arrives while a round is in flight joins the next round; one task sends
//! that round to the raft thread as a single ReadIndex request once the round before it is
//! answered, and wakes all its readers with the index (etcd's linearizableReadLoop does the
//! same). Before it sends a round, the task yields once, so that the calls already queued
//! on its thread (the rest of the requests read off the connections) join it too. So under
//! load the raft thread's input channel, and the thread wake-ups it costs, carry one request
//! per round instead of one per read. A read only ever joins a round that has not been sent
//! yet: its index is then taken after the read arrived.
//!
//! Each connection-serving thread (see `serve_threads`) has a lane of its own, with its own
//! rounds and its own task on that thread: its readers are woken by a task on their thread,
//! not one per reader from another thread. Reads from any other thread share one more lane.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::{oneshot, Notify};

use crate::raft::RaftInput;
use crate::serve_threads;

/// Hands out read indexes; dropping it stops its tasks.
pub struct ReadIndexer {
    /// One lane per serving thread, then the lane of every other thread.
    lanes: Vec<Arc<Shared>>,
}

struct Shared {
    raft: mpsc::Sender<RaftInput>,
    /// The round new readers join; the task swaps in a fresh one when it sends this one.
    next: Mutex<Arc<Round>>,
    /// Signalled by a reader that joined `next`, and on close.
    wanted: Notify,
    closed: AtomicBool,
}

/// One ReadIndex request and the readers waiting for its answer.
#[derive(Default)]
struct Round {
    /// The read index, or `None` when the raft thread is gone.
    index: OnceLock<Option<u64>>,
    done: Notify,
}

impl ReadIndexer {
    /// Starts the tasks that send rounds to the raft thread through `raft`. Must be called
    /// inside the runtime.
    pub fn start(raft: mpsc::Sender<RaftInput>) -> ReadIndexer {
        let lane = || {
            Arc::new(Shared {
                raft: raft.clone(),
                next: Mutex::new(Arc::default()),
                wanted: Notify::new(),
                closed: AtomicBool::new(false),
            })
        };
        let serving = serve_threads::count();
        let lanes: Vec<Arc<Shared>> = (0..=serving).map(|_| lane()).collect();
        for (i, shared) in lanes.iter().enumerate() {
            let task = send_rounds(shared.clone());
            if i < serving {
                serve_threads::spawn_on(i, task);
            } else {
                tokio::spawn(task);
            }
        }
        ReadIndexer { lanes }
    }

    /// A read index taken after this call began; `None` when the raft thread is gone.
    pub async fn read_index(&self) -> Option<u64> {
        let lane = serve_threads::current().unwrap_or(self.lanes.len() - 1);
        let shared = &self.lanes[lane];
        let round = shared.lock_next().clone();
        shared.wanted.notify_one();
        round.wait().await
    }
}

impl Drop for ReadIndexer {
    fn drop(&mut self) {
        for shared in &self.lanes {
            shared.closed.store(true, Ordering::Release);
            shared.wanted.notify_one();
        }
    }
}

impl Shared {
    fn lock_next(&self) -> std::sync::MutexGuard<'_, Arc<Round>> {
        self.next.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The task: one round at a time, each sent once the one before it is answered.
async fn send_rounds(shared: Arc<Shared>) {
    loop {
        shared.wanted.notified().await;
        if shared.closed.load(Ordering::Acquire) {
            return;
        }
        // Let the calls already queued on this thread run first: the reads among them join
        // this round rather than each costing a round (and a raft thread wake-up) of its own.
        tokio::task::yield_now().await;
        let round = std::mem::take(&mut *shared.lock_next());
        // Only the readers hold the round besides this task: none left (each reader signals
        // once, and an earlier signal may have sent their round already) means nothing to ask.
        if Arc::strong_count(&round) == 1 {
            continue;
        }
        let (reply, answer) = oneshot::channel();
        let index = match shared.raft.send(RaftInput::ReadIndex { reply }) {
            Ok(()) => answer.await.ok(),
            Err(_) => None,
        };
        round.finish(index);
    }
}

impl Round {
    async fn wait(&self) -> Option<u64> {
        let done = self.done.notified();
        tokio::pin!(done);
        done.as_mut().enable();
        if let Some(index) = self.index.get() {
            return *index;
        }
        done.await;
        self.index.get().copied().flatten()
    }

    fn finish(&self, index: Option<u64>) {
        let _ = self.index.set(index);
        self.done.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// A stand-in raft thread that answers each ReadIndex with the number of requests so far.
    /// It holds the first one: it tells `held` when it has it, and answers once `gate` opens.
    /// Returns how many requests it got.
    fn fake_raft(
        held: mpsc::Sender<()>,
        gate: mpsc::Receiver<()>,
    ) -> (mpsc::Sender<RaftInput>, std::thread::JoinHandle<u64>) {
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            let mut requests = 0;
            while let Ok(input) = rx.recv() {
                if let RaftInput::ReadIndex { reply } = input {
                    requests += 1;
                    if requests == 1 {
                        let _ = held.send(());
                        let _ = gate.recv();
                    }
                    let _ = reply.send(requests);
                }
            }
            requests
        });
        (tx, thread)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_that_arrive_during_a_round_share_the_next_one() {
        let (held_tx, held) = mpsc::channel();
        let (open, gate) = mpsc::channel();
        let (raft, thread) = fake_raft(held_tx, gate);
        let indexer = Arc::new(ReadIndexer::start(raft));
        let read = |indexer: &Arc<ReadIndexer>| {
            let indexer = indexer.clone();
            tokio::spawn(async move { indexer.read_index().await })
        };
        let first = read(&indexer);
        tokio::task::spawn_blocking(move || held.recv_timeout(Duration::from_secs(10)))
            .await
            .unwrap()
            .expect("the first round reached the raft thread");
        // The first round is in flight and held: the 50 reads after it must all wait for the
        // next round, since the one in flight was asked for before they came.
        let later: Vec<_> = (0..50).map(|_| read(&indexer)).collect();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Arc::strong_count(&indexer.lanes.last().unwrap().lock_next()) < 51 {
            assert!(
                Instant::now() < deadline,
                "the reads did not join the next round"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        open.send(()).unwrap();
        assert_eq!(first.await.unwrap(), Some(1));
        for read in later {
            assert_eq!(read.await.unwrap(), Some(2));
        }
        drop(indexer);
        let requests = tokio::task::spawn_blocking(move || thread.join().unwrap())
            .await
            .unwrap();
        assert_eq!(requests, 2, "51 reads, two rounds");
    }

    #[tokio::test]
    async fn a_read_gets_none_when_the_raft_thread_is_gone() {
        let (raft, rx) = mpsc::channel();
        drop(rx);
        let indexer = ReadIndexer::start(raft);
        assert_eq!(indexer.read_index().await, None);
    }
}
