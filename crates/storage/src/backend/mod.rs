//! The backend: one redb file holding the MVCC data and every other table the server keeps
//! (leases, auth, members, alarms), as etcd keeps them in one bolt file.
//!
//! # Durability
//!
//! The WAL is what makes an acknowledged write durable, so the backend does not pay an fsync per
//! apply batch: [`WriteBatch::commit`] commits with [`redb::Durability::None`], which makes the
//! batch visible to readers but does not flush it. A flusher thread makes one durable commit at
//! most every [`BackendConfig::durable_commit_interval`] when something changed, and
//! [`Backend::force_commit`] makes one at once (snapshots, shutdown). After a crash redb reopens
//! at its last durable commit; the consistent index stored in `meta` by the same transactions as
//! the data tells the server from which WAL entry to replay.
//!
//! # Who uses it
//!
//! The apply task writes through [`WriteBatch`] (via the MVCC store's batch); the MVCC
//! compactor and the flusher write small transactions of their own; anyone may read through
//! [`Backend::begin_read`]. redb admits one write transaction at a time, so these take turns,
//! in the order they ask for the backend's writer slot.
//!
//! # Defragmentation
//!
//! [`Backend::defrag`] copies the live data into a new file while reads and writes go on, and
//! swaps files with writes held off only for the last few changes (see `defrag.rs`).
//!
//! # Snapshots
//!
//! [`Backend::dump`] streams every table as of one commit, and [`Backend::restore`] replaces
//! every table with such a stream in one transaction; the format is in `snapshot.rs`.

mod defrag;
#[cfg(feature = "failpoints")]
pub(crate) mod power_loss;
pub mod schema;
mod slot;
mod snapshot;

pub use snapshot::{Dump, SNAPSHOT_MAGIC, SNAPSHOT_VERSION};

use std::fs;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock, RwLock, Weak};
use std::thread;
use std::time::{Duration, Instant};

use redb::{
    Database, Durability, ReadTransaction, ReadableDatabase, ReadableTable, WriteTransaction,
};

/// redb's page cache. redb's default is 1 GiB; we aim at a resident size well below etcd's
/// (~75 MiB under the standard benchmark), and the key index, not the page cache, serves most
/// lookups (values are fetched by revision, mostly recent pages), so 32 MiB keeps the hot part
/// of the file in memory without dominating RSS.
pub const DEFAULT_CACHE_SIZE: usize = 32 * 1024 * 1024;

/// How long a non-durable commit may wait for a durable one. Bounds the WAL that must be
/// replayed after a crash, and fsyncs at most ten times a second, whatever the write rate.
pub const DEFAULT_DURABLE_COMMIT_INTERVAL: Duration = Duration::from_millis(100);

/// Backend errors: all of them come from redb or the file system.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// redb failed (I/O, corruption, a transaction or table error).
    #[error("backend: {0}")]
    Redb(#[from] redb::Error),
    /// The file system failed outside redb.
    #[error("backend: {0}")]
    Io(#[from] std::io::Error),
    /// A value in a table could not be decoded.
    #[error("backend: corrupt value in table {table}: {what}")]
    Corrupt {
        /// The table holding the value.
        table: &'static str,
        /// What was wrong.
        what: String,
    },
    /// A page's checksum does not match its contents: the file changed outside redb (a disk
    /// fault, bit rot, an edit). Found by the verification of [`BackendConfig::verify_on_open`].
    #[error("backend: corrupt file: a page's checksum does not match its contents")]
    Checksum,
    /// A snapshot stream (see [`Backend::restore`]) is truncated, corrupt or not ours; nothing
    /// was restored.
    #[error("backend: invalid snapshot: {0}")]
    InvalidSnapshot(String),
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Error::Redb(e.into())
            }
        }
    )*};
}
from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::CompactionError,
    redb::SetDurabilityError
);

