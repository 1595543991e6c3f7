//! The write-ahead log: raft entries and hard state, made durable before they count.
//!
//! A WAL lives in one directory (`member/wal/`) as a numbered run of *segments*, each named
//! `{seq:016x}-{index:016x}.wal` in hex: `seq` counts segments from 0 without holes, and
//! `index` is a lower bound for the first raft entry index the segment holds. [`Wal::create`]
//! writes segment `0000000000000000-0000000000000000.wal`.
//!
//! # Records
//!
//! A segment is a sequence of records, each starting at a multiple of 8 bytes:
//!
//! ```text
//!  0      4        8      9       10        12       16           16+len     aligned to 8
//!  | crc  | len    | type | flags | 0 0     | epoch  | data ...    | zero padding |
//! ```
//!
//! All integers are little endian. `crc` is CRC-32C (Castagnoli) over bytes 4..16 of the
//! header and the data (not the padding). `type` is 1 metadata (the caller's opaque bytes),
//! 2 entry (a raft `Entry`, protobuf), 3 hard state (a raft `HardState`, protobuf), 5 snapshot
//! marker (index, term: 8 bytes each); 4 is left unused (etcd's rolling-crc record). Flag bit 0
//! marks the last record written before an fdatasync. `epoch` numbers the saves: all records
//! of one save share an epoch, and the next save uses the next number (wrapping).
//!
//! The checksum is per record rather than chained across records as etcd's is. A chained
//! checksum cannot validate anything past the first bad record, so it cannot tell a torn
//! tail from a damaged middle; a per-record one can look for valid records after the damage.
//! Nothing stale can pass for a record: segments are created zero-filled, and a truncated tail
//! is zeroed again before anything is appended.
//!
//! Every segment starts with a metadata record, then (if not empty) the latest hard state, so
//! that old segments can be deleted without losing them; the first segment also holds a
//! snapshot marker at index 0. These head records are written to `<name>.tmp`, synced, and
//! renamed: a segment under its real name always has a durable head.
//!
//! # Writing
//!
//! [`Wal::save`] appends a batch of records and makes it durable with one fdatasync.
//! Segments are preallocated ([`SEGMENT_SIZE_BYTES`] by default) so an append changes no
//! file metadata. Once a save leaves the tail segment at or past that size, the segment is
//! trimmed to its last record and synced, and a new segment is *cut*, named with the next
//! `seq` and the last entry index + 1.
//!
//! # Reading after a crash
//!
//! [`Wal::open`] takes the snapshot the caller restored from, starts at the last segment whose
//! `index` is at or below the snapshot index, and replays everything after it: entries at or
//! below the snapshot are skipped, and an entry at index `i` replaces any entries from `i` on
//! (raft log conflict resolution). The snapshot's marker must be found.
//!
//! A save's records count only once its last, sync-flagged record is read, so a save cut
//! short by a crash is dropped whole. Where a record does not decode, the reader decides
//! between a crash and corruption. Only the last save can be lost in a crash, because each
//! save is synced before the next starts, and a crash tears a write at sector boundaries
//! (512 bytes, as etcd assumes): an unwritten sector reads as zeroes. So damage in the last
//! segment is a *torn tail* if the damaged record is cut short by the end of the file or has
//! an all-zero sector-sized piece (etcd's `isTornEntry` rule; a complete record failing its
//! checksum is a bit flip), and no valid record follows it, or every valid record after it
//! belongs to the same save (same epoch, and that epoch is the one the damaged record must
//! have had): the tail is truncated from the start of that save and zero-filled again. A bit
//! flip in the last record is therefore corruption, as in etcd. Any other damage, and any
//! damage in an earlier segment, which was fully synced, is [`Error::Corrupt`], naming the
//! file and offset; the WAL then refuses to open. Records found after damage only decide
//! between the two, they are never replayed: at worst, entry data shaped like a record turns
//! a torn tail into a refusal to start, never into accepted data.

mod error;
mod read;
mod record;
mod segment;
mod tail;

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};

use protobuf::Message;
use raft::eraftpb::{Entry, HardState};

use error::io_err;
pub use error::{Error, Result};
use read::{encode_marker, read_wal, Mode};
use record::{RecordType, FLAG_SYNC};
use segment::{create_segment, preallocate, sync_dir, Segment};
use tail::TailFile;

/// Default segment size, as etcd's.
pub const SEGMENT_SIZE_BYTES: u64 = 64 * 1024 * 1024;

/// Where a raft snapshot was taken: the WAL is opened "after" one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WalSnapshot {
    /// Index of the last entry the snapshot covers.
    pub index: u64,
    /// Term of that entry.
    pub term: u64,
}

/// Where an entry's record is in the WAL, so that the entry can be read back later
/// ([`Wal::read_entries`]) instead of being kept in memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EntryPos {
    /// The `seq` of the segment holding the record.
    pub segment: u64,
    /// Where the record starts in that segment.
    pub offset: u64,
    /// Length of the encoded entry (the record's data), as `Entry::compute_size` gives it.
    pub len: u32,
}

/// What [`Wal::open`] read back.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WalContents {
    /// The metadata given to [`Wal::create`].
    pub metadata: Vec<u8>,
    /// The last hard state saved (default if none was).
    pub hard_state: HardState,
    /// The entries after the snapshot, contiguous from its index + 1.
    pub entries: Vec<Entry>,
    /// Where each of `entries` is in the WAL.
    pub positions: Vec<EntryPos>,
    /// `entries` before this one came back without their payload (`data` left empty, see
    /// [`WalOptions::payload_budget`]); read them with [`Wal::read_entries`].
    pub payloads_from: usize,
}

