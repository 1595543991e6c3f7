//! etcd-format snapshots: backups and migration in both directions.
//!
//! A snapshot file is what etcd's Snapshot RPC streams and `etcdctl snapshot save` stores: a
//! [bbolt](crate::bbolt) database holding etcd's buckets, followed by the SHA-256 of the
//! database (32 bytes). bbolt files are whole pages, so the trailer is there exactly when the
//! length is 32 more than a multiple of 512, which is how etcd's tools tell.
//!
//! [`Backend::begin_etcd_snapshot`] takes one redb read transaction, plans the bbolt file from
//! it and streams it with its trailer: one point in time, writes going on meanwhile, memory
//! bounded by a page plus the branch pages (see `bbolt::write`). [`SnapshotFile`] opens such
//! a file (from etcd or from oxcd), checks its hash, reports etcd's `snapshot status`, and
//! loads it into a fresh backend for `oxcdutl snapshot restore`. The few values whose
//! encodings differ are converted in `convert.rs`.

mod convert;

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::mpsc;

use redb::{ReadTransaction, ReadableTable, TableHandle};
use sha2::{Digest, Sha256};

use crate::backend::{schema, Backend, WriteBatch};
use crate::bbolt::{self, BucketSource, Layout, Reader};
use crate::mvcc::Revision;

/// Bytes of the SHA-256 trailer.
pub const HASH_SIZE: u64 = 32;

/// Snapshot file errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bbolt database is damaged, truncated or not one.
    #[error(transparent)]
    Bbolt(#[from] bbolt::Error),
    /// The backend failed.
    #[error(transparent)]
    Backend(#[from] crate::backend::Error),
    /// Reading or writing a file failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The file has no SHA-256 trailer and the caller wants one checked (etcd's words).
    #[error("snapshot missing hash but --skip-hash-check=false")]
    MissingHash,
    /// The trailer does not match the database: the file is corrupt.
    #[error("expected sha256 {expected}, got {got}")]
    HashMismatch {
        /// The trailer, in hex.
        expected: String,
        /// The database's hash, in hex.
        got: String,
    },
    /// A value in the snapshot cannot be converted.
    #[error("invalid snapshot: {0}")]
    Invalid(String),
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Error::Backend(e.into())
            }
        }
    )*};
}
from_redb!(redb::TableError, redb::StorageError);

/// Result alias for snapshot files.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A point-in-time view of the backend, planned as an etcd snapshot and ready to stream.
pub struct EtcdSnapshot {
    txn: crate::backend::ReadTxn,
    layout: Layout,
}

impl Backend {
    /// Opens a read transaction and plans the etcd snapshot of it (a first pass over every
    /// table). Keep it no longer than the transfer takes: it holds old pages in the file.
    pub fn begin_etcd_snapshot(&self) -> Result<EtcdSnapshot> {
        let txn = self.begin_read()?;
        let layout = Layout::plan(&TxnSource(&txn))?;
        Ok(EtcdSnapshot { txn, layout })
    }
}

impl EtcdSnapshot {
    /// Bytes of the whole stream: the database and its trailer.
    pub fn size(&self) -> u64 {
        self.layout.file_size() + HASH_SIZE
    }

    /// Streams the database and its SHA-256 to `out`, calling `progress` with the bytes
    /// written so far; returns the bytes written.
    pub fn write_to(&self, out: &mut dyn Write, progress: &mut dyn FnMut(u64)) -> Result<u64> {
        let mut hashing = HashingWriter {
            inner: out,
            hasher: Sha256::new(),
        };
        let n = bbolt::write(&self.layout, &TxnSource(&self.txn), &mut hashing, progress)?;
        let digest = hashing.hasher.finalize();
        out_write(hashing.inner, &digest)?;
        progress(n + HASH_SIZE);
        Ok(n + HASH_SIZE)
    }
}

fn out_write(out: &mut dyn Write, bytes: &[u8]) -> io::Result<()> {
    out.write_all(bytes)?;
    out.flush()
}

struct HashingWriter<'a> {
    inner: &'a mut dyn Write,
    hasher: Sha256,
}

