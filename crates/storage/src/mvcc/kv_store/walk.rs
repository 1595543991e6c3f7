//! Reading the index in pieces: a read takes the index lock for at most `PIECE_KEYS` keys
//! at a time and, between pieces, hands it to whoever waits for it. A count or a range over
//! hundreds of thousands of keys would otherwise stop every write (the apply task needs the
//! lock for each change) and every other reader for its whole walk.
//!
//! A read at revision `at` stays exact across pieces:
//! - batches applied meanwhile change only revisions above the published current revision,
//!   itself at or above `at`: a read at `at` does not see them;
//! - a compaction at C ≤ `at` keeps, for each key, its newest revision ≤ C, so every revision
//!   visible at `at` stays, in the index and in the backend;
//! - a compaction past `at` raises `compact_rev` when it commits, before the compactor touches
//!   the index: the next piece sees it and the read fails with [`Error::Compacted`], as a read
//!   at a compacted revision does;
//! - a restore replaces the whole contents and bumps the epoch: the next piece sees it and the
//!   read starts again on the new contents rather than mix the two.
//!
//! The values are read after the walk, in a backend read transaction opened while the first
//! piece held the lock: a compaction that had already removed revisions from the backend then
//! was at or below `at`, so the transaction holds every value the walk can find.

use oxcd_api::mvccpb::KeyValue;
use parking_lot::MutexGuard;
use prost::Message as _;

use super::{encoded_size, key_only, RangeOptions, Shared, State};
use crate::mvcc::index::KeyRange;
use crate::mvcc::key_index::KeyAt;
use crate::mvcc::revision::Revision;
use crate::mvcc::{Error, Result};

/// Index entries (live or not) a read visits per hold of the lock: well under a millisecond.
const PIECE_KEYS: usize = 1000;

/// The piece size in tests: small, so that ranges of a few keys cross pieces; benches set it
/// to [`PIECE_KEYS`].
#[cfg(test)]
static TEST_PIECE_KEYS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(3);

fn piece_keys() -> usize {
    #[cfg(test)]
    return TEST_PIECE_KEYS.load(std::sync::atomic::Ordering::Relaxed);
    #[cfg(not(test))]
    PIECE_KEYS
}

/// What the index holds of a read.
#[derive(Debug)]
pub(crate) enum Walked<R> {
    /// The whole answer without values: keys-only (with their fields), count-only (no key),
    /// or no key at all.
    Keys(Vec<KeyValue>),
    /// The revisions holding the answer's values, in key order, and what `open` gave under
    /// the first piece's lock to read them with.
    Values(Vec<Revision>, R),
}

/// A read's answer from the index: the keys or revisions, the count of every key of the range
/// at the read revision (whatever the limit) and the store's current revision when it began.
#[derive(Debug)]
pub(crate) struct IndexAnswer<R> {
    pub walked: Walked<R>,
    pub count: i64,
    pub rev: i64,
}

/// Why a walk stopped short.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Interrupted {
    /// A compaction past the read revision committed.
    Compacted,
    /// A restore replaced the contents.
    Restored,
}

/// A walk over the keys of a range that exist at one revision, in pieces.
pub(super) struct Walk<'r, T> {
    range: KeyRange<'r>,
    at: i64,
    /// The store's epoch when the walk began.
    epoch: u64,
    /// How many keys to keep in `found`.
    limit: usize,
    make: fn(&[u8], KeyAt) -> T,
    /// What `make` made of the first `limit` keys found.
    pub found: Vec<T>,
    /// Every key found.
    pub count: i64,
    /// The last key visited: the next piece starts after it.
    after: Option<Vec<u8>>,
    pub done: bool,
}

impl<'r, T> Walk<'r, T> {
    /// A walk over `range` at `at` in the contents of `epoch`, keeping what `make` makes of
    /// the first `limit` keys found.
    pub fn new(
        range: KeyRange<'r>,
        at: i64,
        epoch: u64,
        limit: usize,
        make: fn(&[u8], KeyAt) -> T,
    ) -> Walk<'r, T> {
        Walk {
            range,
            at,
            epoch,
            limit,
            make,
            found: Vec::new(),
            count: 0,
            after: None,
            done: false,
        }
    }

    /// Walks the next piece, under the lock held as `st`.
    pub fn piece(&mut self, st: &State) -> Result<(), Interrupted> {
        if st.epoch != self.epoch {
            return Err(Interrupted::Restored);
        }
        if self.at < st.compact_rev {
            return Err(Interrupted::Compacted);
        }
        self.after = st.index.collect_piece(
            self.range,
            self.at,
            self.after.as_deref(),
            piece_keys(),
            self.limit,
            &mut self.found,
            &mut self.count,
            self.make,
        );
        self.done = self.after.is_none();
        Ok(())
    }

    /// Walks the pieces left, handing the lock to anyone waiting for it before each.
    pub fn finish(&mut self, st: &mut MutexGuard<'_, State>) -> Result<(), Interrupted> {
        while !self.done {
            MutexGuard::bump(st);
            self.piece(st)?;
        }
        Ok(())
    }
}

