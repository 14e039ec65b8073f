//! What the MCP tools take and give: bounded argument types (their JSON Schemas are the tools'
//! input schemas) and the structured results (their schemas the output schemas).
//!
//! Arguments are decoded by [`Args`], which never fails the request: an argument that does not
//! fit is the tool's error, with a message the agent can act on, as MCP asks of input validation
//! ("Tool Execution Errors", spec 2025-11-25, server/tools).

use std::collections::BTreeMap;

use rmcp::handler::server::common::FromContextPart;
use rmcp::handler::server::tool::ToolCallContext;
use rmcp::model::JsonObject;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A tool's arguments, or why they do not fit its schema.
pub struct Args<T>(pub Result<T, String>);

impl<S, T: DeserializeOwned> FromContextPart<ToolCallContext<'_, S>> for Args<T> {
    fn from_context_part(context: &mut ToolCallContext<'_, S>) -> Result<Self, rmcp::ErrorData> {
        let arguments = context.arguments.take().unwrap_or_default();
        Ok(Self(
            serde_json::from_value(Value::Object(arguments))
                .map_err(|error| format!("Invalid arguments: {error}.")),
        ))
    }
}

/// The input schema of a tool taking `T`.
///
/// # Panics
/// When `T`'s schema is not an object schema: a bug in this module's types, caught by the tests
/// that list the tools.
pub fn input_schema<T: JsonSchema + std::any::Any>() -> std::sync::Arc<JsonObject> {
    rmcp::handler::server::tool::schema_for_input::<T>().unwrap_or_else(|error| {
        panic!(
            "the input schema of {}: {error}",
            std::any::type_name::<T>()
        )
    })
}

/// The most anomalies or alerts one call lists: enough to triage, small enough for a context
/// window.
pub const MAX_LIST_LIMIT: usize = 200;
/// The most logs one `ingest_logs` or `start_training` call takes (the service's own
/// `MAX_LOGS_PER_REQUEST` applies as well).
pub const MAX_TOOL_LOGS: usize = 1000;

/// Which detector flagged an anomaly.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DetectorName {
    /// A threshold rule (ALERT_CONDITIONS) was broken.
    Rule,
    /// The service's learned baseline and isolation forest judged it unusual.
    Model,
}

/// How anomalies are ordered.
#[derive(Debug, Clone, Copy, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderName {
    /// Newest first.
    #[default]
    Time,
    /// Most anomalous (lowest model score) first; unscored rule anomalies last.
    Score,
}

fn default_limit() -> usize {
    20
}

/// `query_anomalies`' arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryAnomalies {
    /// Only this service's anomalies (e.g. "web_server").
    #[schemars(length(min = 1, max = 256))]
    pub service: Option<String>,
    /// Only anomalies logged at or after this instant (RFC 3339, e.g. 2024-01-15T10:00:00Z;
    /// without an offset it is UTC).
    #[schemars(length(min = 10, max = 40))]
    pub since: Option<String>,
    /// Only anomalies flagged by this detector.
    pub detector: Option<DetectorName>,
    /// Only anomalies whose model score is at most this. The score is the isolation forest's
    /// decision score: below 0 is an outlier, and lower is more anomalous, so a lower bound on
    /// how anomalous is an upper bound on the score. Unscored rule anomalies are left out when
    /// it is given.
    #[schemars(range(min = -1.0, max = 1.0))]
    pub max_score: Option<f64>,
    /// "time" (newest first, the default) or "score" (most anomalous first).
    #[serde(default)]
    pub order: OrderName,
    /// How many anomalies to return, 1 to 200 (default 20).
    #[serde(default = "default_limit")]
    #[schemars(range(min = 1, max = 200))]
    pub limit: usize,
}

/// An anomaly's id.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AnomalyId {
    /// The anomaly's `id`, as `query_anomalies` lists it.
    #[schemars(range(min = 1))]
    pub id: i64,
}

/// An alert's state.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlertStateName {
    Firing,
    Resolved,
}

/// `list_alerts`' arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListAlerts {
    /// Only this service's alerts.
    #[schemars(length(min = 1, max = 256))]
    pub service: Option<String>,
    /// Only alerts in this state.
    pub state: Option<AlertStateName>,
    /// How many alerts to return, newest first, 1 to 200 (default 20).
    #[serde(default = "default_limit")]
    #[schemars(range(min = 1, max = 200))]
    pub limit: usize,
}

