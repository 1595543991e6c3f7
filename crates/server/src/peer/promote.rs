//! A learner's promotion sent to a follower, carried to the leader over the peer port
//! (`oxcdpb.Peer/MemberPromote`): only the leader knows whether the learner is in sync.

use std::time::Duration;

use oxcd_api::etcdserverpb::{Member, MemberPromoteRequest};
use oxcd_api::oxcdpb::peer_client::PeerClient;
use oxcd_api::EtcdError;
use tokio::time::{timeout_at, Instant};

use super::client::dial;
use crate::error::ServerError;
use crate::server::EtcdServer;

/// Pause between attempts while there is no leader or it cannot be reached.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// etcd's forwarding half of PromoteMember: asks the leader until it answers, or until the
/// request timeout (`request timed out`). The leader's verdicts on the learner end the
/// attempts at once; any other failure (no leader yet, a leader change) is tried again.
pub async fn forward_promote(server: &EtcdServer, id: u64) -> Result<Vec<Member>, ServerError> {
    let deadline = Instant::now() + server.limits.request_timeout;
    while Instant::now() < deadline {
        let leader = server.raft_status.leader();
        let urls = match server.membership.get(leader) {
            Some(member) if leader != server.member_id => member.peer_ur_ls,
            _ => Vec::new(),
        };
        for url in &urls {
            match timeout_at(deadline, ask(url, server, id)).await {
                Ok(Ok(members)) => return Ok(members),
                Ok(Err(
                    e @ (EtcdError::LearnerNotReady
                    | EtcdError::MemberNotFound
                    | EtcdError::MemberNotLearner),
                )) => return Err(e.into()),
                Ok(Err(_)) => {}
                Err(_) => break,
            }
        }
        tokio::time::sleep_until((Instant::now() + RETRY_PAUSE).min(deadline)).await;
    }
    Err(EtcdError::Timeout.into())
}

/// One attempt at `url`; an answer that is no etcd error counts as a lost leader.
async fn ask(url: &str, server: &EtcdServer, id: u64) -> Result<Vec<Member>, EtcdError> {
    let channel = dial(url, server.peer_tls.clone())
        .await
        .map_err(|_| EtcdError::NoLeader)?;
    let resp = PeerClient::new(channel)
        .member_promote(MemberPromoteRequest { id })
        .await
        .map_err(|status| {
            EtcdError::from_message(status.message()).unwrap_or(EtcdError::NoLeader)
        })?;
    Ok(resp.into_inner().members)
}
