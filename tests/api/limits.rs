//! Memory limits under hostile input (issue #17 rows 1 and 2): regex patterns bounded per request
//! (`MAX_PATTERNS_PER_REQUEST`) and per pattern (`REGEX_SIZE_LIMIT_BYTES`), fields bounded per log
//! (`MAX_FEATURES_PER_LOG`, `MAX_FIELD_NAME_CHARS`) and per service (`MAX_FEATURES_PER_SERVICE`).
//! The memory tests run the real binary in its own process and read its peak resident set.

use serde_json::{Value, json};

use crate::helpers::process::ServiceProcess;
use crate::helpers::{app_log, spawn_app, spawn_app_with};

/// The issue's ceiling for the hostile requests of rows 1 and 2.
const PEAK_RSS_LIMIT_BYTES: u64 = 300 << 20;

/// A regex log with its own `pattern`.
fn regex_log(pattern: &str, line: &str) -> Value {
    json!({
        "raw_log": line,
        "service": "application",
        "source": "app",
        "format_type": "regex",
        "custom_config": {"pattern": pattern, "field_mapping": {"0": "word"}},
    })
}

/// Row 1: 2,000 logs, each with its own pattern in the issue's shape (`\w{20}|qNq`).
fn distinct_pattern_logs(count: usize) -> Vec<Value> {
    (0..count)
        .map(|i| regex_log(&format!(r"(\w{{20}})|q{i}q"), "abcdefghijklmnopqrstuvwxyz"))
        .collect()
}

async fn post(service: &ServiceProcess, path: &str, body: &Value) -> reqwest::Response {
    service
        .client
        .post(service.url(path))
        .json(body)
        .send()
        .await
        .expect("request sent")
}

#[tokio::test]
async fn a_request_with_2000_distinct_patterns_is_refused_naming_the_limit_in_bounded_memory() {
    // Arrange
    let tmp = tempfile::tempdir().expect("temporary directory");
    let mut service = ServiceProcess::start(
        &tmp.path().join("data"),
        &tmp.path().join("service.log"),
        &[],
    )
    .await;
    let logs = distinct_pattern_logs(2_000);

    // Act
    let ingest = post(
        &service,
        "/api/v1/stream/multi-source",
        &json!({"logs": logs}),
    )
    .await;
    let train = post(&service, "/api/v1/train", &json!({"logs": logs})).await;

    // Assert
    for response in [ingest, train] {
        assert_eq!(response.status(), 413);
        let body: Value = response.json().await.expect("json");
        let detail = body["detail"].as_str().expect("a detail");
        assert!(detail.contains("MAX_PATTERNS_PER_REQUEST"), "{detail}");
        assert!(detail.contains("2000 distinct regex patterns"), "{detail}");
        assert!(detail.contains("the limit is 32"), "{detail}");
    }
    let peak = service.peak_rss_bytes();
    eprintln!("peak RSS {} MiB", peak >> 20);
    assert!(peak < PEAK_RSS_LIMIT_BYTES, "peak RSS {} MiB", peak >> 20);
    assert!(service.is_running());
    let models = std::fs::read_dir(service.data_dir.join("models")).map_or(0, Iterator::count);
    assert_eq!(models, 0, "the refused training request started no job");
    let health = service
        .client
        .get(service.url("/health"))
        .send()
        .await
        .expect("health");
    assert_eq!(health.status(), 200);
    let normal = post(
        &service,
        "/api/v1/stream/multi-source",
        &json!({"logs": [app_log(50, 50, 100)]}),
    )
    .await;
    assert_eq!(normal.status(), 200);
}

#[tokio::test]
async fn two_thousand_logs_sharing_one_pattern_are_accepted() {
    let app = spawn_app().await;
    let logs: Vec<Value> = (0..2_000).map(|i| app_log(50, 50, 100 + i % 7)).collect();
    let results = app.ingest(&logs).await;
    assert_eq!(results.len(), 2_000);
    assert!(results.iter().all(|result| result["error"].is_null()));
}

