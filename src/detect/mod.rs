//! Detection: rules first, then the service's own isolation forest. Pure and synchronous.
//!
//! Contract, "Detection semantics" 1–2: a log breaking any rule is an anomaly (`detector: "rule"`);
//! otherwise the service's model judges it (`detector: "model"`): by its learned baseline
//! ([`baseline`]: features, categories, joint distance and forest, held to the false-alarm budget),
//! each anomaly with its reasons. A model without a baseline (a file from an older version) judges
//! by the forest alone: a decision score below 0 and below `ANOMALY_THRESHOLD`. The forest's score
//! is reported for every log it scored, rule anomalies included. A service without a model is
//! judged by its rules alone.

pub mod baseline;
pub mod models;
pub mod rules;
pub mod stats;

use serde::{Deserialize, Serialize};

use crate::detect::baseline::{Observation, Reason};
use crate::detect::models::{ModelMap, ModelRegistry, ServiceModel};
use crate::detect::rules::{DEFAULT_SERVICE_KEY, RuleSet, RuleViolation};
use crate::parse::{ParsedLog, RawLog};

/// Which detector flagged a log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
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

    /// The kind a stored `detector` column names: `model`, and anything else is a rule.
    pub fn from_stored(name: &str) -> Self {
        if name == Self::Model.as_str() {
            Self::Model
        } else {
            Self::Rule
        }
    }
}

/// The judgement on one log.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Verdict {
    /// The model's decision score, when the service has a model.
    pub score: Option<f64>,
    pub violations: Vec<RuleViolation>,
    pub detector: Option<DetectorKind>,
    /// Why the model flagged the log; empty otherwise.
    pub reasons: Vec<Reason>,
    /// The share of normal logs the model that scored this log flags by design
    /// ([`ServiceModel::expected_flag_share`]); `None` when no model scored it.
    pub model_share: Option<f64>,
}

/// A log and its verdict: what the pipeline stores and the learning loop samples.
#[derive(Debug)]
pub struct JudgedLog {
    pub raw: RawLog,
    pub parsed: ParsedLog,
    pub verdict: Verdict,
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

    /// Judges one log of `service`, with the models of one snapshot.
    pub fn evaluate(
        &self,
        models: &ModelMap,
        service: &str,
        log: &impl Observation,
        row: &mut Vec<f64>,
    ) -> Verdict {
        let feature = |name: &str| log.feature(name);
        let violations = self.rules.violations(service, feature);
        let model = Self::model_for(models, service);
        let score = model.map(|model| model.decision_score(feature, row));
        self.verdict(violations, model.zip(score), log)
    }

    /// Rules first: any violation makes a rule anomaly; otherwise the model's baseline decides
    /// (see [`baseline`]), or, for a model without one, a score below 0 and `ANOMALY_THRESHOLD`.
    fn verdict(
        &self,
        violations: Vec<RuleViolation>,
        scored: Option<(&ServiceModel, f64)>,
        log: &impl Observation,
    ) -> Verdict {
        let score = scored.map(|(_, score)| score);
        let forest_cut = self.anomaly_threshold.min(0.0);
        let (detector, reasons) = if !violations.is_empty() {
            (Some(DetectorKind::Rule), Vec::new())
        } else {
            match scored {
                Some((model, score)) => match &model.baseline {
                    Some(baseline) => {
                        let reasons = baseline.judge(log, Some((score, forest_cut)));
                        (
                            (!reasons.is_empty()).then_some(DetectorKind::Model),
                            reasons,
                        )
                    }
                    None => (
                        (score < forest_cut).then_some(DetectorKind::Model),
                        Vec::new(),
                    ),
                },
                None => (None, Vec::new()),
            }
        };
        Verdict {
            score,
            violations,
            detector,
            reasons,
            model_share: scored.map(|(model, _)| model.expected_flag_share()),
        }
    }

