//! Corruption is detected, not served (issue 16): a member whose backend file had bits flipped
//! while it was down refuses to start, with a message that says so.
//! (A corrupt WAL is covered by durability.rs.)

use std::time::Duration;

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
