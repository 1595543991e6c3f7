//! The store: the tree index, the current and compaction revisions, and reads.
//!
//! Writes live in `txn.rs` (batches and transactions), compaction in `compaction.rs`,
//! replacing the contents with a snapshot in `restore.rs`.

mod compaction;
mod cursor;
mod encoded;
mod restore;
mod txn;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard};

use oxcd_api::mvccpb::{event::EventType, Event, KeyValue};
use prost::Message;
use redb::ReadableTable;

pub use compaction::CompactionWait;
pub use cursor::{PieceLimits, RangeCursor};
pub use encoded::EncodedRange;
pub use txn::{Batch, Txn};

use super::index::{KeyRange, TreeIndex};
use super::key_index::{KeyAt, KeyIndex};
use super::revision::Revision;
use super::{Error, Result};
use crate::backend::{self, schema, Backend};

/// How to read a range.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RangeOptions {
    /// Read as of this revision; 0 (or less) for the current one.
    pub rev: i64,
    /// Return at most this many keys; 0 (or less) for no limit. `count` still counts all.
    pub limit: i64,
    /// Return no keys, only `count`.
    pub count_only: bool,
    /// Return keys without their values.
    pub keys_only: bool,
    /// Fail with [`Error::TooLarge`] rather than return keys and values of more than this many
    /// bytes (protobuf-encoded, as a response carries them); `None` for no cap.
    pub max_bytes: Option<usize>,
}

/// What a range read returns.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RangeResult {
    /// The keys, in key order.
    pub kvs: Vec<KeyValue>,
    /// How many keys the range holds at the revision read, whatever the limit.
    pub count: i64,
    /// The store's current revision when read (the response header's revision).
    pub rev: i64,
}

/// etcd's HashKV: a hash of the MVCC history up to a revision, equal on members that applied
/// the same history, whatever their compaction progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashKv {
    /// CRC-32C over the `key` table entries up to `hash_revision`, as etcd computes it: at or
    /// below `compact_revision` only the revisions still latest at `hash_revision` count, so
    /// the hash does not depend on how far the background compaction got.
    pub hash: u32,
    /// The revision hashed up to.
    pub hash_revision: i64,
    /// The compaction revision when hashed.
    pub compact_revision: i64,
    /// The store's current revision when hashed.
    pub current_revision: i64,
}

/// The MVCC key-value store; cheap to clone, shared by the apply task and every reader.
#[derive(Clone)]
pub struct KvStore {
    shared: Arc<Shared>,
}

/// What every handle and the compactor share.
pub(crate) struct Shared {
    /// The backend file; the `key` and `meta` tables are this store's.
    backend: Backend,
    /// The index and the published revisions; held briefly, never across backend I/O beyond
    /// opening a read transaction, never across a commit.
    state: Mutex<State>,
    /// The number of the newest batch whose results may already have been reported (see
    /// [`Batch::promise`]): readers wait until it is committed rather than read older state.
    promised: AtomicU64,
    /// Signalled when a batch commits while readers wait for it.
    published: Condvar,
    /// Index and term of the last Raft entry whose batch committed.
    applied: Mutex<(u64, u64)>,
    /// Hands compactions to the compactor thread, in order. The thread ends when this goes.
    compactor: Mutex<mpsc::Sender<compaction::Job>>,
}

/// The index and the revisions readers go by.
pub(crate) struct State {
    /// Every key's history. Holds the changes of the batch being applied too, above
    /// `current_rev` and so invisible to readers, who always read at or below it.
    index: TreeIndex,
    /// The newest committed revision.
    current_rev: i64,
    /// Reads below this revision fail; committed compactions only.
    compact_rev: i64,
    /// Which contents the index describes: bumped by each restore. A compaction belongs to the
    /// epoch it was committed in and stops if the epoch changes under it.
    epoch: u64,
    /// How many batches have committed; a batch is numbered one more when it begins.
    batches: u64,
    /// Readers waiting for a promised batch to commit.
    readers_waiting: usize,
}

impl KvStore {
    /// Opens the store over `backend`, rebuilding the index from its `key` table and resuming
    /// a compaction that did not finish.
    pub fn open(backend: Backend) -> Result<KvStore> {
        let started = std::time::Instant::now();
        let rtxn = backend.begin_read()?;
        let mut loaded = Loaded::read(
            &rtxn.open_table(schema::META)?,
            &rtxn.open_table(schema::KEY)?,
        )?;
        drop(rtxn);

        let shared = Arc::new_cyclic(|weak| Shared {
            backend,
            state: Mutex::new(State {
                index: std::mem::take(&mut loaded.index),
                current_rev: loaded.current_rev,
                compact_rev: loaded.compact_rev,
                epoch: 0,
                batches: 0,
                readers_waiting: 0,
            }),
            promised: AtomicU64::new(0),
            published: Condvar::new(),
            applied: Mutex::new(loaded.applied),
            compactor: Mutex::new(compaction::spawn(weak.clone())),
        });
        let store = KvStore { shared };
        loaded.log(started);
        loaded.resume_compaction(&store.shared, 0);
        Ok(store)
    }

    /// The backend this store writes to.
    pub fn backend(&self) -> &Backend {
        &self.shared.backend
    }

    /// The newest committed revision.
    pub fn current_revision(&self) -> i64 {
        self.shared.read_lock().current_rev
    }

    /// The latest committed compaction revision (reads below it fail).
    pub fn compact_revision(&self) -> i64 {
        self.shared.read_lock().compact_rev
    }

