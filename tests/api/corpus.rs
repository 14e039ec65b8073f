//! The bad-input corpus (issue #17): well over a hundred malformed, hostile or careless requests
//! across every endpoint. Each gets the status the API documents — a 4xx with a `{"detail"}` body,
//! or a 200/202 whose per-log result says what was wrong — never a 5xx, and the service answers
//! normally afterwards.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app_with, web_log};

const INGEST: &str = "/api/v1/stream/multi-source";
const TRAIN: &str = "/api/v1/train";
const FEEDBACK: &str = "/api/v1/feedback";

/// The corpus app's request limits, small so that the oversize cases stay cheap.
const MAX_BODY_BYTES: usize = 256 * 1024;
const MAX_LOGS: usize = 50;

struct Case {
    method: Method,
    path: String,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    expected: u16,
}

fn post(path: &str, body: impl Into<Vec<u8>>, expected: u16) -> Case {
    Case {
        method: Method::POST,
        path: path.to_owned(),
        content_type: Some("application/json"),
        body: body.into(),
        expected,
    }
}

fn typed(path: &str, content_type: &'static str, body: impl Into<Vec<u8>>, expected: u16) -> Case {
    Case {
        content_type: Some(content_type),
        ..post(path, body, expected)
    }
}

fn call(method: Method, path: &str, expected: u16) -> Case {
    Case {
        method,
        path: path.to_owned(),
        content_type: None,
        body: Vec::new(),
        expected,
    }
}

fn logs_body(logs: &[Value]) -> Vec<u8> {
    json!({ "logs": logs }).to_string().into_bytes()
}

/// A log with `field` replaced by `value` (or removed when `value` is `None`).
fn log_with(field: &str, value: Option<Value>) -> Value {
    let mut log = web_log(100.0, 0.0);
    match value {
        Some(value) => log[field] = value,
        None => {
            log.as_object_mut().map(|map| map.remove(field));
        }
    }
    log
}

fn regex_log(pattern: &str) -> Value {
    json!({"raw_log": "2024-01-15 ERROR 42", "service": "application", "source": "app",
           "format_type": "regex",
           "custom_config": {"pattern": pattern, "field_mapping": {"0": "level"}}})
}

fn nested(depth: usize) -> String {
    format!("{{\"logs\": {}{}}}", "[".repeat(depth), "]".repeat(depth))
}

/// Bodies every JSON endpoint refuses the same way, whatever it expects.
fn shapeless_bodies(path: &str, cases: &mut Vec<Case>) {
    for (body, expected) in [
        ("", 422),
        ("{", 422),
        ("}", 422),
        ("null", 422),
        ("[]", 422),
        ("\"logs\"", 422),
        ("123", 422),
        ("true", 422),
        ("{}", 422),
        ("{\"logs\": [}", 422),
        ("{\"logs\": NaN}", 422),
        ("{'logs': []}", 422),
        ("{\"logs\": []} trailing", 422),
    ] {
        cases.push(post(path, body, expected));
    }
    cases.push(post(path, b"\xff\xfe{\"logs\": []}".to_vec(), 422));
    cases.push(post(path, nested(10_000), 422));
    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=zz",
        "application/xml",
        "image/png",
    ] {
        cases.push(typed(path, content_type, "{\"logs\": []}", 415));
    }
    let oversize = logs_body(&[
        json!({"raw_log": "x".repeat(MAX_BODY_BYTES), "service": "s",
                                      "source": "t", "format_type": "json"}),
    ]);
    cases.push(post(path, oversize, 413));
}

