//! Reading segments back: replaying records, and telling a torn tail from corruption.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt as _;
use std::path::Path;

use protobuf::Message;
use raft::eraftpb::{Entry, HardState};

use super::error::{io_err, Error, Result};
use super::record::{self, Record, RecordType, Stop, FLAG_SYNC};
use super::segment::{list_segments, Segment};
use super::{EntryPos, WalContents, WalSnapshot};

/// What reading the WAL found, including where the writer should resume.
pub(crate) struct ReadOutcome {
    pub contents: WalContents,
    /// Every segment in the directory, oldest first.
    pub segments: Vec<Segment>,
    /// Snapshot markers seen, in order.
    pub markers: Vec<WalSnapshot>,
    /// Where the valid records of the last segment end.
    pub tail_end: u64,
    /// Bytes after `tail_end` are not all zero (a torn write): zero them before appending.
    pub tail_dirty: bool,
    /// Sync epoch of the last valid record.
    pub epoch: u32,
    /// Lower bound for the index of the next entry minus one (names the next segment).
    pub last_index: u64,
    /// For [`Mode::Scan`]: the snapshot the entries of `contents` follow, if the scan can
    /// tell (see [`Scan`]).
    pub scanned_after: Option<WalSnapshot>,
}

/// Whether replay starts at a snapshot (and insists on finding its marker), reads every
/// segment only to list snapshot markers, or reads every segment once for both: the markers,
/// and the entries after the newest marker.
#[derive(Clone, Copy)]
pub(crate) enum Mode {
    FromSnapshot(WalSnapshot),
    AllMarkers,
    Scan,
}

/// Reads the WAL in `dir`; of the entries collected, only the newest `payload_budget` bytes of
/// payloads are kept (see [`super::WalOptions::payload_budget`]).
pub(crate) fn read_wal(dir: &Path, mode: Mode, payload_budget: usize) -> Result<ReadOutcome> {
    let segments = list_segments(dir)?;
    let snap = match mode {
        Mode::FromSnapshot(s) => s,
        Mode::AllMarkers | Mode::Scan => WalSnapshot::default(),
    };
    let start = match mode {
        Mode::FromSnapshot(s) => segments.iter().rposition(|seg| seg.index <= s.index),
        Mode::AllMarkers | Mode::Scan => (!segments.is_empty()).then_some(0),
    }
    .ok_or_else(|| Error::SegmentNotFound {
        dir: dir.to_path_buf(),
        index: snap.index,
    })?;
    for pair in segments[start..].windows(2) {
        if pair[1].seq != pair[0].seq + 1 {
            return Err(Error::SegmentGap {
                path: pair[1].path.clone(),
                prev: pair[0].seq,
            });
        }
    }

    let mut replay = Replay {
        snap,
        collect_entries: !matches!(mode, Mode::AllMarkers),
        scan: matches!(mode, Mode::Scan).then(Scan::default),
        metadata: None,
        hard_state: HardState::default(),
        entries: Vec::new(),
        positions: Vec::new(),
        payload_budget,
        payloads_from: 0,
        resident_bytes: 0,
        markers: Vec::new(),
        found_snap: false,
        last_index: snap.index,
    };
    let last = segments.len() - 1;
    let mut tail = SegmentEnd::default();
    for (i, seg) in segments.iter().enumerate().skip(start) {
        tail = read_segment(seg, i == last, &mut replay)?;
    }
    if let Mode::FromSnapshot(s) = mode {
        if !replay.found_snap {
            return Err(Error::SnapshotNotFound(s));
        }
    }
    let scanned_after = replay
        .scan
        .filter(|scan| scan.anchored)
        .map(|_| replay.snap);
    Ok(ReadOutcome {
        contents: WalContents {
            metadata: replay.metadata.unwrap_or_default(),
            hard_state: replay.hard_state,
            entries: replay.entries,
            positions: replay.positions,
            payloads_from: replay.payloads_from,
        },
        segments,
        markers: replay.markers,
        tail_end: tail.end as u64,
        tail_dirty: tail.dirty,
        epoch: tail.epoch,
        last_index: replay.last_index,
        scanned_after,
    })
}

