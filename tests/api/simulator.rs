//! The `log-simulator` binary against a stub receiver on 127.0.0.1:0 that answers in the contract's
//! shape: delivery, retries, the summary's arithmetic, `--json`, batching, pacing and bad flags.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use chrono::Utc;
use clap::Parser;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use aioops_mcp_iforest::simulator::Args;
use aioops_mcp_iforest::simulator::generate::{GeneratedLog, Generator};

use crate::helpers::{free_port, serve};

const PATH: &str = "/api/v1/stream/multi-source";
const START: &str = "2024-01-15T10:00:00Z";

/// How the stub answers.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// 200 with one result per log, flagged by [`stub_flags`].
    Judge,
    /// The first `n` requests get `status`, then as `Judge`.
    FailFirst(usize, u16),
    /// Every request gets `status`.
    Always(u16),
    /// One result too few (the original's defect).
    ShortResults,
    /// `application` logs come back with a per-log error.
    ErrorOnApplication,
}

/// The stub's detector: ERROR lines, and WARN lines except the database's. Every cell of the
/// confusion matrix gets hits: normal 404s are WARN (FP), database model spikes are WARN (FN).
fn stub_flags(log: &Value) -> bool {
    let raw = log["raw_log"].as_str().unwrap_or_default();
    raw.contains("ERROR") || (raw.contains("WARN") && log["service"] != "database")
}

struct Stub {
    url: String,
    bodies: Arc<Mutex<Vec<Value>>>,
}

#[derive(Clone)]
struct StubState {
    mode: Mode,
    requests: Arc<AtomicUsize>,
    bodies: Arc<Mutex<Vec<Value>>>,
}

async fn ingest(State(state): State<StubState>, Json(body): Json<Value>) -> Response {
    let n = state.requests.fetch_add(1, Ordering::SeqCst);
    state.bodies.lock().expect("lock").push(body.clone());
    let logs = body["logs"].as_array().cloned().unwrap_or_default();
    let status = |code: u16| StatusCode::from_u16(code).expect("status");
    let judge = |log: &Value| {
        let flagged = stub_flags(log);
        json!({
            "score": if flagged { -0.2 } else { 0.1 },
            "is_anomaly": u8::from(flagged),
            "service": log["service"],
            "detector": if flagged { json!("rule") } else { Value::Null },
            "violations": [],
            "error": null,
        })
    };
    match state.mode {
        Mode::FailFirst(count, code) if n < count => {
            (status(code), Json(json!({"detail": "busy"}))).into_response()
        }
        Mode::Always(code) => (status(code), Json(json!({"detail": "no"}))).into_response(),
        Mode::ShortResults => {
            Json(logs.iter().skip(1).map(judge).collect::<Vec<_>>()).into_response()
        }
        Mode::ErrorOnApplication => Json(
            logs.iter()
                .map(|log| {
                    let mut result = judge(log);
                    if log["service"] == "application" {
                        result["is_anomaly"] = json!(0);
                        result["error"] = json!("pattern did not match");
                    }
                    result
                })
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Mode::Judge | Mode::FailFirst(..) => {
            Json(logs.iter().map(judge).collect::<Vec<_>>()).into_response()
        }
    }
}

async fn spawn_stub_on(listener: TcpListener, mode: Mode) -> Stub {
    let address = listener.local_addr().expect("bound");
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let state = StubState {
        mode,
        requests: Arc::new(AtomicUsize::new(0)),
        bodies: bodies.clone(),
    };
    let app = Router::new().route(PATH, post(ingest)).with_state(state);
    serve(listener, app);
    Stub {
        url: format!("http://{address}{PATH}"),
        bodies,
    }
}

async fn spawn_stub(mode: Mode) -> Stub {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    spawn_stub_on(listener, mode).await
}

impl Stub {
    fn bodies(&self) -> Vec<Value> {
        self.bodies.lock().expect("lock").clone()
    }

    fn batch_sizes(&self) -> Vec<usize> {
        self.bodies()
            .iter()
            .map(|b| b["logs"].as_array().map_or(0, Vec::len))
            .collect()
    }
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}): {:?}", self.stdout))
    }
}

async fn simulate_with_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_log-simulator"));
    command
        .args(args)
        .env_remove("MODEL_SERVER_URL")
        .env_remove("INTERVAL")
        .kill_on_drop(true);
    for (key, value) in env {
        command.env(key, value);
    }
    let output = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("the simulator finishes within 60 s")
        .expect("the simulator starts");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

