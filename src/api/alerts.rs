//! GET /api/v1/alerts and GET /api/v1/alerts/stats: what fired, and where it was delivered (the
//! alert system itself is `crate::alert`).
//!
//! Webhook URLs and routing keys are never part of a response: deliveries show the channel's
//! name, the HTTP status and a redacted error only.

use std::collections::HashMap;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::Value;

use crate::alert::lifecycle::AlertState;
use crate::alert::{AlertQuery, StoredAlert};
use crate::api::AppState;
use crate::api::anomalies::query_error;
use crate::api::error::ApiError;
use crate::api::extract::ApiQuery;

/// The most alerts one GET returns.
pub const MAX_LIMIT: usize = 1000;
const DEFAULT_LIMIT: usize = 100;

/// The alert routes, merged into `api::router()`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/alerts", get(list_alerts))
        .route("/api/v1/alerts/stats", get(alert_stats))
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

async fn list_alerts(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<HashMap<String, String>>,
) -> Result<Json<Vec<StoredAlert>>, ApiError> {
    let query = parse_query(&params)?;
    Ok(Json(state.alerts.list(query).await?))
}

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
