//! A range read in pieces at one revision: what a streamed range walks, so that neither the
//! server nor the index lock ever holds more than one piece.
//!
//! Each piece takes the index lock just long enough to find its keys and open a backend read
//! transaction, then reads the values without it, as [`KvStore::range`] does. The revision is
//! pinned when the cursor opens; a compaction past it makes the next piece fail with
//! [`Error::Compacted`], as etcd's RangeStream does, rather than hold old revisions back. So
//! does a restore (a snapshot installed meanwhile): the contents the cursor was reading are
//! gone, and the pieces already returned must not be joined with pieces of other contents.

use std::sync::Arc;

use oxcd_api::mvccpb::KeyValue;

use super::{check_read_rev, fetch_one, key_only, KeyRange, KvStore, Shared};
use crate::backend::schema;
use crate::mvcc::{Error, Result};

/// The keys of a range as of one revision, read a piece at a time in key order.
pub struct RangeCursor {
    shared: Arc<Shared>,
    /// The request's `key`.
    key: Vec<u8>,
    /// The request's `range_end`, by etcd's rules (see [`KvStore::range`]).
    range_end: Vec<u8>,
    /// The revision read at.
    at: i64,
    /// The store's epoch when the cursor opened (see `compaction`).
    epoch: u64,
    /// The store's current revision when the cursor opened: the answer's header revision.
    rev: i64,
    /// The last key returned; the next piece starts after it.
    after: Option<Vec<u8>>,
    /// Every key has been returned.
    done: bool,
}

/// How much one piece may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PieceLimits {
    /// Most keys.
    pub keys: usize,
    /// Once the values read reach this many bytes, the piece ends (it holds at least one key).
    pub bytes: usize,
    /// Leave the values out (taken from the index alone).
    pub keys_only: bool,
}

impl KvStore {
    /// Opens a cursor over `key`..`range_end` at revision `rev` (0 or less for the current
    /// one), failing as [`KvStore::range`] does for a compacted or future revision.
    pub fn range_cursor(&self, key: &[u8], range_end: &[u8], rev: i64) -> Result<RangeCursor> {
        let (at, cur, epoch) = {
            let st = self.shared.read_lock();
            let at = check_read_rev(rev, st.current_rev, st.compact_rev)?;
            (at, st.current_rev, st.epoch)
        };
        Ok(RangeCursor {
            shared: self.shared.clone(),
            key: key.to_vec(),
            range_end: range_end.to_vec(),
            at,
            epoch,
            rev: cur,
            after: None,
            done: false,
        })
    }
}

impl RangeCursor {
    /// The store's current revision when the cursor opened (the answer's header revision).
    pub fn header_revision(&self) -> i64 {
        self.rev
    }

    /// The revision the cursor reads at.
    pub fn read_revision(&self) -> i64 {
        self.at
    }

    /// The next keys, in key order, within `limits`; empty once every key was returned.
    pub fn next_piece(&mut self, limits: PieceLimits) -> Result<Vec<KeyValue>> {
        if self.done {
            return Ok(Vec::new());
        }
        let range = KeyRange::new(&self.key, &self.range_end);
        let max_keys = limits.keys.max(1);
        let (found, rtxn) = {
            let st = self.shared.lock();
            if self.at < st.compact_rev || st.epoch != self.epoch {
                return Err(Error::Compacted);
            }
            let found: Vec<_> = st
                .index
                .iter_range_after(range, self.after.as_deref())
                .filter_map(|(k, ki)| ki.get(self.at).map(|a| (k.clone(), a)))
                .take(max_keys)
                .collect();
            // Opened under the lock: a compaction committed later cannot have removed them yet.
            let rtxn = if limits.keys_only || found.is_empty() {
                None
            } else {
                Some(self.shared.backend.begin_read()?)
            };
            (found, rtxn)
        };
        let mut exhausted = found.len() < max_keys;
        let mut piece = Vec::with_capacity(found.len());
        match rtxn {
            None => piece.extend(found.iter().map(|(k, a)| key_only(k, *a))),
            Some(rtxn) => {
                let table = rtxn.open_table(schema::KEY)?;
                let mut bytes = 0usize;
                for (i, (_, a)) in found.iter().enumerate() {
                    if i > 0 && bytes >= limits.bytes {
                        exhausted = false; // the keys not read yet come in the next piece
                        break;
                    }
                    let kv = fetch_one(&table, a.modified)?;
                    bytes += kv.key.len() + kv.value.len();
                    piece.push(kv);
                }
            }
        }
        self.done = exhausted;
        if let Some(last) = piece.last() {
            self.after = Some(last.key.to_vec());
        }
        Ok(piece)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Backend, BackendConfig};
    use crate::mvcc::RangeOptions;

