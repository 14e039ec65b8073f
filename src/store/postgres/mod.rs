//! The shared backend: PostgreSQL (`DATABASE_URL`), for several replicas that behave as one.
//!
//! A pool of connections (deadpool) runs every statement; each connection has a short statement
//! timeout, and the pool a short wait and connect timeout, so that an unreachable server turns
//! into a 503 (`StoreError::unavailable_reason`) within seconds rather than a hung request.
//! Migrations run at start-up under a session advisory lock, so replicas starting together
//! migrate one at a time. TLS follows the URL's `sslmode` as libpq does: `disable`; `prefer`
//! (the default) and `require` encrypt without checking the certificate; `verify-ca` and
//! `verify-full` verify it (chain and host name) against the Mozilla roots plus
//! `DATABASE_CA_FILE`.
//!
//! What differs from SQLite, and why:
//! - Anomaly ids come from a sequence, taken before the insert: a request's ids ascend, and an
//!   insert retried after a connection failure (when the commit's outcome is unknown) reuses
//!   them with `ON CONFLICT DO NOTHING`, so it never stores a record twice.
//! - Outbox rows are claimed (`FOR UPDATE SKIP LOCKED`) with a lease that every recorded attempt
//!   renews: one replica delivers a row at a time, and another takes it over once the lease of a
//!   replica that died runs out.
//! - At most one alert per fingerprint fires at a time: a deferred exclusion constraint.

mod alerts;
mod anomalies;
mod leader;
mod records;
mod schema;

pub use leader::{LeaderRound, RateLeader, SharedBatch, SharedBatchEvent};
pub use records::{SharedModel, TrainingLock};

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime, Timeouts};
use tokio_postgres::config::SslMode;
use tokio_postgres::error::SqlState;

use super::{StoreError, StoreOptions};

/// Everything `DATABASE_*` configures.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// `DATABASE_URL`: `postgres://user:password@host:port/database?sslmode=…`.
    pub url: String,
    /// `DATABASE_POOL_SIZE`: connections this replica keeps at most.
    pub pool_size: usize,
    /// `DATABASE_CONNECT_TIMEOUT_SECONDS`: also how long a request waits for a free connection.
    pub connect_timeout: Duration,
    /// `DATABASE_STATEMENT_TIMEOUT_SECONDS`: any statement running longer is cancelled.
    pub statement_timeout: Duration,
    /// `DATABASE_CA_FILE`: PEM certificates trusted beside the Mozilla roots.
    pub ca_file: Option<PathBuf>,
    /// How long a claimed outbox row stays this replica's without a recorded attempt
    /// (`ALERT_DELIVERY_LEASE_SECONDS`).
    pub delivery_lease: Duration,
}

impl PostgresOptions {
    pub const DEFAULT_POOL_SIZE: usize = 8;
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
    pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(5);
    pub const DEFAULT_DELIVERY_LEASE: Duration = Duration::from_secs(60);

    /// The defaults, at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            pool_size: Self::DEFAULT_POOL_SIZE,
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            statement_timeout: Self::DEFAULT_STATEMENT_TIMEOUT,
            ca_file: None,
            delivery_lease: Self::DEFAULT_DELIVERY_LEASE,
        }
    }
}

/// Why PostgreSQL could not serve: a driver error, or no connection to be had in time.
#[derive(Debug, thiserror::Error)]
pub enum PostgresError {
    #[error("{}", with_causes(.0))]
    Driver(#[from] tokio_postgres::Error),
    #[error("no database connection within the connect timeout ({0})")]
    Pool(String),
    #[error("DATABASE_URL: {0}")]
    Url(String),
    #[error("DATABASE_CA_FILE {path}: {reason}")]
    CaFile { path: PathBuf, reason: String },
}

/// The driver's message followed by its causes: "error performing TLS handshake" alone does not
/// say that the certificate's issuer is unknown.
fn with_causes(error: &tokio_postgres::Error) -> String {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

impl PostgresError {
    /// Whether the failure is the server's or the network's, for now (a 503), rather than a
    /// statement's (a 500).
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            Self::Pool(_) => true,
            Self::Url(_) | Self::CaFile { .. } => false,
            Self::Driver(error) => {
                if error.is_closed() {
                    return true;
                }
                match error.code() {
                    // Connection exceptions, too many connections, admin shutdown, cannot
                    // connect now, statement timeout, serialization failure and deadlock.
                    Some(code) => {
                        let class = &code.code()[..2];
                        class == "08"
                            || class == "53"
                            || class == "57"
                            || *code == SqlState::T_R_SERIALIZATION_FAILURE
                            || *code == SqlState::T_R_DEADLOCK_DETECTED
                    }
                    // No SQLSTATE: the socket failed (I/O, TLS, a closed connection).
                    None => true,
                }
            }
        }
    }
}

