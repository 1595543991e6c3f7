//! The cluster's members: who they are (id, peer URLs, learner or voter) and what they
//! published about themselves (name, client URLs). Kept in memory for readers and in the
//! backend's `members` table, written only by apply (or once at bootstrap).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use oxcd_api::etcdserverpb;
use oxcd_api::membershippb::{Attributes, Member, RaftAttributes};
use oxcd_storage::schema;
use prost::Message as _;
use raft::eraftpb::ConfChangeType;
use redb::{ReadableTable, WriteTransaction};

use crate::error::ServerError;

/// The member table, shared by handlers (reads) and apply (writes).
pub struct Membership {
    cluster_id: u64,
    members: Mutex<BTreeMap<u64, Member>>,
    /// Ids removed from the cluster; a removed member may never rejoin under its old id.
    removed: Mutex<BTreeSet<u64>>,
}

impl Membership {
    /// Loads the members stored in the backend.
    pub fn load(
        cluster_id: u64,
        backend: &oxcd_storage::Backend,
    ) -> Result<Membership, ServerError> {
        let rtx = backend.begin_read()?;
        let mut members = BTreeMap::new();
        let table = rtx.open_table(schema::MEMBERS)?;
        for row in table.iter()? {
            let (_, value) = row?;
            let member = Member::decode(value.value())
                .map_err(|e| ServerError::Storage(format!("members table does not decode: {e}")))?;
            members.insert(member.id, member);
        }
        let mut removed = BTreeSet::new();
        for row in rtx.open_table(schema::MEMBERS_REMOVED)?.iter()? {
            let (key, _) = row?;
            if let Ok(bytes) = <[u8; 8]>::try_from(key.value()) {
                removed.insert(u64::from_be_bytes(bytes));
            }
        }
        if let Some(version) = rtx
            .open_table(schema::CLUSTER)?
            .get(schema::CLUSTER_VERSION)?
        {
            // A restarting member recovers the version it had agreed on, as etcd's does; the
            // e2e suite counts these lines to tell a member is ready.
            let version = String::from_utf8_lossy(version.value()).into_owned();
            tracing::info!("cluster-version" = version, "set initial cluster version");
            tracing::info!(
                "cluster-version" = version,
                "enabled capabilities for version"
            );
        }
        Ok(Membership {
            cluster_id,
            members: Mutex::new(members),
            removed: Mutex::new(removed),
        })
    }

    pub fn cluster_id(&self) -> u64 {
        self.cluster_id
    }

    /// Writes the initial members of a new cluster.
    pub fn bootstrap(
        &self,
        tx: &WriteTransaction,
        initial: &[(u64, String, Vec<String>)],
    ) -> Result<(), ServerError> {
        for (id, name, peer_urls) in initial {
            // The name comes from --initial-cluster, so a member that has not started yet is
            // listed by name, as etcd lists it; client URLs come when the member publishes.
            let member = Member {
                id: *id,
                raft_attributes: Some(RaftAttributes {
                    peer_urls: peer_urls.clone(),
                    is_learner: false,
                }),
                member_attributes: Some(Attributes {
                    name: name.clone(),
                    ..Attributes::default()
                }),
            };
            self.store(tx, member)?;
        }
        Ok(())
    }

    /// Records the name and client URLs member `id` published.
    pub fn set_attributes(
        &self,
        tx: &WriteTransaction,
        id: u64,
        attributes: Attributes,
    ) -> Result<bool, ServerError> {
        let Some(mut member) = self.members.lock().unwrap().get(&id).cloned() else {
            return Ok(false);
        };
        member.member_attributes = Some(attributes);
        self.store(tx, member)?;
        Ok(true)
    }

    fn store(&self, tx: &WriteTransaction, member: Member) -> Result<(), ServerError> {
        let mut table = tx.open_table(schema::MEMBERS)?;
        table.insert(
            member.id.to_be_bytes().as_slice(),
            member.encode_to_vec().as_slice(),
        )?;
        self.members.lock().unwrap().insert(member.id, member);
        Ok(())
    }

    /// Adds a member (a MemberAdd reaching apply). Its name and client URLs stay empty until
    /// it starts and publishes them.
    pub fn add(
        &self,
        tx: &WriteTransaction,
        id: u64,
        peer_urls: Vec<String>,
        is_learner: bool,
    ) -> Result<(), ServerError> {
        let member = Member {
            id,
            raft_attributes: Some(RaftAttributes {
                peer_urls,
                is_learner,
            }),
            member_attributes: Some(Attributes::default()),
        };
        self.store(tx, member)
    }

