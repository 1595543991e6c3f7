//! Raft's log between two snapshots: every entry's term in memory, but only the newest
//! payloads; older ones are read back from the WAL when raft asks for them.
//!
//! Like etcd, a member keeps every entry since its last snapshot (up to `--snapshot-count`,
//! 100000 by default, plus `--experimental-snapshot-catchup-entries` behind it) so that a
//! lagging follower can catch up from the log. etcd and raft-rs's `MemStorage` keep all of it
//! in memory, payloads included, although once an entry is applied only a follower that fell
//! behind will ask for it again. Here an entry is where the WAL holds it, 16 bytes; terms are
//! kept once per run of entries, and the rare entry that is not a plain normal one (a conf
//! change, or one with a context) is described apart. The payloads of the newest entries,
//! [`PAYLOAD_BUDGET`] bytes of them and every one not yet committed, stay in memory, copied
//! into shared 64 KiB chunks. Older payloads are read from the WAL on demand, whose
//! segments the raft node keeps while the log holds their entries. The behaviour is
//! `MemStorage`'s, call for call (the tests below check it against `MemStorage`, with and
//! without payloads in memory).

use std::cmp;
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::{Bytes, BytesMut};
use oxcd_storage::{EntryPos, Wal};
use raft::eraftpb::{ConfState, Entry, EntryType, HardState, Snapshot, SnapshotMetadata};
use raft::{Error, GetEntriesContext, RaftState, Result, Storage, StorageError, NO_LIMIT};

use super::term_runs::TermRuns;

/// Payload bytes of committed entries kept in memory: enough for apply and for followers
/// that keep up, which only ever ask for the newest entries.
pub const PAYLOAD_BUDGET: usize = 1 << 20;

/// The raft log storage shared by the raft thread and raft-rs (cheap to clone).
#[derive(Clone)]
pub struct LogStore {
    core: Arc<RwLock<LogCore>>,
}

impl LogStore {
    /// An empty log whose entries are saved in the WAL in `wal_dir`.
    pub fn new(wal_dir: PathBuf) -> Self {
        Self::with_budget(wal_dir, PAYLOAD_BUDGET)
    }

    fn with_budget(wal_dir: PathBuf, payload_budget: usize) -> Self {
        let core = LogCore {
            raft_state: RaftState::default(),
            snapshot_metadata: SnapshotMetadata::default(),
            offset: 0,
            entries: VecDeque::new(),
            terms: TermRuns::default(),
            unusual: BTreeMap::new(),
            payloads: VecDeque::new(),
            payload_bytes: 0,
            payload_budget,
            chunk: BytesMut::new(),
            wal_dir,
        };
        LogStore {
            core: Arc::new(RwLock::new(core)),
        }
    }

    pub fn rl(&self) -> RwLockReadGuard<'_, LogCore> {
        self.core.read().expect("raft log lock poisoned")
    }

    pub fn wl(&self) -> RwLockWriteGuard<'_, LogCore> {
        self.core.write().expect("raft log lock poisoned")
    }
}

/// Where the WAL holds an entry: all that is kept of it besides its payload. Its index is
/// implied by its position in the log, its term is in the log's [`TermRuns`], and an entry
/// that is not a plain normal one is described in the log's `unusual` map.
#[derive(Clone, Copy)]
struct Packed {
    offset: u64,
    /// A segment's sequence number: one per 64 MiB segment cut, so `u32` holds 256 PiB of WAL.
    segment: u32,
    /// The encoded entry's size.
    len: u32,
}

impl Packed {
    fn new(pos: EntryPos) -> Self {
        Packed {
            offset: pos.offset,
            segment: u32::try_from(pos.segment).expect("WAL segment sequence beyond u32"),
            len: pos.len,
        }
    }

    fn pos(self) -> EntryPos {
        EntryPos {
            segment: u64::from(self.segment),
            offset: self.offset,
            len: self.len,
        }
    }
}

/// What a normal entry without a context leaves out: conf changes, and any entry with a
/// context or the (deprecated) `sync_log` flag.
struct Unusual {
    entry_type: EntryType,
    sync_log: bool,
    context: Bytes,
}

impl Unusual {
    fn of(e: &Entry) -> Option<Self> {
        let plain = e.entry_type == EntryType::EntryNormal && !e.sync_log && e.context.is_empty();
        (!plain).then(|| Unusual {
            entry_type: e.entry_type,
            sync_log: e.sync_log,
            context: e.context.clone(),
        })
    }
}

