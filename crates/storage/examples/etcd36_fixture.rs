//! Makes `tests/fixtures/snapshot/etcd-3.6.db`, a snapshot laid out as etcd 3.6 writes its
//! database, from the one real etcd 3.5.1 saved (`etcd-3.5.db`). etcd 3.6 cannot be installed
//! here; what its schema adds over 3.5 is the `storageVersion` key in `meta` (the schema
//! version, `3.6.0`, written as text by `schema.UnsafeSetStorageVersion`). 3.5 already added
//! `term` and `confState` there.
//!
//!     cargo run --release -p oxcd-storage --example etcd36_fixture -- IN.db OUT.db

use std::collections::BTreeMap;
use std::io::Write;

use oxcd_storage::bbolt::{self, BucketSource, Layout, Reader, Visit};
use sha2::{Digest, Sha256};

struct Buckets(BTreeMap<Vec<u8>, BTreeMap<Vec<u8>, Vec<u8>>>);

impl BucketSource for Buckets {
    fn buckets(&self) -> Vec<Vec<u8>> {
        self.0.keys().cloned().collect()
    }

    fn scan(&self, bucket: &[u8], f: &mut Visit<'_>) -> bbolt::Result<()> {
        for (k, v) in &self.0[bucket] {
            f(k, v)?;
        }
        Ok(())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, input, output] = &args[..] else {
        return Err("usage: etcd36_fixture IN.db OUT.db".into());
    };
    let len = std::fs::metadata(input)?.len();
    let reader = Reader::new(std::fs::File::open(input)?, len - len % 512)?;
    let mut buckets = BTreeMap::new();
    for name in reader.buckets()? {
        let mut entries = BTreeMap::new();
        reader.scan(&name, &mut |k, v| {
            entries.insert(k.to_vec(), v.to_vec());
            Ok(())
        })?;
        buckets.insert(name, entries);
    }
    buckets
        .get_mut(&b"meta"[..])
        .ok_or("no meta bucket")?
        .insert(b"storageVersion".to_vec(), b"3.6.0".to_vec());
    let src = Buckets(buckets);
    let layout = Layout::plan(&src)?;
    let mut db = Vec::new();
    bbolt::write(&layout, &src, &mut db, &mut |_| {})?;
    let hash = Sha256::digest(&db);
    let mut out = std::fs::File::create(output)?;
    out.write_all(&db)?;
    out.write_all(&hash)?;
    Ok(())
}
