//! Axum's query and path extractors with `{"detail": …}` rejections: axum answers a query string
//! or a path parameter it cannot decode (`%FF` is not UTF-8) with a plain-text 400, which
//! FastAPI's clients cannot read.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequestParts, Path, Query};
use axum::http::StatusCode;

use crate::api::error::ApiError;

/// [`Query`], rejected with `{"detail": …}`.
#[derive(Debug, FromRequestParts)]
#[from_request(via(Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// [`Path`], rejected with `{"detail": …}`.
#[derive(Debug, FromRequestParts)]
#[from_request(via(Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        rejected(rejection.status(), rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        rejected(rejection.status(), rejection.body_text())
    }
}

/// The client's fault (4xx) keeps axum's explanation; anything else is a routing bug of ours.
fn rejected(status: StatusCode, text: String) -> ApiError {
    if status.is_client_error() {
        ApiError::BadRequest(text)
    } else {
        ApiError::Internal(anyhow::anyhow!(text))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use axum::body::Body;
    use axum::http::Request;
    use axum::response::IntoResponse;
    use axum::routing::get;
    use axum::{Json, Router};
    use serde_json::Value;
    use tower::ServiceExt;

    use super::*;

    async fn call(uri: &str) -> (StatusCode, Value) {
        let router =
            Router::new()
                .route(
                    "/items/{id}",
                    get(|ApiPath(id): ApiPath<String>| async move { Json(id) }),
                )
                .route(
                    "/items",
                    get(
                        |ApiQuery(query): ApiQuery<HashMap<String, u32>>| async move {
                            Json(query.len())
                        },
                    ),
                );
        let response = router
            .oneshot(Request::get(uri).body(Body::empty()).expect("request"))
            .await
            .expect("infallible")
            .into_response();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .expect("body");
        (status, serde_json::from_slice(&bytes).expect("a JSON body"))
    }

    #[tokio::test]
    async fn a_path_parameter_that_is_not_utf8_is_a_400_with_detail() {
        let (status, body) = call("/items/%FF%FE").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body["detail"].is_string(), "{body}");
    }

    #[tokio::test]
    async fn a_query_string_that_does_not_decode_is_a_400_with_detail() {
        let (status, body) = call("/items?a=x").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            body["detail"].as_str().is_some_and(|d| d.contains("query")),
            "{body}"
        );
    }

    #[tokio::test]
    async fn good_parameters_pass() {
        assert_eq!(
            call("/items/abc").await,
            (StatusCode::OK, Value::from("abc"))
        );
        assert_eq!(
            call("/items?a=1&b=2").await,
            (StatusCode::OK, Value::from(2))
        );
    }
}
