//! The stream pipeline: parse → detect → store, one result per input log, in order. It knows
//! nothing of HTTP; front doors do not call it directly but [`crate::ingest::IngestService`],
//! which adds the rate alerts and the learning loop.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::stored::bound_stored_text;
use crate::detect::baseline::Reason;
use crate::detect::rules::RuleViolation;
use crate::detect::{Detector, DetectorKind, JudgedLog};
use crate::metrics::{BatchTally, FORMATS, Metrics, Stage};
use crate::parse::{FormatType, ParsedLog, Parser, RawLog};
use crate::store::{AnomalyRecord, SharedBatchEvent, Store, StoreError};
use crate::telemetry::spawn_blocking_in_span;

/// Batches larger than this are parsed and scored on the blocking pool, so one big request cannot
/// stall the async workers that serve everyone else.
const INLINE_BATCH_LIMIT: usize = 256;

/// The result for one input log (contract: `score`, `is_anomaly`; the rest are our additions).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct LogResult {
    /// The service model's decision score; `null` when the service has no model or the log failed.
    pub score: Option<f64>,
    /// 1 for an anomaly, else 0.
    #[schema(minimum = 0, maximum = 1)]
    pub is_anomaly: u8,
    pub service: String,
    pub detector: Option<DetectorKind>,
    pub violations: Vec<RuleViolation>,
    /// Why the model flagged the log, strongest first (empty when it did not): each has a `kind`,
    /// its figures and a `summary`.
    #[schema(value_type = Vec<Object>)]
    pub reasons: Vec<Reason>,
    /// Why the log could not be judged; such a log is never an anomaly.
    pub error: Option<String>,
}

/// Live counters behind `/api/v1/metrics`.
#[derive(Debug, Default)]
pub struct Counters {
    pub predictions: AtomicU64,
    pub anomalies: AtomicU64,
    pub parse_errors: AtomicU64,
    /// Fields ignored for `MAX_FEATURES_PER_LOG` or `MAX_FIELD_NAME_CHARS`.
    pub fields_dropped: AtomicU64,
    /// Logs that had fields ignored.
    pub logs_with_fields_dropped: AtomicU64,
    /// When a log last had fields dropped was logged (seconds since the epoch), so a flood warns
    /// once a minute rather than once a request.
    fields_dropped_warned_at: AtomicU64,
}

/// At most one warning about dropped fields per this many seconds.
const FIELDS_DROPPED_WARNING_EVERY_SECONDS: u64 = 60;

/// Limits applied per log.
#[derive(Debug, Clone, Copy)]
pub struct PipelineLimits {
    pub max_raw_log_bytes: usize,
    /// `MAX_STORED_ANOMALY_BYTES`: see [`super::stored`].
    pub max_stored_anomaly_bytes: usize,
}

/// What a batch produced besides its results: the anomalies as stored, for the rate tracker.
#[derive(Debug)]
pub struct BatchOutcome {
    pub results: Vec<LogResult>,
    pub anomalies: Vec<AnomalyRecord>,
    /// Every log that parsed, with its verdict, for the learning loop.
    pub judged: Vec<JudgedLog>,
}

/// Shared by every front door.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub parser: Arc<Parser>,
    pub detector: Arc<Detector>,
    pub store: Store,
    pub counters: Arc<Counters>,
    /// Stage durations, logs by format and service, anomalies by detector (`/metrics`).
    pub metrics: Arc<Metrics>,
    pub limits: PipelineLimits,
}

/// The index of `format` in [`FORMATS`].
fn format_index(format: FormatType) -> usize {
    match format {
        FormatType::Json => 0,
        FormatType::KeyValue => 1,
        FormatType::Regex => 2,
        FormatType::Custom => 3,
        FormatType::Auto => 4,
    }
}

impl Pipeline {
    /// Processes a batch and commits its anomalies before returning.
    ///
    /// # Errors
    /// Storage failures only; a log that cannot be parsed is a result with `error`, not an `Err`.
    pub async fn process(
        &self,
        logs: Vec<RawLog>,
        tags: Option<Map<String, Value>>,
    ) -> Result<BatchOutcome, StoreError> {
        self.process_sharing(logs, tags, |_| None).await
    }

