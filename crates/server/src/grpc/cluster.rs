//! The Cluster service: membership changes through Raft conf changes, and the member list.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::auth::require_admin;
use oxcd_api::etcdserverpb::cluster_server::Cluster;
use oxcd_api::etcdserverpb::*;
use oxcd_api::oxcdpb::ConfChangeContext;
use oxcd_api::EtcdError;
use raft::eraftpb::ConfChangeType;
use tonic::{Request, Response, Status};

use super::status::status;
use crate::config::{ids, EtcdUrl};
use crate::server::EtcdServer;

/// A learner may be promoted once its log matches at least this share of the leader's
/// (etcd's readyPercent).
const LEARNER_READY_PERCENT: f64 = 0.9;

/// How long the members must have been connected for a reconfiguration to count them
/// (etcd's HealthInterval).
const HEALTH_INTERVAL: Duration = Duration::from_secs(5);

pub struct ClusterService {
    server: Arc<EtcdServer>,
}

impl ClusterService {
    pub fn new(server: Arc<EtcdServer>) -> ClusterService {
        ClusterService { server }
    }

    fn header(&self) -> Option<ResponseHeader> {
        // Like etcd, membership responses carry no revision.
        Some(self.server.header(0))
    }

    /// Peer URLs in canonical form, or etcd's error when one does not parse.
    fn parse_peer_urls(urls: &[String]) -> Result<Vec<String>, Status> {
        if urls.is_empty() {
            return Err(status(EtcdError::MemberBadUrls));
        }
        urls.iter()
            .map(|u| {
                EtcdUrl::parse(u)
                    .map(|u| u.to_string())
                    .map_err(|_| status(EtcdError::MemberBadUrls))
            })
            .collect()
    }

    /// Refuses URLs another member (other than `except`) already has.
    fn check_urls_unused(&self, urls: &[String], except: u64) -> Result<(), Status> {
        let taken = self
            .server
            .membership
            .list()
            .into_iter()
            .filter(|m| m.id != except)
            .any(|m| m.peer_ur_ls.iter().any(|u| urls.contains(u)));
        if taken {
            return Err(status(EtcdError::PeerUrlExist));
        }
        Ok(())
    }

    fn voting_members(&self) -> Vec<Member> {
        self.server
            .membership
            .list()
            .into_iter()
            .filter(|m| !m.is_learner)
            .collect()
    }

    /// etcd's strict reconfiguration check: a voting member may join only if the started
    /// members (those that published their name) still make a quorum with it, or when it
    /// is the second member of a one-member cluster.
    fn ready_to_add_voting_member(&self) -> bool {
        let voting = self.voting_members();
        let started = voting.iter().filter(|m| !m.name.is_empty()).count();
        let members = voting.len() + 1;
        (started == 1 && members == 2) || started > members / 2
    }

    /// The started voting members other than `id` still make a quorum of themselves.
    fn ready_to_remove_voting_member(&self, id: u64) -> bool {
        let others: Vec<Member> = self
            .voting_members()
            .into_iter()
            .filter(|m| m.id != id)
            .collect();
        let started = others.iter().filter(|m| !m.name.is_empty()).count();
        started > others.len() / 2
    }

    /// With the learner counted as started, the started voting members make a quorum.
    fn ready_to_promote_member(&self) -> bool {
        let voting = self.voting_members();
        let started = voting.iter().filter(|m| !m.name.is_empty()).count() + 1;
        let members = voting.len() + 1;
        started > members / 2
    }

    /// How many of `members` this member has been connected to for [`HEALTH_INTERVAL`],
    /// itself included (etcd's `numConnectedSince`).
    fn connected_for_a_while(&self, members: &[Member]) -> usize {
        let since = Instant::now().checked_sub(HEALTH_INTERVAL);
        let activity = &self.server.transport_stats.activity;
        members
            .iter()
            .filter(|m| {
                m.id == self.server.member_id
                    || since.is_some_and(|since| activity.connected_since(m.id, since))
            })
            .count()
    }

    /// etcd's `mayRemoveMember`: a voting member may go only if the started members left
    /// make a quorum, and, unless it is down already, if the members this one has been
    /// connected to, less it, still make a quorum of the voting members.
    fn may_remove_member(&self, member: &Member) -> Result<(), Status> {
        if !self.server.limits.strict_reconfig_check || member.is_learner {
            return Ok(());
        }
        if !self.ready_to_remove_voting_member(member.id) {
            return Err(status(EtcdError::MemberNotEnoughStarted));
        }
        let activity = &self.server.transport_stats.activity;
        if member.id != self.server.member_id && activity.active_since(member.id).is_none() {
            return Ok(());
        }
        let voting = self.voting_members();
        let active = self.connected_for_a_while(&voting);
        if active.saturating_sub(1) < 1 + (voting.len().saturating_sub(1)) / 2 {
            return Err(status(EtcdError::Unhealthy));
        }
        Ok(())
    }

