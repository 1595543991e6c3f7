//! Raft snapshot files in `member/snap/`.
//!
//! Each snapshot is one file named `{term:016x}-{index:016x}.snap` (hex, so names sort by
//! term then index) holding a CRC-32C of the payload (4 bytes, little endian) followed by the
//! payload: the raft `Snapshot` (metadata and data) in protobuf. Files are written under
//! `<name>.tmp`, synced and renamed, then the directory is synced, so a crash leaves either
//! the whole file or none. A file that fails its checksum or does not decode is renamed
//! `<name>.broken` when loading, and the next older one is tried, as etcd does.
//!
//! The backend database a follower receives from its leader is kept beside them as
//! `{index:016x}.snap.db` ([`Snapshotter::db_path_for`]).

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use protobuf::Message;
use raft::eraftpb::Snapshot;

use crate::dir_ops;
use crate::wal::WalSnapshot;

const SNAP_SUFFIX: &str = ".snap";
const TMP_SUFFIX: &str = ".tmp";
const BROKEN_SUFFIX: &str = ".broken";

/// What went wrong with snapshot files. A damaged snapshot file is not an error: it is set
/// aside as `*.broken` and an older one is used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file system call failed.
    #[error("snap: {op} {}: {source}", path.display())]
    Io {
        /// What we were doing.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The snapshot could not be encoded.
    #[error("snap: encoding a snapshot: {0}")]
    Encode(#[source] protobuf::ProtobufError),
}

/// Result with a snapshot [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| Error::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Saves and loads raft snapshots in one directory. Called from the raft node's thread;
/// every call may block on disk I/O.
#[derive(Clone, Debug)]
pub struct Snapshotter {
    dir: PathBuf,
}

impl Snapshotter {
    /// Uses `dir` (made, durably, if missing); removes `*.snap.tmp` files left by a crash.
    pub fn new(dir: &Path) -> Result<Snapshotter> {
        if !dir.exists() {
            dir_ops::create(dir, || fs::create_dir_all(dir))
                .map_err(io_err("creating directory", dir))?;
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(parent)?;
            }
        }
        for name in list(dir)? {
            if name.ends_with(&format!("{SNAP_SUFFIX}{TMP_SUFFIX}")) {
                let path = dir.join(&name);
                fs::remove_file(&path).map_err(io_err("removing", &path))?;
            }
        }
        Ok(Snapshotter {
            dir: dir.to_path_buf(),
        })
    }

    /// The snapshot directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the backend database of the snapshot at `index` is kept.
    pub fn db_path_for(&self, index: u64) -> PathBuf {
        self.dir.join(format!("{index:016x}.snap.db"))
    }

    /// Writes `snap` durably. An empty snapshot (index 0) is not written.
    pub fn save(&self, snap: &Snapshot) -> Result<()> {
        let meta = snap.get_metadata();
        if meta.index == 0 {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let body = snap.write_to_bytes().map_err(Error::Encode)?;
        metrics::histogram!("etcd_debugging_snap_save_marshalling_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        let name = snap_name(meta.term, meta.index);
        let path = self.dir.join(&name);
        let tmp = self.dir.join(format!("{name}{TMP_SUFFIX}"));
        let write = || -> io::Result<()> {
            let mut f = dir_ops::create(&tmp, || File::create(&tmp))?;
            f.write_all(&crc32c::crc32c(&body).to_le_bytes())?;
            f.write_all(&body)?;
            let fsync_started = std::time::Instant::now();
            f.sync_all()?;
            metrics::histogram!("etcd_snap_fsync_duration_seconds")
                .record(fsync_started.elapsed().as_secs_f64());
            Ok(())
        };
        if let Err(e) = write() {
            let _ = fs::remove_file(&tmp);
            return Err(io_err("writing", &tmp)(e));
        }
        dir_ops::rename(&tmp, &path).map_err(io_err("renaming", &tmp))?;
        sync_dir(&self.dir)?;
        metrics::histogram!("etcd_debugging_snap_save_total_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        tracing::info!(path = %path.display(), term = meta.term, index = meta.index, "saved snapshot");
        Ok(())
    }

    /// The newest valid snapshot, or `None` if there is none.
    pub fn load(&self) -> Result<Option<Snapshot>> {
        self.load_where(|_| true)
    }

    /// The newest valid snapshot whose (index, term) is one of `wanted`, e.g. the markers
    /// from [`crate::wal::Wal::valid_snapshots`] (as etcd's `LoadNewestAvailable`).
    pub fn load_newest_available(&self, wanted: &[WalSnapshot]) -> Result<Option<Snapshot>> {
        self.load_where(|s| wanted.contains(&s))
    }

    fn load_where(&self, accept: impl Fn(WalSnapshot) -> bool) -> Result<Option<Snapshot>> {
        let mut names: Vec<(WalSnapshot, String)> = list(&self.dir)?
            .into_iter()
            .filter_map(|n| parse_snap_name(&n).map(|s| (s, n)))
            .collect();
        names.sort_by(|a, b| b.1.cmp(&a.1));
        for (id, name) in names {
            if !accept(id) {
                continue;
            }
            let path = self.dir.join(&name);
            match read_snap(&path, id) {
                Ok(snap) => return Ok(Some(snap)),
                Err(reason) => {
                    let broken = self.dir.join(format!("{name}{BROKEN_SUFFIX}"));
                    tracing::warn!(path = %path.display(), reason, "snapshot file is broken, trying an older one");
                    dir_ops::rename(&path, &broken).map_err(io_err("renaming", &path))?;
                    sync_dir(&self.dir)?;
                }
            }
        }
        Ok(None)
    }

    /// The snapshot files set aside as broken (by this start or an earlier one), oldest first,
    /// each with what is wrong with it.
    pub fn broken_files(&self) -> Result<Vec<(PathBuf, String)>> {
        let mut names: Vec<String> = list(&self.dir)?
            .into_iter()
            .filter(|n| {
                n.strip_suffix(BROKEN_SUFFIX)
                    .and_then(parse_snap_name)
                    .is_some()
            })
            .collect();
        names.sort();
        Ok(names
            .into_iter()
            .map(|name| {
                let id = name
                    .strip_suffix(BROKEN_SUFFIX)
                    .and_then(parse_snap_name)
                    .expect("filtered above");
                let path = self.dir.join(&name);
                let reason = match read_snap(&path, id) {
                    Ok(_) => "set aside as broken by an earlier start".to_string(),
                    Err(reason) => reason,
                };
                (path, reason)
            })
            .collect())
    }

    /// Deletes all but the newest `keep` snapshot files; returns how many went.
    pub fn purge(&self, keep: usize) -> Result<usize> {
        let mut names: Vec<String> = list(&self.dir)?
            .into_iter()
            .filter(|n| parse_snap_name(n).is_some())
            .collect();
        names.sort();
        let remove = names.len().saturating_sub(keep);
        for name in &names[..remove] {
            let path = self.dir.join(name);
            dir_ops::remove_file(&path).map_err(io_err("removing", &path))?;
            tracing::info!(path = %path.display(), "purged snapshot file");
        }
        if remove > 0 {
            sync_dir(&self.dir)?;
        }
        Ok(remove)
    }
}

fn snap_name(term: u64, index: u64) -> String {
    format!("{term:016x}-{index:016x}{SNAP_SUFFIX}")
}

fn parse_snap_name(name: &str) -> Option<WalSnapshot> {
    let (term, index) = name.strip_suffix(SNAP_SUFFIX)?.split_once('-')?;
    let hex = |s: &str| {
        (s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| u64::from_str_radix(s, 16).ok())
            .flatten()
    };
    Some(WalSnapshot {
        term: hex(term)?,
        index: hex(index)?,
    })
}

/// Reads and checks one file; the error says why it is broken.
fn read_snap(path: &Path, id: WalSnapshot) -> std::result::Result<Snapshot, String> {
    let bytes = fs::read(path).map_err(|e| e.to_string())?;
    if bytes.len() < 4 {
        return Err("file too short".into());
    }
    let (crc, body) = bytes.split_at(4);
    if crc32c::crc32c(body).to_le_bytes() != crc {
        return Err("crc mismatch".into());
    }
    let snap = Snapshot::parse_from_bytes(body).map_err(|e| format!("undecodable: {e}"))?;
    let meta = snap.get_metadata();
    if meta.index != id.index || meta.term != id.term {
        return Err(format!(
            "holds term {} index {}, not what its name says",
            meta.term, meta.index
        ));
    }
    Ok(snap)
}

fn list(dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for dent in fs::read_dir(dir).map_err(io_err("reading directory", dir))? {
        let dent = dent.map_err(io_err("reading directory", dir))?;
        if let Ok(name) = dent.file_name().into_string() {
            out.push(name);
        }
    }
    Ok(out)
}

fn sync_dir(dir: &Path) -> Result<()> {
    dir_ops::sync_dir(dir).map_err(io_err("syncing directory", dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(term: u64, index: u64, data: &[u8]) -> Snapshot {
        let mut s = Snapshot::default();
        s.mut_metadata().term = term;
        s.mut_metadata().index = index;
        s.mut_metadata().mut_conf_state().voters = vec![1, 2, 3];
        s.data = data.to_vec().into();
        s
    }

    #[test]
    fn save_and_load_newest() {
        let dir = tempfile::tempdir().unwrap();
        let sn = Snapshotter::new(dir.path()).unwrap();
        assert_eq!(sn.load().unwrap(), None);
        sn.save(&snapshot(0, 0, b"empty")).unwrap();
        assert_eq!(sn.load().unwrap(), None);
        sn.save(&snapshot(1, 10, b"a")).unwrap();
        sn.save(&snapshot(2, 20, b"b")).unwrap();
        sn.save(&snapshot(1, 15, b"c")).unwrap();
        assert_eq!(sn.load().unwrap(), Some(snapshot(2, 20, b"b")));
        assert!(dir
            .path()
            .join("0000000000000002-0000000000000014.snap")
            .exists());
        let wanted = [WalSnapshot { index: 15, term: 1 }];
        assert_eq!(
            sn.load_newest_available(&wanted).unwrap(),
            Some(snapshot(1, 15, b"c"))
        );
        assert_eq!(
            sn.db_path_for(0x20),
            dir.path().join("0000000000000020.snap.db")
        );
    }

    #[test]
    fn broken_file_falls_back_to_older() {
        let dir = tempfile::tempdir().unwrap();
        let sn = Snapshotter::new(dir.path()).unwrap();
        sn.save(&snapshot(1, 10, b"old")).unwrap();
        sn.save(&snapshot(1, 20, b"new")).unwrap();
        let newest = dir.path().join(snap_name(1, 20));
        let mut bytes = fs::read(&newest).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(&newest, bytes).unwrap();
        // A file whose name disagrees with its contents is broken too.
        fs::copy(
            dir.path().join(snap_name(1, 10)),
            dir.path().join(snap_name(1, 30)),
        )
        .unwrap();
        assert_eq!(sn.load().unwrap(), Some(snapshot(1, 10, b"old")));
        assert!(!newest.exists());
        assert!(dir
            .path()
            .join(format!("{}.broken", snap_name(1, 20)))
            .exists());
        assert!(dir
            .path()
            .join(format!("{}.broken", snap_name(1, 30)))
            .exists());
        // An empty file too; and then nothing is left.
        fs::write(dir.path().join(snap_name(1, 10)), b"").unwrap();
        assert_eq!(sn.load().unwrap(), None);
        let broken: Vec<(String, String)> = sn
            .broken_files()
            .unwrap()
            .into_iter()
            .map(|(p, why)| (p.file_name().unwrap().to_string_lossy().into_owned(), why))
            .collect();
        let name = |index| format!("{}.broken", snap_name(1, index));
        assert_eq!(
            broken,
            [
                (name(10), "file too short".to_string()),
                (name(20), "crc mismatch".to_string()),
                (
                    name(30),
                    "holds term 1 index 10, not what its name says".to_string()
                ),
            ]
        );
    }

    /// Power-loss mode drops every directory change not followed by a directory fsync: saved,
    /// set aside and purged snapshot files must survive that as they were.
    #[test]
    fn directory_changes_survive_a_power_loss() {
        crate::dir_ops::test_mode::set(true);
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("snap");
        let sn = Snapshotter::new(&dir).unwrap();
        for index in 1..=4 {
            sn.save(&snapshot(1, index * 10, b"s")).unwrap();
        }
        assert_eq!(sn.purge(2).unwrap(), 2);
        fs::write(dir.join(snap_name(1, 40)), b"broken").unwrap();
        assert_eq!(sn.load().unwrap(), Some(snapshot(1, 30, b"s")));
        crate::dir_ops::drop_unsynced(&[dir.clone(), tmp.path().to_path_buf()]).unwrap();
        crate::dir_ops::test_mode::set(false);
        let mut names = list(&dir).unwrap();
        names.sort();
        assert_eq!(
            names,
            [snap_name(1, 30), format!("{}.broken", snap_name(1, 40))]
        );
    }

    #[test]
    fn purge_keeps_newest() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path()
                .join("0000000000000001-0000000000000001.snap.tmp"),
            b"x",
        )
        .unwrap();
        let sn = Snapshotter::new(dir.path()).unwrap();
        assert!(!dir
            .path()
            .join("0000000000000001-0000000000000001.snap.tmp")
            .exists());
        for i in 1..=5 {
            sn.save(&snapshot(1, i * 10, b"x")).unwrap();
        }
        fs::write(sn.db_path_for(50), b"db").unwrap();
        assert_eq!(sn.purge(2).unwrap(), 3);
        assert_eq!(sn.purge(2).unwrap(), 0);
        let mut left = list(dir.path()).unwrap();
        left.sort();
        assert_eq!(
            left,
            [
                "0000000000000001-0000000000000028.snap",
                "0000000000000001-0000000000000032.snap",
                "0000000000000032.snap.db"
            ]
        );
    }
}
