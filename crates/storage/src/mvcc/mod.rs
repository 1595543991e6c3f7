//! The multi-version key-value store, with etcd's model and semantics.
//!
//! # Revisions
//!
//! The store's history is a sequence of *revisions*. Every write transaction that changes
//! something gets the next main revision (a fresh store is at revision 1, so the first write
//! is revision 2); its changes are numbered inside it by sub revision (0, 1, …). A transaction
//! that changes nothing takes no revision. Each change is stored in the backend's `key` table
//! under its [`Revision`] (a tombstone for a deletion), so the store can be read as of any
//! revision not yet compacted away.
//!
//! Every key carries etcd's counters: `create_revision` (the put that began its current life),
//! `mod_revision` (its last change), `version` (1 at creation, +1 per put; a deletion resets
//! it) and `lease`.
//!
//! # Who writes, who reads
//!
//! Only the apply task writes, through a [`Batch`]: one backend write transaction spanning many
//! Raft entries, each entry's writes in a [`Txn`]. Reads inside the batch see the batch's own
//! writes; other readers see none of them until the batch commits, then all of them: the batch
//! commits the backend first, then publishes its revision, so whoever sees revision R can read
//! R's data. Between batches the apply task may also replace the whole contents with a leader's
//! snapshot ([`KvStore::restore_from`]); readers see the old contents until the swap, then the
//! new.
//!
//! Readers (range requests, watch catch-up, hash checks, snapshots) take the index lock only
//! long enough to learn the revisions they need and to open a backend read transaction; values
//! are fetched after the lock is released. A range or count over many keys walks the index a
//! bounded piece at a time and hands the lock to waiting writers between pieces, so a large
//! range never blocks writes for long.
//!
//! # Compaction
//!
//! Compacting at revision R forgets every revision ≤ R that no read at R or later needs (for
//! each key, all but its newest revision ≤ R, and that one too if it is a deletion). Reads below
//! R fail with [`Error::Compacted`] from the moment the compaction commits; the in-memory index
//! and then the backend are cleaned in small batches by a background thread. The backend records
//! the requested and the finished compaction revisions, so an interrupted compaction resumes
//! when the store is reopened.

mod index;
mod key_index;
mod kv_store;
mod revision;

pub use kv_store::{
    Batch, CompactionWait, EncodedRange, HashKv, KvStore, PieceLimits, RangeCursor, RangeOptions,
    RangeResult, Txn,
};
pub use revision::Revision;

use crate::backend;

/// MVCC errors. The server maps [`Error::Compacted`] and [`Error::FutureRev`] to etcd's
/// `etcdserver: mvcc: …` texts and codes.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The requested revision is at or below the compaction revision (below it, for reads).
    #[error("mvcc: required revision has been compacted")]
    Compacted,
    /// The requested revision is above the current revision.
    #[error("mvcc: required revision is a future revision")]
    FutureRev,
    /// The store was closed (or the batch that scheduled a compaction was dropped, or a
    /// restore replaced the contents it was compacting) before the operation finished.
    #[error("mvcc: closed")]
    Closed,
    /// A read would return more than its cap allows (`RangeOptions::max_bytes`).
    #[error("mvcc: range of {size} bytes is larger than the cap of {max}")]
    TooLarge {
        /// Bytes of keys and values the read would return, protobuf-encoded.
        size: usize,
        /// The cap.
        max: usize,
    },
    /// The backend failed.
    #[error(transparent)]
    Backend(#[from] backend::Error),
    /// Data in the backend does not decode, or the index and the backend disagree.
    #[error("mvcc: corrupt key table at revision {revision}: {what}")]
    Corrupt {
        /// Where, as far as known.
        revision: String,
        /// What was wrong.
        what: String,
    },
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Error::Backend(e.into())
            }
        }
    )*};
}
from_redb!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// Result alias for MVCC operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;
