//! Test builds only (`failpoints` feature): a redb storage backend that keeps every write in
//! memory until `sync_data`, so that a killed process loses everything it had not synced, as a
//! machine losing power loses the page cache (etcd tests this with LazyFS). A crash test with it
//! proves the fsync discipline instead of trusting it: after a restart the backend is at its
//! last durable commit, and the WAL must bring back every acknowledged write.
//!
//! Chosen at run time by [`ENV`]; the file is only ever written with whole synced states. The
//! same switch makes the WAL's tail segment ([`crate::wal`]) keep its writes until synced, and
//! [`crate::dir_ops`] drop directory changes that were never synced.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Mutex;

use redb::StorageBackend;

/// Set to `1` in a failpoint build to open the backend through this layer.
pub const ENV: &str = "OXCD_TEST_LOSE_UNSYNCED_WRITES";

const PAGE: u64 = 4096;

/// Whether [`ENV`] asks for this layer.
pub fn enabled() -> bool {
    std::env::var(ENV).is_ok_and(|v| v == "1")
}

/// A file whose writes count only once synced.
#[derive(Debug)]
pub struct LoseUnsynced {
    file: File,
    pending: Mutex<Pending>,
}

/// What was written since the last sync: whole pages, and the length.
#[derive(Debug)]
struct Pending {
    pages: HashMap<u64, Vec<u8>>,
    len: u64,
}

impl LoseUnsynced {
    pub fn new(file: File) -> io::Result<LoseUnsynced> {
        let len = file.metadata()?.len();
        Ok(LoseUnsynced {
            file,
            pending: Mutex::new(Pending {
                pages: HashMap::new(),
                len,
            }),
        })
    }

    /// Page `n` as it reads now: pending, else from the file (zeroes past its end).
    fn page(&self, pending: &Pending, n: u64) -> io::Result<Vec<u8>> {
        if let Some(page) = pending.pages.get(&n) {
            return Ok(page.clone());
        }
        let mut page = vec![0u8; PAGE as usize];
        let file_len = self.file.metadata()?.len();
        let start = n * PAGE;
        if start < file_len {
            let end = file_len.min(start + PAGE);
            self.file
                .read_exact_at(&mut page[..(end - start) as usize], start)?;
        }
        Ok(page)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl StorageBackend for LoseUnsynced {
    fn len(&self) -> io::Result<u64> {
        Ok(self.lock().len)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        let pending = self.lock();
        if offset + out.len() as u64 > pending.len {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
        }
        let mut done = 0usize;
        while done < out.len() {
            let at = offset + done as u64;
            let page = self.page(&pending, at / PAGE)?;
            let within = (at % PAGE) as usize;
            let n = (PAGE as usize - within).min(out.len() - done);
            out[done..done + n].copy_from_slice(&page[within..within + n]);
            done += n;
        }
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut pending = self.lock();
        if len < pending.len {
            // Bytes past the new end read as zeroes if the file grows again.
            let last = len / PAGE;
            pending.pages.retain(|n, _| *n <= last);
            if let Some(page) = pending.pages.get_mut(&last) {
                page[(len % PAGE) as usize..].fill(0);
            }
        }
        pending.len = len;
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut pending = self.lock();
        let len = pending.len;
        if self.file.metadata()?.len() > len {
            self.file.set_len(len)?;
        }
        for (n, page) in &pending.pages {
            let start = n * PAGE;
            if start < len {
                let end = len.min(start + PAGE);
                self.file
                    .write_all_at(&page[..(end - start) as usize], start)?;
            }
        }
        self.file.set_len(len)?;
        self.file.sync_data()?;
        pending.pages.clear();
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut pending = self.lock();
        let mut done = 0usize;
        while done < data.len() {
            let at = offset + done as u64;
            let n_page = at / PAGE;
            let mut page = self.page(&pending, n_page)?;
            let within = (at % PAGE) as usize;
            let n = (PAGE as usize - within).min(data.len() - done);
            page[within..within + n].copy_from_slice(&data[done..done + n]);
            pending.pages.insert(n_page, page);
            done += n;
        }
        pending.len = pending.len.max(offset + data.len() as u64);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_synced_writes_reach_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let layer = LoseUnsynced::new(
            File::options()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)
                .unwrap(),
        )
        .unwrap();
        layer.set_len(10_000).unwrap();
        layer.write(4090, b"synced").unwrap();
        layer.sync_data().unwrap();
        layer.write(0, b"lost").unwrap();
        let mut out = [0u8; 6];
        layer.read(4090, &mut out).unwrap();
        assert_eq!(&out, b"synced");
        layer.read(0, &mut out[..4]).unwrap();
        assert_eq!(&out[..4], b"lost");
        drop(layer);
        let on_disk = std::fs::read(&path).unwrap();
        assert_eq!(on_disk.len(), 10_000);
        assert_eq!(&on_disk[4090..4096], b"synced");
        assert_eq!(&on_disk[..4], &[0, 0, 0, 0]);
    }
}
