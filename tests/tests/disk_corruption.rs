//! Corruption is detected, not served (issue 16): a member whose backend file had bits flipped
//! while it was down refuses to start, with a message that says so; a snapshot file with a
//! flipped bit is set aside (`.broken`) and never used, as etcd does, and the member comes back
//! from an older snapshot with every write; with every snapshot file broken it refuses to start
//! with one line naming them. In the WAL, as in etcd, a bit flip in the last record refuses to
//! start, naming the file and offset, while a last record torn by a crash (a sector of it never
//! written) is truncated and nothing acknowledged is lost. (A WAL corrupt in the middle is
//! covered by durability.rs: `wal_corrupt_in_the_middle_refuses_to_start`.)

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

/// A member that wrote 100 keys with a snapshot every 20 entries, stopped; its `.snap` files,
/// oldest first.
fn stopped_member_with_snapshots() -> (Member, Vec<PathBuf>) {
    let mut member = Member::builder().arg("--snapshot-count=20").start();
    for i in 0..100 {
        member
            .etcdctl(&["put", &format!("k{i:03}"), &format!("v{i}")])
            .expect_success();
    }
    member.stop();
    let snaps = snap_files(&member.data_dir().join("member/snap"), ".snap");
    (member, snaps)
}

/// Flips one bit in the middle of `file`.
fn flip_a_middle_bit(file: &std::path::Path) {
    let mut bytes = std::fs::read(file).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x10;
    std::fs::write(file, &bytes).unwrap();
}

#[test]
fn a_bit_flip_in_the_newest_snapshot_sets_it_aside() {
    oxcd_e2e::oxcd_only!();
    let (mut member, snaps) = stopped_member_with_snapshots();
    assert!(snaps.len() >= 2, "snapshots: {snaps:?}");
    // One bit in the middle of the newest snapshot file.
    let newest = snaps.last().unwrap();
    flip_a_middle_bit(newest);

    member.restart();
    let log = member.log_since_start();
    assert_eq!(
        log.matches("snapshot file is broken").count(),
        1,
        "the damaged snapshot is reported:\n{}",
        member.log_tail(20)
    );
    let broken = PathBuf::from(format!("{}.broken", newest.display()));
    assert!(broken.exists(), "{} was not set aside", newest.display());
    let keys = member.etcdctl(&["get", "k", "--prefix", "--keys-only"]);
    assert_eq!(keys.expect_success().split_whitespace().count(), 100);
    let last = member.etcdctl(&["get", "k099", "--print-value-only"]);
    assert_eq!(last.expect_success().trim(), "v99");
    member
        .etcdctl(&["put", "after", "restart"])
        .expect_success();
}

#[test]
fn every_snapshot_broken_refuses_to_start_naming_them() {
    oxcd_e2e::oxcd_only!();
    let (mut member, snaps) = stopped_member_with_snapshots();
    assert!(!snaps.is_empty(), "no snapshot files");
    for snap in &snaps {
        flip_a_middle_bit(snap);
    }
    // The first start sets the files aside; a second one finds only `.broken` files: both
    // refuse, with one line that names every file and what is wrong with it.
    for attempt in 0..2 {
        member.respawn();
        let status = member.wait_exit(Duration::from_secs(30));
        assert!(!status.success(), "started without a usable snapshot");
        let log = member.log_since_start();
        let line = log
            .lines()
            .find(|l| l.contains("every snapshot file is broken"))
            .unwrap_or_else(|| panic!("attempt {attempt}: no clear message:\n{log}"));
        for snap in &snaps {
            let name = format!("{}.broken", snap.file_name().unwrap().to_string_lossy());
            assert!(
                line.contains(&format!("{name}: crc mismatch")),
                "attempt {attempt}: {name} is not named:\n{line}"
            );
        }
    }
}

/// The WAL's records as (offset, framed length), read the way oxcd lays them out
/// (crates/storage/src/wal/mod.rs): a 16-byte header holding the data length at bytes 4..8,
/// the data, zero padding to 8 bytes; preallocated space reads as zeroes.
fn wal_records(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut records = Vec::new();
    let mut off = 0;
    while off + 16 <= bytes.len() && bytes[off..off + 16].iter().any(|&b| b != 0) {
        let len = u32::from_le_bytes(bytes[off + 4..off + 8].try_into().unwrap()) as usize;
        let framed = (16 + len).div_ceil(8) * 8;
        records.push((off, framed));
        off += framed;
    }
    records
}

