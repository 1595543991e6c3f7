//! `snapshot status` and `snapshot restore`, with etcdutl's flags and output.

use std::path::{Path, PathBuf};

use oxcd_storage::{SnapshotFile, SnapshotStatus};
use oxcd_utl::{RestoreConfig, Result};

use crate::{print_table, Format};

/// `snapshot restore`'s flags, named and defaulted as etcdutl's.
#[derive(clap::Args)]
pub struct RestoreArgs {
    /// The snapshot file.
    file: PathBuf,
    /// Path to the output data directory (default `<name>.etcd`).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Path to the WAL directory (default: under the data directory).
    #[arg(long)]
    wal_dir: Option<PathBuf>,
    /// Human-readable name for this member.
    #[arg(long, default_value = "default")]
    name: String,
    /// Initial cluster configuration for restore bootstrap.
    #[arg(long, default_value = "default=http://localhost:2380")]
    initial_cluster: String,
    /// Initial cluster token for the etcd cluster during restore bootstrap.
    #[arg(long, default_value = "etcd-cluster")]
    initial_cluster_token: String,
    /// List of this member's peer URLs to advertise to the rest of the cluster.
    #[arg(long, default_value = "http://localhost:2380")]
    initial_advertise_peer_urls: String,
    /// Ignore the snapshot's integrity hash value (required when the file has none).
    #[arg(long)]
    skip_hash_check: bool,
    /// How much to increase the latest revision after restore.
    #[arg(long, default_value_t = 0)]
    bump_revision: u64,
    /// Mark the latest revision after restore as the point of scheduled compaction
    /// (required if --bump-revision > 0, disallowed otherwise).
    #[arg(long)]
    mark_compacted: bool,
}

/// Restores with the shared library code.
pub fn restore(args: RestoreArgs) -> Result<()> {
    oxcd_utl::restore(&RestoreConfig {
        file: args.file,
        data_dir: args.data_dir,
        wal_dir: args.wal_dir,
        name: args.name,
        initial_cluster: args.initial_cluster,
        initial_cluster_token: args.initial_cluster_token,
        initial_advertise_peer_urls: args.initial_advertise_peer_urls,
        skip_hash_check: args.skip_hash_check,
        bump_revision: args.bump_revision,
        mark_compacted: args.mark_compacted,
    })
}

/// Prints etcd's `snapshot status` of `file`.
pub fn status(file: &Path, format: Format) -> Result<()> {
    let snap = SnapshotFile::open(file, true).map_err(|e| e.to_string())?;
    let st = snap.status().map_err(|e| e.to_string())?;
    print_status(&st, format);
    Ok(())
}
fn print_status(st: &SnapshotStatus, format: Format) {
    let row = vec![
        format!("{:x}", st.hash),
        st.revision.to_string(),
        st.total_key.to_string(),
        human_bytes(st.total_size),
    ];
    match format {
        Format::Simple => println!("{}", row.join(", ")),
        Format::Table => print_table(&["hash", "revision", "total keys", "total size"], &[row]),
        Format::Json => println!(
            "{}",
            serde_json::json!({
                "hash": st.hash,
                "revision": st.revision,
                "totalKey": st.total_key,
                "totalSize": st.total_size,
            })
        ),
        Format::Fields => {
            println!("\"Hash\" : {}", st.hash);
            println!("\"Revision\" : {}", st.revision);
            println!("\"Keys\" : {}", st.total_key);
            println!("\"Size\" : {}", st.total_size);
        }
    }
}

/// Sizes as etcd prints them (go-humanize's SI bytes: `131 kB`, `2.1 MB`).
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    if n < 10 {
        return format!("{n} B");
    }
    let e = ((n as f64).ln() / 1000f64.ln()).floor() as usize;
    let val = ((n as f64) / 1000f64.powi(e as i32) * 10.0 + 0.5).floor() / 10.0;
    if val < 10.0 {
        format!("{val:.1} {}", UNITS[e])
    } else {
        format!("{val:.0} {}", UNITS[e])
    }
}

#[cfg(test)]
mod tests {
    use super::human_bytes;

    #[test]
    fn sizes_print_as_etcd_prints_them() {
        assert_eq!(human_bytes(5), "5 B");
        assert_eq!(human_bytes(131_072), "131 kB");
        assert_eq!(human_bytes(57_344), "57 kB");
        assert_eq!(human_bytes(2_101_248), "2.1 MB");
    }
}
