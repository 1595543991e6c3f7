//! `/v2/keys`: etcd's v2 keys API. Reads are served locally (or through Raft with
//! `quorum=true`), writes are proposed as `InternalRaftRequest.v2`, and `wait=true` opens a
//! watch that answers with the next event (or a stream of them with `stream=true`).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use futures::StreamExt as _;
use http::{header, HeaderValue, Method, StatusCode};
use oxcd_api::etcdserverpb::{InternalRaftRequest, Request as V2Request};

use super::form::{unescape, Form};
use super::{json_response, method_not_allowed_with};
use crate::apply::ApplyResponse;
use crate::server::EtcdServer;
use crate::v2::error::{Code, Error};
use crate::v2::store::{Event, KEYS_PREFIX};

const PREFIX: &str = "/v2/keys";

/// Largest form body read, as Go's `ParseForm`.
const MAX_FORM_BODY: usize = 10 << 20;

/// A parsed keys request: what to send through Raft or read, and how to answer.
struct KeyRequest {
    req: V2Request,
    no_value_on_success: bool,
}

pub async fn handle(State(server): State<Arc<EtcdServer>>, request: Request) -> Response {
    let method = request.method().clone();
    if !matches!(method.as_str(), "HEAD" | "GET" | "PUT" | "POST" | "DELETE") {
        return method_not_allowed_with("HEAD,GET,PUT,POST,DELETE");
    }
    let mut resp = serve(&server, request).await;
    if let Ok(v) = HeaderValue::from_str(&format!("{:x}", server.cluster_id)) {
        resp.headers_mut().insert("x-etcd-cluster-id", v);
    }
    resp
}

async fn serve(server: &Arc<EtcdServer>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, MAX_FORM_BODY).await {
        Ok(b) => b,
        Err(e) => return error_response(&Error::request(Code::InvalidForm, e.to_string())),
    };
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let parsed = parse(
        parts.method.as_str(),
        parts.uri.path(),
        parts.uri.query().unwrap_or(""),
        content_type,
        &body,
    );
    let KeyRequest {
        mut req,
        no_value_on_success,
    } = match parsed {
        Ok(r) => r,
        Err(e) => return error_response(&e),
    };
    // As etcd, permissions match the path as sent, not cleaned ("/foo/" is under "/foo/*").
    let raw = unescape(parts.uri.path(), false).unwrap_or_default();
    let key = raw.strip_prefix(PREFIX).unwrap_or("");
    let credentials = super::auth::Credentials::of(&parts.headers, &parts.extensions);
    if !super::auth::has_key_access(server, &parts.method, &credentials, key, req.recursive()).await
    {
        return error_response(&Error::new(
            Code::Unauthorized,
            "Insufficient credentials",
            0,
        ));
    }
    if parts.method == Method::GET && req.quorum() {
        req.method = Some("QGET".into());
    }
    let result = match req.method() {
        "GET" | "HEAD" if req.wait() => return watch(server, &req).await,
        "GET" | "HEAD" => server.v2.get(req.path(), req.recursive()),
        _ => match propose(server, req).await {
            Ok(r) => r,
            Err(text) => Err(Error::new(Code::RaftInternal, text, 0)),
        },
    };
    match result {
        Ok(event) => event_response(
            server,
            &event,
            no_value_on_success,
            parts.method == Method::HEAD,
        ),
        Err(mut e) => {
            if let Some(rest) = e.cause.strip_prefix(KEYS_PREFIX) {
                e.cause = rest.to_owned();
            }
            error_response(&e)
        }
    }
}