impl Write for HashingWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The backend's tables as etcd's buckets.
struct TxnSource<'a>(&'a ReadTransaction);

impl BucketSource for TxnSource<'_> {
    fn buckets(&self) -> Vec<Vec<u8>> {
        convert::BUCKETS
            .iter()
            .map(|t| t.name().as_bytes().to_vec())
            .collect()
    }

    fn scan(&self, bucket: &[u8], f: &mut bbolt::Visit<'_>) -> bbolt::Result<()> {
        let table = convert::table_for(bucket).expect("a bucket listed by buckets()");
        let is_meta = table.name() == schema::META.name();
        let t = self.0.open_table(table).map_err(io::Error::other)?;
        for entry in t.iter().map_err(io::Error::other)? {
            let (k, v) = entry.map_err(io::Error::other)?;
            let (k, v) = (k.value(), v.value());
            if is_meta {
                if let Some(v) = convert::meta_to_etcd(k, v) {
                    f(k, &v)?;
                }
            } else {
                f(k, v)?;
            }
        }
        Ok(())
    }
}

/// What etcd's `snapshot status` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotStatus {
    /// CRC-32C over every bucket's name, keys and values, in order.
    pub hash: u32,
    /// The newest revision in the `key` bucket.
    pub revision: i64,
    /// Entries in all buckets.
    pub total_key: u64,
    /// Bytes of the database (pages in use).
    pub total_size: u64,
}

/// How a restore changes the snapshot's store (etcdutl's flags).
#[derive(Debug, Clone, Copy, Default)]
pub struct RestoreOptions {
    /// Added to the snapshot's newest revision (`--bump-revision`), so that revisions the
    /// clients saw before are never handed out again.
    pub bump_revision: u64,
    /// Schedule a compaction at the (bumped) newest revision (`--mark-compacted`), so that
    /// watchers cannot ask for revisions skipped by the bump.
    pub mark_compacted: bool,
}

/// What a restore loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Restored {
    /// The store's revision after the restore (bump included).
    pub revision: i64,
    /// Entries copied.
    pub entries: u64,
}

/// A snapshot file opened for reading.
#[derive(Debug)]
pub struct SnapshotFile {
    reader: Reader,
}

impl SnapshotFile {
    /// Opens a snapshot file. Unless `skip_hash_check`, the SHA-256 trailer must be there and
    /// match the database, as etcd's restore requires.
    pub fn open(path: &Path, skip_hash_check: bool) -> Result<SnapshotFile> {
        let (file, db_len) = open_db(path, skip_hash_check)?;
        if !skip_hash_check {
            check_hash(&file, db_len)?;
        }
        Ok(SnapshotFile {
            reader: Reader::new(file, db_len)?,
        })
    }

    /// As [`open`](Self::open), then reads the whole database ([`status`](Self::status)),
    /// which finds any damage; the hash is checked on a second thread meanwhile. A wrong or
    /// missing hash is reported before any damage the reading found.
    pub fn open_and_check(
        path: &Path,
        skip_hash_check: bool,
    ) -> Result<(SnapshotFile, SnapshotStatus)> {
        let (file, db_len) = open_db(path, skip_hash_check)?;
        std::thread::scope(|s| {
            let hashed = (!skip_hash_check).then(|| s.spawn(|| check_hash(&file, db_len)));
            let read = file
                .try_clone()
                .map_err(Error::from)
                .and_then(|f| Ok(Reader::new(f, db_len)?))
                .and_then(|reader| {
                    let snap = SnapshotFile { reader };
                    let status = snap.status()?;
                    Ok((snap, status))
                });
            if let Some(hashed) = hashed {
                hashed.join().expect("snapshot hashing panicked")?;
            }
            read
        })
    }

    /// The `meta` bucket's consistent index: the last Raft entry the database holds.
    pub fn consistent_index(&self) -> Result<u64> {
        let mut index = 0;
        self.reader.scan(b"meta", &mut |k, v| {
            if k == schema::META_CONSISTENT_INDEX {
                index = schema::decode_u64(v).ok_or_else(|| {
                    bbolt::Error::Invalid("meta: consistent_index is not 8 bytes".into())
                })?;
            }
            Ok(())
        })?;
        Ok(index)
    }

