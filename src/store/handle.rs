//! [`Store`]: the one handle the rest of the service holds, whichever backend is behind it.
//! Every method means the same on both; the backends' modules say how each keeps its promise.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Arc;

use serde::de::DeserializeOwned;

use super::postgres::{
    Postgres, PostgresOptions, RateLeader, SharedBatchEvent, SharedModel, TrainingLock,
};
use super::{
    AlertFilter, AlertRow, AnomalyQuery, AnomalyRecord, DeliveryRecord, DeliveryStatus, Enqueued,
    FeedbackRecord, ModelRecord, OutboxChannel, OutboxEntry, PendingDelivery, SettledJobs, Sqlite,
    StoreError, StoreOptions, TrainingJobRecord,
};

/// A cheap, cloneable handle to the database.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
}

#[derive(Clone)]
pub(crate) enum Backend {
    Sqlite(Sqlite),
    Postgres(Arc<Postgres>),
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend_name())
            .finish()
    }
}

/// Calls the same method, with the same arguments, on whichever backend is behind the handle.
macro_rules! dispatch {
    ($self:ident . $method:ident ( $($argument:expr),* )) => {
        match &$self.backend {
            Backend::Sqlite(backend) => backend.$method($($argument),*).await,
            Backend::Postgres(backend) => backend.$method($($argument),*).await,
        }
    };
}

impl Store {
    /// Opens (creating if needed) the SQLite database at `path` and migrates it.
    ///
    /// # Errors
    /// The file cannot be opened or created, is damaged, or its schema is newer than this binary.
    pub fn open(path: &Path, options: StoreOptions) -> Result<Self, StoreError> {
        Ok(Self {
            backend: Backend::Sqlite(Sqlite::open(path, options)?),
        })
    }

    /// Connects to PostgreSQL (`DATABASE_URL`) and migrates its schema, one replica at a time.
    ///
    /// # Errors
    /// The URL is not valid, the server cannot be reached within the connect timeout, or the
    /// schema is newer than this binary.
    pub async fn connect(
        postgres: PostgresOptions,
        options: StoreOptions,
    ) -> Result<Self, StoreError> {
        Ok(Self {
            backend: Backend::Postgres(Arc::new(Postgres::connect(postgres, options).await?)),
        })
    }

    #[cfg(test)]
    pub(crate) fn backend_for_tests(&self) -> &Backend {
        &self.backend
    }

