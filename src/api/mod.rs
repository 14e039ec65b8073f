//! The HTTP edge: extract, call the domain, shape the reply. Routes sit next to their handlers.

pub mod alerts;
pub mod anomalies;
pub mod auth;
pub mod body;
pub mod docs;
pub mod error;
pub mod extract;
pub mod feedback;
pub mod health;
pub mod ingest;
pub mod mcp;
pub mod metrics;
pub mod otlp;
mod state;
pub mod training;

pub use state::AppState;

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::extract::MatchedPath;
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{BoxError, Json, Router};
use serde_json::json;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::decompression::RequestDecompressionLayer;
use tower_http::trace::TraceLayer;
use utoipa_axum::router::OpenApiRouter;

/// Every route, with tracing, a request timeout, a panic guard, gzip request bodies decoded and,
/// when `API_TOKEN` is set, the token check (`auth`).
///
/// Some refusals never reach the router: hyper answers a request it cannot parse (400), one
/// whose head is too large (431) or whose URI is too long (414) itself, with an empty body, and
/// closes the connection. It writes those responses in its HTTP/1 state machine
/// (`proto/h1/role.rs`, `on_error`), before any service runs, and offers no hook for their
/// body; a `{"detail": …}` there would need a parser of our own in front of hyper's.
pub fn router(state: AppState) -> Router {
    let (routes, document) = documented_routes();
    let routes = routes
        .merge(docs::router(document))
        .merge(otlp::router())
        .merge(mcp::router(&state));
    layered(routes, state)
}

/// OTLP's routes alone (POST /v1/logs), with the same layers (access control and request metrics
/// included): what the OTLP/HTTP port (`OTLP_HTTP_PORT`, 4318 by convention) serves, so a
/// collector works with its defaults.
pub fn otlp_router(state: AppState) -> Router {
    layered(otlp::router(), state)
}

fn layered(routes: Router<AppState>, state: AppState) -> Router {
    let timeout = state.settings.request_timeout;
    let metrics = Arc::clone(&state.metrics);
    let access = state.settings.api_token.clone().map(|token| {
        Arc::new(auth::AccessControl::new(
            token,
            state.settings.api_token_for_reads,
        ))
    });
    let routes = routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state);
    // Without a token there is no layer at all: an open service pays nothing for access control.
    let routes = match access {
        Some(access) => routes.layer(axum::middleware::from_fn_with_state(
            access,
            auth::require_token,
        )),
        None => routes,
    };
    routes.layer(
        ServiceBuilder::new()
            .layer(
                TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
                    let path = request
                        .extensions()
                        .get::<MatchedPath>()
                        .map_or("unmatched", MatchedPath::as_str);
                    tracing::info_span!("request", method = %request.method(), path)
                }),
            )
            // Outside the panic guard and the timeout, so their 500s and 503s are counted (and
            // the access control's 401s, which sit inside).
            .layer(axum::middleware::from_fn_with_state(
                metrics,
                metrics::track_requests,
            ))
            .layer(CatchPanicLayer::custom(panic_response))
            .layer(HandleErrorLayer::new(
                move |otlp: otlp::OtlpRequest, error: BoxError| {
                    timeout_response(otlp, error, timeout)
                },
            ))
            .timeout(timeout)
            .layer(axum::middleware::map_request(
                body::normalize_content_encoding,
            ))
            // Other codings pass through with their header, and the body extractor answers
            // them 415 with a detail (tower-http's own 415 has an empty body).
            .layer(RequestDecompressionLayer::new().pass_through_unaccepted(true)),
    )
}

/// Every area's routes, and the OpenAPI description their handlers give.
fn documented_routes() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(docs::base())
        .merge(health::router())
        .merge(ingest::router())
        .merge(anomalies::router())
        .merge(training::router())
        .merge(feedback::router())
        .merge(metrics::router())
        .merge(alerts::router())
        .split_for_parts()
}

async fn not_found() -> impl IntoResponse {
    (StatusCode::NOT_FOUND, Json(json!({"detail": "Not Found"})))
}

async fn method_not_allowed() -> impl IntoResponse {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        Json(json!({"detail": "Method Not Allowed"})),
    )
}

async fn timeout_response(otlp: otlp::OtlpRequest, error: BoxError, timeout: Duration) -> Response {
    if error.is::<tower::timeout::error::Elapsed>() {
        tracing::warn!(timeout_s = timeout.as_secs_f64(), "Request timed out.");
        if let otlp::OtlpRequest(Some(encoding)) = otlp {
            return otlp::timed_out(encoding, timeout);
        }
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"detail": format!("Request timed out after {:.0} s (REQUEST_TIMEOUT_SECONDS).", timeout.as_secs_f64())})),
        )
            .into_response()
    } else {
        tracing::error!(%error, "Request failed in a middleware.");
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"detail": "Internal server error."})),
        )
            .into_response()
    }
}

fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    tracing::error!(panic = message, "Handler panicked; this is a bug.");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Json(json!({"detail": "Internal server error."})),
    )
        .into_response()
}

/// A query string's parameters as the handlers' `Query<HashMap<…>>` extractor gives them, for
/// the query parsers' tests.
#[cfg(test)]
pub(crate) fn query_params(pairs: &[(&str, &str)]) -> std::collections::HashMap<String, String> {
    pairs
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect()
}
