//! [`WatchableStore`]: the watcher groups, `notify` (the apply task's entry point) and every
//! change of a watcher's place. The sync thread lives in `sync.rs`, the client handle in
//! `stream.rs`.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;
use std::thread::JoinHandle;

use oxcd_api::etcdserverpb::watch_create_request::FilterType;
use oxcd_api::etcdserverpb::WatchCreateRequest;
use oxcd_api::mvccpb::{event::EventType, Event};

use super::group::{WatcherGroup, WatcherId};
use super::queue::Queue;
use super::span::KeySpan;
use super::stream::WatchStream;
use super::sync::{self, Signal};
use super::{WatchError, WatchResponse, INVALID_WATCH_ID};
use crate::mvcc::KvStore;

/// The MVCC store plus its watchers: etcd's `watchableStore`.
///
/// Cheap to share behind an `Arc`. Dropping it stops the sync thread and closes every stream's
/// queue (their readers see the end).
pub struct WatchableStore {
    /// What streams and the sync thread share.
    inner: Arc<Inner>,
    /// The sync thread; joined on drop.
    sync_thread: Option<JoinHandle<()>>,
}

/// What the store, its streams and the sync thread share.
pub(crate) struct Inner {
    /// The store watched: its current and compaction revisions, and the backend to catch up
    /// from.
    pub(crate) kv: KvStore,
    /// Every watcher and stream. Held for in-memory work only (matching, pushing to queues),
    /// never across a backend read.
    groups: Mutex<Groups>,
    /// Wakes the sync thread (new past watcher, drained queue) and stops it.
    pub(crate) signal: Arc<Signal>,
}

/// Every watcher, by place.
#[derive(Default)]
pub(crate) struct Groups {
    pub(crate) watchers: HashMap<WatcherId, Watcher>,
    /// Watchers that have every announced revision, indexed by key for `notify`.
    pub(crate) synced: WatcherGroup,
    /// Watchers that need revisions the store has, as `(min_rev, id)`: most behind first.
    pub(crate) unsynced: BTreeSet<(i64, WatcherId)>,
    /// Open streams, by stream id.
    streams: HashMap<u64, StreamState>,
    /// The last revision whose events `notify` has handed to synced watchers. A progress
    /// notification may claim this revision and no more.
    pub(crate) notified_rev: i64,
    next_watcher: WatcherId,
    next_stream: u64,
    /// The store shut down: no new watchers.
    closed: bool,
}

/// Where a watcher is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Place {
    Synced,
    Unsynced,
    /// Taken by the sync thread, which is reading its revisions from the backend.
    Syncing,
}

/// One watcher.
pub(crate) struct Watcher {
    pub(crate) stream: u64,
    pub(crate) queue: Arc<Queue>,
    /// The client's id for it, unique in its stream.
    pub(crate) watch_id: i64,
    pub(crate) span: KeySpan,
    /// The first revision it has not been sent (or, synced, the first it wants).
    pub(crate) min_rev: i64,
    pub(crate) place: Place,
    pub(crate) opts: Options,
    /// Events were sent since the last periodic progress tick (the tick then sends nothing).
    pub(crate) sent_since_tick: bool,
}

/// A watcher's choices from its create request.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Options {
    pub(crate) no_put: bool,
    pub(crate) no_delete: bool,
    pub(crate) prev_kv: bool,
    pub(crate) progress_notify: bool,
    pub(crate) fragment: bool,
}

/// One stream's watchers and queue.
struct StreamState {
    /// Client watch id → watcher.
    ids: HashMap<i64, WatcherId>,
    /// Next automatic watch id to try (etcd starts at 0).
    next_id: i64,
    queue: Arc<Queue>,
    /// A RequestProgress waits for every watcher of the stream to be synced.
    deferred_progress: bool,
}

