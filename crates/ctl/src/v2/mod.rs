//! `ETCDCTL_API=2`: etcdctl's v2 verbs over the v2 keys HTTP API (`/v2/keys`): set, get,
//! rm, mk, mkdir, setdir, ls, update, updatedir, rmdir, watch, exec-watch, with the
//! `simple`, `extended` and `json` outputs and `Error:  <code>: <message> (<cause>)
//! [<index>]` failures (exit 4) of etcdctl 3.4.

use std::io::Read;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde_json::Value;

use crate::go;
use crate::http;

mod admin;

/// Exit codes of the v2 etcdctl.
const EXIT_BAD_ARGS: u8 = 1;
const EXIT_BAD_CONNECTION: u8 = 2;
const EXIT_SERVER_ERROR: u8 = 4;

#[derive(Parser, Debug)]
#[command(
    name = "oxcdctl",
    about = "A simple command line client for etcd (v2 API).",
    disable_help_subcommand = true
)]
struct Cli {
    /// output response in the given format (`simple`, `extended` or `json`)
    #[arg(short = 'o', long, global = true, default_value = "simple")]
    output: String,
    /// a comma-delimited list of machine addresses in the cluster
    #[arg(
        long,
        global = true,
        env = "ETCDCTL_ENDPOINTS",
        default_value = "http://127.0.0.1:2379,http://127.0.0.1:4001"
    )]
    endpoints: String,
    /// DEPRECATED - "--endpoints" should be used instead
    #[arg(short = 'C', long, global = true, env = "ETCDCTL_PEERS")]
    peers: Option<String>,
    /// DEPRECATED - "--endpoints" should be used instead
    #[arg(long, global = true, env = "ETCDCTL_ENDPOINT")]
    endpoint: Option<String>,
    /// don't synchronize cluster information before sending request
    #[arg(long, global = true)]
    no_sync: bool,
    /// output cURL commands which can be used to reproduce the request
    #[arg(long, global = true)]
    debug: bool,
    /// identify HTTPS client using this SSL certificate file
    #[arg(long, global = true, env = "ETCDCTL_CERT_FILE")]
    cert_file: Option<String>,
    /// identify HTTPS client using this SSL key file
    #[arg(long, global = true, env = "ETCDCTL_KEY_FILE")]
    key_file: Option<String>,
    /// verify certificates of HTTPS-enabled servers using this CA bundle
    #[arg(long, global = true, env = "ETCDCTL_CA_FILE")]
    ca_file: Option<String>,
    /// provide username[:password] and prompt if password is not supplied.
    #[arg(short = 'u', long, global = true, env = "ETCDCTL_USERNAME")]
    username: Option<String>,
    /// connection timeout per request
    #[arg(long, global = true, default_value = "2s", value_parser = go::parse_duration)]
    timeout: Duration,
    /// timeout for the command execution (except watch)
    #[arg(long, global = true, default_value = "5s", value_parser = go::parse_duration)]
    total_timeout: Duration,
    #[command(subcommand)]
    command: Verb,
}

#[derive(Args, Debug)]
struct Ttl {
    /// key time-to-live in seconds
    #[arg(long, default_value = "0")]
    ttl: u64,
}

