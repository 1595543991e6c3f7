//! Replacing the store's contents with a backend snapshot, in place (a follower installing the
//! leader's snapshot).
//!
//! [`KvStore::restore_from`] loads the stream into one backend write transaction, checks it to
//! its trailer, rebuilds the index from that transaction, and then commits the tables and swaps
//! the index, revisions and consistent index under the index lock: every clone of the store
//! sees the new contents at once, and a reader sees either the old index with the old tables or
//! the new with the new, never a mix.
//!
//! Each contents carries an *epoch*, bumped by a restore. The compactor checks it before each
//! step and stops a job of an older epoch (the revisions it would remove belong to contents
//! that are gone); a compaction the restored `meta` shows as unfinished starts again, as at
//! open.

use std::io::Read;

use redb::Durability;

use super::{KvStore, Loaded};
use crate::backend::schema;
use crate::mvcc::Result;

impl KvStore {
    /// Replaces the store's whole contents (every backend table: keys, leases, auth, members…)
    /// with the snapshot stream `input`, as [`Backend::dump`](crate::Backend::dump) writes it, then rebuilds the
    /// index, revisions and consistent index from it as [`KvStore::open`] does, in place:
    /// every clone of the store reads the new contents from then on. Returns once the new
    /// contents are durable.
    ///
    /// Only the apply task may call it, between batches: a [`Batch`](crate::Batch) open meanwhile breaks the
    /// store. Readers go on during the load and wait only for the swap. A compaction of the
    /// old contents stops (its waiters get [`Error::Closed`](crate::MvccError::Closed)); one the snapshot shows as
    /// unfinished resumes. The other tables' owners (lessor, auth, membership) must reload
    /// their state from the backend afterwards.
    ///
    /// A stream that is truncated or corrupt fails with [`InvalidSnapshot`](crate::BackendError::InvalidSnapshot)
    /// before anything changes, as does any error before the swap. An error from the final
    /// durable commit comes after the swap: the store serves the new contents, which a crash
    /// before the next durable commit would roll back to the old ones.
    pub fn restore_from(&self, input: &mut impl Read) -> Result<()> {
        let started = std::time::Instant::now();
        tracing::info!("restoring mvcc store");
        let staged = self.shared.backend.stage_restore(input)?;
        let mut loaded = Loaded::read(
            &staged.txn().open_table(schema::META)?,
            &staged.txn().open_table(schema::KEY)?,
        )?;
        let (old_index, epoch) = {
            let mut st = self.shared.lock();
            // Under the lock, so that no reader pairs the old index with the new tables; not
            // durable, so that the lock is not held across an fsync.
            staged.commit(Durability::None)?;
            st.epoch += 1;
            st.current_rev = loaded.current_rev;
            st.compact_rev = loaded.compact_rev;
            *self
                .shared
                .applied
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = loaded.applied;
            (
                std::mem::replace(&mut st.index, std::mem::take(&mut loaded.index)),
                st.epoch,
            )
        };
        drop(old_index); // can be large: freed outside the lock
        self.shared.backend.force_commit()?;
        loaded.log(started);
        loaded.resume_compaction(&self.shared, epoch);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use redb::ReadableTableMetadata;

    use super::*;
    use crate::backend::{self, Backend, BackendConfig};
    use crate::mvcc::kv_store::compaction::Job;
    use crate::mvcc::{Error, RangeOptions, RangeResult};

    const WAIT: Duration = Duration::from_secs(30);

    fn open_at(dir: &tempfile::TempDir, name: &str) -> KvStore {
        let backend = Backend::open(dir.path().join(name), BackendConfig::default()).unwrap();
        KvStore::open(backend).unwrap()
    }

    /// One batch of one transaction putting `kvs`, recording `index` as applied.
    fn put(s: &KvStore, kvs: &[(&str, &str)], lease: i64, index: u64) {
        let mut b = s.begin_batch().unwrap();
        let mut t = b.txn();
        for (k, v) in kvs {
            t.put(k.as_bytes(), v.as_bytes(), lease).unwrap();
        }
        t.end();
        b.set_consistent_index(index, 3).unwrap();
        b.commit().unwrap();
    }

    fn delete(s: &KvStore, k: &str) {
        let mut b = s.begin_batch().unwrap();
        let mut t = b.txn();
        t.delete_range(k.as_bytes(), b"").unwrap();
        t.end();
        b.commit().unwrap();
    }

    fn put_lease_row(s: &KvStore, id: u64, row: &[u8]) {
        let b = s.begin_batch().unwrap();
        b.raw()
            .open_table(schema::LEASE)
            .unwrap()
            .insert(&id.to_be_bytes()[..], row)
            .unwrap();
        b.commit().unwrap();
    }

    fn dump(s: &KvStore) -> Vec<u8> {
        let mut out = Vec::new();
        s.backend().dump(&mut out, |_| {}).unwrap();
        out
    }

    fn key_table_len(s: &KvStore) -> u64 {
        let rtxn = s.backend().begin_read().unwrap();
        rtxn.open_table(schema::KEY).unwrap().len().unwrap()
    }

    fn finished_compaction(s: &KvStore) -> Option<u64> {
        let rtxn = s.backend().begin_read().unwrap();
        let meta = rtxn.open_table(schema::META).unwrap();
        backend::read_meta_u64(&meta, schema::META_FINISHED_COMPACT_REV).unwrap()
    }

    /// Everything a client can observe: every readable revision's full range, the revisions,
    /// the consistent index and both hashes.
    #[derive(Debug, PartialEq)]
    struct Observed {
        ranges: Vec<RangeResult>,
        current: i64,
        compacted: i64,
        applied: (u64, u64),
        hash_kv: crate::HashKv,
        hash: (u32, i64),
    }

    fn observe(s: &KvStore) -> Observed {
        let (current, compacted) = (s.current_revision(), s.compact_revision());
        Observed {
            ranges: (compacted.max(1)..=current)
                .map(|rev| {
                    let opts = RangeOptions {
                        rev,
                        ..Default::default()
                    };
                    s.range(b"", b"\0", opts).unwrap()
                })
                .collect(),
            current,
            compacted,
            applied: s.consistent_index(),
            hash_kv: s.hash_kv(0).unwrap(),
            hash: s.hash().unwrap(),
        }
    }

    /// A source with history, a deletion, a finished compaction, a lease row and an applied
    /// index; a target with different contents of its own.
    fn source_and_target(dir: &tempfile::TempDir) -> (KvStore, KvStore) {
        let src = open_at(dir, "src");
        put(&src, &[("a", "1"), ("b", "1")], 0, 5); // 2
        put(&src, &[("a", "2")], 7, 6); // 3
        delete(&src, "b"); // 4
        put(&src, &[("c", "1")], 0, 7); // 5
        src.compact(3).unwrap().wait().unwrap();
        put(&src, &[("a", "3"), ("d", "1")], 7, 8); // 6
        put_lease_row(&src, 7, b"lease 7");

        let dst = open_at(dir, "dst");
        for i in 0..20 {
            put(&dst, &[(&format!("other{}", i % 3), "x")], 0, 100 + i);
        }
        put_lease_row(&dst, 9, b"lease 9");
        (src, dst)
    }

    #[test]
    fn restore_makes_the_target_observably_identical_and_keeps_working() {
        let dir = tempfile::tempdir().unwrap();
        let (src, dst) = source_and_target(&dir);
        let reader = dst.clone(); // as the gRPC services hold it
        dst.restore_from(&mut &dump(&src)[..]).unwrap();
        let want = observe(&src);
        assert_eq!(want.applied, (8, 3));
        assert_eq!((want.current, want.compacted), (6, 3));
        assert_eq!(observe(&reader), want);
        assert_eq!(dst.backend().hash().unwrap(), src.backend().hash().unwrap());
        assert!(dst.leased_keys().unwrap().contains(&(b"a".to_vec(), 7)));
        let rtxn = dst.backend().begin_read().unwrap();
        let lease = rtxn.open_table(schema::LEASE).unwrap();
        assert_eq!(lease.len().unwrap(), 1);
        assert!(lease.get(&7u64.to_be_bytes()[..]).unwrap().is_some());
        drop((lease, rtxn));
        assert!(matches!(
            dst.range(
                b"a",
                b"",
                RangeOptions {
                    rev: 2,
                    ..Default::default()
                }
            ),
            Err(Error::Compacted)
        ));

        // Writes go on from the restored revision, with the restored key history.
        put(&dst, &[("a", "4")], 0, 9);
        put(&src, &[("a", "4")], 0, 9);
        let kv = reader
            .range(b"a", b"", RangeOptions::default())
            .unwrap()
            .kvs;
        assert_eq!(
            (kv[0].create_revision, kv[0].mod_revision, kv[0].version),
            (2, 7, 4)
        );
        assert_eq!(observe(&dst), observe(&src));

        // And the restore was durable: a reopen finds the same store.
        let want = observe(&dst);
        drop((dst, reader));
        assert_eq!(observe(&open_at(&dir, "dst")), want);
    }

    #[test]
    fn a_bad_stream_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (src, dst) = source_and_target(&dir);
        let before = observe(&dst);
        let good = dump(&src);
        let mut flipped = good.clone();
        flipped[good.len() / 2] ^= 1;
        for bad in [
            &good[..good.len() - 1],
            &good[..good.len() / 3],
            &flipped[..],
        ] {
            let err = dst.restore_from(&mut &bad[..]).unwrap_err();
            assert!(
                matches!(err, Error::Backend(backend::Error::InvalidSnapshot(_))),
                "{err:?}"
            );
            assert_eq!(observe(&dst), before);
        }
        put(&dst, &[("after", "1")], 0, 200);
        assert_eq!(dst.current_revision(), before.current + 1);
        assert_eq!(dst.consistent_index(), (200, 3));
    }

