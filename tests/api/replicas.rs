//! Several replicas of the real binary sharing one PostgreSQL (issue #16): requests spread
//! round-robin, no sticky routing, and the replicas behave as one service.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::Receiver;
use crate::helpers::postgres::{PostgresProxy, fresh_database_url};
use crate::helpers::process::ServiceProcess;

/// Five anomalies of `svc` within 30 s page, on the count alone.
const RATE_RULES: &str = r#"{"svc": {"count": 5, "window_seconds": 30, "pure_count": true}}"#;

struct Replicas {
    replicas: Vec<ServiceProcess>,
    _dirs: Vec<tempfile::TempDir>,
}

impl Replicas {
    async fn start(count: usize, database_url: &str, vars: &[(&str, &str)]) -> Self {
        let mut replicas = Vec::new();
        let mut dirs = Vec::new();
        for _ in 0..count {
            let dir = tempfile::tempdir().expect("tempdir");
            let log = dir.path().join("service.log");
            let mut all = vec![
                ("DATABASE_URL", database_url),
                ("COMPLEX_ALERT_RULES", RATE_RULES),
                ("ALERT_RETRY_INITIAL_SECONDS", "0.05"),
                ("ALERT_TIMEOUT_SECONDS", "2"),
            ];
            all.extend_from_slice(vars);
            replicas.push(ServiceProcess::start(&dir.path().join("data"), &log, &all).await);
            dirs.push(dir);
        }
        Self {
            replicas,
            _dirs: dirs,
        }
    }

    async fn post(&self, replica: usize, path: &str, body: &Value) -> reqwest::Response {
        let service = &self.replicas[replica];
        service
            .client
            .post(service.url(path))
            .json(body)
            .send()
            .await
            .expect("request")
    }

    async fn get(&self, replica: usize, path: &str) -> Value {
        let service = &self.replicas[replica];
        let response = service
            .client
            .get(service.url(path))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 200, "GET {path}");
        response.json().await.expect("json")
    }

    fn logs(&self, replica: usize) -> String {
        std::fs::read_to_string(&self.replicas[replica].log).unwrap_or_default()
    }
}

