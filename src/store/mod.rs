//! Durable embedded storage: SQLite (bundled) in WAL mode under `DATA_DIR`.
//!
//! One writer connection serialises every write; a request's anomalies are committed in one
//! transaction, together with those of requests that arrived meanwhile (group commit), and its
//! response is sent only after that commit. Reads use a small pool of their own
//! connections, which WAL lets run beside the writer. All SQLite work happens on tokio's blocking
//! pool, never on the async workers.
//!
//! Retention: `MAX_RECENT_ANOMALIES` rows are kept; each insert prunes the oldest beyond that in
//! the same transaction, so the table never grows past the bound.

mod records;
pub mod schema;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, params};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;

pub use records::{
    AnomalyOrder, AnomalyQuery, AnomalyRecord, FeedbackRecord, ModelRecord, TrainingJobRecord,
};

use crate::detect::DetectorKind;
use crate::sync::lock;

/// How long a write waits for a lock held by another connection before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// The health probe must answer quickly even when the database is locked.
const HEALTH_BUSY_TIMEOUT: Duration = Duration::from_millis(500);
/// Idle read connections kept open.
const READ_POOL_SIZE: usize = 4;

/// `STORE_SYNCHRONOUS`: how hard SQLite syncs a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synchronous {
    /// fsync on every commit: a committed anomaly survives a power cut.
    Full,
    /// WAL's `NORMAL`: survives a process crash; a power cut may lose the last commits.
    Normal,
}

#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub max_recent_anomalies: usize,
    pub synchronous: Synchronous,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_recent_anomalies: crate::settings::DEFAULT_MAX_RECENT_ANOMALIES,
            synchronous: Synchronous::Full,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "the database schema is version {found}, newer than this binary supports ({supported}); \
         run a newer release or restore a backup"
    )]
    SchemaTooNew { found: u32, supported: u32 },
    #[error("stored {column} is not valid JSON: {source}")]
    Corrupt {
        column: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("the database is closed")]
    Closed,
    #[error("background task failed: {0}")]
    Background(String),
}

impl StoreError {
    /// Whether the failure is temporary (locked database, shutting down): callers answer 503.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Closed => true,
            Self::Sqlite(rusqlite::Error::SqliteFailure(error, _)) => matches!(
                error.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ),
            _ => false,
        }
    }
}

/// A cheap, cloneable handle to the database.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.path)
            .finish()
    }
}

struct Inner {
    path: PathBuf,
    options: StoreOptions,
    writer: Mutex<Option<Connection>>,
    readers: Mutex<Vec<Connection>>,
    group: Mutex<GroupCommit>,
    closed: AtomicBool,
}

fn timestamp_text(instant: &DateTime<Utc>) -> String {
    instant.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn parse_timestamp(text: &str) -> Result<DateTime<Utc>, rusqlite::Error> {
    DateTime::parse_from_rfc3339(text)
        .map(|instant| instant.with_timezone(&Utc))
        .map_err(|error| {
            rusqlite::Error::FromSqlConversionFailure(
                0,
                rusqlite::types::Type::Text,
                Box::new(error),
            )
        })
}

fn to_json<T: Serialize + ?Sized>(value: &T) -> String {
    // Maps of strings/numbers and derived structs cannot fail to serialise.
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned())
}

fn from_json<T: DeserializeOwned>(column: &'static str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|source| StoreError::Corrupt { column, source })
}

