//! A new member's data dir is created whole or not at all.
//!
//! The WAL is what makes a directory a member: a start that finds one restarts from it, a start
//! that finds none creates a new member. So a new member's files (backend, bootstrap snapshot,
//! WAL) are built in a staging directory next to the real one, made durable, and renamed into
//! place. A WAL of its own (`--wal-dir`, often a mount point that cannot be renamed) is built in
//! a staging directory inside it, and its one segment renamed into it after the member
//! directory is in place. A first start that fails at any step (a full disk, a crash) leaves at
//! most staging directories or a member directory without a WAL; the next start removes those
//! and builds again, instead of tripping over a half-written backend.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use oxcd_storage::dir_ops;

use crate::config::ServerConfig;
use crate::error::ServerError;

/// Suffix of the member directory being built.
const STAGING_SUFFIX: &str = ".tmp";

/// The staging directory inside a WAL directory of its own.
const WAL_STAGING: &str = "new.tmp";

/// Where a member's files live.
#[derive(Clone, Debug)]
pub struct Layout {
    /// `<data-dir>/member`: the backend and snapshots, and the WAL unless `--wal-dir`.
    pub member_dir: PathBuf,
    /// The WAL directory.
    pub wal_dir: PathBuf,
}

impl Layout {
    /// The layout `cfg` asks for.
    pub fn of(cfg: &ServerConfig) -> Layout {
        Layout {
            member_dir: cfg.member_dir(),
            wal_dir: cfg.wal_dir(),
        }
    }

    /// `member/snap`: snapshots and the backend file.
    pub fn snap_dir(&self) -> PathBuf {
        self.member_dir.join("snap")
    }

    /// `member/snap/db`, the backend file.
    pub fn backend_path(&self) -> PathBuf {
        self.snap_dir().join("db")
    }

    /// Whether the WAL lives outside the member directory (`--wal-dir`).
    fn wal_apart(&self) -> bool {
        !self.wal_dir.starts_with(&self.member_dir)
    }

    /// The same layout in staging directories.
    fn staging(&self) -> Layout {
        let member_dir = with_suffix(&self.member_dir);
        let wal_dir = match self.wal_dir.strip_prefix(&self.member_dir) {
            Ok(inside) => member_dir.join(inside),
            Err(_) => self.wal_dir.join(WAL_STAGING),
        };
        Layout {
            member_dir,
            wal_dir,
        }
    }
}

/// Creates a new member at `layout`: `build` writes every file into the staging layout it is
/// given and closes them; then they are synced and renamed into place.
pub fn create(
    layout: &Layout,
    build: impl FnOnce(&Layout) -> Result<(), ServerError>,
) -> Result<(), ServerError> {
    let staging = layout.staging();
    remove_leftovers(layout, &staging)?;
    create_dirs_durably(&staging.member_dir)?;
    if layout.wal_apart() {
        create_dirs_durably(&layout.wal_dir)?;
    }
    build(&staging)?;
    for dir in [
        staging.snap_dir(),
        staging.wal_dir.clone(),
        staging.member_dir.clone(),
    ] {
        sync_dir(&dir)?;
    }
    rename_durably(&staging.member_dir, &layout.member_dir)?;
    if layout.wal_apart() {
        let segments = fs::read_dir(&staging.wal_dir)
            .and_then(|dir| dir.collect::<io::Result<Vec<_>>>())
            .map_err(io_error("reading", &staging.wal_dir))?;
        for segment in segments {
            rename_durably(&segment.path(), &layout.wal_dir.join(segment.file_name()))?;
        }
        fs::remove_dir(&staging.wal_dir).map_err(io_error("removing", &staging.wal_dir))?;
    }
    tracing::info!(path = %layout.member_dir.display(), "created the member's data dir");
    Ok(())
}

/// Removes what a failed first start may have left: staging directories, and a member
/// directory without a WAL, which holds nothing a member can start from.
fn remove_leftovers(layout: &Layout, staging: &Layout) -> Result<(), ServerError> {
    let leftovers = [&staging.member_dir, &staging.wal_dir, &layout.member_dir];
    for dir in leftovers.into_iter().filter(|d| d.exists()) {
        tracing::warn!(path = %dir.display(), "removing an incomplete data dir left by a failed start");
        fs::remove_dir_all(dir).map_err(io_error("removing", dir))?;
    }
    Ok(())
}

fn with_suffix(dir: &Path) -> PathBuf {
    let mut name = dir.as_os_str().to_owned();
    name.push(STAGING_SUFFIX);
    PathBuf::from(name)
}

