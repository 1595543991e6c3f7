//! The backend's `lease` table: lease id (8 bytes, big endian) → `leasepb.Lease`, as etcd
//! lays it out. Only the granted TTL and the last checkpointed remaining TTL are stored; which
//! keys a lease holds is read back from the key-value store, and expiry times never leave
//! memory (they are wall-clock facts of the leader, not replicated state).

use oxcd_api::leasepb;
use oxcd_storage::{schema, Backend};
use prost::Message as _;
use redb::{ReadableTable, WriteTransaction};

use crate::error::ServerError;

fn key(id: i64) -> [u8; 8] {
    (id as u64).to_be_bytes()
}

/// Writes (or rewrites) one lease.
pub(crate) fn store(
    tx: &WriteTransaction,
    id: i64,
    ttl: i64,
    remaining_ttl: i64,
) -> Result<(), ServerError> {
    let row = leasepb::Lease {
        id,
        ttl,
        remaining_ttl,
    };
    let mut table = tx.open_table(schema::LEASE)?;
    table.insert(key(id).as_slice(), row.encode_to_vec().as_slice())?;
    Ok(())
}

/// Deletes one lease.
pub(crate) fn remove(tx: &WriteTransaction, id: i64) -> Result<(), ServerError> {
    let mut table = tx.open_table(schema::LEASE)?;
    table.remove(key(id).as_slice())?;
    Ok(())
}

/// Every stored lease.
pub(crate) fn load_all(backend: &Backend) -> Result<Vec<leasepb::Lease>, ServerError> {
    let rtx = backend.begin_read()?;
    let table = rtx.open_table(schema::LEASE)?;
    let mut leases = Vec::new();
    for row in table.iter()? {
        let (k, v) = row?;
        let lease = leasepb::Lease::decode(v.value()).map_err(|e| {
            ServerError::Storage(format!(
                "lease table row {:02x?} does not decode: {e}",
                k.value()
            ))
        })?;
        leases.push(lease);
    }
    Ok(leases)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxcd_storage::BackendConfig;

    #[test]
    fn stored_leases_load_back_and_removed_ones_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let backend = Backend::open(dir.path().join("db"), BackendConfig::default()).unwrap();
        let wb = backend.begin_write().unwrap();
        store(wb.txn(), 1, 10, 0).unwrap();
        store(wb.txn(), -5, 60, 42).unwrap();
        store(wb.txn(), 2, 30, 0).unwrap();
        remove(wb.txn(), 2).unwrap();
        wb.commit().unwrap();

        let mut leases = load_all(&backend).unwrap();
        leases.sort_by_key(|l| l.id);
        assert_eq!(
            leases,
            vec![
                leasepb::Lease {
                    id: -5,
                    ttl: 60,
                    remaining_ttl: 42
                },
                leasepb::Lease {
                    id: 1,
                    ttl: 10,
                    remaining_ttl: 0
                },
            ]
        );
    }
}
