//! Alert delivery end to end: the real service on 127.0.0.1:0, with local HTTP receivers standing
//! in for Slack, PagerDuty (`PAGERDUTY_EVENTS_URL`) and a generic webhook.
//!
//! The rate tracker is driven through `AppState::alerts` with explicit times, so these tests do
//! not depend on the log parser; `ingested_rule_anomalies_page_once` goes through the HTTP ingest
//! endpoint as well, and `busy_normal_traffic_does_not_page_and_a_burst_on_it_pages_once` sends
//! 150,000 logs through it with simulated timestamps. Windows and backoffs are fractions of a
//! second; every wait is a bounded poll.

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::helpers::{Receiver, TestApp, free_port, spawn_app_with};

const ROUTING_KEY: &str = "R0UTING-KEY-SECRET";

/// Short windows and backoffs; `svc` and `other` fire at 3 anomalies in 30 s.
const ALERT_VARS: &[(&str, &str)] = &[
    (
        "COMPLEX_ALERT_RULES",
        r#"{"svc": {"count": 3, "window_seconds": 30}, "other": {"count": 3, "window_seconds": 30}}"#,
    ),
    ("ALERT_RETRY_INITIAL_SECONDS", "0.05"),
    ("ALERT_RETRY_MAX_SECONDS", "2"),
    ("ALERT_MAX_ATTEMPTS", "5"),
    ("ALERT_TIMEOUT_SECONDS", "2"),
    ("ALERT_SHUTDOWN_TIMEOUT_SECONDS", "2"),
];

/// The service with [`ALERT_VARS`], then `overrides`.
async fn spawn_alerting_app(overrides: &[(&str, &str)]) -> TestApp {
    spawn_app_with(&[ALERT_VARS, overrides].concat()).await
}

impl TestApp {
    /// Records `n` anomalies of `service` arriving now, without log timestamps.
    fn burst(&self, service: &str, n: usize) {
        for _ in 0..n {
            self.state.alerts.record(service, None, Utc::now());
        }
    }
}

fn delivery<'a>(alert: &'a Value, channel: &str, event: &str) -> Option<&'a Value> {
    alert["deliveries"]
        .as_array()?
        .iter()
        .find(|d| d["channel"] == channel && d["event"] == event)
}

fn is_rfc3339(value: &Value) -> bool {
    value
        .as_str()
        .is_some_and(|text| DateTime::parse_from_rfc3339(text).is_ok())
}

// ---------------------------------------------------------------------------------------------
// Tests