impl From<deadpool_postgres::PoolError> for PostgresError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        match error {
            deadpool_postgres::PoolError::Backend(error) => Self::Driver(error),
            other => Self::Pool(other.to_string()),
        }
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(error: tokio_postgres::Error) -> Self {
        Self::Postgres(PostgresError::Driver(error))
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        Self::Postgres(error.into())
    }
}

pub(crate) struct Postgres {
    pool: Pool,
    /// For the connections that live outside the pool (the rate leader's).
    config: tokio_postgres::Config,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    options: StoreOptions,
    delivery_lease: Duration,
    /// Who holds an outbox lease: this process, for the logs and a human reading the table.
    instance: String,
    closed: AtomicBool,
    pruned: AtomicU64,
}

impl Postgres {
    pub(crate) async fn connect(
        postgres: PostgresOptions,
        options: StoreOptions,
    ) -> Result<Self, StoreError> {
        let (url, verify) = certificate_check(&postgres.url);
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|error: tokio_postgres::Error| PostgresError::Url(error.to_string()))?;
        if config.get_hosts().is_empty() {
            return Err(PostgresError::Url("no host given".into()).into());
        }
        if config.get_application_name().is_none() {
            config.application_name("aioops-mcp-iforest");
        }
        config.connect_timeout(postgres.connect_timeout);
        config.keepalives_idle(Duration::from_secs(30));
        // Kept beside any `options` the URL gives (a search path, say).
        let timeouts = format!(
            "-c statement_timeout={milliseconds} -c lock_timeout={milliseconds}",
            milliseconds = postgres.statement_timeout.as_millis()
        );
        let session = match config.get_options() {
            Some(given) if !given.is_empty() => format!("{given} {timeouts}"),
            _ => timeouts,
        };
        config.options(session);
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let tls = if config.get_ssl_mode() == SslMode::Disable {
            None
        } else {
            Some(tls_connector(verify, postgres.ca_file.as_deref())?)
        };
        let manager = match &tls {
            None => Manager::from_config(config.clone(), tokio_postgres::NoTls, manager_config),
            Some(tls) => Manager::from_config(config.clone(), tls.clone(), manager_config),
        };
        let pool = Pool::builder(manager)
            .max_size(postgres.pool_size.max(2))
            .runtime(Runtime::Tokio1)
            .timeouts(Timeouts {
                wait: Some(postgres.connect_timeout),
                create: Some(postgres.connect_timeout),
                recycle: Some(postgres.connect_timeout),
            })
            .build()
            .map_err(|error| PostgresError::Pool(error.to_string()))?;
        let store = Self {
            pool,
            config,
            tls,
            options,
            delivery_lease: postgres.delivery_lease,
            instance: format!(
                "{}-{}",
                std::process::id(),
                &uuid::Uuid::new_v4().simple().to_string()[..8]
            ),
            closed: AtomicBool::new(false),
            pruned: AtomicU64::new(0),
        };
        let mut client = store.client().await?;
        schema::migrate(&mut client).await?;
        Ok(store)
    }

    /// A connection of its own, outside the pool, whose driver task runs until it is dropped.
    async fn dedicated_connection(&self) -> Result<tokio_postgres::Client, StoreError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        let client = match &self.tls {
            None => {
                let (client, connection) = self.config.connect(tokio_postgres::NoTls).await?;
                tokio::spawn(connection);
                client
            }
            Some(tls) => {
                let (client, connection) = self.config.connect(tls.clone()).await?;
                tokio::spawn(connection);
                client
            }
        };
        Ok(client)
    }

    /// A pooled connection, or [`StoreError::Closed`] once the store is shut down.
    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        Ok(self.pool.get().await?)
    }

    pub(crate) async fn check_writable(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO meta (key, value) VALUES ('last_health_check', now()::text) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &[],
            )
            .await?;
        Ok(())
    }

    pub(crate) async fn shutdown(&self) -> Result<(), StoreError> {
        self.closed.store(true, Ordering::Release);
        self.pool.close();
        Ok(())
    }

    pub(crate) fn anomalies_pruned(&self) -> u64 {
        self.pruned.load(Ordering::Relaxed)
    }
}

/// Whether the URL asks for the server's certificate to be verified (`sslmode=verify-ca` or
/// `verify-full`, which the driver does not know: they become `require` for it), and the URL
/// it is given.
pub(crate) fn certificate_check(url: &str) -> (String, bool) {
    for mode in ["sslmode=verify-full", "sslmode=verify-ca"] {
        if url.contains(mode) {
            return (url.replace(mode, "sslmode=require"), true);
        }
    }
    (url.to_owned(), false)
}

