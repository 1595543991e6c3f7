//! [`WatchStream`]: one client stream's handle on the store.

use std::future::poll_fn;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use oxcd_api::etcdserverpb::WatchCreateRequest;

use super::queue::Queue;
use super::store::Inner;
use super::{WatchError, WatchResponse};

/// A stream of watchers sharing one ordered response queue (etcd's `WatchStream`).
///
/// The gRPC Watch service makes one per client stream: it turns requests into
/// [`watch`](Self::watch), [`cancel`](Self::cancel) and
/// [`request_progress`](Self::request_progress), calls [`progress_tick`](Self::progress_tick)
/// every progress interval, and sends what [`recv`](Self::recv) yields. Every response (created,
/// canceled, events, progress) comes out of `recv`, in the order that keeps etcd's promises: a
/// watcher's `created` before its events, its events in revision order, `canceled` last.
/// Dropping the stream removes its watchers.
///
/// One reader at a time: `recv`, `poll_recv`, `try_recv` and `recv_timeout` share one queue.
pub struct WatchStream {
    inner: Arc<Inner>,
    /// The stream's id in the store.
    id: u64,
    queue: Arc<Queue>,
}

impl WatchStream {
    pub(crate) fn new(inner: Arc<Inner>, id: u64, queue: Arc<Queue>) -> WatchStream {
        WatchStream { inner, id, queue }
    }

    /// Creates a watcher from an etcd create request and queues its answer: `created` with its
    /// watch id, or, refused, `created` + `canceled` with etcd's reason and watch id -1.
    ///
    /// `watch_id` 0 picks the lowest free id from 0 up. `start_revision` 0 (or less) watches
    /// from the next revision; a past one replays history (below the compaction revision the
    /// watcher is canceled at once with `compact_revision`); a future one waits for it.
    pub fn watch(&self, req: &WatchCreateRequest) -> Result<i64, WatchError> {
        self.inner.watch(self.id, req)
    }

    /// Refuses a create request without creating anything (the sender may not watch that
    /// range): queues `created` + `canceled` with `reason` and watch id -1, as etcd.
    pub fn refuse(&self, reason: String) {
        self.queue.push(WatchResponse {
            watch_id: super::INVALID_WATCH_ID,
            revision: self.inner.kv.current_revision(),
            created: true,
            canceled: true,
            cancel_reason: reason,
            ..Default::default()
        });
    }

    /// Cancels a watcher and queues its `canceled` response; false if there is no such watcher
    /// (nothing is queued then, as etcd).
    pub fn cancel(&self, watch_id: i64) -> bool {
        self.inner.cancel(self.id, watch_id, String::new())
    }

    /// Cancels a watcher the server no longer lets run (its sender lost the permission),
    /// queuing `canceled` with `reason`; false if there is no such watcher.
    pub fn cancel_with_reason(&self, watch_id: i64, reason: String) -> bool {
        self.inner.cancel(self.id, watch_id, reason)
    }

    /// Asks for one progress notification (watch id -1), sent once every watcher of the
    /// stream is synced, at the last revision all of them have seen.
    pub fn request_progress(&self) {
        self.inner.request_progress(self.id)
    }

    /// One tick of periodic progress notification (etcd's `--watch-progress-notify-interval`):
    /// watchers that asked for `progress_notify`, are synced and got no events since the last
    /// tick get an empty response.
    pub fn progress_tick(&self) {
        self.inner.progress_tick(self.id)
    }

    /// The next response; `None` once the store has shut down.
    pub async fn recv(&self) -> Option<WatchResponse> {
        poll_fn(|cx| self.queue.poll_recv(cx)).await
    }

    /// Polls for the next response; `Ready(None)` once the store has shut down.
    pub fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Option<WatchResponse>> {
        self.queue.poll_recv(cx)
    }

    /// The next response, if one is waiting.
    pub fn try_recv(&self) -> Option<WatchResponse> {
        self.queue.try_recv()
    }

