//! The anomalies table on PostgreSQL: one multi-row insert per request, retention, queries.

use std::ops::ControlFlow;
use std::sync::atomic::Ordering;

use futures_util::{StreamExt, pin_mut};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::records::{nul_free, utf8};
use super::{Postgres, SharedBatchEvent, bigint};
use crate::detect::DetectorKind;
use crate::store::{AnomalyOrder, AnomalyQuery, AnomalyRecord, StoreError, from_json, to_json};

/// The columns [`anomaly_from_row`] reads, in its order.
const LISTING_COLUMNS: &str = "SELECT id, timestamp, service, source, log_level, message, \
     anomaly_score, rule_violation, detector, violations, features, raw_log, metadata, context, \
     reasons FROM anomalies";

/// Records handed from the query to the visitor's thread ahead of it.
const SCAN_AHEAD: usize = 2;

type Parameter = Box<dyn ToSql + Sync + Send>;

impl Postgres {
    /// Takes the request's ids from the sequence, then inserts every record, prunes beyond the
    /// retention bound and stores the batch's share for the rate leader in **one** statement
    /// (one round trip, one commit). A commit whose outcome is unknown (the connection failed)
    /// is tried once more on another connection with the same ids, which `ON CONFLICT DO
    /// NOTHING` (on the anomaly ids and on the share's key, the first id) makes harmless if the
    /// first one did commit.
    pub(crate) async fn store_anomalies(
        &self,
        mut records: Vec<AnomalyRecord>,
        share: Option<SharedBatchEvent>,
    ) -> Result<Vec<AnomalyRecord>, StoreError> {
        if records.is_empty() {
            return Ok(records);
        }
        let mut ids: Vec<i64> = {
            let client = self.client().await?;
            let statement = client
                .prepare_cached(
                    "SELECT nextval('anomalies_id_seq') \
                     FROM generate_series(1::bigint, $1::bigint)",
                )
                .await?;
            client
                .query(&statement, &[&bigint(records.len())])
                .await?
                .iter()
                .map(|row| row.try_get(0))
                .collect::<Result<_, _>>()?
        };
        ids.sort_unstable();
        for (record, id) in records.iter_mut().zip(&ids) {
            record.id = *id;
        }
        let pruned = match self.insert_anomalies_once(&records, share.as_ref()).await {
            Err(StoreError::Postgres(error)) if error.is_transient() => {
                tracing::warn!(%error, "Anomaly insert failed; retrying once with the same ids.");
                self.insert_anomalies_once(&records, share.as_ref()).await?
            }
            outcome => outcome?,
        };
        self.pruned.fetch_add(pruned, Ordering::Relaxed);
        Ok(records)
    }

    pub(super) async fn insert_anomalies_once(
        &self,
        records: &[AnomalyRecord],
        share: Option<&SharedBatchEvent>,
    ) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let ids: Vec<i64> = records.iter().map(|record| record.id).collect();
        let timestamps: Vec<_> = records.iter().map(|record| record.timestamp).collect();
        let millis: Vec<i64> = records
            .iter()
            .map(|record| record.timestamp.timestamp_millis())
            .collect();
        let services: Vec<String> = records.iter().map(|r| nul_free(&r.service)).collect();
        let sources: Vec<String> = records.iter().map(|r| nul_free(&r.source)).collect();
        let levels: Vec<Option<String>> = records
            .iter()
            .map(|r| r.log_level.as_deref().map(nul_free))
            .collect();
        let messages: Vec<Option<String>> = records
            .iter()
            .map(|r| r.message.as_deref().map(nul_free))
            .collect();
        let scores: Vec<Option<f64>> = records.iter().map(|r| r.anomaly_score).collect();
        let rule_violations: Vec<bool> = records.iter().map(|r| r.rule_violation).collect();
        let detectors: Vec<&str> = records.iter().map(|r| r.detector.as_str()).collect();
        let violations: Vec<String> = records.iter().map(|r| to_json(&r.violations)).collect();
        let features: Vec<String> = records.iter().map(|r| to_json(&r.features)).collect();
        let raw_logs: Vec<&[u8]> = records.iter().map(|r| r.raw_log.as_bytes()).collect();
        let metadata: Vec<String> = records.iter().map(|r| to_json(&r.metadata)).collect();
        let contexts: Vec<String> = records.iter().map(|r| to_json(&r.context)).collect();
        let reasons: Vec<String> = records.iter().map(|r| to_json(&r.reasons)).collect();
        let keep = bigint(self.options.max_recent_anomalies);
        let newest = ids.iter().copied().max().unwrap_or(0);
        let share_arrival = share.map(|share| share.arrival);
        let share_payload = share.map(|share| share.payload.as_str());
        let share_key = ids.first().copied();

