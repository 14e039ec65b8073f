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

/// Ready when storage takes a write right now and the disk holding it has room
/// (`MIN_FREE_DISK_BYTES`); 503 with the reason otherwise, so an orchestrator stops sending logs
/// that could not be stored.
async fn health(State(state): State<AppState>) -> impl IntoResponse {
    let timestamp = crate::rfc3339::millis(&Utc::now());
    let version = env!("CARGO_PKG_VERSION");
    match readiness(&state).await {
        Ok(()) => (
            StatusCode::OK,
            Json(json!({"status": "ok", "timestamp": timestamp, "version": version})),
        ),
        Err(problem) => {
            tracing::error!(%problem, "Health check failed.");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({
                    "status": "unhealthy",
                    "timestamp": timestamp,
                    "version": version,
                    "detail": problem,
                })),
            )
        }
    }
}

async fn readiness(state: &AppState) -> Result<(), String> {
    let minimum = state.settings.min_free_disk_bytes;
    if minimum > 0 {
        match state.store.free_bytes() {
            Ok(free) if free < minimum => {
                return Err(format!(
                    "The disk holding DATA_DIR has {} MiB free, below MIN_FREE_DISK_BYTES ({} MiB).",
                    free >> 20,
                    minimum >> 20
                ));
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "Free space on DATA_DIR's disk is unknown."),
        }
    }
    // A probe must answer even when storage hangs; the store itself gives up on a lock in 0.5 s.
    match tokio::time::timeout(HEALTH_DEADLINE, state.store.check_writable()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => {
            tracing::error!(%error, "Storage is not writable.");
            Err(error
                .unavailable_reason()
                .unwrap_or("Storage is not writable.")
                .to_owned())
        }
        Err(_) => Err(format!(
            "Storage did not answer a write within {} s.",
            HEALTH_DEADLINE.as_secs()
        )),
    }
}

async fn root() -> Json<&'static str> {
    Json("AIOps MCP Isolation Forest Service is running.")
}

async fn api_root() -> Json<serde_json::Value> {
    Json(json!({"message": "AIOps Anomaly Detection Service is active."}))
}
