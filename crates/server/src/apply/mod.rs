//! The apply thread: turns committed Raft entries into state. It is the only writer of the
//! MVCC store and the backend; it answers proposers through [`Wait`].
//!
//! One batch of committed entries is one backend transaction, committed with the consistent
//! index of its last entry, so after a crash the WAL is replayed from exactly there and no
//! entry is applied twice.
//!
//! A batch's proposers are answered once it is applied, before its backend commit, so that the
//! commit runs beside their responses. From that moment until the commit, every read of the
//! store waits for it ([`oxcd_storage::Batch::promise`]); watch events and the applied index
//! (which linearizable reads wait for) follow the commit.

mod lane;

use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use oxcd_api::etcdserverpb::{
    CompactionResponse, DeleteRangeResponse, InternalRaftRequest, LeaseCheckpointResponse,
    LeaseGrantResponse, LeaseRevokeResponse, PutResponse, ResponseHeader, TxnResponse,
};
use oxcd_api::mvccpb::Event;
use oxcd_api::oxcdpb::ConfChangeContext;
use oxcd_storage::{Batch, CompactionWait, KvStore, Txn};
use prost::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeType, Entry, EntryType};
use tokio::sync::watch;

use crate::alarm::Alarms;
use crate::auth::{self, AuthResponse, AuthStore};
use crate::error::ServerError;
use crate::kv::txn::{self, WriteContext};
use crate::lease::Lessor;
use crate::membership::Membership;
use crate::raft::{Apply, ProposalResult, RaftInput, RaftStatus};
use crate::v2::apply::Committed;
use crate::v2::store::V2Result;
use crate::v2::V2Store;
use crate::wait::Wait;
use oxcd_api::etcdserverpb::{AlarmMember, AlarmRequest, AlarmResponse, AlarmType};
use oxcd_api::EtcdError;

pub use lane::ApplyLane;

/// An apply slower than this is logged and counted, as etcd's `warnApplyDuration`.
const SLOW_APPLY: Duration = Duration::from_millis(100);

/// What applying one request produced, for its proposer.
pub enum ApplyResponse {
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
    /// The compaction is scheduled; `wait` finishes when old revisions are gone from disk.
    Compaction(CompactionResponse, CompactionWait),
    LeaseGrant(LeaseGrantResponse),
    LeaseRevoke(LeaseRevokeResponse),
    LeaseCheckpoint(LeaseCheckpointResponse),
    /// Alarms raised, cleared or listed.
    Alarm(AlarmResponse),
    /// An auth request's answer.
    Auth(AuthResponse),
    /// A membership change: the members after it.
    Members(Vec<oxcd_api::etcdserverpb::Member>),
    /// A v2 request's event or v2 error; `None` for a SYNC.
    V2(Option<V2Result>),
    /// Requests with nothing to report (member attributes, cluster version).
    Empty,
}

/// Receives the events of each committed batch, in revision order (the watch layer).
pub trait EventSink: Send + Sync {
    fn notify(&self, events: Vec<Event>);
    /// The store's contents were replaced by a snapshot; watchers must catch up from it.
    fn restored(&self);
}

/// Everything the apply thread owns or shares.
pub struct Applier {
    /// The MVCC store; written only here.
    pub kv: Arc<KvStore>,
    /// Cluster members; written only here (and at bootstrap).
    pub membership: Arc<Membership>,
    /// Active alarms; written only here.
    pub alarms: Arc<Alarms>,
    /// Users, roles, permissions; written only here. Also the auth layer around dispatch.
    pub auth: Arc<AuthStore>,
    /// Leases; their replicated state is written only here.
    pub lessor: Arc<Lessor>,
    /// The v2 store; written only here.
    pub v2: Arc<V2Store>,
    /// Whether this member leads, to promote the lessor at the first entry of its term.
    pub raft_status: Arc<RaftStatus>,
    /// Proposers waiting for their entries.
    pub wait: Arc<Wait<ProposalResult>>,
    /// The index of the last applied entry, for linearizable reads.
    pub applied: watch::Sender<u64>,
    /// To ask the raft thread for a snapshot.
    pub raft: Sender<RaftInput>,
    /// Where watch events go after each commit.
    pub events: Option<Arc<dyn EventSink>>,
    /// Entries between snapshots (`--snapshot-count`).
    pub snapshot_count: u64,
    /// The member this server is, to recognize its own published attributes.
    pub member_id: u64,
    /// Set when this member's own removal is applied: it then stops.
    pub removed_self: std::sync::atomic::AtomicBool,
    /// `etcd_server_proposals_pending`, looked up once rather than by name per answer.
    pub proposals_pending: metrics::Gauge,
}

