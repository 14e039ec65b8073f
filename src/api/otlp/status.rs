//! OTLP/HTTP responses: `ExportLogsServiceResponse` on success, a `google.rpc.Status` on failure,
//! each in the encoding of the request (OTLP specification, "OTLP/HTTP Response").
//!
//! `google.rpc.Status` and `google.rpc.BadRequest` are not in `opentelemetry-proto`; the few
//! fields used are declared here with prost, as `google/rpc/status.proto` and
//! `google/rpc/error_details.proto` number them.

use axum::body::Body;
use axum::http::header::{ACCEPT_ENCODING, CONNECTION, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceResponse,
};
use prost::Message;
use serde_json::{Value, json};

/// The two OTLP/HTTP payload encodings, told apart by `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `application/x-protobuf`: binary protobuf.
    Protobuf,
    /// `application/json`: the OTLP JSON mapping of the same messages.
    Json,
}

impl Encoding {
    /// The encoding a request declares; `None` for any other media type, or none at all.
    pub fn of(headers: &HeaderMap) -> Option<Self> {
        let declared = headers.get(CONTENT_TYPE)?.to_str().ok()?;
        let essence = declared.split(';').next().unwrap_or("").trim();
        if essence.eq_ignore_ascii_case("application/x-protobuf")
            || essence.eq_ignore_ascii_case("application/protobuf")
        {
            Some(Self::Protobuf)
        } else if essence.eq_ignore_ascii_case("application/json") {
            Some(Self::Json)
        } else {
            None
        }
    }

    fn content_type(self) -> HeaderValue {
        match self {
            Self::Protobuf => HeaderValue::from_static("application/x-protobuf"),
            Self::Json => HeaderValue::from_static("application/json"),
        }
    }
}

/// `google.rpc.Status`.
#[derive(Clone, PartialEq, Message)]
struct Status {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<Any>,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, Message)]
struct Any {
    #[prost(string, tag = "1")]
    type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
}

/// `google.rpc.BadRequest`.
#[derive(Clone, PartialEq, Message)]
struct BadRequest {
    #[prost(message, repeated, tag = "1")]
    field_violations: Vec<FieldViolation>,
}

/// `google.rpc.BadRequest.FieldViolation`.
#[derive(Clone, PartialEq, Message)]
struct FieldViolation {
    #[prost(string, tag = "1")]
    field: String,
    #[prost(string, tag = "2")]
    description: String,
}

const BAD_REQUEST_TYPE_URL: &str = "type.googleapis.com/google.rpc.BadRequest";

/// gRPC status codes (`google.rpc.Code`) for `Status.code`, which OTLP/HTTP clients may log but
/// do not act on: the HTTP status is what they read.
fn grpc_code(status: StatusCode) -> i32 {
    match status {
        StatusCode::BAD_REQUEST | StatusCode::UNSUPPORTED_MEDIA_TYPE => 3, // INVALID_ARGUMENT
        StatusCode::PAYLOAD_TOO_LARGE | StatusCode::TOO_MANY_REQUESTS => 8, // RESOURCE_EXHAUSTED
        StatusCode::SERVICE_UNAVAILABLE => 14,                             // UNAVAILABLE
        _ => 13,                                                           // INTERNAL
    }
}

/// Why an export failed as a whole: an HTTP status, a message for the developer, and what the
/// client should do (retry after a pause, or not at all).
#[derive(Debug)]
pub struct Failure {
    pub status: StatusCode,
    pub message: String,
    /// For a 400: which part of the request is bad (`google.rpc.BadRequest`).
    pub field: Option<String>,
    /// Seconds, for the `Retry-After` of a 429 or 503.
    pub retry_after: Option<u64>,
    /// The body was refused before it was read to its end: the connection closes.
    pub close: bool,
    /// Refused for its content coding: the answer names the accepted one.
    pub accept_gzip: bool,
}

