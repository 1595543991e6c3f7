//! The auth store's replicated state: users, roles, the enabled switch and the auth revision,
//! kept in memory for the permission checks and written through to the backend's `auth`,
//! `authUsers` and `authRoles` tables by apply, in the batch of the entry that changed them.
//! Only apply changes it; handlers read it.
//!
//! Every change bumps the auth revision (enabling does not, as in etcd): a request checked
//! at the edge carries the revision it was checked at, and apply refuses it when the store
//! has moved on since, so no permission change can race a request through.

use std::collections::{BTreeMap, HashMap};
use std::sync::{RwLock, RwLockReadGuard};

use oxcd_api::authpb::{Permission, Role, User, UserAddOptions};
use oxcd_api::etcdserverpb::{
    AuthRoleGrantPermissionRequest, AuthRoleRevokePermissionRequest, AuthUserAddRequest,
};
use oxcd_api::EtcdError;
use oxcd_storage::{schema, Backend};
use prost::Message as _;
use redb::{ReadableTable, WriteTransaction};

use super::perms::UserPermissions;
use crate::error::ServerError;

/// The user whose `root` role makes it the administrator; auth cannot be enabled without it.
pub const ROOT_USER: &str = "root";
/// The role that allows everything.
pub const ROOT_ROLE: &str = "root";

/// Users, roles and switches, with each user's merged permissions.
#[derive(Default)]
pub(super) struct State {
    pub enabled: bool,
    /// Never 0 once loaded: 0 means "no user given" in a request header.
    pub revision: u64,
    pub users: BTreeMap<String, User>,
    pub roles: BTreeMap<String, Role>,
    /// Each user's permissions, merged from its roles; rebuilt on every change.
    pub perms: HashMap<String, UserPermissions>,
}

impl State {
    fn load(backend: &Backend) -> Result<State, ServerError> {
        let rtx = backend.begin_read()?;
        let auth = rtx.open_table(schema::AUTH)?;
        let enabled = auth
            .get(schema::AUTH_ENABLED)?
            .is_some_and(|v| v.value() == [1]);
        let revision = auth
            .get(schema::AUTH_REVISION)?
            .and_then(|v| schema::decode_u64(v.value()))
            .unwrap_or(0);
        let mut users = BTreeMap::new();
        for row in rtx.open_table(schema::AUTH_USERS)?.iter()? {
            let (_, v) = row?;
            let user = User::decode(v.value()).map_err(|e| {
                ServerError::Storage(format!("failed to unmarshal 'authpb.User': {e}"))
            })?;
            users.insert(String::from_utf8_lossy(&user.name).into_owned(), user);
        }
        let mut roles = BTreeMap::new();
        for row in rtx.open_table(schema::AUTH_ROLES)?.iter()? {
            let (_, v) = row?;
            let role = Role::decode(v.value()).map_err(|e| {
                ServerError::Storage(format!("failed to unmarshal 'authpb.Role': {e}"))
            })?;
            roles.insert(String::from_utf8_lossy(&role.name).into_owned(), role);
        }
        let mut state = State {
            enabled,
            // etcd writes revision 1 when it first creates the store.
            revision: revision.max(1),
            users,
            roles,
            perms: HashMap::new(),
        };
        state.refresh_perms();
        Ok(state)
    }

    fn refresh_perms(&mut self) {
        self.perms = self
            .users
            .iter()
            .map(|(name, user)| {
                let roles = user.roles.iter().filter_map(|r| self.roles.get(r));
                (name.clone(), UserPermissions::merge(roles))
            })
            .collect();
    }

    pub fn has_root_role(&self, user: &str) -> bool {
        self.users
            .get(user)
            .is_some_and(|u| u.roles.iter().any(|r| r == ROOT_ROLE))
    }
}

/// The writable side of the state, for one applied entry.
pub(super) struct Change<'a> {
    pub state: &'a mut State,
    pub tx: &'a WriteTransaction,
}

impl Change<'_> {
    /// Persists the switch, bumps nothing.
    pub fn set_enabled(&mut self, enabled: bool) -> Result<(), ServerError> {
        self.tx
            .open_table(schema::AUTH)?
            .insert(schema::AUTH_ENABLED, [u8::from(enabled)].as_slice())?;
        self.state.enabled = enabled;
        Ok(())
    }

    /// Bumps and persists the auth revision, and rebuilds the permission cache.
    pub fn commit_revision(&mut self) -> Result<(), ServerError> {
        self.state.revision += 1;
        self.tx.open_table(schema::AUTH)?.insert(
            schema::AUTH_REVISION,
            schema::encode_u64(self.state.revision).as_slice(),
        )?;
        self.state.refresh_perms();
        Ok(())
    }

    pub fn put_user(&mut self, user: User) -> Result<(), ServerError> {
        self.tx
            .open_table(schema::AUTH_USERS)?
            .insert(user.name.as_slice(), user.encode_to_vec().as_slice())?;
        self.state
            .users
            .insert(String::from_utf8_lossy(&user.name).into_owned(), user);
        Ok(())
    }

    pub fn delete_user(&mut self, name: &str) -> Result<(), ServerError> {
        self.tx
            .open_table(schema::AUTH_USERS)?
            .remove(name.as_bytes())?;
        self.state.users.remove(name);
        Ok(())
    }

    pub fn put_role(&mut self, role: Role) -> Result<(), ServerError> {
        self.tx
            .open_table(schema::AUTH_ROLES)?
            .insert(role.name.as_slice(), role.encode_to_vec().as_slice())?;
        self.state
            .roles
            .insert(String::from_utf8_lossy(&role.name).into_owned(), role);
        Ok(())
    }

    pub fn delete_role(&mut self, name: &str) -> Result<(), ServerError> {
        self.tx
            .open_table(schema::AUTH_ROLES)?
            .remove(name.as_bytes())?;
        self.state.roles.remove(name);
        Ok(())
    }
}

