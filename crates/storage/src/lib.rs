//! oxcd storage.
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

mod backend;
mod mvcc;

pub use backend::{schema, Backend, BackendConfig, Error as BackendError, WriteBatch};
pub use mvcc::{
    Batch, CompactionWait, Error as MvccError, HashKv, KvStore, RangeOptions, RangeResult,
    Revision, Txn,
};