fn ingest_cases(cases: &mut Vec<Case>) {
    shapeless_bodies(INGEST, cases);
    for (logs, expected) in [
        (json!(null), 422),
        (json!({}), 422),
        (json!("x"), 422),
        (json!([]), 400),
        (json!([null]), 422),
        (json!([1]), 422),
        (json!([[]]), 422),
        (json!([{}]), 422),
        (json!([log_with("raw_log", None)]), 422),
        (json!([log_with("raw_log", Some(json!(1)))]), 422),
        (json!([log_with("raw_log", Some(json!({"a": 1})))]), 422),
        (json!([log_with("service", None)]), 422),
        (json!([log_with("service", Some(json!(null)))]), 422),
        (json!([log_with("service", Some(json!(["web"])))]), 422),
        (
            json!([log_with("service", Some(json!("s".repeat(300))))]),
            422,
        ),
        (
            json!([log_with("source", Some(json!("s".repeat(300))))]),
            422,
        ),
        (json!([log_with("source", Some(json!(7)))]), 422),
        (json!([log_with("format_type", Some(json!("xml")))]), 422),
        (json!([log_with("format_type", Some(json!(3)))]), 422),
        (
            json!([log_with("format_type", Some(json!({"json": true})))]),
            422,
        ),
        (json!([log_with("custom_config", Some(json!("x")))]), 422),
        (json!([log_with("custom_config", Some(json!([1, 2])))]), 422),
        (json!([web_log(100.0, 0.0), 5]), 422),
    ] {
        cases.push(post(INGEST, json!({ "logs": logs }).to_string(), expected));
    }
    cases.push(post(
        INGEST,
        json!({"logs": [web_log(1.0, 0.0)], "tags": "x"}).to_string(),
        422,
    ));
    let too_many: Vec<Value> = (0..=MAX_LOGS).map(|_| web_log(100.0, 0.0)).collect();
    cases.push(post(INGEST, logs_body(&too_many), 413));

    // Accepted: each of these logs gets a result with an error (or is judged), none is lost.
    let judged_with_errors = [
        json!({"raw_log": "{not json", "service": "web_server", "source": "n", "format_type": "json"}),
        json!({"raw_log": "[1, 2]", "service": "web_server", "source": "n", "format_type": "json"}),
        json!({"raw_log": "", "service": "web_server", "source": "n", "format_type": "json"}),
        json!({"raw_log": "=== ===", "service": "database", "source": "p", "format_type": "key_value"}),
        json!({"raw_log": "x", "service": "application", "source": "a", "format_type": "regex"}),
        json!({"raw_log": "x", "service": "application", "source": "a", "format_type": "custom"}),
        regex_log("("),
        regex_log("(?P<x"),
        regex_log("\\p{NoSuchClass}"),
        regex_log("(a{1000}){1000}"),
        regex_log(""),
        json!({"raw_log": "y".repeat(70_000), "service": "web_server", "source": "n", "format_type": "json"}),
        json!({"raw_log": "\u{0}\u{1b}[31m\n", "service": "web\u{1b}[2J", "source": "n\r\nX: y", "format_type": "key_value"}),
        json!({"raw_log": format!("{{\"a\": {}1{}}}", "[".repeat(500), "]".repeat(500)), "service": "web_server", "source": "n", "format_type": "json"}),
        json!({"raw_log": "{\"response_time\": 1e999}", "service": "web_server", "source": "n", "format_type": "json"}),
        json!({"raw_log": "{\"response_time\": \"NaN\", \"error_rate\": \"-inf\"}", "service": "web_server", "source": "n", "format_type": "json"}),
        json!({"raw_log": "level=INFO a=1 a=2 a=3", "service": "", "source": "", "format_type": "key_value"}),
    ];
    for log in judged_with_errors {
        cases.push(post(INGEST, logs_body(&[log]), 200));
    }
}

fn train_cases(cases: &mut Vec<Case>) {
    shapeless_bodies(TRAIN, cases);
    for (logs, expected) in [
        (json!([]), 400),
        (json!("x"), 422),
        (json!([1]), 422),
        (json!([{}]), 422),
        (
            json!([log_with("service", Some(json!("s".repeat(300))))]),
            422,
        ),
        (json!([log_with("format_type", Some(json!("yaml")))]), 422),
    ] {
        cases.push(post(TRAIN, json!({ "logs": logs }).to_string(), expected));
    }
    let too_many: Vec<Value> = (0..=MAX_LOGS).map(|_| web_log(100.0, 0.0)).collect();
    cases.push(post(TRAIN, logs_body(&too_many), 413));
    for job in [
        "no-such-job",
        "%00",
        "..%2f..%2fetc%2fpasswd",
        &"j".repeat(2_000),
    ] {
        cases.push(call(Method::GET, &format!("{TRAIN}/{job}"), 404));
    }
}

fn feedback_cases(cases: &mut Vec<Case>) {
    shapeless_bodies(FEEDBACK, cases);
    let valid = web_log(100.0, 0.0);
    for (feedback, expected) in [
        (json!([]), 400),
        (json!(null), 422),
        (json!("x"), 422),
        (json!([1]), 422),
        (json!([{}]), 422),
        (json!([{"log": valid}]), 422),
        (json!([{"is_anomaly": 1}]), 422),
        (json!([{"log": valid, "is_anomaly": 2}]), 422),
        (json!([{"log": valid, "is_anomaly": -1}]), 422),
        (json!([{"log": valid, "is_anomaly": "yes"}]), 422),
        (json!([{"log": valid, "is_anomaly": 0.5}]), 422),
        (json!([{"log": null, "is_anomaly": 1}]), 422),
        (json!([{"log": {}, "is_anomaly": 1}]), 422),
        (
            json!([{"log": log_with("service", Some(json!("s".repeat(300)))), "is_anomaly": 1}]),
            422,
        ),
    ] {
        cases.push(post(
            FEEDBACK,
            json!({ "feedback": feedback }).to_string(),
            expected,
        ));
    }
    let too_many: Vec<Value> = (0..=MAX_LOGS)
        .map(|_| json!({"log": valid, "is_anomaly": 0}))
        .collect();
    cases.push(post(
        FEEDBACK,
        json!({ "feedback": too_many }).to_string(),
        413,
    ));
}