/// The state behind a lock: many readers (every request's check), one writer (apply).
#[derive(Default)]
pub(super) struct Shared {
    state: RwLock<State>,
}

impl Shared {
    pub fn load(backend: &Backend) -> Result<Shared, ServerError> {
        Ok(Shared {
            state: RwLock::new(State::load(backend)?),
        })
    }

    pub fn reload(&self, backend: &Backend) -> Result<(), ServerError> {
        let fresh = State::load(backend)?;
        *self.state.write().unwrap() = fresh;
        Ok(())
    }

    pub fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap()
    }

    /// Runs one change under the write lock.
    pub fn change<T>(
        &self,
        tx: &WriteTransaction,
        f: impl FnOnce(&mut Change<'_>) -> Result<T, ServerError>,
    ) -> Result<T, ServerError> {
        let mut state = self.state.write().unwrap();
        f(&mut Change {
            state: &mut state,
            tx,
        })
    }
}

// The rules of each change, as etcd's auth store has them. Each returns an etcd error when the
// request is refused, before anything is written.

pub(super) fn auth_enable(c: &mut Change<'_>) -> Result<(), ServerError> {
    if c.state.enabled {
        tracing::info!("authentication is already enabled; ignored auth enable request");
        return Ok(());
    }
    if !c.state.users.contains_key(ROOT_USER) {
        return Err(EtcdError::RootUserNotExist.into());
    }
    if !c.state.has_root_role(ROOT_USER) {
        return Err(EtcdError::RootRoleNotExist.into());
    }
    c.set_enabled(true)?;
    tracing::info!("enabled authentication");
    Ok(())
}

pub(super) fn auth_disable(c: &mut Change<'_>) -> Result<bool, ServerError> {
    if !c.state.enabled {
        return Ok(false);
    }
    c.set_enabled(false)?;
    c.commit_revision()?;
    tracing::info!("disabled authentication");
    Ok(true)
}

/// Adds a user whose password is already hashed (`hashed_password`), or who has none.
pub(super) fn user_add(c: &mut Change<'_>, r: AuthUserAddRequest) -> Result<(), ServerError> {
    if r.name.is_empty() {
        return Err(EtcdError::UserEmpty.into());
    }
    if c.state.users.contains_key(&r.name) {
        return Err(EtcdError::UserAlreadyExist.into());
    }
    let options = r.options.unwrap_or(UserAddOptions { no_password: false });
    let password = if options.no_password {
        Vec::new()
    } else {
        r.hashed_password.into_bytes()
    };
    c.put_user(User {
        name: r.name.clone().into_bytes(),
        password,
        roles: Vec::new(),
        options: Some(options),
    })?;
    c.commit_revision()?;
    tracing::info!("user-name" = r.name, "added a user");
    Ok(())
}

pub(super) fn user_delete(c: &mut Change<'_>, name: &str) -> Result<(), ServerError> {
    if c.state.enabled && name == ROOT_USER {
        tracing::warn!("user-name" = name, "cannot delete 'root' user");
        return Err(EtcdError::InvalidAuthMgmt.into());
    }
    if !c.state.users.contains_key(name) {
        return Err(EtcdError::UserNotFound.into());
    }
    c.delete_user(name)?;
    c.commit_revision()?;
    tracing::info!("user-name" = name, "deleted a user");
    Ok(())
}

pub(super) fn user_change_password(
    c: &mut Change<'_>,
    name: &str,
    hashed: String,
) -> Result<(), ServerError> {
    let Some(user) = c.state.users.get(name) else {
        return Err(EtcdError::UserNotFound.into());
    };
    let updated = User {
        password: hashed.into_bytes(),
        ..user.clone()
    };
    c.put_user(updated)?;
    c.commit_revision()?;
    tracing::info!("user-name" = name, "changed a password of a user");
    Ok(())
}