/// Renames `from` to `to` and syncs the directory holding `to`, so the rename survives a crash.
fn rename_durably(from: &Path, to: &Path) -> Result<(), ServerError> {
    let parent = parent(to);
    create_dirs_durably(parent)?;
    dir_ops::rename(from, to).map_err(io_error("renaming", from))?;
    sync_dir(parent)
}

/// Creates `dir` and any missing parent, each made durable by a sync of the directory holding
/// it: a data dir that vanished in a power loss would take the member with it.
fn create_dirs_durably(dir: &Path) -> Result<(), ServerError> {
    let missing: Vec<&Path> = dir
        .ancestors()
        .take_while(|d| !d.as_os_str().is_empty() && !d.exists())
        .collect();
    for d in missing.into_iter().rev() {
        dir_ops::create(d, || fs::create_dir(d)).map_err(io_error("creating", d))?;
        sync_dir(parent(d))?;
    }
    Ok(())
}

/// Test builds in power-loss mode (see `oxcd_storage::dir_ops`): undoes the changes to the
/// member's directories, and to the directories holding them, that were never synced, as a
/// machine losing power would. Does nothing otherwise.
pub fn drop_unsynced_changes(layout: &Layout) -> Result<(), ServerError> {
    let staging = layout.staging();
    // Inner directories first.
    let mut dirs = vec![
        layout.wal_dir.clone(),
        layout.snap_dir(),
        staging.wal_dir.clone(),
        staging.snap_dir(),
        staging.member_dir.clone(),
    ];
    for base in [&layout.member_dir, &layout.wal_dir] {
        let bare = Path::new(".");
        dirs.extend(
            base.ancestors()
                .map(|d| if d.as_os_str().is_empty() { bare } else { d })
                .map(Path::to_path_buf),
        );
    }
    dir_ops::drop_unsynced(&dirs)
        .map_err(io_error("dropping unsynced changes in", &layout.member_dir))
}

/// The directory holding `path` (`.` for a bare name).
fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn sync_dir(dir: &Path) -> Result<(), ServerError> {
    dir_ops::sync_dir(dir).map_err(io_error("syncing", dir))
}

fn io_error<'a>(op: &'a str, path: &'a Path) -> impl FnOnce(io::Error) -> ServerError + 'a {
    move |e| {
        ServerError::Storage(format!(
            "cannot create the data dir: {op} {}: {e}",
            path.display()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(root: &Path, wal_apart: bool) -> Layout {
        let member_dir = root.join("data").join("member");
        let wal_dir = if wal_apart {
            root.join("wal")
        } else {
            member_dir.join("wal")
        };
        Layout {
            member_dir,
            wal_dir,
        }
    }

    fn write_files(staging: &Layout) -> Result<(), ServerError> {
        fs::create_dir_all(staging.snap_dir()).unwrap();
        fs::create_dir_all(&staging.wal_dir).unwrap();
        fs::write(staging.backend_path(), b"db").unwrap();
        fs::write(staging.wal_dir.join("0.wal"), b"wal").unwrap();
        Ok(())
    }

    #[test]
    fn files_appear_only_once_complete() {
        for wal_apart in [false, true] {
            let root = tempfile::tempdir().unwrap();
            let layout = layout(root.path(), wal_apart);
            let failed = create(&layout, |staging| {
                write_files(staging)?;
                Err(ServerError::Storage("disk full".into()))
            });
            assert!(failed.is_err());
            assert!(!layout.member_dir.exists());
            // A WAL of its own may exist as a directory, but holds no segment.
            assert!(!layout.wal_dir.join("0.wal").exists());

            create(&layout, write_files).unwrap();
            assert_eq!(fs::read(layout.backend_path()).unwrap(), b"db");
            assert_eq!(fs::read(layout.wal_dir.join("0.wal")).unwrap(), b"wal");
            assert!(!layout.staging().member_dir.exists());
            assert!(!layout.staging().wal_dir.exists());
        }
    }

    #[test]
    fn a_member_dir_without_wal_is_replaced() {
        let root = tempfile::tempdir().unwrap();
        let layout = layout(root.path(), false);
        fs::create_dir_all(layout.snap_dir()).unwrap();
        fs::write(layout.backend_path(), b"half written").unwrap();
        create(&layout, write_files).unwrap();
        assert_eq!(fs::read(layout.backend_path()).unwrap(), b"db");
    }
}