impl Applier {
    /// Applies one batch of work. `last_snapshot` is the index of the last snapshot asked of
    /// the raft thread; it moves when this batch asks for the next one.
    pub fn apply(&self, work: Apply, last_snapshot: &mut u64) {
        let entries = match work {
            Apply::Entries(entries) => entries,
            Apply::Snapshot { path, index } => {
                self.restore_snapshot(&path, index);
                *last_snapshot = self.kv.consistent_index().0;
                return;
            }
        };
        let Some(last) = entries.last() else { return };
        let (last_index, last_term) = (last.index, last.term);
        let (consistent_index, _) = self.kv.consistent_index();
        if last_index <= consistent_index {
            // Replayed from the WAL, already in the backend.
            self.advance_applied(last_index);
            return;
        }
        let mut answers = Vec::new();
        let mut events = Vec::new();
        let mut batch = match self.kv.begin_batch() {
            Ok(batch) => batch,
            Err(e) => self.backend_failed("failed to begin tx", &e),
        };
        for entry in entries.iter().filter(|e| e.index > consistent_index) {
            if let Some(answer) = self.apply_entry(&mut batch, entry, &mut events) {
                answers.push(answer);
            }
        }
        if let Err(e) = batch.set_consistent_index(last_index, last_term) {
            self.backend_failed("failed to commit tx", &e);
        }
        // The proposers are answered before the backend commit, which then runs beside their
        // responses. Nothing reads less than an answer reported: readers wait for the promised
        // revision to be published. The entries are durable in the WAL: a failed commit stops
        // the member, and its restart applies them again.
        batch.promise();
        let answered = self.wait.trigger_all(answers);
        self.proposals_pending.decrement(answered as f64);
        if let Err(e) = batch.commit() {
            self.backend_failed("failed to commit tx", &e);
        }
        if let Some(sink) = &self.events {
            if !events.is_empty() {
                sink.notify(events);
            }
        }
        self.applied.send_replace(last_index);
        if self.removed_self.load(std::sync::atomic::Ordering::Acquire) {
            self.stop_removed_member();
        }

        if last_index - *last_snapshot > self.snapshot_count {
            // The snapshot says "state up to here is in the backend": make that true on
            // disk before the WAL behind it is released.
            if let Err(e) = self.kv.force_commit() {
                self.backend_failed("failed to commit tx", &e);
            }
            *last_snapshot = last_index;
            let _ = self.raft.send(RaftInput::Snapshot { index: last_index });
        }
    }

    /// Applies one entry; returns the answer for its proposer, if the entry carries a request.
    fn apply_entry(
        &self,
        batch: &mut Batch,
        entry: &Entry,
        events: &mut Vec<Event>,
    ) -> Option<(u64, ProposalResult)> {
        match entry.get_entry_type() {
            // Raft itself took the change on the raft thread; here the member table follows.
            EntryType::EntryConfChange => Some(self.apply_conf_change(batch, entry)),
            EntryType::EntryConfChangeV2 => None,
            EntryType::EntryNormal if entry.data.is_empty() => {
                // A new leader's empty entry: everything of earlier terms is applied, so a
                // leader's lessor may start keeping time now.
                if self.raft_status.is_leader() {
                    self.lessor.promote(self.lessor.config().promote_extend);
                }
                None
            }
            EntryType::EntryNormal => {
                let req = match InternalRaftRequest::decode(&entry.data[..]) {
                    Ok(req) => req,
                    Err(e) => panic!("committed entry {} does not decode: {e}", entry.index),
                };
                let id = req.header.as_ref().map_or(req.id, |h| h.id);
                let started = Instant::now();
                let result = self.dispatch(batch, req, entry.index, events);
                let took = started.elapsed();
                if took > SLOW_APPLY {
                    crate::stats::inc(&crate::stats::SERVER.slow_applies);
                    tracing::warn!(
                        took = ?took,
                        "expected-duration" = ?SLOW_APPLY,
                        index = entry.index,
                        "apply request took too long"
                    );
                }
                if let Err(ServerError::Storage(e)) = &result {
                    // Other members applied this entry; answering it with an error here
                    // would let this member's state part from theirs.
                    self.backend_failed("failed to apply request", e);
                }
                Some((id, result))
            }
        }
    }

