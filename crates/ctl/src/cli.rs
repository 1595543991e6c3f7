//! Every command and flag, as etcdctl 3.4 declares them (clap derive).
//!
//! Global flags may come anywhere and fall back to their `ETCDCTL_*` variable, as
//! etcdctl's do. Booleans take pflag's forms: `--flag`, `--flag=true`, `--flag=false`.
//! Positional arguments are taken as given and checked by each command, so that a missing
//! or extra argument gets etcdctl's own message and exit code; commands that take none
//! ignore them (`_args`, or an unused [`PositionalArgs`]), as cobra does.

use clap::builder::{PossibleValue, StringValueParser, TypedValueParser};
use clap::{Args, Parser, Subcommand};

/// A string flag whose usual values shell completion offers. It takes any value: the
/// command refuses a bad one later with etcdctl's own error.
#[derive(Clone)]
pub struct Suggested(&'static [&'static str]);

impl TypedValueParser for Suggested {
    type Value = String;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<String, clap::Error> {
        StringValueParser::new().parse_ref(cmd, arg, value)
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(self.0.iter().map(|v| PossibleValue::new(*v))))
    }
}

/// A boolean flag as pflag parses it.
macro_rules! bool_value_parser {
    () => {
        |s: &str| crate::go::parse_bool(s)
    };
}

/// The command tree for parsing: clap's own help flag is off everywhere, as `-h`/`--help`
/// print etcdctl's help ([`crate::help`]).
pub fn command() -> clap::Command {
    fn without_help(command: clap::Command) -> clap::Command {
        command
            .disable_help_flag(true)
            .mut_subcommands(without_help)
    }
    without_help(<Cli as clap::CommandFactory>::command())
}

#[derive(Parser, Debug)]
#[command(
    name = "oxcdctl",
    about = "A simple command line client for etcd3 (and oxcd).",
    infer_subcommands = true,
    disable_help_subcommand = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalFlags,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command takes.
#[derive(Args, Debug, Clone)]
pub struct GlobalFlags {
    /// gRPC endpoints
    #[arg(
        long,
        global = true,
        env = "ETCDCTL_ENDPOINTS",
        value_delimiter = ',',
        default_value = "127.0.0.1:2379"
    )]
    pub endpoints: Vec<String>,
    /// enable client-side debug logging
    #[arg(long, global = true, env = "ETCDCTL_DEBUG", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = bool_value_parser!())]
    pub debug: bool,
    /// set the output format (fields, json, protobuf, simple, table)
    #[arg(
        short = 'w',
        long,
        global = true,
        env = "ETCDCTL_WRITE_OUT",
        default_value = "simple",
        value_parser = Suggested(&["simple", "json", "protobuf", "fields", "table"])
    )]
    pub write_out: String,
    /// print byte strings as hex encoded strings
    #[arg(long, global = true, env = "ETCDCTL_HEX", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = bool_value_parser!())]
    pub hex: bool,
    /// dial timeout for client connections
    #[arg(long, global = true, env = "ETCDCTL_DIAL_TIMEOUT", default_value = "2s", value_parser = crate::go::parse_duration)]
    pub dial_timeout: std::time::Duration,
    /// timeout for short running command (excluding dial timeout)
    #[arg(long, global = true, env = "ETCDCTL_COMMAND_TIMEOUT", default_value = "5s", value_parser = crate::go::parse_duration)]
    pub command_timeout: std::time::Duration,
    /// keepalive time for client connections
    #[arg(long, global = true, env = "ETCDCTL_KEEPALIVE_TIME", default_value = "2s", value_parser = crate::go::parse_duration)]
    pub keepalive_time: std::time::Duration,
    /// keepalive timeout for client connections
    #[arg(long, global = true, env = "ETCDCTL_KEEPALIVE_TIMEOUT", default_value = "6s", value_parser = crate::go::parse_duration)]
    pub keepalive_timeout: std::time::Duration,
    /// disable transport security for client connections
    #[arg(long, global = true, env = "ETCDCTL_INSECURE_TRANSPORT", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "true", value_parser = bool_value_parser!())]
    pub insecure_transport: bool,
    /// accept insecure SRV records describing cluster endpoints
    #[arg(long, global = true, env = "ETCDCTL_INSECURE_DISCOVERY", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "true", value_parser = bool_value_parser!())]
    pub insecure_discovery: bool,
    /// skip server certificate verification (CAUTION: this option should be enabled only for testing purposes)
    #[arg(long, global = true, env = "ETCDCTL_INSECURE_SKIP_TLS_VERIFY", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = bool_value_parser!())]
    pub insecure_skip_tls_verify: bool,
    /// identify secure client using this TLS certificate file
    #[arg(long, global = true, env = "ETCDCTL_CERT")]
    pub cert: Option<String>,
    /// identify secure client using this TLS key file
    #[arg(long, global = true, env = "ETCDCTL_KEY")]
    pub key: Option<String>,
    /// verify certificates of TLS-enabled secure servers using this CA bundle
    #[arg(long, global = true, env = "ETCDCTL_CACERT")]
    pub cacert: Option<String>,
    /// username[:password] for authentication (prompt if password is not supplied)
    #[arg(long, global = true, env = "ETCDCTL_USER")]
    pub user: Option<String>,
    /// password for authentication (if this option is used, --user option shouldn't include password)
    #[arg(long, global = true, env = "ETCDCTL_PASSWORD")]
    pub password: Option<String>,
    /// domain name to query for SRV records describing cluster endpoints
    #[arg(short = 'd', long, global = true, env = "ETCDCTL_DISCOVERY_SRV")]
    pub discovery_srv: Option<String>,
    /// service name to query when using DNS discovery
    #[arg(long, global = true, env = "ETCDCTL_DISCOVERY_SRV_NAME")]
    pub discovery_srv_name: Option<String>,
}

