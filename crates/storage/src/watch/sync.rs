//! The sync thread: catches unsynced watchers up from the backend and moves them to the synced
//! group.
//!
//! One round, in three steps, the groups lock held only for the first and the last:
//!
//! 1. Under the lock: cancel watchers whose next revision was compacted away; take up to
//!    [`MAX_WATCHERS_PER_SYNC`] unsynced watchers whose queues have room, most behind first,
//!    and mark them *syncing*; pick the revision window `[lo, hi]`, `lo` the lowest revision
//!    they need, `hi` at most the store's current revision.
//! 2. Unlocked: read the window's events from the backend, and the previous values for
//!    watchers that asked for `prev_kv`.
//! 3. Under the lock: send each watcher its events from the window; a watcher whose window
//!    reaches the last announced revision (`hi >= notified_rev`) joins the synced group with
//!    `min_rev = hi + 1`, so the `notify` calls still to come for revisions up to `hi` skip
//!    it, and those after `hi` reach it. Any other goes back to unsynced for another round.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use oxcd_api::mvccpb::{event::EventType, Event};

use super::group::WatcherId;
use super::span::KeySpan;
use super::store::{event_rev, Inner, Options, Place};
use super::{
    WatchResponse, MAX_REVS_PER_SYNC, MAX_WATCHERS_PER_SYNC, SYNC_INTERVAL, SYNC_READ_BYTES,
};
use crate::mvcc::{Error as MvccError, RangeOptions};

/// Wakes the sync thread early, or stops it.
#[derive(Default)]
pub(crate) struct Signal {
    state: Mutex<SignalState>,
    cond: Condvar,
}

#[derive(Default)]
struct SignalState {
    /// A wake came since the thread last looked.
    pending: bool,
    stop: bool,
}

impl Signal {
    /// Asks for a sync round now.
    pub(crate) fn wake(&self) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).pending = true;
        self.cond.notify_one();
    }

    /// Stops the thread.
    pub(crate) fn stop(&self) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).stop = true;
        self.cond.notify_one();
    }

    /// Waits for a wake, at most `timeout`; false once stopped.
    fn wait(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        while !st.pending && !st.stop {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            st = self
                .cond
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        st.pending = false;
        !st.stop
    }

    #[cfg(test)]
    pub(crate) fn take_pending(&self) -> bool {
        std::mem::take(&mut self.state.lock().unwrap().pending)
    }
}

/// Starts the sync thread; it runs until [`Signal::stop`].
pub(crate) fn spawn(inner: Arc<Inner>) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name("watch-sync".into())
        .spawn(move || {
            let mut syncer = Syncer {
                window: MAX_REVS_PER_SYNC,
            };
            let mut wait = SYNC_INTERVAL;
            while inner.signal.wait(wait) {
                let started = Instant::now();
                let more = syncer.round(&inner);
                // With work left, give writers as much time as the round took (as etcd does).
                wait = if more {
                    started.elapsed().max(Duration::from_millis(1))
                } else {
                    SYNC_INTERVAL
                };
            }
        })
        .expect("spawn the watch sync thread")
}

/// What the thread keeps between rounds.
struct Syncer {
    /// Revisions per read: shrinks when revisions are large, to keep a read near
    /// [`SYNC_READ_BYTES`].
    window: i64,
}

/// A watcher taken for a round, as it was when taken.
struct Taken {
    wid: WatcherId,
    span: KeySpan,
    min_rev: i64,
    opts: Options,
}

impl Syncer {
    /// One round; returns whether to go again at once (watchers moved on and some are left).
    fn round(&mut self, inner: &Inner) -> bool {
        let Some((taken, lo, hi)) = take(inner, self.window) else {
            return false;
        };
        let events = match inner.kv.events(lo, hi) {
            Ok(evs) => evs,
            Err(e) => {
                let compacted = matches!(e, MvccError::Compacted);
                if !compacted {
                    tracing::error!(error = %e, from = lo, to = hi, "failed to read watch events from the backend");
                }
                give_back(inner, &taken);
                return compacted; // the next round cancels them
            }
        };
        self.adjust_window(&events, hi - lo + 1);
        let events = fill_prev_kv(inner, &taken, events);
        deliver(inner, &taken, &events, hi)
    }