#[derive(Subcommand, Debug)]
enum Verb {
    /// set the value of a key
    Set {
        #[command(flatten)]
        ttl: Ttl,
        /// previous value
        #[arg(long, default_value = "")]
        swap_with_value: String,
        /// previous index
        #[arg(long, default_value = "0")]
        swap_with_index: u64,
        args: Vec<String>,
    },
    /// retrieve the value of a key
    Get {
        /// returns result in sorted order
        #[arg(long)]
        sort: bool,
        /// require quorum for get request
        #[arg(short, long)]
        quorum: bool,
        args: Vec<String>,
    },
    /// remove a key or a directory
    Rm {
        /// removes the key if it is an empty directory or a key-value pair
        #[arg(long)]
        dir: bool,
        /// removes the key and all child keys(if it is a directory)
        #[arg(short, long)]
        recursive: bool,
        /// previous value
        #[arg(long, default_value = "")]
        with_value: String,
        /// previous index
        #[arg(long, default_value = "0")]
        with_index: u64,
        args: Vec<String>,
    },
    /// make a new key with a given value
    Mk {
        /// create in-order key under directory <key>
        #[arg(long)]
        in_order: bool,
        #[command(flatten)]
        ttl: Ttl,
        args: Vec<String>,
    },
    /// make a new directory
    Mkdir {
        #[command(flatten)]
        ttl: Ttl,
        args: Vec<String>,
    },
    /// create a new directory or update an existing directory TTL
    Setdir {
        #[command(flatten)]
        ttl: Ttl,
        args: Vec<String>,
    },
    /// retrieve a directory
    Ls {
        /// returns result in sorted order
        #[arg(long)]
        sort: bool,
        /// returns all key names recursively for the given path
        #[arg(short, long)]
        recursive: bool,
        /// append slash (/) to directories
        #[arg(short = 'p')]
        slash: bool,
        /// require quorum for get request
        #[arg(short, long)]
        quorum: bool,
        args: Vec<String>,
    },
    /// update an existing key with a given value
    Update {
        #[command(flatten)]
        ttl: Ttl,
        args: Vec<String>,
    },
    /// update an existing directory
    Updatedir {
        #[command(flatten)]
        ttl: Ttl,
        args: Vec<String>,
    },
    /// removes the key if it is an empty directory or a key-value pair
    Rmdir { args: Vec<String> },
    /// watch a key for changes
    Watch {
        /// forever watch a key until CTRL+C
        #[arg(short, long)]
        forever: bool,
        /// watch after the given index
        #[arg(long, default_value = "0")]
        after_index: u64,
        /// returns all values for key and child keys
        #[arg(short, long)]
        recursive: bool,
        args: Vec<String>,
    },
    /// member add, remove and list subcommands
    Member {
        #[command(subcommand)]
        verb: admin::MemberVerb,
    },
    /// check the health of the etcd cluster
    ClusterHealth {
        /// forever check the health every 10 second until CTRL+C
        #[arg(short, long)]
        forever: bool,
    },
    /// user add, grant and revoke subcommands
    User {
        #[command(subcommand)]
        verb: admin::UserVerb,
    },
    /// role add, grant and revoke subcommands
    Role {
        #[command(subcommand)]
        verb: admin::RoleVerb,
    },
    /// overall auth controls
    Auth {
        #[command(subcommand)]
        verb: admin::AuthVerb,
    },
    /// watch a key for changes and exec an executable
    ExecWatch {
        /// watch after the given index
        #[arg(long, default_value = "0")]
        after_index: u64,
        /// watch all values for key and child keys
        #[arg(short, long)]
        recursive: bool,
        #[arg(allow_hyphen_values = true, trailing_var_arg = true)]
        args: Vec<String>,
    },
}

/// How a v2 command ends early: the text after `Error:  ` (or a whole line) and a code.
struct Failure {
    line: String,
    code: u8,
}

fn fail(code: u8, message: impl std::fmt::Display) -> Failure {
    Failure {
        line: format!("Error:  {message}"),
        code,
    }
}

/// Runs the v2 command line.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return ExitCode::from(if err.use_stderr() { EXIT_BAD_ARGS } else { 0 });
        }
    };
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            // An empty line: the command has said all it had to.
            if !failure.line.is_empty() {
                eprintln!("{}", failure.line);
            }
            ExitCode::from(failure.code)
        }
    }
}

/// A v2 keys answer as the Go client decodes it.
struct Answer {
    action: String,
    node: Value,
    prev_node: Value,
    index: u64,
}

fn key_required() -> Failure {
    fail(EXIT_BAD_ARGS, "key required")
}

fn value_arg(args: &[String]) -> Result<String, Failure> {
    if let Some(value) = args.get(1) {
        return Ok(value.clone());
    }
    let mut text = String::new();
    let _ = std::io::stdin().read_to_string(&mut text);
    if text.is_empty() {
        return Err(fail(EXIT_BAD_ARGS, "value required"));
    }
    Ok(text)
}

