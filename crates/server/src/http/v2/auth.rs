//! `/v2/auth/...` (enable, users, roles) and the v2 permission checks of the other v2
//! paths, over [`crate::v2::auth`].

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use http::{HeaderMap, HeaderValue, Method, StatusCode};

use super::{http_error, json_response, method_not_allowed_with};
use crate::listen::ClientCertificates;
use crate::server::EtcdServer;
use crate::v2::auth::{AuthError, AuthStore, Role, User, GUEST, ROOT};

const PREFIX: &str = "/v2/auth";

/// Who a v2 request says it is: `Authorization: Basic` credentials, or else the verified
/// client certificate chain its TLS connection presented.
pub struct Credentials<'a> {
    headers: &'a HeaderMap,
    certificates: Option<&'a ClientCertificates>,
}

impl<'a> Credentials<'a> {
    pub fn of(headers: &'a HeaderMap, extensions: &'a http::Extensions) -> Self {
        Credentials {
            headers,
            certificates: extensions.get(),
        }
    }

    fn has_basic_auth(&self) -> bool {
        self.headers.get(http::header::AUTHORIZATION).is_some()
    }

    /// The user named by `Authorization: Basic`, if its password is right.
    async fn user_from_basic_auth(&self, store: &AuthStore<'_>) -> Option<User> {
        let Some((name, password)) = basic_auth(self.headers) else {
            tracing::warn!("malformed basic auth encoding");
            return None;
        };
        store.check_password(&name, &password).await
    }

    /// The first user named by the Common Name of a certificate in the verified chain, the
    /// trusted CA included, as etcd 3.4 searches Go's verified chains.
    async fn user_from_client_certificate(&self, store: &AuthStore<'_>) -> Option<User> {
        for name in chain_common_names(self.certificates?) {
            tracing::debug!("common-name" = name, "found common name");
            if let Ok(user) = store.get_user(&name, false).await {
                tracing::debug!(
                    "user-name" = user.user,
                    "common-name" = name,
                    "authenticated a user via common name"
                );
                return Some(user);
            }
        }
        None
    }

    /// The user for a request that must name one: by basic auth when it sends it, otherwise
    /// by certificate with `--client-cert-auth`.
    async fn user(&self, server: &EtcdServer, store: &AuthStore<'_>) -> Option<User> {
        if !self.has_basic_auth() && server.auth.client_cert_auth() {
            self.user_from_client_certificate(store).await
        } else {
            self.user_from_basic_auth(store).await
        }
    }
}

/// The Common Names along a presented chain (leaf first) and of the CA that issued its last
/// certificate: the handshake verified the chain up to a trusted CA, whose subject is that
/// certificate's issuer.
fn chain_common_names(certificates: &ClientCertificates) -> Vec<String> {
    let parsed: Vec<_> = certificates
        .0
        .iter()
        .filter_map(|der| x509_parser::parse_x509_certificate(der).ok().map(|c| c.1))
        .collect();
    let first_cn = |name: &x509_parser::x509::X509Name<'_>| {
        name.iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_owned)
    };
    let mut names: Vec<String> = parsed
        .iter()
        .filter_map(|c| first_cn(c.subject()))
        .collect();
    if let Some(last) = parsed.last() {
        if last.issuer() != last.subject() {
            names.extend(first_cn(last.issuer()));
        }
    }
    names
}