/// A limit as a number of keys to keep: all of them for 0 or less.
fn keys_to_keep(limit: i64) -> usize {
    usize::try_from(limit)
        .ok()
        .filter(|&l| l > 0)
        .unwrap_or(usize::MAX)
}

impl Shared {
    /// Reads `range` at `at` from the index as `opts` asks, in pieces. `st` holds the lock
    /// for the first piece; `cur` is the current revision as the reader sees it (the batch's
    /// own inside one), for the answer. For a read that needs values, `open` runs under the
    /// first piece's lock. `None` when a restore replaced the contents meanwhile: the caller
    /// starts again.
    pub(super) fn walk_read<R>(
        &self,
        mut st: MutexGuard<'_, State>,
        at: i64,
        cur: i64,
        range: KeyRange<'_>,
        opts: RangeOptions,
        open: impl FnOnce() -> Result<R>,
    ) -> Result<Option<IndexAnswer<R>>> {
        let epoch = st.epoch;
        let stopped = |i| match i {
            Interrupted::Compacted => Err(Error::Compacted),
            Interrupted::Restored => Ok(None),
        };
        if opts.count_only || opts.keys_only {
            let limit = if opts.count_only {
                0
            } else {
                keys_to_keep(opts.limit)
            };
            let mut walk = Walk::new(range, at, epoch, limit, key_only);
            if let Err(i) = walk.piece(&st).and_then(|()| walk.finish(&mut st)) {
                return stopped(i);
            }
            drop(st);
            if let Some(max) = opts.max_bytes {
                let size = walk
                    .found
                    .iter()
                    .map(|kv| encoded_size(kv.encoded_len()))
                    .sum();
                if size > max {
                    return Err(Error::TooLarge { size, max });
                }
            }
            return Ok(Some(IndexAnswer {
                walked: Walked::Keys(walk.found),
                count: walk.count,
                rev: cur,
            }));
        }
        let mut walk = Walk::new(range, at, epoch, keys_to_keep(opts.limit), |_, a| {
            a.modified
        });
        if let Err(i) = walk.piece(&st) {
            return stopped(i);
        }
        if walk.done && walk.found.is_empty() {
            return Ok(Some(IndexAnswer {
                walked: Walked::Keys(Vec::new()),
                count: walk.count,
                rev: cur,
            }));
        }
        let opened = open()?;
        if let Err(i) = walk.finish(&mut st) {
            return stopped(i);
        }
        Ok(Some(IndexAnswer {
            walked: Walked::Values(walk.found, opened),
            count: walk.count,
            rev: cur,
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::backend::{Backend, BackendConfig};
    use crate::mvcc::kv_store::KvStore;

    fn open_at(dir: &tempfile::TempDir, name: &str) -> KvStore {
        let backend = Backend::open(dir.path().join(name), BackendConfig::default()).unwrap();
        KvStore::open(backend).unwrap()
    }

    /// One batch of one transaction: puts `put` (key, value) and deletes `delete`.
    fn write(s: &KvStore, put: &[(String, &str)], delete: &[String]) {
        let mut b = s.begin_batch().unwrap();
        let mut t = b.txn();
        for (k, v) in put {
            t.put(k.as_bytes(), v.as_bytes(), 0).unwrap();
        }
        for k in delete {
            t.delete_range(k.as_bytes(), b"").unwrap();
        }
        t.end();
        b.commit().unwrap();
    }

    fn key(i: usize) -> String {
        format!("k{i:03}")
    }

    /// Keys k000..k029, each written twice; every fifth deleted, a few written again.
    fn store(dir: &tempfile::TempDir) -> KvStore {
        let s = open_at(dir, "db");
        for round in ["a", "b"] {
            let puts: Vec<_> = (0..30).map(|i| (key(i), round)).collect();
            write(&s, &puts, &[]);
        }
        let deleted: Vec<_> = (0..30).step_by(5).map(key).collect();
        write(&s, &[], &deleted);
        write(&s, &[(key(10), "c"), (key(11), "c")], &[]);
        s
    }

    fn modified(_: &[u8], a: KeyAt) -> Revision {
        a.modified
    }

    /// A walk over every key at `at`, after its first piece (the lock released since).
    fn first_piece(s: &KvStore, at: i64) -> Walk<'static, Revision> {
        let st = s.shared.lock();
        let mut walk = Walk::new(KeyRange::From(b""), at, st.epoch, usize::MAX, modified);
        walk.piece(&st).unwrap();
        assert!(!walk.done);
        walk
    }

    fn finish(s: &KvStore, walk: &mut Walk<'_, Revision>) -> Result<(), Interrupted> {
        let mut st = s.shared.lock();
        walk.finish(&mut st)
    }

    /// The revisions and count of every key at `at`, from the index in one piece.
    fn whole(s: &KvStore, at: i64) -> (Vec<Revision>, i64) {
        s.shared.lock().index.revisions(KeyRange::From(b""), at, 0)
    }

    #[test]
    fn reads_over_many_pieces_equal_the_index_in_one_piece() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir);
        let cur = s.current_revision();
        let ranges: [(&[u8], &[u8]); 5] = [
            (b"", b"\0"),
            (b"k004", b"k027"),
            (b"k010", b""),
            (b"k015", b""),
            (b"k0", b"k1"),
        ];
        for (k, end) in ranges {
            for rev in [2, 3, 4, cur] {
                for limit in [0, 1, 4, 20, 100] {
                    let opts = RangeOptions {
                        rev,
                        limit,
                        ..Default::default()
                    };
                    let (revs, count) =
                        s.shared
                            .lock()
                            .index
                            .revisions(KeyRange::new(k, end), rev, limit);
                    let full = s.range(k, end, opts).unwrap();
                    let got: Vec<_> = full.kvs.iter().map(|kv| kv.mod_revision).collect();
                    let want: Vec<_> = revs.iter().map(|r| r.main).collect();
                    assert_eq!((got, full.count), (want, count), "{k:?}..{end:?} {opts:?}");
                    assert_eq!(full.rev, cur);
                    let keys_only = RangeOptions {
                        keys_only: true,
                        ..opts
                    };
                    let mut no_values = full.clone();
                    no_values.kvs.iter_mut().for_each(|kv| kv.value.clear());
                    assert_eq!(s.range(k, end, keys_only).unwrap(), no_values);
                    let count_only = RangeOptions {
                        count_only: true,
                        ..opts
                    };
                    let counted = s.range(k, end, count_only).unwrap();
                    assert_eq!((counted.kvs.len(), counted.count), (0, count));
                }
            }
        }
        assert_eq!(s.key_count().unwrap(), 25);
    }

    #[test]
    fn a_batch_applied_between_pieces_is_not_seen() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir);
        let at = s.current_revision();
        let want = whole(&s, at);
        let mut walk = first_piece(&s, at);
        // New keys on both sides of where the walk stands, overwrites and deletions ahead.
        let puts = vec![
            ("k000x".to_string(), "new"),
            ("k020x".to_string(), "new"),
            (key(5), "again"),
            (key(25), "again"),
            (key(29), "new"),
        ];
        write(&s, &puts, &[key(21), key(28)]);
        finish(&s, &mut walk).unwrap();
        assert_eq!((walk.found, walk.count), want);
        assert_ne!(whole(&s, s.current_revision()), want);
    }

    #[test]
    fn a_compaction_at_or_below_the_read_revision_between_pieces_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir);
        let at = s.current_revision();
        let want = whole(&s, at);
        let mut walk = first_piece(&s, at);
        write(&s, &[(key(27), "later")], &[key(26)]);
        s.compact(at).unwrap().wait().unwrap();
        finish(&s, &mut walk).unwrap();
        assert_eq!((walk.found, walk.count), want);
    }

    #[test]
    fn a_compaction_past_the_read_revision_between_pieces_fails_the_read() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir);
        let at = s.current_revision() - 1;
        let mut walk = first_piece(&s, at);
        // Committed but not yet applied to the index: the revision tells already.
        let mut b = s.begin_batch().unwrap();
        let wait = b.compact(at + 1).unwrap();
        b.commit().unwrap();
        assert_eq!(finish(&s, &mut walk), Err(Interrupted::Compacted));
        wait.wait().unwrap();
        let mut walk = first_piece(&s, s.current_revision());
        write(&s, &[(key(1), "later")], &[]);
        s.compact(s.current_revision()).unwrap().wait().unwrap();
        assert_eq!(finish(&s, &mut walk), Err(Interrupted::Compacted));
    }

    #[test]
    fn a_restore_between_pieces_is_not_mixed_with_the_old_contents() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir);
        let other = open_at(&dir, "other");
        let puts: Vec<_> = (0..40).map(|i| (format!("other{i:02}"), "x")).collect();
        write(&other, &puts, &[]);
        let mut snapshot = Vec::new();
        other.backend().dump(&mut snapshot, |_| {}).unwrap();

        let at = s.current_revision();
        let mut walk = first_piece(&s, at);
        let mut cursor = s.range_cursor(b"", b"\0", 0).unwrap();
        let limits = crate::mvcc::PieceLimits {
            keys: 2,
            bytes: usize::MAX,
            keys_only: false,
        };
        assert_eq!(cursor.next_piece(limits).unwrap().len(), 2);
        s.restore_from(&mut &snapshot[..]).unwrap();
        assert_eq!(finish(&s, &mut walk), Err(Interrupted::Restored));
        assert!(matches!(cursor.next_piece(limits), Err(Error::Compacted)));
        // A read started again reads the new contents alone.
        assert_eq!(s.key_count().unwrap(), 40);
    }

    /// A reader counting and ranging at one revision, many pieces per read, while batches and
    /// compactions at or below that revision go on: every answer is the same; once a
    /// compaction passes the revision, reads fail with `Compacted` and never answer wrong
    /// (the reader stops at its first `Compacted`).
    #[test]
    fn reads_stay_exact_under_concurrent_writes_and_compactions() {
        let dir = tempfile::tempdir().unwrap();
        let s = open_at(&dir, "db");
        for chunk in (0..300).collect::<Vec<_>>().chunks(50) {
            let puts: Vec<_> = chunk.iter().map(|&i| (key(i), "v")).collect();
            write(&s, &puts, &[]);
        }
        let at = s.current_revision();
        let opts = RangeOptions {
            rev: at,
            ..Default::default()
        };
        let want = s.range(b"", b"\0", opts).unwrap();
        assert_eq!(want.count, 300);
        let exact = Arc::new(AtomicUsize::new(0));
        let reader = {
            let (s, exact, want) = (s.clone(), exact.clone(), want.clone());
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(60);
                loop {
                    assert!(
                        Instant::now() < deadline,
                        "no read failed after the compaction"
                    );
                    let count = RangeOptions {
                        count_only: true,
                        ..opts
                    };
                    match (s.range(b"", b"\0", count), s.range(b"", b"\0", opts)) {
                        (Ok(c), Ok(r)) => {
                            assert_eq!(c.count, 300);
                            assert_eq!(r.kvs, want.kvs);
                            assert_eq!(r.count, 300);
                            exact.fetch_add(1, Ordering::Release);
                        }
                        (Err(Error::Compacted), _) | (_, Err(Error::Compacted)) => return,
                        other => panic!("{other:?}"),
                    }
                }
            })
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while exact.load(Ordering::Acquire) == 0 {
            assert!(Instant::now() < deadline, "the reader never read");
            std::thread::sleep(Duration::from_millis(1));
        }
        for i in 0..100 {
            write(
                &s,
                &[(key(i * 3), "w"), (format!("n{i}"), "n")],
                &[key(i * 3 + 1)],
            );
            if i == 50 {
                s.compact(at).unwrap().wait().unwrap();
            }
        }
        s.compact(at + 10).unwrap().wait().unwrap();
        assert!(matches!(s.range(b"", b"\0", opts), Err(Error::Compacted)));
        reader.join().unwrap();
    }
}

