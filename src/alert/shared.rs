//! Rate alerts across replicas (PostgreSQL): every replica shares what it judged, one replica
//! (the leader) counts it all, exactly as one process counts its own batches.
//!
//! - Each replica cuts a judged batch to what the tracker reads ([`Tracker::ship`]: traffic
//!   summed per service and bucket, the anomalies with their first reason) and stores it in
//!   `alert_events` in the transaction of the batch's anomalies, when it holds any; traffic
//!   alone is merged and stored every [`TRAFFIC_FLUSH`].
//! - The leader holds a session advisory lock on a connection of its own. Each round it takes
//!   the batches not yet counted, feeds them to its tracker in id order, ticks it, and in one
//!   transaction on that connection marks them counted and stores the alerts and notifications
//!   they caused: a batch causes its transitions once, and a leader that lost its connection
//!   (and so its lock) cannot store anything more.
//! - A new leader (the old one stopped or lost the database) replays the batches counted within
//!   the longest alert window without notifying anything, then takes the firing alerts from the
//!   store: a burst split across a change of leader still counts whole.
//! - Delivery is not the leader's: every replica's workers claim outbox rows with a lease.

use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::Utc;

use super::lifecycle::{
    AlertRecord, JudgedEvent, ShippedBatch, Tracker, TrackerStats, Transition, TransitionKind,
};
use super::window::window_of;
use super::{AlertSystem, outbox_entry, stored_row};
use crate::alert::channel::{Channel, Notification, log_to_console};
use crate::detect::JudgedLog;
use crate::store::{
    DeliveryStatus, LeaderRound, OutboxChannel, RateLeader, SharedBatchEvent, StoreError,
};
use crate::sync::lock;

/// How often the leader counts, and a replica stores its merged traffic.
pub(super) const ROUND: Duration = Duration::from_millis(200);
/// Traffic without anomalies waits at most this long before it is shared.
const TRAFFIC_FLUSH: Duration = Duration::from_millis(500);
/// How often a replica that is not the leader asks for leadership.
const CANDIDACY: Duration = Duration::from_secs(1);

impl AlertSystem {
    /// With a shared store: a judged batch's share for the rate leader, to be stored in the
    /// transaction of its anomalies (so both are, or neither), when it has anomalies; traffic
    /// alone is merged into the next flush. `None` without a shared store.
    pub fn share_for_store(&self, judged: &[JudgedLog]) -> Option<SharedBatchEvent> {
        if !self.inner.store.is_shared() {
            return None;
        }
        let events: Vec<JudgedEvent<'_>> = judged.iter().map(JudgedEvent::of).collect();
        if events.is_empty() {
            return None;
        }
        let batch = lock(&self.inner.tracker).ship(&events, Utc::now());
        self.inner
            .counters
            .anomalies
            .fetch_add(batch.anomalies.len() as u64, Ordering::Relaxed);
        if batch.anomalies.is_empty() {
            let mut pending = lock(&self.inner.pending_traffic);
            match pending.as_mut() {
                Some(merged) => {
                    merged.arrival = merged.arrival.max(batch.arrival);
                    merged.traffic.extend(batch.traffic);
                }
                None => *pending = Some(batch),
            }
            return None;
        }
        match serde_json::to_string(&batch) {
            Ok(payload) => Some(SharedBatchEvent {
                arrival: batch.arrival,
                payload,
            }),
            Err(error) => {
                tracing::error!(%error, "A judged batch could not be shared.");
                None
            }
        }
    }

