//! Put, DeleteRange and Txn as etcd applies them, inside one MVCC write txn, so that all the
//! operations of a request share one main revision.

use oxcd_api::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use oxcd_api::etcdserverpb::request_op::Request;
use oxcd_api::etcdserverpb::response_op::Response;
use oxcd_api::etcdserverpb::{
    Compare, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse, RangeRequest,
    RangeResponse, ResponseHeader, ResponseOp, TxnRequest, TxnResponse,
};
use oxcd_api::mvccpb::KeyValue;
use oxcd_api::EtcdError;
use oxcd_storage::{MvccError, RangeOptions, RangeResult, Txn};

use super::range::{encoded_size, range, range_capped, RangeSource};
use crate::error::ServerError;

/// Tells whether a lease exists; apply refuses puts that name an unknown lease.
pub type LeaseExists<'a> = &'a dyn Fn(i64) -> bool;

/// What apply knows beyond the txn itself.
pub struct WriteContext<'a> {
    pub lease_exists: LeaseExists<'a>,
    /// The compaction revision when the txn started.
    pub compact_revision: i64,
}

fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        revision,
        ..Default::default()
    })
}

/// The revision a read in `txn` sees now: the txn's own revision once it wrote something.
fn current_rev(txn: &Txn<'_>) -> i64 {
    txn.read_revision()
}

fn get_one(txn: &mut Txn<'_>, key: &[u8]) -> Result<Option<KeyValue>, ServerError> {
    let mut rr = txn.range(key, &[], RangeOptions::default())?;
    Ok(if rr.kvs.is_empty() {
        None
    } else {
        Some(rr.kvs.swap_remove(0))
    })
}

pub fn put(
    txn: &mut Txn<'_>,
    req: &PutRequest,
    lease_exists: LeaseExists<'_>,
) -> Result<PutResponse, ServerError> {
    let needs_prev = req.prev_kv || req.ignore_value || req.ignore_lease;
    let prev = if needs_prev {
        get_one(txn, &req.key)?
    } else {
        None
    };
    let mut value = req.value.as_slice();
    let mut lease = req.lease;
    if req.ignore_value || req.ignore_lease {
        let Some(prev) = prev.as_ref() else {
            return Err(EtcdError::KeyNotFound.into());
        };
        if req.ignore_value {
            value = &prev.value;
        }
        if req.ignore_lease {
            lease = prev.lease;
        }
    }
    if !req.ignore_lease && lease != 0 && !lease_exists(lease) {
        return Err(EtcdError::LeaseNotFound.into());
    }
    let value = value.to_vec();
    txn.put(&req.key, &value, lease)?;
    Ok(PutResponse {
        header: header(current_rev(txn)),
        prev_kv: if req.prev_kv { prev } else { None },
    })
}

pub fn delete_range(
    txn: &mut Txn<'_>,
    req: &DeleteRangeRequest,
) -> Result<DeleteRangeResponse, ServerError> {
    let deleted = txn.delete_range(&req.key, &req.range_end)?;
    Ok(DeleteRangeResponse {
        header: header(current_rev(txn)),
        deleted: deleted.len() as i64,
        prev_kvs: if req.prev_kv { deleted } else { Vec::new() },
    })
}

/// Whether a txn only reads, in every branch at every depth: then it needs no Raft round.
pub fn is_read_only(req: &TxnRequest) -> bool {
    req.success
        .iter()
        .chain(&req.failure)
        .all(|op| match &op.request {
            Some(Request::RequestRange(_)) | None => true,
            Some(Request::RequestTxn(inner)) => is_read_only(inner),
            Some(Request::RequestPut(_)) | Some(Request::RequestDeleteRange(_)) => false,
        })
}

/// Evaluates every compare of the txn tree against the state before any of its operations
/// runs, as etcd does: the branch taken at each level, in depth-first order.
fn compare_path(
    source: &mut impl RangeSource,
    req: &TxnRequest,
    path: &mut Vec<bool>,
) -> Result<(), ServerError> {
    let mut succeeded = true;
    for c in &req.compare {
        if !compare(source, c)? {
            succeeded = false;
            break;
        }
    }
    path.push(succeeded);
    let ops = if succeeded {
        &req.success
    } else {
        &req.failure
    };
    for op in ops {
        if let Some(Request::RequestTxn(inner)) = &op.request {
            compare_path(source, inner, path)?;
        }
    }
    Ok(())
}

