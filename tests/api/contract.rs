//! The contract's endpoints, status codes and error shapes.

use serde_json::{Value, json};

use crate::helpers::{spawn_app, spawn_app_with, web_log};

#[tokio::test]
async fn health_reports_ok_with_timestamp_and_version() {
    let app = spawn_app().await;
    let response = app.get("/health").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["status"], "ok");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    let timestamp = body["timestamp"].as_str().expect("timestamp");
    assert!(
        chrono::DateTime::parse_from_rfc3339(timestamp).is_ok(),
        "{timestamp}"
    );
}

#[tokio::test]
async fn health_is_503_unhealthy_when_storage_cannot_be_written() {
    let app = spawn_app().await;
    // Another process holds the database's write lock: the service cannot commit anything.
    let blocker = rusqlite::Connection::open(app.data_dir.join("aioops.db")).expect("opens");
    blocker.execute_batch("BEGIN EXCLUSIVE;").expect("locks");
    let response = app.get("/health").await;
    blocker.execute_batch("ROLLBACK;").expect("unlocks");
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["status"], "unhealthy");
    assert!(body["detail"].is_string());
    // Once the lock is gone, the service is healthy again.
    assert_eq!(app.get("/health").await.status(), 200);
}

#[tokio::test]
async fn root_and_api_root_answer_the_originals_banners() {
    let app = spawn_app().await;
    let root: Value = app.get("/").await.json().await.expect("json");
    assert_eq!(
        root,
        json!("AIOps MCP Isolation Forest Service is running.")
    );
    let api: Value = app.get("/api/v1/").await.json().await.expect("json");
    assert_eq!(
        api,
        json!({"message": "AIOps Anomaly Detection Service is active."})
    );
}

#[tokio::test]
async fn unknown_paths_and_methods_answer_in_fastapis_shape() {
    let app = spawn_app().await;
    let response = app.get("/api/v1/nothing-here").await;
    assert_eq!(response.status(), 404);
    assert_eq!(
        response.json::<Value>().await.expect("json"),
        json!({"detail": "Not Found"})
    );
    let response = app
        .client
        .put(app.url("/api/v1/anomalies"))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 405);
    assert_eq!(
        response.json::<Value>().await.expect("json"),
        json!({"detail": "Method Not Allowed"})
    );
}

#[tokio::test]
async fn empty_log_list_is_rejected_with_400() {
    let app = spawn_app().await;
    let response = app.post_logs(&[]).await;
    assert_eq!(response.status(), 400);
    assert_eq!(
        response.json::<Value>().await.expect("json"),
        json!({"detail": "No logs provided in the request."})
    );
}

#[tokio::test]
async fn malformed_json_is_a_422_json_invalid() {
    let app = spawn_app().await;
    let response = app
        .post_raw(
            "/api/v1/stream/multi-source",
            b"{\"logs\": [".to_vec(),
            Some("application/json"),
        )
        .await;
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["detail"][0]["type"], "json_invalid");
    assert_eq!(body["detail"][0]["loc"][0], "body");
}

#[tokio::test]
async fn invalid_utf8_is_a_422_not_a_500() {
    let app = spawn_app().await;
    let mut body = br#"{"logs": [{"raw_log": ""#.to_vec();
    body.extend_from_slice(&[0xff, 0xfe, 0xfd]);
    body.extend_from_slice(br#"", "service": "a", "source": "b", "format_type": "json"}]}"#);
    let response = app
        .post_raw(
            "/api/v1/stream/multi-source",
            body,
            Some("application/json"),
        )
        .await;
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["detail"][0]["type"], "json_invalid");
}

#[tokio::test]
async fn wrong_types_and_missing_fields_list_every_problem() {
    let app = spawn_app().await;
    let response = app
        .post_json(
            "/api/v1/stream/multi-source",
            &json!({"logs": [
                {"raw_log": 42, "service": "web", "source": "x", "format_type": "json"},
                {"service": "web", "source": "x", "format_type": "yaml"},
            ]}),
        )
        .await;
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.expect("json");
    let detail = body["detail"].as_array().expect("list");
    let summary: Vec<(String, Value)> = detail
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap_or_default().to_owned(),
                e["loc"].clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                "string_type".to_owned(),
                json!(["body", "logs", 0, "raw_log"])
            ),
            ("missing".to_owned(), json!(["body", "logs", 1, "raw_log"])),
            ("enum".to_owned(), json!(["body", "logs", 1, "format_type"])),
        ]
    );
    for error in detail {
        assert!(error["msg"].is_string());
    }
}

