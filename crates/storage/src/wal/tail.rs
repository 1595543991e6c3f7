//! The segment being appended to. Its writes and syncs go through [`TailFile`], the WAL's one
//! I/O seam: in test builds (`failpoints` feature) with `OXCD_TEST_LOSE_UNSYNCED_WRITES=1`
//! (the backend's power-loss switch), writes stay in memory until the next sync, so a killed
//! process loses whatever the WAL had not synced, as a machine losing power loses the page
//! cache. A crash test then proves that nothing is acknowledged before its fdatasync.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::error::{io_err, Result};
use super::segment::fdatasync;

/// The tail segment file.
pub(crate) struct TailFile {
    file: File,
    /// Power-loss mode only: (offset, bytes) written since the last sync.
    unsynced: Option<Vec<(u64, Vec<u8>)>>,
}

impl TailFile {
    pub(crate) fn new(file: File) -> TailFile {
        TailFile {
            file,
            unsynced: lose_unsynced_writes().then(Vec::new),
        }
    }

    /// Writes `buf` at `offset`; durable only after [`TailFile::sync`].
    pub(crate) fn write_at(&mut self, buf: &[u8], offset: u64, path: &Path) -> Result<()> {
        match &mut self.unsynced {
            Some(pending) => {
                pending.push((offset, buf.to_vec()));
                Ok(())
            }
            None => self
                .file
                .write_all_at(buf, offset)
                .map_err(io_err("writing", path)),
        }
    }

    /// Makes every write so far durable (fdatasync).
    pub(crate) fn sync(&mut self, path: &Path) -> Result<()> {
        if let Some(pending) = &mut self.unsynced {
            for (offset, buf) in pending.drain(..) {
                self.file
                    .write_all_at(&buf, offset)
                    .map_err(io_err("writing", path))?;
            }
        }
        fdatasync(&self.file, path)
    }

    /// Cuts the file at `len` (after a sync: nothing is pending then).
    pub(crate) fn set_len(&mut self, len: u64, path: &Path) -> Result<()> {
        debug_assert!(self.unsynced.as_ref().is_none_or(Vec::is_empty));
        self.file.set_len(len).map_err(io_err("truncating", path))
    }
}

#[cfg(feature = "failpoints")]
fn lose_unsynced_writes() -> bool {
    crate::backend::power_loss::enabled()
}

#[cfg(not(feature = "failpoints"))]
fn lose_unsynced_writes() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsynced_writes_are_lost_in_power_loss_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tail");
        std::fs::write(&path, [0u8; 8]).unwrap();
        let open = || std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        let mut tail = TailFile {
            file: open(),
            unsynced: Some(Vec::new()),
        };
        tail.write_at(b"ab", 0, &path).unwrap();
        tail.sync(&path).unwrap();
        tail.write_at(b"cd", 2, &path).unwrap();
        // The process dies here: what was not synced never reached the file.
        drop(tail);
        assert_eq!(std::fs::read(&path).unwrap(), b"ab\0\0\0\0\0\0");

        let mut plain = TailFile::new(open());
        plain.write_at(b"cd", 2, &path).unwrap();
        drop(plain);
        assert_eq!(std::fs::read(&path).unwrap(), b"abcd\0\0\0\0");
    }
}
