//! A stream's response queue: bounded for events, always open to control responses, readable
//! both from async code (the gRPC task) and by blocking (tests, tools).
//!
//! Events are offered with [`Queue::try_push`], which refuses when the queue is full: the store
//! then moves the watcher to the unsynced group instead of waiting or buffering. Control
//! responses (created, canceled, progress answers) go in with [`Queue::push`] whatever the
//! fill: they are few, and the gRPC task stops reading requests while the queue is full
//! ([`Queue::poll_room`]), so a client that does not read cannot grow them either. When a queue
//! that refused an event drains to half, it wakes the sync thread to catch its watchers up.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use super::sync::Signal;
use super::{WatchResponse, STREAM_QUEUE_BYTES, STREAM_QUEUE_LEN};

/// One stream's responses, in the order they were made.
pub(crate) struct Queue {
    state: Mutex<QueueState>,
    /// Wakes blocking readers.
    readable: Condvar,
    /// Wakes the sync thread when a queue that refused an event has drained.
    sync: Arc<Signal>,
}

#[derive(Default)]
struct QueueState {
    items: VecDeque<WatchResponse>,
    /// Sum of the items' weights.
    bytes: usize,
    /// Events in the items.
    events: usize,
    /// No more responses will come (the store shut down).
    closed: bool,
    /// An event was refused since the queue last drained: its watcher waits for room.
    stalled: bool,
    /// The async reader waiting for a response.
    recv_waker: Option<Waker>,
    /// Blocking readers waiting on `readable`: a push signals the condvar only when there is
    /// one, as the signal is a system call even with nobody waiting.
    blocked_readers: usize,
    /// The async request loop waiting for room.
    room_waker: Option<Waker>,
}

impl QueueState {
    fn has_room(&self) -> bool {
        self.items.len() < STREAM_QUEUE_LEN && self.bytes < STREAM_QUEUE_BYTES
    }

    /// Adds a response; returns who must be woken for it.
    fn enqueue(&mut self, r: WatchResponse) -> Readers {
        self.bytes += r.weight();
        self.events += r.events.len();
        self.items.push_back(r);
        Readers {
            waker: self.recv_waker.take(),
            blocked: self.blocked_readers > 0,
        }
    }
}

/// The readers a push must wake, taken under the lock and woken after it.
struct Readers {
    waker: Option<Waker>,
    blocked: bool,
}

impl Queue {
    pub(crate) fn new(sync: Arc<Signal>) -> Queue {
        Queue {
            state: Mutex::new(QueueState::default()),
            readable: Condvar::new(),
            sync,
        }
    }

    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether an event response would likely be taken now.
    pub(crate) fn has_room(&self) -> bool {
        self.lock().has_room()
    }

    /// Queues an event response if it fits (it always fits an empty queue); otherwise hands it
    /// back and remembers that a watcher is waiting for room.
    pub(crate) fn try_push(&self, r: WatchResponse) -> Result<(), WatchResponse> {
        if let Some(w) = self.try_push_deferred(r)? {
            w.wake();
        }
        Ok(())
    }

    /// [`try_push`](Self::try_push), but the async reader's waker, if it waits, is handed to
    /// the caller to wake once it has queued everything it has for this round: the reader then
    /// finds the whole round at once (one poll, one write) instead of one response per wake.
    pub(crate) fn try_push_deferred(
        &self,
        r: WatchResponse,
    ) -> Result<Option<Waker>, WatchResponse> {
        let mut st = self.lock();
        if st.closed {
            return Ok(None); // nobody will read it
        }
        let fits = st.items.is_empty()
            || (st.items.len() < STREAM_QUEUE_LEN && st.bytes + r.weight() <= STREAM_QUEUE_BYTES);
        if !fits {
            st.stalled = true;
            return Err(r);
        }
        let readers = st.enqueue(r);
        drop(st);
        if readers.blocked {
            self.readable.notify_one();
        }
        Ok(readers.waker)
    }

    /// Queues a control response, whatever the fill.
    pub(crate) fn push(&self, r: WatchResponse) {
        let mut st = self.lock();
        if st.closed {
            return;
        }
        let readers = st.enqueue(r);
        drop(st);
        self.wake_readers(readers);
    }

    fn wake_readers(&self, readers: Readers) {
        if readers.blocked {
            self.readable.notify_one();
        }
        if let Some(w) = readers.waker {
            w.wake();
        }
    }