/// A service's name.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceName {
    /// The service, as its logs name it (e.g. "database").
    #[schemars(length(min = 1, max = 256))]
    pub service: String,
}

/// A log's format.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FormatName {
    /// `raw_log` is a JSON object; `timestamp`, `level`, `message` are read as such, numbers
    /// (and numbers with units, "500ms", "42%") are features.
    Json,
    /// `key=value` pairs, optionally after a bare timestamp and level.
    KeyValue,
    /// `custom_config` gives `pattern` and `field_mapping` (capture group index to field name).
    Regex,
    /// Not known: the service tells a JSON object, `key=value` pairs and a plain message apart.
    Auto,
}

fn default_source() -> String {
    "mcp".to_owned()
}

/// One log, as the REST API's RawLog.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogInput {
    /// The log line, or the JSON document as a string.
    #[schemars(length(min = 1, max = 65536))]
    pub raw_log: String,
    /// The service that wrote it; each service learns its own baseline.
    #[schemars(length(min = 1, max = 256))]
    pub service: String,
    /// Where it came from (host, container, file); default "mcp".
    #[serde(default = "default_source")]
    #[schemars(length(min = 1, max = 256))]
    pub source: String,
    /// How to read `raw_log`.
    pub format_type: FormatName,
    /// For "regex" only: {"pattern": "...", "field_mapping": {"0": "timestamp", "1": "level",
    /// "2": "cpu_usage"}}.
    pub custom_config: Option<Map<String, Value>>,
}

/// `ingest_logs`' arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IngestLogs {
    /// The logs, 1 to 1000; one result each, in order.
    #[schemars(length(min = 1, max = 1000))]
    pub logs: Vec<LogInput>,
    /// Labels stored with any anomaly found (e.g. {"deployment": "v2.3"}).
    pub tags: Option<BTreeMap<String, String>>,
}

/// `start_training`'s arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StartTraining {
    /// Normal logs to learn from, 1 to 1000, grouped by their service; each service with at
    /// least MIN_TRAIN_SAMPLES of them gets a new model.
    #[schemars(length(min = 1, max = 1000))]
    pub logs: Vec<LogInput>,
}

/// A training job's id.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JobId {
    /// The `job_id` `start_training` returned.
    #[schemars(length(min = 1, max = 64))]
    pub job_id: String,
}

/// `submit_feedback`'s arguments: a label for one stored anomaly or one log.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitFeedback {
    /// The stored anomaly this label is about (give this or `log`).
    #[schemars(range(min = 1))]
    pub anomaly_id: Option<i64>,
    /// The log this label is about (give this or `anomaly_id`).
    pub log: Option<LogInput>,
    /// true: it is a real anomaly; false: it is normal (a false alarm, or a log the next model
    /// should learn as normal).
    pub is_anomaly: bool,
}

/// `triage_anomaly`'s argument (prompt arguments are strings).
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
pub struct TriageArgs {
    /// The anomaly's id, as `query_anomalies` lists it.
    pub anomaly_id: String,
}

/// One broken threshold rule.
#[derive(Debug, Serialize, JsonSchema)]
pub struct RuleBreach {
    pub feature: String,
    pub value: f64,
    pub threshold: f64,
}

/// One anomaly in a listing.
#[derive(Debug, Serialize, JsonSchema)]
pub struct AnomalySummary {
    pub id: i64,
    /// The log's own timestamp (RFC 3339), or its arrival when it had none.
    pub timestamp: String,
    pub service: String,
    pub source: String,
    pub log_level: Option<String>,
    pub message: Option<String>,
    /// The model's decision score (lower is more anomalous, below 0 an outlier); null for a
    /// service without a model.
    pub anomaly_score: Option<f64>,
    pub detector: DetectorName,
    /// Why it was flagged, one line per rule broken or evidence found, strongest first.
    pub why: Vec<String>,
}

/// `query_anomalies`' result.
#[derive(Debug, Serialize, JsonSchema)]
pub struct AnomalyList {
    pub count: usize,
    pub anomalies: Vec<AnomalySummary>,
}

