//! Authentication and authorization, as etcd's auth store: users with bcrypt-hashed
//! passwords, roles holding key permissions, tokens, and the one checker every path asks.
//!
//! - [`store`]: the replicated state (users, roles, enabled switch, auth revision), changed
//!   only by apply, persisted in the backend's auth tables.
//! - [`perms`]: a user's permissions merged into intervals, and the coverage question.
//! - [`token`]: simple tokens (and JWT), issued at apply, judged at the edge.
//! - [`check`]: which permission each request needs; asked at the edge (with the current
//!   auth revision) and again at apply (against the revision the edge saw).
//!
//! Who asks is an [`AuthInfo`]: from a token in the `token` (or `authorization`) metadata,
//! else from the client certificate's Common Name with `--client-cert-auth`.

pub mod cert;
mod check;
pub mod jwt;
mod perms;
mod store;
pub mod token;

use oxcd_api::etcdserverpb::{
    AuthDisableResponse, AuthEnableResponse, AuthRoleAddResponse, AuthRoleDeleteResponse,
    AuthRoleGetResponse, AuthRoleGrantPermissionResponse, AuthRoleListResponse,
    AuthRoleRevokePermissionResponse, AuthStatusResponse, AuthUserAddResponse,
    AuthUserChangePasswordResponse, AuthUserDeleteResponse, AuthUserGetResponse,
    AuthUserGrantRoleResponse, AuthUserListResponse, AuthUserRevokeRoleResponse,
    AuthenticateResponse, InternalRaftRequest,
};
use oxcd_api::EtcdError;
use oxcd_storage::Backend;
use redb::WriteTransaction;

pub use check::{sender, LeaseKeys};
pub use perms::Access;
use store::Shared;
pub use store::{ROOT_ROLE, ROOT_USER};
use token::TokenProvider;

use crate::error::ServerError;

/// bcrypt's range of costs (golang.org/x/crypto/bcrypt's MinCost and MaxCost).
const BCRYPT_MIN_COST: u32 = 4;
const BCRYPT_MAX_COST: u32 = 31;

/// Who sent a request: a user name and the auth revision its permissions were checked at.
/// The default (no name, revision 0) is "nobody", refused everything while auth is on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthInfo {
    pub username: String,
    pub revision: u64,
}

impl AuthInfo {
    /// The member itself (a leader revoking expired leases): root, at any revision.
    pub fn member() -> AuthInfo {
        AuthInfo {
            username: ROOT_USER.to_string(),
            revision: u64::MAX,
        }
    }
}

/// What applying an auth request produced, for its proposer.
#[derive(Debug)]
pub enum AuthResponse {
    Enable(AuthEnableResponse),
    Disable(AuthDisableResponse),
    Status(AuthStatusResponse),
    Authenticate(AuthenticateResponse),
    UserAdd(AuthUserAddResponse),
    UserGet(AuthUserGetResponse),
    UserList(AuthUserListResponse),
    UserDelete(AuthUserDeleteResponse),
    UserChangePassword(AuthUserChangePasswordResponse),
    UserGrantRole(AuthUserGrantRoleResponse),
    UserRevokeRole(AuthUserRevokeRoleResponse),
    RoleAdd(AuthRoleAddResponse),
    RoleGet(AuthRoleGetResponse),
    RoleList(AuthRoleListResponse),
    RoleDelete(AuthRoleDeleteResponse),
    RoleGrantPermission(AuthRoleGrantPermissionResponse),
    RoleRevokePermission(AuthRoleRevokePermissionResponse),
}

/// The auth store of one member.
pub struct AuthStore {
    shared: Shared,
    /// The auth revision, published after each change: open watches re-check their ranges.
    changes: tokio::sync::watch::Sender<u64>,
    tokens: TokenProvider,
    /// bcrypt cost for new password hashes (`--bcrypt-cost`).
    bcrypt_cost: u32,
    /// `--client-cert-auth`: a verified certificate's Common Name names the user.
    common_name_is_user: bool,
}

impl AuthStore {
    /// Loads the store from the backend. `bcrypt_cost` outside bcrypt's range falls back to
    /// the default, with etcd's warning.
    pub fn open(
        backend: &Backend,
        tokens: TokenProvider,
        bcrypt_cost: u32,
        common_name_is_user: bool,
    ) -> Result<AuthStore, ServerError> {
        let bcrypt_cost = if (BCRYPT_MIN_COST..=BCRYPT_MAX_COST).contains(&bcrypt_cost) {
            bcrypt_cost
        } else {
            tracing::warn!(
                "min-cost" = BCRYPT_MIN_COST,
                "max-cost" = BCRYPT_MAX_COST,
                "default-cost" = bcrypt::DEFAULT_COST,
                "given-cost" = bcrypt_cost,
                "use default bcrypt cost instead of the invalid given cost"
            );
            bcrypt::DEFAULT_COST
        };
        let shared = Shared::load(backend)?;
        let (changes, _) = tokio::sync::watch::channel(shared.read().revision);
        Ok(AuthStore {
            shared,
            changes,
            tokens,
            bcrypt_cost,
            common_name_is_user,
        })
    }

