//! `ETCDCTL_API=2` cluster and access verbs: `member list|add|remove|update`,
//! `cluster-health`, `user ...`, `role ...` and `auth enable|disable`, over `/v2/members`,
//! each member's `/health` and `/v2/auth/...`, with etcdctl 3.4's lines and exit codes.

use std::io::{BufRead, Write};
use std::time::Duration;

use clap::Subcommand;
use oxcd_server::v2::json::to_go_json;
use serde_json::{json, Value};

use super::{Body, Failure, Keys};
use crate::{go, http};

/// The v2 etcdctl's exit codes for these verbs.
const EXIT_SERVER_ERROR: u8 = 4;
const EXIT_CLUSTER_NOT_HEALTHY: u8 = 5;

#[derive(Subcommand, Debug)]
pub enum MemberVerb {
    /// enumerate existing cluster members
    List { args: Vec<String> },
    /// add a new member to the etcd cluster
    Add { args: Vec<String> },
    /// remove an existing member from the etcd cluster
    Remove { args: Vec<String> },
    /// update an existing member in the etcd cluster
    Update { args: Vec<String> },
}

#[derive(Subcommand, Debug)]
pub enum UserVerb {
    /// add a new user for the etcd cluster
    Add { args: Vec<String> },
    /// get details for a user
    Get { args: Vec<String> },
    /// list all current users
    List { args: Vec<String> },
    /// remove a user for the etcd cluster
    Remove { args: Vec<String> },
    /// grant roles to an etcd user
    Grant {
        /// List of roles to grant or revoke
        #[arg(long)]
        roles: Vec<String>,
        args: Vec<String>,
    },
    /// revoke roles for an etcd user
    Revoke {
        /// List of roles to grant or revoke
        #[arg(long)]
        roles: Vec<String>,
        args: Vec<String>,
    },
    /// change password for a user
    Passwd { args: Vec<String> },
}

