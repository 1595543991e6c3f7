use std::path::PathBuf;

use super::*;
use crate::backend::BackendConfig;
use crate::{KvStore, RangeOptions};
use redb::ReadableTableMetadata;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/snapshot")
        .join(name)
}

fn fresh(dir: &tempfile::TempDir, name: &str) -> Backend {
    Backend::open(dir.path().join(name), BackendConfig::default()).unwrap()
}

fn value(kv: &KvStore, key: &[u8]) -> Option<(Vec<u8>, i64, i64, i64)> {
    let r = kv.range(key, b"", RangeOptions::default()).unwrap();
    r.kvs.first().map(|kv| {
        (
            kv.value.clone(),
            kv.create_revision,
            kv.mod_revision,
            kv.version,
        )
    })
}

/// Restoring what real etcd 3.4 and 3.5 saved gives the same keys, revisions and compaction
/// point (see tests/fixtures/snapshot/make.sh for the history).
#[test]
fn restores_etcd_snapshots() {
    for file in ["etcd-3.4.db", "etcd-3.5.db"] {
        let snap = SnapshotFile::open(&fixture(file), false).unwrap();
        let st = snap.status().unwrap();
        assert_eq!(st.revision, 308, "{file}");
        assert_eq!(st.total_size, 131072, "{file}");
        let dir = tempfile::tempdir().unwrap();
        let b = fresh(&dir, "db");
        let restored = snap
            .restore_into(&b, RestoreOptions::default(), &mut |_| {})
            .unwrap();
        assert_eq!(restored.revision, 308);
        let kv = KvStore::open(b).unwrap();
        assert_eq!(kv.current_revision(), 308, "{file}");
        assert_eq!(kv.compact_revision(), 3, "{file}");
        assert_eq!(kv.consistent_index().0, 0, "{file}");
        assert_eq!(value(&kv, b"a"), Some((b"2".to_vec(), 2, 4, 2)), "{file}");
        assert_eq!(value(&kv, b"b"), None, "{file}");
        assert_eq!(value(&kv, b"c").unwrap().0, b"1", "{file}");
        assert_eq!(value(&kv, b"big").unwrap().0.len(), 10_000, "{file}");
        assert_eq!(value(&kv, b"k0300").unwrap().2, 307, "{file}");
        let txn = kv.backend().begin_read().unwrap();
        assert_eq!(txn.open_table(schema::LEASE).unwrap().len().unwrap(), 1);
        assert_eq!(txn.open_table(schema::MEMBERS).unwrap().len().unwrap(), 0);
    }
}

/// oxcd's snapshot of a restored store reads back with the same status as etcd's file,
/// apart from the Raft position and members that a restore leaves out.
#[test]
fn snapshot_of_a_backend_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let b = fresh(&dir, "db");
    SnapshotFile::open(&fixture("etcd-3.4.db"), false)
        .unwrap()
        .restore_into(&b, RestoreOptions::default(), &mut |_| {})
        .unwrap();
    let snap = b.begin_etcd_snapshot().unwrap();
    let path = dir.path().join("snap.db");
    let mut out = std::fs::File::create(&path).unwrap();
    let mut last = 0;
    let n = snap.write_to(&mut out, &mut |p| last = p).unwrap();
    drop(out);
    assert_eq!(n, snap.size());
    assert_eq!(last, n);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), n);
    let back = SnapshotFile::open(&path, false).unwrap();
    let st = back.status().unwrap();
    assert_eq!(st.revision, 308);
    // Every entry but etcd's one member and consistent index (3.4 keeps no term).
    assert_eq!(st.total_key, 314 - 2);

    let b2 = fresh(&dir, "db2");
    back.restore_into(&b2, RestoreOptions::default(), &mut |_| {})
        .unwrap();
    assert_eq!(b2.hash().unwrap(), b.hash().unwrap());
}

#[test]
fn bump_and_mark_compacted() {
    let dir = tempfile::tempdir().unwrap();
    let snap = SnapshotFile::open(&fixture("etcd-3.5.db"), false).unwrap();
    let b = fresh(&dir, "db");
    assert!(snap
        .restore_into(
            &b,
            RestoreOptions {
                bump_revision: 5,
                mark_compacted: false
            },
            &mut |_| {}
        )
        .is_err());
    let r = snap
        .restore_into(
            &b,
            RestoreOptions {
                bump_revision: 1000,
                mark_compacted: true,
            },
            &mut |_| {},
        )
        .unwrap();
    assert_eq!(r.revision, 1308);
    let kv = KvStore::open(b).unwrap();
    assert_eq!(kv.current_revision(), 1308);
    assert_eq!(value(&kv, b"a").unwrap().0, b"2");
}

