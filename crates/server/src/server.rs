//! `EtcdServer`: what request handlers talk to. It proposes requests through Raft and waits
//! for apply's answer, serves linearizable reads through a shared ReadIndex, and fills
//! response headers.

use std::future::Future;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use oxcd_api::etcdserverpb::{
    alarm_request, AlarmRequest, AlarmType, InternalRaftRequest, RequestHeader, ResponseHeader,
};
use oxcd_api::EtcdError;
use oxcd_storage::{KvStore, WatchableStore};
use prost::Message as _;
use tokio::sync::{oneshot, watch};

use std::collections::HashMap;

use oxcd_api::etcdserverpb::Member;
use oxcd_api::oxcdpb::ConfChangeContext;
use raft::eraftpb::{ConfChange, ConfChangeType};

use crate::alarm::Alarms;
use crate::apply::ApplyResponse;
use crate::auth::{AuthInfo, AuthStore};
use crate::error::ServerError;
use crate::id::IdGenerator;
use crate::lease::{LeaseForwarder, Lessor};
use crate::membership::Membership;
use crate::quota::{Quota, Refused};
use crate::raft::{ProposalResult, RaftInput, RaftStatus};
use crate::read_index::ReadIndexer;
use crate::v2::V2Store;
use crate::wait::Wait;

/// How far apply may fall behind commit before new proposals are refused (etcd's
/// maxGapBetweenApplyAndCommitIndex).
const MAX_APPLY_LAG: u64 = 5000;

/// The limits a handler enforces.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest encoded request that may be proposed (`--max-request-bytes`).
    pub max_request_bytes: usize,
    /// Largest Range answer built (`--max-send-bytes`).
    pub max_send_bytes: usize,
    /// Most operations in one txn branch (`--max-txn-ops`).
    pub max_txn_ops: usize,
    /// How long a proposal or read may wait before `request timed out`.
    pub request_timeout: Duration,
    /// Most learners the cluster may have (`--experimental-max-learners`).
    pub max_learners: usize,
    /// Refuse a membership change that would lose quorum (`--strict-reconfig-check`).
    pub strict_reconfig_check: bool,
    /// Backend size past which writes raise NOSPACE (`--quota-backend-bytes`); `None` = no quota.
    pub quota_bytes: Option<u64>,
    /// Whether the disk is nearly full; writes then raise NOSPACE too.
    pub disk_space: crate::disk_space::DiskSpace,
}

/// The running member, as request handlers see it.
pub struct EtcdServer {
    pub member_id: u64,
    pub cluster_id: u64,
    pub limits: Limits,
    /// The MVCC store, for local reads.
    pub kv: Arc<KvStore>,
    /// Watchers over `kv`.
    pub watchable: Arc<WatchableStore>,
    /// Active alarms.
    pub alarms: Arc<Alarms>,
    /// Users, roles, tokens; the permission checker.
    pub auth: Arc<AuthStore>,
    pub membership: Arc<Membership>,
    /// Leader, term and commit index.
    pub raft_status: Arc<RaftStatus>,
    /// Leases; changed by apply, renewed by handlers when this member leads.
    pub lessor: Arc<Lessor>,
    /// Reaches the leader's lessor when this member does not lead.
    pub lease_forwarder: Arc<dyn LeaseForwarder>,
    /// How this member dials its peers (for requests it forwards to the leader).
    pub peer_tls: Option<Arc<rustls::ClientConfig>>,
    /// The v2 store, for local v2 reads and watches.
    pub v2: Arc<V2Store>,
    /// What the peer transport measured (`/v2/stats/self`, `/v2/stats/leader`).
    pub transport_stats: Arc<crate::peer::TransportStats>,
    /// Inputs to the raft thread.
    raft: mpsc::Sender<RaftInput>,
    /// Shared ReadIndex rounds for linearizable reads.
    reads: ReadIndexer,
    /// Proposers waiting for apply.
    wait: Arc<Wait<ProposalResult>>,
    /// The index of the last applied entry.
    applied: watch::Receiver<u64>,
    ids: IdGenerator,
    /// `limits.quota_bytes` and what the backend was last measured at.
    quota: Quota,
}