/// Result alias for backend operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How to open a backend.
#[derive(Debug, Clone)]
pub struct BackendConfig {
    /// Bytes of redb page cache.
    pub cache_size: usize,
    /// Longest time between a non-durable commit and the durable commit that covers it.
    pub durable_commit_interval: Duration,
    /// Verify every page's checksum at open, reading the whole file: redb's own pages before
    /// `open` returns, the tables' pages on a thread of its own while the caller goes on (see
    /// [`Backend::wait_verified`]). Without it, a file closed by [`Backend::commit_for_stop`]
    /// opens at once. Any other file is read through either way: redb repairs it at open,
    /// verifying every page as it rebuilds its page allocation.
    pub verify_on_open: bool,
}

impl Default for BackendConfig {
    fn default() -> Self {
        BackendConfig {
            cache_size: DEFAULT_CACHE_SIZE,
            durable_commit_interval: DEFAULT_DURABLE_COMMIT_INTERVAL,
            verify_on_open: true,
        }
    }
}

/// A handle to the backend file; cheap to clone, shared by every user.
#[derive(Clone)]
pub struct Backend {
    inner: Arc<Inner>,
}

struct Inner {
    /// The database. The lock is held only to clone the handle; defrag replaces it, and
    /// transactions begun before keep the old one (and its file) alive until they end.
    db: RwLock<Arc<Database>>,
    /// Taken by every write transaction, from begin to commit or abort: redb admits one
    /// writer, and taking turns here rather than inside redb lets defrag hold writers off
    /// and then send them to the new file.
    writer: Arc<slot::Slot>,
    /// Taken by defrag for its whole run, and by the writes that remove or rewrite `key`
    /// entries (compaction batches, restores): defrag's catch-up copies only new revisions.
    rewrites: Arc<slot::Slot>,
    /// The file, for `size()` and logs.
    path: PathBuf,
    /// redb page cache of the file, for the new file defrag writes.
    cache_size: usize,
    /// Set by a non-durable commit, cleared by the durable commit that covers it.
    dirty: AtomicBool,
    /// Dropping this wakes the flusher thread, which then exits; held only for its drop.
    _stop_flusher: Mutex<mpsc::Sender<()>>,
    /// What the flusher does when a durable commit fails; see [`Backend::on_flush_failure`].
    on_flush_failure: OnceLock<FlushFailureHook>,
    /// How long durable commits take: a defrag slows its copy down when they slow down.
    durable_commits: defrag::CommitTimes,
    /// The verification of the tables' pages started by `open`, until waited for.
    verification: Mutex<Option<thread::JoinHandle<Result<()>>>>,
}

/// The file size up to which [`Backend::size_of_data`] counts tree pages exactly.
const EXACT_DATA_SIZE_BELOW: u64 = 64 << 20;

/// Called by the flusher thread with the error of a failed durable commit.
type FlushFailureHook = Box<dyn Fn(&Error) + Send + Sync>;

