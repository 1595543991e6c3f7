//! `snapshot restore`: a new member's data dir from an etcd-format snapshot file.

use std::path::{Path, PathBuf};

use oxcd_server::config::{self, Invocation, ServerConfig};
use oxcd_storage::{Backend, BackendConfig, BackupError, RestoreOptions, Restored, SnapshotFile};

use crate::progress::Progress;

/// Errors end the command; their text is printed after `Error: `.
pub type Result<T> = std::result::Result<T, String>;

/// What to restore and the new member's identity, as etcd's `RestoreConfig`.
#[derive(Clone, Debug)]
pub struct RestoreConfig {
    /// The snapshot file.
    pub file: PathBuf,
    /// The data dir to create; `<name>.etcd` when none is given.
    pub data_dir: Option<PathBuf>,
    /// The WAL dir to create; under the data dir when none is given.
    pub wal_dir: Option<PathBuf>,
    /// The new member's name.
    pub name: String,
    /// `name=peer-url,...` of every founding member.
    pub initial_cluster: String,
    pub initial_cluster_token: String,
    /// This member's peer URLs, comma-separated.
    pub initial_advertise_peer_urls: String,
    /// Accept a file without (or with a wrong) integrity hash, as copied from a data dir.
    pub skip_hash_check: bool,
    /// How much to raise the newest revision (etcdutl 3.5; 0 keeps it).
    pub bump_revision: u64,
    /// Mark the (bumped) newest revision compacted (required with `bump_revision`).
    pub mark_compacted: bool,
}

/// Checks the flags and the whole file first, then lays out the data dir; a failure after
/// that removes what it wrote. The steps are logged with etcd's messages.
pub fn restore(cfg: &RestoreConfig) -> Result<()> {
    if cfg.bump_revision > 0 && !cfg.mark_compacted {
        return Err("--mark-compacted required if --bump-revision > 0".into());
    }
    if cfg.bump_revision == 0 && cfg.mark_compacted {
        return Err("--mark-compacted disallowed if --bump-revision == 0".into());
    }
    let data_dir = cfg
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}.etcd", cfg.name)));
    let member = member_config(cfg, &data_dir)?;
    if data_dir.exists() {
        return Err(format!(
            "data-dir {:?} exists",
            data_dir.display().to_string()
        ));
    }
    if let Some(wal) = &cfg.wal_dir {
        if wal.exists() {
            return Err(format!("wal-dir {:?} exists", wal.display().to_string()));
        }
    }
    let (wal_dir, snap_dir) = (member.wal_dir(), member.snap_dir());
    tracing::info!(
        path = %cfg.file.display(),
        "wal-dir" = %wal_dir.display(),
        "data-dir" = %data_dir.display(),
        "snap-dir" = %snap_dir.display(),
        "restoring snapshot"
    );
    // Go's words for a file that cannot be opened: `open PATH: no such file or directory`.
    std::fs::File::open(&cfg.file).map_err(|e| {
        let text = e.to_string().to_lowercase();
        let text = text.split(" (os error").next().unwrap_or_default();
        format!("open {}: {text}", cfg.file.display())
    })?;
    // Read it all once before writing anything: damage found half way must leave no data dir.
    let (snap, st) =
        SnapshotFile::open_and_check(&cfg.file, cfg.skip_hash_check).map_err(|e| match e {
            BackupError::HashMismatch { expected, got } => format!(
                "expected sha256 {}, got {}",
                go_bytes(&expected),
                go_bytes(&got)
            ),
            e => e.to_string(),
        })?;

    let result = lay_out(&member, &snap, st.total_key, cfg);
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&data_dir);
        if let Some(wal) = &cfg.wal_dir {
            let _ = std::fs::remove_dir_all(wal);
        }
    }
    let restored = result?;
    log_members(&member)?;
    tracing::info!(
        path = %cfg.file.display(),
        "wal-dir" = %wal_dir.display(),
        "data-dir" = %data_dir.display(),
        "snap-dir" = %snap_dir.display(),
        revision = restored.revision,
        keys = restored.entries,
        "restored snapshot"
    );
    Ok(())
}

