//! The MCP server: tools over the same services the REST handlers use (the ingest service, the
//! store, the learner, the alert system), a triage prompt, and read-only resources.
//!
//! Each tool answers `Result<Json<T>, String>`, spelt out: the macro reads the output schema off
//! that return type. A tool's bad argument, an unknown id or a refused batch is the tool's error (`isError: true`
//! with a message that says what to change); an unknown tool or method is a protocol error, as
//! MCP specifies. Internal failures are logged here and answered with a generic message.

use std::sync::Arc;

use rmcp::handler::server::router::prompt::PromptRouter;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    GetPromptResult, Implementation, ListResourceTemplatesResult, ListResourcesResult,
    PaginatedRequestParams, PromptMessage, ReadResourceRequestParams, ReadResourceResponse,
    ReadResourceResult, Resource, ResourceContents, ResourceTemplate, Role, ServerCapabilities,
    ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{
    ErrorData, Json, RoleServer, ServerHandler, prompt, prompt_handler, prompt_router, tool,
    tool_handler, tool_router,
};
use serde::Serialize;
use serde_json::{Map, Value};

use super::types::{
    AlertList, AlertStateName, AlertStats, AnomalyDetail, AnomalyId, AnomalyList, AnomalySummary,
    Args, BaselineReport, DetectorName, Explanation, FeedbackReceipt, FormatName, IngestLogs,
    IngestReport, JobId, ListAlerts, LogInput, MAX_LIST_LIMIT, MAX_TOOL_LOGS, ModelList,
    ModelSummary, OrderName, QueryAnomalies, RuleBreach, ServiceName, StartTraining,
    SubmitFeedback, TrainingJob, TrainingStarted, TriageArgs, input_schema,
};
use crate::alert::AlertQuery;
use crate::alert::lifecycle::AlertState;
use crate::api::AppState;
use crate::api::anomalies::parse_instant;
use crate::api::metrics::MetricsReport;
use crate::detect::DetectorKind;
use crate::detect::models::ServiceModel;
use crate::ingest::IngestError;
use crate::learn::JobRefused;
use crate::parse::{CustomConfig, FormatType, MAX_NAME_CHARS, RawLog};
use crate::rfc3339;
use crate::store::{AnomalyOrder, AnomalyQuery, AnomalyRecord, FeedbackRecord, StoreError};

/// The server's name in `initialize` and `server/discover`.
const SERVER_NAME: &str = "aioops-mcp-iforest";

const INSTRUCTIONS: &str = "Real-time log anomaly detection. Each service learns what its normal \
logs look like (a baseline and an isolation forest) and threshold rules catch known-bad values. \
To investigate: query_anomalies (newest first, or order=score for the most anomalous), then \
get_anomaly for one anomaly's explanation, get_baseline for what is normal for its service, \
list_alerts for bursts that paged someone. To teach: submit_feedback marks a stored anomaly (or \
any log) as a real anomaly or as normal; start_training fits new models on normal logs \
(training_status follows the job). ingest_logs judges logs exactly as the REST API does. \
The triage_anomaly prompt walks through one anomaly.";

/// The MCP server; one per request (stateless), each a few cheap handles.
#[derive(Clone)]
pub struct AnomalyServer {
    state: AppState,
    tool_router: Arc<ToolRouter<Self>>,
    prompt_router: Arc<PromptRouter<Self>>,
}

impl std::fmt::Debug for AnomalyServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnomalyServer").finish_non_exhaustive()
    }
}

impl AnomalyServer {
    pub fn new(state: AppState) -> Self {
        Self {
            state,
            tool_router: Arc::new(Self::tool_router()),
            prompt_router: Arc::new(Self::prompt_router()),
        }
    }
}

/// A store failure as a tool's error: a temporary one says what to do; any other is logged and
/// answered generically (its text may name paths).
fn store_failure(error: StoreError) -> String {
    match error.unavailable_reason() {
        Some(reason) => reason.to_owned(),
        None => {
            tracing::error!(%error, "An MCP tool failed on the store.");
            "Internal error: the service could not read or write its database; see its log."
                .to_owned()
        }
    }
}

fn check_limit(limit: usize) -> Result<usize, String> {
    if (1..=MAX_LIST_LIMIT).contains(&limit) {
        Ok(limit)
    } else {
        Err(format!(
            "limit must be from 1 to {MAX_LIST_LIMIT}, got {limit}."
        ))
    }
}