/// Why an anomaly was flagged.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Explanation {
    /// One paragraph for people.
    pub summary: String,
    /// The threshold rules broken (detector "rule").
    pub rule_violations: Vec<RuleBreach>,
    /// The model's evidence, strongest first (detector "model"): each with its `kind`, the
    /// numbers behind it and a `summary` line.
    pub model_reasons: Vec<Value>,
    /// The model that serves the service now (it may be newer than the one that judged).
    pub current_model: Option<ModelSummary>,
}

/// `get_anomaly`'s result: the stored record and its explanation.
#[derive(Debug, Serialize, JsonSchema)]
pub struct AnomalyDetail {
    pub id: i64,
    pub timestamp: String,
    pub service: String,
    pub source: String,
    pub log_level: Option<String>,
    pub message: Option<String>,
    pub anomaly_score: Option<f64>,
    pub detector: DetectorName,
    /// The log's numeric features.
    pub features: BTreeMap<String, f64>,
    /// The log as it was posted (cut to MAX_STORED_ANOMALY_BYTES; `context.stored_truncated`
    /// says so).
    pub raw_log: String,
    /// `format_type`, the log's other attributes and the batch's tags.
    pub metadata: Map<String, Value>,
    /// When it arrived, whether the log carried its own timestamp, what was cut.
    pub context: Map<String, Value>,
    pub explanation: Explanation,
}

/// `list_alerts`' result.
#[derive(Debug, Serialize, JsonSchema)]
pub struct AlertList {
    pub count: usize,
    /// Alerts, newest first, each with its deliveries per channel (as GET /api/v1/alerts).
    pub alerts: Vec<Value>,
}

/// `alert_stats`' result.
#[derive(Debug, Serialize, JsonSchema)]
pub struct AlertStats {
    /// Services tracked and firing, alerts fired, repeated and resolved since start-up, and the
    /// delivery outcome per channel (as GET /api/v1/alerts/stats).
    pub stats: Map<String, Value>,
}

/// A service's model.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ModelSummary {
    pub service: String,
    /// The numeric features the model reads.
    pub features: Vec<String>,
    pub training_samples: u64,
    pub trained_at: String,
    /// The forest's score threshold: at or below it (with the baseline's evidence) a log is
    /// anomalous.
    pub threshold: f64,
    /// "auto" (learned from the service's own logs), "train_job" (a training job), or "file"
    /// (loaded from MODEL_PATH or DATA_DIR/models).
    pub source: String,
    pub job_id: Option<String>,
}

/// `list_models`' result.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ModelList {
    pub count: usize,
    pub models: Vec<ModelSummary>,
}

/// `get_baseline`'s result.
#[derive(Debug, Serialize, JsonSchema)]
pub struct BaselineReport {
    pub model: ModelSummary,
    /// What normal means for the service: per-feature medians and usual ranges, categories,
    /// relations between features; null for a model file written before baselines existed.
    pub baseline: Option<Value>,
}

/// `submit_feedback`'s result.
#[derive(Debug, Serialize, JsonSchema)]
pub struct FeedbackReceipt {
    pub message: String,
    pub service: String,
    pub is_anomaly: bool,
    /// Labels stored in all (GET /api/v1/metrics `feedback_received`).
    pub feedback_received: u64,
}

/// `start_training`'s result.
#[derive(Debug, Serialize, JsonSchema)]
pub struct TrainingStarted {
    pub job_id: String,
    pub status: String,
    pub message: String,
}

/// `training_status`' result.
#[derive(Debug, Serialize, JsonSchema)]
pub struct TrainingJob {
    pub job_id: String,
    /// "queued", "running", "succeeded" or "failed".
    pub status: String,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// Per service: the samples used, the new threshold, or why none was fitted.
    pub detail: Value,
}

/// `ingest_logs`' result.
#[derive(Debug, Serialize, JsonSchema)]
pub struct IngestReport {
    pub count: usize,
    /// How many of them are anomalies (stored, and counted toward the rate alerts).
    pub anomalies: usize,
    /// How many could not be parsed (their result says why).
    pub errors: usize,
    /// One per log, in order: `score`, `is_anomaly` (0 or 1), `detector`, `violations`,
    /// `reasons`, `error` (as POST /api/v1/stream/multi-source).
    pub results: Vec<Value>,
}
