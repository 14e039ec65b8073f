//! The alerts and alert_outbox tables: what fired, and its delivery to each channel.
//!
//! Every notification becomes one outbox row per channel in the same transaction as its alert;
//! a channel's worker delivers its rows in id order and marks each one, so what was not delivered
//! when the process stopped is delivered after the next start ([z2p]'s `issue_delivery_queue`).
//!
//! The store keeps an alert as a JSON document beside the columns it is found by, and a
//! notification as the JSON its channel is sent from: what an alert means is `crate::alert`'s
//! business, so this module knows none of its types.
//!
//! Outbox statuses: `pending` (queued or being retried), `delivered`, `rejected` (the receiver
//! answered a final 4xx), `failed` (the retry budget ran out), `dropped` (the channel's queue was
//! full, `ALERT_QUEUE_CAPACITY`).

use std::collections::BTreeMap;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Sqlite, StoreError, from_json, parse_column, parse_timestamp, timestamp_text};

/// Resolved alerts kept (with their deliveries); older ones are pruned when new alerts open.
pub const MAX_STORED_ALERTS: i64 = 10_000;

/// Where one notification stands on one channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    Rejected,
    Failed,
    Dropped,
}

impl DeliveryStatus {
    /// The stored and shown name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Rejected => "rejected",
            Self::Failed => "failed",
            Self::Dropped => "dropped",
        }
    }
}

/// A status column holding none of [`DeliveryStatus`]'s names.
#[derive(Debug, thiserror::Error)]
#[error("unknown delivery status {0:?}")]
pub struct UnknownDeliveryStatus(String);

impl FromStr for DeliveryStatus {
    type Err = UnknownDeliveryStatus;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        [
            Self::Pending,
            Self::Delivered,
            Self::Rejected,
            Self::Failed,
            Self::Dropped,
        ]
        .into_iter()
        .find(|status| status.as_str() == name)
        .ok_or_else(|| UnknownDeliveryStatus(name.to_owned()))
    }
}

/// An alert as stored: the columns it is looked up by, and the whole alert as JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRow {
    pub id: i64,
    pub service: String,
    pub fingerprint: String,
    pub firing: bool,
    /// A write of a lower revision never replaces a higher one (late writes of older states).
    pub revision: u64,
    pub started_at: DateTime<Utc>,
    pub document: String,
}

/// One notification of an alert, to queue on every channel.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEntry {
    pub alert: AlertRow,
    /// The transition's name (fired, repeated, resolved), shown with each delivery.
    pub event: &'static str,
    /// Whether the notification opens an alert: then resolved alerts beyond
    /// [`MAX_STORED_ALERTS`] are pruned.
    pub opens_alert: bool,
    /// The notification as JSON, as the channel's worker will read it back.
    pub notification: String,
}

/// A channel notifications are queued for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxChannel {
    pub name: &'static str,
    /// Delivered as it is stored (the console, written by the caller): never pending.
    pub delivered_on_store: bool,
}

/// What happened to one new outbox row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enqueued {
    pub channel: &'static str,
    pub status: DeliveryStatus,
}

/// One outbox row as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeliveryRecord {
    pub channel: String,
    pub event: String,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub last_http_status: Option<u16>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A row a worker has to deliver, its notification read back as `N`.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingDelivery<N> {
    pub id: i64,
    pub notification: N,
    pub attempts: u32,
}

/// Filters of the stored alerts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertFilter {
    pub limit: usize,
    pub service: Option<String>,
    /// `Some(true)`: firing alerts only; `Some(false)`: resolved ones only.
    pub firing: Option<bool>,
}

pub(crate) fn state_text(firing: bool) -> &'static str {
    if firing { "firing" } else { "resolved" }
}

fn upsert_alert(connection: &Connection, alert: &AlertRow) -> Result<(), StoreError> {
    connection
        .prepare_cached(
            "INSERT INTO alerts (id, service, fingerprint, state, revision, started_at, record)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (id) DO UPDATE SET
             state = excluded.state, revision = excluded.revision, record = excluded.record
         WHERE excluded.revision >= alerts.revision",
        )?
        .execute(params![
            alert.id,
            alert.service,
            alert.fingerprint,
            state_text(alert.firing),
            i64::try_from(alert.revision).unwrap_or(i64::MAX),
            timestamp_text(&alert.started_at),
            alert.document,
        ])?;
    Ok(())
}