#[tokio::test]
async fn a_custom_config_that_is_not_an_object_is_a_422_dict_type() {
    let app = spawn_app().await;
    for config in [json!("pattern"), json!(5), json!(["(a)"])] {
        let response = app
            .post_json(
                "/api/v1/stream/multi-source",
                &json!({"logs": [{"raw_log": "a", "service": "s", "source": "x",
                                  "format_type": "regex", "custom_config": config}]}),
            )
            .await;
        assert_eq!(response.status(), 422, "{config}");
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["detail"][0]["type"], "dict_type", "{body}");
        assert_eq!(
            body["detail"][0]["loc"],
            json!(["body", "logs", 0, "custom_config"])
        );
    }
}

#[tokio::test]
async fn lists_for_objects_and_maps_for_format_names_are_422s() {
    // serde reads a struct from the list of its field values, and an enum variant from a map:
    // the fast decoder took these (200, or 400 for `[[]]`) until the property test in
    // src/api/body.rs caught it. FastAPI answers 422, and so do we.
    let app = spawn_app().await;
    let log = json!(["a=1", "web", "x", "key_value"]);
    for (path, body, loc, kind) in [
        (
            "/api/v1/stream/multi-source",
            json!([[]]),
            json!(["body"]),
            "model_attributes_type",
        ),
        (
            "/api/v1/stream/multi-source",
            json!({"logs": [log]}),
            json!(["body", "logs", 0]),
            "model_attributes_type",
        ),
        (
            "/api/v1/train",
            json!({"logs": [log]}),
            json!(["body", "logs", 0]),
            "model_attributes_type",
        ),
        (
            "/api/v1/feedback",
            json!({"feedback": [[{"raw_log": "a=1", "service": "web", "source": "x",
                                  "format_type": "key_value"}, 1]]}),
            json!(["body", "feedback", 0]),
            "model_attributes_type",
        ),
        (
            "/api/v1/stream/multi-source",
            json!({"logs": [{"raw_log": "a=1", "service": "web", "source": "x",
                             "format_type": {"key_value": null}}]}),
            json!(["body", "logs", 0, "format_type"]),
            "enum",
        ),
    ] {
        let response = app.post_json(path, &body).await;
        assert_eq!(response.status(), 422, "{path} {body}");
        let answer: Value = response.json().await.expect("json");
        assert_eq!(answer["detail"][0]["loc"], loc, "{body}: {answer}");
        assert_eq!(answer["detail"][0]["type"], kind, "{body}: {answer}");
    }
}

#[tokio::test]
async fn a_body_without_logs_is_a_422_missing() {
    let app = spawn_app().await;
    let response = app
        .post_json("/api/v1/stream/multi-source", &json!({"entries": []}))
        .await;
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["detail"][0]["type"], "missing");
    assert_eq!(body["detail"][0]["loc"], json!(["body", "logs"]));
}

#[tokio::test]
async fn json_without_content_type_or_with_charset_is_accepted() {
    let app = spawn_app().await;
    let body = serde_json::to_vec(&json!({"logs": [web_log(100.0, 0.0)]})).expect("json");
    for content_type in [
        None,
        Some("application/json; charset=utf-8"),
        Some("Application/JSON"),
        Some("application/vnd.aioops+json"),
    ] {
        let response = app
            .post_raw("/api/v1/stream/multi-source", body.clone(), content_type)
            .await;
        assert_eq!(response.status(), 200, "content type {content_type:?}");
    }
}