/// A scan replays entries as if opened at the newest snapshot marker seen so far: at each
/// marker, the entries it covers are dropped. The result is what opening at the newest marker
/// gives, and a caller that wants an older snapshot reads again from it.
#[derive(Clone, Copy, Default)]
struct Scan {
    /// `Replay::snap` is the newest marker, and the entries kept follow it without a gap.
    /// Otherwise (before the first marker, or after a gap) the entries kept begin wherever
    /// the oldest entry read since does, and opening at a marker reads again.
    anchored: bool,
}

/// The state built up while records are replayed in order.
struct Replay {
    snap: WalSnapshot,
    collect_entries: bool,
    /// Set in a [`Mode::Scan`].
    scan: Option<Scan>,
    metadata: Option<Vec<u8>>,
    hard_state: HardState,
    entries: Vec<Entry>,
    /// Where each of `entries` is.
    positions: Vec<EntryPos>,
    payload_budget: usize,
    /// `entries` before this one have had their payload dropped.
    payloads_from: usize,
    /// Payload bytes of `entries[payloads_from..]`.
    resident_bytes: usize,
    markers: Vec<WalSnapshot>,
    found_snap: bool,
    last_index: u64,
}

impl Replay {
    fn apply(&mut self, rec: &Record<'_>, seg: &Segment, off: usize) -> Result<()> {
        let corrupt = |reason: String| Error::Corrupt {
            path: seg.path.clone(),
            offset: off as u64,
            reason,
        };
        match rec.ty {
            RecordType::Metadata => match &self.metadata {
                None => self.metadata = Some(rec.data.to_vec()),
                Some(m) if m != rec.data => return Err(Error::MetadataConflict),
                Some(_) => {}
            },
            // Listing the markers needs no entry: they are not decoded then.
            RecordType::Entry if !self.collect_entries => {}
            RecordType::Entry => {
                let e = Entry::parse_from_bytes(rec.data)
                    .map_err(|e| corrupt(format!("undecodable entry: {e}")))?;
                self.last_index = self.last_index.max(e.index);
                self.scan_entry(e.index);
                if e.index > self.snap.index {
                    // Raft conflict resolution: a rewritten index replaces it and all after.
                    let pos = e.index - self.snap.index - 1;
                    if pos > self.entries.len() as u64 {
                        return Err(Error::EntryGap {
                            last: self.snap.index + self.entries.len() as u64,
                            got: e.index,
                        });
                    }
                    let at = EntryPos {
                        segment: seg.seq,
                        offset: off as u64,
                        len: rec.data.len() as u32,
                    };
                    self.push_entry(pos as usize, e, at);
                }
            }
            RecordType::HardState => {
                self.hard_state = HardState::parse_from_bytes(rec.data)
                    .map_err(|e| corrupt(format!("undecodable hard state: {e}")))?;
            }
            RecordType::Snapshot => {
                let m = decode_marker(rec.data)
                    .ok_or_else(|| corrupt("snapshot marker is not 16 bytes".into()))?;
                // A scan has no snapshot to look for: it checks the one chosen afterwards.
                if m.index == self.snap.index && self.scan.is_none() {
                    if m.term != self.snap.term {
                        return Err(Error::SnapshotMismatch {
                            wanted: self.snap,
                            found_term: m.term,
                        });
                    }
                    self.found_snap = true;
                }
                self.last_index = self.last_index.max(m.index);
                self.markers.push(m);
                self.scan_marker(m);
            }
        }
        Ok(())
    }
}

impl Replay {
    /// In a scan, before an entry at `index` is replayed after `self.snap`.
    fn scan_entry(&mut self, index: u64) {
        let Some(mut scan) = self.scan else {
            return;
        };
        let next = self.snap.index + self.entries.len() as u64 + 1;
        if index > next {
            // A gap: opening at the newest marker fails, as the exact replay will tell.
            scan.anchored = false;
        }
        if !scan.anchored && (self.entries.is_empty() || index <= self.snap.index || index > next) {
            // The log read so far starts at this entry.
            self.drop_front(self.entries.len());
            self.snap.index = index - 1;
        }
        self.scan = Some(scan);
    }

    /// In a scan, a snapshot marker: the entries it covers are dropped.
    fn scan_marker(&mut self, m: WalSnapshot) {
        let Some(mut scan) = self.scan else {
            return;
        };
        // Older than the newest marker, or than the entries kept: opening there reads again.
        if m.index < self.snap.index {
            return;
        }
        let covered = m.index - self.snap.index;
        let covered =
            usize::try_from(covered).map_or(self.entries.len(), |c| c.min(self.entries.len()));
        scan.anchored = true;
        self.scan = Some(scan);
        self.drop_front(covered);
        self.snap = m;
    }

