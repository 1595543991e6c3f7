//! Starting a member: open (or create) the data dir, restore Raft from the newest snapshot
//! and the WAL after it, and start the raft and apply threads.

use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use oxcd_storage::{
    Backend, BackendConfig, KvStore, Snapshotter, Wal, WalError, WalOptions, WalSnapshot,
    WatchableStore,
};
use raft::eraftpb::{ConfState, HardState, Snapshot};
use raft::{RawNode, Storage};
use tokio::sync::watch;

use crate::alarm::Alarms;
use crate::apply::{Applier, ApplyLane, EventSink};
use crate::auth::token::TokenProvider;
use crate::auth::AuthStore;
use crate::config::ServerConfig;
use crate::data_dir::{self, Layout};
use crate::disk_space::DiskSpace;
use crate::error::ServerError;
use crate::fatal;
use crate::lease::{Lessor, LessorConfig};
use crate::membership::Membership;
use crate::peer::{PeerContext, PeerLeaseForwarder, PeerTransport, TransportStats};
use crate::raft::{
    raft_logger, LogStore, RaftInput, RaftNode, RaftStatus, Transport, PAYLOAD_BUDGET,
};
use crate::server::{EtcdServer, Limits};
use crate::v2::V2Store;
use crate::wait::Wait;

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

/// Opens the MVCC store (its index rebuild reads the whole `key` table) on a thread of its
/// own while this one waits for the backend's verification, which reads every page too: on a
/// big store each takes seconds. A corrupt file is reported as such even when it also makes
/// the rebuild fail, panic or never end.
fn open_store(backend: Backend) -> Result<KvStore, ServerError> {
    let rebuild = {
        let backend = backend.clone();
        std::thread::Builder::new()
            .name("mvcc-open".into())
            .spawn(move || KvStore::open(backend))
            .map_err(|e| ServerError::Startup(format!("cannot start the mvcc store: {e}")))?
    };
    backend.wait_verified()?;
    let kv = rebuild
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
    Ok(kv)
}

/// Opens storage, restores or bootstraps Raft, and starts the raft and apply threads.
/// Must be called inside the tokio runtime: peer sender tasks are spawned on it.
pub fn start(
    cfg: &ServerConfig,
    peer_tls: Option<Arc<rustls::ClientConfig>>,
    join: Option<&JoinInfo>,
) -> Result<Arc<EtcdServer>, ServerError> {
    crate::etcd_import::take_over(cfg)?;
    let layout = Layout::of(cfg);
    if !Wal::exists(&layout.wal_dir) {
        data_dir::create(&layout, |staging| create_member(cfg, join, staging))?;
    }
    let backend_cfg = BackendConfig {
        verify_on_open: cfg.backend_verify_on_start,
        ..Default::default()
    };
    let backend = Backend::open(layout.backend_path(), backend_cfg)?;
    let backend_path = backend.path().to_path_buf();
    backend.on_flush_failure(move |e| fatal::exit("failed to commit tx", &backend_path, e));
    let kv = Arc::new(open_store(backend)?);
    let watchable = Arc::new(WatchableStore::new((*kv).clone()));
    let snapshotter = Snapshotter::new(&layout.snap_dir())?;
    let storage = LogStore::new(layout.wal_dir.clone());
    let (wal, meta, applied_floor) = restart(&layout.wal_dir, &snapshotter, &storage)?;
    load_unapplied_snapshot(&kv, &snapshotter, applied_floor)?;
    let disk_space = DiskSpace::watch(
        vec![layout.member_dir.clone(), layout.wal_dir.clone()],
        cfg.flags.disk_space_reserve_bytes,
    )
    .map_err(|e| ServerError::Startup(format!("cannot watch free disk space: {e}")))?;
    tracing::info!(
        "local-member-id" = format!("{:x}", meta.member_id),
        "cluster-id" = format!("{:x}", meta.cluster_id),
        "consistent-index" = kv.consistent_index().0,
        "starting raft node"
    );

    let membership = Arc::new(Membership::load(meta.cluster_id, kv.backend())?);
    let v2 = V2Store::load(kv.backend())?;
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
        // As etcd: a Ready carries at most this much of committed entries, so that replaying
        // a long log at a restart reads it back from the WAL a piece at a time.
        max_committed_size_per_ready: 1024 * 1024,
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
    let wait = Arc::new(Wait::default());
    let status = Arc::new(RaftStatus::default());
    let (applied_tx, applied_rx) = watch::channel(kv.consistent_index().0);

    let peers: Vec<(u64, Vec<String>)> = membership
        .list()
        .into_iter()
        .map(|m| (m.id, m.peer_ur_ls))
        .filter(|(id, _)| *id != meta.member_id)
        .collect();
    let transport_stats = Arc::new(TransportStats::default());
    let ctx = PeerContext {
        cluster_id: meta.cluster_id,
        local_id: meta.member_id,
        tls: peer_tls.clone(),
        runtime: tokio::runtime::Handle::current(),
        kv: kv.clone(),
        applied: applied_rx.clone(),
        raft: raft_tx.clone(),
        stats: transport_stats.clone(),
    };
    let transport: Box<dyn Transport> = Box::new(PeerTransport::start(ctx, peers));
    let applier = Applier {
        kv: kv.clone(),
        membership: membership.clone(),
        alarms: alarms.clone(),
        auth: auth.clone(),
        lessor: lessor.clone(),
        v2: v2.clone(),
        raft_status: status.clone(),
        wait: wait.clone(),
        applied: applied_tx,
        raft: raft_tx.clone(),
        events: Some(watchable.clone() as Arc<dyn EventSink>),
        snapshot_count: cfg.snapshot_count,
        member_id: meta.member_id,
        removed_self: Default::default(),
        proposals_pending: metrics::gauge!("etcd_server_proposals_pending"),
    };
    let apply = ApplyLane::start(applier)
        .map_err(|e| ServerError::Raft(format!("cannot start the apply thread: {e}")))?;
    let node = RaftNode::new(
        raw,
        wal,
        snapshotter,
        raft_rx,
        apply,
        transport,
        wait.clone(),
        status.clone(),
        cfg.heartbeat_interval,
        cfg.snapshot_catch_up_entries,
    );
    fatal::spawn_essential("raft", move || node.run())
        .map_err(|e| ServerError::Raft(format!("cannot start the raft thread: {e}")))?;

    let limits = Limits {
        max_request_bytes: cfg.max_request_bytes,
        max_send_bytes: cfg.max_send_bytes,
        max_txn_ops: cfg.max_txn_ops,
        request_timeout: cfg.request_timeout(),
        max_learners: cfg.max_learners,
        strict_reconfig_check: cfg.strict_reconfig_check,
        quota_bytes: cfg.quota_backend_bytes,
        disk_space,
    };
    let lease_forwarder = Arc::new(PeerLeaseForwarder::new(
        membership.clone(),
        peer_tls.clone(),
    ));
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
        peer_tls,
        v2,
        transport_stats,
        raft_tx,
        wait,
        applied_rx,
    )))
}