/// In etcdctl's order, which cobra's suggestions follow.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Gets the key or a range of keys
    Get(GetArgs),
    /// Puts the given key into the store
    Put(PutArgs),
    /// Removes the specified key or range of keys [key, range_end)
    Del(DelArgs),
    /// Txn processes all the requests in one transaction
    Txn(TxnArgs),
    /// Compacts the event history in etcd
    Compaction(CompactionArgs),
    /// Alarm related commands
    #[command(subcommand)]
    Alarm(AlarmCommand),
    /// Defragments the storage of the etcd members with given endpoints
    Defrag(DefragArgs),
    /// Endpoint related commands
    Endpoint(EndpointArgs),
    /// Transfers leadership to another etcd cluster member.
    MoveLeader(PositionalArgs),
    /// Watches events stream on keys or prefixes
    Watch(WatchArgs),
    /// Prints the version of etcdctl
    Version(PositionalArgs),
    /// Lease related commands
    #[command(subcommand)]
    Lease(LeaseCommand),
    /// Membership related commands
    #[command(subcommand)]
    Member(MemberCommand),
    /// Manages etcd node snapshots
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Makes a mirror at the destination etcd cluster
    MakeMirror(MakeMirrorArgs),
    /// Migrates keys in a v2 store to a mvcc store
    Migrate(MigrateArgs),
    /// Acquires a named lock
    Lock(LockArgs),
    /// Observes and participates in leader election
    Elect(ElectArgs),
    /// Enable or disable authentication
    #[command(subcommand)]
    Auth(AuthCommand),
    /// User related commands
    #[command(subcommand)]
    User(UserCommand),
    /// Role related commands
    #[command(subcommand)]
    Role(RoleCommand),
    /// commands for checking properties of the etcd cluster
    #[command(subcommand)]
    Check(CheckCommand),
    /// Generate the autocompletion script for the specified shell
    #[command(subcommand)]
    Completion(CompletionCommand),
}

