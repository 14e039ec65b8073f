//! Feedback, models and training jobs on PostgreSQL, and the column conversions they share.

use chrono::Utc;
use tokio_postgres::Row;

use super::{Postgres, bigint};
use crate::store::models::{SettledJobs, model_source};
use crate::store::{
    FeedbackRecord, ModelRecord, StoreError, TrainingJobRecord, from_json, to_json,
};

/// `text` without NUL, which PostgreSQL's text cannot hold: each becomes U+FFFD. Only names and
/// short fields pass here; raw logs are kept byte for byte (`bytea`).
pub(super) fn nul_free(text: &str) -> String {
    if text.contains('\0') {
        text.replace('\0', "\u{FFFD}")
    } else {
        text.to_owned()
    }
}

/// A `bytea` column the service wrote from a `String`.
pub(super) fn utf8(column: &'static str, bytes: Vec<u8>) -> Result<String, StoreError> {
    String::from_utf8(bytes).map_err(|error| StoreError::BadColumn {
        column,
        reason: error.to_string(),
    })
}

/// A column holding one of an enum's names.
pub(super) fn parsed<T>(column: &'static str, text: &str) -> Result<T, StoreError>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    text.parse().map_err(|error: T::Err| StoreError::BadColumn {
        column,
        reason: error.to_string(),
    })
}

impl Postgres {
    pub(crate) async fn insert_feedback(
        &self,
        records: Vec<FeedbackRecord>,
    ) -> Result<Vec<i64>, StoreError> {
        let keep = bigint(self.options.max_feedback_records);
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        let insert = transaction
            .prepare_cached(
                "INSERT INTO feedback (service, source, format_type, raw_log, custom_config, \
                 is_anomaly, received_at) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
            )
            .await?;
        let mut ids = Vec::with_capacity(records.len());
        for record in &records {
            let row = transaction
                .query_one(
                    &insert,
                    &[
                        &nul_free(&record.service),
                        &nul_free(&record.source),
                        &record.format_type.as_str(),
                        &record.raw_log.as_bytes(),
                        &record.custom_config.as_ref().map(to_json),
                        &record.is_anomaly,
                        &record.received_at,
                    ],
                )
                .await?;
            ids.push(row.try_get(0)?);
        }
        // Feedback leaves only from the oldest end: the newest `keep` rows are those above
        // `MAX(id) - keep` (ids a rolled-back insert took only make it keep fewer).
        transaction
            .execute(
                "DELETE FROM feedback WHERE id <= (SELECT MAX(id) FROM feedback) - $1",
                &[&keep],
            )
            .await?;
        transaction.commit().await?;
        Ok(ids)
    }

    pub(crate) async fn feedback_for_service(
        &self,
        service: String,
    ) -> Result<Vec<FeedbackRecord>, StoreError> {
        self.select_feedback(Some(nul_free(&service))).await
    }

    pub(crate) async fn all_feedback(&self) -> Result<Vec<FeedbackRecord>, StoreError> {
        self.select_feedback(None).await
    }

