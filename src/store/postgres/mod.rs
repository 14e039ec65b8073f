//! The shared backend: PostgreSQL (`DATABASE_URL`), for several replicas that behave as one.
//!
//! A pool of connections (deadpool) runs every statement; each connection has a short statement
//! timeout, and the pool a short wait and connect timeout, so that an unreachable server turns
//! into a 503 (`StoreError::unavailable_reason`) within seconds rather than a hung request.
//! Migrations run at start-up under a session advisory lock, so replicas starting together
//! migrate one at a time. TLS follows the URL's `sslmode` (`disable`, `prefer`, `require`),
//! verified against the Mozilla roots plus `DATABASE_CA_FILE`.
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
mod records;
mod schema;

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
    #[error(transparent)]
    Driver(#[from] tokio_postgres::Error),
    #[error("no database connection within the connect timeout ({0})")]
    Pool(String),
    #[error("DATABASE_URL: {0}")]
    Url(String),
    #[error("DATABASE_CA_FILE {path}: {reason}")]
    CaFile { path: PathBuf, reason: String },
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
        let mut config: tokio_postgres::Config = postgres
            .url
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
        let manager = if config.get_ssl_mode() == SslMode::Disable {
            Manager::from_config(config, tokio_postgres::NoTls, manager_config)
        } else {
            let tls = tls_connector(postgres.ca_file.as_deref())?;
            Manager::from_config(config, tls, manager_config)
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

/// rustls with the Mozilla roots and the certificates of `ca_file`.
fn tls_connector(
    ca_file: Option<&std::path::Path>,
) -> Result<tokio_postgres_rustls::MakeRustlsConnect, StoreError> {
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
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| PostgresError::Url(error.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// A `usize` bound as a `BIGINT` parameter.
fn bigint(value: usize) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[cfg(test)]
pub(crate) mod testing {
    //! A PostgreSQL schema of its own for each test, on the server the test command provides.

    use super::*;

    /// `TEST_DATABASE_URL`, or the local server the README's test command starts.
    pub(crate) fn server_url() -> String {
        std::env::var("TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
    }

    /// A fresh, empty schema; the URL that makes it every connection's search path.
    pub(crate) async fn fresh_schema() -> String {
        let url = server_url();
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|error| {
                panic!(
                    "PostgreSQL at {url} (TEST_DATABASE_URL): {error}; the README's test \
                     command starts one (scripts/ensure-postgres.sh)"
                )
            });
        tokio::spawn(connection);
        let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
        client
            .batch_execute(&format!("CREATE SCHEMA {schema}"))
            .await
            .expect("create schema");
        let separator = if url.contains('?') { '&' } else { '?' };
        format!("{url}{separator}options=-csearch_path%3D{schema}")
    }
}
