//! The Watch service through the `etcd-client` crate (issue 3): one stream with many watchers,
//! ranges, filters, prev_kv, history and compaction, ids, cancel, progress, whole revisions,
//! a reader that stops reading, and a randomized run checked against the history it wrote.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use etcd_client::{
    Client, ConnectOptions, EventType, Txn, TxnOp, WatchFilterType, WatchOptions, WatchResponse,
    WatchStream,
};
use oxcd_e2e::Member;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Every wait for a watch response has this deadline.
const WAIT: Duration = Duration::from_secs(20);

async fn connect(member: &Member) -> Client {
    Client::connect([member.endpoint()], None)
        .await
        .unwrap_or_else(|e| panic!("connect to {}: {e}", member.endpoint()))
}

async fn next(stream: &mut WatchStream) -> WatchResponse {
    match tokio::time::timeout(WAIT, stream.message()).await {
        Ok(Ok(Some(r))) => r,
        Ok(other) => panic!("watch stream ended: {other:?}"),
        Err(_) => panic!("no watch response in {WAIT:?}"),
    }
}

/// `(type, key, value, mod_revision)` of each event.
fn summary(r: &WatchResponse) -> Vec<(EventType, String, String, i64)> {
    r.events()
        .iter()
        .map(|e| {
            let kv = e.kv().expect("an event has a kv");
            (
                e.event_type(),
                kv.key_str().unwrap().to_owned(),
                kv.value_str().unwrap().to_owned(),
                kv.mod_revision(),
            )
        })
        .collect()
}

fn ev(t: EventType, k: &str, v: &str, rev: i64) -> (EventType, String, String, i64) {
    (t, k.to_owned(), v.to_owned(), rev)
}

#[tokio::test]
async fn one_stream_many_watchers_ranges_filters_prev_kv() {
    let member = Member::start_single();
    let mut c = connect(&member).await;
    c.put("a", "0", None).await.unwrap(); // 2
    let mut s = c
        .watch("a", Some(WatchOptions::new().with_prev_key()))
        .await
        .unwrap();
    let created = next(&mut s).await;
    assert!(created.created());
    assert_eq!(created.header().unwrap().revision(), 2);
    let key_id = created.watch_id();
    s.watch(
        "b/",
        Some(
            WatchOptions::new()
                .with_prefix()
                .with_filters([WatchFilterType::NoPut]),
        ),
    )
    .await
    .unwrap();
    let no_put = next(&mut s).await.watch_id();
    s.watch("c", Some(WatchOptions::new().with_from_key()))
        .await
        .unwrap();
    let from_c = next(&mut s).await.watch_id();
    assert_eq!(
        [key_id, no_put, from_c],
        [0, 1, 2],
        "ids are assigned from 0, as etcd"
    );

    c.put("a", "1", None).await.unwrap(); // 3
    let r = next(&mut s).await;
    assert_eq!(
        (r.watch_id(), summary(&r)),
        (key_id, vec![ev(EventType::Put, "a", "1", 3)])
    );
    assert_eq!(r.events()[0].prev_kv().unwrap().value_str().unwrap(), "0");
    c.put("b/1", "x", None).await.unwrap(); // 4: filtered out
    c.delete("b/1", None).await.unwrap(); // 5
    let r = next(&mut s).await;
    assert_eq!(
        (r.watch_id(), summary(&r)),
        (no_put, vec![ev(EventType::Delete, "b/1", "", 5)])
    );
    assert!(r.events()[0].prev_kv().is_none(), "prev_kv only when asked");
    c.put("zz", "1", None).await.unwrap(); // 6
    let r = next(&mut s).await;
    assert_eq!((r.watch_id(), r.header().unwrap().revision()), (from_c, 6));

    s.cancel(no_put).await.unwrap();
    let r = next(&mut s).await;
    assert!(r.canceled() && r.watch_id() == no_put && r.cancel_reason().is_empty());
    s.request_progress().await.unwrap();
    let p = next(&mut s).await;
    assert_eq!(
        (
            p.watch_id(),
            p.events().len(),
            p.header().unwrap().revision()
        ),
        (-1, 0, 6)
    );
}

