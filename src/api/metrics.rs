//! GET /api/v1/metrics: the contract's counters as JSON (predictions, anomalies, feedback, model
//! accuracy, last training) plus parse errors, models and logs of untracked services; the MCP
//! door's `service_metrics` tool gives the same [`MetricsReport`].
//! GET /metrics: every figure for Prometheus ([`crate::metrics`]), and the HTTP middleware that
//! counts and times requests by route template.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::Json;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::AppState;
use crate::api::error::ApiError;
use crate::api::error::responses::{Internal, Unavailable};
use crate::metrics::{Format, HttpLabels, Metrics, OTHER_SERVICE, Snapshot};
use crate::store::StoreError;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(metrics))
        .routes(routes!(prometheus_metrics))
}

/// The service's counters since start-up (the contract's five fields first).
#[derive(Debug, Clone, Serialize, JsonSchema, ToSchema)]
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

/// Counts and times every request by method, route template and status. The route is axum's
/// [`MatchedPath`] (`/api/v1/train/{job_id}`), never the path itself, and a request no route
/// matched is `unmatched`: a scanner walking random paths adds no series.
pub async fn track_requests(
    State(metrics): State<std::sync::Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let in_flight = metrics.request_started();
    let response = next.run(request).await;
    drop(in_flight);
    let labels = HttpLabels {
        method,
        route,
        status: response.status().as_u16(),
    };
    metrics.observe_request(&labels, started.elapsed());
    response
}

/// The standard methods by name; any other (hyper accepts any token) is `other`.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::DELETE => "DELETE",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "other",
    }
}

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "metrics",
    responses(
        (status = 200, description = "The exposition.", content(
            (String = "text/plain"),
            (String = "application/openmetrics-text"),
        )),
    )
)]
/// The Prometheus exposition: OpenMetrics when the scraper's `Accept` asks for it, the 0.0.4
/// text format otherwise. Figures read from the database at scrape time (stored anomalies,
/// feedback, the alert outbox) are left out of a scrape when the database cannot answer, rather
/// than failing it: the event counters still matter most when storage is in trouble.
async fn prometheus_metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let format = Format::from_accept(headers.get(ACCEPT).and_then(|v| v.to_str().ok()));
    let counters = &state.pipeline.counters;
    let mut snapshot = Snapshot {
        version: env!("CARGO_PKG_VERSION"),
        stored_anomalies_limit: state.settings.max_recent_anomalies as u64,
        anomalies_pruned: state.store.anomalies_pruned(),
        fields_dropped: counters.fields_dropped.load(Ordering::Relaxed),
        untracked_service_logs: state.learner.untracked_logs(),
        ..Snapshot::default()
    };
    state.alerts.fill_snapshot(&mut snapshot).await;
    snapshot.stored_anomalies = readable(state.store.count_anomalies().await);
    snapshot.feedback_records = readable(state.store.feedback_count().await);
    let models = state.detector.models.snapshot();
    snapshot.models = models.len() as u64;
    // Services beyond the bound share one series showing the oldest of their models.
    let mut trained: BTreeMap<String, f64> = BTreeMap::new();
    for model in models.values() {
        let label = state.metrics.service_label(&model.service);
        let at = model.trained_at.timestamp_millis() as f64 / 1000.0;
        let slot = trained.entry(label.to_owned()).or_insert(at);
        if label == OTHER_SERVICE {
            *slot = slot.min(at);
        }
    }
    snapshot.model_trained = trained.into_iter().collect();
    let body = state.metrics.encode(&snapshot, format);
    ([(CONTENT_TYPE, format.content_type())], body).into_response()
}

fn readable(read: Result<u64, StoreError>) -> Option<u64> {
    match read {
        Ok(value) => Some(value),
        Err(error) => {
            tracing::warn!(%error, "A figure for /metrics could not be read from the database.");
            None
        }
    }
}

/// The contract's counters as JSON (`/metrics` has every figure for Prometheus).
#[utoipa::path(
    get,
    path = "/api/v1/metrics",
    tag = "metrics",
    responses(
        (status = 200, description = "The counters.", body = MetricsReport),
        Internal, Unavailable,
    )
)]
async fn metrics(State(state): State<AppState>) -> Result<Json<MetricsReport>, ApiError> {
    Ok(Json(MetricsReport::collect(&state).await?))
}
