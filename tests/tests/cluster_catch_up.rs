//! A follower that was down catches up from the leader's raft log, not from a snapshot, while
//! the log still holds what it missed. oxcd keeps only the newest payloads of that log in
//! memory (1 MiB) and reads the older ones back from the WAL: here the follower misses several
//! times that. Runs against real etcd as well.

use std::time::Duration;

use etcd_client::{Client, GetOptions};
use oxcd_e2e::fault_run::cluster_lock;
use oxcd_e2e::{testing_real_etcd, wait_until, Cluster};

const KEYS: usize = 3000;
/// 3000 values of 2 KiB: about 6 MiB of log.
const VALUE: usize = 2048;
const WRITERS: usize = 8;

fn value(i: usize) -> String {
    format!("{i:05}-").repeat(VALUE / 6)
}

#[test]
fn a_follower_catches_up_from_a_log_read_back_from_the_wal() {
    let _lock = cluster_lock();
    let mut cluster = Cluster::start(3);
    cluster.member_mut(2).stop();
    // Member 2 may have led: wait for the other two to elect a leader.
    wait_until(
        "a leader among the members left",
        Duration::from_secs(30),
        || cluster.leader(),
    );
    let endpoints: Vec<String> = (0..2).map(|i| cluster.member(i).endpoint()).collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = Client::connect(endpoints, None).await.unwrap();
        let mut writers = tokio::task::JoinSet::new();
        for w in 0..WRITERS {
            let mut client = client.clone();
            writers.spawn(async move {
                for i in (w..KEYS).step_by(WRITERS) {
                    client
                        .put(format!("k/{i:05}"), value(i), None)
                        .await
                        .unwrap();
                }
            });
        }
        while let Some(done) = writers.join_next().await {
            done.unwrap();
        }
    });

    cluster.member_mut(2).restart();
    let lagging = cluster.member(2).endpoint();
    let read = |prefix: &str, count_only: bool| {
        rt.block_on(async {
            let mut client = Client::connect([lagging.clone()], None).await.ok()?;
            let mut opts = GetOptions::new().with_prefix().with_serializable();
            if count_only {
                opts = opts.with_count_only();
            }
            client.get(prefix, Some(opts)).await.ok()
        })
    };
    wait_until(
        "the restarted member has every key",
        Duration::from_secs(60),
        || read("k/", true).filter(|r| r.count() == KEYS as i64),
    );
    // A thousand keys (2 MiB) at a time: an answer must stay below the client's 4 MiB.
    let mut i = 0;
    for thousand in ["k/00", "k/01", "k/02"] {
        let got = read(thousand, false).expect("a serializable read of the restarted member");
        assert_eq!(got.kvs().len(), 1000);
        for kv in got.kvs() {
            assert_eq!(kv.key_str().unwrap(), format!("k/{i:05}"));
            assert!(kv.value() == value(i).as_bytes(), "value of k/{i:05}");
            i += 1;
        }
    }
    if !testing_real_etcd() {
        let log = cluster.member(2).log();
        assert!(
            !log.contains("installed a snapshot from the leader"),
            "the member caught up from a snapshot, not from the log"
        );
    }
}
