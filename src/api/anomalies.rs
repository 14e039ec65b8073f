//! GET and DELETE /api/v1/anomalies: the stored anomaly history.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::{Value, json};

use crate::api::AppState;
use crate::api::error::{ApiError, FieldError};
use crate::detect::DetectorKind;
use crate::store::{AnomalyOrder, AnomalyQuery, AnomalyRecord};

/// The most records one GET returns.
pub const MAX_LIMIT: usize = 10_000;

pub fn router() -> Router<AppState> {
    Router::new().route(
        "/api/v1/anomalies",
        get(list_anomalies).delete(clear_anomalies),
    )
}

/// One FastAPI-shaped 422 entry for a query parameter.
pub(crate) fn query_error(name: &str, kind: &'static str, msg: &str, input: &str) -> FieldError {
    FieldError {
        kind,
        loc: vec![json!("query"), json!(name)],
        msg: msg.to_owned(),
        input: Value::String(input.to_owned()),
        ctx: None,
    }
}

/// Parses `limit`, `service`, `since`, `detector`, `order`, reporting every bad one.
fn parse_query(params: &HashMap<String, String>) -> Result<AnomalyQuery, ApiError> {
    let mut errors = Vec::new();
    let limit = match params.get("limit") {
        None => 100,
        Some(raw) => match raw.trim().parse::<i64>() {
            Ok(n) if (0..=MAX_LIMIT as i64).contains(&n) => n as usize,
            Ok(_) => {
                errors.push(query_error(
                    "limit",
                    "less_than_equal",
                    &format!("Input should be between 0 and {MAX_LIMIT}"),
                    raw,
                ));
                0
            }
            Err(_) => {
                errors.push(query_error(
                    "limit",
                    "int_parsing",
                    "Input should be a valid integer, unable to parse string as an integer",
                    raw,
                ));
                0
            }
        },
    };
    let since = params.get("since").and_then(|raw| {
        let parsed = parse_instant(raw);
        if parsed.is_none() {
            errors.push(query_error(
                "since",
                "datetime_from_date_parsing",
                "Input should be a valid datetime (RFC 3339, e.g. 2024-01-01T10:00:00Z)",
                raw,
            ));
        }
        parsed
    });
    let detector = params.get("detector").and_then(|raw| match raw.as_str() {
        "rule" => Some(DetectorKind::Rule),
        "model" => Some(DetectorKind::Model),
        _ => {
            errors.push(query_error(
                "detector",
                "enum",
                "Input should be 'rule' or 'model'",
                raw,
            ));
            None
        }
    });
    let order = match params.get("order").map(String::as_str) {
        None | Some("time") => AnomalyOrder::Time,
        Some("score") => AnomalyOrder::Score,
        Some(raw) => {
            errors.push(query_error(
                "order",
                "enum",
                "Input should be 'time' or 'score'",
                raw,
            ));
            AnomalyOrder::Time
        }
    };
    if !errors.is_empty() {
        return Err(ApiError::Unprocessable(errors));
    }
    Ok(AnomalyQuery {
        limit,
        service: params.get("service").cloned(),
        since,
        detector,
        order,
    })
}

fn parse_instant(raw: &str) -> Option<DateTime<Utc>> {
    if let Ok(instant) = DateTime::parse_from_rfc3339(raw.trim()) {
        return Some(instant.with_timezone(&Utc));
    }
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(raw.trim(), format).ok())
        .map(|naive| naive.and_utc())
}

async fn list_anomalies(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Vec<AnomalyRecord>>, ApiError> {
    let query = parse_query(&params)?;
    let records = state.store.list_anomalies(query).await?;
    Ok(Json(records))
}

async fn clear_anomalies(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let removed = state.store.clear_anomalies().await?;
    tracing::info!(removed, "Anomaly history cleared.");
    Ok(Json(
        json!({"message": "All anomaly records have been cleared."}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::api::query_params as params;

    #[test]
    fn the_default_query_is_the_newest_hundred() {
        let query = parse_query(&HashMap::new()).expect("valid");
        assert_eq!(query.limit, 100);
        assert!(matches!(query.order, AnomalyOrder::Time));
    }

    #[test]
    fn every_bad_parameter_is_reported() {
        let Err(ApiError::Unprocessable(errors)) = parse_query(&params(&[
            ("limit", "ten"),
            ("since", "yesterday"),
            ("detector", "magic"),
            ("order", "random"),
        ])) else {
            panic!("expected 422");
        };
        let names: Vec<_> = errors.iter().map(|e| e.loc[1].clone()).collect();
        assert_eq!(
            names,
            [
                json!("limit"),
                json!("since"),
                json!("detector"),
                json!("order")
            ]
        );
    }

    #[test]
    fn naive_since_is_utc() {
        let query = parse_query(&params(&[("since", "2024-01-01T10:00:00")])).expect("valid");
        assert_eq!(
            query.since.map(|s| s.to_rfc3339()),
            Some("2024-01-01T10:00:00+00:00".to_owned())
        );
    }
}
