//! Backend snapshots: the whole backend as one stream, for a Raft snapshot sent to a lagging or
//! new follower (etcd sends its bolt file; we send the tables' contents).
//!
//! # Consistency
//!
//! [`Backend::dump`] reads every table through one redb read transaction, so the stream is the
//! state of one commit: the `meta` consistent index in it names exactly the Raft entries whose
//! effects the other tables hold. Writes go on meanwhile; the read transaction only keeps the
//! pages it sees from being reused, so the file may grow during a long dump (and defrag waits
//! for it). [`Backend::begin_dump`] opens that transaction first, so the caller can learn the
//! consistent index (the snapshot's Raft index) before streaming.
//!
//! [`Backend::restore`] loads a stream into one write transaction that first empties every
//! table, checks the trailer, and only then commits, durably: a truncated or corrupt stream,
//! or a crash part way, leaves the old contents as they were.
//!
//! # Format (version 1)
//!
//! Integers are big endian. A stream is a header, records, and a trailer:
//!
//! ```text
//! header   "OXCDDUMP" (8 bytes) | version: u32 = 1
//! record   tag: u8, then by tag
//!            1 TABLE  name_len: u16 | name          the entries after it belong to this table
//!            2 ENTRY  key_len: u32 | key | value_len: u32 | value
//! trailer  tag: u8 = 0xFF | records: u64 | crc: u32
//! ```
//!
//! Each table of [`schema::ALL_TABLES`] appears once, in that order, its entries in key order;
//! `records` counts the TABLE and ENTRY records; `crc` is a CRC-32C of every byte before it,
//! from the magic to `records`. Zero bytes follow the trailer up to a multiple of 512 bytes:
//! etcd's snapshot files (bbolt pages) are such multiples, and etcd's own tools check it
//! before they look for the SHA-256 the Snapshot RPC appends. A reader must reject a table it
//! does not know, a table named twice, an entry before any table, a length past the end, a
//! count or CRC that does not match, and anything but that padding after the trailer.

use std::io::{self, BufReader, BufWriter, Read, Write};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use redb::{Durability, ReadableTable, TableHandle, WriteTransaction};

use super::{read_meta_u64, schema, slot, Backend, Error, Inner, ReadTxn, Result};

/// The first bytes of every stream.
pub const SNAPSHOT_MAGIC: &[u8; 8] = b"OXCDDUMP";

/// The format version written, and the only one read.
pub const SNAPSHOT_VERSION: u32 = 1;

const TAG_TABLE: u8 = 1;
const TAG_ENTRY: u8 = 2;
const TAG_TRAILER: u8 = 0xFF;

/// Longest table name a reader accepts; ours are all far shorter.
const MAX_TABLE_NAME: usize = 64;

/// How often [`Dump::write_to`] reports progress, in bytes written.
const PROGRESS_STEP: u64 = 1 << 20;

/// Buffer between the table iterators and the caller's writer (and the caller's reader and
/// the record parser): large enough that a record rarely costs a system call.
const IO_BUFFER: usize = 64 * 1024;

/// A point-in-time view of the whole backend, ready to be streamed. Holds a redb read
/// transaction: keep it no longer than the transfer takes.
pub struct Dump {
    txn: ReadTxn,
}

impl Dump {
    /// Index and term of the last Raft entry whose effects the dump holds (0 when none).
    pub fn consistent_index(&self) -> Result<(u64, u64)> {
        let meta = self.txn.open_table(schema::META)?;
        Ok((
            read_meta_u64(&meta, schema::META_CONSISTENT_INDEX)?.unwrap_or(0),
            read_meta_u64(&meta, schema::META_TERM)?.unwrap_or(0),
        ))
    }

