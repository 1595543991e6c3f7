//! Raft's log between two snapshots, kept in memory as raft-rs's `MemStorage` keeps it, but
//! packed.
//!
//! Like etcd, a member keeps every entry since its last snapshot (up to `--snapshot-count`,
//! 100000 by default) so that a lagging follower can catch up from the log. `MemStorage` holds
//! them as a `Vec<Entry>`: 104 bytes of struct per entry, most of it the two `Bytes` of `data`
//! and `context` and protobuf bookkeeping, on top of the payload itself, and up to twice that
//! while the vector has grown but not filled; and each payload is an allocation of its own with
//! the header `Bytes` adds once it is shared. Here an entry is its term, type and payload (the
//! context, almost always empty, is boxed apart), 56 bytes, and payloads are copied into shared
//! 64 KiB chunks; the full `Entry` is rebuilt when raft asks for it, its payload a slice of its
//! chunk. The behaviour is `MemStorage`'s, call for call (the test below checks it against
//! `MemStorage`).

use std::cmp;
use std::collections::VecDeque;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::{Bytes, BytesMut};
use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, EntryType, HardState, Snapshot, SnapshotMetadata};
use raft::{Error, GetEntriesContext, RaftState, Result, Storage, StorageError, NO_LIMIT};

/// The raft log storage shared by the raft thread and raft-rs (cheap to clone).
#[derive(Clone, Default)]
pub struct LogStore {
    core: Arc<RwLock<LogCore>>,
}

impl LogStore {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn rl(&self) -> RwLockReadGuard<'_, LogCore> {
        self.core.read().expect("raft log lock poisoned")
    }

    pub fn wl(&self) -> RwLockWriteGuard<'_, LogCore> {
        self.core.write().expect("raft log lock poisoned")
    }
}

/// One entry without its index (implied by its position).
struct Packed {
    term: u64,
    data: Bytes,
    entry_type: EntryType,
    sync_log: bool,
    /// `None` when the entry's context is empty, as it nearly always is.
    context: Option<Box<Bytes>>,
}

impl Packed {
    fn new(e: &Entry, chunk: &mut BytesMut) -> Self {
        Packed {
            term: e.term,
            data: copy_into(chunk, &e.data),
            entry_type: e.entry_type,
            sync_log: e.sync_log,
            context: (!e.context.is_empty()).then(|| Box::new(e.context.clone())),
        }
    }

    fn entry(&self, index: u64) -> Entry {
        Entry {
            term: self.term,
            index,
            data: self.data.clone(),
            entry_type: self.entry_type,
            sync_log: self.sync_log,
            context: self.context.as_deref().cloned().unwrap_or_default(),
            ..Default::default()
        }
    }
}

/// Copies `data` to the end of `chunk` (a new one when it is full) and returns the copy. A
/// chunk is freed once no entry in it is kept or lent out.
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

#[derive(Default)]
pub struct LogCore {
    raft_state: RaftState,
    snapshot_metadata: SnapshotMetadata,
    /// Index of `entries[0]`; meaningless while `entries` is empty.
    offset: u64,
    entries: VecDeque<Packed>,
    /// Where the next payloads are copied.
    chunk: BytesMut,
}

