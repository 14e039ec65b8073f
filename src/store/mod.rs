//! Durable storage behind one [`Store`] handle: embedded SQLite (bundled) in WAL mode under
//! `DATA_DIR` by default, one file for every table, one schema (`schema.rs`'s migrations); or
//! PostgreSQL (`DATABASE_URL`, the `postgres` module) for several replicas sharing one state.
//! The rest of this page is about SQLite.
//!
//! A module per table family: `anomalies` (group commit, retention, queries), `feedback`,
//! `models` (models and training jobs), `alerts` (alerts and their delivery outbox).
//!
//! One writer connection serialises every write; a request's anomalies are committed in one
//! transaction, together with those of requests that arrived meanwhile (group commit), and its
//! response is sent only after that commit. Reads use a small pool of their own
//! connections, which WAL lets run beside the writer. All SQLite work happens on tokio's blocking
//! pool, never on the async workers.
//!
//! Retention: `MAX_RECENT_ANOMALIES` rows are kept; each insert prunes the oldest beyond that in
//! the same transaction, so the table never grows past the bound.

mod alerts;
mod anomalies;
mod feedback;
mod handle;
mod models;
pub mod postgres;
mod records;
mod schema;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OpenFlags};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use alerts::{
    AlertFilter, AlertRow, DeliveryRecord, DeliveryStatus, Enqueued, MAX_STORED_ALERTS,
    OutboxChannel, OutboxEntry, PendingDelivery,
};
pub use handle::Store;
pub use models::SettledJobs;
pub use postgres::{
    LeaderRound, PostgresError, PostgresOptions, RateLeader, SharedBatch, SharedBatchEvent,
    SharedModel, TrainingLock,
};
pub use records::{
    AnomalyOrder, AnomalyQuery, AnomalyRecord, FeedbackRecord, JobStatus, ModelRecord,
    TrainingJobRecord, UnknownJobStatus,
};

use crate::store::anomalies::GroupCommit;
use crate::sync::lock;

/// The default `MAX_RECENT_ANOMALIES`: SQLite keeps 100,000 records (measured: ~74 MB of typical
/// anomalies, ~0.9 GB at the default `MAX_STORED_ANOMALY_BYTES` worst case) with indexed queries in
/// milliseconds; the original's 500 was the limit of rewriting one JSON file.
pub const DEFAULT_MAX_RECENT_ANOMALIES: usize = 100_000;

/// The default `MAX_FEEDBACK_RECORDS`: far more labels than calibration or a fit needs, a bound
/// on what repeated feedback posts can make the database hold.
pub const DEFAULT_MAX_FEEDBACK_RECORDS: usize = 100_000;

/// How long a write waits for a lock held by another connection before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Prepared statements kept per connection.
const STATEMENT_CACHE_CAPACITY: usize = 64;
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

/// `STARTUP_INTEGRITY_CHECK`: what is checked before the service starts on an existing database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntegrityCheck {
    /// `PRAGMA quick_check`: every page and record is well formed (not the indexes' contents).
    Quick,
    /// `PRAGMA integrity_check`: the quick check plus every index against its table.
    Full,
    Off,
}

#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub max_recent_anomalies: usize,
    /// `MAX_FEEDBACK_RECORDS`: the newest labels kept; each insert prunes the oldest beyond it.
    pub max_feedback_records: usize,
    pub synchronous: Synchronous,
    pub integrity_check: IntegrityCheck,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_recent_anomalies: DEFAULT_MAX_RECENT_ANOMALIES,
            max_feedback_records: DEFAULT_MAX_FEEDBACK_RECORDS,
            synchronous: Synchronous::Full,
            integrity_check: IntegrityCheck::Quick,
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
    #[error(
        "the database {path} is damaged ({check} found: {findings}); restore it from a backup, \
         or move it aside to start with an empty history (STARTUP_INTEGRITY_CHECK=off starts \
         on it anyway, at the risk of wrong or partial answers)"
    )]
    Damaged {
        path: PathBuf,
        check: &'static str,
        findings: String,
    },
    #[error("the database is closed")]
    Closed,
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] PostgresError),
    #[error("stored {column} is not valid: {reason}")]
    BadColumn {
        column: &'static str,
        reason: String,
    },
    #[error("background task failed: {0}")]
    Background(String),
}

impl StoreError {
    /// Whether the failure is temporary (locked database, full disk, shutting down): callers
    /// answer 503.
    pub fn is_unavailable(&self) -> bool {
        self.unavailable_reason().is_some()
    }