    /// Raises, clears or lists alarms.
    fn apply_alarm(
        &self,
        batch: &mut Batch,
        req: AlarmRequest,
    ) -> Result<AlarmResponse, ServerError> {
        use oxcd_api::etcdserverpb::alarm_request::AlarmAction;
        let action = AlarmAction::try_from(req.action).unwrap_or(AlarmAction::Get);
        let alarms = match action {
            AlarmAction::Get => self
                .alarms
                .list((req.alarm != AlarmType::None as i32).then_some(req.alarm)),
            AlarmAction::Activate => {
                if req.alarm == AlarmType::None as i32 {
                    return Ok(AlarmResponse::default());
                }
                self.alarms
                    .activate(batch.raw(), req.member_id, req.alarm)?;
                tracing::warn!(
                    "member-id" = format!("{:x}", req.member_id),
                    alarm = req.alarm,
                    "alarm raised"
                );
                vec![AlarmMember {
                    member_id: req.member_id,
                    alarm: req.alarm,
                }]
            }
            AlarmAction::Deactivate => {
                let matching: Vec<AlarmMember> = self
                    .alarms
                    .list(None)
                    .into_iter()
                    .filter(|a| {
                        a.member_id == req.member_id && (req.alarm == 0 || a.alarm == req.alarm)
                    })
                    .collect();
                for a in &matching {
                    self.alarms.deactivate(batch.raw(), a.member_id, a.alarm)?;
                    tracing::warn!(
                        "member-id" = format!("{:x}", a.member_id),
                        alarm = a.alarm,
                        "alarm cleared"
                    );
                }
                matching
            }
        };
        Ok(AlarmResponse {
            header: None,
            alarms,
        })
    }

    /// The backend cannot take this batch: stop before anything of it is acknowledged. The
    /// WAL holds the entries; a restart applies them from the last committed batch on.
    fn backend_failed(&self, message: &str, error: &dyn std::fmt::Display) -> ! {
        crate::fatal::exit(message, self.kv.backend().path(), error)
    }

    /// Moves the applied index forward to `index` (never back), waking linearizable reads.
    fn advance_applied(&self, index: u64) {
        self.applied.send_if_modified(|applied| {
            let advanced = index > *applied;
            *applied = (*applied).max(index);
            advanced
        });
    }

    /// Replaces this member's state with the leader's dump at `path` (a raft snapshot at
    /// `index`). The dump's consistent index is at least `index`; entries up to it are then
    /// skipped as already applied.
    fn restore_snapshot(&self, path: &std::path::Path, index: u64) {
        tracing::info!("snapshot-index" = index, path = %path.display(), "restoring mvcc store from a snapshot");
        fail::fail_point!("raft_before_apply_snap");
        let _applying = crate::stats::InProgress::start(&crate::stats::SERVER.snapshot_applying);
        let restored = std::fs::File::open(path)
            .map_err(|e| e.to_string())
            .and_then(|file| {
                self.kv
                    .restore_from(&mut std::io::BufReader::new(file))
                    .map_err(|e| e.to_string())
            });
        if let Err(e) = restored {
            crate::fatal::exit("failed to restore mvcc store", path, &e);
        }
        if let Err(e) = self.alarms.reload(self.kv.backend()) {
            self.backend_failed("failed to restore alarm store", &e);
        }
        if let Err(e) = self.auth.reload(self.kv.backend()) {
            panic!("failed to reload the auth store after a snapshot: {e}");
        }
        if let Err(e) = self.membership.reload(self.kv.backend()) {
            self.backend_failed("failed to restore members", &e);
        }
        if let Err(e) = self.lessor.reload(&self.kv) {
            self.backend_failed("failed to restore lease store", &e);
        }
        if let Err(e) = self.v2.reload(self.kv.backend()) {
            panic!("failed to reload the v2 store after a snapshot: {e}");
        }
        if let Some(sink) = &self.events {
            sink.restored();
        }
        fail::fail_point!("raft_after_apply_snap");
        let _ = std::fs::remove_file(path);
        let (consistent_index, _) = self.kv.consistent_index();
        self.advance_applied(consistent_index);
        tracing::info!(
            "consistent-index" = consistent_index,
            "current-revision" = self.kv.current_revision(),
            "restored mvcc store from a snapshot"
        );
    }

