//! Test fixture: a watchable store on a temporary backend, written to as the apply task does
//! (commit, then notify).

use std::time::Duration;

use oxcd_api::etcdserverpb::WatchCreateRequest;
use oxcd_api::mvccpb::Event;

use super::{WatchResponse, WatchStream, WatchableStore};
use crate::backend::{Backend, BackendConfig};
use crate::mvcc::{Batch, KvStore};

/// Every wait in these tests has this deadline.
pub(crate) const WAIT: Duration = Duration::from_secs(20);

pub(crate) struct Fixture {
    pub(crate) ws: WatchableStore,
    pub(crate) _dir: tempfile::TempDir,
}

impl Fixture {
    pub(crate) fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let backend = Backend::open(dir.path().join("db"), BackendConfig::default()).unwrap();
        let kv = KvStore::open(backend).unwrap();
        Fixture {
            ws: WatchableStore::new(kv),
            _dir: dir,
        }
    }

    pub(crate) fn kv(&self) -> &KvStore {
        self.ws.kv()
    }

    /// Runs `f` in a batch, commits, then notifies the batch's events; returns them.
    pub(crate) fn batch(&self, f: impl FnOnce(&mut Batch) -> Vec<Event>) -> Vec<Event> {
        let mut b = self.kv().begin_batch().unwrap();
        let events = f(&mut b);
        b.commit().unwrap();
        self.ws.notify(events.clone());
        events
    }

    /// One put in a transaction of its own; returns its revision.
    pub(crate) fn put(&self, key: &str, value: &str) -> i64 {
        self.batch(|b| {
            let mut t = b.txn();
            t.put(key.as_bytes(), value.as_bytes(), 0).unwrap();
            t.end()
        });
        self.kv().current_revision()
    }

    /// One delete range in a transaction of its own.
    pub(crate) fn delete(&self, key: &str, end: &str) -> Vec<Event> {
        self.batch(|b| {
            let mut t = b.txn();
            t.delete_range(key.as_bytes(), end.as_bytes()).unwrap();
            t.end()
        })
    }
}

/// A create request for `key`..`end` from `start`.
pub(crate) fn create(key: &str, end: &str, start: i64) -> WatchCreateRequest {
    WatchCreateRequest {
        key: key.as_bytes().to_vec(),
        range_end: end.as_bytes().to_vec(),
        start_revision: start,
        ..Default::default()
    }
}

/// The next response, or a panic after [`WAIT`].
pub(crate) fn recv(s: &WatchStream) -> WatchResponse {
    s.recv_timeout(WAIT).expect("a watch response in time")
}

/// Asserts that nothing arrives for a short while.
pub(crate) fn nothing(s: &WatchStream) {
    if let Some(r) = s.recv_timeout(Duration::from_millis(150)) {
        panic!("unexpected response {r:?}");
    }
}

/// `(key, value, mod_revision)` of each event, values empty for deletes.
pub(crate) fn summary(r: &WatchResponse) -> Vec<(String, String, i64)> {
    r.events
        .iter()
        .map(|e| {
            let kv = e.kv.as_ref().unwrap();
            (
                String::from_utf8_lossy(&kv.key).into_owned(),
                String::from_utf8_lossy(&kv.value).into_owned(),
                kv.mod_revision,
            )
        })
        .collect()
}
