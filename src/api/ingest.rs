//! POST /api/v1/stream/multi-source: one result per input log, in input order.

use std::collections::BTreeMap;
use std::time::Instant;

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::AppState;
use crate::api::body::{Checker, JsonBody, body_loc, check_names, child, objects};
use crate::api::error::ApiError;
use crate::api::error::responses::{
    BadRequest, Internal, PayloadTooLarge, Unavailable, Unprocessable, UnsupportedMediaType,
};
use crate::ingest::LogResult;
use crate::metrics::Stage;
use crate::parse::RawLog;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(ingest_logs))
}

/// The contract's body: `{"logs": [RawLog…], "tags": {str: str}?}`.
#[derive(Debug, PartialEq, Deserialize, ToSchema)]
pub struct IngestRequest {
    /// At least one log (an empty list is the contract's 400), at most MAX_LOGS_PER_REQUEST (413).
    #[serde(deserialize_with = "objects")]
    #[schema(min_items = 1)]
    pub logs: Vec<RawLog>,
    /// Stored with the batch's anomalies, in their `metadata.tags`.
    #[serde(default)]
    pub tags: Option<BTreeMap<String, String>>,
}

impl IngestRequest {
    pub(super) fn check(checker: &mut Checker, body: &Value) -> Option<Self> {
        let loc = body_loc();
        let object = checker.object(body, &loc)?;
        let logs = checker.raw_logs(object, "logs", &loc);
        let tags = checker.optional_string_map(object, "tags", &loc);
        Some(Self {
            logs: logs?,
            tags: tags?,
        })
    }
}

/// Judges a batch of logs: one result per input log, in input order. A log that cannot be parsed
/// is a result with `error`, never a refusal of the batch.
#[utoipa::path(
    post,
    path = "/api/v1/stream/multi-source",
    tag = "logs",
    request_body = IngestRequest,
    responses(
        (status = 200, description = "One result per input log, in order.", body = Vec<LogResult>),
        BadRequest, PayloadTooLarge, UnsupportedMediaType, Unprocessable, Internal, Unavailable,
    )
)]
#[tracing::instrument(skip_all, fields(logs))]
async fn ingest_logs(
    State(state): State<AppState>,
    body: JsonBody,
) -> Result<Json<Vec<LogResult>>, ApiError> {
    let decoding = Instant::now();
    let request = body.decode(IngestRequest::check)?;
    state
        .metrics
        .observe_stage(Stage::Decode, decoding.elapsed());
    tracing::Span::current().record("logs", request.logs.len());
    check_names(
        request
            .logs
            .iter()
            .enumerate()
            .map(|(index, log)| (child(&child(&body_loc(), "logs"), index), log)),
    )?;
    let tags = request.tags.map(|tags| {
        tags.into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect::<Map<String, Value>>()
    });
    let results = state.ingest.ingest(request.logs, tags).await?;
    Ok(Json(results))
}