fn run(cli: &Cli) -> Result<(), Failure> {
    let endpoints: Vec<String> = cli
        .peers
        .clone()
        .or_else(|| cli.endpoint.clone())
        .unwrap_or_else(|| cli.endpoints.clone())
        .split(',')
        .map(|e| e.trim().to_owned())
        .collect();
    let keys = Keys {
        endpoints,
        timeout: cli.timeout,
        tls: tls_config(cli)?,
        auth: basic_auth(cli.username.as_deref())?,
    };
    let out = cli.output.as_str();
    let key_of = |args: &[String]| args.first().cloned().ok_or_else(key_required);
    match &cli.command {
        Verb::Set {
            ttl,
            swap_with_value,
            swap_with_index,
            args,
        } => {
            let key = key_of(args)?;
            let value = value_arg(args)?;
            let mut form = vec![("value", value)];
            push_ttl(&mut form, ttl);
            if !swap_with_value.is_empty() {
                form.push(("prevValue", swap_with_value.clone()));
            }
            if *swap_with_index != 0 {
                form.push(("prevIndex", swap_with_index.to_string()));
            }
            print_answer(&keys.call("PUT", &key, &[], &form)?, out);
        }
        Verb::Get { sort, quorum, args } => {
            let key = key_of(args)?;
            let answer = keys.call("GET", &key, &[("quorum", *quorum), ("sorted", *sort)], &[])?;
            if is_dir(&answer.node) {
                return Err(Failure {
                    line: format!("{}: is a directory", str_field(&answer.node, "key")),
                    code: 1,
                });
            }
            print_answer(&answer, out);
        }
        Verb::Rm {
            dir,
            recursive,
            with_value,
            with_index,
            args,
        } => {
            let key = key_of(args)?;
            let mut query = vec![("dir", *dir), ("recursive", *recursive)];
            query.retain(|(_, on)| *on);
            let mut extra = Vec::new();
            if !with_value.is_empty() {
                extra.push(("prevValue", with_value.clone()));
            }
            if *with_index != 0 {
                extra.push(("prevIndex", with_index.to_string()));
            }
            let answer = keys.call_query("DELETE", &key, &query, &extra)?;
            if !is_dir(&answer.node) || out != "simple" {
                print_answer(&answer, out);
            }
        }
        Verb::Mk {
            in_order,
            ttl,
            args,
        } => {
            let key = key_of(args)?;
            let value = value_arg(args)?;
            let mut form = vec![("value", value)];
            push_ttl(&mut form, ttl);
            let answer = if *in_order {
                keys.call("POST", &key, &[], &form)?
            } else {
                form.push(("prevExist", "false".into()));
                keys.call("PUT", &key, &[], &form)?
            };
            print_answer(&answer, out);
        }
        Verb::Mkdir { ttl, args } | Verb::Setdir { ttl, args } | Verb::Updatedir { ttl, args } => {
            let key = key_of(args)?;
            let mut form = vec![("dir", "true".to_owned())];
            push_ttl(&mut form, ttl);
            match &cli.command {
                Verb::Mkdir { .. } => form.push(("prevExist", "false".into())),
                Verb::Updatedir { .. } => form.push(("prevExist", "true".into())),
                _ => {}
            }
            let answer = keys.call("PUT", &key, &[], &form)?;
            if out != "simple" {
                print_answer(&answer, out);
            }
        }
        Verb::Ls {
            sort,
            recursive,
            slash,
            quorum,
            args,
        } => {
            let key = args.first().cloned().unwrap_or_else(|| "/".into());
            let answer = keys.call(
                "GET",
                &key,
                &[
                    ("quorum", *quorum),
                    ("recursive", *recursive),
                    ("sorted", *sort),
                ],
                &[],
            )?;
            if out != "simple" {
                print_answer(&answer, out);
            } else {
                if !is_dir(&answer.node) {
                    println!("{}", str_field(&answer.node, "key"));
                }
                for node in nodes(&answer.node) {
                    print_tree(node, *slash);
                }
            }
        }
        Verb::Update { ttl, args } => {
            let key = key_of(args)?;
            let value = value_arg(args)?;
            let mut form = vec![("value", value)];
            push_ttl(&mut form, ttl);
            form.push(("prevExist", "true".into()));
            print_answer(&keys.call("PUT", &key, &[], &form)?, out);
        }
        Verb::Rmdir { args } => {
            let key = key_of(args)?;
            let answer = keys.call_query("DELETE", &key, &[("dir", true)], &[])?;
            if !is_dir(&answer.node) || out != "simple" {
                print_answer(&answer, out);
            }
        }
        Verb::Watch {
            forever,
            after_index,
            recursive,
            args,
        } => {
            let key = key_of(args)?;
            let mut index = *after_index;
            loop {
                let answer = keys.wait(&key, *recursive, index)?;
                index = answer_index(&answer);
                if is_dir(&answer.node) {
                    continue;
                }
                if *recursive {
                    println!("[{}] {}", answer.action, str_field(&answer.node, "key"));
                }
                print_answer(&answer, out);
                if !forever {
                    return Ok(());
                }
            }
        }
        Verb::Member { verb } => admin::member(&keys, verb)?,
        Verb::ClusterHealth { forever } => admin::cluster_health(&keys, *forever)?,
        Verb::User { verb } => admin::user(&keys, verb)?,
        Verb::Role { verb } => admin::role(&keys, verb)?,
        Verb::Auth { verb } => admin::auth(&keys, verb)?,
        Verb::ExecWatch {
            after_index,
            recursive,
            args,
        } => {
            if args.len() < 2 {
                return Err(fail(EXIT_BAD_ARGS, "key and command to exec required"));
            }
            let (key, command) = match args.iter().position(|a| a == "--") {
                Some(i) if i != 0 => (args[0].clone(), args[i + 1..].to_vec()),
                _ => (
                    args[args.len() - 1].clone(),
                    args[..args.len() - 1].to_vec(),
                ),
            };
            let mut index = *after_index;
            loop {
                let answer = keys.wait(&key, *recursive, index)?;
                index = answer_index(&answer);
                if is_dir(&answer.node) {
                    eprintln!("Ignored dir {} change", str_field(&answer.node, "key"));
                    continue;
                }
                let spawned = std::process::Command::new(&command[0])
                    .args(&command[1..])
                    .env("ETCD_WATCH_ACTION", &answer.action)
                    .env(
                        "ETCD_WATCH_MODIFIED_INDEX",
                        number(&answer.node, "modifiedIndex").to_string(),
                    )
                    .env("ETCD_WATCH_KEY", str_field(&answer.node, "key"))
                    .env("ETCD_WATCH_VALUE", str_field(&answer.node, "value"))
                    .spawn();
                if let Err(e) = spawned {
                    eprint!("{e}");
                    return Err(Failure {
                        line: String::new(),
                        code: 1,
                    });
                }
            }
        }
    }
    Ok(())
}

