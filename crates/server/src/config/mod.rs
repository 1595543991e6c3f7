//! Server configuration: etcd's flags in, a validated [`ServerConfig`] out.
//!
//! The path is one-way, as in ripgrep's low/high args:
//!
//! 1. [`source`] gathers raw [`Flags`] from the command line and `ETCD_*` variables, or
//!    from the `--config-file` YAML ([`file`]) — etcd's precedence, see there.
//! 2. [`ServerConfig::from_flags`] validates them with etcd's rules and error texts and
//!    derives what the server runs with: parsed URLs, raft ticks, the initial cluster,
//!    data directory layout, member and cluster ids ([`ids`]).
//!
//! [`parse_from`] does both; `main` prints a [`ConfigError`] and exits with
//! [`ConfigError::exit_code`].

pub mod flags;
pub mod ids;
pub mod url;

mod file;
mod source;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

pub use self::flags::{Flags, GoDuration, IMPLEMENTED};
pub use self::source::env_name;
pub use self::url::{EtcdUrl, Scheme};

/// Our own version.
pub const OXCD_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The etcd release whose API and behaviour oxcd presents (`--experimental-emulate-etcd-version`):
/// its version is reported wherever etcd reports its own (clients and monitoring gate on it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EtcdRelease {
    /// etcd 3.4, as Debian's 3.4.23 reports itself.
    V3_4,
    #[default]
    V3_5,
}

impl EtcdRelease {
    fn parse(text: &str) -> Option<EtcdRelease> {
        match text.strip_prefix('v').unwrap_or(text) {
            "3.4" | "3.4.23" => Some(EtcdRelease::V3_4),
            "3.5" | "3.5.0" => Some(EtcdRelease::V3_5),
            _ => None,
        }
    }

    /// The server version: `/version`'s etcdserver, `etcd_server_version`, Status.version.
    pub fn server_version(self) -> &'static str {
        match self {
            EtcdRelease::V3_4 => "3.4.23",
            EtcdRelease::V3_5 => "3.5.0",
        }
    }

    /// The cluster version this member publishes through Raft.
    pub fn cluster_version(self) -> &'static str {
        match self {
            EtcdRelease::V3_4 => "3.4.0",
            EtcdRelease::V3_5 => "3.5.0",
        }
    }

    /// Whether `/health` explains a failure in a "reason" field (added in etcd 3.5).
    pub fn health_has_reason(self) -> bool {
        self == EtcdRelease::V3_5
    }
}

static RELEASE: std::sync::OnceLock<EtcdRelease> = std::sync::OnceLock::new();

/// The release this process presents; 3.5 until [`ServerConfig::from_flags`] sets it.
pub fn etcd_release() -> EtcdRelease {
    RELEASE.get().copied().unwrap_or_default()
}

/// etcd's default backend quota: 2 GiB.
pub const DEFAULT_QUOTA_BYTES: u64 = 2 * 1024 * 1024 * 1024;
/// Quotas above this (8 GiB) draw a warning, as in etcd.
pub const MAX_QUOTA_BYTES: u64 = 8 * 1024 * 1024 * 1024;
/// `--snapshot-count 0` means this.
pub const DEFAULT_SNAPSHOT_COUNT: u64 = 100_000;
/// Extra room the gRPC receive limit gets above `--max-request-bytes` (etcd's 512 KiB).
pub const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;
/// etcd refuses election timeouts above this many milliseconds.
pub const MAX_ELECTION_MS: u64 = 50_000;

/// Why the server cannot start with the given configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The command line could not be parsed: unknown flag, missing value, stray argument.
    #[error("{0}")]
    Usage(String),
    /// A flag, variable or config key has a value of the wrong form. `name` is
    /// "flag --snapshot-count" or "ETCD_SNAPSHOT_COUNT".
    #[error("invalid value {value:?} for {name}: {reason}")]
    InvalidValue {
        name: String,
        value: String,
        reason: String,
        /// Rejected while parsing the command line (Go's flag package exits 2 there).
        from_command_line: bool,
    },
    /// An `ETCD_*` variable duplicates a flag given on the command line.
    #[error("conflicting environment variable {0:?} is shadowed by corresponding command-line flag (either unset environment variable or disable flag)")]
    ConflictingEnv(String),
    /// The config file could not be read or parsed.
    #[error("cannot load config file {path}: {reason}")]
    ConfigFile { path: String, reason: String },
    /// The values are well-formed but do not fit together (etcd's wording).
    #[error("{0}")]
    Invalid(String),
}