    fn adjust_window(&mut self, events: &[Event], revs: i64) {
        let bytes: usize = events
            .iter()
            .map(|e| e.kv.as_ref().map_or(0, |kv| kv.key.len() + kv.value.len()) + 32)
            .sum();
        let per_rev = (bytes as i64 / revs.max(1)).max(1);
        self.window = (SYNC_READ_BYTES as i64 / per_rev).clamp(1, MAX_REVS_PER_SYNC);
    }
}

/// Step 1: cancels compacted watchers; takes a batch and its revision window.
fn take(inner: &Inner, window: i64) -> Option<(Vec<Taken>, i64, i64)> {
    let mut g = inner.lock();
    if g.unsynced.is_empty() {
        return None;
    }
    let cur = inner.kv.current_revision();
    let compact = inner.kv.compact_revision();
    let mut compacted = Vec::new();
    let mut taken = Vec::new();
    for &(min_rev, wid) in &g.unsynced {
        if min_rev < compact {
            compacted.push(wid);
            continue;
        }
        if taken.len() >= MAX_WATCHERS_PER_SYNC {
            // Only compacted ones are left to find, and they come first: done.
            break;
        }
        let w = &g.watchers[&wid];
        if !w.queue.has_room() {
            continue; // its reader is behind; the queue wakes us when it drains
        }
        taken.push(Taken {
            wid,
            span: w.span.clone(),
            min_rev,
            opts: w.opts,
        });
    }
    for wid in compacted {
        let w = g
            .remove_watcher(wid)
            .expect("unsynced watchers are registered");
        g.forget_id(w.stream, w.watch_id);
        w.queue.push(WatchResponse {
            watch_id: w.watch_id,
            canceled: true,
            compact_revision: compact,
            ..Default::default()
        });
        g.answer_deferred_progress(w.stream);
    }
    let lo = taken.first()?.min_rev;
    let hi = cur.min(lo + window - 1);
    for t in &taken {
        g.unsynced.remove(&(t.min_rev, t.wid));
        g.watchers.get_mut(&t.wid).expect("registered").place = Place::Syncing;
    }
    Some((taken, lo, hi))
}

/// Puts taken watchers back, unchanged, after a failed read.
fn give_back(inner: &Inner, taken: &[Taken]) {
    let mut g = inner.lock();
    for t in taken {
        if g.watchers
            .get(&t.wid)
            .is_some_and(|w| w.place == Place::Syncing)
        {
            g.unsync(t.wid, t.min_rev);
        }
    }
}

/// Step 2b: fills `prev_kv` (the value at the revision before) into the events that a watcher
/// asking for it will get. A previous value already compacted away stays empty, as in etcd.
fn fill_prev_kv(inner: &Inner, taken: &[Taken], mut events: Vec<Event>) -> Vec<Event> {
    let wanting: Vec<&Taken> = taken.iter().filter(|t| t.opts.prev_kv).collect();
    if wanting.is_empty() {
        return events;
    }
    for ev in &mut events {
        let Some(kv) = &ev.kv else { continue };
        let created = ev.r#type == EventType::Put as i32 && kv.create_revision == kv.mod_revision;
        if created || ev.prev_kv.is_some() {
            continue;
        }
        let rev = kv.mod_revision;
        if !wanting
            .iter()
            .any(|t| rev >= t.min_rev && t.span.contains(&kv.key))
        {
            continue;
        }
        let opts = RangeOptions {
            rev: rev - 1,
            ..Default::default()
        };
        if let Ok(r) = inner.kv.range(&kv.key, b"", opts) {
            ev.prev_kv = r.kvs.into_iter().next();
        }
    }
    events
}

