//! What every handler can reach. The application (`crate::app`) builds it; handlers only read it.

use std::sync::Arc;

use axum::extract::FromRef;
use tokio::sync::Semaphore;

use crate::alert::AlertSystem;
use crate::api::body::BodyLimit;
use crate::detect::Detector;
use crate::ingest::IngestService;
use crate::ingest::Pipeline;
use crate::learn::Learner;
use crate::metrics::Metrics;
use crate::settings::Settings;
use crate::store::Store;

/// What every handler can reach; each field is a cheap handle.
#[derive(Debug, Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    /// The one way in for logs ([`IngestService`]); every front door goes through it.
    pub ingest: IngestService,
    pub pipeline: Pipeline,
    pub detector: Arc<Detector>,
    pub store: Store,
    pub learner: Arc<Learner>,
    pub alerts: AlertSystem,
    /// The Prometheus registry behind `/metrics`.
    pub metrics: Arc<Metrics>,
    /// One permit per OTLP export under way (`OTLP_MAX_CONCURRENT_EXPORTS`); none left: 429.
    pub otlp_exports: Arc<Semaphore>,
}

impl FromRef<AppState> for BodyLimit {
    fn from_ref(state: &AppState) -> Self {
        BodyLimit(state.settings.max_body_bytes)
    }
}