/// Tunables; the defaults are etcd's.
#[derive(Clone, Copy, Debug)]
pub struct WalOptions {
    /// Segment preallocation size; a segment is cut once it reaches this size.
    pub segment_size: u64,
    /// At most this many bytes of entry payloads are kept while the WAL is read back: those
    /// of the newest entries (and always the last one's). Older entries come back without
    /// their payload, so that reading a long log does not hold all of it in memory.
    pub payload_budget: usize,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_size: SEGMENT_SIZE_BYTES,
            payload_budget: usize::MAX,
        }
    }
}

/// An open WAL, appending to its last segment.
///
/// One thread owns it (the raft node's); every call may block on disk I/O.
pub struct Wal {
    /// The WAL directory.
    dir: PathBuf,
    /// Written at the head of every segment.
    metadata: Vec<u8>,
    segment_size: u64,
    /// Every segment on disk, oldest first; the last is the one being appended to.
    segments: Vec<Segment>,
    /// The last segment, open for writing.
    file: TailFile,
    /// Where the next record goes in the last segment.
    offset: u64,
    /// The last hard state saved; repeated at the head of each new segment.
    hard_state: HardState,
    /// Index of the last entry saved (or a snapshot beyond it); names the next segment.
    last_index: u64,
    /// Epoch of the last save (see the module doc).
    epoch: u32,
    /// Set when a write or sync failed: what reached the disk is unknown.
    failed: bool,
    /// Reused encoding buffer.
    buf: Vec<u8>,
    /// Where the entries of the last save went.
    saved: Vec<EntryPos>,
}

impl Wal {
    /// Whether `dir` holds at least one segment.
    pub fn exists(dir: &Path) -> bool {
        segment::list_segments(dir).is_ok_and(|s| !s.is_empty())
    }

    /// Creates a WAL in `dir` (made if missing) with etcd's default segment size.
    pub fn create(dir: &Path, metadata: &[u8]) -> Result<Wal> {
        Wal::create_with(dir, metadata, WalOptions::default())
    }

