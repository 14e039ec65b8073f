//! Rate alerts: anomalies in, pages out (contract, "Detection semantics" 3 and 4; issue #5).
//!
//! ```text
//! IngestService::ingest ─ observe(every judged log: service, timestamp, verdict; now) ─▶ lifecycle::Tracker
//!                         │ a transition (fired / repeated / resolved)
//!                         ▼
//!              spawned task: console event + Store::record_alerts (alert + outbox rows, one txn)
//!                         │ wake
//!                         ▼
//!              worker::Worker per channel ─▶ Slack / PagerDuty / webhook, retry::RetryPolicy
//! tick (every 250 ms) ─ resolves quiet alerts, stores counts
//! ```
//!
//! The request never waits for any of it: counting is an in-memory update under a short lock,
//! and storing and delivering happen on other tasks. Which clock counts for old, future and
//! missing timestamps is explained in [`lifecycle`] and `docs/alerting.md`.

pub mod channel;
pub mod lifecycle;
pub mod rate;
pub mod retry;
mod shared;
mod window;
mod worker;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinHandle;

use crate::alert::channel::{Channel, Notification, log_to_console};
use crate::alert::lifecycle::{
    AlertRecord, AlertState, JudgedEvent, ShippedBatch, Tracker, TrackerLimits, TrackerStats,
    Transition, TransitionKind,
};
use crate::alert::rate::RateRules;
use crate::alert::retry::RetryPolicy;
use crate::alert::worker::{ChannelCounters, Worker};
use crate::metrics::{ChannelFigures, Snapshot};
use crate::store::{
    AlertFilter, AlertRow, DeliveryRecord, DeliveryStatus, OutboxChannel, OutboxEntry, Store,
    StoreError,
};
use crate::sync::lock;

/// How often quiet alerts are resolved and counts stored.
pub const TICK: Duration = Duration::from_millis(250);
/// Store writes in flight at once; more transitions than this at one instant are dropped and
/// logged (they cannot happen with sane windows: one per service per window at most).
const MAX_STORE_TASKS: u32 = 1 << 16;

/// Counts since start-up (`/api/v1/alerts/stats`).
#[derive(Debug, Default)]
struct AlertCounters {
    anomalies: AtomicU64,
    fired: AtomicU64,
    repeated: AtomicU64,
    resolved: AtomicU64,
    store_errors: AtomicU64,
    lost: AtomicU64,
    /// Times this replica became the rate leader.
    leaderships: AtomicU64,
}

/// What alerting needs from the settings (`Settings::alert_config`).
#[derive(Debug, Clone)]
pub struct AlertConfig {
    /// Per service: how many anomalies in what window page, and the traffic test.
    pub rules: RateRules,
    pub limits: TrackerLimits,
    /// Console first, then every configured channel.
    pub channels: Vec<Channel>,
    /// Per HTTP request to a receiver (`ALERT_TIMEOUT_SECONDS`).
    pub timeout: Duration,
    /// Undelivered notifications kept per channel (`ALERT_QUEUE_CAPACITY`).
    pub queue_capacity: usize,
    pub retry: RetryPolicy,
    /// How long shutdown waits for the queues to drain.
    pub shutdown_timeout: Duration,
}

/// Filters of GET /api/v1/alerts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertQuery {
    pub limit: usize,
    pub service: Option<String>,
    pub state: Option<AlertState>,
}

/// An alert with its deliveries, as GET /api/v1/alerts shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredAlert {
    #[serde(flatten)]
    pub alert: AlertRecord,
    pub dedup_key: String,
    pub deliveries: Vec<DeliveryRecord>,
}

/// An alert as the store keeps it.
fn stored_row(alert: &AlertRecord) -> Result<AlertRow, serde_json::Error> {
    Ok(AlertRow {
        id: alert.id,
        service: alert.service.clone(),
        fingerprint: alert.fingerprint.clone(),
        firing: alert.state == AlertState::Firing,
        revision: alert.revision,
        started_at: alert.started_at,
        document: serde_json::to_string(alert)?,
    })
}

fn outbox_entry(notification: &Notification) -> Result<OutboxEntry, serde_json::Error> {
    Ok(OutboxEntry {
        alert: stored_row(&notification.alert)?,
        event: notification.kind.as_str(),
        opens_alert: notification.kind == TransitionKind::Fired,
        notification: serde_json::to_string(notification)?,
    })
}