fn query_cases(cases: &mut Vec<Case>) {
    for (query, expected) in [
        ("limit=-1", 422),
        ("limit=10001", 422),
        ("limit=abc", 422),
        ("limit=1e3", 422),
        ("limit=", 422),
        ("limit=99999999999999999999999", 422),
        ("since=yesterday", 422),
        ("since=2024-13-45T99:00:00Z", 422),
        ("since=", 422),
        ("detector=magic", 422),
        ("order=random", 422),
        ("order=", 422),
        ("limit=5&limit=abc", 422),
        ("service=", 200),
        ("service=%00%1b", 200),
        ("service=%FF%FE", 200),
        ("unknown=1", 200),
        ("limit=0", 200),
        ("since=2024-01-01T00:00:00%2B14:00", 200),
    ] {
        cases.push(call(
            Method::GET,
            &format!("/api/v1/anomalies?{query}"),
            expected,
        ));
    }
    for (query, expected) in [
        ("limit=-5", 422),
        ("limit=many", 422),
        ("state=sleeping", 422),
        ("state=", 422),
        ("service=%00", 200),
    ] {
        cases.push(call(
            Method::GET,
            &format!("/api/v1/alerts?{query}"),
            expected,
        ));
    }
}

fn route_cases(cases: &mut Vec<Case>) {
    for (method, path, expected) in [
        (Method::GET, INGEST, 405),
        (Method::PUT, INGEST, 405),
        (Method::DELETE, TRAIN, 405),
        (Method::POST, "/health", 405),
        (Method::PATCH, "/api/v1/anomalies", 405),
        (Method::POST, "/api/v1/metrics", 405),
        (Method::POST, "/api/v1/models", 405),
        (Method::DELETE, "/api/v1/alerts", 405),
        (Method::GET, "/nope", 404),
        (Method::GET, "/api/v1/anomalies/", 404),
        (Method::GET, "/api/v2/anomalies", 404),
        (Method::GET, "/api/v1/%2e%2e/health", 404),
        (Method::GET, "/api/v1/train/", 404),
        (Method::GET, &format!("/{}", "a".repeat(4_000)), 404),
    ] {
        cases.push(call(method, path, expected));
    }
}

async fn send(app: &TestApp, case: &Case) -> (u16, Vec<u8>) {
    let mut request = app.client.request(case.method.clone(), app.url(&case.path));
    if let Some(content_type) = case.content_type {
        request = request.header("content-type", content_type);
    }
    if !case.body.is_empty() || case.method == Method::POST {
        request = request.body(case.body.clone());
    }
    let response = request.send().await.expect("the service answers");
    let status = response.status().as_u16();
    (status, response.bytes().await.expect("a body").to_vec())
}

#[tokio::test]
async fn every_bad_input_gets_its_documented_answer_and_never_a_5xx() {
    let app = spawn_app_with(&[
        ("MAX_BODY_BYTES", &MAX_BODY_BYTES.to_string()),
        ("MAX_LOGS_PER_REQUEST", &MAX_LOGS.to_string()),
    ])
    .await;
    let mut cases = Vec::new();
    ingest_cases(&mut cases);
    train_cases(&mut cases);
    feedback_cases(&mut cases);
    query_cases(&mut cases);
    route_cases(&mut cases);
    assert!(cases.len() >= 150, "the corpus holds {} cases", cases.len());

    let mut wrong = Vec::new();
    for case in &cases {
        let (status, body) = send(&app, case).await;
        let label = format!(
            "{} {} {:?} {:.120}",
            case.method,
            &case.path[..case.path.len().min(80)],
            case.content_type,
            String::from_utf8_lossy(&case.body)
        );
        assert!(
            status < 500,
            "{label}: {status} {}",
            String::from_utf8_lossy(&body)
        );
        if status != case.expected {
            wrong.push(format!("{label}: expected {}, got {status}", case.expected));
            continue;
        }
        let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if status >= 400 {
            assert!(
                parsed.get("detail").is_some(),
                "{label}: a {status} without detail: {}",
                String::from_utf8_lossy(&body)
            );
        } else if case.path == INGEST {
            // Every log of the request has its result; nothing is dropped silently.
            let results = parsed.as_array().map_or(0, Vec::len);
            assert_eq!(results, 1, "{label}: {parsed}");
        }
    }
    assert!(
        wrong.is_empty(),
        "{} cases answered otherwise:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    assert_eq!(app.get("/health").await.status(), 200);
    let results = app.ingest(&[web_log(100.0, 0.0)]).await;
    assert_eq!(results.len(), 1);
}
