//! The Lease service: grants and revokes go through Raft; keepalives and time-to-live are
//! answered by the leader's lessor ([`crate::lease::leader`]).

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use oxcd_api::etcdserverpb::lease_server::Lease;
use oxcd_api::etcdserverpb::{
    InternalRaftRequest, LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest,
    LeaseKeepAliveResponse, LeaseLeasesRequest, LeaseLeasesResponse, LeaseRevokeRequest,
    LeaseRevokeResponse, LeaseStatus, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
    ResponseHeader,
};
use oxcd_api::EtcdError;
use tonic::{Request, Response, Status, Streaming};

use super::auth::{lease_keys, sender, Credentials};
use super::status::status;
use crate::apply::ApplyResponse;
use crate::auth::Access;
use crate::error::ServerError;
use crate::lease::{self, MAX_LEASE_TTL, NO_LEASE};
use crate::server::EtcdServer;

/// What a grant counts against the backend quota: the size of one stored lease (etcd's
/// `leaseOverhead`).
const LEASE_QUOTA_COST: usize = 64;

pub struct LeaseService {
    server: Arc<EtcdServer>,
}

impl LeaseService {
    pub fn new(server: Arc<EtcdServer>) -> LeaseService {
        LeaseService { server }
    }

    fn fill_header(&self, header: &mut Option<ResponseHeader>) {
        let revision = header
            .as_ref()
            .map_or(self.server.kv.current_revision(), |h| h.revision);
        *header = Some(self.server.header(revision));
    }
}

fn unexpected(what: &str) -> Status {
    Status::internal(format!(
        "apply answered a {what} request with another kind of response"
    ))
}

type KeepAliveStream = Pin<Box<dyn Stream<Item = Result<LeaseKeepAliveResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(
        &self,
        request: Request<LeaseGrantRequest>,
    ) -> Result<Response<LeaseGrantResponse>, Status> {
        let sender = sender(&self.server, &request).await?;
        let mut req = request.into_inner();
        if req.ttl > MAX_LEASE_TTL {
            return Err(status(EtcdError::LeaseTtlTooLarge));
        }
        self.server.check_quota(LEASE_QUOTA_COST).await?;
        while req.id == NO_LEASE {
            // Assigned ids are positive, as etcd's.
            req.id = (self.server.next_id() & (i64::MAX as u64)) as i64;
        }
        let internal = InternalRaftRequest {
            lease_grant: Some(req),
            ..Default::default()
        };
        match self.server.propose_as(internal, sender.as_ref()).await? {
            ApplyResponse::LeaseGrant(mut resp) => {
                self.fill_header(&mut resp.header);
                Ok(Response::new(resp))
            }
            _ => Err(unexpected("lease grant")),
        }
    }

    async fn lease_revoke(
        &self,
        request: Request<LeaseRevokeRequest>,
    ) -> Result<Response<LeaseRevokeResponse>, Status> {
        let sender = sender(&self.server, &request).await?;
        let req = request.into_inner();
        // Revoking deletes the lease's keys: write permission on each of them.
        self.server
            .auth
            .check_lease_keys(
                &sender.clone().unwrap_or_default(),
                req.id,
                &lease_keys(&self.server),
            )
            .map_err(status)?;
        let internal = InternalRaftRequest {
            lease_revoke: Some(req),
            ..Default::default()
        };
        match self.server.propose_as(internal, sender.as_ref()).await? {
            ApplyResponse::LeaseRevoke(mut resp) => {
                self.fill_header(&mut resp.header);
                Ok(Response::new(resp))
            }
            _ => Err(unexpected("lease revoke")),
        }
    }

    type LeaseKeepAliveStream = KeepAliveStream;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        // Each response is made when the client is ready for it: the stream itself pulls the
        // next request, so a client that stops reading stops its renewals, and no task or
        // queue sits between the two halves.
        let credentials = Credentials::of(&request);
        let state = Some((self.server.clone(), request.into_inner()));
        let responses = futures::stream::unfold(state, move |state| {
            let credentials = credentials.clone();
            async move {
                let (server, mut inbound) = state?;
                let req = match inbound.message().await {
                    Ok(Some(req)) => req,
                    Ok(None) => return None,
                    Err(e) => {
                        tracing::debug!(error = %e, "failed to receive lease keepalive request from gRPC stream");
                        return None;
                    }
                };
                // A token that died since the stream opened (its user deleted, its password
                // changed, auth disabled) ends the stream.
                if let Err(e) = credentials.resolve(&server.auth) {
                    return Some((Err(status(e)), None));
                }
                match keep_alive_once(&server, req.id).await {
                    Ok(resp) => Some((Ok(resp), Some((server, inbound)))),
                    // An error ends the stream after it is sent.
                    Err(status) => Some((Err(status), None)),
                }
            }
        });
        Ok(Response::new(Box::pin(responses)))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        let sender = sender(&self.server, &request).await?;
        let req = request.into_inner();
        if req.keys && self.server.auth.is_enabled() {
            // The keys' names are data: read permission on each of them (etcd 3.5).
            let sender = sender.unwrap_or_default();
            for key in lease_keys(&self.server)(req.id) {
                self.server
                    .auth
                    .check(&sender, Access::Read, &key, &[])
                    .map_err(status)?;
            }
        }
        let found = lease::leader::time_to_live(&self.server, req.id, req.keys).await?;
        // An unknown lease is not an error here: etcd answers TTL -1.
        let mut resp = match found {
            Some(l) => LeaseTimeToLiveResponse {
                header: None,
                id: l.id,
                ttl: l.ttl,
                granted_ttl: l.granted_ttl,
                keys: l.keys,
            },
            None => LeaseTimeToLiveResponse {
                header: None,
                id: req.id,
                ttl: -1,
                granted_ttl: 0,
                keys: Vec::new(),
            },
        };
        self.fill_header(&mut resp.header);
        Ok(Response::new(resp))
    }

    async fn lease_leases(
        &self,
        _request: Request<LeaseLeasesRequest>,
    ) -> Result<Response<LeaseLeasesResponse>, Status> {
        let leases = self
            .server
            .lessor
            .leases()
            .into_iter()
            .map(|id| LeaseStatus { id })
            .collect();
        let mut resp = LeaseLeasesResponse {
            header: None,
            leases,
        };
        self.fill_header(&mut resp.header);
        Ok(Response::new(resp))
    }
}

/// Renews one lease for a keepalive stream. A lease that does not exist (or expired) gets
/// TTL 0, not an error; any other error ends the stream.
async fn keep_alive_once(server: &EtcdServer, id: i64) -> Result<LeaseKeepAliveResponse, Status> {
    // The header is taken before renewing, so its revision is never later than the renewal:
    // a client never sees a keepalive succeed after the revoke's revision.
    let header = Some(server.header(server.kv.current_revision()));
    let ttl = match lease::leader::renew(server, id).await {
        Ok(ttl) => ttl,
        Err(ServerError::Etcd(EtcdError::LeaseNotFound)) => 0,
        Err(e) => return Err(e.into()),
    };
    Ok(LeaseKeepAliveResponse { header, id, ttl })
}
