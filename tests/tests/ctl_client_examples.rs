//! The client library's runnable examples (`crates/client/examples/`, shown in its docs),
//! run against a fresh oxcd: each must exit 0 and print what its comments promise
//! (issue 13: "documented with runnable examples").
//!
//! The examples are built by `cargo build --release -p oxcd-client --examples` (CI does it
//! in scripts/test.sh; `cargo test` builds them too).

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use oxcd_e2e::Member;

/// How long one example may run (the lease example waits for two renewals, ~4 s).
const DEADLINE: Duration = Duration::from_secs(60);

fn example_bin(name: &str) -> PathBuf {
    let root = oxcd_e2e::binaries::workspace_root();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let bin = target.join("release").join("examples").join(name);
    assert!(
        bin.is_file(),
        "no {}: run `cargo build --release -p oxcd-client --examples`",
        bin.display()
    );
    bin
}

/// Runs the example against `member`; returns its stdout once it exited 0.
fn run_example(name: &str, member: &Member) -> String {
    let mut child = Command::new(example_bin(name))
        .arg(member.endpoint())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the example");
    let started = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("example {name} ran longer than {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("example output");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "example {name}: {}\n--- stdout\n{stdout}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn client_examples_run_against_oxcd() {
    let member = Member::start_single();

    assert_eq!(
        run_example("kv_watch", &member),
        "get fruit/apple = green (version 2)\n\
         watch: put fruit/apple = red\n\
         watch: put fruit/banana = yellow\n\
         watch: put fruit/apple = green\n\
         watch: delete fruit/banana\n"
    );
    assert_eq!(
        run_example("lease_keep_alive", &member),
        "granted a lease of 5 s and attached service/instance-1\n\
         renewed: ttl back to 5 s\n\
         renewed: ttl back to 5 s\n\
         service/instance-1 present: true\n\
         after revoke, service/instance-1 present: false\n"
    );
    assert_eq!(
        run_example("lock_election", &member),
        "locked jobs/lock\n\
         unlocked jobs/lock\n\
         leader: host-a\n\
         leader proclaims: host-a, v2\n\
         resigned; leader now: None\n"
    );
    // What the examples wrote is there for any client: the watch example's key.
    let out = member.etcdctl(&["get", "fruit/apple", "--print-value-only"]);
    assert_eq!(out.expect_success(), "green\n");
}