    async fn select_feedback(
        &self,
        service: Option<String>,
    ) -> Result<Vec<FeedbackRecord>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT id, service, source, format_type, raw_log, custom_config, is_anomaly, \
                 received_at FROM feedback WHERE $1::text IS NULL OR service = $1 ORDER BY id",
                &[&service],
            )
            .await?;
        rows.iter()
            .map(|row| {
                let custom_config: Option<&str> = row.try_get(5)?;
                Ok(FeedbackRecord {
                    id: row.try_get(0)?,
                    service: row.try_get(1)?,
                    source: row.try_get(2)?,
                    format_type: parsed("feedback.format_type", row.try_get(3)?)?,
                    raw_log: utf8("feedback.raw_log", row.try_get(4)?)?,
                    custom_config: custom_config
                        .map(|text| from_json("feedback.custom_config", text))
                        .transpose()?,
                    is_anomaly: row.try_get(6)?,
                    received_at: row.try_get(7)?,
                })
            })
            .collect()
    }

    pub(crate) async fn feedback_count(&self) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let count: i64 = client
            .query_one("SELECT COUNT(*) FROM feedback", &[])
            .await?
            .try_get(0)?;
        Ok(count.unsigned_abs())
    }

    /// Records the models of one fit in one transaction; each service's version goes up by one.
    pub(crate) async fn record_models(&self, records: Vec<ModelRecord>) -> Result<(), StoreError> {
        let models = records.into_iter().map(|record| (record, None)).collect();
        self.upsert_models(models).await.map(drop)
    }

    pub(crate) async fn list_models(&self) -> Result<Vec<ModelRecord>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT service, path, feature_names, training_samples, trained_at, threshold, \
                 source, job_id FROM models ORDER BY service",
                &[],
            )
            .await?;
        rows.iter().map(model_from_row).collect()
    }

    pub(crate) async fn upsert_training_job(
        &self,
        record: TrainingJobRecord,
    ) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO training_jobs (job_id, status, created_at, started_at, finished_at, \
                 detail) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (job_id) DO UPDATE SET status = excluded.status, \
                 started_at = excluded.started_at, finished_at = excluded.finished_at, \
                 detail = excluded.detail",
                &[
                    &record.job_id,
                    &record.status.as_str(),
                    &record.created_at,
                    &record.started_at,
                    &record.finished_at,
                    &to_json(&record.detail),
                ],
            )
            .await?;
        Ok(())
    }

    pub(crate) async fn get_training_job(
        &self,
        job_id: String,
    ) -> Result<Option<TrainingJobRecord>, StoreError> {
        let client = self.client().await?;
        client
            .query_opt(
                "SELECT job_id, status, created_at, started_at, finished_at, detail \
                 FROM training_jobs WHERE job_id = $1",
                &[&nul_free(&job_id)],
            )
            .await?
            .map(|row| job_from_row(&row))
            .transpose()
    }

    /// As on SQLite, with one difference: other replicas may be running jobs right now, which
    /// this one cannot tell from jobs a stop cut short, so only jobs created more than a day
    /// ago are settled (no fit runs that long).
    pub(crate) async fn settle_unfinished_jobs(
        &self,
        reason: &str,
    ) -> Result<SettledJobs, StoreError> {
        let failed = to_json(&serde_json::json!({"error": reason}));
        let applied = to_json(&serde_json::json!({
            "note": "the service stopped after this job's models were applied, before its report was written"
        }));
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        let now = Utc::now();
        let applied = transaction
            .execute(
                "UPDATE training_jobs SET status = 'succeeded', finished_at = $1, detail = $2 \
                 WHERE status IN ('queued', 'running') AND created_at < $1::timestamptz - interval '1 day' \
                 AND job_id IN (SELECT job_id FROM models WHERE job_id IS NOT NULL)",
                &[&now, &applied],
            )
            .await?;
        let failed = transaction
            .execute(
                "UPDATE training_jobs SET status = 'failed', finished_at = $1, detail = $2 \
                 WHERE status IN ('queued', 'running') AND created_at < $1::timestamptz - interval '1 day'",
                &[&now, &failed],
            )
            .await?;
        transaction.commit().await?;
        Ok(SettledJobs {
            failed: usize::try_from(failed).unwrap_or(usize::MAX),
            applied: usize::try_from(applied).unwrap_or(usize::MAX),
        })
    }
}

/// A model record from the first eight columns: service, path, feature_names,
/// training_samples, trained_at, threshold, source, job_id.
fn model_from_row(row: &Row) -> Result<ModelRecord, StoreError> {
    let service: String = row.try_get(0)?;
    let samples: i64 = row.try_get(3)?;
    Ok(ModelRecord {
        source: model_source(&service, row.try_get(6)?),
        path: row.try_get(1)?,
        feature_names: from_json("models.feature_names", row.try_get(2)?)?,
        training_samples: u64::try_from(samples).unwrap_or(0),
        trained_at: row.try_get(4)?,
        threshold: row.try_get(5)?,
        job_id: row.try_get(7)?,
        service,
    })
}

fn job_from_row(row: &Row) -> Result<TrainingJobRecord, StoreError> {
    Ok(TrainingJobRecord {
        job_id: row.try_get(0)?,
        status: parsed("training_jobs.status", row.try_get(1)?)?,
        created_at: row.try_get(2)?,
        started_at: row.try_get(3)?,
        finished_at: row.try_get(4)?,
        detail: from_json("training_jobs.detail", row.try_get(5)?)?,
    })
}