    /// [`Detector::evaluate`] for many logs at once (`(service, feature lookup)` each): the same
    /// verdicts, in order, but each model scores its logs' rows together with the forest's batch
    /// scorer, which walks every tree for 16 rows at a time.
    pub fn evaluate_all<L: Observation>(
        &self,
        models: &ModelMap,
        logs: &[(&str, L)],
    ) -> Vec<Verdict> {
        // One batch per model: the model, its rows (row-major), and whose they are.
        let mut batches: Vec<(&ServiceModel, Vec<f64>, Vec<usize>)> = Vec::new();
        for (index, (service, log)) in logs.iter().enumerate() {
            let Some(model) = Self::model_for(models, service) else {
                continue;
            };
            let batch = match batches.iter().position(|(m, ..)| std::ptr::eq(*m, model)) {
                Some(at) => &mut batches[at],
                None => {
                    batches.push((model, Vec::new(), Vec::new()));
                    batches.last_mut().expect("just pushed")
                }
            };
            model.push_row(|name| log.feature(name), &mut batch.1);
            batch.2.push(index);
        }
        let mut scores: Vec<Option<(&ServiceModel, f64)>> = vec![None; logs.len()];
        for (model, rows, owners) in &batches {
            for (&index, score) in owners.iter().zip(model.decision_scores(rows, owners.len())) {
                scores[index] = Some((*model, score));
            }
        }
        logs.iter()
            .zip(scores)
            .map(|((service, log), scored)| {
                let violations = self.rules.violations(service, |name| log.feature(name));
                self.verdict(violations, scored, log)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::Utc;

    use super::*;
    use crate::detect::baseline::{Baseline, Sample};
    use crate::detect::models::ModelSource;
    use crate::forest::{IsolationForest, Matrix, ModelArtifact};

    fn model(service: &str) -> ServiceModel {
        let data: Vec<f64> = (0..400)
            .flat_map(|i| [f64::from(i % 37) * 10.0, f64::from(i % 11)])
            .collect();
        let forest = IsolationForest::params()
            .seed(42)
            .check()
            .expect("valid")
            .fit(&Matrix::from_rows(2, data).expect("finite"))
            .expect("fits");
        ServiceModel {
            service: service.to_owned(),
            artifact: ModelArtifact {
                feature_names: vec!["a".to_owned(), "b".to_owned()],
                fill_values: vec![5.0, 5.0],
                forest,
                metadata: BTreeMap::new(),
            },
            training_samples: 400,
            trained_at: Utc::now(),
            source: ModelSource::Auto,
            job_id: None,
            baseline: None,
        }
    }

    /// The model of [`model`] with a baseline learned from the same rows.
    fn model_with_baseline(service: &str) -> ServiceModel {
        let samples: Vec<Sample> = (0..400)
            .map(|i| Sample {
                features: BTreeMap::from([
                    ("a".into(), f64::from(i % 37) * 10.0),
                    ("b".into(), f64::from(i % 11)),
                ]),
                ..Sample::default()
            })
            .collect();
        let names = ["a".to_owned(), "b".to_owned()];
        let (baseline, _) = Baseline::fit(&samples, &names, 0.001);
        ServiceModel {
            baseline: Some(baseline),
            ..model(service)
        }
    }

    #[test]
    fn evaluate_all_gives_the_verdicts_of_evaluate_one_by_one() {
        let detector = Detector::new(RuleSet::default(), -0.05);
        detector.models.replace(model("scored"));
        detector.models.replace(model_with_baseline("explained"));
        let models = detector.models.snapshot();
        let logs: Vec<(&str, Sample)> = (0..60)
            .map(|i| {
                let service = ["scored", "unscored", "web_server", "explained"][i % 4];
                let mut features =
                    BTreeMap::from([("a".into(), i as f64 * 13.0), ("cpu_usage".into(), 50.0)]);
                if i % 5 != 0 {
                    features.insert("b".into(), (i % 9) as f64);
                }
                if i == 7 {
                    features.insert("response_time".into(), 1e6);
                }
                (
                    service,
                    Sample {
                        features,
                        ..Sample::default()
                    },
                )
            })
            .collect();
        let together = detector.evaluate_all(&models, &logs);
        let mut row = Vec::new();
        let one_by_one: Vec<Verdict> = logs
            .iter()
            .map(|(service, log)| detector.evaluate(&models, service, log, &mut row))
            .collect();
        assert_eq!(together, one_by_one);
        assert!(together.iter().any(|v| v.score.is_some()));
        assert!(together.iter().any(|v| v.score.is_none()));
        // Beyond the baseline's range (a reaches 360 in training), with its reasons.
        assert!(together.iter().any(|v| !v.reasons.is_empty()));
    }
}