#[tokio::test]
async fn a_20_mb_body_is_refused_with_413() {
    let app = spawn_app().await;
    let body = vec![b' '; 20 * 1024 * 1024];
    let response = app
        .post_raw(
            "/api/v1/stream/multi-source",
            body,
            Some("application/json"),
        )
        .await;
    assert_eq!(response.status(), 413);
    let body: Value = response.json().await.expect("json");
    assert!(
        body["detail"]
            .as_str()
            .expect("detail")
            .contains("MAX_BODY_BYTES")
    );
}

#[tokio::test]
async fn too_many_logs_in_one_request_is_413() {
    let app = spawn_app_with(&[("MAX_LOGS_PER_REQUEST", "5")]).await;
    let logs = vec![web_log(1.0, 0.0); 6];
    let response = app.post_logs(&logs).await;
    assert_eq!(response.status(), 413);
    let body: Value = response.json().await.expect("json");
    assert!(
        body["detail"]
            .as_str()
            .expect("detail")
            .contains("MAX_LOGS_PER_REQUEST")
    );
}

#[tokio::test]
async fn bad_anomalies_query_is_422() {
    let app = spawn_app().await;
    let response = app.get("/api/v1/anomalies?limit=abc").await;
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["detail"][0]["loc"], json!(["query", "limit"]));
    assert_eq!(body["detail"][0]["type"], "int_parsing");
}

#[tokio::test]
async fn delete_anomalies_clears_the_history() {
    let app = spawn_app().await;
    app.ingest(&[web_log(5000.0, 0.0)]).await;
    assert_eq!(app.get_anomalies("").await.len(), 1);
    let response = app
        .client
        .delete(app.url("/api/v1/anomalies"))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.expect("json"),
        json!({"message": "All anomaly records have been cleared."})
    );
    assert!(app.get_anomalies("").await.is_empty());
}

#[tokio::test]
async fn train_without_logs_is_400_and_with_logs_202() {
    let app = spawn_app().await;
    let response = app.post_train(&[]).await;
    assert_eq!(response.status(), 400);
    assert_eq!(
        response.json::<Value>().await.expect("json"),
        json!({"detail": "No logs provided for training."})
    );
    let response = app.post_train(&[web_log(100.0, 0.0)]).await;
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.expect("json");
    assert_eq!(
        body["message"],
        "Model retraining started in the background."
    );
    assert!(body["job_id"].is_string());
}

#[tokio::test]
async fn feedback_is_202_400_and_422_as_the_contract_says() {
    let app = spawn_app().await;
    let response = app.post_feedback(&[]).await;
    assert_eq!(response.status(), 400);
    assert_eq!(
        response.json::<Value>().await.expect("json"),
        json!({"detail": "No feedback records provided."})
    );
    let response = app
        .post_feedback(&[json!({"log": web_log(100.0, 0.0), "is_anomaly": 2})])
        .await;
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.expect("json");
    assert_eq!(
        body["detail"][0]["loc"],
        json!(["body", "feedback", 0, "is_anomaly"])
    );
    let response = app
        .post_feedback(&[
            json!({"log": web_log(100.0, 0.0), "is_anomaly": 0}),
            json!({"log": web_log(9000.0, 0.0), "is_anomaly": 1}),
        ])
        .await;
    assert_eq!(response.status(), 202);
    assert_eq!(
        response.json::<Value>().await.expect("json"),
        json!({"message": "Feedback received for 2 records. Thank you!"})
    );
    let metrics = app.metrics().await;
    assert_eq!(metrics["feedback_received"], 2);
}

#[tokio::test]
async fn metrics_have_the_contracts_fields() {
    let app = spawn_app().await;
    let metrics = app.metrics().await;
    for key in [
        "prediction_count",
        "anomaly_count",
        "last_trained",
        "feedback_received",
        "model_accuracy",
    ] {
        assert!(metrics.get(key).is_some(), "{key} missing from {metrics}");
    }
    assert_eq!(metrics["last_trained"], Value::Null);
    assert_eq!(metrics["model_accuracy"], Value::Null);
    app.ingest(&[web_log(100.0, 0.0), web_log(5000.0, 0.0)])
        .await;
    let metrics = app.metrics().await;
    assert_eq!(metrics["prediction_count"], 2);
    assert_eq!(metrics["anomaly_count"], 1);
}