/// The flags of `role grant` and `role revoke`.
#[derive(clap::Args, Debug)]
pub struct PathAccess {
    /// Path granted (or revoked) for the role to access
    #[arg(long, default_value = "")]
    path: String,
    /// Read access
    #[arg(long)]
    read: bool,
    /// Write access
    #[arg(long)]
    write: bool,
    /// Read-write access
    #[arg(long, visible_alias = "rw")]
    readwrite: bool,
    args: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum RoleVerb {
    /// add a new role for the etcd cluster
    Add { args: Vec<String> },
    /// get details for a role
    Get { args: Vec<String> },
    /// list all roles
    List { args: Vec<String> },
    /// remove a role from the etcd cluster
    Remove { args: Vec<String> },
    /// grant path matches to an etcd role
    Grant(PathAccess),
    /// revoke path matches for an etcd role
    Revoke(PathAccess),
}

#[derive(Subcommand, Debug)]
pub enum AuthVerb {
    /// enable auth access controls
    Enable { args: Vec<String> },
    /// disable auth access controls
    Disable { args: Vec<String> },
}

/// A line on stderr and exit 1, as the v2 etcdctl ends on a client error.
fn die(text: impl std::fmt::Display) -> Failure {
    Failure {
        line: text.to_string(),
        code: super::EXIT_BAD_ARGS,
    }
}

/// `NAME:PASSWORD`, or `NAME` and a password asked for with `prompt`.
pub fn name_and_password(prompt: &str, flag: &str) -> Result<(String, String), String> {
    if let Some((name, password)) = flag.split_once(':') {
        return Ok((name.to_owned(), password.to_owned()));
    }
    print!("{prompt}");
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    println!();
    Ok((
        flag.to_owned(),
        line.trim_end_matches(['\r', '\n']).to_owned(),
    ))
}

/// One member as `/v2/members` lists it.
struct Member {
    id: String,
    name: String,
    peer_urls: Vec<String>,
    client_urls: Vec<String>,
}

impl Member {
    fn from_json(value: &Value) -> Member {
        let strings = |field: &str| -> Vec<String> {
            value[field]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|u| u.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        Member {
            id: value["id"].as_str().unwrap_or_default().to_owned(),
            name: value["name"].as_str().unwrap_or_default().to_owned(),
            peer_urls: strings("peerURLs"),
            client_urls: strings("clientURLs"),
        }
    }
}

/// An answer's body as JSON, or the decoding error as Go's client reports it.
fn body_json(response: &http::Response) -> Result<Value, String> {
    serde_json::from_slice(&response.body).map_err(|e| format!("invalid character in answer: {e}"))
}

/// The error an unexpected status carries: the `message` of a JSON error body.
fn message_error(response: &http::Response) -> String {
    match body_json(response) {
        Ok(v) => v["message"].as_str().unwrap_or_default().to_owned(),
        Err(e) => e,
    }
}

fn status_error(response: &http::Response) -> String {
    format!("unexpected status code {}", response.status)
}

/// Checks peer URLs as etcd's `types.NewURLs` does.
fn check_urls(urls: &[&str]) -> Result<(), String> {
    if urls.is_empty() {
        return Err("no valid URLs given".into());
    }
    for url in urls {
        let url = url.trim();
        let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
        if !matches!(scheme, "http" | "https" | "unix" | "unixs") {
            return Err(format!(
                "URL scheme must be http, https, unix, or unixs: {url}"
            ));
        }
        let (host, path) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
        let port_ok = host
            .rsplit_once(':')
            .is_some_and(|(h, _)| !h.contains(':') || h.starts_with('['));
        if !port_ok {
            return Err(format!(
                "URL address does not have the form \"host:port\": {url}"
            ));
        }
        if !path.is_empty() && !path.starts_with(['?', '#']) {
            return Err(format!("URL must not contain a path: {url}"));
        }
    }
    Ok(())
}

/// A JSON value as Go's `json.Marshal` writes it (the server's v2 encoder: `<`, `>`, `&`,
/// U+2028, U+2029, `\b` and `\f` escaped as Go escapes them).
fn go_json(value: &Value) -> String {
    to_go_json(value).expect("a JSON value always serializes")
}

impl Keys {
    /// A request to the v2 API whose answer the caller reads whole; a JSON body is written
    /// as Go's encoder writes it (see [`go_json`]).
    fn api(&self, method: &str, path: &str, json: Option<&str>) -> Result<http::Response, Failure> {
        let body = json.map(Body::Json);
        self.request(method, path, body, Some(self.timeout))
    }

