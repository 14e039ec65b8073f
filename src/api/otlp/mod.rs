//! POST /v1/logs: OTLP/HTTP log export (the OpenTelemetry protocol's HTTP transport), a front
//! door over the same [`crate::ingest::IngestService`] as REST, so a log is judged, stored,
//! counted toward rate alerts and learned from the same way whichever door it came in by.
//!
//! Following the OTLP specification ("OTLP/HTTP"):
//! - the body is protobuf (`application/x-protobuf`) or OTLP/JSON (`application/json`), gzip
//!   allowed; any other content type is 415;
//! - the body is read within `MAX_BODY_BYTES`, counted after decompression: 413 beyond it;
//! - a body that does not decode is 400 with a `google.rpc.Status` (and a `BadRequest` detail);
//! - success is 200 with an `ExportLogsServiceResponse` in the request's encoding, whose
//!   `partial_success` counts the records refused and says why;
//! - when the service sheds load (more than `OTLP_MAX_CONCURRENT_EXPORTS` exports under way) it
//!   answers 429, and 503 when storage cannot take the batch or the request times out, both with
//!   `Retry-After`.
//!
//! `decode.rs` reads the body, `map.rs` turns records into [`crate::parse::RawLog`]s, `status.rs`
//! writes the responses.

mod decode;
mod map;
mod status;

use std::time::Duration;

use axum::Router;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::response::Response;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsPartialSuccess;

pub use self::status::Encoding;
use self::status::Failure;
use crate::api::AppState;
use crate::api::body::{BodyRefused, read_limited};
use crate::api::error::ApiError;
use crate::ingest::IngestError;

/// The OTLP/HTTP path for logs.
pub const LOGS_PATH: &str = "/v1/logs";

/// `Retry-After` for an export refused while too many are under way: they finish in well under a
/// second at the usual batch sizes.
const SHED_RETRY_AFTER_SECONDS: u64 = 1;
/// `Retry-After` when storage or the request deadline failed: a busy or full disk takes longer.
const UNAVAILABLE_RETRY_AFTER_SECONDS: u64 = 5;

pub fn router() -> Router<AppState> {
    Router::new().route(LOGS_PATH, post(export_logs))
}

#[tracing::instrument(skip_all, fields(records))]
async fn export_logs(State(state): State<AppState>, request: Request) -> Response {
    let Some(encoding) = Encoding::of(request.headers()) else {
        let shown: String = request
            .headers()
            .get(CONTENT_TYPE)
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
            .unwrap_or_else(|| "none".to_owned())
            .chars()
            .take(100)
            .collect();
        // The request's own encoding is unknown; a Status is protobuf by default.
        return Failure::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "Content-Type {shown:?} is not an OTLP/HTTP encoding; send \
                 application/x-protobuf or application/json."
            ),
        )
        .respond(Encoding::Protobuf);
    };
    match export(&state, request, encoding).await {
        Ok(partial) => status::success(encoding, partial),
        Err(failure) => failure.respond(encoding),
    }
}