    /// [`Pipeline::process`], storing what `share` makes of the judged batch (its share for the
    /// rate leader, with several replicas) in the anomalies' transaction.
    ///
    /// # Errors
    /// As [`Pipeline::process`].
    pub async fn process_sharing(
        &self,
        logs: Vec<RawLog>,
        tags: Option<Map<String, Value>>,
        share: impl FnOnce(&[JudgedLog]) -> Option<SharedBatchEvent>,
    ) -> Result<BatchOutcome, StoreError> {
        let received_at = Utc::now();
        let (results, judged) = if logs.len() > INLINE_BATCH_LIMIT {
            let pipeline = self.clone();
            spawn_blocking_in_span(move || pipeline.judge(logs))
                .await
                .map_err(|error| StoreError::Background(error.to_string()))?
        } else {
            self.judge(logs)
        };
        let anomalies: Vec<AnomalyRecord> = judged
            .iter()
            .filter(|log| log.verdict.is_anomaly())
            .map(|log| {
                let mut record = anomaly_record(log, received_at, tags.as_ref());
                bound_stored_text(&mut record, self.limits.max_stored_anomaly_bytes);
                record
            })
            .collect();
        let shared = share(&judged);
        let storing = Instant::now();
        let anomalies = self
            .store
            .store_anomalies_sharing(anomalies, shared)
            .await?;
        self.metrics.observe_stage(Stage::Store, storing.elapsed());
        self.counters
            .anomalies
            .fetch_add(anomalies.len() as u64, Ordering::Relaxed);
        Ok(BatchOutcome {
            results,
            anomalies,
            judged,
        })
    }

    /// Parses and judges every log with one snapshot of the models; each model scores its logs
    /// of the batch together ([`Detector::evaluate_all`]).
    pub fn judge(&self, logs: Vec<RawLog>) -> (Vec<LogResult>, Vec<JudgedLog>) {
        let parsing = Instant::now();
        let models = self.detector.models.snapshot();
        let mut parser = self.parser.batch();
        let mut formats = [0u64; FORMATS.len()];
        let mut format_errors = [0u64; FORMATS.len()];
        let parsed: Vec<(RawLog, Result<ParsedLog, String>)> = logs
            .into_iter()
            .map(|raw| {
                let format = format_index(raw.format_type);
                formats[format] += 1;
                let parsed = if raw.raw_log.len() > self.limits.max_raw_log_bytes {
                    Err(format!(
                        "raw_log is {} bytes; the limit is {} (MAX_RAW_LOG_BYTES)",
                        raw.raw_log.len(),
                        self.limits.max_raw_log_bytes
                    ))
                } else {
                    parser.parse(&raw).map_err(|error| error.to_string())
                };
                if parsed.is_err() {
                    format_errors[format] += 1;
                }
                (raw, parsed)
            })
            .collect();
        drop(parser);
        self.count_dropped_fields(&parsed);
        self.metrics.observe_stage(Stage::Parse, parsing.elapsed());
        let detecting = Instant::now();
        let lookups: Vec<_> = parsed
            .iter()
            .filter_map(|(raw, parsed)| {
                let parsed = parsed.as_ref().ok()?;
                Some((raw.service.as_str(), parsed))
            })
            .collect();
        let verdicts = self.detector.evaluate_all(&models, &lookups);
        drop(lookups);
        let mut verdicts = verdicts.into_iter();
        let mut results = Vec::with_capacity(parsed.len());
        let mut judged = Vec::with_capacity(parsed.len());
        for (raw, parsed) in parsed {
            match parsed {
                Ok(parsed) => {
                    let Some(verdict) = verdicts.next() else {
                        unreachable!("evaluate_all gives one verdict per log it is given");
                    };
                    results.push(LogResult {
                        score: verdict.score,
                        is_anomaly: u8::from(verdict.is_anomaly()),
                        service: raw.service.clone(),
                        detector: verdict.detector,
                        violations: verdict.violations.clone(),
                        reasons: verdict.reasons.clone(),
                        error: None,
                    });
                    judged.push(JudgedLog {
                        raw,
                        parsed,
                        verdict,
                    });
                }
                Err(error) => {
                    self.counters.parse_errors.fetch_add(1, Ordering::Relaxed);
                    results.push(LogResult {
                        score: None,
                        is_anomaly: 0,
                        service: raw.service,
                        detector: None,
                        violations: Vec::new(),
                        reasons: Vec::new(),
                        error: Some(error),
                    });
                }
            }
        }
        self.counters
            .predictions
            .fetch_add(judged.len() as u64, Ordering::Relaxed);
        self.metrics
            .observe_stage(Stage::Detect, detecting.elapsed());
        let mut tally = BatchTally::new(formats, format_errors);
        for result in &results {
            let anomaly =
                (result.is_anomaly == 1).then_some(result.detector != Some(DetectorKind::Model));
            tally.service(&result.service, anomaly);
        }
        self.metrics.record_batch(&tally);
        (results, judged)
    }
}

