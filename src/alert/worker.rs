//! One delivery worker per HTTP channel: takes the channel's pending outbox rows in id order
//! (so a resolve never overtakes its trigger), sends each with retries, and marks the outcome.
//!
//! Nothing here runs inside a request: ingestion only writes outbox rows and wakes the worker.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{Notify, watch};

use crate::alert::channel::{Channel, Notification};
use crate::alert::retry::{DeliveryVerdict, RetryPolicy, classify, describe_error};
use crate::store::{DeliveryStatus, PendingDelivery, Store, StoreError};

/// A worker looks at the outbox at least this often even when nobody wakes it.
const IDLE_POLL: Duration = Duration::from_secs(1);

/// What happened on one channel since start-up (`/api/v1/alerts/stats`).
#[derive(Debug, Default)]
pub struct ChannelCounters {
    pub delivered: AtomicU64,
    pub retries: AtomicU64,
    pub rejected: AtomicU64,
    pub failed: AtomicU64,
    pub dropped: AtomicU64,
}

/// Everything one worker needs.
#[derive(Debug, Clone)]
pub struct Worker {
    pub channel: Arc<Channel>,
    pub store: Store,
    pub client: reqwest::Client,
    pub policy: RetryPolicy,
    pub wake: Arc<Notify>,
    pub counters: Arc<ChannelCounters>,
}

impl Worker {
    /// Delivers until `draining` turns true and the channel's outbox is empty, or the store closes.
    pub async fn run(self, mut draining: watch::Receiver<bool>) {
        let name = self.channel.name();
        let mut after_id = 0;
        loop {
            // An empty outbox ends the drain only if it was read after draining began: a read
            // already under way when shutdown started may predate the last alerts stored, and
            // shutdown stores those before it asks the workers to drain.
            let draining_before_read = *draining.borrow();
            match self.store.next_pending_delivery(name, after_id).await {
                Ok(Some(row)) => {
                    after_id = row.id;
                    self.deliver(row).await;
                }
                Ok(None) => {
                    if draining_before_read {
                        break;
                    }
                    if *draining.borrow() {
                        continue;
                    }
                    tokio::select! {
                        () = self.wake.notified() => {}
                        () = tokio::time::sleep(IDLE_POLL) => {}
                        changed = draining.changed() => if changed.is_err() { break },
                    }
                }
                Err(StoreError::Closed) => break,
                Err(error) => {
                    tracing::error!(%error, channel = name, "Cannot read the alert outbox.");
                    tokio::time::sleep(IDLE_POLL).await;
                }
            }
        }
        tracing::debug!(channel = name, "Alert worker stopped.");
    }

    #[tracing::instrument(skip_all, fields(channel = self.channel.name(), alert_id = row.notification.alert.id))]
    async fn deliver(&self, row: PendingDelivery<Notification>) {
        let name = self.channel.name();
        let Some(url) = self.channel.endpoint() else {
            // The console is written when the alert is stored; it never has pending rows.
            self.finish(row.id, DeliveryStatus::Delivered, row.attempts, None, None)
                .await;
            return;
        };
        let body = self.channel.body(&row.notification);
        let secrets = self.channel.secrets();
        let mut total = row.attempts;
        let mut attempt = 0;
        loop {
            attempt += 1;
            total += 1;
            let (verdict, http_status, error) = match self.client.post(url).json(&body).send().await
            {
                Ok(response) => {
                    let status = response.status();
                    let verdict = classify(status, response.headers(), Utc::now());
                    (
                        verdict,
                        Some(status.as_u16()),
                        Some(format!("HTTP {status}")),
                    )
                }
                Err(error) => (
                    DeliveryVerdict::Retry { retry_after: None },
                    None,
                    Some(describe_error(error, &secrets)),
                ),
            };
            match verdict {
                DeliveryVerdict::Delivered => {
                    self.counters.delivered.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(attempt, "Alert delivered.");
                    self.finish(row.id, DeliveryStatus::Delivered, total, http_status, None)
                        .await;
                    return;
                }
                DeliveryVerdict::Reject => {
                    self.counters.rejected.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(
                        channel = name,
                        status = http_status,
                        "The receiver refused the alert; not retrying."
                    );
                    self.finish(row.id, DeliveryStatus::Rejected, total, http_status, error)
                        .await;
                    return;
                }
                DeliveryVerdict::Retry { retry_after } => {
                    if attempt >= self.policy.max_attempts {
                        self.counters.failed.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(
                            channel = name,
                            attempts = attempt,
                            status = http_status,
                            error = error.as_deref().unwrap_or(""),
                            "Alert delivery gave up: retry budget spent (ALERT_MAX_ATTEMPTS)."
                        );
                        self.finish(row.id, DeliveryStatus::Failed, total, http_status, error)
                            .await;
                        return;
                    }
                    self.counters.retries.fetch_add(1, Ordering::Relaxed);
                    let delay = {
                        let mut rng = rand::rng();
                        self.policy.delay(attempt, retry_after, &mut rng)
                    };
                    tracing::warn!(
                        channel = name,
                        attempt,
                        status = http_status,
                        error = error.as_deref().unwrap_or(""),
                        delay_ms = delay.as_millis() as u64,
                        "Alert delivery failed; retrying."
                    );
                    self.finish(row.id, DeliveryStatus::Pending, total, http_status, error)
                        .await;
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    async fn finish(
        &self,
        id: i64,
        status: DeliveryStatus,
        attempts: u32,
        http_status: Option<u16>,
        error: Option<String>,
    ) {
        if let Err(error) = self
            .store
            .update_delivery(id, status, attempts, http_status, error)
            .await
        {
            tracing::error!(%error, status = status.as_str(), "Cannot record an alert delivery.");
        }
    }
}