    /// Takes the next response; `Ready(None)` once the queue is closed and empty.
    pub(crate) fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Option<WatchResponse>> {
        let mut st = self.lock();
        match self.pop(&mut st) {
            Some(r) => Poll::Ready(Some(r)),
            None if st.closed => Poll::Ready(None),
            None => {
                st.recv_waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    /// Takes the next response if there is one.
    pub(crate) fn try_recv(&self) -> Option<WatchResponse> {
        let mut st = self.lock();
        self.pop(&mut st)
    }

    /// Takes the next response, waiting up to `timeout`; `None` on timeout or once closed.
    pub(crate) fn recv_timeout(&self, timeout: Duration) -> Option<WatchResponse> {
        let deadline = Instant::now() + timeout;
        let mut st = self.lock();
        loop {
            if let Some(r) = self.pop(&mut st) {
                return Some(r);
            }
            let now = Instant::now();
            if st.closed || now >= deadline {
                return None;
            }
            st.blocked_readers += 1;
            st = self
                .readable
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            st.blocked_readers -= 1;
        }
    }

    fn pop(&self, st: &mut QueueState) -> Option<WatchResponse> {
        let r = st.items.pop_front()?;
        st.bytes -= r.weight();
        st.events -= r.events.len();
        crate::stats::add(&crate::stats::MVCC.events_sent, r.events.len() as u64);
        if st.has_room() {
            if let Some(w) = st.room_waker.take() {
                w.wake();
            }
        }
        if st.stalled
            && st.items.len() <= STREAM_QUEUE_LEN / 2
            && st.bytes <= STREAM_QUEUE_BYTES / 2
        {
            st.stalled = false;
            self.sync.wake();
        }
        Some(r)
    }

    /// Ready when the queue has room (or is closed): the request loop waits on it before it
    /// reads the next request.
    pub(crate) fn poll_room(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut st = self.lock();
        if st.closed || st.has_room() {
            Poll::Ready(())
        } else {
            st.room_waker = Some(cx.waker().clone());
            Poll::Pending
        }
    }

    /// Ends the queue: readers get what is left, then `None`.
    pub(crate) fn close(&self) {
        let mut st = self.lock();
        st.closed = true;
        let wakers = [st.recv_waker.take(), st.room_waker.take()];
        drop(st);
        self.readable.notify_all();
        wakers.into_iter().flatten().for_each(Waker::wake);
    }

    /// Events waiting to be read.
    pub(crate) fn pending_events(&self) -> usize {
        self.lock().events
    }

    /// Responses waiting.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().items.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxcd_api::mvccpb::{Event, KeyValue};

    fn ev(n: usize) -> WatchResponse {
        WatchResponse {
            watch_id: n as i64,
            events: vec![Event {
                kv: Some(KeyValue {
                    key: b"k".to_vec(),
                    value: vec![0; 100],
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn refuses_events_when_full_but_takes_control_responses() {
        let sig = Arc::new(Signal::default());
        let q = Queue::new(sig.clone());
        for i in 0..STREAM_QUEUE_LEN {
            q.try_push(ev(i)).unwrap();
        }
        assert!(!q.has_room());
        assert!(q.try_push(ev(9999)).is_err());
        q.push(WatchResponse::default());
        assert_eq!(q.len(), STREAM_QUEUE_LEN + 1);
        // Draining to half wakes the sync thread, once.
        assert!(!sig.take_pending());
        for i in 0..STREAM_QUEUE_LEN / 2 + 1 {
            assert_eq!(q.try_recv().unwrap().watch_id, i as i64);
        }
        assert!(sig.take_pending());
        assert!(q.try_push(ev(1)).is_ok());
    }

    #[test]
    fn an_oversized_response_still_fits_an_empty_queue() {
        let q = Queue::new(Arc::new(Signal::default()));
        let mut big = ev(0);
        big.events[0].kv.as_mut().unwrap().value = vec![0; STREAM_QUEUE_BYTES * 2];
        q.try_push(big.clone()).unwrap();
        assert!(q.try_push(big).is_err());
        assert!(q.try_push(ev(1)).is_err(), "over the byte limit");
    }

    #[test]
    fn blocking_reader_wakes_on_push_and_close() {
        let q = Arc::new(Queue::new(Arc::new(Signal::default())));
        let q2 = q.clone();
        let t = std::thread::spawn(move || {
            let first = q2.recv_timeout(Duration::from_secs(10));
            let second = q2.recv_timeout(Duration::from_secs(10));
            (first, second)
        });
        std::thread::sleep(Duration::from_millis(20));
        q.push(ev(7));
        std::thread::sleep(Duration::from_millis(20));
        q.close();
        let (first, second) = t.join().unwrap();
        assert_eq!(first.unwrap().watch_id, 7);
        assert!(second.is_none());
        assert!(q.recv_timeout(Duration::from_millis(1)).is_none());
    }

    #[test]
    fn blocking_reader_wakes_on_an_event_and_a_deferred_waker_is_handed_back() {
        let q = Arc::new(Queue::new(Arc::new(Signal::default())));
        let q2 = q.clone();
        let t = std::thread::spawn(move || q2.recv_timeout(Duration::from_secs(10)));
        std::thread::sleep(Duration::from_millis(20));
        assert!(
            q.try_push_deferred(ev(3)).unwrap().is_none(),
            "no async reader"
        );
        assert_eq!(
            t.join().unwrap().unwrap().watch_id,
            3,
            "woken, not timed out"
        );
        // An async reader's waker comes back to the caller instead of being woken.
        let mut cx = Context::from_waker(Waker::noop());
        assert!(q.poll_recv(&mut cx).is_pending());
        assert!(q.try_push_deferred(ev(4)).unwrap().is_some());
        assert!(q.try_push_deferred(ev(5)).unwrap().is_none(), "taken once");
        assert_eq!(q.try_recv().unwrap().watch_id, 4);
    }
}
