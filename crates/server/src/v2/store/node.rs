//! The tree's nodes, and the form clients see them in ([`NodeExtern`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::v2::json::{rfc3339_nano, JsonWriter};

/// One node of the tree: a file (a value) or a directory (children by name).
#[derive(Clone, Debug)]
pub struct Node {
    /// The full path, such as `/1/dir/key`.
    pub path: String,
    pub created_index: u64,
    pub modified_index: u64,
    /// When the node expires, as Unix nanoseconds; `None` = permanent.
    pub expire: Option<i64>,
    pub kind: Kind,
}

#[derive(Clone, Debug)]
pub enum Kind {
    File(String),
    Dir(BTreeMap<String, Node>),
}

impl Node {
    pub fn file(path: String, value: String, index: u64, expire: Option<i64>) -> Node {
        Node {
            path,
            created_index: index,
            modified_index: index,
            expire,
            kind: Kind::File(value),
        }
    }

    pub fn dir(path: String, index: u64, expire: Option<i64>) -> Node {
        Node {
            path,
            created_index: index,
            modified_index: index,
            expire,
            kind: Kind::Dir(BTreeMap::new()),
        }
    }

    pub fn is_dir(&self) -> bool {
        matches!(self.kind, Kind::Dir(_))
    }

    pub fn value(&self) -> &str {
        match &self.kind {
            Kind::File(v) => v,
            Kind::Dir(_) => "",
        }
    }

    pub fn children(&self) -> Option<&BTreeMap<String, Node>> {
        match &self.kind {
            Kind::Dir(children) => Some(children),
            Kind::File(_) => None,
        }
    }

    pub fn children_mut(&mut self) -> Option<&mut BTreeMap<String, Node>> {
        match &mut self.kind {
            Kind::Dir(children) => Some(children),
            Kind::File(_) => None,
        }
    }

    /// Hidden nodes (a name starting with `_`) are left out of listings.
    pub fn is_hidden(&self) -> bool {
        name_of(&self.path).starts_with('_')
    }

    /// Expiration and the whole seconds left (rounded up), as etcd shows them.
    pub fn expiration_and_ttl(&self, now: i64) -> (Option<i64>, i64) {
        match self.expire {
            None => (None, 0),
            Some(at) => {
                let left = at - now;
                let mut ttl = left / 1_000_000_000;
                if left % 1_000_000_000 > 0 {
                    ttl += 1;
                }
                (Some(at), ttl)
            }
        }
    }

    /// What a client sees of this node; children only when `recursive`, hidden ones never.
    pub fn repr(&self, recursive: bool, now: i64) -> NodeExtern {
        let (expiration, ttl) = self.expiration_and_ttl(now);
        let mut ext = NodeExtern {
            key: self.path.clone(),
            modified_index: self.modified_index,
            created_index: self.created_index,
            expiration,
            ttl,
            ..Default::default()
        };
        match &self.kind {
            Kind::File(v) => ext.value = Some(v.clone()),
            Kind::Dir(children) => {
                ext.dir = true;
                if recursive {
                    ext.nodes = Some(list(children, true, now));
                }
            }
        }
        ext
    }

    /// What a GET answers: a directory lists its (visible) children, recursively or not.
    pub fn load(&self, recursive: bool, now: i64) -> NodeExtern {
        let mut ext = self.repr(false, now);
        if let Kind::Dir(children) = &self.kind {
            ext.nodes = Some(list(children, recursive, now));
        }
        ext
    }
}

/// The visible children of a directory, in key order (a superset of `sorted=true`: etcd
/// lists in map order otherwise, which no client may rely on).
fn list(children: &BTreeMap<String, Node>, recursive: bool, now: i64) -> Vec<NodeExtern> {
    children
        .values()
        .filter(|c| !c.is_hidden())
        .map(|c| c.repr(recursive, now))
        .collect()
}

/// The last component of a path.
pub fn name_of(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or("")
}

/// A node as clients see it (etcd's NodeExtern); also the form events keep in the history.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeExtern {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dir: bool,
    /// Unix nanoseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration: Option<i64>,
    #[serde(default)]
    pub ttl: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<Vec<NodeExtern>>,
    #[serde(default)]
    pub modified_index: u64,
    #[serde(default)]
    pub created_index: u64,
}

impl NodeExtern {
    /// Writes the node as etcd's JSON, with `prefix` (the keys namespace) cut from keys.
    pub fn write_json(&self, w: &mut JsonWriter, prefix: &str) {
        let key = self.key.strip_prefix(prefix).unwrap_or(&self.key);
        if !key.is_empty() {
            w.field_str("key", key);
        }
        if let Some(v) = &self.value {
            w.field_str("value", v);
        }
        if self.dir {
            w.field_bool("dir", true);
        }
        if let Some(at) = self.expiration {
            w.field_str("expiration", &rfc3339_nano(at));
        }
        if self.ttl != 0 {
            w.field_i64("ttl", self.ttl);
        }
        if let Some(nodes) = self.nodes.as_ref().filter(|n| !n.is_empty()) {
            w.open_array("nodes");
            for n in nodes {
                w.open_element();
                n.write_json(w, prefix);
                w.close();
            }
            w.close_array();
        }
        if self.modified_index != 0 {
            w.field_u64("modifiedIndex", self.modified_index);
        }
        if self.created_index != 0 {
            w.field_u64("createdIndex", self.created_index);
        }
    }
}

/// Go's `path.Clean(path.Join("/", p))`: an absolute path without `.`, `..`, repeated or
/// trailing slashes.
pub fn clean(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Go's `path.Join(dir, name)` for a clean absolute `dir`.
pub fn join(dir: &str, name: &str) -> String {
    clean(&format!("{dir}/{name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_clean_as_go() {
        assert_eq!(clean("/1/foo/"), "/1/foo");
        assert_eq!(clean("//1//a/./b/../c"), "/1/a/c");
        assert_eq!(clean("/1/../../x"), "/x");
        assert_eq!(clean(""), "/");
        assert_eq!(join("/1", "a"), "/1/a");
    }

    #[test]
    fn ttl_rounds_up() {
        let n = Node::file("/1/a".into(), "v".into(), 1, Some(10_500_000_000));
        assert_eq!(n.expiration_and_ttl(0), (Some(10_500_000_000), 11));
        assert_eq!(n.expiration_and_ttl(500_000_000).1, 10);
        assert_eq!(n.expiration_and_ttl(11_000_000_000).1, 0);
    }
}
