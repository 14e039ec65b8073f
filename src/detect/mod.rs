//! Detection: rules first, then the service's own isolation forest. Pure and synchronous.
//!
//! Contract, "Detection semantics" 1–2: a log breaking any rule is an anomaly (`detector: "rule"`);
//! otherwise the service's model judges it: an anomaly when its decision score is below 0 and below
//! `ANOMALY_THRESHOLD` (`detector: "model"`). The model's score is reported for every log it scored,
//! rule anomalies included. A service without a model is judged by its rules alone.

pub mod models;
pub mod rate;
pub mod rules;

use serde::{Deserialize, Serialize};

use crate::detect::models::{ModelMap, ModelRegistry, ServiceModel};
use crate::detect::rules::{DEFAULT_SERVICE_KEY, RuleSet, RuleViolation};

/// Which detector flagged a log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DetectorKind {
    Rule,
    Model,
}

impl DetectorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rule => "rule",
            Self::Model => "model",
        }
    }
}

/// The judgement on one log.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// The model's decision score, when the service has a model.
    pub score: Option<f64>,
    pub violations: Vec<RuleViolation>,
    pub detector: Option<DetectorKind>,
}

impl Verdict {
    pub fn is_anomaly(&self) -> bool {
        self.detector.is_some()
    }
}

/// Rules plus per-service models.
#[derive(Debug)]
pub struct Detector {
    pub rules: RuleSet,
    pub models: ModelRegistry,
    pub anomaly_threshold: f64,
}

impl Detector {
    pub fn new(rules: RuleSet, anomaly_threshold: f64) -> Self {
        Self {
            rules,
            models: ModelRegistry::default(),
            anomaly_threshold,
        }
    }

    /// The model that judges `service`: its own, else a model loaded without a service name.
    pub fn model_for<'m>(models: &'m ModelMap, service: &str) -> Option<&'m ServiceModel> {
        models
            .get(service)
            .or_else(|| models.get(DEFAULT_SERVICE_KEY))
            .map(AsRef::as_ref)
    }

    /// Judges one log of `service` by its features, with the models of one snapshot.
    pub fn evaluate(
        &self,
        models: &ModelMap,
        service: &str,
        feature: impl Fn(&str) -> Option<f64> + Copy,
        row: &mut Vec<f64>,
    ) -> Verdict {
        let violations = self.rules.violations(service, feature);
        let score =
            Self::model_for(models, service).map(|model| model.decision_score(feature, row));
        let detector = if !violations.is_empty() {
            Some(DetectorKind::Rule)
        } else if score.is_some_and(|s| s < 0.0 && s < self.anomaly_threshold) {
            Some(DetectorKind::Model)
        } else {
            None
        };
        Verdict {
            score,
            violations,
            detector,
        }
    }
}
