//! Several replicas of the real binary sharing one PostgreSQL (issue #16): requests spread
//! round-robin, no sticky routing, and the replicas behave as one service.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::Receiver;
use crate::helpers::postgres::fresh_database_url;
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
    let leaders: Vec<bool> = {
        let mut leaders = Vec::new();
        for replica in 0..3 {
            let stats = replicas.get(replica, "/api/v1/alerts/stats").await;
            leaders.push(stats["rate_leader"] == true);
        }
        leaders
    };
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