/// A count over many keys next to writes, the store alone, without the server: `COUNT_KEYS`
/// keys (default 500,000) of 100 B, one thread putting a key every 5 ms (open loop, each put's
/// latency counted from when it was due) for `COUNT_SECS` seconds (default 5) alone, then
/// while another thread counts every key in a loop, then alone again; then the fastest of 5
/// counts, keys-only and full ranges of every key with nothing else running.
/// `cargo test --release -p oxcd-storage --lib bench_count_next_to_writes -- --ignored --nocapture`
#[cfg(test)]
mod bench {
    use crate::backend::{Backend, BackendConfig};
    use crate::bench_support::{env_or, quantiles};
    use crate::mvcc::{KvStore, RangeOptions};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::thread;
    use std::time::{Duration, Instant};

    #[test]
    #[ignore]
    fn bench_count_next_to_writes() {
        super::TEST_PIECE_KEYS.store(super::PIECE_KEYS, Ordering::Relaxed);
        let keys = env_or("COUNT_KEYS", 500_000) as usize;
        let window = Duration::from_secs(env_or("COUNT_SECS", 5));
        let dir =
            tempfile::tempdir_in(std::env::var("COUNT_DIR").unwrap_or("/tmp".into())).unwrap();
        let backend = Backend::open(dir.path().join("db"), BackendConfig::default()).unwrap();
        let s = KvStore::open(backend).unwrap();
        for chunk in (0..keys).collect::<Vec<_>>().chunks(1000) {
            let mut b = s.begin_batch().unwrap();
            for i in chunk {
                let mut t = b.txn();
                t.put(format!("key/{i:08}").as_bytes(), &[b'v'; 100], 0)
                    .unwrap();
                t.end();
            }
            b.commit().unwrap();
        }
        s.force_commit().unwrap();

        let stop = Arc::new(AtomicBool::new(false));
        let puts = Arc::new(Mutex::new(Vec::<(Instant, Duration)>::new()));
        let writer = {
            let (s, stop, puts) = (s.clone(), stop.clone(), puts.clone());
            thread::spawn(move || {
                let start = Instant::now();
                for k in 0u32.. {
                    if stop.load(Ordering::Acquire) {
                        return;
                    }
                    let due = start + Duration::from_millis(5) * k;
                    thread::sleep(due.saturating_duration_since(Instant::now()));
                    let mut b = s.begin_batch().unwrap();
                    let mut t = b.txn();
                    t.put(format!("new/{}", k % 1000).as_bytes(), &[b'w'; 256], 0)
                        .unwrap();
                    t.end();
                    b.commit().unwrap();
                    puts.lock().unwrap().push((due, due.elapsed()));
                }
            })
        };
        let within = |from: Instant, to: Instant| {
            let all = puts.lock().unwrap();
            quantiles(
                all.iter()
                    .filter(|(due, _)| (from..to).contains(due))
                    .map(|(_, took)| *took)
                    .collect(),
            )
        };
        thread::sleep(Duration::from_secs(1));
        let from = Instant::now();
        thread::sleep(window);
        let alone = (from, Instant::now());

        let counting = Arc::new(AtomicBool::new(true));
        let counter = {
            let (s, counting) = (s.clone(), counting.clone());
            thread::spawn(move || {
                let mut took = Vec::new();
                let count = RangeOptions {
                    count_only: true,
                    ..Default::default()
                };
                while counting.load(Ordering::Acquire) {
                    let sent = Instant::now();
                    let n = s.range(b"key/", b"key0", count).unwrap().count;
                    assert_eq!(n as usize, keys);
                    took.push(sent.elapsed());
                }
                took
            })
        };
        let from = Instant::now();
        thread::sleep(window);
        let during = (from, Instant::now());
        counting.store(false, Ordering::Release);
        let counts = counter.join().unwrap();
        let from = Instant::now();
        thread::sleep(window);
        let again = (from, Instant::now());
        stop.store(true, Ordering::Release);
        writer.join().unwrap();
        eprintln!("{keys} keys");
        eprintln!("  puts alone:          {}", within(alone.0, alone.1));
        eprintln!("  puts while counting: {}", within(during.0, during.1));
        eprintln!("  puts alone again:    {}", within(again.0, again.1));
        eprintln!("  counts:              {}", quantiles(counts));
        // With nothing else running: the fastest of a few, as the walk's own cost.
        let fastest = |opts: RangeOptions| {
            (0..5)
                .map(|_| {
                    let sent = Instant::now();
                    let got = s.range(b"key/", b"key0", opts).unwrap();
                    assert_eq!(got.count as usize, keys);
                    sent.elapsed()
                })
                .min()
                .unwrap()
        };
        let count = RangeOptions {
            count_only: true,
            ..Default::default()
        };
        let keys_only = RangeOptions {
            keys_only: true,
            ..Default::default()
        };
        eprintln!(
            "  alone, fastest of 5: count {:?}, keys-only range {:?}, full range {:?}",
            fastest(count),
            fastest(keys_only),
            fastest(RangeOptions::default())
        );
    }
}