    /// Stores merged traffic for the rate leader; when the database is away it is lost (the
    /// leader then expects a little less traffic, which only errs toward paging).
    async fn store_batch(&self, batch: ShippedBatch) {
        let payload = match serde_json::to_string(&batch) {
            Ok(payload) => payload,
            Err(error) => {
                tracing::error!(%error, "A judged batch could not be shared.");
                return;
            }
        };
        if let Err(error) = self
            .inner
            .store
            .share_alert_batch(batch.arrival, payload)
            .await
        {
            self.inner
                .counters
                .store_errors
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%error, "Traffic counts could not be shared with the rate leader.");
        }
    }

    /// Stores the traffic merged since the last flush.
    pub(super) async fn flush_traffic(&self) {
        let pending = lock(&self.inner.pending_traffic).take();
        if let Some(batch) = pending {
            self.store_batch(batch).await;
        }
    }

    /// Stores the merged traffic when [`TRAFFIC_FLUSH`] has passed since `last_flush`.
    async fn flush_traffic_if_due(&self, last_flush: &mut tokio::time::Instant) {
        if last_flush.elapsed() >= TRAFFIC_FLUSH {
            self.flush_traffic().await;
            *last_flush = tokio::time::Instant::now();
        }
    }

    /// Runs for the life of the service: flushes traffic, and leads when it can.
    pub(super) async fn lead_when_possible(self) {
        let mut last_flush = tokio::time::Instant::now();
        let mut last_candidacy: Option<tokio::time::Instant> = None;
        loop {
            tokio::time::sleep(ROUND).await;
            self.flush_traffic_if_due(&mut last_flush).await;
            if last_candidacy.is_some_and(|at| at.elapsed() < CANDIDACY) {
                continue;
            }
            last_candidacy = Some(tokio::time::Instant::now());
            let leader = match self.inner.store.try_lead().await {
                Ok(Some(leader)) => leader,
                Ok(None) => continue,
                Err(error) => {
                    tracing::debug!(%error, "Cannot ask for rate leadership.");
                    continue;
                }
            };
            tracing::info!("This replica now counts the alert rates of every replica.");
            self.inner
                .counters
                .leaderships
                .fetch_add(1, Ordering::Relaxed);
            if let Err(error) = self.lead(leader, &mut last_flush).await {
                tracing::warn!(
                    %error,
                    "This replica stopped counting alert rates (another replica takes over)."
                );
            }
            self.inner.leading.store(false, Ordering::Release);
        }
    }

    async fn lead(
        &self,
        mut leader: RateLeader,
        last_flush: &mut tokio::time::Instant,
    ) -> Result<(), StoreError> {
        let keep = self.longest_window();
        let mut tracker = self.rebuilt_tracker(&leader, keep).await?;
        self.inner.leading.store(true, Ordering::Release);
        let mut behind = false;
        let mut stored_stats = None;
        loop {
            // A round that took a full page leaves more waiting: the next one starts at once.
            if !behind {
                tokio::time::sleep(ROUND).await;
            }
            self.flush_traffic_if_due(last_flush).await;
            if leader.is_lost() {
                return Err(StoreError::Background(
                    "the leader's database connection closed".into(),
                ));
            }
            behind = self
                .round(&mut leader, &mut tracker, keep, &mut stored_stats)
                .await?;
        }
    }

    /// The longest window of any rule: how long counted batches matter.
    fn longest_window(&self) -> Duration {
        self.inner
            .rules
            .table()
            .values()
            .map(|rule| window_of(*rule).to_std().unwrap_or(Duration::ZERO))
            .max()
            .unwrap_or(Duration::from_secs(300))
            .max(Duration::from_secs(1))
    }

    /// A tracker that has counted what earlier leaders counted within `keep`, holding the
    /// alerts the store says are firing.
    async fn rebuilt_tracker(
        &self,
        leader: &RateLeader,
        keep: Duration,
    ) -> Result<Tracker, StoreError> {
        let mut tracker = Tracker::new(self.inner.rules.clone(), self.inner.limits, 1);
        let replayed = leader.consumed_within(keep).await?;
        for batch in &replayed {
            if let Ok(batch) = serde_json::from_str::<ShippedBatch>(&batch.payload) {
                // Their notifications were stored by the leader that counted them.
                drop(tracker.observe_shipped(&batch));
            }
        }
        let firing: Vec<AlertRecord> = self.inner.store.firing_alerts().await?;
        tracker.reconcile(firing, Utc::now());
        tracker.ids_after(self.inner.store.max_alert_id().await?);
        tracing::info!(
            replayed = replayed.len(),
            "Rate windows rebuilt from the batches counted within the longest alert window."
        );
        Ok(tracker)
    }

    /// Counts what arrived since the last round, ticks, and stores the outcome with the batches'
    /// consumption in one transaction, with the tracker's counters when they changed since
    /// `stored_stats`. Whether more batches are waiting (a full page was read).
    async fn round(
        &self,
        leader: &mut RateLeader,
        tracker: &mut Tracker,
        keep: Duration,
        stored_stats: &mut Option<TrackerStats>,
    ) -> Result<bool, StoreError> {
        let batches = leader.pending().await?;
        let behind = batches.len() >= RateLeader::PAGE;
        let mut consumed = Vec::with_capacity(batches.len());
        let mut transitions: Vec<Transition> = Vec::new();
        for batch in &batches {
            consumed.push(batch.id);
            match serde_json::from_str::<ShippedBatch>(&batch.payload) {
                Ok(shipped) => transitions.extend(tracker.observe_shipped(&shipped)),
                Err(error) => {
                    tracing::warn!(%error, id = batch.id, "A shared batch is unreadable.")
                }
            }
        }
        let (ticked, changed) = tracker.tick(Utc::now());
        transitions.extend(ticked);
        let stats = tracker.stats();
        let new_stats = (*stored_stats != Some(stats)).then_some(stats);
        if consumed.is_empty()
            && transitions.is_empty()
            && changed.is_empty()
            && new_stats.is_none()
        {
            return Ok(false);
        }
        let stats_json = new_stats
            .map(|stats| serde_json::to_string(&stats))
            .transpose()
            .map_err(|source| StoreError::Corrupt {
                column: "rate_leader_stats.stats",
                source,
            })?;
        let now = Utc::now();
        let notifications: Vec<Notification> = transitions
            .iter()
            .map(|transition| Notification::new(transition, now))
            .collect();
        let rows = changed
            .iter()
            .map(stored_row)
            .collect::<Result<Vec<_>, _>>()
            .and_then(|changed| {
                let entries: Result<Vec<_>, _> = notifications.iter().map(outbox_entry).collect();
                entries.map(|entries| (changed, entries))
            })
            .map_err(|source| StoreError::Corrupt {
                column: "alerts.record",
                source,
            })?;
        let channels = self.outbox_channels();
        let enqueued = leader
            .commit(
                LeaderRound {
                    consumed: &consumed,
                    changed: rows.0,
                    entries: rows.1,
                    stats: stats_json,
                },
                keep,
                channels,
                self.inner.queue_capacity,
            )
            .await?;
        if new_stats.is_some() {
            *stored_stats = new_stats;
        }
        for notification in &notifications {
            log_to_console(notification);
            let counter = match notification.kind {
                TransitionKind::Fired => &self.inner.counters.fired,
                TransitionKind::Repeated => &self.inner.counters.repeated,
                TransitionKind::Resolved => &self.inner.counters.resolved,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        for handle in &self.inner.channels {
            let queued = enqueued.iter().any(|entry| {
                entry.channel == handle.name && entry.status != DeliveryStatus::Dropped
            });
            if queued {
                handle.wake.notify_one();
            }
        }
        Ok(behind)
    }

    pub(super) fn outbox_channels(&self) -> Vec<OutboxChannel> {
        self.inner
            .channel_names
            .iter()
            .map(|&name| OutboxChannel {
                name,
                // The console is written when the notification is stored.
                delivered_on_store: name == Channel::Console.name(),
            })
            .collect()
    }
}
