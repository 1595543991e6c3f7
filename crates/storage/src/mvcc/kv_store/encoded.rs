//! A range read straight into its wire form: the `kvs` field of a `RangeResponse`, built from
//! the stored values (already protobuf-encoded `KeyValue`s), so a large answer is held once,
//! as bytes, and never as decoded `KeyValue`s as well.

use oxcd_api::mvccpb::KeyValue;
use prost::encoding::{encode_key, encode_varint, WireType};
use prost::Message;
use redb::ReadableTable;

use super::{decode_kv, encoded_size, missing, IndexAnswer, KvStore, Walked};
use crate::backend::schema;
use crate::mvcc::index::KeyRange;
use crate::mvcc::revision::Revision;
use crate::mvcc::{Error, Result};

/// The field number of `kvs` in `RangeResponse`.
const KVS_FIELD: u32 = 2;

/// A range read as [`KvStore::range_encoded`] returns it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EncodedRange {
    /// Every key-value as a `RangeResponse` carries it: field 2's tag, the length, then the
    /// `KeyValue` bytes; in key order.
    pub kvs: Vec<u8>,
    /// How many keys the range holds at the revision read, whatever the limit.
    pub count: i64,
    /// The store's current revision when read (the response header's revision).
    pub rev: i64,
}

impl KvStore {
    /// [`KvStore::range`], with the answer as `RangeResponse.kvs` in wire form.
    pub fn range_encoded(
        &self,
        key: &[u8],
        range_end: &[u8],
        opts: super::RangeOptions,
    ) -> Result<EncodedRange> {
        crate::stats::add(&crate::stats::MVCC.ranges, 1);
        let IndexAnswer { walked, count, rev } =
            self.walk_read(KeyRange::new(key, range_end), opts)?;
        let kvs = match walked {
            Walked::Keys(kvs) => encode_all(&kvs),
            Walked::Values(revs, rtxn) => {
                fetch_encoded(&rtxn.open_table(schema::KEY)?, &revs, opts.max_bytes)?
            }
        };
        Ok(EncodedRange { kvs, count, rev })
    }
}

fn encode_all(kvs: &[KeyValue]) -> Vec<u8> {
    let mut out = Vec::new();
    for kv in kvs {
        prost::encoding::message::encode(KVS_FIELD, kv, &mut out);
    }
    out
}

/// The values stored at `revs` (never tombstones), in order, as `RangeResponse.kvs`. Each is
/// checked to decode as a `KeyValue` (into one reused buffer) so a damaged value fails the
/// read as in [`super::fetch`] rather than reaching the client. Past `max_bytes` it drops what
/// it holds but goes on measuring, so that [`Error::TooLarge`] tells the whole size.
pub(crate) fn fetch_encoded(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    revs: &[Revision],
    max_bytes: Option<usize>,
) -> Result<Vec<u8>> {
    let max = max_bytes.unwrap_or(usize::MAX);
    let mut out = Vec::new();
    let mut size = 0usize;
    let mut check = KeyValue::default();
    for &r in revs {
        let Some(v) = table.get(&r.to_bytes()[..])? else {
            return Err(missing(r));
        };
        let bytes = v.value();
        size = size.saturating_add(encoded_size(bytes.len()));
        if size > max {
            if !out.is_empty() {
                out = Vec::new();
            }
            continue;
        }
        check.clear();
        if check.merge(bytes).is_err() {
            // Decoded again only to tell the error as the decoding read does.
            decode_kv(r, bytes)?;
        }
        encode_key(KVS_FIELD, WireType::LengthDelimited, &mut out);
        encode_varint(bytes.len() as u64, &mut out);
        out.extend_from_slice(bytes);
    }
    if size > max {
        return Err(Error::TooLarge { size, max });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use oxcd_api::etcdserverpb::RangeResponse;

    use super::*;
    use crate::backend::{Backend, BackendConfig};
    use crate::mvcc::RangeOptions;

    fn store_with(keys: usize) -> (tempfile::TempDir, KvStore) {
        let dir = tempfile::tempdir().unwrap();
        let backend = Backend::open(dir.path().join("db"), BackendConfig::default()).unwrap();
        let store = KvStore::open(backend).unwrap();
        for i in 0..keys {
            let mut b = store.begin_batch().unwrap();
            let mut t = b.txn();
            let key = format!("k{i:03}");
            t.put(
                key.as_bytes(),
                format!("value {i}").as_bytes(),
                (i % 3) as i64,
            )
            .unwrap();
            t.end();
            b.commit().unwrap();
        }
        (dir, store)
    }

    fn decoded(e: &EncodedRange) -> Vec<KeyValue> {
        RangeResponse::decode(&e.kvs[..]).unwrap().kvs
    }

    #[test]
    fn encoded_ranges_decode_to_the_decoded_ranges() {
        let (_dir, store) = store_with(30);
        let mut b = store.begin_batch().unwrap();
        let mut t = b.txn();
        t.delete_range(b"k010", b"k015").unwrap();
        t.end();
        b.commit().unwrap();
        let shapes: [(&[u8], &[u8]); 4] = [
            (b"k005", b""),
            (b"k000", b"\0"),
            (b"k008", b"k020"),
            (b"zzz", b""),
        ];
        for (key, end) in shapes {
            for rev in [0, 12, 25] {
                for limit in [0, 1, 4] {
                    for (keys_only, count_only) in [(false, false), (true, false), (false, true)] {
                        let opts = RangeOptions {
                            rev,
                            limit,
                            keys_only,
                            count_only,
                            max_bytes: None,
                        };
                        let want = store.range(key, end, opts).unwrap();
                        let got = store.range_encoded(key, end, opts).unwrap();
                        assert_eq!(decoded(&got), want.kvs, "{key:?} {end:?} {opts:?}");
                        assert_eq!((got.count, got.rev), (want.count, want.rev));
                    }
                }
            }
        }
    }

    #[test]
    fn encoded_range_cap_tells_the_whole_size_and_fits_at_exactly_that_size() {
        let (_dir, store) = store_with(10);
        let all = store
            .range_encoded(b"k", b"l", RangeOptions::default())
            .unwrap();
        let size = all.kvs.len();
        let capped = |max| RangeOptions {
            max_bytes: Some(max),
            ..Default::default()
        };
        match store.range_encoded(b"k", b"l", capped(size - 1)) {
            Err(Error::TooLarge { size: s, max }) => assert_eq!((s, max), (size, size - 1)),
            other => panic!("expected TooLarge, got {other:?}"),
        }
        assert_eq!(store.range_encoded(b"k", b"l", capped(size)).unwrap(), all);
    }
}
