//! etcdctl's exit codes and its `Error: ...` line.

use oxcd_client::Error;

/// Exit codes, as etcdctl numbers them.
pub mod code {
    /// A request failed.
    pub const ERROR: i32 = 1;
    /// The server could not be reached (some lease commands).
    pub const BAD_CONNECTION: i32 = 2;
    /// `txn` or `watch` input that cannot be parsed.
    pub const INVALID_INPUT: i32 = 3;
    /// A valid flag with a value this command does not support (an output format).
    pub const BAD_FEATURE: i32 = 4;
    /// The command was interrupted (a watch cancelled by the server).
    pub const INTERRUPTED: i32 = 5;
    /// Bad arguments.
    pub const BAD_ARGS: i32 = 128;
}

/// How a command ends when it does not succeed: an exit code and, unless the command
/// already said what went wrong, the text of an `Error: ` line on stderr.
#[derive(Debug)]
pub struct Exit {
    pub code: i32,
    pub message: Option<String>,
}

impl Exit {
    /// Exit with `code` after printing `Error: message`.
    pub fn new(code: i32, message: impl Into<String>) -> Exit {
        Exit {
            code,
            message: Some(message.into()),
        }
    }

    /// Exit with `code` and print nothing more.
    pub fn silent(code: i32) -> Exit {
        Exit {
            code,
            message: None,
        }
    }

    /// A failed request, printed as etcd's Go client prints it.
    pub fn request(code: i32, err: &Error) -> Exit {
        Exit::new(code, error_text(err))
    }
}

/// The text etcdctl prints for a client error: etcd's own message for etcd errors,
/// `rpc error: code = ... desc = ...` for other gRPC failures.
pub fn error_text(err: &Error) -> String {
    match err {
        Error::Status(status) => {
            if oxcd_api::EtcdError::from_message(status.message()).is_some() {
                return status.message().to_owned();
            }
            match status.code() {
                tonic::Code::DeadlineExceeded => "context deadline exceeded".to_owned(),
                code => format!("rpc error: code = {code:?} desc = {}", status.message()),
            }
        }
        other => other.to_string(),
    }
}

/// Short-hand for a command's result.
pub type CmdResult = Result<(), Exit>;
