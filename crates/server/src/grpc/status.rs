//! The only conversion from server errors to gRPC statuses.

use tonic::{Code, Status};

use crate::error::ServerError;

impl From<ServerError> for Status {
    fn from(e: ServerError) -> Status {
        match e {
            ServerError::Etcd(err) => Status::new(err.code(), err.message()),
            // What etcd's clients see from a grpc-go server over its send limit.
            ServerError::ResponseTooLarge { size, max } => Status::new(
                Code::ResourceExhausted,
                format!("grpc: trying to send message larger than max ({size} vs. {max})"),
            ),
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

/// tonic refuses a request over the receive limit with `OutOfRange` and its own wording;
/// etcd clients (grpc-go servers) see `ResourceExhausted` and grpc-go's wording. Such an
/// error is always a trailers-only response, so its status sits in the headers.
pub fn oversized_request_as_grpc_go<B>(mut resp: http::Response<B>) -> http::Response<B> {
    let headers = resp.headers_mut();
    if headers.get("grpc-status").map(|v| v.as_bytes()) != Some(b"11") {
        return resp;
    }
    let Some(message) = headers.get("grpc-message").and_then(|v| v.to_str().ok()) else {
        return resp;
    };
    let message = percent_decode(message);
    let Some(rest) = message.strip_prefix("Error, decoded message length too large: found ") else {
        return resp;
    };
    let numbers: Vec<&str> = rest
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .collect();
    if let [found, limit] = numbers[..] {
        let text = format!("grpc: received message larger than max ({found} vs. {limit})");
        headers.insert("grpc-status", http::HeaderValue::from_static("8"));
        if let Ok(value) = http::HeaderValue::from_str(&text) {
            headers.insert("grpc-message", value);
        }
    }
    resp
}

/// Decodes grpc-message's percent-encoding (only what tonic produces: `%XX`).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