impl Watcher {
    /// Whether the watcher's filters let `ev` through.
    pub(crate) fn wants(&self, ev: &Event) -> bool {
        if ev.r#type == EventType::Put as i32 {
            !self.opts.no_put
        } else {
            !self.opts.no_delete
        }
    }

    /// `ev` as this watcher gets it: with `prev_kv` only if it asked.
    pub(crate) fn prepare(&self, ev: &Event) -> Event {
        if self.opts.prev_kv {
            ev.clone()
        } else {
            Event {
                r#type: ev.r#type,
                kv: ev.kv.clone(),
                prev_kv: None,
            }
        }
    }

    /// An event response for this watcher, covering revisions up to `revision`.
    pub(crate) fn response(&self, revision: i64, events: Vec<Event>) -> WatchResponse {
        WatchResponse {
            watch_id: self.watch_id,
            revision,
            events,
            fragment: self.opts.fragment,
            ..Default::default()
        }
    }
}

/// The main revision of an event (its key-value's `mod_revision`).
pub(crate) fn event_rev(ev: &Event) -> i64 {
    ev.kv.as_ref().map_or(0, |kv| kv.mod_revision)
}

impl WatchableStore {
    /// Watches `kv`, starting at its current revision, and starts the sync thread.
    pub fn new(kv: KvStore) -> WatchableStore {
        let signal = Arc::new(Signal::default());
        let groups = Groups {
            notified_rev: kv.current_revision(),
            ..Default::default()
        };
        let inner = Arc::new(Inner {
            kv,
            groups: Mutex::new(groups),
            signal,
        });
        let sync_thread = sync::spawn(inner.clone());
        WatchableStore {
            inner,
            sync_thread: Some(sync_thread),
        }
    }

    /// The store watched.
    pub fn kv(&self) -> &KvStore {
        &self.inner.kv
    }

    /// Opens a stream: the home of any number of watchers and their one response queue.
    pub fn new_stream(&self) -> WatchStream {
        let mut g = self.inner.lock();
        let id = g.next_stream;
        g.next_stream += 1;
        let queue = Arc::new(Queue::new(self.inner.signal.clone()));
        if g.closed {
            queue.close();
        } else {
            g.streams.insert(
                id,
                StreamState {
                    ids: HashMap::new(),
                    next_id: 0,
                    queue: queue.clone(),
                    deferred_progress: false,
                },
            );
        }
        WatchStream::new(self.inner.clone(), id, queue)
    }

    /// Hands the events of a committed batch to the synced watchers.
    ///
    /// The apply task calls it right after [`Batch::commit`](crate::Batch::commit) returns,
    /// with the events of the batch's transactions ([`Txn::end`](crate::Txn::end)) in revision
    /// order, `prev_kv` included as `Txn::end` gives it; never before the commit (a watcher
    /// could then see a revision that a crash takes back), never twice. It never blocks on a
    /// client: a watcher whose queue is full becomes unsynced and catches up from the backend.
    /// Revisions that never reach `notify` are noticed at the next call and read from the
    /// backend instead, so a missed call costs time, not events.
    pub fn notify(&self, events: Vec<Event>) {
        if events.is_empty() {
            return;
        }
        let mut g = self.inner.lock();
        if g.closed {
            return;
        }
        let mut wake = false;
        // The readers of the streams that got responses, woken once everything is queued.
        let mut readers = Vec::new();
        for one_rev in events.chunk_by(|a, b| event_rev(a) == event_rev(b)) {
            let rev = event_rev(&one_rev[0]);
            if rev <= g.notified_rev {
                tracing::error!(
                    revision = rev,
                    "notified-revision" = g.notified_rev,
                    "watch notify of a revision already notified; ignored"
                );
                continue;
            }
            if rev > g.notified_rev + 1 {
                tracing::warn!(
                    revision = rev,
                    "notified-revision" = g.notified_rev,
                    "watch notify skipped revisions; synced watchers will read them from the backend"
                );
                let from = g.notified_rev + 1;
                g.unsync_all_before(rev, from);
                wake = true;
            }
            wake |= g.deliver(rev, one_rev, &mut readers);
            g.notified_rev = rev;
        }
        drop(g);
        readers.into_iter().for_each(Waker::wake);
        if wake {
            self.inner.signal.wake();
        }
    }

