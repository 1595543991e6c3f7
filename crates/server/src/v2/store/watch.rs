//! Watchers waiting for the next event under a key (etcd's watcherHub).

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::event::Event;

/// Events a watcher may have queued before it counts as too slow and is cut off, as etcd.
pub const WATCHER_QUEUE: usize = 100;

/// One registered watcher.
struct Slot {
    id: u64,
    recursive: bool,
    stream: bool,
    since: u64,
    tx: mpsc::Sender<Arc<Event>>,
}

/// Watchers by the key they watch.
#[derive(Default)]
pub struct Hub {
    by_key: HashMap<String, Vec<Slot>>,
    next_id: u64,
    count: usize,
}

impl Hub {
    /// Registers a watcher; returns its id and the receiving end of its queue.
    pub fn add(
        &mut self,
        key: &str,
        recursive: bool,
        stream: bool,
        since: u64,
    ) -> (u64, mpsc::Receiver<Arc<Event>>) {
        self.add_after(key, recursive, stream, since, Vec::new())
    }

    /// Registers a watcher whose queue starts with `missed` (events from the history), with
    /// room for [`WATCHER_QUEUE`] more besides.
    pub fn add_after(
        &mut self,
        key: &str,
        recursive: bool,
        stream: bool,
        since: u64,
        missed: Vec<Arc<Event>>,
    ) -> (u64, mpsc::Receiver<Arc<Event>>) {
        let (tx, rx) = mpsc::channel(missed.len() + WATCHER_QUEUE);
        for e in missed {
            let _ = tx.try_send(e);
        }
        self.next_id += 1;
        let id = self.next_id;
        self.by_key.entry(key.to_owned()).or_default().push(Slot {
            id,
            recursive,
            stream,
            since,
            tx,
        });
        self.count += 1;
        (id, rx)
    }

    /// A watcher whose queue the caller fills itself (an event found in the history).
    pub fn detached(first: Arc<Event>) -> mpsc::Receiver<Arc<Event>> {
        let (tx, rx) = mpsc::channel(1);
        let _ = tx.try_send(first);
        rx
    }

    pub fn remove(&mut self, key: &str, id: u64) {
        if let Some(slots) = self.by_key.get_mut(key) {
            let before = slots.len();
            slots.retain(|s| s.id != id);
            self.count -= before - slots.len();
            if slots.is_empty() {
                self.by_key.remove(key);
            }
        }
    }

    pub fn count(&self) -> usize {
        self.count
    }

    /// Tells the watchers of the event's key and of each directory above it.
    pub fn notify(&mut self, e: &Arc<Event>) {
        let mut path = String::new();
        self.notify_path(e, "/", false);
        for segment in e.node.key.split('/').filter(|s| !s.is_empty()) {
            path.push('/');
            path.push_str(segment);
            self.notify_path(e, &path.clone(), false);
        }
    }

    /// Tells the watchers of `path`; `deleted`: `path` itself went away with the event.
    pub fn notify_path(&mut self, e: &Arc<Event>, path: &str, deleted: bool) {
        let Some(slots) = self.by_key.get_mut(path) else {
            return;
        };
        let original = e.node.key == path;
        if !original && is_hidden(path, &e.node.key) {
            return;
        }
        let before = slots.len();
        slots.retain(|w| {
            if !((w.recursive || original || deleted) && e.index() >= w.since) {
                return true;
            }
            // A full queue means a watcher that cannot keep up: it is cut off.
            w.tx.try_send(e.clone()).is_ok() && w.stream
        });
        self.count -= before - slots.len();
        if slots.is_empty() {
            self.by_key.remove(path);
        }
    }
}

/// Whether `key` lies under a hidden node below `watched`.
fn is_hidden(watched: &str, key: &str) -> bool {
    if watched.len() > key.len() {
        return false;
    }
    let after = super::node::clean(&format!("/{}", &key[watched.len()..]));
    after.contains("/_")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v2::store::event::SET;

    #[test]
    fn one_shot_watchers_leave_after_one_event_and_streams_stay() {
        let mut hub = Hub::default();
        let (_, mut once) = hub.add("/1/a", false, false, 1);
        let (_, mut stream) = hub.add("/1", true, true, 1);
        let (_, mut hidden) = hub.add("/1", true, true, 1);
        for i in 1..=2 {
            hub.notify(&Arc::new(Event::new(SET, "/1/a", i, i)));
        }
        hub.notify(&Arc::new(Event::new(SET, "/1/_h", 3, 3)));
        assert_eq!(once.try_recv().unwrap().index(), 1);
        assert!(once.try_recv().is_err());
        assert_eq!(stream.try_recv().unwrap().index(), 1);
        assert_eq!(stream.try_recv().unwrap().index(), 2);
        assert!(
            stream.try_recv().is_err(),
            "hidden keys are not sent to parents"
        );
        assert_eq!(hidden.try_recv().unwrap().index(), 1);
        assert_eq!(hub.count(), 2);
    }

    #[test]
    fn a_watcher_that_falls_behind_is_cut_off() {
        let mut hub = Hub::default();
        let (_, mut rx) = hub.add("/1/a", false, true, 1);
        for i in 1..=(WATCHER_QUEUE as u64 + 1) {
            hub.notify(&Arc::new(Event::new(SET, "/1/a", i, i)));
        }
        assert_eq!(hub.count(), 0);
        let mut got = 0;
        while rx.try_recv().is_ok() {
            got += 1;
        }
        assert_eq!(got, WATCHER_QUEUE);
    }
}