#[tokio::test]
async fn a_burst_pages_every_channel_exactly_once_per_window_per_service() {
    // Arrange
    let slack = Receiver::start(&[]).await;
    let pagerduty = Receiver::start(&[]).await;
    let webhook = Receiver::start(&[]).await;
    let slack_url = slack.url("/services/T000/B000/SLACKTOKEN");
    let pagerduty_url = pagerduty.url("/v2/enqueue");
    let webhook_url = webhook.url("/hook?token=HOOKTOKEN");
    let app = spawn_alerting_app(&[
        ("SLACK_WEBHOOK_URL", &slack_url),
        ("PAGERDUTY_ROUTING_KEY", ROUTING_KEY),
        ("PAGERDUTY_EVENTS_URL", &pagerduty_url),
        ("GENERIC_WEBHOOK_URL", &webhook_url),
    ])
    .await;

    // Act: a burst per service, then more anomalies (another burst included) while firing.
    app.burst("svc", 3);
    app.burst("other", 3);
    app.burst("svc", 5);

    // Assert: one page per service on every channel, and no more.
    let quiet = Duration::from_millis(500);
    let slack_requests = slack.expect_exactly(2, quiet).await;
    let pagerduty_requests = pagerduty.expect_exactly(2, quiet).await;
    let webhook_requests = webhook.expect_exactly(2, quiet).await;

    // Slack incoming webhook: Block Kit blocks plus the `text` fallback.
    for request in &slack_requests {
        assert_eq!(request.path, "/services/T000/B000/SLACKTOKEN");
        let body = &request.body;
        assert!(!body["text"].as_str().expect("text").is_empty(), "{body}");
        let blocks = body["blocks"].as_array().expect("blocks");
        assert!(!blocks.is_empty());
        assert!(blocks.iter().all(|b| b["type"].is_string()));
    }

    // PagerDuty Events API v2: routing_key, event_action, payload.{summary,source,severity}.
    let mut services = Vec::new();
    for request in &pagerduty_requests {
        let body = &request.body;
        assert_eq!(request.path, "/v2/enqueue");
        assert_eq!(body["routing_key"], ROUTING_KEY);
        assert_eq!(body["event_action"], "trigger");
        assert!(
            body["dedup_key"]
                .as_str()
                .is_some_and(|k| !k.is_empty() && k.len() <= 255)
        );
        let payload = &body["payload"];
        let summary = payload["summary"].as_str().expect("summary");
        assert!(!summary.is_empty() && summary.chars().count() <= 1024);
        assert!(payload["source"].as_str().is_some_and(|s| !s.is_empty()));
        assert!(
            ["critical", "error", "warning", "info"]
                .contains(&payload["severity"].as_str().expect("severity"))
        );
        assert!(is_rfc3339(&payload["timestamp"]), "{payload}");
        services.push(
            payload["custom_details"]["service"]
                .as_str()
                .expect("service")
                .to_owned(),
        );
    }
    services.sort();
    assert_eq!(services, vec!["other", "svc"]);

    // The generic webhook: the contract's body plus status and fingerprint.
    for request in &webhook_requests {
        let body = &request.body;
        assert_eq!(body["alert_type"], "high_anomaly_rate");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
        let details = &body["details"];
        assert!(details["service"].is_string());
        assert!(details["rule_violated"].is_string());
        assert_eq!(details["anomaly_count_in_window"], 3);
        assert_eq!(details["time_window_seconds"], 30.0);
        assert!(is_rfc3339(&details["last_anomaly_timestamp"]));
        assert_eq!(body["status"], "firing");
        assert!(body["fingerprint"].as_str().is_some_and(|f| f.len() == 16));
    }

    // The stored alert counts what arrived while it was firing, and every delivery.
    let alerts = app
        .wait_for_alerts(|alerts| {
            alerts
                .iter()
                .any(|a| a["service"] == "svc" && a["anomaly_count"] == 8)
        })
        .await;
    assert_eq!(alerts.len(), 2);
    let svc = alerts
        .iter()
        .find(|a| a["service"] == "svc")
        .expect("svc alert");
    assert_eq!(svc["state"], "firing");
    assert_eq!(svc["bursts"], 2);
    assert_eq!(svc["notifications"], 1);
    for channel in ["console", "slack", "pagerduty", "webhook"] {
        let delivered = delivery(svc, channel, "fired").expect("a delivery per channel");
        assert_eq!(delivered["status"], "delivered", "{channel}: {delivered}");
    }
    // Secrets never reach the API.
    let listing = app.get_text("/api/v1/alerts").await;
    let stats = app.get_text("/api/v1/alerts/stats").await;
    for text in [&listing, &stats] {
        for secret in ["SLACKTOKEN", "HOOKTOKEN", ROUTING_KEY] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
    }
    let stats: Value = serde_json::from_str(&stats).expect("json");
    assert_eq!(stats["fired"], 2);
    assert_eq!(stats["anomalies_recorded"], 11);
    assert_eq!(stats["channels"]["pagerduty"]["delivered"], 2);
}

#[tokio::test]
async fn a_receiver_answering_500_twice_gets_the_alert_exactly_once_more() {
    let webhook = Receiver::start(&[(500, None), (500, None)]).await;
    let url = webhook.url("/hook");
    let app = spawn_alerting_app(&[("GENERIC_WEBHOOK_URL", &url)]).await;

    app.burst("svc", 3);

    let requests = webhook.expect_exactly(3, Duration::from_millis(600)).await;
    assert!(requests.iter().all(|r| r.body == requests[0].body));
    let alerts = app
        .wait_for_alerts(|alerts| {
            alerts
                .first()
                .and_then(|a| delivery(a, "webhook", "fired"))
                .is_some_and(|d| d["status"] == "delivered")
        })
        .await;
    let delivered = delivery(&alerts[0], "webhook", "fired").expect("delivery");
    assert_eq!(delivered["attempts"], 3);
    assert_eq!(delivered["last_http_status"], 200);
    let stats = app.alert_stats().await;
    assert_eq!(stats["channels"]["webhook"]["retries"], 2);
    assert_eq!(stats["channels"]["webhook"]["delivered"], 1);
}

