//! `oxcdctl snapshot status` against the real etcdctl 3.4's on the same files (issue 13):
//! a snapshot oxcdctl saves from oxcd, one etcdctl saves from etcd 3.4, and the etcd 3.4 /
//! 3.5 / 3.6 fixtures, in every output format; then the errors (missing file, directory,
//! not a database, argument count, unknown flag with cobra's usage, oxcdctl named etcdctl).

mod ctl_support;

use std::path::Path;

use ctl_support::{oxcdctl_bin, run, Run};
use oxcd_e2e::{etcdctl_bin, fixture, real_etcd_bin, server_bin, Member};

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

/// Saves a snapshot of a fresh `bin` member, with a few keys and a deletion, by `ctl`.
fn saved(bin: std::path::PathBuf, ctl: &std::path::PathBuf, file: &Path) {
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
