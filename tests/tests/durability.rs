//! What survives a restart, and what the data dir looks like (issue 2, item 5): data and
//! revisions persist across clean and unclean restarts; snapshots release old WAL segments;
//! a WAL corrupted in the middle stops the server from starting.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use oxcd_e2e::{etcdctl_stdin, oxcd_only, Member};

fn files_with_suffix(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.to_string_lossy().ends_with(suffix))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

fn wal_dir(member: &Member) -> PathBuf {
    member.data_dir().join("member").join("wal")
}

fn snap_dir(member: &Member) -> PathBuf {
    member.data_dir().join("member").join("snap")
}

/// `etcdctl get KEY` in the simple format.
fn get_simple(member: &Member, key: &str) -> String {
    member.etcdctl(&["get", key]).expect_success().to_owned()
}

fn header_revision(member: &Member) -> i64 {
    let out = member.etcdctl(&["get", "nothing-here", "-w", "json"]);
    let v: serde_json::Value = serde_json::from_str(out.expect_success()).unwrap();
    v["header"]["revision"].as_i64().expect("header revision")
}

#[test]
fn data_and_revisions_survive_restarts() {
    let mut member = Member::start_single();
    for i in 0..50 {
        member
            .etcdctl(&["put", &format!("k{i:02}"), &format!("v{i}")])
            .expect_success();
    }
    etcdctl_stdin(
        &member.endpoint(),
        &["txn"],
        "\nput t1 a\nput t2 b\ndel k00\n\n\n",
    )
    .expect_success();
    let before_all = member
        .etcdctl(&["get", "", "--prefix", "-w", "json"])
        .stdout;
    let rev = header_revision(&member);

    assert!(member.stop().is_some(), "no exit within 10 s of SIGTERM");
    member.restart();
    assert_eq!(
        header_revision(&member),
        rev,
        "revision after a clean restart"
    );
    assert_eq!(get_simple(&member, "k49"), "k49\nv49\n");
    assert_eq!(get_simple(&member, "k00"), "");

    member.kill();
    member.restart();
    assert_eq!(header_revision(&member), rev, "revision after kill -9");
    let after_all = member
        .etcdctl(&["get", "", "--prefix", "-w", "json"])
        .stdout;
    let strip = |s: &str| {
        let mut v: serde_json::Value = serde_json::from_str(s).unwrap();
        v["header"]["raft_term"] = serde_json::Value::Null;
        v
    };
    assert_eq!(strip(&after_all), strip(&before_all));

    // Writing goes on from the same revision.
    member
        .etcdctl(&["put", "after", "restart"])
        .expect_success();
    assert_eq!(header_revision(&member), rev + 1);
}

#[test]
fn compaction_survives_restart() {
    let mut member = Member::start_single();
    for i in 0..10 {
        member
            .etcdctl(&["put", "c", &i.to_string()])
            .expect_success();
    }
    member.etcdctl(&["compaction", "5"]).expect_success();
    member.kill();
    member.restart();
    let old = member.etcdctl(&["get", "c", "--rev=4"]);
    assert!(
        old.stderr
            .contains("etcdserver: mvcc: required revision has been compacted"),
        "{old}"
    );
    assert_eq!(get_simple(&member, "c"), "c\n9\n");
    let at = member.etcdctl(&["get", "c", "--rev=5", "--print-value-only"]);
    assert_eq!(at.expect_success(), "3\n");
}

#[test]
fn snapshots_release_old_wal_segments() {
    // etcd only purges segments beyond --max-wals every 30 s, and cuts 64 MB segments: this
    // test pins oxcd's promise (segments behind a snapshot are released) within its budget.
    oxcd_only!();
    let member = Member::builder()
        .args(["--snapshot-count=100", "--max-wals=2"])
        .start();
    let first = files_with_suffix(&wal_dir(&member), ".wal");
    assert!(
        !first.is_empty(),
        "no .wal files in {}",
        wal_dir(&member).display()
    );
    let first_segment = first[0].clone();

    // Up to 512 MiB of 256 KiB values on one key, compacted as it goes so the db stays small.
    let value = "v".repeat(256 * 1024);
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut written = 0usize;
    let mut rounds = 0;
    while first_segment.exists() {
        assert!(
            written < 512 * 1024 * 1024 && Instant::now() < deadline,
            "the first WAL segment {} is still there after {} MiB written; wal dir: {:?}",
            first_segment.display(),
            written >> 20,
            files_with_suffix(&wal_dir(&member), ".wal")
        );
        let txn = format!("\nput big {value}\n\n\n");
        for _ in 0..20 {
            etcdctl_stdin(&member.endpoint(), &["txn"], &txn).expect_success();
            written += value.len();
        }
        rounds += 1;
        let rev = header_revision(&member);
        member
            .etcdctl(&["compaction", &rev.to_string()])
            .expect_success();
        if rounds % 10 == 0 {
            eprintln!(
                "{} MiB written, wal files: {}",
                written >> 20,
                files_with_suffix(&wal_dir(&member), ".wal").len()
            );
        }
    }
    assert!(
        !files_with_suffix(&snap_dir(&member), ".snap").is_empty(),
        "no .snap file in {}",
        snap_dir(&member).display()
    );
}

/// The offset just past the last non-zero byte: segments are preallocated with zeros.
fn written_len(bytes: &[u8]) -> usize {
    bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1)
}

#[test]
fn wal_corrupt_in_the_middle_refuses_to_start() {
    let mut member = Member::start_single();
    let value = "x".repeat(1024);
    for i in 0..300 {
        member
            .etcdctl(&["put", &format!("k{i:03}"), &value])
            .expect_success();
    }
    member.kill();

    let segments = files_with_suffix(&wal_dir(&member), ".wal");
    let segment = segments.first().expect("a WAL segment").clone();
    let mut bytes = std::fs::read(&segment).unwrap();
    let end = written_len(&bytes);
    assert!(
        end > 64 * 1024,
        "only {end} bytes written to {}",
        segment.display()
    );
    // Flip bytes in the middle of the written part: inside some entry, far from the tail.
    let at = end / 2;
    for b in &mut bytes[at..at + 64] {
        *b ^= 0x5a;
    }
    std::fs::write(&segment, &bytes).unwrap();

    member.respawn();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = try_status(&mut member) {
            break status;
        }
        let served = member.etcdctl(&["--dial-timeout=1s", "--command-timeout=1s", "get", "k150"]);
        assert!(
            !served.success() || served.stdout.is_empty() || served.stdout.contains(&value),
            "served data from a corrupt WAL: {served}"
        );
        assert!(
            Instant::now() < deadline,
            "still running 20 s after start on a corrupt WAL:\n{}",
            member.log_since_start()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(!status.success(), "exited with success on a corrupt WAL");
    let log = member.log_since_start().to_lowercase();
    eprintln!("refused as it should:\n{}", member.log_tail(10));
    assert!(
        ["crc", "corrupt", "checksum"]
            .iter()
            .any(|w| log.contains(w)),
        "the error does not say what is wrong:\n{log}"
    );
}

fn try_status(member: &mut Member) -> Option<std::process::ExitStatus> {
    if member.is_running() {
        None
    } else {
        Some(member.wait_exit(Duration::from_secs(1)))
    }
}