/// The `Authorization` header of `--username NAME[:PASSWORD]` (asking for a missing
/// password), or none.
fn basic_auth(username: Option<&str>) -> Result<Option<String>, Failure> {
    let Some(flag) = username.filter(|u| !u.is_empty()) else {
        return Ok(None);
    };
    let (name, password) = admin::name_and_password("Password: ", flag).map_err(|e| Failure {
        line: e,
        code: EXIT_BAD_ARGS,
    })?;
    let token = go::base64(format!("{name}:{password}").as_bytes());
    Ok(Some(format!("Basic {token}")))
}

fn push_ttl(form: &mut Vec<(&'static str, String)>, ttl: &Ttl) {
    if ttl.ttl > 0 {
        form.push(("ttl", ttl.ttl.to_string()));
    }
}

/// The TLS settings of `--ca-file`, `--cert-file` and `--key-file` (or their `ETCDCTL_*`
/// variables), for `https://` endpoints.
fn tls_config(cli: &Cli) -> Result<Arc<rustls::ClientConfig>, Failure> {
    fn given(flag: &Option<String>) -> Option<&str> {
        flag.as_deref().filter(|f| !f.is_empty())
    }
    oxcd_client::TlsOptions::from_files(
        given(&cli.ca_file),
        given(&cli.cert_file),
        given(&cli.key_file),
    )
    .and_then(|tls| tls.to_rustls())
    .map(Arc::new)
    .map_err(|e| fail(EXIT_BAD_ARGS, e))
}

/// The endpoints, per-request timeout, TLS settings and credentials of the v2 API.
pub(crate) struct Keys {
    endpoints: Vec<String>,
    timeout: Duration,
    tls: Arc<rustls::ClientConfig>,
    /// `Authorization: Basic ...` from `--username`.
    auth: Option<String>,
}

impl Keys {
    /// A request with boolean query flags (`name=true` for those on) and a form body.
    fn call(
        &self,
        method: &str,
        key: &str,
        flags: &[(&str, bool)],
        form: &[(&str, String)],
    ) -> Result<Answer, Failure> {
        let query: Vec<(&str, String)> = flags
            .iter()
            .filter(|(_, on)| *on)
            .map(|(name, _)| (*name, "true".to_owned()))
            .collect();
        self.send(method, key, &query, form, Some(self.timeout))
    }

    /// A request whose parameters all go in the query (DELETE).
    fn call_query(
        &self,
        method: &str,
        key: &str,
        flags: &[(&str, bool)],
        extra: &[(&str, String)],
    ) -> Result<Answer, Failure> {
        let mut query: Vec<(&str, String)> = flags
            .iter()
            .filter(|(_, on)| *on)
            .map(|(name, _)| (*name, "true".to_owned()))
            .collect();
        query.extend(extra.iter().cloned());
        self.send(method, key, &query, &[], Some(self.timeout))
    }

    /// Waits for the next change of `key` after `index` (0: from now).
    fn wait(&self, key: &str, recursive: bool, index: u64) -> Result<Answer, Failure> {
        let mut query = vec![("wait", "true".to_owned())];
        if recursive {
            query.push(("recursive", "true".into()));
        }
        if index > 0 {
            query.push(("waitIndex", (index + 1).to_string()));
        }
        self.send("GET", key, &query, &[], None)
    }

    fn send(
        &self,
        method: &str,
        key: &str,
        query: &[(&str, String)],
        form: &[(&str, String)],
        timeout: Option<Duration>,
    ) -> Result<Answer, Failure> {
        let key = if key.starts_with('/') {
            key.to_owned()
        } else {
            format!("/{key}")
        };
        let encode = |pairs: &[(&str, String)]| {
            pairs
                .iter()
                .map(|(k, v)| format!("{k}={}", http::escape(v, false)))
                .collect::<Vec<_>>()
                .join("&")
        };
        let mut path = format!("/v2/keys{}", http::escape(&key, true));
        if !query.is_empty() {
            path = format!("{path}?{}", encode(query));
        }
        let body = encode(form);
        decode(self.request(method, &path, None, &body, timeout)?)
    }

    /// Sends one request to the first endpoint that answers, with the `--username`
    /// credentials and, for a `json` body, its content type.
    fn request(
        &self,
        method: &str,
        path: &str,
        json: Option<&Value>,
        body: &str,
        timeout: Option<Duration>,
    ) -> Result<http::Response, Failure> {
        let mut headers = Vec::new();
        if let Some(auth) = &self.auth {
            headers.push(("Authorization", auth.clone()));
        }
        let json_body = json.map(Value::to_string);
        if json_body.is_some() {
            headers.push(("Content-Type", "application/json".to_owned()));
        }
        let body = json_body.as_deref().unwrap_or(body);
        let mut errors = Vec::new();
        for endpoint in &self.endpoints {
            match http::request(
                endpoint,
                method,
                path,
                &headers,
                body,
                timeout,
                Some(&self.tls),
            ) {
                Ok(response) => return Ok(response),
                Err(e) => errors.push(format!("error #{}: {e}\n", errors.len())),
            }
        }
        // Go's ClusterError, then its detail: each error twice.
        let joined: String = errors.iter().map(|e| format!("; {e}")).collect();
        Err(Failure {
            line: format!(
                "Error:  client: etcd cluster is unavailable or misconfigured{joined}\n{}",
                errors.concat()
            ),
            code: EXIT_BAD_CONNECTION,
        })
    }
}

/// An answer, or the v2 error it carries (`Error:  100: Key not found (/foo) [5]`). A body
/// that is not JSON (a server without the v2 API answers `404 page not found`) gets the Go
/// client's words.
fn decode(response: http::Response) -> Result<Answer, Failure> {
    if matches!(response.status, 200 | 201) && response.body.is_empty() {
        return Err(fail(EXIT_SERVER_ERROR, "client: response body is empty"));
    }
    let json: Value = serde_json::from_slice(&response.body).map_err(|_| {
        fail(
            EXIT_SERVER_ERROR,
            "client: response is invalid json. The endpoint is probably not valid etcd cluster endpoint",
        )
    })?;
    if let Some(code) = json.get("errorCode") {
        return Err(fail(
            EXIT_SERVER_ERROR,
            format!(
                "{}: {} ({}) [{}]",
                code,
                json["message"].as_str().unwrap_or_default(),
                json["cause"].as_str().unwrap_or_default(),
                json["index"].as_u64().unwrap_or(0)
            ),
        ));
    }
    Ok(Answer {
        action: json["action"].as_str().unwrap_or_default().to_owned(),
        node: json["node"].clone(),
        prev_node: json.get("prevNode").cloned().unwrap_or(Value::Null),
        index: response.etcd_index,
    })
}

fn answer_index(answer: &Answer) -> u64 {
    number(&answer.node, "modifiedIndex")
}

fn is_dir(node: &Value) -> bool {
    node["dir"].as_bool().unwrap_or(false)
}

fn str_field(node: &Value, name: &str) -> String {
    node[name].as_str().unwrap_or_default().to_owned()
}

fn number(node: &Value, name: &str) -> u64 {
    node[name].as_u64().unwrap_or(0)
}

fn nodes(node: &Value) -> &[Value] {
    node["nodes"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
}

fn print_tree(node: &Value, slash: bool) {
    if is_dir(node) && slash {
        println!("{}/", str_field(node, "key"));
    } else {
        println!("{}", str_field(node, "key"));
    }
    for child in nodes(node) {
        print_tree(child, slash);
    }
}

/// A node as the Go client re-encodes it: every field but `dir`, `expiration` and `ttl`
/// always present, `nodes` null when empty.
fn node_json(node: &Value) -> String {
    if node.is_null() {
        return "null".into();
    }
    let mut fields = vec![format!(
        "\"key\":{}",
        go::json_string(&str_field(node, "key"))
    )];
    if is_dir(node) {
        fields.push("\"dir\":true".into());
    }
    fields.push(format!(
        "\"value\":{}",
        go::json_string(&str_field(node, "value"))
    ));
    let children = nodes(node);
    if children.is_empty() {
        fields.push("\"nodes\":null".into());
    } else {
        let inner: Vec<String> = children.iter().map(node_json).collect();
        fields.push(format!("\"nodes\":[{}]", inner.join(",")));
    }
    fields.push(format!("\"createdIndex\":{}", number(node, "createdIndex")));
    fields.push(format!(
        "\"modifiedIndex\":{}",
        number(node, "modifiedIndex")
    ));
    if let Some(expiration) = node["expiration"].as_str() {
        fields.push(format!("\"expiration\":{}", go::json_string(expiration)));
    }
    if let Some(ttl) = node["ttl"].as_i64().filter(|t| *t != 0) {
        fields.push(format!("\"ttl\":{ttl}"));
    }
    format!("{{{}}}", fields.join(","))
}

fn print_answer(answer: &Answer, format: &str) {
    match format {
        "simple" => {
            if answer.action != "delete" {
                println!("{}", str_field(&answer.node, "value"));
            } else {
                println!("PrevNode.Value: {}", str_field(&answer.prev_node, "value"));
            }
        }
        "extended" => {
            println!("Key: {}", str_field(&answer.node, "key"));
            println!("Created-Index: {}", number(&answer.node, "createdIndex"));
            println!("Modified-Index: {}", number(&answer.node, "modifiedIndex"));
            if !answer.prev_node.is_null() {
                println!("PrevNode.Value: {}", str_field(&answer.prev_node, "value"));
            }
            println!("TTL: {}", answer.node["ttl"].as_i64().unwrap_or(0));
            println!("Index: {}", answer.index);
            if answer.action != "delete" {
                println!();
                println!("{}", str_field(&answer.node, "value"));
            }
        }
        "json" => println!(
            "{{\"action\":{},\"node\":{},\"prevNode\":{}}}",
            go::json_string(&answer.action),
            node_json(&answer.node),
            node_json(&answer.prev_node)
        ),
        other => eprintln!("Unsupported output format: {other}"),
    }
}
