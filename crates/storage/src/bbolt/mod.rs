//! bbolt files: the format of etcd's backend and of the snapshots etcd's Snapshot RPC streams.
//!
//! oxcd keeps its own backend in redb; bbolt is only the format at the boundary with etcd
//! (backups, migration). This module writes such a file in one pass ([`write`]) and reads one
//! ([`Reader`]). No Rust crate reads and writes etcd's bbolt files (the bbolt-inspired crates
//! keep formats of their own), and a snapshot writer needs far less than a database: it lays
//! out a fresh file and never updates one.
//!
//! # Layout
//!
//! A file is a run of pages of `page_size` bytes (4096 where etcd runs); page `n` starts at
//! byte `n * page_size`. All integers are little endian (bbolt writes its structs as they
//! are in memory, and etcd runs on little-endian machines). Each page starts with a header:
//!
//! ```text
//! id: u64 | flags: u16 | count: u16 | overflow: u32
//! ```
//!
//! `overflow` counts the extra pages a large page spans. Flags: 0x01 branch, 0x02 leaf,
//! 0x04 meta, 0x10 freelist.
//!
//! - Pages 0 and 1 are meta pages; bbolt uses the valid one with the larger `txid`:
//!   `magic: u32 = 0xED0CDAED | version: u32 = 2 | page_size: u32 | flags: u32 |
//!   root: bucket | freelist: u64 | pgid: u64 | txid: u64 | checksum: u64`, where `pgid` is
//!   the number of pages in use, and `checksum` the FNV-1a 64 of the bytes before it.
//! - A bucket (the root one in meta, the others as values) is `root: u64 | sequence: u64`.
//!   `root` is the page of the bucket's B+tree, or 0 for an *inline* bucket, whose one leaf
//!   page follows the 16 bytes in the value itself.
//! - A leaf page holds `count` elements `flags: u32 | pos: u32 | ksize: u32 | vsize: u32`,
//!   then the keys and values; `pos` is the offset of the key from the element itself. A
//!   flag 0x01 marks a value that is a nested bucket. Keys are in byte order.
//! - A branch page holds `count` elements `pos: u32 | ksize: u32 | pgid: u64`, then the
//!   keys: the first key under each child page.
//! - The freelist page lists pages free for reuse (`count` u64 ids, or 0xFFFF and the real
//!   count as the first u64); a file we write has none.
//!
//! The top-level buckets are the entries of the root bucket; etcd uses only those (`key`,
//! `meta`, `lease`, …), each holding plain keys and values.

mod read;
mod write;

pub use read::Reader;
pub use write::{write, BucketSource, Layout};

/// Page size of the files we write: etcd's on every platform it ships for.
pub const PAGE_SIZE: usize = 4096;

const MAGIC: u32 = 0xED0C_DAED;
const VERSION: u32 = 2;

const PAGE_HEADER: usize = 16;
const ELEMENT: usize = 16;
/// A bucket value's header: root page and sequence.
const BUCKET_HEADER: usize = 16;
/// The meta page's fields up to and with the checksum.
const META_SIZE: usize = 64;
/// The bytes of meta the checksum covers.
const META_SUMMED: usize = 56;

const FLAG_BRANCH: u16 = 0x01;
const FLAG_LEAF: u16 = 0x02;
const FLAG_META: u16 = 0x04;
const FLAG_FREELIST: u16 = 0x10;

/// A leaf element's flag for a value that is a nested bucket.
const BUCKET_LEAF_FLAG: u32 = 0x01;

/// bbolt file errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing failed.
    #[error("bbolt: {0}")]
    Io(#[from] std::io::Error),
    /// The file is not a bbolt file, or is damaged or truncated.
    #[error("bbolt: invalid database: {0}")]
    Invalid(String),
    /// A source handed to [`write`] gave different data on its second pass, or keys out of
    /// order.
    #[error("bbolt: source not repeatable: {0}")]
    Source(String),
}

/// Result alias for bbolt operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A visitor of a bucket's keys and values; an error stops the visit and is returned.
pub type Visit<'a> = dyn FnMut(&[u8], &[u8]) -> Result<()> + 'a;

fn invalid(what: impl Into<String>) -> Error {
    Error::Invalid(what.into())
}

/// FNV-1a, 64 bits: bbolt's meta checksum.
fn fnv64a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().unwrap())
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// A page header.
#[derive(Debug, Clone, Copy)]
struct PageHeader {
    id: u64,
    flags: u16,
    count: u16,
    overflow: u32,
}

impl PageHeader {
    fn parse(b: &[u8]) -> PageHeader {
        PageHeader {
            id: u64_at(b, 0),
            flags: u16_at(b, 8),
            count: u16_at(b, 10),
            overflow: u32_at(b, 12),
        }
    }

    fn put(&self, out: &mut [u8]) {
        out[0..8].copy_from_slice(&self.id.to_le_bytes());
        out[8..10].copy_from_slice(&self.flags.to_le_bytes());
        out[10..12].copy_from_slice(&self.count.to_le_bytes());
        out[12..16].copy_from_slice(&self.overflow.to_le_bytes());
    }
}

/// The fields of a meta page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Meta {
    page_size: u32,
    root: u64,
    freelist: u64,
    pgid: u64,
    txid: u64,
}

impl Meta {
    /// Parses the meta fields after a page header; `None` when the magic, version or
    /// checksum is wrong.
    fn parse(b: &[u8]) -> Option<Meta> {
        if b.len() < META_SIZE
            || u32_at(b, 0) != MAGIC
            || u32_at(b, 4) != VERSION
            || u64_at(b, META_SUMMED) != fnv64a(&b[..META_SUMMED])
        {
            return None;
        }
        Some(Meta {
            page_size: u32_at(b, 8),
            root: u64_at(b, 16),
            freelist: u64_at(b, 32),
            pgid: u64_at(b, 40),
            txid: u64_at(b, 48),
        })
    }

    fn encode(&self) -> [u8; META_SIZE] {
        let mut b = [0u8; META_SIZE];
        b[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        b[4..8].copy_from_slice(&VERSION.to_le_bytes());
        b[8..12].copy_from_slice(&self.page_size.to_le_bytes());
        // flags (12..16) and the root bucket's sequence (24..32) stay 0
        b[16..24].copy_from_slice(&self.root.to_le_bytes());
        b[32..40].copy_from_slice(&self.freelist.to_le_bytes());
        b[40..48].copy_from_slice(&self.pgid.to_le_bytes());
        b[48..56].copy_from_slice(&self.txid.to_le_bytes());
        let sum = fnv64a(&b[..META_SUMMED]);
        b[56..64].copy_from_slice(&sum.to_le_bytes());
        b
    }
}

#[cfg(test)]
mod tests;
