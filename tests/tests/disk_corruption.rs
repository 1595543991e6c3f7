//! Corruption is detected, not served (issue 16): a member whose backend file had bits flipped
//! while it was down refuses to start, with a message that says so; a snapshot file with a
//! flipped bit is set aside (`.broken`) and never used, as etcd does, and the member comes back
//! from an older snapshot or the WAL with every write. (A corrupt WAL is covered by
//! durability.rs: `wal_corrupt_in_the_middle_refuses_to_start`.)

use std::time::Duration;

use std::path::PathBuf;

use oxcd_e2e::Member;

const MARK: &[u8] = b"FLIP-ME-FLIP-ME";

#[test]
fn bit_flips_in_the_backend_refuse_to_start() {
    oxcd_e2e::oxcd_only!();
    let mut member = Member::start_single();
    for i in 0..50 {
        let value = format!("{}-{i}", String::from_utf8_lossy(MARK));
        let put = member.etcdctl(&["put", &format!("k{i}"), &value]);
        assert!(put.success(), "put: {put}");
    }
    // A clean stop makes the backend durable, so the values are in the file.
    member.stop();
    let db = member.data_dir().join("member/snap/db");
    let mut bytes = std::fs::read(&db).unwrap();
    let mut flipped = 0;
    let mut at = 0;
    while let Some(i) = bytes[at..].windows(MARK.len()).position(|w| w == MARK) {
        bytes[at + i] ^= 0x01;
        flipped += 1;
        at += i + 1;
    }
    assert!(flipped > 0, "the values are not in {}", db.display());
    std::fs::write(&db, &bytes).unwrap();

    member.respawn();
    let status = member.wait_exit(Duration::from_secs(30));
    assert!(!status.success(), "started on a corrupt backend");
    let log = member.log_since_start();
    assert!(
        log.contains("corrupt"),
        "no clear message:\n{}",
        member.log_tail(10)
    );
}

fn snap_files(dir: &std::path::Path, suffix: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    files.sort();
    files
}

#[test]
fn bit_flips_in_snapshot_files_are_set_aside() {
    oxcd_e2e::oxcd_only!();
    let mut member = Member::builder().arg("--snapshot-count=20").start();
    for i in 0..100 {
        member
            .etcdctl(&["put", &format!("k{i:03}"), &format!("v{i}")])
            .expect_success();
    }
    member.stop();
    let snap_dir = member.data_dir().join("member/snap");
    let snaps = snap_files(&snap_dir, ".snap");
    assert!(snaps.len() >= 2, "snapshots: {snaps:?}");
    // One bit in the middle of every snapshot file.
    for snap in &snaps {
        let mut bytes = std::fs::read(snap).unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 0x10;
        std::fs::write(snap, &bytes).unwrap();
    }

    member.restart();
    let log = member.log_since_start();
    assert_eq!(
        log.matches("snapshot file is broken").count(),
        snaps.len(),
        "every damaged snapshot is reported:\n{}",
        member.log_tail(20)
    );
    for snap in &snaps {
        let broken = PathBuf::from(format!("{}.broken", snap.display()));
        assert!(broken.exists(), "{} was not set aside", snap.display());
    }
    let keys = member.etcdctl(&["get", "k", "--prefix", "--keys-only"]);
    assert_eq!(keys.expect_success().split_whitespace().count(), 100);
    let last = member.etcdctl(&["get", "k099", "--print-value-only"]);
    assert_eq!(last.expect_success().trim(), "v99");
    member
        .etcdctl(&["put", "after", "restart"])
        .expect_success();
}