fn check_name(field: &str, value: &str) -> Result<(), String> {
    let chars = value.chars().count();
    if chars == 0 || chars > MAX_NAME_CHARS {
        return Err(format!(
            "{field} must be 1 to {MAX_NAME_CHARS} characters long, got {chars}."
        ));
    }
    Ok(())
}

/// One tool log as the ingest service's [`RawLog`].
fn raw_log(log: LogInput, index: Option<usize>) -> Result<RawLog, String> {
    let at = index.map_or_else(String::new, |index| format!("logs[{index}]."));
    check_name(&format!("{at}service"), &log.service)?;
    check_name(&format!("{at}source"), &log.source)?;
    let format_type = match log.format_type {
        FormatName::Json => FormatType::Json,
        FormatName::KeyValue => FormatType::KeyValue,
        FormatName::Regex => FormatType::Regex,
        FormatName::Auto => FormatType::Auto,
    };
    if matches!(format_type, FormatType::Regex) && log.custom_config.is_none() {
        return Err(format!(
            "{at}custom_config is required for format_type \"regex\": {{\"pattern\": …, \
             \"field_mapping\": {{\"0\": \"timestamp\", …}}}}."
        ));
    }
    Ok(RawLog {
        raw_log: log.raw_log,
        service: log.service,
        source: log.source,
        format_type,
        custom_config: log
            .custom_config
            .map(|config| Arc::new(CustomConfig::new(Value::Object(config)))),
        envelope: None,
    })
}

fn raw_logs(logs: Vec<LogInput>) -> Result<Vec<RawLog>, String> {
    if logs.is_empty() {
        return Err("logs is empty: give at least one log.".to_owned());
    }
    if logs.len() > MAX_TOOL_LOGS {
        return Err(format!(
            "{} logs in one call; the limit is {MAX_TOOL_LOGS}. Split them.",
            logs.len()
        ));
    }
    logs.into_iter()
        .enumerate()
        .map(|(index, log)| raw_log(log, Some(index)))
        .collect()
}

fn detector_name(kind: DetectorKind) -> DetectorName {
    match kind {
        DetectorKind::Rule => DetectorName::Rule,
        DetectorKind::Model => DetectorName::Model,
    }
}

/// One line per broken rule and per piece of model evidence, strongest first.
fn why(record: &AnomalyRecord) -> Vec<String> {
    record
        .violations
        .iter()
        .map(|v| {
            format!(
                "{} = {} is above its threshold {} (rule)",
                v.feature, v.value, v.threshold
            )
        })
        .chain(record.reasons.iter().map(|reason| reason.summary.clone()))
        .collect()
}

fn summary_of(record: AnomalyRecord) -> AnomalySummary {
    AnomalySummary {
        why: why(&record),
        id: record.id,
        timestamp: rfc3339::millis(&record.timestamp),
        service: record.service,
        source: record.source,
        log_level: record.log_level,
        message: record.message,
        anomaly_score: record.anomaly_score,
        detector: detector_name(record.detector),
    }
}

fn model_summary(model: &ServiceModel) -> ModelSummary {
    ModelSummary {
        service: model.service.clone(),
        features: model.artifact.feature_names.clone(),
        training_samples: model.training_samples,
        trained_at: rfc3339::millis(&model.trained_at),
        threshold: model.threshold(),
        source: model.source.as_str().to_owned(),
        job_id: model.job_id.clone(),
    }
}

fn to_value(value: &impl Serialize) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// The paragraph of an anomaly's explanation.
fn explanation_summary(record: &AnomalyRecord, lines: &[String]) -> String {
    let score = record.anomaly_score.map_or_else(
        || "the service had no model yet, so only its threshold rules judged it".to_owned(),
        |score| {
            format!(
                "the model's score was {score:.4} (below 0 is an outlier; lower is more anomalous)"
            )
        },
    );
    let detector = match record.detector {
        DetectorKind::Rule => "A threshold rule (ALERT_CONDITIONS) flagged this log",
        DetectorKind::Model => {
            "The service's learned baseline flagged this log as unlike its normal logs"
        }
    };
    let because = if lines.is_empty() {
        String::new()
    } else {
        format!(": {}", lines.join("; "))
    };
    format!("{detector}{because}. Besides, {score}.")
}

