//! `make-mirror`: copies a prefix (or every key) of the source cluster to a destination
//! cluster, then follows the source's changes, as etcdctl 3.4 with clientv3's mirror
//! syncer: the base state page by page at one revision, then a watch from the next
//! revision, each source revision replayed as one destination txn. The count of keys
//! mirrored so far is printed every 30 seconds. It runs until killed or a request fails.
//!
//! A destination that cannot be reached is waited for, as etcdctl's client waits for its
//! connection to be ready: the writes go on once the destination is back. Each write
//! (a put of the base state, or the txn of one source revision) is idempotent, so one that
//! failed on a broken connection is sent again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use oxcd_api::etcdserverpb::request_op::Request;
use oxcd_api::etcdserverpb::{
    DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest, WatchCreateRequest,
};
use oxcd_api::mvccpb::event::EventType;
use oxcd_client::{prefix_end, Client, ConnectOptions, TlsOptions};

use crate::cli::MakeMirrorArgs;
use crate::context::Ctx;
use crate::exit::{code, CmdResult, Exit};

/// Keys read from the source per range request (clientv3 mirror's batch).
const BATCH: i64 = 1000;
/// How often the running count is printed.
const REPORT_EVERY: Duration = Duration::from_secs(30);
/// The first and the longest pause between two tries of a destination write.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);
/// etcd's error for a watch that starts below the compacted revision.
const COMPACTED: &str = "etcdserver: mvcc: required revision has been compacted";

pub async fn make_mirror(ctx: &Ctx, a: MakeMirrorArgs) -> CmdResult {
    let [destination] = a.args.as_slice() else {
        return Err(Exit::new(
            code::BAD_ARGS,
            "make-mirror takes one destination argument",
        ));
    };
    let dest = connect_destination(ctx, destination, &a).await?;
    let source = ctx.client().await?;

    let total = Arc::new(AtomicU64::new(0));
    let reporter = {
        let total = total.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(REPORT_EVERY).await;
                println!("{}", total.load(Ordering::Relaxed));
            }
        })
    };
    let result = mirror(&source, &dest, &a, &total).await;
    reporter.abort();
    result
}

/// The destination's client: `--dest-*` TLS settings, the global timeouts, no user.
async fn connect_destination(
    ctx: &Ctx,
    destination: &str,
    a: &MakeMirrorArgs,
) -> Result<Client, Exit> {
    let f = &ctx.flags;
    let mut options = ConnectOptions::new()
        .with_dial_timeout(f.dial_timeout)
        .with_retry_timeout(f.command_timeout)
        .with_keep_alive(f.keepalive_time, f.keepalive_timeout);
    let files = [&a.dest_cacert, &a.dest_cert, &a.dest_key];
    if files.iter().any(|s| !s.is_empty()) || !a.dest_insecure_transport {
        let tls = TlsOptions::from_files(
            given(&a.dest_cacert),
            given(&a.dest_cert),
            given(&a.dest_key),
        )
        .map_err(|e| Exit::new(code::BAD_ARGS, e.to_string()))?;
        options = options.with_tls(tls);
    }
    ctx.connect(&[destination.to_owned()], options).await
}

/// A file flag's value, unless it was left empty.
fn given(flag: &str) -> Option<&str> {
    Some(flag).filter(|f| !f.is_empty())
}

