//! Software transactional memory, as etcd's `concurrency.NewSTM`.

use std::collections::BTreeMap;
use std::future::Future;

use oxcd_api::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use oxcd_api::etcdserverpb::request_op::Request;
use oxcd_api::etcdserverpb::{
    Compare, DeleteRangeRequest, PutRequest, RangeRequest, TxnRequest, TxnResponse,
};

use super::mutex::op;
use crate::error::Result;
use crate::Client;

/// How reads of one attempt relate to each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isolation {
    /// Every read of an attempt sees the store at the revision of its first read, and the
    /// commit fails if any key read changed since: serializable.
    SerializableSnapshot,
    /// Each key is read once per attempt; the commit fails if any key read changed.
    RepeatableReads,
}

/// One attempt's reads (key → mod revision and value) and buffered writes.
#[derive(Debug)]
pub struct Stm {
    client: Client,
    isolation: Isolation,
    /// Read revision of the attempt (serializable snapshot), fixed by the first read.
    revision: i64,
    reads: BTreeMap<Vec<u8>, (i64, Option<Vec<u8>>)>,
    /// `None` is a delete.
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl Stm {
    /// Runs `apply` until its reads and writes commit atomically; returns the commit's
    /// answer. `apply` may run several times: it must have no other effect.
    ///
    /// ```no_run
    /// # async fn example(client: oxcd_client::Client) -> oxcd_client::Result<()> {
    /// use oxcd_client::recipes::{Isolation, Stm};
    ///
    /// // Move 10 from account a to account b, whatever else runs at the same time.
    /// Stm::run(&client, Isolation::SerializableSnapshot, |mut stm| async move {
    ///     let a: i64 = stm.get("a").await?.map_or(0, |v| String::from_utf8_lossy(&v).parse().unwrap_or(0));
    ///     let b: i64 = stm.get("b").await?.map_or(0, |v| String::from_utf8_lossy(&v).parse().unwrap_or(0));
    ///     stm.put("a", (a - 10).to_string());
    ///     stm.put("b", (b + 10).to_string());
    ///     Ok(stm)
    /// })
    /// .await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn run<F, Fut>(
        client: &Client,
        isolation: Isolation,
        mut apply: F,
    ) -> Result<TxnResponse>
    where
        F: FnMut(Stm) -> Fut,
        Fut: Future<Output = Result<Stm>>,
    {
        loop {
            let attempt = Stm {
                client: client.clone(),
                isolation,
                revision: 0,
                reads: BTreeMap::new(),
                writes: BTreeMap::new(),
            };
            let attempt = apply(attempt).await?;
            let response = attempt.client.kv().txn(attempt.commit_request()).await?;
            if response.succeeded {
                return Ok(response);
            }
        }
    }

    /// The value of `key` as this attempt sees it (its own writes included).
    pub async fn get(&mut self, key: impl Into<Vec<u8>>) -> Result<Option<Vec<u8>>> {
        let key = key.into();
        if let Some(written) = self.writes.get(&key) {
            return Ok(written.clone());
        }
        if let Some((_, value)) = self.reads.get(&key) {
            return Ok(value.clone());
        }
        let revision = match self.isolation {
            Isolation::SerializableSnapshot => self.revision,
            Isolation::RepeatableReads => 0,
        };
        let response = self
            .client
            .kv()
            .range(RangeRequest {
                key: key.clone(),
                revision,
                serializable: self.isolation == Isolation::SerializableSnapshot && revision > 0,
                ..Default::default()
            })
            .await?;
        if self.revision == 0 {
            self.revision = response.header.as_ref().map_or(0, |h| h.revision);
        }
        let kv = response.kvs.into_iter().next();
        let entry = match kv {
            Some(kv) => (kv.mod_revision, Some(kv.value)),
            None => (0, None),
        };
        self.reads.insert(key, entry.clone());
        Ok(entry.1)
    }

    /// Buffers a write of `value` at `key`, committed with the attempt.
    pub fn put(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.writes.insert(key.into(), Some(value.into()));
    }

    /// Buffers a delete of `key`.
    pub fn delete(&mut self, key: impl Into<Vec<u8>>) {
        self.writes.insert(key.into(), None);
    }

    /// The txn that commits the writes if no key read has changed.
    fn commit_request(&self) -> TxnRequest {
        let compare = self
            .reads
            .iter()
            .map(|(key, (mod_revision, _))| Compare {
                result: CompareResult::Equal as i32,
                target: CompareTarget::Mod as i32,
                key: key.clone(),
                target_union: Some(TargetUnion::ModRevision(*mod_revision)),
                range_end: Vec::new(),
            })
            .collect();
        let success = self
            .writes
            .iter()
            .map(|(key, value)| match value {
                Some(value) => op(Request::RequestPut(PutRequest {
                    key: key.clone(),
                    value: value.clone(),
                    ..Default::default()
                })),
                None => op(Request::RequestDeleteRange(DeleteRangeRequest {
                    key: key.clone(),
                    ..Default::default()
                })),
            })
            .collect();
        TxnRequest {
            compare,
            success,
            failure: Vec::new(),
        }
    }
}
