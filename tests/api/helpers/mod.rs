//! `spawn_app()`: the real server on 127.0.0.1:0 with a temporary DATA_DIR, and one method per endpoint;
//! `receiver`: local HTTP servers standing in for alert receivers and other peers.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Once;
use std::time::{Duration, Instant};

use aioops_mcp_iforest::app::{App, AppState};
use aioops_mcp_iforest::settings::{LogFormat, Settings};
use aioops_mcp_iforest::telemetry;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub mod postgres;
pub mod process;
pub mod receiver;

pub use receiver::{Receiver, free_port, serve};

/// Every wait on alerts (a receiver's requests, the alert listing) gives up after this long.
pub const DEADLINE: Duration = Duration::from_secs(15);

static TRACING: Once = Once::new();

/// Tracing stays silent unless TEST_LOG=1.
fn init_tracing() {
    TRACING.call_once(|| {
        if std::env::var("TEST_LOG").is_ok_and(|v| v == "1") {
            telemetry::init("info", LogFormat::Text, std::io::stdout);
        }
    });
}

pub struct TestApp {
    pub address: String,
    /// The OTLP/HTTP port's address, when the test set `OTLP_HTTP_PORT`.
    pub otlp_address: Option<String>,
    pub client: reqwest::Client,
    pub data_dir: PathBuf,
    /// The running app's state, for tests that drive a stage directly (e.g. `state.alerts`).
    pub state: AppState,
    vars: HashMap<String, String>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
    /// Kept so the directory lives as long as the app (and across restarts).
    _tmp: std::sync::Arc<tempfile::TempDir>,
}