    /// etcd's `snapshot status`; reads the whole database, so it also finds damage.
    pub fn status(&self) -> Result<SnapshotStatus> {
        let mut crc = 0u32;
        let mut total_key = 0u64;
        let mut revision = 0i64;
        for name in self.reader.buckets()? {
            crc = crc32c::crc32c_append(crc, &name);
            let is_key = name == b"key";
            self.reader.scan(&name, &mut |k, v| {
                crc = crc32c::crc32c_append(crc, k);
                crc = crc32c::crc32c_append(crc, v);
                if is_key {
                    revision = revision_main(k)?;
                }
                total_key += 1;
                Ok(())
            })?;
        }
        Ok(SnapshotStatus {
            hash: crc,
            revision,
            total_key,
            total_size: self.reader.size(),
        })
    }

    /// Loads the snapshot into `backend`, which should be fresh: every bucket oxcd keeps,
    /// except the members (a restore starts a new cluster, whose members the caller writes)
    /// and the Raft position in `meta` (the new cluster's log starts over). `progress` gets
    /// the entries copied so far. Commits once, durably, at the end: on any error nothing
    /// is written.
    ///
    /// One thread reads the file while this one inserts into redb: either alone keeps a core
    /// busy, and neither waits for the other but through a short queue of batches.
    pub fn restore_into(
        &self,
        backend: &Backend,
        opts: RestoreOptions,
        progress: &mut dyn FnMut(u64),
    ) -> Result<Restored> {
        if opts.bump_revision > 0 && !opts.mark_compacted {
            return Err(Error::Invalid(
                "--bump-revision needs --mark-compacted".into(),
            ));
        }
        let batch = backend.begin_write()?;
        let (send, receive) = mpsc::sync_channel::<Batch>(RESTORE_QUEUE);
        let (read, written) = std::thread::scope(|s| {
            let reader = s.spawn(move || self.read_batches(&send));
            let written = insert_batches(&batch, receive, progress);
            (reader.join().expect("snapshot reader panicked"), written)
        });
        // A failed insert stops the reader (its queue is gone), so the insert's error is the
        // cause; otherwise the reader's error, if any, is.
        let entries = written?;
        let mut revision = read?;
        if opts.mark_compacted {
            revision += opts.bump_revision as i64;
            let mut meta = batch.txn().open_table(schema::META)?;
            meta.insert(
                schema::META_SCHEDULED_COMPACT_REV,
                &revision.to_be_bytes()[..],
            )?;
        }
        batch.commit()?;
        backend.force_commit()?;
        progress(entries);
        Ok(Restored { revision, entries })
    }

    /// Reads every bucket a restore keeps, in batches converted to oxcd's encodings, into
    /// `send`; returns the newest revision of the `key` bucket.
    fn read_batches(&self, send: &mpsc::SyncSender<Batch>) -> Result<i64> {
        let mut revision = 0i64;
        for name in self.reader.buckets()? {
            let Some(table) = convert::table_for(&name) else {
                tracing::warn!(
                    bucket = %String::from_utf8_lossy(&name),
                    "skipped a bucket oxcd does not keep"
                );
                continue;
            };
            if table.name() == schema::MEMBERS.name()
                || table.name() == schema::MEMBERS_REMOVED.name()
            {
                continue;
            }
            let is_meta = table.name() == schema::META.name();
            let is_key = table.name() == schema::KEY.name();
            let mut batch = Batch::new(table);
            let mut failed = None;
            self.reader
                .scan(&name, &mut |k, v| {
                    if is_key {
                        revision = revision_main(k)?;
                    }
                    if !is_meta {
                        batch.push(k, v);
                    } else if k != schema::META_CONSISTENT_INDEX && k != schema::META_TERM {
                        match convert::meta_from_etcd(k, v) {
                            Ok(Some(v)) => batch.push(k, &v),
                            Ok(None) => {}
                            Err(e) => {
                                failed = Some(e);
                                return Err(bbolt::Error::Invalid("meta".into()));
                            }
                        }
                    }
                    if batch.len() >= RESTORE_BATCH {
                        let full = std::mem::replace(&mut batch, Batch::new(table));
                        send.send(full).map_err(|_| queue_closed())?;
                    }
                    Ok(())
                })
                .map_err(|e| match failed.take() {
                    Some(what) => Error::Invalid(what),
                    None => e.into(),
                })?;
            send.send(batch).map_err(|_| queue_closed())?;
        }
        Ok(revision)
    }
}

