//! Health endpoints, as etcd 3.5 serves them.
//!
//! - `/health`: `{"health":"true","reason":""}` when no alarm is active, this member has a
//!   leader and a linearizable read succeeds; with `?serializable=true`, a local read is
//!   enough and a missing leader does not matter; `?exclude=NOSPACE` ignores that alarm. A
//!   failure is 503 with the reason (`ALARM NOSPACE`, `ALARM CORRUPT`, `RAFT NO LEADER`,
//!   `RANGE ERROR:<error>`). Presenting as etcd 3.4 (`--experimental-emulate-etcd-version`),
//!   the body is 3.4's: `{"health":"true"}`, without the reason.
//! - `/livez` and `/readyz` (Kubernetes probes): `ok` when every check passes, else 503 with
//!   one `[+]name ok` / `[-]name failed: reason` line per check. `?verbose` lists the
//!   checks on success too; `?exclude=name` skips one; `/readyz/<name>` runs one.
//!   `/livez` checks that a local read works; `/readyz` also checks that no CORRUPT alarm is
//!   active, that a linearizable read works and that this member is not a learner.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::response::Response;
use axum::routing::get;
use http::{header, HeaderValue, StatusCode};
use metrics::counter;
use oxcd_api::etcdserverpb::AlarmType;
use oxcd_storage::RangeOptions;

use crate::error::ServerError;
use crate::server::EtcdServer;

/// A named check for `/livez` and `/readyz`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Check {
    DataCorruption,
    SerializableRead,
    LinearizableRead,
    NonLearner,
}

impl Check {
    fn name(self) -> &'static str {
        match self {
            Check::DataCorruption => "data_corruption",
            Check::SerializableRead => "serializable_read",
            Check::LinearizableRead => "linearizable_read",
            Check::NonLearner => "non_learner",
        }
    }

    async fn run(self, server: &EtcdServer) -> Result<(), String> {
        match self {
            Check::DataCorruption => {
                let corrupt = server.alarms.list(Some(AlarmType::Corrupt as i32));
                if corrupt.is_empty() {
                    Ok(())
                } else {
                    Err("alarm activated: CORRUPT".to_owned())
                }
            }
            Check::SerializableRead => read(server, true).await,
            Check::LinearizableRead => read(server, false).await,
            Check::NonLearner => {
                let learner = server
                    .membership
                    .get(server.member_id)
                    .is_some_and(|m| m.is_learner);
                if learner {
                    Err("not supported for learner".to_owned())
                } else {
                    Ok(())
                }
            }
        }
    }
}

const LIVEZ: &[Check] = &[Check::SerializableRead];
const READYZ: &[Check] = &[
    Check::DataCorruption,
    Check::SerializableRead,
    Check::LinearizableRead,
    Check::NonLearner,
];

/// The health routes, for the client port and the metrics port.
pub fn routes(server: Arc<EtcdServer>) -> axum::Router {
    let mut router = axum::Router::new().route("/health", get(health).fallback(get_only));
    for (root, checks) in [("/livez", LIVEZ), ("/readyz", READYZ)] {
        router = router.route(
            root,
            get(
                move |State(s): State<Arc<EtcdServer>>, RawQuery(q): RawQuery| async move {
                    probe(&s, checks, q.as_deref(), root).await
                },
            )
            .fallback(get_only),
        );
        for &check in checks {
            router = router.route(
                &format!("{root}/{}", check.name()),
                get(
                    move |State(s): State<Arc<EtcdServer>>, RawQuery(q): RawQuery| async move {
                        probe(&s, &[check], q.as_deref(), root).await
                    },
                )
                .fallback(get_only),
            );
        }
    }
    router.with_state(server)
}

/// A read like the one etcd's health check makes: one key, no values, through the same
/// ReadIndex path a linearizable Range takes unless `serializable`.
async fn read(server: &EtcdServer, serializable: bool) -> Result<(), String> {
    if !serializable {
        server
            .linearizable_read_barrier()
            .await
            .map_err(|e| error_text(&e))?;
    }
    let one = RangeOptions {
        limit: 1,
        keys_only: true,
        ..Default::default()
    };
    server
        .kv
        .range(b"health", b"", one)
        .map(drop)
        .map_err(|e| error_text(&ServerError::from(e)))
}

/// An error as a client would see it (etcd's text for etcd errors).
fn error_text(e: &ServerError) -> String {
    match e {
        ServerError::Etcd(err) => err.message().to_owned(),
        other => other.to_string(),
    }
}