/// TLS as libpq does it: `prefer` and `require` encrypt without checking who the server is;
/// `verify-ca` and `verify-full` (both checked in full: chain and host name) verify against the
/// Mozilla roots and the certificates of `DATABASE_CA_FILE`.
fn tls_connector(
    verify: bool,
    ca_file: Option<&std::path::Path>,
) -> Result<tokio_postgres_rustls::MakeRustlsConnect, StoreError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|error| PostgresError::Url(error.to_string()))?;
    if !verify {
        let config = builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(EncryptOnly(provider)))
            .with_no_client_auth();
        return Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config));
    }
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        let ca_error = |reason: String| PostgresError::CaFile {
            path: path.to_path_buf(),
            reason,
        };
        let mut added = 0;
        for certificate in
            CertificateDer::pem_file_iter(path).map_err(|error| ca_error(error.to_string()))?
        {
            let certificate = certificate.map_err(|error| ca_error(error.to_string()))?;
            roots
                .add(certificate)
                .map_err(|error| ca_error(error.to_string()))?;
            added += 1;
        }
        if added == 0 {
            return Err(ca_error("holds no PEM certificate".into()).into());
        }
    }
    let config = builder.with_root_certificates(roots).with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// `sslmode=prefer`/`require`: the handshake's signatures are checked, the certificate's issuer