/// One log of `svc` whose error rate breaks the built-in rule (above 0.2).
fn rule_anomaly(n: usize) -> Value {
    json!({"logs": [{
        "raw_log": json!({"level": "ERROR", "error_rate": 0.9, "request": n}).to_string(),
        "service": "svc",
        "source": "test",
        "format_type": "json",
    }]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_split_across_three_replicas_pages_once_and_every_replica_agrees() {
    let database_url = fresh_database_url().await;
    let webhook = Receiver::start(&[]).await;
    let webhook_url = webhook.url("/hook");
    let replicas =
        Replicas::start(3, &database_url, &[("GENERIC_WEBHOOK_URL", &webhook_url)]).await;

    // Nine anomalies, one request each, round-robin: no replica sees five of them.
    for n in 0..9 {
        let response = replicas
            .post(n % 3, "/api/v1/stream/multi-source", &rule_anomaly(n))
            .await;
        assert_eq!(response.status(), 200);
    }

    // Exactly one notification, delivered exactly once, whichever replica delivers it.
    let received = webhook.expect_exactly(1, Duration::from_secs(3)).await;
    assert!(
        received[0].body.to_string().contains("svc"),
        "{:?}",
        received[0].body
    );
    let mut alert_ids = Vec::new();
    for replica in 0..3 {
        let alerts = replicas.get(replica, "/api/v1/alerts").await;
        let alerts = alerts.as_array().expect("a list");
        assert_eq!(
            alerts.len(),
            1,
            "replica {replica}: {alerts:?}\n{}",
            replicas.logs(replica)
        );
        assert_eq!(alerts[0]["state"], "firing");
        alert_ids.push(alerts[0]["id"].clone());
    }
    assert!(alert_ids.iter().all(|id| *id == alert_ids[0]));
    let mut leaders = Vec::new();
    for replica in 0..3 {
        let stats = replicas.get(replica, "/api/v1/alerts/stats").await;
        leaders.push(stats["rate_leader"] == true);
        // The windows are the leader's, whichever replica is asked (stored with the alert).
        assert_eq!(stats["tracked_services"], 1, "replica {replica}: {stats}");
        assert_eq!(stats["firing"], 1, "replica {replica}: {stats}");
    }
    assert_eq!(
        leaders.iter().filter(|&&leading| leading).count(),
        1,
        "{leaders:?}"
    );

    // The same history from every replica.
    let histories: Vec<Value> = {
        let mut histories = Vec::new();
        for replica in 0..3 {
            histories.push(replicas.get(replica, "/api/v1/anomalies?limit=100").await);
        }
        histories
    };
    assert_eq!(histories[0].as_array().map(Vec::len), Some(9));
    assert!(histories.iter().all(|history| *history == histories[0]));
}

fn checkout_log(latency_ms: f64, items: f64) -> Value {
    json!({
        "raw_log": json!({"timestamp": "2024-02-01T12:00:00Z", "level": "INFO",
                          "message": "order placed", "latency": format!("{latency_ms}ms"),
                          "items": items}).to_string(),
        "service": "checkout",
        "source": "api",
        "format_type": "json",
    })
}

/// A deterministic baseline around latency 100 ms and 3 items.
fn baseline(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            let wobble = ((i * 7919) % 41) as f64 - 20.0;
            let items = ((i * 31) % 5 + 1) as f64;
            checkout_log(100.0 + wobble, items)
        })
        .collect()
}

impl Replicas {
    /// The verdict `replica` gives `log`, once it serves a model for the log's service.
    async fn verdict_with_model(&self, replica: usize, log: &Value) -> Value {
        for _ in 0..200 {
            let response = self
                .post(
                    replica,
                    "/api/v1/stream/multi-source",
                    &json!({"logs": [log]}),
                )
                .await;
            assert_eq!(response.status(), 200);
            let results: Value = response.json().await.expect("json");
            let result = results[0].clone();
            if !result["score"].is_null() {
                return result;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "replica {replica} never loaded the model:\n{}",
            self.logs(replica)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_model_trained_on_one_replica_judges_on_all_with_feedback_given_to_another() {
    let database_url = fresh_database_url().await;
    let replicas =
        Replicas::start(3, &database_url, &[("MODEL_SYNC_INTERVAL_SECONDS", "0.2")]).await;

    // Feedback to replica 1: a slow-but-fine pattern is normal.
    let feedback: Vec<Value> = (0..30)
        .map(|i| json!({"log": checkout_log(390.0 + f64::from(i % 20), 3.0), "is_anomaly": 0}))
        .collect();
    let response = replicas
        .post(1, "/api/v1/feedback", &json!({"feedback": feedback}))
        .await;
    assert_eq!(response.status(), 202);

    // Training on replica 2 uses it; replica 0 reports the job.
    let response = replicas
        .post(2, "/api/v1/train", &json!({"logs": baseline(300)}))
        .await;
    assert_eq!(response.status(), 202);
    let job_id = response.json::<Value>().await.expect("json")["job_id"]
        .as_str()
        .expect("job id")
        .to_owned();
    let mut job = Value::Null;
    for _ in 0..600 {
        job = replicas.get(0, &format!("/api/v1/train/{job_id}")).await;
        if matches!(job["status"].as_str(), Some("succeeded" | "failed")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(
        job["detail"]["services"][0]["feedback_normal_added"], 30,
        "{job}"
    );

    // Every replica judges the same log the same way, with the one model.
    let outlier = checkout_log(5000.0, 40.0);
    let mut verdicts = Vec::new();
    for replica in 0..3 {
        verdicts.push(replicas.verdict_with_model(replica, &outlier).await);
    }
    assert_eq!(verdicts[0]["is_anomaly"], 1, "{}", verdicts[0]);
    for verdict in &verdicts[1..] {
        assert_eq!(verdict["score"], verdicts[0]["score"]);
        assert_eq!(verdict["is_anomaly"], verdicts[0]["is_anomaly"]);
    }
    let pattern = checkout_log(400.0, 3.0);
    for replica in 0..3 {
        let verdict = replicas.verdict_with_model(replica, &pattern).await;
        assert_eq!(verdict["is_anomaly"], 0, "replica {replica}: {verdict}");
    }
    let models: Vec<Value> = {
        let mut models = Vec::new();
        for replica in 0..3 {
            models.push(replicas.get(replica, "/api/v1/models").await);
        }
        models
    };
    assert!(models.iter().all(|list| *list == models[0]), "{models:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_rate_leader_killed_mid_burst_loses_no_anomaly_and_no_alert() {
    let database_url = fresh_database_url().await;
    let webhook = Receiver::start(&[]).await;
    let webhook_url = webhook.url("/hook");
    let mut replicas =
        Replicas::start(3, &database_url, &[("GENERIC_WEBHOOK_URL", &webhook_url)]).await;
    let leader = wait_for_leader(&replicas, &[0, 1, 2]).await;

    // Three anomalies, one through each replica: the leader counts them, no page yet.
    for n in 0..3 {
        let response = replicas
            .post(n, "/api/v1/stream/multi-source", &rule_anomaly(n))
            .await;
        assert_eq!(response.status(), 200);
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(webhook.received().is_empty());

    // SIGKILL the leader; the next three anomalies go to the survivors.
    replicas.replicas[leader].kill();
    let survivors: Vec<usize> = (0..3).filter(|&r| r != leader).collect();
    for n in 3..6 {
        let replica = survivors[n % 2];
        let response = replicas
            .post(replica, "/api/v1/stream/multi-source", &rule_anomaly(n))
            .await;
        assert_eq!(response.status(), 200);
    }

    // A survivor takes over, replays what the dead leader counted, and pages exactly once.
    let received = webhook.expect_exactly(1, Duration::from_secs(3)).await;
    assert!(received[0].body.to_string().contains("svc"));
    let new_leader = wait_for_leader(&replicas, &survivors).await;
    assert_ne!(new_leader, leader);
    for &replica in &survivors {
        let alerts = replicas.get(replica, "/api/v1/alerts").await;
        assert_eq!(alerts.as_array().map(Vec::len), Some(1), "{alerts}");
        let history = replicas.get(replica, "/api/v1/anomalies?limit=100").await;
        assert_eq!(
            history.as_array().map(Vec::len),
            Some(6),
            "every acknowledged anomaly"
        );
    }
}

/// The replica among `candidates` that counts the rates (bounded: 10 s).
async fn wait_for_leader(replicas: &Replicas, candidates: &[usize]) -> usize {
    for _ in 0..200 {
        for &replica in candidates {
            let stats = replicas.get(replica, "/api/v1/alerts/stats").await;
            if stats["rate_leader"] == true {
                return replica;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no replica became the rate leader");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_going_away_mid_ingest_is_503_and_the_service_recovers_by_itself() {
    let mut proxy = PostgresProxy::start().await;
    let database_url = proxy.route(&fresh_database_url().await);
    let replicas = Replicas::start(
        2,
        &database_url,
        &[
            ("DATABASE_CONNECT_TIMEOUT_SECONDS", "1"),
            ("DATABASE_STATEMENT_TIMEOUT_SECONDS", "2"),
        ],
    )
    .await;
    let mut acknowledged = 0;
    for n in 0..4 {
        let response = replicas
            .post(n % 2, "/api/v1/stream/multi-source", &rule_anomaly(n))
            .await;
        assert_eq!(response.status(), 200);
        acknowledged += 1;
    }

    proxy.stop().await;
    let mut refused = 0;
    for n in 4..10 {
        let response = replicas
            .post(n % 2, "/api/v1/stream/multi-source", &rule_anomaly(n))
            .await;
        let status = response.status().as_u16();
        match status {
            200 => acknowledged += 1,
            503 => {
                refused += 1;
                assert!(response.headers().contains_key("retry-after"));
                let body: Value = response.json().await.expect("json");
                assert!(
                    body["detail"]
                        .as_str()
                        .is_some_and(|d| d.contains("DATABASE_URL"))
                );
            }
            other => panic!("only 200 or 503 while the database is away, got {other}"),
        }
    }
    assert!(refused >= 5, "{refused} refused");
    let health = replicas.replicas[0]
        .client
        .get(replicas.replicas[0].url("/health"))
        .send()
        .await
        .expect("health");
    assert_eq!(health.status(), 503);

    proxy.resume().await;
    for replica in 0..2 {
        replicas.replicas[replica].wait_healthy().await;
        let mut recovered = false;
        for attempt in 0..100 {
            let response = replicas
                .post(
                    replica,
                    "/api/v1/stream/multi-source",
                    &rule_anomaly(100 + attempt),
                )
                .await;
            match response.status().as_u16() {
                200 => {
                    acknowledged += 1;
                    recovered = true;
                    break;
                }
                503 => tokio::time::sleep(Duration::from_millis(100)).await,
                other => panic!("{other} while recovering"),
            }
        }
        assert!(
            recovered,
            "replica {replica} did not recover:\n{}",
            replicas.logs(replica)
        );
    }
    let history = replicas.get(0, "/api/v1/anomalies?limit=100").await;
    assert_eq!(
        history.as_array().map(Vec::len),
        Some(acknowledged),
        "exactly the acknowledged anomalies are stored"
    );
}
