//! GET /metrics on the real server: the values move with the traffic (N logs in, the counters grow
//! by N), requests are labelled by route template, the scraper's `Accept` picks the format, and
//! per-service series stay under their bound. The exposition is also checked by two independent
//! parsers (promtool and Python's prometheus_client) in `scripts/test-observability.sh`.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{Receiver, TestApp, spawn_app, spawn_app_with, web_log};

const OPENMETRICS: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

impl TestApp {
    /// GET /metrics in the 0.0.4 text format, asserting a 200.
    async fn scrape(&self) -> String {
        let response = self.get("/metrics").await;
        assert_eq!(response.status(), 200);
        response.text().await.expect("body")
    }
}

/// The value of one series (`name{labels}` exactly as exposed), 0 when it is absent.
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.parse().expect("a number"))
}

fn key_value_log(service: &str, line: &str) -> Value {
    json!({"raw_log": line, "service": service, "source": "test", "format_type": "key_value"})
}

#[tokio::test]
async fn n_logs_in_grow_the_log_counters_by_n() {
    // Arrange
    let app = spawn_app().await;
    let before = app.scrape().await;
    let mut logs: Vec<Value> = (0..7)
        .map(|i| web_log(100.0 + f64::from(i), 0.01))
        .collect();
    logs.push(web_log(5_000.0, 0.01)); // response_time above 2000: a rule anomaly
    logs.push(json!({"raw_log": "{not json", "service": "web_server", "source": "t", "format_type": "json"}));
    logs.push(key_value_log(
        "database",
        "query_time=20ms connection_count=5",
    ));
    logs.push(key_value_log(
        "database",
        "query_time=9000ms connection_count=5",
    ));

    // Act
    let results = app.ingest(&logs).await;
    let after = app.scrape().await;

    // Assert
    assert_eq!(results.len(), 11);
    let grew = |series: &str| value(&after, series) - value(&before, series);
    assert_eq!(grew("aioops_logs_ingested_total{format=\"json\"}"), 9.0);
    assert_eq!(
        grew("aioops_logs_ingested_total{format=\"key_value\"}"),
        2.0
    );
    assert_eq!(grew("aioops_log_parse_errors_total{format=\"json\"}"), 1.0);
    assert_eq!(
        grew("aioops_service_logs_total{service=\"web_server\"}"),
        9.0
    );
    assert_eq!(grew("aioops_service_logs_total{service=\"database\"}"), 2.0);
    assert_eq!(grew("aioops_anomalies_total{detector=\"rule\"}"), 2.0);
    assert_eq!(
        grew("aioops_service_anomalies_total{service=\"database\",detector=\"rule\"}"),
        1.0
    );
    for stage in ["decode", "parse", "detect", "store", "alert", "learn"] {
        let series = format!("aioops_ingest_stage_duration_seconds_count{{stage=\"{stage}\"}}");
        assert_eq!(grew(&series), 1.0, "{series}");
    }
    assert_eq!(
        grew(
            "aioops_http_requests_total{method=\"POST\",route=\"/api/v1/stream/multi-source\",status=\"200\"}"
        ),
        1.0
    );
    assert_eq!(value(&after, "aioops_stored_anomalies"), 2.0);
}

#[tokio::test]
async fn requests_are_labelled_by_route_template_never_by_their_path() {
    let app = spawn_app().await;
    for job in ["job-one", "job-two"] {
        let response = app.get(&format!("/api/v1/train/{job}")).await;
        assert_eq!(response.status(), 404);
    }
    assert_eq!(app.get("/no/such/secret-path").await.status(), 404);

    let text = app.scrape().await;

    assert_eq!(
        value(
            &text,
            "aioops_http_requests_total{method=\"GET\",route=\"/api/v1/train/{job_id}\",status=\"404\"}"
        ),
        2.0
    );
    assert_eq!(
        value(
            &text,
            "aioops_http_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"}"
        ),
        1.0
    );
    assert!(!text.contains("job-one"), "a raw path leaked into a label");
    assert!(
        !text.contains("secret-path"),
        "a raw path leaked into a label"
    );
}