/// Copies `data` to the end of `chunk` (a new one when it is full) and returns the copy. A
/// chunk is freed once no payload in it is kept or lent out.
fn copy_into(chunk: &mut BytesMut, data: &[u8]) -> Bytes {
    const CHUNK: usize = 64 * 1024;
    if data.is_empty() {
        return Bytes::new();
    }
    if chunk.capacity() - chunk.len() < data.len() {
        *chunk = BytesMut::with_capacity(CHUNK.max(data.len()));
    }
    chunk.extend_from_slice(data);
    chunk.split().freeze()
}

pub struct LogCore {
    raft_state: RaftState,
    snapshot_metadata: SnapshotMetadata,
    /// Index of `entries[0]`; meaningless while `entries` is empty.
    offset: u64,
    entries: VecDeque<Packed>,
    /// The terms of `entries`.
    terms: TermRuns,
    /// The entries of `entries` that are not plain normal ones, by index.
    unusual: BTreeMap<u64, Unusual>,
    /// The payloads of the last `payloads.len()` entries; the others are only in the WAL.
    payloads: VecDeque<Bytes>,
    /// Total length of `payloads`.
    payload_bytes: usize,
    /// Committed payloads beyond this many bytes are dropped, oldest first.
    payload_budget: usize,
    /// Where the next payloads are copied.
    chunk: BytesMut,
    /// The WAL directory, to read dropped payloads back.
    wal_dir: PathBuf,
}

impl LogCore {
    pub fn set_hardstate(&mut self, hs: HardState) {
        // Entries committed before this hard state were handed to raft already; those it
        // commits may not have been yet.
        let settled = self.raft_state.hard_state.commit;
        self.raft_state.hard_state = hs;
        self.drop_old_payloads(settled);
    }

    pub fn mut_hard_state(&mut self) -> &mut HardState {
        &mut self.raft_state.hard_state
    }

    pub fn set_conf_state(&mut self, cs: ConfState) {
        self.raft_state.conf_state = cs;
    }

    fn first_index(&self) -> u64 {
        if self.entries.is_empty() {
            self.snapshot_metadata.index + 1
        } else {
            self.offset
        }
    }

    fn last_index(&self) -> u64 {
        if self.entries.is_empty() {
            self.snapshot_metadata.index
        } else {
            self.offset + self.entries.len() as u64 - 1
        }
    }

    /// Index of the first entry whose payload is in memory.
    fn first_in_memory(&self) -> u64 {
        self.offset + (self.entries.len() - self.payloads.len()) as u64
    }

    /// Replaces the log with the given snapshot's position; fails if it is older than the log.
    pub fn apply_snapshot(&mut self, mut snapshot: Snapshot) -> Result<()> {
        let mut meta = snapshot.take_metadata();
        let index = meta.index;
        if self.first_index() > index {
            return Err(Error::Store(StorageError::SnapshotOutOfDate));
        }
        self.snapshot_metadata = meta.clone();
        self.raft_state.hard_state.term = cmp::max(self.raft_state.hard_state.term, meta.term);
        self.raft_state.hard_state.commit = index;
        self.entries.clear();
        self.terms.clear();
        self.unusual.clear();
        self.payloads.clear();
        self.payload_bytes = 0;
        self.raft_state.conf_state = meta.take_conf_state();
        Ok(())
    }

    /// Drops every entry before `compact_index`.
    ///
    /// # Panics
    ///
    /// If `compact_index` is past the last entry + 1.
    pub fn compact(&mut self, compact_index: u64) -> Result<()> {
        if compact_index <= self.first_index() {
            return Ok(());
        }
        assert!(
            compact_index <= self.last_index() + 1,
            "compact not received raft logs: {compact_index}, last index: {}",
            self.last_index()
        );
        if !self.entries.is_empty() {
            self.entries.drain(..(compact_index - self.offset) as usize);
            self.terms.compact(compact_index);
            self.unusual = self.unusual.split_off(&compact_index);
            self.offset = compact_index;
            while self.payloads.len() > self.entries.len() {
                self.pop_oldest_payload();
            }
        }
        Ok(())
    }

    /// Appends `ents`, saved in the WAL at `positions`, first dropping the entries they
    /// overwrite.
    ///
    /// # Panics
    ///
    /// If `ents` overwrites compacted entries or leaves a gap after the last one.
    pub fn append(&mut self, ents: &[Entry], positions: &[EntryPos]) -> Result<()> {
        self.append_read(ents, positions, 0)
    }