    fn members(&self) -> Result<Vec<Member>, Failure> {
        let response = self.api("GET", "/v2/members", None)?;
        if response.status != 200 {
            return Err(die(status_error(&response)));
        }
        let body = body_json(&response).map_err(die)?;
        Ok(body["members"]
            .as_array()
            .map(|a| a.iter().map(Member::from_json).collect())
            .unwrap_or_default())
    }
}

fn escape(segment: &str) -> String {
    http::path_escape(segment)
}

/// A JSON object with its fields in the given order, as Go writes a struct.
fn go_object(fields: &[(&str, Value)]) -> String {
    let fields: Vec<String> = fields
        .iter()
        .map(|(name, value)| format!("{}:{}", go_json(&Value::from(*name)), go_json(value)))
        .collect();
    format!("{{{}}}", fields.join(","))
}

pub fn member(keys: &Keys, verb: &MemberVerb) -> Result<(), Failure> {
    match verb {
        MemberVerb::List { args } => {
            if !args.is_empty() {
                return Err(die("No arguments accepted"));
            }
            let members = keys.members()?;
            let response = keys.api("GET", "/v2/members/leader", None)?;
            let leader = if response.status == 200 {
                body_json(&response).map(|v| Member::from_json(&v))
            } else {
                Err(status_error(&response))
            }
            .map_err(|e| die(format!("Failed to get leader:  {e}")))?;
            for m in members {
                if m.name.is_empty() {
                    println!("{}[unstarted]: peerURLs={}", m.id, m.peer_urls.join(","));
                } else {
                    println!(
                        "{}: name={} peerURLs={} clientURLs={} isLeader={}",
                        m.id,
                        m.name,
                        m.peer_urls.join(","),
                        m.client_urls.join(","),
                        m.id == leader.id
                    );
                }
            }
        }
        MemberVerb::Add { args } => {
            let [name, url] = args.as_slice() else {
                return Err(die("Provide a name and a single member peerURL"));
            };
            check_urls(&[url]).map_err(die)?;
            let request = go_json(&json!({ "peerURLs": [url.trim()] }));
            let response = keys.api("POST", "/v2/members", Some(&request))?;
            let added = match response.status {
                201 => Member::from_json(&body_json(&response).map_err(die)?),
                409 => return Err(die(message_error(&response))),
                _ => return Err(die(status_error(&response))),
            };
            println!("Added member named {name} with ID {} to cluster", added.id);
            let mut conf = Vec::new();
            for m in keys.members()? {
                let member_name = if m.id == added.id { name } else { &m.name };
                for u in &m.peer_urls {
                    conf.push(format!("{member_name}={u}"));
                }
            }
            println!();
            println!("ETCD_NAME={}", go::quote(name.as_bytes()));
            println!(
                "ETCD_INITIAL_CLUSTER={}",
                go::quote(conf.join(",").as_bytes())
            );
            println!("ETCD_INITIAL_CLUSTER_STATE=\"existing\"");
        }
        MemberVerb::Remove { args } => {
            let [id] = args.as_slice() else {
                return Err(die("Provide a single member ID"));
            };
            let members = keys.members().map_err(|f| {
                die(format!(
                    "Error while verifying ID against known members: {}",
                    f.line.trim_start_matches("Error:  ")
                ))
            })?;
            let mut found = false;
            for m in &members {
                found |= &m.id == id;
                if &m.name == id {
                    eprintln!(
                        "Found a member named {}; if this is correct, please use its ID, eg:\n\tetcdctl member remove {}",
                        m.name, m.id
                    );
                    eprintln!("For more details, read the documentation at https://github.com/etcd-io/etcd/blob/master/Documentation/runtime-configuration.md#remove-a-member\n");
                }
            }
            if !found {
                return Err(die(format!(
                    "Couldn't find a member in the cluster with an ID of {id}."
                )));
            }
            let response = keys.api("DELETE", &format!("/v2/members/{}", escape(id)), None)?;
            if !matches!(response.status, 204 | 410) {
                // etcdctl ends this line without a newline.
                eprint!(
                    "Received an error trying to remove member {id}: {}",
                    status_error(&response)
                );
                let _ = std::io::stderr().flush();
                std::process::exit(1);
            }
            println!("Removed member {id} from cluster");
        }
        MemberVerb::Update { args } => {
            let [id, urls] = args.as_slice() else {
                return Err(die("Provide an ID and a list of comma separated peerURL (0xabcd http://example.com,http://example1.com)"));
            };
            let urls: Vec<&str> = urls.split(',').collect();
            check_urls(&urls).map_err(die)?;
            let urls: Vec<&str> = urls.iter().map(|u| u.trim()).collect();
            let request = go_json(&json!({ "peerURLs": urls }));
            let path = format!("/v2/members/{}", escape(id));
            let response = keys.api("PUT", &path, Some(&request))?;
            match response.status {
                204 => println!("Updated member with ID {id} in cluster"),
                404 | 409 => return Err(die(message_error(&response))),
                _ => return Err(die(status_error(&response))),
            }
        }
    }
    Ok(())
}

/// `cluster-health`: each member's `/health` on its client URLs, then the verdict.
pub fn cluster_health(keys: &Keys, forever: bool) -> Result<(), Failure> {
    let members = match keys.members() {
        Ok(members) => members,
        Err(failure) => {
            println!("cluster may be unhealthy: failed to list members");
            let line = failure.line.trim_start_matches("Error:  ");
            return Err(Failure {
                line: format!("Error:  {line}"),
                code: EXIT_SERVER_ERROR,
            });
        }
    };
    loop {
        let mut healthy = 0;
        for m in &members {
            if m.client_urls.is_empty() {
                println!(
                    "member {} is unreachable: no available published client urls",
                    m.id
                );
                continue;
            }
            let mut checked = false;
            for url in &m.client_urls {
                let answer = http::request(url, "GET", "/health", &[], "", None, Some(&keys.tls))
                    .map_err(|e| format!("Get \"{url}/health\": {e}"))
                    .and_then(|r| body_json(&r));
                let value = match answer {
                    Ok(value) => value,
                    Err(e) => {
                        println!(
                            "failed to check the health of member {} on {url}: {e}",
                            m.id
                        );
                        continue;
                    }
                };
                checked = true;
                let health = value
                    .as_object()
                    .and_then(|o| o.iter().find(|(k, _)| k.eq_ignore_ascii_case("health")))
                    .map(|(_, v)| v);
                if matches!(health, Some(Value::Bool(true)))
                    || health.and_then(Value::as_str) == Some("true")
                {
                    println!("member {} is healthy: got healthy result from {url}", m.id);
                    healthy += 1;
                } else {
                    println!(
                        "member {} is unhealthy: got unhealthy result from {url}",
                        m.id
                    );
                }
                break;
            }
            if !checked {
                println!(
                    "member {} is unreachable: [{}] are all unreachable",
                    m.id,
                    m.client_urls.join(" ")
                );
            }
        }
        if healthy == members.len() {
            println!("cluster is healthy");
        } else if healthy == 0 {
            println!("cluster is unavailable");
        } else {
            println!("cluster is degraded");
        }
        if !forever {
            if healthy == members.len() {
                return Ok(());
            }
            return Err(Failure {
                line: String::new(),
                code: EXIT_CLUSTER_NOT_HEALTHY,
            });
        }
        println!("\nnext check after 10 second...\n");
        std::thread::sleep(Duration::from_secs(10));
    }
}

/// A request to `/v2/auth/...` that succeeds with one of `ok`; else the error's message.
fn auth_call(
    keys: &Keys,
    method: &str,
    path: &str,
    body: Option<&str>,
    ok: &[u16],
) -> Result<http::Response, Failure> {
    let response = keys.api(method, path, body)?;
    if !ok.contains(&response.status) {
        return Err(die(message_error(&response)));
    }
    Ok(response)
}

fn one_user(args: &[String]) -> Result<&str, Failure> {
    match args {
        [name] => Ok(name),
        _ => Err(die("Please provide a username")),
    }
}

pub fn user(keys: &Keys, verb: &UserVerb) -> Result<(), Failure> {
    let path = |name: &str| format!("/v2/auth/users/{}", escape(name));
    match verb {
        UserVerb::List { args } => {
            if !args.is_empty() {
                return Err(die("No arguments accepted"));
            }
            let response = auth_call(keys, "GET", "/v2/auth/users", None, &[200])?;
            let body = body_json(&response).map_err(die)?;
            for user in body["users"].as_array().into_iter().flatten() {
                println!("{}", user["user"].as_str().unwrap_or_default());
            }
        }
        UserVerb::Add { args } => {
            let arg = one_user(args)?;
            let name = arg.split(':').next().unwrap_or_default();
            let (_, password) = name_and_password("New password: ", arg)
                .map_err(|e| die(format!("Error reading password: {e}")))?;
            let body = go_object(&[
                ("user", name.into()),
                ("password", password.into()),
                ("roles", Value::Null),
            ]);
            auth_call(keys, "PUT", &path(name), Some(&body), &[200, 201])?;
            println!("User {name} created");
        }
        UserVerb::Remove { args } => {
            let name = one_user(args)?;
            auth_call(keys, "DELETE", &path(name), None, &[200, 201])?;
            println!("User {name} removed");
        }
        UserVerb::Passwd { args } => {
            let name = one_user(args)?;
            let (_, password) = name_and_password("New password: ", "")
                .map_err(|e| die(format!("Error reading password: {e}")))?;
            let body = go_object(&[
                ("user", name.into()),
                ("password", password.into()),
                ("roles", Value::Null),
            ]);
            auth_call(keys, "PUT", &path(name), Some(&body), &[200])?;
            println!("Password updated");
        }
        UserVerb::Grant { roles, args } | UserVerb::Revoke { roles, args } => {
            if roles.is_empty() {
                return Err(die("No roles specified; please use `--roles`"));
            }
            let name = one_user(args)?;
            let change = if matches!(verb, UserVerb::Grant { .. }) {
                "grant"
            } else {
                "revoke"
            };
            let body = go_object(&[
                ("user", name.into()),
                ("roles", Value::Null),
                (change, json!(roles)),
            ]);
            auth_call(keys, "PUT", &path(name), Some(&body), &[200])?;
            println!("User {name} updated");
        }
        UserVerb::Get { args } => {
            let name = one_user(args)?;
            let response = auth_call(keys, "GET", &path(name), None, &[200])?;
            let body = body_json(&response).map_err(die)?;
            // The roles come as names, or as whole roles. For whole roles Go's client
            // first decodes each as an empty name, then appends the names: etcdctl
            // prints both.
            let listed: &[Value] = body["roles"].as_array().map_or(&[], Vec::as_slice);
            let mut roles: Vec<&str> = listed.iter().filter_map(Value::as_str).collect();
            if roles.len() != listed.len() {
                roles = vec![""; listed.len()];
                roles.extend(
                    listed
                        .iter()
                        .map(|r| r["role"].as_str().unwrap_or_default()),
                );
            }
            println!("User: {}", body["user"].as_str().unwrap_or_default());
            println!("Roles: {}", roles.join(" "));
        }
    }
    Ok(())
}

fn one_role(args: &[String]) -> Result<&str, Failure> {
    match args {
        [name] => Ok(name),
        _ => Err(die("Please provide a role name")),
    }
}

/// Go's `path.Clean` of a rooted path, keeping a final slash (etcd's
/// `pathutil.CanonicalURLPath`).
pub(crate) fn canonical_path(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            _ => parts.push(part),
        }
    }
    let mut clean = format!("/{}", parts.join("/"));
    if path.ends_with('/') && clean != "/" {
        clean.push('/');
    }
    clean
}

