//! Gateway errors as etcd's gateway (grpc-gateway v1) writes them: the HTTP status a gRPC
//! code maps to, the JSON body of a failed call, and the error chunk that ends a stream.

use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, StatusCode};
use tonic::{Code, Status};

use super::codec::json_string;

/// The HTTP status grpc-gateway answers a gRPC code with.
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::REQUEST_TIMEOUT,
        Code::Unknown => StatusCode::INTERNAL_SERVER_ERROR,
        Code::InvalidArgument => StatusCode::BAD_REQUEST,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::FailedPrecondition => StatusCode::PRECONDITION_FAILED,
        Code::Aborted => StatusCode::CONFLICT,
        Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The body of a failed call: `{"error":M,"message":M,"code":N}`.
pub fn error_body(code: Code, message: &str) -> String {
    let m = json_string(message);
    format!(r#"{{"error":{m},"message":{m},"code":{}}}"#, code as i32)
}

/// The chunk a stream ends with when its call fails:
/// `{"error":{"grpc_code":N,"http_code":H,"message":M,"http_status":T}}`.
pub fn stream_error_chunk(code: Code, message: &str) -> String {
    let http = http_status(code);
    let mut fields = Vec::new();
    if code != Code::Ok {
        fields.push(format!(r#""grpc_code":{}"#, code as i32));
    }
    fields.push(format!(r#""http_code":{}"#, http.as_u16()));
    if !message.is_empty() {
        fields.push(format!(r#""message":{}"#, json_string(message)));
    }
    let reason = http.canonical_reason().unwrap_or("");
    fields.push(format!(r#""http_status":{}"#, json_string(reason)));
    format!(r#"{{"error":{{{}}}}}"#, fields.join(","))
}

/// A failed call as a complete HTTP response.
pub fn status_response(status: &Status) -> Response {
    json_error(http_status(status.code()), status.code(), status.message())
}

/// A JSON error response with `http` status.
pub fn json_error(http: StatusCode, code: Code, message: &str) -> Response {
    (
        http,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        error_body(code, message),
    )
        .into_response()
}

/// A request the gateway could not turn into a call (bad JSON, bad base64, unknown field,
/// too large): 400, code InvalidArgument, as etcd answers a body it cannot decode.
pub fn bad_request(message: &str) -> Response {
    json_error(StatusCode::BAD_REQUEST, Code::InvalidArgument, message)
}

/// The message a gateway call shows for `status`: a service that is not served at all
/// answers Unimplemented with no message, which grpc-go words as below.
pub fn describe(status: Status, service: &str) -> Status {
    if status.code() == Code::Unimplemented && status.message().is_empty() {
        return Status::unimplemented(format!("unknown service {service}"));
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_matches_etcd() {
        assert_eq!(
            error_body(Code::InvalidArgument, "etcdserver: key is not provided"),
            r#"{"error":"etcdserver: key is not provided","message":"etcdserver: key is not provided","code":3}"#
        );
        assert_eq!(
            error_body(Code::Unknown, "a \"quoted\" <tag>"),
            r#"{"error":"a \"quoted\" \u003ctag\u003e","message":"a \"quoted\" \u003ctag\u003e","code":2}"#
        );
    }

    #[test]
    fn codes_map_to_grpc_gateway_statuses() {
        assert_eq!(http_status(Code::InvalidArgument), 400);
        assert_eq!(http_status(Code::OutOfRange), 400);
        assert_eq!(http_status(Code::NotFound), 404);
        assert_eq!(http_status(Code::FailedPrecondition), 412);
        assert_eq!(http_status(Code::Unimplemented), 501);
        assert_eq!(http_status(Code::Unavailable), 503);
        assert_eq!(http_status(Code::ResourceExhausted), 429);
        assert_eq!(http_status(Code::Unknown), 500);
    }

    #[test]
    fn stream_error_chunk_matches_grpc_gateway() {
        assert_eq!(
            stream_error_chunk(Code::Unimplemented, "unknown service etcdserverpb.Watch"),
            r#"{"error":{"grpc_code":12,"http_code":501,"message":"unknown service etcdserverpb.Watch","http_status":"Not Implemented"}}"#
        );
    }

    #[test]
    fn unimplemented_without_message_names_the_service() {
        let s = describe(Status::unimplemented(""), "etcdserverpb.Auth");
        assert_eq!(s.message(), "unknown service etcdserverpb.Auth");
        let s = describe(Status::unimplemented("MemberAdd is not built"), "x");
        assert_eq!(s.message(), "MemberAdd is not built");
    }
}
