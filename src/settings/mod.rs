//! Settings from the environment and `.env`: the contract's variable names, typed and validated.
//!
//! Every variable is parsed into the type the service uses (durations, URLs, rule tables). A bad value
//! never falls back to a default: start-up stops with one message naming every bad variable.
//!
//! Each area takes its own settings, built here, never the whole [`Settings`]: the store its
//! [`StoreOptions`], the learning loop its [`LearnerConfig`], alerting its [`AlertConfig`],
//! telemetry its [`LogFormat`]. Only the application (`app.rs`) and the HTTP layer see `Settings`.

mod reader;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use self::reader::{BUDGET, PROBABILITY, RATIO, Reader, SHARE};
use crate::alert::AlertConfig;
use crate::alert::channel::Channel;
pub use crate::alert::channel::{Secret, WebhookFormat};
use crate::alert::lifecycle::TrackerLimits;
use crate::alert::rate::{RateRules, VolumeTest};
use crate::alert::retry::RetryPolicy;
use crate::detect::baseline::DEFAULT_FALSE_ALARM_BUDGET;
use crate::detect::rules::RuleSet;
use crate::forest::Contamination;
use crate::ingest::DEFAULT_MAX_STORED_ANOMALY_BYTES;
use crate::learn::LearnerConfig;
use crate::learn::sample::DEFAULT_MAX_FEATURES_PER_SERVICE;
use crate::parse::{
    DEFAULT_MAX_FEATURES_PER_LOG, DEFAULT_MAX_FIELD_NAME_CHARS, DEFAULT_REGEX_SIZE_LIMIT,
    FieldLimits, ParseLimits,
};
use crate::server::ServerLimits;
pub use crate::store::{DEFAULT_MAX_FEEDBACK_RECORDS, DEFAULT_MAX_RECENT_ANOMALIES};
use crate::store::{IntegrityCheck, PostgresOptions, StoreOptions, Synchronous};
pub use crate::telemetry::LogFormat;