async fn simulate(args: &[&str]) -> Run {
    simulate_with_env(args, &[]).await
}

/// The logs the binary generates for `args`, made in-process by the library.
fn expected_logs(args: &[&str], n: usize) -> Vec<GeneratedLog> {
    let parsed = Args::try_parse_from(std::iter::once("log-simulator").chain(args.iter().copied()))
        .expect("valid args");
    let seed = parsed.seed.expect("tests give a seed");
    Generator::new(parsed.generator_config(seed, Utc::now()))
        .take(n)
        .collect()
}

#[tokio::test]
async fn json_summary_is_one_object_with_the_documented_fields() {
    // Arrange
    let stub = spawn_stub(Mode::Judge).await;

    // Act
    let run = simulate(&[
        "--url", &stub.url, "--count", "30", "--rate", "1000", "--seed", "1", "--json",
    ])
    .await;

    // Assert
    assert_eq!(run.code, 0, "{}", run.stderr);
    let summary = run.json();
    for key in [
        "url",
        "seed",
        "elapsed_seconds",
        "logs_per_second",
        "interrupted",
        "reachable_at_end",
        "sent",
        "accepted",
        "rejected",
        "rejected_http",
        "log_errors",
        "undelivered",
        "batches",
        "retries",
        "connection_errors",
        "http_status",
        "detection",
        "by_kind",
        "by_detector",
        "last_error",
    ] {
        assert!(summary.get(key).is_some(), "missing {key}: {summary}");
    }
    for key in [
        "true_positives",
        "false_positives",
        "false_negatives",
        "true_negatives",
        "precision",
        "recall",
        "f1",
    ] {
        assert!(
            summary["detection"].get(key).is_some(),
            "missing detection.{key}"
        );
    }
    for kind in ["rule_spike", "model_spike", "error_burst"] {
        assert!(summary["by_kind"][kind]["judged"].is_u64(), "{kind}");
    }
    assert_eq!(summary["seed"], 1);
    assert_eq!(summary["url"], stub.url);
    assert_eq!(summary["sent"], 30);
    assert_eq!(summary["accepted"], 30);
    assert_eq!(summary["http_status"]["200"], 3);
    assert_eq!(summary["reachable_at_end"], true);
}

#[tokio::test]
async fn count_is_split_into_batches_of_the_requested_size() {
    let stub = spawn_stub(Mode::Judge).await;

    let run = simulate(&[
        "--url", &stub.url, "--count", "25", "--batch", "10", "--rate", "1000", "--seed", "2",
        "--quiet",
    ])
    .await;

    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(stub.batch_sizes(), [10, 10, 5]);
    assert!(run.stdout.contains("25 logs"), "{}", run.stdout);
}

#[tokio::test]
async fn the_same_seed_and_start_time_send_the_same_bodies_and_another_seed_does_not() {
    let args = |seed: &'static str, url: String| {
        vec![
            "--url".to_owned(),
            url,
            "--count".into(),
            "60".into(),
            "--rate".into(),
            "1000".into(),
            "--anomaly-ratio".into(),
            "0.3".into(),
            "--start-time".into(),
            START.into(),
            "--seed".into(),
            seed.into(),
            "-q".into(),
        ]
    };
    let mut bodies = Vec::new();
    for seed in ["7", "7", "8"] {
        let stub = spawn_stub(Mode::Judge).await;
        let args = args(seed, stub.url.clone());
        let run = simulate(&args.iter().map(String::as_str).collect::<Vec<_>>()).await;
        assert_eq!(run.code, 0, "{}", run.stderr);
        bodies.push(stub.bodies());
    }
    assert_eq!(bodies[0], bodies[1]);
    assert_ne!(bodies[0], bodies[2]);
    assert!(
        bodies[0][0]["logs"][0]["raw_log"]
            .as_str()
            .expect("raw_log")
            .contains("2024-01-15T10:00:00.000Z")
    );
}

