//! Every etcd 3.5 server flag, declared once.
//!
//! [`Flags`] is the raw form: what the command line, the `ETCD_*` environment or the
//! `--config-file` YAML said, with etcd's defaults filled in and only syntax checked
//! (numbers are numbers, durations are Go durations, booleans are Go booleans). Turning
//! it into something the server can run with (URLs, ticks, member ids) is
//! [`super::ServerConfig`]'s job.
//!
//! Each field is one flag: its long name is the field name in kebab-case, its
//! environment variable is `ETCD_` + the name in upper snake case (etcd's mapping), and
//! its YAML key is the flag name, as etcd's config file uses. Boolean flags take Go's
//! syntax: `--flag`, `--flag=true`, `--flag=false` (never `--flag false`).
//!
//! Which flags the server acts on is listed once, in [`IMPLEMENTED`]; the others are
//! accepted so that existing etcd command lines keep working, and a startup warning
//! names each one the user set.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use clap::{ArgAction, Parser};
use serde::{Deserialize, Deserializer};

const MEMBER: &str = "Member";
const CLUSTERING: &str = "Clustering";
const SECURITY: &str = "Security";
const AUTH: &str = "Auth";
const MONITORING: &str = "Profiling and Monitoring";
const LOGGING: &str = "Logging";
const PROXY: &str = "v2 Proxy (deprecated)";
const EXPERIMENTAL: &str = "Experimental features";
const UNSAFE: &str = "Unsafe features";

/// Long names of the flags oxcd acts on. Every other flag is accepted and, when set,
/// reported by [`super::ServerConfig::unimplemented_flags`].
pub const IMPLEMENTED: &[&str] = &[
    "config-file",
    "version",
    "name",
    "data-dir",
    "wal-dir",
    "snapshot-count",
    "heartbeat-interval",
    "election-timeout",
    "listen-peer-urls",
    "listen-client-urls",
    "listen-client-http-urls",
    "enable-grpc-gateway",
    "cors",
    "host-whitelist",
    "listen-metrics-urls",
    "metrics",
    "quota-backend-bytes",
    "max-txn-ops",
    "max-request-bytes",
    "max-send-bytes",
    "disk-space-reserve-bytes",
    "initial-advertise-peer-urls",
    "initial-cluster",
    "initial-cluster-state",
    "initial-cluster-token",
    "advertise-client-urls",
    "auto-compaction-retention",
    "auto-compaction-mode",
    "enable-v2",
    "cert-file",
    "key-file",
    "client-cert-auth",
    "trusted-ca-file",
    "auto-tls",
    "peer-cert-file",
    "peer-key-file",
    "peer-client-cert-auth",
    "peer-trusted-ca-file",
    "peer-auto-tls",
    "client-crl-file",
    "peer-crl-file",
    "peer-cert-allowed-cn",
    "peer-cert-allowed-hostname",
    "client-cert-allowed-hostname",
    "cipher-suites",
    "max-concurrent-streams",
    "self-signed-cert-validity",
    "logger",
    "log-level",
    "experimental-watch-progress-notify-interval",
    "experimental-max-learners",
    "experimental-emulate-etcd-version",
    "experimental-initial-corrupt-check",
    "experimental-backend-verify-on-start",
    "experimental-corrupt-check-time",
    "experimental-snapshot-catchup-entries",
    "auth-token",
    "bcrypt-cost",
    "auth-token-ttl",
];

