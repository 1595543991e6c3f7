//! The backend quota with a small `--quota-backend-bytes` (issue 9), as etcd's TestCtlV3Alarm
//! drives it: 13 pages still take a small put, filling the store raises NOSPACE, and
//! compaction + defrag + `alarm disarm` make room again.
//!
//! The same test passes against real etcd:
//! `OXCD_BIN=/usr/bin/etcd cargo test -p oxcd-e2e --test quota_etcdctl`.

use oxcd_e2e::Member;

const PAGE: usize = 4096;
const NO_SPACE: &str = "etcdserver: mvcc: database space exceeded";

#[test]
fn small_quota_fills_raises_nospace_and_recovers() {
    let member = Member::builder()
        .arg(format!("--quota-backend-bytes={}", 13 * PAGE))
        .start();
    let small = "a".repeat(64);
    member
        .etcdctl(&["put", "1st_test", &small])
        .expect_success();

    let page = "b".repeat(PAGE);
    let mut puts = 0;
    loop {
        let out = member.etcdctl(&["put", "2nd_test", &page]);
        if !out.success() {
            assert!(out.stderr.contains(NO_SPACE), "{out}");
            break;
        }
        puts += 1;
        assert!(puts < 200, "{puts} pages went into a 13-page quota");
    }
    let alarms = member.etcdctl(&["alarm", "list"]);
    assert!(
        alarms.expect_success().contains("alarm:NOSPACE"),
        "{alarms}"
    );
    let refused = member.etcdctl(&["put", "3rd_test", &small]);
    assert!(refused.stderr.contains(NO_SPACE), "{refused}");

    let status = member.etcdctl(&["endpoint", "status", "-w", "json"]);
    let json: serde_json::Value = serde_json::from_str(status.expect_success()).unwrap();
    let rev = json[0]["Status"]["header"]["revision"].as_i64().unwrap();
    member
        .etcdctl(&["compaction", &rev.to_string(), "--physical"])
        .expect_success();
    member.etcdctl(&["defrag"]).expect_success();
    member.etcdctl(&["alarm", "disarm"]).expect_success();
    assert_eq!(
        member
            .etcdctl(&["put", "4th_test", &small])
            .expect_success(),
        "OK\n"
    );
    assert_eq!(member.etcdctl(&["alarm", "list"]).expect_success(), "");
}
