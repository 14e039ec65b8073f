//! GET /openapi.json and /docs: the OpenAPI 3.1 description, derived from the handlers and their
//! types (each area's `router()` registers its handlers with their `#[utoipa::path]`, so a route
//! cannot be served without being described), and Swagger UI to try it. Swagger UI's files are
//! compiled into the binary (`utoipa-swagger-ui`'s `vendored` feature): neither the build nor the
//! page fetch anything from the network.

use utoipa::OpenApi;
use utoipa::openapi::OpenApi as OpenApiDocument;
use utoipa_swagger_ui::{Config, SwaggerUi};

use crate::api::AppState;
use crate::api::error::{ErrorBody, ErrorDetail, FieldError, LocStep};

/// Where the description is served.
pub const OPENAPI_PATH: &str = "/openapi.json";
/// Where Swagger UI is served.
pub const DOCS_PATH: &str = "/docs";

/// What the handlers do not say themselves: the title, the tags, the shared schemas.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "aioops-mcp-iforest",
        description = "Real-time log anomaly detection: per-service isolation forests, threshold \
                       rules and rate alerts. Every error body is `{\"detail\": …}`, a sentence or \
                       (422) FastAPI's list of field errors. Any request may also be answered 503 \
                       once it has taken REQUEST_TIMEOUT_SECONDS."
    ),
    tags(
        (name = "logs", description = "Judging logs."),
        (name = "anomalies", description = "The stored anomaly history."),
        (name = "models", description = "Training, models and feedback."),
        (name = "alerts", description = "Rate alerts and their deliveries."),
        (name = "metrics", description = "Counters for people (JSON) and for Prometheus."),
        (name = "health", description = "Liveness, readiness and the original's banners."),
    ),
    components(schemas(ErrorBody, ErrorDetail, FieldError, LocStep))
)]
struct ApiDoc;

/// The description's fixed part; the routes add their operations to it.
pub fn base() -> OpenApiDocument {
    ApiDoc::openapi()
}

/// `/openapi.json` serving `document`, and Swagger UI at `/docs`. Swagger UI's online validator
/// badge is turned off: it would send the description to validator.swagger.io.
pub fn router(document: OpenApiDocument) -> axum::Router<AppState> {
    SwaggerUi::new(DOCS_PATH)
        .url(OPENAPI_PATH, document)
        .config(Config::new([OPENAPI_PATH]).validator_url("none"))
        .into()
}
