//! Per-service models behind one atomic pointer: readers take a snapshot without locking, a retrain
//! publishes a whole new map in one swap, so a batch is scored wholly by the old or wholly by the new.

use foldhash::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::detect::baseline::Baseline;
use crate::forest::{Contamination, ModelArtifact};

/// Where a model came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ModelSource {
    /// Fitted automatically from the service's own recent normal logs.
    Auto,
    /// Fitted by POST /api/v1/train.
    TrainJob,
    /// Loaded from a file (MODEL_PATH or DATA_DIR/models).
    File,
}

impl ModelSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::TrainJob => "train_job",
            Self::File => "file",
        }
    }
}

/// A model source name that no version of the service writes.
#[derive(Debug, thiserror::Error)]
#[error("unknown model source {0:?} (expected auto, train_job or file)")]
pub struct UnknownModelSource(String);

impl std::str::FromStr for ModelSource {
    type Err = UnknownModelSource;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "auto" => Ok(Self::Auto),
            "train_job" => Ok(Self::TrainJob),
            "file" => Ok(Self::File),
            other => Err(UnknownModelSource(other.to_owned())),
        }
    }
}

/// What a forest fitted with contamination "auto" is taken to flag.
const AUTO_CONTAMINATION_SHARE: f64 = 0.05;

/// A fitted forest with the features it reads, ready to score a service's logs.
#[derive(Debug, Clone)]
pub struct ServiceModel {
    pub service: String,
    pub artifact: ModelArtifact,
    pub training_samples: u64,
    pub trained_at: DateTime<Utc>,
    pub source: ModelSource,
    pub job_id: Option<String>,
    /// What normal means for the service; `None` for a model file written before baselines,
    /// which then judges by the forest alone.
    pub baseline: Option<Baseline>,
}

impl ServiceModel {
    /// The decision score (`score_samples - offset`, below 0 is an outlier) of a log's features.
    /// A feature the log lacks takes its training median; features the model never saw are ignored.
    /// `row` is scratch space reused across logs so scoring allocates nothing.
    pub fn decision_score(&self, feature: impl Fn(&str) -> Option<f64>, row: &mut Vec<f64>) -> f64 {
        row.clear();
        self.push_row(feature, row);
        self.artifact.forest.decision_function_one(row)
    }

    /// Appends a log's row (as [`ServiceModel::decision_score`] builds it) to `rows`.
    pub fn push_row(&self, feature: impl Fn(&str) -> Option<f64>, rows: &mut Vec<f64>) {
        rows.extend(
            self.artifact
                .feature_names
                .iter()
                .zip(&self.artifact.fill_values)
                .map(|(name, fill)| feature(name).unwrap_or(*fill)),
        );
    }

    /// The decision scores of the `count` rows appended by [`ServiceModel::push_row`], in order:
    /// the same values as [`ServiceModel::decision_score`] on each, computed with the forest's
    /// batch scorer (16 rows per tree walk), several times cheaper per row than one at a time.
    pub fn decision_scores(&self, rows: &[f64], count: usize) -> Vec<f64> {
        let forest = &self.artifact.forest;
        let width = self.artifact.feature_names.len();
        if width > 0 && width == forest.n_features() && rows.len() == width * count {
            return forest.decision_function_rows(rows);
        }
        (0..count)
            .map(|index| forest.decision_function_one(&rows[index * width..(index + 1) * width]))
            .collect()
    }

    /// The share of a service's normal logs this model flags by design: its baseline's false-alarm
    /// budget; for a model without a baseline, which flags below the forest's offset, its
    /// contamination (a forest with contamination "auto" is taken as 5 %, scikit-learn's usual
    /// reading of it). Rate alerts judge a window's model anomalies against it.
    pub fn expected_flag_share(&self) -> f64 {
        if let Some(baseline) = &self.baseline {
            return baseline.budget;
        }
        match self.artifact.forest.fitted_params().contamination() {
            Contamination::Fraction(share) => share,
            Contamination::Auto => AUTO_CONTAMINATION_SHARE,
        }
    }

    /// The metadata key under which a model file keeps its baseline, as JSON.
    pub const BASELINE_KEY: &'static str = "baseline";

    /// The baseline a model file carries, if any and usable. A file without one (written before
    /// baselines existed) is fine; one that does not read or validate is logged and ignored, so
    /// the service falls back to the forest alone instead of refusing the model.
    pub fn baseline_of(artifact: &ModelArtifact) -> Option<Baseline> {
        let text = artifact.metadata.get(Self::BASELINE_KEY)?;
        let read = serde_json::from_str::<Baseline>(text)
            .map_err(|error| error.to_string())
            .and_then(|baseline| {
                baseline.validate().map_err(|error| error.to_string())?;
                Ok(baseline)
            });
        match read {
            Ok(baseline) => Some(baseline),
            Err(error) => {
                tracing::warn!(%error, "Model baseline ignored; the forest alone judges this service.");
                None
            }
        }
    }

    /// The offset under which a score counts as an outlier, as trained or calibrated.
    pub fn threshold(&self) -> f64 {
        self.artifact.forest.offset()
    }
}

/// Models by service name.
pub type ModelMap = HashMap<String, Arc<ServiceModel>>;

/// The current model of every service.
#[derive(Debug, Default)]
pub struct ModelRegistry {
    models: ArcSwap<ModelMap>,
}

impl ModelRegistry {
    /// All models as of now; hold it for a whole batch.
    pub fn snapshot(&self) -> Arc<ModelMap> {
        self.models.load_full()
    }

    pub fn get(&self, service: &str) -> Option<Arc<ServiceModel>> {
        self.models.load().get(service).cloned()
    }

    /// Publishes `model` for its service in one atomic swap.
    pub fn replace(&self, model: ServiceModel) {
        let model = Arc::new(model);
        self.models.rcu(|current| {
            let mut next = ModelMap::clone(current);
            next.insert(model.service.clone(), Arc::clone(&model));
            next
        });
    }

    /// Publishes several models in one swap, so a batch never sees half a retrain.
    pub fn replace_all(&self, models: Vec<ServiceModel>) {
        let models: Vec<Arc<ServiceModel>> = models.into_iter().map(Arc::new).collect();
        self.models.rcu(|current| {
            let mut next = ModelMap::clone(current);
            for model in &models {
                next.insert(model.service.clone(), Arc::clone(model));
            }
            next
        });
    }

    pub fn len(&self) -> usize {
        self.models.load().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_sources_read_back_what_they_write_and_refuse_the_rest() {
        for source in [ModelSource::Auto, ModelSource::TrainJob, ModelSource::File] {
            assert_eq!(source.as_str().parse::<ModelSource>().ok(), Some(source));
        }
        let error = "manual".parse::<ModelSource>().expect_err("not a source");
        assert!(error.to_string().contains("\"manual\""), "{error}");
    }
}
