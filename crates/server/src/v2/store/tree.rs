//! The operations of the v2 store (etcd's v2store.store): the tree, its index, its TTLs,
//! the event history and the watchers, under one owner.
//!
//! Every write moves the index by one and is one event; a failed write changes nothing
//! (apart from parent directories a create made on its way, as in etcd).

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use super::event::{self, Event};
use super::history::History;
use super::node::{clean, join, name_of, Kind, Node};
use super::watch::Hub;
use crate::v2::error::{Code, Error};
use crate::v2::stats::{Op, Stats, STORE};

/// Expiration times before this (2000-01-01T00:00:00Z) mean "no TTL", as in etcd.
const MIN_EXPIRE: i64 = 946_684_800_000_000_000;

/// The namespaces etcd creates: cluster data (`/0`) and the keys API (`/1`).
pub const CLUSTER_PREFIX: &str = "/0";
pub const KEYS_PREFIX: &str = "/1";

/// The whole v2 state of a member.
pub struct Tree {
    pub(super) root: Node,
    pub(super) index: u64,
    /// Nodes with a TTL, by expiry time.
    pub(super) ttl: BTreeSet<(i64, String)>,
    pub(super) history: History,
    pub(super) hub: Hub,
    pub(super) stats: Stats,
    /// What changed since the last [`persist`](super::persist): node paths, events added,
    /// events dropped from the history.
    pub(super) dirty: Dirty,
}

#[derive(Default)]
pub struct Dirty {
    pub paths: HashSet<String>,
    pub events: Vec<Arc<Event>>,
    pub dropped: Vec<u64>,
}

impl Default for Tree {
    fn default() -> Tree {
        let mut root = Node::dir("/".into(), 0, None);
        for ns in [CLUSTER_PREFIX, KEYS_PREFIX] {
            root.children_mut()
                .expect("root is a directory")
                .insert(name_of(ns).to_owned(), Node::dir(ns.into(), 0, None));
        }
        Tree {
            root,
            index: 0,
            ttl: BTreeSet::new(),
            history: History::default(),
            hub: Hub::default(),
            stats: Stats::default(),
            dirty: Dirty::default(),
        }
    }
}

fn read_only(path: &str) -> bool {
    path == "/" || path == CLUSTER_PREFIX || path == KEYS_PREFIX
}

/// The parent directory and the name of a clean path.
fn split(path: &str) -> (&str, &str) {
    match path.rfind('/') {
        Some(0) => ("/", &path[1..]),
        Some(i) => (&path[..i], &path[i + 1..]),
        None => ("/", path),
    }
}

impl Tree {
    pub fn index(&self) -> u64 {
        self.index
    }

    pub fn has_ttl_keys(&self) -> bool {
        !self.ttl.is_empty()
    }

    /// The node at a clean path.
    fn lookup(&self, path: &str) -> Result<&Node, Error> {
        let mut curr = &self.root;
        for name in path.split('/').filter(|s| !s.is_empty()) {
            let Some(children) = curr.children() else {
                return Err(Error::new(Code::NotDir, curr.path.clone(), self.index));
            };
            curr = children
                .get(name)
                .ok_or_else(|| Error::new(Code::KeyNotFound, join(&curr.path, name), self.index))?;
        }
        Ok(curr)
    }

    fn lookup_mut(&mut self, path: &str) -> Option<&mut Node> {
        let mut curr = &mut self.root;
        for name in path.split('/').filter(|s| !s.is_empty()) {
            curr = curr.children_mut()?.get_mut(name)?;
        }
        Some(curr)
    }

    /// The directory at `path`, made (with its parents) when missing.
    fn make_dir(&mut self, path: &str) -> Result<(), Error> {
        let next = self.index + 1;
        let mut curr = &mut self.root;
        for name in path.split('/').filter(|s| !s.is_empty()) {
            let parent_path = curr.path.clone();
            let children = curr
                .children_mut()
                .expect("walked through directories only");
            let child = children.entry(name.to_owned()).or_insert_with(|| {
                let p = join(&parent_path, name);
                self.dirty.paths.insert(p.clone());
                Node::dir(p, next, None)
            });
            if !child.is_dir() {
                return Err(Error::new(Code::NotDir, child.path.clone(), self.index));
            }
            curr = child;
        }
        Ok(())
    }

