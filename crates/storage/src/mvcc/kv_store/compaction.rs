//! The compactor: a thread that, after a compaction commits, cleans the index and then removes
//! old revisions from the backend, a little at a time, so writes and reads go on meanwhile.
//!
//! Order matters. The batch that schedules a compaction at R records it in `meta`
//! (`scheduledCompactRev`) and, at commit, makes reads below R fail. Only then does the
//! compactor touch anything: it compacts the index key by key (learning which revisions ≤ R
//! each key no longer needs), deletes those revisions from the `key` table in batches of
//! [`COMPACTION_BATCH_LIMIT`], and records `finishedCompactRev` with the last batch. A restart
//! in between finds scheduled > finished and runs the compaction again; running it twice does
//! no harm: the index rebuilt at open holds every revision still in the backend.
//!
//! The index names the revisions to delete, so the backend is not scanned: etcd scans every
//! key ≤ R, and in redb a scan reads each value with its key (a whole page per large value).
//!
//! A job belongs to the store's epoch it was committed in. A restore that replaces the contents
//! bumps the epoch (under the index lock, while it holds the backend's write lock); the
//! compactor checks the epoch under the index lock before each index chunk and, holding its
//! own write transaction, before each backend batch, and stops a job of an older epoch with
//! [`Error::Closed`]: its rules were computed for contents that are gone.

use std::sync::{mpsc, Weak};
use std::thread;
use std::time::{Duration, Instant};

use super::Shared;
use crate::backend::schema;
use crate::mvcc::revision::Revision;
use crate::mvcc::{Error, Result};

/// Revisions removed from the backend per write transaction (etcd's default
/// `--experimental-compaction-batch-limit`). Each batch holds the backend's write lock, so it
/// bounds how long a compaction can delay an apply batch.
pub const COMPACTION_BATCH_LIMIT: usize = 1000;

/// Pause between two backend batches, leaving the write lock to the apply task (etcd's
/// `--experimental-compaction-sleep-interval` default).
pub const COMPACTION_SLEEP_INTERVAL: Duration = Duration::from_millis(10);

/// Keys compacted per hold of the index lock: about a millisecond of work, so readers and the
/// apply task wait at most that long behind the compactor.
const INDEX_COMPACTION_CHUNK: usize = 1000;

/// A compaction for the compactor thread.
pub(crate) struct Job {
    rev: i64,
    /// The store's epoch when the compaction committed; set when the job is sent.
    epoch: u64,
    /// Told the outcome; `None` when nobody waits (a compaction resumed at open).
    done: Option<mpsc::SyncSender<Result<()>>>,
}

impl Job {
    /// A job at `rev` and the handle that waits for it.
    pub fn new(rev: i64) -> (Job, CompactionWait) {
        let (tx, rx) = mpsc::sync_channel(1);
        (
            Job {
                rev,
                epoch: 0,
                done: Some(tx),
            },
            CompactionWait { rx },
        )
    }
}

/// Waits for a scheduled compaction to remove the old revisions from the backend (etcd's
/// `physical` compaction). Dropping it does not cancel the compaction.
#[derive(Debug)]
pub struct CompactionWait {
    rx: mpsc::Receiver<Result<()>>,
}

impl CompactionWait {
    /// Blocks until the compaction finished. [`Error::Closed`] if the store closed first or
    /// the batch that scheduled it never committed.
    pub fn wait(self) -> Result<()> {
        self.rx.recv().unwrap_or(Err(Error::Closed))
    }

    /// As [`CompactionWait::wait`], giving up after `timeout` with `None`.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<Result<()>> {
        match self.rx.recv_timeout(timeout) {
            Ok(r) => Some(r),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => Some(Err(Error::Closed)),
        }
    }
}

/// Starts the compactor thread for the store behind `shared`; it runs jobs in the order sent
/// and ends when the store (and with it the sender) is dropped.
pub(crate) fn spawn(shared: Weak<Shared>) -> mpsc::Sender<Job> {
    let (tx, rx) = mpsc::channel::<Job>();
    let spawned = thread::Builder::new()
        .name("mvcc-compact".into())
        .spawn(move || {
            for job in rx {
                let result = run(&shared, job.rev, job.epoch);
                if let Err(e) = &result {
                    tracing::warn!("compact-revision" = job.rev, error = %e, "failed to compact");
                }
                if let Some(done) = job.done {
                    let _ = done.send(result);
                }
            }
        });
    if let Err(e) = spawned {
        // Jobs sent to a dead thread fail their waiters with `Closed`; the store still works
        // and the next start resumes the compaction.
        tracing::error!(error = %e, "failed to start the mvcc compactor");
    }
    tx
}

