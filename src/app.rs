//! Start-up and shutdown: builds the state from settings, binds the listener, spawns background work,
//! and stops gracefully (stop accepting, finish in-flight requests, close storage).

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::alert::AlertSystem;
use crate::api;
pub use crate::api::AppState;
use crate::detect::Detector;
use crate::ingest::IngestService;
use crate::ingest::{BatchLimits, Counters, Pipeline, PipelineLimits};
use crate::learn::Learner;
use crate::metrics::Metrics;
use crate::parse::Parser;
use crate::server::{self, ServerLimits};
use crate::settings::Settings;
use crate::store::Store;

/// A built application, bound to its port, not yet serving.
#[derive(Debug)]
pub struct App {
    listener: TcpListener,
    /// The OTLP/HTTP port's listener (`OTLP_HTTP_PORT`), when one is set.
    otlp_listener: Option<TcpListener>,
    state: AppState,
    limits: ServerLimits,
    background: Vec<JoinHandle<()>>,
}

impl App {
    /// Opens storage, loads models and binds `API_HOST:API_PORT` (port 0 picks a free one).
    ///
    /// # Errors
    /// The data directory or database cannot be opened, or the address cannot be bound.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&settings.data_dir)
            .with_context(|| format!("creating DATA_DIR {}", settings.data_dir.display()))?;
        if let Some(path) = &settings.feedback_store_path {
            tracing::warn!(
                path = %path.display(),
                "FEEDBACK_STORE_PATH is ignored: feedback is stored in the database in DATA_DIR."
            );
        }
        let store = match settings.postgres_options() {
            Some(postgres) => Store::connect(postgres, settings.store_options())
                .await
                .context("connecting to PostgreSQL (DATABASE_URL)")?,
            None => {
                let database = settings.database_path();
                Store::open(&database, settings.store_options())
                    .with_context(|| format!("opening the database {}", database.display()))?
            }
        };
        tracing::info!(backend = store.backend_name(), "Storage ready.");
        let settled = store
            .settle_unfinished_jobs("the service stopped before the job finished")
            .await
            .context("reading the training jobs")?;
        if settled.failed > 0 {
            tracing::warn!(
                jobs = settled.failed,
                "Training jobs interrupted by the last shutdown are marked failed; the models \
                 serving before them still serve."
            );
        }
        if settled.applied > 0 {
            tracing::warn!(
                jobs = settled.applied,
                "Training jobs whose models were applied just before the last shutdown are \
                 marked succeeded; their reports were lost."
            );
        }
        let metrics = Arc::new(Metrics::new(settings.metrics_max_services));
        let parser = Arc::new(Parser::with_limits(settings.parse_limits()));
        let detector = Arc::new(Detector::new(
            settings.alert_conditions.clone(),
            settings.anomaly_threshold,
        ));
        let learner = Arc::new(Learner::new(
            settings.learner_config(),
            Arc::clone(&parser),
            Arc::clone(&detector),
            store.clone(),
            Arc::clone(&metrics),
        ));
        let loaded = learner
            .load_models(settings.model_path.as_deref())
            .await
            .context("reading the model records")?;
        tracing::info!(models = loaded, "Models loaded.");
        let pipeline = Pipeline {
            parser,
            detector: Arc::clone(&detector),
            store: store.clone(),
            counters: Arc::new(Counters::default()),
            metrics: Arc::clone(&metrics),
            limits: PipelineLimits {
                max_raw_log_bytes: settings.max_raw_log_bytes,
                max_stored_anomaly_bytes: settings.max_stored_anomaly_bytes,
            },
        };
        let address = SocketAddr::new(settings.api_host, settings.api_port);
        let listener = TcpListener::bind(address)
            .await
            .with_context(|| format!("binding {address} (API_HOST, API_PORT)"))?;
        let otlp_listener = match settings.otlp_http_port {
            Some(port) => {
                let address = SocketAddr::new(settings.api_host, port);
                Some(
                    TcpListener::bind(address)
                        .await
                        .with_context(|| format!("binding {address} (API_HOST, OTLP_HTTP_PORT)"))?,
                )
            }
            None => None,
        };
        server::check_open_file_limit(settings.max_connections);
        warn_about_exposure(&settings, address);
        let alerts = AlertSystem::start(settings.alert_config(), store.clone())
            .await
            .context("starting the alert channels")?;
        let mut background = Vec::new();
        if let Some(interval) = settings.retrain_interval {
            background.push(tokio::spawn(Arc::clone(&learner).run_periodic(interval)));
        }
        if store.is_shared() {
            background.push(tokio::spawn(follow_shared_models(
                Arc::clone(&learner),
                settings.model_sync_interval,
            )));
        }
        let ingest = IngestService::new(
            pipeline.clone(),
            alerts.clone(),
            Arc::clone(&learner),
            BatchLimits {
                max_logs: settings.max_logs_per_request,
                max_patterns: settings.max_patterns_per_request,
            },
        );
        let limits = settings.server_limits();
        let otlp_exports = Arc::new(Semaphore::new(settings.otlp_max_concurrent_exports));
        let state = AppState {
            settings: Arc::new(settings),
            ingest,
            pipeline,
            detector,
            store,
            learner,
            alerts,
            metrics,
            otlp_exports,
        };
        Ok(Self {
            listener,
            otlp_listener,
            state,
            limits,
            background,
        })
    }

    /// The bound port (useful with port 0).
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map_or(0, |a| a.port())
    }

    /// The OTLP/HTTP port, when `OTLP_HTTP_PORT` is set (useful with 0).
    pub fn otlp_port(&self) -> Option<u16> {
        self.otlp_listener
            .as_ref()
            .and_then(|listener| listener.local_addr().ok())
            .map(|address| address.port())
    }

    /// The state the handlers share (tests inspect it).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Every route with its layers, as the server serves them (benchmarks drive it without a
    /// socket).
    pub fn router(&self) -> axum::Router {
        api::router(self.state.clone())
    }

    /// Serves until SIGTERM or SIGINT, then shuts down gracefully.
    ///
    /// # Errors
    /// The server fails or storage cannot be closed cleanly.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.run_until(crate::signal::shutdown_signal()).await
    }

    /// Serves until `shutdown` completes: stops accepting, lets in-flight requests finish, stops
    /// background work and closes storage.
    ///
    /// # Errors
    /// The server fails or storage cannot be closed cleanly.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Self {
            listener,
            otlp_listener,
            state,
            limits,
            background,
        } = self;
        let address = listener.local_addr().ok();
        tracing::info!(?address, "Serving.");
        let router = api::router(state.clone());
        // The OTLP port, when set, stops with the API port: one signal, seen by both servers.
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let signal = tokio::spawn(async move {
            shutdown.await;
            let _ = stop.send(true);
        });
        let stopped_signal = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
            // An error means the sender is gone, which is a stop too.
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        let otlp_server = otlp_listener.map(|otlp_listener| {
            let address = otlp_listener.local_addr().ok();
            tracing::info!(?address, "Serving OTLP/HTTP (POST /v1/logs).");
            tokio::spawn(server::serve(
                otlp_listener,
                api::otlp_router(state.clone()),
                limits,
                stopped_signal(stopped.clone()),
            ))
        });
        server::serve(listener, router, limits, stopped_signal(stopped)).await;
        signal.abort();
        if let Some(otlp_server) = otlp_server
            && let Err(error) = otlp_server.await
        {
            tracing::error!(%error, "The OTLP/HTTP server task failed.");
        }
        tracing::info!("In-flight requests finished; connections closed.");
        for task in background {
            task.abort();
        }
        // Queued alerts go out (within ALERT_SHUTDOWN_TIMEOUT_SECONDS) before storage closes.
        state.alerts.shutdown().await;
        tracing::info!("Alert delivery stopped.");
        let store = state.store.clone();
        drop(state);
        store.shutdown().await.context("closing the database")?;
        tracing::info!("Storage closed; bye.");
        Ok(())
    }
}

