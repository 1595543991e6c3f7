//! The v2 store: etcd's v2 keys tree beside the MVCC store, sharing nothing with it.
//!
//! Paths are absolute (`/1/dir/key`: the keys API lives under `/1`, the cluster's own
//! entries under `/0`). Every write moves the store's index by one and becomes an event;
//! the last 1000 events stay in a history, so a watch may start from an index in the past.
//! Nodes may carry a TTL; the leader proposes a SYNC with its clock, and every member
//! removes the nodes expired by then, so all agree on what expired at which index.
//!
//! Apply is the only writer ([`V2Store::apply`]); it also writes each change into the
//! backend's `v2` table in the same batch ([`persist`]). Handlers read under the same lock
//! ([`V2Store::get`], [`V2Store::watch`]).

mod cluster;
pub mod event;
mod history;
mod node;
mod persist;
mod tree;
mod watch;

use std::sync::{Arc, Mutex, MutexGuard};

use oxcd_api::etcdserverpb::Member;
use redb::WriteTransaction;
use tokio::sync::mpsc;

pub use event::Event;
pub use node::{clean, name_of as node_name, NodeExtern};
pub use tree::{Tree, CLUSTER_PREFIX, KEYS_PREFIX};

use crate::error::ServerError;
use crate::v2::apply::{apply_committed, Committed};
use crate::v2::error::Error;

/// The v2 store of a member.
pub struct V2Store {
    tree: Mutex<Tree>,
}

/// What applying a v2 request answers: an event, or a v2 error for the client.
pub type V2Result = Result<Event, Error>;

impl V2Store {
    /// Loads the store from the backend.
    pub fn load(backend: &oxcd_storage::Backend) -> Result<Arc<V2Store>, ServerError> {
        Ok(Arc::new(V2Store {
            tree: Mutex::new(persist::load(backend)?),
        }))
    }

    /// Replaces the store with the backend's (after a snapshot); open watches end.
    pub fn reload(&self, backend: &oxcd_storage::Backend) -> Result<(), ServerError> {
        let fresh = persist::load(backend)?;
        let mut tree = self.lock();
        let stats = tree.stats.clone();
        *tree = fresh;
        tree.stats = stats;
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, Tree> {
        self.tree.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn index(&self) -> u64 {
        self.lock().index()
    }

    pub fn has_ttl_keys(&self) -> bool {
        self.lock().has_ttl_keys()
    }

    /// Watchers waiting now (`etcd_debugging_store_watchers`).
    pub fn watcher_count(&self) -> usize {
        self.lock().hub.count()
    }

    /// `/v2/stats/store`.
    pub fn stats_json(&self) -> String {
        let tree = self.lock();
        tree.stats.to_json(tree.hub.count())
    }

    /// A local read (not through Raft).
    pub fn get(&self, path: &str, recursive: bool) -> V2Result {
        self.lock().get(path, recursive)
    }

    /// Watches `path` for the first event at or after `since` (0: the next one); with
    /// `stream`, for every one from there on, those still in the history first.
    pub fn watch(
        self: &Arc<Self>,
        path: &str,
        recursive: bool,
        stream: bool,
        since: u64,
    ) -> Result<Watcher, Error> {
        crate::v2::stats::STORE.watch_request();
        let key = clean(path);
        let mut tree = self.lock();
        let index = tree.index();
        let since = if since == 0 { index + 1 } else { since };
        let cleared = |mut e: Error| {
            e.index = index;
            e
        };
        let (id, events) = if stream {
            // Every event since `since`: those in the history, then the live ones, with no
            // gap between them as both are taken under the lock.
            let missed = tree
                .history
                .scan_all(&key, recursive, since)
                .map_err(cleared)?;
            let live_since = since.max(index + 1);
            let (id, rx) = tree
                .hub
                .add_after(&key, recursive, true, live_since, missed);
            (Some(id), rx)
        } else {
            match tree.history.scan(&key, recursive, since).map_err(cleared)? {
                Some(e) => (None, watch::Hub::detached(e)),
                None => {
                    let (id, rx) = tree.hub.add(&key, recursive, false, since);
                    (Some(id), rx)
                }
            }
        };
        Ok(Watcher {
            store: self.clone(),
            key,
            id,
            events,
            start_index: index,
        })
    }

    /// Applies a committed entry's v2 part and stages its changes in `tx`; answers a v2
    /// request's result (`None` for a SYNC and the cluster's entries).
    pub fn apply(
        &self,
        committed: Committed<'_>,
        member: impl Fn(u64) -> Option<Member>,
        tx: &WriteTransaction,
    ) -> Result<Option<V2Result>, ServerError> {
        let mut tree = self.lock();
        let result = apply_committed(&mut tree, committed, member);
        persist::save(&mut tree, tx)?;
        Ok(result)
    }

    /// Applies a committed entry's v2 part in memory only, staging nothing: for a store
    /// that is read and dropped (`oxcdctl migrate` replaying a WAL).
    pub fn replay(&self, committed: Committed<'_>, member: impl Fn(u64) -> Option<Member>) {
        apply_committed(&mut self.lock(), committed, member);
    }

    /// Runs `f` on the tree (cluster entries under `/0`) and stages its changes in `tx`.
    pub fn with_tree(
        &self,
        tx: &WriteTransaction,
        f: impl FnOnce(&mut Tree),
    ) -> Result<(), ServerError> {
        let mut tree = self.lock();
        f(&mut tree);
        persist::save(&mut tree, tx)
    }
}

/// An open watch: events arrive on `events`; dropping it unregisters it.
pub struct Watcher {
    store: Arc<V2Store>,
    key: String,
    /// `None` when the first event came from the history (nothing registered).
    id: Option<u64>,
    pub events: mpsc::Receiver<Arc<Event>>,
    /// The store index when the watch began (`X-Etcd-Index`).
    pub start_index: u64,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.store.lock().hub.remove(&self.key, id);
        }
    }
}

#[cfg(test)]
mod tests;