impl ConfigError {
    /// The exit status etcd uses: 2 for command-line parse errors (Go's flag package),
    /// 1 for everything found afterwards.
    pub fn exit_code(&self) -> i32 {
        match self {
            ConfigError::Usage(_) => 2,
            ConfigError::InvalidValue {
                from_command_line: true,
                ..
            } => 2,
            _ => 1,
        }
    }

    fn value(flag: &str, value: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        ConfigError::InvalidValue {
            name: format!("flag --{flag}"),
            value: value.into(),
            reason: reason.into(),
            from_command_line: false,
        }
    }
}

/// What one invocation of `oxcd` asks for.
#[derive(Debug)]
pub enum Invocation {
    /// Run the server.
    Serve(Box<ServerConfig>),
    /// `--help`: print this text on stdout and exit 0.
    PrintHelp(String),
    /// `--version`: print this text on stdout and exit 0.
    PrintVersion(String),
}

/// Parses this process's arguments and environment.
pub fn parse() -> Result<Invocation, ConfigError> {
    let env = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.to_string_lossy().into_owned())));
    parse_from(std::env::args_os(), env)
}

/// Parses `args` (program name first) with `env` as the environment.
pub fn parse_from<I, T, E>(args: I, env: E) -> Result<Invocation, ConfigError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
    E: IntoIterator<Item = (String, String)>,
{
    let env: BTreeMap<String, String> = env.into_iter().collect();
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    match source::gather(args, &env)? {
        source::Outcome::Help(text) => Ok(Invocation::PrintHelp(text)),
        source::Outcome::Version => Ok(Invocation::PrintVersion(version_text())),
        source::Outcome::Flags(g) => {
            let mut cfg = ServerConfig::from_flags(g.flags, &g.set_by_user, &g.explicit)?;
            cfg.config_file = g.config_file;
            let mut warnings = g.warnings;
            warnings.append(&mut cfg.warnings);
            cfg.warnings = warnings;
            Ok(Invocation::Serve(Box::new(cfg)))
        }
    }
}

/// What `--version` prints: etcd's layout, so scripts reading "etcd Version:" keep working.
pub fn version_text() -> String {
    format!(
        "etcd Version: {}\noxcd Version: {OXCD_VERSION}\nAPI Version: {}\nOS/Arch: {}/{}\n",
        etcd_release().server_version(),
        api_version(),
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}

/// The etcd API version ("3.5"), as `/version`'s cluster field reports it.
pub fn api_version() -> &'static str {
    let cluster = etcd_release().cluster_version();
    cluster.rsplit_once('.').map_or(cluster, |(v, _)| v)
}

/// `--initial-cluster-state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClusterState {
    New,
    Existing,
}

/// `--auto-compaction-mode` with `--auto-compaction-retention`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AutoCompaction {
    Disabled,
    /// Keep this much history (time).
    Periodic(Duration),
    /// Keep this many revisions.
    Revision(u64),
}

/// `--logger`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoggerKind {
    /// One JSON object per line.
    Zap,
    /// Human-readable text lines.
    Capnslog,
}

/// `--log-level`; etcd's panic, dpanic and fatal log as error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

/// TLS files and switches for one side (client or peer), as given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub trusted_ca_file: Option<PathBuf>,
    /// Require and verify a client certificate.
    pub client_cert_auth: bool,
    /// Generate a self-signed certificate when no cert/key is given.
    pub auto_tls: bool,
    /// Certificate revocation list (DER or PEM); a presented certificate it lists is refused.
    pub crl_file: Option<PathBuf>,
    /// What a presented certificate must carry besides a trusted signature.
    pub allowed: Option<AllowedCert>,
}