#[tool_router]
impl AnomalyServer {
    #[tool(
        description = "List stored anomalies, newest first or most anomalous first, filtered by \
                       service, time, detector or score. Use it to see what has gone wrong \
                       recently; each item says in one line per cause why it was flagged. Then \
                       call get_anomaly for the full record of one.",
        input_schema = input_schema::<QueryAnomalies>(),
        annotations(title = "Query anomalies", read_only_hint = true, open_world_hint = false)
    )]
    async fn query_anomalies(
        &self,
        Args(args): Args<QueryAnomalies>,
    ) -> Result<Json<AnomalyList>, String> {
        let args = args?;
        let limit = check_limit(args.limit)?;
        if let Some(service) = &args.service {
            check_name("service", service)?;
        }
        let since = match &args.since {
            None => None,
            Some(raw) => Some(parse_instant(raw).ok_or_else(|| {
                format!("since {raw:?} is not an instant: use RFC 3339, e.g. 2024-01-15T10:00:00Z.")
            })?),
        };
        if let Some(score) = args.max_score
            && !score.is_finite()
        {
            return Err("max_score must be a finite number.".to_owned());
        }
        let query = AnomalyQuery {
            limit,
            service: args.service,
            since,
            detector: args.detector.map(|detector| match detector {
                DetectorName::Rule => DetectorKind::Rule,
                DetectorName::Model => DetectorKind::Model,
            }),
            max_score: args.max_score,
            order: match args.order {
                OrderName::Time => AnomalyOrder::Time,
                OrderName::Score => AnomalyOrder::Score,
            },
        };
        let records = self
            .state
            .store
            .list_anomalies(query)
            .await
            .map_err(store_failure)?;
        let anomalies: Vec<AnomalySummary> = records.into_iter().map(summary_of).collect();
        Ok(Json(AnomalyList {
            count: anomalies.len(),
            anomalies,
        }))
    }

    #[tool(
        description = "Get one stored anomaly by id with its explanation: the rules it broke or \
                       the model's evidence (which features were far from their usual range, \
                       unseen categories, broken relations), its features, raw log and tags, \
                       and the service's current model. Use it before deciding whether an \
                       anomaly is real.",
        input_schema = input_schema::<AnomalyId>(),
        annotations(title = "Explain an anomaly", read_only_hint = true, open_world_hint = false)
    )]
    async fn get_anomaly(
        &self,
        Args(args): Args<AnomalyId>,
    ) -> Result<Json<AnomalyDetail>, String> {
        let id = args?.id;
        let record = self
            .state
            .store
            .get_anomaly(id)
            .await
            .map_err(store_failure)?
            .ok_or_else(|| {
                format!(
                    "No anomaly {id}: it was never stored or was pruned since \
                     (MAX_RECENT_ANOMALIES). query_anomalies lists the stored ones."
                )
            })?;
        let lines = why(&record);
        let summary = explanation_summary(&record, &lines);
        let current_model = self
            .state
            .detector
            .models
            .get(&record.service)
            .map(|model| model_summary(&model));
        Ok(Json(AnomalyDetail {
            explanation: Explanation {
                summary,
                rule_violations: record
                    .violations
                    .iter()
                    .map(|v| RuleBreach {
                        feature: v.feature.clone(),
                        value: v.value,
                        threshold: v.threshold,
                    })
                    .collect(),
                model_reasons: record.reasons.iter().map(to_value).collect(),
                current_model,
            },
            id: record.id,
            timestamp: rfc3339::millis(&record.timestamp),
            service: record.service,
            source: record.source,
            log_level: record.log_level,
            message: record.message,
            anomaly_score: record.anomaly_score,
            detector: detector_name(record.detector),
            features: record.features,
            raw_log: record.raw_log,
            metadata: record.metadata,
            context: record.context,
        }))
    }

    #[tool(
        description = "List rate alerts (bursts of anomalies in a service that were sent to \
                       Slack, PagerDuty or webhooks), newest first, with their delivery status \
                       per channel. Use it to see what paged someone and whether it resolved.",
        input_schema = input_schema::<ListAlerts>(),
        annotations(title = "List alerts", read_only_hint = true, open_world_hint = false)
    )]
    async fn list_alerts(&self, Args(args): Args<ListAlerts>) -> Result<Json<AlertList>, String> {
        let args = args?;
        let limit = check_limit(args.limit)?;
        if let Some(service) = &args.service {
            check_name("service", service)?;
        }
        let alerts = self
            .state
            .alerts
            .list(AlertQuery {
                limit,
                service: args.service,
                state: args.state.map(|state| match state {
                    AlertStateName::Firing => AlertState::Firing,
                    AlertStateName::Resolved => AlertState::Resolved,
                }),
            })
            .await
            .map_err(store_failure)?;
        let alerts: Vec<Value> = alerts.iter().map(to_value).collect();
        Ok(Json(AlertList {
            count: alerts.len(),
            alerts,
        }))
    }

    #[tool(
        description = "Alerting at a glance: services tracked and firing, alerts fired, \
                       repeated and resolved since start-up, and per channel how many \
                       notifications were delivered, retried or lost.",
        annotations(
            title = "Alert statistics",
            read_only_hint = true,
            open_world_hint = false
        )
    )]
    async fn alert_stats(&self) -> Result<Json<AlertStats>, String> {
        let stats = self.state.alerts.stats().await.map_err(store_failure)?;
        let stats = match stats {
            Value::Object(map) => map,
            other => Map::from_iter([("stats".to_owned(), other)]),
        };
        Ok(Json(AlertStats { stats }))
    }

    #[tool(
        description = "List the services that have a learned model: the features each reads, \
                       how many logs it learned from, when, and its score threshold. A service \
                       without a model is judged by threshold rules only.",
        annotations(title = "List models", read_only_hint = true, open_world_hint = false)
    )]
    async fn list_models(&self) -> Result<Json<ModelList>, String> {
        let snapshot = self.state.detector.models.snapshot();
        let mut models: Vec<ModelSummary> = snapshot
            .values()
            .map(|model| model_summary(model))
            .collect();
        models.sort_by(|a, b| a.service.cmp(&b.service));
        Ok(Json(ModelList {
            count: models.len(),
            models,
        }))
    }

    #[tool(
        description = "Get what normal looks like for one service: its model and learned \
                       baseline (per-feature medians and usual ranges, known categories, \
                       relations between features). Use it to judge whether an anomaly's \
                       values are really unusual.",
        input_schema = input_schema::<ServiceName>(),
        annotations(title = "Service baseline", read_only_hint = true, open_world_hint = false)
    )]
    async fn get_baseline(
        &self,
        Args(args): Args<ServiceName>,
    ) -> Result<Json<BaselineReport>, String> {
        let service = args?.service;
        check_name("service", &service)?;
        let Some(model) = self.state.detector.models.get(&service) else {
            let snapshot = self.state.detector.models.snapshot();
            let mut known: Vec<&str> = snapshot.keys().map(String::as_str).collect();
            known.sort_unstable();
            return Err(format!(
                "Service {service:?} has no model yet (it learns one after MIN_TRAIN_SAMPLES \
                 normal logs, or from start_training). Services with a model: {}.",
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ));
        };
        Ok(Json(BaselineReport {
            baseline: model.baseline.as_ref().map(to_value),
            model: model_summary(&model),
        }))
    }

    #[tool(
        description = "Label a stored anomaly (by anomaly_id) or any log (by log) as a real \
                       anomaly (is_anomaly true) or as normal (false). Labels make \
                       model_accuracy real, calibrate thresholds and steer the next model: \
                       normal labels are learned from, anomalous ones kept out. Use it after \
                       triage, e.g. to mark a false alarm.",
        input_schema = input_schema::<SubmitFeedback>(),
        annotations(
            title = "Submit feedback",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn submit_feedback(
        &self,
        Args(args): Args<SubmitFeedback>,
    ) -> Result<Json<FeedbackReceipt>, String> {
        let args = args?;
        let log = match (args.anomaly_id, args.log) {
            (Some(_), Some(_)) | (None, None) => {
                return Err("Give exactly one of anomaly_id and log.".to_owned());
            }
            (None, Some(log)) => raw_log(log, None)?,
            (Some(id), None) => self.log_of_anomaly(id).await?,
        };
        let service = log.service.clone();
        let record = FeedbackRecord {
            id: 0,
            service: log.service,
            source: log.source,
            format_type: log.format_type,
            raw_log: log.raw_log,
            custom_config: log
                .custom_config
                .map(|config| Arc::unwrap_or_clone(config).into_value()),
            is_anomaly: args.is_anomaly,
            received_at: chrono::Utc::now(),
        };
        self.state
            .store
            .insert_feedback(vec![record])
            .await
            .map_err(store_failure)?;
        let feedback_received = self
            .state
            .store
            .feedback_count()
            .await
            .map_err(store_failure)?;
        Ok(Json(FeedbackReceipt {
            message: "Feedback received for 1 record. Thank you!".to_owned(),
            service,
            is_anomaly: args.is_anomaly,
            feedback_received,
        }))
    }

    #[tool(
        description = "Start a training job on normal logs: each service with at least \
                       MIN_TRAIN_SAMPLES of them gets a new baseline and forest, swapped in \
                       when the job succeeds. Returns at once with a job_id; follow it with \
                       training_status. One job runs at a time.",
        input_schema = input_schema::<StartTraining>(),
        annotations(
            title = "Start training",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn start_training(
        &self,
        Args(args): Args<StartTraining>,
    ) -> Result<Json<TrainingStarted>, String> {
        let logs = raw_logs(args?.logs)?;
        let job_id = self
            .state
            .learner
            .start_job(logs)
            .await
            .map_err(|error| match error {
                JobRefused::Busy(_) | JobRefused::TooManyPatterns(_) => error.to_string(),
                JobRefused::Store(error) => store_failure(error),
            })?;
        Ok(Json(TrainingStarted {
            job_id,
            status: "queued".to_owned(),
            message: "Model retraining started in the background.".to_owned(),
        }))
    }

    #[tool(
        description = "Get a training job's status (queued, running, succeeded, failed) and, \
                       once finished, per service what was fitted or why not.",
        input_schema = input_schema::<JobId>(),
        annotations(title = "Training status", read_only_hint = true, open_world_hint = false)
    )]
    async fn training_status(&self, Args(args): Args<JobId>) -> Result<Json<TrainingJob>, String> {
        let job_id = args?.job_id;
        let job = self
            .state
            .store
            .get_training_job(job_id.clone())
            .await
            .map_err(store_failure)?
            .ok_or_else(|| format!("No training job {job_id:?}."))?;
        Ok(Json(TrainingJob {
            job_id: job.job_id,
            status: job.status.as_str().to_owned(),
            created_at: rfc3339::millis(&job.created_at),
            started_at: job.started_at.as_ref().map(rfc3339::millis),
            finished_at: job.finished_at.as_ref().map(rfc3339::millis),
            detail: job.detail,
        }))
    }

    #[tool(
        description = "Send logs to be judged, exactly as POST /api/v1/stream/multi-source: \
                       one result per log, in order, with its score, whether it is an anomaly \
                       and why. Anomalies are stored and count toward rate alerts; normal logs \
                       feed the service's learning. Use it to check a suspicious log or to \
                       feed logs the service would not otherwise see.",
        input_schema = input_schema::<IngestLogs>(),
        annotations(
            title = "Ingest logs",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn ingest_logs(
        &self,
        Args(args): Args<IngestLogs>,
    ) -> Result<Json<IngestReport>, String> {
        let args = args?;
        let logs = raw_logs(args.logs)?;
        let tags = args.tags.map(|tags| {
            tags.into_iter()
                .map(|(name, value)| (name, Value::String(value)))
                .collect::<Map<String, Value>>()
        });
        let results = self
            .state
            .ingest
            .ingest(logs, tags)
            .await
            .map_err(|error| match error {
                IngestError::Storage(error) => store_failure(error),
                IngestError::NoLogs
                | IngestError::TooManyLogs { .. }
                | IngestError::NameTooLong { .. }
                | IngestError::TooManyPatterns(_) => error.to_string(),
            })?;
        Ok(Json(IngestReport {
            count: results.len(),
            anomalies: results.iter().filter(|r| r.is_anomaly == 1).count(),
            errors: results.iter().filter(|r| r.error.is_some()).count(),
            results: results.iter().map(to_value).collect(),
        }))
    }

    #[tool(
        description = "The service's counters: logs judged and anomalies found since start-up, \
                       feedback received, the models' accuracy on that feedback, when a model \
                       was last trained, parse errors (as GET /api/v1/metrics).",
        annotations(
            title = "Service metrics",
            read_only_hint = true,
            open_world_hint = false
        )
    )]
    async fn service_metrics(&self) -> Result<Json<MetricsReport>, String> {
        MetricsReport::collect(&self.state)
            .await
            .map(Json)
            .map_err(store_failure)
    }
}

