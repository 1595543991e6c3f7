//! Starting a member: open (or create) the data dir, restore Raft from the newest snapshot
//! and the WAL after it, and start the raft and apply threads.

use std::fs;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use oxcd_storage::{
    Backend, BackendConfig, KvStore, Snapshotter, Wal, WalSnapshot, WatchableStore,
};
use raft::eraftpb::{ConfState, HardState, Snapshot};
use raft::storage::MemStorage;
use raft::{RawNode, Storage};
use tokio::sync::watch;

use crate::alarm::Alarms;
use crate::apply::{Applier, EventSink};
use crate::auth::token::TokenProvider;
use crate::auth::AuthStore;
use crate::config::ServerConfig;
use crate::error::ServerError;
use crate::lease::{Lessor, LessorConfig};
use crate::membership::Membership;
use crate::peer::{PeerContext, PeerLeaseForwarder, PeerTransport};
use crate::raft::{raft_logger, RaftInput, RaftNode, RaftStatus, Transport};
use crate::server::{EtcdServer, Limits};
use crate::wait::Wait;

/// Committed batches waiting for apply. When apply falls this far behind, the raft thread
/// waits for it rather than queueing without bound.
const APPLY_QUEUE: usize = 64;

/// The WAL's metadata record: who this member is, fixed at creation.
struct WalMetadata {
    member_id: u64,
    cluster_id: u64,
}

impl WalMetadata {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16);
        out.extend_from_slice(&self.member_id.to_be_bytes());
        out.extend_from_slice(&self.cluster_id.to_be_bytes());
        out
    }

    fn decode(data: &[u8]) -> Result<WalMetadata, ServerError> {
        if data.len() != 16 {
            return Err(ServerError::Storage(format!(
                "WAL metadata has {} bytes, want 16",
                data.len()
            )));
        }
        Ok(WalMetadata {
            member_id: u64::from_be_bytes(data[..8].try_into().unwrap()),
            cluster_id: u64::from_be_bytes(data[8..].try_into().unwrap()),
        })
    }
}

