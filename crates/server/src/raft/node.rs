//! The raft node: one thread owns the raft-rs `RawNode` and nothing else touches it.
//!
//! The loop waits for input (proposals, read-index requests, peer messages) or the next tick,
//! drains whatever else is queued, and then handles one `Ready`. Everything that arrived in
//! the meantime shares that Ready, and so shares its single fdatasync: group commit.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use oxcd_api::oxcdpb::ConfChangeContext;
use oxcd_storage::{Snapshotter, Wal, WalSnapshot};
use prost::Message as _;
use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeType, Entry, EntryType, Message, Snapshot};
use raft::{RawNode, SnapshotStatus, StateRole, Storage};
use tokio::sync::oneshot;

use super::heartbeat::HeartbeatTimes;
use super::log_store::LogStore;
use super::transport::Transport;
use super::RaftStatus;
use crate::apply::ApplyLane;
use crate::error::ServerError;
use crate::wait::Wait;

/// How many queued inputs one loop turn takes before it handles a Ready; bounds the latency
/// a burst of proposals can add to the requests already in the batch.
const MAX_INPUTS_PER_READY: usize = 4096;

/// How long a ReadIndex round may stay unanswered before it is sent again.
const READ_INDEX_RETRY: Duration = Duration::from_millis(500);

/// What the rest of the server asks of the raft node.
pub enum RaftInput {
    /// Append `data` (an encoded `InternalRaftRequest`) to the log. If raft refuses (no
    /// leader), the waiter registered under `id` is woken with the error.
    Propose { id: u64, data: Vec<u8> },
    /// Propose a membership change. `cc.id` is the waiter to wake with the outcome; its
    /// `context` is an encoded `oxcdpb.ConfChangeContext` describing the member.
    ProposeConfChange { cc: ConfChange },
    /// Ask the leader how far each follower's log matches its own; `None` on a follower.
    Progress {
        reply: oneshot::Sender<Option<HashMap<u64, u64>>>,
    },
    /// Ask for a read index; concurrent requests share one ReadIndex round.
    ReadIndex { reply: oneshot::Sender<u64> },
    /// A message from a peer.
    Step(Message),
    /// The outcome of streaming a snapshot to `to`, for raft's flow control.
    ReportSnapshot { to: u64, ok: bool },
    /// Transfer leadership to the given member.
    TransferLeader(u64),
    /// The apply thread made the backend durable at `index`: snapshot there and release the
    /// WAL and log behind it.
    Snapshot { index: u64 },
}

/// Work for the apply thread, in log order.
pub enum Apply {
    /// Committed entries.
    Entries(Vec<Entry>),
    /// A snapshot from the leader: replace the state with the dump at `path`.
    Snapshot { path: PathBuf, index: u64 },
}

/// The result a proposer is woken with.
pub type ProposalResult = Result<crate::apply::ApplyResponse, ServerError>;

/// Everything the raft thread owns.
pub struct RaftNode {
    /// The one and only RawNode.
    raw: RawNode<LogStore>,
    /// Durable log: entries and hard state are saved here before raft may act on them.
    wal: Wal,
    /// Raft snapshot metadata files.
    snapshotter: Snapshotter,
    /// Inputs from handlers and peers.
    inputs: Receiver<RaftInput>,
    /// An input taken off `inputs` to see whether one was waiting; handled first.
    waiting: Option<RaftInput>,
    /// Committed entries go to the applier; when its queue is full, this thread waits.
    apply: ApplyLane,
    /// Messages to peers.
    transport: Box<dyn Transport>,
    /// Proposers to wake when raft refuses their proposal.
    wait: Arc<Wait<ProposalResult>>,
    /// Leader, term and commit index published for the rest of the server.
    status: Arc<RaftStatus>,
    /// Entries kept in the in-memory log behind a snapshot, so a slightly slow follower can
    /// catch up from the log rather than a full snapshot
    /// (`--experimental-snapshot-catchup-entries`, etcd's SnapshotCatchUpEntries).
    snapshot_catch_up_entries: u64,
    /// Time between ticks (the heartbeat interval).
    tick_interval: Duration,
    /// Read-index requests not yet sent to raft.
    pending_reads: Vec<oneshot::Sender<u64>>,
    /// Read-index rounds in flight, by their request context, with when they were sent.
    reads_in_flight: HashMap<Vec<u8>, (Instant, Vec<oneshot::Sender<u64>>)>,
    /// Source of unique read-index contexts.
    next_read_ctx: u64,
    /// When each follower's last heartbeat went out, to tell late ones.
    heartbeats: HeartbeatTimes,
    /// `etcd_server_proposals_pending`, looked up once rather than by name per proposal.
    proposals_pending: metrics::Gauge,
}

