//! The v2 store in the backend's `v2` table, written in apply's batch so that it commits
//! with the consistent index (and travels in the raft snapshot dump with every table).
//!
//! Rows: `n` + node path → [`Record`] (JSON); `e` + index (u64, big endian) → an event of
//! the history (JSON); `index` → the store index (u64, big endian). A directory's children
//! are the rows under its path; a path sorts after every prefix of it, so reading rows in
//! key order meets parents first.

use std::sync::Arc;

use oxcd_storage::schema;
use redb::{ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::event::Event;
use super::node::{Kind, Node};
use super::tree::Tree;
use crate::error::ServerError;

const NODE: u8 = b'n';
const EVENT: u8 = b'e';
const INDEX: &[u8] = b"index";

/// A node's own fields; children live in their own rows.
#[derive(Serialize, Deserialize)]
struct Record {
    #[serde(rename = "c")]
    created: u64,
    #[serde(rename = "m")]
    modified: u64,
    #[serde(rename = "x", default, skip_serializing_if = "Option::is_none")]
    expire: Option<i64>,
    /// The value of a file; `None` for a directory.
    #[serde(rename = "v", default, skip_serializing_if = "Option::is_none")]
    value: Option<String>,
}

fn node_key(path: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(path.len() + 1);
    k.push(NODE);
    k.extend_from_slice(path.as_bytes());
    k
}

fn event_key(index: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = EVENT;
    k[1..].copy_from_slice(&index.to_be_bytes());
    k
}

fn storage_err(e: impl std::fmt::Display) -> ServerError {
    ServerError::Storage(format!("v2 store: {e}"))
}

/// Writes what changed in `tree` since the last call into `tx`.
pub fn save(tree: &mut Tree, tx: &WriteTransaction) -> Result<(), ServerError> {
    let dirty = std::mem::take(&mut tree.dirty);
    if dirty.paths.is_empty() && dirty.events.is_empty() {
        return Ok(());
    }
    let mut table = tx.open_table(schema::V2)?;
    for path in &dirty.paths {
        let key = node_key(path);
        match find(&tree.root, path) {
            Some(node) => {
                let record = Record {
                    created: node.created_index,
                    modified: node.modified_index,
                    expire: node.expire,
                    value: match &node.kind {
                        Kind::File(v) => Some(v.clone()),
                        Kind::Dir(_) => None,
                    },
                };
                let bytes = serde_json::to_vec(&record).map_err(storage_err)?;
                table.insert(key.as_slice(), bytes.as_slice())?;
            }
            None => {
                table.remove(key.as_slice())?;
            }
        }
    }
    for e in &dirty.events {
        let bytes = serde_json::to_vec(e.as_ref()).map_err(storage_err)?;
        table.insert(event_key(e.index()).as_slice(), bytes.as_slice())?;
    }
    for index in &dirty.dropped {
        table.remove(event_key(*index).as_slice())?;
    }
    table.insert(INDEX, tree.index.to_be_bytes().as_slice())?;
    Ok(())
}

fn find<'a>(root: &'a Node, path: &str) -> Option<&'a Node> {
    let mut curr = root;
    for name in path.split('/').filter(|s| !s.is_empty()) {
        curr = curr.children()?.get(name)?;
    }
    Some(curr)
}

/// Reads the store back from the backend.
pub fn load(backend: &oxcd_storage::Backend) -> Result<Tree, ServerError> {
    let rtx = backend.begin_read()?;
    let table = rtx.open_table(schema::V2)?;
    let mut tree = Tree::default();
    for row in table.iter()? {
        let (k, v) = row?;
        let (k, v) = (k.value(), v.value());
        match k.first() {
            Some(&NODE) => {
                let path = String::from_utf8(k[1..].to_vec()).map_err(storage_err)?;
                let r: Record = serde_json::from_slice(v).map_err(storage_err)?;
                let node = Node {
                    path,
                    created_index: r.created,
                    modified_index: r.modified,
                    expire: r.expire,
                    kind: match r.value {
                        Some(v) => Kind::File(v),
                        None => Kind::Dir(Default::default()),
                    },
                };
                tree.insert_loaded(node);
            }
            Some(&EVENT) if k.len() == 9 => {
                let e: Event = serde_json::from_slice(v).map_err(storage_err)?;
                tree.history.add(Arc::new(e));
            }
            _ if k == INDEX => {
                tree.index = schema::decode_u64(v)
                    .ok_or_else(|| storage_err("the index row is not 8 bytes"))?;
            }
            _ => {}
        }
    }
    Ok(tree)
}