#[tokio::test]
async fn chosen_ids_and_refused_creates_as_etcd() {
    let member = Member::start_single();
    let mut c = connect(&member).await;
    let mut s = c
        .watch("a", Some(WatchOptions::new().with_watch_id(7)))
        .await
        .unwrap();
    assert_eq!(next(&mut s).await.watch_id(), 7);
    s.watch("b", Some(WatchOptions::new().with_watch_id(7)))
        .await
        .unwrap();
    let dup = next(&mut s).await;
    assert!(dup.created() && dup.canceled());
    assert_eq!(dup.watch_id(), -1);
    assert_eq!(
        dup.cancel_reason(),
        "mvcc: duplicate watch ID provided on the WatchStream"
    );
    s.watch("b", Some(WatchOptions::new().with_range("a")))
        .await
        .unwrap();
    let empty = next(&mut s).await;
    assert!(empty.created() && empty.canceled());
    assert_eq!(empty.cancel_reason(), "mvcc: watcher range is empty");
}

#[tokio::test]
async fn history_replay_compaction_and_future_start() {
    let member = Member::start_single();
    let mut c = connect(&member).await;
    for i in 0..6 {
        c.put("k", i.to_string(), None).await.unwrap(); // 2..=7
    }
    let mut s = c
        .watch(
            "k",
            Some(WatchOptions::new().with_start_revision(3).with_prev_key()),
        )
        .await
        .unwrap();
    assert!(next(&mut s).await.created());
    let r = next(&mut s).await;
    assert_eq!(
        summary(&r).iter().map(|e| e.3).collect::<Vec<_>>(),
        [3, 4, 5, 6, 7]
    );
    assert_eq!(r.events()[0].prev_kv().unwrap().value_str().unwrap(), "0");

    c.compact(5, None).await.unwrap();
    let mut s = c
        .watch("k", Some(WatchOptions::new().with_start_revision(4)))
        .await
        .unwrap();
    let created = next(&mut s).await;
    assert!(created.created() && !created.canceled());
    let canceled = next(&mut s).await;
    assert!(canceled.canceled());
    assert_eq!(
        (canceled.watch_id(), canceled.compact_revision()),
        (created.watch_id(), 5)
    );

    let mut s = c
        .watch("k", Some(WatchOptions::new().with_start_revision(9)))
        .await
        .unwrap();
    assert!(next(&mut s).await.created());
    c.put("k", "8", None).await.unwrap(); // 8: before the start
    c.put("k", "9", None).await.unwrap(); // 9
    assert_eq!(
        summary(&next(&mut s).await),
        [ev(EventType::Put, "k", "9", 9)]
    );
}

#[tokio::test]
async fn a_multi_op_txn_arrives_whole() {
    let member = Member::start_single();
    let mut c = connect(&member).await;
    c.put("t/0", "old", None).await.unwrap(); // 2
    let mut s = c
        .watch("t/", Some(WatchOptions::new().with_prefix()))
        .await
        .unwrap();
    next(&mut s).await;
    let ops: Vec<TxnOp> = (1..=20)
        .map(|i| TxnOp::put(format!("t/{i}"), "v", None))
        .chain([TxnOp::delete("t/0", None)])
        .collect();
    c.txn(Txn::new().and_then(ops)).await.unwrap(); // 3
    let r = next(&mut s).await;
    assert_eq!(r.events().len(), 21, "all of revision 3 in one response");
    assert!(summary(&r).iter().all(|e| e.3 == 3));
}

#[tokio::test]
async fn progress_notify_at_the_configured_interval() {
    let member = Member::builder()
        .arg("--experimental-watch-progress-notify-interval=200ms")
        .start();
    let mut c = connect(&member).await;
    c.put("other", "1", None).await.unwrap(); // 2
    let mut s = c
        .watch("quiet", Some(WatchOptions::new().with_progress_notify()))
        .await
        .unwrap();
    assert!(next(&mut s).await.created());
    let p = next(&mut s).await;
    assert_eq!(
        (
            p.watch_id(),
            p.events().len(),
            p.header().unwrap().revision()
        ),
        (0, 0, 2)
    );
}

#[tokio::test]
async fn require_leader_streams_work_while_there_is_a_leader() {
    let member = Member::start_single();
    let opts = ConnectOptions::new().with_require_leader(true);
    let mut c = Client::connect([member.endpoint()], Some(opts))
        .await
        .unwrap();
    let mut s = c.watch("a", None).await.unwrap();
    assert!(next(&mut s).await.created());
    c.put("a", "1", None).await.unwrap();
    assert_eq!(next(&mut s).await.events().len(), 1);
}

