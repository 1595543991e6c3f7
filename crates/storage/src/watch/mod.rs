//! The watchable store: etcd's watch guarantees over the [`KvStore`](crate::KvStore).
//!
//! # Watchers, streams and groups
//!
//! A client opens a [`WatchStream`] and creates any number of watchers on it; every response
//! for every watcher of a stream goes through one bounded queue, in order, to the one task that
//! sends them to the client. A watcher watches one key, a range `[key, end)` or every key from
//! `key` on, from a start revision.
//!
//! The [`WatchableStore`] keeps each watcher in exactly one of three places:
//!
//! - **synced**: it has been sent everything up to the last revision the apply task
//!   announced with [`WatchableStore::notify`]. Only synced watchers receive events from
//!   `notify`, and they sit in an index by key so that a write finds them quickly.
//! - **unsynced**: it still needs revisions the store already has, because it started in the
//!   past, or its stream's queue was full when an event came (a slow reader). It holds only
//!   the first revision it still needs; no event is kept in memory for it.
//! - **syncing**: a background thread is reading its missing revisions from the backend.
//!
//! The sync thread wakes every 100 ms (at once when a new past watcher or a drained queue calls
//! for it), takes up to 512 unsynced watchers, most behind first, reads the missing revisions
//! from the backend in bounded windows, sends them, and moves each watcher that has seen
//! every announced revision to the synced group.
//!
//! # Guarantees, and why they hold
//!
//! - *Ordered and unique*: a watcher's next revision (`min_rev`) only grows, and only the place
//!   that holds the watcher sends to it: `notify` sends revision `R` to a synced watcher only if
//!   `R >= min_rev`; the sync thread sends `[min_rev, hi]` and sets `min_rev = hi + 1`.
//! - *Reliable*: a watcher moves to synced only when the revisions it has read cover every
//!   revision already announced; a push that does not fit the queue moves it back to unsynced
//!   at the revision it failed to send. Nothing is dropped; a slow reader costs a backend read
//!   later instead of memory now.
//! - *Atomic*: one response holds whole revisions; the events of one revision (all the
//!   operations of one transaction) are never split (the gRPC layer may fragment a response
//!   only for watchers that asked for it).
//! - *Compaction*: a watcher that needs a revision below the compaction revision gets a
//!   response with `compact_revision` and is canceled, as etcd does (a start revision equal to
//!   the compaction revision is still served).
//! - *Progress*: a progress notification at revision `R` is sent only by a synced watcher, with
//!   `R` the last announced revision: everything up to `R` is already in the queue before it.
//!
//! # Who calls what
//!
//! The apply task calls [`WatchableStore::notify`] after each batch commits, with the batch's
//! events in revision order (as [`Txn::end`](crate::Txn::end) returns them, with `prev_kv`).
//! The gRPC Watch service owns the streams. Nothing here blocks on the network: a full queue
//! never stops `notify`.

mod group;
mod queue;
mod span;
mod store;
mod stream;
mod sync;

#[cfg(test)]
mod fixture;

pub use store::WatchableStore;
pub use stream::WatchStream;

use oxcd_api::mvccpb::Event;

/// Watchers taken per sync round (etcd's `maxWatchersPerSync`): bounds the time the sync
/// thread keeps one batch, so new past watchers are not starved by a crowd.
pub(crate) const MAX_WATCHERS_PER_SYNC: usize = 512;

/// The most revisions one catch-up read (and so one catch-up response) covers (etcd's
/// `watchBatchMaxRevs`).
pub(crate) const MAX_REVS_PER_SYNC: i64 = 1000;

/// Roughly how many bytes of events one catch-up read aims for; the revision window shrinks
/// when revisions are large, so a lagging watcher never makes the sync thread load gigabytes.
pub(crate) const SYNC_READ_BYTES: usize = 4 << 20;

/// How long the sync thread sleeps when nothing calls it (etcd syncs every 100 ms).
pub(crate) const SYNC_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

/// A stream's queue takes at most this many responses; past it (or past
/// [`STREAM_QUEUE_BYTES`]) the watcher that could not push becomes unsynced. Large enough to
/// absorb bursts while the sending task is busy; etcd uses 128 per stream.
pub(crate) const STREAM_QUEUE_LEN: usize = 1024;

