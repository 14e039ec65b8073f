//! `ApiError`: every failure at the HTTP edge becomes `{"detail": …}`, as FastAPI clients expect.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

/// One entry of a FastAPI/pydantic 422 body: `{"type","loc","msg","input"}` (+ `ctx`).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct FieldError {
    /// What is wrong, as pydantic names it: `missing`, `string_type`, `json_invalid`, …
    #[serde(rename = "type")]
    #[schema(value_type = String)]
    pub kind: &'static str,
    /// Where: `["body", "logs", 0, "service"]`, `["query", "limit"]`.
    #[schema(value_type = Vec<LocStep>)]
    pub loc: Vec<Value>,
    pub msg: String,
    /// The offending value (long text is summarised).
    pub input: Value,
    /// Details of the constraint, such as `{"max_length": 256}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub ctx: Option<Value>,
}

/// One step of a [`FieldError`]'s `loc`: a field name or a list index.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // Documentation only: `loc` holds JSON values.
pub enum LocStep {
    Name(String),
    Index(u64),
}

/// Every error body: `{"detail": …}`, a sentence or FastAPI's list of field errors (422).
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub detail: ErrorDetail,
}

/// A sentence, or (422) every field error of the request.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum ErrorDetail {
    Message(String),
    Fields(Vec<FieldError>),
}

/// The documented refusals, one type per status, composed into each operation's `responses(…)`
/// of the OpenAPI description (`api::docs`). Documentation only: handlers answer [`ApiError`].
pub mod responses {
    #![allow(dead_code)]

    use utoipa::IntoResponses;

    use super::ErrorBody;

    /// A request that cannot be read: an empty list, a body that is not valid gzip, a query
    /// string or path parameter that does not decode.
    #[derive(IntoResponses)]
    #[response(status = 400)]
    pub struct BadRequest(ErrorBody);

    /// No such resource.
    #[derive(IntoResponses)]
    #[response(status = 404)]
    pub struct NotFound(ErrorBody);

    /// A training job is already queued or running.
    #[derive(IntoResponses)]
    #[response(status = 409)]
    pub struct Conflict(ErrorBody);

    /// The body is over MAX_BODY_BYTES (counted after gzip decompression), or holds more than
    /// MAX_LOGS_PER_REQUEST logs or feedback records, or more than MAX_PATTERNS_PER_REQUEST
    /// distinct regex patterns.
    #[derive(IntoResponses)]
    #[response(status = 413)]
    pub struct PayloadTooLarge(ErrorBody);

    /// The body is declared as something other than JSON, or compressed other than with gzip.
    #[derive(IntoResponses)]
    #[response(status = 415)]
    pub struct UnsupportedMediaType(ErrorBody);

    /// The body or query does not fit the schema: FastAPI's list of field errors.
    #[derive(IntoResponses)]
    #[response(status = 422)]
    pub struct Unprocessable(ErrorBody);

    /// An unexpected failure; the details are in the service's log, not in the answer.
    #[derive(IntoResponses)]
    #[response(status = 500)]
    pub struct Internal(ErrorBody);

    /// Storage cannot serve for now (full disk, database locked, shutting down), or the request
    /// took longer than REQUEST_TIMEOUT_SECONDS; a retry later succeeds once the cause is gone.
    #[derive(IntoResponses)]
    #[response(status = 503)]
    pub struct Unavailable(ErrorBody);
}

/// Why a request failed, mapped to a status and a `detail`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 with the contract's message.
    #[error("{0}")]
    BadRequest(String),
    /// 404 for an unknown resource (`{"detail": "Not Found"}` for unknown paths, as FastAPI).
    #[error("{0}")]
    NotFound(String),
    /// 409 when the request conflicts with work already under way.
    #[error("{0}")]
    Conflict(String),
    /// 413 for a body or a batch over its configured limit.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 415 for a body declared as something other than JSON.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 422 in FastAPI's list form.
    #[error("request does not fit the schema")]
    Unprocessable(Vec<FieldError>),
    /// 503 when storage cannot serve for now: `detail` says why to the client, `cause` goes to
    /// the log.
    #[error("service unavailable: {cause}")]
    Unavailable { detail: &'static str, cause: String },
    /// 500: the client gets a generic detail, the log gets the whole chain.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<crate::store::StoreError> for ApiError {
    fn from(error: crate::store::StoreError) -> Self {
        if let Some(detail) = error.unavailable_reason() {
            Self::Unavailable {
                detail,
                cause: error.to_string(),
            }
        } else {
            Self::Internal(anyhow::Error::new(error))
        }
    }
}

