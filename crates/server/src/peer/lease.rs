//! Lease requests only the leader can answer, carried to it over the peer port
//! (`oxcdpb.Peer/LeaseRenew`, `LeaseTimeToLive`): the forwarding half of `lease::leader`.

use std::sync::Arc;

use oxcd_api::etcdserverpb::{LeaseKeepAliveRequest, LeaseTimeToLiveRequest};
use oxcd_api::oxcdpb::peer_client::PeerClient;
use oxcd_api::EtcdError;

use super::client::dial;
use crate::error::ServerError;
use crate::lease::{LeaseForwarder, LeaseStatus};
use crate::membership::Membership;

/// Forwards lease requests to the leader named by the caller.
pub struct PeerLeaseForwarder {
    membership: Arc<Membership>,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl PeerLeaseForwarder {
    pub fn new(
        membership: Arc<Membership>,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> PeerLeaseForwarder {
        PeerLeaseForwarder { membership, tls }
    }

    async fn client(
        &self,
        leader: u64,
    ) -> Result<PeerClient<tonic::transport::Channel>, ServerError> {
        let member = self.membership.get(leader).ok_or(EtcdError::NoLeader)?;
        let url = member.peer_ur_ls.first().ok_or(EtcdError::NoLeader)?;
        let channel = dial(url, self.tls.clone())
            .await
            .map_err(|_| EtcdError::NoLeader)?;
        Ok(PeerClient::new(channel))
    }
}

/// The leader's answer as the error a client should see.
fn from_status(status: tonic::Status) -> ServerError {
    match EtcdError::from_message(status.message()) {
        Some(e) => e.into(),
        None => ServerError::Raft(format!("leader: {}", status.message())),
    }
}

#[tonic::async_trait]
impl LeaseForwarder for PeerLeaseForwarder {
    async fn renew(&self, leader: u64, id: i64) -> Result<i64, ServerError> {
        let mut client = self.client(leader).await?;
        let resp = client
            .lease_renew(LeaseKeepAliveRequest { id })
            .await
            .map_err(from_status)?;
        Ok(resp.into_inner().ttl)
    }

    async fn time_to_live(
        &self,
        leader: u64,
        id: i64,
        with_keys: bool,
    ) -> Result<Option<LeaseStatus>, ServerError> {
        let mut client = self.client(leader).await?;
        let resp = client
            .lease_time_to_live(LeaseTimeToLiveRequest {
                id,
                keys: with_keys,
            })
            .await
            .map_err(from_status)?
            .into_inner();
        // The leader answers TTL -1 for a lease it does not have, as etcd's LeaseTimeToLive.
        if resp.ttl == -1 {
            return Ok(None);
        }
        Ok(Some(LeaseStatus {
            id: resp.id,
            ttl: resp.ttl,
            granted_ttl: resp.granted_ttl,
            keys: resp.keys,
        }))
    }
}
