//! `snapshot status` and `snapshot restore`, with etcdutl's flags and output.

use std::path::{Path, PathBuf};

use oxcd_server::config::{self, Invocation, ServerConfig};
use oxcd_storage::{Backend, BackendConfig, RestoreOptions, SnapshotFile, SnapshotStatus};

use crate::progress::Progress;
use crate::{print_table, Format};

/// Errors end the command; their text is printed after `Error: `.
pub type Result<T> = std::result::Result<T, String>;

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

/// `snapshot restore`: checks the flags and the whole file first, then lays out the data dir.
/// A failure after that removes what it wrote.
pub fn restore(args: &RestoreArgs) -> Result<()> {
    if args.bump_revision > 0 && !args.mark_compacted {
        return Err("--mark-compacted required if --bump-revision > 0".into());
    }
    if args.bump_revision == 0 && args.mark_compacted {
        return Err("--mark-compacted disallowed if --bump-revision == 0".into());
    }
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}.etcd", args.name)));
    let cfg = member_config(args, &data_dir)?;
    if data_dir.exists() {
        return Err(format!(
            "data-dir {:?} exists",
            data_dir.display().to_string()
        ));
    }
    if let Some(wal) = &args.wal_dir {
        if wal.exists() {
            return Err(format!("wal-dir {:?} exists", wal.display().to_string()));
        }
    }
    tracing::info!(
        path = %args.file.display(),
        "data-dir" = %data_dir.display(),
        "wal-dir" = %cfg.wal_dir().display(),
        "restoring snapshot"
    );
    // Read it all once before writing anything: damage found half way must leave no data dir.
    let (snap, st) = SnapshotFile::open_and_check(&args.file, args.skip_hash_check)
        .map_err(|e| e.to_string())?;

    let result = lay_out(&cfg, &snap, st.total_key, args);
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&data_dir);
        if let Some(wal) = &args.wal_dir {
            let _ = std::fs::remove_dir_all(wal);
        }
    }
    let restored = result?;
    tracing::info!(
        path = %args.file.display(),
        "data-dir" = %data_dir.display(),
        revision = restored.revision,
        keys = restored.entries,
        "restored snapshot"
    );
    Ok(())
}

fn lay_out(
    cfg: &ServerConfig,
    snap: &SnapshotFile,
    total: u64,
    args: &RestoreArgs,
) -> Result<oxcd_storage::Restored> {
    let snap_dir = cfg.snap_dir();
    std::fs::create_dir_all(&snap_dir)
        .map_err(|e| format!("cannot create {}: {e}", snap_dir.display()))?;
    let backend =
        Backend::open(cfg.backend_path(), BackendConfig::default()).map_err(|e| e.to_string())?;
    let mut progress = Progress::new("restore", Some(total), false);
    let opts = RestoreOptions {
        bump_revision: args.bump_revision,
        mark_compacted: args.mark_compacted,
    };
    let restored = snap
        .restore_into(&backend, opts, &mut |n| progress.set(n))
        .map_err(|e| e.to_string())?;
    progress.finish(restored.entries);
    drop(backend);
    oxcd_server::bootstrap::initialize(cfg).map_err(|e| e.to_string())?;
    Ok(restored)
}

/// The new member as `oxcd` would see it with the same flags: ids, URLs and checks are the
/// server's own.
fn member_config(args: &RestoreArgs, data_dir: &Path) -> Result<ServerConfig> {
    let mut argv: Vec<String> = vec!["oxcd".into()];
    let mut flag = |name: &str, value: &str| {
        argv.push(format!("--{name}"));
        argv.push(value.to_string());
    };
    flag("name", &args.name);
    flag("data-dir", &data_dir.display().to_string());
    flag("initial-cluster", &args.initial_cluster);
    flag("initial-cluster-token", &args.initial_cluster_token);
    flag(
        "initial-advertise-peer-urls",
        &args.initial_advertise_peer_urls,
    );
    if let Some(wal) = &args.wal_dir {
        flag("wal-dir", &wal.display().to_string());
    }
    let cfg = match config::parse_from(argv, std::iter::empty()) {
        Ok(Invocation::Serve(cfg)) => *cfg,
        Ok(_) => return Err("unexpected flags".into()),
        Err(e) => return Err(e.to_string()),
    };
    cfg.verify_bootstrap().map_err(|e| e.to_string())?;
    Ok(cfg)
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
