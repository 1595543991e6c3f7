//! Defragmentation that does not stop the world.
//!
//! etcd's defragment holds every write for the whole copy (about 15 s on a 4 GiB database,
//! etcd issue 9222). Here the copy runs beside the live file:
//!
//! 1. The `key` table is copied from a read snapshot into a new file, `db.defrag`, in batches,
//!    while writes go on in the live file. This bulk copy runs on a thread of its own at a
//!    lower CPU priority, so that on a busy machine the server's own threads (apply, raft, the
//!    RPCs) run first and the copy takes the CPU they leave. After each batch the kernel is
//!    asked to write the batch's pages out, and the previous batch's are waited for: the new
//!    file never holds more than a batch or two of unwritten pages, so the live file's and the
//!    WAL's syncs do not queue behind gigabytes of it (they did, at 4 GiB: single applies took
//!    a second, behind the backend's durable commit that waited for the copy's write-back).
//!    The copy's write rate is also paced by the live file's durable commits (see [`Pacer`]):
//!    they hold the writer slot through their fsync, so when the copy keeps the disk busy
//!    they slow down and applies, hence puts, wait behind them (at 1 GiB, fsyncs of the
//!    durable commits took up to 70 ms during a defrag and under 15 ms outside one); the copy
//!    slows down as soon as they do. A defrag takes longer on a busy disk; a put does not.
//! 2. Catch-up, at normal priority, so that writers cannot outrun it: the `key` table only
//!    grows at its end (each write adds revisions above every existing one), so the entries
//!    past the last one copied are what changed; they are copied from a newer snapshot, round
//!    after round, until few are left. The writes that remove or rewrite `key` entries
//!    (compaction batches, restores) wait for the defrag meanwhile.
//! 3. Swap: the other tables (small: leases, auth, members, meta) are copied from the last
//!    catch-up snapshot and the new file is committed durably. Then writers are held off (the
//!    backend's writer slot), the last new revisions and the other tables are copied again
//!    without a disk flush, the new file is renamed over the old one, and new transactions go
//!    to it. Readers are never held off; those that began before the swap finish on the old
//!    file, which a thread of its own closes after them: closing a replaced file of a few GiB
//!    syncs it and frees its blocks, which took up to 2 s with writers held off.
//!
//! A crash before the rename leaves the old file as it was; after it, the new file reopens at
//! its durable snapshot or later, and the WAL replays the rest, as after any crash. A
//! `db.defrag` left by a crash is removed at the next open.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use redb::{Database, Durability, ReadableTable, TableHandle};

use super::{schema, Backend, Error, ReadTxn, Result};

/// Bytes of `key` entries (keys and values) copied into the new file per write transaction:
/// also the step at which the copy is paced and written out (see [`Pacer`]). Each batch reaches
/// the disk as one burst of writes that a foreground sync may queue behind, so it is small.
const COPY_BATCH_BYTES: usize = 1 << 20;

/// The copy's pace, in bytes of keys and values a second: where it starts, its floor and its
/// ceiling (see [`Pacer`]). On the virtual disk this was measured on (~70 MiB/s of writes), a
/// fdatasync beside a writer kept to 40 MiB/s took what it takes on an idle disk (p50 1.7 ms,
/// p99 52 ms), and beside an unpaced one five times as long (p50 8.4 ms, p99 176 ms). Started
/// at 32 MiB/s, the first seconds of a defrag already had durable commits of 100-360 ms.
const START_RATE: f64 = (8 << 20) as f64;
const MIN_RATE: f64 = (2 << 20) as f64;
const MAX_RATE: f64 = (64 << 20) as f64;

/// How fast the pace rises while the foreground's durable commits stay quick: bytes a second,
/// each second (from the start rate to twice it in 2 s).
const RATE_GAIN: f64 = (4 << 20) as f64;

/// A durable commit slower than this (or than twice its usual time before the defrag, up to
/// four times this) halves the pace. An idle disk here syncs in a few milliseconds.
const SLOW_COMMIT: Duration = Duration::from_millis(20);

/// Catch-up ends when a round copied fewer new revisions than this: the swap then copies
/// about as many with writers held off (a few milliseconds).
const SWAP_BELOW: u64 = 5_000;