impl Backend {
    /// Opens the backend file at `path`, creating it (and every table) if missing, and starts
    /// the flusher thread.
    pub fn open(path: impl AsRef<Path>, cfg: BackendConfig) -> Result<Backend> {
        let path = path.as_ref().to_path_buf();
        defrag::remove_leftover(&path)?;
        let fresh = !path.exists();
        let started = Instant::now();
        let mut builder = Database::builder();
        builder.set_cache_size(cfg.cache_size);
        let shown = path.display().to_string();
        let repaired = Arc::new(AtomicBool::new(false));
        let repairing = repaired.clone();
        builder.set_repair_callback(move |session| {
            if session.progress() == 0.0 && !repairing.swap(true, Ordering::Relaxed) {
                tracing::warn!(path = %shown, "backend was not closed cleanly; reading all of it to repair it");
            }
        });
        #[cfg(feature = "failpoints")]
        let mut db = if power_loss::enabled() {
            let file = crate::dir_ops::create(&path, || {
                fs::File::options()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(&path)
            })?;
            tracing::warn!(path = %path.display(), "test mode: writes not synced are lost at a crash");
            builder.create_with_backend(power_loss::LoseUnsynced::new(file)?)?
        } else {
            crate::dir_ops::create(&path, || builder.create(&path))?
        };
        #[cfg(not(feature = "failpoints"))]
        let mut db = crate::dir_ops::create(&path, || builder.create(&path))?;
        // A repair has verified every page already.
        let verify = cfg.verify_on_open && !fresh && !repaired.load(Ordering::Relaxed);
        if verify {
            tracing::info!(path = %path.display(), "verifying every page of the backend");
            // Before anything writes: a commit may reuse the pages of redb's own tree.
            if !db.verify_system_checksums()? {
                return Err(Error::Checksum);
            }
        }
        let txn = db.begin_write()?;
        for table in schema::ALL_TABLES {
            txn.open_table(table)?;
        }
        txn.commit()?;
        if fresh {
            // redb starts a file with a 1 MiB region; compacted, an empty store takes a few
            // pages, as a fresh bolt file does, and small backend quotas mean what they say.
            db.compact()?;
        }

        let db = Arc::new(db);
        let verification = if verify {
            let snapshot = ReadTxn {
                txn: db.begin_read()?,
                _db: db.clone(),
            };
            let path = path.clone();
            let verifier = thread::Builder::new()
                .name("backend-verify".into())
                .spawn(move || verify_tables(&snapshot, &path))?;
            Some(verifier)
        } else {
            None
        };

        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let inner = Arc::new(Inner {
            db: RwLock::new(db),
            writer: Arc::default(),
            rewrites: Arc::default(),
            path,
            cache_size: cfg.cache_size,
            dirty: AtomicBool::new(false),
            _stop_flusher: Mutex::new(stop_tx),
            on_flush_failure: OnceLock::new(),
            durable_commits: defrag::CommitTimes::default(),
            verification: Mutex::new(verification),
        });
        let weak = Arc::downgrade(&inner);
        thread::Builder::new()
            .name("backend-flush".into())
            .spawn(move || flush_loop(weak, stop_rx, cfg.durable_commit_interval))?;
        tracing::info!(path = %inner.path.display(), took = ?started.elapsed(), "opened backend");
        Ok(Backend { inner })
    }

    /// Begins a read transaction: a snapshot of the last commit, durable or not.
    pub fn begin_read(&self) -> Result<ReadTxn> {
        let db = self.db();
        Ok(ReadTxn {
            txn: db.begin_read()?,
            _db: db,
        })
    }

    /// Begins a write batch; waits while another write transaction is open.
    pub fn begin_write(&self) -> Result<WriteBatch> {
        let writer = self.inner.writer.take();
        let mut txn = self.db().begin_write()?;
        txn.set_durability(Durability::None)?;
        Ok(WriteBatch {
            txn,
            inner: self.inner.clone(),
            _rewrites: None,
            _writer: writer,
        })
    }

    /// Begins a write batch that may remove or rewrite `key` entries (compaction); waits
    /// while a defrag runs, as well as for other writers.
    pub fn begin_rewrite(&self) -> Result<WriteBatch> {
        let rewrites = self.inner.rewrites.take();
        let mut batch = self.begin_write()?;
        batch._rewrites = Some(rewrites);
        Ok(batch)
    }

    /// Sets what happens when a durable commit of the flusher thread fails (the server stops:
    /// redb refuses every transaction after a failed write). Without it the failure is logged
    /// and the next write transaction fails. Only the first call counts.
    pub fn on_flush_failure(&self, hook: impl Fn(&Error) + Send + Sync + 'static) {
        let _ = self.inner.on_flush_failure.set(Box::new(hook));
    }

    /// Waits for the verification of the tables' pages that [`BackendConfig::verify_on_open`]
    /// started, if it has not been waited for: [`Error::Checksum`] if a page is corrupt.
    pub fn wait_verified(&self) -> Result<()> {
        let verification = self
            .inner
            .verification
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        match verification {
            Some(v) => v
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            None => Ok(()),
        }
    }

    /// Makes every commit so far durable, now.
    pub fn force_commit(&self) -> Result<()> {
        self.inner.durable_commit()
    }

    /// [`Backend::force_commit`] for a stop: the commit also records redb's page allocation,
    /// so that an open without [`BackendConfig::verify_on_open`] loads it instead of reading
    /// the whole file. A commit after this one brings the read back.
    pub fn commit_for_stop(&self) -> Result<()> {
        self.inner.commit(true)
    }

