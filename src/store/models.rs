//! The models and training_jobs tables: which model serves each service, and what each
//! training job did.

use chrono::Utc;
use rusqlite::{OptionalExtension, params};

use crate::detect::models::ModelSource;

use super::{
    ModelRecord, Sqlite, StoreError, TrainingJobRecord, from_json, parse_column, parse_timestamp,
    timestamp_text, to_json,
};

/// A stored model's source. The store is ours, but a row edited by hand or written by a newer
/// version must not take the model down with it: the source is only a label, so an unknown one
/// is shown as `file` (with a warning).
pub(crate) fn model_source(service: &str, text: &str) -> ModelSource {
    text.parse().unwrap_or_else(|error| {
        tracing::warn!(service, %error, "Model recorded with an unknown source; shown as file.");
        ModelSource::File
    })
}

impl Sqlite {
    /// Records the current model of each service of `records`, replacing their previous records,
    /// in one transaction: a training run applies all of its models or none, whenever the
    /// process stops.
    pub async fn record_models(&self, records: Vec<ModelRecord>) -> Result<(), StoreError> {
        self.write(move |connection, _| {
            let transaction = connection.transaction()?;
            {
                let mut upsert = transaction.prepare_cached(
                    "INSERT INTO models (service, path, feature_names, training_samples, trained_at, threshold, source, job_id) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
                     ON CONFLICT (service) DO UPDATE SET path = excluded.path, feature_names = excluded.feature_names, \
                     training_samples = excluded.training_samples, trained_at = excluded.trained_at, \
                     threshold = excluded.threshold, source = excluded.source, job_id = excluded.job_id",
                )?;
                for record in &records {
                    upsert.execute(params![
                        record.service,
                        record.path,
                        to_json(&record.feature_names),
                        i64::try_from(record.training_samples).unwrap_or(i64::MAX),
                        timestamp_text(&record.trained_at),
                        record.threshold,
                        record.source.as_str(),
                        record.job_id,
                    ])?;
                }
            }
            transaction.commit()?;
            Ok(())
        })
        .await
    }

    pub async fn list_models(&self) -> Result<Vec<ModelRecord>, StoreError> {
        self.read(|connection| {
            let mut statement = connection.prepare_cached(
                "SELECT service, path, feature_names, training_samples, trained_at, threshold, source, job_id \
                 FROM models ORDER BY service",
            )?;
            let mut rows = statement.query([])?;
            let mut records = Vec::new();
            while let Some(row) = rows.next()? {
                let features: String = row.get(2)?;
                let samples: i64 = row.get(3)?;
                let trained_at: String = row.get(4)?;
                let service: String = row.get(0)?;
                records.push(ModelRecord {
                    source: model_source(&service, &row.get::<_, String>(6)?),
                    service,
                    path: row.get(1)?,
                    feature_names: from_json("models.feature_names", &features)?,
                    training_samples: u64::try_from(samples).unwrap_or(0),
                    trained_at: parse_timestamp(&trained_at)?,
                    threshold: row.get(5)?,
                    job_id: row.get(7)?,
                });
            }
            Ok(records)
        })
        .await
    }

    pub async fn upsert_training_job(&self, record: TrainingJobRecord) -> Result<(), StoreError> {
        self.write(move |connection, _| {
            connection.execute(
                "INSERT INTO training_jobs (job_id, status, created_at, started_at, finished_at, detail) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                 ON CONFLICT (job_id) DO UPDATE SET status = excluded.status, started_at = excluded.started_at, \
                 finished_at = excluded.finished_at, detail = excluded.detail",
                params![
                    record.job_id,
                    record.status.as_str(),
                    timestamp_text(&record.created_at),
                    record.started_at.as_ref().map(timestamp_text),
                    record.finished_at.as_ref().map(timestamp_text),
                    to_json(&record.detail),
                ],
            )?;
            Ok(())
        })
        .await
    }

    pub async fn get_training_job(
        &self,
        job_id: impl Into<String>,
    ) -> Result<Option<TrainingJobRecord>, StoreError> {
        let job_id = job_id.into();
        self.read(move |connection| {
            let row = connection
                .query_row(
                    "SELECT job_id, status, created_at, started_at, finished_at, detail FROM training_jobs WHERE job_id = ?1",
                    [&job_id],
                    |row| {
                        let created: String = row.get(2)?;
                        let started: Option<String> = row.get(3)?;
                        let finished: Option<String> = row.get(4)?;
                        let detail: String = row.get(5)?;
                        Ok((
                            row.get::<_, String>(0)?,
                            parse_column(&row.get::<_, String>(1)?)?,
                            parse_timestamp(&created)?,
                            started.as_deref().map(parse_timestamp).transpose()?,
                            finished.as_deref().map(parse_timestamp).transpose()?,
                            detail,
                        ))
                    },
                )
                .optional()?;
            row.map(|(job_id, status, created_at, started_at, finished_at, detail)| {
                Ok(TrainingJobRecord {
                    job_id,
                    status,
                    created_at,
                    started_at,
                    finished_at,
                    detail: from_json("training_jobs.detail", &detail)?,
                })
            })
            .transpose()
        })
        .await
    }

    /// Settles the jobs left queued or running by a process that stopped. A job whose models
    /// were recorded had applied them (they are recorded in one transaction) and only its report
    /// was lost: it is marked succeeded. The others never applied anything: failed, with `reason`.
    pub async fn settle_unfinished_jobs(&self, reason: &str) -> Result<SettledJobs, StoreError> {
        let failed = to_json(&serde_json::json!({"error": reason}));
        let applied = to_json(&serde_json::json!({
            "note": "the service stopped after this job's models were applied, before its report was written"
        }));
        self.write(move |connection, _| {
            let transaction = connection.transaction()?;
            let now = timestamp_text(&Utc::now());
            let applied = transaction.execute(
                "UPDATE training_jobs SET status = 'succeeded', finished_at = ?1, detail = ?2 \
                 WHERE status IN ('queued', 'running') \
                 AND job_id IN (SELECT job_id FROM models WHERE job_id IS NOT NULL)",
                params![now, applied],
            )?;
            let failed = transaction.execute(
                "UPDATE training_jobs SET status = 'failed', finished_at = ?1, detail = ?2 \
                 WHERE status IN ('queued', 'running')",
                params![now, failed],
            )?;
            transaction.commit()?;
            Ok(SettledJobs { failed, applied })
        })
        .await
    }
}

/// What [`Store::settle_unfinished_jobs`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SettledJobs {
    /// Jobs that had applied nothing: now failed.
    pub failed: usize,
    /// Jobs whose models were applied: now succeeded.
    pub applied: usize,
}