/// Positional arguments only.
#[derive(Args, Debug)]
pub struct PositionalArgs {
    pub args: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct GetArgs {
    /// Linearizable(l) or Serializable(s)
    #[arg(long, default_value = "l", value_parser = Suggested(&["l", "s"]))]
    pub consistency: String,
    /// Order of results; ASCEND or DESCEND (ASCEND by default)
    #[arg(long, default_value = "", value_parser = Suggested(&["ASCEND", "DESCEND"]))]
    pub order: String,
    /// Sort target; CREATE, KEY, MODIFY, VALUE, or VERSION
    #[arg(
        long,
        default_value = "",
        value_parser = Suggested(&["CREATE", "KEY", "MODIFY", "VALUE", "VERSION"])
    )]
    pub sort_by: String,
    /// Maximum number of results
    #[arg(long, default_value = "0", value_parser = parse_i64)]
    pub limit: i64,
    /// Get keys with matching prefix
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = bool_value_parser!())]
    pub prefix: bool,
    /// Get keys that are greater than or equal to the given key using byte compare
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = bool_value_parser!())]
    pub from_key: bool,
    /// Specify the kv revision
    #[arg(long, default_value = "0", value_parser = parse_i64)]
    pub rev: i64,
    /// Get only the keys
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = bool_value_parser!())]
    pub keys_only: bool,
    /// Only write values when using the "simple" output format
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = bool_value_parser!())]
    pub print_value_only: bool,
    pub args: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct PutArgs {
    /// lease ID (in hexadecimal) to attach to the key
    #[arg(long, default_value = "0")]
    pub lease: String,
    /// return the previous key-value pair before modification
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = bool_value_parser!())]
    pub prev_kv: bool,
    /// updates the key using its current value
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = bool_value_parser!())]
    pub ignore_value: bool,
    /// updates the key using its current lease
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = bool_value_parser!())]
    pub ignore_lease: bool,
    pub args: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct DelArgs {
    /// delete keys with matching prefix
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = bool_value_parser!())]
    pub prefix: bool,
    /// return deleted key-value pairs
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = bool_value_parser!())]
    pub prev_kv: bool,
    /// delete keys that are greater than or equal to the given key using byte compare
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = bool_value_parser!())]
    pub from_key: bool,
    pub args: Vec<String>,
}

#[derive(Args, Debug)]
pub struct TxnArgs {
    /// Input transaction in interactive mode
    #[arg(short = 'i', long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = bool_value_parser!())]
    pub interactive: bool,
    pub args: Vec<String>,
}

#[derive(Args, Debug)]
pub struct CompactionArgs {
    /// 'true' to wait for compaction to physically remove all old revisions
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = bool_value_parser!())]
    pub physical: bool,
    pub args: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum AlarmCommand {
    /// Disarms all alarms
    Disarm(PositionalArgs),
    /// Lists all alarms
    List(PositionalArgs),
}

#[derive(Args, Debug)]
pub struct DefragArgs {
    /// use all endpoints from the cluster member list
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = bool_value_parser!())]
    pub cluster: bool,
    /// Optional. If present, defragments a data directory not in use by etcd.
    #[arg(long)]
    pub data_dir: Option<String>,
    pub _args: Vec<String>,
}

#[derive(Args, Debug)]
pub struct EndpointArgs {
    /// use all endpoints from the cluster member list
    #[arg(long, global = true, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = bool_value_parser!())]
    pub cluster: bool,
    #[command(subcommand)]
    pub command: EndpointCommand,
}

#[derive(Subcommand, Debug)]
pub enum EndpointCommand {
    /// Checks the healthiness of endpoints specified in `--endpoints` flag
    Health(PositionalArgs),
    /// Prints out the status of endpoints specified in `--endpoints` flag
    Status(PositionalArgs),
    /// Prints the KV history hash for each endpoint in --endpoints
    Hashkv {
        /// maximum revision to hash (default: all revisions)
        #[arg(long, default_value = "0", value_parser = parse_i64)]
        rev: i64,
        _args: Vec<String>,
    },
}

