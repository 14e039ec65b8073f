//! Alerts and the delivery outbox, in the service's SQLite database (`DATA_DIR/aioops.db`).
//!
//! Two tables beside `store`'s, created with `IF NOT EXISTS` on a connection of our own, so the
//! main store's migrations stay untouched. Every notification becomes one outbox row per channel
//! in the same transaction as its alert; a channel's worker delivers its rows in id order and
//! marks each one, so what was not delivered when the process stopped is delivered after the
//! next start ([z2p]'s `issue_delivery_queue`).
//!
//! Outbox statuses: `pending` (queued or being retried), `delivered`, `rejected` (the receiver
//! answered a final 4xx), `failed` (the retry budget ran out), `dropped` (the channel's queue was
//! full, `ALERT_QUEUE_CAPACITY`).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::alert::channel::Notification;
use crate::alert::lifecycle::{AlertRecord, AlertState, TransitionKind};
use crate::sync::lock;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS alerts (
    id          INTEGER PRIMARY KEY,
    service     TEXT    NOT NULL,
    fingerprint TEXT    NOT NULL,
    state       TEXT    NOT NULL,
    revision    INTEGER NOT NULL,
    started_at  TEXT    NOT NULL,
    record      TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_state ON alerts (state, id);
CREATE INDEX IF NOT EXISTS alerts_service ON alerts (service, id);

CREATE TABLE IF NOT EXISTS alert_outbox (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id         INTEGER NOT NULL,
    channel          TEXT    NOT NULL,
    event            TEXT    NOT NULL,
    status           TEXT    NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    last_http_status INTEGER,
    last_error       TEXT,
    notification     TEXT    NOT NULL,
    created_at       TEXT    NOT NULL,
    updated_at       TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS alert_outbox_queue ON alert_outbox (channel, status, id);
CREATE INDEX IF NOT EXISTS alert_outbox_alert ON alert_outbox (alert_id);
"#;

/// Resolved alerts kept (with their deliveries); older ones are pruned when new alerts open.
pub const MAX_STORED_ALERTS: i64 = 10_000;
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the alert tables could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum AlertStoreError {
    #[error("alert database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("stored alert is not valid JSON: {0}")]
    Corrupt(#[from] serde_json::Error),
    #[error("the alert database is closed")]
    Closed,
    #[error("background task failed: {0}")]
    Background(String),
}

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

/// One outbox row as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeliveryRecord {
    pub channel: String,
    pub event: String,
    pub status: String,
    pub attempts: u32,
    pub last_http_status: Option<u16>,
    pub last_error: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// An alert with its deliveries.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredAlert {
    #[serde(flatten)]
    pub alert: AlertRecord,
    pub dedup_key: String,
    pub deliveries: Vec<DeliveryRecord>,
}

/// A row a worker has to deliver.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingDelivery {
    pub id: i64,
    pub notification: Notification,
    pub attempts: u32,
}

/// What happened to one new outbox row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enqueued {
    pub channel: &'static str,
    pub status: DeliveryStatus,
}

/// Filters of GET /api/v1/alerts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertQuery {
    pub limit: usize,
    pub service: Option<String>,
    pub state: Option<AlertState>,
}

/// A cheap handle to the alert tables.
#[derive(Clone)]
pub struct AlertStore {
    connection: Arc<Mutex<Option<Connection>>>,
}

impl std::fmt::Debug for AlertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AlertStore")
    }
}

fn text(instant: DateTime<Utc>) -> String {
    instant.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn event_name(kind: TransitionKind) -> &'static str {
    match kind {
        TransitionKind::Fired => "fired",
        TransitionKind::Repeated => "repeated",
        TransitionKind::Resolved => "resolved",
    }
}

fn upsert_alert(connection: &Connection, alert: &AlertRecord) -> Result<(), AlertStoreError> {
    connection.execute(
        "INSERT INTO alerts (id, service, fingerprint, state, revision, started_at, record)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (id) DO UPDATE SET
             state = excluded.state, revision = excluded.revision, record = excluded.record
         WHERE excluded.revision >= alerts.revision",
        params![
            alert.id,
            alert.service,
            alert.fingerprint,
            alert.state.as_str(),
            i64::try_from(alert.revision).unwrap_or(i64::MAX),
            text(alert.started_at),
            serde_json::to_string(alert)?,
        ],
    )?;
    Ok(())
}

