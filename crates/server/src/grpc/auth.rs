//! The Auth service, and how every gRPC handler learns who is asking.
//!
//! Every Auth request goes through Raft, as in etcd (reads too, so they see every change
//! acknowledged before them). Passwords are hashed here, on the serving member, before
//! proposing: the log and snapshots only ever hold bcrypt hashes. Authenticate checks the
//! password here too and proposes only the user's name and the random part of its token.

use std::sync::Arc;

use oxcd_api::etcdserverpb::auth_server::Auth;
use oxcd_api::etcdserverpb::*;
use oxcd_api::EtcdError;
use tokio::runtime::{Handle, RuntimeFlavor};
use tonic::{Request, Response, Status};

use crate::apply::ApplyResponse;
use crate::auth::{AuthInfo, AuthResponse, AuthStore};
use crate::error::ServerError;
use crate::server::EtcdServer;

/// gRPC metadata keys that carry a token: etcd's own, and the gateway's `Authorization`.
/// Header names, so that no call parses them from text.
const TOKEN_KEYS: [http::HeaderName; 2] = [
    http::HeaderName::from_static("token"),
    http::header::AUTHORIZATION,
];

/// The verified client certificate's Common Name, put in each request's extensions by the
/// TLS listener (see [`crate::listen`]).
#[derive(Debug, Clone, Default)]
pub struct ClientCommonName(pub Option<String>);

/// What a request presents to say who sent it: a token, or a verified certificate's name.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    token: Option<String>,
    common_name: Option<String>,
}

impl Credentials {
    pub fn of<T>(request: &Request<T>) -> Credentials {
        let token = TOKEN_KEYS
            .iter()
            .find_map(|k| AsRef::<http::HeaderMap>::as_ref(request.metadata()).get(k))
            .map(|v| v.to_str().unwrap_or_default().to_string());
        let common_name = request
            .extensions()
            .get::<axum::extract::ConnectInfo<ClientCommonName>>()
            .and_then(|c| c.0 .0.clone());
        Credentials { token, common_name }
    }

    /// Waits until this member has applied the entry that issued the token, if it has not.
    pub async fn wait_issued(&self, server: &EtcdServer) -> Result<(), EtcdError> {
        let Some(index) = self
            .token
            .as_deref()
            .and_then(|t| server.auth.tokens().issued_at(t))
        else {
            return Ok(());
        };
        let deadline = tokio::time::Instant::now() + server.limits.request_timeout;
        server
            .wait_applied(index, deadline)
            .await
            .map_err(|_| EtcdError::InvalidAuthToken)
    }

    /// The sender these credentials name now: the token's user, else the certificate's
    /// Common Name; `None` when nobody. A token that is not valid is an error, as in etcd,
    /// even where none is needed.
    pub fn resolve(&self, auth: &AuthStore) -> Result<Option<AuthInfo>, EtcdError> {
        if let Some(token) = &self.token {
            return auth.info_from_token(token).map(Some);
        }
        Ok(self
            .common_name
            .as_deref()
            .and_then(|cn| auth.info_from_common_name(cn)))
    }
}

/// Who sent `request` (see [`Credentials::resolve`]).
pub async fn sender<T>(
    server: &EtcdServer,
    request: &Request<T>,
) -> Result<Option<AuthInfo>, Status> {
    let credentials = Credentials::of(request);
    credentials.wait_issued(server).await.map_err(status)?;
    credentials.resolve(&server.auth).map_err(status)
}

/// Refuses `request` unless its sender has the `root` role (or auth is off): maintenance
/// and membership operations.
pub async fn require_admin<T>(server: &EtcdServer, request: &Request<T>) -> Result<(), Status> {
    let sender = sender(server, request).await?.unwrap_or_default();
    server.auth.check_admin(&sender).map_err(status)
}

/// The keys attached to a lease, for the permission checks of puts and revokes.
pub fn lease_keys(server: &EtcdServer) -> impl Fn(i64) -> Vec<Vec<u8>> + '_ {
    |lease| {
        server
            .lessor
            .time_to_live(lease, true)
            .map(|status| status.keys)
            .unwrap_or_default()
    }
}

fn status(e: EtcdError) -> Status {
    super::status::status(e)
}

pub struct AuthService {
    server: Arc<EtcdServer>,
}

impl AuthService {
    pub fn new(server: Arc<EtcdServer>) -> AuthService {
        AuthService { server }
    }

    fn header(&self) -> Option<ResponseHeader> {
        Some(self.server.header(self.server.kv.current_revision()))
    }