    /// Writes the stream (see the module doc) to `out`, calling `progress` with the bytes
    /// written so far every MiB and once at the end; returns the stream's length in bytes.
    /// Holds one record at a time in memory, whatever the size of the backend.
    pub fn write_to(&self, out: &mut impl Write, mut progress: impl FnMut(u64)) -> Result<u64> {
        let started = Instant::now();
        let mut w = CrcWriter::new(out);
        let mut next_report = PROGRESS_STEP;
        w.put(SNAPSHOT_MAGIC)?;
        w.put(&SNAPSHOT_VERSION.to_be_bytes())?;
        let mut records = 0u64;
        for table in schema::ALL_TABLES {
            let name = table.name().as_bytes();
            w.put(&[TAG_TABLE])?;
            w.put(&(name.len() as u16).to_be_bytes())?;
            w.put(name)?;
            records += 1;
            let t = self.txn.open_table(table)?;
            for entry in t.iter()? {
                let (k, v) = entry?;
                let (k, v) = (k.value(), v.value());
                w.put(&[TAG_ENTRY])?;
                w.put(&len_u32(k.len())?.to_be_bytes())?;
                w.put(k)?;
                w.put(&len_u32(v.len())?.to_be_bytes())?;
                w.put(v)?;
                records += 1;
                if w.bytes >= next_report {
                    progress(w.bytes);
                    next_report = w.bytes + PROGRESS_STEP;
                }
            }
        }
        w.put(&[TAG_TRAILER])?;
        w.put(&records.to_be_bytes())?;
        let crc = w.crc;
        w.put(&crc.to_be_bytes())?;
        let padding = (PAD_TO - w.bytes % PAD_TO) % PAD_TO;
        w.put(&vec![0u8; padding as usize])?;
        let bytes = w.finish()?;
        progress(bytes);
        metrics::histogram!("etcd_disk_backend_snapshot_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        tracing::info!(
            bytes,
            records,
            took = ?started.elapsed(),
            "sent database snapshot"
        );
        Ok(bytes)
    }
}

impl std::fmt::Debug for Dump {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dump").finish_non_exhaustive()
    }
}

impl Backend {
    /// Opens a point-in-time view of every table, to stream with [`Dump::write_to`].
    pub fn begin_dump(&self) -> Result<Dump> {
        Ok(Dump {
            txn: self.begin_read()?,
        })
    }

    /// Streams every table, as of one commit, to `out` (see the module doc for the format);
    /// `progress` gets the bytes written so far. Returns the stream's length in bytes.
    pub fn dump(&self, out: &mut impl Write, progress: impl FnMut(u64)) -> Result<u64> {
        self.begin_dump()?.write_to(out, progress)
    }

    /// Replaces the contents of every table with the stream `input` (as [`Backend::dump`]
    /// writes it) in one durable write transaction. The stream is checked to its trailer
    /// before anything commits: on any error the backend holds what it held before.
    ///
    /// Waits for the write lock like any batch. A running [`KvStore`](crate::KvStore) over
    /// this backend must restore through
    /// [`KvStore::restore_from`](crate::KvStore::restore_from) instead, which also swaps its
    /// index.
    pub fn restore(&self, input: &mut impl Read) -> Result<()> {
        self.stage_restore(input)?.commit(Durability::Immediate)
    }

    /// Loads and checks `input` into a write transaction that empties every table first;
    /// nothing is visible until the returned restore commits, and dropping it aborts.
    pub(crate) fn stage_restore(&self, input: &mut impl Read) -> Result<StagedRestore> {
        let started = Instant::now();
        // Every table is rewritten: no defrag may copy meanwhile.
        let rewrites = self.inner.rewrites.take();
        let writer = self.inner.writer.take();
        let txn = self.db().begin_write()?;
        for table in schema::ALL_TABLES {
            txn.delete_table(table)?;
            txn.open_table(table)?;
        }
        let (records, bytes) = load(&txn, input)?;
        tracing::info!(
            bytes,
            records,
            took = ?started.elapsed(),
            "received database snapshot"
        );
        Ok(StagedRestore {
            txn,
            inner: self.inner.clone(),
            _writer: writer,
            _rewrites: rewrites,
        })
    }
}

/// A checked restore, not yet committed; see [`Backend::stage_restore`].
pub(crate) struct StagedRestore {
    /// Declared before the permits: it ends before they go.
    txn: WriteTransaction,
    inner: Arc<Inner>,
    _writer: slot::Permit,
    _rewrites: slot::Permit,
}

impl StagedRestore {
    /// The transaction holding the restored tables, to read them before they commit.
    pub(crate) fn txn(&self) -> &WriteTransaction {
        &self.txn
    }

