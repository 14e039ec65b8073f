//! GET /api/v1/anomalies filters and ordering, and durability across a restart.

use serde_json::Value;

use crate::helpers::{db_log, spawn_app, web_log};

#[tokio::test]
async fn anomalies_are_filtered_by_service_detector_and_since() {
    let app = spawn_app().await;
    app.ingest(&[web_log(3000.0, 0.0), db_log(9000, 10), web_log(100.0, 0.0)])
        .await;
    let all = app.get_anomalies("").await;
    assert_eq!(all.len(), 2);
    let web = app.get_anomalies("?service=web_server").await;
    assert_eq!(web.len(), 1);
    assert_eq!(web[0]["service"], "web_server");
    assert_eq!(web[0]["rule_violation"], true);
    assert_eq!(web[0]["detector"], "rule");
    assert_eq!(app.get_anomalies("?detector=model").await.len(), 0);
    assert_eq!(
        app.get_anomalies("?since=2030-01-01T00:00:00Z").await.len(),
        0
    );
    assert_eq!(app.get_anomalies("?limit=1").await.len(), 1);
    for record in &all {
        for key in [
            "timestamp",
            "service",
            "source",
            "log_level",
            "message",
            "anomaly_score",
            "rule_violation",
            "features",
            "raw_log",
            "metadata",
            "context",
        ] {
            assert!(record.get(key).is_some(), "{key} missing from {record}");
        }
    }
}

#[tokio::test]
async fn anomalies_survive_a_restart() {
    let app = spawn_app().await;
    app.ingest(&[web_log(3000.0, 0.0), db_log(9000, 10)]).await;
    let before = app.get_anomalies("").await;
    assert_eq!(before.len(), 2);
    let app = app.restart().await;
    let after = app.get_anomalies("").await;
    assert_eq!(after, before);
    let _: Value = app.metrics().await;
}