    /// Proposes `internal` for `sender` and returns apply's auth answer.
    async fn propose(
        &self,
        internal: InternalRaftRequest,
        sender: Option<AuthInfo>,
    ) -> Result<AuthResponse, Status> {
        match self.server.propose_as(internal, sender.as_ref()).await? {
            ApplyResponse::Auth(resp) => Ok(resp),
            _ => Err(Status::internal(
                "apply answered an auth request with another kind of response",
            )),
        }
    }

    /// Hashes `password` off the runtime (bcrypt is slow by design).
    async fn hash(&self, password: String) -> Result<String, Status> {
        let server = self.server.clone();
        tokio::task::spawn_blocking(move || server.auth.hash_password(&password))
            .await
            .map_err(|e| Status::internal(format!("password hashing failed: {e}")))?
            .map_err(Status::from)
    }

    /// Checks a login's password (bcrypt, slow by design): the auth revision it was checked at.
    /// On the multi-threaded runtime it runs in place (its worker's other tasks move to
    /// another thread), not on the blocking pool: no hand-off to another thread and back, each
    /// of which waits for a core when the machine is loaded.
    async fn check_password(
        &self,
        name: &str,
        password: &str,
    ) -> Result<Result<u64, ServerError>, Status> {
        let auth = &self.server.auth;
        if Handle::current().runtime_flavor() == RuntimeFlavor::MultiThread {
            return Ok(tokio::task::block_in_place(|| {
                auth.check_password(name, password)
            }));
        }
        let (server, name, password) =
            (self.server.clone(), name.to_string(), password.to_string());
        tokio::task::spawn_blocking(move || server.auth.check_password(&name, &password))
            .await
            .map_err(|e| Status::internal(format!("password check failed: {e}")))
    }

    /// Refuses a non-root sender before any costly work (apply checks again).
    fn check_admin(&self, sender: &Option<AuthInfo>) -> Result<(), Status> {
        self.server
            .auth
            .check_admin(&sender.clone().unwrap_or_default())
            .map_err(status)
    }
}

/// Proposes the request in field `$field` and answers with the `$variant` response.
macro_rules! through_raft {
    ($self:ident, $request:ident, $field:ident, $variant:ident) => {{
        let sender = sender(&$self.server, &$request).await?;
        let internal = InternalRaftRequest {
            $field: Some($request.into_inner()),
            ..Default::default()
        };
        match $self.propose(internal, sender).await? {
            AuthResponse::$variant(mut resp) => {
                resp.header = $self.header();
                Ok(Response::new(resp))
            }
            _ => Err(Status::internal(concat!(
                "apply answered ",
                stringify!($variant),
                " with another kind of response"
            ))),
        }
    }};
}

#[tonic::async_trait]
impl Auth for AuthService {
    async fn auth_enable(
        &self,
        request: Request<AuthEnableRequest>,
    ) -> Result<Response<AuthEnableResponse>, Status> {
        through_raft!(self, request, auth_enable, Enable)
    }

    async fn auth_disable(
        &self,
        request: Request<AuthDisableRequest>,
    ) -> Result<Response<AuthDisableResponse>, Status> {
        through_raft!(self, request, auth_disable, Disable)
    }

    async fn auth_status(
        &self,
        request: Request<AuthStatusRequest>,
    ) -> Result<Response<AuthStatusResponse>, Status> {
        through_raft!(self, request, auth_status, Status)
    }

    async fn authenticate(
        &self,
        request: Request<AuthenticateRequest>,
    ) -> Result<Response<AuthenticateResponse>, Status> {
        self.server.linearizable_read_barrier().await?;
        let req = request.into_inner();
        loop {
            let checked = self.check_password(&req.name, &req.password).await?;
            let checked_revision = match checked {
                Ok(revision) => revision,
                Err(e) => {
                    if !matches!(e, ServerError::Etcd(EtcdError::AuthNotEnabled)) {
                        tracing::warn!(user = req.name, error = %e, "invalid authentication was requested");
                    }
                    return Err(e.into());
                }
            };
            // The password never enters the log: only the name and the token's random part.
            let internal = InternalRaftRequest {
                authenticate: Some(InternalAuthenticateRequest {
                    name: req.name.clone(),
                    password: String::new(),
                    simple_token: self.server.auth.tokens().new_prefix(),
                }),
                ..Default::default()
            };
            let resp = self.propose(internal, None).await?;
            if checked_revision != self.server.auth.revision() {
                // The user may have changed between the check and the token: check again.
                tracing::info!(
                    user = req.name,
                    "revision when password checked became stale; retrying"
                );
                continue;
            }
            return match resp {
                AuthResponse::Authenticate(mut resp) => {
                    resp.header = self.header();
                    Ok(Response::new(resp))
                }
                _ => Err(Status::internal(
                    "apply answered Authenticate with another kind of response",
                )),
            };
        }
    }

