//! etcd API types.
