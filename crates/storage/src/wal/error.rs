//! Errors from the write-ahead log.

use std::io;
use std::path::{Path, PathBuf};

use super::WalSnapshot;

/// What went wrong in the WAL.
///
/// A torn tail left by a crash is not an error: [`super::Wal::open`] truncates it. Everything
/// below means the WAL cannot be used as it is; the server must not start on it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file system call failed.
    #[error("wal: {op} {}: {source}", path.display())]
    Io {
        /// What we were doing.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// `create` was called on a directory that already holds segments.
    #[error("wal: {} already holds a wal", .0.display())]
    AlreadyExists(PathBuf),
    /// No segment can hold the requested snapshot index (etcd's "wal: file not found").
    #[error("wal: no segment in {} starts at or below index {index}", dir.display())]
    SegmentNotFound {
        /// The WAL directory.
        dir: PathBuf,
        /// The snapshot index asked for.
        index: u64,
    },
    /// Segment sequence numbers are not consecutive: a segment is missing.
    #[error("wal: segment {} does not follow sequence {prev:#x}", path.display())]
    SegmentGap {
        /// The segment after the hole.
        path: PathBuf,
        /// The sequence number before it.
        prev: u64,
    },
    /// A record is damaged and valid data follows it, or it lies in a segment that was
    /// fully synced: this is not a crash artefact, it is corruption.
    #[error("wal: corrupt record in {} at offset {offset}: {reason}", path.display())]
    Corrupt {
        /// The segment.
        path: PathBuf,
        /// Byte offset of the first bad record.
        offset: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// Two segments carry different metadata.
    #[error("wal: conflicting metadata found")]
    MetadataConflict,
    /// No snapshot marker with the requested index was found after it.
    #[error("wal: snapshot not found (index {}, term {})", .0.index, .0.term)]
    SnapshotNotFound(WalSnapshot),
    /// A snapshot marker has the requested index but another term.
    #[error("wal: snapshot mismatch: wanted term {} at index {}, found term {found_term}", wanted.term, wanted.index)]
    SnapshotMismatch {
        /// The snapshot asked for.
        wanted: WalSnapshot,
        /// The term in the marker.
        found_term: u64,
    },
    /// An entry's index leaves a hole after the entries read so far.
    #[error("wal: entry {got} leaves a gap after index {last}")]
    EntryGap {
        /// The last index read so far.
        last: u64,
        /// The entry that does not follow it.
        got: u64,
    },
    /// A record payload does not fit the 32-bit length field.
    #[error("wal: record of {0} bytes is too large")]
    TooLarge(usize),
    /// A raft message could not be encoded.
    #[error("wal: encoding a record: {0}")]
    Encode(#[source] protobuf::ProtobufError),
    /// An earlier write or fdatasync failed; what reached the disk is unknown, so the WAL
    /// refuses further writes until it is reopened.
    #[error("wal: an earlier write failed; reopen the wal")]
    Failed,
}

/// Result with a WAL [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Wraps an `io::Error` with the operation and path.
pub(crate) fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| Error::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}