/// Reads, decodes, maps and ingests one export; the partial success to report, if any.
async fn export(
    state: &AppState,
    request: Request,
    encoding: Encoding,
) -> Result<Option<ExportLogsPartialSuccess>, Failure> {
    let Ok(_permit) = state.otlp_exports.clone().try_acquire_owned() else {
        tracing::warn!(
            limit = state.settings.otlp_max_concurrent_exports,
            "OTLP export refused: too many under way (OTLP_MAX_CONCURRENT_EXPORTS)."
        );
        return Err(Failure::retry_after(
            StatusCode::TOO_MANY_REQUESTS,
            SHED_RETRY_AFTER_SECONDS,
            format!(
                "More than {} OTLP exports are under way (OTLP_MAX_CONCURRENT_EXPORTS); retry \
                 after the pause in Retry-After.",
                state.settings.otlp_max_concurrent_exports
            ),
        ));
    };
    let bytes = read_limited(request, state.settings.max_body_bytes)
        .await
        .map_err(refused)?;
    let decoded = decode::decode(encoding, &bytes)?;
    drop(bytes);
    let mut rejections = map::Rejections::default();
    let mut logs = map::raw_logs(decoded.request, &mut rejections);
    tracing::Span::current().record("records", logs.len() as u64 + rejections.count());
    // A collector's batch may hold more records than one ingest batch may
    // (MAX_LOGS_PER_REQUEST): it is judged in several, in order.
    let chunk = state.settings.max_logs_per_request.max(1);
    while !logs.is_empty() {
        let rest = logs.split_off(chunk.min(logs.len()));
        let results = state
            .ingest
            .ingest(std::mem::replace(&mut logs, rest), None)
            .await
            .map_err(ingest_failure)?;
        for error in results.into_iter().filter_map(|result| result.error) {
            rejections.add(error);
        }
    }
    let warning = decode::ignored_keys_warning(&decoded.ignored_keys);
    Ok(match (rejections.count(), warning) {
        (0, None) => None,
        (0, Some(warning)) => Some(ExportLogsPartialSuccess {
            rejected_log_records: 0,
            error_message: warning,
        }),
        (count, warning) => Some(ExportLogsPartialSuccess {
            rejected_log_records: i64::try_from(count).unwrap_or(i64::MAX),
            error_message: match warning {
                None => rejections.message(),
                Some(warning) => format!("{} {warning}", rejections.message()),
            },
        }),
    })
}

/// A body refused while it was read: the same status as for REST, as a `Status`.
fn refused(refusal: BodyRefused) -> Failure {
    let (status, message) = match refusal.error {
        ApiError::PayloadTooLarge(message) => (StatusCode::PAYLOAD_TOO_LARGE, message),
        ApiError::UnsupportedMediaType(message) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, message),
        ApiError::BadRequest(message) => (StatusCode::BAD_REQUEST, message),
        other => (StatusCode::BAD_REQUEST, other.to_string()),
    };
    Failure {
        close: true,
        accept_gzip: refusal.coding,
        ..Failure::new(status, message)
    }
}

/// The ingest service's refusals as OTLP failures: temporary storage trouble is a 503 to retry.
fn ingest_failure(error: IngestError) -> Failure {
    match error {
        IngestError::Storage(error) => match error.unavailable_reason() {
            Some(reason) => {
                tracing::error!(%error, "Storage cannot take an OTLP export.");
                Failure::retry_after(
                    StatusCode::SERVICE_UNAVAILABLE,
                    UNAVAILABLE_RETRY_AFTER_SECONDS,
                    reason,
                )
            }
            None => {
                tracing::error!(%error, "An OTLP export failed in storage.");
                Failure::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error.")
            }
        },
        // The mapping keeps batches within these limits; should one slip through, it is the
        // request's fault.
        other => Failure::bad_data("resourceLogs", other.to_string()),
    }
}

/// Present on a request to [`LOGS_PATH`] with an OTLP content type: the timeout handler answers
/// such a request the OTLP way (`timed_out`). Costs REST requests one path comparison.
#[derive(Debug, Clone, Copy)]
pub struct OtlpRequest(pub Option<Encoding>);

impl<S: Send + Sync> FromRequestParts<S> for OtlpRequest {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(if parts.uri.path() == LOGS_PATH {
            Encoding::of(&parts.headers)
        } else {
            None
        }))
    }
}

/// 503 with `Retry-After` for an export that ran past `REQUEST_TIMEOUT_SECONDS`.
pub fn timed_out(encoding: Encoding, timeout: Duration) -> Response {
    Failure::retry_after(
        StatusCode::SERVICE_UNAVAILABLE,
        UNAVAILABLE_RETRY_AFTER_SECONDS,
        format!(
            "The export timed out after {:.0} s (REQUEST_TIMEOUT_SECONDS); retry after the \
             pause in Retry-After.",
            timeout.as_secs_f64()
        ),
    )
    .respond(encoding)
}
