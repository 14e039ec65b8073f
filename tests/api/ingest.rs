//! POST /api/v1/stream/multi-source: formats, mixed batches, per-log errors, one result per log.

use serde_json::{Value, json};

use crate::helpers::{app_log, db_log, spawn_app, spawn_app_with, web_log};

#[tokio::test]
async fn the_three_formats_are_parsed_and_judged_by_their_rules() {
    let app = spawn_app().await;
    let results = app
        .ingest(&[
            web_log(2500.0, 0.0),
            web_log(120.0, 0.01),
            db_log(6000, 10),
            db_log(40, 10),
            app_log(50, 95, 100),
            app_log(50, 20, 100),
        ])
        .await;
    let flags: Vec<u64> = results
        .iter()
        .map(|r| r["is_anomaly"].as_u64().expect("0|1"))
        .collect();
    assert_eq!(flags, [1, 0, 1, 0, 1, 0]);
    assert_eq!(results[0]["detector"], "rule");
    assert_eq!(
        results[0]["violations"],
        json!([{"feature": "response_time", "threshold": 2000.0, "value": 2500.0}])
    );
    assert_eq!(results[2]["violations"][0]["feature"], "query_time");
    assert_eq!(results[2]["violations"][0]["value"], 6000.0);
    assert_eq!(results[4]["violations"][0]["feature"], "cpu_usage");
    for result in &results {
        // No service has a model yet: rules alone judge, and the score says so.
        assert_eq!(result["score"], Value::Null);
        assert_eq!(result["error"], Value::Null);
    }
    assert_eq!(results[1]["detector"], Value::Null);
    assert_eq!(results[3]["service"], "database");
}

#[tokio::test]
async fn duplicate_logs_get_one_result_each_in_input_order() {
    let app = spawn_app().await;
    let logs = vec![
        web_log(100.0, 0.0),
        web_log(100.0, 0.0),
        web_log(3000.0, 0.0),
        web_log(100.0, 0.0),
    ];
    let results = app.ingest(&logs).await;
    assert_eq!(results.len(), 4);
    let flags: Vec<u64> = results
        .iter()
        .map(|r| r["is_anomaly"].as_u64().expect("0|1"))
        .collect();
    assert_eq!(flags, [0, 0, 1, 0]);
}

#[tokio::test]
async fn unparseable_logs_get_an_error_and_never_disappear() {
    let app = spawn_app().await;
    let mut regex_without_config = app_log(10, 10, 10);
    regex_without_config
        .as_object_mut()
        .expect("object")
        .remove("custom_config");
    let mut bad_pattern = app_log(10, 10, 10);
    bad_pattern["custom_config"]["pattern"] = json!("(unclosed");
    let mut missing_group = app_log(10, 10, 10);
    missing_group["custom_config"]["field_mapping"]["9"] = json!("ghost");
    let logs = vec![
        json!({"raw_log": "{not json", "service": "web_server", "source": "x", "format_type": "json"}),
        regex_without_config,
        bad_pattern,
        missing_group,
        json!({"raw_log": "anything", "service": "svc", "source": "x", "format_type": "custom"}),
        web_log(3000.0, 0.0),
    ];
    let results = app.ingest(&logs).await;
    assert_eq!(results.len(), 6);
    for (index, result) in results.iter().take(5).enumerate() {
        let error = result["error"]
            .as_str()
            .unwrap_or_else(|| panic!("log {index} has no error: {result}"));
        assert!(!error.is_empty());
        assert_eq!(result["is_anomaly"], 0, "log {index}");
        assert_eq!(result["score"], Value::Null);
    }
    assert!(
        results[0]["error"]
            .as_str()
            .expect("error")
            .contains("JSON")
    );
    assert!(
        results[1]["error"]
            .as_str()
            .expect("error")
            .contains("custom_config")
    );
    assert!(
        results[2]["error"]
            .as_str()
            .expect("error")
            .contains("pattern")
    );
    assert!(results[3]["error"].as_str().expect("error").contains('9'));
    assert!(
        results[4]["error"]
            .as_str()
            .expect("error")
            .contains("custom")
    );
    assert_eq!(results[5]["is_anomaly"], 1);
    assert_eq!(results[5]["error"], Value::Null);
}

#[tokio::test]
async fn an_oversized_raw_log_is_a_per_log_error() {
    let app = spawn_app_with(&[("MAX_RAW_LOG_BYTES", "256")]).await;
    let long = json!({"raw_log": format!("{{\"pad\": \"{}\"}}", "x".repeat(300)), "service": "s", "source": "x", "format_type": "json"});
    let results = app.ingest(&[long, web_log(10.0, 0.0)]).await;
    assert!(
        results[0]["error"]
            .as_str()
            .expect("error")
            .contains("MAX_RAW_LOG_BYTES")
    );
    assert_eq!(results[1]["error"], Value::Null);
}

#[tokio::test]
async fn timestamps_never_become_features() {
    let app = spawn_app().await;
    app.ingest(&[web_log(2500.0, 0.0)]).await;
    let anomalies = app.get_anomalies("").await;
    let features = anomalies[0]["features"].as_object().expect("features");
    assert!(!features.contains_key("timestamp"), "{features:?}");
    assert_eq!(features["response_time"], 2500.0);
    assert_eq!(anomalies[0]["timestamp"], "2024-01-15T10:00:00Z");
}

#[tokio::test]
async fn a_large_mixed_batch_keeps_its_order() {
    let app = spawn_app().await;
    let logs: Vec<Value> = (0..1000)
        .map(|i| match i % 3 {
            0 => web_log(if i % 30 == 0 { 5000.0 } else { 100.0 }, 0.0),
            1 => db_log(40, 10),
            _ => app_log(50, 20, 100),
        })
        .collect();
    let results = app.ingest(&logs).await;
    assert_eq!(results.len(), 1000);
    for (i, result) in results.iter().enumerate() {
        let expected_service = ["web_server", "database", "application"][i % 3];
        assert_eq!(result["service"], expected_service, "result {i}");
        assert_eq!(result["is_anomaly"], u64::from(i % 30 == 0), "result {i}");
    }
}