    /// Tells the watchers that the store's contents were replaced (a Raft snapshot was
    /// restored): the apply task calls it right after the restore, instead of `notify`. Every
    /// synced watcher that wants a revision the restore brought reads it from the restored
    /// backend (or, if the snapshot's compaction removed it, is canceled with
    /// `compact_revision`, as etcd does).
    pub fn restored(&self) {
        let mut g = self.inner.lock();
        let cur = self.inner.kv.current_revision();
        if g.closed || cur <= g.notified_rev {
            return;
        }
        let from = g.notified_rev + 1;
        g.unsync_all_before(cur + 1, from);
        g.notified_rev = cur;
        drop(g);
        self.inner.signal.wake();
    }

    /// How many watchers are synced, and how many are not (unsynced or being synced).
    pub fn watcher_counts(&self) -> (usize, usize) {
        let g = self.inner.lock();
        (g.synced.len(), g.watchers.len() - g.synced.len())
    }

    /// Open streams, and the events waiting in their queues (for the metrics).
    pub fn stream_counts(&self) -> (usize, usize) {
        let queues: Vec<Arc<Queue>> = {
            let g = self.inner.lock();
            g.streams.values().map(|st| st.queue.clone()).collect()
        };
        let pending = queues.iter().map(|q| q.pending_events()).sum();
        (queues.len(), pending)
    }
}

impl Drop for WatchableStore {
    fn drop(&mut self) {
        {
            let mut g = self.inner.lock();
            g.closed = true;
            for st in g.streams.values() {
                st.queue.close();
            }
        }
        self.inner.signal.stop();
        if let Some(t) = self.sync_thread.take() {
            if t.join().is_err() {
                tracing::error!("watch sync thread panicked");
            }
        }
    }
}

impl std::fmt::Debug for WatchableStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (synced, unsynced) = self.watcher_counts();
        f.debug_struct("WatchableStore")
            .field("synced", &synced)
            .field("unsynced", &unsynced)
            .finish()
    }
}

