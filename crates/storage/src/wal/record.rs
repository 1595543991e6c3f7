//! Record framing: how one record is laid out in a segment, encoded and checked.
//!
//! The layout is described in the module doc of [`crate::wal`].

use super::error::{Error, Result};

/// Bytes in a record header.
pub(crate) const HEADER_LEN: usize = 16;
/// Every record starts at a multiple of this many bytes.
pub(crate) const ALIGN: usize = 8;
/// Flag bit: this record is the last one written before an fdatasync.
pub(crate) const FLAG_SYNC: u8 = 1;
/// The unit a disk writes whole or not at all: a crash tears writes at sector boundaries.
pub(crate) const SECTOR: usize = 512;

/// What a record holds. The numbers are on disk; never reuse one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum RecordType {
    /// The caller's opaque metadata; first record of every segment.
    Metadata = 1,
    /// A raft `Entry`, protobuf encoded.
    Entry = 2,
    /// A raft `HardState`, protobuf encoded.
    HardState = 3,
    // 4 is etcd's rolling-crc record; our checksums are per record, so it is not used.
    /// A snapshot marker: index and term, 8 bytes each, little endian.
    Snapshot = 5,
}

impl RecordType {
    fn from_u8(b: u8) -> Option<RecordType> {
        match b {
            1 => Some(RecordType::Metadata),
            2 => Some(RecordType::Entry),
            3 => Some(RecordType::HardState),
            5 => Some(RecordType::Snapshot),
            _ => None,
        }
    }
}

/// A record decoded from a buffer.
#[derive(Debug)]
pub(crate) struct Record<'a> {
    pub ty: RecordType,
    pub flags: u8,
    /// The sync epoch the record was written in (see the module doc).
    pub epoch: u32,
    pub data: &'a [u8],
    /// Offset just past the record and its padding: where the next one starts.
    pub end: usize,
}

/// Why decoding stopped at an offset.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    /// The offset is exactly the end of the buffer.
    End,
    /// The header is all zero bytes: preallocated space, nothing was written here.
    Zeroes,
    /// Something is there, but not a whole, valid record.
    Invalid(&'static str),
}

/// Rounds `n` up to the record alignment.
pub(crate) fn align(n: usize) -> usize {
    n.div_ceil(ALIGN) * ALIGN
}

/// Appends one framed record to `buf`; `write_data` appends the payload.
///
/// On error `buf` is left as it was.
pub(crate) fn encode_with(
    buf: &mut Vec<u8>,
    ty: RecordType,
    flags: u8,
    epoch: u32,
    write_data: impl FnOnce(&mut Vec<u8>) -> protobuf::ProtobufResult<()>,
) -> Result<()> {
    let start = buf.len();
    buf.resize(start + HEADER_LEN, 0);
    if let Err(e) = write_data(buf) {
        buf.truncate(start);
        return Err(Error::Encode(e));
    }
    let len = buf.len() - start - HEADER_LEN;
    let Ok(len32) = u32::try_from(len) else {
        buf.truncate(start);
        return Err(Error::TooLarge(len));
    };
    let header = &mut buf[start..start + HEADER_LEN];
    header[4..8].copy_from_slice(&len32.to_le_bytes());
    header[8] = ty as u8;
    header[9] = flags;
    // bytes 10..12 stay zero (reserved)
    header[12..16].copy_from_slice(&epoch.to_le_bytes());
    let crc = crc32c::crc32c(&buf[start + 4..]);
    buf[start..start + 4].copy_from_slice(&crc.to_le_bytes());
    buf.resize(start + align(HEADER_LEN + len), 0);
    Ok(())
}

/// The data length in the header of the record `framed` starts with.
pub(crate) fn data_len(framed: &[u8]) -> u32 {
    u32::from_le_bytes(framed[4..8].try_into().expect("4 bytes"))
}

/// Appends a record whose payload is already in memory.
pub(crate) fn encode(
    buf: &mut Vec<u8>,
    ty: RecordType,
    flags: u8,
    epoch: u32,
    data: &[u8],
) -> Result<()> {
    encode_with(buf, ty, flags, epoch, |b| {
        b.extend_from_slice(data);
        Ok(())
    })
}

/// Decodes the record starting at `off` (a multiple of [`ALIGN`]).
pub(crate) fn decode(buf: &[u8], off: usize) -> Result<Record<'_>, Stop> {
    if off >= buf.len() {
        return Err(Stop::End);
    }
    let rest = &buf[off..];
    if rest.len() < HEADER_LEN {
        return Err(if all_zero(rest) {
            Stop::Zeroes
        } else {
            Stop::Invalid("partial record header")
        });
    }
    let header = &rest[..HEADER_LEN];
    if all_zero(header) {
        return Err(Stop::Zeroes);
    }
    let crc = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes"));
    let len = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes")) as usize;
    let ty = RecordType::from_u8(header[8]).ok_or(Stop::Invalid("unknown record type"))?;
    let flags = header[9];
    if flags & !FLAG_SYNC != 0 || header[10..12] != [0, 0] {
        return Err(Stop::Invalid("unknown flags in record header"));
    }
    let epoch = u32::from_le_bytes(header[12..16].try_into().expect("4 bytes"));
    if len > rest.len() - HEADER_LEN {
        return Err(Stop::Invalid("record runs past the end of the file"));
    }
    let body = &rest[4..HEADER_LEN + len];
    if crc32c::crc32c(body) != crc {
        return Err(Stop::Invalid("crc mismatch"));
    }
    let framed = align(HEADER_LEN + len);
    if framed > rest.len() {
        return Err(Stop::Invalid(
            "record padding runs past the end of the file",
        ));
    }
    Ok(Record {
        ty,
        flags,
        epoch,
        data: &rest[HEADER_LEN..HEADER_LEN + len],
        end: off + framed,
    })
}