impl Sqlite {
    /// The highest alert id so far (0 when there is none).
    ///
    /// # Errors
    /// SQL errors.
    pub async fn max_alert_id(&self) -> Result<i64, StoreError> {
        self.read(|connection| {
            Ok(
                connection.query_row("SELECT COALESCE(MAX(id), 0) FROM alerts", [], |row| {
                    row.get(0)
                })?,
            )
        })
        .await
    }

    /// Alerts that were firing when the service stopped, oldest first.
    ///
    /// # Errors
    /// SQL errors or a document that is not a `T`.
    pub async fn firing_alerts<T>(&self) -> Result<Vec<T>, StoreError>
    where
        T: DeserializeOwned + Send + 'static,
    {
        self.read(|connection| {
            let mut statement = connection
                .prepare("SELECT record FROM alerts WHERE state = 'firing' ORDER BY id")?;
            let documents = statement
                .query_map([], |row| row.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            documents
                .iter()
                .map(|document| from_json("alerts.record", document))
                .collect()
        })
        .await
    }

    /// Stores the `changed` alerts and those of `entries`, and queues each entry for every
    /// channel, all in one transaction. A channel's row is dropped when it already has `capacity`
    /// pending rows.
    ///
    /// # Errors
    /// SQL errors; then nothing is stored.
    pub async fn record_alerts(
        &self,
        changed: Vec<AlertRow>,
        entries: Vec<OutboxEntry>,
        channels: Vec<OutboxChannel>,
        capacity: usize,
    ) -> Result<Vec<Enqueued>, StoreError> {
        self.write(move |connection, _| {
            let transaction = connection.transaction()?;
            let now = timestamp_text(&Utc::now());
            let mut enqueued = Vec::new();
            for alert in &changed {
                upsert_alert(&transaction, alert)?;
            }
            let mut opened = false;
            for entry in &entries {
                upsert_alert(&transaction, &entry.alert)?;
                opened |= entry.opens_alert;
                for channel in &channels {
                    let status = if channel.delivered_on_store {
                        DeliveryStatus::Delivered
                    } else {
                        let pending: i64 = transaction.query_row(
                            "SELECT COUNT(*) FROM alert_outbox WHERE channel = ?1 AND status = 'pending'",
                            [channel.name],
                            |row| row.get(0),
                        )?;
                        if usize::try_from(pending).unwrap_or(usize::MAX) >= capacity {
                            DeliveryStatus::Dropped
                        } else {
                            DeliveryStatus::Pending
                        }
                    };
                    let last_error = (status == DeliveryStatus::Dropped)
                        .then_some("queue full (ALERT_QUEUE_CAPACITY)");
                    transaction.execute(
                        "INSERT INTO alert_outbox
                             (alert_id, channel, event, status, last_error, notification, created_at, updated_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
                        params![
                            entry.alert.id,
                            channel.name,
                            entry.event,
                            status.as_str(),
                            last_error,
                            entry.notification,
                            now,
                        ],
                    )?;
                    enqueued.push(Enqueued {
                        channel: channel.name,
                        status,
                    });
                }
            }
            if opened {
                transaction.execute(
                    "DELETE FROM alerts WHERE state = 'resolved' AND id <=
                         (SELECT id FROM alerts ORDER BY id DESC LIMIT 1 OFFSET ?1)",
                    [MAX_STORED_ALERTS],
                )?;
                transaction.execute(
                    "DELETE FROM alert_outbox WHERE status <> 'pending'
                         AND alert_id NOT IN (SELECT id FROM alerts)",
                    [],
                )?;
            }
            transaction.commit()?;
            Ok(enqueued)
        })
        .await
    }

    /// The oldest pending row of `channel` after `after_id`, its notification read as `N`.
    ///
    /// # Errors
    /// SQL errors or a notification that is not an `N`.
    pub async fn next_pending_delivery<N>(
        &self,
        channel: &'static str,
        after_id: i64,
    ) -> Result<Option<PendingDelivery<N>>, StoreError>
    where
        N: DeserializeOwned + Send + 'static,
    {
        self.read(move |connection| {
            let row = connection
                .query_row(
                    "SELECT id, notification, attempts FROM alert_outbox
                     WHERE channel = ?1 AND status = 'pending' AND id > ?2
                     ORDER BY id LIMIT 1",
                    params![channel, after_id],
                    |row| {
                        Ok((
                            row.get::<_, i64>(0)?,
                            row.get::<_, String>(1)?,
                            row.get::<_, u32>(2)?,
                        ))
                    },
                )
                .optional()?;
            row.map(|(id, notification, attempts)| {
                Ok(PendingDelivery {
                    id,
                    notification: from_json("alert_outbox.notification", &notification)?,
                    attempts,
                })
            })
            .transpose()
        })
        .await
    }

    /// Records an attempt on outbox row `id`: its status afterwards, the total attempts, the
    /// last HTTP status and a redacted error.
    ///
    /// # Errors
    /// SQL errors.
    pub async fn update_delivery(
        &self,
        id: i64,
        status: DeliveryStatus,
        attempts: u32,
        http_status: Option<u16>,
        error: Option<String>,
    ) -> Result<(), StoreError> {
        self.write(move |connection, _| {
            connection.execute(
                "UPDATE alert_outbox SET status = ?2, attempts = ?3, last_http_status = ?4,
                     last_error = ?5, updated_at = ?6
                 WHERE id = ?1",
                params![
                    id,
                    status.as_str(),
                    attempts,
                    http_status,
                    error,
                    timestamp_text(&Utc::now())
                ],
            )?;
            Ok(())
        })
        .await
    }

    /// Marks `failed` every pending delivery to a channel not in `configured` (one removed from
    /// the settings since it was queued): no worker will ever send it, and leaving it pending
    /// would show an outbox that never drains. Returns how many rows each such channel had.
    ///
    /// # Errors
    /// SQL errors.
    pub async fn abandon_unconfigured_deliveries(
        &self,
        configured: Vec<&'static str>,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        self.write(move |connection, _| {
            let transaction = connection.transaction()?;
            let mut abandoned = Vec::new();
            {
                let mut pending = transaction.prepare(
                    "SELECT channel, COUNT(*) FROM alert_outbox WHERE status = 'pending'
                     GROUP BY channel ORDER BY channel",
                )?;
                let rows = pending.query_map([], |row| {
                    Ok((row.get::<_, String>(0)?, row.get::<_, u64>(1)?))
                })?;
                for row in rows {
                    let (channel, count) = row?;
                    if !configured.contains(&channel.as_str()) {
                        abandoned.push((channel, count));
                    }
                }
            }
            let now = timestamp_text(&Utc::now());
            for (channel, _) in &abandoned {
                transaction.execute(
                    "UPDATE alert_outbox SET status = 'failed', updated_at = ?2,
                         last_error = 'channel no longer configured'
                     WHERE status = 'pending' AND channel = ?1",
                    params![channel, now],
                )?;
            }
            transaction.commit()?;
            Ok(abandoned)
        })
        .await
    }