/// and names are not (libpq's meaning of those modes; self-signed server certificates are the
/// norm there).
#[derive(Debug)]
struct EncryptOnly(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &rustls::pki_types::CertificateDer<'_>,
        signature: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            certificate,
            signature,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &rustls::pki_types::CertificateDer<'_>,
        signature: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            certificate,
            signature,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A `usize` bound as a `BIGINT` parameter.
fn bigint(value: usize) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[cfg(test)]
#[path = "test_schema.rs"]
pub(crate) mod testing;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::handle::Backend;

    async fn connect(url: String) -> Result<crate::store::Store, StoreError> {
        crate::store::Store::connect(PostgresOptions::new(url), StoreOptions::default()).await
    }

    #[tokio::test]
    async fn a_fresh_test_schema_clears_those_left_over_an_hour_ago() {
        let (client, connection) =
            tokio_postgres::connect(&testing::server_url(), tokio_postgres::NoTls)
                .await
                .expect("PostgreSQL");
        tokio::spawn(connection);
        let stale = format!("t_1000000000_{}", uuid::Uuid::new_v4().simple());
        let recent = format!(
            "t_{}_{}",
            i64::MAX / 1_000_000_000,
            uuid::Uuid::new_v4().simple()
        );
        client
            .batch_execute(&format!("CREATE SCHEMA {stale}; CREATE SCHEMA {recent}"))
            .await
            .expect("create schemas");
        let exists = |name: String| {
            let client = &client;
            async move {
                client
                    .query_opt("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[&name])
                    .await
                    .expect("pg_namespace")
                    .is_some()
            }
        };
        // Another test may hold the cleaning turn for a moment; it cleans 20 at most per call.
        for _ in 0..50 {
            let _ = testing::fresh_schema().await;
            if !exists(stale.clone()).await {
                break;
            }
        }
        assert!(!exists(stale).await, "the stale schema is still there");
        assert!(exists(recent.clone()).await, "a newer schema was dropped");
        client
            .batch_execute(&format!("DROP SCHEMA {recent}"))
            .await
            .expect("drop");
    }

    #[tokio::test]
    async fn sslmode_require_encrypts_and_verify_full_checks_the_certificate() {
        let url = testing::fresh_schema().await;
        let encrypted = connect(format!("{url}&sslmode=require"))
            .await
            .unwrap_or_else(|error| {
                panic!("require: encrypted, not checked (as libpq): {error:?}")
            });
        let Backend::Postgres(postgres) = &encrypted.backend_for_tests() else {
            panic!("a PostgreSQL store");
        };
        let client = postgres.client().await.expect("connection");
        let ssl: bool = client
            .query_one(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
            .await
            .expect("pg_stat_ssl")
            .get(0);
        assert!(ssl, "the connection is encrypted");
        // The local server's certificate is self-signed: verification refuses it.
        let error = connect(format!("{url}&sslmode=verify-full"))
            .await
            .expect_err("an unknown issuer");
        assert!(error.to_string().contains("UnknownIssuer"), "{error}");
    }

    #[tokio::test]
    async fn an_unreachable_server_is_a_quick_unavailable_error() {
        let mut options = PostgresOptions::new("postgres://nobody@127.0.0.1:1/none");
        options.connect_timeout = Duration::from_millis(500);
        let error = crate::store::Store::connect(options, StoreOptions::default())
            .await
            .expect_err("nothing listens on port 1");
        assert!(error.is_unavailable(), "{error}");
    }

    fn options(url: &str) -> PostgresOptions {
        PostgresOptions::new(url.to_owned())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn replicas_starting_together_migrate_one_at_a_time() {
        let url = testing::fresh_schema().await;
        let starts: Vec<_> = (0..4)
            .map(|_| {
                let url = url.clone();
                tokio::spawn(async move {
                    Postgres::connect(options(&url), StoreOptions::default()).await
                })
            })
            .collect();
        for start in starts {
            start.await.expect("task").expect("every replica starts");
        }
        let store = Postgres::connect(options(&url), StoreOptions::default())
            .await
            .expect("connect");
        let client = store.client().await.expect("client");
        let version: i32 = client
            .query_one("SELECT version FROM schema_version", &[])
            .await
            .expect("one row")
            .get(0);
        assert_eq!(version, schema::SCHEMA_VERSION);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn an_insert_retried_with_the_same_ids_stores_nothing_twice() {
        use crate::detect::DetectorKind;
        use crate::store::testing::anomaly;

        let url = testing::fresh_schema().await;
        let store = Postgres::connect(options(&url), StoreOptions::default())
            .await
            .expect("connect");
        let share = SharedBatchEvent {
            arrival: chrono::Utc::now(),
            payload: "{}".into(),
        };
        let stored = store
            .store_anomalies(
                vec![
                    anomaly("web", 1, None, DetectorKind::Rule),
                    anomaly("web", 2, None, DetectorKind::Rule),
                ],
                Some(share.clone()),
            )
            .await
            .expect("stored");
        // The commit's answer was lost: the same records, with their ids, come again.
        store
            .insert_anomalies_once(&stored, Some(&share))
            .await
            .expect("the retry succeeds");
        assert_eq!(store.count_anomalies().await.expect("count"), 2);
        let client = store.client().await.expect("client");
        let shared: i64 = client
            .query_one("SELECT COUNT(*) FROM alert_events", &[])
            .await
            .expect("count")
            .get(0);
        assert_eq!(shared, 1, "the batch is shared with the rate leader once");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_claimed_delivery_is_another_replicas_once_its_lease_runs_out() {
        use crate::store::{AlertRow, DeliveryStatus, OutboxChannel, OutboxEntry};

        let url = testing::fresh_schema().await;
        let mut short = options(&url);
        short.delivery_lease = Duration::from_millis(300);
        let first = Postgres::connect(short.clone(), StoreOptions::default())
            .await
            .expect("replica 1");
        let second = Postgres::connect(short, StoreOptions::default())
            .await
            .expect("replica 2");
        let alert = AlertRow {
            id: 1,
            service: "web".into(),
            fingerprint: "f".into(),
            firing: true,
            revision: 1,
            started_at: chrono::Utc::now(),
            document: "{}".into(),
        };
        let entry = OutboxEntry {
            alert,
            event: "fired",
            opens_alert: true,
            notification: r#"{"n": 1}"#.into(),
        };
        let webhook = OutboxChannel {
            name: "webhook",
            delivered_on_store: false,
        };
        first
            .record_alerts(vec![], vec![entry], vec![webhook], 10)
            .await
            .expect("queued");

        let claimed = first
            .next_pending_delivery::<serde_json::Value>("webhook", 0)
            .await
            .expect("read")
            .expect("replica 1 claims it");
        assert!(
            second
                .next_pending_delivery::<serde_json::Value>("webhook", 0)
                .await
                .expect("read")
                .is_none(),
            "one replica at a time"
        );
        // A retry renews the lease; replica 1 then dies without another word.
        first
            .update_delivery(claimed.id, DeliveryStatus::Pending, 1, Some(500), None)
            .await
            .expect("attempt recorded");
        tokio::time::sleep(Duration::from_millis(500)).await;
        let taken_over = second
            .next_pending_delivery::<serde_json::Value>("webhook", 0)
            .await
            .expect("read")
            .expect("replica 2 takes it over");
        assert_eq!(taken_over.id, claimed.id);
        assert_eq!(taken_over.attempts, 1);
        second
            .update_delivery(claimed.id, DeliveryStatus::Delivered, 2, Some(200), None)
            .await
            .expect("delivered");
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            first
                .next_pending_delivery::<serde_json::Value>("webhook", 0)
                .await
                .expect("read")
                .is_none(),
            "a delivered row is nobody's"
        );
    }

    #[test]
    fn verify_modes_become_require_for_the_driver() {
        assert_eq!(
            certificate_check("postgres://h/d?sslmode=verify-full&x=1"),
            ("postgres://h/d?sslmode=require&x=1".to_owned(), true)
        );
        assert_eq!(
            certificate_check("postgres://h/d?sslmode=require"),
            ("postgres://h/d?sslmode=require".to_owned(), false)
        );
    }
}
