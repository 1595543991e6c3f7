//! Writes: a [`Batch`] is one backend write transaction spanning many Raft entries; each
//! entry's reads and writes happen in a [`Txn`] of the batch.
//!
//! A batch records its changes in the shared tree index as it goes, at revisions above the
//! published current revision: readers outside the batch read at or below that revision and so
//! never see them, while reads inside the batch go by the batch's own revision and do. Commit
//! writes the backend first, then publishes the batch's revision under the index lock. A batch
//! dropped without committing takes its changes back out of the index. A batch may be
//! promised before its commit, so that its results can be reported while it commits: readers
//! then wait for its revision to be published.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use oxcd_api::mvccpb::{event::EventType, Event, KeyValue};
use prost::Message;
use redb::{Table, WriteTransaction};

use super::compaction::{self, CompactionWait};
use super::{check_read_rev, fetch, fetch_one, RangeOptions, RangeResult, Shared, Walked};
use crate::backend::{schema, WriteBatch};
use crate::mvcc::index::KeyRange;
use crate::mvcc::revision::Revision;
use crate::mvcc::{Error, Result};
use crate::stats::TxnOps;

/// A write batch: one backend transaction holding the effects of many Raft entries. Only the
/// apply task makes one, and one at a time.
///
/// ```text
/// let mut batch = store.begin_batch()?;
/// for entry in entries {
///     let mut txn = batch.txn();
///     txn.put(b"k", b"v", 0)?;
///     let events = txn.end();             // hand to watchers after commit
///     batch.set_consistent_index(entry.index, entry.term)?;
/// }
/// batch.commit()?;
/// ```
pub struct Batch {
    shared: Arc<Shared>,
    /// The backend transaction; `None` once committed.
    wb: Option<WriteBatch>,
    /// The published current revision when the batch began.
    base_rev: i64,
    /// The current revision as the batch sees it: `base_rev` plus its changing transactions.
    rev: i64,
    /// The compaction revision as the batch sees it.
    compact_rev: i64,
    /// Compactions to hand to the compactor once the batch commits.
    compactions: Vec<compaction::Job>,
    /// Index and term of the last entry in the batch, published at commit.
    applied: Option<(u64, u64)>,
    /// A write failed half way: the batch may not commit.
    failed: bool,
    /// This batch's number: one more than the batches committed before it.
    number: u64,
}

impl Batch {
    pub(super) fn begin(shared: Arc<Shared>) -> Result<Batch> {
        let wb = shared.backend.begin_write()?;
        let (rev, compact_rev, number) = {
            let st = shared.lock();
            (st.current_rev, st.compact_rev, st.batches + 1)
        };
        Ok(Batch {
            shared,
            wb: Some(wb),
            base_rev: rev,
            rev,
            compact_rev,
            compactions: Vec::new(),
            applied: None,
            failed: false,
            number,
        })
    }