    /// Creates a WAL in `dir` (made if missing).
    pub fn create_with(dir: &Path, metadata: &[u8], opts: WalOptions) -> Result<Wal> {
        if Wal::exists(dir) {
            return Err(Error::AlreadyExists(dir.to_path_buf()));
        }
        crate::dir_ops::create(dir, || fs::create_dir_all(dir))
            .map_err(io_err("creating directory", dir))?;
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(parent)?;
        }
        segment::remove_temp_files(dir)?;
        let epoch = 1;
        let mut head = Vec::new();
        record::encode(&mut head, RecordType::Metadata, 0, epoch, metadata)?;
        let marker = encode_marker(WalSnapshot::default());
        record::encode(&mut head, RecordType::Snapshot, FLAG_SYNC, epoch, &marker)?;
        let (file, seg) = create_segment(dir, 0, 0, &head, opts.segment_size)?;
        tracing::info!(path = %seg.path.display(), "created a wal");
        Ok(Wal {
            dir: dir.to_path_buf(),
            metadata: metadata.to_vec(),
            segment_size: opts.segment_size,
            segments: vec![seg],
            file: TailFile::new(file),
            offset: head.len() as u64,
            hard_state: HardState::default(),
            last_index: 0,
            epoch,
            failed: false,
            buf: Vec::new(),
            saved: Vec::new(),
        })
    }

    /// Opens the WAL in `dir` after `snap` with etcd's default segment size.
    ///
    /// Reads every record after `snap`; entries with index <= snap.index are skipped; an
    /// entry with index i replaces any previously read entries >= i (raft log conflict
    /// truncation). A torn tail is truncated; corruption is an error.
    pub fn open(dir: &Path, snap: WalSnapshot) -> Result<(Wal, WalContents)> {
        Wal::open_with(dir, snap, WalOptions::default())
    }

    /// [`Wal::open`] with options.
    pub fn open_with(
        dir: &Path,
        snap: WalSnapshot,
        opts: WalOptions,
    ) -> Result<(Wal, WalContents)> {
        segment::remove_temp_files(dir)?;
        let out = read_wal(dir, Mode::FromSnapshot(snap), opts.payload_budget)?;
        Wal::resume(dir, out, opts)
    }

    /// Reads the whole WAL once, for a restart: the snapshot markers a restart may load and
    /// the entries after the newest; [`WalScan::open_at`] then opens the WAL at the snapshot
    /// chosen, reading it again only if that is not the newest marker.
    pub fn scan(dir: &Path, opts: WalOptions) -> Result<WalScan> {
        segment::remove_temp_files(dir)?;
        let out = read_wal(dir, Mode::Scan, opts.payload_budget)?;
        Ok(WalScan {
            dir: dir.to_path_buf(),
            opts,
            out,
        })
    }

    /// The WAL read back by `out`, open for appending at its end.
    fn resume(dir: &Path, out: read::ReadOutcome, opts: WalOptions) -> Result<(Wal, WalContents)> {
        let tail = out.segments.last().expect("read_wal found a segment");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&tail.path)
            .map_err(io_err("opening", &tail.path))?;
        if out.tail_dirty {
            file.set_len(out.tail_end)
                .map_err(io_err("truncating", &tail.path))?;
            tracing::info!(path = %tail.path.display(), offset = out.tail_end, "truncated the wal tail");
        }
        preallocate(&file, &tail.path, opts.segment_size)?;
        if out.tail_dirty {
            file.sync_all().map_err(io_err("fsync", &tail.path))?;
        }
        let contents = out.contents;
        let wal = Wal {
            dir: dir.to_path_buf(),
            metadata: contents.metadata.clone(),
            segment_size: opts.segment_size,
            segments: out.segments,
            file: TailFile::new(file),
            offset: out.tail_end,
            hard_state: contents.hard_state.clone(),
            last_index: out.last_index,
            epoch: out.epoch,
            failed: false,
            buf: Vec::new(),
            saved: Vec::new(),
        };
        Ok((wal, contents))
    }

    /// Reads the WAL after `snap` without changing anything on disk (for offline tools).
    /// A torn tail is ignored rather than truncated.
    pub fn read(dir: &Path, snap: WalSnapshot) -> Result<WalContents> {
        Ok(read_wal(dir, Mode::FromSnapshot(snap), usize::MAX)?.contents)
    }

    /// Reads back the entries saved at `positions` (as [`Wal::saved_positions`] or
    /// [`WalContents::positions`] gave them), in order. Their segments must not have been
    /// released.
    pub fn read_entries(dir: &Path, positions: &[EntryPos]) -> Result<Vec<Entry>> {
        read::read_entries(dir, positions)
    }

    /// Snapshot markers in the WAL whose index is committed by the last hard state, oldest
    /// first: the snapshots a restart may load (as etcd's `ValidSnapshotEntries`).
    pub fn valid_snapshots(dir: &Path) -> Result<Vec<WalSnapshot>> {
        let out = read_wal(dir, Mode::AllMarkers, 0)?;
        Ok(committed_markers(&out))
    }

    /// Appends entries and the hard state (if not empty) and makes them durable with ONE
    /// fdatasync. Does nothing if both are empty.
    pub fn save(&mut self, hard_state: &HardState, entries: &[Entry]) -> Result<()> {
        self.check_usable()?;
        let hs_empty = is_empty_hard_state(hard_state);
        if hs_empty && entries.is_empty() {
            return Ok(());
        }
        let epoch = self.epoch.wrapping_add(1);
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        self.saved.clear();
        let segment = self.segments.last().expect("a wal has a segment").seq;
        let count = entries.len() + usize::from(!hs_empty);
        let mut encoded = Ok(());
        for (i, e) in entries.iter().enumerate() {
            let flags = if i + 1 == count { FLAG_SYNC } else { 0 };
            let at = buf.len();
            encoded = record::encode_with(&mut buf, RecordType::Entry, flags, epoch, |b| {
                e.write_to_vec(b)
            });
            if encoded.is_err() {
                break;
            }
            self.saved.push(EntryPos {
                segment,
                offset: self.offset + at as u64,
                len: record::data_len(&buf[at..]),
            });
        }
        if encoded.is_ok() && !hs_empty {
            encoded = record::encode_with(&mut buf, RecordType::HardState, FLAG_SYNC, epoch, |b| {
                hard_state.write_to_vec(b)
            });
        }
        let written = encoded.and_then(|()| self.append(&buf));
        self.buf = buf;
        written?;
        self.epoch = epoch;
        if let Some(e) = entries.last() {
            self.last_index = e.index;
        }
        if !hs_empty {
            self.hard_state = hard_state.clone();
        }
        self.cut_if_full()
    }

    /// Where the entries of the last [`Wal::save`] are, in order (valid once it succeeded).
    pub fn saved_positions(&self) -> &[EntryPos] {
        &self.saved
    }

    /// Records that a snapshot was taken at `snap`, durably.
    pub fn save_snapshot(&mut self, snap: WalSnapshot) -> Result<()> {
        self.check_usable()?;
        let epoch = self.epoch.wrapping_add(1);
        let mut buf = Vec::with_capacity(32);
        record::encode(
            &mut buf,
            RecordType::Snapshot,
            FLAG_SYNC,
            epoch,
            &encode_marker(snap),
        )?;
        self.append(&buf)?;
        self.epoch = epoch;
        self.last_index = self.last_index.max(snap.index);
        self.cut_if_full()
    }

    /// Deletes whole segments that only hold entries below `index` (never the last segment).
    ///
    /// Call it with the index of a snapshot whose marker was saved: the WAL can then still be
    /// opened at that snapshot.
    pub fn release_to(&mut self, index: u64) -> Result<()> {
        // Segment k only holds entries below the start of segment k + 1.
        let mut n = 0;
        while n + 1 < self.segments.len() && self.segments[n + 1].index <= index {
            n += 1;
        }
        if n == 0 {
            return Ok(());
        }
        for seg in self.segments.drain(..n) {
            match crate::dir_ops::remove_file(&seg.path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("removing", &seg.path)(e)),
            }
            tracing::info!(path = %seg.path.display(), "removed a released wal segment");
        }
        sync_dir(&self.dir)
    }

    /// Every entry at or above this index that is still in the raft log is in a segment on
    /// disk: a segment's name bounds the entries of every segment before it.
    pub fn first_index(&self) -> u64 {
        self.segments[0].index
    }

    /// The WAL directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn check_usable(&self) -> Result<()> {
        if self.failed {
            Err(Error::Failed)
        } else {
            Ok(())
        }
    }

    /// Writes `buf` at the tail and fdatasyncs; any failure makes the WAL unusable.
    fn append(&mut self, buf: &[u8]) -> Result<()> {
        let path = &self.segments.last().expect("a wal has a segment").path;
        let r = self.file.write_at(buf, self.offset, path).and_then(|()| {
            fail::fail_point!("wal_before_sync");
            self.file.sync(path)
        });
        fail::fail_point!("wal_after_sync");
        if r.is_err() {
            self.failed = true;
        }
        r?;
        crate::stats::add(&crate::stats::MVCC.wal_bytes, buf.len() as u64);
        self.offset += buf.len() as u64;
        Ok(())
    }

    fn cut_if_full(&mut self) -> Result<()> {
        if self.offset < self.segment_size {
            return Ok(());
        }
        let r = self.cut();
        if r.is_err() {
            self.failed = true;
        }
        r
    }

    /// Finishes the tail segment and starts the next one.
    fn cut(&mut self) -> Result<()> {
        let tail = self.segments.last().expect("a wal has a segment");
        // A finished segment ends at its last record, without preallocated zeroes.
        self.file.set_len(self.offset, &tail.path)?;
        self.file.sync(&tail.path)?;

        let epoch = self.epoch.wrapping_add(1);
        let mut head = Vec::new();
        let hs_empty = is_empty_hard_state(&self.hard_state);
        let flags = if hs_empty { FLAG_SYNC } else { 0 };
        record::encode(
            &mut head,
            RecordType::Metadata,
            flags,
            epoch,
            &self.metadata,
        )?;
        if !hs_empty {
            let hs = &self.hard_state;
            record::encode_with(&mut head, RecordType::HardState, FLAG_SYNC, epoch, |b| {
                hs.write_to_vec(b)
            })?;
        }
        let (file, seg) = create_segment(
            &self.dir,
            tail.seq + 1,
            self.last_index + 1,
            &head,
            self.segment_size,
        )?;
        tracing::info!(path = %seg.path.display(), "created a new wal segment");
        self.file = TailFile::new(file);
        self.segments.push(seg);
        self.offset = head.len() as u64;
        self.epoch = epoch;
        Ok(())
    }
}