#[tokio::test]
async fn retry_after_on_429_is_honoured() {
    // The backoff would retry after 25-50 ms; the receiver asks for 1 s.
    let webhook = Receiver::start(&[(429, Some("1"))]).await;
    let url = webhook.url("/hook");
    let app = spawn_alerting_app(&[("GENERIC_WEBHOOK_URL", &url)]).await;

    app.burst("svc", 3);

    let requests = webhook.expect_exactly(2, Duration::from_millis(300)).await;
    let gap = requests[1].at.duration_since(requests[0].at);
    assert!(gap >= Duration::from_millis(950), "retried after {gap:?}");
    assert!(gap < Duration::from_secs(3), "retried after {gap:?}");
}

#[tokio::test]
async fn a_400_is_not_retried_and_is_recorded_as_rejected() {
    let webhook = Receiver::start(&[(400, None)]).await;
    let url = webhook.url("/hook");
    let app = spawn_alerting_app(&[("GENERIC_WEBHOOK_URL", &url)]).await;

    app.burst("svc", 3);

    // Several backoff periods pass without a second request.
    webhook.expect_exactly(1, Duration::from_millis(600)).await;
    let alerts = app
        .wait_for_alerts(|alerts| {
            alerts
                .first()
                .and_then(|a| delivery(a, "webhook", "fired"))
                .is_some_and(|d| d["status"] == "rejected")
        })
        .await;
    let rejected = delivery(&alerts[0], "webhook", "fired").expect("delivery");
    assert_eq!(rejected["attempts"], 1);
    assert_eq!(rejected["last_http_status"], 400);
    let stats = app.alert_stats().await;
    assert_eq!(stats["channels"]["webhook"]["rejected"], 1);
    assert_eq!(stats["channels"]["webhook"]["retries"], 0);
}

#[tokio::test]
async fn a_quiet_window_resolves_with_the_same_dedup_key() {
    let slack = Receiver::start(&[]).await;
    let pagerduty = Receiver::start(&[]).await;
    let webhook = Receiver::start(&[]).await;
    let (slack_url, pagerduty_url, webhook_url) = (
        slack.url("/s"),
        pagerduty.url("/v2/enqueue"),
        webhook.url("/w"),
    );
    let app = spawn_alerting_app(&[
        (
            "COMPLEX_ALERT_RULES",
            r#"{"svc": {"count": 3, "window_seconds": 0.5}}"#,
        ),
        ("SLACK_WEBHOOK_URL", &slack_url),
        ("PAGERDUTY_ROUTING_KEY", ROUTING_KEY),
        ("PAGERDUTY_EVENTS_URL", &pagerduty_url),
        ("GENERIC_WEBHOOK_URL", &webhook_url),
        ("GENERIC_WEBHOOK_FORMAT", "alertmanager"),
    ])
    .await;

    app.burst("svc", 3);

    // Trigger, then (after half a second without a burst) resolve.
    let events = pagerduty
        .expect_exactly(2, Duration::from_millis(800))
        .await;
    let (trigger, resolve) = (&events[0].body, &events[1].body);
    assert_eq!(trigger["event_action"], "trigger");
    assert_eq!(resolve["event_action"], "resolve");
    assert_eq!(resolve["routing_key"], ROUTING_KEY);
    assert!(trigger["dedup_key"].is_string());
    assert_eq!(resolve["dedup_key"], trigger["dedup_key"]);

    let messages = slack.wait_for(2).await;
    assert_ne!(
        messages[0].body["attachments"][0]["color"],
        messages[1].body["attachments"][0]["color"]
    );
    assert!(
        messages[1].body["text"]
            .as_str()
            .expect("text")
            .contains("Resolved")
    );

    // Alertmanager webhook JSON v4: firing then resolved, same fingerprint, endsAt set.
    let hooks = webhook.wait_for(2).await;
    assert_eq!(hooks[0].body["version"], "4");
    assert_eq!(hooks[0].body["status"], "firing");
    assert_eq!(hooks[1].body["status"], "resolved");
    let (first, last) = (&hooks[0].body["alerts"][0], &hooks[1].body["alerts"][0]);
    assert_eq!(first["fingerprint"], last["fingerprint"]);
    assert_eq!(first["labels"]["service"], "svc");
    assert!(is_rfc3339(&first["startsAt"]) && is_rfc3339(&last["endsAt"]));

    let alerts = app
        .wait_for_alerts(|alerts| alerts.first().is_some_and(|a| a["state"] == "resolved"))
        .await;
    assert!(alerts[0]["resolved_at"].is_string());
    assert_eq!(alerts[0]["dedup_key"], trigger["dedup_key"]);
}

