//! etcd's v2 API (`--enable-v2`): the [`store`], the apply of replicated v2 requests, the
//! leader's TTL expiry, and the HTTP handlers under `/v2/`.

pub mod apply;
pub mod auth;
pub mod error;
pub mod expiry;
pub mod json;
pub mod stats;
pub mod store;

pub use store::V2Store;
