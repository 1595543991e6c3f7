//! Opening a stopped member's backend, for the tools that change or read a data dir offline.
//!
//! A running member holds its backend file locked, so opening it here fails: that is how a
//! running member is told from a stopped one.

use std::path::{Path, PathBuf};

use oxcd_storage::{Backend, BackendConfig, BackendError};

use crate::Result;

/// `<data-dir>/member/snap/db`.
pub fn backend_path(data_dir: &Path) -> PathBuf {
    data_dir.join("member").join("snap").join("db")
}

/// Opens a stopped member's backend; never creates one.
pub fn open_backend(data_dir: &Path) -> Result<Backend> {
    let path = backend_path(data_dir);
    if !path.is_file() {
        return Err(format!(
            "no member backend at {} (is {} an oxcd data dir?)",
            path.display(),
            data_dir.display()
        ));
    }
    Backend::open(&path, BackendConfig::default()).map_err(|e| match e {
        BackendError::Redb(redb::Error::DatabaseAlreadyOpen) => format!(
            "the backend {} is in use: a member is running on {}; stop it first",
            path.display(),
            data_dir.display()
        ),
        e => e.to_string(),
    })
}