/// A rule on the certificate the other end presents (`--peer-cert-allowed-cn`,
/// `--peer-cert-allowed-hostname`, `--client-cert-allowed-hostname`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AllowedCert {
    /// The subject's common name must be this.
    CommonName(String),
    /// The certificate must be valid for this host name or IP address.
    Hostname(String),
}

impl TlsFiles {
    /// No certificate and no key given (etcd's `TLSInfo.Empty`).
    pub fn is_empty(&self) -> bool {
        self.cert_file.is_none() && self.key_file.is_none()
    }

    /// Whether listeners of this side will serve TLS.
    pub fn enabled(&self) -> bool {
        !self.is_empty() || self.auto_tls
    }
}

/// One founding member from `--initial-cluster`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitialMember {
    pub name: String,
    pub id: u64,
    pub peer_urls: Vec<EtcdUrl>,
}

/// The validated configuration the server runs with.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// `--name`.
    pub name: String,
    /// `--data-dir`, defaulted to `<name>.etcd`.
    pub data_dir: PathBuf,
    /// `--wal-dir`, when the WAL lives outside the data dir.
    pub dedicated_wal_dir: Option<PathBuf>,
    pub listen_peer_urls: Vec<EtcdUrl>,
    pub listen_client_urls: Vec<EtcdUrl>,
    /// `--listen-client-http-urls`: when not empty, client HTTP is served here and the
    /// client URLs serve gRPC only.
    pub listen_client_http_urls: Vec<EtcdUrl>,
    /// Empty when no separate metrics listener is wanted.
    pub listen_metrics_urls: Vec<EtcdUrl>,
    pub initial_advertise_peer_urls: Vec<EtcdUrl>,
    pub advertise_client_urls: Vec<EtcdUrl>,
    /// `--initial-cluster`: member name → its peer URLs (sorted).
    pub initial_cluster: BTreeMap<String, Vec<EtcdUrl>>,
    pub initial_cluster_state: ClusterState,
    pub initial_cluster_token: String,
    /// Applied entries between snapshots (0 already replaced by the default).
    pub snapshot_count: u64,
    /// Raft log entries kept behind each snapshot for followers to catch up from.
    pub snapshot_catch_up_entries: u64,
    /// One raft tick.
    pub heartbeat_interval: Duration,
    pub election_timeout: Duration,
    /// Ticks between heartbeats: always 1 (etcd ties tick and heartbeat).
    pub heartbeat_ticks: usize,
    /// `election_timeout / heartbeat_interval`.
    pub election_ticks: usize,
    /// Backend size that raises NOSPACE; `None` when disabled by a negative value.
    pub quota_backend_bytes: Option<u64>,
    pub max_request_bytes: usize,
    /// Largest Range answer the server builds (`--max-send-bytes`).
    pub max_send_bytes: usize,
    /// Whether every start verifies the whole backend file, or only one after a crash.
    pub backend_verify_on_start: bool,
    pub max_txn_ops: usize,
    pub auto_compaction: AutoCompaction,
    pub enable_v2: bool,
    pub max_learners: usize,
    pub strict_reconfig_check: bool,
    pub watch_progress_notify_interval: Duration,
    pub client_tls: TlsFiles,
    pub peer_tls: TlsFiles,
    /// `--cipher-suites`, Go's names, checked; empty means rustls' defaults.
    pub cipher_suites: Vec<String>,
    /// Lifetime of self-signed certificates, in years.
    pub self_signed_cert_validity_years: u32,
    pub logger: LoggerKind,
    pub log_level: LogLevel,
    /// The YAML file the configuration came from, if any.
    pub config_file: Option<PathBuf>,
    /// Flags the user set that oxcd does not act on yet ("--discovery", ...), to be named
    /// in a startup warning ("flag not implemented yet, ignored").
    pub unimplemented_flags: Vec<String>,
    /// Other startup warnings (unknown ETCD_* variables, odd values), to log once logging
    /// is up.
    pub warnings: Vec<String>,
    /// The raw flags, for logging the effective configuration and for settings not
    /// lifted into typed fields.
    pub flags: Flags,
}

fn urls(flag: &str, value: &str) -> Result<Vec<EtcdUrl>, ConfigError> {
    EtcdUrl::parse_list(value).map_err(|e| ConfigError::value(flag, value, e))
}

