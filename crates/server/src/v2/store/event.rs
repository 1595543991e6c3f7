//! What a v2 operation did: an action on a node, with the node before it.

use serde::{Deserialize, Serialize};

use super::node::NodeExtern;
use crate::v2::json::JsonWriter;

pub const GET: &str = "get";
pub const CREATE: &str = "create";
pub const SET: &str = "set";
pub const UPDATE: &str = "update";
pub const DELETE: &str = "delete";
pub const COMPARE_AND_SWAP: &str = "compareAndSwap";
pub const COMPARE_AND_DELETE: &str = "compareAndDelete";
pub const EXPIRE: &str = "expire";

/// One event (etcd's v2store.Event). `node.modified_index` is its index in the history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub action: String,
    pub node: NodeExtern,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev_node: Option<NodeExtern>,
    /// The store index after the operation (the `X-Etcd-Index` header).
    #[serde(default)]
    pub etcd_index: u64,
    /// A TTL refresh: kept in the history, never sent to watchers.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub refresh: bool,
}

impl Event {
    pub fn new(action: &str, key: &str, modified_index: u64, created_index: u64) -> Event {
        Event {
            action: action.to_owned(),
            node: NodeExtern {
                key: key.to_owned(),
                modified_index,
                created_index,
                ..Default::default()
            },
            prev_node: None,
            etcd_index: 0,
            refresh: false,
        }
    }

    pub fn index(&self) -> u64 {
        self.node.modified_index
    }

    /// Whether the event made a new node: the answer is then `201 Created`.
    pub fn is_created(&self) -> bool {
        self.action == CREATE || (self.action == SET && self.prev_node.is_none())
    }

    /// etcd's JSON for the event, newline included, `prefix` cut from keys; without the
    /// nodes when `no_value` (noValueOnSuccess).
    pub fn to_json(&self, prefix: &str, no_value: bool) -> String {
        let mut w = JsonWriter::default();
        w.open();
        w.field_str("action", &self.action);
        if !no_value {
            w.open_field("node");
            self.node.write_json(&mut w, prefix);
            w.close();
            if let Some(prev) = &self.prev_node {
                w.open_field("prevNode");
                prev.write_json(&mut w, prefix);
                w.close();
            }
        }
        if self.refresh {
            w.field_bool("refresh", true);
        }
        w.close();
        w.finish_line()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_json_matches_etcd() {
        let mut e = Event::new(SET, "/1/d/x", 6, 6);
        e.node.value = Some("y".into());
        e.node.expiration = Some(1_796_468_474_133_667_251);
        e.node.ttl = 100;
        let mut prev = NodeExtern {
            key: "/1/d/x".into(),
            value: Some("<a".into()),
            modified_index: 5,
            created_index: 5,
            ..Default::default()
        };
        prev.expiration = Some(1_796_468_474_119_648_999);
        prev.ttl = 100;
        e.prev_node = Some(prev);
        assert_eq!(
            e.to_json("/1", false),
            concat!(
                r#"{"action":"set","node":{"key":"/d/x","value":"y","expiration":"2026-12-05T11:01:14.133667251Z","ttl":100,"modifiedIndex":6,"createdIndex":6},"#,
                r#""prevNode":{"key":"/d/x","value":"\u003ca","expiration":"2026-12-05T11:01:14.119648999Z","ttl":100,"modifiedIndex":5,"createdIndex":5}}"#,
                "\n"
            )
        );
        assert!(!e.is_created());
    }
}
