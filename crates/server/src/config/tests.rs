//! Tests of flag gathering and validation against etcd's behaviour.

use std::time::Duration;

use super::*;

fn run(args: &[&str], env: &[(&str, &str)]) -> Result<Invocation, ConfigError> {
    let argv = std::iter::once("oxcd").chain(args.iter().copied());
    let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    parse_from(argv, env)
}

fn serve(args: &[&str], env: &[(&str, &str)]) -> ServerConfig {
    match run(args, env) {
        Ok(Invocation::Serve(cfg)) => *cfg,
        other => panic!("expected a server config, got {other:?}"),
    }
}

fn err(args: &[&str], env: &[(&str, &str)]) -> ConfigError {
    match run(args, env) {
        Err(e) => e,
        Ok(other) => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn defaults_equal_etcds() {
    let c = serve(&[], &[]);
    assert_eq!(c.name, "default");
    assert_eq!(c.data_dir, PathBuf::from("default.etcd"));
    assert_eq!(c.wal_dir(), PathBuf::from("default.etcd/member/wal"));
    assert_eq!(c.snap_dir(), PathBuf::from("default.etcd/member/snap"));
    assert_eq!(
        c.backend_path(),
        PathBuf::from("default.etcd/member/snap/db")
    );
    assert_eq!(join_urls(&c.listen_client_urls), "http://localhost:2379");
    assert_eq!(join_urls(&c.advertise_client_urls), "http://localhost:2379");
    assert_eq!(join_urls(&c.listen_peer_urls), "http://localhost:2380");
    assert_eq!(
        join_urls(&c.initial_advertise_peer_urls),
        "http://localhost:2380"
    );
    assert!(c.listen_metrics_urls.is_empty());
    assert_eq!(c.initial_cluster_string(), "default=http://localhost:2380");
    assert_eq!(c.initial_cluster_state, ClusterState::New);
    assert_eq!(c.initial_cluster_token, "etcd-cluster");
    assert_eq!(c.snapshot_count, 100_000);
    assert_eq!(c.heartbeat_interval, Duration::from_millis(100));
    assert_eq!(c.election_timeout, Duration::from_millis(1000));
    assert_eq!((c.heartbeat_ticks, c.election_ticks), (1, 10));
    assert_eq!(c.quota_backend_bytes, Some(2 * 1024 * 1024 * 1024));
    assert_eq!(c.max_request_bytes, 1_572_864);
    assert_eq!(c.max_recv_msg_size(), 1_572_864 + 512 * 1024);
    assert_eq!(c.max_txn_ops, 128);
    assert_eq!(c.auto_compaction, AutoCompaction::Disabled);
    assert_eq!(c.logger, LoggerKind::Zap);
    assert_eq!(c.log_level, LogLevel::Info);
    assert_eq!(c.watch_progress_notify_interval, Duration::from_secs(600));
    assert_eq!(c.max_learners, 1);
    assert!(!c.enable_v2);
    assert!(c.client_tls.is_empty() && !c.client_tls.enabled());
    assert!(c.peer_tls.is_empty() && !c.peer_tls.enabled());
    assert!(c.unimplemented_flags.is_empty());
    assert!(c.warnings.is_empty());
    c.verify_bootstrap().unwrap();
}

#[test]
fn flags_in_go_and_gnu_spellings() {
    let c = serve(
        &[
            "-name",
            "n1",
            "--snapshot-count=5",
            "--enable-v2",
            "--heartbeat-interval",
            "50",
            "--election-timeout=500",
        ],
        &[],
    );
    assert_eq!(c.name, "n1");
    assert_eq!(c.data_dir, PathBuf::from("n1.etcd"));
    assert_eq!(c.snapshot_count, 5);
    assert!(c.enable_v2);
    assert_eq!(c.election_ticks, 10);
    // `--name` alone makes a one-member cluster under that name.
    assert_eq!(c.initial_cluster_string(), "n1=http://localhost:2380");
    c.verify_bootstrap().unwrap();
}

#[test]
fn the_last_occurrence_of_a_flag_wins() {
    assert_eq!(serve(&["--name=a", "--name=b"], &[]).name, "b");
}

#[test]
fn env_vars_map_to_flags() {
    let c = serve(
        &[],
        &[
            ("ETCD_NAME", "envname"),
            ("ETCD_MAX_TXN_OPS", "7"),
            ("ETCD_CLIENT_CERT_AUTH", "true"),
            ("ETCD_CERT_FILE", "/c.pem"),
            ("ETCD_KEY_FILE", "/k.pem"),
            ("ETCD_DATA_DIR", ""),
            ("PATH", "/bin"),
        ],
    );
    assert_eq!(c.name, "envname");
    assert_eq!(
        c.data_dir,
        PathBuf::from("envname.etcd"),
        "an empty variable counts as unset"
    );
    assert_eq!(c.max_txn_ops, 7);
    assert!(c.client_tls.client_cert_auth);
    assert_eq!(c.client_tls.cert_file, Some(PathBuf::from("/c.pem")));
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn env_var_names_follow_etcds_mapping() {
    assert_eq!(
        env_name("initial-cluster-token"),
        "ETCD_INITIAL_CLUSTER_TOKEN"
    );
    let c = serve(
        &[],
        &[("ETCD_EXPERIMENTAL_WATCH_PROGRESS_NOTIFY_INTERVAL", "3s")],
    );
    assert_eq!(c.watch_progress_notify_interval, Duration::from_secs(3));
}

#[test]
fn env_var_shadowed_by_flag_is_refused() {
    let e = err(&["--name=a"], &[("ETCD_NAME", "b")]);
    assert!(
        matches!(&e, ConfigError::ConflictingEnv(v) if v == "ETCD_NAME"),
        "{e}"
    );
    assert!(e
        .to_string()
        .contains("is shadowed by corresponding command-line flag"));
    assert_eq!(e.exit_code(), 1);
}

#[test]
fn unknown_etcd_env_vars_are_warned_about() {
    let c = serve(&[], &[("ETCD_NO_SUCH_THING", "1")]);
    assert_eq!(
        c.warnings,
        vec!["unrecognized environment variable ETCD_NO_SUCH_THING=1".to_string()]
    );
}

#[test]
fn bad_values_name_the_flag() {
    let e = err(&["--snapshot-count", "abc"], &[]);
    let msg = e.to_string();
    assert!(
        msg.starts_with("invalid value \"abc\" for flag --snapshot-count"),
        "{msg}"
    );
    assert_eq!(e.exit_code(), 2);

    let e = err(&["--enable-v2=maybe"], &[]);
    assert!(e.to_string().contains("for flag --enable-v2"), "{e}");

    let e = err(&["--listen-peer-urls", "ftp://1.2.3.4:1"], &[]);
    assert!(
        e.to_string()
            .starts_with("invalid value \"ftp://1.2.3.4:1\" for flag --listen-peer-urls"),
        "{e}"
    );
    assert_eq!(e.exit_code(), 1);

    let e = err(&["--initial-cluster", "a=http://x"], &[]);
    assert!(e.to_string().contains("for flag --initial-cluster"), "{e}");

    let e = err(&["--log-level", "loud"], &[]);
    assert!(e.to_string().contains("for flag --log-level"), "{e}");

    let e = err(
        &["--experimental-watch-progress-notify-interval", "soon"],
        &[],
    );
    assert!(
        e.to_string()
            .contains("for flag --experimental-watch-progress-notify-interval"),
        "{e}"
    );
}

#[test]
fn bad_env_values_name_the_variable() {
    let e = err(&[], &[("ETCD_SNAPSHOT_COUNT", "abc")]);
    assert!(
        e.to_string()
            .starts_with("invalid value \"abc\" for ETCD_SNAPSHOT_COUNT"),
        "{e}"
    );
    assert_eq!(e.exit_code(), 1);
}

#[test]
fn unknown_flags_and_stray_arguments_are_usage_errors() {
    let e = err(&["--no-such-flag"], &[]);
    assert!(matches!(e, ConfigError::Usage(_)));
    assert_eq!(e.exit_code(), 2);
    assert!(matches!(
        err(&["--enable-v2", "true"], &[]),
        ConfigError::Usage(_)
    ));
}

#[test]
fn unimplemented_flags_are_listed_when_set() {
    let c = serve(
        &["--discovery-srv=example.com", "--max-wals=3", "--name=a"],
        &[("ETCD_ENABLE_PPROF", "true")],
    );
    assert_eq!(
        c.unimplemented_flags,
        vec!["--max-wals", "--discovery-srv", "--enable-pprof"]
    );
    let w = c.unimplemented_warning().unwrap();
    assert!(w.starts_with("flag not implemented yet, ignored"), "{w}");
    assert!(w.contains("--max-wals"));
}

#[test]
fn ticks_and_etcds_timing_checks() {
    let c = serve(&["--heartbeat-interval=25", "--election-timeout=260"], &[]);
    assert_eq!(c.election_ticks, 10, "integer division as etcd");
    let e = err(
        &["--heartbeat-interval=300", "--election-timeout=1000"],
        &[],
    );
    assert_eq!(
        e.to_string(),
        "--election-timeout[1000ms] should be at least as 5 times as --heartbeat-interval[300ms]"
    );
    let e = err(&["--election-timeout=60000"], &[]);
    assert!(
        e.to_string()
            .contains("is too long, and should be set less than 50000ms"),
        "{e}"
    );
    let e = err(&["--heartbeat-interval=0"], &[]);
    assert_eq!(
        e.to_string(),
        "--heartbeat-interval must be >0 (set to 0ms)"
    );
}

#[test]
fn listen_client_urls_alone_needs_advertise() {
    let e = err(&["--listen-client-urls=http://127.0.0.1:1234"], &[]);
    assert_eq!(
        e.to_string(),
        "--advertise-client-urls is required when --listen-client-urls is set explicitly"
    );
    serve(
        &[
            "--listen-client-urls=http://127.0.0.1:1234",
            "--advertise-client-urls=http://127.0.0.1:1234",
        ],
        &[],
    );
}

#[test]
fn bind_urls_need_ip_addresses() {
    let e = err(&["--listen-peer-urls=http://example.com:2380"], &[]);
    assert!(
        e.to_string()
            .contains("expected IP in URL for binding (http://example.com:2380)"),
        "{e}"
    );
}

#[test]
fn auto_compaction_retention_forms() {
    let p = |mode: &str, r: &str| {
        serve(
            &[
                &format!("--auto-compaction-mode={mode}"),
                &format!("--auto-compaction-retention={r}"),
            ],
            &[],
        )
        .auto_compaction
    };
    assert_eq!(
        p("periodic", "1"),
        AutoCompaction::Periodic(Duration::from_secs(3600))
    );
    assert_eq!(
        p("periodic", "5m"),
        AutoCompaction::Periodic(Duration::from_secs(300))
    );
    assert_eq!(
        p("periodic", "30s"),
        AutoCompaction::Periodic(Duration::from_secs(30))
    );
    assert_eq!(p("periodic", "0"), AutoCompaction::Disabled);
    assert_eq!(p("revision", "1000"), AutoCompaction::Revision(1000));
    let e = err(
        &[
            "--auto-compaction-mode=revision",
            "--auto-compaction-retention=5m",
        ],
        &[],
    );
    assert!(
        e.to_string()
            .contains("for flag --auto-compaction-retention"),
        "{e}"
    );
    let e = err(&["--auto-compaction-mode=sometimes"], &[]);
    assert_eq!(e.to_string(), "unknown auto-compaction-mode \"sometimes\"");
}

#[test]
fn quota_values() {
    assert_eq!(
        serve(&["--quota-backend-bytes=1024"], &[]).quota_backend_bytes,
        Some(1024)
    );
    assert_eq!(
        serve(&["--quota-backend-bytes=-1"], &[]).quota_backend_bytes,
        None
    );
    let c = serve(&["--quota-backend-bytes=10000000000"], &[]);
    assert!(c.warnings[0].starts_with("quota exceeds the maximum value"));
}

#[test]
fn https_urls_need_tls() {
    let e = err(
        &[
            "--listen-client-urls=https://127.0.0.1:2379",
            "--advertise-client-urls=https://127.0.0.1:2379",
        ],
        &[],
    );
    assert!(
        e.to_string()
            .starts_with("TLS key/cert (--cert-file, --key-file) must be provided"),
        "{e}"
    );
    serve(
        &[
            "--listen-client-urls=https://127.0.0.1:2379",
            "--advertise-client-urls=https://127.0.0.1:2379",
            "--auto-tls",
        ],
        &[],
    );
    let e = err(&["--cert-file=/c.pem"], &[]);
    assert!(
        e.to_string()
            .starts_with("KeyFile and CertFile must both be present"),
        "{e}"
    );
}

#[test]
fn bootstrap_checks_use_etcds_messages() {
    let c = serve(&["--initial-advertise-peer-urls=http://10.0.0.1:2380"], &[]);
    let e = c.verify_bootstrap().unwrap_err();
    assert!(
        e.to_string()
            .starts_with("--initial-cluster has default=http://localhost:2380 but missing from --initial-advertise-peer-urls=http://10.0.0.1:2380"),
        "{e}"
    );
    let c = serve(
        &["--name=x", "--initial-cluster=y=http://localhost:2380"],
        &[],
    );
    assert_eq!(
        c.verify_bootstrap().unwrap_err().to_string(),
        "couldn't find local name \"x\" in the initial cluster configuration"
    );
    let c = serve(
        &["--initial-cluster=default=http://localhost:2380,b=http://localhost:2380"],
        &[],
    );
    assert!(c
        .verify_bootstrap()
        .unwrap_err()
        .to_string()
        .contains("has duplicate url"));
}

#[test]
fn ids_of_the_configured_cluster_match_etcd() {
    // Same flags as ids::tests::three_member_cluster_matches_etcd, seen from m2.
    let c = serve(
        &[
            "--name=m2",
            "--initial-advertise-peer-urls=http://127.0.0.1:23822",
            "--initial-cluster=m1=http://127.0.0.1:23821,m2=http://127.0.0.1:23822,m3=http://127.0.0.1:23823",
            "--initial-cluster-token=tok-c",
        ],
        &[],
    );
    c.verify_bootstrap().unwrap();
    assert_eq!(c.local_member_id().unwrap(), 16391353622664294746);
    assert_eq!(c.cluster_id().unwrap(), 7811814100520894352);
    let names: Vec<_> = c
        .initial_members()
        .unwrap()
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert_eq!(names, ["m1", "m2", "m3"]);
}

#[test]
fn config_file_replaces_flags_and_env() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("etcd.yaml");
    std::fs::write(
        &path,
        "name: filenode\n\
         data-dir: /var/lib/x\n\
         snapshot-count: 42\n\
         heartbeat-interval: 20\n\
         election-timeout: 200\n\
         listen-client-urls: http://127.0.0.1:3379,http://127.0.0.1:3479\n\
         advertise-client-urls: http://127.0.0.1:3379\n\
         initial-cluster: filenode=http://localhost:2380\n\
         initial-cluster-state: existing\n\
         experimental-watch-progress-notify-interval: 2000000000\n\
         max-wals: 9\n\
         log-outputs: [stderr]\n\
         unheard-of: 1\n\
         client-transport-security:\n  cert-file: /c.pem\n  key-file: /k.pem\n  client-cert-auth: true\n\
         peer-transport-security:\n  auto-tls: true\n",
    )
    .unwrap();
    let file = path.to_str().unwrap();
    // Flags and env besides the file are ignored, even when they conflict.
    let c = serve(
        &["--config-file", file, "--name=ignored"],
        &[("ETCD_SNAPSHOT_COUNT", "7")],
    );
    assert_eq!(c.config_file.as_deref(), Some(path.as_path()));
    assert_eq!(c.name, "filenode");
    assert_eq!(c.data_dir, PathBuf::from("/var/lib/x"));
    assert_eq!(c.snapshot_count, 42);
    assert_eq!(c.election_ticks, 10);
    assert_eq!(c.listen_client_urls.len(), 2);
    assert_eq!(c.initial_cluster_state, ClusterState::Existing);
    assert_eq!(c.watch_progress_notify_interval, Duration::from_secs(2));
    assert_eq!(c.client_tls.cert_file, Some(PathBuf::from("/c.pem")));
    assert!(c.client_tls.client_cert_auth);
    assert!(c.peer_tls.auto_tls);
    assert_eq!(c.flags.log_outputs, "stderr");
    assert_eq!(
        c.flags.max_txn_ops, 128,
        "keys not in the file keep etcd's defaults"
    );
    assert_eq!(c.unimplemented_flags, vec!["--max-wals", "--log-outputs"]);
    assert_eq!(
        c.warnings,
        vec!["unknown key \"unheard-of\" in config file, ignored".to_string()]
    );

    // ETCD_CONFIG_FILE works too.
    let c = serve(&[], &[("ETCD_CONFIG_FILE", file)]);
    assert_eq!(c.name, "filenode");
}

#[test]
fn config_file_errors_name_the_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, "snapshot-count: lots\n").unwrap();
    let e = err(&["--config-file", path.to_str().unwrap()], &[]);
    let msg = e.to_string();
    assert!(
        msg.contains("bad.yaml") && msg.contains("snapshot-count"),
        "{msg}"
    );
    let e = err(&["--config-file", "/no/such/file.yaml"], &[]);
    assert!(matches!(e, ConfigError::ConfigFile { .. }));
}