/// Step 3: sends each taken watcher its events and finds its place. Returns whether another
/// round should follow at once.
fn deliver(inner: &Inner, taken: &[Taken], events: &[Event], hi: i64) -> bool {
    let mut g = inner.lock();
    let g = &mut *g;
    let notified = g.notified_rev;
    let mut moved_on = false;
    let mut streams = Vec::new();
    for t in taken {
        let Some(w) = g.watchers.get_mut(&t.wid) else {
            continue; // canceled while we read
        };
        debug_assert_eq!(w.place, Place::Syncing);
        let evs: Vec<Event> = events
            .iter()
            .filter(|e| event_rev(e) >= w.min_rev)
            .filter(|e| e.kv.as_ref().is_some_and(|kv| w.span.contains(&kv.key)))
            .filter(|e| w.wants(e))
            .map(|e| w.prepare(e))
            .collect();
        if !evs.is_empty() {
            if w.queue.try_push(w.response(hi, evs)).is_err() {
                let min_rev = w.min_rev;
                g.unsync(t.wid, min_rev);
                continue;
            }
            w.sent_since_tick = true;
        }
        moved_on = true;
        w.min_rev = w.min_rev.max(hi + 1);
        if hi >= notified {
            streams.push(w.stream);
            g.make_synced(t.wid);
        } else {
            let min_rev = w.min_rev;
            g.unsync(t.wid, min_rev);
        }
    }
    streams.sort_unstable();
    streams.dedup();
    for s in streams {
        g.answer_deferred_progress(s);
    }
    moved_on && !g.unsynced.is_empty()
}

#[cfg(test)]
mod tests {
    use super::super::fixture::{create, nothing, recv, summary, Fixture, WAIT};
    use super::super::STREAM_QUEUE_LEN;
    use super::*;
    use oxcd_api::etcdserverpb::WatchCreateRequest;

    /// Reads responses until `n` events came; checks they are `first..first + n` in order.
    fn expect_revisions(
        st: &super::super::WatchStream,
        first: i64,
        n: usize,
    ) -> Vec<WatchResponse> {
        let mut got = Vec::new();
        let mut resps = Vec::new();
        while got.len() < n {
            let r = recv(st);
            assert!(r.events.iter().all(|e| event_rev(e) <= r.revision), "{r:?}");
            got.extend(r.events.iter().map(event_rev));
            resps.push(r);
        }
        assert_eq!(got, (first..first + n as i64).collect::<Vec<_>>());
        resps
    }

    #[test]
    fn a_past_start_replays_history_then_goes_live() {
        let f = Fixture::new();
        for i in 0..10 {
            f.put("k", &i.to_string()); // 2..=11
        }
        let st = f.ws.new_stream();
        st.watch(&create("k", "", 5)).unwrap();
        let c = recv(&st);
        assert_eq!((c.created, c.revision), (true, 11));
        let r = recv(&st);
        assert_eq!(summary(&r).first().unwrap(), &("k".into(), "3".into(), 5));
        assert_eq!((r.events.len(), r.revision), (7, 11));
        f.put("k", "live"); // 12
        assert_eq!(summary(&recv(&st)), [("k".into(), "live".into(), 12)]);
        nothing(&st);
        assert_eq!(f.ws.watcher_counts(), (1, 0));
    }

    #[test]
    fn a_compacted_start_is_created_then_canceled_with_the_compact_revision() {
        let f = Fixture::new();
        for i in 0..5 {
            f.put("k", &i.to_string()); // 2..=6
        }
        f.kv().compact(4).unwrap().wait().unwrap();
        let st = f.ws.new_stream();
        let id = st.watch(&create("k", "", 3)).unwrap();
        let c = recv(&st);
        assert_eq!((c.watch_id, c.created, c.canceled), (id, true, false));
        let x = recv(&st);
        assert_eq!(
            (x.watch_id, x.canceled, x.compact_revision, x.revision),
            (id, true, 4, 0)
        );
        assert!(!st.cancel(id), "gone");
        // The compaction revision itself is still served, as etcd.
        let ok = st.watch(&create("k", "", 4)).unwrap();
        recv(&st);
        let r = recv(&st);
        assert_eq!((r.watch_id, summary(&r).len()), (ok, 3));
    }