    /// Starts a transaction: its changes share one main revision. Call [`Txn::end`] when done.
    pub fn txn(&mut self) -> Txn<'_> {
        let wtxn = self.wb.as_ref().expect("batch not committed").txn();
        Txn {
            shared: &self.shared,
            wtxn,
            table: None,
            rev: &mut self.rev,
            compact_rev: self.compact_rev,
            failed: &mut self.failed,
            changes: Vec::new(),
            ops: TxnOps::default(),
            ended: false,
        }
    }

    /// The current revision as this batch sees it (the header revision of its responses).
    pub fn current_revision(&self) -> i64 {
        self.rev
    }

    /// The compaction revision as this batch sees it.
    pub fn compact_revision(&self) -> i64 {
        self.compact_rev
    }

    /// Records that the batch holds the effects of Raft entries up to `index` (at `term`), in
    /// the same transaction as those effects.
    pub fn set_consistent_index(&mut self, index: u64, term: u64) -> Result<()> {
        let wtxn = self.raw();
        let mut meta = wtxn.open_table(schema::META)?;
        meta.insert(
            schema::META_CONSISTENT_INDEX,
            &schema::encode_u64(index)[..],
        )?;
        meta.insert(schema::META_TERM, &schema::encode_u64(term)[..])?;
        drop(meta);
        self.applied = Some((index, term));
        Ok(())
    }

    /// Schedules a compaction at `rev`: reads below `rev` fail from this batch on (and for
    /// everyone once it commits); old revisions are removed in the background after the
    /// commit. The returned handle reports when they are gone (etcd's `physical`).
    pub fn compact(&mut self, rev: i64) -> Result<CompactionWait> {
        if rev <= self.compact_rev {
            return Err(Error::Compacted);
        }
        if rev > self.rev {
            return Err(Error::FutureRev);
        }
        let mut meta = self.raw().open_table(schema::META)?;
        meta.insert(
            schema::META_SCHEDULED_COMPACT_REV,
            &schema::encode_u64(rev as u64)[..],
        )?;
        drop(meta);
        self.compact_rev = rev;
        let (job, wait) = compaction::Job::new(rev);
        self.compactions.push(job);
        Ok(wait)
    }

    /// Lets the batch's results be reported before it commits: from now until the commit,
    /// readers wait for it instead of reading the state before the batch. A promised batch that
    /// fails to commit leaves them waiting: its caller must stop (the server's Raft entries
    /// are durable in the WAL and are applied again at the next start).
    pub fn promise(&self) {
        self.shared
            .promised
            .fetch_max(self.number, Ordering::AcqRel);
    }

    /// The backend transaction, for the tables other modules own (lease, auth, members…), so
    /// that their writes commit atomically with the batch. Must not be used for `key`.
    pub fn raw(&self) -> &WriteTransaction {
        self.wb.as_ref().expect("batch not committed").txn()
    }

    /// Commits the backend transaction, then publishes the batch's revisions and consistent
    /// index and starts its compactions. On error nothing is published and the batch's changes
    /// leave the index.
    pub fn commit(mut self) -> Result<()> {
        let wb = self.wb.take().expect("batch committed once");
        if self.failed {
            self.roll_back();
            return Err(Error::Corrupt {
                revision: (self.base_rev + 1).to_string(),
                what: "a write in this batch failed; the batch was dropped".into(),
            });
        }
        if let Err(e) = wb.commit() {
            self.roll_back();
            return Err(e.into());
        }
        let epoch = {
            let mut st = self.shared.lock();
            st.current_rev = self.rev;
            st.compact_rev = self.compact_rev;
            st.batches = self.number;
            self.shared.publish(&st);
            st.epoch
        };
        if let Some(applied) = self.applied {
            *self
                .shared
                .applied
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = applied;
        }
        for job in self.compactions.drain(..) {
            self.shared.send_compaction(job, epoch);
        }
        Ok(())
    }

    fn roll_back(&mut self) {
        if self.rev != self.base_rev {
            self.shared.lock().index.roll_back_after(self.base_rev);
        }
        self.rev = self.base_rev;
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        if self.wb.is_some() {
            self.roll_back();
        }
    }
}

/// One transaction of a batch: its changes get the next main revision, numbered by sub
/// revision. Reads see the batch's earlier transactions and this one's own writes.
pub struct Txn<'b> {
    shared: &'b Shared,
    wtxn: &'b WriteTransaction,
    /// The `key` table, opened at first use.
    table: Option<Table<'b, &'static [u8], &'static [u8]>>,
    /// The batch's current revision; bumped by `end` when this transaction changed something.
    rev: &'b mut i64,
    compact_rev: i64,
    failed: &'b mut bool,
    changes: Vec<Event>,
    /// Operations so far, counted in the metrics when the transaction ends.
    ops: TxnOps,
    ended: bool,
}

impl<'b> Txn<'b> {
    /// The main revision of this transaction's changes.
    fn main(&self) -> i64 {
        *self.rev + 1
    }

    /// The revision this transaction reads at: including its own changes, if any.
    pub fn read_revision(&self) -> i64 {
        if self.changes.is_empty() {
            *self.rev
        } else {
            self.main()
        }
    }