#[tokio::test]
async fn an_alert_queued_while_the_receiver_is_down_is_delivered_after_a_restart() {
    // Arrange: nothing listens where the webhook points.
    let address = free_port().await;
    let url = format!("http://{address}/hook/TOPSECRET");
    let overrides = [
        ("GENERIC_WEBHOOK_URL", url.as_str()),
        ("ALERT_MAX_ATTEMPTS", "1000"),
        ("ALERT_RETRY_MAX_SECONDS", "0.2"),
        ("ALERT_SHUTDOWN_TIMEOUT_SECONDS", "0.3"),
    ];
    let mut app = spawn_alerting_app(&overrides).await;
    app.burst("svc", 3);
    let alerts = app
        .wait_for_alerts(|alerts| {
            alerts
                .first()
                .and_then(|a| delivery(a, "webhook", "fired"))
                .is_some_and(|d| d["attempts"].as_u64() >= Some(2))
        })
        .await;
    let pending = delivery(&alerts[0], "webhook", "fired").expect("delivery");
    assert_eq!(pending["status"], "pending");
    assert!(
        pending["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("connection"))
    );
    let listing = app.get_text("/api/v1/alerts").await;
    assert!(!listing.contains("TOPSECRET"), "{listing}");
    let fingerprint = alerts[0]["fingerprint"].clone();

    // Act: stop (the queue cannot drain: the deadline cuts it short), bring the receiver up,
    // start again on the same data and settings.
    let stopping = Instant::now();
    app.stop().await;
    assert!(
        stopping.elapsed() < Duration::from_secs(3),
        "{:?}",
        stopping.elapsed()
    );
    let webhook = Receiver::start_on(address, &[]).await;
    let app = app.restart().await;

    // Assert
    let received = webhook.wait_for(1).await;
    assert_eq!(received[0].body["status"], "firing");
    assert_eq!(received[0].body["fingerprint"], fingerprint);
    assert_eq!(received[0].path, "/hook/TOPSECRET");
    let alerts = app
        .wait_for_alerts(|alerts| {
            alerts
                .first()
                .and_then(|a| delivery(a, "webhook", "fired"))
                .is_some_and(|d| d["status"] == "delivered")
        })
        .await;
    // The alert itself survived too, still firing.
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0]["state"], "firing");
}

#[tokio::test]
async fn stopping_delivers_what_is_queued_before_exit() {
    let webhook = Receiver::start(&[(503, None)]).await;
    let url = webhook.url("/hook");
    // A generous deadline: this test is about draining, not about the deadline, and a loaded CI
    // machine must not turn it into a race.
    let mut app = spawn_alerting_app(&[
        ("GENERIC_WEBHOOK_URL", &url),
        ("ALERT_SHUTDOWN_TIMEOUT_SECONDS", "30"),
    ])
    .await;

    app.burst("svc", 3);
    app.stop().await;

    // No waiting: the 503, the retry and the 200 all happened before stop() returned.
    let received = webhook.received();
    assert_eq!(received.len(), 2, "{received:?}");
    assert_eq!(received[1].body["status"], "firing");
}

