//! Alerts and their delivery outbox on PostgreSQL. The same rows as SQLite's, plus a lease on
//! each claimed outbox row so that replicas share the delivery work without sending a row twice.

use std::collections::BTreeMap;

use chrono::Utc;
use serde::de::DeserializeOwned;

use super::Postgres;
use super::records::{nul_free, parsed};
use crate::store::alerts::{
    AlertFilter, AlertRow, DeliveryRecord, DeliveryStatus, Enqueued, MAX_STORED_ALERTS,
    OutboxChannel, OutboxEntry, PendingDelivery, state_text,
};
use crate::store::{StoreError, from_json};

impl Postgres {
    pub(crate) async fn max_alert_id(&self) -> Result<i64, StoreError> {
        let client = self.client().await?;
        Ok(client
            .query_one("SELECT COALESCE(MAX(id), 0)::bigint FROM alerts", &[])
            .await?
            .try_get(0)?)
    }

    pub(crate) async fn firing_alerts<T>(&self) -> Result<Vec<T>, StoreError>
    where
        T: DeserializeOwned + Send + 'static,
    {
        let client = self.client().await?;
        client
            .query(
                "SELECT record FROM alerts WHERE state = 'firing' ORDER BY id",
                &[],
            )
            .await?
            .iter()
            .map(|row| from_json("alerts.record", row.try_get(0)?))
            .collect()
    }