/// The raw server flags. Field docs are the `--help` text.
#[derive(Parser, Deserialize, Debug, Clone, PartialEq)]
#[command(
    name = "oxcd",
    about = "oxcd: a distributed, reliable key-value store compatible with etcd",
    disable_version_flag = true,
    args_override_self = true,
    max_term_width = 100
)]
#[serde(default, rename_all = "kebab-case")]
pub struct Flags {
    /// Read the whole configuration from this YAML file (etcd's keys). When given, all
    /// other command-line flags and ETCD_* variables are ignored.
    #[arg(
        long,
        env = "ETCD_CONFIG_FILE",
        default_value = "",
        hide_default_value = true
    )]
    #[serde(skip)]
    pub config_file: String,

    /// Print the version (ours and the etcd API version served) and exit.
    #[arg(long, env = "ETCD_VERSION", num_args = 0..=1, require_equals = true,
        default_value = "false", default_missing_value = "true",
        value_parser = parse_go_bool, action = ArgAction::Set)]
    #[serde(skip)]
    pub version: bool,

    // ---- member ----
    /// Human-readable name of this member; must match its entry in --initial-cluster.
    #[arg(long, env = "ETCD_NAME", default_value = "default", help_heading = MEMBER)]
    pub name: String,

    /// Directory holding this member's data [default: ${name}.etcd].
    #[arg(long, env = "ETCD_DATA_DIR", default_value = "", hide_default_value = true, help_heading = MEMBER)]
    pub data_dir: String,

    /// Put the write-ahead log in this directory instead of <data-dir>/member/wal.
    #[arg(long, env = "ETCD_WAL_DIR", default_value = "", hide_default_value = true, help_heading = MEMBER)]
    pub wal_dir: String,

    /// Applied entries between two snapshots to disk (0 means the default).
    #[arg(long, env = "ETCD_SNAPSHOT_COUNT", default_value = "100000", help_heading = MEMBER)]
    pub snapshot_count: u64,

    /// Milliseconds between two leader heartbeats (one raft tick).
    #[arg(long, env = "ETCD_HEARTBEAT_INTERVAL", default_value = "100", help_heading = MEMBER)]
    pub heartbeat_interval: u64,

    /// Milliseconds a follower waits without hearing a leader before it campaigns.
    #[arg(long, env = "ETCD_ELECTION_TIMEOUT", default_value = "1000", help_heading = MEMBER)]
    pub election_timeout: u64,

    /// Skip most of the first election timeout after boot, for a faster first election.
    #[arg(long, env = "ETCD_INITIAL_ELECTION_TICK_ADVANCE", num_args = 0..=1, require_equals = true,
        default_value = "true", default_missing_value = "true",
        value_parser = parse_go_bool, action = ArgAction::Set, help_heading = MEMBER)]
    pub initial_election_tick_advance: bool,

    /// Comma-separated URLs to listen on for traffic from other members.
    #[arg(long, env = "ETCD_LISTEN_PEER_URLS", default_value = "http://localhost:2380", help_heading = MEMBER)]
    pub listen_peer_urls: String,

    /// Comma-separated URLs to listen on for client traffic (gRPC and HTTP).
    #[arg(long, env = "ETCD_LISTEN_CLIENT_URLS", default_value = "http://localhost:2379", help_heading = MEMBER)]
    pub listen_client_urls: String,

    /// Comma-separated URLs serving client HTTP only (the gRPC gateway, /health ...), so that
    /// --listen-client-urls can serve gRPC alone.
    #[arg(long, env = "ETCD_LISTEN_CLIENT_HTTP_URLS", default_value = "", hide_default_value = true, help_heading = MEMBER)]
    pub listen_client_http_urls: String,

    /// Comma-separated URLs serving only /metrics and the health endpoints.
    #[arg(long, env = "ETCD_LISTEN_METRICS_URLS", default_value = "", hide_default_value = true, help_heading = MONITORING)]
    pub listen_metrics_urls: String,

    /// How many snapshot files to keep (0 keeps all).
    #[arg(long, env = "ETCD_MAX_SNAPSHOTS", default_value = "5", help_heading = MEMBER)]
    pub max_snapshots: u32,

    /// How many WAL files to keep (0 keeps all).
    #[arg(long, env = "ETCD_MAX_WALS", default_value = "5", help_heading = MEMBER)]
    pub max_wals: u32,

    /// Backend size in bytes past which a NOSPACE alarm is raised (0 means 2 GiB; negative disables the quota).
    #[arg(long, env = "ETCD_QUOTA_BACKEND_BYTES", default_value = "0", allow_hyphen_values = true, help_heading = MEMBER)]
    pub quota_backend_bytes: i64,

    /// Free-list type of etcd's bbolt backend (map or array).
    #[arg(long, env = "ETCD_BACKEND_BBOLT_FREELIST_TYPE", default_value = "map", help_heading = MEMBER)]
    pub backend_bbolt_freelist_type: String,

    /// Longest time a backend write transaction stays open before commit (0 means the default).
    #[arg(long, env = "ETCD_BACKEND_BATCH_INTERVAL", default_value = "0s", help_heading = MEMBER)]
    pub backend_batch_interval: GoDuration,

    /// Most operations in one backend write transaction before commit (0 means the default).
    #[arg(long, env = "ETCD_BACKEND_BATCH_LIMIT", default_value = "0", help_heading = MEMBER)]
    pub backend_batch_limit: i64,

    /// Most operations allowed in one transaction.
    #[arg(long, env = "ETCD_MAX_TXN_OPS", default_value = "128", help_heading = MEMBER)]
    pub max_txn_ops: u32,

    /// Largest client request, in bytes, the server accepts.
    #[arg(long, env = "ETCD_MAX_REQUEST_BYTES", default_value = "1572864", help_heading = MEMBER)]
    pub max_request_bytes: u32,

    /// Largest Range answer, in bytes, the server builds (oxcd; etcd's server sends up to
    /// math.MaxInt32, its grpc-proxy calls this limit --max-send-bytes). Past it a Range
    /// fails as grpc-go does, before the answer is in memory; RangeStream has no such limit.
    #[arg(long, env = "ETCD_MAX_SEND_BYTES", default_value = "2147483647", help_heading = MEMBER)]
    pub max_send_bytes: u32,

    /// Free disk space, in bytes, a member keeps for itself (oxcd; etcd has no such reserve):
    /// while the file system of the data dir or of the WAL dir has less free, writes raise
    /// the NOSPACE alarm and are refused, reads go on; `alarm disarm` once space is back.
    /// The default is one WAL segment (64 MiB) plus 16 MiB; 0 turns the reserve off (a full
    /// disk then stops the member).
    #[arg(long, env = "ETCD_DISK_SPACE_RESERVE_BYTES", default_value_t = crate::disk_space::DEFAULT_RESERVE_BYTES, help_heading = MEMBER)]
    pub disk_space_reserve_bytes: u64,

    /// Most concurrent gRPC streams per client connection.
    #[arg(long, env = "ETCD_MAX_CONCURRENT_STREAMS", default_value = "4294967295", help_heading = MEMBER)]
    pub max_concurrent_streams: u32,

    /// Shortest interval a client may ping the server at.
    #[arg(long, env = "ETCD_GRPC_KEEPALIVE_MIN_TIME", default_value = "5s", help_heading = MEMBER)]
    pub grpc_keepalive_min_time: GoDuration,

    /// How often the server pings idle clients to check the connection (0 disables).
    #[arg(long, env = "ETCD_GRPC_KEEPALIVE_INTERVAL", default_value = "2h", help_heading = MEMBER)]
    pub grpc_keepalive_interval: GoDuration,

    /// How long to wait for a ping answer before closing the connection (0 disables).
    #[arg(long, env = "ETCD_GRPC_KEEPALIVE_TIMEOUT", default_value = "20s", help_heading = MEMBER)]
    pub grpc_keepalive_timeout: GoDuration,

    /// Set SO_REUSEPORT on listeners.
    #[arg(long, env = "ETCD_SOCKET_REUSE_PORT", num_args = 0..=1, require_equals = true,
        default_value = "false", default_missing_value = "true",
        value_parser = parse_go_bool, action = ArgAction::Set, help_heading = MEMBER)]
    pub socket_reuse_port: bool,

    /// Set SO_REUSEADDR on listeners.
    #[arg(long, env = "ETCD_SOCKET_REUSE_ADDRESS", num_args = 0..=1, require_equals = true,
        default_value = "false", default_missing_value = "true",
        value_parser = parse_go_bool, action = ArgAction::Set, help_heading = MEMBER)]
    pub socket_reuse_address: bool,

    // ---- clustering ----
    /// Comma-separated peer URLs of this member, as the other members should reach it.
    #[arg(long, env = "ETCD_INITIAL_ADVERTISE_PEER_URLS", default_value = "http://localhost:2380", help_heading = CLUSTERING)]
    pub initial_advertise_peer_urls: String,

    /// The founding members, as name=peer-url pairs separated by commas.
    #[arg(long, env = "ETCD_INITIAL_CLUSTER", default_value = "default=http://localhost:2380", help_heading = CLUSTERING)]
    pub initial_cluster: String,

    /// "new" to found a cluster, "existing" to join one that already runs.
    #[arg(long, env = "ETCD_INITIAL_CLUSTER_STATE", default_value = "new", help_heading = CLUSTERING)]
    pub initial_cluster_state: String,

    /// Token mixed into member and cluster ids at bootstrap, so that two clusters with the same
    /// peer URLs cannot be confused.
    #[arg(long, env = "ETCD_INITIAL_CLUSTER_TOKEN", default_value = "etcd-cluster", help_heading = CLUSTERING)]
    pub initial_cluster_token: String,

    /// Comma-separated client URLs of this member, as clients should reach it.
    #[arg(long, env = "ETCD_ADVERTISE_CLIENT_URLS", default_value = "http://localhost:2379", help_heading = CLUSTERING)]
    pub advertise_client_urls: String,

    /// Discovery service URL used to bootstrap the cluster.
    #[arg(long, env = "ETCD_DISCOVERY", default_value = "", hide_default_value = true, help_heading = CLUSTERING)]
    pub discovery: String,

    /// What to do when the discovery service fails: exit or proxy.
    #[arg(long, env = "ETCD_DISCOVERY_FALLBACK", default_value = "proxy", help_heading = CLUSTERING)]
    pub discovery_fallback: String,

    /// HTTP proxy for traffic to the discovery service.
    #[arg(long, env = "ETCD_DISCOVERY_PROXY", default_value = "", hide_default_value = true, help_heading = CLUSTERING)]
    pub discovery_proxy: String,

    /// DNS domain whose SRV records list the founding members.
    #[arg(long, env = "ETCD_DISCOVERY_SRV", default_value = "", hide_default_value = true, help_heading = CLUSTERING)]
    pub discovery_srv: String,

    /// Suffix added to the SRV names queried at bootstrap.
    #[arg(long, env = "ETCD_DISCOVERY_SRV_NAME", default_value = "", hide_default_value = true, help_heading = CLUSTERING)]
    pub discovery_srv_name: String,

    /// Refuse membership changes that would lose quorum.
    #[arg(long, env = "ETCD_STRICT_RECONFIG_CHECK", num_args = 0..=1, require_equals = true,
        default_value = "true", default_missing_value = "true",
        value_parser = parse_go_bool, action = ArgAction::Set, help_heading = CLUSTERING)]
    pub strict_reconfig_check: bool,

    /// Run raft's pre-vote phase before a real election.
    #[arg(long, env = "ETCD_PRE_VOTE", num_args = 0..=1, require_equals = true,
        default_value = "true", default_missing_value = "true",
        value_parser = parse_go_bool, action = ArgAction::Set, help_heading = CLUSTERING)]
    pub pre_vote: bool,

    /// How much history automatic compaction keeps: hours or a duration ("5m") in periodic
    /// mode, a number of revisions in revision mode; 0 disables it.
    #[arg(long, env = "ETCD_AUTO_COMPACTION_RETENTION", default_value = "0", help_heading = CLUSTERING)]
    pub auto_compaction_retention: String,

    /// How --auto-compaction-retention is read: periodic or revision.
    #[arg(long, env = "ETCD_AUTO_COMPACTION_MODE", default_value = "periodic", help_heading = CLUSTERING)]
    pub auto_compaction_mode: String,

    /// Serve the etcd v2 API.
    #[arg(long, env = "ETCD_ENABLE_V2", num_args = 0..=1, require_equals = true,
        default_value = "false", default_missing_value = "true",
        value_parser = parse_go_bool, action = ArgAction::Set, help_heading = CLUSTERING)]
    pub enable_v2: bool,

    /// Stage of the v2 store's retirement: not-yet, write-only, write-only-drop-data or gone.
    #[arg(long, env = "ETCD_V2_DEPRECATION", default_value = "not-yet", help_heading = CLUSTERING)]
    pub v2_deprecation: String,

    // ---- security ----
    /// TLS certificate served on client URLs.
    #[arg(long, env = "ETCD_CERT_FILE", default_value = "", hide_default_value = true, help_heading = SECURITY)]
    pub cert_file: String,

    /// Private key of --cert-file.
    #[arg(long, env = "ETCD_KEY_FILE", default_value = "", hide_default_value = true, help_heading = SECURITY)]
    pub key_file: String,

    /// Certificate this server presents when it acts as a client (defaults to --cert-file).
    #[arg(long, env = "ETCD_CLIENT_CERT_FILE", default_value = "", hide_default_value = true, help_heading = SECURITY)]
    pub client_cert_file: String,

    /// Private key of --client-cert-file.
    #[arg(long, env = "ETCD_CLIENT_KEY_FILE", default_value = "", hide_default_value = true, help_heading = SECURITY)]
    pub client_key_file: String,

    /// Require clients to present a certificate signed by --trusted-ca-file.
    #[arg(long, env = "ETCD_CLIENT_CERT_AUTH", num_args = 0..=1, require_equals = true,
        default_value = "false", default_missing_value = "true",
        value_parser = parse_go_bool, action = ArgAction::Set, help_heading = SECURITY)]
    pub client_cert_auth: bool,

    /// Certificate revocation list checked against client certificates.
    #[arg(long, env = "ETCD_CLIENT_CRL_FILE", default_value = "", hide_default_value = true, help_heading = SECURITY)]
    pub client_crl_file: String,

    /// Host name a client certificate must carry.
    #[arg(long, env = "ETCD_CLIENT_CERT_ALLOWED_HOSTNAME", default_value = "", hide_default_value = true, help_heading = SECURITY)]
    pub client_cert_allowed_hostname: String,

    /// CA bundle client certificates are verified against.
    #[arg(long, env = "ETCD_TRUSTED_CA_FILE", default_value = "", hide_default_value = true, help_heading = SECURITY)]
    pub trusted_ca_file: String,

    /// Serve client URLs with a self-signed certificate generated under <data-dir>/fixtures/client.
    #[arg(long, env = "ETCD_AUTO_TLS", num_args = 0..=1, require_equals = true,
        default_value = "false", default_missing_value = "true",
        value_parser = parse_go_bool, action = ArgAction::Set, help_heading = SECURITY)]
    pub auto_tls: bool,

    /// TLS certificate served on peer URLs.
    #[arg(long, env = "ETCD_PEER_CERT_FILE", default_value = "", hide_default_value = true, help_heading = SECURITY)]
    pub peer_cert_file: String,

    /// Private key of --peer-cert-file.
    #[arg(long, env = "ETCD_PEER_KEY_FILE", default_value = "", hide_default_value = true, help_heading = SECURITY)]
    pub peer_key_file: String,

    /// Certificate presented when dialing other members (defaults to --peer-cert-file).
    #[arg(long, env = "ETCD_PEER_CLIENT_CERT_FILE", default_value = "", hide_default_value = true, help_heading = SECURITY)]
    pub peer_client_cert_file: String,

    /// Private key of --peer-client-cert-file.
    #[arg(long, env = "ETCD_PEER_CLIENT_KEY_FILE", default_value = "", hide_default_value = true, help_heading = SECURITY)]
    pub peer_client_key_file: String,

    /// Require members to present a certificate signed by --peer-trusted-ca-file.
    #[arg(long, env = "ETCD_PEER_CLIENT_CERT_AUTH", num_args = 0..=1, require_equals = true,
        default_value = "false", default_missing_value = "true",
        value_parser = parse_go_bool, action = ArgAction::Set, help_heading = SECURITY)]
    pub peer_client_cert_auth: bool,

    /// CA bundle member certificates are verified against.
    #[arg(long, env = "ETCD_PEER_TRUSTED_CA_FILE", default_value = "", hide_default_value = true, help_heading = SECURITY)]
    pub peer_trusted_ca_file: String,

    /// Common name a member's certificate must carry.
    #[arg(long, env = "ETCD_PEER_CERT_ALLOWED_CN", default_value = "", hide_default_value = true, help_heading = SECURITY)]
    pub peer_cert_allowed_cn: String,

    /// Host name a member's certificate must carry.
    #[arg(long, env = "ETCD_PEER_CERT_ALLOWED_HOSTNAME", default_value = "", hide_default_value = true, help_heading = SECURITY)]
    pub peer_cert_allowed_hostname: String,

    /// Serve peer URLs with a self-signed certificate generated under <data-dir>/fixtures/peer,
    /// unless --peer-cert-file and --peer-key-file are given.
    #[arg(long, env = "ETCD_PEER_AUTO_TLS", num_args = 0..=1, require_equals = true,
        default_value = "false", default_missing_value = "true",
        value_parser = parse_go_bool, action = ArgAction::Set, help_heading = SECURITY)]
    pub peer_auto_tls: bool,

    /// Years a self-signed (--auto-tls, --peer-auto-tls) certificate stays valid.
    #[arg(long, env = "ETCD_SELF_SIGNED_CERT_VALIDITY", default_value = "1", help_heading = SECURITY)]
    pub self_signed_cert_validity: u32,

    /// Certificate revocation list checked against member certificates.
    #[arg(long, env = "ETCD_PEER_CRL_FILE", default_value = "", hide_default_value = true, help_heading = SECURITY)]
    pub peer_crl_file: String,

    /// Comma-separated TLS cipher suites for clients and peers (empty: the library's choice).
    #[arg(long, env = "ETCD_CIPHER_SUITES", default_value = "", hide_default_value = true, help_heading = SECURITY)]
    #[serde(deserialize_with = "string_or_list")]
    pub cipher_suites: String,

    /// Lowest TLS version accepted (TLS1.2 or TLS1.3).
    #[arg(long, env = "ETCD_TLS_MIN_VERSION", default_value = "TLS1.2", help_heading = SECURITY)]
    pub tls_min_version: String,

    /// Highest TLS version accepted (empty: the library's highest).
    #[arg(long, env = "ETCD_TLS_MAX_VERSION", default_value = "", hide_default_value = true, help_heading = SECURITY)]
    pub tls_max_version: String,

    /// Comma-separated origins allowed by CORS (empty or * allows all).
    #[arg(long, env = "ETCD_CORS", default_value = "*", help_heading = SECURITY)]
    #[serde(deserialize_with = "string_or_list")]
    pub cors: String,

    /// Comma-separated host names accepted in HTTP requests when the server is not secure (* allows all).
    #[arg(long, env = "ETCD_HOST_WHITELIST", default_value = "*", help_heading = SECURITY)]
    #[serde(deserialize_with = "string_or_list")]
    pub host_whitelist: String,

    /// Do not check the SAN of client certificates on peer connections.
    #[arg(long, env = "ETCD_EXPERIMENTAL_PEER_SKIP_CLIENT_SAN_VERIFICATION", num_args = 0..=1, require_equals = true,
        default_value = "false", default_missing_value = "true",
        value_parser = parse_go_bool, action = ArgAction::Set, help_heading = SECURITY)]
    pub experimental_peer_skip_client_san_verification: bool,

    // ---- auth ----
    /// Kind of auth token and its options ("simple" or "jwt,...").
    #[arg(long, env = "ETCD_AUTH_TOKEN", default_value = "simple", help_heading = AUTH)]
    pub auth_token: String,

    /// bcrypt cost used to hash passwords (4..=31).
    #[arg(long, env = "ETCD_BCRYPT_COST", default_value = "10", help_heading = AUTH)]
    pub bcrypt_cost: u32,

    /// Seconds a simple auth token lives.
    #[arg(long, env = "ETCD_AUTH_TOKEN_TTL", default_value = "300", help_heading = AUTH)]
    pub auth_token_ttl: u32,

    // ---- profiling and monitoring ----
    /// Serve runtime profiles under <client-url>/debug/pprof/.
    #[arg(long, env = "ETCD_ENABLE_PPROF", num_args = 0..=1, require_equals = true,
        default_value = "false", default_missing_value = "true",
        value_parser = parse_go_bool, action = ArgAction::Set, help_heading = MONITORING)]
    pub enable_pprof: bool,

    /// Detail of exported metrics: basic or extensive (adds histograms).
    #[arg(long, env = "ETCD_METRICS", default_value = "basic", help_heading = MONITORING)]
    pub metrics: String,

    // ---- logging ----
    /// Log format: zap (one JSON object per line) or capnslog (text).
    #[arg(long, env = "ETCD_LOGGER", default_value = "zap", help_heading = LOGGING)]
    pub logger: String,

    /// Comma-separated log destinations: default, stderr, stdout, systemd/journal or file paths.
    #[arg(long, env = "ETCD_LOG_OUTPUTS", default_value = "default", help_heading = LOGGING)]
    #[serde(deserialize_with = "string_or_list")]
    pub log_outputs: String,

    /// Lowest level logged: debug, info, warn, error, panic or fatal.
    #[arg(long, env = "ETCD_LOG_LEVEL", default_value = "info", help_heading = LOGGING)]
    pub log_level: String,

    /// Rotate log files (only for file outputs).
    #[arg(long, env = "ETCD_ENABLE_LOG_ROTATION", num_args = 0..=1, require_equals = true,
        default_value = "false", default_missing_value = "true",
        value_parser = parse_go_bool, action = ArgAction::Set, help_heading = LOGGING)]
    pub enable_log_rotation: bool,

    /// Log rotation settings, as JSON.
    #[arg(long, env = "ETCD_LOG_ROTATION_CONFIG_JSON",
        default_value = r#"{"maxsize": 100, "maxage": 0, "maxbackups": 0, "localtime": false, "compress": false}"#,
        help_heading = LOGGING)]
    pub log_rotation_config_json: String,

    // ---- v2 proxy ----
    /// v2 proxy mode: off, readonly or on.
    #[arg(long, env = "ETCD_PROXY", default_value = "off", help_heading = PROXY)]
    pub proxy: String,

    /// Milliseconds a failed endpoint stays out of rotation.
    #[arg(long, env = "ETCD_PROXY_FAILURE_WAIT", default_value = "5000", help_heading = PROXY)]
    pub proxy_failure_wait: u32,

    /// Milliseconds between endpoint refreshes.
    #[arg(long, env = "ETCD_PROXY_REFRESH_INTERVAL", default_value = "30000", help_heading = PROXY)]
    pub proxy_refresh_interval: u32,

    /// Milliseconds before a dial times out (0 never).
    #[arg(long, env = "ETCD_PROXY_DIAL_TIMEOUT", default_value = "1000", help_heading = PROXY)]
    pub proxy_dial_timeout: u32,

    /// Milliseconds before a write times out (0 never).
    #[arg(long, env = "ETCD_PROXY_WRITE_TIMEOUT", default_value = "5000", help_heading = PROXY)]
    pub proxy_write_timeout: u32,

    /// Milliseconds before a read times out (0 never).
    #[arg(long, env = "ETCD_PROXY_READ_TIMEOUT", default_value = "0", help_heading = PROXY)]
    pub proxy_read_timeout: u32,

    // ---- gateway ----
    /// Serve the HTTP/JSON gateway to the v3 API.
    #[arg(long, env = "ETCD_ENABLE_GRPC_GATEWAY", num_args = 0..=1, require_equals = true,
        default_value = "true", default_missing_value = "true",
        value_parser = parse_go_bool, action = ArgAction::Set, help_heading = CLUSTERING)]
    pub enable_grpc_gateway: bool,

    // ---- experimental ----
    /// Check the data for corruption before serving any traffic.
    #[arg(long, env = "ETCD_EXPERIMENTAL_INITIAL_CORRUPT_CHECK", num_args = 0..=1, require_equals = true,
        default_value = "false", default_missing_value = "true",
        value_parser = parse_go_bool, action = ArgAction::Set, help_heading = EXPERIMENTAL)]
    pub experimental_initial_corrupt_check: bool,

    /// Verify the checksum of every page of the backend at each start (oxcd; etcd's bolt file
    /// has no checksums). This reads the whole file, on a thread of its own beside the index
    /// rebuild; the member serves once both are done. With false,
    /// a start after a clean stop opens the backend at once; after a crash it is still read.
    #[arg(long, env = "ETCD_EXPERIMENTAL_BACKEND_VERIFY_ON_START", num_args = 0..=1, require_equals = true,
        default_value = "true", default_missing_value = "true",
        value_parser = parse_go_bool, action = ArgAction::Set, help_heading = EXPERIMENTAL)]
    pub experimental_backend_verify_on_start: bool,

    /// Interval between cluster-wide corruption checks (0 disables).
    #[arg(long, env = "ETCD_EXPERIMENTAL_CORRUPT_CHECK_TIME", default_value = "0s", help_heading = EXPERIMENTAL)]
    pub experimental_corrupt_check_time: GoDuration,

    /// Let the leader compare compaction hashes of its followers.
    #[arg(long, env = "ETCD_EXPERIMENTAL_COMPACT_HASH_CHECK_ENABLED", num_args = 0..=1, require_equals = true,
        default_value = "false", default_missing_value = "true",
        value_parser = parse_go_bool, action = ArgAction::Set, help_heading = EXPERIMENTAL)]
    pub experimental_compact_hash_check_enabled: bool,

    /// Interval between compaction hash checks.
    #[arg(long, env = "ETCD_EXPERIMENTAL_COMPACT_HASH_CHECK_TIME", default_value = "1m", help_heading = EXPERIMENTAL)]
    pub experimental_compact_hash_check_time: GoDuration,

    /// Serve v2 requests from the v3 store under this prefix.
    #[arg(long, env = "ETCD_EXPERIMENTAL_ENABLE_V2V3", default_value = "", hide_default_value = true, help_heading = EXPERIMENTAL)]
    pub experimental_enable_v2v3: String,

    /// Free-list type of etcd's bbolt backend (deprecated spelling of --backend-bbolt-freelist-type).
    #[arg(long, env = "ETCD_EXPERIMENTAL_BACKEND_BBOLT_FREELIST_TYPE", default_value = "map", help_heading = EXPERIMENTAL)]
    pub experimental_backend_bbolt_freelist_type: String,

    /// Let the leader checkpoint remaining lease TTLs to the other members.
    #[arg(long, env = "ETCD_EXPERIMENTAL_ENABLE_LEASE_CHECKPOINT", num_args = 0..=1, require_equals = true,
        default_value = "false", default_missing_value = "true",
        value_parser = parse_go_bool, action = ArgAction::Set, help_heading = EXPERIMENTAL)]
    pub experimental_enable_lease_checkpoint: bool,

    /// Persist lease checkpoints (needs --experimental-enable-lease-checkpoint).
    #[arg(long, env = "ETCD_EXPERIMENTAL_ENABLE_LEASE_CHECKPOINT_PERSIST", num_args = 0..=1, require_equals = true,
        default_value = "false", default_missing_value = "true",
        value_parser = parse_go_bool, action = ArgAction::Set, help_heading = EXPERIMENTAL)]
    pub experimental_enable_lease_checkpoint_persist: bool,

    /// Most revisions removed by one compaction batch.
    #[arg(long, env = "ETCD_EXPERIMENTAL_COMPACTION_BATCH_LIMIT", default_value = "1000", help_heading = EXPERIMENTAL)]
    pub experimental_compaction_batch_limit: i64,

    /// Pause between two compaction batches.
    #[arg(long, env = "ETCD_EXPERIMENTAL_COMPACTION_SLEEP_INTERVAL", default_value = "10ms", help_heading = EXPERIMENTAL)]
    pub experimental_compaction_sleep_interval: GoDuration,

    /// Interval of progress notifications sent to synced watchers.
    #[arg(long, env = "ETCD_EXPERIMENTAL_WATCH_PROGRESS_NOTIFY_INTERVAL", alias = "watch-progress-notify-interval",
        default_value = "10m", help_heading = EXPERIMENTAL)]
    #[serde(alias = "watch-progress-notify-interval")]
    pub experimental_watch_progress_notify_interval: GoDuration,

    /// Applies slower than this are logged as warnings.
    #[arg(long, env = "ETCD_EXPERIMENTAL_WARNING_APPLY_DURATION", default_value = "100ms", help_heading = EXPERIMENTAL)]
    pub experimental_warning_apply_duration: GoDuration,

    /// Unary requests slower than this are logged as warnings.
    #[arg(long, env = "ETCD_EXPERIMENTAL_WARNING_UNARY_REQUEST_DURATION", default_value = "300ms", help_heading = EXPERIMENTAL)]
    pub experimental_warning_unary_request_duration: GoDuration,

    /// Defragment at startup when at least this many MiB would be freed (0 never).
    #[arg(long, env = "ETCD_EXPERIMENTAL_BOOTSTRAP_DEFRAG_THRESHOLD_MEGABYTES", default_value = "0", help_heading = EXPERIMENTAL)]
    pub experimental_bootstrap_defrag_threshold_megabytes: u32,

    /// Let write transactions share the read buffer.
    #[arg(long, env = "ETCD_EXPERIMENTAL_TXN_MODE_WRITE_WITH_SHARED_BUFFER", num_args = 0..=1, require_equals = true,
        default_value = "true", default_missing_value = "true",
        value_parser = parse_go_bool, action = ArgAction::Set, help_heading = EXPERIMENTAL)]
    pub experimental_txn_mode_write_with_shared_buffer: bool,

    /// Lock the process memory so that it is never swapped out.
    #[arg(long, env = "ETCD_EXPERIMENTAL_MEMORY_MLOCK", num_args = 0..=1, require_equals = true,
        default_value = "false", default_missing_value = "true",
        value_parser = parse_go_bool, action = ArgAction::Set, help_heading = EXPERIMENTAL)]
    pub experimental_memory_mlock: bool,

    /// Interval between checks that a downgrade has finished.
    #[arg(long, env = "ETCD_EXPERIMENTAL_DOWNGRADE_CHECK_TIME", default_value = "5s", help_heading = EXPERIMENTAL)]
    pub experimental_downgrade_check_time: GoDuration,

    /// How long to wait for the cluster to be ready before serving anyway.
    #[arg(long, env = "ETCD_EXPERIMENTAL_WAIT_CLUSTER_READY_TIMEOUT", default_value = "5s", help_heading = EXPERIMENTAL)]
    pub experimental_wait_cluster_ready_timeout: GoDuration,

    /// Entries kept after a snapshot so that slow followers can catch up from the log.
    #[arg(long, env = "ETCD_EXPERIMENTAL_SNAPSHOT_CATCHUP_ENTRIES", default_value = "5000", help_heading = EXPERIMENTAL)]
    pub experimental_snapshot_catchup_entries: u64,

    /// Most learners the cluster may hold at once.
    #[arg(long, env = "ETCD_EXPERIMENTAL_MAX_LEARNERS", alias = "max-learners", default_value = "1", help_heading = EXPERIMENTAL)]
    #[serde(alias = "max-learners")]
    pub experimental_max_learners: u32,

    /// Stop answering gRPC health checks while a defragmentation runs.
    #[arg(long, env = "ETCD_EXPERIMENTAL_STOP_GRPC_SERVICE_ON_DEFRAG", num_args = 0..=1, require_equals = true,
        default_value = "false", default_missing_value = "true",
        value_parser = parse_go_bool, action = ArgAction::Set, help_heading = EXPERIMENTAL)]
    pub experimental_stop_grpc_service_on_defrag: bool,

    /// Export OpenTelemetry traces.
    #[arg(long, env = "ETCD_EXPERIMENTAL_ENABLE_DISTRIBUTED_TRACING", num_args = 0..=1, require_equals = true,
        default_value = "false", default_missing_value = "true",
        value_parser = parse_go_bool, action = ArgAction::Set, help_heading = EXPERIMENTAL)]
    pub experimental_enable_distributed_tracing: bool,

    /// Collector address for traces.
    #[arg(long, env = "ETCD_EXPERIMENTAL_DISTRIBUTED_TRACING_ADDRESS", default_value = "localhost:4317", help_heading = EXPERIMENTAL)]
    pub experimental_distributed_tracing_address: String,

    /// Service name attached to traces.
    #[arg(long, env = "ETCD_EXPERIMENTAL_DISTRIBUTED_TRACING_SERVICE_NAME", default_value = "etcd", help_heading = EXPERIMENTAL)]
    pub experimental_distributed_tracing_service_name: String,

    /// Instance id attached to traces.
    #[arg(long, env = "ETCD_EXPERIMENTAL_DISTRIBUTED_TRACING_INSTANCE_ID", default_value = "", hide_default_value = true, help_heading = EXPERIMENTAL)]
    pub experimental_distributed_tracing_instance_id: String,

    /// Traces sampled per million requests.
    #[arg(long, env = "ETCD_EXPERIMENTAL_DISTRIBUTED_TRACING_SAMPLING_RATE", default_value = "0", help_heading = EXPERIMENTAL)]
    pub experimental_distributed_tracing_sampling_rate: u32,

    /// The etcd release to present as: 3.5 (the default) or 3.4. It sets the server and
    /// cluster versions reported by /version, /metrics and the Status RPC, and the /health
    /// body (etcd 3.4's has no "reason"), for clients and monitoring written against 3.4.
    #[arg(long, env = "ETCD_EXPERIMENTAL_EMULATE_ETCD_VERSION", default_value = "3.5", help_heading = EXPERIMENTAL)]
    pub experimental_emulate_etcd_version: String,

    // ---- unsafe ----
    /// Restart as a one-member cluster, dropping the other members (breaks consensus guarantees).
    #[arg(long, env = "ETCD_FORCE_NEW_CLUSTER", num_args = 0..=1, require_equals = true,
        default_value = "false", default_missing_value = "true",
        value_parser = parse_go_bool, action = ArgAction::Set, help_heading = UNSAFE)]
    pub force_new_cluster: bool,

    /// Never fsync (loses acknowledged writes on a crash).
    #[arg(long, env = "ETCD_UNSAFE_NO_FSYNC", num_args = 0..=1, require_equals = true,
        default_value = "false", default_missing_value = "true",
        value_parser = parse_go_bool, action = ArgAction::Set, help_heading = UNSAFE)]
    pub unsafe_no_fsync: bool,
}

