//! `ETCDCTL_API=2`: etcdctl's v2 verbs over the v2 keys HTTP API (`/v2/keys`): set, get,
//! rm, mk, mkdir, setdir, ls, update, updatedir, rmdir, watch, exec-watch, with the
//! `simple`, `extended` and `json` outputs and `Error:  <code>: <message> (<cause>)
//! [<index>]` failures (exit 4) of etcdctl 3.4.

use std::cell::{Cell, RefCell};
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
        endpoints: RefCell::new(endpoints),
        timeout: cli.timeout,
        tls: tls_config(cli)?,
        auth: basic_auth(cli.username.as_deref())?,
        debug: cli.debug,
        // cluster-health lists the members from the given endpoints.
        sync: !cli.no_sync && !matches!(cli.command, Verb::ClusterHealth { .. }),
        auth_api: matches!(
            cli.command,
            Verb::User { .. } | Verb::Role { .. } | Verb::Auth { .. }
        ),
        connected: Cell::new(false),
    };
    // etcdctl makes the client of a keys verb and of cluster-health before it looks at
    // the arguments; the other verbs check theirs first.
    if !matches!(
        cli.command,
        Verb::Member { .. } | Verb::User { .. } | Verb::Role { .. } | Verb::Auth { .. }
    ) {
        keys.connect()?;
    }
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
            let mut query = Vec::new();
            if !swap_with_value.is_empty() {
                query.push(("prevValue", swap_with_value.clone()));
            }
            if *swap_with_index != 0 {
                query.push(("prevIndex", swap_with_index.to_string()));
            }
            print_answer(
                &keys.send("PUT", &key, &query, Some(&form), Some(keys.timeout))?,
                out,
            );
        }
        Verb::Get { sort, quorum, args } => {
            let key = key_of(args)?;
            let answer = keys.get(&key, false, *sort, *quorum)?;
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
            let mut query = Vec::new();
            if !with_value.is_empty() {
                query.push(("prevValue", with_value.clone()));
            }
            if *with_index != 0 {
                query.push(("prevIndex", with_index.to_string()));
            }
            for (name, on) in [("dir", *dir), ("recursive", *recursive)] {
                if on {
                    query.push((name, "true".to_owned()));
                }
            }
            let answer = keys.send("DELETE", &key, &query, None, Some(keys.timeout))?;
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
                keys.send("POST", &key, &[], Some(&form), Some(keys.timeout))?
            } else {
                let query = [("prevExist", "false".to_owned())];
                keys.send("PUT", &key, &query, Some(&form), Some(keys.timeout))?
            };
            print_answer(&answer, out);
        }
        Verb::Mkdir { ttl, args } | Verb::Setdir { ttl, args } | Verb::Updatedir { ttl, args } => {
            let key = key_of(args)?;
            let mut form = Vec::new();
            push_ttl(&mut form, ttl);
            let mut query = vec![("dir", "true".to_owned())];
            match &cli.command {
                Verb::Mkdir { .. } => query.push(("prevExist", "false".into())),
                Verb::Updatedir { .. } => query.push(("prevExist", "true".into())),
                _ => {}
            }
            let answer = keys.send("PUT", &key, &query, Some(&form), Some(keys.timeout))?;
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
            let answer = keys.get(&key, *recursive, *sort, *quorum)?;
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
            let query = [("prevExist", "true".to_owned())];
            print_answer(
                &keys.send("PUT", &key, &query, Some(&form), Some(keys.timeout))?,
                out,
            );
        }
        Verb::Rmdir { args } => {
            let key = key_of(args)?;
            let query = [("dir", "true".to_owned())];
            let answer = keys.send("DELETE", &key, &query, None, Some(keys.timeout))?;
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
    /// The given endpoints, then (after etcdctl's sync) the members' client URLs.
    endpoints: RefCell<Vec<String>>,
    timeout: Duration,
    tls: Arc<rustls::ClientConfig>,
    /// `Authorization: Basic ...` from `--username`.
    auth: Option<String>,
    /// `--debug`: etcdctl's client lines and each request's cURL command on stderr.
    debug: bool,
    /// Whether the endpoints are learnt from `/v2/members` first (no `--no-sync`).
    sync: bool,
    /// Whether the verb uses the auth API, whose client etcdctl reports twice.
    auth_api: bool,
    /// Whether [`Keys::connect`] has run.
    connected: Cell<bool>,
}