/// Every setting of the service, typed.
#[derive(Debug, Clone)]
pub struct Settings {
    pub api_host: IpAddr,
    pub api_port: u16,
    /// A second port serving only OTLP/HTTP (`POST /v1/logs`), on `api_host`; `None`: off (the
    /// API port serves `/v1/logs` either way).
    pub otlp_http_port: Option<u16>,
    /// OTLP exports judged at once; one more is answered 429 with `Retry-After`.
    pub otlp_max_concurrent_exports: usize,
    /// Tokio worker threads; `None` means one per core.
    pub api_workers: Option<usize>,
    pub data_dir: PathBuf,
    pub model_path: Option<PathBuf>,
    pub model_contamination: Contamination,
    pub model_random_state: u64,
    pub min_train_samples: usize,
    pub n_estimators: usize,
    /// Where the forest alone decides, its score must also be below this (and below 0).
    pub anomaly_threshold: f64,
    /// The share of a service's normal logs its baseline may flag (the false-alarm budget).
    pub false_alarm_budget: f64,
    pub alert_conditions: RuleSet,
    pub complex_alert_rules: RateRules,
    pub slack_webhook_url: Option<Secret>,
    pub pagerduty_routing_key: Option<Secret>,
    pub pagerduty_events_url: String,
    pub generic_webhook_url: Option<Secret>,
    pub generic_webhook_format: WebhookFormat,
    pub alert_repeat_interval: Duration,
    pub alert_timeout: Duration,
    /// Undelivered notifications kept per channel; beyond it new ones are dropped and counted.
    pub alert_queue_capacity: usize,
    /// Delivery attempts per notification and channel before giving up.
    pub alert_max_attempts: u32,
    /// First retry delay; doubles per attempt, with jitter, up to `alert_retry_max`.
    pub alert_retry_initial: Duration,
    /// Longest retry delay, a `Retry-After` included.
    pub alert_retry_max: Duration,
    /// How long shutdown waits for the alert queues to drain.
    pub alert_shutdown_timeout: Duration,
    /// Services the rate tracker follows at once.
    pub alert_max_services: usize,
    /// Anomalies logged longer than this before they arrive are not counted; `None` (0): off.
    pub alert_max_lateness: Option<Duration>,
    pub log_level: String,
    pub log_format: LogFormat,
    pub max_recent_anomalies: usize,
    /// Feedback labels kept; the oldest beyond it are pruned.
    pub max_feedback_records: usize,
    /// Accepted for compatibility; feedback lives in the database now.
    pub feedback_store_path: Option<PathBuf>,
    pub max_body_bytes: usize,
    pub max_logs_per_request: usize,
    pub max_raw_log_bytes: usize,
    pub request_timeout: Duration,
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// From a connection's accept (or a next request's first byte) to a complete request head.
    pub header_read_timeout: Duration,
    /// How long a kept-alive connection may wait for its next request.
    pub idle_timeout: Duration,
    /// `None` turns periodic retraining off.
    pub retrain_interval: Option<Duration>,
    pub max_tracked_services: usize,
    /// When every tracked-service slot is taken, one idle this long goes to a new service.
    pub tracked_service_idle: Duration,
    pub reservoir_size: usize,
    /// Distinct feature names one service's training sample may hold.
    pub max_features_per_service: usize,
    pub regex_cache_size: usize,
    /// The regex crate's `size_limit` for one pattern, in bytes.
    pub regex_size_limit: usize,
    /// Distinct regex patterns in one request.
    pub max_patterns_per_request: usize,
    /// Features kept per log (and as many attributes); the rest are ignored and counted.
    pub max_features_per_log: usize,
    /// Longest field name kept, in characters.
    pub max_field_name_chars: usize,
    pub store_synchronous: Synchronous,
    /// `DATABASE_URL`: PostgreSQL shared by every replica; `None`: SQLite in `DATA_DIR`.
    pub database_url: Option<Secret>,
    /// `DATABASE_POOL_SIZE`: connections this replica keeps to PostgreSQL at most.
    pub database_pool_size: usize,
    /// `DATABASE_CONNECT_TIMEOUT_SECONDS`: connecting, and waiting for a pooled connection.
    pub database_connect_timeout: Duration,
    /// `DATABASE_STATEMENT_TIMEOUT_SECONDS`: the longest any statement may run.
    pub database_statement_timeout: Duration,
    /// `DATABASE_CA_FILE`: PEM certificates trusted beside the Mozilla roots for TLS.
    pub database_ca_file: Option<PathBuf>,
    /// `MODEL_SYNC_INTERVAL_SECONDS`: how often a replica loads the models others published
    /// (PostgreSQL).
    pub model_sync_interval: Duration,
    /// `ALERT_DELIVERY_LEASE_SECONDS`: how long a replica's claim on an outbox row lasts
    /// without a recorded attempt (PostgreSQL).
    pub alert_delivery_lease: Duration,
    /// `/health` answers 503 when the disk holding DATA_DIR has less free space; 0: not checked.
    pub min_free_disk_bytes: u64,
    /// The most text (raw log, message, attributes and tags) one stored anomaly keeps.
    pub max_stored_anomaly_bytes: usize,
    /// How thoroughly the database is checked before the service starts.
    pub startup_integrity_check: IntegrityCheck,
    /// Services with series of their own in `/metrics`; the rest share `__other__`.
    pub metrics_max_services: usize,
    /// `API_TOKEN`: when set, every mutating REST endpoint and all of `/mcp` require
    /// `Authorization: Bearer <token>`; unset, they are open, as the original's were.
    pub api_token: Option<Secret>,
    /// `API_TOKEN_FOR_READS`: the token guards the REST reads too (all but `/`, `/health` and
    /// `/api/v1/`, which probes use).
    pub api_token_for_reads: bool,
    /// `MCP_ALLOWED_HOSTS`: the `Host` names (optionally `name:port`) `/mcp` answers; any other
    /// gets a 403, against DNS rebinding. `*` admits any.
    pub mcp_allowed_hosts: Vec<String>,
    /// `MCP_ALLOWED_ORIGINS`: browser origins (`https://app.example.com`, `http://localhost:*`)
    /// `/mcp` accepts; a request with any other `Origin` gets a 403 (one without is not
    /// concerned). Empty: every `Origin` is refused; `*` admits any.
    pub mcp_allowed_origins: Vec<String>,
}

/// The `Host` names `/mcp` answers by default: this machine's loopback names.
pub const DEFAULT_MCP_ALLOWED_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// Start-up refused: every bad variable, one line each.
#[derive(Debug, thiserror::Error)]
#[error("invalid settings:\n  {}", .problems.join("\n  "))]
pub struct SettingsError {
    pub problems: Vec<String>,
}

impl Settings {
    /// Reads `.env` in the working directory (if any), then the process environment, which wins.
    ///
    /// # Errors
    /// Every variable that does not parse, and a `.env` that cannot be read.
    pub fn from_env() -> Result<Self, SettingsError> {
        let mut vars = HashMap::new();
        let dotenv = Path::new(".env");
        if dotenv.exists() {
            match dotenvy::from_path_iter(dotenv) {
                Ok(items) => {
                    for item in items {
                        match item {
                            Ok((key, value)) => {
                                vars.insert(key, value);
                            }
                            Err(error) => {
                                return Err(SettingsError {
                                    problems: vec![format!(".env: {error}")],
                                });
                            }
                        }
                    }
                }
                Err(error) => {
                    return Err(SettingsError {
                        problems: vec![format!(".env: {error}")],
                    });
                }
            }
        }
        vars.extend(std::env::vars());
        Self::from_vars(&vars)
    }