    /// Stops the process once this member has been removed, as etcd does: it can never
    /// rejoin under its id, and serving would only mislead clients.
    fn stop_removed_member(&self) -> ! {
        tracing::warn!(
            "local-member-id" = format!("{:x}", self.member_id),
            "the member has been permanently removed from the cluster"
        );
        let _ = self.kv.force_commit();
        // Let the removal's answer and the peers' acknowledgements go out first.
        std::thread::sleep(std::time::Duration::from_millis(500));
        std::process::exit(0);
    }

    /// Records a membership change in the member table and answers its proposer with the
    /// new member list.
    fn apply_conf_change(&self, batch: &mut Batch, entry: &Entry) -> (u64, ProposalResult) {
        let mut cc = ConfChange::default();
        if let Err(e) = protobuf::Message::merge_from_bytes(&mut cc, &entry.data) {
            panic!(
                "committed conf change at {} does not decode: {e}",
                entry.index
            );
        }
        let context = ConfChangeContext::decode(&cc.context[..]).unwrap_or_default();
        let id = cc.node_id;
        match self.membership.apply_conf_change(
            batch.raw(),
            cc.get_change_type(),
            id,
            context.peer_urls,
        ) {
            Ok(true) => crate::stats::inc(&crate::stats::SERVER.learner_promotions),
            Ok(false) => {}
            Err(e) => self.backend_failed("failed to record a membership change", &e),
        }
        let mirrored = self.v2.apply(
            Committed::ConfChange(cc.get_change_type(), id),
            |id| self.membership.get(id),
            batch.raw(),
        );
        if let Err(e) = mirrored {
            panic!("failed to record a membership change in the v2 store: {e}");
        }
        tracing::info!(
            "change" = ?cc.get_change_type(),
            "member-id" = format!("{id:x}"),
            "applied a membership change"
        );
        if cc.get_change_type() == ConfChangeType::RemoveNode && id == self.member_id {
            // As etcd: a removed member stops itself once the removal is durable.
            self.removed_self
                .store(true, std::sync::atomic::Ordering::Release);
        }
        (cc.id, Ok(ApplyResponse::Members(self.membership.list())))
    }

    /// Ends a write txn: its keys join or leave leases, its events wait for the commit.
    fn end_txn(&self, t: Txn<'_>, events: &mut Vec<Event>) {
        let changes = t.end();
        self.lessor.apply_events(&changes);
        events.extend(changes);
    }