/// Sends a v2 request through Raft; `Err` holds the text of a non-v2 failure.
async fn propose(server: &EtcdServer, req: V2Request) -> Result<Result<Event, Error>, String> {
    let internal = InternalRaftRequest {
        v2: Some(req),
        ..Default::default()
    };
    match server.propose(internal).await {
        Ok(ApplyResponse::V2(Some(result))) => Ok(result),
        Ok(_) => Err("received response with no Event/Watcher".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// Reads the request as etcd's `parseKeyRequest` does, with its errors.
fn parse(
    method: &str,
    raw_path: &str,
    query: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<KeyRequest, Error> {
    let form = Form::parse(method, content_type, body, query)
        .map_err(|e| Error::request(Code::InvalidForm, e))?;
    let path = unescape(raw_path, false).map_err(|e| Error::request(Code::InvalidForm, e))?;
    let Some(key) = path.strip_prefix(PREFIX) else {
        return Err(Error::request(Code::InvalidForm, "incorrect key prefix"));
    };
    let path = crate::v2::store::clean(&format!("{KEYS_PREFIX}/{key}"));
    let index_nan =
        |name: &str| Error::request(Code::IndexNaN, format!("invalid value for \"{name}\""));
    let invalid =
        |name: &str| Error::request(Code::InvalidField, format!("invalid value for \"{name}\""));
    let prev_index = form.u64("prevIndex").map_err(|_| index_nan("prevIndex"))?;
    let wait_index = form.u64("waitIndex").map_err(|_| index_nan("waitIndex"))?;
    let flag = |name: &str| form.bool(name).map_err(|_| invalid(name));
    let recursive = flag("recursive")?;
    let sorted = flag("sorted")?;
    let wait = flag("wait")?;
    let dir = flag("dir")?;
    let quorum = flag("quorum")?;
    let stream = flag("stream")?;
    if wait && method != "GET" {
        return Err(Error::request(
            Code::InvalidField,
            "\"wait\" can only be used with GET requests",
        ));
    }
    let prev_value = form.value("prevValue");
    if form.has("prevValue") && prev_value.is_empty() {
        return Err(Error::request(
            Code::PrevValueRequired,
            "\"prevValue\" cannot be empty",
        ));
    }
    let no_value_on_success = flag("noValueOnSuccess")?;
    let ttl = if form.value("ttl").is_empty() {
        None
    } else {
        Some(
            form.u64("ttl")
                .map_err(|_| Error::request(Code::TtlNaN, "invalid value for \"ttl\""))?,
        )
    };
    let prev_exist = if form.has("prevExist") {
        Some(
            form.bool("prevExist")
                .map_err(|_| Error::request(Code::InvalidField, "invalid value for prevExist"))?,
        )
    } else {
        None
    };
    let refresh = if form.has("refresh") {
        let refresh = form
            .bool("refresh")
            .map_err(|_| Error::request(Code::InvalidField, "invalid value for refresh"))?;
        if refresh {
            if form.has("value") && !form.value("value").is_empty() {
                return Err(Error::request(
                    Code::RefreshValue,
                    "A value was provided on a refresh",
                ));
            }
            if ttl.is_none() {
                return Err(Error::request(Code::RefreshTtlRequired, "No TTL value set"));
            }
        }
        Some(refresh)
    } else {
        None
    };
    let expiration = ttl.map(|ttl| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64);
        now.saturating_add((ttl as i64).saturating_mul(1_000_000_000))
    });
    Ok(KeyRequest {
        req: V2Request {
            method: Some(method.to_owned()),
            path: Some(path),
            val: Some(form.value("value").to_owned()),
            dir: Some(dir),
            prev_value: Some(prev_value.to_owned()),
            prev_index: Some(prev_index),
            prev_exist,
            expiration,
            wait: Some(wait),
            since: Some(wait_index),
            recursive: Some(recursive),
            sorted: Some(sorted),
            quorum: Some(quorum),
            stream: Some(stream),
            refresh,
            ..Default::default()
        },
        no_value_on_success,
    })
}

fn raft_headers(
    server: &EtcdServer,
    builder: http::response::Builder,
    etcd_index: u64,
) -> http::response::Builder {
    builder
        .header(header::CONTENT_TYPE, "application/json")
        .header("x-etcd-index", etcd_index)
        .header("x-raft-index", server.raft_status.commit())
        .header("x-raft-term", server.raft_status.term())
}

fn event_response(server: &EtcdServer, e: &Event, no_value: bool, head: bool) -> Response {
    let status = if e.is_created() {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let no_value = no_value
        && matches!(
            e.action.as_str(),
            "set" | "compareAndSwap" | "create" | "update"
        );
    let body = if head {
        Body::empty()
    } else {
        Body::from(e.to_json(KEYS_PREFIX, no_value))
    };
    raft_headers(server, Response::builder().status(status), e.etcd_index)
        .body(body)
        .unwrap_or_default()
}

/// A v2 error as etcd writes it.
pub fn error_response(e: &Error) -> Response {
    let mut resp = json_response(
        StatusCode::from_u16(e.code.status()).unwrap_or(StatusCode::BAD_REQUEST),
        e.to_json(),
    );
    resp.headers_mut().insert("x-etcd-index", e.index.into());
    resp
}

/// `wait=true`: headers at once, then the next event, or every event with `stream=true`.
async fn watch(server: &Arc<EtcdServer>, req: &V2Request) -> Response {
    let watcher = match server
        .v2
        .watch(req.path(), req.recursive(), req.stream(), req.since())
    {
        Ok(w) => w,
        Err(e) => return error_response(&e),
    };
    let stream = req.stream();
    let start = watcher.start_index;
    let events = futures::stream::unfold(Some(watcher), move |watcher| async move {
        let mut watcher = watcher?;
        let event = watcher.events.recv().await?;
        let chunk = bytes::Bytes::from(event.to_json(KEYS_PREFIX, false));
        Some((
            Ok::<_, std::convert::Infallible>(chunk),
            stream.then_some(watcher),
        ))
    });
    raft_headers(server, Response::builder().status(StatusCode::OK), start)
        .body(Body::from_stream(events.boxed()))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_err(method: &str, query: &str) -> Error {
        parse(method, "/v2/keys/foo", query, None, b"")
            .err()
            .unwrap()
    }

    #[test]
    fn parse_errors_match_etcd() {
        let e = parse_err("PUT", "prevIndex=zz");
        assert_eq!(
            (e.code, e.cause.as_str()),
            (Code::IndexNaN, "invalid value for \"prevIndex\"")
        );
        let e = parse_err("PUT", "wait=true");
        assert_eq!(e.cause, "\"wait\" can only be used with GET requests");
        let e = parse_err("PUT", "prevValue=");
        assert_eq!(e.code, Code::PrevValueRequired);
        let e = parse_err("PUT", "ttl=abc");
        assert_eq!(e.code, Code::TtlNaN);
        let e = parse_err("PUT", "refresh=true");
        assert_eq!(e.code, Code::RefreshTtlRequired);
        let e = parse_err("PUT", "refresh=true&ttl=5&value=x");
        assert_eq!(e.code, Code::RefreshValue);
        let e = parse_err("GET", "recursive=maybe");
        assert_eq!(e.cause, "invalid value for \"recursive\"");
    }

    #[test]
    fn paths_join_the_keys_namespace() {
        let r = parse("GET", "/v2/keys/a%20b/", "", None, b"").unwrap();
        assert_eq!(r.req.path(), "/1/a b");
        let r = parse("GET", "/v2/keys", "", None, b"").unwrap();
        assert_eq!(r.req.path(), "/1");
    }
}