/// A stream's queue takes at most about this many bytes of events (a response that alone is
/// larger still goes into an empty queue): the memory a reader that stopped reading can pin.
pub(crate) const STREAM_QUEUE_BYTES: usize = 2 << 20;

/// The watch id etcd uses in responses that belong to no watcher (a refused create, a progress
/// answer for the whole stream).
pub const INVALID_WATCH_ID: i64 = -1;

/// Why a watcher could not be created. The `Display` text is etcd's `cancel_reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WatchError {
    /// The client chose a watch id already used on this stream.
    #[error("mvcc: duplicate watch ID provided on the WatchStream")]
    DuplicateId,
    /// `range_end` is not above `key` (or the stream is closed).
    #[error("mvcc: watcher range is empty")]
    EmptyRange,
}

/// One response for the client, as the gRPC layer turns it into etcd's `WatchResponse`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WatchResponse {
    /// The watcher it belongs to, or [`INVALID_WATCH_ID`].
    pub watch_id: i64,
    /// The header revision: for events, the last revision they cover; for a cancel by
    /// compaction 0, as etcd sends; otherwise the store's revision when the response was made.
    pub revision: i64,
    /// Answer to a create request.
    pub created: bool,
    /// The watcher is gone; nothing more comes for `watch_id`.
    pub canceled: bool,
    /// Set (with `canceled`) when the watcher needed revisions below this compaction revision.
    pub compact_revision: i64,
    /// Why a create was refused (etcd's texts).
    pub cancel_reason: String,
    /// Events, in revision order, whole revisions only.
    pub events: Vec<Event>,
    /// The watcher asked for large responses to be split (`fragment` in its create request).
    pub fragment: bool,
}