#[tokio::test]
async fn patterns_are_counted_by_spelling_up_to_the_limit() {
    let app = spawn_app_with(&[("MAX_PATTERNS_PER_REQUEST", "2")]).await;
    // One pattern under two field mappings is one pattern.
    let mut renamed = regex_log(r"(\w+)", "abc");
    renamed["custom_config"]["field_mapping"] = json!({"0": "other"});
    let two = [
        regex_log(r"(\w+)", "abc"),
        renamed,
        regex_log(r"(\d+)", "123"),
        // Logs of other formats have no pattern.
        json!({"raw_log": "a=1", "service": "s", "source": "x", "format_type": "key_value"}),
    ];
    let results = app.ingest(&two).await;
    assert!(results.iter().all(|result| result["error"].is_null()));

    let mut three = two.to_vec();
    three.push(regex_log(r"(\s+)", " "));
    let response = app.post_logs(&three).await;
    assert_eq!(response.status(), 413);
    let body: Value = response.json().await.expect("json");
    assert_eq!(
        body["detail"],
        "3 distinct regex patterns in one request; the limit is 2 (MAX_PATTERNS_PER_REQUEST). \
         Send logs that share a pattern together, or split the batch."
    );
    assert_eq!(
        app.metrics().await["prediction_count"],
        4,
        "nothing of the refused request was judged"
    );
}

#[tokio::test]
async fn a_pattern_too_big_to_compile_is_an_error_at_its_log_naming_the_limit() {
    let app = spawn_app().await;
    let logs = [
        regex_log(r"(\w{50})", "abc"),
        app_log(50, 50, 100),
        regex_log(r"(\w{50})", "abc"),
    ];
    let results = app.ingest(&logs).await;
    for index in [0, 2] {
        let error = results[index]["error"].as_str().expect("an error");
        assert!(
            error.contains("REGEX_SIZE_LIMIT_BYTES") && error.contains("524288"),
            "{error}"
        );
    }
    assert!(results[1]["error"].is_null());
    // A higher limit lets an operator accept such a pattern.
    let roomy = spawn_app_with(&[("REGEX_SIZE_LIMIT_BYTES", "8388608")]).await;
    let results = roomy
        .ingest(&[regex_log(r"(\w{50})", &"a".repeat(50))])
        .await;
    assert!(results[0]["error"].is_null(), "{}", results[0]);
}

/// A key_value line of `keys` distinct three-letter keys (`aaa`, `aab`, …), each `=` a digit
/// that varies with `index`.
fn wide_line(index: usize, keys: usize) -> String {
    let mut line = String::with_capacity(keys * 6);
    for k in 0..keys {
        let letters = [k / 676, (k / 26) % 26, k % 26].map(|d| char::from(b'a' + (d % 26) as u8));
        line.extend(letters);
        line.push('=');
        line.push(char::from(b'0' + ((k + index) % 10) as u8));
        line.push(' ');
    }
    line
}

/// Every log carries the same 10,000 keys, so the service's sample is as wide as its width
/// allows and its fits are real ones.
fn wide_log(index: usize) -> Value {
    json!({
        "raw_log": wide_line(index, 10_000),
        "service": "wide",
        "source": "agent",
        "format_type": "key_value",
    })
}