/// Batches waiting between the restore's reader and its writer.
const RESTORE_QUEUE: usize = 8;
/// Entries in one batch.
const RESTORE_BATCH: usize = 4096;

/// Entries of one table, keys and values back to back in one buffer.
struct Batch {
    table: schema::Table,
    bytes: Vec<u8>,
    /// Each entry's key end and value end in `bytes`.
    ends: Vec<(usize, usize)>,
}

impl Batch {
    fn new(table: schema::Table) -> Batch {
        Batch {
            table,
            bytes: Vec::new(),
            ends: Vec::with_capacity(RESTORE_BATCH),
        }
    }

    fn push(&mut self, key: &[u8], value: &[u8]) {
        self.bytes.extend_from_slice(key);
        let key_end = self.bytes.len();
        self.bytes.extend_from_slice(value);
        self.ends.push((key_end, self.bytes.len()));
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    fn entries(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        let mut start = 0;
        self.ends.iter().map(move |&(key_end, value_end)| {
            let entry = (&self.bytes[start..key_end], &self.bytes[key_end..value_end]);
            start = value_end;
            entry
        })
    }
}

/// The reader's error when the writer has stopped; the writer's own error is reported.
fn queue_closed() -> bbolt::Error {
    bbolt::Error::Io(io::Error::other("restore stopped"))
}

/// Inserts every batch from `receive` in `batch`'s transaction; returns the entries inserted.
fn insert_batches(
    batch: &WriteBatch,
    receive: mpsc::Receiver<Batch>,
    progress: &mut dyn FnMut(u64),
) -> Result<u64> {
    let mut entries = 0u64;
    for loaded in receive {
        let mut t = batch.txn().open_table(loaded.table)?;
        for (k, v) in loaded.entries() {
            t.insert(k, v)?;
        }
        let before = entries;
        entries += loaded.len() as u64;
        if before / 10_000 != entries / 10_000 {
            progress(entries);
        }
    }
    Ok(entries)
}

/// Opens a snapshot file; returns it and the length of its database, which is all of it but
/// the trailer. Without the trailer, refused unless `skip_hash_check`.
fn open_db(path: &Path, skip_hash_check: bool) -> Result<(File, u64)> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    let has_hash = len % 512 == HASH_SIZE;
    if !has_hash && !skip_hash_check {
        return Err(Error::MissingHash);
    }
    Ok((file, if has_hash { len - HASH_SIZE } else { len }))
}

/// Checks the database's SHA-256 against the trailer that follows it.
fn check_hash(file: &File, db_len: u64) -> Result<()> {
    let mut want = [0u8; HASH_SIZE as usize];
    file.read_exact_at(&mut want, db_len)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0;
    while at < db_len {
        let n = buf.len().min((db_len - at) as usize);
        file.read_exact_at(&mut buf[..n], at)?;
        hasher.update(&buf[..n]);
        at += n as u64;
    }
    let got = hasher.finalize();
    if got[..] != want[..] {
        return Err(Error::HashMismatch {
            expected: hex(&want),
            got: hex(&got),
        });
    }
    Ok(())
}

/// The main revision of a `key` bucket key.
fn revision_main(key: &[u8]) -> bbolt::Result<i64> {
    Revision::from_key(key)
        .map(|(r, _)| r.main)
        .ok_or_else(|| bbolt::Error::Invalid(format!("key bucket: {key:?} is not a revision")))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;