#[tokio::test]
async fn a_full_queue_drops_and_counts_instead_of_growing() {
    let address = free_port().await;
    let url = format!("http://{address}/hook");
    let app = spawn_alerting_app(&[
        ("GENERIC_WEBHOOK_URL", url.as_str()),
        ("ALERT_QUEUE_CAPACITY", "1"),
        ("ALERT_MAX_ATTEMPTS", "1000"),
        ("ALERT_SHUTDOWN_TIMEOUT_SECONDS", "0"),
    ])
    .await;

    app.burst("svc", 3);
    app.wait_for_alerts(|alerts| alerts.len() == 1).await;
    app.burst("other", 3);

    let alerts = app
        .wait_for_alerts(|alerts| {
            alerts
                .iter()
                .any(|a| delivery(a, "webhook", "fired").is_some_and(|d| d["status"] == "dropped"))
        })
        .await;
    let other = alerts
        .iter()
        .find(|a| a["service"] == "other")
        .expect("other");
    assert_eq!(
        delivery(other, "console", "fired").expect("console")["status"],
        "delivered"
    );
    let stats = app.alert_stats().await;
    assert_eq!(stats["channels"]["webhook"]["dropped_queue_full"], 1);
    assert_eq!(stats["channels"]["webhook"]["outbox"]["pending"], 1);
}

#[tokio::test]
async fn bad_alert_queries_get_fastapi_shaped_422s() {
    let app = spawn_alerting_app(&[]).await;
    let response = app.get("/api/v1/alerts?limit=abc&state=open").await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = response.json().await.expect("json");
    let detail = body["detail"].as_array().expect("a list");
    assert_eq!(detail.len(), 2);
    assert_eq!(detail[0]["loc"], json!(["query", "limit"]));
}

#[tokio::test]
async fn ingested_rule_anomalies_page_once() {
    let webhook = Receiver::start(&[]).await;
    let url = webhook.url("/hook");
    let app = spawn_alerting_app(&[
        ("GENERIC_WEBHOOK_URL", &url),
        (
            "COMPLEX_ALERT_RULES",
            r#"{"web_server": {"count": 3, "window_seconds": 60}}"#,
        ),
    ])
    .await;
    let log = |i: u32| {
        json!({
            "raw_log": json!({
                "timestamp": Utc::now().to_rfc3339(),
                "level": "ERROR",
                "message": format!("GET /slow/{i}"),
                "response_time": 5000,
            }).to_string(),
            "service": "web_server",
            "source": "nginx",
            "format_type": "json",
        })
    };
    let response = app.post_logs(&[log(1), log(2), log(3), log(4)]).await;
    assert_eq!(response.status(), 200);
    let results: Value = response.json().await.expect("json");
    assert!(
        results
            .as_array()
            .expect("list")
            .iter()
            .all(|r| r["is_anomaly"] == 1)
    );

    let received = webhook.expect_exactly(1, Duration::from_millis(500)).await;
    let details = &received[0].body["details"];
    assert_eq!(details["service"], "web_server");
    assert_eq!(details["anomaly_count_in_window"], 3);
    let alerts = app
        .wait_for_alerts(|alerts| alerts.first().is_some_and(|a| a["anomaly_count"] == 4))
        .await;
    assert_eq!(alerts.len(), 1);
}

// ---------------------------------------------------------------------------------------------
// Judged against traffic (issue #18)

/// A web_server access log `seconds` after `start`: latencies around 120 ms (log-normal), sizes that
/// follow them, a status that is mostly 200; `slow` makes it break the built-in response_time rule.
fn access_log(rng: &mut StdRng, start: DateTime<Utc>, seconds: f64, slow: bool) -> Value {
    let gaussian = |rng: &mut StdRng| {
        let (u, v): (f64, f64) = (rng.random::<f64>().max(1e-12), rng.random());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    };
    let shared = gaussian(rng);
    let response_time = if slow {
        5000.0
    } else {
        (120.0 * (0.3 * shared).exp()).round()
    };
    let bytes = (5000.0 * (0.4 * shared + 0.2 * gaussian(rng)).exp()).round();
    let status = if rng.random::<f64>() < 0.95 { 200 } else { 304 };
    let at = start + chrono::TimeDelta::milliseconds((seconds * 1000.0) as i64);
    json!({
        "raw_log": json!({
            "timestamp": at.to_rfc3339(),
            "level": "INFO",
            "message": "GET /api/cart",
            "response_time": response_time,
            "bytes": bytes,
            "status": status,
        }).to_string(),
        "service": "web_server",
        "source": "nginx",
        "format_type": "json",
    })
}

