//! Every answered write is seen by the reads that follow it on the same member (issue 12): a
//! put, delete or compaction is answered before its batch is committed to the backend, so the
//! serializable reads, watches and compactions that come after the answer, on the same client
//! or another one, must still see it at once.

use std::time::Duration;

use etcd_client::{Client, CompactionOptions, GetOptions, WatchOptions};
use oxcd_e2e::Member;

/// How long a watch response may take on a loaded machine.
const WAIT: Duration = Duration::from_secs(30);

/// Writes in a row, each checked at once; enough to land many reads inside the commit that
/// follows an answer.
const ROUNDS: usize = 300;

async fn connect(member: &Member) -> Client {
    Client::connect([member.endpoint()], None)
        .await
        .unwrap_or_else(|e| panic!("connect to {}: {e}", member.endpoint()))
}

#[tokio::test]
async fn reads_right_after_an_answer_see_the_write() {
    let member = Member::start_single();
    let mut writer = connect(&member).await;
    let mut reader = connect(&member).await;
    let serializable = || Some(GetOptions::new().with_serializable());
    for i in 0..ROUNDS {
        let value = i.to_string();
        let put = writer.put("k", value.as_str(), None).await.unwrap();
        let written = put.header().unwrap().revision();
        for (who, client) in [("writer", &mut writer), ("reader", &mut reader)] {
            let got = client.get("k", serializable()).await.unwrap();
            let kv = got.kvs().first().expect("the key just written");
            assert_eq!(
                (kv.value_str().unwrap(), kv.mod_revision()),
                (value.as_str(), written),
                "round {i}: the {who}'s serializable get after the put's answer"
            );
            assert!(got.header().unwrap().revision() >= written);
        }

        let deleted = writer.delete("k", None).await.unwrap();
        assert_eq!(deleted.deleted(), 1);
        let got = reader.get("k", serializable()).await.unwrap();
        assert!(
            got.kvs().is_empty(),
            "round {i}: the key is still there after the delete's answer"
        );
    }
}

#[tokio::test]
async fn a_compaction_is_in_force_once_answered() {
    let member = Member::start_single();
    let mut writer = connect(&member).await;
    let mut reader = connect(&member).await;
    for _ in 0..ROUNDS {
        writer.put("c", "x", None).await.unwrap();
        let rev = writer.put("c", "y", None).await.unwrap();
        let at = rev.header().unwrap().revision() - 1;
        writer
            .compact(at, Some(CompactionOptions::new()))
            .await
            .unwrap();
        // A watch from before the compaction is refused with its revision at once.
        let mut stream = reader
            .watch("c", Some(WatchOptions::new().with_start_revision(at - 1)))
            .await
            .unwrap();
        let mut canceled = None;
        while canceled.is_none() {
            let resp = tokio::time::timeout(WAIT, stream.message())
                .await
                .expect("a watch response in time")
                .unwrap()
                .expect("watch response");
            assert!(resp.events().is_empty(), "events from a compacted revision");
            if resp.canceled() {
                canceled = Some(resp.compact_revision());
            }
        }
        assert_eq!(canceled, Some(at), "the watch from before the compaction");
        // And a read below it fails.
        let old = reader
            .get("c", Some(GetOptions::new().with_revision(at - 1)))
            .await;
        assert!(
            old.as_ref().is_err_and(|e| e
                .to_string()
                .contains("required revision has been compacted")),
            "read below the answered compaction: {old:?}"
        );
    }
}