#[tokio::test]
async fn wide_logs_keep_memory_bounded_through_ingest_and_fits() {
    // Arrange: row 2 of the issue, 2,100 logs of one service with 10,000 distinct keys each,
    // 150 logs (9 MB) per request. The automatic fits run as the sample doubles.
    let tmp = tempfile::tempdir().expect("temporary directory");
    let service = ServiceProcess::start(
        &tmp.path().join("data"),
        &tmp.path().join("service.log"),
        &[],
    )
    .await;

    // Act
    for batch in 0..14 {
        let logs: Vec<Value> = (0..150).map(|i| wide_log(batch * 150 + i)).collect();
        let response = post(
            &service,
            "/api/v1/stream/multi-source",
            &json!({"logs": logs}),
        )
        .await;
        assert_eq!(response.status(), 200, "batch {batch}");
        let results: Vec<Value> = response.json().await.expect("json");
        assert!(results.iter().all(|result| result["error"].is_null()));
    }
    let logs: Vec<Value> = (0..150).map(|i| wide_log(100_000 + i)).collect();
    let response = post(&service, "/api/v1/train", &json!({"logs": logs})).await;
    assert_eq!(response.status(), 202);
    let job_id = response.json::<Value>().await.expect("json")["job_id"]
        .as_str()
        .expect("job id")
        .to_owned();
    let job = wait_for_job(&service, &job_id).await;

    // Assert
    assert!(
        matches!(job["status"].as_str(), Some("succeeded" | "failed")),
        "{job}"
    );
    let peak = service.peak_rss_bytes();
    eprintln!("peak RSS {} MiB", peak >> 20);
    assert!(peak < PEAK_RSS_LIMIT_BYTES, "peak RSS {} MiB", peak >> 20);
    let metrics: Value = service
        .client
        .get(service.url("/api/v1/metrics"))
        .send()
        .await
        .expect("metrics")
        .json()
        .await
        .expect("json");
    // Each log kept its first 256 features and had the rest ignored and counted (`lvl` and
    // `msg` are its level and message).
    assert_eq!(metrics["logs_with_fields_dropped"], 2_100);
    assert_eq!(metrics["fields_dropped"], 2_100 * (10_000 - 256 - 2));
    assert!(
        metrics["features_beyond_service_width"].as_u64() > Some(0),
        "{metrics}"
    );
    let models: Value = service
        .client
        .get(service.url("/api/v1/models"))
        .send()
        .await
        .expect("models")
        .json()
        .await
        .expect("json");
    for model in models.as_array().expect("a list") {
        let features = model["features"].as_array().expect("features").len();
        assert!(features <= 64, "{features} features");
    }
    let normal = post(
        &service,
        "/api/v1/stream/multi-source",
        &json!({"logs": [app_log(50, 50, 100)]}),
    )
    .await;
    assert_eq!(normal.status(), 200);
}

async fn wait_for_job(service: &ServiceProcess, job_id: &str) -> Value {
    for _ in 0..1200 {
        let job: Value = service
            .client
            .get(service.url(&format!("/api/v1/train/{job_id}")))
            .send()
            .await
            .expect("job")
            .json()
            .await
            .expect("json");
        if matches!(job["status"].as_str(), Some("succeeded" | "failed")) {
            return job;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("training job {job_id} did not finish in 60 s");
}

#[tokio::test]
async fn fields_beyond_the_limits_are_ignored_and_counted() {
    let app = spawn_app_with(&[
        ("MAX_FEATURES_PER_LOG", "3"),
        ("MAX_FIELD_NAME_CHARS", "10"),
    ])
    .await;
    let long_name = "n".repeat(11);
    let raw = json!({
        "level": "ERROR",
        "a": 1, "b": 2, long_name.clone(): 3, "c": 4, "d": 5,
        "host": "web-1", "region": "eu", "zone": "a", "rack": "r1",
        "error_rate": 0.9,
    });
    let log = json!({"raw_log": raw.to_string(), "service": "web_server", "source": "lb",
                     "format_type": "json"});
    let results = app.ingest(&[log]).await;
    assert!(results[0]["error"].is_null());
    // The level is still read; the long name, `d`, `error_rate` and a fourth attribute are not.
    assert_eq!(results[0]["is_anomaly"], 0, "error_rate was beyond the cap");
    let metrics = app.metrics().await;
    assert_eq!(metrics["fields_dropped"], 4);
    assert_eq!(metrics["logs_with_fields_dropped"], 1);
}