/// Lays out a new member of a new cluster in `cfg`'s data dir without starting it, as the
/// first start would: the founding members in the backend, the WAL, the bootstrap snapshot.
/// The backend may already hold data (`oxcdutl snapshot restore` loads a snapshot first);
/// it must hold no Raft position of another cluster. A later `oxcd --data-dir` restarts it.
pub fn initialize(cfg: &ServerConfig) -> Result<(), ServerError> {
    let layout = Layout::of(cfg);
    if Wal::exists(&layout.wal_dir) {
        return Err(ServerError::Startup(format!(
            "wal-dir {:?} exists",
            layout.wal_dir.display()
        )));
    }
    // The member is built in a staging dir and renamed into place (see `data_dir`), which
    // first clears a member dir without a WAL: the restored backend waits beside it.
    let restored = layout.backend_path();
    let aside = layout.member_dir.with_extension("restored-db");
    let io_err = |what: &str, path: &std::path::Path, e: std::io::Error| {
        ServerError::Storage(format!("cannot {what} {}: {e}", path.display()))
    };
    if restored.exists() {
        std::fs::rename(&restored, &aside).map_err(|e| io_err("move", &restored, e))?;
    }
    data_dir::create(&layout, |staging| {
        let snap_dir = staging.snap_dir();
        std::fs::create_dir_all(&snap_dir).map_err(|e| io_err("create", &snap_dir, e))?;
        if aside.exists() {
            std::fs::rename(&aside, staging.backend_path())
                .map_err(|e| io_err("move", &aside, e))?;
        }
        create_member(cfg, None, staging)
    })
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

/// Writes a new member's files into `staging` (see [`data_dir`]): of a new cluster (founding
/// members recorded in a bootstrap snapshot), or joining an existing one (empty log; the
/// leader sends a snapshot). The member then starts as any restarting member does.
fn create_member(
    cfg: &ServerConfig,
    join: Option<&JoinInfo>,
    staging: &Layout,
) -> Result<(), ServerError> {
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

    let snapshotter = Snapshotter::new(&staging.snap_dir())?;
    let backend = Backend::open(staging.backend_path(), BackendConfig::default())?;
    let membership = Membership::load(meta.cluster_id, &backend)?;
    let batch = backend.begin_write()?;
    membership.bootstrap(batch.txn(), &initial)?;
    if join.is_none() {
        // As etcd 3.4's founding conf changes: each founder is one event of the v2 store.
        V2Store::load(&backend)?.with_tree(batch.txn(), |tree| {
            let mut founders: Vec<_> = initial.iter().collect();
            founders.sort_by_key(|(id, _, _)| *id);
            for (id, _, peer_urls) in founders {
                tree.member_added(*id, peer_urls, false);
            }
        })?;
    }
    batch.commit()?;
    drop(membership);
    backend.close()?;

    let mut wal = Wal::create(&staging.wal_dir, &meta.encode())?;
    if join.is_none() {
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
        tracing::info!(
            "local-member-id" = format!("{:x}", meta.member_id),
            "initial-cluster" = cfg.initial_cluster_string(),
            "starting a new member of a new cluster"
        );
    } else {
        tracing::info!(
            "local-member-id" = format!("{:x}", meta.member_id),
            "cluster-id" = format!("{:x}", meta.cluster_id),
            "starting a new member joining an existing cluster"
        );
    }
    Ok(())
}

/// A follower that stopped after Raft saved a snapshot from the leader, but before the apply
/// thread loaded the leader's dump into the backend, restarts at the snapshot's index: the
/// entries the dump covers are not replayed from the WAL, so the dump is loaded here, before
/// anything reads the backend (etcd does the same when it opens its backend).
fn load_unapplied_snapshot(
    kv: &KvStore,
    snapshotter: &Snapshotter,
    snapshot_index: u64,
) -> Result<(), ServerError> {
    let (consistent_index, _) = kv.consistent_index();
    let dump = snapshotter.db_path_for(snapshot_index);
    // A new member's first snapshot (bootstrap) has no dump and no data behind it.
    if consistent_index >= snapshot_index || !dump.exists() {
        return Ok(());
    }
    tracing::info!(
        "consistent-index" = consistent_index,
        "snapshot-index" = snapshot_index,
        path = %dump.display(),
        "restoring mvcc store from a snapshot saved before the last stop"
    );
    let restored = std::fs::File::open(&dump)
        .map_err(|e| e.to_string())
        .and_then(|file| {
            kv.restore_from(&mut std::io::BufReader::new(file))
                .map_err(|e| e.to_string())
        });
    if let Err(e) = restored {
        return Err(ServerError::Startup(format!(
            "cannot restore the backend from {}: {e}",
            dump.display()
        )));
    }
    let _ = std::fs::remove_file(&dump);
    Ok(())
}

/// The WAL could not be read from its start, for want of a snapshot: if snapshot files were
/// set aside as broken, that is the cause, and the one line says which files and why.
fn no_usable_snapshot(snapshotter: &Snapshotter, wal_error: WalError) -> ServerError {
    let broken = match snapshotter.broken_files() {
        Ok(broken) if !broken.is_empty() => broken,
        _ => return wal_error.into(),
    };
    let files: Vec<String> = broken
        .iter()
        .map(|(path, why)| format!("{}: {why}", path.display()))
        .collect();
    ServerError::Startup(format!(
        "no usable snapshot: every snapshot file is broken ({}); the WAL alone cannot rebuild \
         the member ({wal_error}); restore the member from a backup or replace it",
        files.join("; ")
    ))
}

/// A member restarting from its data dir: newest snapshot, then the WAL after it.
fn restart(
    wal_dir: &std::path::Path,
    snapshotter: &Snapshotter,
    storage: &LogStore,
) -> Result<(Wal, WalMetadata, u64), ServerError> {
    // Only the newest payloads are read into memory; the log reads the others back later.
    let opts = WalOptions {
        payload_budget: PAYLOAD_BUDGET,
        ..Default::default()
    };
    // The WAL is read once: the snapshots it names and the entries after the newest.
    let scan = Wal::scan(wal_dir, opts)?;
    let mut markers = scan.valid_snapshots();
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
    let (wal, contents) = match scan.open_at(marker) {
        Ok(opened) => opened,
        Err(e) if snapshot.is_none() => return Err(no_usable_snapshot(snapshotter, e)),
        Err(e) => return Err(e.into()),
    };
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
        .append_read(
            &contents.entries,
            &contents.positions,
            contents.payloads_from,
        )
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