impl EtcdServer {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        member_id: u64,
        cluster_id: u64,
        limits: Limits,
        kv: Arc<KvStore>,
        membership: Arc<Membership>,
        raft_status: Arc<RaftStatus>,
        lessor: Arc<Lessor>,
        watchable: Arc<WatchableStore>,
        alarms: Arc<Alarms>,
        auth: Arc<AuthStore>,
        lease_forwarder: Arc<dyn LeaseForwarder>,
        peer_tls: Option<Arc<rustls::ClientConfig>>,
        v2: Arc<V2Store>,
        transport_stats: Arc<crate::peer::TransportStats>,
        raft: mpsc::Sender<RaftInput>,
        wait: Arc<Wait<ProposalResult>>,
        applied: watch::Receiver<u64>,
    ) -> EtcdServer {
        let quota = Quota::new(limits.quota_bytes);
        EtcdServer {
            member_id,
            cluster_id,
            limits,
            kv,
            membership,
            raft_status,
            lessor,
            watchable,
            alarms,
            auth,
            lease_forwarder,
            peer_tls,
            v2,
            transport_stats,
            reads: ReadIndexer::start(raft.clone()),
            raft,
            wait,
            applied,
            ids: IdGenerator::new(member_id),
            quota,
        }
    }

    /// Refuses a write that would grow the backend past its quota, or that the disk may not
    /// have room for, raising the NOSPACE alarm the first time, as etcd's quota servers do.
    /// `cost` is the request's encoded size.
    pub async fn check_quota(&self, cost: usize) -> Result<(), ServerError> {
        if self.alarms.no_space() {
            return Err(EtcdError::NoSpace.into());
        }
        if self.limits.disk_space.is_low() {
            tracing::warn!("free disk space is below the reserve; raising the NOSPACE alarm");
        } else {
            match self.quota.admits(self.kv.backend(), cost as u64).await {
                Ok(()) => return Ok(()),
                Err(Refused::Storage(e)) => return Err(ServerError::Storage(e)),
                Err(Refused::Full { size, limit }) => tracing::warn!(
                    quota = limit,
                    size,
                    "backend quota exceeded; raising the NOSPACE alarm"
                ),
            }
        }
        let alarm = InternalRaftRequest {
            alarm: Some(AlarmRequest {
                action: alarm_request::AlarmAction::Activate as i32,
                member_id: self.member_id,
                alarm: AlarmType::Nospace as i32,
            }),
            ..Default::default()
        };
        self.propose(alarm).await?;
        Err(EtcdError::NoSpace.into())
    }

    /// Whether this member is a learner (not yet promoted to voter).
    pub fn is_learner(&self) -> bool {
        self.membership.is_learner(self.member_id)
    }

    /// Learners serve only serializable reads and status, as in etcd.
    pub fn refuse_on_learner(&self) -> Result<(), ServerError> {
        if self.is_learner() {
            return Err(EtcdError::NotSupportedForLearner.into());
        }
        Ok(())
    }

    /// A response header at `revision`.
    pub fn header(&self, revision: i64) -> ResponseHeader {
        ResponseHeader {
            cluster_id: self.cluster_id,
            member_id: self.member_id,
            revision,
            raft_term: self.raft_status.term(),
        }
    }

    /// The index of the last applied entry.
    pub fn applied_index(&self) -> u64 {
        *self.applied.borrow()
    }

    /// Waits until the applied index reaches `index`, or `deadline` passes.
    pub async fn wait_applied(
        &self,
        index: u64,
        deadline: tokio::time::Instant,
    ) -> Result<(), ServerError> {
        if self.applied_index() >= index {
            return Ok(());
        }
        let mut applied = self.applied.clone();
        let reached = tokio::time::timeout_at(deadline, async {
            applied.wait_for(|a| *a >= index).await.is_ok()
        })
        .await;
        match reached {
            Ok(true) => Ok(()),
            Ok(false) => Err(EtcdError::Stopped.into()),
            Err(_) => Err(EtcdError::TimeoutWaitAppliedIndex.into()),
        }
    }

    /// A fresh id, unique across members and restarts (request ids, assigned lease ids).
    pub fn next_id(&self) -> u64 {
        self.ids.next()
    }

    /// Proposes `req` and waits until it is applied; returns what apply answered.
    ///
    /// The request is checked and encoded before the returned future is: only the encoded
    /// bytes live in it. An `InternalRaftRequest` is 1.3 KB, and every async layer that held
    /// one by value copied it again when the future moved (a put's future was several KB).
    pub fn propose(
        &self,
        req: InternalRaftRequest,
    ) -> impl Future<Output = Result<ApplyResponse, ServerError>> + '_ {
        let proposal = self.encode_proposal(req);
        async move {
            let (id, data) = proposal?;
            self.send_and_wait(id, RaftInput::Propose { id, data })
                .await
        }
    }

    /// Checks that apply keeps up, gives `req` a fresh id and encodes it: the id and the
    /// bytes to propose.
    fn encode_proposal(&self, mut req: InternalRaftRequest) -> Result<(u64, Vec<u8>), ServerError> {
        let commit = self.raft_status.commit();
        if commit > self.applied_index() + MAX_APPLY_LAG {
            return Err(EtcdError::TooManyRequests.into());
        }
        let id = self.ids.next();
        req.header = Some(RequestHeader {
            id,
            ..req.header.take().unwrap_or_default()
        });
        let data = req.encode_to_vec();
        if data.len() > self.limits.max_request_bytes {
            return Err(EtcdError::RequestTooLarge.into());
        }
        Ok((id, data))
    }

    /// Proposes `req` on behalf of `sender` (its name and auth revision go in the header, for
    /// apply's permission check) and waits until it is applied.
    pub fn propose_as(
        &self,
        mut req: InternalRaftRequest,
        sender: Option<&AuthInfo>,
    ) -> impl Future<Output = Result<ApplyResponse, ServerError>> + '_ {
        if let Some(info) = sender {
            req.header = Some(RequestHeader {
                username: info.username.clone(),
                auth_revision: info.revision,
                ..Default::default()
            });
        }
        self.propose(req)
    }

    /// Sends a proposal registered under `id` to the raft thread and waits for apply's answer,
    /// or for the request timeout.
    async fn send_and_wait(&self, id: u64, input: RaftInput) -> ProposalResult {
        let answer = self.wait.register(id);
        if self.raft.send(input).is_err() {
            self.wait.cancel(id);
            return Err(EtcdError::Stopped.into());
        }
        match tokio::time::timeout(self.limits.request_timeout, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(EtcdError::Stopped.into()),
            Err(_) => {
                self.wait.cancel(id);
                Err(self.timeout_error())
            }
        }
    }

    /// Waits until this member has applied everything committed before the call: a read
    /// after this sees every write acknowledged before it began (linearizable).
    pub async fn linearizable_read_barrier(&self) -> Result<(), ServerError> {
        let deadline = tokio::time::Instant::now() + self.limits.request_timeout;
        let index = match tokio::time::timeout_at(deadline, self.reads.read_index()).await {
            Ok(Some(index)) => index,
            Ok(None) => return Err(EtcdError::Stopped.into()),
            Err(_) => {
                crate::stats::inc(&crate::stats::SERVER.read_indexes_failed);
                return Err(self.timeout_error());
            }
        };
        let mut applied = self.applied.clone();
        let reached = tokio::time::timeout_at(deadline, async {
            applied.wait_for(|a| *a >= index).await.is_ok()
        })
        .await;
        match reached {
            Ok(true) => Ok(()),
            Ok(false) => Err(EtcdError::Stopped.into()),
            Err(_) => Err(EtcdError::TimeoutWaitAppliedIndex.into()),
        }
    }

    fn timeout_error(&self) -> ServerError {
        if self.raft_status.leader() == raft::INVALID_ID {
            EtcdError::NoLeader.into()
        } else {
            EtcdError::Timeout.into()
        }
    }

    /// A sender into the raft thread, for the peer service.
    pub fn raft_sender(&self) -> mpsc::Sender<RaftInput> {
        self.raft.clone()
    }

    /// Proposes a membership change and waits until it is applied; returns the members after.
    pub async fn propose_conf_change(
        &self,
        change_type: ConfChangeType,
        node_id: u64,
        context: ConfChangeContext,
    ) -> Result<Vec<Member>, ServerError> {
        let id = self.ids.next();
        let cc = ConfChange {
            id,
            change_type,
            node_id,
            context: context.encode_to_vec().into(),
            ..Default::default()
        };
        match self
            .send_and_wait(id, RaftInput::ProposeConfChange { cc })
            .await?
        {
            ApplyResponse::Members(members) => Ok(members),
            _ => Err(ServerError::Raft(
                "a membership change was answered with something else".into(),
            )),
        }
    }

    /// How far each member's log matches the leader's, when this member leads.
    pub async fn raft_progress(&self) -> Result<Option<HashMap<u64, u64>>, ServerError> {
        let (reply, progress) = oneshot::channel();
        self.raft
            .send(RaftInput::Progress { reply })
            .map_err(|_| ServerError::from(EtcdError::Stopped))?;
        progress.await.map_err(|_| EtcdError::Stopped.into())
    }

    /// Asks raft to hand leadership to `to`, then waits until it has.
    pub async fn move_leader(&self, to: u64) -> Result<(), ServerError> {
        self.raft
            .send(RaftInput::TransferLeader(to))
            .map_err(|_| ServerError::from(EtcdError::Stopped))?;
        let deadline = tokio::time::Instant::now() + self.limits.request_timeout;
        while tokio::time::Instant::now() < deadline {
            if self.raft_status.leader() == to {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(EtcdError::TimeoutDueToLeaderFail.into())
    }
}