#[derive(Debug)]
struct ChannelHandle {
    name: &'static str,
    wake: Arc<Notify>,
    counters: Arc<ChannelCounters>,
}

struct Inner {
    tracker: Mutex<Tracker>,
    rules: RateRules,
    limits: TrackerLimits,
    /// Shared store: traffic without anomalies waiting for the next flush.
    pending_traffic: Mutex<Option<ShippedBatch>>,
    /// Shared store: whether this replica counts the rates of all of them right now.
    leading: AtomicBool,
    store: Store,
    /// Every channel's name, console first.
    channel_names: Vec<&'static str>,
    /// The HTTP channels and their workers' wake-up signals.
    channels: Vec<ChannelHandle>,
    queue_capacity: usize,
    counters: AlertCounters,
    /// Each store write holds a permit; shutdown takes them all, so nothing is half written.
    store_tasks: Arc<Semaphore>,
    draining: watch::Sender<bool>,
    workers: Mutex<Vec<JoinHandle<()>>>,
    ticker: Mutex<Option<JoinHandle<()>>>,
    shutdown_timeout: Duration,
}

/// The alerting subsystem: a cheap, cloneable handle held in `AppState`.
#[derive(Clone)]
pub struct AlertSystem {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for AlertSystem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertSystem")
            .field("channels", &self.inner.channel_names)
            .finish_non_exhaustive()
    }
}

