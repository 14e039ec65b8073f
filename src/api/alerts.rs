//! GET /api/v1/alerts and GET /api/v1/alerts/stats: what fired, and where it was delivered (the
//! alert system itself is `crate::alert`).
//!
//! Webhook URLs and routing keys are never part of a response: deliveries show the channel's
//! name, the HTTP status and a redacted error only.

use std::collections::HashMap;

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::alert::lifecycle::AlertState;
use crate::alert::{AlertQuery, StoredAlert};
use crate::api::AppState;
use crate::api::anomalies::query_error;
use crate::api::error::ApiError;
use crate::api::error::responses::{BadRequest, Internal, Unavailable, Unprocessable};
use crate::api::extract::ApiQuery;

/// The most alerts one GET returns.
pub const MAX_LIMIT: usize = 1000;
const DEFAULT_LIMIT: usize = 100;

/// The alert routes, merged into `api::router()`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_alerts))
        .routes(routes!(alert_stats))
}

/// An alert's state (documentation of the `state` parameter).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
enum AlertStateFilter {
    Firing,
    Resolved,
}

/// Parses `limit`, `service` and `state`, reporting every bad one in FastAPI's 422 shape.
fn parse_query(params: &HashMap<String, String>) -> Result<AlertQuery, ApiError> {
    let mut errors = Vec::new();
    let limit = match params.get("limit") {
        None => DEFAULT_LIMIT,
        Some(raw) => match raw.trim().parse::<usize>() {
            Ok(n) if n <= MAX_LIMIT => n,
            _ => {
                errors.push(query_error(
                    "limit",
                    "less_than_equal",
                    &format!("Input should be a whole number from 0 to {MAX_LIMIT}"),
                    raw,
                ));
                0
            }
        },
    };
    let state = params.get("state").and_then(|raw| match raw.as_str() {
        "firing" => Some(AlertState::Firing),
        "resolved" => Some(AlertState::Resolved),
        _ => {
            errors.push(query_error(
                "state",
                "enum",
                "Input should be 'firing' or 'resolved'",
                raw,
            ));
            None
        }
    });
    if !errors.is_empty() {
        return Err(ApiError::Unprocessable(errors));
    }
    Ok(AlertQuery {
        limit,
        service: params.get("service").cloned(),
        state,
    })
}

/// Stored alerts, newest first, each with its state, counts and deliveries per channel.
#[utoipa::path(
    get,
    path = "/api/v1/alerts",
    tag = "alerts",
    params(
        ("limit" = Option<i64>, Query, minimum = 0, maximum = 1000, description = "The most alerts returned (default 100)."),
        ("service" = Option<String>, Query, description = "Only this service's."),
        ("state" = inline(Option<AlertStateFilter>), Query, description = "Only firing or only resolved ones."),
    ),
    responses(
        (status = 200, description = "The alerts.", body = Vec<Object>),
        BadRequest, Unprocessable, Internal, Unavailable,
    )
)]
async fn list_alerts(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<HashMap<String, String>>,
) -> Result<Json<Vec<StoredAlert>>, ApiError> {
    let query = parse_query(&params)?;
    Ok(Json(state.alerts.list(query).await?))
}

/// Counts since start-up, and the outbox per channel and status.
#[utoipa::path(
    get,
    path = "/api/v1/alerts/stats",
    tag = "alerts",
    responses(
        (status = 200, description = "The figures.", body = Object),
        Internal, Unavailable,
    )
)]
async fn alert_stats(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    Ok(Json(state.alerts.stats().await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::api::query_params as params;

    #[test]
    fn the_query_defaults_and_filters() {
        let query = parse_query(&params(&[])).expect("valid");
        assert_eq!(query.limit, DEFAULT_LIMIT);
        let query = parse_query(&params(&[
            ("limit", "5"),
            ("state", "firing"),
            ("service", "db"),
        ]))
        .expect("valid");
        assert_eq!(query.limit, 5);
        assert_eq!(query.state, Some(AlertState::Firing));
        assert_eq!(query.service.as_deref(), Some("db"));
    }

    #[test]
    fn every_bad_parameter_is_a_422_entry() {
        let Err(ApiError::Unprocessable(errors)) =
            parse_query(&params(&[("limit", "-1"), ("state", "open")]))
        else {
            panic!("expected a 422");
        };
        let names: Vec<_> = errors.iter().map(|e| e.loc[1].clone()).collect();
        assert_eq!(names, vec![Value::from("limit"), Value::from("state")]);
    }
}
