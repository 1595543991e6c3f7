//! `defrag`, `backup` and `hashkv` against a stopped member's data dir.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use oxcd_storage::KvStore;

use crate::{print_table, Format};
use oxcd_utl::progress::Progress;
use oxcd_utl::stopped::open_backend;
use oxcd_utl::Result;

/// `defrag --data-dir`: rewrites the backend without its free pages.
pub fn defrag(data_dir: &Path) -> Result<()> {
    let backend = open_backend(data_dir)?;
    let before = backend.size().map_err(|e| e.to_string())?;
    backend.defrag().map_err(|e| e.to_string())?;
    let after = backend.size().map_err(|e| e.to_string())?;
    tracing::info!(
        path = %backend.path().display(),
        "current-db-size-bytes-diff" = after as i64 - before as i64,
        "current-db-size-bytes" = after,
        "defragmented backend"
    );
    println!("Finished defragmenting etcd data[{}]", data_dir.display());
    Ok(())
}

/// `backup --data-dir FILE`: the backend as an etcd-format snapshot file, written under a
/// temporary name and renamed once complete and synced.
pub fn backup(data_dir: &Path, file: &Path) -> Result<()> {
    let backend = open_backend(data_dir)?;
    let snap = backend.begin_etcd_snapshot().map_err(|e| e.to_string())?;
    let part = PathBuf::from(format!("{}.part", file.display()));
    let out = File::create(&part).map_err(|e| format!("{}: {e}", part.display()))?;
    let mut progress = Progress::new("backup", Some(snap.size()), true);
    let mut w = BufWriter::with_capacity(1 << 20, out);
    let written = snap
        .write_to(&mut w, &mut |n| progress.set(n))
        .and_then(|n| {
            w.flush()?;
            w.get_ref().sync_all()?;
            Ok(n)
        });
    let written = match written {
        Ok(n) => n,
        Err(e) => {
            let _ = fs::remove_file(&part);
            return Err(e.to_string());
        }
    };
    fs::rename(&part, file).map_err(|e| e.to_string())?;
    progress.finish(written);
    println!("Snapshot saved at {}", file.display());
    Ok(())
}

/// `hashkv --data-dir [--rev]`: the hash `etcdctl endpoint hashkv` gets from a member.
pub fn hashkv(data_dir: &Path, rev: i64, format: Format) -> Result<()> {
    let kv = KvStore::open(open_backend(data_dir)?).map_err(|e| e.to_string())?;
    let h = kv.hash_kv(rev).map_err(|e| e.to_string())?;
    let row = vec![
        h.hash.to_string(),
        h.hash_revision.to_string(),
        h.compact_revision.to_string(),
    ];
    match format {
        Format::Simple => println!("{}", row.join(", ")),
        Format::Table => print_table(&["hash", "hash revision", "compact revision"], &[row]),
        Format::Json => println!(
            "{}",
            serde_json::json!({
                "hash": h.hash,
                "hashRevision": h.hash_revision,
                "compactRevision": h.compact_revision,
            })
        ),
        Format::Fields => {
            println!("\"Hash\" : {}", h.hash);
            println!("\"HashRevision\" : {}", h.hash_revision);
            println!("\"CompactRevision\" : {}", h.compact_revision);
        }
    }
    Ok(())
}