impl From<crate::ingest::IngestError> for ApiError {
    fn from(error: crate::ingest::IngestError) -> Self {
        use crate::ingest::IngestError;
        match error {
            IngestError::NoLogs => Self::BadRequest(error.to_string()),
            IngestError::TooManyLogs { .. } | IngestError::TooManyPatterns(_) => {
                Self::PayloadTooLarge(error.to_string())
            }
            IngestError::NameTooLong {
                index,
                field,
                chars,
            } => Self::unprocessable(crate::api::body::name_too_long(
                vec![json!("body"), json!("logs"), json!(index), json!(field)],
                chars,
            )),
            IngestError::Storage(error) => error.into(),
        }
    }
}

impl ApiError {
    /// A 422 with a single field error.
    pub fn unprocessable(error: FieldError) -> Self {
        Self::Unprocessable(vec![error])
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        use ErrorDetail::Message;
        let (status, detail) = match self {
            Self::BadRequest(message) => (StatusCode::BAD_REQUEST, Message(message)),
            Self::NotFound(message) => (StatusCode::NOT_FOUND, Message(message)),
            Self::Conflict(message) => (StatusCode::CONFLICT, Message(message)),
            Self::PayloadTooLarge(message) => (StatusCode::PAYLOAD_TOO_LARGE, Message(message)),
            Self::UnsupportedMediaType(message) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, Message(message))
            }
            Self::Unprocessable(errors) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorDetail::Fields(errors),
            ),
            Self::Unavailable { detail, cause } => {
                tracing::error!(error = %cause, "Storage cannot serve the request.");
                (StatusCode::SERVICE_UNAVAILABLE, Message(detail.to_owned()))
            }
            Self::Internal(error) => {
                tracing::error!(error = format!("{error:#}"), "Request failed.");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Message("Internal server error.".to_owned()),
                )
            }
        };
        let mut response = (status, Json(ErrorBody { detail })).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            // Storage that cannot serve now (locked, unreachable, a full disk) usually can soon.
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static(RETRY_AFTER_SECONDS),
            );
        }
        response
    }
}

/// `Retry-After` on a 503: long enough for a failover or a lock to pass, short enough that a
/// shipper's buffer does not fill.
const RETRY_AFTER_SECONDS: &str = "2";

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(error: ApiError) -> (StatusCode, Value) {
        let response = error.into_response();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        (status, serde_json::from_slice(&bytes).expect("json"))
    }

    #[test]
    fn an_unavailable_store_is_a_503_with_retry_after() {
        let error = ApiError::Unavailable {
            detail: "The database is unreachable.",
            cause: "connection refused".into(),
        };
        let response = error.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()["retry-after"], "2");
    }

    #[tokio::test]
    async fn internal_errors_do_not_leak_their_cause() {
        let (status, body) =
            body_of(ApiError::Internal(anyhow::anyhow!("disk /secret full"))).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body, json!({"detail": "Internal server error."}));
    }

    #[tokio::test]
    async fn a_full_disk_is_a_503_that_says_so() {
        let full = crate::store::StoreError::Sqlite(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
            None,
        ));
        let (status, body) = body_of(full.into()).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        let detail = body["detail"].as_str().expect("a sentence");
        assert!(detail.contains("disk holding DATA_DIR is full"), "{detail}");
    }

    #[tokio::test]
    async fn an_oversized_name_from_the_ingest_service_is_a_422_at_its_log() {
        let error = crate::ingest::IngestError::NameTooLong {
            index: 3,
            field: "source",
            chars: 300,
        };
        let (status, body) = body_of(error.into()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(body["detail"][0]["type"], "string_too_long");
        assert_eq!(
            body["detail"][0]["loc"],
            json!(["body", "logs", 3, "source"])
        );
        assert_eq!(body["detail"][0]["ctx"]["max_length"], 256);
    }

    #[tokio::test]
    async fn unprocessable_errors_use_fastapis_list_shape() {
        let error = FieldError {
            kind: "missing",
            loc: vec![json!("body"), json!("logs")],
            msg: "Field required".to_owned(),
            input: json!({}),
            ctx: None,
        };
        let (status, body) = body_of(ApiError::unprocessable(error)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            body,
            json!({"detail": [{"type": "missing", "loc": ["body", "logs"], "msg": "Field required", "input": {}}]})
        );
    }
}
