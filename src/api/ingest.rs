//! POST /api/v1/stream/multi-source: one result per input log, in input order.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::api::AppState;
use crate::api::body::{Checker, JsonBody, body_loc, check_names, child, objects};
use crate::api::error::ApiError;
use crate::ingest::LogResult;
use crate::parse::RawLog;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/stream/multi-source", post(ingest_logs))
}

/// The contract's body: `{"logs": [RawLog…], "tags": {str: str}?}`.
#[derive(Debug, PartialEq, Deserialize)]
pub struct IngestRequest {
    #[serde(deserialize_with = "objects")]
    pub logs: Vec<RawLog>,
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

#[tracing::instrument(skip_all, fields(logs))]
async fn ingest_logs(
    State(state): State<AppState>,
    body: JsonBody,
) -> Result<Json<Vec<LogResult>>, ApiError> {
    let request = body.decode(IngestRequest::check)?;
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