fn bind_urls(flag: &str, value: &str) -> Result<Vec<EtcdUrl>, ConfigError> {
    let list = urls(flag, value)?;
    if let Some(u) = list.iter().find(|u| !u.host_is_bindable()) {
        return Err(ConfigError::value(
            flag,
            value,
            format!("expected IP in URL for binding ({u})"),
        ));
    }
    Ok(list)
}

fn advertise_urls(flag: &str, value: &str) -> Result<Vec<EtcdUrl>, ConfigError> {
    let list = urls(flag, value)?;
    if let Some(u) = list.iter().find(|u| u.host.is_empty()) {
        return Err(ConfigError::Invalid(format!(
            "--{flag} {value:?} must be \"host:port\" (unexpected empty host ({u}))"
        )));
    }
    Ok(list)
}

fn optional_path(s: &str) -> Option<PathBuf> {
    (!s.is_empty()).then(|| PathBuf::from(s))
}

fn join_urls(urls: &[EtcdUrl]) -> String {
    urls.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Parses `--initial-cluster` (`name=url,name=url,...`, a name may repeat for several URLs).
pub fn parse_initial_cluster(value: &str) -> Result<BTreeMap<String, Vec<EtcdUrl>>, ConfigError> {
    let mut raw: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for pair in value.split(',').filter(|p| !p.is_empty()) {
        let (name, url) = pair.split_once('=').unwrap_or((pair, ""));
        raw.entry(name.to_string())
            .or_default()
            .push(url.to_string());
    }
    raw.into_iter()
        .map(|(name, list)| {
            let mut parsed = list
                .iter()
                .map(|u| EtcdUrl::parse(u))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ConfigError::value("initial-cluster", value, e))?;
            parsed.sort_by_key(ToString::to_string);
            Ok((name, parsed))
        })
        .collect()
}

fn parse_compaction(mode: &str, retention: &str) -> Result<AutoCompaction, ConfigError> {
    let bad = |reason: String| ConfigError::value("auto-compaction-retention", retention, reason);
    match mode {
        "periodic" | "" => {
            if let Ok(hours) = retention.parse::<u64>() {
                return Ok(if hours == 0 {
                    AutoCompaction::Disabled
                } else {
                    AutoCompaction::Periodic(Duration::from_secs(hours.saturating_mul(3600)))
                });
            }
            let d = flags::parse_go_duration(retention).map_err(bad)?;
            Ok(if d.is_zero() {
                AutoCompaction::Disabled
            } else {
                AutoCompaction::Periodic(d)
            })
        }
        "revision" => {
            let n = retention
                .parse::<u64>()
                .map_err(|_| bad("revision mode takes a number of revisions".to_string()))?;
            Ok(if n == 0 {
                AutoCompaction::Disabled
            } else {
                AutoCompaction::Revision(n)
            })
        }
        other => Err(ConfigError::Invalid(format!(
            "unknown auto-compaction-mode {other:?}"
        ))),
    }
}

/// One side's TLS flags, as given.
struct TlsFlags<'a> {
    cert: &'a str,
    key: &'a str,
    ca: &'a str,
    auth: bool,
    auto: bool,
    crl: &'a str,
    allowed_cn: &'a str,
    allowed_hostname: &'a str,
}

fn tls_files(t: TlsFlags<'_>) -> Result<TlsFiles, ConfigError> {
    if t.cert.is_empty() != t.key.is_empty() {
        return Err(ConfigError::Invalid(format!(
            "KeyFile and CertFile must both be present[key: {}, cert: {}]",
            t.key, t.cert
        )));
    }
    let allowed = match (t.allowed_cn, t.allowed_hostname) {
        ("", "") => None,
        (cn, "") => Some(AllowedCert::CommonName(cn.to_owned())),
        ("", host) => Some(AllowedCert::Hostname(host.to_owned())),
        (cn, host) => {
            return Err(ConfigError::Invalid(format!(
            "AllowedCN and AllowedHostname are mutually exclusive (cn={cn:?}, hostname={host:?})"
        )))
        }
    };
    Ok(TlsFiles {
        cert_file: optional_path(t.cert),
        key_file: optional_path(t.key),
        trusted_ca_file: optional_path(t.ca),
        client_cert_auth: t.auth,
        auto_tls: t.auto,
        crl_file: optional_path(t.crl),
        allowed,
    })
}