    /// Index and term of the last Raft entry whose effects are committed to the backend.
    pub fn consistent_index(&self) -> (u64, u64) {
        *self
            .shared
            .applied
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Reads the keys of `key`..`range_end` by etcd's rules: `range_end` empty for `key` alone,
    /// `"\0"` for every key ≥ `key`, otherwise `[key, range_end)`.
    pub fn range(&self, key: &[u8], range_end: &[u8], opts: RangeOptions) -> Result<RangeResult> {
        crate::stats::add(&crate::stats::MVCC.ranges, 1);
        self.read(key, range_end, opts)
    }

    /// How many keys are live now; not counted as a range in the metrics (it serves them).
    pub fn key_count(&self) -> Result<i64> {
        let all = RangeOptions {
            count_only: true,
            ..Default::default()
        };
        Ok(self.read(b"\0", b"\0", all)?.count)
    }

    fn read(&self, key: &[u8], range_end: &[u8], opts: RangeOptions) -> Result<RangeResult> {
        let range = KeyRange::new(key, range_end);
        let (revs, count, cur, rtxn) = {
            let st = self.shared.read_lock();
            let at = check_read_rev(opts.rev, st.current_rev, st.compact_rev)?;
            if let Some(answer) = answer_from_index(&st.index, range, at, opts) {
                let (kvs, count) = answer?;
                return Ok(RangeResult {
                    kvs,
                    count,
                    rev: st.current_rev,
                });
            }
            let (revs, count) = st.index.revisions(range, at, opts.limit);
            if revs.is_empty() {
                return Ok(RangeResult {
                    kvs: Vec::new(),
                    count,
                    rev: st.current_rev,
                });
            }
            // Opened under the lock: a compaction committed later cannot have removed them yet.
            (
                revs,
                count,
                st.current_rev,
                self.shared.backend.begin_read()?,
            )
        };
        let table = rtxn.open_table(schema::KEY)?;
        Ok(RangeResult {
            kvs: fetch(&table, &revs, opts.max_bytes)?,
            count,
            rev: cur,
        })
    }

    /// Starts a write batch; waits while another backend write is open. Only the apply task
    /// writes, so there is one batch at a time.
    pub fn begin_batch(&self) -> Result<Batch> {
        Batch::begin(self.shared.clone())
    }

    /// Compacts at `rev` in a batch of its own; for tools and tests (apply compacts in its batch
    /// with [`Batch::compact`]).
    pub fn compact(&self, rev: i64) -> Result<CompactionWait> {
        let mut batch = self.begin_batch()?;
        let wait = batch.compact(rev)?;
        batch.commit()?;
        Ok(wait)
    }

    /// etcd's HashKV at `rev` (0 for the current revision).
    pub fn hash_kv(&self, rev: i64) -> Result<HashKv> {
        let started = std::time::Instant::now();
        let (keep, at, cur, compact, rtxn) = {
            let st = self.shared.read_lock();
            if rev > 0 && rev <= st.compact_rev {
                return Err(Error::Compacted);
            }
            if rev > st.current_rev {
                return Err(Error::FutureRev);
            }
            let at = if rev > 0 { rev } else { st.current_rev };
            // As etcd's HashByRev: the keep set is taken at the hashed revision, not at the
            // compaction revision, so the hash equals etcd's for the same history.
            let keep = st.index.keep(at);
            (
                keep,
                at,
                st.current_rev,
                st.compact_rev,
                self.shared.backend.begin_read()?,
            )
        };
        let table = rtxn.open_table(schema::KEY)?;
        let mut crc = crc32c::crc32c(b"key");
        let upper = Revision::new(at + 1, 0).to_bytes();
        for entry in table.range::<&[u8]>(..&upper[..])? {
            let (k, v) = entry?;
            let (r, _) = decode_rev(k.value())?;
            // At or below the compaction, only revisions still the latest at `at` count
            // (and, as in etcd, everything when no key is live at all).
            if r.main <= compact && !keep.is_empty() && !keep.contains(&r) {
                continue;
            }
            crc = crc32c::crc32c_append(crc, k.value());
            crc = crc32c::crc32c_append(crc, v.value());
        }
        metrics::histogram!("etcd_mvcc_hash_rev_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        Ok(HashKv {
            hash: crc,
            hash_revision: at,
            compact_revision: compact,
            current_revision: cur,
        })
    }

    /// A hash of the whole backend (etcd's Maintenance.Hash) and the revision it was taken at.
    pub fn hash(&self) -> Result<(u32, i64)> {
        let started = std::time::Instant::now();
        let (rtxn, cur) = {
            let st = self.shared.read_lock();
            (self.shared.backend.begin_read()?, st.current_rev)
        };
        let hash = backend::hash_tables(&rtxn)?;
        metrics::histogram!("etcd_mvcc_hash_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        Ok((hash, cur))
    }

    /// Every change with main revision in `[from, to]` (`to` capped at the current revision),
    /// in revision order, as watch events without `prev_kv`: for a watcher catching up.
    pub fn events(&self, from: i64, to: i64) -> Result<Vec<Event>> {
        let (to, rtxn) = {
            let st = self.shared.read_lock();
            if from < st.compact_rev {
                return Err(Error::Compacted);
            }
            (to.min(st.current_rev), self.shared.backend.begin_read()?)
        };
        let mut events = Vec::new();
        if from > to {
            return Ok(events);
        }
        let table = rtxn.open_table(schema::KEY)?;
        let (lo, hi) = (
            Revision::new(from, 0).to_bytes(),
            Revision::new(to + 1, 0).to_bytes(),
        );
        for entry in table.range::<&[u8]>(&lo[..]..&hi[..])? {
            let (k, v) = entry?;
            let (r, tombstone) = decode_rev(k.value())?;
            let mut kv = decode_kv(r, v.value())?;
            let kind = if tombstone {
                kv.mod_revision = r.main;
                EventType::Delete
            } else {
                EventType::Put
            };
            events.push(Event {
                r#type: kind as i32,
                kv: Some(kv),
                prev_kv: None,
            });
        }
        Ok(events)
    }

    /// Every existing key with a lease, and its lease: for the lessor to reattach at start.
    /// The index knows each key's lease, so no value is read from the backend (reading the
    /// values of a million keys took seconds at a restart).
    pub fn leased_keys(&self) -> Result<Vec<(Vec<u8>, i64)>> {
        let st = self.shared.lock();
        Ok(st
            .index
            .live_at(KeyRange::new(b"", b"\0"), st.current_rev)
            .filter(|(_, at)| at.lease != 0)
            .map(|(key, at)| (key.clone(), at.lease))
            .collect())
    }

    /// Makes every committed batch durable now (snapshot, shutdown).
    pub fn force_commit(&self) -> Result<()> {
        Ok(self.shared.backend.force_commit()?)
    }
}

impl std::fmt::Debug for KvStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.shared.lock();
        f.debug_struct("KvStore")
            .field("current_rev", &st.current_rev)
            .field("compact_rev", &st.compact_rev)
            .finish()
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The state for a reader, once the batch promised to someone has committed, so that a
    /// read never shows less than a write already reported. Waits at most for the commit of
    /// the batch being applied.
    fn read_lock(&self) -> MutexGuard<'_, State> {
        let promised = self.promised.load(Ordering::Acquire);
        let mut st = self.lock();
        while st.batches < promised {
            st.readers_waiting += 1;
            st = self.published.wait(st).unwrap_or_else(|e| e.into_inner());
            st.readers_waiting -= 1;
        }
        st
    }

    /// Wakes the readers waiting for a batch, once `st` holds what it published.
    fn publish(&self, st: &MutexGuard<'_, State>) {
        if st.readers_waiting > 0 {
            self.published.notify_all();
        }
    }
}

/// The revision to read at, by etcd's rules: `rev` ≤ 0 means `current`; above `current` is a
/// future revision; below `compacted` is compacted.
pub(crate) fn check_read_rev(rev: i64, current: i64, compacted: i64) -> Result<i64> {
    if rev > current {
        return Err(Error::FutureRev);
    }
    let at = if rev <= 0 { current } else { rev };
    if at < compacted {
        return Err(Error::Compacted);
    }
    Ok(at)
}