impl Store {
    /// Opens (creating if needed) the database at `path` and migrates it.
    ///
    /// # Errors
    /// The file cannot be opened or created, or its schema is newer than this binary.
    pub fn open(path: &Path, options: StoreOptions) -> Result<Self, StoreError> {
        let mut writer = open_connection(path, false)?;
        let synchronous = match options.synchronous {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        };
        writer.pragma_update(None, "synchronous", synchronous)?;
        schema::migrate(&mut writer)?;
        Ok(Self {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                options,
                writer: Mutex::new(Some(writer)),
                readers: Mutex::new(Vec::new()),
                group: Mutex::new(GroupCommit::default()),
                closed: AtomicBool::new(false),
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `work` on the writer connection on the blocking pool.
    async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &StoreOptions) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let mut guard = lock(&inner.writer);
            let connection = guard.as_mut().ok_or(StoreError::Closed)?;
            work(connection, &inner.options)
        })
        .await
        .map_err(|error| StoreError::Background(error.to_string()))?
    }

    /// Runs `work` on a pooled read connection on the blocking pool.
    async fn read<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            if inner.closed.load(Ordering::Acquire) {
                return Err(StoreError::Closed);
            }
            let pooled = lock(&inner.readers).pop();
            let connection = match pooled {
                Some(connection) => connection,
                None => open_connection(&inner.path, true)?,
            };
            let result = work(&connection);
            let mut readers = lock(&inner.readers);
            if readers.len() < READ_POOL_SIZE && !inner.closed.load(Ordering::Acquire) {
                readers.push(connection);
            }
            result
        })
        .await
        .map_err(|error| StoreError::Background(error.to_string()))?
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
    ///
    /// Requests that arrive while a commit is running are committed together in the next
    /// transaction (group commit): one fsync serves them all, so concurrent requests do not queue
    /// behind each other's disk flushes. If a group's transaction fails, each request of the group
    /// is retried in a transaction of its own, so one request's failure is never another's.
    pub async fn store_anomalies(
        &self,
        records: Vec<AnomalyRecord>,
    ) -> Result<Vec<AnomalyRecord>, StoreError> {
        if records.is_empty() {
            return Ok(records);
        }
        let (reply, committed) = oneshot::channel();
        let start_flusher = {
            let mut group = lock(&self.inner.group);
            group.queue.push(PendingInsert { records, reply });
            !std::mem::replace(&mut group.flushing, true)
        };
        if start_flusher {
            let inner = Arc::clone(&self.inner);
            tokio::task::spawn_blocking(move || flush_groups(&inner));
        }
        committed.await.map_err(|_| {
            StoreError::Background("the commit of this request's anomalies was abandoned".into())
        })?
    }

    pub async fn list_anomalies(
        &self,
        query: AnomalyQuery,
    ) -> Result<Vec<AnomalyRecord>, StoreError> {
        self.read(move |connection| {
            let mut sql = String::from(
                "SELECT id, timestamp, service, source, log_level, message, anomaly_score, rule_violation, \
                 detector, violations, features, raw_log, metadata, context, reasons FROM anomalies WHERE 1 = 1",
            );
            let mut values: Vec<rusqlite::types::Value> = Vec::new();
            if let Some(service) = &query.service {
                sql.push_str(" AND service = ?");
                values.push(service.clone().into());
            }
            if let Some(since) = &query.since {
                sql.push_str(" AND timestamp_ms >= ?");
                values.push(since.timestamp_millis().into());
            }
            if let Some(detector) = query.detector {
                sql.push_str(" AND detector = ?");
                values.push(detector.as_str().to_owned().into());
            }
            sql.push_str(match query.order {
                AnomalyOrder::Time => " ORDER BY timestamp_ms DESC, id DESC",
                // Rule anomalies of a service without a model have no score: they come last.
                AnomalyOrder::Score => " ORDER BY anomaly_score IS NULL, anomaly_score ASC, id DESC",
            });
            sql.push_str(" LIMIT ?");
            values.push(i64::try_from(query.limit).unwrap_or(i64::MAX).into());
            let mut statement = connection.prepare_cached(&sql)?;
            let mut rows = statement.query(rusqlite::params_from_iter(values))?;
            let mut records = Vec::new();
            while let Some(row) = rows.next()? {
                records.push(anomaly_from_row(row)?);
            }
            Ok(records)
        })
        .await
    }

    /// Deletes every anomaly; returns how many there were.
    pub async fn clear_anomalies(&self) -> Result<usize, StoreError> {
        self.write(|connection, _| Ok(connection.execute("DELETE FROM anomalies", [])?))
            .await
    }

    /// How many anomalies are stored (the benchmarks and the tests wait on it).
    pub async fn count_anomalies(&self) -> Result<u64, StoreError> {
        self.read(|connection| {
            Ok(connection.query_row("SELECT COUNT(*) FROM anomalies", [], |row| row.get(0))?)
        })
        .await
    }

    /// Stores feedback records in one transaction; returns their ids.
    pub async fn insert_feedback(
        &self,
        records: Vec<FeedbackRecord>,
    ) -> Result<Vec<i64>, StoreError> {
        self.write(move |connection, _| {
            let transaction = connection.transaction()?;
            let mut ids = Vec::with_capacity(records.len());
            {
                let mut insert = transaction.prepare_cached(
                    "INSERT INTO feedback (service, source, format_type, raw_log, custom_config, is_anomaly, received_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?;
                for record in &records {
                    insert.execute(params![
                        record.service,
                        record.source,
                        record.format_type,
                        record.raw_log,
                        record.custom_config.as_ref().map(to_json),
                        record.is_anomaly,
                        timestamp_text(&record.received_at),
                    ])?;
                    ids.push(transaction.last_insert_rowid());
                }
            }
            transaction.commit()?;
            Ok(ids)
        })
        .await
    }

    pub async fn feedback_for_service(
        &self,
        service: impl Into<String>,
    ) -> Result<Vec<FeedbackRecord>, StoreError> {
        let service = service.into();
        self.read(move |connection| select_feedback(connection, Some(&service)))
            .await
    }

    pub async fn all_feedback(&self) -> Result<Vec<FeedbackRecord>, StoreError> {
        self.read(|connection| select_feedback(connection, None))
            .await
    }

    pub async fn feedback_count(&self) -> Result<u64, StoreError> {
        self.read(|connection| {
            Ok(connection.query_row("SELECT COUNT(*) FROM feedback", [], |row| row.get(0))?)
        })
        .await
    }

    /// Records a service's current model, replacing the previous record.
    pub async fn upsert_model(&self, record: ModelRecord) -> Result<(), StoreError> {
        self.write(move |connection, _| {
            connection.execute(
                "INSERT INTO models (service, path, feature_names, training_samples, trained_at, threshold, source, job_id) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
                 ON CONFLICT (service) DO UPDATE SET path = excluded.path, feature_names = excluded.feature_names, \
                 training_samples = excluded.training_samples, trained_at = excluded.trained_at, \
                 threshold = excluded.threshold, source = excluded.source, job_id = excluded.job_id",
                params![
                    record.service,
                    record.path,
                    to_json(&record.feature_names),
                    i64::try_from(record.training_samples).unwrap_or(i64::MAX),
                    timestamp_text(&record.trained_at),
                    record.threshold,
                    record.source,
                    record.job_id,
                ],
            )?;
            Ok(())
        })
        .await
    }

    pub async fn list_models(&self) -> Result<Vec<ModelRecord>, StoreError> {
        self.read(|connection| {
            let mut statement = connection.prepare_cached(
                "SELECT service, path, feature_names, training_samples, trained_at, threshold, source, job_id \
                 FROM models ORDER BY service",
            )?;
            let mut rows = statement.query([])?;
            let mut records = Vec::new();
            while let Some(row) = rows.next()? {
                let features: String = row.get(2)?;
                let samples: i64 = row.get(3)?;
                let trained_at: String = row.get(4)?;
                records.push(ModelRecord {
                    service: row.get(0)?,
                    path: row.get(1)?,
                    feature_names: from_json("models.feature_names", &features)?,
                    training_samples: u64::try_from(samples).unwrap_or(0),
                    trained_at: parse_timestamp(&trained_at)?,
                    threshold: row.get(5)?,
                    source: row.get(6)?,
                    job_id: row.get(7)?,
                });
            }
            Ok(records)
        })
        .await
    }

    pub async fn upsert_training_job(&self, record: TrainingJobRecord) -> Result<(), StoreError> {
        self.write(move |connection, _| {
            connection.execute(
                "INSERT INTO training_jobs (job_id, status, created_at, started_at, finished_at, detail) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                 ON CONFLICT (job_id) DO UPDATE SET status = excluded.status, started_at = excluded.started_at, \
                 finished_at = excluded.finished_at, detail = excluded.detail",
                params![
                    record.job_id,
                    record.status,
                    timestamp_text(&record.created_at),
                    record.started_at.as_ref().map(timestamp_text),
                    record.finished_at.as_ref().map(timestamp_text),
                    to_json(&record.detail),
                ],
            )?;
            Ok(())
        })
        .await
    }

    pub async fn get_training_job(
        &self,
        job_id: impl Into<String>,
    ) -> Result<Option<TrainingJobRecord>, StoreError> {
        let job_id = job_id.into();
        self.read(move |connection| {
            let row = connection
                .query_row(
                    "SELECT job_id, status, created_at, started_at, finished_at, detail FROM training_jobs WHERE job_id = ?1",
                    [&job_id],
                    |row| {
                        let created: String = row.get(2)?;
                        let started: Option<String> = row.get(3)?;
                        let finished: Option<String> = row.get(4)?;
                        let detail: String = row.get(5)?;
                        Ok((
                            row.get::<_, String>(0)?,
                            row.get::<_, String>(1)?,
                            parse_timestamp(&created)?,
                            started.as_deref().map(parse_timestamp).transpose()?,
                            finished.as_deref().map(parse_timestamp).transpose()?,
                            detail,
                        ))
                    },
                )
                .optional()?;
            row.map(|(job_id, status, created_at, started_at, finished_at, detail)| {
                Ok(TrainingJobRecord {
                    job_id,
                    status,
                    created_at,
                    started_at,
                    finished_at,
                    detail: from_json("training_jobs.detail", &detail)?,
                })
            })
            .transpose()
        })
        .await
    }

    /// Jobs left queued or running by a process that stopped: they will never finish.
    pub async fn fail_unfinished_jobs(&self, reason: &str) -> Result<usize, StoreError> {
        let detail = to_json(&serde_json::json!({"error": reason}));
        self.write(move |connection, _| {
            Ok(connection.execute(
                "UPDATE training_jobs SET status = 'failed', finished_at = ?1, detail = ?2 \
                 WHERE status IN ('queued', 'running')",
                params![timestamp_text(&Utc::now()), detail],
            )?)
        })
        .await
    }

    /// Proves the database takes a write right now: the readiness probe. Fails fast (about half a
    /// second) when another process holds the database locked, and when the store is closed.
    pub async fn check_writable(&self) -> Result<(), StoreError> {
        self.write(|connection, _| {
            connection.busy_timeout(HEALTH_BUSY_TIMEOUT)?;
            let result = connection
                .execute(
                    "INSERT INTO meta (key, value) VALUES ('last_health_check', ?1) \
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    [timestamp_text(&Utc::now())],
                )
                .map(drop);
            connection.busy_timeout(BUSY_TIMEOUT)?;
            Ok(result?)
        })
        .await
    }

    /// Checkpoints the WAL and closes every connection. Later calls fail with
    /// [`StoreError::Closed`]; calling it twice is harmless.
    pub async fn shutdown(&self) -> Result<(), StoreError> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            inner.closed.store(true, Ordering::Release);
            lock(&inner.readers).clear();
            let Some(connection) = lock(&inner.writer).take() else {
                return Ok(());
            };
            connection.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
            connection
                .close()
                .map_err(|(_, error)| StoreError::Sqlite(error))
        })
        .await
        .map_err(|error| StoreError::Background(error.to_string()))?
    }
}