impl AlertStore {
    /// Opens the database at `path` (the main store has created it) and adds the alert tables.
    ///
    /// # Errors
    /// The file cannot be opened or the tables cannot be created.
    pub fn open(path: &Path, full_sync: bool) -> Result<Self, AlertStoreError> {
        let connection = Connection::open(path)?;
        connection.busy_timeout(BUSY_TIMEOUT)?;
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.pragma_update(
            None,
            "synchronous",
            if full_sync { "FULL" } else { "NORMAL" },
        )?;
        connection.execute_batch(SCHEMA)?;
        Ok(Self {
            connection: Arc::new(Mutex::new(Some(connection))),
        })
    }

    async fn run<T, F>(&self, work: F) -> Result<T, AlertStoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, AlertStoreError> + Send + 'static,
    {
        let connection = Arc::clone(&self.connection);
        tokio::task::spawn_blocking(move || {
            let mut guard = lock(&connection);
            let connection = guard.as_mut().ok_or(AlertStoreError::Closed)?;
            work(connection)
        })
        .await
        .map_err(|error| AlertStoreError::Background(error.to_string()))?
    }

    /// The highest alert id so far (0 when there is none).
    ///
    /// # Errors
    /// SQL errors.
    pub async fn max_alert_id(&self) -> Result<i64, AlertStoreError> {
        self.run(|connection| {
            Ok(
                connection.query_row("SELECT COALESCE(MAX(id), 0) FROM alerts", [], |row| {
                    row.get(0)
                })?,
            )
        })
        .await
    }