    /// Parses settings from a map of variables (tests build settings this way).
    ///
    /// # Errors
    /// Every variable that does not parse, all at once.
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Self, SettingsError> {
        let mut reader = Reader {
            vars,
            problems: Vec::new(),
        };
        let r = &mut reader;
        let volume = VolumeTest {
            max_probability: r.number_in("ALERT_MAX_PROBABILITY", 1e-3, PROBABILITY),
            min_ratio: r.number_in("ALERT_MIN_RATIO", 2.0, RATIO),
            rule_share: r.number_in("ALERT_RULE_SHARE", 0.001, SHARE),
        };
        let settings = Settings {
            api_host: r.parsed("API_HOST", "127.0.0.1".parse().expect("literal IP")),
            api_port: r.parsed("API_PORT", 8000),
            otlp_http_port: r
                .text("OTLP_HTTP_PORT")
                .is_some()
                .then(|| r.parsed("OTLP_HTTP_PORT", 4318)),
            otlp_max_concurrent_exports: r.ranged("OTLP_MAX_CONCURRENT_EXPORTS", 64, 1, 100_000),
            api_workers: r.optional_positive("API_WORKERS"),
            data_dir: PathBuf::from(r.text("DATA_DIR").unwrap_or("./data")),
            model_path: r.text("MODEL_PATH").map(PathBuf::from),
            model_contamination: r.contamination("MODEL_CONTAMINATION"),
            model_random_state: r.parsed("MODEL_RANDOM_STATE", 42),
            min_train_samples: r.ranged("MIN_TRAIN_SAMPLES", 50, 2, 10_000_000),
            n_estimators: r.ranged("IFOREST_N_ESTIMATORS", 100, 1, 10_000),
            anomaly_threshold: r.finite("ANOMALY_THRESHOLD", 0.0),
            false_alarm_budget: r.number_in(
                "FALSE_ALARM_BUDGET",
                DEFAULT_FALSE_ALARM_BUDGET,
                BUDGET,
            ),
            alert_conditions: r.alert_conditions("ALERT_CONDITIONS"),
            complex_alert_rules: r.complex_alert_rules("COMPLEX_ALERT_RULES", volume),
            slack_webhook_url: r.url("SLACK_WEBHOOK_URL").map(Secret::new),
            pagerduty_routing_key: r.text("PAGERDUTY_ROUTING_KEY").map(Secret::new),
            pagerduty_events_url: r
                .url("PAGERDUTY_EVENTS_URL")
                .unwrap_or_else(|| "https://events.pagerduty.com/v2/enqueue".to_owned()),
            generic_webhook_url: r.url("GENERIC_WEBHOOK_URL").map(Secret::new),
            generic_webhook_format: r.choice(
                "GENERIC_WEBHOOK_FORMAT",
                WebhookFormat::Native,
                &[
                    ("native", WebhookFormat::Native),
                    ("alertmanager", WebhookFormat::Alertmanager),
                ],
            ),
            alert_repeat_interval: r.seconds("ALERT_REPEAT_INTERVAL_SECONDS", 4 * 3600, 1),
            alert_timeout: r.seconds("ALERT_TIMEOUT_SECONDS", 10, 1),
            alert_queue_capacity: r.ranged("ALERT_QUEUE_CAPACITY", 1000, 1, 1_000_000),
            alert_max_attempts: u32::try_from(r.ranged("ALERT_MAX_ATTEMPTS", 12, 1, 1000))
                .unwrap_or(12),
            alert_retry_initial: r.positive_seconds("ALERT_RETRY_INITIAL_SECONDS", 1.0),
            alert_retry_max: r.positive_seconds("ALERT_RETRY_MAX_SECONDS", 300.0),
            alert_shutdown_timeout: r.seconds("ALERT_SHUTDOWN_TIMEOUT_SECONDS", 10, 0),
            alert_max_services: r.ranged("ALERT_MAX_SERVICES", 1000, 1, 1_000_000),
            alert_max_lateness: {
                let lateness = r.seconds("ALERT_MAX_LATENESS_SECONDS", 0, 0);
                (!lateness.is_zero()).then_some(lateness)
            },
            log_level: r.log_level("LOG_LEVEL"),
            log_format: r.choice(
                "LOG_FORMAT",
                LogFormat::Auto,
                &[
                    ("auto", LogFormat::Auto),
                    ("json", LogFormat::Json),
                    ("text", LogFormat::Text),
                ],
            ),
            max_recent_anomalies: r.ranged(
                "MAX_RECENT_ANOMALIES",
                DEFAULT_MAX_RECENT_ANOMALIES,
                1,
                100_000_000,
            ),
            max_feedback_records: r.ranged(
                "MAX_FEEDBACK_RECORDS",
                DEFAULT_MAX_FEEDBACK_RECORDS,
                1,
                100_000_000,
            ),
            feedback_store_path: r.text("FEEDBACK_STORE_PATH").map(PathBuf::from),
            max_body_bytes: r.ranged("MAX_BODY_BYTES", 10 * 1024 * 1024, 1024, 1 << 30),
            max_logs_per_request: r.ranged("MAX_LOGS_PER_REQUEST", 10_000, 1, 1_000_000),
            max_raw_log_bytes: r.ranged("MAX_RAW_LOG_BYTES", 64 * 1024, 16, 16 << 20),
            request_timeout: r.seconds("REQUEST_TIMEOUT_SECONDS", 30, 1),
            max_connections: r.ranged("MAX_CONNECTIONS", 1024, 1, 1_000_000),
            header_read_timeout: r.positive_seconds("HEADER_READ_TIMEOUT_SECONDS", 10.0),
            idle_timeout: r.positive_seconds("IDLE_TIMEOUT_SECONDS", 60.0),
            retrain_interval: {
                let interval = r.seconds("RETRAIN_INTERVAL_SECONDS", 3600, 0);
                (!interval.is_zero()).then_some(interval)
            },
            max_tracked_services: r.ranged("MAX_TRACKED_SERVICES", 200, 1, 1_000_000),
            tracked_service_idle: r.seconds("TRACKED_SERVICE_IDLE_SECONDS", 900, 1),
            reservoir_size: r.ranged("RESERVOIR_SIZE", 2048, 16, 10_000_000),
            max_features_per_service: r.ranged(
                "MAX_FEATURES_PER_SERVICE",
                DEFAULT_MAX_FEATURES_PER_SERVICE,
                1,
                100_000,
            ),
            regex_cache_size: r.ranged("REGEX_CACHE_SIZE", 256, 1, 100_000),
            regex_size_limit: r.ranged(
                "REGEX_SIZE_LIMIT_BYTES",
                DEFAULT_REGEX_SIZE_LIMIT,
                4096,
                64 << 20,
            ),
            max_patterns_per_request: r.ranged("MAX_PATTERNS_PER_REQUEST", 32, 1, 100_000),
            max_features_per_log: r.ranged(
                "MAX_FEATURES_PER_LOG",
                DEFAULT_MAX_FEATURES_PER_LOG,
                1,
                100_000,
            ),
            max_field_name_chars: r.ranged(
                "MAX_FIELD_NAME_CHARS",
                DEFAULT_MAX_FIELD_NAME_CHARS,
                8,
                1 << 16,
            ),
            database_url: r.database_url("DATABASE_URL").map(Secret::new),
            database_pool_size: r.ranged(
                "DATABASE_POOL_SIZE",
                PostgresOptions::DEFAULT_POOL_SIZE,
                2,
                1_000,
            ),
            database_connect_timeout: r.positive_seconds(
                "DATABASE_CONNECT_TIMEOUT_SECONDS",
                PostgresOptions::DEFAULT_CONNECT_TIMEOUT.as_secs_f64(),
            ),
            database_statement_timeout: r.positive_seconds(
                "DATABASE_STATEMENT_TIMEOUT_SECONDS",
                PostgresOptions::DEFAULT_STATEMENT_TIMEOUT.as_secs_f64(),
            ),
            database_ca_file: r.text("DATABASE_CA_FILE").map(PathBuf::from),
            model_sync_interval: r.positive_seconds("MODEL_SYNC_INTERVAL_SECONDS", 1.0),
            alert_delivery_lease: r.seconds(
                "ALERT_DELIVERY_LEASE_SECONDS",
                PostgresOptions::DEFAULT_DELIVERY_LEASE.as_secs(),
                5,
            ),
            store_synchronous: r.choice(
                "STORE_SYNCHRONOUS",
                Synchronous::Full,
                &[("full", Synchronous::Full), ("normal", Synchronous::Normal)],
            ),
            min_free_disk_bytes: r.ranged("MIN_FREE_DISK_BYTES", 64 << 20, 0, 1 << 50) as u64,
            max_stored_anomaly_bytes: r.ranged(
                "MAX_STORED_ANOMALY_BYTES",
                DEFAULT_MAX_STORED_ANOMALY_BYTES,
                1024,
                64 << 20,
            ),
            startup_integrity_check: r.choice(
                "STARTUP_INTEGRITY_CHECK",
                IntegrityCheck::Quick,
                &[
                    ("quick", IntegrityCheck::Quick),
                    ("full", IntegrityCheck::Full),
                    ("off", IntegrityCheck::Off),
                ],
            ),
            metrics_max_services: r.ranged(
                "METRICS_MAX_SERVICES",
                crate::metrics::DEFAULT_MAX_SERVICES,
                0,
                100_000,
            ),
            api_token: r.token("API_TOKEN").map(Secret::new),
            api_token_for_reads: r.flag("API_TOKEN_FOR_READS", false),
            mcp_allowed_hosts: r
                .list("MCP_ALLOWED_HOSTS", check_allowed_host)
                .unwrap_or_else(|| DEFAULT_MCP_ALLOWED_HOSTS.map(str::to_owned).to_vec()),
            mcp_allowed_origins: r
                .list("MCP_ALLOWED_ORIGINS", check_allowed_origin)
                .unwrap_or_default(),
        };
        if settings.api_token_for_reads && settings.api_token.is_none() {
            reader.problems.push(
                "API_TOKEN_FOR_READS=true needs API_TOKEN: there is no token to require".to_owned(),
            );
        }
        if settings.alert_retry_max < settings.alert_retry_initial {
            reader.problems.push(format!(
                "ALERT_RETRY_MAX_SECONDS ({} s) must not be below ALERT_RETRY_INITIAL_SECONDS ({} s)",
                settings.alert_retry_max.as_secs_f64(),
                settings.alert_retry_initial.as_secs_f64()
            ));
        }
        if let Some(port) = settings.otlp_http_port
            && port != 0
            && port == settings.api_port
        {
            reader.problems.push(format!(
                "OTLP_HTTP_PORT ({port}) must differ from API_PORT: the API port serves /v1/logs \
                 already; leave OTLP_HTTP_PORT unset for that"
            ));
        }
        if reader.problems.is_empty() {
            Ok(settings)
        } else {
            Err(SettingsError {
                problems: reader.problems,
            })
        }
    }