    /// The newest alerts first, each read as a `T` with its deliveries.
    ///
    /// # Errors
    /// SQL errors or a document that is not a `T`.
    pub async fn list_alerts<T>(
        &self,
        filter: AlertFilter,
    ) -> Result<Vec<(T, Vec<DeliveryRecord>)>, StoreError>
    where
        T: DeserializeOwned + Send + 'static,
    {
        self.read(move |connection| {
            let mut statement = connection.prepare(
                "SELECT id, record FROM alerts
                 WHERE (?1 IS NULL OR service = ?1) AND (?2 IS NULL OR state = ?2)
                 ORDER BY id DESC LIMIT ?3",
            )?;
            let documents = statement
                .query_map(
                    params![
                        filter.service,
                        filter.firing.map(state_text),
                        i64::try_from(filter.limit).unwrap_or(i64::MAX)
                    ],
                    |row| Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?)),
                )?
                .collect::<Result<Vec<_>, _>>()?;
            let mut deliveries = connection.prepare(
                "SELECT channel, event, status, attempts, last_http_status, last_error,
                        created_at, updated_at
                 FROM alert_outbox WHERE alert_id = ?1 ORDER BY id",
            )?;
            let mut alerts = Vec::with_capacity(documents.len());
            for (id, document) in documents {
                let alert: T = from_json("alerts.record", &document)?;
                let rows = deliveries
                    .query_map([id], |row| {
                        Ok(DeliveryRecord {
                            channel: row.get(0)?,
                            event: row.get(1)?,
                            status: parse_column(&row.get::<_, String>(2)?)?,
                            attempts: row.get(3)?,
                            last_http_status: row.get(4)?,
                            last_error: row.get(5)?,
                            created_at: parse_timestamp(&row.get::<_, String>(6)?)?,
                            updated_at: parse_timestamp(&row.get::<_, String>(7)?)?,
                        })
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                alerts.push((alert, rows));
            }
            Ok(alerts)
        })
        .await
    }