#[derive(Args, Debug)]
pub struct WatchArgs {
    /// Interactive mode
    #[arg(short = 'i', long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = bool_value_parser!())]
    pub interactive: bool,
    /// Watch on a prefix if prefix is set
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = bool_value_parser!())]
    pub prefix: bool,
    /// Revision to start watching
    #[arg(long, default_value = "0", value_parser = parse_i64)]
    pub rev: i64,
    /// get the previous key-value pair before the event happens
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = bool_value_parser!())]
    pub prev_kv: bool,
    /// key or prefix, range end, then after `--` a command to run on each event
    pub args: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum LeaseCommand {
    /// Creates leases
    Grant(PositionalArgs),
    /// Revokes leases
    Revoke(PositionalArgs),
    /// Get lease information
    Timetolive {
        /// Get keys attached to this lease
        #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = bool_value_parser!())]
        keys: bool,
        args: Vec<String>,
    },
    /// List all active leases
    List(PositionalArgs),
    /// Keeps leases alive (renew)
    KeepAlive {
        /// Resets the keep-alive time to its original value and exits immediately
        #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = bool_value_parser!())]
        once: bool,
        args: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum MemberCommand {
    /// Adds a member into the cluster
    Add {
        /// comma separated peer URLs for the new member.
        #[arg(long, default_value = "")]
        peer_urls: String,
        /// indicates if the new member is raft learner
        #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = bool_value_parser!())]
        learner: bool,
        args: Vec<String>,
    },
    /// Removes a member from the cluster
    Remove(PositionalArgs),
    /// Updates a member in the cluster
    Update {
        /// comma separated peer URLs for the updated member.
        #[arg(long, default_value = "")]
        peer_urls: String,
        args: Vec<String>,
    },
    /// Lists all members in the cluster
    List(PositionalArgs),
    /// Promotes a non-voting member in the cluster
    Promote(PositionalArgs),
}

#[derive(Subcommand, Debug)]
pub enum SnapshotCommand {
    /// Stores an etcd node backend snapshot to a given file
    Save(PositionalArgs),
    /// Gets backend snapshot status of a given file
    Status(PositionalArgs),
    /// Restores an etcd member snapshot to an etcd directory
    Restore(SnapshotRestoreArgs),
}

#[derive(Args, Debug)]
pub struct SnapshotRestoreArgs {
    pub args: Vec<String>,
    /// Path to the data directory
    #[arg(long, default_value = "")]
    pub data_dir: String,
    /// Path to the WAL directory (use --data-dir if none given)
    #[arg(long, default_value = "")]
    pub wal_dir: String,
    /// Initial cluster configuration for restore bootstrap
    #[arg(long, default_value = "default=http://localhost:2380")]
    pub initial_cluster: String,
    /// Initial cluster token for the etcd cluster during restore bootstrap
    #[arg(long, default_value = "etcd-cluster")]
    pub initial_cluster_token: String,
    /// List of this member's peer URLs to advertise to the rest of the cluster
    #[arg(long, default_value = "http://localhost:2380")]
    pub initial_advertise_peer_urls: String,
    /// Human-readable name for this member
    #[arg(long, default_value = "default")]
    pub name: String,
    /// Ignore snapshot integrity hash value (required if copied from data directory)
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = bool_value_parser!())]
    pub skip_hash_check: bool,
}

/// `migrate`: etcdctl takes (and ignores) positional arguments.
#[derive(Args, Debug)]
pub struct MigrateArgs {
    pub args: Vec<String>,
    /// Do not convert TTL keys
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = bool_value_parser!())]
    pub no_ttl: bool,
    /// Path to the data directory
    #[arg(long, default_value = "")]
    pub data_dir: String,
    /// Path to the WAL directory
    #[arg(long, default_value = "")]
    pub wal_dir: String,
    /// Path to the user-provided transformer program
    #[arg(long, default_value = "")]
    pub transformer: String,
}

#[derive(Subcommand, Debug)]
pub enum CheckCommand {
    /// Check the performance of the etcd cluster
    Perf(CheckPerfArgs),
    /// Check the memory usage of holding data for different workloads on a given server endpoint.
    Datascale(CheckDatascaleArgs),
}

#[derive(Args, Debug)]
pub struct CheckPerfArgs {
    /// The performance check's workload model. Accepted workloads: s(small), m(medium), l(large), xl(xLarge)
    #[arg(long, default_value = "s")]
    pub load: String,
    /// The prefix for writing the performance check's keys.
    #[arg(long, default_value = "/etcdctl-check-perf/")]
    pub prefix: String,
    /// Compact storage with last revision after test is finished.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = bool_value_parser!())]
    pub auto_compact: bool,
    /// Defragment storage after test is finished.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = bool_value_parser!())]
    pub auto_defrag: bool,
    pub _args: Vec<String>,
}

#[derive(Args, Debug)]
pub struct CheckDatascaleArgs {
    /// The datascale check's workload model. Accepted workloads: s(small), m(medium), l(large), xl(xLarge)
    #[arg(long, default_value = "s")]
    pub load: String,
    /// The prefix for writing the datascale check's keys.
    #[arg(long, default_value = "/etcdctl-check-datascale/")]
    pub prefix: String,
    /// Compact storage with last revision after test is finished.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = bool_value_parser!())]
    pub auto_compact: bool,
    /// Defragment storage after test is finished.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = bool_value_parser!())]
    pub auto_defrag: bool,
    pub _args: Vec<String>,
}