impl Inner {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Groups> {
        self.groups.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Creates a watcher on `stream` and queues its `created` response (or, refused, a
    /// created-and-canceled one with etcd's reason, as etcd answers).
    pub(crate) fn watch(&self, stream: u64, req: &WatchCreateRequest) -> Result<i64, WatchError> {
        let mut g = self.lock();
        let cur = self.kv.current_revision();
        let Some(queue) = g
            .streams
            .get(&stream)
            .map(|s| s.queue.clone())
            .filter(|_| !g.closed)
        else {
            return Err(WatchError::EmptyRange); // closed, as etcd answers on a closed stream
        };
        let created = |watch_id| WatchResponse {
            watch_id,
            revision: cur,
            created: true,
            ..Default::default()
        };
        let added = g.add_watcher(stream, &queue, req, cur);
        let id = match added {
            Err(e) => {
                queue.push(WatchResponse {
                    canceled: true,
                    cancel_reason: e.to_string(),
                    ..created(INVALID_WATCH_ID)
                });
                return Err(e);
            }
            Ok((id, _)) => id,
        };
        queue.push(created(id));
        let compact = self.kv.compact_revision();
        if req.start_revision > 0 && req.start_revision < compact {
            // Created, then canceled at once: its history is gone.
            let wid = g
                .streams
                .get_mut(&stream)
                .and_then(|s| s.ids.remove(&id))
                .expect("just added");
            g.remove_watcher(wid);
            queue.push(WatchResponse {
                watch_id: id,
                canceled: true,
                compact_revision: compact,
                ..Default::default()
            });
        } else if added == Ok((id, Place::Unsynced)) {
            drop(g);
            self.signal.wake();
        }
        Ok(id)
    }

    /// Removes watcher `watch_id` of `stream` and queues its `canceled` response; false (and
    /// nothing queued) if the stream has no such watcher, as etcd.
    pub(crate) fn cancel(&self, stream: u64, watch_id: i64, reason: String) -> bool {
        let mut g = self.lock();
        let Some(st) = g.streams.get_mut(&stream) else {
            return false;
        };
        let Some(wid) = st.ids.remove(&watch_id) else {
            return false;
        };
        let queue = st.queue.clone();
        g.remove_watcher(wid);
        queue.push(WatchResponse {
            watch_id,
            revision: self.kv.current_revision(),
            canceled: true,
            cancel_reason: reason,
            ..Default::default()
        });
        g.answer_deferred_progress(stream);
        true
    }

    /// Removes a stream and all its watchers.
    pub(crate) fn close_stream(&self, stream: u64) {
        let mut g = self.lock();
        if let Some(st) = g.streams.remove(&stream) {
            for wid in st.ids.into_values() {
                g.remove_watcher(wid);
            }
            st.queue.close();
        }
    }

    /// etcd's RequestProgress: one response with watch id -1 and the last announced revision,
    /// as soon as every watcher of the stream is synced.
    pub(crate) fn request_progress(&self, stream: u64) {
        let mut g = self.lock();
        if let Some(st) = g.streams.get_mut(&stream) {
            st.deferred_progress = true;
            g.answer_deferred_progress(stream);
        }
    }

    /// The periodic progress notification: each watcher that asked for it, is synced and was
    /// sent no events since the last tick gets an empty response at the last announced
    /// revision (skipped if its queue is full: it is busy with events anyway).
    pub(crate) fn progress_tick(&self, stream: u64) {
        let mut g = self.lock();
        let g = &mut *g;
        let Some(st) = g.streams.get(&stream) else {
            return;
        };
        for wid in st.ids.values() {
            let w = g
                .watchers
                .get_mut(wid)
                .expect("a stream's watchers are registered");
            if !w.opts.progress_notify {
                continue;
            }
            if !w.sent_since_tick && w.place == Place::Synced {
                let _ = w.queue.try_push(w.response(g.notified_rev, Vec::new()));
            }
            w.sent_since_tick = false;
        }
    }
}

impl Groups {
    /// Registers a watcher: synced if it starts now or in the future, unsynced if it starts in
    /// the past. Returns its watch id and place.
    fn add_watcher(
        &mut self,
        stream: u64,
        queue: &Arc<Queue>,
        req: &WatchCreateRequest,
        cur: i64,
    ) -> Result<(i64, Place), WatchError> {
        let span = KeySpan::new(&req.key, &req.range_end)?;
        let st = self
            .streams
            .get_mut(&stream)
            .expect("checked by the caller");
        let watch_id = if req.watch_id == 0 {
            while st.ids.contains_key(&st.next_id) {
                st.next_id += 1;
            }
            st.next_id += 1;
            st.next_id - 1
        } else if st.ids.contains_key(&req.watch_id) {
            return Err(WatchError::DuplicateId);
        } else {
            req.watch_id
        };
        let mut opts = Options {
            prev_kv: req.prev_kv,
            progress_notify: req.progress_notify,
            fragment: req.fragment,
            ..Default::default()
        };
        for f in &req.filters {
            match FilterType::try_from(*f) {
                Ok(FilterType::Noput) => opts.no_put = true,
                Ok(FilterType::Nodelete) => opts.no_delete = true,
                Err(_) => {} // unknown filters are ignored, as etcd
            }
        }
        let wid = self.next_watcher;
        self.next_watcher += 1;
        st.ids.insert(watch_id, wid);
        let start = req.start_revision;
        let (place, min_rev) = if start <= 0 || start > cur {
            (Place::Synced, start.max(cur + 1))
        } else {
            (Place::Unsynced, start)
        };
        match place {
            Place::Synced => self.synced.add(wid, &span),
            _ => {
                self.unsynced.insert((min_rev, wid));
            }
        }
        self.watchers.insert(
            wid,
            Watcher {
                stream,
                queue: queue.clone(),
                watch_id,
                span,
                min_rev,
                place,
                opts,
                sent_since_tick: false,
            },
        );
        Ok((watch_id, place))
    }

    /// Forgets a watcher, wherever it is (the sync thread skips those gone while it read).
    pub(crate) fn remove_watcher(&mut self, wid: WatcherId) -> Option<Watcher> {
        let w = self.watchers.remove(&wid)?;
        match w.place {
            Place::Synced => {
                self.synced.remove(wid, &w.span);
            }
            Place::Unsynced => {
                self.unsynced.remove(&(w.min_rev, wid));
            }
            Place::Syncing => {}
        }
        Some(w)
    }