    fn table(&mut self) -> Result<&mut Table<'b, &'static [u8], &'static [u8]>> {
        if self.table.is_none() {
            self.table = Some(self.wtxn.open_table(schema::KEY)?);
        }
        Ok(self.table.as_mut().expect("opened above"))
    }

    /// Reads a range as [`KvStore::range`](super::KvStore::range) does, seeing the batch's
    /// writes so far.
    pub fn range(
        &mut self,
        key: &[u8],
        range_end: &[u8],
        opts: RangeOptions,
    ) -> Result<RangeResult> {
        self.ops.ranges += 1;
        let cur = self.read_revision();
        let at = check_read_rev(opts.rev, cur, self.compact_rev)?;
        let st = self.shared.lock();
        // Compactions committed before this batch are at or below its compaction revision, so
        // none interrupts the walk; a restore cannot either, as it replaces the contents only
        // between batches (one during a batch breaks the store: the batch fails).
        let range = KeyRange::new(key, range_end);
        let answer = self
            .shared
            .walk_read(st, at, cur, range, opts, || Ok(()))?
            .ok_or(Error::Closed)?;
        let kvs = match answer.walked {
            Walked::Keys(kvs) => kvs,
            Walked::Values(revs, ()) => fetch(self.table()?, &revs, opts.max_bytes)?,
        };
        Ok(RangeResult {
            kvs,
            count: answer.count,
            rev: cur,
        })
    }

    /// Puts `value` at `key` with `lease` (0 for none); returns the key's previous value, if
    /// it existed.
    pub fn put(&mut self, key: &[u8], value: &[u8], lease: i64) -> Result<Option<KeyValue>> {
        self.ops.puts += 1;
        self.ops.put_bytes += (key.len() + value.len()) as u64;
        let rev = Revision::new(self.main(), self.changes.len() as i64);
        let prev_at = {
            let mut st = self.shared.lock();
            let ki = st.index.entry(key);
            let prev = ki.get(rev.main);
            ki.put(rev, lease);
            prev
        };
        let result = self.write_put(key, value, lease, rev, prev_at);
        if result.is_err() {
            *self.failed = true;
        }
        result
    }

    fn write_put(
        &mut self,
        key: &[u8],
        value: &[u8],
        lease: i64,
        rev: Revision,
        prev_at: Option<crate::mvcc::key_index::KeyAt>,
    ) -> Result<Option<KeyValue>> {
        let table = self.table()?;
        let prev = match prev_at {
            Some(p) => Some(fetch_one(table, p.modified)?),
            None => None,
        };
        let kv = KeyValue {
            key: key.to_vec(),
            create_revision: prev_at.map_or(rev.main, |p| p.created.main),
            mod_revision: rev.main,
            version: prev_at.map_or(1, |p| p.version + 1),
            value: value.to_vec(),
            lease,
        };
        table.insert(&rev.to_bytes()[..], &kv.encode_to_vec()[..])?;
        self.changes.push(Event {
            r#type: EventType::Put as i32,
            kv: Some(kv),
            prev_kv: prev.clone(),
        });
        Ok(prev)
    }

    /// Deletes the keys of `key`..`range_end` (etcd's rules, as for range); returns their
    /// values before deletion, in key order.
    pub fn delete_range(&mut self, key: &[u8], range_end: &[u8]) -> Result<Vec<KeyValue>> {
        self.ops.deletes += 1;
        let range = KeyRange::new(key, range_end);
        let main = self.main();
        let at = self.read_revision();
        let first_sub = self.changes.len() as i64;
        let targets: Vec<(Vec<u8>, Revision, Revision)> = {
            let mut st = self.shared.lock();
            let live: Vec<(Vec<u8>, Revision)> = st
                .index
                .live_at(range, at)
                .map(|(k, a)| (k.clone(), a.modified))
                .collect();
            live.into_iter()
                .enumerate()
                .map(|(i, (k, modified))| {
                    let rev = Revision::new(main, first_sub + i as i64);
                    let done = st.index.entry(&k).tombstone(rev);
                    debug_assert!(done, "a live key takes a tombstone");
                    (k, modified, rev)
                })
                .collect()
        };
        let result = self.write_deletes(targets);
        if result.is_err() {
            *self.failed = true;
        }
        result
    }

    fn write_deletes(
        &mut self,
        targets: Vec<(Vec<u8>, Revision, Revision)>,
    ) -> Result<Vec<KeyValue>> {
        let mut deleted = Vec::with_capacity(targets.len());
        for (key, modified, rev) in targets {
            let table = self.table()?;
            let prev = fetch_one(table, modified)?;
            // As etcd: the stored tombstone names only the key; its event also carries the
            // revision.
            let stored = KeyValue {
                key,
                ..Default::default()
            };
            table.insert(&rev.to_key(true)[..], &stored.encode_to_vec()[..])?;
            let kv = KeyValue {
                mod_revision: rev.main,
                ..stored
            };
            self.changes.push(Event {
                r#type: EventType::Delete as i32,
                kv: Some(kv),
                prev_kv: Some(prev.clone()),
            });
            deleted.push(prev);
        }
        Ok(deleted)
    }

    /// Ends the transaction and returns its changes as watch events (each with `prev_kv`), in
    /// sub revision order. A transaction that changed something moves the batch to its revision.
    pub fn end(mut self) -> Vec<Event> {
        self.finish();
        std::mem::take(&mut self.changes)
    }

    /// Counts the operations so far as a transaction of their own. etcd evaluates a txn's
    /// compares in a read transaction before it opens the write transaction for the chosen
    /// branch; calling this between the two keeps `etcd_mvcc_txn_total` equal to etcd's.
    pub fn end_read_phase(&mut self) {
        self.ops.end();
    }

    fn finish(&mut self) {
        if !self.ended {
            self.ended = true;
            self.ops.end();
            if !self.changes.is_empty() {
                *self.rev += 1;
            }
        }
    }
}

impl Drop for Txn<'_> {
    /// A transaction dropped without `end` still takes its revision (its writes are in the
    /// batch); only its events are lost.
    fn drop(&mut self) {
        self.finish();
    }
}