/// A request body: a form, or JSON text.
#[derive(Clone, Copy)]
pub(crate) enum Body<'a> {
    Form(&'a str),
    Json(&'a str),
}

impl Keys {
    /// Makes the client as etcdctl's `mustNewClient` does, once: unless `--no-sync`, the
    /// endpoints become the client URLs that `/v2/members` lists (a connection failure
    /// ends the command; any other failure keeps the given endpoints).
    fn connect(&self) -> Result<(), Failure> {
        if self.connected.replace(true) {
            return Ok(());
        }
        let listed = |separator| self.endpoints.borrow().join(separator);
        if self.sync {
            if self.debug {
                eprintln!("start to sync cluster using endpoints({})", listed(","));
            }
            self.sync_endpoints()?;
            if self.debug {
                eprintln!("got endpoints({}) after sync", listed(","));
            }
        }
        if self.debug {
            eprintln!("Cluster-Endpoints: {}", listed(", "));
            if self.auth_api {
                eprintln!("Cluster-Endpoints: {}", listed(", "));
            }
        }
        Ok(())
    }

    /// etcdctl's `Sync`: the members' client URLs replace the endpoints, unless they are
    /// the same set.
    fn sync_endpoints(&self) -> Result<(), Failure> {
        let response = self.request("GET", "/v2/members", None, Some(self.timeout))?;
        let Ok(body) = serde_json::from_slice::<Value>(&response.body) else {
            return Ok(());
        };
        if response.status != 200 {
            return Ok(());
        }
        let mut urls: Vec<String> = nodes_of(&body["members"])
            .iter()
            .flat_map(|m| nodes_of(&m["clientURLs"]))
            .filter_map(|u| u.as_str().map(str::to_owned))
            .collect();
        if urls.is_empty() {
            eprintln!("etcd cluster has no published client endpoints.");
            eprintln!(
                "Try '--no-sync' if you want to access non-published client endpoints({}).",
                self.endpoints.borrow().join(",")
            );
            return Err(fail(EXIT_SERVER_ERROR, "client: no endpoints available"));
        }
        let mut given = self.endpoints.borrow().clone();
        given.sort();
        let listed = urls.clone();
        urls.sort();
        if urls != given {
            *self.endpoints.borrow_mut() = listed;
        }
        Ok(())
    }

    /// A keys `GET`, with its three flags always in the query, as Go's client sends it.
    fn get(
        &self,
        key: &str,
        recursive: bool,
        sorted: bool,
        quorum: bool,
    ) -> Result<Answer, Failure> {
        let query = [
            ("recursive", recursive.to_string()),
            ("sorted", sorted.to_string()),
            ("quorum", quorum.to_string()),
        ];
        self.send("GET", key, &query, None, Some(self.timeout))
    }

    /// Waits for the next change of `key` after `index` (0: from now).
    fn wait(&self, key: &str, recursive: bool, index: u64) -> Result<Answer, Failure> {
        let next = if index > 0 { index + 1 } else { 0 };
        let query = [
            ("wait", "true".to_owned()),
            ("waitIndex", next.to_string()),
            ("recursive", recursive.to_string()),
        ];
        self.send("GET", key, &query, None, None)
    }

    /// A request on `key` under `/v2/keys`, with a query and a form body (`PUT`, `POST`)
    /// encoded as Go's `url.Values`.
    fn send(
        &self,
        method: &str,
        key: &str,
        query: &[(&str, String)],
        form: Option<&[(&str, String)]>,
        timeout: Option<Duration>,
    ) -> Result<Answer, Failure> {
        let key = if key.starts_with('/') {
            key.to_owned()
        } else {
            format!("/{key}")
        };
        let mut path = http::path_escape(&admin::canonical_path(&format!("/v2/keys{key}")));
        if !query.is_empty() {
            path = format!("{path}?{}", http::encode_values(query));
        }
        let form = form.map(http::encode_values);
        let body = form.as_deref().map(Body::Form);
        decode(self.request(method, &path, body, timeout)?)
    }

    /// Sends one request to the first endpoint that answers, with the `--username`
    /// credentials and the body's content type.
    fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<Body>,
        timeout: Option<Duration>,
    ) -> Result<http::Response, Failure> {
        self.connect()?;
        let mut headers = Vec::new();
        if let Some(auth) = &self.auth {
            headers.push(("Authorization", auth.clone()));
        }
        if let Some(Body::Json(_)) = body {
            headers.push(("Content-Type", "application/json".to_owned()));
        }
        let text = match body {
            Some(Body::Form(text) | Body::Json(text)) => text,
            None => "",
        };
        let mut errors = Vec::new();
        for endpoint in self.endpoints.borrow().iter() {
            if self.debug {
                print_curl(endpoint, method, path, body.map(|_| text));
            }
            match http::request(
                endpoint,
                method,
                path,
                &headers,
                text,
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

/// The line etcdctl's `--debug` prints for a request: a cURL command that repeats it.
fn print_curl(endpoint: &str, method: &str, path: &str, body: Option<&str>) {
    let base = endpoint.trim_end_matches('/');
    let scheme = if base.contains("://") { "" } else { "http://" };
    let mut line = format!("cURL Command: curl -X {method} {scheme}{base}{path}");
    if let Some(body) = body {
        line.push_str(&format!(" -d {}", go::quote(body.as_bytes())));
    }
    eprintln!("{line}");
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
    nodes_of(&node["nodes"])
}

/// A JSON array's items (none for anything else).
fn nodes_of(array: &Value) -> &[Value] {
    array.as_array().map(Vec::as_slice).unwrap_or_default()
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
