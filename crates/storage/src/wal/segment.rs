//! Segment files: names, listing, creation, and the sync calls the WAL relies on.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::error::{io_err, Result};
use crate::dir_ops;

/// etcd's warning threshold for one fdatasync.
const EXPECTED_SYNC_DURATION: Duration = Duration::from_secs(1);

/// Suffix of a segment being created; never a live segment.
pub(crate) const TMP_SUFFIX: &str = ".tmp";

/// One segment file on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Segment {
    /// Sequence number: segments are numbered 0, 1, 2, … without holes.
    pub seq: u64,
    /// The first entry index this segment may hold (a lower bound).
    pub index: u64,
    pub path: PathBuf,
}

/// `{seq:016x}-{index:016x}.wal`
pub(crate) fn segment_name(seq: u64, index: u64) -> String {
    format!("{seq:016x}-{index:016x}.wal")
}

/// Parses a segment file name; `None` for anything else.
pub(crate) fn parse_segment_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(".wal")?;
    let (seq, index) = stem.split_once('-')?;
    if seq.len() != 16 || index.len() != 16 {
        return None;
    }
    let hex = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_hexdigit())
            .then(|| u64::from_str_radix(s, 16).ok())
            .flatten()
    };
    Some((hex(seq)?, hex(index)?))
}

/// The segments in `dir`, ordered by sequence number. Other files are ignored.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<Segment>> {
    let mut segs = Vec::new();
    for dent in fs::read_dir(dir).map_err(io_err("reading directory", dir))? {
        let dent = dent.map_err(io_err("reading directory", dir))?;
        let name = dent.file_name();
        let Some((seq, index)) = name.to_str().and_then(parse_segment_name) else {
            continue;
        };
        segs.push(Segment {
            seq,
            index,
            path: dent.path(),
        });
    }
    segs.sort_by_key(|s| s.seq);
    Ok(segs)
}

/// Removes half-created segments (`*.wal.tmp`) left by a crash.
pub(crate) fn remove_temp_files(dir: &Path) -> Result<()> {
    let mut removed = false;
    for dent in fs::read_dir(dir).map_err(io_err("reading directory", dir))? {
        let dent = dent.map_err(io_err("reading directory", dir))?;
        let name = dent.file_name();
        if name
            .to_str()
            .is_some_and(|n| n.ends_with(&format!(".wal{TMP_SUFFIX}")))
        {
            let path = dent.path();
            // Garbage either way: its removal need not be tracked in power-loss mode.
            fs::remove_file(&path).map_err(io_err("removing", &path))?;
            tracing::info!(path = %path.display(), "removed unfinished wal segment");
            removed = true;
        }
    }
    if removed {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Makes the directory's entries (creations, renames, removals) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    dir_ops::sync_dir(dir).map_err(io_err("syncing directory", dir))
}

/// fdatasync, with etcd's warning when it is slow.
pub(crate) fn fdatasync(file: &File, path: &Path) -> Result<()> {
    let start = Instant::now();
    file.sync_data().map_err(io_err("fdatasync", path))?;
    let took = start.elapsed();
    metrics::histogram!("etcd_disk_wal_fsync_duration_seconds").record(took.as_secs_f64());
    if took > EXPECTED_SYNC_DURATION {
        tracing::warn!(
            took = ?took,
            "expected-duration" = ?EXPECTED_SYNC_DURATION,
            path = %path.display(),
            "slow fdatasync"
        );
    }
    Ok(())
}

/// Reserves `size` bytes for the file so appends need not allocate blocks or change the
/// file size (which would make each fdatasync also write metadata). Reads of the reserved
/// space return zeroes.
pub(crate) fn preallocate(file: &File, path: &Path, size: u64) -> Result<()> {
    let current = file.metadata().map_err(io_err("stat", path))?.len();
    if current >= size {
        return Ok(());
    }
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        if let Ok(len) = libc::off_t::try_from(size) {
            // SAFETY: plain syscall on a file descriptor we own; no memory is passed.
            let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len) };
            if rc == 0 {
                return Ok(());
            }
            let err = std::io::Error::last_os_error();
            // Some file systems cannot fallocate; a sparse extension still reads as zeroes.
            if !matches!(
                err.raw_os_error(),
                Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS)
            ) {
                return Err(io_err("preallocating", path)(err));
            }
        }
    }
    file.set_len(size).map_err(io_err("preallocating", path))
}

/// Creates segment `seq` starting at `index` holding `head`, preallocated to `size`.
///
/// The file is written and synced under a temporary name, then renamed, and the directory
/// synced: a segment under its real name always has its head records durable.
pub(crate) fn create_segment(
    dir: &Path,
    seq: u64,
    index: u64,
    head: &[u8],
    size: u64,
) -> Result<(File, Segment)> {
    let name = segment_name(seq, index);
    let path = dir.join(&name);
    let tmp = dir.join(format!("{name}{TMP_SUFFIX}"));
    let mut file = dir_ops::create(&tmp, || {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
    })
    .map_err(io_err("creating", &tmp))?;
    preallocate(&file, &tmp, size)?;
    file.write_all(head).map_err(io_err("writing", &tmp))?;
    file.sync_all().map_err(io_err("fsync", &tmp))?;
    dir_ops::rename(&tmp, &path).map_err(io_err("renaming", &tmp))?;
    sync_dir(dir)?;
    Ok((file, Segment { seq, index, path }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_roundtrip() {
        let name = segment_name(3, 0xabc);
        assert_eq!(name, "0000000000000003-0000000000000abc.wal");
        assert_eq!(parse_segment_name(&name), Some((3, 0xabc)));
        for bad in [
            "0000000000000003-0000000000000abc.wal.tmp",
            "3-abc.wal",
            "000000000000000g-0000000000000abc.wal",
            "+000000000000003-0000000000000abc.wal",
            "0000000000000003_0000000000000abc.wal",
        ] {
            assert_eq!(parse_segment_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn create_lists_and_preallocates() {
        let dir = tempfile::tempdir().unwrap();
        create_segment(dir.path(), 1, 10, b"12345678", 4096).unwrap();
        create_segment(dir.path(), 0, 0, b"abcdefgh", 4096).unwrap();
        fs::write(dir.path().join("junk.wal"), b"x").unwrap();
        fs::write(
            dir.path().join("0000000000000002-0000000000000000.wal.tmp"),
            b"x",
        )
        .unwrap();
        let segs = list_segments(dir.path()).unwrap();
        assert_eq!(
            segs.iter().map(|s| (s.seq, s.index)).collect::<Vec<_>>(),
            [(0, 0), (1, 10)]
        );
        let data = fs::read(&segs[0].path).unwrap();
        assert_eq!(data.len(), 4096);
        assert_eq!(&data[..8], b"abcdefgh");
        assert!(data[8..].iter().all(|&b| b == 0));
        remove_temp_files(dir.path()).unwrap();
        assert!(!dir
            .path()
            .join("0000000000000002-0000000000000000.wal.tmp")
            .exists());
    }
}