    /// Forgets a stream's watch id (its watcher was removed by the store, not the client).
    pub(crate) fn forget_id(&mut self, stream: u64, watch_id: i64) {
        if let Some(st) = self.streams.get_mut(&stream) {
            st.ids.remove(&watch_id);
        }
    }

    /// Moves a synced or syncing watcher to the unsynced group at `min_rev`.
    pub(crate) fn unsync(&mut self, wid: WatcherId, min_rev: i64) {
        let w = self.watchers.get_mut(&wid).expect("registered");
        if w.place == Place::Synced {
            self.synced.remove(wid, &w.span);
        }
        debug_assert!(w.place != Place::Unsynced);
        w.place = Place::Unsynced;
        w.min_rev = min_rev;
        self.unsynced.insert((min_rev, wid));
    }

    /// Moves a syncing watcher to the synced group.
    pub(crate) fn make_synced(&mut self, wid: WatcherId) {
        let w = self.watchers.get_mut(&wid).expect("registered");
        debug_assert_eq!(w.place, Place::Syncing);
        w.place = Place::Synced;
        self.synced.add(wid, &w.span);
    }

    /// Revisions `from..rev` were never announced: every synced watcher that wants any of them
    /// reads them from the backend.
    fn unsync_all_before(&mut self, rev: i64, from: i64) {
        let behind: Vec<(WatcherId, i64)> = self
            .watchers
            .iter()
            .filter(|(_, w)| w.place == Place::Synced && w.min_rev < rev)
            .map(|(&wid, w)| (wid, w.min_rev.max(from)))
            .collect();
        for (wid, min_rev) in behind {
            self.unsync(wid, min_rev);
        }
    }

    /// Sends the events of revision `rev` to the synced watchers of their keys, adding to
    /// `readers` the stream readers to wake. Returns whether a watcher became unsynced.
    fn deliver(&mut self, rev: i64, events: &[Event], readers: &mut Vec<Waker>) -> bool {
        let mut hits: Vec<(WatcherId, usize)> = Vec::new();
        for (i, ev) in events.iter().enumerate() {
            match &ev.kv {
                Some(kv) => self
                    .synced
                    .for_each_match(&kv.key, |wid| hits.push((wid, i))),
                None => tracing::error!(revision = rev, "watch event without a key-value; ignored"),
            }
        }
        // Stable: each watcher's events stay in sub revision order.
        hits.sort_by_key(|&(wid, _)| wid);
        let mut slow = Vec::new();
        for one in hits.chunk_by(|a, b| a.0 == b.0) {
            let wid = one[0].0;
            let w = self
                .watchers
                .get_mut(&wid)
                .expect("a synced watcher is registered");
            if w.min_rev > rev {
                continue; // starts later, or already read this revision from the backend
            }
            let evs: Vec<Event> = one
                .iter()
                .map(|&(_, i)| &events[i])
                .filter(|e| w.wants(e))
                .map(|e| w.prepare(e))
                .collect();
            if evs.is_empty() {
                continue;
            }
            match w.queue.try_push_deferred(w.response(rev, evs)) {
                Ok(reader) => {
                    w.sent_since_tick = true;
                    readers.extend(reader);
                }
                Err(_) => slow.push(wid),
            }
        }
        for &wid in &slow {
            self.unsync(wid, rev);
        }
        !slow.is_empty()
    }

    /// Answers a stream's pending RequestProgress if all its watchers are synced now.
    pub(crate) fn answer_deferred_progress(&mut self, stream: u64) {
        let Some(st) = self.streams.get(&stream) else {
            return;
        };
        if !st.deferred_progress {
            return;
        }
        let all_synced = st
            .ids
            .values()
            .all(|wid| self.watchers[wid].place == Place::Synced);
        if all_synced {
            st.queue.push(WatchResponse {
                watch_id: INVALID_WATCH_ID,
                revision: self.notified_rev,
                ..Default::default()
            });
            self.streams
                .get_mut(&stream)
                .expect("looked up above")
                .deferred_progress = false;
        }
    }
}