impl WatchResponse {
    /// A rough size in bytes, to bound queues (not the encoded length).
    pub(crate) fn weight(&self) -> usize {
        const PER_EVENT: usize = 48;
        let kv_len = |kv: &Option<oxcd_api::mvccpb::KeyValue>| {
            kv.as_ref().map_or(0, |kv| kv.key.len() + kv.value.len())
        };
        64 + self
            .events
            .iter()
            .map(|e| PER_EVENT + kv_len(&e.kv) + kv_len(&e.prev_kv))
            .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    //! The whole watchable store against a model of the MVCC history.

    use std::collections::{BTreeMap, BTreeSet};
    use std::time::{Duration, Instant};

    use oxcd_api::etcdserverpb::watch_create_request::FilterType;
    use oxcd_api::etcdserverpb::WatchCreateRequest;
    use oxcd_api::mvccpb::{event::EventType, Event, KeyValue};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::fixture::{Fixture, WAIT};
    use super::*;

    const KEYS: [&str; 8] = ["a", "a/1", "a/2", "b", "c", "d/x", "d/y", "e"];

    /// What a watcher asked for, and what it got.
    struct Rec {
        stream: usize,
        id: i64,
        req: WatchCreateRequest,
        /// The header revision of its `created` response.
        created: Option<i64>,
        events: Vec<Event>,
        /// Revisions seen in earlier responses (no revision may be split across responses).
        revs_seen: BTreeSet<i64>,
        last_header: i64,
        /// Canceled: by compaction (`Some(compact_revision)`), or by the client (`Some(0)`).
        ended: Option<i64>,
        client_canceled: bool,
    }

    impl Rec {
        /// The first revision it should see.
        fn start(&self) -> i64 {
            let created = self.created.expect("created first");
            if self.req.start_revision > 0 {
                self.req.start_revision
            } else {
                created + 1
            }
        }

        fn wants(&self, ev: &Event) -> bool {
            let span = span::KeySpan::new(&self.req.key, &self.req.range_end).unwrap();
            let is_put = ev.r#type == EventType::Put as i32;
            let filtered = self.req.filters.iter().any(|&f| {
                (f == FilterType::Noput as i32 && is_put)
                    || (f == FilterType::Nodelete as i32 && !is_put)
            });
            span.contains(&ev.kv.as_ref().unwrap().key) && !filtered
        }

        /// What the model says it should get, through revision `upto`.
        fn expected(&self, history: &[Vec<Event>], upto: i64) -> Vec<Event> {
            let start = self.start() as usize;
            (start..=upto as usize)
                .filter_map(|r| history.get(r))
                .flatten()
                .filter(|e| self.wants(e))
                .cloned()
                .collect()
        }
    }

    /// The model: each revision's events (with prev_kv), and the live keys.
    #[derive(Default)]
    struct Model {
        history: Vec<Vec<Event>>,
        state: BTreeMap<Vec<u8>, KeyValue>,
    }

    fn key(rng: &mut StdRng) -> Vec<u8> {
        KEYS[rng.random_range(0..KEYS.len())].as_bytes().to_vec()
    }

    fn random_request(rng: &mut StdRng, cur: i64) -> WatchCreateRequest {
        let (k, end): (Vec<u8>, Vec<u8>) = match rng.random_range(0..6) {
            0 | 1 => (key(rng), vec![]),
            2 => (b"a/".to_vec(), b"a0".to_vec()),
            3 => (b"b".to_vec(), b"d/y".to_vec()),
            4 => (b"c".to_vec(), vec![0]),
            _ => (vec![], vec![0]),
        };
        let start = match rng.random_range(0..4) {
            0 => 0,
            1 => cur + rng.random_range(1..4),
            _ => rng.random_range((cur - 200).max(1)..=cur),
        };
        let mut filters = Vec::new();
        if rng.random_bool(0.15) {
            filters.push(FilterType::Noput as i32);
        }
        if rng.random_bool(0.15) {
            filters.push(FilterType::Nodelete as i32);
        }
        WatchCreateRequest {
            key: k,
            range_end: end,
            start_revision: start,
            filters,
            prev_kv: rng.random_bool(0.5),
            ..Default::default()
        }
    }

    /// One random batch of transactions, applied to store and model; returns the events.
    fn random_batch(rng: &mut StdRng, f: &Fixture, model: &mut Model, compacted: &mut Vec<i64>) {
        let mut b = f.kv().begin_batch().unwrap();
        let mut all = Vec::new();
        for _ in 0..rng.random_range(1..4) {
            let rev = b.current_revision() + 1;
            let mut t = b.txn();
            let mut touched: BTreeSet<Vec<u8>> = BTreeSet::new();
            let mut want = Vec::new();
            for _ in 0..rng.random_range(1..4) {
                if rng.random_bool(0.7) {
                    let k = key(rng);
                    if !touched.insert(k.clone()) {
                        continue; // etcd refuses a txn that writes a key twice
                    }
                    let v = format!("{rev}-{}", rng.random::<u16>()).into_bytes();
                    t.put(&k, &v, 0).unwrap();
                    let prev = model.state.get(&k).cloned();
                    let kv = KeyValue {
                        key: k.clone(),
                        create_revision: prev.as_ref().map_or(rev, |p| p.create_revision),
                        mod_revision: rev,
                        version: prev.as_ref().map_or(1, |p| p.version + 1),
                        value: v,
                        lease: 0,
                    };
                    model.state.insert(k, kv.clone());
                    want.push(Event {
                        r#type: EventType::Put as i32,
                        kv: Some(kv),
                        prev_kv: prev,
                    });
                } else {
                    let (k, end) = if rng.random_bool(0.5) {
                        (key(rng), vec![])
                    } else {
                        (b"a".to_vec(), b"c".to_vec())
                    };
                    let span = span::KeySpan::new(&k, &end).unwrap();
                    if touched.iter().any(|x| span.contains(x)) {
                        continue;
                    }
                    let gone: Vec<Vec<u8>> = model
                        .state
                        .keys()
                        .filter(|x| span.contains(x))
                        .cloned()
                        .collect();
                    t.delete_range(&k, &end).unwrap();
                    for g in gone {
                        touched.insert(g.clone());
                        let prev = model.state.remove(&g);
                        let kv = KeyValue {
                            key: g,
                            mod_revision: rev,
                            ..Default::default()
                        };
                        want.push(Event {
                            r#type: EventType::Delete as i32,
                            kv: Some(kv),
                            prev_kv: prev,
                        });
                    }
                }
            }
            let got = t.end();
            assert_eq!(got, want, "the model agrees with the store");
            if !want.is_empty() {
                assert_eq!(model.history.len() as i64, rev);
                model.history.push(want);
            }
            all.extend(got);
        }
        if rng.random_bool(0.015) {
            let cur = b.current_revision();
            let from = (compacted.last().copied().unwrap_or(0) + 1).max(cur - 100);
            if from <= cur {
                let at = rng.random_range(from..=cur);
                let _ = b.compact(at).unwrap();
                compacted.push(at);
            }
        }
        b.commit().unwrap();
        f.ws.notify(all);
    }

    /// Checks one response against what its watcher asked for and got so far.
    fn check(
        seed: u64,
        recs: &mut [Rec],
        stream: usize,
        r: WatchResponse,
        history: &[Vec<Event>],
        compacted: &[i64],
    ) {
        if r.watch_id == INVALID_WATCH_ID {
            assert!(!r.created, "seed {seed}: no refused creates here");
            // A progress answer: every synced watcher of the stream has everything up to it.
            for rec in recs
                .iter()
                .filter(|w| w.stream == stream && w.created.is_some() && w.ended.is_none())
            {
                let upto = changes(&rec.expected(history, r.revision), compacted);
                let got = changes(&rec.events, compacted);
                assert!(
                    got.len() >= upto.len() && got[..upto.len()] == upto[..],
                    "seed {seed}: progress at {} before watcher {} had its events",
                    r.revision,
                    rec.id
                );
            }
            return;
        }
        let rec = recs
            .iter_mut()
            .find(|w| w.stream == stream && w.id == r.watch_id)
            .expect("a known watcher");
        assert!(
            rec.ended.is_none(),
            "seed {seed}: a response after the cancel: {r:?}"
        );
        if r.created {
            assert!(rec.created.is_none() && !r.canceled);
            rec.created = Some(r.revision);
            return;
        }
        assert!(rec.created.is_some(), "seed {seed}: created comes first");
        if r.canceled {
            assert!(
                rec.client_canceled || r.compact_revision > 0,
                "seed {seed}: {r:?}"
            );
            rec.ended = Some(r.compact_revision);
            return;
        }
        assert!(
            r.revision >= rec.last_header,
            "seed {seed}: header revisions go back"
        );
        rec.last_header = r.revision;
        let mut revs = BTreeSet::new();
        for e in &r.events {
            let rev = e.kv.as_ref().unwrap().mod_revision;
            assert!(
                rev <= r.revision,
                "seed {seed}: an event above the header revision"
            );
            assert!(
                !rec.revs_seen.contains(&rev),
                "seed {seed}: revision {rev} split across responses"
            );
            revs.insert(rev);
        }
        rec.revs_seen.extend(revs);
        rec.events.extend(r.events);
    }

    /// Events as `(type, kv)`, leaving out those at compaction revisions: a compaction at
    /// revision C drops C's deletions from the backend (as etcd's does), so a watcher that read
    /// C from there may lack them.
    fn changes(evs: &[Event], compacted: &[i64]) -> Vec<(i32, KeyValue)> {
        evs.iter()
            .map(|e| (e.r#type, e.kv.clone().unwrap()))
            .filter(|(_, kv)| !compacted.contains(&kv.mod_revision))
            .collect()
    }

    /// Compares a watcher's events with the model.
    fn check_final(
        seed: u64,
        rec: &Rec,
        history: &[Vec<Event>],
        compacted: &[i64],
        final_compact: i64,
    ) {
        let want = rec.expected(history, history.len() as i64 - 1);
        let ctx = format!(
            "seed {seed}: watcher {} of stream {} {:?}",
            rec.id, rec.stream, rec.req
        );
        for e in &rec.events {
            let kv = e.kv.as_ref().unwrap();
            let model = history[kv.mod_revision as usize]
                .iter()
                .find(|m| m.kv.as_ref().unwrap().key == kv.key);
            let model = model.unwrap_or_else(|| panic!("{ctx}: an event the history lacks: {e:?}"));
            assert_eq!(e.kv, model.kv, "{ctx}");
            match (&e.prev_kv, rec.req.prev_kv) {
                (None, false) => {}
                (Some(_), false) => panic!("{ctx}: prev_kv not asked for"),
                (got, true) if *got == model.prev_kv => {}
                // Read from the backend after a compaction removed the previous value.
                (None, true) if kv.mod_revision - 1 < final_compact => {}
                (got, true) => panic!("{ctx}: prev_kv {got:?}, want {:?}", model.prev_kv),
            }
        }
        let got = changes(&rec.events, compacted);
        let want = changes(&want, compacted);
        if rec.ended.is_some() {
            assert!(
                got.len() <= want.len() && got[..] == want[..got.len()],
                "{ctx}: not a prefix of history"
            );
            if let Some(c) = rec.ended.filter(|&c| c > 0) {
                assert!(
                    compacted.contains(&c),
                    "{ctx}: compact_revision {c} was never a compaction"
                );
            }
        } else {
            assert_eq!(got.len(), want.len(), "{ctx}: event count");
            assert!(got == want, "{ctx}: events differ");
        }
    }

    /// Random writes, multi-op transactions and compactions, with watchers from now, the past
    /// and the future, some with filters and prev_kv, on streams read fast, slowly, or not at
    /// all until the end. Every watcher's events are checked against the model history: no
    /// gap, no duplicate, order, whole revisions, prev_kv, compaction reported. Replay a failure
    /// with OXCD_TEST_SEED.
    #[test]
    fn randomized_watchers_see_exactly_the_history() {
        let seed: u64 = std::env::var("OXCD_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(rand::random);
        println!("OXCD_TEST_SEED={seed}");
        let mut rng = StdRng::seed_from_u64(seed);
        let f = Fixture::new();
        let mut model = Model {
            history: vec![vec![], vec![]],
            ..Default::default()
        }; // revisions 0 and 1
        let mut compacted = Vec::new();
        // Streams 0 and 1 are read after every step, 2 now and then, 3 only at the end.
        let streams: Vec<WatchStream> = (0..4).map(|_| f.ws.new_stream()).collect();
        let mut recs: Vec<Rec> = Vec::new();
        let add = |recs: &mut Vec<Rec>, rng: &mut StdRng, s: usize, cur: i64| {
            let req = random_request(rng, cur);
            let id = streams[s].watch(&req).unwrap();
            recs.push(Rec {
                stream: s,
                id,
                req,
                created: None,
                events: vec![],
                revs_seen: BTreeSet::new(),
                last_header: 0,
                ended: None,
                client_canceled: false,
            });
        };
        for s in 0..streams.len() {
            for _ in 0..4 {
                add(&mut recs, &mut rng, s, 1);
            }
        }
        let mut most_unsynced = 0;
        for _step in 0..700 {
            random_batch(&mut rng, &f, &mut model, &mut compacted);
            most_unsynced = most_unsynced.max(f.ws.watcher_counts().1);
            let cur = f.kv().current_revision();
            if rng.random_bool(0.15) {
                let s = rng.random_range(0..streams.len());
                add(&mut recs, &mut rng, s, cur);
            }
            if rng.random_bool(0.03) {
                let i = rng.random_range(0..recs.len());
                if recs[i].ended.is_none() && !recs[i].client_canceled {
                    recs[i].client_canceled = streams[recs[i].stream].cancel(recs[i].id);
                }
            }
            if rng.random_bool(0.05) {
                streams[rng.random_range(0..streams.len())].request_progress();
            }
            for (s, st) in streams.iter().enumerate() {
                let budget = match s {
                    0 | 1 => usize::MAX,
                    2 if rng.random_bool(0.1) => rng.random_range(1..200),
                    _ => 0,
                };
                for _ in 0..budget {
                    let Some(r) = st.try_recv() else { break };
                    check(seed, &mut recs, s, r, &model.history, &compacted);
                }
            }
        }
        // Drain until every watcher is synced and the queues stay empty.
        let deadline = Instant::now() + WAIT;
        let mut quiet_since = Instant::now();
        while quiet_since.elapsed() < Duration::from_millis(300) {
            assert!(
                Instant::now() < deadline,
                "seed {seed}: watchers never caught up: {:?}",
                f.ws
            );
            let mut any = false;
            for (s, st) in streams.iter().enumerate() {
                while let Some(r) = st.try_recv() {
                    check(seed, &mut recs, s, r, &model.history, &compacted);
                    any = true;
                }
            }
            if any || f.ws.watcher_counts().1 != 0 {
                quiet_since = Instant::now();
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let final_compact = f.kv().compact_revision();
        let mut compaction_cancels = 0;
        for rec in &recs {
            check_final(seed, rec, &model.history, &compacted, final_compact);
            compaction_cancels += rec.ended.is_some_and(|c| c > 0) as usize;
        }
        println!(
            "revisions {}, compactions {}, watchers {}, canceled by compaction {compaction_cancels}, \
             most unsynced at once {most_unsynced}",
            model.history.len() - 1,
            compacted.len(),
            recs.len()
        );
    }
}
