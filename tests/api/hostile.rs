//! Hostile and careless input (issue #17): cross-site bodies, oversized names, oversized lists,
//! unbounded feedback. Each refusal is a 4xx with `{"detail"}` naming the limit, nothing of a
//! refused request is kept, and the service answers normally afterwards.

use serde_json::{Value, json};

use crate::helpers::{spawn_app, spawn_app_with, web_log};

const MUTATING: [&str; 3] = [
    "/api/v1/stream/multi-source",
    "/api/v1/train",
    "/api/v1/feedback",
];

fn body_for(path: &str) -> Vec<u8> {
    let body = if path.ends_with("feedback") {
        json!({"feedback": [{"log": web_log(100.0, 0.0), "is_anomaly": 0}]})
    } else {
        json!({"logs": [web_log(100.0, 0.0)]})
    };
    serde_json::to_vec(&body).expect("json")
}

#[tokio::test]
async fn bodies_a_browser_sends_across_sites_are_refused_with_415() {
    let app = spawn_app().await;
    for path in MUTATING {
        for content_type in [
            "text/plain",
            "text/plain; charset=utf-8",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/xml",
        ] {
            let response = app.post_raw(path, body_for(path), Some(content_type)).await;
            assert_eq!(response.status(), 415, "{path} as {content_type}");
            let body: Value = response.json().await.expect("json");
            let detail = body["detail"].as_str().expect("a detail");
            assert!(detail.contains("application/json"), "{detail}");
        }
    }
    let metrics = app.metrics().await;
    assert_eq!(metrics["prediction_count"], 0, "nothing was ingested");
    assert_eq!(metrics["feedback_received"], 0, "nothing was stored");
    // The same bodies as JSON, or without a content type, are taken.
    for path in MUTATING {
        let response = app.post_raw(path, body_for(path), None).await;
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
    }
}

fn named(service: &str, source: &str) -> Value {
    let mut log = web_log(100.0, 0.0);
    log["service"] = json!(service);
    log["source"] = json!(source);
    log
}

#[tokio::test]
async fn service_and_source_names_over_256_characters_are_refused_with_422() {
    let app = spawn_app().await;
    let long = "s".repeat(1 << 20);
    let limit = "n".repeat(256);
    let logs = [
        named(&limit, &limit),
        named(&long, "api"),
        named("web", &"é".repeat(257)),
    ];
    let response = app.post_logs(&logs).await;
    assert_eq!(response.status(), 422);
    let body = response.text().await.expect("body");
    assert!(
        body.len() < 2_000,
        "the megabyte is not echoed back: {} bytes",
        body.len()
    );
    let body: Value = serde_json::from_str(&body).expect("json");
    let errors = body["detail"].as_array().expect("a list");
    let found: Vec<(&Value, &Value)> = errors.iter().map(|e| (&e["type"], &e["loc"])).collect();
    assert_eq!(
        found,
        [
            (
                &json!("string_too_long"),
                &json!(["body", "logs", 1, "service"])
            ),
            (
                &json!("string_too_long"),
                &json!(["body", "logs", 2, "source"])
            ),
        ]
    );
    assert_eq!(errors[0]["ctx"]["max_length"], 256);

    let train = app.post_train(&logs).await;
    assert_eq!(train.status(), 422);
    let feedback = app
        .post_feedback(&[json!({"log": named(&long, "api"), "is_anomaly": 1})])
        .await;
    assert_eq!(feedback.status(), 422);
    let body: Value = feedback.json().await.expect("json");
    assert_eq!(
        body["detail"][0]["loc"],
        json!(["body", "feedback", 0, "log", "service"])
    );

    let metrics = app.metrics().await;
    assert_eq!(metrics["prediction_count"], 0);
    assert_eq!(metrics["feedback_received"], 0);
    let accepted = app.ingest(&[named(&limit, &limit)]).await;
    assert_eq!(accepted.len(), 1, "256 characters are accepted");
}

#[tokio::test]
async fn train_and_feedback_lists_are_limited_like_ingest() {
    let app = spawn_app_with(&[("MAX_LOGS_PER_REQUEST", "5")]).await;
    let logs: Vec<Value> = (0..6).map(|_| web_log(100.0, 0.0)).collect();
    for response in [
        app.post_logs(&logs).await,
        app.post_train(&logs).await,
        app.post_feedback(
            &logs
                .iter()
                .map(|log| json!({"log": log, "is_anomaly": 0}))
                .collect::<Vec<_>>(),
        )
        .await,
    ] {
        assert_eq!(response.status(), 413);
        let body: Value = response.json().await.expect("json");
        let detail = body["detail"].as_str().expect("a detail");
        assert!(detail.contains("MAX_LOGS_PER_REQUEST"), "{detail}");
    }
    assert_eq!(app.metrics().await["feedback_received"], 0);
    assert_eq!(app.post_train(&logs[..5]).await.status(), 202);
}

#[tokio::test]
async fn stored_feedback_keeps_only_the_newest_max_feedback_records() {
    let app = spawn_app_with(&[("MAX_FEEDBACK_RECORDS", "3")]).await;
    for round in 0..4 {
        let items: Vec<Value> = (0..2)
            .map(|i| json!({"log": web_log(f64::from(100 * round + i), 0.0), "is_anomaly": 0}))
            .collect();
        assert_eq!(app.post_feedback(&items).await.status(), 202);
    }
    assert_eq!(app.metrics().await["feedback_received"], 3);
}
