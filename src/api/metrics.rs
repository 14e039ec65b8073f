//! GET /api/v1/metrics: the contract's counters as JSON (predictions, anomalies, feedback, model
//! accuracy, last training) plus parse errors, models and logs of untracked services. The MCP
//! door's `service_metrics` tool gives the same [`MetricsReport`].

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::Serialize;

use crate::api::AppState;
use crate::api::error::ApiError;
use crate::store::StoreError;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/metrics", get(metrics))
}

/// The service's counters since start-up (the contract's five fields first).
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct MetricsReport {
    /// Logs judged.
    pub prediction_count: u64,
    /// Logs judged anomalous.
    pub anomaly_count: u64,
    /// When a model was last fitted; null before the first.
    pub last_trained: Option<DateTime<Utc>>,
    /// Feedback labels stored.
    pub feedback_received: u64,
    /// The share of labeled logs the current rules and models judge as the labels say; null
    /// without feedback.
    pub model_accuracy: Option<f64>,
    /// Logs that could not be parsed.
    pub parse_errors: u64,
    /// Services with a model.
    pub models: usize,
    /// Logs of services beyond MAX_TRACKED_SERVICES, judged but not learned from.
    pub untracked_service_logs: u64,
    pub tracked_slots_given_back: u64,
    /// Fields ignored for MAX_FEATURES_PER_LOG or MAX_FIELD_NAME_CHARS.
    pub fields_dropped: u64,
    pub logs_with_fields_dropped: u64,
    pub features_beyond_service_width: u64,
}

impl MetricsReport {
    /// Reads the counters and the feedback figures.
    ///
    /// # Errors
    /// The feedback cannot be read.
    pub async fn collect(state: &AppState) -> Result<Self, StoreError> {
        let counters = &state.pipeline.counters;
        let feedback_received = state.store.feedback_count().await?;
        let model_accuracy = state.learner.model_accuracy().await?;
        Ok(Self {
            prediction_count: counters.predictions.load(Ordering::Relaxed),
            anomaly_count: counters.anomalies.load(Ordering::Relaxed),
            last_trained: state.learner.last_trained(),
            feedback_received,
            model_accuracy,
            parse_errors: counters.parse_errors.load(Ordering::Relaxed),
            models: state.detector.models.len(),
            untracked_service_logs: state.learner.untracked_logs(),
            tracked_slots_given_back: state.learner.tracked_slots_given_back(),
            fields_dropped: counters.fields_dropped.load(Ordering::Relaxed),
            logs_with_fields_dropped: counters.logs_with_fields_dropped.load(Ordering::Relaxed),
            features_beyond_service_width: state.learner.features_beyond_width(),
        })
    }
}

async fn metrics(State(state): State<AppState>) -> Result<Json<MetricsReport>, ApiError> {
    Ok(Json(MetricsReport::collect(&state).await?))
}