    /// Removes a member for good: its id may never come back.
    pub fn remove(&self, tx: &WriteTransaction, id: u64) -> Result<(), ServerError> {
        tx.open_table(schema::MEMBERS)?
            .remove(id.to_be_bytes().as_slice())?;
        tx.open_table(schema::MEMBERS_REMOVED)?
            .insert(id.to_be_bytes().as_slice(), [].as_slice())?;
        self.members.lock().unwrap().remove(&id);
        self.removed.lock().unwrap().insert(id);
        Ok(())
    }

    /// Makes a learner a voting member.
    pub fn promote(&self, tx: &WriteTransaction, id: u64) -> Result<(), ServerError> {
        let Some(mut member) = self.members.lock().unwrap().get(&id).cloned() else {
            return Ok(());
        };
        member
            .raft_attributes
            .get_or_insert_with(Default::default)
            .is_learner = false;
        self.store(tx, member)
    }

    /// Replaces a member's peer URLs.
    pub fn update_peer_urls(
        &self,
        tx: &WriteTransaction,
        id: u64,
        peer_urls: Vec<String>,
    ) -> Result<(), ServerError> {
        let Some(mut member) = self.members.lock().unwrap().get(&id).cloned() else {
            return Ok(());
        };
        member
            .raft_attributes
            .get_or_insert_with(Default::default)
            .peer_urls = peer_urls;
        self.store(tx, member)
    }

    /// Applies a committed conf change for member `id` (with the peer URLs its context
    /// carries); `true` when it promoted a learner.
    pub fn apply_conf_change(
        &self,
        tx: &WriteTransaction,
        change: ConfChangeType,
        id: u64,
        peer_urls: Vec<String>,
    ) -> Result<bool, ServerError> {
        let existing = self.members.lock().unwrap().get(&id).cloned();
        let is_learner = |m: &Member| m.raft_attributes.as_ref().is_some_and(|r| r.is_learner);
        match (change, existing) {
            (ConfChangeType::RemoveNode, _) => self.remove(tx, id).map(|()| false),
            (ConfChangeType::AddNode, Some(m)) if is_learner(&m) => {
                self.promote(tx, id).map(|()| true)
            }
            (_, Some(_)) => self.update_peer_urls(tx, id, peer_urls).map(|()| false),
            (change, None) => {
                let learner = change == ConfChangeType::AddLearnerNode;
                self.add(tx, id, peer_urls, learner).map(|()| false)
            }
        }
    }

    /// Whether `id` was removed from the cluster.
    pub fn is_removed(&self, id: u64) -> bool {
        self.removed.lock().unwrap().contains(&id)
    }

    /// Whether `id` is a member and a learner.
    pub fn is_learner(&self, id: u64) -> bool {
        self.members
            .lock()
            .unwrap()
            .get(&id)
            .and_then(|m| m.raft_attributes.as_ref())
            .is_some_and(|r| r.is_learner)
    }

    /// Reloads members from the backend (after a snapshot replaced its contents).
    pub fn reload(&self, backend: &oxcd_storage::Backend) -> Result<(), ServerError> {
        let fresh = Membership::load(self.cluster_id, backend)?;
        *self.members.lock().unwrap() = fresh.members.into_inner().unwrap();
        *self.removed.lock().unwrap() = fresh.removed.into_inner().unwrap();
        Ok(())
    }

    /// Records the cluster version all members agreed on.
    pub fn set_cluster_version(
        &self,
        tx: &WriteTransaction,
        version: &str,
    ) -> Result<bool, ServerError> {
        let mut table = tx.open_table(schema::CLUSTER)?;
        let changed = table
            .get(schema::CLUSTER_VERSION)?
            .is_none_or(|old| old.value() != version.as_bytes());
        table.insert(schema::CLUSTER_VERSION, version.as_bytes())?;
        Ok(changed)
    }

    /// The members as the Cluster API shows them, in id order.
    pub fn list(&self) -> Vec<etcdserverpb::Member> {
        self.members
            .lock()
            .unwrap()
            .values()
            .map(to_api_member)
            .collect()
    }

    pub fn get(&self, id: u64) -> Option<etcdserverpb::Member> {
        self.members.lock().unwrap().get(&id).map(to_api_member)
    }
}

fn to_api_member(m: &Member) -> etcdserverpb::Member {
    let raft = m.raft_attributes.clone().unwrap_or_default();
    let attrs = m.member_attributes.clone().unwrap_or_default();
    etcdserverpb::Member {
        id: m.id,
        name: attrs.name,
        peer_ur_ls: raft.peer_urls,
        client_ur_ls: attrs.client_urls,
        is_learner: raft.is_learner,
    }
}