    /// Reloads after a snapshot replaced the backend; every token is forgotten.
    pub fn reload(&self, backend: &Backend) -> Result<(), ServerError> {
        self.shared.reload(backend)?;
        self.tokens.invalidate_all();
        self.changes.send_replace(self.revision());
        Ok(())
    }

    pub fn is_enabled(&self) -> bool {
        self.shared.read().enabled
    }

    /// The current auth revision.
    pub fn revision(&self) -> u64 {
        self.shared.read().revision
    }

    /// Sees the auth revision after each change.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// The tokens this member issues and judges.
    pub fn tokens(&self) -> &TokenProvider {
        &self.tokens
    }

    /// Who `token` names, at the current revision (simple) or the one it was issued at (JWT).
    pub fn info_from_token(&self, token: &str) -> Result<AuthInfo, EtcdError> {
        let Some(info) = self.tokens.info(token) else {
            tracing::warn!("invalid auth token");
            return Err(EtcdError::InvalidAuthToken);
        };
        Ok(AuthInfo {
            username: info.username,
            revision: info.revision.unwrap_or_else(|| self.revision()),
        })
    }

    /// The user a verified client certificate names (at the current revision), when
    /// `--client-cert-auth` makes certificates name users.
    pub fn info_from_common_name(&self, cn: &str) -> Option<AuthInfo> {
        self.common_name_is_user.then(|| AuthInfo {
            username: cn.to_string(),
            revision: self.revision(),
        })
    }

    /// Hashes a password at `--bcrypt-cost`; slow by design: call off the async runtime.
    pub fn hash_password(&self, password: &str) -> Result<String, ServerError> {
        bcrypt::hash(password, self.bcrypt_cost)
            .map_err(|e| ServerError::Storage(format!("failed to bcrypt hash password: {e}")))
    }

    /// Checks `name`'s password (Authenticate, on the serving member, before proposing);
    /// returns the auth revision it was checked at. Slow by design (bcrypt).
    pub fn check_password(&self, name: &str, password: &str) -> Result<u64, ServerError> {
        let (hash, revision) = {
            let state = self.shared.read();
            if !state.enabled {
                return Err(EtcdError::AuthNotEnabled.into());
            }
            let Some(user) = state.users.get(name) else {
                return Err(EtcdError::AuthFailed.into());
            };
            if user.options.as_ref().is_some_and(|o| o.no_password) {
                return Err(ServerError::NoPasswordUser);
            }
            (user.password.clone(), state.revision)
        };
        let hash = String::from_utf8_lossy(&hash);
        if !bcrypt::verify(password, &hash).unwrap_or(false) {
            tracing::info!("user-name" = name, "invalid password");
            return Err(EtcdError::AuthFailed.into());
        }
        Ok(revision)
    }