    /// [`LogCore::append`] for entries read back from the WAL, of which those before
    /// `payloads_from` came without their payload.
    pub fn append_read(
        &mut self,
        ents: &[Entry],
        positions: &[EntryPos],
        payloads_from: usize,
    ) -> Result<()> {
        let Some(first) = ents.first() else {
            return Ok(());
        };
        assert_eq!(
            ents.len(),
            positions.len(),
            "an entry without its WAL position"
        );
        assert!(
            self.first_index() <= first.index,
            "overwrite compacted raft logs, compacted: {}, append: {}",
            self.first_index() - 1,
            first.index
        );
        assert!(
            self.last_index() + 1 >= first.index,
            "raft logs should be continuous, last index: {}, new appended: {}",
            self.last_index(),
            first.index
        );
        let keep = (first.index - self.first_index()) as usize;
        if self.entries.is_empty() {
            self.offset = first.index;
        }
        let overwritten = self.entries.len().saturating_sub(keep);
        self.entries.truncate(keep);
        self.terms.truncate(first.index);
        drop(self.unusual.split_off(&first.index));
        for _ in 0..overwritten.min(self.payloads.len()) {
            let p = self.payloads.pop_back().expect("counted");
            self.payload_bytes -= p.len();
        }
        if payloads_from > 0 {
            // Entries without a payload must not follow entries with one.
            self.payloads.clear();
            self.payload_bytes = 0;
        }
        for (i, (e, &pos)) in ents.iter().zip(positions).enumerate() {
            self.entries.push_back(Packed::new(pos));
            self.terms.push(e.index, e.term);
            if let Some(unusual) = Unusual::of(e) {
                self.unusual.insert(e.index, unusual);
            }
            if i >= payloads_from {
                self.payloads.push_back(copy_into(&mut self.chunk, &e.data));
                self.payload_bytes += e.data.len();
            }
        }
        self.drop_old_payloads(self.raft_state.hard_state.commit);
        Ok(())
    }

    /// Drops the oldest payloads beyond the budget, of entries up to `upto` only.
    fn drop_old_payloads(&mut self, upto: u64) {
        while self.payload_bytes > self.payload_budget
            && !self.payloads.is_empty()
            && self.first_in_memory() <= upto
        {
            self.pop_oldest_payload();
        }
    }

    fn pop_oldest_payload(&mut self) {
        let p = self.payloads.pop_front().expect("a payload");
        self.payload_bytes -= p.len();
    }

    /// Entries `lo..lo + n` (positions in `entries`), the dropped payloads read back from the
    /// WAL. A WAL that cannot give back what it acknowledged stops the member.
    fn build(&self, lo: usize, n: usize) -> Vec<Entry> {
        let on_disk = self.entries.len() - self.payloads.len();
        let mut out = Vec::with_capacity(n);
        if lo < on_disk {
            let upto = on_disk.min(lo + n);
            let positions: Vec<EntryPos> = self.entries.range(lo..upto).map(|p| p.pos()).collect();
            let read = Wal::read_entries(&self.wal_dir, &positions).and_then(|read| {
                for (i, e) in read.iter().enumerate() {
                    let index = self.offset + (lo + i) as u64;
                    let term = self.terms.get(index);
                    if e.index != index || e.term != term {
                        return Err(oxcd_storage::WalError::Corrupt {
                            path: self.wal_dir.clone(),
                            offset: positions[i].offset,
                            reason: format!(
                                "entry {}/{} read back where {index}/{term} was saved",
                                e.index, e.term
                            ),
                        });
                    }
                }
                Ok(read)
            });
            match read {
                Ok(read) => out.extend(read),
                Err(e) => crate::fatal::exit(
                    "failed to read raft log entries back from the WAL",
                    &self.wal_dir,
                    &e,
                ),
            }
        }
        for i in lo.max(on_disk)..lo + n {
            let index = self.offset + i as u64;
            let data = self.payloads[i - on_disk].clone();
            out.push(self.entry(index, data));
        }
        out
    }

    /// Entry `index`, in the log, with the given payload.
    fn entry(&self, index: u64, data: Bytes) -> Entry {
        let mut e = Entry {
            term: self.terms.get(index),
            index,
            data,
            ..Default::default()
        };
        if let Some(u) = self.unusual.get(&index) {
            e.entry_type = u.entry_type;
            e.sync_log = u.sync_log;
            e.context = u.context.clone();
        }
        e
    }