impl ServerConfig {
    /// Validates raw flags. `set_by_user` names the flags the user gave (any source);
    /// `explicit` those given on the command line or in the environment.
    pub fn from_flags(
        f: Flags,
        set_by_user: &BTreeSet<String>,
        explicit: &BTreeSet<String>,
    ) -> Result<ServerConfig, ConfigError> {
        let mut warnings = Vec::new();

        let release =
            EtcdRelease::parse(&f.experimental_emulate_etcd_version).ok_or_else(|| {
                ConfigError::value(
                    "experimental-emulate-etcd-version",
                    &f.experimental_emulate_etcd_version,
                    "must be 3.4 or 3.5",
                )
            })?;
        // One process serves one member: the first configuration read decides.
        let _ = RELEASE.set(release);

        let listen_peer_urls = bind_urls("listen-peer-urls", &f.listen_peer_urls)?;
        let listen_client_urls = bind_urls("listen-client-urls", &f.listen_client_urls)?;
        let listen_client_http_urls = if f.listen_client_http_urls.is_empty() {
            Vec::new()
        } else {
            bind_urls("listen-client-http-urls", &f.listen_client_http_urls)?
        };
        let listen_metrics_urls = if f.listen_metrics_urls.is_empty() {
            Vec::new()
        } else {
            bind_urls("listen-metrics-urls", &f.listen_metrics_urls)?
        };
        let initial_advertise_peer_urls = advertise_urls(
            "initial-advertise-peer-urls",
            &f.initial_advertise_peer_urls,
        )?;
        let advertise_client_urls =
            advertise_urls("advertise-client-urls", &f.advertise_client_urls)?;

        // Listening on chosen client URLs while advertising the default ones would send
        // clients to the wrong place; etcd refuses it (unless it runs as a v2 proxy).
        if explicit.contains("listen-client-urls")
            && !explicit.contains("advertise-client-urls")
            && f.proxy == "off"
        {
            return Err(ConfigError::Invalid(
                "--advertise-client-urls is required when --listen-client-urls is set explicitly"
                    .into(),
            ));
        }

        let initial_cluster_state = match f.initial_cluster_state.as_str() {
            "new" => ClusterState::New,
            "existing" => ClusterState::Existing,
            other => {
                return Err(ConfigError::value(
                    "initial-cluster-state",
                    other,
                    "valid values are \"new\" and \"existing\"",
                ))
            }
        };

        // `--name x` alone means a one-member cluster named x at the advertised peer URLs.
        let mut initial_cluster_str = f.initial_cluster.clone();
        if f.name != "default" && initial_cluster_str == Flags::default().initial_cluster {
            initial_cluster_str = initial_advertise_peer_urls
                .iter()
                .map(|u| format!("{}={u}", f.name))
                .collect::<Vec<_>>()
                .join(",");
        }
        let initial_cluster = parse_initial_cluster(&initial_cluster_str)?;

        if f.heartbeat_interval == 0 {
            return Err(ConfigError::Invalid(format!(
                "--heartbeat-interval must be >0 (set to {}ms)",
                f.heartbeat_interval
            )));
        }
        if f.election_timeout == 0 {
            return Err(ConfigError::Invalid(format!(
                "--election-timeout must be >0 (set to {}ms)",
                f.election_timeout
            )));
        }
        if f.heartbeat_interval.saturating_mul(5) > f.election_timeout {
            return Err(ConfigError::Invalid(format!(
                "--election-timeout[{}ms] should be at least as 5 times as --heartbeat-interval[{}ms]",
                f.election_timeout, f.heartbeat_interval
            )));
        }
        if f.election_timeout > MAX_ELECTION_MS {
            return Err(ConfigError::Invalid(format!(
                "--election-timeout[{}ms] is too long, and should be set less than {MAX_ELECTION_MS}ms",
                f.election_timeout
            )));
        }

        let auto_compaction =
            parse_compaction(&f.auto_compaction_mode, &f.auto_compaction_retention)?;

        let quota_backend_bytes = match f.quota_backend_bytes {
            q if q < 0 => None,
            0 => Some(DEFAULT_QUOTA_BYTES),
            q => Some(q as u64),
        };
        if quota_backend_bytes.is_some_and(|q| q > MAX_QUOTA_BYTES) {
            warnings.push(format!(
                "quota exceeds the maximum value: quota-size-bytes={} maximum-value-bytes={MAX_QUOTA_BYTES}",
                f.quota_backend_bytes
            ));
        }

        let logger = match f.logger.as_str() {
            "zap" => LoggerKind::Zap,
            "capnslog" => {
                warnings
                    .push("--logger=capnslog is deprecated in etcd 3.5; use --logger=zap".into());
                LoggerKind::Capnslog
            }
            other => {
                return Err(ConfigError::value(
                    "logger",
                    other,
                    "valid values are \"zap\" and \"capnslog\"",
                ))
            }
        };
        let log_level = match f.log_level.as_str() {
            "debug" => LogLevel::Debug,
            "info" => LogLevel::Info,
            "warn" => LogLevel::Warn,
            "error" | "dpanic" | "panic" | "fatal" => LogLevel::Error,
            other => {
                return Err(ConfigError::value(
                    "log-level",
                    other,
                    "only supports debug, info, warn, error, panic, or fatal",
                ))
            }
        };

        let client_tls = tls_files(TlsFlags {
            cert: &f.cert_file,
            key: &f.key_file,
            ca: &f.trusted_ca_file,
            auth: f.client_cert_auth,
            auto: f.auto_tls,
            crl: &f.client_crl_file,
            allowed_cn: "",
            allowed_hostname: &f.client_cert_allowed_hostname,
        })?;
        let peer_tls = tls_files(TlsFlags {
            cert: &f.peer_cert_file,
            key: &f.peer_key_file,
            ca: &f.peer_trusted_ca_file,
            auth: f.peer_client_cert_auth,
            auto: f.peer_auto_tls,
            crl: &f.peer_crl_file,
            allowed_cn: &f.peer_cert_allowed_cn,
            allowed_hostname: &f.peer_cert_allowed_hostname,
        })?;
        let cipher_suites: Vec<String> = f
            .cipher_suites
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        warnings.extend(
            crate::tls::cipher_suites::validate(&cipher_suites)
                .map_err(|e| ConfigError::value("cipher-suites", &f.cipher_suites, e))?,
        );
        if let Some(u) = listen_client_urls
            .iter()
            .chain(&listen_client_http_urls)
            .find(|u| u.scheme.is_tls())
        {
            if !client_tls.enabled() {
                return Err(ConfigError::Invalid(format!(
                    "TLS key/cert (--cert-file, --key-file) must be provided for client url {u} with HTTPS scheme"
                )));
            }
        }
        if let Some(u) = listen_peer_urls.iter().find(|u| u.scheme.is_tls()) {
            if !peer_tls.enabled() {
                return Err(ConfigError::Invalid(format!(
                    "TLS key/cert (--peer-cert-file, --peer-key-file) must be provided for peer url {u} with HTTPS scheme"
                )));
            }
        }
        if f.self_signed_cert_validity == 0 {
            return Err(ConfigError::value(
                "self-signed-cert-validity",
                "0",
                "must be at least 1 (years)",
            ));
        }
        if f.experimental_max_learners == 0 {
            return Err(ConfigError::value(
                "experimental-max-learners",
                "0",
                "must be at least 1",
            ));
        }
        if f.experimental_watch_progress_notify_interval.0.is_zero() {
            return Err(ConfigError::value(
                "experimental-watch-progress-notify-interval",
                "0s",
                "must be greater than 0",
            ));
        }

        let unimplemented_flags = <Flags as clap::CommandFactory>::command()
            .get_arguments()
            .filter_map(|a| a.get_long())
            .filter(|l| set_by_user.contains(*l) && !IMPLEMENTED.contains(l))
            .map(|l| format!("--{l}"))
            .collect();

        let data_dir = if f.data_dir.is_empty() {
            PathBuf::from(format!("{}.etcd", f.name))
        } else {
            PathBuf::from(&f.data_dir)
        };
        let heartbeat_ms = f.heartbeat_interval;
        let election_ms = f.election_timeout;
        Ok(ServerConfig {
            name: f.name.clone(),
            data_dir,
            dedicated_wal_dir: optional_path(&f.wal_dir),
            listen_peer_urls,
            listen_client_urls,
            listen_client_http_urls,
            listen_metrics_urls,
            initial_advertise_peer_urls,
            advertise_client_urls,
            initial_cluster,
            initial_cluster_state,
            initial_cluster_token: f.initial_cluster_token.clone(),
            snapshot_count: if f.snapshot_count == 0 {
                DEFAULT_SNAPSHOT_COUNT
            } else {
                f.snapshot_count
            },
            snapshot_catch_up_entries: f.experimental_snapshot_catchup_entries,
            heartbeat_interval: Duration::from_millis(heartbeat_ms),
            election_timeout: Duration::from_millis(election_ms),
            heartbeat_ticks: 1,
            election_ticks: (election_ms / heartbeat_ms) as usize,
            quota_backend_bytes,
            max_request_bytes: f.max_request_bytes as usize,
            max_send_bytes: f.max_send_bytes as usize,
            backend_verify_on_start: f.experimental_backend_verify_on_start,
            max_txn_ops: f.max_txn_ops as usize,
            auto_compaction,
            enable_v2: f.enable_v2,
            max_learners: f.experimental_max_learners as usize,
            strict_reconfig_check: f.strict_reconfig_check,
            watch_progress_notify_interval: f.experimental_watch_progress_notify_interval.0,
            client_tls,
            peer_tls,
            cipher_suites,
            self_signed_cert_validity_years: f.self_signed_cert_validity,
            logger,
            log_level,
            config_file: None,
            unimplemented_flags,
            warnings,
            flags: f,
        })
    }