#[tokio::test]
async fn the_summary_counts_the_stubs_verdicts_against_the_simulators_labels() {
    // Arrange
    let stub = spawn_stub(Mode::Judge).await;
    let args = [
        "--url",
        &stub.url,
        "--count",
        "400",
        "--batch",
        "50",
        "--rate",
        "10000",
        "--anomaly-ratio",
        "0.25",
        "--seed",
        "1234",
        "--start-time",
        START,
        "--json",
    ];
    let logs = expected_logs(&args, 400);
    let wire = |g: &GeneratedLog| serde_json::to_value(&g.log).expect("serializes");
    let (mut tp, mut fp, mut fn_, mut tn) = (0u64, 0u64, 0u64, 0u64);
    for g in &logs {
        match (g.label.is_anomaly(), stub_flags(&wire(g))) {
            (true, true) => tp += 1,
            (false, true) => fp += 1,
            (true, false) => fn_ += 1,
            (false, false) => tn += 1,
        }
    }
    assert!(
        tp > 0 && fp > 0 && fn_ > 0 && tn > 0,
        "{tp} {fp} {fn_} {tn}"
    );

    // Act
    let run = simulate(&args).await;

    // Assert
    assert_eq!(run.code, 0, "{}", run.stderr);
    let sent: Vec<Value> = stub
        .bodies()
        .iter()
        .flat_map(|b| b["logs"].as_array().cloned().unwrap_or_default())
        .collect();
    assert_eq!(sent, logs.iter().map(wire).collect::<Vec<_>>());
    let d = &run.json()["detection"];
    assert_eq!(d["true_positives"], tp);
    assert_eq!(d["false_positives"], fp);
    assert_eq!(d["false_negatives"], fn_);
    assert_eq!(d["true_negatives"], tn);
    let (p, r) = (tp as f64 / (tp + fp) as f64, tp as f64 / (tp + fn_) as f64);
    let f1 = 2.0 * p * r / (p + r);
    let close = |v: &Value, x: f64| (v.as_f64().expect("number") - x).abs() < 1e-4;
    assert!(close(&d["precision"], p), "{d}");
    assert!(close(&d["recall"], r), "{d}");
    assert!(close(&d["f1"], f1), "{d}");
    let summary = run.json();
    let judged: u64 = ["rule_spike", "model_spike", "error_burst"]
        .iter()
        .map(|k| summary["by_kind"][k]["judged"].as_u64().expect("count"))
        .sum();
    assert_eq!(judged, tp + fn_);
    assert_eq!(summary["by_detector"]["rule"], tp + fp);
}

#[tokio::test]
async fn transient_http_errors_are_retried_until_the_batch_is_judged() {
    let stub = spawn_stub(Mode::FailFirst(2, 503)).await;

    let run = simulate(&["--url", &stub.url, "--count", "10", "--seed", "3", "--json"]).await;

    assert_eq!(run.code, 0, "{}", run.stderr);
    let summary = run.json();
    assert_eq!(summary["retries"], 2);
    assert_eq!(summary["accepted"], 10);
    assert_eq!(summary["rejected"], 0);
    assert_eq!(stub.batch_sizes(), [10, 10, 10]);
    assert!(run.stderr.contains("HTTP 503"), "{}", run.stderr);
}