    /// Makes everything durable and closes the file, so that it may be opened again at once.
    /// Fails if another handle to the backend is still in use.
    pub fn close(self) -> Result<()> {
        // Its snapshot holds the file open.
        self.wait_verified()?;
        self.force_commit()?;
        let mut inner = self.inner;
        // The flusher holds a strong handle only while it checks for work.
        let deadline = Instant::now() + Duration::from_secs(1);
        loop {
            match Arc::try_unwrap(inner) {
                Ok(inner) => {
                    drop(inner);
                    return Ok(());
                }
                Err(shared) if Instant::now() < deadline => {
                    inner = shared;
                    thread::sleep(Duration::from_millis(1));
                }
                Err(_) => {
                    return Err(Error::Io(std::io::Error::other(
                        "backend still in use, cannot close it",
                    )))
                }
            }
        }
    }

    /// The file's size in bytes, free pages included (etcd's `dbSize`).
    pub fn size(&self) -> Result<u64> {
        Ok(fs::metadata(&self.inner.path)?.len())
    }

    /// Bytes of the file in use by live pages (etcd's `dbSizeInUse`): the pages redb's
    /// allocator has handed out, counted from its bitmaps in a write transaction held for that
    /// count only. (redb's `stats` walks every tree for it: seconds of held writes on a store
    /// of a few GiB, at each Status call and metric scrape.)
    pub fn size_in_use(&self) -> Result<u64> {
        let txn = self.begin_write()?;
        let size = txn.txn().allocated_bytes()?;
        txn.abort()?;
        Ok(size)
    }

    /// Bytes the data takes: on a file of up to [`EXACT_DATA_SIZE_BELOW`], the pages the
    /// tables' trees hold (leaf and branch pages), without the allocator's own pages and the
    /// pages freed by commits not yet durable; counting them walks every tree with writes held,
    /// a few milliseconds at that size. On a larger file, [`Backend::size_in_use`], which
    /// includes those pages (a flush interval's worth of writes) but takes no walk: a walk of
    /// a few GiB holds writes for seconds.
    pub fn size_of_data(&self) -> Result<u64> {
        if self.size()? > EXACT_DATA_SIZE_BELOW {
            return self.size_in_use();
        }
        let txn = self.begin_write()?;
        let stats = txn.txn().stats()?;
        txn.abort()?;
        Ok((stats.leaf_pages() + stats.branch_pages()) * stats.page_size() as u64)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// A CRC-32C over every table in [`schema::ALL_TABLES`] order (each table's name, then its
    /// keys and values in key order), leaving out the `meta` entries that differ between members
    /// applying the same history (consistent index and term). etcd's Maintenance.Hash.
    pub fn hash(&self) -> Result<u32> {
        hash_tables(&*self.begin_read()?)
    }

    fn db(&self) -> Arc<Database> {
        self.inner.db()
    }
}

/// A read transaction, keeping the file it reads alive across a defrag's swap.
pub struct ReadTxn {
    txn: ReadTransaction,
    _db: Arc<Database>,
}

impl Deref for ReadTxn {
    type Target = ReadTransaction;

    fn deref(&self) -> &ReadTransaction {
        &self.txn
    }
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("path", &self.inner.path)
            .finish()
    }
}