    /// `<data-dir>/member`.
    pub fn member_dir(&self) -> PathBuf {
        self.data_dir.join("member")
    }

    /// `--wal-dir`, or `<data-dir>/member/wal`.
    pub fn wal_dir(&self) -> PathBuf {
        self.dedicated_wal_dir
            .clone()
            .unwrap_or_else(|| self.member_dir().join("wal"))
    }

    /// `<data-dir>/member/snap`.
    pub fn snap_dir(&self) -> PathBuf {
        self.member_dir().join("snap")
    }

    /// `<data-dir>/member/snap/db`, the backend file.
    pub fn backend_path(&self) -> PathBuf {
        self.snap_dir().join("db")
    }

    /// Where `--auto-tls` / `--peer-auto-tls` keep their certificates.
    pub fn fixtures_dir(&self, side: &str) -> PathBuf {
        self.data_dir.join("fixtures").join(side)
    }

    pub fn is_new_cluster(&self) -> bool {
        self.initial_cluster_state == ClusterState::New
    }

    /// gRPC's receive limit: the request limit plus etcd's 512 KiB of room.
    pub fn max_recv_msg_size(&self) -> usize {
        self.max_request_bytes.saturating_add(GRPC_OVERHEAD_BYTES)
    }

    /// How long a request may wait for its proposal: 5 s plus two election timeouts.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(5) + 2 * self.election_timeout
    }

    /// The founding members with their ids, sorted by name. Errors as etcd's when two
    /// members get the same id or an id is 0.
    pub fn initial_members(&self) -> Result<Vec<InitialMember>, ConfigError> {
        let mut seen = BTreeMap::new();
        let mut out = Vec::new();
        for (name, peer_urls) in &self.initial_cluster {
            let strs: Vec<String> = peer_urls.iter().map(ToString::to_string).collect();
            let id = ids::member_id(&strs, &self.initial_cluster_token, None);
            if id == 0 {
                return Err(ConfigError::Invalid("cannot use 0 as member id".into()));
            }
            if let Some(other) = seen.insert(id, name.clone()) {
                return Err(ConfigError::Invalid(format!(
                    "member exists with identical ID {id:x} ({other} and {name})"
                )));
            }
            out.push(InitialMember {
                name: name.clone(),
                id,
                peer_urls: peer_urls.clone(),
            });
        }
        Ok(out)
    }

    /// This member's id at bootstrap: the id of its own `--initial-cluster` entry.
    pub fn local_member_id(&self) -> Result<u64, ConfigError> {
        self.has_local_member()?;
        let member = self
            .initial_members()?
            .into_iter()
            .find(|m| m.name == self.name);
        member.map(|m| m.id).ok_or_else(|| {
            ConfigError::Invalid(format!(
                "couldn't find local name {:?} in the initial cluster configuration",
                self.name
            ))
        })
    }

    /// The cluster id a new cluster founded from `--initial-cluster` gets.
    pub fn cluster_id(&self) -> Result<u64, ConfigError> {
        let ids: Vec<u64> = self.initial_members()?.iter().map(|m| m.id).collect();
        Ok(ids::cluster_id(&ids))
    }

    fn has_local_member(&self) -> Result<(), ConfigError> {
        if self.initial_cluster.contains_key(&self.name) {
            Ok(())
        } else {
            Err(ConfigError::Invalid(format!(
                "couldn't find local name {:?} in the initial cluster configuration",
                self.name
            )))
        }
    }

    fn check_duplicate_urls(&self) -> Result<(), ConfigError> {
        let mut seen = BTreeSet::new();
        for u in self.initial_cluster.values().flatten() {
            if !seen.insert(u.to_string()) {
                return Err(ConfigError::Invalid(format!(
                    "initial cluster {} has duplicate url",
                    self.initial_cluster_string()
                )));
            }
        }
        Ok(())
    }

    /// `--initial-cluster` in etcd's canonical form (pairs sorted).
    pub fn initial_cluster_string(&self) -> String {
        let mut pairs: Vec<String> = self
            .initial_cluster
            .iter()
            .flat_map(|(n, us)| us.iter().map(move |u| format!("{n}={u}")))
            .collect();
        pairs.sort();
        pairs.join(",")
    }

    /// Checks made before founding a new cluster (no WAL yet), with etcd's messages:
    /// this member is in `--initial-cluster`, with exactly its advertised peer URLs, and
    /// no URL appears twice.
    pub fn verify_bootstrap(&self) -> Result<(), ConfigError> {
        if self.initial_cluster.is_empty() {
            return Err(ConfigError::Invalid(
                "initial cluster unset and no discovery URL found".into(),
            ));
        }
        self.has_local_member()?;
        let listed: BTreeSet<String> = self.initial_cluster[&self.name]
            .iter()
            .map(ToString::to_string)
            .collect();
        let advertised: BTreeSet<String> = self
            .initial_advertise_peer_urls
            .iter()
            .map(ToString::to_string)
            .collect();
        if listed != advertised {
            let missing: Vec<String> = listed
                .difference(&advertised)
                .map(|u| format!("{}={u}", self.name))
                .collect();
            if !missing.is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "--initial-cluster has {} but missing from --initial-advertise-peer-urls={}",
                    missing.join(","),
                    join_urls(&self.initial_advertise_peer_urls)
                )));
            }
            let extra: Vec<String> = advertised.difference(&listed).cloned().collect();
            let mine: Vec<String> = self
                .initial_advertise_peer_urls
                .iter()
                .map(|u| format!("{}={u}", self.name))
                .collect();
            return Err(ConfigError::Invalid(format!(
                "--initial-advertise-peer-urls has {} but missing from --initial-cluster={}",
                extra.join(","),
                mine.join(",")
            )));
        }
        self.check_duplicate_urls()
    }

    /// Checks made before joining an existing cluster (no WAL yet).
    pub fn verify_join_existing(&self) -> Result<(), ConfigError> {
        self.has_local_member()?;
        self.check_duplicate_urls()
    }

    /// The startup warning for flags accepted but not acted on, if any were set.
    pub fn unimplemented_warning(&self) -> Option<String> {
        (!self.unimplemented_flags.is_empty()).then(|| {
            format!(
                "flag not implemented yet, ignored: {}",
                self.unimplemented_flags.join(", ")
            )
        })
    }
}

#[cfg(test)]
mod tests;
