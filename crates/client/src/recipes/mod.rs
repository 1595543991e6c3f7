//! Concurrency recipes over KV, watch and leases, compatible with etcd's Go `concurrency`
//! package: the same keys and the same protocol, so a Rust [`Mutex`] excludes a Go one
//! (or `etcdctl lock`) on the same name.
//!
//! - [`Session`]: a lease kept alive for as long as the session lives; what a process
//!   holds (a lock, a candidacy) is attached to it and vanishes when the process dies.
//! - [`Mutex`]: each contender puts `name/<lease id in hex>`; the lowest create revision
//!   holds the lock; the others wait for the key just before theirs to be deleted.
//! - [`Election`]: the same queue, where the holder's value is the leader's proclamation;
//!   campaign, proclaim, resign, leader and observe.
//! - [`Stm`]: software transactional memory: run a closure over reads and writes, commit
//!   them in one txn guarded by the revisions read, retry from scratch on conflict.

mod election;
mod mutex;
mod session;
mod stm;

pub use election::Election;
pub use mutex::Mutex;
pub use session::Session;
pub use stm::{Isolation, Stm};

use oxcd_api::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use oxcd_api::etcdserverpb::range_request::{SortOrder, SortTarget};
use oxcd_api::etcdserverpb::watch_create_request::FilterType;
use oxcd_api::etcdserverpb::{Compare, RangeRequest, ResponseHeader, WatchCreateRequest};
use oxcd_api::mvccpb::event::EventType;

use crate::error::{Error, Result};
use crate::services::prefix_end;
use crate::Client;

/// `create_revision(key) == revision`.
pub(crate) fn create_revision_is(key: &[u8], revision: i64) -> Compare {
    Compare {
        result: CompareResult::Equal as i32,
        target: CompareTarget::Create as i32,
        key: key.to_vec(),
        target_union: Some(TargetUnion::CreateRevision(revision)),
        range_end: Vec::new(),
    }
}

/// The key under `prefix` created first (`first`) or last, with create revision at most
/// `max_create_revision` (0: any).
pub(crate) fn edge_of_prefix(prefix: &[u8], first: bool, max_create_revision: i64) -> RangeRequest {
    let order = if first {
        SortOrder::Ascend
    } else {
        SortOrder::Descend
    };
    RangeRequest {
        key: prefix.to_vec(),
        range_end: prefix_end(prefix),
        limit: 1,
        sort_order: order as i32,
        sort_target: SortTarget::Create as i32,
        max_create_revision,
        ..Default::default()
    }
}

/// Waits until every key under `prefix` created at or before `max_create_revision` is
/// deleted, the last one first; answers the header of the read that found none.
pub(crate) async fn wait_deletes(
    client: &Client,
    prefix: &[u8],
    max_create_revision: i64,
) -> Result<ResponseHeader> {
    loop {
        let response = client
            .kv()
            .range(edge_of_prefix(prefix, false, max_create_revision))
            .await?;
        let header = response.header.unwrap_or_default();
        let Some(last) = response.kvs.into_iter().next() else {
            return Ok(header);
        };
        wait_delete(client, &last.key, header.revision).await?;
    }
}

/// Waits for `key` to be deleted after `revision`.
async fn wait_delete(client: &Client, key: &[u8], revision: i64) -> Result<()> {
    let mut watch = client
        .watch()
        .watch(WatchCreateRequest {
            key: key.to_vec(),
            start_revision: revision + 1,
            filters: vec![FilterType::Noput as i32],
            ..Default::default()
        })
        .await?;
    while let Some(response) = watch.message().await {
        let response = response?;
        if response
            .events
            .iter()
            .any(|e| e.r#type == EventType::Delete as i32)
        {
            return Ok(());
        }
    }
    Err(Error::WatchCanceled(
        "watch ended before the key was deleted".into(),
    ))
}