    fn now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64)
    }

    fn counted<T>(&mut self, op: Op, r: Result<T, Error>) -> Result<T, Error> {
        self.stats.count(op, r.is_ok());
        if !matches!(op, Op::Get) {
            STORE.write(op);
        }
        r
    }

    /// Reads a node; a directory lists its children (all levels when `recursive`).
    pub fn get(&mut self, path: &str, recursive: bool) -> Result<Event, Error> {
        let r = self.lookup(&clean(path)).map(|n| {
            let mut e = Event::new(event::GET, path, n.modified_index, n.created_index);
            e.node = n.load(recursive, Self::now());
            e.node.key = path.to_owned();
            e.etcd_index = self.index;
            e
        });
        STORE.read(recursive);
        self.counted(Op::Get, r)
    }

    /// Creates a node; `unique` names it after the new index under `path` (POST).
    pub fn create(
        &mut self,
        path: &str,
        dir: bool,
        value: &str,
        unique: bool,
        expire: Option<i64>,
    ) -> Result<Event, Error> {
        let r = self
            .internal_create(path, dir, value, unique, false, expire, event::CREATE)
            .map(|e| self.notify(e));
        self.counted(Op::Create, r)
    }

    /// Creates or replaces a file (or makes a directory); `refresh` keeps the value and
    /// only moves the TTL, without waking watchers.
    pub fn set(
        &mut self,
        path: &str,
        dir: bool,
        value: &str,
        expire: Option<i64>,
        refresh: bool,
    ) -> Result<Event, Error> {
        let r = self.internal_set(path, dir, value, expire, refresh);
        self.counted(Op::Set, r)
    }

    fn internal_set(
        &mut self,
        path: &str,
        dir: bool,
        value: &str,
        expire: Option<i64>,
        refresh: bool,
    ) -> Result<Event, Error> {
        let existing = match self.lookup(&clean(path)) {
            Ok(n) => Some(n.clone()),
            Err(e) if e.code == Code::KeyNotFound && !refresh => None,
            Err(e) => return Err(e),
        };
        let value = match (&existing, refresh) {
            (Some(n), true) => n.value().to_owned(),
            _ => value.to_owned(),
        };
        let mut e = self.internal_create(path, dir, &value, false, true, expire, event::SET)?;
        if let Some(n) = existing {
            let mut prev = n.repr(false, Self::now());
            prev.key = path.to_owned();
            e.prev_node = Some(prev);
        }
        Ok(self.finish_write(e, refresh))
    }

    #[allow(clippy::too_many_arguments)]
    fn internal_create(
        &mut self,
        path: &str,
        dir: bool,
        value: &str,
        unique: bool,
        replace: bool,
        expire: Option<i64>,
        action: &str,
    ) -> Result<Event, Error> {
        let (curr, next) = (self.index, self.index + 1);
        let path = if unique {
            clean(&format!("{path}/{next:020}"))
        } else {
            clean(path)
        };
        if read_only(&path) {
            return Err(Error::new(Code::RootReadOnly, "/", curr));
        }
        let expire = expire.filter(|&at| at >= MIN_EXPIRE);
        let (dir_path, name) = split(&path);
        self.make_dir(dir_path).map_err(|mut e| {
            e.index = curr;
            e
        })?;
        let now = Self::now();
        let mut e = Event::new(action, &path, next, next);
        let existing = self
            .lookup(&path)
            .ok()
            .map(|n| (n.is_dir(), n.repr(false, now)));
        if let Some((is_dir, prev)) = existing {
            if !replace {
                return Err(Error::new(Code::NodeExist, path, curr));
            }
            if is_dir {
                return Err(Error::new(Code::NotFile, path, curr));
            }
            e.prev_node = Some(prev);
            self.detach(&path);
        }
        let node = if dir {
            e.node.dir = true;
            Node::dir(path.clone(), next, expire)
        } else {
            e.node.value = Some(value.to_owned());
            Node::file(path.clone(), value.to_owned(), next, expire)
        };
        if let Some(at) = expire {
            self.ttl.insert((at, path.clone()));
            (e.node.expiration, e.node.ttl) = node.expiration_and_ttl(now);
        }
        self.lookup_mut(dir_path)
            .and_then(Node::children_mut)
            .expect("parent made above")
            .insert(name.to_owned(), node);
        self.dirty.paths.insert(path);
        self.index = next;
        e.etcd_index = next;
        Ok(e)
    }

    /// Changes a node's value (files) and TTL.
    pub fn update(
        &mut self,
        path: &str,
        value: &str,
        expire: Option<i64>,
        refresh: bool,
    ) -> Result<Event, Error> {
        let r = self.internal_update(path, value, expire, refresh);
        self.counted(Op::Update, r)
    }

    fn internal_update(
        &mut self,
        path: &str,
        value: &str,
        expire: Option<i64>,
        refresh: bool,
    ) -> Result<Event, Error> {
        let path = clean(path);
        if read_only(&path) {
            return Err(Error::new(Code::RootReadOnly, "/", self.index));
        }
        let (curr, next) = (self.index, self.index + 1);
        let now = Self::now();
        let n = self.lookup(&path)?;
        if n.is_dir() && !value.is_empty() {
            return Err(Error::new(Code::NotFile, path, curr));
        }
        let value = if refresh {
            n.value().to_owned()
        } else {
            value.to_owned()
        };
        let mut e = Event::new(event::UPDATE, &path, next, n.created_index);
        e.etcd_index = next;
        e.prev_node = Some(n.repr(false, now));
        let is_dir = n.is_dir();
        self.write(&path, &value, next, expire);
        if is_dir {
            e.node.dir = true;
        } else {
            e.node.value = Some(value);
        }
        let n = self.lookup(&path)?;
        (e.node.expiration, e.node.ttl) = n.expiration_and_ttl(now);
        self.index = next;
        Ok(self.finish_write(e, refresh))
    }

    /// Sets a node's value (files only) and modified index, and replaces its TTL.
    fn write(&mut self, path: &str, value: &str, index: u64, expire: Option<i64>) {
        let node = self.lookup_mut(path).expect("node looked up before");
        if let Kind::File(v) = &mut node.kind {
            *v = value.to_owned();
            node.modified_index = index;
        }
        let old = std::mem::replace(&mut node.expire, expire);
        if let Some(at) = old {
            self.ttl.remove(&(at, path.to_owned()));
        }
        if let Some(at) = expire {
            self.ttl.insert((at, path.to_owned()));
        }
        self.dirty.paths.insert(path.to_owned());
    }

    /// Swaps a file's value when `prev_value` and `prev_index` (when given) match.
    pub fn compare_and_swap(
        &mut self,
        path: &str,
        prev_value: &str,
        prev_index: u64,
        value: &str,
        expire: Option<i64>,
        refresh: bool,
    ) -> Result<Event, Error> {
        let r = self.internal_cas(path, prev_value, prev_index, value, expire, refresh);
        self.counted(Op::CompareAndSwap, r)
    }

    fn internal_cas(
        &mut self,
        path: &str,
        prev_value: &str,
        prev_index: u64,
        value: &str,
        expire: Option<i64>,
        refresh: bool,
    ) -> Result<Event, Error> {
        let path = clean(path);
        if read_only(&path) {
            return Err(Error::new(Code::RootReadOnly, "/", self.index));
        }
        let n = self.compared(&path, prev_value, prev_index)?;
        let value = if refresh {
            n.value().to_owned()
        } else {
            value.to_owned()
        };
        let now = Self::now();
        let next = self.index + 1;
        let mut e = Event::new(event::COMPARE_AND_SWAP, &path, next, n.created_index);
        e.etcd_index = next;
        e.prev_node = Some(n.repr(false, now));
        self.index = next;
        self.write(&path, &value, next, expire);
        e.node.value = Some(value);
        let n = self.lookup(&path)?;
        (e.node.expiration, e.node.ttl) = n.expiration_and_ttl(now);
        Ok(self.finish_write(e, refresh))
    }

    /// The file at `path` when it matches the comparison; etcd's errors otherwise.
    fn compared(&self, path: &str, prev_value: &str, prev_index: u64) -> Result<&Node, Error> {
        let n = self.lookup(path)?;
        if n.is_dir() {
            return Err(Error::new(Code::NotFile, path, self.index));
        }
        let index_ok = prev_index == 0 || n.modified_index == prev_index;
        let value_ok = prev_value.is_empty() || n.value() == prev_value;
        let cause = match (value_ok, index_ok) {
            (true, true) => return Ok(n),
            (true, false) => format!("[{prev_index} != {}]", n.modified_index),
            (false, true) => format!("[{prev_value} != {}]", n.value()),
            (false, false) => format!(
                "[{prev_value} != {}] [{prev_index} != {}]",
                n.value(),
                n.modified_index
            ),
        };
        Err(Error::new(Code::TestFailed, cause, self.index))
    }

    /// Deletes a node: a directory only with `dir`, a non-empty one only with `recursive`.
    pub fn delete(&mut self, path: &str, dir: bool, recursive: bool) -> Result<Event, Error> {
        let r = self.internal_delete(path, dir || recursive, recursive);
        self.counted(Op::Delete, r)
    }

    fn internal_delete(&mut self, path: &str, dir: bool, recursive: bool) -> Result<Event, Error> {
        let path = clean(path);
        if read_only(&path) {
            return Err(Error::new(Code::RootReadOnly, "/", self.index));
        }
        let n = self.lookup(&path)?;
        if let Some(children) = n.children() {
            if !dir {
                return Err(Error::new(Code::NotFile, path, self.index));
            }
            if !children.is_empty() && !recursive {
                return Err(Error::new(Code::DirNotEmpty, path, self.index));
            }
        }
        let next = self.index + 1;
        let mut e = Event::new(event::DELETE, &path, next, n.created_index);
        e.etcd_index = next;
        e.prev_node = Some(n.repr(false, Self::now()));
        e.node.dir = n.is_dir();
        self.index = next;
        Ok(self.remove_and_notify(e))
    }

    /// Deletes a file when `prev_value` and `prev_index` (when given) match.
    pub fn compare_and_delete(
        &mut self,
        path: &str,
        prev_value: &str,
        prev_index: u64,
    ) -> Result<Event, Error> {
        let r = self.internal_cad(path, prev_value, prev_index);
        self.counted(Op::CompareAndDelete, r)
    }

    fn internal_cad(
        &mut self,
        path: &str,
        prev_value: &str,
        prev_index: u64,
    ) -> Result<Event, Error> {
        let path = clean(path);
        let n = self.compared(&path, prev_value, prev_index)?;
        let next = self.index + 1;
        let mut e = Event::new(event::COMPARE_AND_DELETE, &path, next, n.created_index);
        e.etcd_index = next;
        e.prev_node = Some(n.repr(false, Self::now()));
        self.index = next;
        Ok(self.remove_and_notify(e))
    }

    /// Removes every node whose TTL ran out by `cutoff` (Unix nanoseconds), each one event.
    pub fn delete_expired(&mut self, cutoff: i64) {
        while let Some((at, path)) = self.ttl.first().cloned() {
            if at > cutoff {
                break;
            }
            let Ok(n) = self.lookup(&path) else {
                self.ttl.remove(&(at, path));
                continue;
            };
            let next = self.index + 1;
            let mut e = Event::new(event::EXPIRE, &path, next, n.created_index);
            e.etcd_index = next;
            e.prev_node = Some(n.repr(false, Self::now()));
            e.node.dir = n.is_dir();
            self.index = next;
            self.stats.expired();
            STORE.expired();
            self.remove_and_notify(e);
        }
    }

    /// Takes the event's node (and everything under it) out of the tree, telling the
    /// watchers of each removed path, then the event's own watchers.
    fn remove_and_notify(&mut self, e: Event) -> Event {
        let e = Arc::new(e);
        for path in self.detach(&e.node.key) {
            self.hub.notify_path(&e, &path, true);
        }
        self.record(e.clone(), true);
        Arc::unwrap_or_clone(e)
    }

    /// Removes a node from the tree; returns the removed paths, children before parents.
    fn detach(&mut self, path: &str) -> Vec<String> {
        let (dir, name) = split(path);
        let Some(node) = self
            .lookup_mut(dir)
            .and_then(Node::children_mut)
            .and_then(|c| c.remove(name))
        else {
            return Vec::new();
        };
        let mut removed = Vec::new();
        self.forget(&node, &mut removed);
        removed
    }

    fn forget(&mut self, node: &Node, removed: &mut Vec<String>) {
        if let Some(children) = node.children() {
            for child in children.values() {
                self.forget(child, removed);
            }
        }
        if let Some(at) = node.expire {
            self.ttl.remove(&(at, node.path.clone()));
        }
        self.dirty.paths.insert(node.path.clone());
        removed.push(node.path.clone());
    }

    /// A successful write: into the history, and to the watchers unless it is a refresh.
    fn finish_write(&mut self, mut e: Event, refresh: bool) -> Event {
        e.refresh = refresh;
        let e = Arc::new(e);
        self.record(e.clone(), !refresh);
        Arc::unwrap_or_clone(e)
    }

    fn notify(&mut self, e: Event) -> Event {
        let e = Arc::new(e);
        self.record(e.clone(), true);
        Arc::unwrap_or_clone(e)
    }

    fn record(&mut self, e: Arc<Event>, notify: bool) {
        if let Some(dropped) = self.history.add(e.clone()) {
            self.dirty.dropped.push(dropped);
        }
        self.dirty.events.push(e.clone());
        if notify {
            self.hub.notify(&e);
        }
    }

    /// Puts a node read back from the backend into the tree; its parents come first.
    pub(super) fn insert_loaded(&mut self, node: Node) {
        let (dir, name) = split(&node.path);
        let name = name.to_owned();
        if let Some(at) = node.expire {
            self.ttl.insert((at, node.path.clone()));
        }
        if let Some(children) = self.lookup_mut(dir).and_then(Node::children_mut) {
            match children.get_mut(&name) {
                // The namespaces exist already; keep their children.
                Some(existing) if existing.is_dir() && node.is_dir() => {
                    existing.created_index = node.created_index;
                    existing.modified_index = node.modified_index;
                    existing.expire = node.expire;
                }
                _ => {
                    children.insert(name, node);
                }
            }
        }
    }
}
