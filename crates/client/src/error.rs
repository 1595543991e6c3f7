//! The client's one error type.

use oxcd_api::EtcdError;

/// What can go wrong talking to an etcd cluster.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server (or the transport under it) answered with a gRPC status. etcd's own errors
    /// arrive this way; [`Error::etcd`] recognizes them.
    #[error("{}", .0.message())]
    Status(#[from] tonic::Status),
    /// An endpoint could not be parsed or configured.
    #[error("invalid endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// Why it was refused.
        reason: String,
    },
    /// No endpoint was given.
    #[error("no endpoints given")]
    NoEndpoints,
    /// TLS material could not be read or used.
    #[error("{0}")]
    Tls(String),
    /// A watch was cancelled by the server (for example, compacted revision), with its reason.
    #[error("watch canceled: {0}")]
    WatchCanceled(String),
    /// A lease expired or was revoked while it was being kept alive.
    #[error("etcdserver: requested lease not found")]
    LeaseExpired,
    /// Proclaim or resign by a candidate that is not the leader.
    #[error("election: not leader")]
    NotLeader,
    /// Resign or unlock of something never acquired.
    #[error("election: session expired")]
    SessionExpired,
    /// The operation ran out of time.
    #[error("context deadline exceeded")]
    Timeout,
}

impl Error {
    /// The etcd error the server answered with, recognized by its exact message.
    pub fn etcd(&self) -> Option<EtcdError> {
        match self {
            Error::Status(status) => EtcdError::from_message(status.message()),
            _ => None,
        }
    }

    /// The gRPC code of a server answer.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            Error::Status(status) => Some(status.code()),
            _ => None,
        }
    }
}

/// The client's result type.
pub type Result<T> = std::result::Result<T, Error>;
