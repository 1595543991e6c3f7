//! The cluster's members: who they are (id, peer URLs, learner or voter) and what they
//! published about themselves (name, client URLs). Kept in memory for readers and in the
//! backend's `members` table, written only by apply (or once at bootstrap).

use std::collections::BTreeMap;
use std::sync::Mutex;

use oxcd_api::etcdserverpb;
use oxcd_api::membershippb::{Attributes, Member, RaftAttributes};
use oxcd_storage::schema;
use prost::Message as _;
use redb::{ReadableTable, WriteTransaction};

use crate::error::ServerError;

/// The member table, shared by handlers (reads) and apply (writes).
pub struct Membership {
    cluster_id: u64,
    members: Mutex<BTreeMap<u64, Member>>,
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
        Ok(Membership {
            cluster_id,
            members: Mutex::new(members),
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
        for (id, _name, peer_urls) in initial {
            // Names and client URLs are published by each member once it runs, as etcd does.
            let member = Member {
                id: *id,
                raft_attributes: Some(RaftAttributes {
                    peer_urls: peer_urls.clone(),
                    is_learner: false,
                }),
                member_attributes: Some(Attributes::default()),
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

    /// Records the cluster version all members agreed on.
    pub fn set_cluster_version(
        &self,
        tx: &WriteTransaction,
        version: &str,
    ) -> Result<(), ServerError> {
        let mut table = tx.open_table(schema::CLUSTER)?;
        table.insert(schema::CLUSTER_VERSION, version.as_bytes())?;
        Ok(())
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