#[tokio::test]
async fn the_scrapers_accept_header_picks_openmetrics_or_the_text_format() {
    let app = spawn_app().await;

    let plain = app.get("/metrics").await;
    let openmetrics = app
        .client
        .get(app.url("/metrics"))
        .header("accept", OPENMETRICS)
        .send()
        .await
        .expect("request sent");

    assert_eq!(
        plain.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let plain = plain.text().await.expect("body");
    assert!(plain.contains("# TYPE aioops_logs_ingested_total counter"));
    assert!(!plain.contains("# EOF"));
    assert_eq!(
        openmetrics.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let openmetrics = openmetrics.text().await.expect("body");
    assert!(openmetrics.contains("# TYPE aioops_logs_ingested counter"));
    assert!(openmetrics.ends_with("# EOF\n"));
}

#[tokio::test]
async fn services_beyond_the_bound_share_the_other_series() {
    let app = spawn_app_with(&[("METRICS_MAX_SERVICES", "2")]).await;
    let logs: Vec<Value> = ["alpha", "beta", "gamma", "delta", "alpha"]
        .iter()
        .map(|service| key_value_log(service, "latency=5ms"))
        .collect();

    app.ingest(&logs).await;
    let text = app.scrape().await;

    let series: Vec<&str> = text
        .lines()
        .filter(|line| line.starts_with("aioops_service_logs_total{"))
        .collect();
    assert_eq!(series.len(), 3, "{series:?}");
    assert_eq!(
        value(&text, "aioops_service_logs_total{service=\"alpha\"}"),
        2.0
    );
    assert_eq!(
        value(&text, "aioops_service_logs_total{service=\"__other__\"}"),
        2.0
    );
}

#[tokio::test]
async fn alert_deliveries_and_retries_are_counted_per_channel() {
    // The receiver answers 500 once, then 200.
    let webhook = Receiver::start(&[(500, None)]).await;
    let url = webhook.url("/hook");
    let app = spawn_app_with(&[
        ("GENERIC_WEBHOOK_URL", &url),
        (
            "COMPLEX_ALERT_RULES",
            r#"{"svc": {"count": 3, "window_seconds": 30, "pure_count": true}}"#,
        ),
        ("ALERT_RETRY_INITIAL_SECONDS", "0.05"),
        ("ALERT_TIMEOUT_SECONDS", "2"),
    ])
    .await;

    for _ in 0..3 {
        app.state.alerts.record("svc", None, chrono::Utc::now());
    }
    webhook.expect_exactly(2, Duration::from_millis(300)).await;
    app.wait_for_alerts(|alerts| {
        alerts.first().is_some_and(|alert| {
            alert["deliveries"]
                .as_array()
                .is_some_and(|d| d.iter().any(|d| d["status"] == "delivered"))
        })
    })
    .await;
    let text = app.scrape().await;

    assert_eq!(
        value(&text, "aioops_alerts_total{event=\"fired\"}"),
        1.0,
        "{text}"
    );
    assert_eq!(value(&text, "aioops_alerts_firing"), 1.0);
    assert_eq!(
        value(
            &text,
            "aioops_alert_notifications_total{channel=\"webhook\",outcome=\"delivered\"}"
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            "aioops_alert_delivery_retries_total{channel=\"webhook\"}"
        ),
        1.0
    );
    assert_eq!(
        value(&text, "aioops_alert_outbox_depth{channel=\"webhook\"}"),
        0.0
    );
    assert!(text.contains("aioops_alert_outbox_depth{channel=\"webhook\"} 0"));
}

#[tokio::test]
async fn a_training_job_shows_its_duration_and_the_models_age() {
    let app = spawn_app().await;
    let logs: Vec<Value> = (0..60)
        .map(|i| web_log(100.0 + f64::from(i % 17), 0.01 + f64::from(i % 5) / 1000.0))
        .collect();

    let job = app.train(&logs).await;
    let text = app.scrape().await;

    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(value(&text, "aioops_models"), 1.0);
    assert_eq!(
        value(
            &text,
            "aioops_training_duration_seconds_count{trigger=\"job\",outcome=\"succeeded\"}"
        ),
        1.0
    );
    let trained = value(
        &text,
        "aioops_model_trained_timestamp_seconds{service=\"web_server\"}",
    );
    let now = chrono::Utc::now().timestamp() as f64;
    assert!(trained > 0.0 && trained <= now + 1.0, "{trained}");
}
