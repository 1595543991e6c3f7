//! `oxcdctl snapshot status` and `snapshot restore` against the real etcdctl 3.4's on the
//! same files (issue 13).
//!
//! - status: a snapshot oxcdctl saves from oxcd, one etcdctl saves from etcd 3.4, and the
//!   etcd 3.4 / 3.5 / 3.6 fixtures, in every output format; then the errors (missing file,
//!   directory, not a database, argument count, unknown flag with cobra's usage).
//! - restore: the snapshots saved from oxcd and from etcd 3.4, restored by oxcdctl; oxcd
//!   started on the result serves every key with its revisions. The log lines and the
//!   errors (corrupt file, existing data dir, missing file, bad flags) are etcdctl's.
//!
//! oxcdctl runs through a link named `etcdctl`, so its texts name the program as etcdctl's.

mod ctl_support;

use std::path::Path;

use ctl_support::{oxcdctl_bin, run, Run};
use oxcd_e2e::ports::free_port;
use oxcd_e2e::{etcdctl_bin, fixture, real_etcd_bin, server_bin, CtlOutput, Member};
use serde_json::Value;

/// Runs `etcdctl ARGS` and oxcdctl (through a link named `etcdctl`) with no endpoint and
/// requires the same stdout, stderr and exit code.
fn same(linked: &Path, args: &[&str]) {
    let r = Run {
        args,
        no_endpoint_flag: true,
        ..Default::default()
    };
    let expected = run(&etcdctl_bin(), "", &r);
    let got = run(&linked.to_path_buf(), "", &r);
    assert_eq!(
        expected.to_string(),
        got.to_string(),
        "oxcdctl {args:?} differs from etcdctl"
    );
}

/// Saves a snapshot of a fresh `bin` member, with a few keys and a deletion, by `ctl`;
/// returns the member's [`keyspace`] as saved.
fn saved(bin: std::path::PathBuf, ctl: &std::path::PathBuf, file: &Path) -> (Value, i64) {
    let member = Member::builder().bin(bin).start();
    for args in [
        &["put", "a", "1"][..],
        &["put", "b", "2"],
        &["put", "a", "3"],
        &["del", "b"],
    ] {
        assert!(member.etcdctl(args).success());
    }
    let file = file.display().to_string();
    let out = run(
        ctl,
        &member.endpoint(),
        &Run {
            args: &["snapshot", "save", &file],
            ..Default::default()
        },
    );
    assert!(out.success(), "snapshot save: {out}");
    keyspace(&member)
}

/// Every key with its revisions and version, and the member's revision.
fn keyspace(member: &Member) -> (Value, i64) {
    let out = member.etcdctl(&["get", "", "--from-key", "-w", "json"]);
    let v: Value = serde_json::from_str(out.expect_success()).expect("get -w json");
    let revision = v["header"]["revision"].as_i64().expect("header revision");
    (v["kvs"].clone(), revision)
}

#[test]
fn snapshot_status_matches_etcdctl() {
    let dir = tempfile::tempdir().expect("temp dir");
    let linked = dir.path().join("etcdctl");
    std::os::unix::fs::symlink(oxcdctl_bin(), &linked).expect("symlink");
    let from_oxcd = dir.path().join("oxcd.db");
    let from_etcd = dir.path().join("etcd.db");
    saved(server_bin(), &oxcdctl_bin(), &from_oxcd);
    saved(real_etcd_bin(), &etcdctl_bin(), &from_etcd);
    let files = [
        from_oxcd,
        from_etcd,
        fixture("snapshot/etcd-3.4.db"),
        fixture("snapshot/etcd-3.5.db"),
        fixture("snapshot/etcd-3.6.db"),
    ];
    for file in &files {
        let file = file.display().to_string();
        for w in ["simple", "json", "table", "fields", "protobuf"] {
            same(&linked, &["-w", w, "snapshot", "status", &file]);
        }
    }
    let not_a_db = fixture("snapshot/README.md").display().to_string();
    let dir_name = dir.path().display().to_string();
    let missing = dir.path().join("missing.db").display().to_string();
    for args in [
        &["snapshot", "status", &missing][..],
        &["snapshot", "status", &dir_name],
        &["snapshot", "status", &not_a_db],
        &["snapshot", "status"],
        &["snapshot", "status", "a", "b"],
        &["snapshot", "status", "--x"],
        &["-w", "bogus", "snapshot", "status", &not_a_db],
    ] {
        same(&linked, args);
    }
}