        // Every part of one statement sees the table as it was before it: the prune counts the
        // new ids in through $17 (they are the newest, so it never deletes them).
        let statement = client
            .prepare_cached(
                "WITH inserted AS ( \
                     INSERT INTO anomalies (id, timestamp, timestamp_ms, service, source, \
                     log_level, message, anomaly_score, rule_violation, detector, violations, \
                     features, raw_log, metadata, context, reasons) \
                     SELECT * FROM UNNEST($1::bigint[], $2::timestamptz[], $3::bigint[], \
                     $4::text[], $5::text[], $6::text[], $7::text[], $8::float8[], $9::bool[], \
                     $10::text[], $11::text[], $12::text[], $13::bytea[], $14::text[], \
                     $15::text[], $16::text[]) \
                     ON CONFLICT (id) DO NOTHING RETURNING 1), \
                 shared AS ( \
                     INSERT INTO alert_events (arrival, payload, batch_key) \
                     SELECT $19::timestamptz, $20::text, $21::bigint WHERE $20::text IS NOT NULL \
                     ON CONFLICT (batch_key) DO NOTHING RETURNING 1), \
                 pruned AS ( \
                     DELETE FROM anomalies \
                     WHERE id <= GREATEST((SELECT MAX(id) FROM anomalies), $17::bigint) - $18::bigint \
                     RETURNING 1) \
                 SELECT (SELECT COUNT(*) FROM pruned), (SELECT COUNT(*) FROM inserted), \
                        (SELECT COUNT(*) FROM shared)",
            )
            .await?;
        let row = client
            .query_one(
                &statement,
                &[
                    &ids,
                    &timestamps,
                    &millis,
                    &services,
                    &sources,
                    &levels,
                    &messages,
                    &scores,
                    &rule_violations,
                    &detectors,
                    &violations,
                    &features,
                    &raw_logs,
                    &metadata,
                    &contexts,
                    &reasons,
                    &newest,
                    &keep,
                    &share_arrival,
                    &share_payload,
                    &share_key,
                ],
            )
            .await?;
        let pruned: i64 = row.try_get(0)?;
        Ok(pruned.unsigned_abs())
    }

    /// Runs the listing in one read-only, repeatable-read transaction and hands each record to
    /// `visit` on a blocking thread, a couple of records ahead.
    pub(crate) async fn scan_anomalies<S, F>(
        &self,
        query: AnomalyQuery,
        mut state: S,
        mut visit: F,
    ) -> Result<S, StoreError>
    where
        S: Send + 'static,
        F: FnMut(&mut S, AnomalyRecord) -> ControlFlow<()> + Send + 'static,
    {
        let (sender, mut receiver) = tokio::sync::mpsc::channel::<AnomalyRecord>(SCAN_AHEAD);
        let visitor = tokio::task::spawn_blocking(move || {
            while let Some(record) = receiver.blocking_recv() {
                if visit(&mut state, record).is_break() {
                    break;
                }
            }
            state
        });
        let produced = async move {
            let mut client = self.client().await?;
            let transaction = client
                .build_transaction()
                .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await?;
            let (sql, values) = listing_sql(&query);
            let statement = transaction.prepare_cached(&sql).await?;
            let rows = transaction
                .query_raw(
                    &statement,
                    values
                        .iter()
                        .map(|value| value.as_ref() as &(dyn ToSql + Sync)),
                )
                .await?;
            pin_mut!(rows);
            while let Some(row) = rows.next().await {
                if sender.send(anomaly_from_row(&row?)?).await.is_err() {
                    // The visitor stopped.
                    break;
                }
            }
            drop(sender);
            transaction.commit().await?;
            Ok::<_, StoreError>(())
        }
        .await;
        let state = visitor
            .await
            .map_err(|error| StoreError::Background(error.to_string()))?;
        produced?;
        Ok(state)
    }

    pub(crate) async fn get_anomaly(&self, id: i64) -> Result<Option<AnomalyRecord>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&format!("{LISTING_COLUMNS} WHERE id = $1"))
            .await?;
        client
            .query_opt(&statement, &[&id])
            .await?
            .map(|row| anomaly_from_row(&row))
            .transpose()
    }

    pub(crate) async fn clear_anomalies(
        &self,
        service: Option<String>,
    ) -> Result<usize, StoreError> {
        let client = self.client().await?;
        let deleted = match &service {
            None => client.execute("DELETE FROM anomalies", &[]).await?,
            Some(service) => {
                client
                    .execute(
                        "DELETE FROM anomalies WHERE service = $1",
                        &[&nul_free(service)],
                    )
                    .await?
            }
        };
        Ok(usize::try_from(deleted).unwrap_or(usize::MAX))
    }

    pub(crate) async fn count_anomalies(&self) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let count: i64 = client
            .query_one("SELECT COUNT(*) FROM anomalies", &[])
            .await?
            .try_get(0)?;
        Ok(count.unsigned_abs())
    }
}