impl AnomalyServer {
    /// The log a stored anomaly keeps, for a label: refused when it is not the whole log (cut
    /// to MAX_STORED_ANOMALY_BYTES) or is a regex log, whose pattern is not stored.
    async fn log_of_anomaly(&self, id: i64) -> Result<RawLog, String> {
        let record = self
            .state
            .store
            .get_anomaly(id)
            .await
            .map_err(store_failure)?
            .ok_or_else(|| format!("No anomaly {id}: it was never stored or was pruned since."))?;
        if record
            .context
            .get("stored_truncated")
            .and_then(|cuts| cuts.get("raw_log_bytes"))
            .is_some()
        {
            return Err(format!(
                "Anomaly {id} keeps only the start of its log (MAX_STORED_ANOMALY_BYTES); send \
                 the whole log as `log` instead."
            ));
        }
        let format_type = record
            .metadata
            .get("format_type")
            .and_then(Value::as_str)
            .and_then(FormatType::from_name)
            .unwrap_or(FormatType::Json);
        if matches!(format_type, FormatType::Regex | FormatType::Custom) {
            return Err(format!(
                "Anomaly {id} is a {} log, whose custom_config is not stored; send it as `log` \
                 with its custom_config instead.",
                format_type.as_str()
            ));
        }
        Ok(RawLog {
            raw_log: record.raw_log,
            service: record.service,
            source: record.source,
            format_type,
            custom_config: None,
            envelope: None,
        })
    }
}