    #[test]
    fn an_unfinished_compaction_in_the_snapshot_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let src = open_at(&dir, "src");
        for i in 0..10 {
            put(&src, &[("k", &i.to_string())], 0, i + 1);
        } // 2..=11
          // As if the leader's compaction at 8 was scheduled but not yet carried out.
        let b = src.begin_batch().unwrap();
        b.raw()
            .open_table(schema::META)
            .unwrap()
            .insert(
                schema::META_SCHEDULED_COMPACT_REV,
                &schema::encode_u64(8)[..],
            )
            .unwrap();
        b.commit().unwrap();
        let stream = dump(&src);

        let dst = open_at(&dir, "dst");
        dst.restore_from(&mut &stream[..]).unwrap();
        assert_eq!((dst.current_revision(), dst.compact_revision()), (11, 8));
        let deadline = Instant::now() + WAIT;
        while finished_compaction(&dst) != Some(8) {
            assert!(Instant::now() < deadline, "compaction never resumed");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(key_table_len(&dst), 4); // 8, 9, 10, 11
        let kv = dst.range(b"k", b"", RangeOptions::default()).unwrap().kvs;
        assert_eq!((kv[0].value.as_slice(), kv[0].version), (&b"9"[..], 10));
    }

    #[test]
    fn a_compaction_of_an_older_epoch_stops_and_removes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = open_at(&dir, "db");
        for i in 0..10 {
            put(&s, &[("k", &i.to_string())], 0, i + 1);
        }
        let (job, wait) = Job::new(8);
        s.shared.send_compaction(job, 1); // the store is at epoch 0
        assert!(matches!(
            wait.wait_timeout(WAIT).expect("job ran"),
            Err(Error::Closed)
        ));
        assert_eq!(key_table_len(&s), 10);
    }

    /// The compactor is in the middle of a long compaction of the target's old contents when
    /// the restore lands: it must not go on removing revisions from the new contents.
    #[test]
    fn a_running_compaction_does_not_touch_the_restored_contents() {
        let dir = tempfile::tempdir().unwrap();
        let (src, dst) = (open_at(&dir, "src"), open_at(&dir, "dst"));
        for s in [&src, &dst] {
            let mut b = s.begin_batch().unwrap();
            for i in 0..20_000 {
                let mut t = b.txn();
                t.put(format!("k{}", i % 10).as_bytes(), b"v", 0).unwrap();
                t.end();
            }
            b.commit().unwrap();
        }
        put(&src, &[("src", "1")], 0, 1);
        let stream = dump(&src);
        let want = (src.hash().unwrap(), src.hash_kv(0).unwrap());
        let wait = dst.compact(19_000).unwrap();
        dst.restore_from(&mut &stream[..]).unwrap();
        // Finished before the restore, or stopped by it; either way not on the new contents.
        match wait.wait_timeout(WAIT).expect("compaction ended") {
            Ok(()) | Err(Error::Closed) => {}
            Err(e) => panic!("{e:?}"),
        }
        assert_eq!(key_table_len(&dst), key_table_len(&src));
        assert_eq!((dst.hash().unwrap(), dst.hash_kv(0).unwrap()), want);
    }

    /// A writer keeps applying while dumps are taken: each dump's consistent index names
    /// exactly the entries whose keys it holds.
    #[test]
    fn dumps_under_writes_are_consistent_with_their_consistent_index() {
        let dir = tempfile::tempdir().unwrap();
        let src = open_at(&dir, "src");
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (src, stop) = (src.clone(), stop.clone());
            std::thread::spawn(move || {
                // Entry i puts key i; a batch applies a few entries.
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let mut b = src.begin_batch().unwrap();
                    for _ in 0..3 {
                        i += 1;
                        let mut t = b.txn();
                        t.put(format!("k{i:08}").as_bytes(), &i.to_be_bytes(), 0)
                            .unwrap();
                        t.end();
                        b.set_consistent_index(i, 1).unwrap();
                    }
                    b.commit().unwrap();
                }
                i
            })
        };
        let dst = open_at(&dir, "dst");
        let mut seen = Vec::new();
        let deadline = Instant::now() + WAIT;
        while seen.len() < 5 {
            assert!(Instant::now() < deadline, "writer made no progress");
            let view = src.backend().begin_dump().unwrap();
            let (index, _) = view.consistent_index().unwrap();
            let mut stream = Vec::new();
            view.write_to(&mut stream, |_| {}).unwrap();
            drop(view);
            dst.restore_from(&mut &stream[..]).unwrap();
            assert_eq!(
                dst.consistent_index(),
                (index, if index == 0 { 0 } else { 1 })
            );
            let all = dst.range(b"", b"\0", RangeOptions::default()).unwrap();
            assert_eq!(all.count as u64, index);
            assert_eq!(dst.current_revision() as u64, index + 1);
            if let Some(last) = all.kvs.last() {
                assert_eq!(last.key, format!("k{index:08}").into_bytes());
            }
            if index > 0 && seen.last() != Some(&index) {
                seen.push(index);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        stop.store(true, Ordering::Relaxed);
        let written = writer.join().unwrap();
        assert!(written >= *seen.last().unwrap());
    }

    /// 50k keys through a file, as the transport would spool it: the dump is written in
    /// buffer-sized pieces as it goes, and the restore reads from the file.
    #[test]
    fn fifty_thousand_keys_stream_through_a_file() {
        /// Counts bytes and remembers the largest single write.
        struct Spy<W> {
            inner: W,
            largest: usize,
            writes: usize,
        }
        impl<W: std::io::Write> std::io::Write for Spy<W> {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.largest = self.largest.max(buf.len());
                self.writes += 1;
                self.inner.write(buf)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                self.inner.flush()
            }
        }

        let dir = tempfile::tempdir().unwrap();
        let (src, dst) = (open_at(&dir, "src"), open_at(&dir, "dst"));
        let value = vec![b'v'; 100];
        for chunk in 0..50 {
            let mut b = src.begin_batch().unwrap();
            let mut t = b.txn();
            for i in 0..1000 {
                t.put(format!("key-{chunk:02}-{i:04}").as_bytes(), &value, 0)
                    .unwrap();
            }
            t.end();
            b.set_consistent_index(chunk + 1, 2).unwrap();
            b.commit().unwrap();
        }
        put(&dst, &[("old", "1")], 0, 1);

        let path = dir.path().join("snapshot");
        let mut spy = Spy {
            inner: std::fs::File::create(&path).unwrap(),
            largest: 0,
            writes: 0,
        };
        let mut reports = 0;
        let bytes = src.backend().dump(&mut spy, |_| reports += 1).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), bytes);
        assert!(bytes > 50_000 * 100);
        assert!(spy.largest <= 64 * 1024, "largest write {}", spy.largest);
        assert!(
            spy.writes > 50 && reports > 3,
            "{} writes, {reports} reports",
            spy.writes
        );

        dst.restore_from(&mut std::fs::File::open(&path).unwrap())
            .unwrap();
        assert_eq!(dst.consistent_index(), (50, 2));
        assert_eq!(dst.current_revision(), 51);
        assert_eq!(dst.hash_kv(0).unwrap(), src.hash_kv(0).unwrap());
        assert_eq!(dst.hash().unwrap(), src.hash().unwrap());
        let r = dst
            .range(
                b"",
                b"\0",
                RangeOptions {
                    count_only: true,
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(r.count, 50_000);
    }
}
