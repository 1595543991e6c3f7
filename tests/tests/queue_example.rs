//! The distributed-queue example (`tests/examples/queue.rs`) against a real server (issue 4):
//! FIFO by create revision, each item to exactly one consumer, a consumer waiting on an empty
//! queue wakes for the next item.

#[path = "../examples/queue.rs"]
#[allow(dead_code)]
mod queue;

use std::collections::BTreeSet;
use std::time::Duration;

use etcd_client::Client;
use oxcd_e2e::Member;
use queue::Queue;

async fn queue(member: &Member, name: &str) -> Queue {
    let client = Client::connect([member.endpoint()], None).await.unwrap();
    Queue::new(client, name)
}

#[tokio::test]
async fn items_come_out_in_the_order_they_went_in() {
    let member = Member::start_single();
    let mut q = queue(&member, "fifo").await;
    let mut revisions = Vec::new();
    for i in 0..30 {
        revisions.push(q.enqueue(&format!("item-{i}")).await.unwrap());
    }
    assert!(revisions.windows(2).all(|w| w[0] < w[1]));
    for i in 0..30 {
        assert_eq!(q.dequeue().await.unwrap(), format!("item-{i}"));
    }
}

#[tokio::test]
async fn competing_consumers_each_get_every_item_exactly_once() {
    let member = Member::start_single();
    const PRODUCERS: usize = 3;
    const PER_PRODUCER: usize = 20;
    const CONSUMERS: usize = 3;
    let mut producers = Vec::new();
    for p in 0..PRODUCERS {
        let mut q = queue(&member, "shared").await;
        producers.push(tokio::spawn(async move {
            for i in 0..PER_PRODUCER {
                q.enqueue(&format!("{p}:{i:02}")).await.unwrap();
            }
        }));
    }
    let per_consumer = PRODUCERS * PER_PRODUCER / CONSUMERS;
    let mut consumers = Vec::new();
    for _ in 0..CONSUMERS {
        let mut q = queue(&member, "shared").await;
        consumers.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for _ in 0..per_consumer {
                got.push(q.dequeue().await.unwrap());
            }
            got
        }));
    }
    for p in producers {
        p.await.unwrap();
    }
    let mut all = BTreeSet::new();
    for c in consumers {
        let got = tokio::time::timeout(Duration::from_secs(30), c)
            .await
            .expect("consumers finish")
            .unwrap();
        // Within one consumer, each producer's items keep their order.
        for p in 0..PRODUCERS {
            let mine: Vec<&String> = got
                .iter()
                .filter(|v| v.starts_with(&format!("{p}:")))
                .collect();
            assert!(mine.windows(2).all(|w| w[0] < w[1]), "{mine:?}");
        }
        for item in got {
            assert!(all.insert(item.clone()), "{item} delivered twice");
        }
    }
    assert_eq!(all.len(), PRODUCERS * PER_PRODUCER);
}

#[tokio::test]
async fn a_consumer_waits_for_the_next_item() {
    let member = Member::start_single();
    let mut consumer = queue(&member, "later").await;
    let waiting = tokio::spawn(async move { consumer.dequeue().await.unwrap() });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "dequeued from an empty queue");
    let mut producer = queue(&member, "later").await;
    producer.enqueue("finally").await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the waiting consumer wakes")
        .unwrap();
    assert_eq!(got, "finally");
}