/// The first offset after `from` (aligned, exclusive) where a valid record starts.
pub(crate) fn next_valid(buf: &[u8], from: usize) -> Option<usize> {
    let mut off = align(from + 1);
    while off + HEADER_LEN <= buf.len() {
        if decode(buf, off).is_ok() {
            return Some(off);
        }
        off += ALIGN;
    }
    None
}

/// Whether the record that fails to decode at `off` can be a write torn by a crash, by etcd's
/// rule (`isTornEntry` in its wal/decoder.go): a crash leaves whole sectors unwritten, so a
/// torn record is cut short by the end of the file, or has a sector-sized piece of its extent
/// (split at the file's sector boundaries) that is all zeroes. A complete record whose every
/// piece holds data, yet fails its checksum, was damaged after it was written.
pub(crate) fn looks_torn(buf: &[u8], off: usize) -> bool {
    let rest = &buf[off..];
    if rest.len() < HEADER_LEN {
        return true;
    }
    let len = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes")) as usize;
    let end = off + align(HEADER_LEN + len);
    if end > buf.len() {
        return true;
    }
    let mut start = off;
    while start < end {
        let stop = ((start / SECTOR + 1) * SECTOR).min(end);
        if all_zero(&buf[start..stop]) {
            return true;
        }
        start = stop;
    }
    false
}

/// Whether every byte of `b` is zero. A fresh segment's preallocated tail (tens of MiB) is
/// checked at every start, so it is compared a block at a time (a vectorized `memcmp`), not
/// byte by byte (about six instructions a byte).
pub(crate) fn all_zero(b: &[u8]) -> bool {
    const ZEROS: [u8; 4096] = [0; 4096];
    b.chunks(ZEROS.len()).all(|c| c == &ZEROS[..c.len()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_zero_sees_any_nonzero_byte() {
        assert!(all_zero(&[]));
        let mut b = vec![0u8; 3 * 4096 + 17];
        assert!(all_zero(&b));
        for i in [0, 4095, 4096, 3 * 4096, b.len() - 1] {
            b[i] = 1;
            assert!(!all_zero(&b), "byte {i}");
            b[i] = 0;
        }
    }

    #[test]
    fn roundtrip_and_alignment() {
        let mut buf = Vec::new();
        for (i, len) in [0usize, 1, 7, 8, 9, 100].into_iter().enumerate() {
            let data: Vec<u8> = (0..len).map(|b| b as u8 ^ 0x5a).collect();
            let start = buf.len();
            encode(&mut buf, RecordType::Entry, 0, i as u32, &data).unwrap();
            assert_eq!(buf.len() % ALIGN, 0);
            let rec = decode(&buf, start).unwrap();
            assert_eq!(rec.ty, RecordType::Entry);
            assert_eq!(rec.epoch, i as u32);
            assert_eq!(rec.data, &data[..]);
            assert_eq!(rec.end, buf.len());
        }
        assert_eq!(decode(&buf, buf.len()).unwrap_err(), Stop::End);
    }

    #[test]
    fn every_damage_is_detected() {
        let mut buf = Vec::new();
        encode(
            &mut buf,
            RecordType::HardState,
            FLAG_SYNC,
            7,
            b"hello world",
        )
        .unwrap();
        for i in 0..buf.len() {
            // Padding bytes are not covered by the checksum.
            if i >= HEADER_LEN + 11 {
                continue;
            }
            let mut bad = buf.clone();
            bad[i] ^= 0x01;
            assert!(decode(&bad, 0).is_err(), "flip at {i} went unnoticed");
        }
        for cut in 0..buf.len() {
            assert!(
                decode(&buf[..cut], 0).is_err(),
                "cut at {cut} went unnoticed"
            );
        }
    }

    #[test]
    fn torn_records_have_an_unwritten_sector() {
        // A record spanning three sectors, starting 104 bytes before the first boundary.
        let off = SECTOR - 104;
        let mut buf = vec![0u8; off];
        let data: Vec<u8> = (0..900u32).map(|i| (i % 251) as u8 | 1).collect();
        encode(&mut buf, RecordType::Entry, FLAG_SYNC, 3, &data).unwrap();
        buf.resize(3 * SECTOR, 0);
        let mut flipped = buf.clone();
        flipped[off + 600] ^= 0x04;
        assert!(decode(&flipped, off).is_err());
        assert!(!looks_torn(&flipped, off), "a bit flip is not a torn write");
        for sector in 0..3 {
            let mut torn = buf.clone();
            let from = (sector * SECTOR).max(off);
            torn[from..(sector + 1) * SECTOR].fill(0);
            assert!(looks_torn(&torn, off), "sector {sector} unwritten");
        }
        // Cut short by the end of the file.
        assert!(looks_torn(&buf[..off + 300], off));
        assert!(looks_torn(&buf[..off + 10], off));
    }

    #[test]
    fn zeroes_and_scanning() {
        let mut buf = vec![0u8; 64];
        assert_eq!(decode(&buf, 0).unwrap_err(), Stop::Zeroes);
        assert_eq!(next_valid(&buf, 0), None);
        encode(&mut buf, RecordType::Metadata, 0, 1, b"m").unwrap();
        assert_eq!(next_valid(&buf, 0), Some(64));
        assert_eq!(next_valid(&buf, 64), None);
    }
}