/// The SELECT of a listing and its parameters: the same filters and order as SQLite's.
fn listing_sql(query: &AnomalyQuery) -> (String, Vec<Parameter>) {
    let mut sql = format!("{LISTING_COLUMNS} WHERE TRUE");
    let mut values: Vec<Parameter> = Vec::new();
    let next = |values: &mut Vec<Parameter>, value: Parameter| {
        values.push(value);
        format!("${}", values.len())
    };
    if let Some(service) = &query.service {
        let placeholder = next(&mut values, Box::new(nul_free(service)));
        sql.push_str(&format!(" AND service = {placeholder}"));
    }
    if let Some(since) = &query.since {
        let placeholder = next(&mut values, Box::new(since.timestamp_millis()));
        sql.push_str(&format!(" AND timestamp_ms >= {placeholder}"));
    }
    if let Some(max_score) = query.max_score {
        let placeholder = next(&mut values, Box::new(max_score));
        sql.push_str(&format!(" AND anomaly_score <= {placeholder}"));
    }
    if let Some(detector) = query.detector {
        let placeholder = next(&mut values, Box::new(detector.as_str()));
        sql.push_str(&format!(" AND detector = {placeholder}"));
    }
    sql.push_str(match query.order {
        AnomalyOrder::Time => " ORDER BY timestamp_ms DESC, id DESC",
        AnomalyOrder::Score => " ORDER BY anomaly_score ASC NULLS LAST, id DESC",
    });
    let placeholder = next(&mut values, Box::new(bigint(query.limit)));
    sql.push_str(&format!(" LIMIT {placeholder}"));
    (sql, values)
}

fn anomaly_from_row(row: &Row) -> Result<AnomalyRecord, StoreError> {
    let detector: &str = row.try_get(8)?;
    Ok(AnomalyRecord {
        id: row.try_get(0)?,
        timestamp: row.try_get(1)?,
        service: row.try_get(2)?,
        source: row.try_get(3)?,
        log_level: row.try_get(4)?,
        message: row.try_get(5)?,
        anomaly_score: row.try_get(6)?,
        rule_violation: row.try_get(7)?,
        detector: DetectorKind::from_stored(detector),
        violations: from_json("anomalies.violations", row.try_get(9)?)?,
        features: from_json("anomalies.features", row.try_get(10)?)?,
        raw_log: utf8("anomalies.raw_log", row.try_get(11)?)?,
        metadata: from_json("anomalies.metadata", row.try_get(12)?)?,
        context: from_json("anomalies.context", row.try_get(13)?)?,
        reasons: from_json("anomalies.reasons", row.try_get(14)?)?,
    })
}