    /// Where the database lives.
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("aioops.db")
    }

    /// What the HTTP server needs: its connection limit and timeouts.
    pub fn server_limits(&self) -> ServerLimits {
        ServerLimits {
            max_connections: self.max_connections,
            header_read_timeout: self.header_read_timeout,
            idle_timeout: self.idle_timeout,
            request_timeout: self.request_timeout,
        }
    }

    /// What the store needs.
    /// How to reach PostgreSQL, when `DATABASE_URL` is set.
    pub fn postgres_options(&self) -> Option<PostgresOptions> {
        let url = self.database_url.as_ref()?;
        Some(PostgresOptions {
            url: url.expose().to_owned(),
            pool_size: self.database_pool_size,
            connect_timeout: self.database_connect_timeout,
            statement_timeout: self.database_statement_timeout,
            ca_file: self.database_ca_file.clone(),
            delivery_lease: self.alert_delivery_lease,
        })
    }

    pub fn store_options(&self) -> StoreOptions {
        StoreOptions {
            max_recent_anomalies: self.max_recent_anomalies,
            max_feedback_records: self.max_feedback_records,
            synchronous: self.store_synchronous,
            integrity_check: self.startup_integrity_check,
        }
    }

    /// What the parser keeps and compiles.
    pub fn parse_limits(&self) -> ParseLimits {
        ParseLimits {
            fields: FieldLimits {
                max_fields: self.max_features_per_log,
                max_name_chars: self.max_field_name_chars,
            },
            regex_cache_size: self.regex_cache_size,
            regex_size_limit: self.regex_size_limit,
        }
    }

    /// What the learning loop needs.
    pub fn learner_config(&self) -> LearnerConfig {
        LearnerConfig {
            min_train_samples: self.min_train_samples,
            n_estimators: self.n_estimators,
            contamination: self.model_contamination,
            seed: self.model_random_state,
            reservoir_size: self.reservoir_size,
            max_features_per_service: self.max_features_per_service,
            max_patterns_per_request: self.max_patterns_per_request,
            max_tracked_services: self.max_tracked_services,
            tracked_service_idle: self.tracked_service_idle,
            data_dir: self.data_dir.clone(),
            false_alarm_budget: self.false_alarm_budget,
        }
    }

    /// What alerting needs: the rate rules, the tracker's limits, the channels (console first,
    /// then every one configured) and delivery.
    pub fn alert_config(&self) -> AlertConfig {
        let mut channels = vec![Channel::Console];
        if let Some(url) = &self.slack_webhook_url {
            channels.push(Channel::Slack { url: url.clone() });
        }
        if let Some(routing_key) = &self.pagerduty_routing_key {
            channels.push(Channel::PagerDuty {
                url: self.pagerduty_events_url.clone(),
                routing_key: routing_key.clone(),
            });
        }
        if let Some(url) = &self.generic_webhook_url {
            channels.push(Channel::Webhook {
                url: url.clone(),
                format: self.generic_webhook_format,
            });
        }
        AlertConfig {
            rules: self.complex_alert_rules.clone(),
            limits: TrackerLimits {
                repeat_interval: self.alert_repeat_interval,
                max_services: self.alert_max_services,
                max_lateness: self.alert_max_lateness,
            },
            channels,
            timeout: self.alert_timeout,
            queue_capacity: self.alert_queue_capacity,
            retry: RetryPolicy {
                initial: self.alert_retry_initial,
                max: self.alert_retry_max,
                max_attempts: self.alert_max_attempts,
            },
            shutdown_timeout: self.alert_shutdown_timeout,
        }
    }
}