impl RaftNode {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        raw: RawNode<LogStore>,
        wal: Wal,
        snapshotter: Snapshotter,
        inputs: Receiver<RaftInput>,
        apply: ApplyLane,
        transport: Box<dyn Transport>,
        wait: Arc<Wait<ProposalResult>>,
        status: Arc<RaftStatus>,
        tick_interval: Duration,
        snapshot_catch_up_entries: u64,
    ) -> RaftNode {
        RaftNode {
            raw,
            wal,
            snapshotter,
            inputs,
            waiting: None,
            apply,
            transport,
            wait,
            status,
            tick_interval,
            snapshot_catch_up_entries,
            pending_reads: Vec::new(),
            reads_in_flight: HashMap::new(),
            next_read_ctx: 1,
            heartbeats: HeartbeatTimes::new(tick_interval),
            proposals_pending: metrics::gauge!("etcd_server_proposals_pending"),
        }
    }

    /// Runs until every input sender is gone.
    pub fn run(mut self) {
        // A member that is the only voter need not wait out an election timeout. It campaigns
        // once the entries it restarted with are handed to apply: a campaign checks the
        // entries not yet applied for configuration changes, reading them all back at once.
        let voters = self.raw.raft.prs().conf().voters().ids().len();
        let mut campaign = voters == 1
            && self
                .raw
                .raft
                .prs()
                .conf()
                .voters()
                .contains(self.raw.raft.id);
        let mut next_tick = Instant::now() + self.tick_interval;
        loop {
            let log = &self.raw.raft.raft_log;
            if campaign && log.applied >= log.committed {
                campaign = false;
                let _ = self.raw.campaign();
            }
            // A Ready carries a bounded batch of committed entries: go on while more wait.
            let timeout = if self.raw.has_ready() {
                Duration::ZERO
            } else {
                next_tick.saturating_duration_since(Instant::now())
            };
            let input = match self.waiting.take() {
                Some(input) => Ok(input),
                None => self.inputs.recv_timeout(timeout),
            };
            match input {
                Ok(input) => {
                    self.handle_input(input);
                    for _ in 1..MAX_INPUTS_PER_READY {
                        match self.inputs.try_recv() {
                            Ok(input) => self.handle_input(input),
                            Err(_) => break,
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            if Instant::now() >= next_tick {
                self.raw.tick();
                next_tick = Instant::now() + self.tick_interval;
            }
            self.start_read_round();
            self.on_ready();
        }
    }

    /// Whether an input waits to be handled (it is kept in `waiting` until then).
    fn input_waiting(&mut self) -> bool {
        if self.waiting.is_none() {
            self.waiting = self.inputs.try_recv().ok();
        }
        self.waiting.is_some()
    }

    fn handle_input(&mut self, input: RaftInput) {
        match input {
            RaftInput::Propose { id, data } => {
                if self.raw.propose(vec![], data).is_err() {
                    metrics::counter!("etcd_server_proposals_failed_total").increment(1);
                    self.wait.trigger(id, Err(ServerError::NO_LEADER));
                } else {
                    self.proposals_pending.increment(1.0);
                }
            }
            RaftInput::ProposeConfChange { cc } => {
                let id = cc.id;
                if self.raw.propose_conf_change(vec![], cc).is_err() {
                    self.wait.trigger(id, Err(ServerError::NO_LEADER));
                }
            }
            RaftInput::Progress { reply } => {
                let progress = (self.raw.raft.state == StateRole::Leader).then(|| {
                    self.raw
                        .raft
                        .prs()
                        .iter()
                        .map(|(id, pr)| (*id, pr.matched))
                        .collect()
                });
                let _ = reply.send(progress);
            }
            RaftInput::ReadIndex { reply } => self.pending_reads.push(reply),
            RaftInput::Step(msg) => {
                if let Err(e) = self.raw.step(msg) {
                    tracing::debug!(error = %e, "dropped raft message");
                }
            }
            RaftInput::TransferLeader(to) => self.raw.transfer_leader(to),
            RaftInput::ReportSnapshot { to, ok } => {
                let status = if ok {
                    SnapshotStatus::Finish
                } else {
                    SnapshotStatus::Failure
                };
                self.raw.report_snapshot(to, status);
                if !ok {
                    self.raw.report_unreachable(to);
                }
            }
            RaftInput::Snapshot { index } => self.snapshot_at(index),
        }
    }

    /// Sends every read request queued since the last round as ONE ReadIndex. Raft drops a
    /// read-index request silently when there is no leader or the message is lost, so a round
    /// unanswered for a while is sent again, as etcd does.
    fn start_read_round(&mut self) {
        let now = Instant::now();
        let stale: Vec<Vec<u8>> = self
            .reads_in_flight
            .iter()
            .filter(|(_, (sent, _))| now.duration_since(*sent) >= READ_INDEX_RETRY)
            .map(|(ctx, _)| ctx.clone())
            .collect();
        for ctx in stale {
            if let Some((_, waiters)) = self.reads_in_flight.remove(&ctx) {
                crate::stats::inc(&crate::stats::SERVER.slow_read_indexes);
                self.pending_reads
                    .extend(waiters.into_iter().filter(|w| !w.is_closed()));
            }
        }
        if self.pending_reads.is_empty() {
            return;
        }
        let ctx = self.next_read_ctx.to_be_bytes().to_vec();
        self.next_read_ctx += 1;
        self.raw.read_index(ctx.clone());
        self.reads_in_flight
            .insert(ctx, (now, std::mem::take(&mut self.pending_reads)));
    }

    /// Handles one Ready, in the order raft-rs requires.
    fn on_ready(&mut self) {
        if !self.raw.has_ready() {
            return;
        }
        let mut rd = self.raw.ready();
        if let Some(ss) = rd.ss() {
            self.status
                .set_soft_state(ss.leader_id, ss.raft_state == StateRole::Leader);
            self.heartbeats.reset();
        }

        // A leader may send its appends before its own fsync: the entries are only committed
        // once a quorum, which may include itself later, has them on disk (raft thesis 10.2.1).
        let msgs = rd.take_messages();
        let late = self.heartbeats.observe(&msgs, Instant::now());
        crate::stats::add(&crate::stats::SERVER.heartbeat_send_failures, late);
        self.transport.send(msgs);

        if !rd.snapshot().is_empty() {
            self.install_snapshot(rd.snapshot().clone());
        }

        // Committed entries are on a quorum's disks already; apply may start on them now,
        // beside this thread's fsync.
        self.handle_committed(rd.take_committed_entries(), false);

        // Persist new entries and hard state with one fdatasync, then make them visible to
        // raft's storage. Nothing is acknowledged to anyone before this returns.
        // A hard state that only moved the commit index is not worth an fdatasync (etcd's
        // MustSync rule): the commit index is re-learned from the leader after a restart.
        let hard_state = rd.hs().cloned();
        if rd.must_sync() {
            let hs = hard_state
                .clone()
                .unwrap_or_else(|| self.raw.raft.hard_state());
            fail::fail_point!("raft_before_save");
            if let Err(e) = self.wal.save(&hs, rd.entries()) {
                self.wal_failed("failed to save Raft hard state and entries", &e);
            }
            fail::fail_point!("raft_after_save");
        }
        let saved_at = self.wal.saved_positions();
        if let Err(e) = self.raw.mut_store().wl().append(rd.entries(), saved_at) {
            panic!("failed to append entries to the raft log: {e}");
        }
        if let Some(hs) = hard_state {
            self.status.set_term(hs.term);
            self.raw.mut_store().wl().set_hardstate(hs);
        }

        for rs in rd.take_read_states() {
            self.answer_reads(&rs.request_ctx, rs.index);
        }

        // Votes and append responses promise what is now on disk: only now may they go out.
        self.transport.send(rd.take_persisted_messages());

        let mut light = self.raw.advance(rd);
        if let Some(commit) = light.commit_index() {
            self.raw
                .mut_store()
                .wl()
                .mut_hard_state()
                .set_commit(commit);
        }
        self.transport.send(light.take_messages());
        // Nothing left to persist: if no input waits either, this thread may apply the batch
        // itself and answer its proposers without waking the apply thread.
        let idle = !self.input_waiting();
        self.handle_committed(light.take_committed_entries(), idle);
        self.raw.advance_apply();
    }

    fn answer_reads(&mut self, ctx: &[u8], index: u64) {
        if let Some((_, waiters)) = self.reads_in_flight.remove(ctx) {
            for waiter in waiters {
                let _ = waiter.send(index);
            }
        }
    }

    /// Applies membership changes to raft itself (only this thread may) and hands the batch
    /// to the applier; `idle` lets this thread apply it when the applier is idle.
    fn handle_committed(&mut self, entries: Vec<Entry>, idle: bool) {
        if entries.is_empty() {
            return;
        }
        for entry in &entries {
            self.status.set_commit(entry.index);
            if entry.get_entry_type() == EntryType::EntryConfChange {
                self.apply_conf_change(entry);
            }
        }
        self.apply.hand(Apply::Entries(entries), idle);
    }

    /// Installs a snapshot the leader sent: apply replaces the state from the received dump
    /// (before any entry after it), and the snapshot is recorded durably before raft's log
    /// storage jumps to it.
    fn install_snapshot(&mut self, mut snapshot: Snapshot) {
        let meta = snapshot.get_metadata().clone();
        // The peer service put the local path of the received dump in `data`.
        let path = PathBuf::from(String::from_utf8_lossy(&snapshot.data).into_owned());
        snapshot.data = Default::default();
        self.apply.hand(
            Apply::Snapshot {
                path,
                index: meta.index,
            },
            false,
        );
        fail::fail_point!("raft_before_save_snap");
        if let Err(e) = self.snapshotter.save(&snapshot) {
            crate::fatal::exit("failed to save Raft snapshot", self.snapshotter.dir(), &e);
        }
        fail::fail_point!("raft_after_save_snap");
        fail::fail_point!("raft_before_wal_save_snapshot");
        if let Err(e) = self.wal.save_snapshot(WalSnapshot {
            index: meta.index,
            term: meta.term,
        }) {
            self.wal_failed("failed to save Raft snapshot", &e);
        }
        if let Err(e) = self.raw.mut_store().wl().apply_snapshot(snapshot) {
            panic!("failed to install the received snapshot: {e}");
        }
        self.status.set_commit(meta.index);
        tracing::info!(
            "snapshot-index" = meta.index,
            "snapshot-term" = meta.term,
            "installed a snapshot from the leader"
        );
    }

    /// Applies a committed membership change to raft and to the transport.
    fn apply_conf_change(&mut self, entry: &Entry) {
        let mut cc = ConfChange::default();
        if let Err(e) = cc.merge_from_bytes(&entry.data) {
            panic!(
                "committed conf change at {} does not decode: {e}",
                entry.index
            );
        }
        match self.raw.apply_conf_change(&cc) {
            Ok(cs) => self.raw.mut_store().wl().set_conf_state(cs),
            Err(e) => {
                tracing::warn!(error = %e, index = entry.index, "conf change refused by raft");
                return;
            }
        }
        let context = ConfChangeContext::decode(&cc.context[..]).unwrap_or_default();
        match cc.get_change_type() {
            ConfChangeType::RemoveNode => self.transport.remove_peer(cc.node_id),
            ConfChangeType::AddNode | ConfChangeType::AddLearnerNode => {
                if cc.node_id != self.raw.raft.id && !context.peer_urls.is_empty() {
                    self.transport.add_peer(cc.node_id, context.peer_urls);
                }
            }
        }
    }

    /// The WAL cannot take a write: nothing more may be promised to anyone. Everything
    /// acknowledged so far is in the WAL already.
    fn wal_failed(&self, message: &str, error: &dyn std::fmt::Display) -> ! {
        crate::fatal::exit(message, self.wal.dir(), error)
    }

    /// Records a snapshot at `index` (the backend is already durable there), then drops the log
    /// and WAL segments it makes unnecessary. A failure to write stops the member, as in etcd.
    fn snapshot_at(&mut self, index: u64) {
        let store = self.raw.store().clone();
        let term = match store.term(index) {
            Ok(term) => term,
            Err(e) => {
                // Compacted away by a newer snapshot already: nothing to do.
                tracing::warn!(error = %e, index, "skipped a snapshot");
                return;
            }
        };
        let mut snapshot = Snapshot::default();
        snapshot.mut_metadata().index = index;
        snapshot.mut_metadata().term = term;
        snapshot
            .mut_metadata()
            .set_conf_state(self.raw.raft.prs().conf().to_conf_state());
        // The WAL must show `index` as committed, or a restart would not trust the marker.
        let mut hs = self.raw.raft.hard_state();
        hs.commit = hs.commit.max(index);
        if let Err(e) = self.wal.save(&hs, &[]) {
            self.wal_failed("failed to save Raft hard state and entries", &e);
        }
        fail::fail_point!("raft_before_save_snap");
        if let Err(e) = self.snapshotter.save(&snapshot) {
            crate::fatal::exit("failed to save Raft snapshot", self.snapshotter.dir(), &e);
        }
        fail::fail_point!("raft_after_save_snap");
        fail::fail_point!("raft_before_wal_save_snapshot");
        if let Err(e) = self.wal.save_snapshot(WalSnapshot { index, term }) {
            self.wal_failed("failed to save Raft snapshot", &e);
        }
        if let Err(e) = self.wal.release_to(index) {
            self.wal_failed("failed to release Raft wal", &e);
        }
        fail::fail_point!("raft_after_wal_release");
        // The log reads old payloads back from the WAL: it keeps entries for catching up only
        // as far back as the WAL still holds them.
        let compact_to = index
            .saturating_sub(self.snapshot_catch_up_entries)
            .max(self.wal.first_index().min(index));
        if compact_to > store.first_index().unwrap_or(0) {
            let _ = store.wl().compact(compact_to);
        }
        let _ = self.snapshotter.purge(5);
        tracing::info!(snapshot_index = index, "saved snapshot");
    }
}
