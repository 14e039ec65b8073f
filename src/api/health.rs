//! GET /health, GET / and GET /api/v1/: liveness, readiness and the original's banners.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::Utc;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::AppState;

const HEALTH_DEADLINE: std::time::Duration = std::time::Duration::from_secs(2);

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(root))
        .routes(routes!(api_root))
}

/// The contract's health report; `detail` says why when unhealthy.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthReport {
    pub status: HealthStatus,
    /// RFC 3339, milliseconds.
    pub timestamp: String,
    pub version: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    Ok,
    Unhealthy,
}

/// A message, as the original's banners and acknowledgements.
#[derive(Debug, Serialize, ToSchema)]
pub struct Message {
    pub message: String,
}

/// Ready when storage takes a write right now and the disk holding it has room
/// (`MIN_FREE_DISK_BYTES`); 503 with the reason otherwise, so an orchestrator stops sending logs
/// that could not be stored.
#[utoipa::path(
    get,
    path = "/health",
    tag = "health",
    responses(
        (status = 200, description = "Ready: storage takes writes.", body = HealthReport),
        (status = 503, description = "Unhealthy: storage cannot take writes, or DATA_DIR's disk is below MIN_FREE_DISK_BYTES.", body = HealthReport),
    )
)]
async fn health(State(state): State<AppState>) -> (StatusCode, Json<HealthReport>) {
    let timestamp = crate::rfc3339::millis(&Utc::now());
    let version = env!("CARGO_PKG_VERSION");
    match readiness(&state).await {
        Ok(()) => (
            StatusCode::OK,
            Json(HealthReport {
                status: HealthStatus::Ok,
                timestamp,
                version,
                detail: None,
            }),
        ),
        Err(problem) => {
            tracing::error!(%problem, "Health check failed.");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(HealthReport {
                    status: HealthStatus::Unhealthy,
                    timestamp,
                    version,
                    detail: Some(problem),
                }),
            )
        }
    }
}

async fn readiness(state: &AppState) -> Result<(), String> {
    let minimum = state.settings.min_free_disk_bytes;
    if minimum > 0 {
        match state.store.free_bytes().unwrap_or(Ok(u64::MAX)) {
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

/// The original's banner: a JSON string.
#[utoipa::path(
    get,
    path = "/",
    tag = "health",
    responses((status = 200, description = "The service is running.", body = String, content_type = "application/json", example = json!("AIOps MCP Isolation Forest Service is running.")))
)]
async fn root() -> Json<&'static str> {
    Json("AIOps MCP Isolation Forest Service is running.")
}

/// The original's API banner.
#[utoipa::path(
    get,
    path = "/api/v1/",
    tag = "health",
    responses((status = 200, description = "The API is active.", body = Message))
)]
async fn api_root() -> Json<Message> {
    Json(Message {
        message: "AIOps Anomaly Detection Service is active.".to_owned(),
    })
}