    /// The one place that decides what a request does. `index` is the entry's raft index.
    fn dispatch(
        &self,
        batch: &mut Batch,
        mut req: InternalRaftRequest,
        index: u64,
        events: &mut Vec<Event>,
    ) -> ProposalResult {
        let lease_exists = |lease: i64| self.lessor.contains(lease);
        if self.alarms.no_space() && grows_backend(&req) {
            return Err(EtcdError::NoSpace.into());
        }
        if self.alarms.corrupt() && refused_when_corrupt(&req) {
            return Err(EtcdError::Corrupt.into());
        }
        // The auth layer: the sender must still be allowed, at the auth revision it was
        // checked at.
        let lease_keys = |lease: i64| {
            self.lessor
                .time_to_live(lease, true)
                .map(|status| status.keys)
                .unwrap_or_default()
        };
        self.auth.check_apply(&req, &lease_keys)?;
        let sender = auth::sender(&req);
        if let Some(result) = self.auth.apply(batch.raw(), &mut req, &sender, index) {
            return result.map(ApplyResponse::Auth);
        }
        if let Some(alarm) = req.alarm {
            return self.apply_alarm(batch, alarm).map(ApplyResponse::Alarm);
        }
        if let Some(put) = req.put {
            let mut t = batch.txn();
            let result = txn::put(&mut t, &put, &lease_exists);
            self.end_txn(t, events);
            return result.map(ApplyResponse::Put);
        }
        if let Some(del) = req.delete_range {
            let mut t = batch.txn();
            let result = txn::delete_range(&mut t, &del);
            self.end_txn(t, events);
            return result.map(ApplyResponse::DeleteRange);
        }
        if let Some(request) = req.txn {
            let ctx = WriteContext {
                lease_exists: &lease_exists,
                compact_revision: batch.compact_revision(),
            };
            let mut t = batch.txn();
            let result = txn::apply_txn(&mut t, &request, &ctx);
            self.end_txn(t, events);
            return result.map(ApplyResponse::Txn);
        }
        if let Some(grant) = req.lease_grant {
            let ttl = self.lessor.grant(batch.raw(), grant.id, grant.ttl)?;
            return Ok(ApplyResponse::LeaseGrant(LeaseGrantResponse {
                header: header(batch.current_revision()),
                id: grant.id,
                ttl,
                error: String::new(),
            }));
        }
        if let Some(revoke) = req.lease_revoke {
            let deleted = self.lessor.revoke(batch, revoke.id)?;
            self.lessor.apply_events(&deleted);
            events.extend(deleted);
            return Ok(ApplyResponse::LeaseRevoke(LeaseRevokeResponse {
                header: header(batch.current_revision()),
            }));
        }
        if let Some(checkpoints) = req.lease_checkpoint {
            fail::fail_point!("lease_before_checkpoint");
            for c in &checkpoints.checkpoints {
                self.lessor.checkpoint(batch.raw(), c.id, c.remaining_ttl)?;
            }
            return Ok(ApplyResponse::LeaseCheckpoint(LeaseCheckpointResponse {
                header: header(batch.current_revision()),
            }));
        }
        if let Some(compaction) = req.compaction {
            let wait = batch.compact(compaction.revision)?;
            // etcd reads a key here for the header's revision, which its metrics count as a
            // range: counted too, so etcd_mvcc_range_total moves alike.
            oxcd_storage::stats::add(&oxcd_storage::stats::MVCC.ranges, 1);
            let header = Some(ResponseHeader {
                revision: batch.current_revision(),
                ..Default::default()
            });
            return Ok(ApplyResponse::Compaction(
                CompactionResponse { header },
                wait,
            ));
        }
        if let Some(v2) = req.v2 {
            let member = |id| self.membership.get(id);
            let result = self.v2.apply(Committed::V2(&v2), member, batch.raw())?;
            return Ok(ApplyResponse::V2(result));
        }
        if let Some(attr) = req.cluster_member_attr_set {
            self.v2.apply(
                Committed::MemberAttributes(&attr),
                |id| self.membership.get(id),
                batch.raw(),
            )?;
            let attributes = attr.member_attributes.unwrap_or_default();
            let name = attributes.name.clone();
            let known = self
                .membership
                .set_attributes(batch.raw(), attr.member_id, attributes)?;
            if known && attr.member_id == self.member_id {
                tracing::info!(
                    "local-member-id" = format!("{:x}", self.member_id),
                    "local-member-attributes" = name,
                    "cluster-id" = format!("{:x}", self.membership.cluster_id()),
                    "published local member to cluster through raft"
                );
            }
            return Ok(ApplyResponse::Empty);
        }
        if let Some(version) = req.cluster_version_set {
            let changed = self
                .membership
                .set_cluster_version(batch.raw(), &version.ver)?;
            self.v2.apply(
                Committed::ClusterVersion(&version.ver),
                |id| self.membership.get(id),
                batch.raw(),
            )?;
            // Logged once per version, as etcd does: every member publishes the version, and
            // tools (etcd's e2e suite among them) count this line to tell a member is ready.
            if changed {
                tracing::info!(
                    "cluster-version" = version.ver,
                    "set initial cluster version"
                );
                tracing::info!(
                    "cluster-version" = version.ver,
                    "enabled capabilities for version"
                );
            }
            return Ok(ApplyResponse::Empty);
        }
        Err(ServerError::Raft(
            "request kind not supported by this member".into(),
        ))
    }
}

fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        revision,
        ..Default::default()
    })
}

/// Requests a NOSPACE alarm refuses: those that may add data to the backend.
/// What etcd's corrupt applier refuses while the CORRUPT alarm is active: every change to
/// keys and leases.
fn refused_when_corrupt(req: &InternalRaftRequest) -> bool {
    req.put.is_some()
        || req.delete_range.is_some()
        || req.txn.is_some()
        || req.range.is_some()
        || req.compaction.is_some()
        || req.lease_grant.is_some()
        || req.lease_revoke.is_some()
}

fn grows_backend(req: &InternalRaftRequest) -> bool {
    req.put.is_some()
        || req.lease_grant.is_some()
        || req.txn.as_ref().is_some_and(|t| !txn::is_read_only(t))
}
