//! The store: the tree index, the current and compaction revisions, and reads.
//!
//! Writes live in `txn.rs` (batches and transactions), compaction in `compaction.rs`.

mod compaction;
mod txn;

use std::sync::{mpsc, Arc, Mutex, MutexGuard};

use oxcd_api::mvccpb::{event::EventType, Event, KeyValue};
use prost::Message;
use redb::{ReadTransaction, ReadableTable};

pub use compaction::CompactionWait;
pub use txn::{Batch, Txn};

use super::index::{KeyRange, TreeIndex};
use super::key_index::KeyIndex;
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
    /// CRC-32C over the `key` table entries up to `hash_revision`, leaving out those a finished
    /// compaction at `compact_revision` would remove.
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
}

impl KvStore {
    /// Opens the store over `backend`, rebuilding the index from its `key` table and resuming
    /// a compaction that did not finish.
    pub fn open(backend: Backend) -> Result<KvStore> {
        let started = std::time::Instant::now();
        let rtxn = backend.begin_read()?;
        let meta = rtxn.open_table(schema::META)?;
        let finished = backend::read_meta_u64(&meta, schema::META_FINISHED_COMPACT_REV)?.unwrap_or(0) as i64;
        let scheduled = backend::read_meta_u64(&meta, schema::META_SCHEDULED_COMPACT_REV)?.unwrap_or(0) as i64;
        let index = backend::read_meta_u64(&meta, schema::META_CONSISTENT_INDEX)?.unwrap_or(0);
        let term = backend::read_meta_u64(&meta, schema::META_TERM)?.unwrap_or(0);
        let (tree, last_rev) = restore_index(&rtxn)?;
        drop(rtxn);

        // A compaction may have removed the newest revisions (deleted keys), so the store is at
        // least at the compaction revision; a fresh store is at revision 1.
        let compact_rev = finished.max(scheduled);
        let current_rev = last_rev.max(compact_rev).max(1);
        let shared = Arc::new_cyclic(|weak| Shared {
            backend,
            state: Mutex::new(State {
                index: tree,
                current_rev,
                compact_rev,
            }),
            applied: Mutex::new((index, term)),
            compactor: Mutex::new(compaction::spawn(weak.clone())),
        });
        tracing::info!(
            "current-revision" = current_rev,
            "compact-revision" = compact_rev,
            "consistent-index" = index,
            took = ?started.elapsed(),
            "restored mvcc store"
        );
        let store = KvStore { shared };
        if scheduled > finished {
            tracing::info!("scheduled-compact-revision" = scheduled, "resume scheduled compaction");
            store.shared.schedule_compaction(scheduled, None);
        }
        Ok(store)
    }

    /// The backend this store writes to.
    pub fn backend(&self) -> &Backend {
        &self.shared.backend
    }

    /// The newest committed revision.
    pub fn current_revision(&self) -> i64 {
        self.shared.lock().current_rev
    }

    /// The latest committed compaction revision (reads below it fail).
    pub fn compact_revision(&self) -> i64 {
        self.shared.lock().compact_rev
    }

