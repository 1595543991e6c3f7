//! Corruption checks, as etcd's `etcdserver/corrupt.go`: members that applied the same log
//! hold the same keys, so their HashKV at one revision agrees unless a disk or a bug changed
//! data behind Raft's back.
//!
//! - `--experimental-initial-corrupt-check`: a restarting member compares its hash with its
//!   peers' at its own revision before it serves anyone, and refuses to start on a mismatch.
//! - `--experimental-corrupt-check-time`: the leader compares, at that interval, its hash with
//!   the followers' and raises the CORRUPT alarm through Raft on a mismatch; apply then refuses
//!   every write (`etcdserver: corrupt cluster`) until an operator disarms it.
//!
//! Peers answer over the peer URL (`oxcdpb.Peer/HashKV`, etcd's `/members/hashkv`). A peer
//! that cannot answer, or has compacted past the revision, is skipped, as in etcd: only two
//! hashes at the same revision and the same compaction are compared.

use std::sync::Arc;
use std::time::Duration;

use oxcd_api::etcdserverpb::alarm_request::AlarmAction;
use oxcd_api::etcdserverpb::{
    AlarmRequest, AlarmType, HashKvRequest, HashKvResponse, InternalRaftRequest,
};
use oxcd_api::oxcdpb::peer_client::PeerClient;
use oxcd_api::EtcdError;

use crate::error::ServerError;
use crate::peer::dial;
use crate::server::EtcdServer;

/// This member's HashKV at `rev` (0: the current revision), as the Maintenance service and
/// peers see it.
pub fn hash_kv(server: &EtcdServer, rev: i64) -> Result<HashKvResponse, ServerError> {
    let h = server.kv.hash_kv(rev)?;
    Ok(HashKvResponse {
        header: Some(server.header(h.current_revision)),
        hash: h.hash,
        // etcd reports -1 until the first compaction.
        compact_revision: if h.compact_revision == 0 {
            -1
        } else {
            h.compact_revision
        },
        hash_revision: h.hash_revision,
    })
}

/// What one peer answered.
struct PeerHash {
    id: u64,
    urls: Vec<String>,
    answer: Result<HashKvResponse, ServerError>,
}

/// Asks every other member for its HashKV at `rev`, trying each of its peer URLs in turn.
async fn peer_hashes(
    server: &EtcdServer,
    tls: &Option<Arc<rustls::ClientConfig>>,
    rev: i64,
) -> Vec<PeerHash> {
    let mut answers = Vec::new();
    for member in server.membership.list() {
        if member.id == server.member_id || member.peer_ur_ls.is_empty() {
            continue;
        }
        let mut answer = Err(ServerError::Raft("no peer URL answered".to_owned()));
        for url in &member.peer_ur_ls {
            answer = ask(url, tls.clone(), rev, server.limits.request_timeout).await;
            match &answer {
                Ok(_) => break,
                Err(e) => tracing::warn!(
                    "local-member-id" = format!("{:x}", server.member_id),
                    "requested-revision" = rev,
                    "remote-peer-endpoint" = %url,
                    error = %e,
                    "failed hash kv request"
                ),
            }
        }
        answers.push(PeerHash {
            id: member.id,
            urls: member.peer_ur_ls.clone(),
            answer,
        });
    }
    answers
}

async fn ask(
    url: &str,
    tls: Option<Arc<rustls::ClientConfig>>,
    rev: i64,
    timeout: Duration,
) -> Result<HashKvResponse, ServerError> {
    let request = async {
        let channel = dial(url, tls)
            .await
            .map_err(|e| ServerError::Raft(format!("cannot reach peer: {e}")))?;
        let resp = PeerClient::new(channel)
            .hash_kv(HashKvRequest { revision: rev })
            .await
            .map_err(|status| match EtcdError::from_message(status.message()) {
                Some(e) => ServerError::Etcd(e),
                None => ServerError::Raft(status.message().to_owned()),
            })?;
        Ok(resp.into_inner())
    };
    tokio::time::timeout(timeout, request)
        .await
        .unwrap_or_else(|_| Err(ServerError::Etcd(EtcdError::Timeout)))
}

fn revision(resp: &HashKvResponse) -> i64 {
    resp.header.as_ref().map_or(0, |h| h.revision)
}

