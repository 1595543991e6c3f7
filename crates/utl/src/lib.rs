//! What oxcdutl shares with oxcdctl: [`restore()`] builds a new member's data dir from an
//! etcd-format snapshot file (saved from oxcd or from etcd), laid out by the server's own
//! bootstrap so `oxcd` starts from it as from its own; [`progress::Progress`] reports long
//! operations; [`stopped`] opens a stopped member's backend.

pub mod progress;
mod restore;
pub mod stopped;

pub use restore::{restore, RestoreConfig, Result};