#[derive(Args, Debug)]
pub struct MakeMirrorArgs {
    /// Key-value prefix to mirror
    #[arg(long, default_value = "")]
    pub prefix: String,
    /// destination prefix to mirror a prefix to a different prefix in the destination cluster
    #[arg(long, default_value = "")]
    pub dest_prefix: String,
    /// mirror key-values to the root of the destination cluster
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = bool_value_parser!())]
    pub no_dest_prefix: bool,
    /// Identify secure client using this TLS certificate file for the destination cluster
    #[arg(long, default_value = "")]
    pub dest_cert: String,
    /// Identify secure client using this TLS key file
    #[arg(long, default_value = "")]
    pub dest_key: String,
    /// Verify certificates of TLS enabled secure servers using this CA bundle
    #[arg(long, default_value = "")]
    pub dest_cacert: String,
    /// Disable transport security for client connections
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "true", value_parser = bool_value_parser!())]
    pub dest_insecure_transport: bool,
    /// the destination endpoint
    pub args: Vec<String>,
}

#[derive(Args, Debug)]
pub struct LockArgs {
    /// timeout for session
    #[arg(long, default_value = "10", value_parser = parse_i64)]
    pub ttl: i64,
    /// the lock name, then (after `--` when it has flags) a command to run while holding it
    pub args: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ElectArgs {
    /// observation mode
    #[arg(short = 'l', long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = bool_value_parser!())]
    pub listen: bool,
    pub args: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum AuthCommand {
    /// Enables authentication
    Enable(PositionalArgs),
    /// Disables authentication
    Disable(PositionalArgs),
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Adds a new user
    Add {
        /// Read password from stdin instead of interactive terminal
        #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "true", value_parser = bool_value_parser!())]
        interactive: bool,
        /// Supply password from the command line flag
        #[arg(long, default_value = "")]
        new_user_password: String,
        /// Create a user without password (CN based auth only)
        #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = bool_value_parser!())]
        no_password: bool,
        args: Vec<String>,
    },
    /// Deletes a user
    Delete(PositionalArgs),
    /// Gets detailed information of a user
    Get {
        /// Show permissions of roles granted to the user
        #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = bool_value_parser!())]
        detail: bool,
        args: Vec<String>,
    },
    /// Lists all users
    List(PositionalArgs),
    /// Changes password of user
    Passwd {
        /// If true, read password from stdin instead of interactive terminal
        #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "true", value_parser = bool_value_parser!())]
        interactive: bool,
        args: Vec<String>,
    },
    /// Grants a role to a user
    GrantRole(PositionalArgs),
    /// Revokes a role from a user
    RevokeRole(PositionalArgs),
}

#[derive(Subcommand, Debug)]
pub enum RoleCommand {
    /// Adds a new role
    Add(PositionalArgs),
    /// Deletes a role
    Delete(PositionalArgs),
    /// Gets detailed information of a role
    Get(PositionalArgs),
    /// Lists all roles
    List(PositionalArgs),
    /// Grants a key to a role
    GrantPermission(PermissionArgs),
    /// Revokes a key from a role
    RevokePermission(PermissionArgs),
}

#[derive(Args, Debug)]
pub struct PermissionArgs {
    /// a prefix permission
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = bool_value_parser!())]
    pub prefix: bool,
    /// a permission of keys that are greater than or equal to the given key using byte compare
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = bool_value_parser!())]
    pub from_key: bool,
    pub args: Vec<String>,
}

#[derive(Subcommand, Debug, Clone, Copy)]
pub enum CompletionCommand {
    /// Generate the autocompletion script for bash
    Bash,
    /// Generate the autocompletion script for fish
    Fish,
    /// Generate the autocompletion script for powershell
    Powershell,
    /// Generate the autocompletion script for zsh
    Zsh,
}

/// pflag's int64 parsing (any base by prefix), with its message.
fn parse_i64(s: &str) -> Result<i64, String> {
    crate::go::parse_int_prefixed(s)
}