/// A client that stops reading falls behind; the server neither drops events nor buffers
/// them all: once the client reads again, every revision arrives, in order, exactly once.
#[tokio::test]
async fn a_stalled_reader_gets_every_event_later() {
    let member = Member::start_single();
    let mut c = connect(&member).await;
    let mut stalled = c
        .watch("k", Some(WatchOptions::new().with_prev_key()))
        .await
        .unwrap();
    assert!(next(&mut stalled).await.created());
    let value = "v".repeat(2048);
    let n = 4000i64;
    let mut writers = Vec::new();
    for w in 0..4 {
        let mut c = c.clone();
        let value = value.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..n / 4 {
                c.put("k", format!("{w}-{i}-{value}"), None).await.unwrap();
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    let mut want = 2;
    let mut prev: Option<String> = None;
    while want < 2 + n {
        let r = next(&mut stalled).await;
        for e in r.events() {
            let kv = e.kv().unwrap();
            assert_eq!(kv.mod_revision(), want, "no gap, no duplicate");
            assert_eq!(e.prev_kv().map(|p| p.value_str().unwrap().to_owned()), prev);
            prev = Some(kv.value_str().unwrap().to_owned());
            want += 1;
        }
    }
}

/// What the writer did at one revision.
type History = BTreeMap<i64, Vec<(EventType, String, String)>>;

/// Random writes (puts, deletes, multi-op txns, compactions) from one client while streams
/// read at different paces, some watchers from the past, some with filters or prev_kv. Each
/// watcher's events are then compared with the history the writer recorded: no gap, no
/// duplicate, order, revisions whole, compaction reported. Replay with OXCD_TEST_SEED.
#[tokio::test]
async fn randomized_streams_match_the_written_history() {
    let seed: u64 = std::env::var("OXCD_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("OXCD_TEST_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let member = Member::start_single();
    let mut c = connect(&member).await;
    let keys = ["a", "a/1", "a/2", "b", "c"];
    let mut history = History::new();
    let mut compacted = 0;

    /// One watcher: what it asked for and what it got.
    struct W {
        stream: usize,
        key: &'static str,
        prefix: bool,
        no_put: bool,
        start: i64,
        id: i64,
        created_rev: i64,
        events: Vec<(EventType, String, String, i64)>,
        compacted: Option<i64>,
        responses_per_rev: BTreeMap<i64, usize>,
    }
    let mut streams = Vec::new();
    let mut watchers: Vec<W> = Vec::new();
    for stream in 0..3 {
        let mut s: Option<WatchStream> = None;
        for _ in 0..4 {
            let key = keys[rng.random_range(0..keys.len())];
            let prefix = rng.random_bool(0.4);
            let no_put = rng.random_bool(0.2);
            let mut opts = WatchOptions::new();
            if prefix {
                opts = opts.with_prefix();
            }
            if no_put {
                opts = opts.with_filters([WatchFilterType::NoPut]);
            }
            match &mut s {
                None => s = Some(c.watch(key, Some(opts)).await.unwrap()),
                Some(s) => s.watch(key, Some(opts)).await.unwrap(),
            }
            let r = next(s.as_mut().unwrap()).await;
            assert!(r.created());
            watchers.push(W {
                stream,
                key,
                prefix,
                no_put,
                start: 0,
                id: r.watch_id(),
                created_rev: r.header().unwrap().revision(),
                events: Vec::new(),
                compacted: None,
                responses_per_rev: BTreeMap::new(),
            });
        }
        streams.push(s.unwrap());
    }

    fn absorb(watchers: &mut [W], stream: usize, r: WatchResponse) {
        if r.created() || r.watch_id() == -1 {
            return;
        }
        let w = watchers
            .iter_mut()
            .find(|w| w.stream == stream && w.id == r.watch_id())
            .expect("known watcher");
        if r.canceled() {
            w.compacted = Some(r.compact_revision());
            return;
        }
        let mut revs = BTreeSet::new();
        for (t, k, v, rev) in summary(&r) {
            revs.insert(rev);
            w.events.push((t, k, v, rev));
        }
        for rev in revs {
            *w.responses_per_rev.entry(rev).or_default() += 1;
        }
    }

    for step in 0..300 {
        let rev;
        let mut changes = Vec::new();
        match rng.random_range(0..10) {
            0..=5 => {
                let k = keys[rng.random_range(0..keys.len())];
                let v = format!("{step}");
                rev = c
                    .put(k, v.as_str(), None)
                    .await
                    .unwrap()
                    .header()
                    .unwrap()
                    .revision();
                changes.push((EventType::Put, k.to_owned(), v));
            }
            6 | 7 => {
                let k = keys[rng.random_range(0..keys.len())];
                let r = c.delete(k, None).await.unwrap();
                if r.deleted() == 0 {
                    continue;
                }
                rev = r.header().unwrap().revision();
                changes.push((EventType::Delete, k.to_owned(), String::new()));
            }
            8 => {
                // Distinct keys in one txn, as etcd requires.
                let mut ks: Vec<&str> = keys.to_vec();
                ks.retain(|_| rng.random_bool(0.5));
                if ks.is_empty() {
                    continue;
                }
                let v = format!("t{step}");
                let ops: Vec<TxnOp> = ks
                    .iter()
                    .map(|k| TxnOp::put(*k, v.as_str(), None))
                    .collect();
                rev = c
                    .txn(Txn::new().and_then(ops))
                    .await
                    .unwrap()
                    .header()
                    .unwrap()
                    .revision();
                for k in ks {
                    changes.push((EventType::Put, k.to_owned(), v.clone()));
                }
            }
            _ => {
                let cur = c.get("x", None).await.unwrap().header().unwrap().revision();
                if cur > compacted + 20 && rng.random_bool(0.3) {
                    compacted = rng.random_range(compacted + 1..cur - 10);
                    c.compact(compacted, None).await.unwrap();
                }
                continue;
            }
        }
        // etcd orders a revision's events by key for puts in a txn: sort to compare.
        changes.sort_by(|a, b| a.1.cmp(&b.1));
        history.insert(rev, changes);
        // A watcher from the past joins now and then, on the slow stream.
        if rng.random_bool(0.05) {
            let start = rng.random_range((rev - 30).max(1)..=rev);
            let key = keys[rng.random_range(0..keys.len())];
            streams[2]
                .watch(key, Some(WatchOptions::new().with_start_revision(start)))
                .await
                .unwrap();
            watchers.push(W {
                stream: 2,
                key,
                prefix: false,
                no_put: false,
                start,
                id: -2, // learned from its created response
                created_rev: 0,
                events: Vec::new(),
                compacted: None,
                responses_per_rev: BTreeMap::new(),
            });
        }
        // Stream 0 reads all the time, 1 now and then, 2 only at the end.
        let reads = if rng.random_bool(0.2) { 1 } else { 0 };
        for (i, s) in streams.iter_mut().enumerate().take(2) {
            if i == 0 || reads > 0 {
                while let Ok(Ok(Some(r))) =
                    tokio::time::timeout(Duration::from_millis(2), s.message()).await
                {
                    if r.created() {
                        let w = watchers
                            .iter_mut()
                            .find(|w| w.stream == i && w.id == -2)
                            .expect("pending");
                        w.id = r.watch_id();
                        w.created_rev = r.header().unwrap().revision();
                        continue;
                    }
                    absorb(&mut watchers, i, r);
                }
            }
        }
    }
    let final_rev = c.get("x", None).await.unwrap().header().unwrap().revision();
    // Drain every stream until quiet.
    for (i, s) in streams.iter_mut().enumerate() {
        while let Ok(Ok(Some(r))) = tokio::time::timeout(Duration::from_secs(2), s.message()).await
        {
            if r.created() {
                let w = watchers
                    .iter_mut()
                    .find(|w| w.stream == i && w.id == -2)
                    .expect("pending");
                w.id = r.watch_id();
                w.created_rev = r.header().unwrap().revision();
                continue;
            }
            absorb(&mut watchers, i, r);
        }
    }
    for w in &watchers {
        let from = if w.start > 0 {
            w.start
        } else {
            w.created_rev + 1
        };
        let matches = |k: &str| {
            if w.prefix {
                k.starts_with(w.key)
            } else {
                k == w.key
            }
        };
        let mut want: Vec<(EventType, String, String, i64)> = history
            .range(from..=final_rev)
            .flat_map(|(&rev, changes)| {
                changes
                    .iter()
                    .filter(|(t, k, _)| matches(k) && !(w.no_put && *t == EventType::Put))
                    .map(move |(t, k, v)| (*t, k.clone(), v.clone(), rev))
            })
            .collect();
        let mut got = w.events.clone();
        got.retain(|e| e.3 <= final_rev);
        // Within a revision, compare as sets (etcd orders a txn's events by its ops).
        want.sort_by(|a, b| (a.3, &a.1).cmp(&(b.3, &b.1)));
        got.sort_by(|a, b| (a.3, &a.1).cmp(&(b.3, &b.1)));
        let ctx = format!(
            "seed {seed}: watcher {} on stream {} key {} from {from}",
            w.id, w.stream, w.key
        );
        assert!(
            w.responses_per_rev.values().all(|&n| n == 1),
            "{ctx}: a revision split across responses"
        );
        match w.compacted {
            Some(c) => {
                assert!(c > 0 && c <= compacted, "{ctx}: compact_revision {c}");
                assert!(
                    got.len() <= want.len() && got[..] == want[..got.len()],
                    "{ctx}: not a prefix"
                );
            }
            None => assert!(
                got == want,
                "{ctx}: events differ:\n got {got:?}\nwant {want:?}"
            ),
        }
    }
}
