//! The rows the service keeps, as the API shows them.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::detect::DetectorKind;
use crate::detect::baseline::Reason;
use crate::detect::models::ModelSource;
use crate::detect::rules::RuleViolation;
use crate::parse::FormatType;

/// A stored anomaly: the contract's `AnomalyRecord` plus `id`, `detector`, `violations` and
/// `reasons`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AnomalyRecord {
    pub id: i64,
    /// The log's own timestamp, or its time of arrival when it has none.
    pub timestamp: DateTime<Utc>,
    pub service: String,
    pub source: String,
    pub log_level: Option<String>,
    pub message: Option<String>,
    /// The model's decision score; `null` for a service without a model.
    pub anomaly_score: Option<f64>,
    pub rule_violation: bool,
    pub detector: DetectorKind,
    pub violations: Vec<RuleViolation>,
    /// Why the model flagged it, strongest first (empty for rule anomalies).
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub reasons: Vec<Reason>,
    pub features: BTreeMap<String, f64>,
    pub raw_log: String,
    pub metadata: Map<String, Value>,
    pub context: Map<String, Value>,
}

/// Which anomalies to list.
#[derive(Debug, Clone, PartialEq)]
pub struct AnomalyQuery {
    pub limit: usize,
    pub service: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub detector: Option<DetectorKind>,
    /// Only anomalies whose model score is at most this (lower is more anomalous); those without
    /// a score (rule anomalies of a service with no model) are left out when it is set.
    pub max_score: Option<f64>,
    pub order: AnomalyOrder,
}

impl Default for AnomalyQuery {
    fn default() -> Self {
        Self {
            limit: 100,
            service: None,
            since: None,
            detector: None,
            max_score: None,
            order: AnomalyOrder::Time,
        }
    }
}

/// `order=time` (newest first) or `order=score` (most anomalous, i.e. lowest score, first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnomalyOrder {
    Time,
    Score,
}

/// One operator label.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedbackRecord {
    pub id: i64,
    pub service: String,
    pub source: String,
    pub format_type: FormatType,
    pub raw_log: String,
    pub custom_config: Option<Value>,
    pub is_anomaly: bool,
    pub received_at: DateTime<Utc>,
}

/// Where a service's current model file is and what it was trained on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelRecord {
    pub service: String,
    pub path: String,
    pub feature_names: Vec<String>,
    pub training_samples: u64,
    pub trained_at: DateTime<Utc>,
    pub threshold: f64,
    pub source: ModelSource,
    pub job_id: Option<String>,
}

/// Where a training job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
}

impl JobStatus {
    /// The stored and shown name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }
}

/// A job status none of [`JobStatus`]'s names.
#[derive(Debug, thiserror::Error)]
#[error("unknown training job status {0:?}")]
pub struct UnknownJobStatus(String);

impl std::str::FromStr for JobStatus {
    type Err = UnknownJobStatus;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        [Self::Queued, Self::Running, Self::Succeeded, Self::Failed]
            .into_iter()
            .find(|status| status.as_str() == name)
            .ok_or_else(|| UnknownJobStatus(name.to_owned()))
    }
}

/// A training job's state, as GET /api/v1/train/{job_id} shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingJobRecord {
    pub job_id: String,
    pub status: JobStatus,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub detail: Value,
}