    /// Applies an auth request taken out of `req` (apply thread only); `None` when `req` is
    /// not an auth request. `index` is the entry's raft index (simple tokens carry it).
    pub fn apply(
        &self,
        tx: &WriteTransaction,
        req: &mut InternalRaftRequest,
        info: &AuthInfo,
        index: u64,
    ) -> Option<Result<AuthResponse, ServerError>> {
        let result = if req.auth_enable.take().is_some() {
            self.shared
                .change(tx, store::auth_enable)
                .map(|()| AuthResponse::Enable(Default::default()))
        } else if req.auth_disable.take().is_some() {
            self.shared.change(tx, store::auth_disable).map(|disabled| {
                if disabled {
                    self.tokens.invalidate_all();
                }
                AuthResponse::Disable(Default::default())
            })
        } else if req.auth_status.take().is_some() {
            let state = self.shared.read();
            Ok(AuthResponse::Status(AuthStatusResponse {
                header: None,
                enabled: state.enabled,
                auth_revision: state.revision,
            }))
        } else if let Some(r) = req.authenticate.take() {
            self.apply_authenticate(&r.name, &r.simple_token, index)
                .map(AuthResponse::Authenticate)
        } else if let Some(r) = req.auth_user_add.take() {
            self.shared
                .change(tx, |c| store::user_add(c, r))
                .map(|()| AuthResponse::UserAdd(Default::default()))
        } else if let Some(r) = req.auth_user_delete.take() {
            self.shared
                .change(tx, |c| store::user_delete(c, &r.name))
                .map(|()| {
                    self.tokens.invalidate_user(&r.name);
                    AuthResponse::UserDelete(Default::default())
                })
        } else if let Some(r) = req.auth_user_change_password.take() {
            self.shared
                .change(tx, |c| {
                    store::user_change_password(c, &r.name, r.hashed_password)
                })
                .map(|()| {
                    self.tokens.invalidate_user(&r.name);
                    AuthResponse::UserChangePassword(Default::default())
                })
        } else if let Some(r) = req.auth_user_grant_role.take() {
            self.shared
                .change(tx, |c| store::user_grant_role(c, &r.user, &r.role))
                .map(|()| AuthResponse::UserGrantRole(Default::default()))
        } else if let Some(r) = req.auth_user_revoke_role.take() {
            self.shared
                .change(tx, |c| store::user_revoke_role(c, &r.name, &r.role))
                .map(|()| AuthResponse::UserRevokeRole(Default::default()))
        } else if let Some(r) = req.auth_user_get.take() {
            self.user_get(info, &r.name).map(AuthResponse::UserGet)
        } else if req.auth_user_list.take().is_some() {
            let state = self.shared.read();
            Ok(AuthResponse::UserList(AuthUserListResponse {
                header: None,
                users: state.users.keys().cloned().collect(),
            }))
        } else if let Some(r) = req.auth_role_add.take() {
            self.shared
                .change(tx, |c| store::role_add(c, &r.name))
                .map(|()| AuthResponse::RoleAdd(Default::default()))
        } else if let Some(r) = req.auth_role_get.take() {
            self.role_get(info, &r.role).map(AuthResponse::RoleGet)
        } else if req.auth_role_list.take().is_some() {
            let state = self.shared.read();
            Ok(AuthResponse::RoleList(AuthRoleListResponse {
                header: None,
                roles: state.roles.keys().cloned().collect(),
            }))
        } else if let Some(r) = req.auth_role_delete.take() {
            self.shared
                .change(tx, |c| store::role_delete(c, &r.role))
                .map(|()| AuthResponse::RoleDelete(Default::default()))
        } else if let Some(r) = req.auth_role_grant_permission.take() {
            self.shared
                .change(tx, |c| store::role_grant_permission(c, r))
                .map(|()| AuthResponse::RoleGrantPermission(Default::default()))
        } else if let Some(r) = req.auth_role_revoke_permission.take() {
            self.shared
                .change(tx, |c| store::role_revoke_permission(c, &r))
                .map(|()| AuthResponse::RoleRevokePermission(Default::default()))
        } else {
            return None;
        };
        let revision = self.revision();
        self.changes.send_if_modified(|published| {
            let changed = *published != revision;
            *published = revision;
            changed
        });
        Some(result)
    }

    fn apply_authenticate(
        &self,
        name: &str,
        prefix: &str,
        index: u64,
    ) -> Result<AuthenticateResponse, ServerError> {
        let revision = {
            let state = self.shared.read();
            if !state.enabled {
                return Err(EtcdError::AuthNotEnabled.into());
            }
            let Some(user) = state.users.get(name) else {
                return Err(EtcdError::AuthFailed.into());
            };
            if user.options.as_ref().is_some_and(|o| o.no_password) {
                return Err(EtcdError::AuthFailed.into());
            }
            state.revision
        };
        let token = self.tokens.assign(name, revision, prefix, index)?;
        tracing::debug!("user-name" = name, "authenticated a user");
        Ok(AuthenticateResponse {
            header: None,
            token,
        })
    }

    /// A user's roles: for root, or for the user itself.
    fn user_get(&self, info: &AuthInfo, name: &str) -> Result<AuthUserGetResponse, ServerError> {
        if let Err(e) = self.check_admin(info) {
            if name != info.username {
                return Err(e.into());
            }
        }
        let state = self.shared.read();
        let Some(user) = state.users.get(name) else {
            return Err(EtcdError::UserNotFound.into());
        };
        Ok(AuthUserGetResponse {
            header: None,
            roles: user.roles.clone(),
        })
    }

    /// A role's permissions: for root, or for a user holding the role.
    fn role_get(&self, info: &AuthInfo, role: &str) -> Result<AuthRoleGetResponse, ServerError> {
        if let Err(e) = self.check_admin(info) {
            let holds = self
                .shared
                .read()
                .users
                .get(&info.username)
                .is_some_and(|u| u.roles.iter().any(|r| r == role));
            if !holds {
                return Err(e.into());
            }
        }
        let state = self.shared.read();
        let Some(found) = state.roles.get(role) else {
            return Err(EtcdError::RoleNotFound.into());
        };
        Ok(AuthRoleGetResponse {
            header: None,
            perm: found.key_permission.clone(),
        })
    }
}