#[test]
fn version_and_help() {
    match run(&["--version"], &[]).unwrap() {
        Invocation::PrintVersion(v) => {
            assert!(v.starts_with("etcd Version: 3.5."), "{v}");
            assert!(v.contains(OXCD_VERSION));
        }
        other => panic!("{other:?}"),
    }
    match run(&["--help"], &[]).unwrap() {
        Invocation::PrintHelp(h) => {
            assert!(h.contains("--initial-cluster-token"));
            assert!(
                h.contains("ETCD_INITIAL_CLUSTER_TOKEN"),
                "help shows env names"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(api_version(), "3.5");
    assert_eq!(etcd_release(), EtcdRelease::V3_5, "3.5 unless asked");
}

#[test]
fn aliases_of_renamed_flags() {
    let c = serve(
        &["--watch-progress-notify-interval=1m", "--max-learners=2"],
        &[],
    );
    assert_eq!(c.watch_progress_notify_interval, Duration::from_secs(60));
    assert_eq!(c.max_learners, 2);
}

#[test]
fn the_example_config_file_loads() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../oxcd.conf.yml.sample");
    let c = serve(&["--config-file", path], &[]);
    assert_eq!(c.name, "default");
    assert_eq!(
        c.data_dir,
        PathBuf::from("default.etcd"),
        "an empty key keeps the default"
    );
    assert_eq!(c.snapshot_count, 10_000);
    assert_eq!(c.initial_cluster_token, "etcd-cluster");
    assert!(!c.client_tls.client_cert_auth);
}
