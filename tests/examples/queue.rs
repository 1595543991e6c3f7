//! A distributed FIFO queue on oxcd (or etcd), the pattern of etcd's `contrib/recipes`:
//!
//! - **Enqueue** puts a new key `PREFIX/<nanoseconds>` with a txn that only succeeds if the key
//!   does not exist yet, so two producers never overwrite each other. The key's create
//!   revision is the item's place in the queue: revisions are assigned by the leader in one
//!   total order, whatever the producers' clocks say.
//! - **Dequeue** reads the key with the lowest create revision under the prefix and claims it
//!   with a txn that deletes it only if its mod revision is unchanged: of several consumers
//!   racing for the head, exactly one wins and the others try the next head. On an empty queue
//!   it watches the prefix from the revision of its read and claims the first put it sees.
//!
//! Each item is delivered to exactly one consumer, in create-revision order.
//!
//! ```text
//! cargo run -p oxcd-e2e --example queue -- [ENDPOINT] [PRODUCERS] [CONSUMERS] [ITEMS]
//! ```
//! runs producers and consumers against ENDPOINT (default 127.0.0.1:2379) and checks that
//! every item came out once and each producer's items in the order it queued them.

use std::time::{SystemTime, UNIX_EPOCH};

use etcd_client::{
    Client, Compare, CompareOp, Error, EventType, GetOptions, SortOrder, SortTarget, Txn, TxnOp,
    WatchOptions,
};

/// A queue: every item is a key under `prefix/`.
pub struct Queue {
    client: Client,
    prefix: String,
}

impl Queue {
    pub fn new(client: Client, name: &str) -> Queue {
        Queue {
            client,
            prefix: format!("{name}/"),
        }
    }

    /// Appends `value`; returns the revision that orders it.
    pub async fn enqueue(&mut self, value: &str) -> Result<i64, Error> {
        loop {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            let key = format!("{}{nanos:020}", self.prefix);
            let txn = Txn::new()
                .when([Compare::version(key.as_str(), CompareOp::Equal, 0)])
                .and_then([TxnOp::put(key.as_str(), value, None)]);
            let resp = self.client.txn(txn).await?;
            if resp.succeeded() {
                return Ok(resp.header().map_or(0, |h| h.revision()));
            }
            // Another producer took this very nanosecond: pick a new key.
        }
    }

    /// Removes and returns the oldest item, waiting for one if the queue is empty.
    pub async fn dequeue(&mut self) -> Result<String, Error> {
        loop {
            let head = self
                .client
                .get(
                    self.prefix.as_str(),
                    Some(
                        GetOptions::new()
                            .with_prefix()
                            .with_sort(SortTarget::Create, SortOrder::Ascend)
                            .with_limit(1),
                    ),
                )
                .await?;
            if let Some(kv) = head.kvs().first() {
                if self.claim(kv.key(), kv.mod_revision()).await? {
                    return Ok(kv.value_str()?.to_owned());
                }
                continue; // Another consumer took it: look at the new head.
            }
            // Empty: wait for the next item put after this read.
            let from = head.header().map_or(0, |h| h.revision()) + 1;
            let mut watch = self
                .client
                .watch(
                    self.prefix.as_str(),
                    Some(WatchOptions::new().with_prefix().with_start_revision(from)),
                )
                .await?;
            'wait: while let Some(resp) = watch.message().await? {
                for event in resp.events() {
                    if event.event_type() != EventType::Put {
                        continue;
                    }
                    let Some(kv) = event.kv() else { continue };
                    if self.claim(kv.key(), kv.mod_revision()).await? {
                        return Ok(kv.value_str()?.to_owned());
                    }
                    // Taken by another consumer: read the head again.
                    break 'wait;
                }
            }
        }
    }

    /// Deletes `key` if it is still the version written at `mod_revision`.
    async fn claim(&mut self, key: &[u8], mod_revision: i64) -> Result<bool, Error> {
        let txn = Txn::new()
            .when([Compare::mod_revision(key, CompareOp::Equal, mod_revision)])
            .and_then([TxnOp::delete(key, None)]);
        Ok(self.client.txn(txn).await?.succeeded())
    }
}

#[allow(dead_code)] // The e2e tests include this file for `Queue` alone.
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let endpoint = args
        .first()
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:2379".into());
    let number = |i: usize, default: usize| -> usize {
        args.get(i).and_then(|s| s.parse().ok()).unwrap_or(default)
    };
    let (producers, consumers, items) = (number(1, 3), number(2, 2), number(3, 20));
    let name = format!(
        "queue-demo-{}",
        SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis()
    );

    let mut tasks = Vec::new();
    for p in 0..producers {
        let client = Client::connect([endpoint.clone()], None).await?;
        let mut queue = Queue::new(client, &name);
        tasks.push(tokio::spawn(async move {
            for i in 0..items {
                queue.enqueue(&format!("{p}:{i}")).await?;
            }
            Ok::<_, Error>(Vec::new())
        }));
    }
    let total = producers * items;
    let taken = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for _ in 0..consumers {
        let client = Client::connect([endpoint.clone()], None).await?;
        let mut queue = Queue::new(client, &name);
        let taken = taken.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            while taken.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < total {
                got.push(queue.dequeue().await?);
            }
            Ok::<_, Error>(got)
        }));
    }
    let mut seen = Vec::new();
    for (i, task) in tasks.into_iter().enumerate() {
        let got = task.await??;
        if i >= producers {
            println!("consumer {} took {} items", i - producers, got.len());
            // One consumer sees each producer's items in the order they were queued.
            for p in 0..producers {
                let mine: Vec<usize> = got
                    .iter()
                    .filter_map(|v| v.split_once(':'))
                    .filter(|(from, _)| from.parse() == Ok(p))
                    .filter_map(|(_, n)| n.parse().ok())
                    .collect();
                assert!(
                    mine.windows(2).all(|w| w[0] < w[1]),
                    "out of order: {mine:?}"
                );
            }
            seen.extend(got);
        }
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), total, "every item exactly once");
    println!("{total} items through queue {name}: each once, in order");
    Ok(())
}