pub fn role(keys: &Keys, verb: &RoleVerb) -> Result<(), Failure> {
    let path = |name: &str| format!("/v2/auth/roles/{}", escape(name));
    match verb {
        RoleVerb::List { args } => {
            if !args.is_empty() {
                return Err(die("No arguments accepted"));
            }
            let response = keys.api("GET", "/v2/auth/roles", None)?;
            if response.status != 200 {
                return Err(die(status_error(&response)));
            }
            let body = body_json(&response).map_err(die)?;
            for role in body["roles"].as_array().into_iter().flatten() {
                println!("{}", role["role"].as_str().unwrap_or_default());
            }
        }
        RoleVerb::Add { args } => {
            let name = one_role(args)?;
            if keys.api("GET", &path(name), None)?.status == 200 {
                return Err(die(format!("Role {name} already exists")));
            }
            let body = go_object(&[
                ("role", name.into()),
                (
                    "permissions",
                    json!({ "kv": { "read": null, "write": null } }),
                ),
            ]);
            auth_call(keys, "PUT", &path(name), Some(&body), &[200, 201])?;
            println!("Role {name} created");
        }
        RoleVerb::Remove { args } => {
            let name = one_role(args)?;
            auth_call(keys, "DELETE", &path(name), None, &[200, 201])?;
            println!("Role {name} removed");
        }
        RoleVerb::Get { args } => {
            let name = one_role(args)?;
            let response = auth_call(keys, "GET", &path(name), None, &[200])?;
            let body = body_json(&response).map_err(die)?;
            println!("Role: {}", body["role"].as_str().unwrap_or_default());
            for (title, field) in [("KV Read", "read"), ("KV Write", "write")] {
                println!("{title}:");
                for prefix in body["permissions"]["kv"][field]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    println!("\t{}", prefix.as_str().unwrap_or_default());
                }
            }
        }
        RoleVerb::Grant(access) | RoleVerb::Revoke(access) => {
            let grant = matches!(verb, RoleVerb::Grant(_));
            if access.path.is_empty() {
                return Err(die("No path specified; please use `--path`"));
            }
            let canonical = canonical_path(&access.path);
            if canonical != access.path {
                return Err(die(format!(
                    "Not canonical path; please use `--path={canonical}`"
                )));
            }
            let chosen = [access.read, access.write, access.readwrite];
            if chosen.iter().filter(|on| **on).count() != 1 {
                return Err(die(
                    "Please specify exactly one of --read, --write or --readwrite",
                ));
            }
            let name = one_role(&access.args)?;
            let prefixes = json!([access.path]);
            let kv = json!({
                "read": if access.write { Value::Null } else { prefixes.clone() },
                "write": if access.read { Value::Null } else { prefixes },
            });
            let current = auth_call(keys, "GET", &path(name), None, &[200])?;
            let change = if grant { "grant" } else { "revoke" };
            let body = go_object(&[
                ("role", name.into()),
                (
                    "permissions",
                    json!({ "kv": { "read": null, "write": null } }),
                ),
                (change, json!({ "kv": kv })),
            ]);
            let updated = auth_call(keys, "PUT", &path(name), Some(&body), &[200])?;
            if body_json(&current).ok() == body_json(&updated).ok() {
                print!(
                    "Role unchanged; already {}",
                    if grant { "granted" } else { "revoked" }
                );
            }
            println!("Role {name} updated");
        }
    }
    Ok(())
}