fn open_connection(path: &Path, read_only: bool) -> Result<Connection, StoreError> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI
    } else {
        OpenFlags::default()
    };
    let wrap = |source| StoreError::Open {
        path: path.to_path_buf(),
        source,
    };
    let connection = Connection::open_with_flags(path, flags).map_err(wrap)?;
    connection.busy_timeout(BUSY_TIMEOUT).map_err(wrap)?;
    if !read_only {
        connection
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(wrap)?;
        connection
            .pragma_update(None, "foreign_keys", "ON")
            .map_err(wrap)?;
    }
    Ok(connection)
}

/// Deletes the oldest anomalies beyond `keep`, in the caller's transaction.
///
/// Ids come from AUTOINCREMENT, so they are never reused, and rows only ever leave from the
/// oldest end (here) or all at once (`clear_anomalies`): the stored ids form one contiguous range.
/// The newest `keep` rows are then exactly those above `MAX(id) - keep`, found with two index
/// probes. (Counting back `keep` rows with `OFFSET` instead read the whole retained table on every
/// request: 78 % of the CPU time of 100-log batches at the default retention, under perf.)
fn prune(connection: &Connection, keep: usize) -> Result<(), StoreError> {
    let keep = i64::try_from(keep).unwrap_or(i64::MAX);
    let (oldest, newest): (Option<i64>, Option<i64>) = connection.query_row(
        "SELECT (SELECT MIN(id) FROM anomalies), (SELECT MAX(id) FROM anomalies)",
        [],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?;
    let (Some(oldest), Some(newest)) = (oldest, newest) else {
        return Ok(());
    };
    let cutoff = newest.saturating_sub(keep);
    if cutoff >= oldest {
        connection.execute("DELETE FROM anomalies WHERE id <= ?1", [cutoff])?;
    }
    Ok(())
}

/// One request's anomalies waiting for the next group commit.
struct PendingInsert {
    records: Vec<AnomalyRecord>,
    reply: oneshot::Sender<Result<Vec<AnomalyRecord>, StoreError>>,
}

impl PendingInsert {
    /// Answers with the records, each given its new id.
    fn committed(self, ids: Vec<i64>) {
        let mut records = self.records;
        for (record, id) in records.iter_mut().zip(ids) {
            record.id = id;
        }
        let _ = self.reply.send(Ok(records));
    }
}

#[derive(Default)]
struct GroupCommit {
    queue: Vec<PendingInsert>,
    /// Whether a blocking task is committing; it keeps going until the queue is empty.
    flushing: bool,
}

/// Commits queued inserts, a whole queue per transaction, until none are left.
fn flush_groups(inner: &Inner) {
    loop {
        let group = {
            let mut state = lock(&inner.group);
            if state.queue.is_empty() {
                state.flushing = false;
                return;
            }
            std::mem::take(&mut state.queue)
        };
        // A panic must not leave `flushing` set (every later insert would wait forever); the
        // waiters of the lost group see their reply dropped and answer 500.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            commit_group(inner, group);
        }));
        if outcome.is_err() {
            tracing::error!("An anomaly commit panicked; its requests fail, later ones go on.");
        }
    }
}