impl LogCore {
    pub fn set_hardstate(&mut self, hs: HardState) {
        self.raft_state.hard_state = hs;
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
            self.offset = compact_index;
        }
        Ok(())
    }

    /// Appends `ents`, first dropping the entries they overwrite.
    ///
    /// # Panics
    ///
    /// If `ents` overwrites compacted entries or leaves a gap after the last one.
    pub fn append(&mut self, ents: &[Entry]) -> Result<()> {
        let Some(first) = ents.first() else {
            return Ok(());
        };
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
        self.entries.truncate(keep);
        let chunk = &mut self.chunk;
        self.entries
            .extend(ents.iter().map(|e| Packed::new(e, chunk)));
        Ok(())
    }

    fn snapshot(&self) -> Snapshot {
        let mut snapshot = Snapshot::default();
        let meta = snapshot.mut_metadata();
        // As MemStorage: everything up to the commit index counts as applied.
        meta.index = self.raft_state.hard_state.commit;
        meta.term = match meta.index.cmp(&self.snapshot_metadata.index) {
            cmp::Ordering::Equal => self.snapshot_metadata.term,
            cmp::Ordering::Greater => self.entries[(meta.index - self.offset) as usize].term,
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
        // raft-rs's `limit_size`, applied while building: the first entry always, then more
        // while the total encoded size stays within `max_size`.
        let limit = max_size.filter(|&m| m != NO_LIMIT);
        let mut out = Vec::with_capacity(hi - lo);
        let mut size = 0u64;
        for (i, p) in core.entries.range(lo..hi).enumerate() {
            let e = p.entry(low + i as u64);
            if let Some(max) = limit {
                size += u64::from(e.compute_size());
                if i > 0 && size > max {
                    break;
                }
            }
            out.push(e);
        }
        Ok(out)
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
        Ok(core.entries[(idx - core.offset) as usize].term)
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

    /// Payloads copied into chunks come back whole, across chunk boundaries, for an entry
    /// larger than a chunk, and after the entries before them are dropped.
    #[test]
    fn payloads_span_chunks() {
        let store = LogStore::new();
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
        store.wl().append(&ents[..100]).unwrap();
        store.wl().append(&ents[100..]).unwrap();
        let all = |s: &LogStore, low| {
            s.entries(low, 301, None, GetEntriesContext::empty(false))
                .unwrap()
        };
        assert_eq!(all(&store, 1), ents);
        store.wl().compact(200).unwrap();
        assert_eq!(all(&store, 200), ents[199..]);
    }

    #[test]
    fn behaves_as_mem_storage() {
        let ours = LogStore::new();
        let theirs = MemStorage::new();
        let both_append = |ents: &[Entry]| {
            ours.wl().append(ents).unwrap();
            theirs.wl().append(ents).unwrap();
        };
        let both_commit = |index: u64| {
            ours.wl().mut_hard_state().commit = index;
            theirs.wl().mut_hard_state().commit = index;
        };
        assert_same(&ours, &theirs, "empty");

        both_append(&(1..=10).map(|i| entry(i, 1, 40)).collect::<Vec<_>>());
        both_commit(6);
        assert_same(&ours, &theirs, "appended 1..=10");

        // A new leader overwrites the uncommitted tail.
        both_append(&(8..=12).map(|i| entry(i, 2, 30)).collect::<Vec<_>>());
        assert_same(&ours, &theirs, "overwrote 8..");

        // Compacting: below the first index does nothing, then drops the head.
        for idx in [0, 1, 4] {
            ours.wl().compact(idx).unwrap();
            theirs.wl().compact(idx).unwrap();
            assert_same(&ours, &theirs, &format!("compacted to {idx}"));
        }

        // Appending right after the last entry, and overwriting from the first one kept.
        both_append(&[entry(13, 2, 10)]);
        both_append(&(4..=9).map(|i| entry(i, 3, 20)).collect::<Vec<_>>());
        both_commit(9);
        assert_same(&ours, &theirs, "overwrote from the first index");

        // Compacting everything: the first index falls back to the last snapshot's.
        ours.wl().compact(10).unwrap();
        theirs.wl().compact(10).unwrap();
        assert_same(&ours, &theirs, "compacted all");

        // A snapshot from the leader replaces the log; an older one is refused.
        let snap = snapshot(20, 4);
        ours.wl().apply_snapshot(snap.clone()).unwrap();
        theirs.wl().apply_snapshot(snap).unwrap();
        assert_same(&ours, &theirs, "snapshot at 20");
        assert!(ours.wl().apply_snapshot(snapshot(5, 1)).is_err());
        assert!(theirs.wl().apply_snapshot(snapshot(5, 1)).is_err());

        both_append(&(21..=30).map(|i| entry(i, 4, 50)).collect::<Vec<_>>());
        both_commit(27);
        let hs = HardState {
            term: 5,
            vote: 2,
            commit: 28,
            ..Default::default()
        };
        ours.wl().set_hardstate(hs.clone());
        theirs.wl().set_hardstate(hs);
        let cs = ConfState {
            voters: vec![1, 2],
            learners: vec![3],
            ..Default::default()
        };
        ours.wl().set_conf_state(cs.clone());
        theirs.wl().set_conf_state(cs);
        assert_same(&ours, &theirs, "after the snapshot");
        assert_eq!(
            ours.snapshot(29, 0).unwrap().get_metadata().index,
            29,
            "a snapshot is at least at the requested index"
        );
    }
}