    /// etcd's promoteMember: on the leader, checks that the learner is in sync and that a
    /// quorum has started, then proposes the promotion; elsewhere answers `not leader`.
    pub async fn promote_as_leader(&self, id: u64) -> Result<Vec<Member>, Status> {
        let member = self.existing(id)?;
        if !member.is_learner {
            return Err(status(EtcdError::MemberNotLearner));
        }
        let Some(progress) = self.server.raft_progress().await? else {
            return Err(status(EtcdError::NotLeader));
        };
        let leader_match = progress.get(&self.server.member_id).copied().unwrap_or(0);
        let learner_match = progress.get(&id).copied().unwrap_or(0);
        if (learner_match as f64) < (leader_match as f64) * LEARNER_READY_PERCENT {
            return Err(status(EtcdError::LearnerNotReady));
        }
        if self.server.limits.strict_reconfig_check && !self.ready_to_promote_member() {
            return Err(status(EtcdError::MemberNotEnoughStarted));
        }
        let context = ConfChangeContext {
            member_id: id,
            peer_urls: member.peer_ur_ls,
            ..Default::default()
        };
        Ok(self
            .server
            .propose_conf_change(ConfChangeType::AddNode, id, context)
            .await?)
    }

    fn existing(&self, id: u64) -> Result<Member, Status> {
        self.server
            .membership
            .get(id)
            .ok_or_else(|| status(EtcdError::MemberNotFound))
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        request: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        require_admin(&self.server, &request).await?;
        let req = request.into_inner();
        let urls = Self::parse_peer_urls(&req.peer_ur_ls)?;
        self.check_urls_unused(&urls, 0)?;
        if !req.is_learner
            && self.server.limits.strict_reconfig_check
            && !self.ready_to_add_voting_member()
        {
            return Err(status(EtcdError::MemberNotEnoughStarted));
        }
        // Every voting member must have been connected for a while: a change now could
        // break the quorum that is active.
        if self.server.limits.strict_reconfig_check {
            let voting = self.voting_members();
            if self.connected_for_a_while(&voting) != voting.len() {
                return Err(status(EtcdError::Unhealthy));
            }
        }
        if req.is_learner {
            let learners = self
                .server
                .membership
                .list()
                .iter()
                .filter(|m| m.is_learner)
                .count();
            if learners >= self.server.limits.max_learners {
                return Err(status(EtcdError::TooManyLearners));
            }
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let id = ids::member_id(&urls, "", Some(now));
        if self.server.membership.get(id).is_some() || self.server.membership.is_removed(id) {
            return Err(status(EtcdError::MemberExist));
        }
        let change = if req.is_learner {
            ConfChangeType::AddLearnerNode
        } else {
            ConfChangeType::AddNode
        };
        let context = ConfChangeContext {
            member_id: id,
            peer_urls: urls.clone(),
            is_learner: req.is_learner,
            ..Default::default()
        };
        let members = self.server.propose_conf_change(change, id, context).await?;
        let member = Member {
            id,
            peer_ur_ls: urls,
            is_learner: req.is_learner,
            ..Default::default()
        };
        Ok(Response::new(MemberAddResponse {
            header: self.header(),
            member: Some(member),
            members,
        }))
    }

    async fn member_remove(
        &self,
        request: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        require_admin(&self.server, &request).await?;
        let id = request.into_inner().id;
        let member = self.existing(id)?;
        self.may_remove_member(&member)?;
        let context = ConfChangeContext {
            member_id: id,
            ..Default::default()
        };
        let members = self
            .server
            .propose_conf_change(ConfChangeType::RemoveNode, id, context)
            .await?;
        Ok(Response::new(MemberRemoveResponse {
            header: self.header(),
            members,
        }))
    }

    async fn member_update(
        &self,
        request: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        require_admin(&self.server, &request).await?;
        let req = request.into_inner();
        let member = self.existing(req.id)?;
        let urls = Self::parse_peer_urls(&req.peer_ur_ls)?;
        self.check_urls_unused(&urls, req.id)?;
        // Re-adding a member with its own role changes nothing in raft; apply reads it as
        // new peer URLs.
        let change = if member.is_learner {
            ConfChangeType::AddLearnerNode
        } else {
            ConfChangeType::AddNode
        };
        let context = ConfChangeContext {
            member_id: req.id,
            peer_urls: urls,
            is_learner: member.is_learner,
            ..Default::default()
        };
        let members = self
            .server
            .propose_conf_change(change, req.id, context)
            .await?;
        Ok(Response::new(MemberUpdateResponse {
            header: self.header(),
            members,
        }))
    }

    async fn member_list(
        &self,
        request: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        if request.get_ref().linearizable {
            self.server.linearizable_read_barrier().await?;
        }
        Ok(Response::new(MemberListResponse {
            header: self.header(),
            members: self.server.membership.list(),
        }))
    }

    async fn member_promote(
        &self,
        request: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        require_admin(&self.server, &request).await?;
        let id = request.into_inner().id;
        let members = match self.promote_as_leader(id).await {
            // Only the leader knows how far the learner got: a follower hands the
            // promotion to it, as etcd's PromoteMember does.
            Err(e) if e.message() == EtcdError::NotLeader.message() => {
                crate::peer::forward_promote(&self.server, id).await?
            }
            answer => answer?,
        };
        Ok(Response::new(MemberPromoteResponse {
            header: self.header(),
            members,
        }))
    }
}