async fn mirror(
    source: &Client,
    dest: &Client,
    a: &MakeMirrorArgs,
    total: &AtomicU64,
) -> CmdResult {
    let failed = |e: oxcd_client::Error| Exit::request(code::ERROR, &e);
    let prefix = a.prefix.as_bytes();
    // The base state is read at the revision of this first answer.
    let first = source
        .kv()
        .range(RangeRequest {
            key: b"foo".to_vec(),
            ..Default::default()
        })
        .await
        .map_err(failed)?;
    let revision = first.header.map_or(0, |h| h.revision);
    if a.no_dest_prefix && !a.dest_prefix.is_empty() {
        return Err(Exit::new(
            code::BAD_ARGS,
            "`--dest-prefix` and `--no-dest-prefix` cannot be set at the same time, choose one",
        ));
    }
    let dest_prefix = if a.no_dest_prefix || !a.dest_prefix.is_empty() {
        a.dest_prefix.as_bytes()
    } else {
        prefix
    };
    let rename = |key: &[u8]| replace_first(key, prefix, dest_prefix);

    let (mut key, range_end) = if prefix.is_empty() {
        (vec![0], vec![0])
    } else {
        (prefix.to_vec(), prefix_end(prefix))
    };
    loop {
        let page = source
            .kv()
            .range(RangeRequest {
                key: key.clone(),
                range_end: range_end.clone(),
                limit: BATCH,
                revision,
                ..Default::default()
            })
            .await
            .map_err(failed)?;
        for kv in &page.kvs {
            let put = PutRequest {
                key: rename(&kv.key),
                value: kv.value.clone(),
                ..Default::default()
            };
            until_reachable(|| async { dest.kv().put(put.clone()).await })
                .await
                .map_err(failed)?;
            total.fetch_add(1, Ordering::Relaxed);
        }
        match page.kvs.last() {
            Some(last) if page.more => {
                key = last.key.clone();
                key.push(0);
            }
            _ => break,
        }
    }

    let (key, range_end) = if prefix.is_empty() {
        (vec![0], vec![0])
    } else {
        (prefix.to_vec(), prefix_end(prefix))
    };
    let mut updates = source
        .watch()
        .watch(WatchCreateRequest {
            key,
            range_end,
            start_revision: revision + 1,
            ..Default::default()
        })
        .await
        .map_err(failed)?;
    while let Some(response) = updates.next().await {
        let response = response.map_err(failed)?;
        if response.compact_revision != 0 {
            return Err(Exit::new(code::ERROR, COMPACTED));
        }
        // One destination txn per source revision.
        let mut ops = Vec::new();
        let mut last_revision = 0;
        for event in response.events {
            let Some(kv) = event.kv else { continue };
            if last_revision != 0 && kv.mod_revision > last_revision {
                commit(dest, std::mem::take(&mut ops)).await?;
            }
            last_revision = kv.mod_revision;
            let request = if event.r#type == EventType::Delete as i32 {
                Request::RequestDeleteRange(DeleteRangeRequest {
                    key: rename(&kv.key),
                    ..Default::default()
                })
            } else {
                Request::RequestPut(PutRequest {
                    key: rename(&kv.key),
                    value: kv.value,
                    ..Default::default()
                })
            };
            ops.push(RequestOp {
                request: Some(request),
            });
            total.fetch_add(1, Ordering::Relaxed);
        }
        if !ops.is_empty() {
            commit(dest, ops).await?;
        }
    }
    // The watch ended without an error: etcdctl reports that nil error as it is.
    Err(Exit::new(code::ERROR, "<nil>"))
}

async fn commit(dest: &Client, ops: Vec<RequestOp>) -> CmdResult {
    let txn = TxnRequest {
        success: ops,
        ..Default::default()
    };
    until_reachable(|| async { dest.kv().txn(txn.clone()).await })
        .await
        .map(drop)
        .map_err(|e| Exit::request(code::ERROR, &e))
}

/// Runs a destination write until it gets an answer: while the destination is unreachable
/// (`Unavailable`) it is tried again, after pauses that grow to [`RETRY_MAX`].
async fn until_reachable<T, F>(mut write: impl FnMut() -> F) -> Result<T, oxcd_client::Error>
where
    F: std::future::Future<Output = Result<T, oxcd_client::Error>>,
{
    let mut pause = RETRY_FIRST;
    loop {
        match write().await {
            Err(e) if e.code() == Some(tonic::Code::Unavailable) => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(RETRY_MAX);
            }
            answer => return answer,
        }
    }
}

/// `key` with its first `from` replaced by `to` (Go's `strings.Replace(key, from, to, 1)`:
/// an empty `from` puts `to` in front).
fn replace_first(key: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let at = if from.is_empty() {
        Some(0)
    } else {
        key.windows(from.len()).position(|w| w == from)
    };
    match at {
        Some(at) => [&key[..at], to, &key[at + from.len()..]].concat(),
        None => key.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::replace_first;

    #[test]
    fn replaces_the_first_prefix_only() {
        assert_eq!(replace_first(b"o_key_o_", b"o_", b"d_"), b"d_key_o_");
        assert_eq!(replace_first(b"key", b"o_", b"d_"), b"key");
        assert_eq!(replace_first(b"key", b"", b"d_"), b"d_key");
        assert_eq!(replace_first(b"o_key", b"o_", b""), b"key");
    }
}
