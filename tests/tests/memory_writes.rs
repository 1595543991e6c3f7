//! Memory after a burst of writes (issue 12): what a member keeps resident does not grow with
//! the data it has written. etcd's benchmark set leaves tens of MiB of old revisions behind,
//! which are never read again; neither the backend's page cache (redb, patched in
//! third_party/redb) nor the raft log (16 bytes per entry, payloads of the newest entries only)
//! may hold on to them.

use std::time::Duration;

use etcd_client::Client;
use oxcd_e2e::{oxcd_only, Cluster};

/// 24000 overwrites of one key with 1 KiB values: about 24 MiB of revisions and of raft log,
/// less than the backend's 32 MiB page cache.
const PUTS: usize = 24_000;
const VALUE: usize = 1024;
const WRITERS: usize = 16;

/// Anonymous resident memory of a process (heap and stacks, not the mapped binary), in bytes.
fn rss_anon(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("RssAnon:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

#[test]
fn written_revisions_do_not_stay_in_memory() {
    oxcd_only!();
    let cluster = Cluster::start(1);
    let member = cluster.member(0);
    let pid = member.pid().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let before = rt.block_on(async {
        let mut client = Client::connect([member.endpoint()], None).await.unwrap();
        // One round of every kind of request first, so that what the member allocates once
        // (connections, buffers, caches of a fixed size) is in `before`.
        for i in 0..200 {
            client.put("k", vec![b'w'; VALUE], None).await.unwrap();
            client.get("k", None).await.unwrap();
            client.put(format!("other{i}"), "v", None).await.unwrap();
        }
        let before = rss_anon(pid);
        let mut writers = tokio::task::JoinSet::new();
        for w in 0..WRITERS {
            let mut client = client.clone();
            writers.spawn(async move {
                for i in (w..PUTS).step_by(WRITERS) {
                    let value = vec![b'a' + (i % 26) as u8; VALUE];
                    tokio::time::timeout(Duration::from_secs(30), client.put("k", value, None))
                        .await
                        .expect("put in time")
                        .expect("put");
                }
            });
        }
        while let Some(done) = writers.join_next().await {
            done.unwrap();
        }
        // Every revision is still there: nothing was compacted away.
        let first = client
            .get("k", Some(etcd_client::GetOptions::new().with_revision(300)))
            .await
            .unwrap();
        assert_eq!(first.kvs().len(), 1, "an early revision is kept");
        before
    });
    // Past the backend's durable commit (every 100 ms), which writes the pages out.
    std::thread::sleep(Duration::from_secs(1));
    let after = rss_anon(pid);
    let grown = after.saturating_sub(before);
    println!(
        "anonymous RSS {:.1} -> {:.1} MiB after {PUTS} puts of {VALUE} B",
        before as f64 / 1048576.0,
        after as f64 / 1048576.0
    );
    // Measured: +4.4 MiB; +38 MiB before (written pages kept in redb's page cache, 48 bytes
    // per raft log entry).
    assert!(
        grown < 12 << 20,
        "anonymous RSS grew by {:.1} MiB over {PUTS} puts of {VALUE} B",
        grown as f64 / 1048576.0
    );
}
