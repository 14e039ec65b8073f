//! The rate leader's side of the database: the batches every replica shares
//! (`alert_events`), and the one connection that holds leadership.
//!
//! Leadership is a session advisory lock on a connection of its own; everything the leader
//! writes goes through that same connection, so a leader whose connection died (and with it
//! the lock, which another replica may now hold) cannot write anything more: its commits fail
//! and it steps down. Events are marked consumed in the transaction that stores the alerts
//! they caused, so each batch causes its transitions exactly once, whichever leader counted it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;

use super::Postgres;
use super::alerts::record_alerts_in;
use crate::store::{AlertRow, Enqueued, OutboxChannel, OutboxEntry, StoreError, from_json};

/// The session advisory lock the rate leader holds ("aioops-r").
const LEADER_LOCK: i64 = 0x6169_6f6f_7073_2d72;

impl Postgres {
    /// Shares one judged batch (a JSON document) with the rate leader.
    pub(crate) async fn share_alert_batch(
        &self,
        arrival: DateTime<Utc>,
        payload: String,
    ) -> Result<(), StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached("INSERT INTO alert_events (arrival, payload) VALUES ($1, $2)")
            .await?;
        client.execute(&statement, &[&arrival, &payload]).await?;
        Ok(())
    }

    /// The counters the rate leader stored last, if one ever did.
    pub(crate) async fn rate_leader_stats<T: DeserializeOwned>(
        &self,
    ) -> Result<Option<T>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt("SELECT stats FROM rate_leader_stats WHERE id = 1", &[])
            .await?;
        row.map(|row| from_json("rate_leader_stats.stats", row.try_get(0)?))
            .transpose()
    }

    /// Leadership, if no other replica holds it.
    pub(crate) async fn try_lead(&self) -> Result<Option<RateLeader>, StoreError> {
        let client = self.dedicated_connection().await?;
        let acquired: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&LEADER_LOCK])
            .await?
            .try_get(0)?;
        Ok(acquired.then_some(RateLeader { client }))
    }
}

/// What one round of the rate leader stores ([`RateLeader::commit`]).
#[derive(Debug)]
pub struct LeaderRound<'a> {
    /// The shared batches it counted.
    pub consumed: &'a [i64],
    /// Alerts whose state changed.
    pub changed: Vec<AlertRow>,
    /// Their notifications.
    pub entries: Vec<OutboxEntry>,
    /// The tracker's counters (`alert::TrackerStats` as JSON), when they changed.
    pub stats: Option<String>,
}

/// A judged batch as it is shared with the rate leader: when it arrived, and the tracker's JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct SharedBatchEvent {
    pub arrival: DateTime<Utc>,
    pub payload: String,
}

/// This replica counts the rates of every replica while it holds this.
pub struct RateLeader {
    client: tokio_postgres::Client,
}

impl std::fmt::Debug for RateLeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLeader").finish_non_exhaustive()
    }
}

/// One shared batch: its row id and document.
#[derive(Debug, Clone, PartialEq)]
pub struct SharedBatch {
    pub id: i64,
    pub payload: String,
}

impl RateLeader {
    /// Batches a leader takes per round at most.
    pub const PAGE: usize = 500;

    /// Whether the connection that holds leadership is gone (the lock with it).
    pub fn is_lost(&self) -> bool {
        self.client.is_closed()
    }

    /// The batches earlier leaders consumed that arrived within `window`, oldest first: what a
    /// new leader replays to rebuild the rate windows.
    ///
    /// # Errors
    /// SQL errors.
    pub async fn consumed_within(&self, window: Duration) -> Result<Vec<SharedBatch>, StoreError> {
        let seconds = window.as_secs_f64();
        let rows = self
            .client
            .query(
                "SELECT id, payload FROM alert_events \
                 WHERE consumed AND arrival >= now() - make_interval(secs => $1) ORDER BY id",
                &[&seconds],
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(SharedBatch {
                    id: row.try_get(0)?,
                    payload: row.try_get(1)?,
                })
            })
            .collect()
    }

    /// The batches no leader has counted yet, oldest first (at most a round's worth).
    ///
    /// # Errors
    /// SQL errors.
    pub async fn pending(&self) -> Result<Vec<SharedBatch>, StoreError> {
        let rows = self
            .client
            .query(
                "SELECT id, payload FROM alert_events WHERE NOT consumed ORDER BY id LIMIT $1",
                &[&(Self::PAGE as i64)],
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(SharedBatch {
                    id: row.try_get(0)?,
                    payload: row.try_get(1)?,
                })
            })
            .collect()
    }

    /// In one transaction: marks the round's batches counted, forgets consumed batches older
    /// than `keep`, stores the alerts and notifications they caused and the tracker's counters.
    ///
    /// # Errors
    /// SQL errors, or a lost connection: then nothing is stored, and the caller steps down.
    pub async fn commit(
        &mut self,
        round: LeaderRound<'_>,
        keep: Duration,
        channels: Vec<OutboxChannel>,
        capacity: usize,
    ) -> Result<Vec<Enqueued>, StoreError> {
        let LeaderRound {
            consumed,
            changed,
            entries,
            stats,
        } = round;
        let transaction = self.client.transaction().await?;
        if let Some(stats) = stats {
            transaction
                .execute(
                    "INSERT INTO rate_leader_stats (id, stats, updated_at) VALUES (1, $1, now()) \
                     ON CONFLICT (id) DO UPDATE SET stats = EXCLUDED.stats, updated_at = now()",
                    &[&stats],
                )
                .await?;
        }
        if !consumed.is_empty() {
            transaction
                .execute(
                    "UPDATE alert_events SET consumed = TRUE WHERE id = ANY($1)",
                    &[&consumed],
                )
                .await?;
        }
        transaction
            .execute(
                "DELETE FROM alert_events \
                 WHERE consumed AND arrival < now() - make_interval(secs => $1)",
                &[&keep.as_secs_f64()],
            )
            .await?;
        let enqueued = if changed.is_empty() && entries.is_empty() {
            Vec::new()
        } else {
            record_alerts_in(&transaction, &changed, &entries, &channels, capacity).await?
        };
        transaction.commit().await?;
        Ok(enqueued)
    }
}
