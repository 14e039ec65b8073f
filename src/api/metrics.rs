//! GET /api/v1/metrics: the contract's counters as JSON (predictions, anomalies, feedback, model
//! accuracy, last training) plus parse errors, models and logs of untracked services.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::api::AppState;
use crate::api::error::ApiError;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/metrics", get(metrics))
}

async fn metrics(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let counters = &state.pipeline.counters;
    let feedback_received = state.store.feedback_count().await?;
    let model_accuracy = state.learner.model_accuracy().await?;
    Ok(Json(json!({
        "prediction_count": counters.predictions.load(Ordering::Relaxed),
        "anomaly_count": counters.anomalies.load(Ordering::Relaxed),
        "last_trained": state.learner.last_trained(),
        "feedback_received": feedback_received,
        "model_accuracy": model_accuracy,
        "parse_errors": counters.parse_errors.load(Ordering::Relaxed),
        "models": state.detector.models.len(),
        "untracked_service_logs": state.learner.untracked_logs(),
        "tracked_slots_given_back": state.learner.tracked_slots_given_back(),
        "fields_dropped": counters.fields_dropped.load(Ordering::Relaxed),
        "logs_with_fields_dropped": counters.logs_with_fields_dropped.load(Ordering::Relaxed),
        "features_beyond_service_width": state.learner.features_beyond_width(),
    })))
}
