//! Every table and every fixed key the backend file holds, in one place.
//!
//! The names follow etcd's bolt buckets so that a reader of either code base finds the same
//! things under the same words. All tables map bytes to bytes: the meaning of each key and value
//! is documented here, the encoding lives with the module that owns the table.

use redb::TableDefinition;

/// A table of the backend: byte keys to byte values.
pub type Table = TableDefinition<'static, &'static [u8], &'static [u8]>;

/// MVCC data: a revision in its 17-byte form (18 with the tombstone marker, see
/// `mvcc::revision`) → a `mvccpb.KeyValue` in protobuf. A tombstone's value holds only the key.
pub const KEY: Table = TableDefinition::new("key");

/// Small fixed facts about the store; the keys are the `META_*` constants below.
pub const META: Table = TableDefinition::new("meta");

/// Leases: lease id (8 bytes, big endian) → `leasepb.Lease` in protobuf.
pub const LEASE: Table = TableDefinition::new("lease");

/// Auth switches; the keys are the `AUTH_*` constants below.
pub const AUTH: Table = TableDefinition::new("auth");

/// Auth users: user name → `authpb.User` in protobuf.
pub const AUTH_USERS: Table = TableDefinition::new("authUsers");

/// Auth roles: role name → `authpb.Role` in protobuf.
pub const AUTH_ROLES: Table = TableDefinition::new("authRoles");

/// Cluster members: member id (16 hex digits) → the member's attributes as JSON, as etcd.
pub const MEMBERS: Table = TableDefinition::new("members");

/// Removed members: member id (16 hex digits) → `removed`; an id listed here may never rejoin.
pub const MEMBERS_REMOVED: Table = TableDefinition::new("members_removed");

/// Cluster-wide facts; the keys are the `CLUSTER_*` constants below.
pub const CLUSTER: Table = TableDefinition::new("cluster");

/// Raised alarms: `etcdserverpb.AlarmMember` in protobuf → empty.
pub const ALARM: Table = TableDefinition::new("alarm");

/// The v2 store, when it is enabled; its layout belongs to the v2 module.
pub const V2: Table = TableDefinition::new("v2");

/// Every table, in the fixed order used by [`Backend::hash`](super::Backend::hash) and created
/// when a backend is opened, so that readers never meet a missing table.
pub const ALL_TABLES: [Table; 11] = [
    KEY,
    META,
    LEASE,
    AUTH,
    AUTH_USERS,
    AUTH_ROLES,
    MEMBERS,
    MEMBERS_REMOVED,
    CLUSTER,
    ALARM,
    V2,
];

/// `meta`: index of the last Raft entry applied to this backend (u64, big endian). Written in
/// the same transaction as the entry's effects, so after a crash the WAL is replayed from here.
pub const META_CONSISTENT_INDEX: &[u8] = b"consistent_index";

/// `meta`: Raft term of the entry at [`META_CONSISTENT_INDEX`] (u64, big endian).
pub const META_TERM: &[u8] = b"term";

/// `meta`: the latest compaction revision requested (i64, big endian). Ahead of
/// [`META_FINISHED_COMPACT_REV`] while old revisions are still being removed.
pub const META_SCHEDULED_COMPACT_REV: &[u8] = b"scheduledCompactRev";

/// `meta`: the latest compaction revision whose old revisions are all removed (i64, big endian).
pub const META_FINISHED_COMPACT_REV: &[u8] = b"finishedCompactRev";

/// `meta`: the Raft configuration state (`eraftpb.ConfState` in protobuf).
pub const META_CONF_STATE: &[u8] = b"confState";

/// `meta`: the storage format version string.
pub const META_STORAGE_VERSION: &[u8] = b"storageVersion";

/// `auth`: one byte, 1 when authentication is enabled.
pub const AUTH_ENABLED: &[u8] = b"authEnabled";

/// `auth`: the auth revision (u64, big endian), bumped by every auth change.
pub const AUTH_REVISION: &[u8] = b"authRevision";

/// `cluster`: the cluster version string, such as `3.5.0`.
pub const CLUSTER_VERSION: &[u8] = b"clusterVersion";

/// `cluster`: the downgrade state as JSON.
pub const CLUSTER_DOWNGRADE: &[u8] = b"downgrade";

/// Encodes a u64 meta value.
pub fn encode_u64(v: u64) -> [u8; 8] {
    v.to_be_bytes()
}

/// Decodes a u64 meta value; `None` when the bytes are not 8 long.
pub fn decode_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::TableHandle;
    use std::collections::HashSet;

    #[test]
    fn table_names_are_unique() {
        let names: HashSet<&str> = ALL_TABLES.iter().map(|t| t.name()).collect();
        assert_eq!(names.len(), ALL_TABLES.len());
    }

    #[test]
    fn u64_codec_round_trips_and_rejects_bad_length() {
        assert_eq!(
            decode_u64(&encode_u64(0x0102_0304_0506_0708)),
            Some(0x0102_0304_0506_0708)
        );
        assert_eq!(decode_u64(b"short"), None);
    }
}