    /// What a client is told when the failure is temporary; `None` when it is not.
    pub fn unavailable_reason(&self) -> Option<&'static str> {
        match self {
            Self::Closed => Some("The service is shutting down; try another replica or retry."),
            Self::Sqlite(rusqlite::Error::SqliteFailure(error, _)) => match error.code {
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked => {
                    Some("The database is locked by another process; retry shortly.")
                }
                rusqlite::ErrorCode::DiskFull => Some(
                    "The disk holding DATA_DIR is full: nothing was stored. Free space there \
                     (or lower MAX_RECENT_ANOMALIES), then retry.",
                ),
                _ => None,
            },
            Self::Postgres(error) if error.is_transient() => Some(
                "The database (DATABASE_URL) is unreachable or overloaded: nothing was stored. \
                 Retry shortly.",
            ),
            _ => None,
        }
    }
}

/// The embedded backend: one SQLite file.
#[derive(Clone)]
pub(crate) struct Sqlite {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    options: StoreOptions,
    writer: Mutex<Option<Connection>>,
    readers: Mutex<Vec<Connection>>,
    group: Mutex<GroupCommit>,
    closed: AtomicBool,
    /// Anomalies pruned for the retention bound since the store opened.
    pruned: AtomicU64,
}

fn timestamp_text(instant: &DateTime<Utc>) -> String {
    crate::rfc3339::micros(instant)
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

/// A column that holds one of an enum's names.
fn parse_column<T>(text: &str) -> Result<T, rusqlite::Error>
where
    T: std::str::FromStr,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    text.parse().map_err(|error| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(error))
    })
}

fn to_json<T: Serialize + ?Sized>(value: &T) -> String {
    // Maps of strings/numbers and derived structs cannot fail to serialise.
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned())
}

fn from_json<T: DeserializeOwned>(column: &'static str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|source| StoreError::Corrupt { column, source })
}