#[test]
fn damaged_files_are_refused() {
    let good = std::fs::read(fixture("etcd-3.4.db")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    let mut flipped = good.clone();
    flipped[5000] ^= 1;
    let p = write("flipped", &flipped);
    assert!(matches!(
        SnapshotFile::open(&p, false),
        Err(Error::HashMismatch { .. })
    ));
    let p = write("nohash", &good[..good.len() - 32]);
    assert!(matches!(
        SnapshotFile::open(&p, false),
        Err(Error::MissingHash)
    ));
    // Without the hash check, the file opens; a truncated one does not.
    SnapshotFile::open(&p, true).unwrap().status().unwrap();
    let p = write("short", &good[..good.len() / 2]);
    assert!(SnapshotFile::open(&p, true).is_err());
}

/// A store of many batches' worth of entries restores whole through the reader/writer
/// pipeline: the same backend hash, revision and progress count.
#[test]
fn restore_of_many_batches_is_whole() {
    let dir = tempfile::tempdir().unwrap();
    let src = fresh(&dir, "src");
    let n = 3 * RESTORE_BATCH as i64 + 17;
    let batch = src.begin_write().unwrap();
    {
        let mut keys = batch.txn().open_table(schema::KEY).unwrap();
        for main in 1..=n {
            let key = Revision::new(main, 0).to_key(false);
            keys.insert(&key[..], &main.to_be_bytes()[..]).unwrap();
        }
        let mut leases = batch.txn().open_table(schema::LEASE).unwrap();
        leases
            .insert(&7u64.to_be_bytes()[..], &b"lease"[..])
            .unwrap();
    }
    batch.commit().unwrap();
    let path = dir.path().join("snap.db");
    let mut out = std::fs::File::create(&path).unwrap();
    src.begin_etcd_snapshot()
        .unwrap()
        .write_to(&mut out, &mut |_| {})
        .unwrap();
    drop(out);

    let (snap, st) = SnapshotFile::open_and_check(&path, false).unwrap();
    assert_eq!(st.revision, n);
    let dst = fresh(&dir, "dst");
    let mut seen = 0;
    let restored = snap
        .restore_into(&dst, RestoreOptions::default(), &mut |p| seen = p)
        .unwrap();
    assert_eq!(restored.revision, n);
    assert_eq!(restored.entries, n as u64 + 1);
    assert_eq!(seen, restored.entries);
    assert_eq!(dst.hash().unwrap(), src.hash().unwrap());
}

/// `open_and_check` reports a wrong hash before the damage it also finds, and a restore that
/// meets damage half way commits nothing.
#[test]
fn damage_is_found_before_and_during_a_restore() {
    let good = std::fs::read(fixture("etcd-3.4.db")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut zeroed = good.clone();
    zeroed[..8192].fill(0);
    let p = dir.path().join("zeroed");
    std::fs::write(&p, &zeroed).unwrap();
    assert!(matches!(
        SnapshotFile::open_and_check(&p, false),
        Err(Error::HashMismatch { .. })
    ));
    assert!(SnapshotFile::open_and_check(&p, true).is_err());

    // A page in the middle overwritten: the metas are fine, the walk is not.
    let mut torn = good[..good.len() - HASH_SIZE as usize].to_vec();
    let pages = torn.len() / 4096;
    for page in pages / 2..pages {
        torn[page * 4096..(page + 1) * 4096].fill(0xab);
    }
    let p = dir.path().join("torn");
    std::fs::write(&p, &torn).unwrap();
    assert!(SnapshotFile::open_and_check(&p, true).is_err());
    let snap = SnapshotFile::open(&p, true).unwrap();
    let b = fresh(&dir, "db");
    let before = b.hash().unwrap();
    assert!(snap
        .restore_into(&b, RestoreOptions::default(), &mut |_| {})
        .is_err());
    assert_eq!(b.hash().unwrap(), before);
}
