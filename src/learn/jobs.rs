//! Training jobs (POST /api/v1/train): one at a time, recorded in the store from queued to
//! succeeded or failed, fitting one model per service of the posted logs.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use serde_json::{Value, json};

use super::Learner;
use crate::detect::baseline::{Sample, sample_of};
use crate::detect::models::ModelSource;
use crate::parse::{Parser, RawLog};
use crate::store::{JobStatus, StoreError, TrainingJobRecord};
use crate::sync::lock;
use crate::telemetry::spawn_blocking_in_span;

/// Why a training job was not started.
#[derive(Debug, thiserror::Error)]
pub enum JobRefused {
    #[error("A training job is already queued or running ({0}); try again when it has finished.")]
    Busy(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Learner {
    /// Starts a training job on posted logs; answers at once with the job id.
    ///
    /// # Errors
    /// [`JobRefused::Busy`] while another job is queued or running.
    pub async fn start_job(self: &Arc<Self>, logs: Vec<RawLog>) -> Result<String, JobRefused> {
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
        let grouped = spawn_blocking_in_span(move || group_by_service(&parser, logs)).await;
        let (groups, unparseable) = match grouped {
            Ok(grouped) => grouped,
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

/// Parses posted logs and groups their features by service; returns the groups and the count of
/// logs that could not be parsed.
fn group_by_service(parser: &Parser, logs: Vec<RawLog>) -> (Vec<(String, Vec<Sample>)>, usize) {
    let mut groups: HashMap<String, Vec<Sample>> = HashMap::new();
    let mut unparseable = 0;
    for raw in logs {
        match parser.parse(&raw) {
            Ok(parsed) => groups
                .entry(raw.service)
                .or_default()
                .push(sample_of(&parsed)),
            Err(_) => unparseable += 1,
        }
    }
    let mut groups: Vec<_> = groups.into_iter().collect();
    groups.sort_by(|a, b| a.0.cmp(&b.0));
    (groups, unparseable)
}