#[prompt_router]
impl AnomalyServer {
    /// Walks an agent through triaging one stored anomaly: explain it, compare it with the
    /// service's baseline and recent history, decide, and record the decision as feedback.
    #[prompt(name = "triage_anomaly")]
    async fn triage_anomaly(
        &self,
        Parameters(args): Parameters<TriageArgs>,
    ) -> Result<GetPromptResult, ErrorData> {
        let id: i64 = args.anomaly_id.trim().parse().map_err(|_| {
            ErrorData::invalid_params(
                format!(
                    "anomaly_id must be a whole number, got {:?}",
                    args.anomaly_id
                ),
                None,
            )
        })?;
        let record = self
            .state
            .store
            .get_anomaly(id)
            .await
            .map_err(|error| ErrorData::internal_error(store_failure(error), None))?
            .ok_or_else(|| {
                ErrorData::invalid_params(format!("No anomaly {id} is stored."), None)
            })?;
        let lines = why(&record);
        let text = format!(
            "Triage anomaly {id} of service {service:?} (logged {timestamp}, detector {detector}).\n\n\
             What the detector said: {summary}\n\n\
             The log:\n{raw}\n\n\
             Steps:\n\
             1. Call get_anomaly with id {id} for its features and full explanation.\n\
             2. Call get_baseline for service {service:?} and compare each flagged feature with \
             its usual range.\n\
             3. Call query_anomalies with service {service:?} and since one hour before it, and \
             list_alerts for the service, to see whether it is isolated or part of a burst.\n\
             4. Decide: a real problem (say what is likely wrong and who should look), or a false \
             alarm (say why).\n\
             5. Record the decision with submit_feedback, anomaly_id {id}, is_anomaly true or \
             false, so the next model learns from it.",
            service = record.service,
            timestamp = rfc3339::millis(&record.timestamp),
            detector = record.detector.as_str(),
            summary = explanation_summary(&record, &lines),
            raw = record.raw_log,
        );
        Ok(
            GetPromptResult::new(vec![PromptMessage::new_text(Role::User, text)])
                .with_description(format!("Triage anomaly {id} of {}", record.service)),
        )
    }
}