/// `GET /health`.
async fn health(State(server): State<Arc<EtcdServer>>, RawQuery(q): RawQuery) -> Response {
    let query = Query::parse(q.as_deref());
    let serializable = query.value("serializable") == Some("true");
    let excluded: BTreeSet<&str> = query.values("exclude").collect();
    let alarm = server.alarms.list(None).into_iter().find_map(|a| {
        let name = AlarmType::try_from(a.alarm).map_or("UNKNOWN", |t| t.as_str_name());
        (!excluded.contains(name)).then_some(name)
    });
    let reason = if let Some(alarm) = alarm {
        Some(match alarm {
            "NOSPACE" | "CORRUPT" => format!("ALARM {alarm}"),
            _ => "ALARM UNKNOWN".to_owned(),
        })
    } else if !serializable && server.raft_status.leader() == raft::INVALID_ID {
        Some("RAFT NO LEADER".to_owned())
    } else {
        read(&server, serializable)
            .await
            .err()
            .map(|e| format!("RANGE ERROR:{e}"))
    };
    let healthy = reason.is_none();
    let body = if crate::config::etcd_release().health_has_reason() {
        format!(
            r#"{{"health":"{healthy}","reason":{}}}"#,
            super::gateway::json_string(reason.as_deref().unwrap_or(""))
        )
    } else {
        format!(r#"{{"health":"{healthy}"}}"#)
    };
    if healthy {
        counter!("etcd_server_health_success").increment(1);
        tracing::debug!("/health OK");
        super::plain_text(StatusCode::OK, &body)
    } else {
        counter!("etcd_server_health_failures").increment(1);
        tracing::warn!(output = body, "status-code" = 503, "/health error");
        super::plain_text(StatusCode::SERVICE_UNAVAILABLE, &format!("{body}\n"))
    }
}

/// `GET /livez`, `/readyz` and their single checks.
async fn probe(server: &EtcdServer, checks: &[Check], query: Option<&str>, root: &str) -> Response {
    let query = Query::parse(query);
    let excluded: BTreeSet<&str> = query.values("exclude").filter(|v| !v.is_empty()).collect();
    let mut report = String::new();
    let mut failed = false;
    for check in checks.iter().filter(|c| !excluded.contains(c.name())) {
        match check.run(server).await {
            Ok(()) => report.push_str(&format!("[+]{} ok\n", check.name())),
            Err(reason) => {
                failed = true;
                report.push_str(&format!("[-]{} failed: {reason}\n", check.name()));
            }
        }
    }
    let unknown: Vec<&str> = excluded
        .iter()
        .copied()
        .filter(|e| !checks.iter().any(|c| c.name() == *e))
        .collect();
    if !unknown.is_empty() {
        tracing::warn!(
            path = root,
            "missing-health-checks" = unknown.join(","),
            "some health checks cannot be excluded"
        );
    }
    if failed {
        tracing::error!(path = root, reason = report, "Health check error");
        return super::plain_text(StatusCode::SERVICE_UNAVAILABLE, &format!("{report}\n"));
    }
    if query.has("verbose") {
        report.push_str("ok\n");
    } else {
        report = "ok\n".to_owned();
    }
    super::plain_text(StatusCode::OK, &report)
}

/// Health endpoints answer GET only.
async fn get_only(body: axum::body::Body) -> Response {
    let mut resp = super::method_not_allowed(body).await;
    resp.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET"));
    resp
}

/// A URL query: `a=1&b&exclude=x&exclude=y`, percent-decoding left out (check names and
/// flags are plain words).
struct Query<'a> {
    pairs: Vec<(&'a str, &'a str)>,
}

impl<'a> Query<'a> {
    fn parse(query: Option<&'a str>) -> Query<'a> {
        let pairs = query
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| p.split_once('=').unwrap_or((p, "")))
            .collect();
        Query { pairs }
    }

    fn has(&self, key: &str) -> bool {
        self.pairs.iter().any(|(k, _)| *k == key)
    }

    fn value(&self, key: &str) -> Option<&'a str> {
        self.values(key).next()
    }

    fn values<'s>(&'s self, key: &'s str) -> impl Iterator<Item = &'a str> + 's {
        self.pairs
            .iter()
            .filter(move |(k, _)| *k == key)
            .map(|(_, v)| *v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parsing() {
        let q = Query::parse(Some("verbose&exclude=a&exclude=b&serializable=true&x="));
        assert!(q.has("verbose"));
        assert!(!q.has("nope"));
        assert_eq!(q.values("exclude").collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(q.value("serializable"), Some("true"));
        assert_eq!(q.value("x"), Some(""));
        let empty = Query::parse(None);
        assert!(!empty.has("verbose"));
    }

    #[test]
    fn check_names_are_etcds() {
        let names: Vec<_> = READYZ.iter().map(|c| c.name()).collect();
        assert_eq!(
            names,
            [
                "data_corruption",
                "serializable_read",
                "linearizable_read",
                "non_learner"
            ]
        );
        assert_eq!(LIVEZ, &[Check::SerializableRead]);
    }
}