impl Inner {
    fn db(&self) -> Arc<Database> {
        self.db.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn durable_commit(&self) -> Result<()> {
        self.commit(false)
    }

    /// A durable commit; `quick_repair` records the page allocation with it.
    fn commit(&self, quick_repair: bool) -> Result<()> {
        let _writer = self.writer.take();
        // Cleared before the commit: a non-durable commit racing with this one sets it again.
        self.dirty.store(false, Ordering::Release);
        let mut txn = self.db().begin_write()?;
        txn.set_quick_repair(quick_repair);
        let start = Instant::now();
        fail::fail_point!("before_commit");
        let result = txn.commit();
        fail::fail_point!("after_commit");
        let took = start.elapsed();
        metrics::histogram!("etcd_disk_backend_commit_duration_seconds").record(took.as_secs_f64());
        self.durable_commits.record(took);
        if result.is_err() {
            self.dirty.store(true, Ordering::Release);
        }
        Ok(result?)
    }
}

impl Drop for Inner {
    /// The last handle is gone: no batch is open (each holds a handle), so make the last
    /// non-durable commits durable before redb closes the file. A verification not waited for
    /// is waited for here: its snapshot keeps the file open, and the file must be closed when
    /// the last handle goes, so that it may be opened again at once.
    fn drop(&mut self) {
        if self.dirty.load(Ordering::Acquire) {
            if let Err(e) = self.durable_commit() {
                tracing::warn!(path = %self.path.display(), error = %e, "failed to commit backend");
            }
        }
        let verification = self
            .verification
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(verification) = verification {
            // A failure was logged by the verification itself.
            let _ = verification.join();
        }
    }
}

/// Verifies the checksum of every page of the tables in `snapshot` (see
/// [`BackendConfig::verify_on_open`]).
fn verify_tables(snapshot: &ReadTxn, path: &Path) -> Result<()> {
    let started = Instant::now();
    if !snapshot.verify_checksums()? {
        tracing::error!(path = %path.display(), "backend is corrupt: a page's checksum does not match its contents");
        return Err(Error::Checksum);
    }
    tracing::info!(path = %path.display(), took = ?started.elapsed(), "verified every page of the backend");
    Ok(())
}

/// Makes a durable commit every `interval` while something changed; exits when the backend is
/// dropped (its sender goes away) or gone.
fn flush_loop(inner: Weak<Inner>, stop: mpsc::Receiver<()>, interval: Duration) {
    while let Err(mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(interval) {
        let Some(inner) = inner.upgrade() else { return };
        if inner.dirty.load(Ordering::Acquire) {
            if let Err(e) = inner.durable_commit() {
                match inner.on_flush_failure.get() {
                    Some(hook) => hook(&e),
                    None => {
                        tracing::warn!(path = %inner.path.display(), error = %e, "failed to commit backend")
                    }
                }
            }
        }
    }
}

/// One redb write transaction, committed without fsync (see the module doc).
pub struct WriteBatch {
    /// Declared before the permits: it ends (aborts, if not committed) before they go.
    txn: WriteTransaction,
    inner: Arc<Inner>,
    /// Held by a batch that may remove `key` entries (see [`Backend::begin_rewrite`]).
    _rewrites: Option<slot::Permit>,
    _writer: slot::Permit,
}

impl WriteBatch {
    /// The redb transaction, to open tables in.
    pub fn txn(&self) -> &WriteTransaction {
        &self.txn
    }

    /// Commits: visible to new readers at once, durable within the flush interval.
    pub fn commit(self) -> Result<()> {
        self.txn.commit()?;
        self.inner.dirty.store(true, Ordering::Release);
        Ok(())
    }

    /// Drops every change of the batch.
    pub fn abort(self) -> Result<()> {
        Ok(self.txn.abort()?)
    }
}

/// [`Backend::hash`] over a read transaction the caller opened.
pub fn hash_tables(txn: &ReadTransaction) -> Result<u32> {
    use redb::TableHandle;
    let mut crc = 0u32;
    for table in schema::ALL_TABLES {
        let is_meta = table.name() == schema::META.name();
        crc = crc32c::crc32c_append(crc, table.name().as_bytes());
        let t = txn.open_table(table)?;
        for entry in t.iter()? {
            let (k, v) = entry?;
            let (k, v) = (k.value(), v.value());
            if is_meta && (k == schema::META_CONSISTENT_INDEX || k == schema::META_TERM) {
                continue;
            }
            crc = crc32c::crc32c_append(crc, k);
            crc = crc32c::crc32c_append(crc, v);
        }
    }
    Ok(crc)
}

/// Reads a u64 `meta` value; `None` when absent.
pub fn read_meta_u64(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    key: &[u8],
) -> Result<Option<u64>> {
    let Some(v) = table.get(key)? else {
        return Ok(None);
    };
    match schema::decode_u64(v.value()) {
        Some(n) => Ok(Some(n)),
        None => Err(Error::Corrupt {
            table: "meta",
            what: format!(
                "{} is {} bytes, want 8",
                String::from_utf8_lossy(key),
                v.value().len()
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &tempfile::TempDir) -> Backend {
        Backend::open(dir.path().join("db"), BackendConfig::default()).unwrap()
    }

    fn put(b: &Backend, k: &[u8], v: &[u8]) {
        let batch = b.begin_write().unwrap();
        batch
            .txn()
            .open_table(schema::LEASE)
            .unwrap()
            .insert(k, v)
            .unwrap();
        batch.commit().unwrap();
    }

    fn get(b: &Backend, k: &[u8]) -> Option<Vec<u8>> {
        let txn = b.begin_read().unwrap();
        let t = txn.open_table(schema::LEASE).unwrap();
        t.get(k).unwrap().map(|v| v.value().to_vec())
    }

    #[test]
    fn every_table_exists_after_open() {
        let dir = tempfile::tempdir().unwrap();
        let b = open(&dir);
        let txn = b.begin_read().unwrap();
        for table in schema::ALL_TABLES {
            txn.open_table(table).unwrap();
        }
    }

    #[test]
    fn non_durable_commit_is_visible_and_survives_force_commit_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let b = open(&dir);
        put(&b, b"a", b"1");
        assert_eq!(get(&b, b"a").as_deref(), Some(&b"1"[..]));
        assert!(b.inner.dirty.load(Ordering::Acquire));
        b.force_commit().unwrap();
        assert!(!b.inner.dirty.load(Ordering::Acquire));
        drop(b);
        let b = open(&dir);
        assert_eq!(get(&b, b"a").as_deref(), Some(&b"1"[..]));
    }

    #[test]
    fn flusher_makes_commits_durable() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = BackendConfig {
            durable_commit_interval: Duration::from_millis(5),
            ..BackendConfig::default()
        };
        let b = Backend::open(dir.path().join("db"), cfg).unwrap();
        put(&b, b"a", b"1");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while b.inner.dirty.load(Ordering::Acquire) {
            assert!(
                std::time::Instant::now() < deadline,
                "flusher never committed"
            );
            thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn aborted_batch_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let b = open(&dir);
        let batch = b.begin_write().unwrap();
        batch
            .txn()
            .open_table(schema::LEASE)
            .unwrap()
            .insert(&b"a"[..], &b"1"[..])
            .unwrap();
        batch.abort().unwrap();
        assert_eq!(get(&b, b"a"), None);
    }

    #[test]
    fn hash_ignores_consistent_index_but_not_data() {
        let dir1 = tempfile::tempdir().unwrap();
        let dir2 = tempfile::tempdir().unwrap();
        let (a, b) = (open(&dir1), open(&dir2));
        assert_eq!(a.hash().unwrap(), b.hash().unwrap());
        let batch = a.begin_write().unwrap();
        batch
            .txn()
            .open_table(schema::META)
            .unwrap()
            .insert(schema::META_CONSISTENT_INDEX, &schema::encode_u64(7)[..])
            .unwrap();
        batch.commit().unwrap();
        assert_eq!(a.hash().unwrap(), b.hash().unwrap());
        put(&a, b"k", b"v");
        assert_ne!(a.hash().unwrap(), b.hash().unwrap());
        put(&b, b"k", b"v");
        assert_eq!(a.hash().unwrap(), b.hash().unwrap());
    }

    #[test]
    fn sizes_and_defrag() {
        let dir = tempfile::tempdir().unwrap();
        let b = open(&dir);
        let value = vec![7u8; 4096];
        for i in 0u32..500 {
            put(&b, &i.to_be_bytes(), &value);
        }
        let batch = b.begin_write().unwrap();
        {
            let mut t = batch.txn().open_table(schema::LEASE).unwrap();
            for i in 0u32..500 {
                t.remove(&i.to_be_bytes()[..]).unwrap();
            }
        }
        batch.commit().unwrap();
        let before = b.size().unwrap();
        assert!(b.size_in_use().unwrap() <= before);
        b.defrag().unwrap();
        assert!(b.size().unwrap() < before, "defrag did not shrink the file");
        assert_eq!(get(&b, &0u32.to_be_bytes()), None);
    }

    #[test]
    fn size_in_use_follows_writes_and_defrag() {
        let dir = tempfile::tempdir().unwrap();
        let b = open(&dir);
        let empty = b.size_in_use().unwrap();
        let value = vec![7u8; 4096];
        for i in 0u32..500 {
            put(&b, &i.to_be_bytes(), &value);
        }
        let filled = b.size_in_use().unwrap();
        assert!(filled > empty + 500 * 4096, "{filled} after 2 MiB of puts");
        assert!(filled <= b.size().unwrap());
        b.defrag().unwrap();
        let defragmented = b.size_in_use().unwrap();
        assert!(
            defragmented > empty + 500 * 4096,
            "{defragmented} after defrag"
        );
        assert!(defragmented <= b.size().unwrap());
    }

    #[test]
    fn size_of_data_counts_tree_pages_on_a_small_file_and_allocated_pages_on_a_large_one() {
        let dir = tempfile::tempdir().unwrap();
        let b = open(&dir);
        let value = vec![7u8; 4000];
        put(&b, b"small", &value);
        let small = b.size_of_data().unwrap();
        assert!(small < b.size_in_use().unwrap(), "tree pages only");
        assert!(small < 13 * 4096, "{small} bytes for one value of 4000");
        let batch = b.begin_write().unwrap();
        {
            let mut t = batch.txn().open_table(schema::LEASE).unwrap();
            for i in 0u32..20_000 {
                t.insert(&i.to_be_bytes()[..], &value[..]).unwrap();
            }
        }
        batch.commit().unwrap();
        assert!(b.size().unwrap() > EXACT_DATA_SIZE_BELOW);
        let large = b.size_of_data().unwrap();
        assert_eq!(large, b.size_in_use().unwrap());
        assert!(large >= 20_000 * 4000, "{large} bytes for 80 MB of values");
    }

    #[test]
    fn verification_at_open_finds_a_flipped_bit_in_a_value() {
        const MARK: &[u8] = b"FLIP-ME-FLIP-ME";
        let dir = tempfile::tempdir().unwrap();
        let b = open(&dir);
        for i in 0u32..100 {
            put(&b, &i.to_be_bytes(), &MARK.repeat(200));
        }
        b.commit_for_stop().unwrap();
        b.close().unwrap();
        // A clean file verifies, whether or not anyone waits for it.
        open(&dir).close().unwrap();
        let b = open(&dir);
        b.wait_verified().unwrap();
        b.commit_for_stop().unwrap();
        b.close().unwrap();

        let path = dir.path().join("db");
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes.windows(MARK.len()).position(|w| w == MARK).unwrap();
        bytes[at] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let b = open(&dir);
        assert!(matches!(b.wait_verified(), Err(Error::Checksum)));
        drop(b);
        // Without verification the same file opens.
        let cfg = BackendConfig {
            verify_on_open: false,
            ..Default::default()
        };
        Backend::open(&path, cfg).unwrap().wait_verified().unwrap();
    }

    #[test]
    fn a_backend_dropped_while_it_verifies_closes_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let b = open(&dir);
        let batch = b.begin_write().unwrap();
        {
            let mut t = batch.txn().open_table(schema::LEASE).unwrap();
            for i in 0u32..20_000 {
                t.insert(&i.to_be_bytes()[..], &[7u8; 4000][..]).unwrap();
            }
        }
        batch.commit().unwrap();
        b.commit_for_stop().unwrap();
        b.close().unwrap();
        // The verification of 80 MB is still running when the handle goes; the file may be
        // opened again at once all the same.
        drop(open(&dir));
        open(&dir).wait_verified().unwrap();
    }

    #[test]
    fn read_meta_u64_rejects_bad_length() {
        let dir = tempfile::tempdir().unwrap();
        let b = open(&dir);
        let batch = b.begin_write().unwrap();
        {
            let mut t = batch.txn().open_table(schema::META).unwrap();
            t.insert(schema::META_TERM, &b"bad"[..]).unwrap();
            assert!(read_meta_u64(&t, schema::META_TERM).is_err());
            assert_eq!(
                read_meta_u64(&t, schema::META_CONSISTENT_INDEX).unwrap(),
                None
            );
        }
        batch.abort().unwrap();
    }
}