/// Catch-up rounds before swapping anyway, for writes that outrun the copy.
const MAX_CATCH_UP_ROUNDS: usize = 20;

/// The nice value of the bulk copy's thread (the server runs at 0): its CPU share is about a
/// tenth of a busy thread's of the server, and all of what they leave idle.
const BULK_COPY_NICE: libc::c_int = 10;

/// The file a defrag writes, beside the live one.
fn defrag_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".defrag");
    PathBuf::from(name)
}

/// Removes the new file of a defrag that a crash interrupted (the live file is intact).
pub(super) fn remove_leftover(path: &Path) -> Result<()> {
    match fs::remove_file(defrag_path(path)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

impl Backend {
    /// Rewrites the file to release free pages, as etcd's defragment does, while reads and
    /// writes go on (see the module doc). Compaction batches and restores wait for it.
    pub fn defrag(&self) -> Result<()> {
        let started = Instant::now();
        let _rewrites = self.inner.rewrites.take();
        let size1 = self.size()?;
        tracing::info!(
            path = %self.inner.path.display(),
            "current-db-size-bytes" = size1,
            "current-db-size-in-use-bytes" = self.size_in_use()?,
            "defragmenting"
        );
        let tmp = defrag_path(&self.inner.path);
        remove_leftover(&self.inner.path)?;
        let new = crate::dir_ops::create(&tmp, || {
            Database::builder()
                .set_cache_size(self.inner.cache_size)
                .create(&tmp)
        })?;
        if let Err(e) = self.copy_into(new, &tmp) {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        let took = started.elapsed();
        metrics::histogram!("etcd_disk_backend_defrag_duration_seconds").record(took.as_secs_f64());
        let size2 = self.size()?;
        tracing::info!(
            path = %self.inner.path.display(),
            "current-db-size-bytes-diff" = size2 as i64 - size1 as i64,
            "current-db-size-bytes" = size2,
            "current-db-size-in-use-bytes" = self.size_in_use()?,
            took = ?took,
            "defragmented"
        );
        Ok(())
    }

    /// Steps 1 to 3 of the module doc, into `new` (at `path`), which becomes the live file.
    /// Until the rename, an error leaves the live file as it was.
    fn copy_into(&self, new: Database, path: &Path) -> Result<()> {
        let mut pacer = Pacer::new(path, &self.inner.durable_commits)?;
        fail::fail_point!("defrag_before_copy");
        let mut after = thread::scope(|scope| {
            let bulk = thread::Builder::new()
                .name("backend-defrag".into())
                .spawn_scoped(scope, || {
                    lower_cpu_priority();
                    let mut after = None;
                    let snapshot = self.begin_read()?;
                    copy_key_entries(
                        &snapshot.open_table(schema::KEY)?,
                        &new,
                        &mut after,
                        Some(&mut pacer),
                    )?;
                    Ok::<_, Error>(after)
                })?;
            bulk.join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })?;
        // The catch-up must outrun the writers: written out as it goes, but not slowed down.
        pacer.full_speed();
        let mut rounds = 0;
        loop {
            let snapshot = self.begin_read()?;
            let copied = copy_key_entries(
                &snapshot.open_table(schema::KEY)?,
                &new,
                &mut after,
                Some(&mut pacer),
            )?;
            rounds += 1;
            if copied < SWAP_BELOW || rounds >= MAX_CATCH_UP_ROUNDS {
                // With the other tables of the same snapshot the new file holds exactly that
                // snapshot: committed durably, it is where the new file reopens after a crash
                // that follows the swap (the WAL replays the rest, as after any crash), and
                // the commit below, with writers held off, need not wait for a disk flush.
                copy_other_tables(&snapshot, &new, Durability::Immediate)?;
                break;
            }
        }

        let held = Instant::now();
        let writer = self.inner.writer.take();
        // No writer can start now, so this snapshot is the last state of the live file. Its
        // few changes are copied at full speed, and written out by the flusher's next commit.
        let last = self.begin_read()?;
        let tail = copy_key_entries(&last.open_table(schema::KEY)?, &new, &mut after, None)?;
        copy_other_tables(&last, &new, Durability::None)?;
        drop(last);
        fail::fail_point!("defrag_before_rename");
        // The open database follows its file across the rename.
        crate::dir_ops::rename(&defrag_path(&self.inner.path), &self.inner.path)?;
        let old = std::mem::replace(
            &mut *self.inner.db.write().unwrap_or_else(|e| e.into_inner()),
            Arc::new(new),
        );
        // The flusher makes the last commit durable, as any other.
        self.inner.dirty.store(true, Ordering::Release);
        if let Err(e) = sync_dir(&self.inner.path) {
            tracing::warn!(
                path = %self.inner.path.display(),
                error = %e,
                "failed to sync the data directory after defragmenting"
            );
        }
        drop(writer);
        let held = held.elapsed();
        close_when_unread(old);
        tracing::info!(
            "catch-up-rounds" = rounds,
            "revisions-copied-while-writes-waited" = tail,
            "writes-waited" = ?held,
            "copy-slowed-down" = pacer.slowed_down,
            "swapped the defragmented backend file in"
        );
        Ok(())
    }
}

/// Replaces every table but `key` in `dst` with its contents in `src`, in one transaction.
fn copy_other_tables(src: &ReadTxn, dst: &Database, durability: Durability) -> Result<()> {
    let mut txn = dst.begin_write()?;
    txn.set_durability(durability)?;
    for def in schema::ALL_TABLES {
        if def.name() == schema::KEY.name() {
            continue;
        }
        txn.delete_table(def)?;
        let mut table = txn.open_table(def)?;
        for entry in src.open_table(def)?.iter()? {
            let (k, v) = entry?;
            table.insert(k.value(), v.value())?;
        }
    }
    txn.commit()?;
    Ok(())
}

/// Copies the `key` entries of `src` after `after` (all when `None`) into `dst`, in batches
/// paced and written out as they go by `pacer` (at full speed without one); moves `after` to
/// the last one copied and returns how many were.
fn copy_key_entries(
    src: &impl ReadableTable<&'static [u8], &'static [u8]>,
    dst: &Database,
    after: &mut Option<Vec<u8>>,
    mut pacer: Option<&mut Pacer>,
) -> Result<u64> {
    use std::ops::Bound;
    let mut copied = 0u64;
    loop {
        let lower = match after.as_deref() {
            Some(a) => Bound::Excluded(a),
            None => Bound::Unbounded,
        };
        let mut txn = dst.begin_write()?;
        txn.set_durability(Durability::None)?;
        let (mut n, mut bytes) = (0u64, 0);
        {
            let mut table = txn.open_table(schema::KEY)?;
            let mut entries = src.range::<&[u8]>((lower, Bound::Unbounded))?;
            let mut last = None;
            while bytes < COPY_BATCH_BYTES {
                let Some(entry) = entries.next() else { break };
                let (k, v) = entry?;
                table.insert(k.value(), v.value())?;
                bytes += k.value().len() + v.value().len();
                last = Some(k);
                n += 1;
            }
            if let Some(last) = last {
                *after = Some(last.value().to_vec());
            }
        }
        txn.commit()?;
        if let Some(pacer) = pacer.as_deref_mut() {
            pacer.batch_done(bytes)?;
        }
        copied += n;
        if bytes < COPY_BATCH_BYTES {
            return Ok(copied);
        }
    }
}

/// Paces the copy after each batch:
/// - Write-out: waits for the write-out of the pages written before the batch and starts the
///   write-out of the batch's own. Without this the kernel holds the whole copy in memory until
///   its dirty limits (gigabytes on a large machine) and then writes it out in one burst, which
///   every sync of the live file and of the WAL queues behind (on ext4 a file's sync may also
///   wait for other files' data).
/// - Rate (the bulk copy only, see [`Pacer::full_speed`]): sleeps so that the copy writes at
///   most `rate` bytes a second. The rate halves whenever a durable commit of the live file
///   was slow since the last batch, and rises slowly while none was (additive increase,
///   multiplicative decrease, as TCP's congestion control): those commits hold the writer slot
///   through their fsync, so they are where a busy disk stalls the foreground, and they come
///   ten times a second under writes. With no writes there is no commit to slow down, and the
///   copy goes up to its ceiling.
struct Pacer<'a> {
    file: fs::File,
    commits: &'a CommitTimes,
    /// A durable commit slower than this is slow.
    slow: Duration,
    /// Bytes a second; `None` at full speed.
    rate: Option<f64>,
    /// When the next batch may begin.
    due: Instant,
    /// When the rate last changed.
    adjusted: Instant,
    /// How often the rate was halved, for the log.
    slowed_down: u32,
}

impl<'a> Pacer<'a> {
    fn new(path: &Path, commits: &'a CommitTimes) -> Result<Pacer<'a>> {
        // The commits before the defrag set what "slow" means; the slowest of them is forgotten.
        commits.take_slowest();
        let now = Instant::now();
        Ok(Pacer {
            file: fs::File::open(path)?,
            commits,
            slow: (commits.typical() * 2).clamp(SLOW_COMMIT, SLOW_COMMIT * 4),
            rate: Some(START_RATE),
            due: now,
            adjusted: now,
            slowed_down: 0,
        })
    }

    /// From now on only the write-out: no rate, no sleep.
    fn full_speed(&mut self) {
        self.rate = None;
    }

    /// After a batch of `bytes` of keys and values: its write-out, then the rate's sleep.
    fn batch_done(&mut self, bytes: usize) -> Result<()> {
        use std::os::fd::AsRawFd;
        // The whole file: offsets 0 to its end.
        let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE | libc::SYNC_FILE_RANGE_WRITE;
        // SAFETY: the descriptor is open for as long as `self.file` is; the call reads no
        // memory of ours.
        if unsafe { libc::sync_file_range(self.file.as_raw_fd(), 0, 0, flags) } != 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        let Some(rate) = &mut self.rate else {
            return Ok(());
        };
        let now = Instant::now();
        if self.commits.take_slowest() > self.slow {
            *rate = (*rate / 2.0).max(MIN_RATE);
            self.slowed_down += 1;
        } else {
            let quiet = (now - self.adjusted).as_secs_f64();
            *rate = (*rate + RATE_GAIN * quiet).min(MAX_RATE);
        }
        self.adjusted = now;
        self.due += Duration::from_secs_f64(bytes as f64 / *rate);
        if self.due > now {
            thread::sleep(self.due - now);
        } else {
            // Behind (the copy itself was slower than the rate): no credit for a burst later.
            self.due = now;
        }
        Ok(())
    }
}

/// How long the live file's durable commits take, as the defrag's [`Pacer`] reads them.
#[derive(Debug, Default)]
pub(super) struct CommitTimes {
    /// Moving average in microseconds, the newest weighing an eighth.
    typical_us: AtomicU64,
    /// The slowest in microseconds since the pacer last looked.
    slowest_us: AtomicU64,
}

impl CommitTimes {
    /// One more durable commit (they take turns in the writer slot: one caller at a time).
    pub(super) fn record(&self, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let typical = self.typical_us.load(Ordering::Relaxed);
        let typical = if typical == 0 {
            us
        } else {
            typical - typical / 8 + us / 8
        };
        self.typical_us.store(typical, Ordering::Relaxed);
        self.slowest_us.fetch_max(us, Ordering::Relaxed);
    }

    fn typical(&self) -> Duration {
        Duration::from_micros(self.typical_us.load(Ordering::Relaxed))
    }

    fn take_slowest(&self) -> Duration {
        Duration::from_micros(self.slowest_us.swap(0, Ordering::Relaxed))
    }
}

/// Lowers the calling thread's CPU priority to [`BULK_COPY_NICE`]; a failure is logged and the
/// copy runs at the priority it has.
fn lower_cpu_priority() {
    // SAFETY: plain system calls on the calling thread (on Linux a nice value is per thread).
    let lowered = unsafe {
        libc::setpriority(
            libc::PRIO_PROCESS,
            libc::gettid() as libc::id_t,
            BULK_COPY_NICE,
        )
    };
    if lowered != 0 {
        tracing::warn!(
            error = %std::io::Error::last_os_error(),
            "failed to lower the defrag copy's CPU priority"
        );
    }
}

/// Closes the file a defrag replaced, on a thread of its own, once the readers that began
/// before the swap are done with it. Closing syncs the file and frees its blocks (it was
/// renamed over): a second or more at GiB sizes, which neither the writers nor the last
/// reader should wait for.
fn close_when_unread(mut old: Arc<Database>) {
    let spawned = thread::Builder::new()
        .name("backend-close".into())
        .spawn(move || loop {
            match Arc::try_unwrap(old) {
                Ok(db) => return drop(db),
                Err(shared) => {
                    old = shared;
                    thread::sleep(Duration::from_millis(10));
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "failed to start a thread to close the old backend file");
    }
}

/// Makes a rename in `path`'s directory durable.
fn sync_dir(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        crate::dir_ops::sync_dir(dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::BackendConfig;
    use std::sync::atomic::{AtomicBool, AtomicU64};
    use std::thread;

    fn open(dir: &tempfile::TempDir) -> Backend {
        Backend::open(dir.path().join("db"), BackendConfig::default()).unwrap()
    }

    /// Appends `key` entries 0..n (as revisions do, in increasing order) and sets lease `n`.
    fn write(b: &Backend, from: u64, n: u64) {
        let batch = b.begin_write().unwrap();
        {
            let mut key = batch.txn().open_table(schema::KEY).unwrap();
            for i in from..from + n {
                key.insert(&i.to_be_bytes()[..], &[7u8; 256][..]).unwrap();
            }
            let mut lease = batch.txn().open_table(schema::LEASE).unwrap();
            lease
                .insert(&b"last"[..], &(from + n).to_be_bytes()[..])
                .unwrap();
        }
        batch.commit().unwrap();
    }

    fn check(b: &Backend, n: u64) {
        let txn = b.begin_read().unwrap();
        let key = txn.open_table(schema::KEY).unwrap();
        let got: Vec<u64> = key
            .iter()
            .unwrap()
            .map(|e| u64::from_be_bytes(e.unwrap().0.value().try_into().unwrap()))
            .collect();
        assert_eq!(got, (0..n).collect::<Vec<_>>());
        let lease = txn.open_table(schema::LEASE).unwrap();
        let last = lease.get(&b"last"[..]).unwrap().unwrap().value().to_vec();
        assert_eq!(last, n.to_be_bytes());
    }

    /// Files of this process under `dir` that were removed but are still open.
    fn open_deleted_files(dir: &Path) -> usize {
        fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|fd| fs::read_link(fd.ok()?.path()).ok())
            .filter(|target| {
                target.starts_with(dir) && target.to_string_lossy().ends_with(" (deleted)")
            })
            .count()
    }

    #[test]
    fn writes_go_on_during_defrag_and_none_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        let b = open(&dir);
        write(&b, 0, 30_000);
        // Free pages to release: a table filled and emptied.
        let batch = b.begin_write().unwrap();
        {
            let mut t = batch.txn().open_table(schema::V2).unwrap();
            for i in 0u32..5_000 {
                t.insert(&i.to_be_bytes()[..], &[1u8; 1024][..]).unwrap();
            }
        }
        batch.commit().unwrap();
        let batch = b.begin_write().unwrap();
        batch.txn().delete_table(schema::V2).unwrap();
        batch.txn().open_table(schema::V2).unwrap();
        batch.commit().unwrap();
        b.force_commit().unwrap();

        let done = Arc::new(AtomicBool::new(false));
        let written = Arc::new(AtomicU64::new(30_000));
        let writer = {
            let (b, done, written) = (b.clone(), done.clone(), written.clone());
            thread::spawn(move || {
                let mut during = 0;
                // 50,000 revisions a second at most: more than a server commits, and a
                // writer that outran the copy for good would keep a defrag from ending.
                while !done.load(Ordering::Acquire) || during < 20 {
                    let from = written.load(Ordering::Acquire);
                    write(&b, from, 50);
                    written.store(from + 50, Ordering::Release);
                    during += 1;
                    thread::sleep(Duration::from_millis(1));
                }
                during
            })
        };
        let before = b.begin_read().unwrap();
        b.defrag().unwrap();
        done.store(true, Ordering::Release);
        let during = writer.join().unwrap();
        assert!(during >= 20);
        // A reader from before the swap still reads the old file.
        assert!(before
            .open_table(schema::KEY)
            .unwrap()
            .get(&0u64.to_be_bytes()[..])
            .unwrap()
            .is_some());
        drop(before);
        // The replaced file is closed once its last reader is done.
        let deadline = Instant::now() + Duration::from_secs(10);
        while open_deleted_files(dir.path()) > 0 {
            assert!(Instant::now() < deadline, "the replaced file is still open");
            thread::sleep(Duration::from_millis(10));
        }
        let n = written.load(Ordering::Acquire);
        check(&b, n);
        assert!(!dir.path().join("db.defrag").exists());
        write(&b, n, 10);
        b.force_commit().unwrap();
        drop(b);
        let b = open(&dir);
        check(&b, n + 10);
    }

    #[test]
    fn a_leftover_new_file_is_removed_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let b = open(&dir);
        write(&b, 0, 10);
        drop(b);
        fs::write(dir.path().join("db.defrag"), b"half a copy").unwrap();
        let b = open(&dir);
        assert!(!dir.path().join("db.defrag").exists());
        check(&b, 10);
    }
}

/// The backend alone under a defrag, without the server: `DEFRAG_MIB` MiB of 3500-byte values
/// (one to a page), one small write every 20 ms (its latency counted from when it was due), a
/// window without defrag then a defrag, `DEFRAG_ROUNDS` times; the file in `DEFRAG_DIR`.
/// `cargo test --release -p oxcd-storage --lib bench_backend_defrag -- --ignored --nocapture`
#[cfg(test)]
mod bench {
    use super::*;
    use crate::backend::BackendConfig;
    use crate::bench_support::{env_or, quantiles};
    use std::sync::atomic::{AtomicBool, AtomicU64};
    use std::sync::Mutex;

    fn append(b: &Backend, from: u64, n: u64, value: &[u8]) {
        let batch = b.begin_write().unwrap();
        {
            let mut key = batch.txn().open_table(schema::KEY).unwrap();
            for i in from..from + n {
                key.insert(&i.to_be_bytes()[..], value).unwrap();
            }
        }
        batch.commit().unwrap();
    }

    #[test]
    #[ignore]
    fn bench_backend_defrag() {
        let value = vec![7u8; 3500];
        let n = env_or("DEFRAG_MIB", 1024) * (1 << 20) / value.len() as u64;
        let dir =
            tempfile::tempdir_in(std::env::var("DEFRAG_DIR").unwrap_or("/tmp".into())).unwrap();
        let b = Backend::open(dir.path().join("db"), BackendConfig::default()).unwrap();
        let started = Instant::now();
        for from in (0..n).step_by(128) {
            append(&b, from, 128.min(n - from), &value);
        }
        b.force_commit().unwrap();
        eprintln!(
            "fill {n} values: {:?}, {} MiB",
            started.elapsed(),
            b.size().unwrap() >> 20
        );

        let stop = Arc::new(AtomicBool::new(false));
        let latencies = Arc::new(Mutex::new(Vec::<(Instant, Duration)>::new()));
        let writer = {
            let (b, stop, latencies) = (b.clone(), stop.clone(), latencies.clone());
            let next = AtomicU64::new(n);
            thread::spawn(move || {
                let start = Instant::now();
                for k in 0.. {
                    if stop.load(Ordering::Acquire) {
                        return;
                    }
                    let due = start + Duration::from_millis(20) * k;
                    thread::sleep(due.saturating_duration_since(Instant::now()));
                    append(&b, next.fetch_add(1, Ordering::Relaxed), 1, &[1u8; 256]);
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
        let mut window = Duration::from_secs(10);
        for round in 0..env_or("DEFRAG_ROUNDS", 2) {
            let from = Instant::now();
            thread::sleep(window);
            let without = within(from, Instant::now());
            let size = b.size().unwrap();
            let from = Instant::now();
            b.defrag().unwrap();
            let to = Instant::now();
            window = to - from;
            thread::sleep(Duration::from_secs(2));
            eprintln!(
                "defrag {round}: {} -> {} MiB in {window:?}\n  writes without: {without}\n  writes during:  {}",
                size >> 20,
                b.size().unwrap() >> 20,
                within(from, to)
            );
        }
        stop.store(true, Ordering::Release);
        writer.join().unwrap();
    }
}
