//! The one lane committed work takes into the applier, in log order.
//!
//! The raft thread hands each batch over. When the apply thread is busy or has work queued, the
//! batch joins its queue, so apply runs beside the next fsync. When the applier is idle and the
//! raft thread has nothing else waiting, the raft thread applies the batch itself: a lone write
//! then wakes one thread fewer (the proposer is answered straight after its fsync). Either way
//! batches are applied one at a time, in the order they were handed over.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard};

use super::Applier;
use crate::fatal;
use crate::raft::Apply;

/// Batches the apply thread may have queued before the raft thread waits for it.
const APPLY_QUEUE: usize = 64;

/// Hands committed work to the applier; see the module comment. Owned by the raft thread:
/// when it goes, the apply thread finishes its queue and stops.
pub struct ApplyLane {
    shared: Arc<Shared>,
    /// The apply thread's queue.
    queue: SyncSender<Apply>,
}

/// What the raft thread and the apply thread share.
struct Shared {
    /// The applier, held by whichever thread applies a batch.
    applying: Mutex<Applying>,
    /// Batches queued for the apply thread and not yet applied. Only the raft thread adds to
    /// it; the apply thread takes one off while it still holds `applying`, so a raft thread that
    /// holds `applying` and reads 0 knows every batch handed over before is applied.
    queued: AtomicUsize,
}

struct Applying {
    applier: Applier,
    /// The index of the last snapshot asked of the raft thread.
    last_snapshot: u64,
}

impl ApplyLane {
    /// Starts the apply thread behind a new lane.
    pub fn start(applier: Applier) -> std::io::Result<ApplyLane> {
        let (queue, work) = mpsc::sync_channel(APPLY_QUEUE);
        let last_snapshot = applier.kv.consistent_index().0;
        let shared = Arc::new(Shared {
            applying: Mutex::new(Applying {
                applier,
                last_snapshot,
            }),
            queued: AtomicUsize::new(0),
        });
        let apply = shared.clone();
        fatal::spawn_essential("apply", move || apply.run(work))?;
        Ok(ApplyLane { shared, queue })
    }

    /// Hands `work` over. With `caller_idle` (the caller has nothing else waiting), it is
    /// applied on the calling thread when the applier is idle; otherwise it is queued, and
    /// the caller waits only when the queue is full.
    pub fn hand(&self, work: Apply, caller_idle: bool) {
        let shared = &self.shared;
        if caller_idle && shared.queued.load(Ordering::Acquire) == 0 {
            if let Ok(mut applying) = shared.applying.try_lock() {
                if shared.queued.load(Ordering::Acquire) == 0 {
                    applying.apply(work);
                    return;
                }
            }
        }
        shared.queued.fetch_add(1, Ordering::AcqRel);
        if self.queue.send(work).is_err() {
            panic!("the apply thread stopped; cannot continue");
        }
    }
}

impl Shared {
    /// The apply thread: applies queued batches until the raft thread goes away.
    fn run(&self, work: Receiver<Apply>) {
        while let Ok(batch) = work.recv() {
            let mut applying = self.lock();
            applying.apply(batch);
            self.queued.fetch_sub(1, Ordering::AcqRel);
        }
    }

    fn lock(&self) -> MutexGuard<'_, Applying> {
        // A panic while applying stops the process (both threads are essential), so a
        // poisoned lock is never seen by a thread that goes on.
        self.applying.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Applying {
    fn apply(&mut self, work: Apply) {
        self.applier.apply(work, &mut self.last_snapshot);
    }
}