impl Sqlite {
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
        check_integrity(&writer, path, options.integrity_check)?;
        schema::migrate(&mut writer)?;
        Ok(Self {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                options,
                writer: Mutex::new(Some(writer)),
                readers: Mutex::new(Vec::new()),
                group: Mutex::new(GroupCommit::default()),
                closed: AtomicBool::new(false),
                pruned: AtomicU64::new(0),
            }),
        })
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

    /// Bytes an unprivileged writer can still use on the file system holding the database.
    ///
    /// # Errors
    /// The file system cannot be queried.
    pub fn free_bytes(&self) -> std::io::Result<u64> {
        let directory = self.inner.path.parent().unwrap_or(Path::new("."));
        let stats = rustix::fs::statvfs(directory)?;
        Ok(stats.f_bavail.saturating_mul(stats.f_frsize))
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

/// Refuses a damaged database before anything reads or migrates it: a damaged page otherwise
/// surfaces as missing rows in time-ordered reads, with no error at all.
fn check_integrity(
    connection: &Connection,
    path: &Path,
    check: IntegrityCheck,
) -> Result<(), StoreError> {
    let (pragma, check) = match check {
        IntegrityCheck::Off => return Ok(()),
        IntegrityCheck::Quick => ("PRAGMA quick_check(20)", "quick_check"),
        IntegrityCheck::Full => ("PRAGMA integrity_check(20)", "integrity_check"),
    };
    let damaged = |findings: String| StoreError::Damaged {
        path: path.to_path_buf(),
        check,
        findings,
    };
    let findings: Vec<String> = match connection.prepare(pragma).and_then(|mut statement| {
        statement
            .query_map([], |row| row.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()
    }) {
        Ok(findings) => findings,
        // A header or schema page so broken that the check cannot even run.
        Err(rusqlite::Error::SqliteFailure(error, message))
            if matches!(
                error.code,
                rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase
            ) =>
        {
            return Err(damaged(message.unwrap_or_else(|| error.to_string())));
        }
        Err(error) => return Err(error.into()),
    };
    if findings.len() == 1 && findings[0] == "ok" {
        Ok(())
    } else {
        Err(damaged(findings.join("; ")))
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
    // Every statement a request or an alert runs is prepared once per connection (callgrind: a
    // prepare is ~40k instructions, a third of a 100-log batch's storage cost); the default of 16
    // would evict some of them.
    connection.set_prepared_statement_cache_capacity(STATEMENT_CACHE_CAPACITY);
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

#[cfg(test)]
pub(crate) mod testing {
    //! Records and stores the storage tests share.

    use std::collections::BTreeMap;

    use chrono::DateTime;
    use serde_json::Map;

    use super::*;
    use crate::detect::DetectorKind;
    use crate::detect::rules::RuleViolation;

    pub(crate) fn anomaly(
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

    /// A storage test, run once on SQLite and once on PostgreSQL (a schema of its own on the
    /// server the README's test command starts).
    macro_rules! on_each_backend {
        (async fn $name:ident($backend:ident: TestBackend) $body:block) => {
            mod $name {
                use super::*;

                async fn run($backend: TestBackend) $body

                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn sqlite() {
                    run(TestBackend::sqlite()).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn postgres() {
                    run(TestBackend::postgres().await).await;
                }
            }
        };
    }
    pub(crate) use on_each_backend;

    /// Where a test's store lives: a temporary SQLite file, or a fresh PostgreSQL schema.
    pub(crate) struct TestBackend {
        dir: tempfile::TempDir,
        postgres_url: Option<String>,
    }

    impl TestBackend {
        pub(crate) fn sqlite() -> Self {
            Self {
                dir: tempfile::tempdir().expect("tempdir"),
                postgres_url: None,
            }
        }

        pub(crate) async fn postgres() -> Self {
            Self {
                dir: tempfile::tempdir().expect("tempdir"),
                postgres_url: Some(crate::store::postgres::testing::fresh_schema().await),
            }
        }

        /// Opens the store (again: a second call sees what the first one stored).
        pub(crate) async fn open(&self, keep: usize) -> Store {
            let options = StoreOptions {
                max_recent_anomalies: keep,
                synchronous: Synchronous::Normal,
                ..StoreOptions::default()
            };
            match &self.postgres_url {
                None => open(&self.dir, keep),
                Some(url) => Store::connect(PostgresOptions::new(url.clone()), options)
                    .await
                    .expect("connect to PostgreSQL"),
            }
        }
    }

    pub(crate) fn open(dir: &tempfile::TempDir, keep: usize) -> Store {
        Store::open(
            &dir.path().join("test.db"),
            StoreOptions {
                max_recent_anomalies: keep,
                synchronous: Synchronous::Normal,
                ..StoreOptions::default()
            },
        )
        .expect("open")
    }
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;
    use serde_json::json;

    use super::testing::{TestBackend, anomaly, on_each_backend, open};
    use super::*;
    use crate::detect::DetectorKind;

    on_each_backend! {
    async fn everything_survives_reopening(backend: TestBackend) {
        let store = backend.open(100).await;
        store
            .insert_anomalies(vec![anomaly("web", 1, None, DetectorKind::Rule)])
            .await
            .expect("insert");
        let feedback = FeedbackRecord {
            id: 0,
            service: "web".into(),
            source: "s".into(),
            format_type: crate::parse::FormatType::Regex,
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
            source: crate::detect::models::ModelSource::Auto,
            job_id: None,
        };
        store
            .record_models(vec![model.clone()])
            .await
            .expect("model");
        store
            .record_models(vec![ModelRecord {
                training_samples: 60,
                ..model.clone()
            }])
            .await
            .expect("model");
        let job = TrainingJobRecord {
            job_id: "j1".into(),
            status: JobStatus::Running,
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

        let store = backend.open(100).await;
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
            store
                .settle_unfinished_jobs("restarted")
                .await
                .expect("settle"),
            SettledJobs {
                failed: 1,
                applied: 0
            }
        );
        let failed = store
            .get_training_job("j1")
            .await
            .expect("job")
            .expect("exists");
        assert_eq!(failed.status, JobStatus::Failed);
        assert_eq!(store.get_training_job("nope").await.expect("job"), None);
    }
    }

    on_each_backend! {
    async fn a_job_whose_models_were_recorded_is_settled_as_succeeded(backend: TestBackend) {
        let store = backend.open(100).await;
        let created_at = DateTime::from_timestamp(1_700_000_000, 0).expect("time");
        for job_id in ["applied", "cut-short"] {
            let job = TrainingJobRecord {
                job_id: job_id.into(),
                status: JobStatus::Running,
                created_at,
                started_at: Some(created_at),
                finished_at: None,
                detail: json!({}),
            };
            store.upsert_training_job(job).await.expect("job");
        }
        let model = |service: &str| ModelRecord {
            service: service.into(),
            path: format!("models/{service}.iforest"),
            feature_names: vec!["a".into()],
            training_samples: 50,
            trained_at: created_at,
            threshold: -0.5,
            source: crate::detect::models::ModelSource::TrainJob,
            job_id: Some("applied".into()),
        };
        store
            .record_models(vec![model("web"), model("db")])
            .await
            .expect("models");

        let settled = store
            .settle_unfinished_jobs("stopped")
            .await
            .expect("settle");

        assert_eq!(
            settled,
            SettledJobs {
                failed: 1,
                applied: 1
            }
        );
        let status = |job: Option<TrainingJobRecord>| job.expect("exists").status;
        let applied = store.get_training_job("applied").await.expect("read");
        assert_eq!(status(applied), JobStatus::Succeeded);
        let cut_short = store.get_training_job("cut-short").await.expect("read");
        assert_eq!(status(cut_short), JobStatus::Failed);
        assert_eq!(store.list_models().await.expect("models").len(), 2);
    }
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
