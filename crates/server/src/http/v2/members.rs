//! `/v2/members` (list, leader, add, remove, update) and `/v2/machines`, through the same
//! membership changes as the v3 Cluster service.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, Method, StatusCode};
use oxcd_api::etcdserverpb::cluster_server::Cluster as _;
use oxcd_api::etcdserverpb::{Member, MemberAddRequest, MemberRemoveRequest, MemberUpdateRequest};

use super::{http_error, json_response, method_not_allowed_with};
use crate::grpc::cluster::ClusterService;
use crate::server::EtcdServer;
use crate::v2::json::JsonWriter;

const PREFIX: &str = "/v2/members";

fn write_member(w: &mut JsonWriter, m: &Member) {
    w.field_str("id", &format!("{:x}", m.id));
    w.field_str("name", &m.name);
    w.open_array("peerURLs");
    for u in &m.peer_ur_ls {
        w.element_str(u);
    }
    w.close_array();
    w.open_array("clientURLs");
    for u in &m.client_ur_ls {
        w.element_str(u);
    }
    w.close_array();
}

fn member_json(m: &Member) -> String {
    let mut w = JsonWriter::default();
    w.open();
    write_member(&mut w, m);
    w.close();
    w.finish_line()
}

/// How long a member list waits for this member to catch up with the cluster.
const MEMBER_LIST_BARRIER: std::time::Duration = std::time::Duration::from_millis(500);

pub async fn handle(State(server): State<Arc<EtcdServer>>, request: Request) -> Response {
    let method = request.method().clone();
    if !matches!(method.as_str(), "GET" | "POST" | "DELETE" | "PUT") {
        return method_not_allowed_with("GET,POST,DELETE,PUT");
    }
    let credentials = super::auth::Credentials::of(request.headers(), request.extensions());
    if !super::auth::has_write_root_access(&server, &method, &credentials).await {
        return super::auth::no_auth();
    }
    let mut resp = serve(&server, request).await;
    if let Ok(v) = HeaderValue::from_str(&format!("{:x}", server.cluster_id)) {
        resp.headers_mut().insert("x-etcd-cluster-id", v);
    }
    resp
}

async fn serve(server: &Arc<EtcdServer>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let rest = parts
        .uri
        .path()
        .strip_prefix(PREFIX)
        .unwrap_or("")
        .trim_start_matches('/')
        .to_owned();
    let cluster = ClusterService::new(server.clone());
    match parts.method {
        Method::GET => match rest.as_str() {
            "" => {
                // Everything committed is applied first, so a member that just published
                // itself is listed with its client URLs (etcdctl cluster-health asks once).
                // Without a quorum (a member just added and not started yet) the local list
                // is answered at once, as etcd answers it.
                let barrier = server.linearizable_read_barrier();
                match tokio::time::timeout(MEMBER_LIST_BARRIER, barrier).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::debug!(error = %e, "member list without a read barrier"),
                    Err(_) => tracing::debug!("member list without a read barrier: no quorum"),
                }
                let mut w = JsonWriter::default();
                w.open();
                w.open_array("members");
                for m in server.membership.list() {
                    w.open_element();
                    write_member(&mut w, &m);
                    w.close();
                }
                w.close_array();
                w.close();
                json_response(StatusCode::OK, w.finish_line())
            }
            "leader" => match server.membership.get(server.raft_status.leader()) {
                Some(m) => json_response(StatusCode::OK, member_json(&m)),
                None => http_error(StatusCode::SERVICE_UNAVAILABLE, "During election"),
            },
            _ => http_error(StatusCode::NOT_FOUND, "Not found"),
        },
        Method::POST => {
            let urls = match peer_urls(&parts.headers, body).await {
                Ok(urls) => urls,
                Err(resp) => return resp,
            };
            let req = MemberAddRequest {
                peer_ur_ls: urls,
                is_learner: false,
            };
            match cluster.member_add(tonic::Request::new(req)).await {
                Ok(resp) => {
                    let m = resp.into_inner().member.unwrap_or_default();
                    json_response(StatusCode::CREATED, member_json(&m))
                }
                Err(status) => member_error(&status, ""),
            }
        }
        Method::DELETE => {
            let Some(id) = member_id(&rest) else {
                return id_error(&rest);
            };
            if server.membership.is_removed(id) {
                return http_error(
                    StatusCode::GONE,
                    &format!("Member permanently removed: {id:x}"),
                );
            }
            match cluster
                .member_remove(tonic::Request::new(MemberRemoveRequest { id }))
                .await
            {
                Ok(_) => StatusCode::NO_CONTENT.into_response(),
                Err(status) => member_error(&status, &format!("{id:x}")),
            }
        }
        _ => {
            let Some(id) = member_id(&rest) else {
                return id_error(&rest);
            };
            let urls = match peer_urls(&parts.headers, body).await {
                Ok(urls) => urls,
                Err(resp) => return resp,
            };
            let req = MemberUpdateRequest {
                id,
                peer_ur_ls: urls,
            };
            match cluster.member_update(tonic::Request::new(req)).await {
                Ok(_) => StatusCode::NO_CONTENT.into_response(),
                Err(status) => member_error(&status, &format!("{id:x}")),
            }
        }
    }
}