fn lay_out(
    member: &ServerConfig,
    snap: &SnapshotFile,
    total: u64,
    cfg: &RestoreConfig,
) -> Result<Restored> {
    let snap_dir = member.snap_dir();
    std::fs::create_dir_all(&snap_dir)
        .map_err(|e| format!("cannot create {}: {e}", snap_dir.display()))?;
    let backend = Backend::open(member.backend_path(), BackendConfig::default())
        .map_err(|e| e.to_string())?;
    let mut progress = Progress::new("restore", Some(total), false);
    let opts = RestoreOptions {
        bump_revision: cfg.bump_revision,
        mark_compacted: cfg.mark_compacted,
    };
    let restored = snap
        .restore_into(&backend, opts, &mut |n| progress.set(n))
        .map_err(|e| e.to_string())?;
    progress.finish(restored.entries);
    drop(backend);
    oxcd_server::bootstrap::initialize(member).map_err(|e| e.to_string())?;
    Ok(restored)
}

/// etcd's "added member" line for each founding member written into the new data dir
/// (scripts wait for it).
fn log_members(member: &ServerConfig) -> Result<()> {
    let cluster_id = member.cluster_id().map_err(|e| e.to_string())?;
    for m in member.initial_members().map_err(|e| e.to_string())? {
        let urls: Vec<String> = m.peer_urls.iter().map(ToString::to_string).collect();
        tracing::info!(
            "cluster-id" = %format_args!("{cluster_id:x}"),
            "local-member-id" = "0",
            "added-peer-id" = %format_args!("{:x}", m.id),
            "added-peer-peer-urls" = ?urls,
            "added member"
        );
    }
    Ok(())
}

/// Hex digits as Go's `%v` prints the bytes they spell: `[213 36 ...]` (etcd's hash
/// mismatch text).
fn go_bytes(hex: &str) -> String {
    let bytes: Vec<String> = hex
        .as_bytes()
        .chunks(2)
        .map(|pair| {
            std::str::from_utf8(pair)
                .ok()
                .and_then(|p| u8::from_str_radix(p, 16).ok())
                .map_or_else(|| "?".to_owned(), |b| b.to_string())
        })
        .collect();
    format!("[{}]", bytes.join(" "))
}

/// The new member as `oxcd` would see it with the same flags: ids, URLs and checks are the
/// server's own.
fn member_config(cfg: &RestoreConfig, data_dir: &Path) -> Result<ServerConfig> {
    let mut argv: Vec<String> = vec!["oxcd".into()];
    let mut flag = |name: &str, value: &str| {
        argv.push(format!("--{name}"));
        argv.push(value.to_string());
    };
    flag("name", &cfg.name);
    flag("data-dir", &data_dir.display().to_string());
    flag("initial-cluster", &cfg.initial_cluster);
    flag("initial-cluster-token", &cfg.initial_cluster_token);
    flag(
        "initial-advertise-peer-urls",
        &cfg.initial_advertise_peer_urls,
    );
    if let Some(wal) = &cfg.wal_dir {
        flag("wal-dir", &wal.display().to_string());
    }
    let member = match config::parse_from(argv, std::iter::empty()) {
        Ok(Invocation::Serve(member)) => *member,
        Ok(_) => return Err("unexpected flags".into()),
        // etcd names no flag in a bad URL's error: `URL scheme must be ...: ftp://x`.
        Err(e) => {
            let text = e.to_string();
            let reason = text
                .split_once(": ")
                .filter(|(flag, _)| flag.starts_with("invalid value"));
            return Err(reason.map_or(text.clone(), |(_, reason)| reason.to_owned()));
        }
    };
    member.verify_bootstrap().map_err(|e| e.to_string())?;
    // The server puts `--name` into a default `--initial-cluster` (as etcd does); a restore
    // takes the flag as given.
    let listed = config::parse_initial_cluster(&cfg.initial_cluster).map_err(|e| e.to_string())?;
    if !listed.contains_key(&cfg.name) {
        return Err(format!(
            "couldn't find local name {:?} in the initial cluster configuration",
            cfg.name
        ));
    }
    Ok(member)
}

#[cfg(test)]
mod tests {
    use super::go_bytes;

    #[test]
    fn hashes_print_as_go_byte_slices() {
        assert_eq!(go_bytes("d524ff00"), "[213 36 255 0]");
    }
}
