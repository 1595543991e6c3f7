//! v2 auth (etcd 3.4's v2auth), kept apart from v3 auth as etcd keeps it: users, roles and
//! the on/off switch live in the v2 store under `/2` (`/2/users/<name>`, `/2/roles/<name>`,
//! `/2/enabled`), as JSON values written through Raft like any v2 key. Passwords are stored
//! bcrypt-hashed. The built-in `root` role may do anything; `guest` serves requests without
//! credentials, and is created with full access when auth is first enabled.

use oxcd_api::etcdserverpb::{InternalRaftRequest, Request};
use serde::{Deserialize, Serialize};

use crate::apply::ApplyResponse;
use crate::server::EtcdServer;
use crate::v2::error::{Code, Error as V2Error};
use crate::v2::store::Event;

const PREFIX: &str = "/2";
pub const ROOT: &str = "root";
pub const GUEST: &str = "guest";

/// A user as stored and as the API shows it (`password` only ever as a hash, never shown).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub user: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub password: String,
    #[serde(default)]
    pub roles: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoke: Option<Vec<String>>,
}

impl User {
    pub fn roles(&self) -> &[String] {
        self.roles.as_deref().unwrap_or(&[])
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Role {
    pub role: String,
    #[serde(default)]
    pub permissions: Permissions,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<Permissions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoke: Option<Permissions>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Permissions {
    #[serde(default)]
    pub kv: RwPermission,
}

impl Permissions {
    pub fn is_empty(p: &Option<Permissions>) -> bool {
        p.as_ref()
            .is_none_or(|p| p.kv.read().is_empty() && p.kv.write().is_empty())
    }
}

/// Key patterns: an exact key, or a prefix ending in `*`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RwPermission {
    #[serde(default)]
    pub read: Option<Vec<String>>,
    #[serde(default)]
    pub write: Option<Vec<String>>,
}

impl RwPermission {
    fn read(&self) -> &[String] {
        self.read.as_deref().unwrap_or(&[])
    }
    fn write(&self) -> &[String] {
        self.write.as_deref().unwrap_or(&[])
    }
    fn list(&self, write: bool) -> &[String] {
        if write {
            self.write()
        } else {
            self.read()
        }
    }
}

fn all_access(name: &str) -> Role {
    let all = Some(vec!["/*".to_owned()]);
    Role {
        role: name.to_owned(),
        permissions: Permissions {
            kv: RwPermission {
                read: all.clone(),
                write: all,
            },
        },
        ..Default::default()
    }
}

impl Role {
    /// Whether the role may read (or write) `key` itself.
    pub fn has_key_access(&self, key: &str, write: bool) -> bool {
        if self.role == ROOT {
            return true;
        }
        self.permissions
            .kv
            .list(write)
            .iter()
            .any(|pat| match pat.strip_suffix('*') {
                Some(prefix) => key.starts_with(prefix),
                None => key == pat,
            })
    }

    /// Whether the role may read (or write) everything under `key`.
    pub fn has_recursive_access(&self, key: &str, write: bool) -> bool {
        if self.role == ROOT {
            return true;
        }
        self.permissions
            .kv
            .list(write)
            .iter()
            .any(|pat| pat.strip_suffix('*').is_some_and(|p| key.starts_with(p)))
    }
}

/// A refused or failed auth operation, as the API answers it.
#[derive(Debug)]
pub enum AuthError {
    /// etcd's `auth: ...` errors: a status and a message.
    Auth(u16, String),
    /// A v2 store error passed through.
    V2(V2Error),
    /// Anything else: `500 Internal Server Error`.
    Internal(String),
}

fn auth_err(status: u16, msg: impl std::fmt::Display) -> AuthError {
    AuthError::Auth(status, format!("auth: {msg}"))
}

fn is_code(e: &AuthError, code: Code) -> bool {
    matches!(e, AuthError::V2(v) if v.code == code)
}

/// The v2 auth store over a member's v2 store.
pub struct AuthStore<'a> {
    server: &'a EtcdServer,
}

impl<'a> AuthStore<'a> {
    pub fn new(server: &'a EtcdServer) -> AuthStore<'a> {
        AuthStore { server }
    }

    /// A v2 request: reads (`GET`) locally, anything else through Raft.
    async fn request(&self, req: Request) -> Result<Event, AuthError> {
        if req.method() == "GET" {
            return self.server.v2.get(req.path(), false).map_err(AuthError::V2);
        }
        let internal = InternalRaftRequest {
            v2: Some(req),
            ..Default::default()
        };
        match self.server.propose(internal).await {
            Ok(ApplyResponse::V2(Some(r))) => r.map_err(AuthError::V2),
            Ok(_) => Err(AuthError::Internal("unexpected answer".into())),
            Err(e) => Err(AuthError::Internal(e.to_string())),
        }
    }

    async fn read(&self, res: &str, quorum: bool) -> Result<Event, AuthError> {
        self.request(Request {
            method: Some(if quorum { "QGET" } else { "GET" }.into()),
            path: Some(format!("{PREFIX}{res}")),
            ..Default::default()
        })
        .await
    }

    async fn ensure_dirs(&self) -> Result<(), AuthError> {
        for res in ["", "/users/", "/roles/"] {
            let made = self
                .request(Request {
                    method: Some("PUT".into()),
                    path: Some(crate::v2::store::clean(&format!("{PREFIX}{res}"))),
                    dir: Some(true),
                    prev_exist: Some(false),
                    ..Default::default()
                })
                .await;
            match made {
                Err(e) if !is_code(&e, Code::NodeExist) => return Err(e),
                _ => {}
            }
        }
        let made = self
            .request(Request {
                method: Some("PUT".into()),
                path: Some(format!("{PREFIX}/enabled")),
                val: Some("false".into()),
                prev_exist: Some(false),
                ..Default::default()
            })
            .await;
        match made {
            Err(e) if !is_code(&e, Code::NodeExist) => Err(e),
            _ => Ok(()),
        }
    }

    async fn put(&self, res: &str, value: String, prev_exist: bool) -> Result<Event, AuthError> {
        self.ensure_dirs().await?;
        self.request(Request {
            method: Some("PUT".into()),
            path: Some(format!("{PREFIX}{res}")),
            val: Some(value),
            prev_exist: Some(prev_exist),
            ..Default::default()
        })
        .await
    }

    async fn delete(&self, res: &str) -> Result<Event, AuthError> {
        self.ensure_dirs().await?;
        self.request(Request {
            method: Some("DELETE".into()),
            path: Some(format!("{PREFIX}{res}")),
            prev_exist: Some(true),
            ..Default::default()
        })
        .await
    }

    fn json<T: Serialize>(v: &T) -> Result<String, AuthError> {
        serde_json::to_string(v).map_err(|e| AuthError::Internal(e.to_string()))
    }

    pub fn enabled(&self) -> bool {
        self.server
            .v2
            .get("/2/enabled", false)
            .ok()
            .and_then(|e| e.node.value)
            .is_some_and(|v| v == "true")
    }

    pub async fn all_users(&self) -> Result<Vec<String>, AuthError> {
        self.names("/users/", vec![]).await
    }

    pub async fn all_roles(&self) -> Result<Vec<String>, AuthError> {
        self.names("/roles/", vec![ROOT.to_owned()]).await
    }

    async fn names(&self, res: &str, mut names: Vec<String>) -> Result<Vec<String>, AuthError> {
        match self.read(res, false).await {
            Ok(e) => {
                for n in e.node.nodes.unwrap_or_default() {
                    names.push(crate::v2::store::node_name(&n.key).to_owned());
                }
                names.sort();
                Ok(names)
            }
            Err(e) if is_code(&e, Code::KeyNotFound) => Ok(names),
            Err(e) => Err(e),
        }
    }

    pub async fn get_user(&self, name: &str, quorum: bool) -> Result<User, AuthError> {
        let e = match self.read(&format!("/users/{name}"), quorum).await {
            Err(e) if is_code(&e, Code::KeyNotFound) => {
                return Err(auth_err(404, format!("User {name} does not exist.")))
            }
            r => r?,
        };
        let mut u: User = serde_json::from_str(e.node.value.as_deref().unwrap_or(""))
            .map_err(|e| AuthError::Internal(e.to_string()))?;
        if u.user == ROOT {
            attach_root_role(&mut u);
        }
        Ok(u)
    }

    pub async fn get_role(&self, name: &str, quorum: bool) -> Result<Role, AuthError> {
        if name == ROOT {
            return Ok(all_access(ROOT));
        }
        let e = match self.read(&format!("/roles/{name}"), quorum).await {
            Err(e) if is_code(&e, Code::KeyNotFound) => {
                return Err(auth_err(404, format!("Role {name} does not exist.")))
            }
            r => r?,
        };
        serde_json::from_str(e.node.value.as_deref().unwrap_or(""))
            .map_err(|e| AuthError::Internal(e.to_string()))
    }

    pub async fn create_user(&self, mut user: User) -> Result<User, AuthError> {
        if user.user == ROOT {
            attach_root_role(&mut user);
        }
        if user.password.is_empty() {
            return Err(auth_err(
                400,
                format!("Cannot create user {} with an empty password", user.user),
            ));
        }
        user.password = hash(&user.password).await?;
        match self
            .put(&format!("/users/{}", user.user), Self::json(&user)?, false)
            .await
        {
            Err(e) if is_code(&e, Code::NodeExist) => {
                Err(auth_err(409, format!("User {} already exists.", user.user)))
            }
            Err(e) => Err(e),
            Ok(_) => {
                tracing::info!("user-name" = user.user, "created a user");
                Ok(user)
            }
        }
    }

    /// Creates the user, or updates it when it exists; `true` when created.
    pub async fn create_or_update_user(&self, user: User) -> Result<(User, bool), AuthError> {
        if self.get_user(&user.user, true).await.is_ok() {
            return self.update_user(user).await.map(|u| (u, false));
        }
        self.create_user(user).await.map(|u| (u, true))
    }

    pub async fn update_user(&self, user: User) -> Result<User, AuthError> {
        let old = match self.get_user(&user.user, true).await {
            Err(AuthError::Auth(404, _)) => {
                return Err(auth_err(404, format!("User {} doesn't exist.", user.user)))
            }
            r => r?,
        };
        let mut user = user;
        if !user.password.is_empty() {
            user.password = hash(&user.password).await?;
        }
        let merged = merge_user(&old, &user)?;
        if merged == old {
            return Err(auth_err(
                400,
                "User not updated. Use grant/revoke/password to update the user.",
            ));
        }
        self.put(&format!("/users/{}", user.user), Self::json(&merged)?, true)
            .await?;
        tracing::info!("user-name" = user.user, "updated a user");
        Ok(merged)
    }

    pub async fn delete_user(&self, name: &str) -> Result<(), AuthError> {
        if self.enabled() && name == ROOT {
            return Err(auth_err(
                403,
                "Cannot delete root user while auth is enabled.",
            ));
        }
        match self.delete(&format!("/users/{name}")).await {
            Err(e) if is_code(&e, Code::KeyNotFound) => {
                Err(auth_err(404, format!("User {name} does not exist")))
            }
            r => r.map(|_| ()),
        }
    }

    pub async fn create_role(&self, role: &Role) -> Result<(), AuthError> {
        if role.role == ROOT {
            return Err(auth_err(
                403,
                format!("Cannot modify role {}: is root role.", role.role),
            ));
        }
        match self
            .put(&format!("/roles/{}", role.role), Self::json(role)?, false)
            .await
        {
            Err(e) if is_code(&e, Code::NodeExist) => {
                Err(auth_err(409, format!("Role {} already exists.", role.role)))
            }
            r => r.map(|_| ()),
        }
    }

    pub async fn update_role(&self, role: &Role) -> Result<Role, AuthError> {
        if role.role == ROOT {
            return Err(auth_err(
                403,
                format!("Cannot modify role {}: is root role.", role.role),
            ));
        }
        let old = match self.get_role(&role.role, true).await {
            Err(AuthError::Auth(404, _)) => {
                return Err(auth_err(404, format!("Role {} doesn't exist.", role.role)))
            }
            r => r?,
        };
        let merged = merge_role(&old, role)?;
        if merged == old {
            return Err(auth_err(
                400,
                "Role not updated. Use grant/revoke to update the role.",
            ));
        }
        self.put(&format!("/roles/{}", role.role), Self::json(&merged)?, true)
            .await?;
        Ok(merged)
    }

    pub async fn delete_role(&self, name: &str) -> Result<(), AuthError> {
        if name == ROOT {
            return Err(auth_err(
                403,
                format!("Cannot modify role {name}: is root role."),
            ));
        }
        match self.delete(&format!("/roles/{name}")).await {
            Err(e) if is_code(&e, Code::KeyNotFound) => {
                Err(auth_err(404, format!("Role {name} doesn't exist.")))
            }
            r => r.map(|_| ()),
        }
    }

    pub async fn enable(&self) -> Result<(), AuthError> {
        if self.enabled() {
            return Err(auth_err(409, "already enabled"));
        }
        if self.get_user(ROOT, true).await.is_err() {
            return Err(auth_err(409, "No root user available, please create one"));
        }
        if self.get_role(GUEST, true).await.is_err() {
            tracing::info!("no guest role access found; creating default");
            self.create_role(&all_access(GUEST)).await?;
        }
        self.put("/enabled", "true".into(), true).await?;
        tracing::info!("enabled auth");
        Ok(())
    }

    pub async fn disable(&self) -> Result<(), AuthError> {
        if !self.enabled() {
            return Err(auth_err(409, "already disabled"));
        }
        self.put("/enabled", "false".into(), true).await?;
        tracing::info!("disabled auth");
        Ok(())
    }

    /// The user named by Basic credentials, when the password is right.
    pub async fn check_password(&self, name: &str, password: &str) -> Option<User> {
        let user = self.get_user(name, false).await.ok()?;
        let hash = user.password.clone();
        let password = password.to_owned();
        let ok =
            tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
                .await
                .unwrap_or(false);
        if !ok {
            tracing::warn!("user-name" = name, "incorrect password");
        }
        ok.then_some(user)
    }
}

/// The bcrypt cost of v2 password hashes: Go's `bcrypt.DefaultCost`, as etcd 3.4's v2 auth
/// uses (the bcrypt crate's own default, 12, is four times slower).
const BCRYPT_COST: u32 = 10;

/// bcrypt is slow by design: it runs off the async runtime.
async fn hash(password: &str) -> Result<String, AuthError> {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || bcrypt::hash(password, BCRYPT_COST))
        .await
        .map_err(|e| AuthError::Internal(e.to_string()))?
        .map_err(|e| AuthError::Internal(e.to_string()))
}

fn attach_root_role(u: &mut User) {
    let roles = u.roles.get_or_insert_with(Vec::new);
    if !roles.iter().any(|r| r == ROOT) {
        roles.push(ROOT.to_owned());
    }
}

/// `old` changed as `new` asks; `new`'s password, if any, is already hashed.
fn merge_user(old: &User, new: &User) -> Result<User, AuthError> {
    if old.user != new.user {
        return Err(auth_err(
            409,
            format!(
                "Merging user data with conflicting usernames: {} {}",
                old.user, new.user
            ),
        ));
    }
    let password = if new.password.is_empty() {
        old.password.clone()
    } else {
        new.password.clone()
    };
    let mut roles: Vec<String> = old.roles().to_vec();
    for g in new.grant.as_deref().unwrap_or(&[]) {
        if roles.contains(g) {
            return Err(auth_err(
                409,
                format!("Granting duplicate role {g} for user {}", new.user),
            ));
        }
        roles.push(g.clone());
    }
    for r in new.revoke.as_deref().unwrap_or(&[]) {
        let Some(i) = roles.iter().position(|x| x == r) else {
            return Err(auth_err(
                409,
                format!("Revoking ungranted role {r} for user {}", new.user),
            ));
        };
        roles.remove(i);
    }
    roles.sort();
    Ok(User {
        user: old.user.clone(),
        password,
        roles: Some(roles),
        ..Default::default()
    })
}

fn merge_role(old: &Role, new: &Role) -> Result<Role, AuthError> {
    if old.role != new.role {
        return Err(auth_err(
            409,
            format!(
                "Merging role with conflicting names: {} {}",
                old.role, new.role
            ),
        ));
    }
    let mut read: Vec<String> = old.permissions.kv.read().to_vec();
    let mut write: Vec<String> = old.permissions.kv.write().to_vec();
    if let Some(g) = &new.grant {
        for r in g.kv.read() {
            if read.contains(r) {
                return Err(auth_err(
                    409,
                    format!("Granting duplicate read permission {r}"),
                ));
            }
            read.push(r.clone());
        }
        for w in g.kv.write() {
            if write.contains(w) {
                return Err(auth_err(
                    409,
                    format!("Granting duplicate write permission {w}"),
                ));
            }
            write.push(w.clone());
        }
    }
    if let Some(r) = &new.revoke {
        read.retain(|p| !r.kv.read().contains(p));
        write.retain(|p| !r.kv.write().contains(p));
    }
    read.sort();
    write.sort();
    Ok(Role {
        role: old.role.clone(),
        permissions: Permissions {
            kv: RwPermission {
                read: Some(read),
                write: Some(write),
            },
        },
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_as_etcd() {
        let role = Role {
            role: "r".into(),
            permissions: Permissions {
                kv: RwPermission {
                    read: Some(vec!["/foo/*".into(), "/exact".into()]),
                    write: None,
                },
            },
            ..Default::default()
        };
        assert!(role.has_key_access("/foo/bar", false));
        assert!(role.has_key_access("/exact", false));
        assert!(!role.has_key_access("/exact/x", false));
        assert!(!role.has_key_access("/foo/bar", true));
        assert!(role.has_recursive_access("/foo/", false));
        assert!(!role.has_recursive_access("/exact", false));
        assert!(all_access(ROOT).has_key_access("/any", true));
    }

    #[test]
    fn user_json_matches_etcd() {
        let u = User {
            user: "foo".into(),
            roles: None,
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_string(&u).unwrap(),
            r#"{"user":"foo","roles":null}"#
        );
        let r: Role =
            serde_json::from_str(r#"{"role":"foo", "permissions": {"kv": {"read": ["/foo/*"]}}}"#)
                .unwrap();
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"role":"foo","permissions":{"kv":{"read":["/foo/*"],"write":null}}}"#
        );
        let e = merge_user(
            &User {
                user: "u".into(),
                roles: Some(vec!["a".into()]),
                ..Default::default()
            },
            &User {
                user: "u".into(),
                grant: Some(vec!["a".into()]),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(matches!(e, AuthError::Auth(409, m) if m.contains("duplicate")));
    }
}
