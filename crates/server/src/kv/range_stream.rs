//! RangeStream (etcd 3.7): a range answered as a stream of pieces read at one revision, so
//! that neither the server nor the client holds more than a piece or two of a large answer.
//!
//! Merged in order, the pieces make the answer a unary Range gives: every piece carries keys
//! no other does, in key order, and the last carries the header revision, `count` and `more`
//! (and its keys: a range that fits in one piece is one message, equal to Range's answer).
//! Limit, keys-only, count-only and the revision filters work as in Range; a sort other than
//! ascending by key would need every key first, so it is refused with `Unimplemented`, as
//! etcd 3.7 does. A compaction past the pinned revision ends the stream with etcd's
//! `ErrCompacted`, and the client retries.

use oxcd_api::etcdserverpb::range_request::{SortOrder, SortTarget};
use oxcd_api::etcdserverpb::{RangeRequest, RangeResponse, ResponseHeader};
use oxcd_api::mvccpb::KeyValue;
use oxcd_storage::{MvccError, PieceLimits, RangeCursor};

/// Most keys read per piece.
pub const PIECE_KEYS: usize = 10_000;

/// Bytes of keys and values after which a piece ends: well under the 4 MiB a gRPC client
/// accepts by default, and large enough that the per-message cost does not show.
pub const PIECE_BYTES: usize = 1024 * 1024;

/// Whether RangeStream can answer `req`: every sort but the default key order is refused.
pub fn is_supported(req: &RangeRequest) -> bool {
    let order = SortOrder::try_from(req.sort_order).unwrap_or(SortOrder::None);
    let target = SortTarget::try_from(req.sort_target).unwrap_or(SortTarget::Key);
    target == SortTarget::Key && matches!(order, SortOrder::None | SortOrder::Ascend)
}

/// Reads `req` through `cursor` and hands each piece to `send`, the last one with its header
/// revision, `count` and `more`; stops early when `send` returns false (the client is gone).
pub fn stream(
    mut cursor: RangeCursor,
    req: &RangeRequest,
    mut send: impl FnMut(RangeResponse) -> bool,
) -> Result<(), MvccError> {
    let filters = req.min_mod_revision != 0
        || req.max_mod_revision != 0
        || req.min_create_revision != 0
        || req.max_create_revision != 0;
    let passes = |kv: &KeyValue| {
        (req.min_mod_revision == 0 || kv.mod_revision >= req.min_mod_revision)
            && (req.max_mod_revision == 0 || kv.mod_revision <= req.max_mod_revision)
            && (req.min_create_revision == 0 || kv.create_revision >= req.min_create_revision)
            && (req.max_create_revision == 0 || kv.create_revision <= req.max_create_revision)
    };
    let limit = usize::try_from(req.limit)
        .ok()
        .filter(|&l| l > 0)
        .unwrap_or(usize::MAX);
    let mut limits = PieceLimits {
        keys: PIECE_KEYS,
        bytes: PIECE_BYTES,
        keys_only: req.keys_only || req.count_only,
    };
    let (mut count, mut sent, mut more) = (0i64, 0usize, false);
    // Held back one piece, so that the last piece can carry the last keys.
    let mut pending: Vec<KeyValue> = Vec::new();
    loop {
        let mut piece = cursor.next_piece(limits)?;
        if piece.is_empty() {
            break;
        }
        count += piece.len() as i64;
        if req.count_only {
            continue;
        }
        if filters {
            piece.retain(|kv| passes(kv));
        }
        if sent + piece.len() > limit {
            more = true;
            piece.truncate(limit - sent);
        }
        sent += piece.len();
        if sent == limit {
            // Past the limit only `count` and `more` are left to learn: the index has both.
            limits.keys_only = true;
        }
        if piece.is_empty() {
            continue;
        }
        let previous = std::mem::replace(&mut pending, piece);
        if !previous.is_empty() && !send(chunk(previous)) {
            return Ok(());
        }
    }
    send(RangeResponse {
        header: Some(ResponseHeader {
            revision: cursor.header_revision(),
            ..Default::default()
        }),
        kvs: pending,
        more,
        count,
    });
    Ok(())
}

fn chunk(kvs: Vec<KeyValue>) -> RangeResponse {
    RangeResponse {
        kvs,
        ..Default::default()
    }
}