pub fn auth(keys: &Keys, verb: &AuthVerb) -> Result<(), Failure> {
    let (AuthVerb::Enable { args } | AuthVerb::Disable { args }) = verb;
    if !args.is_empty() {
        return Err(die("No arguments accepted"));
    }
    let enable = matches!(verb, AuthVerb::Enable { .. });
    let method = if enable { "PUT" } else { "DELETE" };
    auth_call(keys, method, "/v2/auth/enable", None, &[200, 201])?;
    println!(
        "Authentication {}",
        if enable { "Enabled" } else { "Disabled" }
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_made_canonical_as_etcd_does() {
        assert_eq!(canonical_path("/foo"), "/foo");
        assert_eq!(canonical_path("/foo/"), "/foo/");
        assert_eq!(canonical_path("/a//b/../c"), "/a/c");
        assert_eq!(canonical_path("foo*"), "/foo*");
    }

    #[test]
    fn peer_urls_are_checked_as_etcd_does() {
        assert!(check_urls(&["http://127.0.0.1:2380"]).is_ok());
        assert!(check_urls(&["ftp://a:1"])
            .unwrap_err()
            .starts_with("URL scheme"));
        assert!(check_urls(&["http://a"])
            .unwrap_err()
            .starts_with("URL address"));
        assert!(check_urls(&["http://a:1/p"])
            .unwrap_err()
            .starts_with("URL must not"));
    }

    #[test]
    fn json_bodies_escape_html_characters_as_go_does() {
        let body = go_object(&[("user", json!("a<b>&c\u{2028}\u{8}"))]);
        assert_eq!(body, r#"{"user":"a\u003cb\u003e\u0026c\u2028\u0008"}"#);
    }
}
