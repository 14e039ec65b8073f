//! POST /api/v1/train, GET /api/v1/train/{job_id}, GET /api/v1/models: the learning loop's front door.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::AppState;
use crate::api::body::{Checker, JsonBody, body_loc, check_names, child, objects, too_many};
use crate::api::error::ApiError;
use crate::api::extract::ApiPath;
use crate::learn::JobRefused;
use crate::parse::RawLog;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/train", post(start_training))
        .route("/api/v1/train/{job_id}", get(training_status))
        .route("/api/v1/models", get(list_models))
}

/// The contract's body: `{"logs": [RawLog…]}`.
#[derive(Debug, PartialEq, Deserialize)]
pub struct TrainRequest {
    #[serde(deserialize_with = "objects")]
    pub logs: Vec<RawLog>,
}

impl TrainRequest {
    pub(super) fn check(checker: &mut Checker, body: &Value) -> Option<Self> {
        let loc = body_loc();
        let object = checker.object(body, &loc)?;
        Some(Self {
            logs: checker.raw_logs(object, "logs", &loc)?,
        })
    }
}

async fn start_training(
    State(state): State<AppState>,
    body: JsonBody,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let request = body.decode(TrainRequest::check)?;
    if request.logs.is_empty() {
        return Err(ApiError::BadRequest(
            "No logs provided for training.".to_owned(),
        ));
    }
    let limit = state.settings.max_logs_per_request;
    if request.logs.len() > limit {
        return Err(too_many(request.logs.len(), "logs", limit));
    }
    check_names(
        request
            .logs
            .iter()
            .enumerate()
            .map(|(index, log)| (child(&child(&body_loc(), "logs"), index), log)),
    )?;
    let job_id = state
        .learner
        .start_job(request.logs)
        .await
        .map_err(|error| match error {
            JobRefused::Busy(_) => ApiError::Conflict(error.to_string()),
            JobRefused::TooManyPatterns(_) => ApiError::PayloadTooLarge(error.to_string()),
            JobRefused::Store(error) => error.into(),
        })?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "message": "Model retraining started in the background.",
            "job_id": job_id,
            "status_url": format!("/api/v1/train/{job_id}"),
        })),
    ))
}

async fn training_status(
    State(state): State<AppState>,
    ApiPath(job_id): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let job = state
        .store
        .get_training_job(job_id.clone())
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("No training job {job_id}.")))?;
    Ok(Json(json!({
        "job_id": job.job_id,
        "status": job.status,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "detail": job.detail,
    })))
}

async fn list_models(State(state): State<AppState>) -> Json<Value> {
    let models = state.detector.models.snapshot();
    let mut list: Vec<Value> = models
        .values()
        .map(|model| {
            json!({
                "service": model.service,
                "features": model.artifact.feature_names,
                "training_samples": model.training_samples,
                "trained_at": model.trained_at,
                "threshold": model.threshold(),
                "source": model.source,
                "job_id": model.job_id,
                "baseline": model.baseline,
            })
        })
        .collect();
    list.sort_by(|a, b| a["service"].as_str().cmp(&b["service"].as_str()));
    Json(Value::Array(list))
}