pub(super) fn user_grant_role(
    c: &mut Change<'_>,
    name: &str,
    role: &str,
) -> Result<(), ServerError> {
    let Some(user) = c.state.users.get(name) else {
        return Err(EtcdError::UserNotFound.into());
    };
    if role != ROOT_ROLE && !c.state.roles.contains_key(role) {
        return Err(EtcdError::RoleNotFound.into());
    }
    let mut user = user.clone();
    match user.roles.binary_search_by(|r| r.as_str().cmp(role)) {
        Ok(_) => {
            tracing::warn!(
                "user-name" = name,
                "duplicate-role-name" = role,
                "ignored grant role request to a user"
            );
            return Ok(());
        }
        Err(at) => user.roles.insert(at, role.to_string()),
    }
    c.put_user(user)?;
    c.commit_revision()?;
    tracing::info!(
        "user-name" = name,
        "added-role-name" = role,
        "granted a role to a user"
    );
    Ok(())
}

pub(super) fn user_revoke_role(
    c: &mut Change<'_>,
    name: &str,
    role: &str,
) -> Result<(), ServerError> {
    if c.state.enabled && name == ROOT_USER && role == ROOT_ROLE {
        tracing::warn!(
            "user-name" = name,
            "role-name" = role,
            "'root' user cannot revoke 'root' role"
        );
        return Err(EtcdError::InvalidAuthMgmt.into());
    }
    let Some(user) = c.state.users.get(name) else {
        return Err(EtcdError::UserNotFound.into());
    };
    let mut user = user.clone();
    let before = user.roles.len();
    user.roles.retain(|r| r != role);
    if user.roles.len() == before {
        return Err(EtcdError::RoleNotGranted.into());
    }
    c.put_user(user)?;
    c.commit_revision()?;
    tracing::info!(
        "user-name" = name,
        "revoked-role-name" = role,
        "revoked a role from a user"
    );
    Ok(())
}

pub(super) fn role_add(c: &mut Change<'_>, name: &str) -> Result<(), ServerError> {
    if name.is_empty() {
        return Err(EtcdError::RoleEmpty.into());
    }
    if c.state.roles.contains_key(name) {
        return Err(EtcdError::RoleAlreadyExist.into());
    }
    c.put_role(Role {
        name: name.as_bytes().to_vec(),
        key_permission: Vec::new(),
    })?;
    c.commit_revision()?;
    tracing::info!("role-name" = name, "created a role");
    Ok(())
}

pub(super) fn role_delete(c: &mut Change<'_>, name: &str) -> Result<(), ServerError> {
    if c.state.enabled && name == ROOT_ROLE {
        tracing::warn!("role-name" = name, "cannot delete 'root' role");
        return Err(EtcdError::InvalidAuthMgmt.into());
    }
    if !c.state.roles.contains_key(name) {
        return Err(EtcdError::RoleNotFound.into());
    }
    c.delete_role(name)?;
    let holders: Vec<User> = c
        .state
        .users
        .values()
        .filter(|u| u.roles.iter().any(|r| r == name))
        .cloned()
        .collect();
    for mut user in holders {
        user.roles.retain(|r| r != name);
        c.put_user(user)?;
    }
    c.commit_revision()?;
    tracing::info!("role-name" = name, "deleted a role");
    Ok(())
}

pub(super) fn role_grant_permission(
    c: &mut Change<'_>,
    r: AuthRoleGrantPermissionRequest,
) -> Result<(), ServerError> {
    let Some(role) = c.state.roles.get(&r.name) else {
        return Err(EtcdError::RoleNotFound.into());
    };
    let perm = r.perm.unwrap_or_default();
    let mut role = role.clone();
    let at = role.key_permission.partition_point(|p| p.key < perm.key);
    match role.key_permission[at..]
        .iter_mut()
        .take_while(|p| p.key == perm.key)
        .find(|p| p.range_end == perm.range_end)
    {
        Some(existing) => existing.perm_type = perm.perm_type,
        None => {
            // After the permissions with the same key, as etcd's stable sort puts it.
            let end = role.key_permission.partition_point(|p| p.key <= perm.key);
            role.key_permission.insert(
                end,
                Permission {
                    perm_type: perm.perm_type,
                    key: perm.key,
                    range_end: perm.range_end,
                },
            );
        }
    }
    c.put_role(role)?;
    c.commit_revision()?;
    tracing::info!(
        "role-name" = r.name,
        "granted/updated a permission to a role"
    );
    Ok(())
}

pub(super) fn role_revoke_permission(
    c: &mut Change<'_>,
    r: &AuthRoleRevokePermissionRequest,
) -> Result<(), ServerError> {
    let Some(role) = c.state.roles.get(&r.role) else {
        return Err(EtcdError::RoleNotFound.into());
    };
    let mut role = role.clone();
    let before = role.key_permission.len();
    role.key_permission
        .retain(|p| p.key != r.key || p.range_end != r.range_end);
    if role.key_permission.len() == before {
        return Err(EtcdError::PermissionNotGranted.into());
    }
    c.put_role(role)?;
    c.commit_revision()?;
    tracing::info!("role-name" = r.role, "revoked a permission on range");
    Ok(())
}