fn compare(source: &mut impl RangeSource, c: &Compare) -> Result<bool, ServerError> {
    let rr = source.range(&c.key, &c.range_end, RangeOptions::default())?;
    let target = CompareTarget::try_from(c.target).unwrap_or(CompareTarget::Version);
    if rr.kvs.is_empty() {
        // A missing key has no value to compare, but version, revisions and lease are 0.
        if target == CompareTarget::Value {
            return Ok(false);
        }
        return Ok(compare_kv(c, target, &KeyValue::default()));
    }
    Ok(rr.kvs.iter().all(|kv| compare_kv(c, target, kv)))
}

fn compare_kv(c: &Compare, target: CompareTarget, kv: &KeyValue) -> bool {
    use std::cmp::Ordering;
    let ordering: Ordering = match (target, &c.target_union) {
        (CompareTarget::Value, Some(TargetUnion::Value(v))) => {
            kv.value.as_slice().cmp(v.as_slice())
        }
        (CompareTarget::Value, _) => kv.value.as_slice().cmp(&[]),
        (CompareTarget::Create, u) => kv.create_revision.cmp(&int_target(u, |u| match u {
            TargetUnion::CreateRevision(r) => Some(*r),
            _ => None,
        })),
        (CompareTarget::Mod, u) => kv.mod_revision.cmp(&int_target(u, |u| match u {
            TargetUnion::ModRevision(r) => Some(*r),
            _ => None,
        })),
        (CompareTarget::Version, u) => kv.version.cmp(&int_target(u, |u| match u {
            TargetUnion::Version(r) => Some(*r),
            _ => None,
        })),
        (CompareTarget::Lease, u) => kv.lease.cmp(&int_target(u, |u| match u {
            TargetUnion::Lease(r) => Some(*r),
            _ => None,
        })),
    };
    match CompareResult::try_from(c.result).unwrap_or(CompareResult::Equal) {
        CompareResult::Equal => ordering == Ordering::Equal,
        CompareResult::NotEqual => ordering != Ordering::Equal,
        CompareResult::Greater => ordering == Ordering::Greater,
        CompareResult::Less => ordering == Ordering::Less,
    }
}

/// The compare's integer operand; a missing or mismatched operand counts as 0, as in etcd.
fn int_target(u: &Option<TargetUnion>, pick: impl Fn(&TargetUnion) -> Option<i64>) -> i64 {
    u.as_ref().and_then(pick).unwrap_or(0)
}

/// Checks, before anything is written, what etcd checks at apply time on the branches the
/// compares chose: range revisions are servable, and puts that keep the value or lease of
/// an existing key find that key.
fn check_branches(
    txn: &mut Txn<'_>,
    req: &TxnRequest,
    path: &[bool],
    at: &mut usize,
    ctx: &WriteContext<'_>,
) -> Result<(), ServerError> {
    let succeeded = path[*at];
    *at += 1;
    let ops = if succeeded {
        &req.success
    } else {
        &req.failure
    };
    for op in ops {
        match &op.request {
            Some(Request::RequestRange(r)) => {
                if r.revision > txn.read_revision() {
                    return Err(EtcdError::FutureRev.into());
                }
                if r.revision != 0 && r.revision < ctx.compact_revision {
                    return Err(EtcdError::Compacted.into());
                }
            }
            Some(Request::RequestPut(p)) => {
                if (p.ignore_value || p.ignore_lease) && get_one(txn, &p.key)?.is_none() {
                    return Err(EtcdError::KeyNotFound.into());
                }
                if !p.ignore_lease && p.lease != 0 && !(ctx.lease_exists)(p.lease) {
                    return Err(EtcdError::LeaseNotFound.into());
                }
            }
            Some(Request::RequestTxn(inner)) => check_branches(txn, inner, path, at, ctx)?,
            Some(Request::RequestDeleteRange(_)) | None => {}
        }
    }
    Ok(())
}

/// Applies a txn (reads included) inside `txn`.
pub fn apply_txn(
    txn: &mut Txn<'_>,
    req: &TxnRequest,
    ctx: &WriteContext<'_>,
) -> Result<TxnResponse, ServerError> {
    let mut path = Vec::new();
    compare_path(txn, req, &mut path)?;
    txn.end_read_phase();
    check_branches(txn, req, &path, &mut 0, ctx)?;
    let mut resp = run_branch(txn, req, &path, &mut 0, ctx.lease_exists)?;
    resp.header = header(current_rev(txn));
    Ok(resp)
}