/// Settings for tests: port 0, a temporary data directory, no periodic retraining, plus `overrides`.
pub fn test_vars(
    data_dir: &std::path::Path,
    overrides: &[(&str, &str)],
) -> HashMap<String, String> {
    let mut vars: HashMap<String, String> = [
        ("API_PORT", "0"),
        ("API_HOST", "127.0.0.1"),
        ("RETRAIN_INTERVAL_SECONDS", "0"),
        ("STORE_SYNCHRONOUS", "normal"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    vars.insert(
        "DATA_DIR".to_owned(),
        data_dir.to_string_lossy().into_owned(),
    );
    for (k, v) in overrides {
        vars.insert((*k).to_owned(), (*v).to_owned());
    }
    vars
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

/// The server on an existing `data_dir` (e.g. one moved from another test app's), with its own
/// temporary directory kept alive.
pub async fn spawn_app_in(data_dir: PathBuf, overrides: &[(&str, &str)]) -> TestApp {
    init_tracing();
    let tmp = std::sync::Arc::new(tempfile::tempdir().expect("temporary directory"));
    start(test_vars(&data_dir, overrides), data_dir, tmp).await
}

pub async fn spawn_app_with(overrides: &[(&str, &str)]) -> TestApp {
    init_tracing();
    let tmp = std::sync::Arc::new(tempfile::tempdir().expect("temporary directory"));
    let data_dir = tmp.path().join("data");
    start(test_vars(&data_dir, overrides), data_dir, tmp).await
}

async fn start(
    vars: HashMap<String, String>,
    data_dir: PathBuf,
    tmp: std::sync::Arc<tempfile::TempDir>,
) -> TestApp {
    let settings = Settings::from_vars(&vars).expect("test settings are valid");
    let app = App::build(settings).await.expect("app builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let otlp_address = app
        .otlp_port()
        .map(|port| format!("http://127.0.0.1:{port}"));
    let state = app.state().clone();
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = rx.await;
    }));
    TestApp {
        address,
        otlp_address,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client"),
        data_dir,
        state,
        vars,
        shutdown: Some(tx),
        server: Some(server),
        _tmp: tmp,
    }
}

impl TestApp {
    /// Stops the server gracefully and waits until storage is closed.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server
                .await
                .expect("server task joins")
                .expect("server stops cleanly");
        }
    }

    /// Stops this server and starts a new one on the same DATA_DIR and settings.
    pub async fn restart(mut self) -> TestApp {
        self.stop().await;
        let vars = self.vars.clone();
        let data_dir = self.data_dir.clone();
        let tmp = std::sync::Arc::clone(&self._tmp);
        start(vars, data_dir, tmp).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request sent")
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn post_raw(
        &self,
        path: &str,
        body: Vec<u8>,
        content_type: Option<&str>,
    ) -> reqwest::Response {
        let mut request = self.client.post(self.url(path)).body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        request.send().await.expect("request sent")
    }

    pub async fn post_logs(&self, logs: &[Value]) -> reqwest::Response {
        self.post_json("/api/v1/stream/multi-source", &json!({ "logs": logs }))
            .await
    }

    /// Posts logs and returns the parsed results, asserting a 200.
    pub async fn ingest(&self, logs: &[Value]) -> Vec<Value> {
        let response = self.post_logs(logs).await;
        let status = response.status();
        let body: Value = response.json().await.expect("json body");
        assert_eq!(status, 200, "ingest failed: {body}");
        body.as_array().expect("a list of results").clone()
    }

    pub async fn get_anomalies(&self, query: &str) -> Vec<Value> {
        let response = self.get(&format!("/api/v1/anomalies{query}")).await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.expect("json");
        body.as_array().expect("list").clone()
    }

    pub async fn post_train(&self, logs: &[Value]) -> reqwest::Response {
        self.post_json("/api/v1/train", &json!({ "logs": logs }))
            .await
    }

    pub async fn post_feedback(&self, feedback: &[Value]) -> reqwest::Response {
        self.post_json("/api/v1/feedback", &json!({ "feedback": feedback }))
            .await
    }

    pub async fn metrics(&self) -> Value {
        self.get("/api/v1/metrics")
            .await
            .json()
            .await
            .expect("json")
    }

    /// Posts a training job (asserting a 202) and returns the job once it has finished.
    pub async fn train(&self, logs: &[Value]) -> Value {
        let response = self.post_train(logs).await;
        assert_eq!(response.status(), 202);
        let job_id = response.json::<Value>().await.expect("json")["job_id"]
            .as_str()
            .expect("job id")
            .to_owned();
        self.wait_for_job(&job_id).await
    }

    /// GET /api/v1/alerts, asserting a 200.
    pub async fn get_alerts(&self) -> Vec<Value> {
        let response = self.get("/api/v1/alerts").await;
        let status = response.status();
        let body = response.text().await.expect("body");
        assert_eq!(status, 200, "{body}");
        let body: Value = serde_json::from_str(&body).expect("json");
        body.as_array().expect("a list").clone()
    }

    /// Polls GET /api/v1/alerts until `done` holds for the list (bounded by [`DEADLINE`]).
    pub async fn wait_for_alerts(&self, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let start = Instant::now();
        loop {
            let alerts = self.get_alerts().await;
            if done(&alerts) {
                return alerts;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "alerts never matched: {alerts:#?}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// GET /api/v1/alerts/stats as JSON.
    pub async fn alert_stats(&self) -> Value {
        self.get("/api/v1/alerts/stats")
            .await
            .json()
            .await
            .expect("json")
    }

    /// The body of a GET as text, whatever its status.
    pub async fn get_text(&self, path: &str) -> String {
        self.get(path).await.text().await.expect("body")
    }

    /// Polls a training job until it has finished (bounded: 30 s).
    pub async fn wait_for_job(&self, job_id: &str) -> Value {
        for _ in 0..600 {
            let job: Value = self
                .get(&format!("/api/v1/train/{job_id}"))
                .await
                .json()
                .await
                .expect("json");
            if matches!(job["status"].as_str(), Some("succeeded" | "failed")) {
                return job;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("training job {job_id} did not finish in 30 s");
    }

    /// Polls until `service` has a model (bounded: 30 s).
    pub async fn wait_for_model(&self, service: &str) -> Value {
        for _ in 0..600 {
            let models: Value = self.get("/api/v1/models").await.json().await.expect("json");
            if let Some(model) = models
                .as_array()
                .and_then(|list| list.iter().find(|m| m["service"] == service))
            {
                return model.clone();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no model for {service} after 30 s");
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A web_server JSON log.
pub fn web_log(response_time: f64, error_rate: f64) -> Value {
    json!({
        "raw_log": json!({
            "timestamp": "2024-01-15T10:00:00Z",
            "level": "INFO",
            "message": "GET /api/users",
            "response_time": response_time,
            "error_rate": error_rate,
            "request_id": "req-123",
        }).to_string(),
        "service": "web_server",
        "source": "nginx",
        "format_type": "json",
    })
}

/// A database key=value log.
pub fn db_log(query_time_ms: u32, connections: u32) -> Value {
    json!({
        "raw_log": format!("2024-01-15T10:00:01Z INFO query_time={query_time_ms}ms connection_count={connections} error_rate=0.01"),
        "service": "database",
        "source": "postgres",
        "format_type": "key_value",
    })
}

/// The contract's application regex log.
pub fn app_log(memory: u32, cpu: u32, threads: u32) -> Value {
    json!({
        "raw_log": format!("2024-01-15T10:00:02Z [ERROR] Memory usage: {memory}% CPU usage: {cpu}% Thread count: {threads}"),
        "service": "application",
        "source": "app",
        "format_type": "regex",
        "custom_config": {
            "pattern": r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?)\s+\[(\w+)\]\s+Memory usage: (\d+)%\s+CPU usage: (\d+)%\s+Thread count: (\d+)",
            "field_mapping": {"0": "timestamp", "1": "level", "2": "memory_usage", "3": "cpu_usage", "4": "thread_count"},
        },
    })
}
