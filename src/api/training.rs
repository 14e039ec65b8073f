//! POST /api/v1/train, GET /api/v1/train/{job_id}, GET /api/v1/models: the learning loop's front door.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::AppState;
use crate::api::body::{Checker, JsonBody, body_loc, check_names, child, objects, too_many};
use crate::api::error::ApiError;
use crate::api::error::responses::{
    BadRequest, Conflict, Internal, NotFound, PayloadTooLarge, Unavailable, Unprocessable,
    UnsupportedMediaType,
};
use crate::api::extract::ApiPath;
use crate::detect::baseline::Baseline;
use crate::detect::models::ModelSource;
use crate::learn::JobRefused;
use crate::parse::RawLog;
use crate::store::JobStatus;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(start_training))
        .routes(routes!(training_status))
        .routes(routes!(list_models))
}

/// The contract's body: `{"logs": [RawLog…]}`.
#[derive(Debug, PartialEq, Deserialize, ToSchema)]
pub struct TrainRequest {
    /// At least one log (an empty list is the contract's 400), at most MAX_LOGS_PER_REQUEST (413).
    #[serde(deserialize_with = "objects")]
    #[schema(min_items = 1)]
    pub logs: Vec<RawLog>,
}

/// The contract's 202, plus where to follow the job.
#[derive(Debug, Serialize, ToSchema)]
pub struct TrainingStarted {
    pub message: &'static str,
    pub job_id: String,
    /// `/api/v1/train/{job_id}`.
    pub status_url: String,
}

/// A training job as recorded.
#[derive(Debug, Serialize, ToSchema)]
pub struct TrainingJob {
    pub job_id: String,
    pub status: JobStatus,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The logs posted and, once finished, the report per service or the reason it failed.
    pub detail: Value,
}

/// One serving model.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelSummary {
    pub service: String,
    /// The features it reads, in order.
    pub features: Vec<String>,
    pub training_samples: u64,
    pub trained_at: DateTime<Utc>,
    /// The forest's cut where it alone decides.
    pub threshold: f64,
    pub source: ModelSource,
    pub job_id: Option<String>,
    /// What normal means for the service: per-feature medians and ranges, categories, cuts and
    /// budget; `null` for a model file written before baselines.
    #[schema(value_type = Option<Object>)]
    pub baseline: Option<Baseline>,
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

/// Starts a training job on the posted logs: one model per service with at least
/// MIN_TRAIN_SAMPLES parseable logs. One job at a time.
#[utoipa::path(
    post,
    path = "/api/v1/train",
    tag = "models",
    request_body = TrainRequest,
    responses(
        (status = 202, description = "The job is queued.", body = TrainingStarted),
        BadRequest, Conflict, PayloadTooLarge, UnsupportedMediaType, Unprocessable, Internal,
        Unavailable,
    )
)]
async fn start_training(
    State(state): State<AppState>,
    body: JsonBody,
) -> Result<(StatusCode, Json<TrainingStarted>), ApiError> {
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
        Json(TrainingStarted {
            message: "Model retraining started in the background.",
            status_url: format!("/api/v1/train/{job_id}"),
            job_id,
        }),
    ))
}

/// A training job: queued, running, succeeded or failed, with its report.
#[utoipa::path(
    get,
    path = "/api/v1/train/{job_id}",
    tag = "models",
    params(("job_id" = String, Path, description = "The id POST /api/v1/train answered.")),
    responses(
        (status = 200, description = "The job.", body = TrainingJob),
        BadRequest, NotFound, Internal, Unavailable,
    )
)]
async fn training_status(
    State(state): State<AppState>,
    ApiPath(job_id): ApiPath<String>,
) -> Result<Json<TrainingJob>, ApiError> {
    let job = state
        .store
        .get_training_job(job_id.clone())
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("No training job {job_id}.")))?;
    Ok(Json(TrainingJob {
        job_id: job.job_id,
        status: job.status,
        created_at: job.created_at,
        started_at: job.started_at,
        finished_at: job.finished_at,
        detail: job.detail,
    }))
}

/// Every serving model, by service.
#[utoipa::path(
    get,
    path = "/api/v1/models",
    tag = "models",
    responses((status = 200, description = "The models, sorted by service.", body = Vec<ModelSummary>))
)]
async fn list_models(State(state): State<AppState>) -> Json<Vec<ModelSummary>> {
    let models = state.detector.models.snapshot();
    let mut list: Vec<ModelSummary> = models
        .values()
        .map(|model| ModelSummary {
            service: model.service.clone(),
            features: model.artifact.feature_names.clone(),
            training_samples: model.training_samples,
            trained_at: model.trained_at,
            threshold: model.threshold(),
            source: model.source,
            job_id: model.job_id.clone(),
            baseline: model.baseline.clone(),
        })
        .collect();
    list.sort_by(|a, b| a.service.cmp(&b.service));
    Json(list)
}
