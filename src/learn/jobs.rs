//! Training jobs (POST /api/v1/train): one at a time, recorded in the store from queued to
//! succeeded or failed, fitting one model per service of the posted logs.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use serde_json::{Value, json};

use super::Learner;
use super::sample::FeatureWidth;
use crate::detect::baseline::Sample;
use crate::detect::models::ModelSource;
use crate::parse::{Parser, RawLog, TooManyPatterns, check_patterns};
use crate::store::{JobStatus, StoreError, TrainingJobRecord};
use crate::sync::lock;
use crate::telemetry::spawn_blocking_in_span;

/// Why a training job was not started.
#[derive(Debug, thiserror::Error)]
pub enum JobRefused {
    #[error("A training job is already queued or running ({0}); try again when it has finished.")]
    Busy(String),
    /// More distinct regex patterns than `MAX_PATTERNS_PER_REQUEST` among the posted logs.
    #[error(transparent)]
    TooManyPatterns(#[from] TooManyPatterns),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Learner {
    /// Starts a training job on posted logs; answers at once with the job id.
    ///
    /// # Errors
    /// [`JobRefused::TooManyPatterns`] before anything else (as the ingest service refuses such a
    /// batch); [`JobRefused::Busy`] while another job is queued or running.
    pub async fn start_job(self: &Arc<Self>, logs: Vec<RawLog>) -> Result<String, JobRefused> {
        check_patterns(&logs, self.config.max_patterns_per_request)?;
        let job_id = uuid::Uuid::new_v4().to_string();
        {
            let mut active = lock(&self.active_job);
            if let Some(current) = active.as_ref() {
                return Err(JobRefused::Busy(current.clone()));
            }
            *active = Some(job_id.clone());
        }
        let record = TrainingJobRecord {
            job_id: job_id.clone(),
            status: JobStatus::Queued,
            created_at: Utc::now(),
            started_at: None,
            finished_at: None,
            detail: json!({"logs": logs.len()}),
        };
        if let Err(error) = self.store.upsert_training_job(record.clone()).await {
            *lock(&self.active_job) = None;
            return Err(error.into());
        }
        let learner = Arc::clone(self);
        tokio::spawn(async move {
            learner.run_job(record, logs).await;
            *lock(&learner.active_job) = None;
        });
        Ok(job_id)
    }

    async fn run_job(self: &Arc<Self>, mut record: TrainingJobRecord, logs: Vec<RawLog>) {
        let _turn = self.training.lock().await;
        record.status = JobStatus::Running;
        record.started_at = Some(Utc::now());
        self.save_job(&record).await;
        let started = Instant::now();
        let total = logs.len();
        let parser = Arc::clone(&self.parser);
        let width = self.config.max_features_per_service;
        let grouped = spawn_blocking_in_span(move || group_by_service(&parser, logs, width)).await;
        let (groups, unparseable) = match grouped {
            Ok((groups, unparseable, left_out)) => {
                for (service, left_out) in left_out {
                    self.left_out_for_width(&service, left_out);
                }
                (groups, unparseable)
            }
            Err(error) => {
                self.finish_job(
                    &mut record,
                    JobStatus::Failed,
                    json!({"reason": error.to_string()}),
                )
                .await;
                return;
            }
        };
        let job_id = record.job_id.clone();
        let outcome = self
            .fit_and_publish(groups, ModelSource::TrainJob, Some(job_id))
            .await;
        let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
        let (status, detail) = match outcome {
            Ok(reports) => (
                JobStatus::Succeeded,
                json!({"logs": total, "unparseable_logs": unparseable, "services": reports, "duration_ms": elapsed_ms}),
            ),
            Err(failures) => {
                let reasons: Vec<String> = failures
                    .iter()
                    .map(|(service, why)| format!("{service}: {why}"))
                    .collect();
                (
                    JobStatus::Failed,
                    json!({"logs": total, "unparseable_logs": unparseable, "reason": reasons.join("; "), "duration_ms": elapsed_ms}),
                )
            }
        };
        self.finish_job(&mut record, status, detail).await;
    }

    async fn finish_job(&self, record: &mut TrainingJobRecord, status: JobStatus, detail: Value) {
        record.status = status;
        record.finished_at = Some(Utc::now());
        record.detail = detail;
        self.save_job(record).await;
        match status {
            JobStatus::Failed => {
                tracing::warn!(job_id = record.job_id, detail = %record.detail, "Training job failed.")
            }
            _ => tracing::info!(job_id = record.job_id, "Training job finished."),
        }
    }

    async fn save_job(&self, record: &TrainingJobRecord) {
        if let Err(error) = self.store.upsert_training_job(record.clone()).await {
            tracing::error!(%error, job_id = record.job_id, "Could not record the training job's state.");
        }
    }
}

/// Services' samples of a job, each held to `MAX_FEATURES_PER_SERVICE` names as a tracked
/// service's sample is.
type Groups = HashMap<String, (Vec<Sample>, FeatureWidth, usize)>;

/// Parses posted logs and groups their features by service, each group within `width` feature
/// names; returns the groups, the count of logs that could not be parsed, and the features left
/// out for the width by service.
#[allow(clippy::type_complexity)]
fn group_by_service(
    parser: &Parser,
    logs: Vec<RawLog>,
    width: usize,
) -> (Vec<(String, Vec<Sample>)>, usize, Vec<(String, usize)>) {
    let mut groups: Groups = HashMap::new();
    let mut unparseable = 0;
    let mut parser = parser.batch();
    for raw in logs {
        match parser.parse(&raw) {
            Ok(parsed) => {
                let (rows, names, left_out) = groups
                    .entry(raw.service)
                    .or_insert_with(|| (Vec::new(), FeatureWidth::new(width), 0));
                let (sample, dropped) = names.sample_of(&parsed);
                *left_out += dropped;
                rows.push(sample);
            }
            Err(_) => unparseable += 1,
        }
    }
    let mut left_out = Vec::new();
    let mut groups: Vec<_> = groups
        .into_iter()
        .map(|(service, (rows, _, dropped))| {
            if dropped > 0 {
                left_out.push((service.clone(), dropped));
            }
            (service, rows)
        })
        .collect();
    groups.sort_by(|a, b| a.0.cmp(&b.0));
    (groups, unparseable, left_out)
}
