//! A lock whose permit owns a handle to it instead of borrowing it, so that a write batch can
//! carry its permit from `begin_write` to `commit` across calls and threads.

use std::sync::{Arc, Condvar, Mutex};

/// One holder at a time; the others wait in [`Slot::take`].
#[derive(Debug, Default)]
pub(crate) struct Slot {
    state: Mutex<State>,
    freed: Condvar,
}

#[derive(Debug, Default)]
struct State {
    taken: bool,
    /// Threads blocked in [`Slot::take`]. A release signals `freed` only when one waits: a
    /// condvar signal is a system call even with nobody waiting, and every applied batch
    /// releases the writer slot on the path to answering its proposers.
    waiting: usize,
}

/// Holding the slot; dropping it lets the next waiter in.
#[derive(Debug)]
pub(crate) struct Permit {
    slot: Arc<Slot>,
}

impl Slot {
    /// Waits until the slot is free and takes it.
    pub(crate) fn take(self: &Arc<Self>) -> Permit {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        while state.taken {
            state.waiting += 1;
            state = self.freed.wait(state).unwrap_or_else(|e| e.into_inner());
            state.waiting -= 1;
        }
        state.taken = true;
        Permit { slot: self.clone() }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut state = self.slot.state.lock().unwrap_or_else(|e| e.into_inner());
        state.taken = false;
        if state.waiting > 0 {
            self.slot.freed.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::thread;

    #[test]
    fn one_holder_at_a_time() {
        let slot = Arc::new(Slot::default());
        let inside = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (slot, inside) = (slot.clone(), inside.clone());
                thread::spawn(move || {
                    for _ in 0..200 {
                        let permit = slot.take();
                        assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0);
                        inside.fetch_sub(1, Ordering::SeqCst);
                        drop(permit);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    }
}
