//! oxcdctl's help against the real etcdctl 3.4's, byte for byte on stdout, stderr and exit
//! code (issue 13): `--help`, `-h`, `help [command]` and a group command run alone, for the
//! root and for every command etcdctl's own help lists.
//!
//! oxcdctl runs through a link named `etcdctl`, so its texts name the program as etcdctl's.
//! cobra's `completion` commands are compared only in the root's list: their long texts
//! describe cobra's scripts, not clap's.

mod ctl_support;

use std::path::Path;

use ctl_support::{oxcdctl_bin, run, Run};
use oxcd_e2e::etcdctl_bin;

/// Runs etcdctl and oxcdctl (as `linked`) with `args` and no endpoint; requires the same
/// output.
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

/// The command paths in etcdctl's root help (`alarm disarm`, `get`, ...), without those
/// oxcdctl does not compare (see the file's doc).
fn listed_commands() -> Vec<String> {
    let out = run(
        &etcdctl_bin(),
        "",
        &Run {
            args: &["--help"],
            no_endpoint_flag: true,
            ..Default::default()
        },
    );
    let list = out
        .stdout
        .split("COMMANDS:\n")
        .nth(1)
        .and_then(|rest| rest.split("\n\n").next())
        .unwrap_or_else(|| panic!("no command list in etcdctl --help: {out}"));
    let commands: Vec<String> = list
        .lines()
        .filter_map(|line| line.trim_start().split('\t').next())
        .filter(|path| *path != "help" && !path.starts_with("completion"))
        .map(str::to_owned)
        .collect();
    assert!(commands.len() > 40, "etcdctl lists {commands:?}");
    commands
}

#[test]
fn help_matches_etcdctl() {
    let dir = tempfile::tempdir().expect("temp dir");
    let linked = dir.path().join("etcdctl");
    std::os::unix::fs::symlink(oxcdctl_bin(), &linked).expect("symlink");

    for args in [
        &[][..],
        &["--help"],
        &["-h"],
        &["help"],
        &["help", "bogus"],
        &["help", "bogus", "x"],
        &["-w", "json", "--help"],
        &["bogus", "--help"],
    ] {
        same(&linked, args);
    }
    let commands = listed_commands();
    let mut groups: Vec<&str> = commands
        .iter()
        .filter_map(|path| path.split_once(' ').map(|(group, _)| group))
        .collect();
    groups.dedup();
    for group in groups {
        for args in [
            &[group][..],
            &[group, "--help"],
            &["help", group],
            &[group, "bogus"],
        ] {
            same(&linked, args);
        }
    }
    for path in &commands {
        let words: Vec<&str> = path.split(' ').collect();
        let help = [&["help"][..], &words].concat();
        let flag = [&words[..], &["--help"]].concat();
        let short = [&words[..], &["x", "-h"]].concat();
        for args in [help, flag, short] {
            same(&linked, &args);
        }
    }
}