    pub(crate) async fn record_alerts(
        &self,
        changed: Vec<AlertRow>,
        entries: Vec<OutboxEntry>,
        channels: Vec<OutboxChannel>,
        capacity: usize,
    ) -> Result<Vec<Enqueued>, StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        let enqueued =
            record_alerts_in(&transaction, &changed, &entries, &channels, capacity).await?;
        transaction.commit().await?;
        Ok(enqueued)
    }

    /// Claims the oldest pending row of `channel` that no live lease holds: rows another replica
    /// is delivering are skipped (`SKIP LOCKED` while it claims, the lease afterwards), and a
    /// row whose claimer died is taken over once its lease runs out.
    pub(crate) async fn next_pending_delivery<N>(
        &self,
        channel: &'static str,
        _after_id: i64,
    ) -> Result<Option<PendingDelivery<N>>, StoreError>
    where
        N: DeserializeOwned + Send + 'static,
    {
        let client = self.client().await?;
        let lease = self.lease_seconds();
        let statement = client
            .prepare_cached(
                "UPDATE alert_outbox SET lease_owner = $2, \
                 lease_until = now() + make_interval(secs => $3) \
                 WHERE id = (SELECT id FROM alert_outbox \
                     WHERE channel = $1 AND status = 'pending' \
                     AND (lease_until IS NULL OR lease_until < now()) \
                     ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED) \
                 RETURNING id, notification, attempts",
            )
            .await?;
        let Some(row) = client
            .query_opt(&statement, &[&channel, &self.instance, &lease])
            .await?
        else {
            return Ok(None);
        };
        let attempts: i32 = row.try_get(2)?;
        Ok(Some(PendingDelivery {
            id: row.try_get(0)?,
            notification: from_json("alert_outbox.notification", row.try_get(1)?)?,
            attempts: attempts.unsigned_abs(),
        }))
    }

    /// Records an attempt. A row still pending (to be retried) keeps its lease, renewed from
    /// now; a row with a final status lets it go.
    pub(crate) async fn update_delivery(
        &self,
        id: i64,
        status: DeliveryStatus,
        attempts: u32,
        http_status: Option<u16>,
        error: Option<String>,
    ) -> Result<(), StoreError> {
        let client = self.client().await?;
        let attempts = i32::try_from(attempts).unwrap_or(i32::MAX);
        let http_status = http_status.map(i32::from);
        let error = error.as_deref().map(nul_free);
        client
            .execute(
                "UPDATE alert_outbox SET status = $2, attempts = $3, last_http_status = $4, \
                 last_error = $5, updated_at = now(), \
                 lease_until = CASE WHEN $2 = 'pending' \
                     THEN now() + make_interval(secs => $6) END, \
                 lease_owner = CASE WHEN $2 = 'pending' THEN lease_owner END \
                 WHERE id = $1",
                &[
                    &id,
                    &status.as_str(),
                    &attempts,
                    &http_status,
                    &error,
                    &self.lease_seconds(),
                ],
            )
            .await?;
        Ok(())
    }

    fn lease_seconds(&self) -> f64 {
        self.delivery_lease.as_secs_f64()
    }

    pub(crate) async fn abandon_unconfigured_deliveries(
        &self,
        configured: Vec<&'static str>,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        let rows = transaction
            .query(
                "SELECT channel, COUNT(*) FROM alert_outbox WHERE status = 'pending' \
                 GROUP BY channel ORDER BY channel",
                &[],
            )
            .await?;
        let mut abandoned = Vec::new();
        for row in rows {
            let channel: String = row.try_get(0)?;
            let count: i64 = row.try_get(1)?;
            if !configured.contains(&channel.as_str()) {
                abandoned.push((channel, count.unsigned_abs()));
            }
        }
        for (channel, _) in &abandoned {
            transaction
                .execute(
                    "UPDATE alert_outbox SET status = 'failed', updated_at = now(), \
                     last_error = 'channel no longer configured', lease_until = NULL \
                     WHERE status = 'pending' AND channel = $1",
                    &[channel],
                )
                .await?;
        }
        transaction.commit().await?;
        Ok(abandoned)
    }

    pub(crate) async fn list_alerts<T>(
        &self,
        filter: AlertFilter,
    ) -> Result<Vec<(T, Vec<DeliveryRecord>)>, StoreError>
    where
        T: DeserializeOwned + Send + 'static,
    {
        let client = self.client().await?;
        let service = filter.service.as_deref().map(nul_free);
        let state = filter.firing.map(state_text);
        let limit = i64::try_from(filter.limit).unwrap_or(i64::MAX);
        let documents = client
            .query(
                "SELECT id, record FROM alerts \
                 WHERE ($1::text IS NULL OR service = $1) AND ($2::text IS NULL OR state = $2) \
                 ORDER BY id DESC LIMIT $3",
                &[&service, &state, &limit],
            )
            .await?;
        let deliveries = client
            .prepare_cached(
                "SELECT channel, event, status, attempts, last_http_status, last_error, \
                 created_at, updated_at FROM alert_outbox WHERE alert_id = $1 ORDER BY id",
            )
            .await?;
        let mut alerts = Vec::with_capacity(documents.len());
        for document in documents {
            let id: i64 = document.try_get(0)?;
            let alert: T = from_json("alerts.record", document.try_get(1)?)?;
            let rows = client.query(&deliveries, &[&id]).await?;
            let records = rows
                .iter()
                .map(|row| {
                    let attempts: i32 = row.try_get(3)?;
                    let http_status: Option<i32> = row.try_get(4)?;
                    Ok(DeliveryRecord {
                        channel: row.try_get(0)?,
                        event: row.try_get(1)?,
                        status: parsed("alert_outbox.status", row.try_get(2)?)?,
                        attempts: attempts.unsigned_abs(),
                        last_http_status: http_status.and_then(|code| u16::try_from(code).ok()),
                        last_error: row.try_get(5)?,
                        created_at: row.try_get(6)?,
                        updated_at: row.try_get(7)?,
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            alerts.push((alert, records));
        }
        Ok(alerts)
    }

    pub(crate) async fn delivery_counts(
        &self,
    ) -> Result<BTreeMap<String, BTreeMap<String, u64>>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT channel, status, COUNT(*) FROM alert_outbox GROUP BY channel, status",
                &[],
            )
            .await?;
        let mut counts: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        for row in rows {
            let count: i64 = row.try_get(2)?;
            counts
                .entry(row.try_get(0)?)
                .or_default()
                .insert(row.try_get(1)?, count.unsigned_abs());
        }
        Ok(counts)
    }
}

/// Stores the alerts and queues the notifications of [`Postgres::record_alerts`] in the caller's
/// transaction (the rate leader commits them with the events they came from).
pub(super) async fn record_alerts_in(
    transaction: &tokio_postgres::Transaction<'_>,
    changed: &[AlertRow],
    entries: &[OutboxEntry],
    channels: &[OutboxChannel],
    capacity: usize,
) -> Result<Vec<Enqueued>, StoreError> {
    let upsert = transaction
        .prepare(
            "INSERT INTO alerts (id, service, fingerprint, state, revision, started_at, record) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (id) DO UPDATE SET state = excluded.state, \
             revision = excluded.revision, record = excluded.record \
             WHERE excluded.revision >= alerts.revision",
        )
        .await?;
    let now = Utc::now();
    let mut enqueued = Vec::new();
    let mut opened = false;
    let alerts = changed
        .iter()
        .chain(entries.iter().map(|entry| &entry.alert));
    for alert in alerts {
        transaction
            .execute(
                &upsert,
                &[
                    &alert.id,
                    &nul_free(&alert.service),
                    &nul_free(&alert.fingerprint),
                    &state_text(alert.firing),
                    &i64::try_from(alert.revision).unwrap_or(i64::MAX),
                    &alert.started_at,
                    &alert.document,
                ],
            )
            .await?;
    }
    for entry in entries {
        opened |= entry.opens_alert;
        for channel in channels {
            let status = if channel.delivered_on_store {
                DeliveryStatus::Delivered
            } else {
                let pending: i64 = transaction
                    .query_one(
                        "SELECT COUNT(*) FROM alert_outbox \
                         WHERE channel = $1 AND status = 'pending'",
                        &[&channel.name],
                    )
                    .await?
                    .try_get(0)?;
                if usize::try_from(pending).unwrap_or(usize::MAX) >= capacity {
                    DeliveryStatus::Dropped
                } else {
                    DeliveryStatus::Pending
                }
            };
            let last_error =
                (status == DeliveryStatus::Dropped).then_some("queue full (ALERT_QUEUE_CAPACITY)");
            transaction
                .execute(
                    "INSERT INTO alert_outbox (alert_id, channel, event, status, last_error, \
                     notification, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
                    &[
                        &entry.alert.id,
                        &channel.name,
                        &entry.event,
                        &status.as_str(),
                        &last_error,
                        &entry.notification,
                        &now,
                    ],
                )
                .await?;
            enqueued.push(Enqueued {
                channel: channel.name,
                status,
            });
        }
    }
    if opened {
        transaction
            .execute(
                "DELETE FROM alerts WHERE state = 'resolved' AND id <= \
                 (SELECT id FROM alerts ORDER BY id DESC LIMIT 1 OFFSET $1)",
                &[&MAX_STORED_ALERTS],
            )
            .await?;
        transaction
            .execute(
                "DELETE FROM alert_outbox WHERE status <> 'pending' \
                 AND NOT EXISTS (SELECT 1 FROM alerts WHERE alerts.id = alert_outbox.alert_id)",
                &[],
            )
            .await?;
    }
    Ok(enqueued)
}
