//! GET /health, GET / and GET /api/v1/: liveness, readiness and the original's banners.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{SecondsFormat, Utc};
use serde_json::json;

use crate::app::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/", get(root))
        .route("/api/v1/", get(api_root))
}

async fn health(State(state): State<AppState>) -> impl IntoResponse {
    let timestamp = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
    let version = env!("CARGO_PKG_VERSION");
    match state.store.check_writable().await {
        Ok(()) => (
            StatusCode::OK,
            Json(json!({"status": "ok", "timestamp": timestamp, "version": version})),
        ),
        Err(error) => {
            tracing::error!(%error, "Health check failed: storage is not writable.");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({
                    "status": "unhealthy",
                    "timestamp": timestamp,
                    "version": version,
                    "detail": "Storage is not writable.",
                })),
            )
        }
    }
}

async fn root() -> Json<&'static str> {
    Json("AIOps MCP Isolation Forest Service is running.")
}

async fn api_root() -> Json<serde_json::Value> {
    Json(json!({"message": "AIOps Anomaly Detection Service is active."}))
}