/// `DELETE`/`PUT` without an id are not allowed; an id that is not hex is not found.
fn id_error(rest: &str) -> Response {
    if rest.is_empty() {
        return super::super::plain_text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n");
    }
    http_error(StatusCode::NOT_FOUND, &format!("No such member: {rest}"))
}

fn member_id(s: &str) -> Option<u64> {
    u64::from_str_radix(s, 16).ok()
}

/// The `peerURLs` of a JSON body, with etcd's refusals.
async fn peer_urls(
    headers: &http::HeaderMap,
    body: axum::body::Body,
) -> Result<Vec<String>, Response> {
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let ctype = match ctype.find(';') {
        Some(i) => ctype[..i].trim().to_ascii_lowercase(),
        None => ctype.to_owned(),
    };
    if ctype != "application/json" {
        return Err(http_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &format!("Bad Content-Type {ctype}, accept application/json"),
        ));
    }
    let bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .map_err(|e| http_error(StatusCode::BAD_REQUEST, &e.to_string()))?;
    #[derive(serde::Deserialize)]
    struct Body {
        #[serde(rename = "peerURLs", default)]
        peer_urls: Vec<String>,
    }
    let parsed: Body = serde_json::from_slice(&bytes)
        .map_err(|e| http_error(StatusCode::BAD_REQUEST, &e.to_string()))?;
    for u in &parsed.peer_urls {
        if let Err(e) = crate::config::EtcdUrl::parse(u) {
            return Err(http_error(StatusCode::BAD_REQUEST, &e.to_string()));
        }
    }
    Ok(parsed.peer_urls)
}

/// A refused membership change as etcd's v2 API words it.
fn member_error(status: &tonic::Status, id: &str) -> Response {
    match status.message() {
        "etcdserver: Peer URLs already exists" => {
            http_error(StatusCode::CONFLICT, "membership: peerURL exists")
        }
        "etcdserver: member ID already exist" => {
            http_error(StatusCode::CONFLICT, "membership: ID exists")
        }
        "etcdserver: member not found" => {
            http_error(StatusCode::NOT_FOUND, &format!("No such member: {id}"))
        }
        "etcdserver: given member URLs are invalid" => {
            http_error(StatusCode::BAD_REQUEST, status.message())
        }
        other => {
            tracing::warn!(
                "internal-server-error" = other,
                "unexpected v2 response error"
            );
            http_error(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
        }
    }
}

/// `/v2/machines`: every member's client URLs.
pub async fn machines(State(server): State<Arc<EtcdServer>>, request: Request) -> Response {
    if !matches!(request.method().as_str(), "GET" | "HEAD") {
        return method_not_allowed_with("GET,HEAD");
    }
    let mut urls: Vec<String> = server
        .membership
        .list()
        .into_iter()
        .flat_map(|m| m.client_ur_ls)
        .collect();
    urls.sort();
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )],
        urls.join(", "),
    )
        .into_response()
}