impl Shared {
    /// Queues a compaction whose scheduling committed in `epoch`.
    pub(crate) fn send_compaction(&self, mut job: Job, epoch: u64) {
        job.epoch = epoch;
        let tx = self.compactor.lock().unwrap_or_else(|e| e.into_inner());
        // A send fails only if the thread is gone; the dropped job tells its waiter `Closed`.
        let _ = tx.send(job);
    }

    /// Queues a compaction nobody waits for (resumed at open or after a restore).
    pub(crate) fn schedule_compaction(&self, rev: i64, epoch: u64) {
        self.send_compaction(
            Job {
                rev,
                epoch,
                done: None,
            },
            epoch,
        );
    }
}

fn run(shared: &Weak<Shared>, rev: i64, epoch: u64) -> Result<()> {
    let started = Instant::now();
    let removed = compact_index(shared, rev, epoch)?;
    let index_took = started.elapsed();
    metrics::histogram!("etcd_debugging_mvcc_index_compaction_pause_duration_milliseconds")
        .record(millis(index_took));
    let backend = compact_backend(shared, rev, epoch, &removed)?;
    crate::stats::add(&crate::stats::MVCC.compacted_keys, backend.removed);
    metrics::histogram!("etcd_debugging_mvcc_db_compaction_total_duration_milliseconds")
        .record(millis(started.elapsed()));
    tracing::info!(
        "compact-revision" = rev,
        "removed-revisions" = backend.removed,
        took = ?started.elapsed(),
        "index-took" = ?index_took,
        batches = backend.batches,
        "batches-waited-for-writer" = ?backend.waited,
        "batches-took" = ?backend.worked,
        "finished scheduled compaction"
    );
    Ok(())
}

/// What removing the old revisions from the backend did, and where its time went.
#[derive(Debug, Default)]
struct BackendCompaction {
    /// Revisions removed.
    removed: u64,
    /// Write transactions.
    batches: u64,
    /// Time waiting for the backend's writer slot (held by apply batches and durable commits).
    waited: Duration,
    /// Time holding the writer slot, from the start of each batch to its commit.
    worked: Duration,
}

/// A duration in whole milliseconds, as etcd's compaction histograms record them.
fn millis(d: Duration) -> f64 {
    d.as_millis() as f64
}

/// Compacts the index at `rev`, a chunk of keys per lock hold; returns the revisions it
/// forgot, in revision order: the ones the backend need not keep.
fn compact_index(shared: &Weak<Shared>, rev: i64, epoch: u64) -> Result<Vec<Revision>> {
    let mut removed = Vec::new();
    let mut cursor: Option<Vec<u8>> = None;
    loop {
        let shared = shared.upgrade().ok_or(Error::Closed)?;
        let mut st = shared.lock();
        if st.epoch != epoch {
            return Err(Error::Closed);
        }
        match st
            .index
            .compact_chunk(rev, cursor.as_deref(), INDEX_COMPACTION_CHUNK, &mut removed)
        {
            Some(last) => cursor = Some(last),
            None => {
                // Deleted in the order the table stores them, a few pages per batch.
                removed.sort_unstable();
                return Ok(removed);
            }
        }
    }
}