/// Opens storage, restores or bootstraps Raft, and starts the raft and apply threads.
/// Must be called inside the tokio runtime: peer sender tasks are spawned on it.
pub fn start(
    cfg: &ServerConfig,
    peer_tls: Option<Arc<rustls::ClientConfig>>,
    join: Option<&JoinInfo>,
) -> Result<Arc<EtcdServer>, ServerError> {
    let wal_dir = cfg.wal_dir();
    let snap_dir = cfg.snap_dir();
    for dir in [&wal_dir, &snap_dir] {
        fs::create_dir_all(dir)
            .map_err(|e| ServerError::Storage(format!("cannot create {}: {e}", dir.display())))?;
    }
    let backend = Backend::open(cfg.backend_path(), BackendConfig::default())?;
    let kv = Arc::new(KvStore::open(backend)?);
    let watchable = Arc::new(WatchableStore::new((*kv).clone()));
    let snapshotter = Snapshotter::new(&snap_dir)?;
    let storage = MemStorage::new();

    let (wal, meta, applied_floor) = if Wal::exists(&wal_dir) {
        restart(&wal_dir, &snapshotter, &storage)?
    } else {
        bootstrap_new(cfg, join, &wal_dir, &snapshotter, &storage, &kv)?
    };
    tracing::info!(
        "local-member-id" = format!("{:x}", meta.member_id),
        "cluster-id" = format!("{:x}", meta.cluster_id),
        "consistent-index" = kv.consistent_index().0,
        "starting raft node"
    );

    let membership = Arc::new(Membership::load(meta.cluster_id, kv.backend())?);
    let alarms = Arc::new(Alarms::load(kv.backend())?);
    let tokens = TokenProvider::from_flag(
        &cfg.flags.auth_token,
        Duration::from_secs(cfg.flags.auth_token_ttl.into()),
    )
    .map_err(ServerError::Startup)?;
    let auth = Arc::new(AuthStore::open(
        kv.backend(),
        tokens,
        cfg.flags.bcrypt_cost,
        cfg.client_tls.client_cert_auth,
    )?);
    // Leases come back with the keys that name them; none expires before this member leads.
    let lessor = Arc::new(Lessor::open(&kv, LessorConfig::for_member(cfg))?);
    tracing::info!(leases = lessor.len(), "restored lease store");
    let raft_cfg = raft::Config {
        id: meta.member_id,
        election_tick: cfg.election_ticks,
        heartbeat_tick: cfg.heartbeat_ticks,
        applied: applied_floor,
        max_size_per_msg: 1024 * 1024,
        max_inflight_msgs: 512,
        check_quorum: true,
        pre_vote: true,
        ..Default::default()
    };
    raft_cfg
        .validate()
        .map_err(|e| ServerError::Raft(e.to_string()))?;
    let raw = RawNode::new(&raft_cfg, storage, &raft_logger())
        .map_err(|e| ServerError::Raft(e.to_string()))?;

    let (raft_tx, raft_rx) = mpsc::channel::<RaftInput>();
    let (apply_tx, apply_rx) = mpsc::sync_channel(APPLY_QUEUE);
    let wait = Arc::new(Wait::default());
    let status = Arc::new(RaftStatus::default());
    let (applied_tx, applied_rx) = watch::channel(kv.consistent_index().0);

    let peers: Vec<(u64, Vec<String>)> = membership
        .list()
        .into_iter()
        .map(|m| (m.id, m.peer_ur_ls))
        .filter(|(id, _)| *id != meta.member_id)
        .collect();
    let ctx = PeerContext {
        cluster_id: meta.cluster_id,
        local_id: meta.member_id,
        tls: peer_tls.clone(),
        runtime: tokio::runtime::Handle::current(),
        kv: kv.clone(),
        applied: applied_rx.clone(),
        raft: raft_tx.clone(),
    };
    let transport: Box<dyn Transport> = Box::new(PeerTransport::start(ctx, peers));
    let node = RaftNode::new(
        raw,
        wal,
        snapshotter,
        raft_rx,
        apply_tx,
        transport,
        wait.clone(),
        status.clone(),
        cfg.heartbeat_interval,
    );
    let applier = Applier {
        kv: kv.clone(),
        membership: membership.clone(),
        alarms: alarms.clone(),
        auth: auth.clone(),
        lessor: lessor.clone(),
        raft_status: status.clone(),
        wait: wait.clone(),
        applied: applied_tx,
        raft: raft_tx.clone(),
        events: Some(watchable.clone() as Arc<dyn EventSink>),
        snapshot_count: cfg.snapshot_count,
        member_id: meta.member_id,
        removed_self: Default::default(),
    };
    std::thread::Builder::new()
        .name("raft".into())
        .spawn(move || node.run())
        .map_err(|e| ServerError::Raft(format!("cannot start the raft thread: {e}")))?;
    std::thread::Builder::new()
        .name("apply".into())
        .spawn(move || applier.run(apply_rx))
        .map_err(|e| ServerError::Raft(format!("cannot start the apply thread: {e}")))?;

    let limits = Limits {
        max_request_bytes: cfg.max_request_bytes,
        max_txn_ops: cfg.max_txn_ops,
        request_timeout: cfg.request_timeout(),
        max_learners: cfg.max_learners,
        quota_bytes: cfg.quota_backend_bytes,
    };
    let lease_forwarder = Arc::new(PeerLeaseForwarder::new(membership.clone(), peer_tls));
    Ok(Arc::new(EtcdServer::new(
        meta.member_id,
        meta.cluster_id,
        limits,
        kv,
        membership,
        status,
        lessor,
        watchable,
        alarms,
        auth,
        lease_forwarder,
        raft_tx,
        wait,
        applied_rx,
    )))
}

/// A member joining an existing cluster learns who it is from a running member.
pub struct JoinInfo {
    pub member_id: u64,
    pub cluster_id: u64,
    /// The members as the running member knows them (this one included).
    pub members: Vec<oxcd_api::etcdserverpb::Member>,
}

/// Index and term of the snapshot every founding member starts from: the founding members
/// are its configuration, so a member added later gets that configuration with the first
/// snapshot the leader sends it.
const BOOTSTRAP_INDEX: u64 = 1;
const BOOTSTRAP_TERM: u64 = 1;