/// A model as another replica published it: its record, its version and its file's bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct SharedModel {
    pub record: ModelRecord,
    pub version: i64,
    pub artifact: Vec<u8>,
}

/// The advisory lock key of one service's training: a hash of its name (collisions only make
/// two services wait for each other).
fn training_lock_key(service: &str) -> i64 {
    const TRAINING_LOCKS: i64 = 0x7472_6169_0000_0000;
    TRAINING_LOCKS | i64::from(crc32fast::hash(service.as_bytes()))
}

/// Held while this replica fits a service; dropping it closes its connection, which releases
/// the lock however the fit ends.
pub struct TrainingLock {
    _client: Option<tokio_postgres::Client>,
}

impl TrainingLock {
    /// The lock of a store no other process shares: nothing to hold.
    pub fn unshared() -> Self {
        Self { _client: None }
    }
}

impl std::fmt::Debug for TrainingLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrainingLock").finish_non_exhaustive()
    }
}

impl Postgres {
    /// Records the models of one fit with their files' bytes, in one transaction; returns each
    /// model's new version, in order.
    pub(crate) async fn record_shared_models(
        &self,
        models: Vec<(ModelRecord, Vec<u8>)>,
    ) -> Result<Vec<i64>, StoreError> {
        let models = models
            .into_iter()
            .map(|(record, artifact)| (record, Some(artifact)))
            .collect();
        self.upsert_models(models).await
    }

    /// Replaces each service's model record (and its bytes, when given: a record without them
    /// keeps the bytes stored before) in one transaction; each model's new version, in order.
    async fn upsert_models(
        &self,
        models: Vec<(ModelRecord, Option<Vec<u8>>)>,
    ) -> Result<Vec<i64>, StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        let upsert = transaction
            .prepare_cached(
                "INSERT INTO models (service, path, feature_names, training_samples, \
                 trained_at, threshold, source, job_id, artifact) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 ON CONFLICT (service) DO UPDATE SET path = excluded.path, \
                 feature_names = excluded.feature_names, \
                 training_samples = excluded.training_samples, \
                 trained_at = excluded.trained_at, threshold = excluded.threshold, \
                 source = excluded.source, job_id = excluded.job_id, \
                 artifact = COALESCE(excluded.artifact, models.artifact), \
                 version = models.version + 1 \
                 RETURNING version",
            )
            .await?;
        let mut versions = Vec::with_capacity(models.len());
        for (record, artifact) in &models {
            let row = transaction
                .query_one(
                    &upsert,
                    &[
                        &nul_free(&record.service),
                        &record.path,
                        &to_json(&record.feature_names),
                        &i64::try_from(record.training_samples).unwrap_or(i64::MAX),
                        &record.trained_at,
                        &record.threshold,
                        &record.source.as_str(),
                        &record.job_id,
                        &artifact.as_deref(),
                    ],
                )
                .await?;
            versions.push(row.try_get(0)?);
        }
        transaction.commit().await?;
        Ok(versions)
    }

    /// Each shared model's version, by service.
    pub(crate) async fn model_versions(
        &self,
    ) -> Result<std::collections::BTreeMap<String, i64>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT service, version FROM models WHERE artifact IS NOT NULL",
                &[],
            )
            .await?;
        rows.iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .collect()
    }

    /// The shared models of `services`, with their bytes.
    pub(crate) async fn shared_models(
        &self,
        services: Vec<String>,
    ) -> Result<Vec<SharedModel>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT service, path, feature_names, training_samples, trained_at, threshold, \
                 source, job_id, version, artifact FROM models \
                 WHERE artifact IS NOT NULL AND service = ANY($1) ORDER BY service",
                &[&services],
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(SharedModel {
                    record: model_from_row(row)?,
                    version: row.try_get(8)?,
                    artifact: row.try_get(9)?,
                })
            })
            .collect()
    }

    /// The lock on fitting `service`, unless another replica holds it.
    pub(crate) async fn try_lock_training(
        &self,
        service: &str,
    ) -> Result<Option<TrainingLock>, StoreError> {
        let client = self.dedicated_connection().await?;
        let acquired: bool = client
            .query_one(
                "SELECT pg_try_advisory_lock($1)",
                &[&training_lock_key(service)],
            )
            .await?
            .try_get(0)?;
        Ok(acquired.then_some(TrainingLock {
            _client: Some(client),
        }))
    }
}