/// The resources: live JSON documents an agent may attach to its context.
const METRICS_URI: &str = "aioops://metrics";
const MODELS_URI: &str = "aioops://models";
const ANOMALY_URI_PREFIX: &str = "aioops://anomalies/";

impl AnomalyServer {
    async fn resource_json(&self, uri: &str) -> Result<Value, ErrorData> {
        let internal = |error: StoreError| ErrorData::internal_error(store_failure(error), None);
        if uri == METRICS_URI {
            let report = MetricsReport::collect(&self.state)
                .await
                .map_err(internal)?;
            return Ok(to_value(&report));
        }
        if uri == MODELS_URI {
            let snapshot = self.state.detector.models.snapshot();
            let mut models: Vec<ModelSummary> = snapshot
                .values()
                .map(|model| model_summary(model))
                .collect();
            models.sort_by(|a, b| a.service.cmp(&b.service));
            return Ok(to_value(&models));
        }
        if let Some(id) = uri
            .strip_prefix(ANOMALY_URI_PREFIX)
            .and_then(|id| id.parse::<i64>().ok())
            && let Some(record) = self.state.store.get_anomaly(id).await.map_err(internal)?
        {
            return Ok(to_value(&record));
        }
        Err(ErrorData::resource_not_found(
            format!("No resource {uri}"),
            Some(serde_json::json!({ "uri": uri })),
        ))
    }
}

