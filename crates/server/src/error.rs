//! The server's error: an etcd error a client should see, or an internal failure.

use oxcd_api::EtcdError;

/// Errors of the server crate. `grpc/status.rs` is the only place that turns one into a
/// gRPC status.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// One of etcd's API errors, sent to the client with etcd's text and code.
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    /// Raft refused or failed an operation.
    #[error("raft: {0}")]
    Raft(String),
    /// The member cannot start: a port in use, bad TLS files, a cluster it cannot join.
    #[error("{0}")]
    Startup(String),
    /// Authenticate named a user that has no password (etcd answers this one outside its
    /// table of API errors, with code Unknown).
    #[error("auth: authentication failed, password was given for no password user")]
    NoPasswordUser,
    /// A JWT token could not be issued (etcd answers with code Unknown).
    #[error(transparent)]
    Jwt(#[from] crate::auth::jwt::JwtError),
    /// Storage failed.
    #[error("storage: {0}")]
    Storage(String),
    /// An answer of `size` bytes is over the `--max-send-bytes` cap `max`.
    #[error("response of {size} bytes is larger than --max-send-bytes {max}")]
    ResponseTooLarge { size: usize, max: usize },
}

impl ServerError {
    pub const NO_LEADER: ServerError = ServerError::Etcd(EtcdError::NoLeader);
}

impl From<oxcd_storage::MvccError> for ServerError {
    fn from(e: oxcd_storage::MvccError) -> Self {
        match e {
            oxcd_storage::MvccError::Compacted => ServerError::Etcd(EtcdError::Compacted),
            oxcd_storage::MvccError::FutureRev => ServerError::Etcd(EtcdError::FutureRev),
            oxcd_storage::MvccError::TooLarge { size, max } => {
                ServerError::ResponseTooLarge { size, max }
            }
            other => ServerError::Storage(other.to_string()),
        }
    }
}

macro_rules! storage_error {
    ($($t:ty),*) => {$(
        impl From<$t> for ServerError {
            fn from(e: $t) -> Self {
                ServerError::Storage(e.to_string())
            }
        }
    )*};
}

storage_error!(
    oxcd_storage::WalError,
    oxcd_storage::SnapError,
    oxcd_storage::BackendError,
    redb::TableError,
    redb::StorageError
);