    /// Drops the first `n` entries.
    fn drop_front(&mut self, n: usize) {
        let resident: usize = self.entries[self.payloads_from..]
            .iter()
            .take(n.saturating_sub(self.payloads_from))
            .map(|e| e.data.len())
            .sum();
        self.resident_bytes -= resident;
        self.entries.drain(..n);
        self.positions.drain(..n);
        self.payloads_from = self.payloads_from.saturating_sub(n);
    }

    /// Puts `e` at `pos`, dropping the entries from there on, then drops the payloads of the
    /// oldest entries until those kept fit the budget (the newest entry keeps its own).
    fn push_entry(&mut self, pos: usize, e: Entry, at: EntryPos) {
        if pos < self.entries.len() {
            let start = pos.max(self.payloads_from);
            let dropped: usize = self.entries[start..].iter().map(|e| e.data.len()).sum();
            self.resident_bytes -= dropped;
            self.entries.truncate(pos);
            self.positions.truncate(pos);
            self.payloads_from = self.payloads_from.min(pos);
        }
        self.resident_bytes += e.data.len();
        self.entries.push(e);
        self.positions.push(at);
        while self.resident_bytes > self.payload_budget
            && self.payloads_from + 1 < self.entries.len()
        {
            let old = &mut self.entries[self.payloads_from];
            self.resident_bytes -= old.data.len();
            old.data = Default::default();
            self.payloads_from += 1;
        }
    }
}

/// Reads back the entries recorded at `positions`, in order. Records of one segment that
/// follow each other are read with one read.
pub(crate) fn read_entries(dir: &Path, positions: &[EntryPos]) -> Result<Vec<Entry>> {
    let segments = list_segments(dir)?;
    let mut out = Vec::with_capacity(positions.len());
    for run in positions.chunk_by(|a, b| a.segment == b.segment && b.offset > a.offset) {
        let first = run[0];
        let last = run[run.len() - 1];
        let Some(seg) = segments.iter().find(|s| s.seq == first.segment) else {
            return Err(Error::Corrupt {
                path: dir.to_path_buf(),
                offset: first.offset,
                reason: format!("segment {:#x} holding a raft entry is gone", first.segment),
            });
        };
        let end = last.offset as usize + record::align(record::HEADER_LEN + last.len as usize);
        let mut buf = vec![0u8; end - first.offset as usize];
        let file = File::open(&seg.path).map_err(io_err("reading", &seg.path))?;
        file.read_exact_at(&mut buf, first.offset)
            .map_err(io_err("reading", &seg.path))?;
        for p in run {
            let corrupt = |reason: String| Error::Corrupt {
                path: seg.path.clone(),
                offset: p.offset,
                reason,
            };
            let off = (p.offset - first.offset) as usize;
            let rec = match record::decode(&buf, off) {
                Ok(rec) if rec.ty == RecordType::Entry => rec,
                Ok(rec) => return Err(corrupt(format!("{:?} record where an entry was", rec.ty))),
                Err(stop) => return Err(corrupt(format!("unreadable entry record: {stop:?}"))),
            };
            let e = Entry::parse_from_bytes(rec.data)
                .map_err(|e| corrupt(format!("undecodable entry: {e}")))?;
            out.push(e);
        }
    }
    Ok(out)
}

pub(crate) fn encode_marker(s: WalSnapshot) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&s.index.to_le_bytes());
    b[8..].copy_from_slice(&s.term.to_le_bytes());
    b
}

fn decode_marker(b: &[u8]) -> Option<WalSnapshot> {
    let b: &[u8; 16] = b.try_into().ok()?;
    Some(WalSnapshot {
        index: u64::from_le_bytes(b[..8].try_into().expect("8 bytes")),
        term: u64::from_le_bytes(b[8..].try_into().expect("8 bytes")),
    })
}

#[derive(Default)]
struct SegmentEnd {
    end: usize,
    dirty: bool,
    epoch: u32,
}