#[tool_handler(router = self.tool_router)]
#[prompt_handler(router = self.prompt_router)]
impl ServerHandler for AnomalyServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_prompts()
                .enable_resources()
                .enable_tools()
                .build(),
        )
        .with_server_info(
            Implementation::new(SERVER_NAME, env!("CARGO_PKG_VERSION"))
                .with_title("AIOps log anomaly detection"),
        )
        .with_instructions(INSTRUCTIONS)
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        Ok(ListResourcesResult::with_all_items(vec![
            Resource::new(METRICS_URI, "metrics")
                .with_title("Service metrics")
                .with_description("The counters of GET /api/v1/metrics, live.")
                .with_mime_type("application/json"),
            Resource::new(MODELS_URI, "models")
                .with_title("Models")
                .with_description("Every service's model: features, samples, threshold.")
                .with_mime_type("application/json"),
        ]))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        Ok(ListResourceTemplatesResult::with_all_items(vec![
            ResourceTemplate::new(format!("{ANOMALY_URI_PREFIX}{{id}}"), "anomaly")
                .with_title("A stored anomaly")
                .with_description("One anomaly record by id, as GET /api/v1/anomalies lists it.")
                .with_mime_type("application/json"),
        ]))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let uri = request.uri;
        let document = self.resource_json(&uri).await?;
        Ok(ReadResourceResult::new(vec![
            ResourceContents::text(document.to_string(), uri).with_mime_type("application/json"),
        ])
        .into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tool_has_object_schemas_and_says_whether_it_writes() {
        let tools = AnomalyServer::tool_router().list_all();
        assert_eq!(tools.len(), 11);
        for tool in tools {
            let name = tool.name.to_string();
            assert_eq!(
                tool.input_schema.get("type"),
                Some(&Value::from("object")),
                "{name}"
            );
            let output = tool.output_schema.as_ref().expect("an output schema");
            assert_eq!(output.get("type"), Some(&Value::from("object")), "{name}");
            let annotations = tool.annotations.as_ref().expect("annotations");
            let writes = matches!(
                name.as_str(),
                "ingest_logs" | "submit_feedback" | "start_training"
            );
            assert_eq!(annotations.read_only_hint, Some(!writes), "{name}");
            assert_eq!(annotations.open_world_hint, Some(false), "{name}");
        }
    }

    #[test]
    fn a_rule_anomaly_is_explained_by_its_rules() {
        let record = AnomalyRecord {
            id: 7,
            timestamp: chrono::Utc::now(),
            service: "web_server".into(),
            source: "nginx".into(),
            log_level: None,
            message: None,
            anomaly_score: None,
            rule_violation: true,
            detector: DetectorKind::Rule,
            violations: vec![crate::detect::rules::RuleViolation {
                feature: "response_time".into(),
                threshold: 2000.0,
                value: 5000.0,
            }],
            reasons: Vec::new(),
            features: Default::default(),
            raw_log: String::new(),
            metadata: Map::new(),
            context: Map::new(),
        };
        let lines = why(&record);
        assert_eq!(
            lines,
            ["response_time = 5000 is above its threshold 2000 (rule)"]
        );
        let summary = explanation_summary(&record, &lines);
        assert!(summary.starts_with("A threshold rule"), "{summary}");
        assert!(summary.contains("no model yet"), "{summary}");
    }
}