/// The WAL read once by [`Wal::scan`], not yet open.
pub struct WalScan {
    dir: PathBuf,
    opts: WalOptions,
    out: read::ReadOutcome,
}

impl WalScan {
    /// As [`Wal::valid_snapshots`].
    pub fn valid_snapshots(&self) -> Vec<WalSnapshot> {
        committed_markers(&self.out)
    }

    /// As [`Wal::open_with`] at `snap`, without a second read when `snap` is the newest marker
    /// (the usual restart).
    pub fn open_at(self, snap: WalSnapshot) -> Result<(Wal, WalContents)> {
        let first_segment = self.out.segments.first().map_or(u64::MAX, |s| s.index);
        let read_already = self.out.scanned_after == Some(snap) && first_segment <= snap.index;
        let mismatch = self
            .out
            .markers
            .iter()
            .find(|m| m.index == snap.index && m.term != snap.term);
        if !read_already || mismatch.is_some() {
            return Wal::open_with(&self.dir, snap, self.opts);
        }
        Wal::resume(&self.dir, self.out, self.opts)
    }
}

fn committed_markers(out: &read::ReadOutcome) -> Vec<WalSnapshot> {
    let commit = out.contents.hard_state.commit;
    out.markers
        .iter()
        .copied()
        .filter(|m| m.index <= commit)
        .collect()
}