impl Failure {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            field: None,
            retry_after: None,
            close: false,
            accept_gzip: false,
        }
    }

    /// 400: the request cannot be decoded; `field` says where.
    pub fn bad_data(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: Some(field.into()),
            ..Self::new(StatusCode::BAD_REQUEST, message)
        }
    }

    /// A 429 or 503 the client should retry after `seconds`.
    pub fn retry_after(status: StatusCode, seconds: u64, message: impl Into<String>) -> Self {
        Self {
            retry_after: Some(seconds),
            ..Self::new(status, message)
        }
    }

    /// The response, its `Status` in `encoding`.
    pub fn respond(self, encoding: Encoding) -> Response {
        let code = grpc_code(self.status);
        let body = match encoding {
            Encoding::Protobuf => {
                let details = self
                    .field
                    .iter()
                    .map(|field| Any {
                        type_url: BAD_REQUEST_TYPE_URL.to_owned(),
                        value: BadRequest {
                            field_violations: vec![FieldViolation {
                                field: field.clone(),
                                description: self.message.clone(),
                            }],
                        }
                        .encode_to_vec(),
                    })
                    .collect();
                Status {
                    code,
                    message: self.message,
                    details,
                }
                .encode_to_vec()
            }
            Encoding::Json => {
                // The proto3 JSON mapping of `Status`, an `Any` written with its `@type`.
                let details: Vec<Value> = self
                    .field
                    .iter()
                    .map(|field| {
                        json!({
                            "@type": BAD_REQUEST_TYPE_URL,
                            "fieldViolations": [{"field": field, "description": self.message}],
                        })
                    })
                    .collect();
                let mut status = json!({"code": code, "message": self.message});
                if !details.is_empty() {
                    status["details"] = Value::Array(details);
                }
                status.to_string().into_bytes()
            }
        };
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, encoding.content_type());
        if let Some(seconds) = self.retry_after {
            headers.insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.close {
            headers.insert(CONNECTION, HeaderValue::from_static("close"));
        }
        if self.accept_gzip {
            headers.insert(ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
        }
        response
    }
}

/// 200 with an `ExportLogsServiceResponse`; `partial_success` is set only when something was
/// rejected or there is a warning (the specification: "MUST leave the `partial_success` field
/// unset in case of a successful response").
pub fn success(encoding: Encoding, partial: Option<ExportLogsPartialSuccess>) -> Response {
    let body = match encoding {
        Encoding::Protobuf => ExportLogsServiceResponse {
            partial_success: partial,
        }
        .encode_to_vec(),
        // Written by hand: the crate's serde writes the int64 `rejectedLogRecords` as a JSON
        // number, and the proto3 JSON mapping writes 64-bit integers as strings.
        Encoding::Json => match partial {
            None => b"{}".to_vec(),
            Some(partial) => json!({
                "partialSuccess": {
                    "rejectedLogRecords": partial.rejected_log_records.to_string(),
                    "errorMessage": partial.error_message,
                }
            })
            .to_string()
            .into_bytes(),
        },
    };
    let mut response = Response::new(Body::from(body));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, encoding.content_type());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(content_type: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_str(content_type).expect("a header value"),
        );
        headers
    }

    #[test]
    fn content_types_name_the_encoding() {
        assert_eq!(
            Encoding::of(&headers("application/x-protobuf")),
            Some(Encoding::Protobuf)
        );
        assert_eq!(
            Encoding::of(&headers("Application/JSON; charset=utf-8")),
            Some(Encoding::Json)
        );
        assert_eq!(Encoding::of(&headers("text/plain")), None);
        assert_eq!(Encoding::of(&headers("application/grpc")), None);
        assert_eq!(Encoding::of(&HeaderMap::new()), None);
    }

    #[tokio::test]
    async fn a_protobuf_failure_is_a_status_with_a_bad_request_detail() {
        let response = Failure::bad_data("body", "not protobuf").respond(Encoding::Protobuf);
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .expect("body");
        let status = Status::decode(bytes).expect("a google.rpc.Status");
        assert_eq!(status.code, 3);
        assert_eq!(status.message, "not protobuf");
        assert_eq!(status.details.len(), 1);
        assert_eq!(status.details[0].type_url, BAD_REQUEST_TYPE_URL);
        let detail = BadRequest::decode(status.details[0].value.as_slice()).expect("BadRequest");
        assert_eq!(detail.field_violations[0].field, "body");
    }

    #[tokio::test]
    async fn a_shed_request_says_when_to_retry() {
        let response =
            Failure::retry_after(StatusCode::TOO_MANY_REQUESTS, 1, "busy").respond(Encoding::Json);
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[RETRY_AFTER], "1");
        assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .expect("body");
        let status: Value = serde_json::from_slice(&bytes).expect("JSON");
        assert_eq!(status, json!({"code": 8, "message": "busy"}));
    }
}