    /// Commits the restored tables. With [`Durability::None`] they are visible at once and
    /// durable at the next durable commit, and a crash before it brings back the old contents.
    /// A durable commit covers every earlier one, so it clears the backend's dirty flag.
    pub(crate) fn commit(mut self, durability: Durability) -> Result<()> {
        let durable = matches!(durability, Durability::Immediate);
        self.txn.set_durability(durability)?;
        if durable {
            // Cleared first, as in `Inner::durable_commit`: a racing commit sets it again.
            self.inner.dirty.store(false, Ordering::Release);
        }
        let result = self.txn.commit();
        if result.is_err() || !durable {
            self.inner.dirty.store(true, Ordering::Release);
        }
        Ok(result?)
    }
}

/// Reads a whole stream into `txn`, whose tables are empty; returns the records and bytes read.
fn load(txn: &WriteTransaction, input: &mut impl Read) -> Result<(u64, u64)> {
    let mut r = CrcReader::new(input);
    let mut magic = [0u8; 8];
    r.take_exact(&mut magic)?;
    if &magic != SNAPSHOT_MAGIC {
        return Err(invalid("not an oxcd backend snapshot (bad magic)"));
    }
    let version = u32::from_be_bytes(r.array()?);
    if version != SNAPSHOT_VERSION {
        return Err(invalid(format!(
            "format version {version}, this build reads only {SNAPSHOT_VERSION}"
        )));
    }

    let mut seen = [false; schema::ALL_TABLES.len()];
    let mut table: Option<redb::Table<'_, &'static [u8], &'static [u8]>> = None;
    let (mut key, mut value) = (Vec::new(), Vec::new());
    let mut records = 0u64;
    loop {
        match r.array::<1>()?[0] {
            TAG_TABLE => {
                let len = u16::from_be_bytes(r.array()?) as usize;
                if len > MAX_TABLE_NAME {
                    return Err(invalid(format!("table name of {len} bytes")));
                }
                let mut name = vec![0u8; len];
                r.take_exact(&mut name)?;
                let Some(i) = schema::ALL_TABLES
                    .iter()
                    .position(|t| t.name().as_bytes() == name)
                else {
                    return Err(invalid(format!(
                        "unknown table {:?}",
                        String::from_utf8_lossy(&name)
                    )));
                };
                if std::mem::replace(&mut seen[i], true) {
                    return Err(invalid(format!(
                        "table {} appears twice",
                        schema::ALL_TABLES[i].name()
                    )));
                }
                table = Some(txn.open_table(schema::ALL_TABLES[i])?);
            }
            TAG_ENTRY => {
                let Some(t) = table.as_mut() else {
                    return Err(invalid("entry before any table"));
                };
                r.take_prefixed(&mut key)?;
                r.take_prefixed(&mut value)?;
                t.insert(&key[..], &value[..])?;
            }
            TAG_TRAILER => break,
            tag => return Err(invalid(format!("unknown record tag {tag:#04x}"))),
        }
        records += 1;
    }
    drop(table);

    let count = u64::from_be_bytes(r.array()?);
    let want = r.crc;
    let crc = u32::from_be_bytes(r.array()?);
    if crc != want {
        return Err(invalid(format!(
            "checksum mismatch: trailer says {crc:#010x}, content has {want:#010x}"
        )));
    }
    if count != records {
        return Err(invalid(format!(
            "trailer counts {count} records, stream holds {records}"
        )));
    }
    let mut rest = Vec::new();
    r.inner.by_ref().take(PAD_TO + 1).read_to_end(&mut rest)?;
    let end = r.bytes + rest.len() as u64;
    if rest.len() as u64 > PAD_TO || rest.iter().any(|&b| b != 0) || !end.is_multiple_of(PAD_TO) {
        return Err(invalid("data after the trailer"));
    }
    Ok((records, r.bytes))
}

/// Dumps are padded with zeros to a multiple of this many bytes.
const PAD_TO: u64 = 512;

fn invalid(what: impl Into<String>) -> Error {
    Error::InvalidSnapshot(what.into())
}

fn len_u32(len: usize) -> Result<u32> {
    u32::try_from(len).map_err(|_| {
        Error::Io(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a backend entry of {len} bytes does not fit a snapshot record"),
        ))
    })
}