fn is_empty_hard_state(hs: &HardState) -> bool {
    hs.term == 0 && hs.vote == 0 && hs.commit == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> WalOptions {
        WalOptions {
            segment_size: 4096,
            ..Default::default()
        }
    }

    fn entry(term: u64, index: u64, len: usize) -> Entry {
        Entry {
            term,
            index,
            data: (0..len)
                .map(|i| (i as u64 ^ index) as u8)
                .collect::<Vec<u8>>()
                .into(),
            ..Default::default()
        }
    }

    fn hs(term: u64, vote: u64, commit: u64) -> HardState {
        HardState {
            term,
            vote,
            commit,
            ..Default::default()
        }
    }

    fn indexes(c: &WalContents) -> Vec<(u64, u64)> {
        c.entries.iter().map(|e| (e.term, e.index)).collect()
    }

    fn segment_files(dir: &Path) -> Vec<PathBuf> {
        segment::list_segments(dir)
            .unwrap()
            .into_iter()
            .map(|s| s.path)
            .collect()
    }

    fn copy_dir(from: &Path, to: &Path) {
        for dent in fs::read_dir(from).unwrap() {
            let dent = dent.unwrap();
            fs::copy(dent.path(), to.join(dent.file_name())).unwrap();
        }
    }

    #[test]
    fn create_save_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("member/wal");
        assert!(!Wal::exists(&dir));
        let mut wal = Wal::create_with(&dir, b"meta", small()).unwrap();
        assert!(Wal::exists(&dir));
        assert!(matches!(
            Wal::create(&dir, b"meta"),
            Err(Error::AlreadyExists(_))
        ));
        let ents: Vec<Entry> = (1..=10).map(|i| entry(1, i, 10)).collect();
        wal.save(&hs(1, 1, 3), &ents[..4]).unwrap();
        wal.save(&hs(1, 1, 8), &ents[4..]).unwrap();
        wal.save(&HardState::default(), &[]).unwrap();
        drop(wal);
        assert_eq!(
            segment_files(&dir),
            [dir.join("0000000000000000-0000000000000000.wal")]
        );
        let (mut wal, got) = Wal::open_with(&dir, WalSnapshot::default(), small()).unwrap();
        assert_eq!(got.metadata, b"meta");
        assert_eq!(got.hard_state, hs(1, 1, 8));
        assert_eq!(got.entries, ents);
        wal.save(&hs(2, 2, 10), &[entry(2, 11, 3)]).unwrap();
        drop(wal);
        let got = Wal::read(&dir, WalSnapshot::default()).unwrap();
        assert_eq!(got.entries.len(), 11);
        assert_eq!(got.hard_state, hs(2, 2, 10));
    }

    #[test]
    fn many_entries_across_segments() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let mut wal = Wal::create_with(dir, b"m", small()).unwrap();
        let ents: Vec<Entry> = (1..=300).map(|i| entry(1, i, 100)).collect();
        for (n, chunk) in ents.chunks(3).enumerate() {
            wal.save(&hs(1, 1, n as u64), chunk).unwrap();
        }
        drop(wal);
        let segs = segment::list_segments(dir).unwrap();
        assert!(segs.len() > 5, "only {} segments", segs.len());
        for (i, pair) in segs.windows(2).enumerate() {
            assert_eq!(pair[0].seq, i as u64);
            assert!(pair[0].index < pair[1].index);
            // A finished segment is trimmed to its records.
            assert!(fs::metadata(&pair[0].path).unwrap().len() < 4096 + 1024);
        }
        let (mut wal, got) = Wal::open_with(dir, WalSnapshot::default(), small()).unwrap();
        assert_eq!(got.entries, ents);
        assert_eq!(got.hard_state, hs(1, 1, 99));
        wal.save(&hs(1, 1, 100), &[entry(1, 301, 100)]).unwrap();
        drop(wal);
        let (_, got) = Wal::open_with(dir, WalSnapshot::default(), small()).unwrap();
        assert_eq!(got.entries.len(), 301);
    }

    /// Simulates a crash during the last save: its bytes are cut off at every offset
    /// (shortening the file), or at every sector boundary (leaving the preallocated zeroes in
    /// place: a crash loses whole sectors).
    #[test]
    fn torn_tail_at_every_offset() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().join("base");
        let mut wal = Wal::create_with(&base, b"m", small()).unwrap();
        for i in 1..=5 {
            wal.save(&hs(1, 1, i - 1), &[entry(1, i, 20)]).unwrap();
        }
        let start = wal.offset as usize;
        // Spans sector boundaries.
        wal.save(&hs(2, 1, 5), &[entry(2, 6, 700), entry(2, 7, 400)])
            .unwrap();
        let end = wal.offset as usize;
        drop(wal);
        let seg = segment_files(&base).pop().unwrap();
        let name = seg.file_name().unwrap().to_owned();
        let full = fs::read(&seg).unwrap();
        for cut in start..end {
            for shorten in [true, false] {
                if !shorten && cut != start && cut % record::SECTOR != 0 {
                    continue;
                }
                let dir = tmp.path().join(format!("c{cut}-{shorten}"));
                fs::create_dir(&dir).unwrap();
                copy_dir(&base, &dir);
                let mut bytes = full.clone();
                if shorten {
                    bytes.truncate(cut);
                } else {
                    bytes[cut..].fill(0);
                }
                fs::write(dir.join(&name), &bytes).unwrap();

                let (mut wal, got) = Wal::open_with(&dir, WalSnapshot::default(), small())
                    .unwrap_or_else(|e| {
                        panic!("cut at {cut} (shorten {shorten}): {e}");
                    });
                // Zeroing only the last record's padding loses nothing.
                let intact = !shorten && full[cut..end].iter().all(|&b| b == 0);
                if intact {
                    assert_eq!(got.entries.len(), 7, "cut at {cut}");
                    continue;
                }
                // The torn save is dropped whole; every earlier one survives.
                let want: Vec<(u64, u64)> = (1..=5).map(|i| (1, i)).collect();
                assert_eq!(indexes(&got), want, "cut at {cut}");
                assert_eq!(got.hard_state, hs(1, 1, 4), "cut at {cut}");
                // Writable after, and what is written survives.
                wal.save(&hs(3, 1, 5), &[entry(3, 6, 7)]).unwrap();
                drop(wal);
                let (_, got) = Wal::open_with(&dir, WalSnapshot::default(), small()).unwrap();
                assert_eq!(got.entries.len(), 6, "cut at {cut}");
                assert_eq!(got.entries[5], entry(3, 6, 7));
                assert_eq!(got.hard_state, hs(3, 1, 5));
                fs::remove_dir_all(&dir).unwrap();
            }
        }
    }

    /// A segment is read only as far as its records reach, a piece at a time: records past
    /// the first piece, a record larger than a piece, and damage anywhere are all seen as
    /// when the whole segment was read at once.
    #[test]
    fn a_large_segment_is_read_in_pieces() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().join("base");
        let opts = || WalOptions {
            segment_size: 4 << 20,
            ..Default::default()
        };
        let mut wal = Wal::create_with(&base, b"m", opts()).unwrap();
        let mut want = Vec::new();
        let mut late_record = 0;
        for i in 1..=400 {
            if i == 300 {
                late_record = wal.offset as usize;
            }
            let e = entry(1, i, if i == 200 { 600 * 1024 } else { 2000 });
            wal.save(&hs(1, 1, i), std::slice::from_ref(&e)).unwrap();
            want.push(e);
        }
        let end = wal.offset as usize;
        drop(wal);
        let seg = segment_files(&base).pop().unwrap();
        let name = seg.file_name().unwrap().to_owned();
        let full = fs::read(&seg).unwrap();
        assert!(late_record > 1 << 20 && full.len() > end + (2 << 20));

        let (_, got) = Wal::open_with(&base, WalSnapshot::default(), opts()).unwrap();
        assert_eq!(got.entries, want);
        assert_eq!(got.hard_state, hs(1, 1, 400));

        let damaged = |dir_name: &str, at: usize| {
            flipped_copy(&base, &tmp.path().join(dir_name), &name, &full, at)
        };
        // A stray byte far past the records (where no piece of the replay reached): no save
        // is lost, and the tail is cleaned.
        let stray = full.len() - 100;
        let dir = damaged("stray", stray);
        let (wal, got) = Wal::open_with(&dir, WalSnapshot::default(), opts()).unwrap();
        assert_eq!(got.entries, want);
        drop(wal);
        assert_eq!(fs::read(dir.join(&name)).unwrap()[stray], 0);
        // A flipped bit in a record far into the segment, followed by later saves.
        let dir = damaged("late", late_record + 30);
        match Wal::open_with(&dir, WalSnapshot::default(), opts()) {
            Err(Error::Corrupt { offset, .. }) => assert_eq!(offset, late_record as u64),
            other => panic!("{:?}", other.map(|_| ())),
        }
    }

    /// A copy of the WAL dir `base` at `dir`, its segment `name` replaced by `segment` with one
    /// bit flipped at `at`.
    fn flipped_copy(
        base: &Path,
        dir: &Path,
        name: &std::ffi::OsStr,
        segment: &[u8],
        at: usize,
    ) -> PathBuf {
        fs::create_dir(dir).unwrap();
        copy_dir(base, dir);
        let mut bytes = segment.to_vec();
        bytes[at] ^= 0x10;
        fs::write(dir.join(name), &bytes).unwrap();
        dir.to_path_buf()
    }

    /// Damage in an earlier, synced save is corruption, never truncated; damage inside the
    /// last save is a torn write even when later records of that save survived.
    #[test]
    fn corrupt_middle_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().join("base");
        let mut wal = Wal::create_with(&base, b"m", small()).unwrap();
        let mut offsets = Vec::new();
        for i in 1..=5 {
            offsets.push(wal.offset as usize);
            wal.save(&hs(1, 1, i), &[entry(1, i, 30)]).unwrap();
        }
        let last_save = wal.offset as usize;
        wal.save(&hs(1, 1, 6), &[entry(1, 6, 30), entry(1, 7, 30)])
            .unwrap();
        drop(wal);
        let seg = segment_files(&base).pop().unwrap();
        let name = seg.file_name().unwrap().to_owned();
        let full = fs::read(&seg).unwrap();

        let damaged = |dir_name: &str, at: usize| {
            flipped_copy(&base, &tmp.path().join(dir_name), &name, &full, at)
        };
        for (i, &off) in offsets.iter().enumerate() {
            for delta in [0, 5, 20] {
                let dir = damaged(&format!("mid{i}-{delta}"), off + delta);
                for r in [
                    Wal::open_with(&dir, WalSnapshot::default(), small()).map(|_| ()),
                    Wal::read(&dir, WalSnapshot::default()).map(|_| ()),
                ] {
                    match r {
                        Err(Error::Corrupt { path, offset, .. }) => {
                            assert_eq!(path, dir.join(&name));
                            assert_eq!(offset, off as u64);
                        }
                        other => panic!("flip at {}: {other:?}", off + delta),
                    }
                }
            }
        }
        // The head of a segment is synced before it is named: damage there is corruption.
        let dir = damaged("head", 3);
        assert!(matches!(
            Wal::open_with(&dir, WalSnapshot::default(), small()),
            Err(Error::Corrupt { offset: 0, .. })
        ));
        // A bit flip in the last save, in its first or its last record, is corruption too:
        // each is a whole record with data in every sector, not a write torn by a crash.
        for (name_, at) in [("last0", last_save + 20), ("last1", written_end(&full) - 3)] {
            let dir = damaged(name_, at);
            assert!(
                matches!(
                    Wal::open_with(&dir, WalSnapshot::default(), small()),
                    Err(Error::Corrupt { .. })
                ),
                "flip at {at}"
            );
        }
        // The first entry of the last save was never written (its sector is zeroes), its
        // second was: a torn write, truncated from the start of the save.
        let dir = tmp.path().join("torn");
        fs::create_dir(&dir).unwrap();
        copy_dir(&base, &dir);
        let mut bytes = full.clone();
        let first_end =
            last_save + record::align(record::HEADER_LEN + entry(1, 6, 30).compute_size() as usize);
        bytes[last_save..first_end].fill(0);
        fs::write(dir.join(&name), &bytes).unwrap();
        let (_, got) = Wal::open_with(&dir, WalSnapshot::default(), small()).unwrap();
        assert_eq!(got.entries.len(), 5);
        assert_eq!(got.hard_state, hs(1, 1, 5));
    }

    fn written_end(bytes: &[u8]) -> usize {
        bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1)
    }

    #[test]
    fn damage_in_an_earlier_segment_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let mut wal = Wal::create_with(dir, b"m", small()).unwrap();
        for i in 1..=100 {
            wal.save(&hs(1, 1, i), &[entry(1, i, 100)]).unwrap();
        }
        drop(wal);
        let first = segment_files(dir).remove(0);
        let mut bytes = fs::read(&first).unwrap();
        let at = bytes.len() - 10; // inside the last record of a finished segment
        bytes[at] ^= 1;
        fs::write(&first, bytes).unwrap();
        assert!(matches!(
            Wal::open_with(dir, WalSnapshot::default(), small()),
            Err(Error::Corrupt { path, .. }) if path == first
        ));
    }

    #[test]
    fn conflicting_entries_replace_the_tail() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let mut wal = Wal::create_with(dir, b"m", small()).unwrap();
        let ents: Vec<Entry> = (1..=5).map(|i| entry(1, i, 8)).collect();
        wal.save(&hs(1, 1, 2), &ents).unwrap();
        wal.save(&hs(2, 2, 2), &[entry(2, 3, 8), entry(2, 4, 8)])
            .unwrap();
        drop(wal);
        let (mut wal, got) = Wal::open_with(dir, WalSnapshot::default(), small()).unwrap();
        assert_eq!(indexes(&got), [(1, 1), (1, 2), (2, 3), (2, 4)]);
        // A hole in the log is refused.
        wal.save(&HardState::default(), &[entry(2, 7, 8)]).unwrap();
        drop(wal);
        assert!(matches!(
            Wal::open_with(dir, WalSnapshot::default(), small()),
            Err(Error::EntryGap { last: 4, got: 7 })
        ));
    }

    #[test]
    fn open_at_a_snapshot() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let mut wal = Wal::create_with(dir, b"m", small()).unwrap();
        let ents: Vec<Entry> = (1..=10).map(|i| entry(1, i, 8)).collect();
        wal.save(&hs(1, 1, 10), &ents).unwrap();
        let snap = WalSnapshot { index: 5, term: 1 };
        wal.save_snapshot(snap).unwrap();
        wal.save(&hs(1, 1, 11), &[entry(1, 11, 8), entry(1, 12, 8)])
            .unwrap();
        drop(wal);
        let (_, got) = Wal::open_with(dir, snap, small()).unwrap();
        assert_eq!(got.entries.first().map(|e| e.index), Some(6));
        assert_eq!(got.entries.last().map(|e| e.index), Some(12));
        assert_eq!(got.hard_state, hs(1, 1, 11));
        assert!(matches!(
            Wal::open_with(dir, WalSnapshot { index: 5, term: 2 }, small()),
            Err(Error::SnapshotMismatch { found_term: 1, .. })
        ));
        assert!(matches!(
            Wal::open_with(dir, WalSnapshot { index: 6, term: 1 }, small()),
            Err(Error::SnapshotNotFound(_))
        ));
        assert_eq!(
            Wal::valid_snapshots(dir).unwrap(),
            [WalSnapshot::default(), snap]
        );
    }

    /// Opening at each snapshot after one scan gives what a read from that snapshot gives,
    /// for the newest marker (no second read) and older or unknown ones (read again): same
    /// entries, positions, payloads kept, hard state, error, and the same WAL to append to.
    #[test]
    fn a_scan_opens_as_a_read_from_the_snapshot() {
        // A leader: saves run ahead of each snapshot marker; one conflict; old segments go.
        let leader = |dir: &Path, opts: WalOptions| {
            let mut wal = Wal::create_with(dir, b"m", opts).unwrap();
            let mut next = 1;
            for round in 0..8u64 {
                let term = 1 + round / 3;
                let ents: Vec<Entry> = (next..next + 20).map(|i| entry(term, i, 90)).collect();
                wal.save(&hs(term, 1, next + 10), &ents).unwrap();
                wal.save_snapshot(WalSnapshot {
                    index: next + 10,
                    term,
                })
                .unwrap();
                next += 20;
            }
            wal.save(&hs(4, 1, next - 10), &[entry(4, next - 3, 50)])
                .unwrap();
            wal.release_to(60).unwrap();
        };
        // A follower that got a snapshot beyond its log, then entries after it.
        let follower = |dir: &Path, opts: WalOptions| {
            let mut wal = Wal::create_with(dir, b"m", opts).unwrap();
            let ents: Vec<Entry> = (1..=10).map(|i| entry(1, i, 90)).collect();
            wal.save(&hs(1, 1, 10), &ents).unwrap();
            wal.save(&hs(2, 1, 50), &[]).unwrap();
            wal.save_snapshot(WalSnapshot { index: 50, term: 2 })
                .unwrap();
            let ents: Vec<Entry> = (51..=60).map(|i| entry(2, i, 90)).collect();
            wal.save(&hs(2, 1, 55), &ents).unwrap();
        };
        type Write = dyn Fn(&Path, WalOptions);
        for (name, write) in [("leader", &leader as &Write), ("follower", &follower)] {
            for budget in [usize::MAX, 300, 0] {
                let opts = WalOptions {
                    payload_budget: budget,
                    ..small()
                };
                let tmp = tempfile::tempdir().unwrap();
                let dir = tmp.path().join("wal");
                write(&dir, opts);
                let mut snaps = Wal::valid_snapshots(&dir).unwrap();
                assert!(snaps.len() > 1, "{name}");
                let newest = *snaps.last().unwrap();
                snaps.extend([
                    WalSnapshot::default(),
                    WalSnapshot { index: 50, term: 9 },
                    WalSnapshot { index: 7, term: 1 },
                ]);
                for snap in snaps {
                    let what = format!("{name}, budget {budget}, at {snap:?}");
                    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
                    for copy in [&a, &b] {
                        fs::create_dir(copy).unwrap();
                        copy_dir(&dir, copy);
                    }
                    let scan = Wal::scan(&a, opts).unwrap();
                    assert_eq!(scan.valid_snapshots(), Wal::valid_snapshots(&b).unwrap());
                    // The newest snapshot needs no second read.
                    assert_eq!(
                        scan.out.scanned_after == Some(snap),
                        snap == newest,
                        "{what}"
                    );
                    let scanned = scan.open_at(snap);
                    let read = Wal::open_with(&b, snap, opts);
                    match (scanned, read) {
                        (Ok((mut wal_a, got_a)), Ok((mut wal_b, got_b))) => {
                            assert_eq!(got_a, got_b, "{what}");
                            assert_eq!(wal_a.first_index(), wal_b.first_index(), "{what}");
                            let last = got_b.entries.last().map_or(snap.index, |e| e.index);
                            for wal in [&mut wal_a, &mut wal_b] {
                                wal.save(&hs(5, 1, last), &[entry(5, last + 1, 9)]).unwrap();
                            }
                            drop((wal_a, wal_b));
                            assert_eq!(
                                Wal::read(&a, snap).unwrap(),
                                Wal::read(&b, snap).unwrap(),
                                "{what}"
                            );
                        }
                        (Err(e), Err(f)) => {
                            let in_b = e
                                .to_string()
                                .replace(a.to_str().unwrap(), b.to_str().unwrap());
                            assert_eq!(in_b, f.to_string(), "{what}");
                        }
                        (a, b) => panic!("{what}: scan {:?}, read {:?}", a.err(), b.err()),
                    }
                    for copy in [&a, &b] {
                        fs::remove_dir_all(copy).unwrap();
                    }
                }
            }
        }
    }

    #[test]
    fn release_to_deletes_old_segments() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let mut wal = Wal::create_with(dir, b"m", small()).unwrap();
        let mut saved = Vec::new();
        for i in 1..=200 {
            wal.save(&hs(1, 1, i), &[entry(1, i, 100)]).unwrap();
            saved.extend_from_slice(wal.saved_positions());
        }
        let snap = WalSnapshot {
            index: 150,
            term: 1,
        };
        wal.save_snapshot(snap).unwrap();
        let before = segment_files(dir).len();
        wal.release_to(150).unwrap();
        let after = segment::list_segments(dir).unwrap();
        assert!(after.len() < before, "{} -> {}", before, after.len());
        assert!(after[0].index <= 150);
        // Every entry from the first index kept on can still be read back; the first cannot.
        let first = wal.first_index();
        assert!(first > 1 && first <= 150, "{first}");
        let kept = Wal::read_entries(dir, &saved[first as usize - 1..]).unwrap();
        assert_eq!(kept.first().map(|e| e.index), Some(first));
        assert!(Wal::read_entries(dir, &saved[..1]).is_err());
        wal.save(&hs(1, 1, 201), &[entry(1, 201, 100)]).unwrap();
        drop(wal);
        let (mut wal, got) = Wal::open_with(dir, snap, small()).unwrap();
        assert_eq!(got.entries.first().map(|e| e.index), Some(151));
        assert_eq!(got.entries.len(), 51);
        assert_eq!(got.hard_state, hs(1, 1, 201));
        assert!(matches!(
            Wal::open_with(dir, WalSnapshot::default(), small()),
            Err(Error::SegmentNotFound { index: 0, .. })
        ));
        // Never the last segment.
        wal.release_to(u64::MAX).unwrap();
        assert_eq!(segment_files(dir).len(), 1);
        wal.save(&hs(1, 1, 202), &[entry(1, 202, 100)]).unwrap();
    }

    /// Power-loss mode drops every directory change not followed by a directory fsync: the
    /// segments cut and released, and the WAL dir itself, must survive that.
    #[test]
    fn directory_changes_survive_a_power_loss() {
        crate::dir_ops::test_mode::set(true);
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("wal");
        let mut wal = Wal::create_with(&dir, b"m", small()).unwrap();
        let ents: Vec<Entry> = (1..=200).map(|i| entry(1, i, 100)).collect();
        for chunk in ents.chunks(3) {
            wal.save(&hs(1, 1, chunk[0].index), chunk).unwrap();
        }
        let snap = WalSnapshot {
            index: 150,
            term: 1,
        };
        wal.save_snapshot(snap).unwrap();
        wal.release_to(snap.index).unwrap();
        let kept = segment_files(&dir);
        assert!(kept.len() > 2, "{kept:?}");
        drop(wal);
        crate::dir_ops::drop_unsynced(&[dir.clone(), tmp.path().to_path_buf()]).unwrap();
        crate::dir_ops::test_mode::set(false);
        assert_eq!(segment_files(&dir), kept);
        let (_, got) = Wal::open_with(&dir, snap, small()).unwrap();
        assert_eq!(got.entries, ents[150..]);
    }

    #[test]
    fn half_created_segment_is_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        drop(Wal::create_with(dir, b"m", small()).unwrap());
        let tmp_seg = dir.join("0000000000000001-0000000000000001.wal.tmp");
        fs::write(&tmp_seg, b"half").unwrap();
        let (_, got) = Wal::open_with(dir, WalSnapshot::default(), small()).unwrap();
        assert!(got.entries.is_empty());
        assert!(!tmp_seg.exists());
    }

    /// Entries read back from where a save put them, or from where a read found them, are
    /// the entries saved, across segments and after a rewrite; a read within a payload budget
    /// drops the oldest payloads only.
    #[test]
    fn entries_read_back_from_their_positions() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("wal");
        let mut wal = Wal::create_with(&dir, b"m", small()).unwrap();
        let mut saved = Vec::new();
        let mut log: Vec<Entry> = Vec::new();
        for batch in 0..20u64 {
            let ents: Vec<Entry> = (1..=3).map(|i| entry(1, batch * 3 + i, 300)).collect();
            wal.save(&hs(1, 1, batch * 3), &ents).unwrap();
            saved.extend_from_slice(wal.saved_positions());
            log.extend(ents);
        }
        // A new leader rewrites the tail from index 55.
        let rewrite: Vec<Entry> = (55..=58).map(|i| entry(2, i, 100)).collect();
        wal.save(&hs(2, 2, 54), &rewrite).unwrap();
        saved.truncate(54);
        saved.extend_from_slice(wal.saved_positions());
        log.truncate(54);
        log.extend(rewrite);
        assert!(segment_files(&dir).len() > 2, "the entries span segments");
        assert_eq!(Wal::read_entries(&dir, &saved).unwrap(), log);
        assert_eq!(
            Wal::read_entries(&dir, &saved[10..12]).unwrap(),
            log[10..12]
        );
        drop(wal);

        let (_, all) = Wal::open_with(&dir, WalSnapshot::default(), small()).unwrap();
        assert_eq!(all.entries, log);
        assert_eq!(all.positions, saved);
        assert_eq!(all.payloads_from, 0);

        let budget = WalOptions {
            payload_budget: 1000,
            ..small()
        };
        let (_, some) = Wal::open_with(&dir, WalSnapshot::default(), budget).unwrap();
        assert_eq!(some.positions, saved);
        let kept = &some.entries[some.payloads_from..];
        assert_eq!(kept, &log[some.payloads_from..]);
        assert!(kept.iter().map(|e| e.data.len()).sum::<usize>() <= 1000);
        assert!(some.payloads_from > 40, "{}", some.payloads_from);
        for (e, full) in some.entries[..some.payloads_from].iter().zip(&log) {
            assert!(e.data.is_empty());
            assert_eq!((e.index, e.term), (full.index, full.term));
        }
        let back = Wal::read_entries(&dir, &some.positions[..some.payloads_from]).unwrap();
        assert_eq!(back, log[..some.payloads_from]);

        // An entry in a segment that is gone cannot be read back.
        fs::remove_file(&segment_files(&dir)[0]).unwrap();
        let err = Wal::read_entries(&dir, &saved[..1]).unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    }
}