impl Default for Flags {
    /// etcd's defaults: the flags of an empty command line with no environment.
    fn default() -> Self {
        let matches = Flags::command_without_env()
            .try_get_matches_from(["oxcd"])
            .expect("flag defaults must parse");
        <Flags as clap::FromArgMatches>::from_arg_matches(&matches)
            .expect("flag defaults must fill Flags")
    }
}

impl Flags {
    /// The clap command with environment lookups switched off: the environment is
    /// applied by [`super::parse_from`], which follows etcd's rules for it.
    pub(crate) fn command_without_env() -> clap::Command {
        <Flags as clap::CommandFactory>::command().mut_args(|a| a.env(None::<&str>))
    }
}

/// Parses a boolean the way Go's `strconv.ParseBool` does.
pub fn parse_go_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err("parse error".to_string()),
    }
}

/// A duration written as Go writes them ("300ms", "1h30m", "10m0s", "0").
///
/// In a YAML file etcd takes durations as integers of nanoseconds (Go's JSON form of
/// `time.Duration`); both that and the text form are accepted there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct GoDuration(pub Duration);

impl FromStr for GoDuration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        parse_go_duration(s).map(GoDuration)
    }
}

impl fmt::Display for GoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        if d.is_zero() {
            return f.write_str("0s");
        }
        if d < Duration::from_secs(1) {
            let ns = d.as_nanos();
            let (ms, sub_ms) = (ns / 1_000_000, ns % 1_000_000);
            let (us, sub_us) = (ns / 1_000, ns % 1_000);
            return if sub_ms == 0 {
                write!(f, "{ms}ms")
            } else if sub_us == 0 {
                write!(f, "{us}µs")
            } else {
                write!(f, "{ns}ns")
            };
        }
        let secs = d.as_secs();
        let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
        if h > 0 {
            write!(f, "{h}h{m}m")?;
        } else if m > 0 {
            write!(f, "{m}m")?;
        }
        let nanos = d.subsec_nanos();
        if nanos == 0 {
            write!(f, "{s}s")
        } else {
            let frac = format!("{nanos:09}");
            write!(f, "{s}.{}s", frac.trim_end_matches('0'))
        }
    }
}

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Nanos(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Nanos(n) => Ok(GoDuration(Duration::from_nanos(n))),
            Raw::Text(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// Parses Go's `time.ParseDuration` syntax: a sequence of decimal numbers with units
/// ns, us (µs), ms, s, m, h; "0" alone needs no unit. Negative durations are refused.
pub fn parse_go_duration(input: &str) -> Result<Duration, String> {
    let bad = || format!("time: invalid duration {input:?}");
    let mut s = input;
    if let Some(rest) = s.strip_prefix('+') {
        s = rest;
    } else if let Some(rest) = s.strip_prefix('-') {
        return if rest == "0" {
            Ok(Duration::ZERO)
        } else {
            Err(format!("negative duration {input:?} is not allowed"))
        };
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(bad());
    }
    let mut total: u128 = 0;
    while !s.is_empty() {
        let num_end = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let (num, rest) = s.split_at(num_end);
        if num.is_empty() || num == "." {
            return Err(bad());
        }
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let (unit, rest) = rest.split_at(unit_end);
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(format!("time: missing unit in duration {input:?}")),
            _ => return Err(format!("time: unknown unit {unit:?} in duration {input:?}")),
        };
        let (int_part, frac_part) = num.split_once('.').unwrap_or((num, ""));
        let int: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| bad())?
        };
        let mut value = int.checked_mul(scale).ok_or_else(bad)?;
        let mut div = 1u128;
        for c in frac_part.chars().take(18) {
            div *= 10;
            value += u128::from(c.to_digit(10).ok_or_else(bad)?) * scale / div;
        }
        total = total.checked_add(value).ok_or_else(bad)?;
        s = rest;
    }
    if total > i64::MAX as u128 {
        return Err(bad());
    }
    Ok(Duration::from_nanos(total as u64))
}