impl AlertSystem {
    /// Takes back the alerts that were firing in `store`, and starts a worker per configured
    /// channel plus the tick. Undelivered notifications of an earlier run are delivered first.
    ///
    /// # Errors
    /// The database cannot be read, or the HTTP client cannot be built.
    pub async fn start(config: AlertConfig, store: Store) -> anyhow::Result<Self> {
        let next_id = store.max_alert_id().await.context("reading alerts")? + 1;
        let shared = store.is_shared();
        let mut tracker = Tracker::new(config.rules.clone(), config.limits, next_id);
        let now = Utc::now();
        let firing: Vec<AlertRecord> = store
            .firing_alerts()
            .await
            .context("reading firing alerts")?;
        if !firing.is_empty() && !shared {
            tracing::info!(
                alerts = firing.len(),
                "Alerts firing at the last shutdown are tracked again."
            );
        }
        // With a shared store, the rate leader tracks them (`shared`).
        if !shared {
            for alert in firing {
                tracker.restore(alert, now);
            }
        }
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            // A webhook that redirects is misconfigured; following it would re-send the body
            // somewhere nobody configured.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("aioops-mcp-iforest/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the alert HTTP client")?;
        let (draining, _) = watch::channel(false);
        let all = config.channels;
        let channel_names: Vec<&'static str> = all.iter().map(Channel::name).collect();
        let abandoned = store
            .abandon_unconfigured_deliveries(channel_names.clone())
            .await
            .context("clearing the outbox of channels no longer configured")?;
        for (channel, deliveries) in abandoned {
            tracing::warn!(
                channel,
                deliveries,
                "Alert deliveries queued for a channel that is no longer configured are marked \
                 failed; they will not be sent."
            );
        }
        let mut channels = Vec::new();
        let mut workers = Vec::new();
        for channel in all {
            if matches!(channel, Channel::Console) {
                continue;
            }
            let worker = Worker {
                channel: Arc::new(channel),
                store: store.clone(),
                client: client.clone(),
                policy: config.retry,
                wake: Arc::new(Notify::new()),
                counters: Arc::new(ChannelCounters::default()),
            };
            channels.push(ChannelHandle {
                name: worker.channel.name(),
                wake: Arc::clone(&worker.wake),
                counters: Arc::clone(&worker.counters),
            });
            workers.push(tokio::spawn(worker.run(draining.subscribe())));
        }
        let system = Self {
            inner: Arc::new(Inner {
                tracker: Mutex::new(tracker),
                rules: config.rules,
                limits: config.limits,
                pending_traffic: Mutex::new(None),
                leading: AtomicBool::new(false),
                store,
                channel_names,
                channels,
                queue_capacity: config.queue_capacity,
                counters: AlertCounters::default(),
                store_tasks: Arc::new(Semaphore::new(MAX_STORE_TASKS as usize)),
                draining,
                workers: Mutex::new(workers),
                ticker: Mutex::new(None),
                shutdown_timeout: config.shutdown_timeout,
            }),
        };
        let ticking = system.clone();
        if shared {
            *lock(&system.inner.ticker) = Some(tokio::spawn(ticking.lead_when_possible()));
            return Ok(system);
        }
        *lock(&system.inner.ticker) = Some(tokio::spawn(async move {
            let mut interval = tokio::time::interval(TICK);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                ticking.tick(Utc::now()).await;
            }
        }));
        Ok(system)
    }

    /// The channels alerts go to, console first.
    pub fn channel_names(&self) -> &[&'static str] {
        &self.inner.channel_names
    }

    /// Counts one anomaly of `service` whose log said `logged_at` (`None`: no timestamp),
    /// arriving `now`. Never waits: a resulting notification is stored and sent by other tasks.
    pub fn record(&self, service: &str, logged_at: Option<DateTime<Utc>>, now: DateTime<Utc>) {
        let transitions = lock(&self.inner.tracker)
            .record(service, logged_at, now)
            .into_iter()
            .collect();
        self.inner
            .counters
            .anomalies
            .fetch_add(1, Ordering::Relaxed);
        self.dispatch(transitions);
    }

    /// Counts a batch of judged logs that arrived together at `now`: each toward its service's
    /// traffic, the anomalies toward its bursts (see [`lifecycle`]). Never waits: a resulting
    /// notification is stored and sent by other tasks.
    ///
    /// With a shared store (several replicas on PostgreSQL) this does nothing: the batch was
    /// shared with the replica that counts everyone's rates as its anomalies were stored
    /// ([`AlertSystem::share_for_store`]).
    pub async fn observe<'a>(
        &self,
        logs: impl IntoIterator<Item = JudgedEvent<'a>>,
        now: DateTime<Utc>,
    ) {
        let logs: Vec<JudgedEvent<'a>> = logs.into_iter().collect();
        if logs.is_empty() {
            return;
        }
        if self.inner.store.is_shared() {
            // Shared with the rate leader as the anomalies were stored (`share_for_store`).
            return;
        }
        let counted = logs.iter().filter(|log| log.verdict.is_anomaly()).count() as u64;
        let transitions = lock(&self.inner.tracker).observe(&logs, now);
        self.inner
            .counters
            .anomalies
            .fetch_add(counted, Ordering::Relaxed);
        self.dispatch(transitions);
    }

    fn dispatch(&self, transitions: Vec<Transition>) {
        if transitions.is_empty() {
            return;
        }
        let Ok(permit) = Arc::clone(&self.inner.store_tasks).try_acquire_owned() else {
            self.lose(&transitions, "the alert system is shutting down");
            return;
        };
        let system = self.clone();
        tokio::spawn(async move {
            system.store_and_wake(transitions, Vec::new()).await;
            drop(permit);
        });
    }

    /// Resolves alerts that were quiet for a whole window by `now` and stores changed counts.
    /// The background tick calls it with the current time; tests may call it with any time.
    pub async fn tick(&self, now: DateTime<Utc>) {
        let (transitions, changed) = lock(&self.inner.tracker).tick(now);
        if transitions.is_empty() && changed.is_empty() {
            return;
        }
        let Ok(_permit) = Arc::clone(&self.inner.store_tasks).try_acquire_owned() else {
            self.lose(&transitions, "the alert system is shutting down");
            return;
        };
        self.store_and_wake(transitions, changed).await;
    }

    fn lose(&self, transitions: &[Transition], why: &str) {
        if transitions.is_empty() {
            return;
        }
        self.inner
            .counters
            .lost
            .fetch_add(transitions.len() as u64, Ordering::Relaxed);
        tracing::error!(
            notifications = transitions.len(),
            why,
            "Alert notifications were not stored and will not be sent."
        );
    }

    async fn store_and_wake(&self, transitions: Vec<Transition>, changed: Vec<AlertRecord>) {
        let now = Utc::now();
        let notifications: Vec<Notification> = transitions
            .iter()
            .map(|transition| Notification::new(transition, now))
            .collect();
        for notification in &notifications {
            log_to_console(notification);
            let counter = match notification.kind {
                TransitionKind::Fired => &self.inner.counters.fired,
                TransitionKind::Repeated => &self.inner.counters.repeated,
                TransitionKind::Resolved => &self.inner.counters.resolved,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        let rows = changed
            .iter()
            .map(stored_row)
            .collect::<Result<Vec<_>, _>>()
            .and_then(|changed| {
                let entries = notifications.iter().map(outbox_entry);
                let entries: Result<Vec<_>, _> = entries.collect();
                entries.map(|entries| (changed, entries))
            });
        let channels = self
            .inner
            .channel_names
            .iter()
            .map(|&name| OutboxChannel {
                name,
                // The console was written above.
                delivered_on_store: name == Channel::Console.name(),
            })
            .collect();
        let result = match rows {
            Ok((changed, entries)) => {
                let capacity = self.inner.queue_capacity;
                let recorded = self
                    .inner
                    .store
                    .record_alerts(changed, entries, channels, capacity);
                recorded.await
            }
            Err(error) => Err(StoreError::Corrupt {
                column: "alerts.record",
                source: error,
            }),
        };
        let enqueued = match result {
            Ok(enqueued) => enqueued,
            Err(error) => {
                self.inner
                    .counters
                    .store_errors
                    .fetch_add(1, Ordering::Relaxed);
                self.lose(&transitions, "the alert database refused the write");
                tracing::error!(%error, "Cannot store alerts.");
                return;
            }
        };
        for handle in &self.inner.channels {
            let mine = enqueued.iter().filter(|e| e.channel == handle.name);
            let mut queued = false;
            for entry in mine {
                match entry.status {
                    DeliveryStatus::Dropped => {
                        handle.counters.dropped.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                            channel = handle.name,
                            capacity = self.inner.queue_capacity,
                            "Alert queue full; notification dropped (ALERT_QUEUE_CAPACITY)."
                        );
                    }
                    _ => queued = true,
                }
            }
            if queued {
                handle.wake.notify_one();
            }
        }
    }

    /// Stored alerts, newest first, with their deliveries.
    ///
    /// # Errors
    /// The alert database cannot be read.
    pub async fn list(&self, query: AlertQuery) -> Result<Vec<StoredAlert>, StoreError> {
        let filter = AlertFilter {
            limit: query.limit,
            service: query.service,
            firing: query.state.map(|state| state == AlertState::Firing),
        };
        let stored: Vec<(AlertRecord, Vec<DeliveryRecord>)> =
            self.inner.store.list_alerts(filter).await?;
        Ok(stored
            .into_iter()
            .map(|(alert, deliveries)| StoredAlert {
                dedup_key: alert.dedup_key(),
                alert,
                deliveries,
            })
            .collect())
    }

    /// Counters since start-up and the outbox per channel and status.
    ///
    /// # Errors
    /// The alert database cannot be read.
    pub async fn stats(&self) -> Result<Value, StoreError> {
        let outbox = self.inner.store.delivery_counts().await?;
        let firing = self.firing_count().await;
        let windows = self.window_stats().await?;
        let counters = &self.inner.counters;
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let mut channels = BTreeMap::new();
        for name in &self.inner.channel_names {
            let mut entry = json!({ "outbox": outbox.get(*name).cloned().unwrap_or_default() });
            if let Some(handle) = self.inner.channels.iter().find(|h| h.name == *name) {
                let c = &handle.counters;
                entry["delivered"] = json!(load(&c.delivered));
                entry["retries"] = json!(load(&c.retries));
                entry["rejected"] = json!(load(&c.rejected));
                entry["failed"] = json!(load(&c.failed));
                entry["dropped_queue_full"] = json!(load(&c.dropped));
            }
            channels.insert((*name).to_owned(), entry);
        }
        Ok(json!({
            "tracked_services": windows.tracked_services,
            "firing": firing,
            "anomalies_recorded": load(&counters.anomalies),
            "untracked_anomalies": windows.untracked_anomalies,
            "late_anomalies": windows.late_anomalies,
            "evicted_services": windows.evicted_services,
            "fired": load(&counters.fired),
            "repeated": load(&counters.repeated),
            "resolved": load(&counters.resolved),
            "store_errors": load(&counters.store_errors),
            "notifications_lost": load(&counters.lost),
            "rate_leader": self.inner.leading.load(Ordering::Relaxed),
            "leaderships": load(&counters.leaderships),
            "channels": channels,
        }))
    }

    /// The rate windows' counters: this process's, or with a shared store those the rate leader
    /// stored last (zeros before any leader stored them), so every replica shows the same.
    async fn window_stats(&self) -> Result<TrackerStats, StoreError> {
        if !self.inner.store.is_shared() {
            return Ok(lock(&self.inner.tracker).stats());
        }
        Ok(self
            .inner
            .store
            .rate_leader_stats()
            .await?
            .unwrap_or_default())
    }

    /// Fills the alerting part of a `/metrics` scrape: transitions since start-up, the firing
    /// services, and per HTTP channel its outcomes, retries and outbox depth (pending rows;
    /// left out when the outbox cannot be read).
    /// Services firing now: this process's tracker, or with a shared store the alerts the
    /// rate leader stored (the same figure on every replica).
    async fn firing_count(&self) -> usize {
        if self.inner.store.is_shared() {
            match self.inner.store.firing_alerts::<Value>().await {
                Ok(firing) => return firing.len(),
                Err(error) => tracing::warn!(%error, "The firing alerts could not be read."),
            }
        }
        lock(&self.inner.tracker).firing_services()
    }

    pub async fn fill_snapshot(&self, snapshot: &mut Snapshot) {
        let outbox = match self.inner.store.delivery_counts().await {
            Ok(outbox) => Some(outbox),
            Err(error) => {
                tracing::warn!(%error, "The alert outbox could not be read for /metrics.");
                None
            }
        };
        let firing = self.firing_count().await;
        let counters = &self.inner.counters;
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        snapshot.alerts_fired = load(&counters.fired);
        snapshot.alerts_repeated = load(&counters.repeated);
        snapshot.alerts_resolved = load(&counters.resolved);
        snapshot.alerts_firing = firing as u64;
        snapshot.notifications_lost = load(&counters.lost);
        let pending = DeliveryStatus::Pending.as_str();
        snapshot.channels = self
            .inner
            .channels
            .iter()
            .map(|handle| {
                let c = &handle.counters;
                ChannelFigures {
                    channel: handle.name,
                    delivered: load(&c.delivered),
                    rejected: load(&c.rejected),
                    failed: load(&c.failed),
                    dropped: load(&c.dropped),
                    retries: load(&c.retries),
                    pending: outbox.as_ref().map(|outbox| {
                        outbox
                            .get(handle.name)
                            .and_then(|statuses| statuses.get(pending))
                            .copied()
                            .unwrap_or(0)
                    }),
                }
            })
            .collect();
    }

    /// Stops the tick, finishes pending store writes, then lets every worker drain its outbox
    /// for up to `ALERT_SHUTDOWN_TIMEOUT_SECONDS`. What is still undelivered then stays in the
    /// outbox and goes out after the next start. The store stays open: its owner closes it.
    pub async fn shutdown(&self) {
        let ticker = lock(&self.inner.ticker).take();
        if let Some(ticker) = ticker {
            ticker.abort();
            let _ = ticker.await;
        }
        // Traffic merged for the rate leader is shared before the store closes.
        self.flush_traffic().await;
        let deadline = tokio::time::Instant::now() + self.inner.shutdown_timeout;
        // Counts of firing alerts are stored, resolutions due are sent.
        self.tick(Utc::now()).await;
        let all = MAX_STORE_TASKS;
        let writes = self.inner.store_tasks.acquire_many(all);
        if let Ok(Ok(permits)) = tokio::time::timeout_at(deadline, writes).await {
            permits.forget();
        } else {
            tracing::warn!("Alert store writes still running at the shutdown deadline.");
        }
        self.inner.store_tasks.close();
        self.inner.draining.send_replace(true);
        let workers = std::mem::take(&mut *lock(&self.inner.workers));
        let mut cut_short = 0;
        for mut worker in workers {
            if tokio::time::timeout_at(deadline, &mut worker)
                .await
                .is_err()
            {
                worker.abort();
                cut_short += 1;
            }
        }
        if cut_short > 0 {
            tracing::warn!(
                channels = cut_short,
                "Alert queues not drained by the deadline (ALERT_SHUTDOWN_TIMEOUT_SECONDS); \
                 undelivered alerts stay in the outbox for the next start."
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn alert_types_held_in_the_state_are_send_and_sync() {
        assert_send_sync::<AlertSystem>();
        assert_send_sync::<Channel>();
    }
}
