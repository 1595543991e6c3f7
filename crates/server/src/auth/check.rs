//! The one permission checker: what each request needs, asked with the sender's
//! [`AuthInfo`]. Handlers ask before proposing or reading; apply asks again with the auth
//! revision the handler saw, and refuses with `revision of auth store is old` when the store
//! has changed since (etcd's rule), so a request never runs on permissions already revoked.

use oxcd_api::etcdserverpb::request_op::Request as Op;
use oxcd_api::etcdserverpb::{
    DeleteRangeRequest, InternalRaftRequest, PutRequest, RangeRequest, TxnRequest,
};
use oxcd_api::EtcdError;

use super::perms::Access;
use super::{AuthInfo, AuthStore};

/// The keys attached to a lease: writing a key onto a lease, or revoking it, needs write
/// permission on every one of them.
pub trait LeaseKeys {
    fn keys(&self, lease: i64) -> Vec<Vec<u8>>;
}

impl<F: Fn(i64) -> Vec<Vec<u8>>> LeaseKeys for F {
    fn keys(&self, lease: i64) -> Vec<Vec<u8>> {
        self(lease)
    }
}

impl AuthStore {
    /// May `info` have `access` to `key`..`range_end`? (etcd's isOpPermitted.)
    pub fn check(
        &self,
        info: &AuthInfo,
        access: Access,
        key: &[u8],
        range_end: &[u8],
    ) -> Result<(), EtcdError> {
        let state = self.shared.read();
        if !state.enabled {
            return Ok(());
        }
        if info.revision == 0 {
            return Err(EtcdError::UserEmpty);
        }
        if info.revision < state.revision {
            tracing::warn!(
                "current-revision" = state.revision,
                "request-revision" = info.revision,
                "request auth revision is less than current node auth revision"
            );
            return Err(EtcdError::AuthOldRevision);
        }
        if !state.users.contains_key(&info.username) {
            tracing::error!(
                "user-name" = info.username,
                "cannot find a user for permission check"
            );
            return Err(EtcdError::PermissionDenied);
        }
        if state.has_root_role(&info.username) {
            return Ok(());
        }
        match state.perms.get(&info.username) {
            Some(perms) if perms.allows(access, key, range_end) => Ok(()),
            _ => Err(EtcdError::PermissionDenied),
        }
    }

    /// May `info` administer the cluster (the `root` role)? (etcd's IsAdminPermitted.)
    pub fn check_admin(&self, info: &AuthInfo) -> Result<(), EtcdError> {
        let state = self.shared.read();
        if !state.enabled {
            return Ok(());
        }
        if info.username.is_empty() {
            return Err(EtcdError::UserEmpty);
        }
        if !state.users.contains_key(&info.username) {
            return Err(EtcdError::UserNotFound);
        }
        if !state.has_root_role(&info.username) {
            return Err(EtcdError::PermissionDenied);
        }
        Ok(())
    }

    pub fn check_range(&self, info: &AuthInfo, r: &RangeRequest) -> Result<(), EtcdError> {
        self.check(info, Access::Read, &r.key, &r.range_end)
    }

    /// A put needs write on its key, read too with `prev_kv`, and write on every key already
    /// on its lease: one who could not revoke the lease may not attach to it.
    pub fn check_put(
        &self,
        info: &AuthInfo,
        r: &PutRequest,
        leases: &dyn LeaseKeys,
    ) -> Result<(), EtcdError> {
        self.check(info, Access::Write, &r.key, &[])?;
        self.check_lease_keys(info, r.lease, leases)?;
        if r.prev_kv {
            self.check(info, Access::Read, &r.key, &[])?;
        }
        Ok(())
    }

    pub fn check_delete(&self, info: &AuthInfo, r: &DeleteRangeRequest) -> Result<(), EtcdError> {
        self.check(info, Access::Write, &r.key, &r.range_end)?;
        if r.prev_kv {
            self.check(info, Access::Read, &r.key, &r.range_end)?;
        }
        Ok(())
    }

    /// Every compare needs read; every operation what it needs alone, in every branch, nested
    /// txns included, whichever branch will run.
    pub fn check_txn(
        &self,
        info: &AuthInfo,
        r: &TxnRequest,
        leases: &dyn LeaseKeys,
    ) -> Result<(), EtcdError> {
        for c in &r.compare {
            self.check(info, Access::Read, &c.key, &c.range_end)?;
        }
        for op in r.success.iter().chain(&r.failure) {
            match &op.request {
                Some(Op::RequestRange(range)) => self.check_range(info, range)?,
                Some(Op::RequestPut(put)) => self.check_put(info, put, leases)?,
                Some(Op::RequestDeleteRange(del)) => self.check_delete(info, del)?,
                Some(Op::RequestTxn(inner)) => self.check_txn(info, inner, leases)?,
                None => {}
            }
        }
        Ok(())
    }

    /// Write on every key attached to `lease` (LeaseRevoke, or a put onto the lease).
    pub fn check_lease_keys(
        &self,
        info: &AuthInfo,
        lease: i64,
        leases: &dyn LeaseKeys,
    ) -> Result<(), EtcdError> {
        if lease == 0 || !self.is_enabled() {
            return Ok(());
        }
        for key in leases.keys(lease) {
            self.check(info, Access::Write, &key, &[])?;
        }
        Ok(())
    }

    /// Apply's auth layer: refuses `req` when its sender (named in its header) may not make
    /// it now. UserGet and RoleGet decide for themselves (a user may read itself and its
    /// roles).
    pub fn check_apply(
        &self,
        req: &InternalRaftRequest,
        leases: &dyn LeaseKeys,
    ) -> Result<(), EtcdError> {
        let info = sender(req);
        if needs_admin(req) {
            return self.check_admin(&info);
        }
        if let Some(put) = &req.put {
            return self.check_put(&info, put, leases);
        }
        if let Some(del) = &req.delete_range {
            return self.check_delete(&info, del);
        }
        if let Some(txn) = &req.txn {
            return self.check_txn(&info, txn, leases);
        }
        if let Some(revoke) = &req.lease_revoke {
            return self.check_lease_keys(&info, revoke.id, leases);
        }
        Ok(())
    }
}

/// The sender a proposal's header names.
pub fn sender(req: &InternalRaftRequest) -> AuthInfo {
    req.header
        .as_ref()
        .map(|h| AuthInfo {
            username: h.username.clone(),
            revision: h.auth_revision,
        })
        .unwrap_or_default()
}

/// Requests only `root` may make (etcd's needAdminPermission).
fn needs_admin(r: &InternalRaftRequest) -> bool {
    r.auth_enable.is_some()
        || r.auth_disable.is_some()
        || r.auth_user_add.is_some()
        || r.auth_user_delete.is_some()
        || r.auth_user_change_password.is_some()
        || r.auth_user_grant_role.is_some()
        || r.auth_user_revoke_role.is_some()
        || r.auth_role_add.is_some()
        || r.auth_role_grant_permission.is_some()
        || r.auth_role_revoke_permission.is_some()
        || r.auth_role_delete.is_some()
        || r.auth_user_list.is_some()
        || r.auth_role_list.is_some()
}