/// Runs `args` with etcdctl, then with oxcdctl (each after `reset`), and requires the same
/// stdout, exit code and stderr, the log lines compared by [`log_lines`].
fn same_restore(linked: &Path, args: &[&str], reset: impl Fn()) {
    let r = Run {
        args,
        no_endpoint_flag: true,
        ..Default::default()
    };
    reset();
    let theirs = run(&etcdctl_bin(), "", &r);
    reset();
    let ours = run(&linked.to_path_buf(), "", &r);
    let shown = |o: &CtlOutput| (o.code, o.stdout.clone(), log_lines(&o.stderr));
    assert_eq!(
        shown(&theirs),
        shown(&ours),
        "oxcdctl {args:?}:\n{ours}\netcdctl:\n{theirs}"
    );
}

/// stderr with each zap JSON line reduced to its level, message and the fields a user
/// reads (paths and member ids); time and caller differ by nature.
fn log_lines(stderr: &str) -> String {
    const FIELDS: &[&str] = &[
        "path",
        "wal-dir",
        "data-dir",
        "snap-dir",
        "cluster-id",
        "local-member-id",
        "added-peer-id",
    ];
    stderr
        .lines()
        .map(|line| match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(log)) => {
                let fields: Vec<String> = FIELDS
                    .iter()
                    .filter_map(|k| log.get(*k).map(|v| format!("{k}={v}")))
                    .collect();
                format!("{} {} {}\n", log["level"], log["msg"], fields.join(" "))
            }
            _ => format!("{line}\n"),
        })
        .collect()
}

#[test]
fn snapshot_restore_matches_etcdctl() {
    let dir = tempfile::tempdir().expect("temp dir");
    let linked = dir.path().join("etcdctl");
    std::os::unix::fs::symlink(oxcdctl_bin(), &linked).expect("symlink");
    let sources = [
        ("oxcd", server_bin(), oxcdctl_bin()),
        ("etcd", real_etcd_bin(), etcdctl_bin()),
    ];
    for (source, server, ctl) in sources {
        let file = dir.path().join(format!("{source}.db"));
        let expected = saved(server, &ctl, &file);
        let file = file.display().to_string();
        let data = dir.path().join(format!("{source}.restored"));
        let data_arg = data.display().to_string();
        let (client, peer) = (free_port(), free_port());
        let purl = format!("http://127.0.0.1:{peer}");
        let cluster = format!("r0={purl}");
        let args = [
            "snapshot",
            "restore",
            &file,
            "--name",
            "r0",
            "--data-dir",
            &data_arg,
            "--initial-cluster",
            &cluster,
            "--initial-cluster-token",
            "restored",
            "--initial-advertise-peer-urls",
            &purl,
        ];
        let remove = || {
            let _ = std::fs::remove_dir_all(&data);
        };
        same_restore(&linked, &args, remove);
        let restored = Member::builder()
            .name("r0")
            .ports(client, peer)
            .initial_cluster(&cluster)
            .arg(format!("--data-dir={data_arg}"))
            .start();
        assert_eq!(
            keyspace(&restored),
            expected,
            "oxcd on the data dir oxcdctl restored from {source}'s snapshot"
        );
        drop(restored);
        // The data dir now exists.
        same_restore(&linked, &args, || {});
    }

    let good = dir.path().join("oxcd.db");
    let corrupt = dir.path().join("corrupt.db");
    let mut bytes = std::fs::read(&good).expect("read snapshot");
    bytes[..512].fill(0);
    std::fs::write(&corrupt, bytes).expect("write corrupt snapshot");
    let corrupt = corrupt.display().to_string();
    let missing = dir.path().join("missing.db").display().to_string();
    let good = good.display().to_string();
    let out = dir.path().join("out.etcd");
    let out_arg = out.display().to_string();
    let remove = || {
        let _ = std::fs::remove_dir_all(&out);
    };
    for args in [
        &["snapshot", "restore", "--data-dir", &out_arg, &corrupt][..],
        &["snapshot", "restore", "--data-dir", &out_arg, &missing],
        &[
            "snapshot",
            "restore",
            "--data-dir",
            &out_arg,
            "--name",
            "x",
            &good,
        ],
        &[
            "snapshot",
            "restore",
            "--data-dir",
            &out_arg,
            "--initial-advertise-peer-urls",
            "ftp://127.0.0.1:1",
            &good,
        ],
        &["snapshot", "restore"],
        &["snapshot", "restore", "a", "b"],
        &["snapshot", "restore", "--bogus", &good],
    ] {
        same_restore(&linked, args, remove);
    }
}
