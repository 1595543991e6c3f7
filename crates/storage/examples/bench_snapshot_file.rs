//! Writes an etcd-format snapshot file of `N` keys (`key00000000`, …) with `SIZE`-byte values,
//! each put by its own revision (2 to N+1), for the snapshot benchmark (`scripts/bench-snapshot.sh`):
//! both `etcdctl snapshot restore` and `oxcdutl snapshot restore` load it, so both servers start
//! with the same store without a long load through the API. Entries are made on the fly.
//!
//!     cargo run --release -p oxcd-storage --example bench_snapshot_file -- N SIZE OUT.db

use std::io::{BufWriter, Write};

use oxcd_api::mvccpb::KeyValue;
use oxcd_storage::bbolt::{self, BucketSource, Layout, Visit};
use prost::Message;
use sha2::{Digest, Sha256};

struct Generated {
    keys: u64,
    value: Vec<u8>,
}

impl BucketSource for Generated {
    fn buckets(&self) -> Vec<Vec<u8>> {
        vec![b"key".to_vec(), b"meta".to_vec()]
    }

    fn scan(&self, bucket: &[u8], f: &mut Visit<'_>) -> bbolt::Result<()> {
        if bucket == b"meta" {
            return f(b"consistent_index", &1u64.to_be_bytes());
        }
        let mut rev = [0u8; 17];
        rev[8] = b'_';
        for i in 0..self.keys {
            let main = i as i64 + 2;
            rev[..8].copy_from_slice(&main.to_be_bytes());
            let kv = KeyValue {
                key: format!("key{i:08}").into_bytes(),
                create_revision: main,
                mod_revision: main,
                version: 1,
                value: self.value.clone(),
                lease: 0,
            };
            f(&rev, &kv.encode_to_vec())?;
        }
        Ok(())
    }
}

struct Hashing<W: Write>(W, Sha256);

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.0.write(buf)?;
        self.1.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, n, size, out] = &args[..] else {
        return Err("usage: bench_snapshot_file N SIZE OUT.db".into());
    };
    let src = Generated {
        keys: n.parse()?,
        value: vec![b'v'; size.parse()?],
    };
    let layout = Layout::plan(&src)?;
    let mut w = Hashing(BufWriter::new(std::fs::File::create(out)?), Sha256::new());
    bbolt::write(&layout, &src, &mut w, &mut |_| {})?;
    let hash = w.1.finalize();
    w.0.write_all(&hash)?;
    w.0.flush()?;
    Ok(())
}
