//! etcd's key-value semantics on top of the MVCC store: validation at the edge, range rules,
//! and how Put, DeleteRange and Txn are applied.

pub mod range;
pub mod range_stream;
pub mod txn;
pub mod validate;
