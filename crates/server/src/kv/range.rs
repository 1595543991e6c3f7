//! Range by etcd's rules, shared by the read path (`KvStore`) and by ranges inside a write
//! txn (`Txn`): fetch, filter by mod/create revision, sort, apply the limit, report `more`.

use std::cmp::Ordering;

use oxcd_api::etcdserverpb::range_request::{SortOrder, SortTarget};
use oxcd_api::etcdserverpb::{RangeRequest, RangeResponse, ResponseHeader};
use oxcd_api::mvccpb::KeyValue;
use oxcd_storage::{EncodedRange, KvStore, MvccError, RangeOptions, RangeResult, Txn};

/// Anything that can answer a raw MVCC range.
pub trait RangeSource {
    fn range(
        &mut self,
        key: &[u8],
        range_end: &[u8],
        opts: RangeOptions,
    ) -> Result<RangeResult, MvccError>;
}

impl RangeSource for &KvStore {
    fn range(
        &mut self,
        key: &[u8],
        range_end: &[u8],
        opts: RangeOptions,
    ) -> Result<RangeResult, MvccError> {
        KvStore::range(self, key, range_end, opts)
    }
}

impl RangeSource for Txn<'_> {
    fn range(
        &mut self,
        key: &[u8],
        range_end: &[u8],
        opts: RangeOptions,
    ) -> Result<RangeResult, MvccError> {
        Txn::range(self, key, range_end, opts)
    }
}

/// A Range answer in wire form: `kvs` is `RangeResponse.kvs` as the response carries it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WireRange {
    pub header: ResponseHeader,
    pub kvs: Vec<u8>,
    pub more: bool,
    pub count: i64,
}

/// [`range_capped`] on the store, answered in wire form. A range in key order without
/// revision filters (nearly all of them) is read straight into that form, so its answer is
/// held once; the others are answered decoded, then encoded.
pub fn range_wire(
    kv: &KvStore,
    req: &RangeRequest,
    max_bytes: Option<usize>,
) -> Result<WireRange, MvccError> {
    let sort_order = SortOrder::try_from(req.sort_order).unwrap_or(SortOrder::None);
    let sort_target = SortTarget::try_from(req.sort_target).unwrap_or(SortTarget::Key);
    let in_key_order = sort_target == SortTarget::Key && sort_order != SortOrder::Descend;
    let filters = req.min_mod_revision != 0
        || req.max_mod_revision != 0
        || req.min_create_revision != 0
        || req.max_create_revision != 0;
    if !in_key_order || filters {
        let resp = range_capped(&mut &*kv, req, max_bytes)?;
        let mut kvs = Vec::new();
        for item in &resp.kvs {
            prost::encoding::message::encode(2, item, &mut kvs);
        }
        return Ok(WireRange {
            header: resp.header.unwrap_or_default(),
            kvs,
            more: resp.more,
            count: resp.count,
        });
    }
    let opts = RangeOptions {
        rev: req.revision,
        limit: req.limit.max(0),
        count_only: req.count_only,
        keys_only: req.keys_only,
        max_bytes,
    };
    let EncodedRange { kvs, count, rev } = kv.range_encoded(&req.key, &req.range_end, opts)?;
    Ok(WireRange {
        header: ResponseHeader {
            revision: rev,
            ..Default::default()
        },
        kvs,
        // Without filters `count` is every key in the range, so it tells whether the limit
        // left some out; a count-only answer has no keys to leave out.
        more: !req.count_only && req.limit > 0 && count > req.limit,
        count,
    })
}

/// The bytes a key-value takes in a response's `kvs` (its tag, its length and itself): what
/// the `--max-send-bytes` cap counts.
pub fn encoded_size(kv: &KeyValue) -> usize {
    prost::encoding::message::encoded_len(2, kv)
}

/// Answers `req` from `source`. The header carries only the revision; the caller fills the
/// member-wide fields.
pub fn range(
    source: &mut impl RangeSource,
    req: &RangeRequest,
) -> Result<RangeResponse, MvccError> {
    range_capped(source, req, None)
}

/// [`range`], failing with [`MvccError::TooLarge`] rather than reading keys and values of
/// more than `max_bytes` (before the revision filters and the limit; see `--max-send-bytes`).
pub fn range_capped(
    source: &mut impl RangeSource,
    req: &RangeRequest,
    max_bytes: Option<usize>,
) -> Result<RangeResponse, MvccError> {
    let sort_order = SortOrder::try_from(req.sort_order).unwrap_or(SortOrder::None);
    let sort_target = SortTarget::try_from(req.sort_target).unwrap_or(SortTarget::Key);
    let filters = req.min_mod_revision != 0
        || req.max_mod_revision != 0
        || req.min_create_revision != 0
        || req.max_create_revision != 0;

    // Sorting or filtering needs every key; otherwise fetch one more than the limit so
    // `more` can be told without counting twice.
    let limit = if sort_order != SortOrder::None || filters || req.limit <= 0 {
        0
    } else {
        req.limit + 1
    };
    let opts = RangeOptions {
        rev: req.revision,
        limit,
        count_only: req.count_only,
        // Sorting by value needs the values even when they are not returned: etcd reads
        // them, sorts, and drops them afterwards.
        keys_only: req.keys_only && sort_target != SortTarget::Value,
        max_bytes,
    };
    let RangeResult {
        mut kvs,
        count,
        rev,
    } = source.range(&req.key, &req.range_end, opts)?;

    if filters {
        kvs.retain(|kv| {
            (req.min_mod_revision == 0 || kv.mod_revision >= req.min_mod_revision)
                && (req.max_mod_revision == 0 || kv.mod_revision <= req.max_mod_revision)
                && (req.min_create_revision == 0 || kv.create_revision >= req.min_create_revision)
                && (req.max_create_revision == 0 || kv.create_revision <= req.max_create_revision)
        });
    }

    // A sort target without an order means ascending, as etcd does.
    let order = match (sort_order, sort_target) {
        (SortOrder::None, SortTarget::Key) => SortOrder::None,
        (SortOrder::None, _) => SortOrder::Ascend,
        (order, _) => order,
    };
    // Keys come out of the store in ascending key order already.
    let needs_sort = !(order == SortOrder::None
        || (order == SortOrder::Ascend && sort_target == SortTarget::Key));
    if needs_sort {
        let compare = |a: &KeyValue, b: &KeyValue| -> Ordering {
            match sort_target {
                SortTarget::Key => a.key.cmp(&b.key),
                SortTarget::Version => a.version.cmp(&b.version),
                SortTarget::Create => a.create_revision.cmp(&b.create_revision),
                SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
                SortTarget::Value => a.value.cmp(&b.value),
            }
        };
        // Stable sorts keep key order among equal targets, as etcd's sort.Stable does.
        if order == SortOrder::Descend {
            kvs.sort_by(|a, b| compare(b, a));
        } else {
            kvs.sort_by(compare);
        }
    }

    let mut more = false;
    if req.limit > 0 && kvs.len() as i64 > req.limit {
        kvs.truncate(req.limit as usize);
        more = true;
    }
    if req.keys_only {
        for kv in &mut kvs {
            kv.value.clear();
        }
    }
    Ok(RangeResponse {
        header: Some(ResponseHeader {
            revision: rev,
            ..Default::default()
        }),
        kvs,
        more,
        count,
    })
}