/// YAML lists (`[a, b]`) and comma-separated strings both fill a comma-separated flag.
fn string_or_list<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Raw::deserialize(d)? {
        Raw::One(s) => s,
        Raw::Many(v) => v.join(","),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse_like_go() {
        let ms = Duration::from_millis;
        assert_eq!(parse_go_duration("10m").unwrap(), ms(600_000));
        assert_eq!(parse_go_duration("1h30m").unwrap(), ms(5_400_000));
        assert_eq!(parse_go_duration("300ms").unwrap(), ms(300));
        assert_eq!(parse_go_duration("1.5s").unwrap(), ms(1500));
        assert_eq!(parse_go_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_go_duration("2us").unwrap(), Duration::from_micros(2));
        for bad in ["", "5", "abc", "5x", "1h-1m", ".s", "-5s"] {
            assert!(parse_go_duration(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn go_durations_print_like_go() {
        let p = |s: &str| GoDuration(parse_go_duration(s).unwrap()).to_string();
        assert_eq!(p("10m"), "10m0s");
        assert_eq!(p("2h"), "2h0m0s");
        assert_eq!(p("100ms"), "100ms");
        assert_eq!(p("1.5s"), "1.5s");
        assert_eq!(p("0"), "0s");
    }

    #[test]
    fn go_bools() {
        assert_eq!(parse_go_bool("T"), Ok(true));
        assert_eq!(parse_go_bool("0"), Ok(false));
        assert!(parse_go_bool("yes").is_err());
    }

    #[test]
    fn every_flag_has_etcds_env_name() {
        let cmd = <Flags as clap::CommandFactory>::command();
        for arg in cmd.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if long == "help" {
                continue;
            }
            let want = format!("ETCD_{}", long.to_uppercase().replace('-', "_"));
            let got = arg.get_env().map(|e| e.to_string_lossy().into_owned());
            assert_eq!(got.as_deref(), Some(want.as_str()), "flag --{long}");
        }
    }

    #[test]
    fn implemented_flags_exist() {
        let cmd = <Flags as clap::CommandFactory>::command();
        for name in IMPLEMENTED {
            assert!(
                cmd.get_arguments().any(|a| a.get_long() == Some(name)),
                "--{name} is listed as implemented but not declared"
            );
        }
    }

    #[test]
    fn yaml_durations_take_nanoseconds_or_text() {
        let f: Flags = serde_yaml::from_str(
            "experimental-watch-progress-notify-interval: 5000000000\n\
             experimental-warning-apply-duration: 250ms\n",
        )
        .unwrap();
        assert_eq!(
            f.experimental_watch_progress_notify_interval.0,
            Duration::from_secs(5)
        );
        assert_eq!(
            f.experimental_warning_apply_duration.0,
            Duration::from_millis(250)
        );
    }
}