    /// Outbox rows per channel and status.
    ///
    /// # Errors
    /// SQL errors.
    pub async fn delivery_counts(
        &self,
    ) -> Result<BTreeMap<String, BTreeMap<String, u64>>, StoreError> {
        self.read(|connection| {
            let mut statement = connection.prepare(
                "SELECT channel, status, COUNT(*) FROM alert_outbox GROUP BY channel, status",
            )?;
            let mut counts: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
            let rows = statement.query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, i64>(2)?,
                ))
            })?;
            for row in rows {
                let (channel, status, count) = row?;
                counts
                    .entry(channel)
                    .or_default()
                    .insert(status, u64::try_from(count).unwrap_or(0));
            }
            Ok(counts)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;
    use crate::store::testing::{TestBackend, on_each_backend};

    /// A stand-in for the alert module's record: the store keeps whatever document it is given.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Alert {
        id: i64,
        state: String,
    }

    const CONSOLE: OutboxChannel = OutboxChannel {
        name: "console",
        delivered_on_store: true,
    };
    const SLACK: OutboxChannel = OutboxChannel {
        name: "slack",
        delivered_on_store: false,
    };
    const WEBHOOK: OutboxChannel = OutboxChannel {
        name: "webhook",
        delivered_on_store: false,
    };

    fn row(id: i64, firing: bool, revision: u64) -> AlertRow {
        let state = state_text(firing).to_owned();
        AlertRow {
            id,
            service: "svc".to_owned(),
            fingerprint: "f".to_owned(),
            firing,
            revision,
            started_at: Utc::now(),
            document: serde_json::to_string(&Alert { id, state }).expect("json"),
        }
    }

    fn entry(id: i64, firing: bool, revision: u64) -> OutboxEntry {
        OutboxEntry {
            alert: row(id, firing, revision),
            event: if firing { "fired" } else { "resolved" },
            opens_alert: firing,
            notification: format!(r#"{{"alert": {id}, "firing": {firing}}}"#),
        }
    }

    fn all(limit: usize) -> AlertFilter {
        AlertFilter {
            limit,
            ..AlertFilter::default()
        }
    }

    on_each_backend! {
    async fn notifications_are_queued_per_channel_in_order_and_bounded(backend: TestBackend) {
        let store = backend.open(100).await;
        let channels = vec![CONSOLE, SLACK];
        let first = store
            .record_alerts(vec![], vec![entry(1, true, 1)], channels.clone(), 1)
            .await
            .expect("stored");
        assert_eq!(
            first,
            vec![
                Enqueued {
                    channel: "console",
                    status: DeliveryStatus::Delivered
                },
                Enqueued {
                    channel: "slack",
                    status: DeliveryStatus::Pending
                },
            ]
        );
        // Slack already has one pending row: capacity 1 drops the next.
        let second = store
            .record_alerts(vec![], vec![entry(1, false, 2)], channels, 1)
            .await
            .expect("stored");
        assert_eq!(second[1].status, DeliveryStatus::Dropped);
        let next = store
            .next_pending_delivery::<serde_json::Value>("slack", 0)
            .await
            .expect("reads")
            .expect("a row");
        assert_eq!(next.notification["firing"], true);
        let after = store.next_pending_delivery::<serde_json::Value>("slack", next.id);
        assert!(after.await.expect("reads").is_none());
        let console = store.next_pending_delivery::<serde_json::Value>("console", 0);
        assert!(console.await.expect("reads").is_none());
        store
            .update_delivery(next.id, DeliveryStatus::Delivered, 2, Some(200), None)
            .await
            .expect("updated");
        let listed: Vec<(Alert, Vec<DeliveryRecord>)> =
            store.list_alerts(all(10)).await.expect("lists");
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].0.state, "resolved", "newer revision wins");
        let slack: Vec<_> = listed[0]
            .1
            .iter()
            .filter(|d| d.channel == "slack")
            .map(|d| (d.event.as_str(), d.status, d.attempts))
            .collect();
        assert_eq!(
            slack,
            vec![
                ("fired", DeliveryStatus::Delivered, 2),
                ("resolved", DeliveryStatus::Dropped, 0)
            ]
        );
        let counts = store.delivery_counts().await.expect("counts");
        assert_eq!(counts["console"]["delivered"], 2);
        let firing = AlertFilter {
            firing: Some(true),
            ..all(10)
        };
        let listed: Vec<(Alert, Vec<DeliveryRecord>)> =
            store.list_alerts(firing).await.expect("lists");
        assert!(listed.is_empty());
    }
    }

    on_each_backend! {
    async fn an_older_revision_never_replaces_a_newer_one(backend: TestBackend) {
        let store = backend.open(100).await;
        store
            .record_alerts(vec![], vec![entry(4, false, 2)], vec![CONSOLE], 10)
            .await
            .expect("stored");
        // A late write of the fired revision must not reopen it.
        store
            .record_alerts(vec![row(4, true, 1)], vec![], vec![CONSOLE], 10)
            .await
            .expect("stored");
        let firing: Vec<Alert> = store.firing_alerts().await.expect("reads");
        assert!(firing.is_empty());
        assert_eq!(store.max_alert_id().await.expect("reads"), 4);
    }
    }

    on_each_backend! {
    async fn a_document_of_another_shape_is_reported_corrupt(backend: TestBackend) {
        let store = backend.open(100).await;
        store
            .record_alerts(vec![row(1, true, 1)], vec![], vec![], 10)
            .await
            .expect("stored");
        let error = store
            .firing_alerts::<Vec<u8>>()
            .await
            .expect_err("not a list");
        assert!(
            matches!(
                error,
                StoreError::Corrupt {
                    column: "alerts.record",
                    ..
                }
            ),
            "{error}"
        );
    }
    }

    on_each_backend! {
    async fn pending_deliveries_of_removed_channels_are_marked_failed(backend: TestBackend) {
        let store = backend.open(100).await;
        store
            .record_alerts(
                vec![],
                vec![entry(1, true, 1)],
                vec![CONSOLE, SLACK, WEBHOOK],
                10,
            )
            .await
            .expect("stored");

        let abandoned = store
            .abandon_unconfigured_deliveries(vec!["console", "slack"])
            .await
            .expect("updated");

        assert_eq!(abandoned, [("webhook".to_owned(), 1)]);
        let slack = store.next_pending_delivery::<serde_json::Value>("slack", 0);
        assert!(
            slack.await.expect("read").is_some(),
            "a configured channel keeps its queue"
        );
        let webhook = store.next_pending_delivery::<serde_json::Value>("webhook", 0);
        assert!(webhook.await.expect("read").is_none());
        let counts = store.delivery_counts().await.expect("counts");
        assert_eq!(counts["webhook"]["failed"], 1, "{counts:?}");
        let alerts: Vec<(Alert, Vec<DeliveryRecord>)> =
            store.list_alerts(all(10)).await.expect("list");
        let webhook = alerts[0]
            .1
            .iter()
            .find(|d| d.channel == "webhook")
            .expect("webhook delivery");
        assert_eq!(
            webhook.last_error.as_deref(),
            Some("channel no longer configured")
        );
        assert!(
            store
                .abandon_unconfigured_deliveries(vec!["console", "slack"])
                .await
                .expect("again")
                .is_empty()
        );
    }
    }

    #[test]
    fn every_delivery_status_reads_back_from_its_name() {
        for status in [
            DeliveryStatus::Pending,
            DeliveryStatus::Delivered,
            DeliveryStatus::Rejected,
            DeliveryStatus::Failed,
            DeliveryStatus::Dropped,
        ] {
            assert_eq!(status.as_str().parse::<DeliveryStatus>().ok(), Some(status));
        }
        assert!("sent".parse::<DeliveryStatus>().is_err());
    }
}
