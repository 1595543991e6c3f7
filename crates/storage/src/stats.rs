//! Counts of storage work that etcd exports as metrics (`etcd_mvcc_put_total` and kin).
//!
//! Plain process-wide atomics, as etcd's Prometheus counters are process-wide: the hot path
//! pays one relaxed add per transaction, no lock and no registry lookup. The server reads them
//! when `/metrics` is scraped and renders them under etcd's names.

use std::sync::atomic::{AtomicU64, Ordering};

/// The storage counters; see [`MVCC`].
#[derive(Debug, Default)]
pub struct MvccStats {
    /// Range operations, in reads and in write transactions (`etcd_mvcc_range_total`).
    pub ranges: AtomicU64,
    /// Put operations (`etcd_mvcc_put_total`).
    pub puts: AtomicU64,
    /// Delete-range operations, one per call whatever the keys (`etcd_mvcc_delete_total`).
    pub deletes: AtomicU64,
    /// Transactions of more than one operation (`etcd_mvcc_txn_total`).
    pub txns: AtomicU64,
    /// Bytes of keys and values put (`etcd_debugging_mvcc_total_put_size_in_bytes`).
    pub put_bytes: AtomicU64,
    /// Key revisions removed by compactions (`etcd_debugging_mvcc_db_compaction_keys_total`).
    pub compacted_keys: AtomicU64,
    /// Watch events handed to clients (`etcd_debugging_mvcc_events_total`).
    pub events_sent: AtomicU64,
    /// Bytes written to the WAL (`etcd_disk_wal_write_bytes_total`).
    pub wal_bytes: AtomicU64,
}

/// The process's storage counters.
pub static MVCC: MvccStats = MvccStats {
    ranges: AtomicU64::new(0),
    puts: AtomicU64::new(0),
    deletes: AtomicU64::new(0),
    txns: AtomicU64::new(0),
    put_bytes: AtomicU64::new(0),
    compacted_keys: AtomicU64::new(0),
    events_sent: AtomicU64::new(0),
    wal_bytes: AtomicU64::new(0),
};

/// The operations of one transaction, added to [`MVCC`] when it ends.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct TxnOps {
    pub ranges: u64,
    pub puts: u64,
    pub deletes: u64,
    pub put_bytes: u64,
}

impl TxnOps {
    /// Adds the transaction to the counters and starts a new count. As etcd, a transaction
    /// counts in `txns` only when it did more than one operation.
    pub(crate) fn end(&mut self) {
        let ops = std::mem::take(self);
        if ops.ranges + ops.puts + ops.deletes > 1 {
            MVCC.txns.fetch_add(1, Ordering::Relaxed);
        }
        add(&MVCC.ranges, ops.ranges);
        add(&MVCC.puts, ops.puts);
        add(&MVCC.deletes, ops.deletes);
        add(&MVCC.put_bytes, ops.put_bytes);
    }
}

/// Adds `n`, skipping the atomic when there is nothing to add.
pub fn add(counter: &AtomicU64, n: u64) {
    if n > 0 {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// Counts a read-only transaction of `ranges` range operations made one by one through
/// [`KvStore::range`](crate::KvStore::range) (which counted each range already).
pub fn end_read_txn(ranges: u64) {
    if ranges > 1 {
        MVCC.txns.fetch_add(1, Ordering::Relaxed);
    }
}

impl MvccStats {
    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_txn_counts_when_it_did_more_than_one_operation() {
        let before = MvccStats::get(&MVCC.txns);
        let mut one = TxnOps {
            puts: 1,
            put_bytes: 3,
            ..Default::default()
        };
        one.end();
        let after_one = MvccStats::get(&MVCC.txns);
        let mut two = TxnOps {
            ranges: 1,
            puts: 1,
            ..Default::default()
        };
        two.end();
        assert!(two.puts == 0, "ending resets the count");
        // Other tests of this process may count too: only lower bounds hold.
        assert!(MvccStats::get(&MVCC.txns) > after_one);
        assert!(after_one >= before);
    }
}
