//! The cluster's own entries under `/0`, as etcd 3.4 keeps them in its v2 store: members'
//! raft attributes and attributes, removed members, the cluster version. Clients never see
//! them (the keys API lives under `/1`), but each is one event, so the store index moves
//! with membership changes exactly as in etcd.

use super::tree::Tree;
use crate::v2::json::JsonWriter;

fn member_key(id: u64) -> String {
    format!("/0/members/{id:x}")
}

fn raft_attributes(peer_urls: &[String], is_learner: bool) -> String {
    let mut w = JsonWriter::default();
    w.open();
    w.open_array("peerURLs");
    for url in peer_urls {
        w.element_str(url);
    }
    w.close_array();
    if is_learner {
        w.field_bool("isLearner", true);
    }
    w.close();
    w.finish()
}

impl Tree {
    /// A member joined (or was among the founders).
    pub fn member_added(&mut self, id: u64, peer_urls: &[String], is_learner: bool) {
        let path = format!("{}/raftAttributes", member_key(id));
        let value = raft_attributes(peer_urls, is_learner);
        if let Err(e) = self.create(&path, false, &value, false, None) {
            tracing::warn!(error = %e, "member-id" = format!("{id:x}"), "failed to record a member in the v2 store");
        }
    }

    /// A member's peer URLs changed, or a learner was promoted.
    pub fn member_updated(&mut self, id: u64, peer_urls: &[String], is_learner: bool) {
        let path = format!("{}/raftAttributes", member_key(id));
        let value = raft_attributes(peer_urls, is_learner);
        if let Err(e) = self.update(&path, &value, None, false) {
            tracing::warn!(error = %e, "member-id" = format!("{id:x}"), "failed to update a member in the v2 store");
        }
    }

    pub fn member_removed(&mut self, id: u64) {
        let _ = self.delete(&member_key(id), true, true);
        let _ = self.create(
            &format!("/0/removed_members/{id:x}"),
            false,
            "",
            false,
            None,
        );
    }

    /// A member published its name and client URLs.
    pub fn member_attributes(&mut self, id: u64, name: &str, client_urls: &[String]) {
        let mut w = JsonWriter::default();
        w.open();
        if !name.is_empty() {
            w.field_str("name", name);
        }
        if !client_urls.is_empty() {
            w.open_array("clientURLs");
            for url in client_urls {
                w.element_str(url);
            }
            w.close_array();
        }
        w.close();
        let path = format!("{}/attributes", member_key(id));
        let _ = self.set(&path, false, &w.finish(), None, false);
    }

    /// The cluster version, recorded when it changes.
    pub fn cluster_version(&mut self, version: &str) {
        let current = self.get("/0/version", false).ok();
        if current.and_then(|e| e.node.value).as_deref() != Some(version) {
            let _ = self.set("/0/version", false, version, None, false);
        }
    }
}
