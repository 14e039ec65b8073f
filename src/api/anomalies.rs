//! GET and DELETE /api/v1/anomalies: the stored anomaly history.

use std::collections::HashMap;

use std::ops::ControlFlow;
use std::time::Duration;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDateTime, Utc};
use futures_util::StreamExt;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::AppState;
use crate::api::body::name_too_long;
use crate::api::error::responses::{BadRequest, Internal, Unavailable, Unprocessable};
use crate::api::error::{ApiError, FieldError};
use crate::api::extract::ApiQuery;
use crate::api::health::Message;
use crate::detect::DetectorKind;
use crate::parse::MAX_NAME_CHARS;
use crate::store::{AnomalyOrder, AnomalyQuery, AnomalyRecord, StoreError};

/// The most records one GET returns.
pub const MAX_LIMIT: usize = 10_000;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_anomalies, clear_anomalies))
}

/// The order of a listing (documentation of the `order` parameter).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
enum ListingOrder {
    /// Newest first.
    Time,
    /// Most anomalous first.
    Score,
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

/// Parses `limit`, `service`, `since`, `detector`, `max_score`, `order`, reporting every bad one.
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
    let max_score = params.get("max_score").and_then(|raw| {
        let parsed = raw
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|score| score.is_finite());
        if parsed.is_none() {
            errors.push(query_error(
                "max_score",
                "float_parsing",
                "Input should be a valid finite number",
                raw,
            ));
        }
        parsed
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
        max_score,
        order,
    })
}

/// An instant in RFC 3339, or ISO 8601 without an offset (UTC).
pub(crate) fn parse_instant(raw: &str) -> Option<DateTime<Utc>> {
    if let Ok(instant) = DateTime::parse_from_rfc3339(raw.trim()) {
        return Some(instant.with_timezone(&Utc));
    }
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(raw.trim(), format).ok())
        .map(|naive| naive.and_utc())
}

/// The listing goes out in pieces of about this size.
const LISTING_CHUNK_BYTES: usize = 64 * 1024;
/// Pieces serialised ahead of the client: a listing holds at most this many (plus one record) in
/// memory, whatever its limit and however large its records.
const LISTING_CHUNKS_AHEAD: usize = 2;

/// Stored anomalies, newest (or most anomalous) first.
///
/// Streams the JSON array from the database: the first piece is awaited before the status is
/// sent, so a query that fails at once is still a clean error; a failure later cuts the response
/// short (the client sees a truncated body, never a well-formed partial list).
#[utoipa::path(
    get,
    path = "/api/v1/anomalies",
    tag = "anomalies",
    params(
        ("limit" = Option<i64>, Query, minimum = 0, maximum = 10000, description = "The most records returned (default 100)."),
        ("service" = Option<String>, Query, description = "Only this service's."),
        ("since" = Option<DateTime<Utc>>, Query, description = "Only those logged at or after this instant (RFC 3339; a naive one is UTC)."),
        ("detector" = Option<DetectorKind>, Query, description = "Only those this detector flagged."),
        ("max_score" = Option<f64>, Query, description = "Only those scored at or below this (a lower score is more anomalous)."),
        ("order" = inline(Option<ListingOrder>), Query, description = "`time` (default) or `score`."),
    ),
    responses(
        (status = 200, description = "The anomalies.", body = Vec<AnomalyRecord>),
        BadRequest, Unprocessable, Internal, Unavailable,
    )
)]
async fn list_anomalies(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let query = parse_query(&params)?;
    let (sender, mut pieces) = mpsc::channel(LISTING_CHUNKS_AHEAD);
    let writer = ListingWriter {
        buffer: Vec::with_capacity(LISTING_CHUNK_BYTES),
        first: true,
        sender: sender.clone(),
        runtime: tokio::runtime::Handle::current(),
        patience: state.settings.request_timeout,
        gone: false,
    };
    let store = state.store.clone();
    tokio::spawn(async move {
        match store
            .scan_anomalies(query, writer, ListingWriter::push)
            .await
        {
            Ok(writer) => writer.finish().await,
            Err(error) => {
                let _ = sender.send(Err(error)).await;
            }
        }
    });
    let first = match pieces.recv().await {
        Some(Ok(piece)) => piece,
        Some(Err(error)) => return Err(error.into()),
        None => {
            return Err(ApiError::Internal(anyhow::anyhow!(
                "the anomaly listing ended before it began"
            )));
        }
    };
    let rest = futures_util::stream::unfold(pieces, |mut pieces| async move {
        let piece = pieces.recv().await?;
        if let Err(error) = &piece {
            tracing::error!(%error, "An anomaly listing failed mid-way; its response is cut short.");
        }
        Some((piece, pieces))
    });
    let body = futures_util::stream::iter([Ok::<Bytes, StoreError>(first)]).chain(rest);
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(body),
    )
        .into_response())
}