    fn snapshot(&self) -> Snapshot {
        let mut snapshot = Snapshot::default();
        let meta = snapshot.mut_metadata();
        // As MemStorage: everything up to the commit index counts as applied.
        meta.index = self.raft_state.hard_state.commit;
        meta.term = match meta.index.cmp(&self.snapshot_metadata.index) {
            cmp::Ordering::Equal => self.snapshot_metadata.term,
            cmp::Ordering::Greater => self.terms.get(meta.index),
            cmp::Ordering::Less => panic!(
                "commit {} < snapshot_metadata.index {}",
                meta.index, self.snapshot_metadata.index
            ),
        };
        meta.set_conf_state(self.raft_state.conf_state.clone());
        snapshot
    }
}

impl Storage for LogStore {
    fn initial_state(&self) -> Result<RaftState> {
        Ok(self.rl().raft_state.clone())
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> Result<Vec<Entry>> {
        let max_size = max_size.into();
        let core = self.rl();
        if low < core.first_index() {
            return Err(Error::Store(StorageError::Compacted));
        }
        assert!(
            high <= core.last_index() + 1,
            "index out of bound (last: {}, high: {high})",
            core.last_index() + 1
        );
        if low == high {
            return Ok(Vec::new());
        }
        let lo = (low - core.offset) as usize;
        let hi = (high - core.offset) as usize;
        // raft-rs's `limit_size`, applied before building: the first entry always, then more
        // while the total encoded size stays within `max_size`.
        let mut n = hi - lo;
        if let Some(max) = max_size.filter(|&m| m != NO_LIMIT) {
            let mut size = 0u64;
            for (i, p) in core.entries.range(lo..hi).enumerate() {
                size += u64::from(p.len);
                if i > 0 && size > max {
                    n = i;
                    break;
                }
            }
        }
        Ok(core.build(lo, n))
    }

    fn term(&self, idx: u64) -> Result<u64> {
        let core = self.rl();
        if idx == core.snapshot_metadata.index {
            return Ok(core.snapshot_metadata.term);
        }
        if idx < core.first_index() {
            return Err(Error::Store(StorageError::Compacted));
        }
        if idx > core.last_index() {
            return Err(Error::Store(StorageError::Unavailable));
        }
        Ok(core.terms.get(idx))
    }

    fn first_index(&self) -> Result<u64> {
        Ok(self.rl().first_index())
    }

    fn last_index(&self) -> Result<u64> {
        Ok(self.rl().last_index())
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> Result<Snapshot> {
        let mut snap = self.rl().snapshot();
        if snap.get_metadata().index < request_index {
            snap.mut_metadata().index = request_index;
        }
        Ok(snap)
    }
}

#[cfg(test)]
mod tests {
    use oxcd_storage::{WalOptions, WalSnapshot};
    use raft::storage::MemStorage;

    use super::*;

    fn entry(index: u64, term: u64, len: usize) -> Entry {
        let mut e = Entry {
            index,
            term,
            data: Bytes::from(vec![index as u8; len]),
            ..Default::default()
        };
        if index.is_multiple_of(7) {
            e.entry_type = EntryType::EntryConfChange;
            e.context = Bytes::from_static(b"ctx");
        }
        e
    }

    fn snapshot(index: u64, term: u64) -> Snapshot {
        let mut s = Snapshot::default();
        s.mut_metadata().index = index;
        s.mut_metadata().term = term;
        s.mut_metadata().mut_conf_state().voters = vec![1, 2, 3];
        s
    }

    /// A log whose entries are saved in a real WAL first, as the raft node does.
    struct Saved {
        store: LogStore,
        wal: Wal,
        _dir: tempfile::TempDir,
    }

    impl Saved {
        fn new(payload_budget: usize) -> Self {
            let dir = tempfile::tempdir().unwrap();
            let wal_dir = dir.path().join("wal");
            let wal = Wal::create(&wal_dir, b"m").unwrap();
            Saved {
                store: LogStore::with_budget(wal_dir, payload_budget),
                wal,
                _dir: dir,
            }
        }

        fn append(&mut self, ents: &[Entry]) {
            self.wal.save(&HardState::default(), ents).unwrap();
            let positions = self.wal.saved_positions();
            self.store.wl().append(ents, positions).unwrap();
        }

        /// Commits up to `index`, and raft takes the entries committed.
        fn commit(&self, index: u64) {
            let mut hs = self.store.rl().raft_state.hard_state.clone();
            hs.commit = index;
            let mut core = self.store.wl();
            core.set_hardstate(hs);
            core.drop_old_payloads(index);
        }
    }

    /// Every read of the Storage trait gives the same answer from both stores.
    fn assert_same(ours: &LogStore, theirs: &MemStorage, step: &str) {
        let ctx = || GetEntriesContext::empty(false);
        let first = theirs.first_index().unwrap();
        let last = theirs.last_index().unwrap();
        assert_eq!(ours.first_index().unwrap(), first, "{step}: first index");
        assert_eq!(ours.last_index().unwrap(), last, "{step}: last index");
        assert_eq!(
            format!("{:?}", ours.initial_state().unwrap()),
            format!("{:?}", theirs.initial_state().unwrap()),
            "{step}"
        );
        for idx in first.saturating_sub(2)..last + 3 {
            assert_eq!(
                format!("{:?}", ours.term(idx)),
                format!("{:?}", theirs.term(idx)),
                "{step}: term({idx})"
            );
        }
        for low in first.saturating_sub(1)..=last + 1 {
            // MemStorage indexes its first entry even for an empty range: skip that case.
            let from = if first > last { low + 1 } else { low };
            for high in from..=last + 1 {
                for max in [None, Some(0), Some(60), Some(250), Some(NO_LIMIT)] {
                    assert_eq!(
                        format!("{:?}", ours.entries(low, high, max, ctx())),
                        format!("{:?}", theirs.entries(low, high, max, ctx())),
                        "{step}: entries({low}, {high}, {max:?})"
                    );
                }
            }
        }
        // MemStorage's snapshot is at the commit index, which must have a known term.
        if theirs.term(theirs.rl().hard_state().commit).is_ok() {
            assert_eq!(
                ours.snapshot(0, 0).unwrap(),
                theirs.snapshot(0, 0).unwrap(),
                "{step}: snapshot"
            );
        }
    }

    /// What the log holds per entry besides a kept payload.
    #[test]
    fn an_entry_takes_16_bytes() {
        assert_eq!(std::mem::size_of::<Packed>(), 16);
    }

    /// Payloads copied into chunks come back whole, across chunk boundaries, for an entry
    /// larger than a chunk, and after the entries before them are dropped.
    #[test]
    fn payloads_span_chunks() {
        let mut log = Saved::new(usize::MAX);
        let ents: Vec<Entry> = (1..=300)
            .map(|i| {
                entry(
                    i,
                    1,
                    if i == 150 {
                        100 * 1024
                    } else {
                        700 + i as usize
                    },
                )
            })
            .collect();
        log.append(&ents[..100]);
        log.append(&ents[100..]);
        let all = |s: &LogStore, low| {
            s.entries(low, 301, None, GetEntriesContext::empty(false))
                .unwrap()
        };
        assert_eq!(all(&log.store, 1), ents);
        log.store.wl().compact(200).unwrap();
        assert_eq!(all(&log.store, 200), ents[199..]);
    }

    /// With every payload in memory, and with every committed payload read back from the
    /// WAL.
    #[test]
    fn behaves_as_mem_storage() {
        for budget in [usize::MAX, 0] {
            behaves_as_mem_storage_with(budget);
        }
    }

    fn behaves_as_mem_storage_with(budget: usize) {
        let mut ours = Saved::new(budget);
        let theirs = MemStorage::new();
        fn both_append(ours: &mut Saved, theirs: &MemStorage, ents: &[Entry]) {
            ours.append(ents);
            theirs.wl().append(ents).unwrap();
        }
        fn both_commit(ours: &Saved, theirs: &MemStorage, index: u64) {
            ours.commit(index);
            theirs.wl().mut_hard_state().commit = index;
        }
        let step = |s: &str| format!("budget {budget}: {s}");
        assert_same(&ours.store, &theirs, &step("empty"));

        both_append(
            &mut ours,
            &theirs,
            &(1..=10).map(|i| entry(i, 1, 40)).collect::<Vec<_>>(),
        );
        both_commit(&ours, &theirs, 6);
        assert_same(&ours.store, &theirs, &step("appended 1..=10"));

        // A new leader overwrites the uncommitted tail.
        both_append(
            &mut ours,
            &theirs,
            &(8..=12).map(|i| entry(i, 2, 30)).collect::<Vec<_>>(),
        );
        assert_same(&ours.store, &theirs, &step("overwrote 8.."));

        // Compacting: below the first index does nothing, then drops the head.
        for idx in [0, 1, 4] {
            ours.store.wl().compact(idx).unwrap();
            theirs.wl().compact(idx).unwrap();
            assert_same(&ours.store, &theirs, &step(&format!("compacted to {idx}")));
        }

        // Appending right after the last entry, and overwriting from the first one kept.
        both_append(&mut ours, &theirs, &[entry(13, 2, 10)]);
        both_append(
            &mut ours,
            &theirs,
            &(4..=9).map(|i| entry(i, 3, 20)).collect::<Vec<_>>(),
        );
        both_commit(&ours, &theirs, 9);
        assert_same(
            &ours.store,
            &theirs,
            &step("overwrote from the first index"),
        );

        // Compacting everything: the first index falls back to the last snapshot's.
        ours.store.wl().compact(10).unwrap();
        theirs.wl().compact(10).unwrap();
        assert_same(&ours.store, &theirs, &step("compacted all"));

        // A snapshot from the leader replaces the log; an older one is refused.
        let snap = snapshot(20, 4);
        ours.store.wl().apply_snapshot(snap.clone()).unwrap();
        theirs.wl().apply_snapshot(snap).unwrap();
        assert_same(&ours.store, &theirs, &step("snapshot at 20"));
        assert!(ours.store.wl().apply_snapshot(snapshot(5, 1)).is_err());
        assert!(theirs.wl().apply_snapshot(snapshot(5, 1)).is_err());

        both_append(
            &mut ours,
            &theirs,
            &(21..=30).map(|i| entry(i, 4, 50)).collect::<Vec<_>>(),
        );
        both_commit(&ours, &theirs, 27);
        let hs = HardState {
            term: 5,
            vote: 2,
            commit: 28,
            ..Default::default()
        };
        ours.store.wl().set_hardstate(hs.clone());
        ours.store.wl().drop_old_payloads(28);
        theirs.wl().set_hardstate(hs);
        let cs = ConfState {
            voters: vec![1, 2],
            learners: vec![3],
            ..Default::default()
        };
        ours.store.wl().set_conf_state(cs.clone());
        theirs.wl().set_conf_state(cs);
        assert_same(&ours.store, &theirs, &step("after the snapshot"));
        assert_eq!(
            ours.store.snapshot(29, 0).unwrap().get_metadata().index,
            29,
            "a snapshot is at least at the requested index"
        );
        let core = ours.store.rl();
        if budget == 0 {
            // Only the uncommitted entries keep their payload.
            assert_eq!(core.first_in_memory(), 29);
        } else {
            assert_eq!(core.payloads.len(), core.entries.len());
        }
    }

    /// Only the newest committed payloads stay in memory, within the budget; the log read
    /// back at a restart (payloads partly dropped by the WAL read) is whole as well.
    #[test]
    fn old_payloads_come_back_from_the_wal() {
        let mut log = Saved::new(10_000);
        let ents: Vec<Entry> = (1..=100).map(|i| entry(i, 1, 1000)).collect();
        for batch in ents.chunks(10) {
            log.append(batch);
        }
        let all = |s: &LogStore| {
            s.entries(1, 101, None, GetEntriesContext::empty(false))
                .unwrap()
        };
        // Nothing committed yet: every payload stays.
        assert_eq!(log.store.rl().payloads.len(), 100);
        log.commit(95);
        assert_eq!(log.store.rl().payload_bytes, 10_000);
        assert_eq!(log.store.rl().first_in_memory(), 91);
        assert_eq!(all(&log.store), ents);

        let wal_dir = log.wal.dir().to_path_buf();
        drop(log.wal);
        let opts = WalOptions {
            payload_budget: 5000,
            ..Default::default()
        };
        let (_, read) = Wal::open_with(&wal_dir, WalSnapshot::default(), opts).unwrap();
        assert_eq!(read.payloads_from, 95);
        let restarted = LogStore::with_budget(wal_dir, 10_000);
        restarted
            .wl()
            .append_read(&read.entries, &read.positions, read.payloads_from)
            .unwrap();
        assert_eq!(restarted.rl().first_in_memory(), 96);
        assert_eq!(all(&restarted), ents);
    }
}