/// Buffers writes and keeps a running CRC-32C and length of everything written.
struct CrcWriter<'w, W: Write> {
    inner: BufWriter<&'w mut W>,
    crc: u32,
    bytes: u64,
}

impl<'w, W: Write> CrcWriter<'w, W> {
    fn new(out: &'w mut W) -> Self {
        CrcWriter {
            inner: BufWriter::with_capacity(IO_BUFFER, out),
            crc: 0,
            bytes: 0,
        }
    }

    fn put(&mut self, buf: &[u8]) -> Result<()> {
        self.inner.write_all(buf)?;
        self.crc = crc32c::crc32c_append(self.crc, buf);
        self.bytes += buf.len() as u64;
        Ok(())
    }

    fn finish(mut self) -> Result<u64> {
        self.inner.flush()?;
        Ok(self.bytes)
    }
}

/// Buffers reads and keeps a running CRC-32C and length of everything read; a stream that
/// ends early is an invalid snapshot, not an I/O error.
struct CrcReader<'r, R: Read> {
    inner: BufReader<&'r mut R>,
    crc: u32,
    bytes: u64,
}

impl<'r, R: Read> CrcReader<'r, R> {
    fn new(input: &'r mut R) -> Self {
        CrcReader {
            inner: BufReader::with_capacity(IO_BUFFER, input),
            crc: 0,
            bytes: 0,
        }
    }