    /// Index and term of the last Raft entry whose effects are committed to the backend.
    pub fn consistent_index(&self) -> (u64, u64) {
        *self.shared.applied.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads the keys of `key`..`range_end` by etcd's rules: `range_end` empty for `key` alone,
    /// `"\0"` for every key ≥ `key`, otherwise `[key, range_end)`.
    pub fn range(&self, key: &[u8], range_end: &[u8], opts: RangeOptions) -> Result<RangeResult> {
        let range = KeyRange::new(key, range_end);
        let (revs, count, cur, rtxn) = {
            let st = self.shared.lock();
            let at = check_read_rev(opts.rev, st.current_rev, st.compact_rev)?;
            if opts.count_only {
                return Ok(RangeResult {
                    kvs: Vec::new(),
                    count: st.index.count(range, at),
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
            (revs, count, st.current_rev, self.shared.backend.begin_read()?)
        };
        let table = rtxn.open_table(schema::KEY)?;
        Ok(RangeResult {
            kvs: fetch(&table, &revs, opts.keys_only)?,
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
        let (keep, at, cur, compact, rtxn) = {
            let st = self.shared.lock();
            if rev > 0 && rev <= st.compact_rev {
                return Err(Error::Compacted);
            }
            if rev > st.current_rev {
                return Err(Error::FutureRev);
            }
            let at = if rev > 0 { rev } else { st.current_rev };
            let keep = st.index.keep(st.compact_rev);
            (keep, at, st.current_rev, st.compact_rev, self.shared.backend.begin_read()?)
        };
        let table = rtxn.open_table(schema::KEY)?;
        let mut crc = crc32c::crc32c(b"key");
        let upper = Revision::new(at + 1, 0).to_bytes();
        for entry in table.range::<&[u8]>(..&upper[..])? {
            let (k, v) = entry?;
            let (r, _) = decode_rev(k.value())?;
            if r.main <= compact && !keep.contains(&r) {
                continue; // removed, or about to be, by the compaction
            }
            crc = crc32c::crc32c_append(crc, k.value());
            crc = crc32c::crc32c_append(crc, v.value());
        }
        Ok(HashKv {
            hash: crc,
            hash_revision: at,
            compact_revision: compact,
            current_revision: cur,
        })
    }

    /// A hash of the whole backend (etcd's Maintenance.Hash) and the revision it was taken at.
    pub fn hash(&self) -> Result<(u32, i64)> {
        let (rtxn, cur) = {
            let st = self.shared.lock();
            (self.shared.backend.begin_read()?, st.current_rev)
        };
        Ok((backend::hash_tables(&rtxn)?, cur))
    }

    /// Every change with main revision in `[from, to]` (`to` capped at the current revision),
    /// in revision order, as watch events without `prev_kv`: for a watcher catching up.
    pub fn events(&self, from: i64, to: i64) -> Result<Vec<Event>> {
        let (to, rtxn) = {
            let st = self.shared.lock();
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
        let (lo, hi) = (Revision::new(from, 0).to_bytes(), Revision::new(to + 1, 0).to_bytes());
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
    pub fn leased_keys(&self) -> Result<Vec<(Vec<u8>, i64)>> {
        let all = self.range(b"", b"\0", RangeOptions::default())?;
        let mut leased = all.kvs;
        leased.retain(|kv| kv.lease != 0);
        Ok(leased.into_iter().map(|kv| (kv.key.to_vec(), kv.lease)).collect())
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

/// Fetches the values stored at `revs` (never tombstones), in order.
pub(crate) fn fetch(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    revs: &[Revision],
    keys_only: bool,
) -> Result<Vec<KeyValue>> {
    revs.iter()
        .map(|&r| {
            let mut kv = fetch_one(table, r)?;
            if keys_only {
                kv.value = Default::default();
            }
            Ok(kv)
        })
        .collect()
}

/// The value stored at `rev`, which the index says exists.
pub(crate) fn fetch_one(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    rev: Revision,
) -> Result<KeyValue> {
    let Some(v) = table.get(&rev.to_bytes()[..])? else {
        tracing::error!(revision = %rev, "range failed to find revision pair");
        return Err(Error::Corrupt {
            revision: rev.to_string(),
            what: "the index names it but the backend does not hold it".into(),
        });
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

/// Rebuilds the tree index from the `key` table; returns it and the newest revision seen.
fn restore_index(rtxn: &ReadTransaction) -> Result<(TreeIndex, i64)> {
    let table = rtxn.open_table(schema::KEY)?;
    let mut tree = TreeIndex::default();
    let mut last = 0;
    for entry in table.iter()? {
        let (k, v) = entry?;
        let (rev, tombstone) = decode_rev(k.value())?;
        let kv = decode_kv(rev, v.value())?;
        last = rev.main;
        match tree.get(&kv.key) {
            Some(ki) if rev <= ki.modified() => {
                return Err(Error::Corrupt {
                    revision: rev.to_string(),
                    what: "two changes of one key at the same revision".into(),
                })
            }
            Some(_) => {
                let ki = tree.entry(&kv.key);
                if tombstone {
                    ki.tombstone(rev);
                } else {
                    ki.put(rev);
                }
            }
            // The first change the backend still holds for the key: its earlier history was
            // compacted away. A tombstone there has nothing left to end.
            None if !tombstone => {
                let created = Revision::new(kv.create_revision, 0);
                tree.insert(kv.key.to_vec(), KeyIndex::restored(created, rev, kv.version));
            }
            None => {}
        }
    }
    Ok((tree, last))
}