/// A new member: of a new cluster (founding members recorded in a bootstrap snapshot), or
/// joining an existing one (empty log; the leader sends a snapshot).
fn bootstrap_new(
    cfg: &ServerConfig,
    join: Option<&JoinInfo>,
    wal_dir: &std::path::Path,
    snapshotter: &Snapshotter,
    storage: &MemStorage,
    kv: &KvStore,
) -> Result<(Wal, WalMetadata, u64), ServerError> {
    let config_err = |e: crate::config::ConfigError| ServerError::Startup(e.to_string());
    let (meta, initial) = match join {
        Some(join) => {
            let meta = WalMetadata {
                member_id: join.member_id,
                cluster_id: join.cluster_id,
            };
            let members = join
                .members
                .iter()
                .map(|m| (m.id, m.name.clone(), m.peer_ur_ls.clone()))
                .collect();
            (meta, members)
        }
        None => {
            cfg.verify_bootstrap().map_err(config_err)?;
            let meta = WalMetadata {
                member_id: cfg.local_member_id().map_err(config_err)?,
                cluster_id: cfg.cluster_id().map_err(config_err)?,
            };
            let members: Vec<(u64, String, Vec<String>)> = cfg
                .initial_members()
                .map_err(config_err)?
                .iter()
                .map(|m| {
                    (
                        m.id,
                        m.name.clone(),
                        m.peer_urls.iter().map(ToString::to_string).collect(),
                    )
                })
                .collect();
            (meta, members)
        }
    };

    // Members go into the backend before the WAL exists: a crash in between bootstraps again
    // from scratch, rewriting the same rows.
    let membership = Membership::load(meta.cluster_id, kv.backend())?;
    let batch = kv.begin_batch()?;
    membership.bootstrap(batch.raw(), &initial)?;
    batch.commit()?;
    kv.force_commit()?;

    let mut wal = Wal::create(wal_dir, &meta.encode())?;
    let applied_floor = if join.is_none() {
        let voters: Vec<u64> = initial.iter().map(|(id, _, _)| *id).collect();
        let mut snapshot = Snapshot::default();
        snapshot.mut_metadata().index = BOOTSTRAP_INDEX;
        snapshot.mut_metadata().term = BOOTSTRAP_TERM;
        snapshot
            .mut_metadata()
            .set_conf_state(ConfState::from((voters, vec![])));
        snapshotter.save(&snapshot)?;
        let hs = HardState {
            term: BOOTSTRAP_TERM,
            commit: BOOTSTRAP_INDEX,
            ..Default::default()
        };
        wal.save(&hs, &[])?;
        wal.save_snapshot(WalSnapshot {
            index: BOOTSTRAP_INDEX,
            term: BOOTSTRAP_TERM,
        })?;
        storage
            .wl()
            .apply_snapshot(snapshot)
            .map_err(|e| ServerError::Raft(e.to_string()))?;
        tracing::info!(
            "local-member-id" = format!("{:x}", meta.member_id),
            "initial-cluster" = cfg.initial_cluster_string(),
            "starting a new member of a new cluster"
        );
        BOOTSTRAP_INDEX
    } else {
        tracing::info!(
            "local-member-id" = format!("{:x}", meta.member_id),
            "cluster-id" = format!("{:x}", meta.cluster_id),
            "starting a new member joining an existing cluster"
        );
        0
    };
    Ok((wal, meta, applied_floor))
}

/// A member restarting from its data dir: newest snapshot, then the WAL after it.
fn restart(
    wal_dir: &std::path::Path,
    snapshotter: &Snapshotter,
    storage: &MemStorage,
) -> Result<(Wal, WalMetadata, u64), ServerError> {
    let mut markers = Wal::valid_snapshots(wal_dir)?;
    if !markers.contains(&WalSnapshot::default()) {
        markers.push(WalSnapshot::default());
    }
    let snapshot = snapshotter.load_newest_available(&markers)?;
    let marker = snapshot
        .as_ref()
        .map(|s| WalSnapshot {
            index: s.get_metadata().index,
            term: s.get_metadata().term,
        })
        .unwrap_or_default();
    let (wal, contents) = Wal::open(wal_dir, marker)?;
    let meta = WalMetadata::decode(&contents.metadata)?;

    // A member that joined but never got its first snapshot has no snapshot: its log and
    // configuration arrive from the leader again.
    if let Some(snap) = snapshot.filter(|s| s.get_metadata().index > 0) {
        let mut bare = Snapshot::default();
        bare.set_metadata(snap.get_metadata().clone());
        storage
            .wl()
            .apply_snapshot(bare)
            .map_err(|e| ServerError::Raft(e.to_string()))?;
    }
    storage
        .wl()
        .append(&contents.entries)
        .map_err(|e| ServerError::Raft(e.to_string()))?;
    let mut hs: HardState = contents.hard_state.clone();
    // Commit-only hard states are not fsync'd; a snapshot is only ever taken at a committed
    // index, so the commit index is at least the snapshot's.
    let last_index = storage
        .last_index()
        .map_err(|e| ServerError::Raft(e.to_string()))?;
    hs.commit = hs
        .commit
        .max(marker.index)
        .min(last_index.max(marker.index));
    storage.wl().set_hardstate(hs);
    tracing::info!(
        "local-member-id" = format!("{:x}", meta.member_id),
        "snapshot-index" = marker.index,
        "wal-entries" = contents.entries.len(),
        "restarting local member"
    );
    Ok((wal, meta, marker.index))
}
