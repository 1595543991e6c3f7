//! The only conversion from server errors to gRPC statuses.

use tonic::{Code, Status};

use crate::error::ServerError;

impl From<ServerError> for Status {
    fn from(e: ServerError) -> Status {
        match e {
            ServerError::Etcd(err) => Status::new(err.code(), err.message()),
            other => {
                tracing::warn!(error = %other, "request failed inside the server");
                Status::new(Code::Unknown, other.to_string())
            }
        }
    }
}

/// An etcd API error as a status.
pub fn status(err: oxcd_api::EtcdError) -> Status {
    ServerError::Etcd(err).into()
}
