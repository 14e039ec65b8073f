//! GET /health, GET / and GET /api/v1/: liveness, readiness and the original's banners.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use chrono::Utc;
use serde_json::json;

use crate::api::AppState;

const HEALTH_DEADLINE: std::time::Duration = std::time::Duration::from_secs(2);

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/", get(root))
        .route("/api/v1/", get(api_root))
}

async fn health(State(state): State<AppState>) -> impl IntoResponse {
    let timestamp = crate::rfc3339::millis(&Utc::now());
    let version = env!("CARGO_PKG_VERSION");
    // A probe must answer even when storage hangs; the store itself gives up on a lock in 0.5 s.
    let checked = tokio::time::timeout(HEALTH_DEADLINE, state.store.check_writable()).await;
    match checked
        .map_err(|_| "timed out".to_owned())
        .and_then(|r| r.map_err(|e| e.to_string()))
    {
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