fn commit_group(inner: &Inner, group: Vec<PendingInsert>) {
    let mut writer = lock(&inner.writer);
    let Some(connection) = writer.as_mut() else {
        for pending in group {
            let _ = pending.reply.send(Err(StoreError::Closed));
        }
        return;
    };
    let batches: Vec<&[AnomalyRecord]> = group.iter().map(|p| p.records.as_slice()).collect();
    match insert_batches(connection, &inner.options, &batches) {
        Ok(ids) => {
            for (pending, ids) in group.into_iter().zip(ids) {
                pending.committed(ids);
            }
        }
        Err(error) if group.len() == 1 => {
            if let Some(pending) = group.into_iter().next() {
                let _ = pending.reply.send(Err(error));
            }
        }
        Err(_) => {
            for pending in group {
                match insert_batches(connection, &inner.options, &[&pending.records]) {
                    Ok(mut ids) => pending.committed(ids.pop().unwrap_or_default()),
                    Err(error) => {
                        let _ = pending.reply.send(Err(error));
                    }
                }
            }
        }
    }
}

/// Inserts every batch in one transaction, prunes, commits; the ids of each batch, in order.
fn insert_batches(
    connection: &mut Connection,
    options: &StoreOptions,
    batches: &[&[AnomalyRecord]],
) -> Result<Vec<Vec<i64>>, StoreError> {
    let transaction = connection.transaction()?;
    let mut all_ids = Vec::with_capacity(batches.len());
    {
        let mut insert = transaction.prepare_cached(
            "INSERT INTO anomalies (timestamp, timestamp_ms, service, source, log_level, message, \
             anomaly_score, rule_violation, detector, violations, features, raw_log, metadata, context, \
             reasons) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
        )?;
        for records in batches {
            let mut ids = Vec::with_capacity(records.len());
            for record in *records {
                insert.execute(params![
                    timestamp_text(&record.timestamp),
                    record.timestamp.timestamp_millis(),
                    record.service,
                    record.source,
                    record.log_level,
                    record.message,
                    record.anomaly_score,
                    record.rule_violation,
                    record.detector.as_str(),
                    to_json(&record.violations),
                    to_json(&record.features),
                    record.raw_log,
                    to_json(&record.metadata),
                    to_json(&record.context),
                    to_json(&record.reasons),
                ])?;
                ids.push(transaction.last_insert_rowid());
            }
            all_ids.push(ids);
        }
    }
    prune(&transaction, options.max_recent_anomalies)?;
    transaction.commit()?;
    Ok(all_ids)
}

