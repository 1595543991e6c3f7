//! The backend quota (`--quota-backend-bytes`): whether a write may still grow the backend.
//!
//! etcd compares the bytes bolt has handed out (its high-water page times the page size) plus
//! the request's cost against the quota. redb's file is no such measure: a fresh file is
//! about 1 MiB of preallocated region, it doubles as it grows, and it holds pages freed by
//! commits not yet durable. So past the file-size check the quota counts what the data takes
//! ([`Backend::size_of_data`]: on a small file the pages the tables' trees hold, so a fresh
//! store takes a few pages, as a fresh bolt file does, and a 13-page quota still takes a small
//! put). Counting may hold writes briefly, so it is done only when the file itself is past
//! the quota, at most once per [`REMEASURE`], and again at once after defrag shrank the file;
//! between two counts, the writes admitted are added to the last count. Unlike etcd's
//! measure, this one falls as soon as compaction removes revisions, before defrag returns the
//! space.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use oxcd_storage::Backend;

/// How old a count of the bytes in use may be before it is taken again.
const REMEASURE: Duration = Duration::from_secs(1);

/// How long a read of the file's size stands for it while the file is under half the quota:
/// a put's check then costs a clock read, not a path lookup and a stat. Nearer the quota (and
/// so after any defrag that matters to it) the size is read for every check.
const FILE_SIZE_FOR: Duration = Duration::from_millis(100);

/// The quota and the last count of the bytes in use.
#[derive(Debug)]
pub struct Quota {
    /// `None`: no quota (a negative `--quota-backend-bytes`).
    limit: Option<u64>,
    last: Mutex<Option<Count>>,
    /// The file's size and when it was read.
    file_size: Mutex<Option<(Instant, u64)>>,
}

#[derive(Clone, Copy, Debug)]
struct Count {
    at: Instant,
    /// The file's size when counted: a smaller file since means defrag ran.
    file_size: u64,
    in_use: u64,
    /// Costs of the writes admitted since.
    admitted: u64,
}

impl Quota {
    pub fn new(limit: Option<u64>) -> Quota {
        Quota {
            limit,
            last: Mutex::new(None),
            file_size: Mutex::new(None),
        }
    }

    /// Whether a write costing `cost` bytes keeps the backend under the quota (etcd's
    /// `size + cost < quota`).
    pub async fn admits(&self, backend: &Backend, cost: u64) -> Result<(), Refused> {
        let Some(limit) = self.limit else {
            return Ok(());
        };
        let file_size = self.file_size(backend, limit)?;
        if file_size + cost < limit {
            return Ok(());
        }
        let fresh = self
            .lock()
            .filter(|c| c.at.elapsed() < REMEASURE && file_size >= c.file_size);
        let count = match fresh {
            Some(count) => count,
            None => {
                let b = backend.clone();
                let in_use = tokio::task::spawn_blocking(move || b.size_of_data())
                    .await
                    .map_err(|e| Refused::Storage(e.to_string()))?
                    .map_err(|e| Refused::Storage(e.to_string()))?;
                Count {
                    at: Instant::now(),
                    file_size,
                    in_use,
                    admitted: 0,
                }
            }
        };
        let size = count.in_use + count.admitted;
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if size + cost < limit {
            *last = Some(Count {
                admitted: count.admitted + cost,
                ..count
            });
            Ok(())
        } else {
            *last = Some(count);
            Err(Refused::Full { size, limit })
        }
    }

    /// The file's size: as read less than [`FILE_SIZE_FOR`] ago if it was under half of
    /// `limit` then, else read now.
    fn file_size(&self, backend: &Backend, limit: u64) -> Result<u64, Refused> {
        let mut cached = self.file_size.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, size)) = *cached {
            if size < limit / 2 && at.elapsed() < FILE_SIZE_FOR {
                return Ok(size);
            }
        }
        let size = backend
            .size()
            .map_err(|e| Refused::Storage(e.to_string()))?;
        *cached = Some((Instant::now(), size));
        Ok(size)
    }

    fn lock(&self) -> Option<Count> {
        *self.last.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Why [`Quota::admits`] refused a write.
#[derive(Debug)]
pub enum Refused {
    /// The backend is full: `size` bytes in use against a quota of `limit`.
    Full { size: u64, limit: u64 },
    /// The backend could not be measured.
    Storage(String),
}