    /// Alerts that were firing when the service stopped.
    ///
    /// # Errors
    /// SQL errors or a corrupt record.
    pub async fn firing_alerts(&self) -> Result<Vec<AlertRecord>, AlertStoreError> {
        self.run(|connection| {
            let mut statement = connection
                .prepare("SELECT record FROM alerts WHERE state = 'firing' ORDER BY id")?;
            let records = statement
                .query_map([], |row| row.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            records
                .iter()
                .map(|record| Ok(serde_json::from_str(record)?))
                .collect()
        })
        .await
    }

    /// Stores the alerts of `notifications` and of `changed`, and queues each notification for
    /// every channel in `channels`, all in one transaction. The console's row is written as
    /// delivered (the caller logs it); another channel's is dropped when it already has
    /// `capacity` pending rows.
    ///
    /// # Errors
    /// SQL errors; then nothing is stored.
    pub async fn record(
        &self,
        notifications: Vec<Notification>,
        changed: Vec<AlertRecord>,
        channels: Vec<&'static str>,
        capacity: usize,
    ) -> Result<Vec<Enqueued>, AlertStoreError> {
        self.run(move |connection| {
            let transaction = connection.transaction()?;
            let now = text(Utc::now());
            let mut enqueued = Vec::new();
            for alert in &changed {
                upsert_alert(&transaction, alert)?;
            }
            let mut opened = false;
            for notification in &notifications {
                upsert_alert(&transaction, &notification.alert)?;
                opened |= notification.kind == TransitionKind::Fired;
                let body = serde_json::to_string(notification)?;
                for &channel in &channels {
                    let status = if channel == "console" {
                        DeliveryStatus::Delivered
                    } else {
                        let pending: i64 = transaction.query_row(
                            "SELECT COUNT(*) FROM alert_outbox WHERE channel = ?1 AND status = 'pending'",
                            [channel],
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
                            notification.alert.id,
                            channel,
                            event_name(notification.kind),
                            status.as_str(),
                            last_error,
                            body,
                            now,
                        ],
                    )?;
                    enqueued.push(Enqueued { channel, status });
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

    /// The oldest pending row of `channel` after `after_id`.
    ///
    /// # Errors
    /// SQL errors or a corrupt row.
    pub async fn next_pending(
        &self,
        channel: &'static str,
        after_id: i64,
    ) -> Result<Option<PendingDelivery>, AlertStoreError> {
        self.run(move |connection| {
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
                    notification: serde_json::from_str(&notification)?,
                    attempts,
                })
            })
            .transpose()
        })
        .await
    }

    /// Records an attempt on row `id`: its status afterwards, the total attempts, the last HTTP
    /// status and a redacted error.
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
    ) -> Result<(), AlertStoreError> {
        self.run(move |connection| {
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
                    text(Utc::now())
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
    pub async fn abandon_unconfigured(
        &self,
        configured: Vec<&'static str>,
    ) -> Result<Vec<(String, u64)>, AlertStoreError> {
        self.run(move |connection| {
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
            let now = text(Utc::now());
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

    /// The newest alerts first, each with its deliveries.
    ///
    /// # Errors
    /// SQL errors or a corrupt record.
    pub async fn list(&self, query: AlertQuery) -> Result<Vec<StoredAlert>, AlertStoreError> {
        self.run(move |connection| {
            let mut statement = connection.prepare(
                "SELECT record FROM alerts
                 WHERE (?1 IS NULL OR service = ?1) AND (?2 IS NULL OR state = ?2)
                 ORDER BY id DESC LIMIT ?3",
            )?;
            let records = statement
                .query_map(
                    params![
                        query.service,
                        query.state.map(AlertState::as_str),
                        i64::try_from(query.limit).unwrap_or(i64::MAX)
                    ],
                    |row| row.get::<_, String>(0),
                )?
                .collect::<Result<Vec<_>, _>>()?;
            let mut deliveries = connection.prepare(
                "SELECT channel, event, status, attempts, last_http_status, last_error,
                        created_at, updated_at
                 FROM alert_outbox WHERE alert_id = ?1 ORDER BY id",
            )?;
            let mut alerts = Vec::with_capacity(records.len());
            for record in records {
                let alert: AlertRecord = serde_json::from_str(&record)?;
                let rows = deliveries
                    .query_map([alert.id], |row| {
                        Ok(DeliveryRecord {
                            channel: row.get(0)?,
                            event: row.get(1)?,
                            status: row.get(2)?,
                            attempts: row.get(3)?,
                            last_http_status: row.get(4)?,
                            last_error: row.get(5)?,
                            created_at: row.get(6)?,
                            updated_at: row.get(7)?,
                        })
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                alerts.push(StoredAlert {
                    dedup_key: alert.dedup_key(),
                    alert,
                    deliveries: rows,
                });
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
    ) -> Result<BTreeMap<String, BTreeMap<String, u64>>, AlertStoreError> {
        self.run(|connection| {
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

    /// Closes the connection; later calls answer [`AlertStoreError::Closed`].
    pub async fn close(&self) {
        let connection = Arc::clone(&self.connection);
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(connection) = lock(&connection).take()
                && let Err((_, error)) = connection.close()
            {
                tracing::warn!(%error, "Closing the alert database failed.");
            }
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::lifecycle::{RULE_NAME, fingerprint};

    fn notification(id: i64, kind: TransitionKind) -> Notification {
        let now = Utc::now();
        Notification {
            context: None,
            kind,
            alert: AlertRecord {
                id,
                fingerprint: fingerprint(RULE_NAME, "svc"),
                service: "svc".to_owned(),
                rule: RULE_NAME.to_owned(),
                state: if kind == TransitionKind::Resolved {
                    AlertState::Resolved
                } else {
                    AlertState::Firing
                },
                threshold_count: 3,
                window_seconds: 2.0,
                started_at: now,
                last_anomaly_at: now,
                last_notified_at: now,
                resolved_at: None,
                anomaly_count: 3,
                bursts: 1,
                notifications: 1,
                revision: if kind == TransitionKind::Resolved {
                    2
                } else {
                    1
                },
            },
            anomaly_count_in_window: 3,
            created_at: now,
        }
    }

    fn open() -> (tempfile::TempDir, AlertStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = AlertStore::open(&dir.path().join("a.db"), false).expect("opens");
        (dir, store)
    }

    #[tokio::test]
    async fn notifications_are_queued_per_channel_in_order_and_bounded() {
        let (_dir, store) = open();
        let channels = vec!["console", "slack"];
        let first = store
            .record(
                vec![notification(1, TransitionKind::Fired)],
                vec![],
                channels.clone(),
                1,
            )
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
            .record(
                vec![notification(1, TransitionKind::Resolved)],
                vec![],
                channels,
                1,
            )
            .await
            .expect("stored");
        assert_eq!(second[1].status, DeliveryStatus::Dropped);
        let next = store
            .next_pending("slack", 0)
            .await
            .expect("reads")
            .expect("a row");
        assert_eq!(next.notification.kind, TransitionKind::Fired);
        assert!(
            store
                .next_pending("slack", next.id)
                .await
                .expect("reads")
                .is_none()
        );
        assert!(
            store
                .next_pending("console", 0)
                .await
                .expect("reads")
                .is_none()
        );
        store
            .update_delivery(next.id, DeliveryStatus::Delivered, 2, Some(200), None)
            .await
            .expect("updated");
        let listed = store
            .list(AlertQuery {
                limit: 10,
                ..AlertQuery::default()
            })
            .await
            .expect("lists");
        assert_eq!(listed.len(), 1);
        assert_eq!(
            listed[0].alert.state,
            AlertState::Resolved,
            "newer revision wins"
        );
        let slack: Vec<_> = listed[0]
            .deliveries
            .iter()
            .filter(|d| d.channel == "slack")
            .map(|d| (d.event.as_str(), d.status.as_str(), d.attempts))
            .collect();
        assert_eq!(
            slack,
            vec![("fired", "delivered", 2), ("resolved", "dropped", 0)]
        );
        let counts = store.delivery_counts().await.expect("counts");
        assert_eq!(counts["console"]["delivered"], 2);
    }

    #[tokio::test]
    async fn an_older_revision_never_replaces_a_newer_one() {
        let (_dir, store) = open();
        let resolved = notification(4, TransitionKind::Resolved);
        let fired = notification(4, TransitionKind::Fired);
        store
            .record(vec![resolved], vec![], vec!["console"], 10)
            .await
            .expect("stored");
        // A late write of the fired revision must not reopen it.
        store
            .record(vec![], vec![fired.alert], vec!["console"], 10)
            .await
            .expect("stored");
        assert!(store.firing_alerts().await.expect("reads").is_empty());
        assert_eq!(store.max_alert_id().await.expect("reads"), 4);
    }

    #[tokio::test]
    async fn a_closed_store_answers_closed() {
        let (_dir, store) = open();
        store.close().await;
        assert!(matches!(
            store.max_alert_id().await,
            Err(AlertStoreError::Closed)
        ));
    }

    #[tokio::test]
    async fn pending_deliveries_of_removed_channels_are_marked_failed() {
        let (_dir, store) = open();
        store
            .record(
                vec![notification(1, TransitionKind::Fired)],
                vec![],
                vec!["console", "slack", "webhook"],
                10,
            )
            .await
            .expect("stored");

        let abandoned = store
            .abandon_unconfigured(vec!["console", "slack"])
            .await
            .expect("updated");

        assert_eq!(abandoned, [("webhook".to_owned(), 1)]);
        let slack = store.next_pending("slack", 0).await.expect("read");
        assert!(slack.is_some(), "a configured channel keeps its queue");
        assert!(
            store
                .next_pending("webhook", 0)
                .await
                .expect("read")
                .is_none()
        );
        let counts = store.delivery_counts().await.expect("counts");
        assert_eq!(counts["webhook"]["failed"], 1, "{counts:?}");
        let query = AlertQuery {
            limit: 10,
            ..AlertQuery::default()
        };
        let alerts = store.list(query).await.expect("list");
        let webhook = alerts[0]
            .deliveries
            .iter()
            .find(|d| d.channel == "webhook")
            .expect("webhook delivery");
        assert_eq!(
            webhook.last_error.as_deref(),
            Some("channel no longer configured")
        );
        assert!(
            store
                .abandon_unconfigured(vec!["console", "slack"])
                .await
                .expect("again")
                .is_empty()
        );
    }
}
