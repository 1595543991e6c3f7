//! The v2 API's errors: etcd's numeric codes, messages and HTTP statuses. A v2 error is an
//! answer, not a failure: it travels back to the client as JSON
//! (`{"errorCode":100,"message":"Key not found","cause":"/foo","index":7}`).

use super::json::JsonWriter;

/// A v2 error code, with the message and HTTP status etcd gives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    KeyNotFound = 100,
    TestFailed = 101,
    NotFile = 102,
    NotDir = 104,
    NodeExist = 105,
    RootReadOnly = 107,
    DirNotEmpty = 108,
    Unauthorized = 110,
    PrevValueRequired = 201,
    TtlNaN = 202,
    IndexNaN = 203,
    InvalidField = 209,
    InvalidForm = 210,
    RefreshValue = 211,
    RefreshTtlRequired = 212,
    RaftInternal = 300,
    LeaderElect = 301,
    EventIndexCleared = 401,
}

impl Code {
    pub fn message(self) -> &'static str {
        match self {
            Code::KeyNotFound => "Key not found",
            Code::TestFailed => "Compare failed",
            Code::NotFile => "Not a file",
            Code::NotDir => "Not a directory",
            Code::NodeExist => "Key already exists",
            Code::RootReadOnly => "Root is read only",
            Code::DirNotEmpty => "Directory not empty",
            Code::Unauthorized => "The request requires user authentication",
            Code::PrevValueRequired => "PrevValue is Required in POST form",
            Code::TtlNaN => "The given TTL in POST form is not a number",
            Code::IndexNaN => "The given index in POST form is not a number",
            Code::InvalidField => "Invalid field",
            Code::InvalidForm => "Invalid POST form",
            Code::RefreshValue => "Value provided on refresh",
            Code::RefreshTtlRequired => "A TTL must be provided on refresh",
            Code::RaftInternal => "Raft Internal Error",
            Code::LeaderElect => "During Leader Election",
            Code::EventIndexCleared => "The event in requested index is outdated and cleared",
        }
    }

    /// The HTTP status etcd answers the code with.
    pub fn status(self) -> u16 {
        match self {
            Code::KeyNotFound => 404,
            Code::NotFile | Code::DirNotEmpty => 403,
            Code::Unauthorized => 401,
            Code::TestFailed | Code::NodeExist => 412,
            Code::RaftInternal | Code::LeaderElect => 500,
            _ => 400,
        }
    }
}

/// A v2 error: code, cause (often the key) and the store index it was raised at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    pub code: Code,
    pub cause: String,
    pub index: u64,
}

impl Error {
    pub fn new(code: Code, cause: impl Into<String>, index: u64) -> Error {
        Error {
            code,
            cause: cause.into(),
            index,
        }
    }

    /// An error in the request itself, raised before the store is involved (index 0).
    pub fn request(code: Code, cause: impl Into<String>) -> Error {
        Error::new(code, cause, 0)
    }

    /// The JSON body etcd writes, newline included.
    pub fn to_json(&self) -> String {
        let mut w = JsonWriter::default();
        w.open();
        w.field_u64("errorCode", self.code as u64);
        w.field_str("message", self.code.message());
        if !self.cause.is_empty() {
            w.field_str("cause", &self.cause);
        }
        w.field_u64("index", self.index);
        w.close();
        w.finish_line()
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.code.message(), self.cause)
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_json_matches_etcd() {
        let e = Error::new(Code::TestFailed, "[zz != bar]", 6);
        assert_eq!(
            e.to_json(),
            "{\"errorCode\":101,\"message\":\"Compare failed\",\"cause\":\"[zz != bar]\",\"index\":6}\n"
        );
        let e = Error::new(Code::KeyNotFound, "", 0);
        assert_eq!(
            e.to_json(),
            "{\"errorCode\":100,\"message\":\"Key not found\",\"index\":0}\n"
        );
        assert_eq!(Code::NodeExist.status(), 412);
        assert_eq!(Code::IndexNaN.status(), 400);
    }
}