    fn take_exact(&mut self, buf: &mut [u8]) -> Result<()> {
        match self.inner.read_exact(buf) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(invalid(format!("truncated after {} bytes", self.bytes)))
            }
            Err(e) => return Err(e.into()),
        }
        self.crc = crc32c::crc32c_append(self.crc, buf);
        self.bytes += buf.len() as u64;
        Ok(())
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut buf = [0u8; N];
        self.take_exact(&mut buf)?;
        Ok(buf)
    }

    /// Reads a u32 length and that many bytes into `buf`. Memory grows with the bytes that
    /// actually arrive, so a corrupt length cannot make it allocate gigabytes up front.
    fn take_prefixed(&mut self, buf: &mut Vec<u8>) -> Result<()> {
        let len = u32::from_be_bytes(self.array()?) as u64;
        buf.clear();
        let got = (&mut self.inner).take(len).read_to_end(buf)? as u64;
        self.crc = crc32c::crc32c_append(self.crc, buf);
        self.bytes += got;
        if got != len {
            return Err(invalid(format!("truncated after {} bytes", self.bytes)));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::BackendConfig;

    fn open(dir: &tempfile::TempDir, name: &str) -> Backend {
        Backend::open(dir.path().join(name), BackendConfig::default()).unwrap()
    }

    fn fill(b: &Backend, table: schema::Table, rows: &[(&[u8], &[u8])]) {
        let batch = b.begin_write().unwrap();
        {
            let mut t = batch.txn().open_table(table).unwrap();
            for (k, v) in rows {
                t.insert(*k, *v).unwrap();
            }
        }
        batch.commit().unwrap();
    }

    /// Every row of every table, by table name.
    fn contents(b: &Backend) -> Vec<(String, Vec<u8>, Vec<u8>)> {
        let txn = b.begin_read().unwrap();
        let mut rows = Vec::new();
        for table in schema::ALL_TABLES {
            for entry in txn.open_table(table).unwrap().iter().unwrap() {
                let (k, v) = entry.unwrap();
                rows.push((
                    table.name().to_string(),
                    k.value().to_vec(),
                    v.value().to_vec(),
                ));
            }
        }
        rows
    }

    fn sample(b: &Backend) {
        fill(b, schema::LEASE, &[(b"\0\0\0\0\0\0\0\x07", b"lease7")]);
        fill(b, schema::MEMBERS, &[(b"a1", b"{}"), (b"b2", b"{\"x\":1}")]);
        fill(
            b,
            schema::META,
            &[
                (schema::META_CONSISTENT_INDEX, &schema::encode_u64(9)),
                (schema::META_TERM, &schema::encode_u64(2)),
            ],
        );
        fill(
            b,
            schema::V2,
            &[(b"", b"empty key"), (b"big", &[0xAB; 70_000])],
        );
    }

    fn dump(b: &Backend) -> Vec<u8> {
        let mut out = Vec::new();
        let n = b.dump(&mut out, |_| {}).unwrap();
        assert_eq!(n, out.len() as u64);
        out
    }

    #[test]
    fn dump_and_restore_round_trip_and_replace_everything() {
        let dir = tempfile::tempdir().unwrap();
        let (src, dst) = (open(&dir, "src"), open(&dir, "dst"));
        sample(&src);
        fill(&dst, schema::AUTH_USERS, &[(b"root", b"old")]);
        fill(&dst, schema::LEASE, &[(b"other", b"old")]);
        let stream = dump(&src);
        assert_eq!(&stream[..8], SNAPSHOT_MAGIC);
        dst.restore(&mut &stream[..]).unwrap();
        assert_eq!(contents(&dst), contents(&src));
        assert_eq!(dst.hash().unwrap(), src.hash().unwrap());
        assert_eq!(
            dst.begin_dump().unwrap().consistent_index().unwrap(),
            (9, 2)
        );
        // The restore is durable without a force_commit.
        assert!(!dst.inner.dirty.load(Ordering::Acquire));
        drop(dst);
        let dst = open(&dir, "dst");
        assert_eq!(contents(&dst), contents(&src));
    }

    #[test]
    fn empty_backend_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let (src, dst) = (open(&dir, "src"), open(&dir, "dst"));
        sample(&dst);
        let stream = dump(&src);
        // header + one TABLE record per table + trailer
        let names: usize = schema::ALL_TABLES.iter().map(|t| t.name().len()).sum();
        let unpadded = 12 + 3 * schema::ALL_TABLES.len() + names + 13;
        assert_eq!(stream.len(), unpadded.next_multiple_of(PAD_TO as usize));
        assert!(stream[unpadded..].iter().all(|&b| b == 0));
        dst.restore(&mut &stream[..]).unwrap();
        assert!(contents(&dst).is_empty());
        let txn = dst.begin_read().unwrap();
        for table in schema::ALL_TABLES {
            txn.open_table(table).unwrap();
        }
    }

    #[test]
    fn progress_is_reported_in_steps_and_at_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let b = open(&dir, "db");
        let value = vec![1u8; 64 * 1024];
        let keys: Vec<[u8; 4]> = (0u32..40).map(|i| i.to_be_bytes()).collect();
        let rows: Vec<(&[u8], &[u8])> = keys.iter().map(|k| (&k[..], &value[..])).collect();
        fill(&b, schema::V2, &rows);
        let mut seen = Vec::new();
        let n = b.dump(&mut io::sink(), |p| seen.push(p)).unwrap();
        assert_eq!(seen.last(), Some(&n));
        assert!(seen.len() >= 3, "{seen:?}");
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    }

    /// Every damaged form of a good stream is refused, and the target keeps its contents.
    #[test]
    fn truncated_or_corrupt_streams_are_refused_and_change_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (src, dst) = (open(&dir, "src"), open(&dir, "dst"));
        sample(&src);
        fill(&dst, schema::LEASE, &[(b"mine", b"keep")]);
        let before = contents(&dst);
        let stream = dump(&src);

        let mut bad: Vec<(String, Vec<u8>)> = Vec::new();
        for cut in [
            0,
            5,
            12,
            13,
            40,
            stream.len() / 2,
            stream.len() - 4,
            stream.len() - 1,
        ] {
            bad.push((format!("cut at {cut}"), stream[..cut].to_vec()));
        }
        for at in [
            0,
            9,
            14,
            30,
            stream.len() / 2,
            stream.len() - 10,
            stream.len() - 1,
        ] {
            let mut s = stream.clone();
            s[at] ^= 0x40;
            bad.push((format!("flip at {at}"), s));
        }
        let mut extra = stream.clone();
        extra.push(0);
        bad.push(("trailing byte".into(), extra));

        for (what, s) in bad {
            let err = dst.restore(&mut &s[..]).expect_err(&what);
            assert!(matches!(err, Error::InvalidSnapshot(_)), "{what}: {err:?}");
            assert_eq!(contents(&dst), before, "{what}");
        }
        dst.restore(&mut &stream[..]).unwrap();
        assert_eq!(contents(&dst), contents(&src));
    }

    /// A well-formed stream (right CRC and count) that breaks the format's rules.
    #[test]
    fn malformed_streams_with_valid_checksums_are_refused() {
        /// A tag, then a table name (`None`) or a key and a value.
        type Record<'a> = (u8, &'a [u8], Option<&'a [u8]>);
        fn stream(records: &[Record<'_>], version: u32) -> Vec<u8> {
            let mut s = SNAPSHOT_MAGIC.to_vec();
            s.extend_from_slice(&version.to_be_bytes());
            for (tag, a, b) in records {
                s.push(*tag);
                match b {
                    None => {
                        s.extend_from_slice(&(a.len() as u16).to_be_bytes());
                        s.extend_from_slice(a);
                    }
                    Some(b) => {
                        s.extend_from_slice(&(a.len() as u32).to_be_bytes());
                        s.extend_from_slice(a);
                        s.extend_from_slice(&(b.len() as u32).to_be_bytes());
                        s.extend_from_slice(b);
                    }
                }
            }
            s.push(TAG_TRAILER);
            s.extend_from_slice(&(records.len() as u64).to_be_bytes());
            let crc = crc32c::crc32c(&s);
            s.extend_from_slice(&crc.to_be_bytes());
            s.resize(s.len().next_multiple_of(PAD_TO as usize), 0);
            s
        }
        let dir = tempfile::tempdir().unwrap();
        let b = open(&dir, "db");
        let lease = (TAG_TABLE, &b"lease"[..], None);
        let entry = (TAG_ENTRY, &b"k"[..], Some(&b"v"[..]));
        b.restore(&mut &stream(&[lease, entry], 1)[..]).unwrap();
        assert_eq!(contents(&b).len(), 1);
        for (what, s) in [
            ("version", stream(&[lease, entry], 2)),
            ("entry first", stream(&[entry, lease], 1)),
            ("twice", stream(&[lease, entry, lease], 1)),
            ("unknown", stream(&[(TAG_TABLE, b"nope", None)], 1)),
            ("tag", stream(&[(7, b"", None)], 1)),
        ] {
            let err = b.restore(&mut &s[..]).expect_err(what);
            assert!(matches!(err, Error::InvalidSnapshot(_)), "{what}: {err:?}");
            assert_eq!(contents(&b).len(), 1, "{what}");
        }
    }

    /// A reader whose dump began earlier sees none of the later writes, and the stream is as
    /// of that moment.
    #[test]
    fn dump_is_a_point_in_time_view() {
        let dir = tempfile::tempdir().unwrap();
        let (src, dst) = (open(&dir, "src"), open(&dir, "dst"));
        sample(&src);
        let want = contents(&src);
        let view = src.begin_dump().unwrap();
        fill(&src, schema::LEASE, &[(b"later", b"x")]);
        let mut stream = Vec::new();
        view.write_to(&mut stream, |_| {}).unwrap();
        dst.restore(&mut &stream[..]).unwrap();
        assert_eq!(contents(&dst), want);
    }

    /// The stream arrives in odd-sized pieces, as from a socket; the view can move to the
    /// thread that sends it.
    #[test]
    fn restore_from_a_reader_that_returns_short_reads() {
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = buf.len().min(self.0.len()).min(3);
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        fn sendable<T: Send>(t: T) -> T {
            t
        }
        let dir = tempfile::tempdir().unwrap();
        let (src, dst) = (open(&dir, "src"), open(&dir, "dst"));
        sample(&src);
        let view = sendable(src.begin_dump().unwrap());
        let stream = std::thread::spawn(move || {
            let mut out = Vec::new();
            view.write_to(&mut out, |_| {}).unwrap();
            out
        })
        .join()
        .unwrap();
        dst.restore(&mut Trickle(&stream)).unwrap();
        assert_eq!(contents(&dst), contents(&src));
    }

    /// Reads that fail half way are I/O errors, not a corrupt snapshot.
    #[test]
    fn reader_errors_are_io_errors() {
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("connection reset"))
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let b = open(&dir, "db");
        assert!(matches!(b.restore(&mut Failing), Err(Error::Io(_))));
    }
}
