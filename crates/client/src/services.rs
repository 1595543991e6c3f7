//! The unary services, request for request: KV, Cluster, Maintenance, Auth, Lock, Election.
//!
//! Each method takes etcd's request message and returns its response message, through the
//! retry rules of the connection (reads are retried on another endpoint, writes only when
//! they were never sent). Builders for the common cases sit beside them (see [`Kv::get`]).

use std::sync::Arc;

use futures::{Stream, StreamExt};
use oxcd_api::etcdserverpb::auth_client::AuthClient;
use oxcd_api::etcdserverpb::cluster_client::ClusterClient;
use oxcd_api::etcdserverpb::kv_client::KvClient;
use oxcd_api::etcdserverpb::maintenance_client::MaintenanceClient;
use oxcd_api::etcdserverpb::request_op::Request;
use oxcd_api::etcdserverpb::*;
use oxcd_api::v3electionpb::election_client::ElectionClient;
use oxcd_api::v3electionpb::*;
use oxcd_api::v3lockpb::lock_client::LockClient;
use oxcd_api::v3lockpb::*;

use crate::connection::{Connection, Retry};
use crate::error::{Error, Result};

/// Declares pass-through methods: `name(request) -> response` on a tonic client type.
macro_rules! unary {
    ($client:ident; $( $(#[$doc:meta])* $name:ident($req:ty) -> $resp:ty, $retry:expr; )+) => {
        $(
            $(#[$doc])*
            pub async fn $name(&self, request: $req) -> Result<$resp> {
                self.conn
                    .unary($retry, |service| {
                        let request = request.clone();
                        async move {
                            $client::new(service)
                                .max_decoding_message_size(usize::MAX)
                                .$name(request)
                                .await
                        }
                    })
                    .await
            }
        )+
    };
}

/// The end of the range holding every key that starts with `prefix` (etcdctl `--prefix`);
/// an empty prefix, or one of only `0xff` bytes, gives `[0]`: every key from it on.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// The KV service: ranges, puts, deletes, transactions, compaction.
#[derive(Clone, Debug)]
pub struct Kv {
    pub(crate) conn: Arc<Connection>,
}

impl Kv {
    unary! { KvClient;
        /// Reads a key or a range.
        range(RangeRequest) -> RangeResponse, Retry::Safe;
        /// Writes a key.
        put(PutRequest) -> PutResponse, Retry::Unsafe;
        /// Deletes a key or a range.
        delete_range(DeleteRangeRequest) -> DeleteRangeResponse, Retry::Unsafe;
        /// Compacts the history up to a revision.
        compact(CompactionRequest) -> CompactionResponse, Retry::Unsafe;
    }

    /// Runs a transaction; one without writes is retried as a read.
    pub async fn txn(&self, request: TxnRequest) -> Result<TxnResponse> {
        let retry = if txn_writes(&request) {
            Retry::Unsafe
        } else {
            Retry::Safe
        };
        self.conn
            .unary(retry, |service| {
                let request = request.clone();
                async move {
                    KvClient::new(service)
                        .max_decoding_message_size(usize::MAX)
                        .txn(request)
                        .await
                }
            })
            .await
    }

    /// The current value of one key, if it exists.
    pub async fn get(&self, key: impl Into<Vec<u8>>) -> Result<Option<oxcd_api::mvccpb::KeyValue>> {
        let response = self
            .range(RangeRequest {
                key: key.into(),
                ..Default::default()
            })
            .await?;
        Ok(response.kvs.into_iter().next())
    }

    /// Every key starting with `prefix`, in key order.
    pub async fn get_prefix(&self, prefix: impl Into<Vec<u8>>) -> Result<RangeResponse> {
        let key = prefix.into();
        let range_end = prefix_end(&key);
        self.range(RangeRequest {
            key,
            range_end,
            ..Default::default()
        })
        .await
    }

    /// Writes `value` at `key`, with no lease.
    pub async fn put_kv(
        &self,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
    ) -> Result<PutResponse> {
        self.put(PutRequest {
            key: key.into(),
            value: value.into(),
            ..Default::default()
        })
        .await
    }
}

fn txn_writes(request: &TxnRequest) -> bool {
    request
        .success
        .iter()
        .chain(&request.failure)
        .any(|op| match &op.request {
            Some(Request::RequestRange(_)) | None => false,
            Some(Request::RequestTxn(txn)) => txn_writes(txn),
            Some(Request::RequestPut(_) | Request::RequestDeleteRange(_)) => true,
        })
}

/// The Cluster service: membership.
#[derive(Clone, Debug)]
pub struct Cluster {
    pub(crate) conn: Arc<Connection>,
}

impl Cluster {
    unary! { ClusterClient;
        /// Adds a member (or a learner).
        member_add(MemberAddRequest) -> MemberAddResponse, Retry::Unsafe;
        /// Removes a member.
        member_remove(MemberRemoveRequest) -> MemberRemoveResponse, Retry::Unsafe;
        /// Changes a member's peer URLs.
        member_update(MemberUpdateRequest) -> MemberUpdateResponse, Retry::Unsafe;
        /// Lists the members.
        member_list(MemberListRequest) -> MemberListResponse, Retry::Safe;
        /// Promotes a learner to a voting member.
        member_promote(MemberPromoteRequest) -> MemberPromoteResponse, Retry::Unsafe;
    }
}

/// The Maintenance service: status, alarms, hashes, defragmentation, snapshots, leadership.
///
/// Requests about one member go to the endpoint in use; the `*_at` forms aim at one
/// endpoint of the client's list, with no failover.
#[derive(Clone, Debug)]
pub struct Maintenance {
    pub(crate) conn: Arc<Connection>,
}

impl Maintenance {
    unary! { MaintenanceClient;
        /// Lists, raises or clears alarms.
        alarm(AlarmRequest) -> AlarmResponse, Retry::Unsafe;
        /// Transfers leadership (must reach the leader).
        move_leader(MoveLeaderRequest) -> MoveLeaderResponse, Retry::Unsafe;
    }

    /// The status of the member at `endpoint` (one of the client's endpoints).
    pub async fn status_at(&self, endpoint: &str) -> Result<StatusResponse> {
        let service = self.service_at(endpoint)?;
        let response = MaintenanceClient::new(service)
            .status(StatusRequest {})
            .await?;
        Ok(response.into_inner())
    }

    /// The KV hash of the member at `endpoint` up to `revision` (0: the latest).
    pub async fn hash_kv_at(&self, endpoint: &str, revision: i64) -> Result<HashKvResponse> {
        let service = self.service_at(endpoint)?;
        let response = MaintenanceClient::new(service)
            .hash_kv(HashKvRequest { revision })
            .await?;
        Ok(response.into_inner())
    }

    /// Defragments the backend of the member at `endpoint`.
    pub async fn defragment_at(&self, endpoint: &str) -> Result<DefragmentResponse> {
        let service = self.service_at(endpoint)?;
        let response = MaintenanceClient::new(service)
            .defragment(DefragmentRequest {})
            .await?;
        Ok(response.into_inner())
    }

    /// The backend snapshot of the member at `endpoint`, as a stream of chunks.
    pub async fn snapshot_at(
        &self,
        endpoint: &str,
    ) -> Result<impl Stream<Item = Result<SnapshotResponse>> + use<>> {
        let service = self.service_at(endpoint)?;
        let stream = MaintenanceClient::new(service)
            .max_decoding_message_size(usize::MAX)
            .snapshot(SnapshotRequest {})
            .await?
            .into_inner();
        Ok(stream.map(|chunk| chunk.map_err(Error::from)))
    }

    fn service_at(&self, endpoint: &str) -> Result<crate::connection::Svc> {
        self.conn
            .service_for(endpoint)
            .ok_or_else(|| Error::InvalidEndpoint {
                endpoint: endpoint.to_owned(),
                reason: "not one of the client's endpoints".to_owned(),
            })
    }
}

/// The Auth service: enabling auth, users, roles, permissions.
#[derive(Clone, Debug)]
pub struct Auth {
    pub(crate) conn: Arc<Connection>,
}

impl Auth {
    unary! { AuthClient;
        /// Turns authentication on (needs a `root` user with the `root` role).
        auth_enable(AuthEnableRequest) -> AuthEnableResponse, Retry::Unsafe;
        /// Turns authentication off.
        auth_disable(AuthDisableRequest) -> AuthDisableResponse, Retry::Unsafe;
        /// Whether authentication is on.
        auth_status(AuthStatusRequest) -> AuthStatusResponse, Retry::Safe;
        /// Exchanges a user and password for a token.
        authenticate(AuthenticateRequest) -> AuthenticateResponse, Retry::Safe;
        /// Adds a user.
        user_add(AuthUserAddRequest) -> AuthUserAddResponse, Retry::Unsafe;
        /// A user's roles.
        user_get(AuthUserGetRequest) -> AuthUserGetResponse, Retry::Safe;
        /// Every user.
        user_list(AuthUserListRequest) -> AuthUserListResponse, Retry::Safe;
        /// Deletes a user.
        user_delete(AuthUserDeleteRequest) -> AuthUserDeleteResponse, Retry::Unsafe;
        /// Changes a user's password.
        user_change_password(AuthUserChangePasswordRequest) -> AuthUserChangePasswordResponse, Retry::Unsafe;
        /// Grants a role to a user.
        user_grant_role(AuthUserGrantRoleRequest) -> AuthUserGrantRoleResponse, Retry::Unsafe;
        /// Revokes a role from a user.
        user_revoke_role(AuthUserRevokeRoleRequest) -> AuthUserRevokeRoleResponse, Retry::Unsafe;
        /// Adds a role.
        role_add(AuthRoleAddRequest) -> AuthRoleAddResponse, Retry::Unsafe;
        /// A role's permissions.
        role_get(AuthRoleGetRequest) -> AuthRoleGetResponse, Retry::Safe;
        /// Every role.
        role_list(AuthRoleListRequest) -> AuthRoleListResponse, Retry::Safe;
        /// Deletes a role.
        role_delete(AuthRoleDeleteRequest) -> AuthRoleDeleteResponse, Retry::Unsafe;
        /// Grants a permission to a role.
        role_grant_permission(AuthRoleGrantPermissionRequest) -> AuthRoleGrantPermissionResponse, Retry::Unsafe;
        /// Revokes a permission from a role.
        role_revoke_permission(AuthRoleRevokePermissionRequest) -> AuthRoleRevokePermissionResponse, Retry::Unsafe;
    }
}

/// The server-side Lock service (etcd's `v3lock`): a lock held as long as a lease lives.
/// [`crate::recipes::Mutex`] does the same on the client over KV and watch.
#[derive(Clone, Debug)]
pub struct Lock {
    pub(crate) conn: Arc<Connection>,
}

impl Lock {
    unary! { LockClient;
        /// Waits for and takes the lock `name` with a lease; answers the key that holds it.
        lock(LockRequest) -> LockResponse, Retry::Unsafe;
        /// Releases a lock by its key.
        unlock(UnlockRequest) -> UnlockResponse, Retry::Unsafe;
    }
}

/// The server-side Election service (etcd's `v3election`).
/// [`crate::recipes::Election`] does the same on the client over KV and watch.
#[derive(Clone, Debug)]
pub struct Election {
    pub(crate) conn: Arc<Connection>,
}

impl Election {
    unary! { ElectionClient;
        /// Waits to become leader of an election.
        campaign(CampaignRequest) -> CampaignResponse, Retry::Unsafe;
        /// Changes the leader's value.
        proclaim(ProclaimRequest) -> ProclaimResponse, Retry::Unsafe;
        /// The current leader.
        leader(LeaderRequest) -> LeaderResponse, Retry::Safe;
        /// Gives up leadership.
        resign(ResignRequest) -> ResignResponse, Retry::Unsafe;
    }

    /// Every leader change of an election, starting with the current leader.
    pub async fn observe(
        &self,
        name: Vec<u8>,
    ) -> Result<impl Stream<Item = Result<LeaderResponse>> + use<>> {
        let (_, service) = self.conn.service();
        let stream = ElectionClient::new(service)
            .observe(LeaderRequest { name })
            .await?
            .into_inner();
        Ok(stream.map(|r| r.map_err(Error::from)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_the_last_byte_that_can() {
        assert_eq!(prefix_end(b"a"), b"b");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), [0]);
        assert_eq!(prefix_end(b""), [0]);
    }
}
