//! oxcd storage.
//!
//! # WAL and snapshots
//!
//! [`Wal`] is the write-ahead log in `member/wal/`: raft entries and hard state, one
//! fdatasync per save, a torn tail truncated on open and corruption refused. [`Snapshotter`]
//! keeps raft snapshots in `member/snap/`.
//!
//! # Backend and MVCC
//!
//! [`Backend`] is the redb file (`member/snap/db`) with every table the server keeps, listed
//! in [`schema`]. Apply batches commit to it without fsync; it makes them durable at most every
//! 100 ms, as the WAL already holds every acknowledged write.
//!
//! [`KvStore`] is etcd's multi-version key-value store over the backend: an in-memory index of
//! every key's revisions, ranges at any uncompacted revision, and compaction in the background.
//! The apply task writes through a [`Batch`] of [`Txn`]s, whose backend transaction
//! ([`Batch::raw`]) the lease, auth and membership tables share, so one Raft entry's effects
//! and its consistent index commit together.
//!
//! # Backups in etcd's format
//!
//! [`Backend::begin_etcd_snapshot`] streams the backend as etcd's Snapshot RPC does: a bbolt
//! database of one point in time with a SHA-256 trailer. [`SnapshotFile`] opens such a file
//! (saved from etcd or from oxcd), reports its status and restores it into a backend. The
//! [`bbolt`] module reads and writes the file format itself.
//!
//! # Watch
//!
//! [`WatchableStore`] adds etcd's watchers to a [`KvStore`]: the apply task hands it each
//! committed batch's events ([`WatchableStore::notify`]); each client stream is a
//! [`WatchStream`] with one bounded, ordered queue of [`WatchResponse`]s. Watchers that start in
//! the past or read too slowly catch up from the backend on a background thread.

mod backend;
mod backup;
pub mod bbolt;
#[cfg(test)]
mod bench_support;
mod mvcc;
mod snap;
pub mod stats;
mod wal;
mod watch;

pub mod dir_ops;
pub use backend::{
    schema, Backend, BackendConfig, Dump, Error as BackendError, WriteBatch, SNAPSHOT_MAGIC,
    SNAPSHOT_VERSION,
};
pub use backup::{
    Error as BackupError, EtcdSnapshot, RestoreOptions, Restored, SnapshotFile, SnapshotStatus,
};
pub use mvcc::{
    Batch, CompactionWait, EncodedRange, Error as MvccError, HashKv, KvStore, PieceLimits,
    RangeCursor, RangeOptions, RangeResult, Revision, Txn,
};
pub use snap::{Error as SnapError, Snapshotter};
pub use wal::{
    EntryPos, Error as WalError, Wal, WalContents, WalOptions, WalSnapshot,
    SEGMENT_SIZE_BYTES as WAL_SEGMENT_SIZE_BYTES,
};
pub use watch::{WatchError, WatchResponse, WatchStream, WatchableStore, INVALID_WATCH_ID};
