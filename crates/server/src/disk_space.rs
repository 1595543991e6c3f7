//! Free space on the file systems the member writes to.
//!
//! A write the file system cannot take stops the member (see [`crate::fatal`]). To go on serving
//! instead, writes are refused before the disk is full: while a file system holding the WAL or
//! the backend has less than the reserve free (`--disk-space-reserve-bytes`, by default
//! [`DEFAULT_RESERVE_BYTES`]), the next write raises etcd's NOSPACE alarm
//! through Raft, as `--quota-backend-bytes` does, so every member refuses writes that grow the
//! backend with `etcdserver: mvcc: database space exceeded`; reads, deletes and compactions go
//! on. Once space is back, `etcdctl alarm disarm` lets writes in again.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// Free bytes a member keeps for itself: a new WAL segment (preallocated whole when the tail
/// one is full), plus room for the backend to take the writes already in flight.
pub const DEFAULT_RESERVE_BYTES: u64 = oxcd_storage::WAL_SEGMENT_SIZE_BYTES + 16 * 1024 * 1024;

/// How often free space is measured. Writes between two checks come out of the reserve.
const CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// Whether some watched file system is short of space; cheap to clone and to ask.
#[derive(Clone, Debug, Default)]
pub struct DiskSpace {
    low: Arc<AtomicBool>,
}

impl DiskSpace {
    /// Measures the file systems holding `dirs` now and then every [`CHECK_INTERVAL`] on a
    /// thread of its own, until the last clone is dropped. A `reserve` of 0 measures nothing:
    /// space is never low.
    pub fn watch(dirs: Vec<PathBuf>, reserve: u64) -> io::Result<DiskSpace> {
        let space = DiskSpace::default();
        if reserve == 0 {
            return Ok(space);
        }
        update(&space.low, &dirs, reserve);
        let low = Arc::downgrade(&space.low);
        std::thread::Builder::new()
            .name("disk-space".into())
            .spawn(move || watch_loop(low, dirs, reserve))?;
        Ok(space)
    }

    /// Whether a watched file system has less than the reserve free.
    pub fn is_low(&self) -> bool {
        self.low.load(Ordering::Acquire)
    }
}

fn watch_loop(low: Weak<AtomicBool>, dirs: Vec<PathBuf>, reserve: u64) {
    loop {
        std::thread::sleep(CHECK_INTERVAL);
        let Some(low) = low.upgrade() else { return };
        update(&low, &dirs, reserve);
    }
}

/// Measures `dirs` into `low`, logging when it changes.
fn update(low: &AtomicBool, dirs: &[PathBuf], reserve: u64) {
    // A file system that cannot be measured counts as not low: its writes will tell.
    let short = dirs.iter().find_map(|dir| {
        available_bytes(dir)
            .ok()
            .filter(|free| *free < reserve)
            .map(|free| (dir, free))
    });
    let was_low = low.swap(short.is_some(), Ordering::AcqRel);
    match short {
        Some((dir, free)) if !was_low => tracing::warn!(
            path = %dir.display(),
            "available-bytes" = free,
            "reserve-bytes" = reserve,
            "free disk space is below the reserve; writes raise the NOSPACE alarm"
        ),
        None if was_low => tracing::info!("free disk space is above the reserve again"),
        _ => {}
    }
}

/// Bytes an unprivileged process may still write on the file system holding `dir`.
fn available_bytes(dir: &Path) -> io::Result<u64> {
    let path = CString::new(dir.as_os_str().as_bytes())?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is NUL-terminated and `st` is written by statvfs before it is read.
    let rc = unsafe { libc::statvfs(path.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statvfs succeeded and filled `st`.
    let st = unsafe { st.assume_init() };
    // Both fields are narrower than u64 on 32-bit targets.
    #[allow(clippy::unnecessary_cast)]
    Ok(st.f_bavail as u64 * st.f_frsize as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_a_real_file_system() {
        let dir = tempfile::tempdir().unwrap();
        assert!(available_bytes(dir.path()).unwrap() > 0);
        assert!(available_bytes(&dir.path().join("missing")).is_err());
    }
}
