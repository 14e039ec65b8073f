//! Fitting one service's model: the baseline, the forest on the rows the baseline keeps, the
//! forest's cut, and a calibration on operators' labels when there are enough of both kinds.

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;

use super::calibrate::calibrate_offset;
use super::dataset::{FeatureRow, build_training_set, matrix_of};
use super::{LearnError, Learner, ServiceReport};
use crate::detect::baseline::{Baseline, Sample, sample_of};
use crate::detect::models::{ModelSource, ServiceModel};
use crate::forest::{IsolationForest, MaxSamples, ModelArtifact};
use crate::parse::RawLog;
use crate::store::FeedbackRecord;

impl Learner {
    /// Fits one service's model: its rows plus labeled-normal feedback, minus labeled anomalies.
    /// The baseline is learned first; the rows it finds to be outliers are left out of the
    /// forest, and the forest's cut comes from the scores of the rest. With enough labels of
    /// both kinds the forest's offset (the `score`) is calibrated on them.
    pub(super) fn fit_service(
        &self,
        service: &str,
        mut rows: Vec<Sample>,
        feedback: &[FeedbackRecord],
        source: ModelSource,
        job_id: Option<String>,
    ) -> Result<(ServiceModel, ServiceReport), LearnError> {
        let started = Instant::now();
        let (normal_rows, anomalous_rows) = self.labeled_rows(feedback);
        let before = rows.len();
        rows.retain(|row| {
            !anomalous_rows
                .iter()
                .any(|labeled| labeled.features == row.features)
        });
        let excluded = before - rows.len();
        rows.extend(normal_rows.iter().cloned());
        let features: Vec<&FeatureRow> = rows.iter().map(|row| &row.features).collect();
        let set = build_training_set(&features, self.config.min_train_samples)?;
        let (mut baseline, outliers) =
            Baseline::fit(&rows, &set.feature_names, self.config.false_alarm_budget);
        let inliers: Vec<&FeatureRow> = features
            .iter()
            .zip(&outliers)
            .filter(|(_, outlier)| !**outlier)
            .map(|(row, _)| *row)
            .collect();
        // The forest learns from the rows the baseline keeps, unless that leaves too few.
        let matrix = if inliers.len() >= self.config.min_train_samples.max(2) {
            matrix_of(&inliers, &set.feature_names, &set.fill_values)?
        } else {
            set.matrix.clone()
        };
        let forest = IsolationForest::params()
            .n_estimators(self.config.n_estimators)
            .max_samples(MaxSamples::Auto)
            .contamination(self.config.contamination)
            .seed(self.config.seed)
            .check()?
            .fit(&matrix)?;
        let mut artifact = ModelArtifact {
            feature_names: set.feature_names.clone(),
            fill_values: set.fill_values.clone(),
            forest,
            metadata: Default::default(),
        };
        let score_rows = |rows: &[Sample]| -> Result<Vec<f64>, LearnError> {
            let features: Vec<&FeatureRow> = rows.iter().map(|r| &r.features).collect();
            let labeled = matrix_of(&features, &set.feature_names, &set.fill_values)?;
            Ok(artifact.forest.score_samples(&labeled))
        };
        let normal_scores = score_rows(&normal_rows)?;
        let anomalous_scores = score_rows(&anomalous_rows)?;
        let training_scores = artifact.forest.score_samples(&matrix);
        let calibrated = if normal_scores.is_empty() || anomalous_scores.is_empty() {
            None
        } else {
            calibrate_offset(
                &normal_scores,
                &anomalous_scores,
                &training_scores,
                artifact.forest.offset(),
            )
        };
        if let Some(offset) = calibrated {
            artifact.forest = artifact.forest.with_offset(offset);
        }
        let offset = artifact.forest.offset();
        baseline.set_forest_cut(training_scores.iter().map(|s| s - offset).collect());
        // Microseconds, as the store keeps it: every replica, and this one after a restart, shows
        // the same instant.
        let trained_at = chrono::SubsecRound::trunc_subsecs(Utc::now(), 6);
        artifact
            .metadata
            .insert("service".to_owned(), service.to_owned());
        artifact
            .metadata
            .insert("trained_at".to_owned(), trained_at.to_rfc3339());
        artifact
            .metadata
            .insert("source".to_owned(), source.as_str().to_owned());
        artifact.metadata.insert(
            ServiceModel::BASELINE_KEY.to_owned(),
            serde_json::to_string(&baseline).map_err(LearnError::Baseline)?,
        );
        let report = ServiceReport {
            service: service.to_owned(),
            samples: rows.len(),
            features: set.feature_names,
            threshold: artifact.forest.offset(),
            calibrated_from_feedback: calibrated.is_some(),
            feedback_normal_added: normal_rows.len(),
            feedback_anomalies_excluded: excluded,
            outliers_left_out: baseline.outliers,
            duration_ms: started.elapsed().as_secs_f64() * 1000.0,
        };
        let model = ServiceModel {
            service: service.to_owned(),
            artifact,
            training_samples: rows.len() as u64,
            trained_at,
            source,
            job_id,
            baseline: Some(baseline),
        };
        Ok((model, report))
    }

    /// Samples of labeled-normal (trusted) and labeled-anomalous feedback (unparseable records
    /// skipped).
    fn labeled_rows(&self, feedback: &[FeedbackRecord]) -> (Vec<Sample>, Vec<Sample>) {
        let mut normal = Vec::new();
        let mut anomalous = Vec::new();
        for record in feedback {
            let Some(raw) = raw_log_of(record) else {
                continue;
            };
            let Ok(parsed) = self.parser.parse(&raw) else {
                continue;
            };
            let mut sample = sample_of(&parsed);
            if record.is_anomaly {
                anomalous.push(sample);
            } else {
                sample.trusted = true;
                normal.push(sample);
            }
        }
        (normal, anomalous)
    }
}

/// The log a feedback record labels, as it was posted.
pub(super) fn raw_log_of(record: &FeedbackRecord) -> Option<RawLog> {
    Some(RawLog {
        raw_log: record.raw_log.clone(),
        service: record.service.clone(),
        source: record.source.clone(),
        format_type: record.format_type,
        custom_config: record
            .custom_config
            .clone()
            .map(|config| Arc::new(config.into())),
        envelope: None,
    })
}