/// Serialises records into pieces of the listing's JSON array and hands them to the response as
/// the client takes them. Runs on the store's blocking thread.
struct ListingWriter {
    buffer: Vec<u8>,
    first: bool,
    sender: mpsc::Sender<Result<Bytes, StoreError>>,
    runtime: tokio::runtime::Handle,
    /// How long a client may leave a piece untaken before the listing is abandoned.
    patience: Duration,
    gone: bool,
}

impl ListingWriter {
    fn push(&mut self, record: AnomalyRecord) -> ControlFlow<()> {
        self.buffer.push(if self.first { b'[' } else { b',' });
        self.first = false;
        if let Err(error) = serde_json::to_writer(&mut self.buffer, &record) {
            tracing::error!(%error, id = record.id, "An anomaly could not be serialised.");
            self.buffer.extend_from_slice(b"null");
        }
        if self.buffer.len() < LISTING_CHUNK_BYTES {
            return ControlFlow::Continue(());
        }
        let piece = Bytes::from(std::mem::replace(
            &mut self.buffer,
            Vec::with_capacity(LISTING_CHUNK_BYTES),
        ));
        let sent = self.runtime.block_on(tokio::time::timeout(
            self.patience,
            self.sender.send(Ok(piece)),
        ));
        if matches!(sent, Ok(Ok(()))) {
            ControlFlow::Continue(())
        } else {
            // The client went away, or took nothing for a whole request timeout.
            self.gone = true;
            ControlFlow::Break(())
        }
    }

    async fn finish(mut self) {
        if self.gone {
            return;
        }
        if self.first {
            self.buffer.push(b'[');
        }
        self.buffer.push(b']');
        let piece = Bytes::from(self.buffer);
        let _ = tokio::time::timeout(self.patience, self.sender.send(Ok(piece))).await;
    }
}

/// What DELETE may be narrowed by: `service` alone. Any other parameter is refused (422) rather
/// than ignored: ignoring `?service=x` once cleared every service's history (issue #17 row 13),
/// and a misspelt filter must not do the same.
fn parse_delete_query(params: &HashMap<String, String>) -> Result<Option<String>, ApiError> {
    let mut errors: Vec<FieldError> = params
        .iter()
        .filter(|(name, _)| name.as_str() != "service")
        .map(|(name, value)| {
            query_error(
                name,
                "extra_forbidden",
                "Extra inputs are not permitted",
                value,
            )
        })
        .collect();
    errors.sort_by(|a, b| {
        a.loc
            .get(1)
            .map(Value::to_string)
            .cmp(&b.loc.get(1).map(Value::to_string))
    });
    let service = params.get("service");
    if let Some(service) = service {
        let chars = service.chars().count();
        if chars > MAX_NAME_CHARS {
            errors.push(name_too_long(vec![json!("query"), json!("service")], chars));
        }
    }
    if errors.is_empty() {
        Ok(service.cloned())
    } else {
        Err(ApiError::Unprocessable(errors))
    }
}

/// Clears the whole history, or with `?service=x` that service's records only.
#[utoipa::path(
    delete,
    path = "/api/v1/anomalies",
    tag = "anomalies",
    params(
        ("service" = Option<String>, Query, max_length = 256, description = "Only this service's records; any other parameter is refused (422)."),
    ),
    responses(
        (status = 200, description = "Cleared.", body = Message),
        BadRequest, Unprocessable, Internal, Unavailable,
    )
)]
async fn clear_anomalies(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<HashMap<String, String>>,
) -> Result<Json<Message>, ApiError> {
    let service = parse_delete_query(&params)?;
    let removed = state.store.clear_anomalies(service.clone()).await?;
    let message = match service {
        None => {
            tracing::info!(removed, "Anomaly history cleared.");
            "All anomaly records have been cleared.".to_owned()
        }
        Some(service) => {
            tracing::info!(removed, service, "Anomaly history of one service cleared.");
            let records = if removed == 1 { "record" } else { "records" };
            format!("{removed} anomaly {records} of service {service:?} have been cleared.")
        }
    };
    Ok(Json(Message { message }))
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
    fn delete_is_narrowed_by_service_only() {
        assert_eq!(parse_delete_query(&HashMap::new()).expect("valid"), None);
        assert_eq!(
            parse_delete_query(&params(&[("service", "db")])).expect("valid"),
            Some("db".to_owned())
        );
        let Err(ApiError::Unprocessable(errors)) =
            parse_delete_query(&params(&[("servce", "db"), ("limit", "5")]))
        else {
            panic!("expected a 422");
        };
        let names: Vec<_> = errors.iter().map(|e| e.loc[1].clone()).collect();
        assert_eq!(names, [json!("limit"), json!("servce")]);
        assert!(errors.iter().all(|e| e.kind == "extra_forbidden"));
    }

    #[test]
    fn a_service_longer_than_any_stored_one_is_refused() {
        let long = "s".repeat(MAX_NAME_CHARS + 1);
        let Err(ApiError::Unprocessable(errors)) =
            parse_delete_query(&params(&[("service", &long)]))
        else {
            panic!("expected a 422");
        };
        assert_eq!(errors[0].kind, "string_too_long");
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
