//! What changes between oxcd's tables and etcd's buckets. Almost nothing: the tables carry
//! etcd's bucket names and etcd's encodings, except for a few `meta` values.
//!
//! | `meta` key | oxcd | etcd |
//! |---|---|---|
//! | `scheduledCompactRev`, `finishedCompactRev` | i64, big endian | a 17-byte revision (main, `_`, sub 0) |
//! | `confState` | `eraftpb.ConfState`, protobuf | `raftpb.ConfState` as JSON (3.5 on) |
//! | `storageVersion` | not written | `3.6` and later: the schema version |
//!
//! The `v2` table has no bucket in etcd (etcd keeps its v2 store in the snap files), so it
//! stays out of an etcd snapshot.

use protobuf::Message;
use raft::eraftpb::ConfState;

use crate::backend::schema::{self, Table};
use crate::mvcc::Revision;

/// Each etcd bucket and the table holding it.
pub(super) const BUCKETS: [Table; 10] = [
    schema::KEY,
    schema::META,
    schema::LEASE,
    schema::AUTH,
    schema::AUTH_USERS,
    schema::AUTH_ROLES,
    schema::MEMBERS,
    schema::MEMBERS_REMOVED,
    schema::CLUSTER,
    schema::ALARM,
];

/// The table for an etcd bucket; `None` for a bucket oxcd does not keep.
pub(super) fn table_for(bucket: &[u8]) -> Option<Table> {
    use redb::TableHandle;
    BUCKETS.into_iter().find(|t| t.name().as_bytes() == bucket)
}

fn is_compact_key(key: &[u8]) -> bool {
    key == schema::META_SCHEDULED_COMPACT_REV || key == schema::META_FINISHED_COMPACT_REV
}

/// An oxcd `meta` entry as etcd writes it; `None` to leave it out.
pub(super) fn meta_to_etcd(key: &[u8], value: &[u8]) -> Option<Vec<u8>> {
    if is_compact_key(key) {
        let main = i64::from_be_bytes(value.try_into().ok()?);
        return Some(Revision::new(main, 0).to_bytes().to_vec());
    }
    if key == schema::META_CONF_STATE {
        let cs = ConfState::parse_from_bytes(value).ok()?;
        return Some(conf_state_json(&cs).into_bytes());
    }
    if key == schema::META_STORAGE_VERSION {
        return None;
    }
    Some(value.to_vec())
}

/// An etcd `meta` entry as oxcd keeps it; `None` to leave it out (the restore writes its
/// own Raft state, and oxcd keeps no schema version there).
pub(super) fn meta_from_etcd(key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>, String> {
    if is_compact_key(key) {
        let main = match value.len() {
            8 => i64::from_be_bytes(value.try_into().unwrap()),
            17 | 18 => {
                Revision::from_key(&value[..17])
                    .ok_or_else(|| "compaction revision is not a revision".to_string())?
                    .0
                    .main
            }
            n => return Err(format!("compaction revision of {n} bytes")),
        };
        return Ok(Some(main.to_be_bytes().to_vec()));
    }
    if key == schema::META_CONF_STATE || key == schema::META_STORAGE_VERSION {
        return Ok(None);
    }
    Ok(Some(value.to_vec()))
}

/// etcd's JSON for a `ConfState` (Go's encoding of raftpb.ConfState, empty fields left out).
fn conf_state_json(cs: &ConfState) -> String {
    let list = |ids: &[u64]| ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
    let mut fields = Vec::new();
    for (name, ids) in [
        ("voters", cs.get_voters()),
        ("learners", cs.get_learners()),
        ("voters_outgoing", cs.get_voters_outgoing()),
        ("learners_next", cs.get_learners_next()),
    ] {
        if !ids.is_empty() {
            fields.push(format!("\"{name}\":[{}]", list(ids)));
        }
    }
    if cs.get_auto_leave() {
        fields.push("\"auto_leave\":true".into());
    }
    format!("{{{}}}", fields.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compaction_revisions_convert_both_ways() {
        let ours = 42i64.to_be_bytes();
        let theirs = meta_to_etcd(schema::META_FINISHED_COMPACT_REV, &ours).unwrap();
        assert_eq!(theirs, Revision::new(42, 0).to_bytes());
        assert_eq!(
            meta_from_etcd(schema::META_FINISHED_COMPACT_REV, &theirs).unwrap(),
            Some(ours.to_vec())
        );
        assert!(meta_from_etcd(schema::META_SCHEDULED_COMPACT_REV, b"abc").is_err());
    }

    #[test]
    fn conf_state_becomes_etcd_json() {
        let cs = ConfState::from((vec![1, 2], vec![3]));
        let json = meta_to_etcd(schema::META_CONF_STATE, &cs.write_to_bytes().unwrap());
        assert_eq!(
            json.as_deref(),
            Some(&br#"{"voters":[1,2],"learners":[3]}"#[..])
        );
        assert_eq!(
            meta_from_etcd(schema::META_CONF_STATE, b"{}").unwrap(),
            None
        );
        assert_eq!(
            meta_from_etcd(b"term", b"\0\0\0\0\0\0\0\x02")
                .unwrap()
                .unwrap()
                .len(),
            8
        );
    }
}