/// Removes the `removed` revisions from the `key` table, in batches with pauses; records the
/// finished compaction with the last batch.
fn compact_backend(
    shared: &Weak<Shared>,
    rev: i64,
    epoch: u64,
    removed: &[Revision],
) -> Result<BackendCompaction> {
    let mut batches = removed.chunks(COMPACTION_BATCH_LIMIT).peekable();
    let mut done = BackendCompaction::default();
    loop {
        let batch_started = Instant::now();
        let shared = shared.upgrade().ok_or(Error::Closed)?;
        let wb = shared.backend.begin_rewrite()?;
        let holding = Instant::now();
        done.waited += holding - batch_started;
        done.batches += 1;
        // Checked while holding the write lock: a restore cannot commit until this batch ends.
        if shared.lock().epoch != epoch {
            wb.abort()?;
            return Err(Error::Closed);
        }
        {
            let mut table = wb.txn().open_table(schema::KEY)?;
            for &r in batches.next().unwrap_or_default() {
                // A tombstone is stored under its revision with a mark; the index does not
                // say which revisions are tombstones, so the plain form is tried first.
                if table.remove(&r.to_bytes()[..])?.is_some()
                    || table.remove(&r.to_key(true)[..])?.is_some()
                {
                    done.removed += 1;
                }
            }
        }
        let last_batch = batches.peek().is_none();
        if last_batch {
            let mut meta = wb.txn().open_table(schema::META)?;
            meta.insert(
                schema::META_FINISHED_COMPACT_REV,
                &schema::encode_u64(rev as u64)[..],
            )?;
        }
        fail::fail_point!("compact_before_commit_batch");
        wb.commit()?;
        fail::fail_point!("compact_after_commit_batch");
        done.worked += holding.elapsed();
        drop(shared);
        if last_batch {
            return Ok(done);
        }
        // As etcd: the time of each batch that is followed by a pause.
        metrics::histogram!("etcd_debugging_mvcc_db_compaction_pause_duration_milliseconds")
            .record(millis(batch_started.elapsed()));
        thread::sleep(COMPACTION_SLEEP_INTERVAL);
    }
}

/// A compaction of the store alone, without the server: `COMPACT_KEYS` keys (default 300,000)
/// of 256 B written three times each, then a compaction at the last revision that removes
/// two revisions of every key, while one put every 20 ms measures how long writes wait
/// (counted from when each was due) before and during it.
/// `cargo test --release -p oxcd-storage --lib bench_compaction -- --ignored --nocapture`
#[cfg(test)]
mod bench {
    use super::super::KvStore;
    use crate::backend::{Backend, BackendConfig};
    use crate::bench_support::{env_or, quantiles};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::thread;
    use std::time::{Duration, Instant};

    #[test]
    #[ignore]
    fn bench_compaction() {
        let keys = env_or("COMPACT_KEYS", 300_000) as usize;
        let dir =
            tempfile::tempdir_in(std::env::var("COMPACT_DIR").unwrap_or("/tmp".into())).unwrap();
        let backend = Backend::open(dir.path().join("db"), BackendConfig::default()).unwrap();
        let s = KvStore::open(backend).unwrap();
        let value = [b'v'; 256];
        let started = Instant::now();
        for _ in 0..3 {
            for chunk in (0..keys).collect::<Vec<_>>().chunks(1000) {
                let mut b = s.begin_batch().unwrap();
                for i in chunk {
                    let mut t = b.txn();
                    t.put(format!("key/{i:08}").as_bytes(), &value, 0).unwrap();
                    t.end();
                }
                b.commit().unwrap();
            }
        }
        s.force_commit().unwrap();
        eprintln!("fill {keys} keys x 3: {:?}", started.elapsed());

        let stop = Arc::new(AtomicBool::new(false));
        let latencies = Arc::new(Mutex::new(Vec::<(Instant, Duration)>::new()));
        let writer = {
            let (s, stop, latencies) = (s.clone(), stop.clone(), latencies.clone());
            thread::spawn(move || {
                let start = Instant::now();
                for k in 0u32.. {
                    if stop.load(Ordering::Acquire) {
                        return;
                    }
                    let due = start + Duration::from_millis(20) * k;
                    thread::sleep(due.saturating_duration_since(Instant::now()));
                    let mut b = s.begin_batch().unwrap();
                    let mut t = b.txn();
                    t.put(format!("new/{k:08}").as_bytes(), &value, 0).unwrap();
                    t.end();
                    b.commit().unwrap();
                    latencies.lock().unwrap().push((due, due.elapsed()));
                }
            })
        };
        let within = |from: Instant, to: Instant| {
            let all = latencies.lock().unwrap();
            quantiles(
                all.iter()
                    .filter(|(due, _)| (from..to).contains(due))
                    .map(|(_, took)| *took)
                    .collect(),
            )
        };
        let from = Instant::now();
        thread::sleep(Duration::from_secs(5));
        let without = within(from, Instant::now());
        let from = Instant::now();
        s.compact(s.current_revision()).unwrap().wait().unwrap();
        let to = Instant::now();
        stop.store(true, Ordering::Release);
        writer.join().unwrap();
        eprintln!(
            "compaction of {} revisions: {:?}\n  puts without: {without}\n  puts during:  {}",
            2 * keys,
            to - from,
            within(from, to)
        );
    }
}