fn anomaly_from_row(row: &Row<'_>) -> Result<AnomalyRecord, StoreError> {
    let timestamp: String = row.get(1)?;
    let detector: String = row.get(8)?;
    let violations: String = row.get(9)?;
    let features: String = row.get(10)?;
    let metadata: String = row.get(12)?;
    let context: String = row.get(13)?;
    let reasons: String = row.get(14)?;
    Ok(AnomalyRecord {
        id: row.get(0)?,
        timestamp: parse_timestamp(&timestamp)?,
        service: row.get(2)?,
        source: row.get(3)?,
        log_level: row.get(4)?,
        message: row.get(5)?,
        anomaly_score: row.get(6)?,
        rule_violation: row.get(7)?,
        detector: if detector == "model" {
            DetectorKind::Model
        } else {
            DetectorKind::Rule
        },
        violations: from_json("anomalies.violations", &violations)?,
        reasons: from_json("anomalies.reasons", &reasons)?,
        features: from_json("anomalies.features", &features)?,
        raw_log: row.get(11)?,
        metadata: from_json("anomalies.metadata", &metadata)?,
        context: from_json("anomalies.context", &context)?,
    })
}

fn select_feedback(
    connection: &Connection,
    service: Option<&str>,
) -> Result<Vec<FeedbackRecord>, StoreError> {
    let sql = "SELECT id, service, source, format_type, raw_log, custom_config, is_anomaly, received_at \
               FROM feedback WHERE ?1 IS NULL OR service = ?1 ORDER BY id";
    let mut statement = connection.prepare_cached(sql)?;
    let mut rows = statement.query([service])?;
    let mut records = Vec::new();
    while let Some(row) = rows.next()? {
        let custom_config: Option<String> = row.get(5)?;
        let received_at: String = row.get(7)?;
        records.push(FeedbackRecord {
            id: row.get(0)?,
            service: row.get(1)?,
            source: row.get(2)?,
            format_type: row.get(3)?,
            raw_log: row.get(4)?,
            custom_config: custom_config
                .as_deref()
                .map(|text| from_json("feedback.custom_config", text))
                .transpose()?,
            is_anomaly: row.get(6)?,
            received_at: parse_timestamp(&received_at)?,
        });
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::{Map, json};

    use super::*;
    use crate::detect::rules::RuleViolation;

    fn anomaly(
        service: &str,
        seconds: i64,
        score: Option<f64>,
        detector: DetectorKind,
    ) -> AnomalyRecord {
        AnomalyRecord {
            id: 0,
            timestamp: DateTime::from_timestamp(1_700_000_000 + seconds, 0).expect("valid time"),
            service: service.to_owned(),
            source: "test".to_owned(),
            log_level: Some("ERROR".to_owned()),
            message: None,
            anomaly_score: score,
            rule_violation: detector == DetectorKind::Rule,
            detector,
            violations: vec![RuleViolation {
                feature: "latency".to_owned(),
                threshold: 1.0,
                value: 2.0,
            }],
            reasons: Vec::new(),
            features: BTreeMap::from([("latency".to_owned(), 2.0)]),
            raw_log: "{}".to_owned(),
            metadata: Map::new(),
            context: Map::new(),
        }
    }

    fn open(dir: &tempfile::TempDir, keep: usize) -> Store {
        Store::open(
            &dir.path().join("test.db"),
            StoreOptions {
                max_recent_anomalies: keep,
                synchronous: Synchronous::Normal,
            },
        )
        .expect("open")
    }

    #[tokio::test]
    async fn anomalies_round_trip_and_filter() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(&dir, 100);
        let ids = store
            .insert_anomalies(vec![
                anomaly("web", 1, Some(-0.2), DetectorKind::Model),
                anomaly("db", 2, None, DetectorKind::Rule),
                anomaly("web", 3, Some(-0.05), DetectorKind::Rule),
            ])
            .await
            .expect("insert");
        assert_eq!(ids.len(), 3);
        let all = store
            .list_anomalies(AnomalyQuery::default())
            .await
            .expect("list");
        assert_eq!(
            all.iter().map(|a| a.id).collect::<Vec<_>>(),
            [ids[2], ids[1], ids[0]]
        );
        assert_eq!(
            all[2],
            AnomalyRecord {
                id: ids[0],
                ..anomaly("web", 1, Some(-0.2), DetectorKind::Model)
            }
        );

        let web = AnomalyQuery {
            service: Some("web".into()),
            ..AnomalyQuery::default()
        };
        assert_eq!(store.list_anomalies(web).await.expect("web").len(), 2);
        let models = AnomalyQuery {
            detector: Some(DetectorKind::Model),
            ..AnomalyQuery::default()
        };
        assert_eq!(store.list_anomalies(models).await.expect("model").len(), 1);
        let since = AnomalyQuery {
            since: DateTime::from_timestamp(1_700_000_002, 0),
            ..AnomalyQuery::default()
        };
        assert_eq!(store.list_anomalies(since).await.expect("since").len(), 2);
        let by_score = AnomalyQuery {
            order: AnomalyOrder::Score,
            ..AnomalyQuery::default()
        };
        let scores: Vec<Option<f64>> = store
            .list_anomalies(by_score)
            .await
            .expect("score")
            .iter()
            .map(|a| a.anomaly_score)
            .collect();
        assert_eq!(scores, [Some(-0.2), Some(-0.05), None]);
        let limited = AnomalyQuery {
            limit: 1,
            ..AnomalyQuery::default()
        };
        assert_eq!(store.list_anomalies(limited).await.expect("limit").len(), 1);
    }

    #[tokio::test]
    async fn retention_keeps_the_newest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(&dir, 5);
        for batch in 0..4 {
            let records = (0..3)
                .map(|i| anomaly("web", batch * 3 + i, None, DetectorKind::Rule))
                .collect();
            store.insert_anomalies(records).await.expect("insert");
        }
        assert_eq!(store.count_anomalies().await.expect("count"), 5);
        let newest = store
            .list_anomalies(AnomalyQuery::default())
            .await
            .expect("list");
        assert_eq!(
            newest[0].timestamp,
            DateTime::from_timestamp(1_700_000_011, 0).expect("time")
        );
        assert_eq!(
            newest[4].timestamp,
            DateTime::from_timestamp(1_700_000_007, 0).expect("time")
        );
        assert_eq!(store.clear_anomalies().await.expect("clear"), 5);
        assert_eq!(store.count_anomalies().await.expect("count"), 0);

        // After a clear, ids go on from where they were: retention still keeps the newest.
        for batch in 0..3 {
            let records = (0..4)
                .map(|i| anomaly("web", 100 + batch * 4 + i, None, DetectorKind::Rule))
                .collect();
            store.insert_anomalies(records).await.expect("insert");
        }
        let newest = store
            .list_anomalies(AnomalyQuery::default())
            .await
            .expect("list");
        assert_eq!(newest.len(), 5);
        assert_eq!(
            newest[4].timestamp,
            DateTime::from_timestamp(1_700_000_107, 0).expect("time")
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_inserts_are_committed_together_and_each_gets_its_own_ids() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(&dir, 10_000);
        let tasks: Vec<_> = (0..40)
            .map(|task| {
                let store = store.clone();
                tokio::spawn(async move {
                    let records = (0..5)
                        .map(|i| anomaly("web", task * 5 + i, None, DetectorKind::Rule))
                        .collect();
                    store.insert_anomalies(records).await.expect("insert")
                })
            })
            .collect();
        let mut all_ids = Vec::new();
        for task in tasks {
            let ids = task.await.expect("task");
            assert_eq!(ids.len(), 5);
            assert!(ids.windows(2).all(|pair| pair[1] == pair[0] + 1), "{ids:?}");
            all_ids.extend(ids);
        }
        all_ids.sort_unstable();
        all_ids.dedup();
        assert_eq!(all_ids.len(), 200);
        assert_eq!(store.count_anomalies().await.expect("count"), 200);
    }

    #[tokio::test]
    async fn everything_survives_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(&dir, 100);
        store
            .insert_anomalies(vec![anomaly("web", 1, None, DetectorKind::Rule)])
            .await
            .expect("insert");
        let feedback = FeedbackRecord {
            id: 0,
            service: "web".into(),
            source: "s".into(),
            format_type: "regex".into(),
            raw_log: "x".into(),
            custom_config: Some(json!({"pattern": "(x)"})),
            is_anomaly: true,
            received_at: Utc::now(),
        };
        store
            .insert_feedback(vec![feedback.clone()])
            .await
            .expect("feedback");
        let model = ModelRecord {
            service: "web".into(),
            path: "/m".into(),
            feature_names: vec!["a".into()],
            training_samples: 50,
            trained_at: DateTime::from_timestamp(1_700_000_000, 0).expect("time"),
            threshold: -0.5,
            source: "auto".into(),
            job_id: None,
        };
        store.upsert_model(model.clone()).await.expect("model");
        store
            .upsert_model(ModelRecord {
                training_samples: 60,
                ..model.clone()
            })
            .await
            .expect("model");
        let job = TrainingJobRecord {
            job_id: "j1".into(),
            status: "running".into(),
            created_at: DateTime::from_timestamp(1_700_000_000, 0).expect("time"),
            started_at: None,
            finished_at: None,
            detail: json!({"logs": 3}),
        };
        store.upsert_training_job(job.clone()).await.expect("job");
        store.shutdown().await.expect("shutdown");
        store.shutdown().await.expect("second shutdown is harmless");
        assert!(matches!(
            store.count_anomalies().await,
            Err(StoreError::Closed)
        ));

        let store = open(&dir, 100);
        assert_eq!(store.count_anomalies().await.expect("count"), 1);
        let stored = store.feedback_for_service("web").await.expect("feedback");
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].custom_config, feedback.custom_config);
        assert!(
            store
                .feedback_for_service("db")
                .await
                .expect("none")
                .is_empty()
        );
        assert_eq!(store.feedback_count().await.expect("count"), 1);
        assert_eq!(
            store.list_models().await.expect("models"),
            [ModelRecord {
                training_samples: 60,
                ..model
            }]
        );
        assert_eq!(store.get_training_job("j1").await.expect("job"), Some(job));
        assert_eq!(
            store.fail_unfinished_jobs("restarted").await.expect("fail"),
            1
        );
        let failed = store
            .get_training_job("j1")
            .await
            .expect("job")
            .expect("exists");
        assert_eq!(failed.status, "failed");
        assert_eq!(store.get_training_job("nope").await.expect("job"), None);
    }

    #[tokio::test]
    async fn a_locked_database_is_reported_unwritable_quickly() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(&dir, 100);
        store.check_writable().await.expect("writable");
        let other = Connection::open(dir.path().join("test.db")).expect("second connection");
        other.execute_batch("BEGIN EXCLUSIVE;").expect("lock");
        let error = store.check_writable().await.expect_err("locked");
        assert!(error.is_unavailable(), "{error}");
        other.execute_batch("COMMIT;").expect("unlock");
        store.check_writable().await.expect("writable again");
    }
}