impl Pipeline {
    /// Counts the fields the batch's logs had ignored for the limits, and warns at most once a
    /// minute, naming the first such log's service.
    fn count_dropped_fields(&self, parsed: &[(RawLog, Result<ParsedLog, String>)]) {
        let mut fields = 0u64;
        let mut logs = 0u64;
        let mut first: Option<(&str, u32)> = None;
        for (raw, parsed) in parsed {
            if let Ok(parsed) = parsed
                && parsed.dropped_fields > 0
            {
                fields += u64::from(parsed.dropped_fields);
                logs += 1;
                first.get_or_insert((raw.service.as_str(), parsed.dropped_fields));
            }
        }
        let Some((service, dropped)) = first else {
            return;
        };
        self.counters
            .fields_dropped
            .fetch_add(fields, Ordering::Relaxed);
        self.counters
            .logs_with_fields_dropped
            .fetch_add(logs, Ordering::Relaxed);
        let now = u64::try_from(Utc::now().timestamp()).unwrap_or(0);
        let last = self
            .counters
            .fields_dropped_warned_at
            .load(Ordering::Relaxed);
        if now >= last.saturating_add(FIELDS_DROPPED_WARNING_EVERY_SECONDS)
            && self
                .counters
                .fields_dropped_warned_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                service,
                dropped,
                logs,
                max_features = self.parser.field_limits().max_fields,
                max_name_chars = self.parser.field_limits().max_name_chars,
                "Logs carry more fields than MAX_FEATURES_PER_LOG, or names longer than \
                 MAX_FIELD_NAME_CHARS; the rest were ignored (counted in /api/v1/metrics as \
                 fields_dropped)."
            );
        }
    }
}

fn anomaly_record(
    log: &JudgedLog,
    received_at: DateTime<Utc>,
    tags: Option<&Map<String, Value>>,
) -> AnomalyRecord {
    let features: BTreeMap<String, f64> = log
        .parsed
        .features
        .iter()
        .map(|(name, value)| (name.to_string(), value))
        .collect();
    let mut metadata = Map::new();
    metadata.insert(
        "format_type".to_owned(),
        serde_json::to_value(log.raw.format_type).unwrap_or(Value::Null),
    );
    if !log.parsed.attributes.is_empty() {
        metadata.insert("attributes".to_owned(), json!(log.parsed.attributes));
    }
    if let Some(tags) = tags {
        metadata.insert("tags".to_owned(), Value::Object(tags.clone()));
    }
    // A protocol's record ids, resource and scope (OTLP) are kept with the anomaly, not judged.
    if let Some(envelope) = &log.raw.envelope {
        for (key, value) in &envelope.metadata {
            metadata.insert(key.clone(), value.clone());
        }
    }
    let mut context = Map::new();
    context.insert(
        "received_at".to_owned(),
        json!(crate::rfc3339::millis(&received_at)),
    );
    context.insert(
        "timestamp_from_log".to_owned(),
        json!(log.parsed.timestamp.is_some()),
    );
    AnomalyRecord {
        id: 0,
        timestamp: log.parsed.timestamp.unwrap_or(received_at),
        service: log.raw.service.clone(),
        source: log.raw.source.clone(),
        log_level: log.parsed.level.clone(),
        message: log.parsed.message.clone(),
        anomaly_score: log.verdict.score,
        rule_violation: !log.verdict.violations.is_empty(),
        detector: log.verdict.detector.unwrap_or(DetectorKind::Rule),
        violations: log.verdict.violations.clone(),
        reasons: log.verdict.reasons.clone(),
        features,
        raw_log: log.raw.raw_log.clone(),
        metadata,
        context,
    }
}
