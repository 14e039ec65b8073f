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
        self.verdict(violations, score)
    }

    /// Rules first: any violation makes a rule anomaly; otherwise a model score below 0 and below
    /// `ANOMALY_THRESHOLD` makes a model anomaly.
    fn verdict(&self, violations: Vec<RuleViolation>, score: Option<f64>) -> Verdict {
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

    /// [`Detector::evaluate`] for many logs at once (`(service, feature lookup)` each): the same
    /// verdicts, in order, but each model scores its logs' rows together with the forest's batch
    /// scorer, which walks every tree for 16 rows at a time.
    pub fn evaluate_all<F>(&self, models: &ModelMap, logs: &[(&str, F)]) -> Vec<Verdict>
    where
        F: Fn(&str) -> Option<f64> + Copy,
    {
        // One batch per model: the model, its rows (row-major), and whose they are.
        let mut batches: Vec<(&ServiceModel, Vec<f64>, Vec<usize>)> = Vec::new();
        for (index, (service, feature)) in logs.iter().enumerate() {
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
            model.push_row(*feature, &mut batch.1);
            batch.2.push(index);
        }
        let mut scores = vec![None; logs.len()];
        for (model, rows, owners) in &batches {
            for (&index, score) in owners.iter().zip(model.decision_scores(rows, owners.len())) {
                scores[index] = Some(score);
            }
        }
        logs.iter()
            .zip(scores)
            .map(|((service, feature), score)| {
                self.verdict(self.rules.violations(service, *feature), score)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::Utc;

    use super::*;
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
        }
    }

    #[test]
    fn evaluate_all_gives_the_verdicts_of_evaluate_one_by_one() {
        let detector = Detector::new(RuleSet::default(), -0.05);
        detector.models.replace(model("scored"));
        let models = detector.models.snapshot();
        let rows: Vec<(&str, BTreeMap<&str, f64>)> = (0..45)
            .map(|i| {
                let service = ["scored", "unscored", "web_server"][i % 3];
                let mut features = BTreeMap::from([("a", i as f64 * 13.0), ("cpu_usage", 50.0)]);
                if i % 4 != 0 {
                    features.insert("b", (i % 9) as f64);
                }
                if i == 7 {
                    features.insert("response_time", 1e6);
                }
                (service, features)
            })
            .collect();
        let lookups: Vec<_> = rows
            .iter()
            .map(|(service, features)| (*service, |name: &str| features.get(name).copied()))
            .collect();
        let together = detector.evaluate_all(&models, &lookups);
        let mut row = Vec::new();
        let one_by_one: Vec<Verdict> = lookups
            .iter()
            .map(|(service, lookup)| detector.evaluate(&models, service, *lookup, &mut row))
            .collect();
        assert_eq!(together, one_by_one);
        assert!(together.iter().any(|v| v.score.is_some()));
        assert!(together.iter().any(|v| v.score.is_none()));
    }
}