/// Start-up warnings about who can reach what: an open service beyond loopback, and an MCP door
/// that will refuse the names other machines use for it.
fn warn_about_exposure(settings: &Settings, address: SocketAddr) {
    for warning in exposure_warnings(settings) {
        tracing::warn!(address = %address, "{warning}");
    }
}

/// What [`warn_about_exposure`] says, one sentence each.
fn exposure_warnings(settings: &Settings) -> Vec<&'static str> {
    let mut warnings = Vec::new();
    if !reachable_beyond_this_host(settings.api_host) {
        return warnings;
    }
    if settings.api_token.is_none() {
        warnings.push(
            "Listening beyond loopback without API_TOKEN: anything that can reach this port can \
             post logs, delete the anomaly history, train models and use every MCP tool. Set \
             API_TOKEN (e.g. `openssl rand -hex 32`), or keep the port behind a firewall or a \
             network policy, or set API_HOST=127.0.0.1.",
        );
    }
    if settings
        .mcp_allowed_hosts
        .iter()
        .all(|host| crate::settings::DEFAULT_MCP_ALLOWED_HOSTS.contains(&host.as_str()))
    {
        warnings.push(
            "Listening beyond loopback, but MCP_ALLOWED_HOSTS names only loopback hosts: /mcp \
             refuses (403) requests that reach it by any other name. List the names clients use \
             (the Kubernetes Service, an ingress host) in MCP_ALLOWED_HOSTS.",
        );
    }
    warnings
}

