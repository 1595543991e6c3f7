//! Auto-compaction (issue 2, item 6): `--auto-compaction-mode periodic` compacts old
//! revisions away while writes go on; the latest value of every key stays readable.

use std::time::{Duration, Instant};

use oxcd_e2e::Member;

#[test]
fn periodic_auto_compaction_removes_old_revisions() {
    let member = Member::builder()
        .args([
            "--auto-compaction-mode",
            "periodic",
            "--auto-compaction-retention",
            "1s",
        ])
        .start();
    member.etcdctl(&["put", "k", "first"]).expect_success();
    // Keep writing so every sample sees a newer revision; within a few retentions the
    // first revision must be compacted.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut compacted = false;
    let mut i = 0;
    while Instant::now() < deadline {
        i += 1;
        member
            .etcdctl(&["put", "k", &format!("v{i}")])
            .expect_success();
        let old = member.etcdctl(&["get", "k", "--rev", "2"]);
        if !old.success() && old.stderr.contains("required revision has been compacted") {
            compacted = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        compacted,
        "revision 2 still readable after 20 s of periodic auto-compaction"
    );
    let latest = member.etcdctl(&["get", "k", "--print-value-only"]);
    assert_eq!(latest.expect_success().trim(), format!("v{i}"));
}