/// Answers count-only and keys-only reads from the index alone, without reading a value:
/// the keys (none for count-only) and the count; `None` when values are needed.
pub(crate) fn answer_from_index(
    index: &TreeIndex,
    range: KeyRange<'_>,
    at: i64,
    opts: RangeOptions,
) -> Option<Result<(Vec<KeyValue>, i64)>> {
    if opts.count_only {
        return Some(Ok((Vec::new(), index.count(range, at))));
    }
    if !opts.keys_only {
        return None;
    }
    let (kvs, count) = index.collect(range, at, opts.limit, key_only);
    if let Some(max) = opts.max_bytes {
        let size = kvs.iter().map(|kv| encoded_size(kv.encoded_len())).sum();
        if size > max {
            return Some(Err(Error::TooLarge { size, max }));
        }
    }
    Some(Ok((kvs, count)))
}

/// The bytes a key-value takes in a response: its field tag, its length and itself.
pub(crate) fn encoded_size(kv_len: usize) -> usize {
    1 + prost::encoding::encoded_len_varint(kv_len as u64) + kv_len
}

/// A key as a keys-only read returns it: everything but the value, from the index.
pub(crate) fn key_only(key: &[u8], at: KeyAt) -> KeyValue {
    KeyValue {
        key: key.to_vec(),
        create_revision: at.created.main,
        mod_revision: at.modified.main,
        version: at.version,
        lease: at.lease,
        ..Default::default()
    }
}

/// Fetches the values stored at `revs` (never tombstones), in order. Past `max_bytes` it stops
/// decoding and drops what it holds, but goes on measuring the rest, so that
/// [`Error::TooLarge`] tells the whole size.
pub(crate) fn fetch(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    revs: &[Revision],
    max_bytes: Option<usize>,
) -> Result<Vec<KeyValue>> {
    let Some(max) = max_bytes else {
        return revs.iter().map(|&r| fetch_one(table, r)).collect();
    };
    let mut kvs = Vec::with_capacity(revs.len());
    let mut size = 0usize;
    for &r in revs {
        let Some(v) = table.get(&r.to_bytes()[..])? else {
            return Err(missing(r));
        };
        size += encoded_size(v.value().len());
        if size <= max {
            kvs.push(decode_kv(r, v.value())?);
        } else if !kvs.is_empty() {
            kvs = Vec::new();
        }
    }
    if size > max {
        return Err(Error::TooLarge { size, max });
    }
    Ok(kvs)
}

fn missing(rev: Revision) -> Error {
    tracing::error!(revision = %rev, "range failed to find revision pair");
    Error::Corrupt {
        revision: rev.to_string(),
        what: "the index names it but the backend does not hold it".into(),
    }
}

/// The value stored at `rev`, which the index says exists.
pub(crate) fn fetch_one(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    rev: Revision,
) -> Result<KeyValue> {
    let Some(v) = table.get(&rev.to_bytes()[..])? else {
        return Err(missing(rev));
    };
    decode_kv(rev, v.value())
}

pub(crate) fn decode_kv(rev: Revision, bytes: &[u8]) -> Result<KeyValue> {
    KeyValue::decode(bytes).map_err(|e| Error::Corrupt {
        revision: rev.to_string(),
        what: format!("bad KeyValue: {e}"),
    })
}

pub(crate) fn decode_rev(key: &[u8]) -> Result<(Revision, bool)> {
    Revision::from_key(key).ok_or_else(|| Error::Corrupt {
        revision: format!("{key:?}"),
        what: "not a revision".into(),
    })
}

/// What the index needs of a stored `KeyValue`: everything but the value.
struct IndexFields<'a> {
    key: &'a [u8],
    create_revision: i64,
    version: i64,
    lease: i64,
}

/// Reads [`IndexFields`] from a stored `KeyValue` without copying it: rebuilding the index at
/// open goes through every stored revision, and decoding each whole would copy every value.
fn index_fields(rev: Revision, mut bytes: &[u8]) -> Result<IndexFields<'_>> {
    use prost::encoding::{decode_key, decode_varint, skip_field, DecodeContext, WireType};
    let bad = |what: String| Error::Corrupt {
        revision: rev.to_string(),
        what: format!("bad KeyValue: {what}"),
    };
    let corrupt = |e: prost::DecodeError| bad(e.to_string());
    let mut fields = IndexFields {
        key: &[],
        create_revision: 0,
        version: 0,
        lease: 0,
    };
    while !bytes.is_empty() {
        let (tag, wire_type) = decode_key(&mut bytes).map_err(corrupt)?;
        match (tag, wire_type) {
            (1, WireType::LengthDelimited) => {
                let len = decode_varint(&mut bytes).map_err(corrupt)?;
                let len = usize::try_from(len)
                    .ok()
                    .filter(|&len| len <= bytes.len())
                    .ok_or_else(|| bad("key longer than the value holding it".into()))?;
                (fields.key, bytes) = bytes.split_at(len);
            }
            (2 | 4 | 6, WireType::Varint) => {
                let v = decode_varint(&mut bytes).map_err(corrupt)? as i64;
                match tag {
                    2 => fields.create_revision = v,
                    4 => fields.version = v,
                    _ => fields.lease = v,
                }
            }
            _ => {
                skip_field(wire_type, tag, &mut bytes, DecodeContext::default()).map_err(corrupt)?
            }
        }
    }
    Ok(fields)
}

/// The store's state as the backend holds it: read at open and after a restore.
struct Loaded {
    /// Rebuilt from the `key` table.
    index: TreeIndex,
    current_rev: i64,
    /// The scheduled compaction revision, or the finished one if later: reads below it fail.
    compact_rev: i64,
    scheduled: i64,
    finished: i64,
    /// Consistent index and term.
    applied: (u64, u64),
}

impl Loaded {
    fn read(
        meta: &impl ReadableTable<&'static [u8], &'static [u8]>,
        key: &impl ReadableTable<&'static [u8], &'static [u8]>,
    ) -> Result<Loaded> {
        let finished =
            backend::read_meta_u64(meta, schema::META_FINISHED_COMPACT_REV)?.unwrap_or(0) as i64;
        let scheduled =
            backend::read_meta_u64(meta, schema::META_SCHEDULED_COMPACT_REV)?.unwrap_or(0) as i64;
        let index = backend::read_meta_u64(meta, schema::META_CONSISTENT_INDEX)?.unwrap_or(0);
        let term = backend::read_meta_u64(meta, schema::META_TERM)?.unwrap_or(0);
        let (tree, last_rev) = restore_index(key)?;
        // A compaction may have removed the newest revisions (deleted keys), so the store is at
        // least at the compaction revision; a fresh store is at revision 1.
        let compact_rev = finished.max(scheduled);
        Ok(Loaded {
            index: tree,
            current_rev: last_rev.max(compact_rev).max(1),
            compact_rev,
            scheduled,
            finished,
            applied: (index, term),
        })
    }