/// `Authorization: Basic` credentials.
fn basic_auth(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// Whether the request may use root-only resources (always, with auth off).
pub async fn has_root_access(server: &EtcdServer, credentials: &Credentials<'_>) -> bool {
    let store = AuthStore::new(server);
    if !store.enabled() {
        return true;
    }
    match credentials.user(server, &store).await {
        Some(user) => user.roles().iter().any(|r| r == ROOT),
        None => false,
    }
}

/// `/v2/members`: reads are free, changes need root.
pub async fn has_write_root_access(
    server: &EtcdServer,
    method: &Method,
    credentials: &Credentials<'_>,
) -> bool {
    if method == Method::GET || method == Method::HEAD {
        return true;
    }
    has_root_access(server, credentials).await
}

/// Whether the request may touch `key` (a keys-API path, `/foo`), or all under it. A request
/// that names no user acts as the guest role.
pub async fn has_key_access(
    server: &EtcdServer,
    method: &Method,
    credentials: &Credentials<'_>,
    key: &str,
    recursive: bool,
) -> bool {
    let store = AuthStore::new(server);
    if !store.enabled() {
        return true;
    }
    let write = method != Method::GET && method != Method::HEAD;
    let user = if credentials.has_basic_auth() {
        let Some(user) = credentials.user_from_basic_auth(&store).await else {
            return false;
        };
        user
    } else {
        let from_certificate = match server.auth.client_cert_auth() {
            true => credentials.user_from_client_certificate(&store).await,
            false => None,
        };
        let Some(user) = from_certificate else {
            return match store.get_role(GUEST, false).await {
                Ok(role) => role.has_key_access(key, write),
                Err(_) => false,
            };
        };
        user
    };
    for name in user.roles() {
        let Ok(role) = store.get_role(name, false).await else {
            continue;
        };
        let allowed = if recursive {
            role.has_recursive_access(key, write)
        } else {
            role.has_key_access(key, write)
        };
        if allowed {
            return true;
        }
    }
    tracing::warn!(
        "user-name" = user.user,
        key,
        "invalid access for user on key"
    );
    false
}

pub fn no_auth() -> Response {
    http_error(StatusCode::UNAUTHORIZED, "Insufficient credentials")
}

fn auth_error(e: AuthError) -> Response {
    match e {
        AuthError::Auth(status, msg) => http_error(
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            &msg,
        ),
        AuthError::V2(e) => super::keys::error_response(&e),
        AuthError::Internal(text) => {
            tracing::warn!(
                "internal-server-error" = text,
                "unexpected v2 response error"
            );
            http_error(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
        }
    }
}

fn json_line<T: serde::Serialize>(status: StatusCode, v: &T) -> Response {
    let mut body = crate::v2::json::to_go_json(v).unwrap_or_default();
    body.push('\n');
    json_response(status, body)
}

fn with_cluster(server: &EtcdServer, mut resp: Response) -> Response {
    if let Ok(v) = HeaderValue::from_str(&format!("{:x}", server.cluster_id)) {
        resp.headers_mut().insert("x-etcd-cluster-id", v);
    }
    resp
}

#[derive(serde::Serialize)]
struct UserWithRoles {
    user: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    roles: Vec<Role>,
}

/// The checks `/v2/auth/users[/<name>]` and `/v2/auth/roles[/<name>]` share: the path names a
/// `collection` member (or the collection itself), the method suits it, and the sender has root
/// access. Gives the member's name, empty for the collection.
async fn admit(
    server: &EtcdServer,
    request: &http::request::Parts,
    collection: &str,
) -> Result<String, Response> {
    let Some(name) = subject(request.uri.path(), collection) else {
        return Err(http_error(StatusCode::BAD_REQUEST, "Invalid path"));
    };
    let allowed = if name.is_empty() {
        "GET"
    } else {
        "GET,PUT,DELETE"
    };
    if !allowed.split(',').any(|m| m == request.method.as_str()) {
        return Err(method_not_allowed_with(allowed));
    }
    if !has_root_access(
        server,
        &Credentials::of(&request.headers, &request.extensions),
    )
    .await
    {
        return Err(no_auth());
    }
    Ok(name)
}

/// `/v2/auth/users`, `/v2/auth/users/<name>`.
pub async fn users(State(server): State<Arc<EtcdServer>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let name = match admit(&server, &parts, "users").await {
        Ok(name) => name,
        Err(refused) => return refused,
    };
    let store = AuthStore::new(&server);
    let resp = if name.is_empty() {
        list_users(&store).await
    } else {
        for_user(&store, &parts.method, &name, body).await
    };
    with_cluster(&server, resp.unwrap_or_else(auth_error))
}

async fn with_roles(store: &AuthStore<'_>, user: &User) -> UserWithRoles {
    let mut roles = Vec::new();
    for name in user.roles() {
        if let Ok(role) = store.get_role(name, false).await {
            roles.push(role);
        }
    }
    UserWithRoles {
        user: user.user.clone(),
        roles,
    }
}

async fn list_users(store: &AuthStore<'_>) -> Result<Response, AuthError> {
    #[derive(serde::Serialize)]
    struct Users {
        users: Option<Vec<UserWithRoles>>,
    }
    let mut users = Vec::new();
    for name in store.all_users().await? {
        let user = store.get_user(&name, false).await?;
        users.push(with_roles(store, &user).await);
    }
    let users = Users {
        users: (!users.is_empty()).then_some(users),
    };
    Ok(json_line(StatusCode::OK, &users))
}

async fn for_user(
    store: &AuthStore<'_>,
    method: &Method,
    name: &str,
    body: Body,
) -> Result<Response, AuthError> {
    match *method {
        Method::GET => {
            let user = store.get_user(name, false).await?;
            Ok(json_line(StatusCode::OK, &with_roles(store, &user).await))
        }
        Method::PUT => {
            let Ok(user) = read_json::<User>(body).await else {
                return Ok(http_error(
                    StatusCode::BAD_REQUEST,
                    "Invalid JSON in request body.",
                ));
            };
            if user.user != name {
                return Ok(http_error(
                    StatusCode::BAD_REQUEST,
                    "User JSON name does not match the name in the URL",
                ));
            }
            let changes = user.grant.as_ref().is_some_and(|g| !g.is_empty())
                || user.revoke.as_ref().is_some_and(|r| !r.is_empty());
            let (mut out, created) = if !changes {
                if !user.roles().is_empty() {
                    (store.create_user(user).await?, true)
                } else {
                    store.create_or_update_user(user).await?
                }
            } else {
                if !user.roles().is_empty() {
                    return Ok(http_error(
                        StatusCode::BAD_REQUEST,
                        "User JSON contains both roles and grant/revoke",
                    ));
                }
                (store.update_user(user).await?, false)
            };
            out.password.clear();
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok(json_line(status, &out))
        }
        _ => {
            store.delete_user(name).await?;
            Ok(StatusCode::OK.into_response())
        }
    }
}

/// `/v2/auth/roles`, `/v2/auth/roles/<name>`.
pub async fn roles(State(server): State<Arc<EtcdServer>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let name = match admit(&server, &parts, "roles").await {
        Ok(name) => name,
        Err(refused) => return refused,
    };
    let store = AuthStore::new(&server);
    let resp = if name.is_empty() {
        list_roles(&store).await
    } else {
        for_role(&store, &parts.method, &name, body).await
    };
    with_cluster(&server, resp.unwrap_or_else(auth_error))
}

async fn list_roles(store: &AuthStore<'_>) -> Result<Response, AuthError> {
    #[derive(serde::Serialize)]
    struct Roles {
        roles: Vec<Role>,
    }
    let mut roles = Vec::new();
    for name in store.all_roles().await? {
        roles.push(store.get_role(&name, false).await?);
    }
    Ok(json_line(StatusCode::OK, &Roles { roles }))
}

async fn for_role(
    store: &AuthStore<'_>,
    method: &Method,
    name: &str,
    body: Body,
) -> Result<Response, AuthError> {
    use crate::v2::auth::Permissions;
    match *method {
        Method::GET => Ok(json_line(
            StatusCode::OK,
            &store.get_role(name, false).await?,
        )),
        Method::PUT => {
            let Ok(role) = read_json::<Role>(body).await else {
                return Ok(http_error(
                    StatusCode::BAD_REQUEST,
                    "Invalid JSON in request body.",
                ));
            };
            if role.role != name {
                return Ok(http_error(
                    StatusCode::BAD_REQUEST,
                    "Role JSON name does not match the name in the URL",
                ));
            }
            if Permissions::is_empty(&role.grant) && Permissions::is_empty(&role.revoke) {
                store.create_role(&role).await?;
                return Ok(json_line(StatusCode::CREATED, &role));
            }
            if !Permissions::is_empty(&Some(role.permissions.clone())) {
                return Ok(http_error(
                    StatusCode::BAD_REQUEST,
                    "Role JSON contains both permissions and grant/revoke",
                ));
            }
            Ok(json_line(StatusCode::OK, &store.update_role(&role).await?))
        }
        _ => {
            store.delete_role(name).await?;
            Ok(StatusCode::OK.into_response())
        }
    }
}

/// `/v2/auth/enable`: GET the state, PUT to enable, DELETE to disable.
pub async fn enable(State(server): State<Arc<EtcdServer>>, request: Request) -> Response {
    if !matches!(request.method().as_str(), "GET" | "PUT" | "DELETE") {
        return method_not_allowed_with("GET,PUT,DELETE");
    }
    let credentials = Credentials::of(request.headers(), request.extensions());
    if !has_write_root_access(&server, request.method(), &credentials).await {
        return no_auth();
    }
    let store = AuthStore::new(&server);
    let resp = match *request.method() {
        Method::GET => {
            let body = format!("{{\"enabled\":{}}}\n", store.enabled());
            Ok(json_response(StatusCode::OK, body))
        }
        Method::PUT => store.enable().await.map(|_| StatusCode::OK.into_response()),
        _ => store
            .disable()
            .await
            .map(|_| StatusCode::OK.into_response()),
    };
    let mut resp = with_cluster(&server, resp.unwrap_or_else(auth_error));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// The name after `/v2/auth/<kind>`: empty for the collection, `None` for deeper paths.
fn subject(path: &str, kind: &str) -> Option<String> {
    let path = super::form::unescape(path, false).ok()?;
    let rest = path.strip_prefix(PREFIX)?;
    let clean = crate::v2::store::clean(rest);
    let pieces: Vec<&str> = clean.split('/').collect();
    match pieces.as_slice() {
        ["", k] if *k == kind => Some(String::new()),
        ["", k, name] if *k == kind => Some((*name).to_owned()),
        _ => None,
    }
}

async fn read_json<T: serde::de::DeserializeOwned>(body: Body) -> Result<T, ()> {
    let bytes = axum::body::to_bytes(body, 1 << 20).await.map_err(|_| ())?;
    serde_json::from_slice(&bytes).map_err(|_| ())
}