/// The check before serving (`--experimental-initial-corrupt-check`): a mismatch with any
/// peer at the same revision and compaction is an error that stops the start.
pub async fn check_initial(
    server: &EtcdServer,
    tls: &Option<Arc<rustls::ClientConfig>>,
) -> Result<(), ServerError> {
    let local_id = format!("{:x}", server.member_id);
    tracing::info!(
        "local-member-id" = %local_id,
        timeout = ?server.limits.request_timeout,
        "starting initial corruption check"
    );
    let local = hash_kv(server, 0)
        .map_err(|e| ServerError::Startup(format!("{local_id} failed to fetch hash ({e})")))?;
    let (rev, crev) = (local.hash_revision, local.compact_revision);
    let mut mismatch = 0;
    for peer in peer_hashes(server, tls, rev).await {
        match peer.answer {
            Ok(remote) if remote.hash != local.hash => {
                let same_compaction = remote.compact_revision == crev;
                tracing::warn!(
                    "local-member-id" = %local_id,
                    "local-member-revision" = rev,
                    "local-member-compact-revision" = crev,
                    "local-member-hash" = local.hash,
                    "remote-peer-id" = format!("{:x}", peer.id),
                    "remote-peer-endpoints" = ?peer.urls,
                    "remote-peer-revision" = revision(&remote),
                    "remote-peer-compact-revision" = remote.compact_revision,
                    "remote-peer-hash" = remote.hash,
                    "{}",
                    if same_compaction {
                        "found different hash values from remote peer"
                    } else {
                        "found different compact revision values from remote peer"
                    }
                );
                if same_compaction {
                    mismatch += 1;
                }
            }
            Ok(_) => {}
            Err(ServerError::Etcd(e @ (EtcdError::FutureRev | EtcdError::Compacted))) => {
                tracing::warn!(
                    "local-member-id" = %local_id,
                    "local-member-revision" = rev,
                    "local-member-compact-revision" = crev,
                    "local-member-hash" = local.hash,
                    "remote-peer-id" = format!("{:x}", peer.id),
                    "remote-peer-endpoints" = ?peer.urls,
                    error = %e,
                    "{}",
                    if e == EtcdError::FutureRev {
                        "cannot fetch hash from slow remote peer"
                    } else {
                        "cannot fetch hash from remote peer; local member is behind"
                    }
                );
            }
            // Unreachable peers were logged already; they cannot be compared.
            Err(_) => {}
        }
    }
    if mismatch > 0 {
        return Err(ServerError::Startup(format!(
            "{:016x} found data inconsistency with peers",
            server.member_id
        )));
    }
    tracing::info!(
        "local-member-id" = %local_id,
        "initial corruption checking passed; no corruption"
    );
    Ok(())
}

/// The periodic check (`--experimental-corrupt-check-time`): runs for the life of the member;
/// only the leader compares.
pub async fn monitor(
    server: Arc<EtcdServer>,
    tls: Option<Arc<rustls::ClientConfig>>,
    interval: Duration,
) {
    tracing::info!(
        "local-member-id" = format!("{:x}", server.member_id),
        interval = ?interval,
        "enabled corruption checking"
    );
    loop {
        tokio::time::sleep(interval).await;
        if !server.raft_status.is_leader() {
            continue;
        }
        if let Err(e) = check_cluster(&server, &tls).await {
            tracing::warn!(error = %e, "failed to check hash KV");
        }
    }
}

/// etcd's `checkHashKV`: the leader's hash is taken, then the followers' at that revision;
/// a linearizable barrier later the leader hashes again. A follower ahead of the leader, or
/// with the leader's first compaction but another hash, is corrupt; so is the leader if its
/// own two hashes of one revision differ.
async fn check_cluster(
    server: &EtcdServer,
    tls: &Option<Arc<rustls::ClientConfig>>,
) -> Result<(), ServerError> {
    let first = hash_kv(server, 0)?;
    let (h, rev, crev) = (first.hash, first.hash_revision, first.compact_revision);
    let peers = peer_hashes(server, tls, rev).await;
    server.linearizable_read_barrier().await?;
    let second = hash_kv(server, 0)?;
    let (h2, rev2, crev2) = (second.hash, second.hash_revision, second.compact_revision);

    let mut corrupt = false;
    if h2 != h && rev2 == rev && crev2 == crev {
        tracing::warn!(
            "revision-1" = rev,
            "compact-revision-1" = crev,
            "hash-1" = h,
            "revision-2" = rev2,
            "compact-revision-2" = crev2,
            "hash-2" = h2,
            "found hash mismatch"
        );
        corrupt = true;
    }
    let mut checked = 0;
    for peer in &peers {
        let Ok(resp) = &peer.answer else { continue };
        checked += 1;
        let peer_id = format!("{:x}", peer.id);
        if revision(resp) > rev2 {
            tracing::warn!(
                "leader-revision" = rev2,
                "follower-revision" = revision(resp),
                "follower-peer-id" = %peer_id,
                "revision from follower must be less than or equal to leader's"
            );
            corrupt = true;
        }
        if resp.compact_revision > crev2 {
            tracing::warn!(
                "leader-compact-revision" = crev2,
                "follower-compact-revision" = resp.compact_revision,
                "follower-peer-id" = %peer_id,
                "compact revision from follower must be less than or equal to leader's"
            );
            corrupt = true;
        }
        if resp.compact_revision == crev && resp.hash != h {
            tracing::warn!(
                "leader-compact-revision" = crev2,
                "leader-hash" = h,
                "follower-compact-revision" = resp.compact_revision,
                "follower-hash" = resp.hash,
                "follower-peer-id" = %peer_id,
                "same compact revision then hashes must match"
            );
            corrupt = true;
        }
    }
    tracing::info!(
        "number-of-peers-checked" = checked,
        "finished peer corruption check"
    );
    // Once raised, the alarm stays until an operator disarms it; it is not raised again.
    if corrupt && !server.alarms.corrupt() {
        // As etcd 3.4: which member holds the bad data is not known, so the alarm names
        // member 0.
        let alarm = InternalRaftRequest {
            alarm: Some(AlarmRequest {
                action: AlarmAction::Activate as i32,
                member_id: 0,
                alarm: AlarmType::Corrupt as i32,
            }),
            ..Default::default()
        };
        server.propose(alarm).await?;
    }
    Ok(())
}