#[tokio::test]
async fn connection_errors_are_retried_until_the_service_comes_up() {
    // Arrange: a port with nothing behind it yet.
    let address = free_port().await;
    let url = format!("http://{address}{PATH}");

    // Act: the service appears while the simulator is backing off.
    let run = tokio::spawn(async move {
        simulate(&[
            "--url",
            &url,
            "--count",
            "10",
            "--retries",
            "8",
            "--seed",
            "4",
            "--json",
        ])
        .await
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    let listener = TcpListener::bind(address).await.expect("rebind");
    let stub = spawn_stub_on(listener, Mode::Judge).await;
    let run = run.await.expect("joins");

    // Assert
    assert_eq!(run.code, 0, "{}", run.stderr);
    let summary = run.json();
    assert!(
        summary["connection_errors"].as_u64() >= Some(1),
        "{summary}"
    );
    assert!(summary["retries"].as_u64() >= Some(1), "{summary}");
    assert_eq!(summary["accepted"], 10);
    assert_eq!(stub.batch_sizes(), [10]);
    assert!(run.stderr.contains("retrying"), "{}", run.stderr);
}

#[tokio::test]
async fn a_service_that_is_down_at_the_end_fails_the_run_with_a_clear_message() {
    let url = format!("http://{}{PATH}", free_port().await);

    let run = simulate(&[
        "--url",
        &url,
        "--count",
        "20",
        "--retries",
        "1",
        "--seed",
        "5",
        "--json",
    ])
    .await;

    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("could not be reached at the end of the run"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    let summary = run.json();
    assert_eq!(summary["undelivered"], 20);
    assert_eq!(summary["batches"]["undelivered"], 2);
    assert_eq!(summary["reachable_at_end"], false);
    assert_eq!(summary["retries"], 2);
    assert!(
        summary["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("could not reach")),
        "{summary}"
    );
}

#[tokio::test]
async fn rejected_batches_are_counted_and_a_run_with_nothing_judged_fails() {
    let stub = spawn_stub(Mode::Always(422)).await;

    let run = simulate(&[
        "--url", &stub.url, "--count", "20", "--rate", "1000", "--seed", "6", "--json",
    ])
    .await;

    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("judged none"), "{}", run.stderr);
    let summary = run.json();
    assert_eq!(summary["rejected_http"], 20);
    assert_eq!(summary["rejected"], 20);
    assert_eq!(summary["retries"], 0, "a 422 is not retried");
    assert_eq!(summary["http_status"]["422"], 2);
    assert_eq!(stub.batch_sizes().len(), 2);
}

#[tokio::test]
async fn per_log_errors_are_rejected_logs_and_stay_out_of_the_detection_figures() {
    let stub = spawn_stub(Mode::ErrorOnApplication).await;
    let args = [
        "--url", &stub.url, "--count", "90", "--rate", "1000", "--seed", "7", "--json",
    ];
    let applications = expected_logs(&args, 90)
        .iter()
        .filter(|g| g.log.service == "application")
        .count() as u64;

    let run = simulate(&args).await;

    assert_eq!(run.code, 0, "{}", run.stderr);
    let summary = run.json();
    assert_eq!(summary["log_errors"], applications);
    assert_eq!(summary["accepted"], 90 - applications);
    let d = &summary["detection"];
    let judged: u64 = [
        "true_positives",
        "false_positives",
        "false_negatives",
        "true_negatives",
    ]
    .iter()
    .map(|k| d[k].as_u64().expect("count"))
    .sum();
    assert_eq!(judged, 90 - applications);
}

#[tokio::test]
async fn results_that_do_not_line_up_with_the_logs_are_rejected() {
    let stub = spawn_stub(Mode::ShortResults).await;

    let run = simulate(&["--url", &stub.url, "--count", "10", "--seed", "8", "--json"]).await;

    assert_eq!(run.code, 1);
    let summary = run.json();
    assert_eq!(summary["rejected_http"], 10);
    assert!(
        summary["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("9 results for 10 logs")),
        "{summary}"
    );
}

#[tokio::test]
async fn model_server_url_and_interval_from_the_environment_are_honoured() {
    let stub = spawn_stub(Mode::Judge).await;

    let run = simulate_with_env(
        &["--count", "15", "--batch", "5", "--seed", "9", "--json"],
        &[("MODEL_SERVER_URL", &stub.url), ("INTERVAL", "0.2")],
    )
    .await;

    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(stub.batch_sizes(), [5, 5, 5]);
    let elapsed = run.json()["elapsed_seconds"].as_f64().expect("number");
    assert!(elapsed >= 0.39, "two pauses of 0.2 s: {elapsed}");
}

#[tokio::test]
async fn rate_wins_over_interval() {
    let stub = spawn_stub(Mode::Judge).await;

    let run = simulate_with_env(
        &[
            "--url", &stub.url, "--count", "20", "--batch", "5", "--rate", "1000", "--json",
        ],
        &[("INTERVAL", "5")],
    )
    .await;

    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.json()["elapsed_seconds"].as_f64() < Some(4.0));
}

#[tokio::test]
async fn duration_ends_the_run() {
    let stub = spawn_stub(Mode::Judge).await;

    let run = simulate(&[
        "--url",
        &stub.url,
        "--duration",
        "600ms",
        "--rate",
        "200",
        "--batch",
        "10",
        "--json",
    ])
    .await;

    assert_eq!(run.code, 0, "{}", run.stderr);
    let summary = run.json();
    let elapsed = summary["elapsed_seconds"].as_f64().expect("number");
    assert!((0.5..3.0).contains(&elapsed), "{elapsed}");
    assert!(summary["sent"].as_u64() > Some(50), "{summary}");
    assert!(
        summary["seed"].is_u64(),
        "a random seed is reported for reruns"
    );
}

#[tokio::test]
async fn the_text_summary_names_its_figures() {
    let stub = spawn_stub(Mode::Judge).await;

    let run = simulate(&[
        "--url", &stub.url, "--count", "20", "--rate", "1000", "--seed", "10",
    ])
    .await;

    assert_eq!(run.code, 0, "{}", run.stderr);
    for word in [
        "accepted",
        "rejected",
        "precision",
        "recall",
        "F1",
        "seed 10",
    ] {
        assert!(run.stdout.contains(word), "{word}: {}", run.stdout);
    }
}

#[tokio::test]
async fn services_limits_what_is_sent() {
    let stub = spawn_stub(Mode::Judge).await;

    let run = simulate(&[
        "--url",
        &stub.url,
        "--count",
        "30",
        "--rate",
        "1000",
        "--services",
        "database",
        "--seed",
        "11",
        "-q",
    ])
    .await;

    assert_eq!(run.code, 0, "{}", run.stderr);
    let bodies = stub.bodies();
    let services: Vec<&Value> = bodies
        .iter()
        .flat_map(|b| b["logs"].as_array().expect("logs"))
        .map(|log| &log["service"])
        .collect();
    assert_eq!(services.len(), 30);
    assert!(services.iter().all(|s| *s == "database"));
}

#[tokio::test]
async fn bad_flags_are_usage_errors() {
    for args in [
        &["--anomaly-ratio", "1.5"][..],
        &["--anomaly-ratio", "-0.1"],
        &["--batch", "0"],
        &["--rate", "0"],
        &["--rate", "fast"],
        &["--count", "0"],
        &["--duration", "10x"],
        &["--count", "5", "--duration", "5s"],
        &["--services", "mainframe"],
        &["--url", "not a url"],
        &["--url", "ftp://example.org/"],
        &["--start-time", "yesterday"],
        &["--no-such-flag"],
    ] {
        let run = simulate(args).await;
        assert_eq!(
            run.code, 2,
            "{args:?} should be a usage error: {}",
            run.stderr
        );
        assert!(run.stderr.contains("error"), "{args:?}: {}", run.stderr);
        assert!(run.stdout.is_empty(), "{args:?}");
    }
}

#[tokio::test]
async fn help_lists_every_option() {
    let run = simulate(&["--help"]).await;

    assert_eq!(run.code, 0);
    for flag in [
        "--url",
        "--rate",
        "--interval",
        "--batch",
        "--duration",
        "--count",
        "--anomaly-ratio",
        "--seed",
        "--services",
        "--warmup",
        "--json",
        "--quiet",
        "MODEL_SERVER_URL",
        "INTERVAL",
    ] {
        assert!(run.stdout.contains(flag), "{flag}");
    }
}

// The alert drill (`log-simulator alert-drill`) against a stand-in for the whole service.

/// The service as the drill sees it: ingest (judged by [`stub_flags`]); `/api/v1/models`, where
/// each service's model is fitted on every log it has seen, up to 2,048; and `/api/v1/alerts`,
/// where an `ERROR` line opens an alert for its service, or counts a burst on the one open.
#[derive(Debug, Default)]
struct Service {
    seen: std::collections::BTreeMap<String, u64>,
    /// Oldest first.
    alerts: Vec<StubAlert>,
    /// `/api/v1/alerts` answers 404.
    alerts_broken: bool,
    /// A new alert is listed only once the next ingest request has come (the real service stores
    /// alerts a moment after answering).
    store_late: bool,
    requests: u64,
    /// Raw logs received, in order.
    logs: Vec<String>,
}

#[derive(Debug, Clone)]
struct StubAlert {
    id: i64,
    service: String,
    firing: bool,
    bursts: u64,
    started_at: Option<chrono::DateTime<Utc>>,
    /// Listed once `requests` exceeds this.
    listed_after: u64,
}

impl StubAlert {
    fn firing(id: i64, service: &str, bursts: u64) -> Self {
        Self {
            id,
            service: service.to_owned(),
            firing: true,
            bursts,
            started_at: None,
            listed_after: 0,
        }
    }
}

type SharedService = Arc<Mutex<Service>>;

async fn service_ingest(State(service): State<SharedService>, Json(body): Json<Value>) -> Response {
    let logs = body["logs"].as_array().cloned().unwrap_or_default();
    let mut service = service.lock().expect("lock");
    service.requests += 1;
    let mut results = Vec::new();
    for log in &logs {
        let name = log["service"].as_str().unwrap_or_default().to_owned();
        let raw = log["raw_log"].as_str().unwrap_or_default().to_owned();
        *service.seen.entry(name.clone()).or_default() += 1;
        if raw.contains("ERROR") {
            let open = service
                .alerts
                .iter_mut()
                .find(|alert| alert.service == name && alert.firing);
            match open {
                Some(alert) => alert.bursts += 1,
                None => {
                    let mut alert = StubAlert::firing(service.alerts.len() as i64 + 1, &name, 1);
                    if service.store_late {
                        alert.started_at = Some(Utc::now());
                        alert.listed_after = service.requests;
                    }
                    service.alerts.push(alert);
                }
            }
        }
        service.logs.push(raw);
        let flagged = stub_flags(log);
        results.push(json!({
            "score": if flagged { -0.2 } else { 0.1 },
            "is_anomaly": u8::from(flagged),
            "service": name,
            "detector": if flagged { json!("rule") } else { Value::Null },
            "violations": [],
            "error": null,
        }));
    }
    Json(results).into_response()
}

async fn service_models(State(service): State<SharedService>) -> Response {
    let service = service.lock().expect("lock");
    let models: Vec<Value> = service
        .seen
        .iter()
        .filter(|(_, n)| **n >= 50)
        .map(|(name, n)| json!({"service": name, "training_samples": (*n).min(2048)}))
        .collect();
    Json(models).into_response()
}

async fn service_alerts(
    State(service): State<SharedService>,
    axum::extract::Query(query): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    let service = service.lock().expect("lock");
    if service.alerts_broken {
        return (StatusCode::NOT_FOUND, Json(json!({"detail": "Not Found"}))).into_response();
    }
    let limit: usize = query
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(100);
    let firing_only = query.get("state").is_some_and(|s| s == "firing");
    let alerts: Vec<Value> = service
        .alerts
        .iter()
        .rev()
        .filter(|alert| service.requests > alert.listed_after)
        .filter(|alert| !firing_only || alert.firing)
        .take(limit)
        .map(|alert| {
            json!({
                "id": alert.id, "service": alert.service,
                "state": if alert.firing { "firing" } else { "resolved" },
                "bursts": alert.bursts, "anomaly_count": alert.bursts, "deliveries": [],
                "started_at": alert.started_at,
            })
        })
        .collect();
    Json(alerts).into_response()
}

async fn spawn_service(service: Service) -> (String, SharedService) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("bound");
    let shared = Arc::new(Mutex::new(service));
    let app = Router::new()
        .route(PATH, post(service_ingest))
        .route("/api/v1/models", axum::routing::get(service_models))
        .route("/api/v1/alerts", axum::routing::get(service_alerts))
        .with_state(shared.clone());
    serve(listener, app);
    (format!("http://{address}{PATH}"), shared)
}

/// `args` for `log-simulator alert-drill`, parsed by the library.
fn drill_args(args: &[&str]) -> aioops_mcp_iforest::simulator::drill::DrillArgs {
    let parsed = Args::try_parse_from(std::iter::once("log-simulator").chain(args.iter().copied()))
        .expect("valid args");
    match parsed.command {
        Some(aioops_mcp_iforest::simulator::Command::AlertDrill(drill)) => drill,
        None => panic!("not a drill: {args:?}"),
    }
}

#[tokio::test]
async fn the_alert_drill_times_the_first_alert_to_the_batch_that_raised_it() {
    use aioops_mcp_iforest::simulator::drill::Phase;

    // Arrange: a database alert is firing from before and never resolves.
    let (url, service) = spawn_service(Service {
        alerts: vec![StubAlert::firing(1, "database", 4)],
        ..Service::default()
    })
    .await;
    let args = [
        "alert-drill",
        "--url",
        &url,
        "--seed",
        "5",
        "--start-time",
        START,
        "--rate",
        "100",
        "--batch",
        "50",
        "--warmup",
        "100",
        "--normal",
        "60s",
        "--incident",
        "30s",
        "--incident-share",
        "0.05",
        "--incident-kind",
        "rule_spike",
        "--quiet-timeout",
        "1s",
        "--json",
        "--quiet",
    ];
    // The incident's logs, made in-process: the first rule spike raises the stand-in's alert.
    let drill = drill_args(&args);
    let plans = drill.plans(START.parse().expect("time")).expect("plans");
    let incident: Vec<GeneratedLog> =
        Generator::new(drill.generator_config(&plans, Phase::Incident, 5))
            .take(plans.incident.logs as usize)
            .collect();
    let first = incident
        .iter()
        .position(|g| g.label.is_anomaly())
        .expect("the incident has anomalies") as f64;
    let spikes = incident.iter().filter(|g| g.label.is_anomaly()).count() as u64;
    // Batches of 50 logs at 100 logs/s: half a simulated second each.
    let expected = ((first / 50.0).floor() + 1.0) * 0.5;

    // Act
    let run = simulate(&args).await;

    // Assert
    assert_eq!(run.code, 0, "{}", run.stderr);
    let summary = run.json();
    let report = &summary["alert_drill"];
    assert_eq!(report["complete"], true, "{report}");
    assert_eq!(report["warmup"]["outcome"], "reached", "{report}");
    assert_eq!(report["warmup"]["models"]["web_server"], 100);
    let normal = &report["normal"];
    assert_eq!(normal["logs"], 6000);
    assert_eq!(normal["simulated_seconds"], 60.0);
    assert_eq!(normal["start"], "2024-01-15T10:00:01Z");
    assert_eq!(normal["alerts"], 0, "{normal}");
    assert_eq!(normal["alerts_per_hour"], 0.0);
    assert_eq!(normal["rule_trips"], 0);
    assert_eq!(normal["firing_before"], json!(["database"]));
    assert_eq!(normal["firing_at_start"], json!(["database"]));
    let incident_report = &report["incident"];
    assert_eq!(incident_report["kind"], "rule_spike");
    assert_eq!(incident_report["logs"], 3000);
    assert_eq!(incident_report["start"], "2024-01-15T10:01:01Z");
    assert_eq!(incident_report["injected"], spikes);
    assert_eq!(
        incident_report["time_to_first_alert_seconds"], expected,
        "{incident_report}"
    );
    assert_eq!(incident_report["first_alert_seen_seconds"], expected);
    assert_eq!(
        incident_report["first_alert_timed_by"], "seen",
        "no started_at"
    );
    assert_eq!(incident_report["resolution_seconds"], 0.5);
    assert_eq!(incident_report["first_alert_service"], "web_server");
    assert_eq!(incident_report["alerts"], 1);
    assert_eq!(
        incident_report["rule_trips"], spikes,
        "one alert, a burst per spike"
    );
    assert_eq!(
        incident_report["firing_at_end"],
        json!(["database", "web_server"])
    );
    // The usual summary counts every log of the three phases.
    assert_eq!(summary["sent"], 100 + 6000 + 3000);
    // The stand-in saw the incident's logs in time order, as generated.
    let logs = service.lock().expect("lock").logs.clone();
    let sent_incident: Vec<&str> = logs[6100..].iter().map(String::as_str).collect();
    let made: Vec<&str> = incident.iter().map(|g| g.log.raw_log.as_str()).collect();
    assert_eq!(sent_incident, made);
}

#[tokio::test]
async fn an_alert_stored_late_is_timed_to_the_batch_that_raised_it() {
    use aioops_mcp_iforest::simulator::drill::Phase;

    // Arrange: the stand-in lists a new alert only after the next batch has come.
    let (url, _service) = spawn_service(Service {
        store_late: true,
        ..Service::default()
    })
    .await;
    let args = [
        "alert-drill",
        "--url",
        &url,
        "--seed",
        "8",
        "--start-time",
        START,
        "--rate",
        "100",
        "--batch",
        "50",
        "--warmup",
        "0",
        "--normal",
        "10s",
        "--incident",
        "30s",
        "--incident-share",
        "0.05",
        "--incident-kind",
        "rule_spike",
        "--json",
        "--quiet",
    ];
    let drill = drill_args(&args);
    let plans = drill.plans(START.parse().expect("time")).expect("plans");
    let first = Generator::new(drill.generator_config(&plans, Phase::Incident, 8))
        .take(plans.incident.logs as usize)
        .position(|g| g.label.is_anomaly())
        .expect("the incident has anomalies") as f64;
    let expected = ((first / 50.0).floor() + 1.0) * 0.5;
    assert!(expected < 29.5, "the alert can be seen after a later batch");

    // Act
    let run = simulate(&args).await;

    // Assert: seen one batch late, placed by its started_at.
    assert_eq!(run.code, 0, "{}", run.stderr);
    let incident = &run.json()["alert_drill"]["incident"];
    assert_eq!(
        incident["time_to_first_alert_seconds"], expected,
        "{incident}"
    );
    assert_eq!(
        incident["first_alert_seen_seconds"],
        expected + 0.5,
        "{incident}"
    );
    assert_eq!(incident["first_alert_timed_by"], "started_at", "{incident}");
}

#[tokio::test]
async fn an_incident_nothing_alerts_on_is_reported_as_no_alert() {
    let (url, _service) = spawn_service(Service::default()).await;

    // Model spikes are WARN lines: the stand-in never raises an alert on them.
    let run = simulate(&[
        "alert-drill",
        "--url",
        &url,
        "--seed",
        "6",
        "--rate",
        "100",
        "--batch",
        "100",
        "--warmup",
        "60",
        "--normal",
        "10s",
        "--incident",
        "10s",
        "--incident-share",
        "0.3",
    ])
    .await;

    assert_eq!(run.code, 0, "{}", run.stderr);
    for words in [
        "alert drill: web_server at 100 simulated logs/s",
        "0 alerts = 0.00 per simulated hour",
        "model_spike at 30.0 % for 10 s simulated, 1000 logs: no alert",
    ] {
        assert!(run.stdout.contains(words), "{words}: {}", run.stdout);
    }
    let run = simulate(&[
        "alert-drill",
        "--url",
        &url,
        "--seed",
        "6",
        "--rate",
        "100",
        "--batch",
        "100",
        "--warmup",
        "0",
        "--normal",
        "10s",
        "--incident",
        "10s",
        "--incident-share",
        "0.3",
        "--json",
    ])
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let incident = &run.json()["alert_drill"]["incident"];
    assert_eq!(incident["time_to_first_alert_seconds"], Value::Null);
    assert_eq!(incident["alerts"], 0);
    assert_eq!(run.json()["alert_drill"]["warmup"]["outcome"], "skipped");
}

#[tokio::test]
async fn an_alert_listing_the_drill_cannot_read_fails_it_with_a_clear_message() {
    let (url, _service) = spawn_service(Service {
        alerts_broken: true,
        ..Service::default()
    })
    .await;

    let run = simulate(&[
        "alert-drill",
        "--url",
        &url,
        "--seed",
        "7",
        "--rate",
        "100",
        "--warmup",
        "0",
        "--normal",
        "10s",
        "--incident",
        "10s",
        "--json",
    ])
    .await;

    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("/api/v1/alerts"), "{}", run.stderr);
    assert!(run.stderr.contains("HTTP 404"), "{}", run.stderr);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
}

#[tokio::test]
async fn bad_alert_drill_flags_are_usage_errors() {
    for args in [
        &["alert-drill", "--rate", "0"][..],
        &["alert-drill", "--incident-share", "0"],
        &["alert-drill", "--incident-share", "1.5"],
        &["alert-drill", "--incident-kind", "meteor"],
        &["alert-drill", "--batch", "0"],
        &["alert-drill", "--concurrency", "0"],
        &["alert-drill", "--normal", "0"],
        &["alert-drill", "--rate", "1", "--incident", "100ms"],
        &["alert-drill", "--count", "5"],
        &["--count", "5", "alert-drill"],
    ] {
        let run = simulate(args).await;
        assert_eq!(
            run.code, 2,
            "{args:?} should be a usage error: {}",
            run.stderr
        );
        assert!(run.stderr.contains("error"), "{args:?}: {}", run.stderr);
        assert!(run.stdout.is_empty(), "{args:?}");
    }
}

#[tokio::test]
async fn alert_drill_help_lists_its_options_and_the_shared_ones() {
    let run = simulate(&["alert-drill", "--help"]).await;

    assert_eq!(run.code, 0);
    for flag in [
        "--services",
        "--rate",
        "--batch",
        "--concurrency",
        "--warmup",
        "--warmup-timeout",
        "--normal",
        "--incident",
        "--incident-share",
        "--incident-kind",
        "--quiet-timeout",
        "--url",
        "--seed",
        "--start-time",
        "--json",
    ] {
        assert!(run.stdout.contains(flag), "{flag}: {}", run.stdout);
    }
    let top = simulate(&["--help"]).await;
    assert!(top.stdout.contains("alert-drill"), "{}", top.stdout);
}