/// Whether `host` lets other machines connect: anything but 127.0.0.0/8 and ::1 (an IPv4-mapped
/// loopback address included). `0.0.0.0` and `::` listen on every interface.
fn reachable_beyond_this_host(host: IpAddr) -> bool {
    let loopback = match host {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    };
    !loopback
}

/// Loads the models other replicas publish, every `interval`, for as long as the service runs.
async fn follow_shared_models(learner: Arc<Learner>, interval: std::time::Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        ticks.tick().await;
        match learner.sync_shared_models().await {
            Ok(_) => failing = false,
            Err(error) if !failing => {
                failing = true;
                tracing::warn!(%error, "Cannot read the models other replicas published; retrying.");
            }
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        let vars = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Settings::from_vars(&vars).expect("valid settings")
    }

    #[test]
    fn exposure_beyond_loopback_without_a_token_is_warned_about() {
        assert!(exposure_warnings(&settings(&[])).is_empty(), "loopback");
        let open = exposure_warnings(&settings(&[("API_HOST", "0.0.0.0")]));
        assert_eq!(open.len(), 2, "{open:?}");
        assert!(open[0].contains("without API_TOKEN"));
        assert!(open[1].contains("MCP_ALLOWED_HOSTS"));
        let guarded = exposure_warnings(&settings(&[
            ("API_HOST", "0.0.0.0"),
            ("API_TOKEN", "0123456789abcdef0123"),
            ("MCP_ALLOWED_HOSTS", "aioops.monitoring.svc"),
        ]));
        assert!(guarded.is_empty(), "{guarded:?}");
    }

    #[test]
    fn only_loopback_addresses_stay_on_this_host() {
        for local in ["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"] {
            let host: IpAddr = local.parse().expect("an address");
            assert!(!reachable_beyond_this_host(host), "{local}");
        }
        for exposed in [
            "0.0.0.0",
            "::",
            "10.0.0.5",
            "192.168.1.10",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            let host: IpAddr = exposed.parse().expect("an address");
            assert!(reachable_beyond_this_host(host), "{exposed}");
        }
    }
}
