//! POST /api/v1/feedback: operators label logs, for calibration and the next fits.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::Utc;
use serde::Deserialize;
use serde::de::{Deserializer, Error as _, Unexpected};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::AppState;
use crate::api::body::{
    Checker, JsonBody, body_loc, check_names, child, label_of, object, objects, too_many,
};
use crate::api::error::ApiError;
use crate::api::error::responses::{
    BadRequest, Internal, PayloadTooLarge, Unavailable, Unprocessable, UnsupportedMediaType,
};
use crate::api::health::Message;
use crate::parse::RawLog;
use crate::store::FeedbackRecord;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(submit_feedback))
}

/// One label: the contract's `{"log": RawLog, "is_anomaly": 0|1}`.
#[derive(Debug, PartialEq, Deserialize, ToSchema)]
pub struct FeedbackItem {
    #[serde(deserialize_with = "object")]
    pub log: RawLog,
    /// 0 (normal) or 1 (an anomaly).
    #[serde(deserialize_with = "zero_or_one")]
    #[schema(minimum = 0, maximum = 1)]
    pub is_anomaly: u8,
}

/// `is_anomaly` on the fast path: 0 or 1, as the checker's `zero_or_one` (422 `literal_error`).
fn zero_or_one<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u8, D::Error> {
    let number = serde_json::Number::deserialize(deserializer)?;
    label_of(&number).ok_or_else(|| {
        D::Error::invalid_value(Unexpected::Other("a number other than 0 or 1"), &"0 or 1")
    })
}

/// The contract's body: `{"feedback": [FeedbackItem…]}`.
#[derive(Debug, PartialEq, Deserialize, ToSchema)]
pub struct FeedbackRequest {
    /// At least one label (an empty list is the contract's 400), at most MAX_LOGS_PER_REQUEST.
    #[serde(deserialize_with = "objects")]
    #[schema(min_items = 1)]
    pub feedback: Vec<FeedbackItem>,
}

impl FeedbackRequest {
    pub(super) fn check(checker: &mut Checker, body: &Value) -> Option<Self> {
        let loc = body_loc();
        let object = checker.object(body, &loc)?;
        let list_loc = child(&loc, "feedback");
        let list = checker
            .required(object, "feedback", &loc)
            .and_then(|v| checker.list(v, &list_loc))?;
        let items: Vec<Option<FeedbackItem>> = list
            .iter()
            .enumerate()
            .map(|(index, item)| {
                let item_loc = child(&list_loc, index);
                let object = checker.object(item, &item_loc)?;
                let log = checker
                    .required(object, "log", &item_loc)
                    .and_then(|v| checker.raw_log(v, &child(&item_loc, "log")));
                let label = checker
                    .required(object, "is_anomaly", &item_loc)
                    .and_then(|v| checker.zero_or_one(v, &child(&item_loc, "is_anomaly")));
                Some(FeedbackItem {
                    log: log?,
                    is_anomaly: u8::from(label?),
                })
            })
            .collect();
        Some(Self {
            feedback: items.into_iter().collect::<Option<_>>()?,
        })
    }
}

/// Labels logs as normal or anomalous, for calibration and the next fits of their services.
#[utoipa::path(
    post,
    path = "/api/v1/feedback",
    tag = "models",
    request_body = FeedbackRequest,
    responses(
        (status = 202, description = "The labels are stored.", body = Message),
        BadRequest, PayloadTooLarge, UnsupportedMediaType, Unprocessable, Internal, Unavailable,
    )
)]
async fn submit_feedback(
    State(state): State<AppState>,
    body: JsonBody,
) -> Result<(StatusCode, Json<Message>), ApiError> {
    let request = body.decode(FeedbackRequest::check)?;
    if request.feedback.is_empty() {
        return Err(ApiError::BadRequest(
            "No feedback records provided.".to_owned(),
        ));
    }
    let limit = state.settings.max_logs_per_request;
    if request.feedback.len() > limit {
        return Err(too_many(request.feedback.len(), "feedback records", limit));
    }
    check_names(request.feedback.iter().enumerate().map(|(index, item)| {
        let item_loc = child(&child(&body_loc(), "feedback"), index);
        (child(&item_loc, "log"), &item.log)
    }))?;
    let received_at = Utc::now();
    let records: Vec<FeedbackRecord> = request
        .feedback
        .into_iter()
        .map(|item| FeedbackRecord {
            id: 0,
            service: item.log.service,
            source: item.log.source,
            format_type: item.log.format_type,
            raw_log: item.log.raw_log,
            custom_config: item
                .log
                .custom_config
                .map(|config| Arc::unwrap_or_clone(config).into_value()),
            is_anomaly: item.is_anomaly == 1,
            received_at,
        })
        .collect();
    let count = records.len();
    state.store.insert_feedback(records).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Message {
            message: format!("Feedback received for {count} records. Thank you!"),
        }),
    ))
}