/// Replays one segment; returns where its valid records end.
///
/// A save's records are applied only once its last (sync-flagged) record is read, so a
/// save cut short by a crash is dropped whole: after recovery the WAL holds a prefix of the
/// saves made, never part of one.
fn read_segment(seg: &Segment, is_last: bool, replay: &mut Replay) -> Result<SegmentEnd> {
    let mut file = SegmentFile::open(seg)?;
    let mut off = 0;
    // (epoch, flags) of the last valid record.
    let mut prev: Option<(u32, u8)> = None;
    // Epoch of the last complete save.
    let mut synced_epoch = 0;
    // Offsets of the records of the save in progress.
    let mut pending: Vec<usize> = Vec::new();
    let stop = loop {
        file.load_record_at(off)?;
        match record::decode(&file.buf, off) {
            Ok(rec) => {
                pending.push(off);
                prev = Some((rec.epoch, rec.flags));
                off = rec.end;
                if rec.flags & FLAG_SYNC != 0 {
                    synced_epoch = rec.epoch;
                    for p in pending.drain(..) {
                        let rec = record::decode(&file.buf, p).expect("decoded before");
                        replay.apply(&rec, seg, p)?;
                    }
                }
            }
            Err(stop) => break stop,
        }
    };
    let clean = stop == Stop::End || (stop == Stop::Zeroes && file.zero_from(off)?);
    if clean && pending.is_empty() {
        return Ok(SegmentEnd {
            end: off,
            dirty: false,
            epoch: synced_epoch,
        });
    }
    let reason = match stop {
        _ if clean => "the last save has no end",
        Stop::Invalid(r) => r,
        _ => "stray bytes after the end of the records",
    };
    let bad = pending.first().copied().unwrap_or(off);
    let corrupt = || Error::Corrupt {
        path: seg.path.clone(),
        offset: bad as u64,
        reason: reason.to_string(),
    };
    // A segment's head records are synced before it gets its name, and every segment but the
    // last was synced before the next was cut: damage there is never a crash.
    let Some(prev) = prev else {
        return Err(corrupt());
    };
    if !is_last {
        return Err(corrupt());
    }
    // Telling a torn write from damage looks at everything after the records.
    file.load_to(file.len)?;
    let buf = &file.buf[..];
    if !clean {
        if matches!(stop, Stop::Invalid(_)) && !record::looks_torn(buf, off) {
            return Err(Error::Corrupt {
                path: seg.path.clone(),
                offset: off as u64,
                reason: format!(
                    "{reason} in a whole record (no sector of it is unwritten): \
                     damaged after it was written, not torn by a crash"
                ),
            });
        }
        let followers = followers(buf, off);
        if !followers.is_empty() && !torn_in_last_save(prev, &followers) {
            return Err(Error::Corrupt {
                path: seg.path.clone(),
                offset: off as u64,
                reason: reason.to_string(),
            });
        }
    }
    tracing::warn!(
        path = %seg.path.display(),
        offset = bad,
        reason,
        "wal: the last save was torn by a crash, truncating it"
    );
    Ok(SegmentEnd {
        end: bad,
        dirty: true,
        epoch: synced_epoch,
    })
}

/// A segment read from its start as far as the records need, so that replaying a preallocated
/// segment holds its records in memory, not its whole (mostly zero) length.
struct SegmentFile<'a> {
    seg: &'a Segment,
    file: File,
    len: usize,
    /// The first `buf.len()` bytes of the segment.
    buf: Vec<u8>,
}

impl<'a> SegmentFile<'a> {
    /// How much more than asked for is read at once, to keep the number of reads small.
    const READ_AHEAD: usize = 256 * 1024;

    fn open(seg: &'a Segment) -> Result<Self> {
        let file = File::open(&seg.path).map_err(io_err("reading", &seg.path))?;
        let len = file.metadata().map_err(io_err("reading", &seg.path))?.len();
        let len = usize::try_from(len).map_err(|_| Error::Corrupt {
            path: seg.path.clone(),
            offset: 0,
            reason: "segment too large to read".into(),
        })?;
        Ok(SegmentFile {
            seg,
            file,
            len,
            buf: Vec::new(),
        })
    }

    /// Loads the whole extent of the record at `off`, as far as its header says it reaches
    /// (and the file allows): decoding it then sees what it would see in the whole file.
    fn load_record_at(&mut self, off: usize) -> Result<()> {
        self.load_to(off.saturating_add(record::HEADER_LEN))?;
        let Some(header) = self.buf.get(off..off + record::HEADER_LEN) else {
            return Ok(());
        };
        let len = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes")) as usize;
        self.load_to(off.saturating_add(record::align(record::HEADER_LEN + len)))
    }