    #[test]
    fn a_watcher_behind_a_compaction_is_canceled_by_the_sync_thread() {
        let f = Fixture::new();
        let slow = f.ws.new_stream();
        let id = slow.watch(&create("k", "", 0)).unwrap();
        // Fill the queue without reading: the watcher falls behind at some revision.
        for i in 0..STREAM_QUEUE_LEN + 10 {
            f.put("k", &i.to_string());
        }
        assert_eq!(f.ws.watcher_counts(), (0, 1));
        f.kv()
            .compact(f.kv().current_revision())
            .unwrap()
            .wait()
            .unwrap();
        let mut last = None;
        while let Some(r) = slow.recv_timeout(Duration::from_secs(2)) {
            last = Some(r);
        }
        let last = last.unwrap();
        assert_eq!(
            (last.watch_id, last.canceled, last.compact_revision),
            (id, true, f.kv().current_revision())
        );
        assert_eq!(f.ws.watcher_counts(), (0, 0));
    }

    #[test]
    fn a_slow_reader_is_caught_up_from_the_backend_without_gaps_in_bounded_memory() {
        let f = Fixture::new();
        let slow = f.ws.new_stream();
        slow.watch(&WatchCreateRequest {
            prev_kv: true,
            ..create("k", "", 0)
        })
        .unwrap();
        recv(&slow);
        let fast = f.ws.new_stream();
        fast.watch(&create("k", "", 0)).unwrap();
        recv(&fast);
        let n = STREAM_QUEUE_LEN * 3;
        for i in 0..n {
            f.put("k", &i.to_string()); // 2..
            while let Some(r) = fast.try_recv() {
                assert_eq!(r.events.len(), 1);
            }
        }
        assert!(slow.queued() <= STREAM_QUEUE_LEN, "the queue stays bounded");
        assert_eq!(f.ws.watcher_counts(), (1, 1));
        let resps = expect_revisions(&slow, 2, n);
        // prev_kv is right whether the event came live or from the backend.
        let mut prev: Option<Vec<u8>> = None;
        for e in resps.iter().flat_map(|r| &r.events) {
            assert_eq!(e.prev_kv.as_ref().map(|p| p.value.clone()), prev);
            prev = Some(e.kv.as_ref().unwrap().value.clone());
        }
        let deadline = std::time::Instant::now() + WAIT;
        while f.ws.watcher_counts() != (2, 0) {
            assert!(std::time::Instant::now() < deadline, "never synced again");
            std::thread::sleep(Duration::from_millis(10));
        }
        f.put("k", "again");
        assert_eq!(recv(&slow).events.len(), 1);
        nothing(&slow);
    }

    #[test]
    fn catch_up_reads_prev_kv_from_the_backend() {
        let f = Fixture::new();
        f.put("a", "1"); // 2
        f.put("a", "2"); // 3
        f.delete("a", ""); // 4
        f.put("a", "3"); // 5 (created again)
        let st = f.ws.new_stream();
        st.watch(&WatchCreateRequest {
            prev_kv: true,
            ..create("a", "", 2)
        })
        .unwrap();
        recv(&st);
        let r = recv(&st);
        let prevs: Vec<Option<Vec<u8>>> = r
            .events
            .iter()
            .map(|e| e.prev_kv.as_ref().map(|p| p.value.clone()))
            .collect();
        assert_eq!(
            prevs,
            [None, Some(b"1".to_vec()), Some(b"2".to_vec()), None]
        );
    }