fn last_wal_segment(member: &Member) -> PathBuf {
    snap_files(&member.data_dir().join("member/wal"), ".wal")
        .pop()
        .expect("a WAL segment")
}

/// A member killed after acknowledged puts of 1 KiB values: its last WAL segment and records.
fn killed_member_with_wal() -> (Member, PathBuf, Vec<u8>, Vec<(usize, usize)>) {
    let mut member = Member::start_single();
    let value = "x".repeat(1024);
    for i in 0..50 {
        member
            .etcdctl(&["put", &format!("k{i:03}"), &value])
            .expect_success();
    }
    member.kill();
    let segment = last_wal_segment(&member);
    let bytes = std::fs::read(&segment).unwrap();
    let records = wal_records(&bytes);
    assert!(records.len() > 50, "{} records", records.len());
    (member, segment, bytes, records)
}

#[test]
fn a_bit_flip_in_the_last_wal_record_refuses_to_start() {
    oxcd_e2e::oxcd_only!();
    let (mut member, segment, mut bytes, records) = killed_member_with_wal();
    let (off, _) = *records.last().unwrap();
    // One bit in the data of the last record (not its padding, which no checksum covers): a
    // whole record whose checksum fails.
    let len = u32::from_le_bytes(bytes[off + 4..off + 8].try_into().unwrap()) as usize;
    assert!(len > 0, "the last record has no data");
    let at = off + 16 + len / 2;
    bytes[at] ^= 0x08;
    std::fs::write(&segment, &bytes).unwrap();

    member.respawn();
    let status = member.wait_exit(Duration::from_secs(30));
    assert!(!status.success(), "started on a WAL with a flipped bit");
    let log = member.log_since_start();
    let want = format!(
        "corrupt record in {} at offset {off}: crc mismatch",
        segment.display()
    );
    assert!(
        log.contains(&want) && log.contains("not torn by a crash"),
        "the message does not name the file, offset and cause ({want}):\n{}",
        member.log_tail(10)
    );
    assert!(
        !log.contains("truncating"),
        "the flip was taken for a torn write"
    );
}

#[test]
fn a_torn_last_wal_record_is_truncated_and_nothing_acknowledged_is_lost() {
    oxcd_e2e::oxcd_only!();
    let (mut member, segment, mut bytes, records) = killed_member_with_wal();
    // A save the crash tore: a copy of the largest record (a put of 1 KiB, over two sectors)
    // appended after the last one, of which only the first sector reached the disk.
    let (big, framed) = *records.iter().max_by_key(|r| r.1).unwrap();
    assert!(framed > 1024, "largest record is {framed} bytes");
    let (last, last_len) = *records.last().unwrap();
    let torn_at = last + last_len;
    let copy = bytes[big..big + framed].to_vec();
    bytes[torn_at..torn_at + framed].copy_from_slice(&copy);
    let sector_end = (torn_at / 512 + 1) * 512;
    bytes[sector_end..torn_at + framed].fill(0);
    std::fs::write(&segment, &bytes).unwrap();

    member.restart();
    let log = member.log_since_start();
    assert!(
        log.contains("torn by a crash") && log.contains(&format!("{torn_at}")),
        "the torn write is not reported:\n{}",
        member.log_tail(20)
    );
    let keys = member.etcdctl(&["get", "k", "--prefix", "--keys-only"]);
    assert_eq!(keys.expect_success().split_whitespace().count(), 50);
    member.etcdctl(&["put", "after", "torn"]).expect_success();
    // The tail was zeroed and written over: the next start finds nothing torn.
    member.restart();
    assert!(
        !member.log_since_start().contains("torn by a crash"),
        "still torn after the repair:\n{}",
        member.log_tail(20)
    );
    let after = member.etcdctl(&["get", "after", "--print-value-only"]);
    assert_eq!(after.expect_success().trim(), "torn");
    let keys = member.etcdctl(&["get", "k", "--prefix", "--keys-only"]);
    assert_eq!(keys.expect_success().split_whitespace().count(), 50);
}