    /// `sqlite` or `postgresql`.
    pub fn backend_name(&self) -> &'static str {
        match &self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgresql",
        }
    }

    /// Whether several replicas may share this store (PostgreSQL).
    pub fn is_shared(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// Proves the database takes a write right now: the readiness probe. Fails fast (about half a
    /// second) when the database is locked or unreachable, and when the store is closed.
    pub async fn check_writable(&self) -> Result<(), StoreError> {
        dispatch!(self.check_writable())
    }

    /// Bytes an unprivileged writer can still use on the file system holding the database;
    /// `None` when the database is not on this machine's disks.
    pub fn free_bytes(&self) -> Option<std::io::Result<u64>> {
        match &self.backend {
            Backend::Sqlite(backend) => Some(backend.free_bytes()),
            Backend::Postgres(_) => None,
        }
    }

    /// Flushes and closes every connection. Later calls fail with [`StoreError::Closed`];
    /// calling it twice is harmless.
    pub async fn shutdown(&self) -> Result<(), StoreError> {
        dispatch!(self.shutdown())
    }

    /// The ids [`Store::store_anomalies`] gave the records: a shorthand for the tests.
    #[cfg(test)]
    pub async fn insert_anomalies(
        &self,
        records: Vec<AnomalyRecord>,
    ) -> Result<Vec<i64>, StoreError> {
        let stored = self.store_anomalies(records).await?;
        Ok(stored.into_iter().map(|record| record.id).collect())
    }

    /// Stores one request's anomalies durably and prunes beyond the retention bound; hands the
    /// records back with their new ids, in order, once they are committed.
    pub async fn store_anomalies(
        &self,
        records: Vec<AnomalyRecord>,
    ) -> Result<Vec<AnomalyRecord>, StoreError> {
        self.store_anomalies_sharing(records, None).await
    }

    /// [`Store::store_anomalies`], with the batch's share for the rate leader (`alert::shared`)
    /// in the same transaction: both are stored or neither. SQLite has no other replica and
    /// takes no share.
    pub async fn store_anomalies_sharing(
        &self,
        records: Vec<AnomalyRecord>,
        share: Option<SharedBatchEvent>,
    ) -> Result<Vec<AnomalyRecord>, StoreError> {
        match &self.backend {
            Backend::Sqlite(backend) => backend.store_anomalies(records).await,
            Backend::Postgres(backend) => backend.store_anomalies(records, share).await,
        }
    }

    /// The anomalies `query` selects, collected (tests and small listings; the API streams them
    /// with [`Store::scan_anomalies`]).
    pub async fn list_anomalies(
        &self,
        query: AnomalyQuery,
    ) -> Result<Vec<AnomalyRecord>, StoreError> {
        self.scan_anomalies(query, Vec::new(), |records, record| {
            records.push(record);
            ControlFlow::Continue(())
        })
        .await
    }

    /// Hands the anomalies `query` selects to `visit` one at a time, in order, on a blocking
    /// thread (so `visit` may block), from one consistent snapshot; `visit` returns `Break` to
    /// stop early. Only a few records are in memory at a time, whatever the limit. Returns
    /// `state` as `visit` left it.
    pub async fn scan_anomalies<S, F>(
        &self,
        query: AnomalyQuery,
        state: S,
        visit: F,
    ) -> Result<S, StoreError>
    where
        S: Send + 'static,
        F: FnMut(&mut S, AnomalyRecord) -> ControlFlow<()> + Send + 'static,
    {
        dispatch!(self.scan_anomalies(query, state, visit))
    }

    /// One anomaly by its id; `None` when there is none (never stored, or pruned since).
    pub async fn get_anomaly(&self, id: i64) -> Result<Option<AnomalyRecord>, StoreError> {
        dispatch!(self.get_anomaly(id))
    }

    /// Deletes every anomaly, or those of `service`; returns how many there were.
    pub async fn clear_anomalies(&self, service: Option<String>) -> Result<usize, StoreError> {
        dispatch!(self.clear_anomalies(service))
    }

    /// Stored anomalies this process deleted to keep within `MAX_RECENT_ANOMALIES`.
    pub fn anomalies_pruned(&self) -> u64 {
        match &self.backend {
            Backend::Sqlite(backend) => backend.anomalies_pruned(),
            Backend::Postgres(backend) => backend.anomalies_pruned(),
        }
    }

    /// How many anomalies are stored (the benchmarks and the tests wait on it).
    pub async fn count_anomalies(&self) -> Result<u64, StoreError> {
        dispatch!(self.count_anomalies())
    }

    /// Stores feedback records in one transaction, pruning the oldest beyond
    /// `MAX_FEEDBACK_RECORDS` in it; returns their ids.
    pub async fn insert_feedback(
        &self,
        records: Vec<FeedbackRecord>,
    ) -> Result<Vec<i64>, StoreError> {
        dispatch!(self.insert_feedback(records))
    }

    pub async fn feedback_for_service(
        &self,
        service: impl Into<String>,
    ) -> Result<Vec<FeedbackRecord>, StoreError> {
        let service = service.into();
        dispatch!(self.feedback_for_service(service))
    }

    pub async fn all_feedback(&self) -> Result<Vec<FeedbackRecord>, StoreError> {
        dispatch!(self.all_feedback())
    }

    pub async fn feedback_count(&self) -> Result<u64, StoreError> {
        dispatch!(self.feedback_count())
    }

    /// Records the current model of each service of `records`, replacing their previous records,
    /// in one transaction: a training run applies all of its models or none.
    pub async fn record_models(&self, records: Vec<ModelRecord>) -> Result<(), StoreError> {
        dispatch!(self.record_models(records))
    }

    pub async fn list_models(&self) -> Result<Vec<ModelRecord>, StoreError> {
        dispatch!(self.list_models())
    }

    pub async fn upsert_training_job(&self, record: TrainingJobRecord) -> Result<(), StoreError> {
        dispatch!(self.upsert_training_job(record))
    }

    pub async fn get_training_job(
        &self,
        job_id: impl Into<String>,
    ) -> Result<Option<TrainingJobRecord>, StoreError> {
        let job_id = job_id.into();
        dispatch!(self.get_training_job(job_id))
    }

    /// Settles the jobs left queued or running by a process that stopped (see the backends).
    pub async fn settle_unfinished_jobs(&self, reason: &str) -> Result<SettledJobs, StoreError> {
        dispatch!(self.settle_unfinished_jobs(reason))
    }

    /// The highest alert id so far (0 when there is none).
    pub async fn max_alert_id(&self) -> Result<i64, StoreError> {
        dispatch!(self.max_alert_id())
    }

    /// Alerts firing now, oldest first.
    pub async fn firing_alerts<T>(&self) -> Result<Vec<T>, StoreError>
    where
        T: DeserializeOwned + Send + 'static,
    {
        dispatch!(self.firing_alerts())
    }

    /// Stores the `changed` alerts and those of `entries`, and queues each entry for every
    /// channel, all in one transaction. A channel's row is dropped when it already has `capacity`
    /// pending rows.
    pub async fn record_alerts(
        &self,
        changed: Vec<AlertRow>,
        entries: Vec<OutboxEntry>,
        channels: Vec<OutboxChannel>,
        capacity: usize,
    ) -> Result<Vec<Enqueued>, StoreError> {
        dispatch!(self.record_alerts(changed, entries, channels, capacity))
    }

    /// The oldest pending row of `channel` this process may deliver now, its notification read
    /// as `N`: after `after_id` on SQLite (one process); on PostgreSQL the row is claimed for
    /// this replica for a lease that each recorded attempt renews, and `after_id` is not needed.
    pub async fn next_pending_delivery<N>(
        &self,
        channel: &'static str,
        after_id: i64,
    ) -> Result<Option<PendingDelivery<N>>, StoreError>
    where
        N: DeserializeOwned + Send + 'static,
    {
        dispatch!(self.next_pending_delivery(channel, after_id))
    }

    /// Records an attempt on outbox row `id`: its status afterwards, the total attempts, the
    /// last HTTP status and a redacted error.
    pub async fn update_delivery(
        &self,
        id: i64,
        status: DeliveryStatus,
        attempts: u32,
        http_status: Option<u16>,
        error: Option<String>,
    ) -> Result<(), StoreError> {
        dispatch!(self.update_delivery(id, status, attempts, http_status, error))
    }

    /// Marks `failed` every pending delivery to a channel not in `configured`.
    pub async fn abandon_unconfigured_deliveries(
        &self,
        configured: Vec<&'static str>,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        dispatch!(self.abandon_unconfigured_deliveries(configured))
    }

    /// The newest alerts first, each read as a `T` with its deliveries.
    pub async fn list_alerts<T>(
        &self,
        filter: AlertFilter,
    ) -> Result<Vec<(T, Vec<DeliveryRecord>)>, StoreError>
    where
        T: DeserializeOwned + Send + 'static,
    {
        dispatch!(self.list_alerts(filter))
    }

    /// Shares one judged batch (`alert::shared`'s JSON) with the replica that counts rates for
    /// all of them. Only a shared store has other replicas: on SQLite this does nothing.
    pub async fn share_alert_batch(
        &self,
        arrival: chrono::DateTime<chrono::Utc>,
        payload: String,
    ) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(()),
            Backend::Postgres(backend) => backend.share_alert_batch(arrival, payload).await,
        }
    }

    /// The rate leader's window counters as it stored them last; always `None` on SQLite.
    pub async fn rate_leader_stats<T: DeserializeOwned>(&self) -> Result<Option<T>, StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(None),
            Backend::Postgres(backend) => backend.rate_leader_stats().await,
        }
    }

    /// Rate leadership for this replica, if no other holds it; always `None` on SQLite (one
    /// process counts its own rates).
    pub async fn try_lead(&self) -> Result<Option<RateLeader>, StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(None),
            Backend::Postgres(backend) => backend.try_lead().await,
        }
    }

    /// Records the models of one fit in one transaction, with their files' bytes when other
    /// replicas share the store (they load them from there); each model's new version, in
    /// order (0 on SQLite, where the file on disk is the model).
    pub async fn record_models_with_artifacts(
        &self,
        models: Vec<(ModelRecord, Vec<u8>)>,
    ) -> Result<Vec<i64>, StoreError> {
        match &self.backend {
            Backend::Sqlite(backend) => {
                let count = models.len();
                let records = models.into_iter().map(|(record, _)| record).collect();
                backend.record_models(records).await?;
                Ok(vec![0; count])
            }
            Backend::Postgres(backend) => backend.record_shared_models(models).await,
        }
    }

    /// The version of each model other replicas may have published (empty on SQLite).
    pub async fn model_versions(&self) -> Result<BTreeMap<String, i64>, StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(BTreeMap::new()),
            Backend::Postgres(backend) => backend.model_versions().await,
        }
    }

    /// The published models of `services`, with their bytes (none on SQLite).
    pub async fn shared_models(
        &self,
        services: Vec<String>,
    ) -> Result<Vec<SharedModel>, StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(Vec::new()),
            Backend::Postgres(backend) => backend.shared_models(services).await,
        }
    }

    /// The right to fit `service` now: `None` while another replica fits it. Always granted on
    /// SQLite.
    pub async fn try_lock_training(
        &self,
        service: &str,
    ) -> Result<Option<TrainingLock>, StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(Some(TrainingLock::unshared())),
            Backend::Postgres(backend) => backend.try_lock_training(service).await,
        }
    }

    /// Outbox rows per channel and status.
    pub async fn delivery_counts(
        &self,
    ) -> Result<BTreeMap<String, BTreeMap<String, u64>>, StoreError> {
        dispatch!(self.delivery_counts())
    }
}