    #[test]
    fn a_long_history_comes_in_windows_of_whole_revisions() {
        let f = Fixture::new();
        let revs = MAX_REVS_PER_SYNC + 200;
        for i in 0..revs {
            f.batch(|b| {
                let mut t = b.txn();
                t.put(b"a", i.to_string().as_bytes(), 0).unwrap();
                t.put(b"b", i.to_string().as_bytes(), 0).unwrap();
                t.end()
            });
        }
        let st = f.ws.new_stream();
        st.watch(&create("a", "c", 2)).unwrap();
        recv(&st);
        let first = recv(&st);
        assert_eq!(first.events.len() as i64, 2 * MAX_REVS_PER_SYNC);
        assert_eq!(first.revision, 1 + MAX_REVS_PER_SYNC);
        let second = recv(&st);
        assert_eq!(second.events.len(), 400);
        assert_eq!(event_rev(&second.events[0]), 2 + MAX_REVS_PER_SYNC);
        assert_eq!(second.revision, f.kv().current_revision());
    }

    #[test]
    fn revisions_never_notified_are_read_from_the_backend() {
        let f = Fixture::new();
        let st = f.ws.new_stream();
        st.watch(&create("a", "", 0)).unwrap();
        recv(&st);
        // As if apply lost a notify call: commit without notifying.
        let mut b = f.kv().begin_batch().unwrap();
        let mut t = b.txn();
        t.put(b"a", b"lost", 0).unwrap();
        t.end();
        b.commit().unwrap();
        f.put("a", "next"); // 3
        let mut got = Vec::new();
        while got.len() < 2 {
            got.extend(summary(&recv(&st)));
        }
        assert_eq!(
            got,
            [
                ("a".into(), "lost".into(), 2),
                ("a".into(), "next".into(), 3)
            ]
        );
        nothing(&st);
    }

    #[test]
    fn after_a_restore_synced_watchers_read_the_new_revisions() {
        let f = Fixture::new();
        let st = f.ws.new_stream();
        st.watch(&create("a", "", 0)).unwrap();
        st.watch(&create("b", "", 4)).unwrap(); // future: still ahead after the restore
        recv(&st);
        recv(&st);
        // As if a snapshot brought revisions 2 and 3 without any notify.
        for v in ["1", "2"] {
            let mut b = f.kv().begin_batch().unwrap();
            let mut t = b.txn();
            t.put(b"a", v.as_bytes(), 0).unwrap();
            t.end();
            b.commit().unwrap();
        }
        f.ws.restored();
        let r = recv(&st);
        assert_eq!(
            summary(&r),
            [("a".into(), "1".into(), 2), ("a".into(), "2".into(), 3)]
        );
        f.put("b", "x"); // 4: notify goes on from the restored revision
        assert_eq!(summary(&recv(&st)), [("b".into(), "x".into(), 4)]);
        nothing(&st);
    }

    #[test]
    fn many_past_watchers_sync_in_batches() {
        let f = Fixture::new();
        for i in 0..20 {
            f.put(&format!("k{}", i % 4), "v");
        }
        let st = f.ws.new_stream();
        let n = MAX_WATCHERS_PER_SYNC * 2 + 7;
        for i in 0..n {
            st.watch(&create(&format!("k{}", i % 4), "", 2 + (i % 20) as i64))
                .unwrap();
        }
        let mut events = 0;
        let mut created = 0;
        while created < n || f.ws.watcher_counts() != (n, 0) {
            let r = recv(&st);
            created += r.created as usize;
            events += r.events.len();
        }
        while let Some(r) = st.try_recv() {
            events += r.events.len();
        }
        // Watcher i watches k(i%4) from revision 2 + i%20; key k(j) is written at j+2, j+6, ...
        let want: usize = (0..n)
            .map(|i| (0..20).filter(|r| r % 4 == i % 4 && *r >= i % 20).count())
            .sum();
        assert_eq!(events, want);
    }
}
