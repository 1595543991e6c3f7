//! The Cluster service: the member list now; membership changes come with clustering and
//! answer Unimplemented until then.

use std::sync::Arc;

use oxcd_api::etcdserverpb::cluster_server::Cluster;
use oxcd_api::etcdserverpb::*;
use tonic::{Request, Response, Status};

use crate::server::EtcdServer;

pub struct ClusterService {
    server: Arc<EtcdServer>,
}

impl ClusterService {
    pub fn new(server: Arc<EtcdServer>) -> ClusterService {
        ClusterService { server }
    }
}

fn not_built(rpc: &str) -> Status {
    Status::unimplemented(format!("{rpc} is not implemented in this oxcd version"))
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        _: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        Err(not_built("MemberAdd"))
    }

    async fn member_remove(
        &self,
        _: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        Err(not_built("MemberRemove"))
    }

    async fn member_update(
        &self,
        _: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        Err(not_built("MemberUpdate"))
    }

    async fn member_list(
        &self,
        request: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        if request.get_ref().linearizable {
            self.server.linearizable_read_barrier().await?;
        }
        // Like etcd, the member list header carries no revision.
        Ok(Response::new(MemberListResponse {
            header: Some(self.server.header(0)),
            members: self.server.membership.list(),
        }))
    }

    async fn member_promote(
        &self,
        _: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        Err(not_built("MemberPromote"))
    }
}