    fn log(&self, started: std::time::Instant) {
        tracing::info!(
            "current-revision" = self.current_rev,
            "compact-revision" = self.compact_rev,
            "consistent-index" = self.applied.0,
            took = ?started.elapsed(),
            "restored mvcc store"
        );
    }

    /// Starts again a compaction that was scheduled but did not finish.
    fn resume_compaction(&self, shared: &Shared, epoch: u64) {
        if self.scheduled > self.finished {
            tracing::info!(
                "scheduled-compact-revision" = self.scheduled,
                "resume scheduled compaction"
            );
            shared.schedule_compaction(self.scheduled, epoch);
        }
    }
}

/// Rebuilds the tree index from the `key` table; returns it and the newest revision seen.
fn restore_index(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
) -> Result<(TreeIndex, i64)> {
    let mut tree = TreeIndex::default();
    let mut last = 0;
    for entry in table.iter()? {
        let (k, v) = entry?;
        let (rev, tombstone) = decode_rev(k.value())?;
        let kv = index_fields(rev, v.value())?;
        last = rev.main;
        match tree.get(kv.key) {
            Some(ki) if rev <= ki.modified() => {
                return Err(Error::Corrupt {
                    revision: rev.to_string(),
                    what: "two changes of one key at the same revision".into(),
                })
            }
            Some(_) => {
                let ki = tree.entry(kv.key);
                if tombstone {
                    ki.tombstone(rev);
                } else {
                    ki.put(rev, kv.lease);
                }
            }
            // The first change the backend still holds for the key: its earlier history was
            // compacted away. A tombstone there has nothing left to end.
            None if !tombstone => {
                let created = Revision::new(kv.create_revision, 0);
                tree.insert(
                    kv.key.to_vec(),
                    KeyIndex::restored(created, rev, kv.version, kv.lease),
                );
            }
            None => {}
        }
    }
    Ok((tree, last))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::BackendConfig;
    use redb::ReadableTableMetadata;
    use std::time::Duration;

    const WAIT: Duration = Duration::from_secs(30);

    fn open_at(dir: &tempfile::TempDir) -> KvStore {
        let backend = Backend::open(dir.path().join("db"), BackendConfig::default()).unwrap();
        KvStore::open(backend).unwrap()
    }

    fn new_store() -> (tempfile::TempDir, KvStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = open_at(&dir);
        (dir, s)
    }

    fn put(s: &KvStore, k: &str, v: &str) -> Vec<Event> {
        put_lease(s, k, v, 0)
    }

    fn put_lease(s: &KvStore, k: &str, v: &str, lease: i64) -> Vec<Event> {
        let mut b = s.begin_batch().unwrap();
        let mut t = b.txn();
        t.put(k.as_bytes(), v.as_bytes(), lease).unwrap();
        let ev = t.end();
        b.commit().unwrap();
        ev
    }

    fn delete(s: &KvStore, k: &str, end: &str) -> Vec<KeyValue> {
        let mut b = s.begin_batch().unwrap();
        let mut t = b.txn();
        let deleted = t.delete_range(k.as_bytes(), end.as_bytes()).unwrap();
        t.end();
        b.commit().unwrap();
        deleted
    }

    fn get(s: &KvStore, k: &str, rev: i64) -> Result<Option<KeyValue>> {
        let r = s.range(
            k.as_bytes(),
            b"",
            RangeOptions {
                rev,
                ..Default::default()
            },
        )?;
        Ok(r.kvs.into_iter().next())
    }

    fn keys(r: &RangeResult) -> Vec<String> {
        r.kvs
            .iter()
            .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
            .collect()
    }

    fn key_table_len(s: &KvStore) -> u64 {
        let rtxn = s.backend().begin_read().unwrap();
        rtxn.open_table(schema::KEY).unwrap().len().unwrap()
    }

    #[test]
    fn index_fields_read_what_a_full_decode_reads() {
        let rev = Revision::new(9, 0);
        for kv in [
            KeyValue {
                key: b"k".to_vec(),
                create_revision: 3,
                mod_revision: 9,
                version: 4,
                value: vec![1; 300],
                lease: 0x1234_5678_9abc,
            },
            KeyValue::default(),
            KeyValue {
                key: vec![0; 200],
                version: 1,
                ..Default::default()
            },
        ] {
            let bytes = kv.encode_to_vec();
            let f = index_fields(rev, &bytes).unwrap();
            assert_eq!(
                (f.key, f.create_revision, f.version, f.lease),
                (&kv.key[..], kv.create_revision, kv.version, kv.lease)
            );
        }
        // A key longer than what follows it.
        assert!(index_fields(rev, &[0x0a, 0x05, b'a']).is_err());
    }

    #[test]
    fn fresh_store_is_at_revision_one() {
        let (_d, s) = new_store();
        assert_eq!(s.current_revision(), 1);
        assert_eq!(s.compact_revision(), 0);
        assert_eq!(s.consistent_index(), (0, 0));
        let r = s.range(b"", b"\0", RangeOptions::default()).unwrap();
        assert_eq!((r.kvs.len(), r.count, r.rev), (0, 0, 1));
    }

    #[test]
    fn readers_of_a_promised_batch_wait_for_its_commit() {
        let (_d, s) = new_store();
        put(&s, "a", "1");
        let mut b = s.begin_batch().unwrap();
        let mut t = b.txn();
        t.put(b"a", b"2", 0).unwrap();
        t.end();
        let _compacted = b.compact(2).unwrap();
        // Before the promise, readers see the state before the batch.
        assert_eq!(get(&s, "a", 0).unwrap().unwrap().value, b"1".to_vec());
        b.promise();
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = {
            let s = s.clone();
            std::thread::spawn(move || {
                let range = s.range(b"a", b"", RangeOptions::default()).unwrap();
                let encoded = s.range_encoded(b"a", b"", RangeOptions::default()).unwrap();
                let revisions = (encoded.rev, s.current_revision(), s.compact_revision());
                tx.send((range, revisions)).unwrap();
            })
        };
        assert!(
            rx.recv_timeout(Duration::from_millis(200)).is_err(),
            "a reader went on before the promised batch committed"
        );
        b.commit().unwrap();
        let (range, revisions) = rx.recv_timeout(WAIT).unwrap();
        reader.join().unwrap();
        assert_eq!((range.kvs[0].value.as_slice(), range.rev), (&b"2"[..], 3));
        assert_eq!(revisions, (3, 3, 2));
        // Nothing promised: batches no longer hold readers back.
        let _open = s.begin_batch().unwrap();
        assert_eq!(get(&s, "a", 0).unwrap().unwrap().value, b"2".to_vec());
    }

    #[test]
    fn a_promised_compaction_holds_readers_until_it_commits() {
        let (_d, s) = new_store();
        put(&s, "a", "1");
        put(&s, "a", "2");
        let mut b = s.begin_batch().unwrap();
        let _compacted = b.compact(2).unwrap();
        b.promise();
        let reader = {
            let s = s.clone();
            std::thread::spawn(move || s.compact_revision())
        };
        std::thread::sleep(Duration::from_millis(100));
        b.commit().unwrap();
        assert_eq!(reader.join().unwrap(), 2);
    }

    #[test]
    fn revision_rules_follow_etcd() {
        let (_d, s) = new_store();
        put(&s, "a", "1");
        let kv = get(&s, "a", 0).unwrap().unwrap();
        assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (2, 2, 1));
        let ev = put_lease(&s, "a", "2", 7);
        let kv = get(&s, "a", 0).unwrap().unwrap();
        assert_eq!(
            (kv.create_revision, kv.mod_revision, kv.version, kv.lease),
            (2, 3, 2, 7)
        );
        assert_eq!(ev[0].prev_kv.as_ref().unwrap().value, b"1".to_vec());

        // Several changes in one transaction share the main revision.
        let mut b = s.begin_batch().unwrap();
        let mut t = b.txn();
        assert_eq!(t.put(b"b", b"x", 0).unwrap(), None);
        t.put(b"c", b"y", 0).unwrap();
        let prev = t.put(b"b", b"z", 0).unwrap().unwrap();
        assert_eq!(prev.value, b"x".to_vec());
        let ev = t.end();
        b.commit().unwrap();
        assert_eq!(s.current_revision(), 4);
        assert!(ev.iter().all(|e| e.kv.as_ref().unwrap().mod_revision == 4));
        let b_kv = get(&s, "b", 0).unwrap().unwrap();
        assert_eq!(
            (b_kv.create_revision, b_kv.version, b_kv.value),
            (4, 2, b"z".to_vec())
        );

        // A transaction that changes nothing takes no revision.
        let mut b = s.begin_batch().unwrap();
        let mut t = b.txn();
        t.range(b"a", b"", RangeOptions::default()).unwrap();
        assert!(t.delete_range(b"nope", b"").unwrap().is_empty());
        assert!(t.end().is_empty());
        b.commit().unwrap();
        assert_eq!(s.current_revision(), 4);

        // Delete leaves a tombstone; a new put starts a new life.
        let deleted = delete(&s, "a", "");
        assert_eq!(deleted.len(), 1);
        assert_eq!(s.current_revision(), 5);
        assert_eq!(get(&s, "a", 0).unwrap(), None);
        assert_eq!(get(&s, "a", 4).unwrap().unwrap().value, b"2".to_vec());
        put(&s, "a", "3");
        let kv = get(&s, "a", 0).unwrap().unwrap();
        assert_eq!(
            (kv.create_revision, kv.mod_revision, kv.version, kv.lease),
            (6, 6, 1, 0)
        );
    }

    #[test]
    fn delete_events_carry_revision_and_previous_value() {
        let (_d, s) = new_store();
        put(&s, "a", "1");
        put(&s, "b", "2");
        put(&s, "c", "3");
        let mut b = s.begin_batch().unwrap();
        let mut t = b.txn();
        t.delete_range(b"a", b"c").unwrap();
        let ev = t.end();
        b.commit().unwrap();
        assert_eq!(ev.len(), 2);
        for (e, (k, v)) in ev.iter().zip([("a", "1"), ("b", "2")]) {
            assert_eq!(e.r#type, EventType::Delete as i32);
            let kv = e.kv.as_ref().unwrap();
            assert_eq!((kv.key.as_slice(), kv.mod_revision), (k.as_bytes(), 5));
            assert_eq!(e.prev_kv.as_ref().unwrap().value, v.as_bytes().to_vec());
        }
        let r = s.range(b"", b"\0", RangeOptions::default()).unwrap();
        assert_eq!(keys(&r), ["c"]);
    }

    #[test]
    fn range_with_limit_count_keys_only_and_revision() {
        let (_d, s) = new_store();
        for k in ["a", "b", "c", "d"] {
            put(&s, k, "v");
        } // a@2 b@3 c@4 d@5
        let all = |opts| s.range(b"a", b"\0", opts).unwrap();
        let r = all(RangeOptions {
            limit: 2,
            ..Default::default()
        });
        assert_eq!(
            (keys(&r), r.count, r.rev),
            (vec!["a".into(), "b".into()], 4, 5)
        );
        let r = all(RangeOptions {
            rev: 3,
            ..Default::default()
        });
        assert_eq!(
            (keys(&r), r.count, r.rev),
            (vec!["a".into(), "b".into()], 2, 5)
        );
        let r = all(RangeOptions {
            count_only: true,
            ..Default::default()
        });
        assert_eq!((r.kvs.len(), r.count), (0, 4));
        let r = all(RangeOptions {
            keys_only: true,
            ..Default::default()
        });
        assert!(r
            .kvs
            .iter()
            .all(|kv| kv.value.is_empty() && kv.version == 1));
        let r = s.range(b"b", b"d", RangeOptions::default()).unwrap();
        assert_eq!(keys(&r), ["b", "c"]);
        let r = s.range(b"d", b"b", RangeOptions::default()).unwrap();
        assert_eq!(r.count, 0);
    }

    #[test]
    fn future_and_compacted_revisions_are_refused() {
        let (_d, s) = new_store();
        for i in 0..5 {
            put(&s, "k", &i.to_string());
        } // 2..=6
        assert!(matches!(get(&s, "k", 7), Err(Error::FutureRev)));
        assert!(matches!(s.compact(7), Err(Error::FutureRev)));
        s.compact(4).unwrap().wait().unwrap();
        assert_eq!(s.compact_revision(), 4);
        assert!(matches!(get(&s, "k", 3), Err(Error::Compacted)));
        assert_eq!(get(&s, "k", 4).unwrap().unwrap().value, b"2".to_vec());
        assert!(matches!(s.compact(4), Err(Error::Compacted)));
        assert!(matches!(s.compact(3), Err(Error::Compacted)));
        assert!(matches!(s.hash_kv(4), Err(Error::Compacted)));
        assert!(matches!(s.hash_kv(9), Err(Error::FutureRev)));
        assert!(matches!(s.events(3, 10), Err(Error::Compacted)));
    }

    #[test]
    fn batch_reads_its_own_writes_and_hides_them_until_commit() {
        let (_d, s) = new_store();
        put(&s, "a", "old");
        let mut b = s.begin_batch().unwrap();
        {
            let mut t = b.txn();
            t.put(b"a", b"new", 0).unwrap();
            t.put(b"b", b"1", 0).unwrap();
            let r = t.range(b"", b"\0", RangeOptions::default()).unwrap();
            assert_eq!((keys(&r), r.rev), (vec!["a".into(), "b".into()], 3));
            assert_eq!(r.kvs[0].value, b"new".to_vec());
            t.end();
        }
        {
            let mut t = b.txn();
            let r = t.range(b"a", b"", RangeOptions::default()).unwrap();
            assert_eq!(r.kvs[0].value, b"new".to_vec());
            assert_eq!(t.read_revision(), 3);
            t.delete_range(b"b", b"").unwrap();
            assert_eq!(
                t.range(b"b", b"", RangeOptions::default()).unwrap().count,
                0
            );
            t.end();
        }
        assert_eq!(b.current_revision(), 4);
        // Outside the batch nothing changed yet.
        assert_eq!(s.current_revision(), 2);
        assert_eq!(get(&s, "a", 0).unwrap().unwrap().value, b"old".to_vec());
        assert_eq!(get(&s, "b", 0).unwrap(), None);
        b.set_consistent_index(9, 2).unwrap();
        b.commit().unwrap();
        assert_eq!(s.current_revision(), 4);
        assert_eq!(s.consistent_index(), (9, 2));
        assert_eq!(get(&s, "a", 0).unwrap().unwrap().value, b"new".to_vec());
        assert_eq!(get(&s, "b", 3).unwrap().unwrap().value, b"1".to_vec());
        assert_eq!(get(&s, "b", 0).unwrap(), None);
    }

    #[test]
    fn dropped_batch_leaves_no_trace() {
        let (_d, s) = new_store();
        put(&s, "a", "1");
        {
            let mut b = s.begin_batch().unwrap();
            let mut t = b.txn();
            t.put(b"a", b"2", 0).unwrap();
            t.put(b"z", b"2", 0).unwrap();
            t.delete_range(b"a", b"").unwrap();
            t.end();
            let _wait = b.compact(2).unwrap();
        }
        assert_eq!(s.current_revision(), 2);
        assert_eq!(s.compact_revision(), 0);
        put(&s, "a", "3");
        let kv = get(&s, "a", 0).unwrap().unwrap();
        assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (2, 3, 2));
        assert_eq!(get(&s, "z", 0).unwrap(), None);
        assert_eq!(key_table_len(&s), 2);
    }

    #[test]
    fn compaction_in_a_batch_fails_early_reads_and_reports_when_done() {
        let (_d, s) = new_store();
        put(&s, "a", "1");
        put(&s, "a", "2");
        let mut b = s.begin_batch().unwrap();
        let wait = b.compact(3).unwrap();
        assert!(
            wait.wait_timeout(Duration::from_millis(20)).is_none(),
            "not before commit"
        );
        let mut t = b.txn();
        assert!(matches!(
            t.range(
                b"a",
                b"",
                RangeOptions {
                    rev: 2,
                    ..Default::default()
                }
            ),
            Err(Error::Compacted)
        ));
        t.end();
        assert!(
            get(&s, "a", 2).is_ok(),
            "others see the compaction at commit"
        );
        b.commit().unwrap();
        wait.wait_timeout(WAIT)
            .expect("compaction finished in time")
            .unwrap();
        assert_eq!(key_table_len(&s), 1);
    }

    #[test]
    fn compaction_removes_old_revisions_and_keeps_latest() {
        let (_d, s) = new_store();
        for i in 0..50 {
            put(&s, &format!("k{}", i % 5), &i.to_string());
        } // revisions 2..=51
        put(&s, "gone", "x"); // 52
        delete(&s, "gone", ""); // 53
        assert_eq!(key_table_len(&s), 52);
        s.compact(53).unwrap().wait().unwrap();
        // Only the latest value of each live key is left; the deleted key is gone entirely.
        assert_eq!(key_table_len(&s), 5);
        let r = s.range(b"", b"\0", RangeOptions::default()).unwrap();
        assert_eq!(keys(&r), ["k0", "k1", "k2", "k3", "k4"]);
        assert_eq!(r.kvs[4].value, b"49".to_vec());
        assert_eq!(r.kvs[4].version, 10);
        put(&s, "k4", "again");
        assert_eq!(get(&s, "k4", 0).unwrap().unwrap().version, 11);
    }

    #[test]
    fn compaction_removes_revisions_over_several_backend_batches() {
        use super::compaction::COMPACTION_BATCH_LIMIT;
        let (_d, s) = new_store();
        let puts = 2 * COMPACTION_BATCH_LIMIT + 7;
        let mut b = s.begin_batch().unwrap();
        for i in 0..puts {
            let mut t = b.txn();
            t.put(format!("k{}", i % 10).as_bytes(), b"v", 0).unwrap();
            if i % 100 == 99 {
                // Tombstones in the middle of the history go too.
                t.delete_range(format!("k{}", i % 10).as_bytes(), b"")
                    .unwrap();
            }
            t.end();
        }
        b.commit().unwrap();
        let before = s.range(b"", b"\0", RangeOptions::default()).unwrap();
        s.compact(s.current_revision()).unwrap().wait().unwrap();
        assert_eq!(key_table_len(&s), before.kvs.len() as u64);
        let after = s.range(b"", b"\0", RangeOptions::default()).unwrap();
        assert_eq!(after.kvs, before.kvs);
    }

    #[test]
    fn reopen_restores_index_revisions_and_consistent_index() {
        let dir = tempfile::tempdir().unwrap();
        let snapshot = |s: &KvStore| {
            (1..=s.current_revision())
                .filter(|&rev| rev >= s.compact_revision())
                .map(|rev| {
                    s.range(
                        b"",
                        b"\0",
                        RangeOptions {
                            rev,
                            ..Default::default()
                        },
                    )
                    .unwrap()
                })
                .collect::<Vec<_>>()
        };
        let before = {
            let s = open_at(&dir);
            put(&s, "a", "1");
            put(&s, "b", "1");
            delete(&s, "a", "");
            put(&s, "a", "2");
            put(&s, "b", "2");
            let mut b = s.begin_batch().unwrap();
            b.set_consistent_index(42, 3).unwrap();
            b.commit().unwrap();
            (snapshot(&s), s.current_revision())
        };
        let s = open_at(&dir);
        assert_eq!(s.current_revision(), before.1);
        assert_eq!(s.consistent_index(), (42, 3));
        assert_eq!(snapshot(&s), before.0);
        put(&s, "a", "3");
        let kv = get(&s, "a", 0).unwrap().unwrap();
        assert_eq!((kv.create_revision, kv.version), (5, 2));
    }

    #[test]
    fn reopen_after_compaction_keeps_revision_when_everything_was_deleted() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = open_at(&dir);
            put(&s, "a", "1");
            delete(&s, "a", "");
            s.compact(3).unwrap().wait().unwrap();
            assert_eq!(key_table_len(&s), 0);
        }
        let s = open_at(&dir);
        assert_eq!((s.current_revision(), s.compact_revision()), (3, 3));
        put(&s, "a", "2");
        assert_eq!(get(&s, "a", 0).unwrap().unwrap().mod_revision, 4);
    }

    #[test]
    fn interrupted_compaction_resumes_on_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = open_at(&dir);
            for i in 0..10 {
                put(&s, "k", &i.to_string());
            } // 2..=11
              // As if the process died right after the compaction was scheduled.
            let b = s.begin_batch().unwrap();
            b.raw()
                .open_table(schema::META)
                .unwrap()
                .insert(
                    schema::META_SCHEDULED_COMPACT_REV,
                    &schema::encode_u64(8)[..],
                )
                .unwrap();
            b.commit().unwrap();
            assert_eq!(key_table_len(&s), 10);
        }
        let s = open_at(&dir);
        assert_eq!(s.compact_revision(), 8);
        assert!(matches!(get(&s, "k", 7), Err(Error::Compacted)));
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let rtxn = s.backend().begin_read().unwrap();
            let meta = rtxn.open_table(schema::META).unwrap();
            if backend::read_meta_u64(&meta, schema::META_FINISHED_COMPACT_REV).unwrap() == Some(8)
            {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "compaction never resumed"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(key_table_len(&s), 4); // 8, 9, 10, 11
        assert_eq!(get(&s, "k", 8).unwrap().unwrap().value, b"6".to_vec());
    }

    fn history(s: &KvStore, salt: &str) {
        for i in 0..30 {
            put(s, &format!("k{}", i % 7), &format!("{salt}{i}"));
            if i % 9 == 0 {
                delete(s, &format!("k{}", i % 4), "");
            }
        }
    }

    #[test]
    fn hash_kv_is_equal_for_equal_histories_whatever_the_compaction_progress() {
        let (_d1, a) = new_store();
        let (_d2, b) = new_store();
        let (_d3, c) = new_store();
        history(&a, "v");
        history(&b, "v");
        history(&c, "w");
        assert_eq!(a.hash_kv(0).unwrap(), b.hash_kv(0).unwrap());
        assert_ne!(a.hash_kv(0).unwrap().hash, c.hash_kv(0).unwrap().hash);
        assert_eq!(a.hash_kv(20).unwrap(), b.hash_kv(20).unwrap());

        let wait = a.compact(25).unwrap();
        let early = a.hash_kv(0).unwrap();
        wait.wait().unwrap();
        let late = a.hash_kv(0).unwrap();
        assert_eq!(early, late);
        b.compact(25).unwrap().wait().unwrap();
        assert_eq!(late, b.hash_kv(0).unwrap());
        assert_eq!(late.compact_revision, 25);
        assert_eq!(a.hash().unwrap().0, b.hash().unwrap().0);
    }

    #[test]
    fn events_replay_history_in_revision_order() {
        let (_d, s) = new_store();
        put(&s, "a", "1"); // 2
        put(&s, "b", "1"); // 3
        delete(&s, "a", ""); // 4
        let ev = s.events(3, 100).unwrap();
        let summary: Vec<(i32, String, i64)> = ev
            .iter()
            .map(|e| {
                let kv = e.kv.as_ref().unwrap();
                (
                    e.r#type,
                    String::from_utf8_lossy(&kv.key).into_owned(),
                    kv.mod_revision,
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                (EventType::Put as i32, "b".into(), 3),
                (EventType::Delete as i32, "a".into(), 4)
            ]
        );
        assert!(s.events(5, 100).unwrap().is_empty());
    }

    #[test]
    fn leased_keys_lists_live_keys_with_leases() {
        let (d, s) = new_store();
        put_lease(&s, "a", "1", 5);
        put_lease(&s, "b", "1", 6);
        put(&s, "c", "1");
        delete(&s, "b", "");
        assert_eq!(s.leased_keys().unwrap(), vec![(b"a".to_vec(), 5)]);
        // Many keys: every leased one, in key order, with the lease of its last put.
        let mut want = vec![(b"a".to_vec(), 5)];
        for i in 0..2500 {
            let key = format!("k{i:04}");
            if i % 7 == 0 {
                put_lease(&s, &key, "v", 100 + i);
                want.push((key.into_bytes(), 100 + i));
            } else {
                put(&s, &key, "v");
            }
        }
        put(&s, "k0000", "lease dropped");
        put_lease(&s, "k0007", "lease changed", 9);
        want.retain(|(k, _)| k != b"k0000");
        want.iter_mut().find(|(k, _)| k == b"k0007").unwrap().1 = 9;
        assert_eq!(s.leased_keys().unwrap(), want);
        // The same after a restart (index rebuilt from the backend) and a compaction.
        let rev = s.current_revision();
        drop(s);
        let s = open_at(&d);
        assert_eq!(s.leased_keys().unwrap(), want);
        s.compact(rev).unwrap().wait().unwrap();
        assert_eq!(s.leased_keys().unwrap(), want);
    }

    /// Keys-only and count-only reads come from the index; they must equal a full read with
    /// the values dropped, at every revision, limit and range, leases included.
    #[test]
    fn keys_only_and_count_only_equal_full_reads() {
        let (_d, s) = new_store();
        for i in 0..40 {
            let k = format!("k{}", i % 9);
            put_lease(&s, &k, &format!("v{i}"), if i % 3 == 0 { i } else { 0 });
            if i % 7 == 0 {
                delete(&s, &format!("k{}", i % 5), "");
            }
        }
        s.compact(20).unwrap().wait().unwrap();
        put(&s, "z", "last");
        let cur = s.current_revision();
        for rev in [0, 20, 25, cur] {
            for (k, end) in [("", "\0"), ("k3", ""), ("k2", "k6"), ("zz", "\0")] {
                for limit in [0, 1, 3] {
                    let opts = RangeOptions {
                        rev,
                        limit,
                        ..Default::default()
                    };
                    let mut full = s.range(k.as_bytes(), end.as_bytes(), opts).unwrap();
                    for kv in &mut full.kvs {
                        kv.value.clear();
                    }
                    let keys_only = RangeOptions {
                        keys_only: true,
                        ..opts
                    };
                    let got = s.range(k.as_bytes(), end.as_bytes(), keys_only).unwrap();
                    assert_eq!(got, full, "keys-only {k:?}..{end:?} at {rev} limit {limit}");
                    let count_only = RangeOptions {
                        count_only: true,
                        ..opts
                    };
                    let got = s.range(k.as_bytes(), end.as_bytes(), count_only).unwrap();
                    assert_eq!((got.count, got.kvs.len()), (full.count, 0));
                    let mut b = s.begin_batch().unwrap();
                    let mut t = b.txn();
                    assert_eq!(
                        t.range(k.as_bytes(), end.as_bytes(), keys_only).unwrap(),
                        full
                    );
                    t.end();
                    b.commit().unwrap();
                }
            }
        }
        assert!(s
            .range(b"", b"\0", RangeOptions::default())
            .unwrap()
            .kvs
            .iter()
            .any(|kv| kv.lease != 0));
    }

    #[test]
    fn capped_range_fails_with_the_whole_size_and_fits_at_exactly_that_size() {
        let (_d, s) = new_store();
        for i in 0..10 {
            put(&s, &format!("k{i}"), &"v".repeat(100));
        }
        let all = s.range(b"", b"\0", RangeOptions::default()).unwrap();
        let size: usize = all
            .kvs
            .iter()
            .map(|kv| encoded_size(kv.encoded_len()))
            .sum();
        for keys_only in [false, true] {
            let capped = |max| RangeOptions {
                keys_only,
                max_bytes: Some(max),
                ..Default::default()
            };
            let want = if keys_only {
                let mut kvs = all.kvs.clone();
                kvs.iter_mut().for_each(|kv| kv.value.clear());
                kvs.iter().map(|kv| encoded_size(kv.encoded_len())).sum()
            } else {
                size
            };
            match s.range(b"", b"\0", capped(want - 1)) {
                Err(Error::TooLarge { size, max }) => assert_eq!((size, max), (want, want - 1)),
                other => panic!("keys_only {keys_only}: want TooLarge, got {other:?}"),
            }
            assert_eq!(s.range(b"", b"\0", capped(want)).unwrap().kvs.len(), 10);
        }
    }

    /// Not a benchmark: catches accidental quadratic work on a hot key (run with --ignored).
    #[test]
    #[ignore]
    fn many_puts_to_one_key_stay_linear() {
        let (_d, s) = new_store();
        let value = vec![b'v'; 256];
        let started = std::time::Instant::now();
        for i in 0..500 {
            if i % 100 == 0 {
                println!("{i} batches: {:?}", started.elapsed());
            }
            let mut b = s.begin_batch().unwrap();
            for _ in 0..100 {
                let mut t = b.txn();
                t.put(b"hot", &value, 0).unwrap();
                t.end();
            }
            b.commit().unwrap();
        }
        println!("50000 puts took {:?}", started.elapsed());
        assert_eq!(s.current_revision(), 50_001);
    }

    /// Random writes, reads and compactions against a model that keeps every revision's full
    /// state. Replay a failure with OXCD_TEST_SEED.
    #[test]
    fn randomized_against_a_btreemap_model() {
        use rand::{Rng, SeedableRng};
        use std::collections::BTreeMap;

        let seed: u64 = std::env::var("OXCD_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(rand::random);
        println!("OXCD_TEST_SEED={seed}");
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let (_d, s) = new_store();
        // model[rev] = the state at that revision: key -> (value, create, mod, version)
        type Entry = (Vec<u8>, i64, i64, i64);
        type State = BTreeMap<Vec<u8>, Entry>;
        let mut model: Vec<State> = vec![State::new(), State::new()]; // revisions 0 and 1
        let key = |rng: &mut rand::rngs::StdRng| vec![b'a' + rng.random_range(0..8u8)];
        let mut compacted = 0i64;
        let mut waits = Vec::new();

        for step in 0..400 {
            let mut b = s.begin_batch().unwrap();
            for _ in 0..rng.random_range(1..4) {
                let mut state = model.last().unwrap().clone();
                let rev = b.current_revision() + 1;
                let mut changed = false;
                let mut t = b.txn();
                for _ in 0..rng.random_range(1..4) {
                    let k = key(&mut rng);
                    if rng.random_bool(0.7) {
                        let v = format!("{step}-{}", rng.random::<u16>()).into_bytes();
                        let prev = t.put(&k, &v, 0).unwrap();
                        let entry = match state.get(&k) {
                            Some(old) => {
                                assert_eq!(prev.as_ref().map(|p| &p.value), Some(&old.0));
                                (v, old.1, rev, old.3 + 1)
                            }
                            None => {
                                assert!(prev.is_none());
                                (v, rev, rev, 1)
                            }
                        };
                        state.insert(k, entry);
                        changed = true;
                    } else {
                        let end = if rng.random_bool(0.5) {
                            vec![]
                        } else {
                            key(&mut rng)
                        };
                        let deleted = t.delete_range(&k, &end).unwrap();
                        let gone: Vec<Vec<u8>> = state
                            .keys()
                            .filter(|x| {
                                if end.is_empty() {
                                    **x == k
                                } else {
                                    **x >= k && **x < end
                                }
                            })
                            .cloned()
                            .collect();
                        assert_eq!(
                            deleted.iter().map(|kv| kv.key.to_vec()).collect::<Vec<_>>(),
                            gone
                        );
                        for g in gone {
                            state.remove(&g);
                            changed = true;
                        }
                    }
                }
                t.end();
                if changed {
                    model.push(state);
                }
                assert_eq!(b.current_revision() as usize, model.len() - 1);
            }
            if rng.random_bool(0.05) {
                let cur = b.current_revision();
                let target = rng.random_range(compacted + 1..=cur.max(compacted + 1));
                if target <= cur {
                    waits.push(b.compact(target).unwrap());
                    compacted = target;
                }
            }
            b.commit().unwrap();

            // Reads at random revisions agree with the model.
            let cur = s.current_revision();
            assert_eq!(cur as usize, model.len() - 1);
            for _ in 0..3 {
                let rev = rng.random_range(0..=cur + 1);
                let k = key(&mut rng);
                let end = match rng.random_range(0..3) {
                    0 => vec![],
                    1 => vec![0],
                    _ => key(&mut rng),
                };
                let limit = rng.random_range(0..4);
                let got = s.range(
                    &k,
                    &end,
                    RangeOptions {
                        rev,
                        limit,
                        ..Default::default()
                    },
                );
                if rev > cur {
                    assert!(matches!(got, Err(Error::FutureRev)));
                    continue;
                }
                let at = if rev == 0 { cur } else { rev };
                if at < compacted {
                    assert!(matches!(got, Err(Error::Compacted)), "seed {seed}");
                    continue;
                }
                let got = got.unwrap();
                let want: Vec<(&Vec<u8>, &Entry)> = model[at as usize]
                    .iter()
                    .filter(|(x, _)| match end.as_slice() {
                        [] => **x == k,
                        [0] => **x >= k,
                        e => x.as_slice() >= k.as_slice() && x.as_slice() < e,
                    })
                    .collect();
                assert_eq!(got.count, want.len() as i64, "seed {seed} step {step}");
                let n = if limit > 0 {
                    want.len().min(limit as usize)
                } else {
                    want.len()
                };
                assert_eq!(got.kvs.len(), n, "seed {seed} step {step}");
                for (kv, (wk, (v, c, m, ver))) in got.kvs.iter().zip(want) {
                    assert_eq!(
                        (
                            &kv.key.to_vec(),
                            &kv.value.to_vec(),
                            kv.create_revision,
                            kv.mod_revision,
                            kv.version
                        ),
                        (wk, v, *c, *m, *ver),
                        "seed {seed} step {step} at {at}"
                    );
                }
            }
        }
        for w in waits {
            w.wait_timeout(WAIT)
                .expect("compaction finished in time")
                .unwrap();
        }
        let cur = s.current_revision();
        let r = s.range(b"", b"\0", RangeOptions::default()).unwrap();
        assert_eq!(r.count as usize, model[cur as usize].len(), "seed {seed}");
    }
}