/// One `MCP_ALLOWED_HOSTS` entry: `*`, or a host name or address with an optional port, as a
/// `Host` header spells it (`aioops`, `aioops.monitoring.svc:8000`, `[::1]`).
fn check_allowed_host(item: &str) -> Result<(), String> {
    if item == "*" || item.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    if item.contains("://") || item.contains('/') {
        return Err("expected a host name (optionally host:port), not a URL".to_owned());
    }
    match item.parse::<axum::http::uri::Authority>() {
        Ok(authority) if !authority.as_str().contains('@') => Ok(()),
        _ => Err("expected a host name (optionally host:port)".to_owned()),
    }
}

/// One `MCP_ALLOWED_ORIGINS` entry: `*`, `null`, or `scheme://host` with an optional port or
/// `:*` (any port).
fn check_allowed_origin(item: &str) -> Result<(), String> {
    if item == "*" || item == "null" {
        return Ok(());
    }
    let Some((scheme, authority)) = item.split_once("://") else {
        return Err("expected an origin with its scheme, e.g. https://app.example.com".to_owned());
    };
    let host = authority.strip_suffix(":*").unwrap_or(authority);
    let valid = matches!(scheme, "http" | "https")
        && !host.is_empty()
        && !host.contains(['/', '@', '?', '#'])
        && host.parse::<axum::http::uri::Authority>().is_ok();
    if valid {
        Ok(())
    } else {
        Err("expected http:// or https:// and a host, optionally :port or :*, no path".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_match_the_contract() {
        let settings = Settings::from_vars(&HashMap::new()).expect("defaults are valid");
        assert_eq!(settings.api_port, 8000);
        assert_eq!(settings.model_contamination, Contamination::Fraction(0.05));
        assert_eq!(settings.model_random_state, 42);
        assert_eq!(settings.min_train_samples, 50);
        assert_eq!(settings.n_estimators, 100);
        assert_eq!(settings.data_dir, PathBuf::from("./data"));
        assert_eq!(settings.retrain_interval, Some(Duration::from_secs(3600)));
    }

    #[test]
    fn connection_limits_default_and_accept_fractions_of_a_second() {
        let limits = Settings::from_vars(&HashMap::new())
            .expect("defaults are valid")
            .server_limits();
        assert_eq!(limits.max_connections, 1024);
        assert_eq!(limits.header_read_timeout, Duration::from_secs(10));
        assert_eq!(limits.idle_timeout, Duration::from_secs(60));
        let limits = Settings::from_vars(&vars(&[
            ("MAX_CONNECTIONS", "4"),
            ("HEADER_READ_TIMEOUT_SECONDS", "0.5"),
            ("IDLE_TIMEOUT_SECONDS", "1"),
        ]))
        .expect("valid")
        .server_limits();
        assert_eq!(limits.max_connections, 4);
        assert_eq!(limits.header_read_timeout, Duration::from_millis(500));
        assert_eq!(limits.idle_timeout, Duration::from_secs(1));
    }

    #[test]
    fn a_database_url_selects_postgresql_and_a_bad_one_is_refused_unshown() {
        let settings = Settings::from_vars(&vars(&[])).expect("valid");
        assert!(settings.postgres_options().is_none(), "SQLite by default");
        let settings = Settings::from_vars(&vars(&[("DATABASE_URL", "  ")])).expect("valid");
        assert!(settings.postgres_options().is_none(), "empty is unset");
        let url = "postgres://aioops:s3cret@db:5432/aioops?sslmode=verify-full";
        let settings = Settings::from_vars(&vars(&[
            ("DATABASE_URL", url),
            ("DATABASE_POOL_SIZE", "4"),
            ("DATABASE_CONNECT_TIMEOUT_SECONDS", "1.5"),
        ]))
        .expect("valid");
        let postgres = settings.postgres_options().expect("PostgreSQL");
        assert_eq!(postgres.url, url);
        assert_eq!(postgres.pool_size, 4);
        assert_eq!(postgres.connect_timeout, Duration::from_millis(1500));
        for bad in [
            "mysql://root:s3cret@db/x",
            "postgres://s3cret@db/x?sslmode=sometimes",
        ] {
            let error =
                Settings::from_vars(&vars(&[("DATABASE_URL", bad), ("DATABASE_POOL_SIZE", "1")]))
                    .expect_err("refused");
            let text = error.to_string();
            assert!(text.contains("DATABASE_URL"), "{text}");
            assert!(text.contains("DATABASE_POOL_SIZE"), "{text}");
            assert!(!text.contains("s3cret"), "the URL is a secret: {text}");
        }
    }

    #[test]
    fn bad_connection_limits_are_named() {
        let error = Settings::from_vars(&vars(&[
            ("MAX_CONNECTIONS", "0"),
            ("HEADER_READ_TIMEOUT_SECONDS", "0"),
            ("IDLE_TIMEOUT_SECONDS", "forever"),
        ]))
        .expect_err("refused");
        let text = error.to_string();
        for name in [
            "MAX_CONNECTIONS",
            "HEADER_READ_TIMEOUT_SECONDS",
            "IDLE_TIMEOUT_SECONDS",
        ] {
            assert!(text.contains(name), "{name} missing from: {text}");
        }
    }

    #[test]
    fn the_otlp_port_is_off_unless_set_and_a_bad_one_is_named() {
        let settings = Settings::from_vars(&vars(&[])).expect("defaults");
        assert_eq!(settings.otlp_http_port, None);
        assert_eq!(settings.otlp_max_concurrent_exports, 64);
        let settings = Settings::from_vars(&vars(&[
            ("OTLP_HTTP_PORT", "4318"),
            ("OTLP_MAX_CONCURRENT_EXPORTS", "8"),
        ]))
        .expect("valid");
        assert_eq!(settings.otlp_http_port, Some(4318));
        assert_eq!(settings.otlp_max_concurrent_exports, 8);
        let error = Settings::from_vars(&vars(&[
            ("OTLP_HTTP_PORT", "70000"),
            ("OTLP_MAX_CONCURRENT_EXPORTS", "0"),
        ]))
        .expect_err("refused");
        let message = error.to_string();
        assert!(message.contains("OTLP_HTTP_PORT"), "{message}");
        assert!(message.contains("OTLP_MAX_CONCURRENT_EXPORTS"), "{message}");
        let error = Settings::from_vars(&vars(&[("API_PORT", "9000"), ("OTLP_HTTP_PORT", "9000")]))
            .expect_err("refused");
        assert!(
            error.to_string().contains("must differ from API_PORT"),
            "{error}"
        );
    }

    #[test]
    fn every_bad_setting_is_named_at_once() {
        let error = Settings::from_vars(&vars(&[
            ("API_PORT", "eighty"),
            ("MODEL_CONTAMINATION", "0.9"),
            ("ALERT_CONDITIONS", "{not json"),
            (
                "COMPLEX_ALERT_RULES",
                r#"{"web_server": {"count": 3, "window_seconds": -5, "burst": 1}}"#,
            ),
            ("SLACK_WEBHOOK_URL", "hooks.slack.com/secret-token"),
        ]))
        .expect_err("bad settings are refused");
        let text = error.to_string();
        for name in [
            "API_PORT",
            "MODEL_CONTAMINATION",
            "ALERT_CONDITIONS",
            "window_seconds",
            "\"burst\"",
            "SLACK_WEBHOOK_URL",
        ] {
            assert!(text.contains(name), "{name} missing from: {text}");
        }
        assert!(!text.contains("secret-token"), "secrets leak: {text}");
    }

    #[test]
    fn a_threshold_that_is_not_a_number_is_refused() {
        let error = Settings::from_vars(&vars(&[(
            "ALERT_CONDITIONS",
            r#"{"web_server": {"response_time": "fast"}}"#,
        )]))
        .expect_err("refused");
        assert!(error.to_string().contains("web_server.response_time"));
    }

    #[test]
    fn user_alert_conditions_merge_over_builtin_ones() {
        let settings = Settings::from_vars(&vars(&[(
            "ALERT_CONDITIONS",
            r#"{"web_server": {"response_time": 100}, "payments": {"latency": 5}}"#,
        )]))
        .expect("valid");
        let rules = &settings.alert_conditions;
        assert!(
            rules
                .rules_for("web_server")
                .contains(&("response_time".to_owned(), 100.0))
        );
        assert!(
            rules
                .rules_for("web_server")
                .contains(&("error_rate".to_owned(), 0.1))
        );
        assert!(
            rules
                .rules_for("payments")
                .contains(&("latency".to_owned(), 5.0))
        );
    }

    #[test]
    fn zero_retrain_interval_turns_retraining_off() {
        let settings =
            Settings::from_vars(&vars(&[("RETRAIN_INTERVAL_SECONDS", "0")])).expect("valid");
        assert_eq!(settings.retrain_interval, None);
    }

    #[test]
    fn python_log_level_names_are_accepted() {
        let settings = Settings::from_vars(&vars(&[("LOG_LEVEL", "WARNING")])).expect("valid");
        assert_eq!(settings.log_level, "warn");
    }

    #[test]
    fn multi_line_single_quoted_json_in_dotenv_is_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(".env");
        std::fs::write(
            &path,
            "ALERT_CONDITIONS='{\n  \"web_server\": {\"response_time\": 1500}\n}'\nAPI_PORT=9000\n",
        )
        .expect("write");
        let vars: HashMap<String, String> = dotenvy::from_path_iter(&path)
            .expect("readable")
            .collect::<Result<_, _>>()
            .expect("parses");
        let settings = Settings::from_vars(&vars).expect("valid");
        assert_eq!(settings.api_port, 9000);
        assert!(
            settings
                .alert_conditions
                .rules_for("web_server")
                .contains(&("response_time".to_owned(), 1500.0))
        );
    }

    #[test]
    fn alert_delivery_settings_have_defaults() {
        let settings = Settings::from_vars(&HashMap::new()).expect("defaults are valid");
        assert_eq!(settings.alert_queue_capacity, 1000);
        assert_eq!(settings.alert_max_attempts, 12);
        assert_eq!(settings.alert_retry_initial, Duration::from_secs(1));
        assert_eq!(settings.alert_retry_max, Duration::from_secs(300));
        assert_eq!(settings.alert_shutdown_timeout, Duration::from_secs(10));
        assert_eq!(settings.alert_max_services, 1000);
        assert_eq!(settings.alert_max_lateness, None);
        assert_eq!(
            settings.alert_repeat_interval,
            Duration::from_secs(4 * 3600)
        );
    }

    #[test]
    fn alert_delivery_settings_accept_fractions_of_seconds() {
        let settings = Settings::from_vars(&vars(&[
            ("ALERT_RETRY_INITIAL_SECONDS", "0.05"),
            ("ALERT_RETRY_MAX_SECONDS", "0.5"),
            ("ALERT_SHUTDOWN_TIMEOUT_SECONDS", "0"),
            ("ALERT_QUEUE_CAPACITY", "5"),
            ("ALERT_MAX_ATTEMPTS", "3"),
            ("ALERT_MAX_SERVICES", "7"),
            ("ALERT_MAX_LATENESS_SECONDS", "90"),
        ]))
        .expect("valid");
        assert_eq!(settings.alert_retry_initial, Duration::from_millis(50));
        assert_eq!(settings.alert_retry_max, Duration::from_millis(500));
        assert_eq!(settings.alert_shutdown_timeout, Duration::ZERO);
        assert_eq!(settings.alert_queue_capacity, 5);
        assert_eq!(settings.alert_max_attempts, 3);
        assert_eq!(settings.alert_max_services, 7);
        assert_eq!(settings.alert_max_lateness, Some(Duration::from_secs(90)));
    }

    #[test]
    fn bad_alert_delivery_settings_are_each_named() {
        let error = Settings::from_vars(&vars(&[
            ("ALERT_QUEUE_CAPACITY", "0"),
            ("ALERT_MAX_ATTEMPTS", "many"),
            ("ALERT_RETRY_INITIAL_SECONDS", "0"),
            ("ALERT_SHUTDOWN_TIMEOUT_SECONDS", "-1"),
            ("ALERT_MAX_SERVICES", "0"),
            ("ALERT_MAX_LATENESS_SECONDS", "soon"),
        ]))
        .expect_err("refused");
        let text = error.to_string();
        for name in [
            "ALERT_QUEUE_CAPACITY",
            "ALERT_MAX_ATTEMPTS",
            "ALERT_RETRY_INITIAL_SECONDS",
            "ALERT_SHUTDOWN_TIMEOUT_SECONDS",
            "ALERT_MAX_SERVICES",
            "ALERT_MAX_LATENESS_SECONDS",
        ] {
            assert!(text.contains(name), "{name} missing from: {text}");
        }
        let error = Settings::from_vars(&vars(&[
            ("ALERT_RETRY_INITIAL_SECONDS", "10"),
            ("ALERT_RETRY_MAX_SECONDS", "2"),
        ]))
        .expect_err("max below initial is refused");
        assert!(error.to_string().contains("ALERT_RETRY_MAX_SECONDS"));
    }

    #[test]
    fn access_settings_default_to_open_with_loopback_hosts() {
        let settings = Settings::from_vars(&HashMap::new()).expect("defaults are valid");
        assert!(settings.api_token.is_none());
        assert!(!settings.api_token_for_reads);
        assert_eq!(
            settings.mcp_allowed_hosts,
            ["localhost", "127.0.0.1", "::1"]
        );
        assert!(settings.mcp_allowed_origins.is_empty());
    }

    #[test]
    fn access_settings_are_read_and_checked() {
        let settings = Settings::from_vars(&vars(&[
            ("API_TOKEN", "  0123456789abcdef0123  "),
            ("API_TOKEN_FOR_READS", "true"),
            (
                "MCP_ALLOWED_HOSTS",
                "aioops, aioops.monitoring.svc.cluster.local:8000,[::1],::1,*",
            ),
            (
                "MCP_ALLOWED_ORIGINS",
                "https://app.example.com:443,http://localhost:*,null",
            ),
        ]))
        .expect("valid");
        assert_eq!(
            settings.api_token.as_ref().map(Secret::expose),
            Some("0123456789abcdef0123")
        );
        assert!(settings.api_token_for_reads);
        assert_eq!(settings.mcp_allowed_hosts.len(), 5);
        assert_eq!(settings.mcp_allowed_origins.len(), 3);

        let error = Settings::from_vars(&vars(&[
            ("API_TOKEN", "tooshort"),
            ("MCP_ALLOWED_HOSTS", "https://evil.example.com/"),
            ("MCP_ALLOWED_ORIGINS", "app.example.com"),
            ("API_TOKEN_FOR_READS", "maybe"),
        ]))
        .expect_err("refused");
        let text = error.to_string();
        for name in [
            "API_TOKEN:",
            "MCP_ALLOWED_HOSTS",
            "MCP_ALLOWED_ORIGINS",
            "API_TOKEN_FOR_READS",
        ] {
            assert!(text.contains(name), "{name} missing from: {text}");
        }
        assert!(!text.contains("tooshort"), "the token is echoed: {text}");

        let error = Settings::from_vars(&vars(&[("API_TOKEN_FOR_READS", "true")]))
            .expect_err("reads need a token to require");
        assert!(error.to_string().contains("needs API_TOKEN"));
    }

    #[test]
    fn secrets_do_not_show_in_debug_output() {
        let settings = Settings::from_vars(&vars(&[
            ("PAGERDUTY_ROUTING_KEY", "R0UTINGKEY"),
            ("GENERIC_WEBHOOK_URL", "http://127.0.0.1:9/hook?token=abc"),
            ("API_TOKEN", "API-T0KEN-0123456789"),
        ]))
        .expect("valid");
        let debug = format!("{settings:?}");
        assert!(!debug.contains("API-T0KEN-0123456789"));
        assert!(!debug.contains("R0UTINGKEY"));
        assert!(!debug.contains("token=abc"));
    }
}