    /// Loads the segment up to `end` (or its length, if shorter).
    fn load_to(&mut self, end: usize) -> Result<()> {
        let end = end.min(self.len);
        if end <= self.buf.len() {
            return Ok(());
        }
        let target = end.saturating_add(Self::READ_AHEAD).min(self.len);
        let want = target - self.buf.len();
        self.buf.reserve(want);
        (&mut self.file)
            .take(want as u64)
            .read_to_end(&mut self.buf)
            .map_err(io_err("reading", &self.seg.path))?;
        if self.buf.len() < end {
            // The file shrank under us: treat what is missing as the end of the file.
            self.len = self.buf.len();
        }
        Ok(())
    }

    /// Whether every byte from `off` to the end of the segment is zero, reading what is not
    /// loaded yet in blocks without keeping it.
    fn zero_from(&mut self, off: usize) -> Result<bool> {
        if off < self.buf.len() && !record::all_zero(&self.buf[off..]) {
            return Ok(false);
        }
        let mut block = vec![0u8; 64 * 1024];
        let mut at = self.buf.len().max(off);
        while at < self.len {
            let n = block.len().min(self.len - at);
            self.read_at(at, &mut block[..n])?;
            if !record::all_zero(&block[..n]) {
                return Ok(false);
            }
            at += n;
        }
        Ok(true)
    }

    fn read_at(&self, at: usize, out: &mut [u8]) -> Result<()> {
        self.file
            .read_exact_at(out, at as u64)
            .map_err(io_err("reading", &self.seg.path))
    }
}

/// (epoch, flags) of every valid record found after the damaged offset `from`.
fn followers(buf: &[u8], from: usize) -> Vec<(u32, u8)> {
    let mut out = Vec::new();
    let mut off = from;
    while let Some(start) = record::next_valid(buf, off) {
        let mut o = start;
        while let Ok(rec) = record::decode(buf, o) {
            out.push((rec.epoch, rec.flags));
            o = rec.end;
        }
        off = o;
    }
    out
}

/// Can the damage plus the valid records after it be the unsynced part of the final save?
///
/// Each save writes its records with one epoch, flags its last record, and fdatasyncs before
/// the next save begins. So only the records of the final epoch may be missing or
/// partly written; the damage is a crash artefact only if every record after it belongs to
/// the same epoch as the damaged one. That epoch is the previous record's if it did not end
/// a save, else the next one.
fn torn_in_last_save(prev: (u32, u8), followers: &[(u32, u8)]) -> bool {
    let (prev_epoch, prev_flags) = prev;
    let epoch = if prev_flags & FLAG_SYNC != 0 {
        prev_epoch.wrapping_add(1)
    } else {
        prev_epoch
    };
    let (last, before) = followers.split_last().expect("non-empty");
    last.0 == epoch && before.iter().all(|f| f.0 == epoch && f.1 & FLAG_SYNC == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torn_rule() {
        // Damage inside an unfinished save: followers continue that epoch.
        assert!(torn_in_last_save((3, 0), &[(3, 0), (3, FLAG_SYNC)]));
        // Damage at the start of a new save.
        assert!(torn_in_last_save((3, FLAG_SYNC), &[(4, 0), (4, FLAG_SYNC)]));
        // A later save exists: the damaged one was synced.
        assert!(!torn_in_last_save(
            (3, 0),
            &[(3, FLAG_SYNC), (4, FLAG_SYNC)]
        ));
        assert!(!torn_in_last_save((3, FLAG_SYNC), &[(5, FLAG_SYNC)]));
        // The rest of epoch 3 is missing yet epoch 4 was written: 3 had been synced.
        assert!(!torn_in_last_save((3, 0), &[(4, FLAG_SYNC)]));
        assert!(!torn_in_last_save((3, FLAG_SYNC), &[(3, 0)]));
    }

    #[test]
    fn markers_roundtrip() {
        let s = WalSnapshot {
            index: 0x0102030405060708,
            term: 9,
        };
        assert_eq!(decode_marker(&encode_marker(s)), Some(s));
        assert_eq!(decode_marker(&[0; 15]), None);
    }
}