    async fn user_add(
        &self,
        request: Request<AuthUserAddRequest>,
    ) -> Result<Response<AuthUserAddResponse>, Status> {
        let sender = sender(&self.server, &request).await?;
        self.check_admin(&sender)?;
        let mut req = request.into_inner();
        let no_password = req.options.as_ref().is_some_and(|o| o.no_password);
        if no_password {
            req.hashed_password.clear();
        } else if req.hashed_password.is_empty() {
            req.hashed_password = self.hash(std::mem::take(&mut req.password)).await?;
        }
        req.password.clear();
        let internal = InternalRaftRequest {
            auth_user_add: Some(req),
            ..Default::default()
        };
        match self.propose(internal, sender).await? {
            AuthResponse::UserAdd(mut resp) => {
                resp.header = self.header();
                Ok(Response::new(resp))
            }
            _ => Err(Status::internal(
                "apply answered UserAdd with another kind of response",
            )),
        }
    }

    async fn user_get(
        &self,
        request: Request<AuthUserGetRequest>,
    ) -> Result<Response<AuthUserGetResponse>, Status> {
        through_raft!(self, request, auth_user_get, UserGet)
    }

    async fn user_list(
        &self,
        request: Request<AuthUserListRequest>,
    ) -> Result<Response<AuthUserListResponse>, Status> {
        through_raft!(self, request, auth_user_list, UserList)
    }

    async fn user_delete(
        &self,
        request: Request<AuthUserDeleteRequest>,
    ) -> Result<Response<AuthUserDeleteResponse>, Status> {
        through_raft!(self, request, auth_user_delete, UserDelete)
    }

    async fn user_change_password(
        &self,
        request: Request<AuthUserChangePasswordRequest>,
    ) -> Result<Response<AuthUserChangePasswordResponse>, Status> {
        let sender = sender(&self.server, &request).await?;
        self.check_admin(&sender)?;
        let mut req = request.into_inner();
        if req.hashed_password.is_empty() {
            req.hashed_password = self.hash(std::mem::take(&mut req.password)).await?;
        }
        req.password.clear();
        let internal = InternalRaftRequest {
            auth_user_change_password: Some(req),
            ..Default::default()
        };
        match self.propose(internal, sender).await? {
            AuthResponse::UserChangePassword(mut resp) => {
                resp.header = self.header();
                Ok(Response::new(resp))
            }
            _ => Err(Status::internal(
                "apply answered UserChangePassword with another kind of response",
            )),
        }
    }

    async fn user_grant_role(
        &self,
        request: Request<AuthUserGrantRoleRequest>,
    ) -> Result<Response<AuthUserGrantRoleResponse>, Status> {
        through_raft!(self, request, auth_user_grant_role, UserGrantRole)
    }

    async fn user_revoke_role(
        &self,
        request: Request<AuthUserRevokeRoleRequest>,
    ) -> Result<Response<AuthUserRevokeRoleResponse>, Status> {
        through_raft!(self, request, auth_user_revoke_role, UserRevokeRole)
    }

    async fn role_add(
        &self,
        request: Request<AuthRoleAddRequest>,
    ) -> Result<Response<AuthRoleAddResponse>, Status> {
        through_raft!(self, request, auth_role_add, RoleAdd)
    }

    async fn role_get(
        &self,
        request: Request<AuthRoleGetRequest>,
    ) -> Result<Response<AuthRoleGetResponse>, Status> {
        through_raft!(self, request, auth_role_get, RoleGet)
    }

    async fn role_list(
        &self,
        request: Request<AuthRoleListRequest>,
    ) -> Result<Response<AuthRoleListResponse>, Status> {
        through_raft!(self, request, auth_role_list, RoleList)
    }

    async fn role_delete(
        &self,
        request: Request<AuthRoleDeleteRequest>,
    ) -> Result<Response<AuthRoleDeleteResponse>, Status> {
        through_raft!(self, request, auth_role_delete, RoleDelete)
    }

    async fn role_grant_permission(
        &self,
        request: Request<AuthRoleGrantPermissionRequest>,
    ) -> Result<Response<AuthRoleGrantPermissionResponse>, Status> {
        through_raft!(
            self,
            request,
            auth_role_grant_permission,
            RoleGrantPermission
        )
    }

    async fn role_revoke_permission(
        &self,
        request: Request<AuthRoleRevokePermissionRequest>,
    ) -> Result<Response<AuthRoleRevokePermissionResponse>, Status> {
        through_raft!(
            self,
            request,
            auth_role_revoke_permission,
            RoleRevokePermission
        )
    }
}
