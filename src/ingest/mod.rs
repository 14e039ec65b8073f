//! The ingest service: the one way in for logs, whatever the front door (REST, and OTLP/HTTP in
//! `api/otlp`; MCP is to be an adapter over it too). It owns the whole path of a batch — parse, detect and store
//! ([`Pipeline`]), then the rate windows and alerts ([`AlertSystem`]) and the learning loop
//! ([`Learner`]) — so a log is judged the same way whichever door it came in by. It knows nothing
//! of HTTP: its errors are [`IngestError`], which each front door maps to its own protocol.

pub mod pipeline;
mod stored;

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use serde_json::{Map, Value};

pub use self::pipeline::{Counters, LogResult, Pipeline, PipelineLimits};
pub use self::stored::DEFAULT_MAX_STORED_ANOMALY_BYTES;
use crate::alert::AlertSystem;
use crate::alert::lifecycle::JudgedEvent;
use crate::learn::Learner;
use crate::metrics::Stage;
use crate::parse::{MAX_NAME_CHARS, RawLog, TooManyPatterns, check_patterns};
use crate::store::StoreError;

/// Why a batch was not ingested. Nothing of a refused batch is stored, counted or learned.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// A batch without logs (the contract's 400 "No logs provided in the request.").
    #[error("No logs provided in the request.")]
    NoLogs,
    /// More logs than `MAX_LOGS_PER_REQUEST`.
    #[error(
        "{count} logs in one request; the limit is {limit} (MAX_LOGS_PER_REQUEST). Split the batch."
    )]
    TooManyLogs { count: usize, limit: usize },
    /// A log's `service` or `source` is longer than [`MAX_NAME_CHARS`].
    #[error(
        "log {index}: {field} is {chars} characters long; the limit is {limit}",
        limit = MAX_NAME_CHARS
    )]
    NameTooLong {
        index: usize,
        field: &'static str,
        chars: usize,
    },
    /// More distinct regex patterns than `MAX_PATTERNS_PER_REQUEST`; refused before any of them
    /// is compiled.
    #[error(transparent)]
    TooManyPatterns(#[from] TooManyPatterns),
    /// The anomalies could not be committed; the batch's results were not returned.
    #[error(transparent)]
    Storage(#[from] StoreError),
}

/// Parse → detect → store → rate windows → alerts → learning, for one batch at a time.
#[derive(Debug, Clone)]
pub struct IngestService {
    pipeline: Pipeline,
    alerts: AlertSystem,
    learner: Arc<Learner>,
    limits: BatchLimits,
}

/// What one batch may hold, checked before any of it is parsed.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    /// `MAX_LOGS_PER_REQUEST`.
    pub max_logs: usize,
    /// `MAX_PATTERNS_PER_REQUEST`: distinct regex patterns.
    pub max_patterns: usize,
}

impl IngestService {
    pub fn new(
        pipeline: Pipeline,
        alerts: AlertSystem,
        learner: Arc<Learner>,
        limits: BatchLimits,
    ) -> Self {
        Self {
            pipeline,
            alerts,
            learner,
            limits,
        }
    }

    /// Judges a batch, commits its anomalies, counts it toward the rate alerts and offers it to
    /// the learning loop; one result per log, in order. `tags` are stored with the anomalies.
    ///
    /// # Errors
    /// [`IngestError::NoLogs`], [`IngestError::TooManyLogs`], [`IngestError::NameTooLong`] and
    /// [`IngestError::TooManyPatterns`] before anything happens;
    /// [`IngestError::Storage`] when the anomalies cannot be committed. A log that cannot be
    /// parsed is a result with `error`, never an `Err`.
    pub async fn ingest(
        &self,
        logs: Vec<RawLog>,
        tags: Option<Map<String, Value>>,
    ) -> Result<Vec<LogResult>, IngestError> {
        if logs.is_empty() {
            return Err(IngestError::NoLogs);
        }
        if logs.len() > self.limits.max_logs {
            return Err(IngestError::TooManyLogs {
                count: logs.len(),
                limit: self.limits.max_logs,
            });
        }
        if let Some((index, (field, chars))) = logs
            .iter()
            .enumerate()
            .find_map(|(index, log)| log.oversized_name().map(|name| (index, name)))
        {
            return Err(IngestError::NameTooLong {
                index,
                field,
                chars,
            });
        }
        check_patterns(&logs, self.limits.max_patterns)?;
        let outcome = self
            .pipeline
            .process_sharing(logs, tags, |judged| self.alerts.share_for_store(judged))
            .await?;
        // The anomalies are committed; the rate tracker counts every judged log toward its
        // service's traffic and the anomalies toward its bursts, with each log's own timestamp
        // and the arrival time (alert::lifecycle explains why both).
        let alerting = Instant::now();
        self.alerts
            .observe(outcome.judged.iter().map(JudgedEvent::of), Utc::now())
            .await;
        let metrics = &self.pipeline.metrics;
        metrics.observe_stage(Stage::Alert, alerting.elapsed());
        let learning = Instant::now();
        self.learner.observe(&outcome.judged);
        metrics.observe_stage(Stage::Learn, learning.elapsed());
        Ok(outcome.results)
    }
}