    fn store_with(n: usize) -> (tempfile::TempDir, KvStore) {
        let dir = tempfile::tempdir().unwrap();
        let backend = Backend::open(dir.path().join("db"), BackendConfig::default()).unwrap();
        let s = KvStore::open(backend).unwrap();
        let mut b = s.begin_batch().unwrap();
        for i in 0..n {
            let mut t = b.txn();
            t.put(format!("k{i:04}").as_bytes(), &[b'v'; 100], (i % 3) as i64)
                .unwrap();
            t.end();
        }
        b.commit().unwrap();
        (dir, s)
    }

    fn drain(c: &mut RangeCursor, limits: PieceLimits) -> Vec<Vec<KeyValue>> {
        let mut pieces = Vec::new();
        loop {
            let p = c.next_piece(limits).unwrap();
            if p.is_empty() {
                return pieces;
            }
            assert!(p.len() <= limits.keys.max(1));
            pieces.push(p);
        }
    }

    #[test]
    fn pieces_join_into_the_full_range_at_the_pinned_revision() {
        let (_d, s) = store_with(250);
        let full = s
            .range(b"k0010", b"k0200", RangeOptions::default())
            .unwrap();
        let mut c = s.range_cursor(b"k0010", b"k0200", 0).unwrap();
        // Writes after the cursor opened are not seen.
        let mut b = s.begin_batch().unwrap();
        let mut t = b.txn();
        t.put(b"k0100", b"new", 0).unwrap();
        t.delete_range(b"k0150", b"").unwrap();
        t.end();
        b.commit().unwrap();
        assert_eq!(c.header_revision(), full.rev);
        let limits = PieceLimits {
            keys: 64,
            bytes: usize::MAX,
            keys_only: false,
        };
        let pieces = drain(&mut c, limits);
        assert_eq!(pieces.len(), 3);
        assert_eq!(pieces.concat(), full.kvs);
    }

    #[test]
    fn byte_limit_ends_a_piece_and_keys_only_reads_no_value() {
        let (_d, s) = store_with(50);
        let full = s.range(b"", b"\0", RangeOptions::default()).unwrap();
        let mut c = s.range_cursor(b"", b"\0", 0).unwrap();
        let limits = PieceLimits {
            keys: 1000,
            bytes: 1000,
            keys_only: false,
        };
        let pieces = drain(&mut c, limits);
        assert!(
            pieces.iter().all(|p| p.len() <= 10),
            "about 105 bytes a key"
        );
        assert_eq!(pieces.concat(), full.kvs);

        let mut c = s.range_cursor(b"", b"\0", 0).unwrap();
        let keys_only = PieceLimits {
            keys: 7,
            keys_only: true,
            ..limits
        };
        let mut want = full.kvs.clone();
        for kv in &mut want {
            kv.value.clear();
        }
        assert_eq!(drain(&mut c, keys_only).concat(), want);
    }

    #[test]
    fn single_key_and_empty_ranges() {
        let (_d, s) = store_with(5);
        let limits = PieceLimits {
            keys: 1,
            bytes: 1,
            keys_only: false,
        };
        let mut c = s.range_cursor(b"k0003", b"", 0).unwrap();
        let got = drain(&mut c, limits).concat();
        assert_eq!(got.len(), 1);
        assert_eq!(&got[0].key[..], b"k0003");
        let mut c = s.range_cursor(b"x", b"a", 0).unwrap();
        assert!(drain(&mut c, limits).is_empty());
    }

    #[test]
    fn compaction_past_the_pinned_revision_fails_the_next_piece() {
        let (_d, s) = store_with(10);
        let mut c = s.range_cursor(b"", b"\0", 0).unwrap();
        let limits = PieceLimits {
            keys: 3,
            bytes: usize::MAX,
            keys_only: false,
        };
        assert_eq!(c.next_piece(limits).unwrap().len(), 3);
        let mut b = s.begin_batch().unwrap();
        let mut t = b.txn();
        t.put(b"k0000", b"x", 0).unwrap();
        t.end();
        b.commit().unwrap();
        s.compact(s.current_revision()).unwrap().wait().unwrap();
        assert!(matches!(c.next_piece(limits), Err(Error::Compacted)));
    }
}