fn run_branch(
    txn: &mut Txn<'_>,
    req: &TxnRequest,
    path: &[bool],
    at: &mut usize,
    lease_exists: LeaseExists<'_>,
) -> Result<TxnResponse, ServerError> {
    let succeeded = path[*at];
    *at += 1;
    let ops = if succeeded {
        &req.success
    } else {
        &req.failure
    };
    let mut responses = Vec::with_capacity(ops.len());
    for op in ops {
        let response = match &op.request {
            Some(Request::RequestRange(r)) => Response::ResponseRange(range(txn, r)?),
            Some(Request::RequestPut(p)) => Response::ResponsePut(put(txn, p, lease_exists)?),
            Some(Request::RequestDeleteRange(d)) => {
                Response::ResponseDeleteRange(delete_range(txn, d)?)
            }
            Some(Request::RequestTxn(inner)) => {
                let mut inner_resp = run_branch(txn, inner, path, at, lease_exists)?;
                inner_resp.header = header(current_rev(txn));
                Response::ResponseTxn(inner_resp)
            }
            None => continue,
        };
        responses.push(ResponseOp {
            response: Some(response),
        });
    }
    Ok(TxnResponse {
        header: None,
        succeeded,
        responses,
    })
}

/// Runs a read-only txn against a read view (no Raft round, no revision). Its ranges together
/// may read at most `max_bytes` of keys and values (`--max-send-bytes`), as a plain Range.
pub fn read_txn(
    source: &mut impl RangeSource,
    req: &TxnRequest,
    max_bytes: usize,
) -> Result<TxnResponse, ServerError> {
    let mut counted = CountRanges { source, ranges: 0 };
    let mut path = Vec::new();
    compare_path(&mut counted, req, &mut path)?;
    let mut budget = Budget { used: 0, max_bytes };
    let resp = read_branch(&mut counted, req, &path, &mut 0, &mut budget);
    oxcd_storage::stats::end_read_txn(counted.ranges);
    resp
}

/// Counts the ranges of a read-only txn, which reach the store one by one, so the metrics
/// count the txn as etcd does (one transaction of several ranges).
struct CountRanges<'a, S> {
    source: &'a mut S,
    ranges: u64,
}

impl<S: RangeSource> RangeSource for CountRanges<'_, S> {
    fn range(
        &mut self,
        key: &[u8],
        range_end: &[u8],
        opts: RangeOptions,
    ) -> Result<RangeResult, MvccError> {
        self.ranges += 1;
        self.source.range(key, range_end, opts)
    }
}

/// The bytes of keys and values a read-only txn's ranges have read so far, and the cap.
struct Budget {
    used: usize,
    max_bytes: usize,
}

impl Budget {
    fn range(
        &mut self,
        source: &mut impl RangeSource,
        r: &RangeRequest,
    ) -> Result<RangeResponse, ServerError> {
        let left = self.max_bytes - self.used;
        let rr = range_capped(source, r, Some(left)).map_err(|e| match e {
            // Told as the whole answer against the cap, as grpc-go does.
            MvccError::TooLarge { size, .. } => ServerError::ResponseTooLarge {
                size: self.used + size,
                max: self.max_bytes,
            },
            other => other.into(),
        })?;
        self.used += rr.kvs.iter().map(encoded_size).sum::<usize>();
        Ok(rr)
    }
}

fn read_branch(
    source: &mut impl RangeSource,
    req: &TxnRequest,
    path: &[bool],
    at: &mut usize,
    budget: &mut Budget,
) -> Result<TxnResponse, ServerError> {
    let succeeded = path[*at];
    *at += 1;
    let ops = if succeeded {
        &req.success
    } else {
        &req.failure
    };
    let mut responses = Vec::with_capacity(ops.len());
    let mut revision = 0;
    for op in ops {
        let response = match &op.request {
            Some(Request::RequestRange(r)) => {
                let rr = budget.range(source, r)?;
                revision = revision.max(rr.header.as_ref().map_or(0, |h| h.revision));
                Response::ResponseRange(rr)
            }
            Some(Request::RequestTxn(inner)) => {
                Response::ResponseTxn(read_branch(source, inner, path, at, budget)?)
            }
            _ => continue,
        };
        responses.push(ResponseOp {
            response: Some(response),
        });
    }
    Ok(TxnResponse {
        header: None,
        succeeded,
        responses,
    })
}