    /// The next response, blocking up to `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<WatchResponse> {
        self.queue.recv_timeout(timeout)
    }

    /// Waits while the response queue is full: the request loop awaits this before reading
    /// the next request, so a client that sends without reading gets backpressure.
    pub async fn ready(&self) {
        poll_fn(|cx| self.queue.poll_room(cx)).await
    }

    /// Responses waiting in the queue.
    #[cfg(test)]
    pub(crate) fn queued(&self) -> usize {
        self.queue.len()
    }

    /// The store's current revision (the header revision of control responses).
    pub fn revision(&self) -> i64 {
        self.inner.kv.current_revision()
    }
}

impl Drop for WatchStream {
    fn drop(&mut self) {
        self.inner.close_stream(self.id);
    }
}

impl std::fmt::Debug for WatchStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchStream").field("id", &self.id).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixture::{create, nothing, recv, summary, Fixture};
    use super::super::{WatchError, INVALID_WATCH_ID};
    use super::*;
    use oxcd_api::etcdserverpb::watch_create_request::FilterType;
    use oxcd_api::mvccpb::event::EventType;

    fn s(k: &str, v: &str, rev: i64) -> (String, String, i64) {
        (k.into(), v.into(), rev)
    }

    #[test]
    fn created_then_only_new_events_of_the_key() {
        let f = Fixture::new();
        f.put("a", "old"); // 2
        let st = f.ws.new_stream();
        assert_eq!(st.watch(&create("a", "", 0)), Ok(0));
        let c = recv(&st);
        assert_eq!(
            (c.watch_id, c.created, c.canceled, c.revision),
            (0, true, false, 2)
        );
        f.put("b", "x"); // 3
        f.put("a", "new"); // 4
        let r = recv(&st);
        assert_eq!((r.watch_id, r.revision), (0, 4));
        assert_eq!(summary(&r), [s("a", "new", 4)]);
        assert!(r.events[0].prev_kv.is_none(), "prev_kv only when asked");
        nothing(&st);
    }

    #[test]
    fn ids_auto_and_chosen_and_duplicates_refused_as_etcd() {
        let f = Fixture::new();
        let st = f.ws.new_stream();
        let chosen = WatchCreateRequest {
            watch_id: 1,
            ..create("a", "", 0)
        };
        assert_eq!(st.watch(&create("a", "", 0)), Ok(0));
        assert_eq!(st.watch(&chosen), Ok(1));
        assert_eq!(st.watch(&create("a", "", 0)), Ok(2));
        assert_eq!(st.watch(&chosen), Err(WatchError::DuplicateId));
        assert_eq!(st.watch(&create("b", "a", 0)), Err(WatchError::EmptyRange));
        let ids: Vec<i64> = (0..3).map(|_| recv(&st).watch_id).collect();
        assert_eq!(ids, [0, 1, 2]);
        let dup = recv(&st);
        assert_eq!(
            (dup.watch_id, dup.created, dup.canceled),
            (INVALID_WATCH_ID, true, true)
        );
        assert_eq!(
            dup.cancel_reason,
            "mvcc: duplicate watch ID provided on the WatchStream"
        );
        let empty = recv(&st);
        assert_eq!(
            (empty.watch_id, empty.created, empty.canceled),
            (INVALID_WATCH_ID, true, true)
        );
        assert_eq!(empty.cancel_reason, "mvcc: watcher range is empty");
        // Another stream has its own ids.
        let other = f.ws.new_stream();
        assert_eq!(other.watch(&chosen), Ok(1));
    }

    #[test]
    fn cancel_answers_once_and_stops_events() {
        let f = Fixture::new();
        let st = f.ws.new_stream();
        let id = st.watch(&create("a", "", 0)).unwrap();
        recv(&st);
        assert!(st.cancel(id));
        let c = recv(&st);
        assert_eq!(
            (c.watch_id, c.canceled, c.created, c.compact_revision),
            (id, true, false, 0)
        );
        assert!(c.cancel_reason.is_empty());
        f.put("a", "1");
        assert!(!st.cancel(id));
        assert!(!st.cancel(42));
        nothing(&st);
        assert_eq!(f.ws.watcher_counts(), (0, 0));
    }

    #[test]
    fn ranges_prefixes_and_from_key() {
        let f = Fixture::new();
        let st = f.ws.new_stream();
        let prefix = st.watch(&create("p/", "p0", 0)).unwrap();
        let from = st.watch(&create("q", "\0", 0)).unwrap();
        let all = st.watch(&create("", "\0", 0)).unwrap();
        for _ in 0..3 {
            recv(&st);
        }
        f.put("p/1", "x"); // 2: prefix and all
        f.put("z", "y"); // 3: from and all
        let mut got: Vec<(i64, i64)> = (0..4)
            .map(|_| recv(&st))
            .map(|r| (r.watch_id, r.revision))
            .collect();
        got.sort();
        let mut want = vec![(prefix, 2), (all, 2), (from, 3), (all, 3)];
        want.sort();
        assert_eq!(got, want);
        nothing(&st);
    }

    #[test]
    fn filters_and_prev_kv() {
        let f = Fixture::new();
        f.put("a", "1"); // 2
        let st = f.ws.new_stream();
        let no_put = st
            .watch(&WatchCreateRequest {
                filters: vec![FilterType::Noput as i32],
                prev_kv: true,
                ..create("a", "", 0)
            })
            .unwrap();
        let no_delete = st
            .watch(&WatchCreateRequest {
                filters: vec![FilterType::Nodelete as i32, 7],
                prev_kv: true,
                ..create("a", "", 0)
            })
            .unwrap();
        recv(&st);
        recv(&st);
        f.put("a", "2"); // 3
        f.delete("a", ""); // 4
        let put = recv(&st);
        assert_eq!(
            (put.watch_id, summary(&put)),
            (no_delete, vec![s("a", "2", 3)])
        );
        assert_eq!(put.events[0].prev_kv.as_ref().unwrap().value, b"1".to_vec());
        let del = recv(&st);
        assert_eq!(del.watch_id, no_put);
        assert_eq!(del.events[0].r#type, EventType::Delete as i32);
        assert_eq!(del.events[0].kv.as_ref().unwrap().mod_revision, 4);
        assert_eq!(del.events[0].prev_kv.as_ref().unwrap().value, b"2".to_vec());
        nothing(&st);
    }

    #[test]
    fn a_multi_op_txn_arrives_in_one_response() {
        let f = Fixture::new();
        let st = f.ws.new_stream();
        st.watch(&create("a", "z", 0)).unwrap();
        recv(&st);
        f.batch(|b| {
            let mut t = b.txn();
            t.put(b"a", b"1", 0).unwrap();
            t.put(b"b", b"1", 0).unwrap();
            t.put(b"zz", b"1", 0).unwrap();
            let mut evs = t.end();
            let mut t = b.txn();
            t.delete_range(b"a", b"c").unwrap();
            evs.extend(t.end());
            evs
        });
        let r = recv(&st);
        assert_eq!(summary(&r), [s("a", "1", 2), s("b", "1", 2)]);
        let r = recv(&st);
        assert_eq!(summary(&r), [s("a", "", 3), s("b", "", 3)]);
        assert_eq!(r.revision, 3);
        nothing(&st);
    }

    #[test]
    fn future_start_waits_for_its_revision() {
        let f = Fixture::new();
        let st = f.ws.new_stream();
        st.watch(&create("a", "", 4)).unwrap();
        recv(&st);
        f.put("a", "2");
        f.put("a", "3");
        nothing(&st);
        f.put("a", "4");
        assert_eq!(summary(&recv(&st)), [s("a", "4", 4)]);
    }

    #[test]
    fn request_progress_answers_with_id_minus_one_when_synced() {
        let f = Fixture::new();
        let st = f.ws.new_stream();
        st.request_progress();
        let p = recv(&st);
        assert_eq!(
            (p.watch_id, p.revision, p.events.len()),
            (INVALID_WATCH_ID, 1, 0)
        );
        st.watch(&create("a", "", 0)).unwrap();
        recv(&st);
        f.put("b", "1");
        st.request_progress();
        let p = recv(&st);
        assert_eq!(
            (p.watch_id, p.revision, p.created),
            (INVALID_WATCH_ID, 2, false)
        );
    }

    #[test]
    fn request_progress_waits_for_unsynced_watchers() {
        let f = Fixture::new();
        for i in 0..50 {
            f.put("a", &i.to_string()); // 2..=51
        }
        let st = f.ws.new_stream();
        st.watch(&create("a", "", 2)).unwrap();
        st.request_progress();
        let created = recv(&st);
        assert!(created.created);
        // The history comes first, then the progress notification that covers it.
        let history = recv(&st);
        assert_eq!(history.events.len(), 50);
        let p = recv(&st);
        assert_eq!((p.watch_id, p.revision), (INVALID_WATCH_ID, 51));
    }

    #[test]
    fn periodic_progress_only_for_quiet_synced_watchers_that_asked() {
        let f = Fixture::new();
        let st = f.ws.new_stream();
        let quiet = st
            .watch(&WatchCreateRequest {
                progress_notify: true,
                ..create("q", "", 0)
            })
            .unwrap();
        let busy = st
            .watch(&WatchCreateRequest {
                progress_notify: true,
                ..create("b", "", 0)
            })
            .unwrap();
        st.watch(&create("q", "", 0)).unwrap(); // did not ask
        for _ in 0..3 {
            recv(&st);
        }
        f.put("b", "1"); // 2
        assert_eq!(recv(&st).watch_id, busy);
        st.progress_tick();
        let p = recv(&st);
        assert_eq!((p.watch_id, p.revision, p.events.len()), (quiet, 2, 0));
        nothing(&st);
        st.progress_tick(); // now the busy one was quiet for a whole interval too
        let mut ids = vec![recv(&st).watch_id, recv(&st).watch_id];
        ids.sort();
        assert_eq!(ids, [quiet, busy]);
    }

    #[test]
    fn dropping_a_stream_removes_its_watchers_and_store_drop_ends_streams() {
        let f = Fixture::new();
        let st = f.ws.new_stream();
        st.watch(&create("a", "", 0)).unwrap();
        st.watch(&create("a", "", 1)).unwrap();
        let kept = f.ws.new_stream();
        kept.watch(&create("a", "", 0)).unwrap();
        assert_eq!(f.ws.watcher_counts().0 + f.ws.watcher_counts().1, 3);
        drop(st);
        assert_eq!(f.ws.watcher_counts(), (1, 0));
        recv(&kept);
        let Fixture { ws, _dir } = f;
        drop(ws);
        assert!(kept.recv_timeout(Duration::from_secs(1)).is_none());
        assert_eq!(kept.watch(&create("a", "", 0)), Err(WatchError::EmptyRange));
    }

    #[test]
    fn async_recv_and_ready() {
        use std::future::Future;
        let f = Fixture::new();
        let st = f.ws.new_stream();
        st.watch(&create("a", "", 0)).unwrap();
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut fut = std::pin::pin!(st.recv());
        assert!(matches!(fut.as_mut().poll(&mut cx), Poll::Ready(Some(r)) if r.created));
        let mut fut = std::pin::pin!(st.recv());
        assert!(fut.as_mut().poll(&mut cx).is_pending());
        f.put("a", "1");
        assert!(matches!(fut.as_mut().poll(&mut cx), Poll::Ready(Some(r)) if r.events.len() == 1));
        let mut ready = std::pin::pin!(st.ready());
        assert!(ready.as_mut().poll(&mut cx).is_ready());
    }
}
