//! etcd's v2 HTTP API, served with `--enable-v2`:
//!
//! | path | module |
//! |---|---|
//! | `/v2/keys/...` | [`keys`] |
//! | `/v2/members/...`, `/v2/machines` | [`members`] |
//! | `/v2/stats/self`, `/v2/stats/leader`, `/v2/stats/store` | [`stats`] |
//! | `/v2/auth/enable`, `/v2/auth/users/...`, `/v2/auth/roles/...` | [`auth`], which also checks the others |

mod auth;
mod form;
pub mod keys;
mod members;
mod stats;

use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use axum::routing::any;
use http::{header, HeaderValue, StatusCode};

use crate::server::EtcdServer;

/// The v2 routes of a member.
pub fn routes(server: Arc<EtcdServer>) -> axum::Router {
    stats::start(server.clone());
    axum::Router::new()
        .route("/v2/keys", any(keys::handle))
        .route("/v2/keys/", any(keys::handle))
        .route("/v2/keys/{*key}", any(keys::handle))
        .route("/v2/members", any(members::handle))
        .route("/v2/members/", any(members::handle))
        .route("/v2/members/{*id}", any(members::handle))
        .route("/v2/machines", any(members::machines))
        .route("/v2/stats/store", any(stats::store))
        .route("/v2/stats/self", any(stats::self_stats))
        .route("/v2/stats/leader", any(stats::leader))
        .route("/v2/auth/enable", any(auth::enable))
        .route("/v2/auth/users", any(auth::users))
        .route("/v2/auth/users/{*name}", any(auth::users))
        .route("/v2/auth/roles", any(auth::roles))
        .route("/v2/auth/roles/{*name}", any(auth::roles))
        .with_state(server)
}

/// A JSON body with its status.
pub(crate) fn json_response(status: StatusCode, body: String) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// etcd's `allowMethod` refusal: the allowed methods and Go's plain-text 405.
pub(crate) fn method_not_allowed_with(allow: &'static str) -> Response {
    let mut resp = super::plain_text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n");
    resp.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    resp
}

/// etcd's `httptypes.HTTPError`: `{"message":"..."}` with a status, no newline.
pub(crate) fn http_error(status: StatusCode, message: &str) -> Response {
    let mut w = crate::v2::json::JsonWriter::default();
    w.open();
    w.field_str("message", message);
    w.close();
    json_response(status, w.finish())
}