impl TestApp {
    /// Sends `seconds` of web_server traffic at `rate` logs per simulated second from
    /// `from` seconds after `start`, a `slow_share` of them breaking the response_time rule, in
    /// batches of 2,000; returns how many the service flagged.
    async fn send_traffic(
        &self,
        rng: &mut StdRng,
        start: DateTime<Utc>,
        (from, seconds): (f64, u32),
        rate: u32,
        slow_share: f64,
    ) -> usize {
        let total = seconds * rate;
        let mut flagged = 0;
        let mut sent = 0;
        while sent < total {
            let batch: Vec<Value> = (sent..(sent + 2000).min(total))
                .map(|i| {
                    let slow = rng.random::<f64>() < slow_share;
                    access_log(rng, start, from + f64::from(i) / f64::from(rate), slow)
                })
                .collect();
            sent += u32::try_from(batch.len()).expect("small");
            let results = self.ingest(&batch).await;
            flagged += results.iter().filter(|r| r["is_anomaly"] == 1).count();
        }
        flagged
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_normal_traffic_does_not_page_and_a_burst_on_it_pages_once() {
    let webhook = Receiver::start(&[]).await;
    let url = webhook.url("/hook");
    let app = spawn_alerting_app(&[
        ("GENERIC_WEBHOOK_URL", &url),
        (
            "COMPLEX_ALERT_RULES",
            r#"{"web_server": {"count": 3, "window_seconds": 60}}"#,
        ),
    ])
    .await;
    let mut rng = StdRng::seed_from_u64(18);
    // Half an hour ago, on a whole minute: the phases below start on whole traffic buckets.
    let ago = (Utc::now() - chrono::TimeDelta::minutes(30)).timestamp();
    let start = DateTime::from_timestamp(ago - ago % 60, 0).expect("a valid time");
    let training: Vec<Value> = (0..2000)
        .map(|i| access_log(&mut rng, start, f64::from(i) * 0.01, false))
        .collect();
    let job = app.train(&training).await;
    assert_eq!(job["status"], "succeeded", "training failed: {job}");

    // Four simulated minutes at 500 logs/s: the model flags a few tenths of a percent, which the
    // original's 3-in-60-s rule would have paged on minute after minute.
    let normal = app
        .send_traffic(&mut rng, start, (60.0, 240), 500, 0.0)
        .await;
    assert!(normal >= 12, "only {normal} of 120,000 normal logs flagged");
    webhook.expect_exactly(0, Duration::from_millis(300)).await;

    // Then a minute in which 5 % of the logs break the response_time rule.
    let burst = app
        .send_traffic(&mut rng, start, (300.0, 60), 500, 0.05)
        .await;
    assert!(burst >= 1000, "{burst} flagged in the burst");
    let received = webhook.expect_exactly(1, Duration::from_millis(500)).await;
    let body = &received[0].body;
    let details = &body["details"];
    assert_eq!(details["service"], "web_server");
    let logs = details["logs_in_window"].as_u64().expect("logs in window");
    let anomalies = details["anomalies_in_window"].as_u64().expect("anomalies");
    let expected = details["expected_anomalies"].as_f64().expect("expected");
    assert!(logs >= 3000, "{details}");
    assert!(anomalies as f64 >= 2.0 * expected, "{details}");
    assert_eq!(
        details["top_reason"]["label"], "rule: response_time",
        "{details}"
    );
    let message = body["message"].as_str().expect("a message");
    assert!(
        message.contains("expected") && message.contains("Top reason"),
        "{message}"
    );
    assert_eq!(app.get_alerts().await.len(), 1);
}
