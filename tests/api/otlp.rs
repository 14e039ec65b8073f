//! POST /v1/logs (OTLP/HTTP) on the real server: records are judged, stored, learned from and
//! alerted on like REST logs; bad input gets the OTLP specification's status, never a 5xx. The
//! real OpenTelemetry SDKs' exporters are exercised by `scripts/test-otlp.sh`.

use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as Kind;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app, spawn_app_with};

const PROTOBUF: &str = "application/x-protobuf";

/// `google.rpc.Status`, as the server writes it for a failure.
#[derive(Clone, PartialEq, Message)]
struct Status {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

fn string(value: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(Kind::StringValue(value.to_owned())),
    })
}

fn attribute(key: &str, value: Kind) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..KeyValue::default()
    }
}

/// A record at 2024-01-15T10:00:00Z with `body` and numeric `attributes`.
fn record(body: Option<&str>, severity: &str, attributes: &[(&str, f64)]) -> LogRecord {
    LogRecord {
        time_unix_nano: 1_705_312_800_000_000_000,
        observed_time_unix_nano: 1_705_312_801_000_000_000,
        severity_text: severity.to_owned(),
        body: body.and_then(string),
        attributes: attributes
            .iter()
            .map(|(key, value)| attribute(key, Kind::DoubleValue(*value)))
            .collect(),
        trace_id: (1..=16).collect(),
        span_id: (1..=8).collect(),
        ..LogRecord::default()
    }
}

fn export(service: &str, records: Vec<LogRecord>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![
                    attribute("service.name", Kind::StringValue(service.to_owned())),
                    attribute("host.name", Kind::StringValue("node-7".to_owned())),
                ],
                ..Resource::default()
            }),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: "orders.worker".to_owned(),
                    ..InstrumentationScope::default()
                }),
                log_records: records,
                ..ScopeLogs::default()
            }],
            ..ResourceLogs::default()
        }],
    }
}

async fn post(
    app: &TestApp,
    body: Vec<u8>,
    content_type: Option<&str>,
    encoding: Option<&str>,
) -> reqwest::Response {
    post_to(&app.address, app, body, content_type, encoding).await
}

async fn post_to(
    address: &str,
    app: &TestApp,
    body: Vec<u8>,
    content_type: Option<&str>,
    encoding: Option<&str>,
) -> reqwest::Response {
    let mut request = app.client.post(format!("{address}/v1/logs")).body(body);
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    if let Some(encoding) = encoding {
        request = request.header("content-encoding", encoding);
    }
    request.send().await.expect("request sent")
}

/// Posts `request` as protobuf and returns the decoded response, asserting a 200.
async fn export_protobuf(
    app: &TestApp,
    request: &ExportLogsServiceRequest,
) -> ExportLogsServiceResponse {
    let response = post(app, request.encode_to_vec(), Some(PROTOBUF), None).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], PROTOBUF);
    let bytes = response.bytes().await.expect("body");
    ExportLogsServiceResponse::decode(bytes).expect("an ExportLogsServiceResponse")
}

async fn status_of(response: reqwest::Response) -> (u16, Status) {
    let status = response.status().as_u16();
    assert_eq!(response.headers()["content-type"], PROTOBUF);
    let bytes = response.bytes().await.expect("body");
    (status, Status::decode(bytes).expect("a google.rpc.Status"))
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(bytes).expect("compresses");
    encoder.finish().expect("compresses")
}

#[tokio::test]
async fn a_protobuf_export_is_judged_and_stored_like_a_rest_log() {
    // Arrange
    let app = spawn_app().await;
    let request = export(
        "database",
        vec![
            record(
                Some("slow query query_time=6500ms connection_count=12"),
                "ERROR",
                &[],
            ),
            record(Some("query done"), "INFO", &[("query_time", 40.0)]),
        ],
    );

    // Act
    let response = export_protobuf(&app, &request).await;

    // Assert
    assert_eq!(response.partial_success, None);
    let anomalies = app.get_anomalies("").await;
    assert_eq!(anomalies.len(), 1, "{anomalies:?}");
    let anomaly = &anomalies[0];
    assert_eq!(anomaly["service"], "database");
    assert_eq!(anomaly["source"], "orders.worker");
    assert_eq!(anomaly["log_level"], "ERROR");
    assert_eq!(anomaly["timestamp"], "2024-01-15T10:00:00Z");
    assert_eq!(anomaly["rule_violation"], true);
    assert_eq!(anomaly["features"]["query_time"], 6500.0);
    assert_eq!(anomaly["features"]["connection_count"], 12.0);
    assert_eq!(
        anomaly["raw_log"],
        "slow query query_time=6500ms connection_count=12"
    );
    let metadata = &anomaly["metadata"];
    assert_eq!(metadata["protocol"], "otlp");
    assert_eq!(metadata["trace_id"], "0102030405060708090a0b0c0d0e0f10");
    assert_eq!(metadata["span_id"], "0102030405060708");
    assert_eq!(metadata["resource"]["host.name"], "node-7");
    assert_eq!(metadata["format_type"], "auto");
    let metrics = app.metrics().await;
    assert_eq!(metrics["prediction_count"], 2);
    assert_eq!(metrics["anomaly_count"], 1);
}

#[tokio::test]
async fn a_gzip_protobuf_export_is_read_after_decompression() {
    let app = spawn_app().await;
    let request = export(
        "application",
        vec![record(Some("worker busy"), "WARN", &[("cpu_usage", 97.0)])],
    );
    let response = post(
        &app,
        gzip(&request.encode_to_vec()),
        Some(PROTOBUF),
        Some("gzip"),
    )
    .await;
    assert_eq!(response.status(), 200);
    let anomalies = app.get_anomalies("").await;
    assert_eq!(anomalies.len(), 1);
    assert_eq!(anomalies[0]["features"]["cpu_usage"], 97.0);
    assert_eq!(anomalies[0]["log_level"], "WARN");
}

#[tokio::test]
async fn a_json_export_follows_the_otlp_json_mapping() {
    let app = spawn_app().await;
    let body = json!({"resourceLogs": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "web_server"}}]},
        "scopeLogs": [{"scope": {"name": "http"}, "logRecords": [
            {
                "timeUnixNano": "1705312800000000000",
                "severityNumber": 17,
                "traceId": "5B8EFFF798038103D269B633813FC60C",
                "spanId": "EEE19B7EC3C1B174",
                "body": {"kvlistValue": {"values": [
                    {"key": "message", "value": {"stringValue": "GET /checkout"}},
                    {"key": "response_time", "value": {"stringValue": "2.5s"}},
                ]}},
                "attributes": [
                    {"key": "error_rate", "value": {"doubleValue": 0.01}},
                    {"key": "retries", "value": {"intValue": "2"}},
                    {"key": "http.route", "value": {"stringValue": "/checkout"}},
                ],
                "aFieldFromTheFuture": {"ignored": true},
            },
            {"observedTimeUnixNano": 1705312900000000000u64, "body": {"stringValue": "fine"}},
        ]}],
    }]});
    let response = post(
        &app,
        body.to_string().into_bytes(),
        Some("application/json"),
        None,
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let answer: Value = response.json().await.expect("json");
    assert_eq!(answer, json!({}));
    let anomalies = app.get_anomalies("").await;
    assert_eq!(anomalies.len(), 1, "{anomalies:?}");
    let anomaly = &anomalies[0];
    assert_eq!(anomaly["service"], "web_server");
    assert_eq!(anomaly["message"], "GET /checkout");
    assert_eq!(anomaly["log_level"], "ERROR");
    assert_eq!(anomaly["features"]["response_time"], 2500.0);
    assert_eq!(anomaly["features"]["retries"], 2.0);
    assert_eq!(anomaly["metadata"]["attributes"]["http.route"], "/checkout");
    assert_eq!(
        anomaly["metadata"]["trace_id"],
        "5b8efff798038103d269b633813fc60c"
    );
    assert_eq!(app.metrics().await["prediction_count"], 2);
}

#[tokio::test]
async fn the_same_log_through_rest_auto_and_otlp_gets_the_same_verdict() {
    let app = spawn_app().await;
    let line = "2024-01-15T10:00:00Z ERROR cpu_usage=96 memory_usage=40";
    let rest = app
        .ingest(&[json!({"raw_log": line, "service": "application", "source": "orders.worker", "format_type": "auto"})])
        .await;
    assert_eq!(rest[0]["is_anomaly"], 1, "{}", rest[0]);
    let mut otlp = record(Some(line), "", &[]);
    otlp.time_unix_nano = 0;
    otlp.observed_time_unix_nano = 0;
    otlp.trace_id.clear();
    otlp.span_id.clear();
    export_protobuf(&app, &export("application", vec![otlp])).await;
    let anomalies = app.get_anomalies("").await;
    assert_eq!(anomalies.len(), 2);
    let keys = [
        "service",
        "source",
        "timestamp",
        "log_level",
        "features",
        "rule_violation",
        "raw_log",
    ];
    for key in keys {
        assert_eq!(anomalies[0][key], anomalies[1][key], "{key}");
    }
    assert_eq!(anomalies[0]["violations"], anomalies[1]["violations"]);
}

#[tokio::test]
async fn otlp_logs_teach_a_model_which_then_flags_an_outlier() {
    let app = spawn_app_with(&[("MIN_TRAIN_SAMPLES", "200")]).await;
    let baseline: Vec<LogRecord> = (0..200)
        .map(|i| {
            let wobble = ((i * 7919) % 41) as f64 - 20.0;
            let items = ((i * 31) % 5 + 1) as f64;
            record(
                Some("order placed"),
                "INFO",
                &[("latency_ms", 100.0 + wobble), ("items", items)],
            )
        })
        .collect();
    export_protobuf(&app, &export("checkout", baseline)).await;
    let model = app.wait_for_model("checkout").await;
    assert_eq!(model["features"], json!(["items", "latency_ms"]));
    export_protobuf(
        &app,
        &export(
            "checkout",
            vec![
                record(
                    Some("order placed"),
                    "INFO",
                    &[("latency_ms", 101.0), ("items", 3.0)],
                ),
                record(
                    Some("order placed"),
                    "INFO",
                    &[("latency_ms", 5000.0), ("items", 40.0)],
                ),
            ],
        ),
    )
    .await;
    let anomalies = app.get_anomalies("?detector=model").await;
    assert_eq!(anomalies.len(), 1, "{anomalies:?}");
    assert_eq!(anomalies[0]["features"]["latency_ms"], 5000.0);
    assert_eq!(anomalies[0]["rule_violation"], false);
}

#[tokio::test]
async fn a_batch_larger_than_the_ingest_limit_is_judged_in_parts() {
    let app = spawn_app_with(&[("MAX_LOGS_PER_REQUEST", "10")]).await;
    let records = (0..25)
        .map(|i| record(Some(&format!("tick n={i}")), "INFO", &[]))
        .collect();
    let response = export_protobuf(&app, &export("ticker", records)).await;
    assert_eq!(response.partial_success, None);
    assert_eq!(app.metrics().await["prediction_count"], 25);
}

#[tokio::test]
async fn the_otlp_port_serves_logs_and_nothing_else() {
    let app = spawn_app_with(&[("OTLP_HTTP_PORT", "0")]).await;
    let otlp = app.otlp_address.clone().expect("an OTLP port");
    let request = export(
        "database",
        vec![record(Some("query_time=9000ms"), "ERROR", &[])],
    );
    let response = post_to(&otlp, &app, request.encode_to_vec(), Some(PROTOBUF), None).await;
    assert_eq!(response.status(), 200);
    assert_eq!(app.get_anomalies("").await.len(), 1);
    let other = app
        .client
        .get(format!("{otlp}/api/v1/anomalies"))
        .send()
        .await
        .expect("request sent");
    assert_eq!(other.status(), 404);
}

#[tokio::test]
async fn an_app_without_an_otlp_port_opens_none() {
    let app = spawn_app().await;
    assert_eq!(app.otlp_address, None);
}

// Bad input: each gets the specification's status and a `google.rpc.Status`, never a 5xx.

#[tokio::test]
async fn garbage_protobuf_is_a_400_with_a_status() {
    let app = spawn_app().await;
    let response = post(
        &app,
        b"\x0a\xff\xff\xff\xff\x0f garbage".to_vec(),
        Some(PROTOBUF),
        None,
    )
    .await;
    let (status, body) = status_of(response).await;
    assert_eq!(status, 400);
    assert_eq!(body.code, 3);
    assert!(
        body.message
            .contains("not a protobuf ExportLogsServiceRequest"),
        "{}",
        body.message
    );
    assert_eq!(app.metrics().await["prediction_count"], 0);
}

#[tokio::test]
async fn a_body_that_is_not_protobuf_or_json_is_a_415() {
    let app = spawn_app().await;
    let request = export("database", vec![record(Some("x=1"), "INFO", &[])]).encode_to_vec();
    for content_type in [Some("text/plain"), Some("application/grpc"), None] {
        let response = post(&app, request.clone(), content_type, None).await;
        let (status, body) = status_of(response).await;
        assert_eq!(status, 415, "{content_type:?}");
        assert!(
            body.message.contains("application/x-protobuf"),
            "{}",
            body.message
        );
    }
    let response = post(&app, request, Some(PROTOBUF), Some("br")).await;
    assert_eq!(response.status(), 415);
    assert_eq!(response.headers()["accept-encoding"], "gzip");
}

#[tokio::test]
async fn a_gzip_bomb_is_a_413_counted_after_decompression() {
    let app = spawn_app_with(&[("MAX_BODY_BYTES", "65536")]).await;
    // 16 MiB of zeros compress to about 16 KiB: under the limit as sent, far over it inflated.
    let bomb = gzip(&vec![0u8; 16 << 20]);
    assert!(bomb.len() < 65_536);
    let response = post(&app, bomb, Some(PROTOBUF), Some("gzip")).await;
    let (status, body) = status_of(response).await;
    assert_eq!(status, 413);
    assert!(
        body.message.contains("once decompressed"),
        "{}",
        body.message
    );
    // Not gzip at all, though declared so: 400.
    let response = post(&app, b"plain".to_vec(), Some(PROTOBUF), Some("gzip")).await;
    assert_eq!(response.status(), 400);
    // And the service still serves.
    assert_eq!(app.get("/health").await.status(), 200);
}

#[tokio::test]
async fn an_empty_request_succeeds_with_nothing_to_judge() {
    let app = spawn_app().await;
    let response = export_protobuf(&app, &ExportLogsServiceRequest::default()).await;
    assert_eq!(response.partial_success, None);
    let response = post(&app, Vec::new(), Some(PROTOBUF), None).await;
    assert_eq!(response.status(), 200);
    let response = post(&app, b"{}".to_vec(), Some("application/json"), None).await;
    assert_eq!(response.status(), 200);
    // An empty body is not JSON.
    let response = post(&app, Vec::new(), Some("application/json"), None).await;
    assert_eq!(response.status(), 400);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: Value = response.json().await.expect("a JSON Status");
    assert_eq!(body["code"], 3);
    assert_eq!(
        body["details"][0]["@type"],
        "type.googleapis.com/google.rpc.BadRequest"
    );
    assert_eq!(app.metrics().await["prediction_count"], 0);
}

#[tokio::test]
async fn records_without_a_body_are_rejected_in_a_partial_success() {
    let app = spawn_app().await;
    let request = export(
        "database",
        vec![
            record(None, "ERROR", &[("query_time", 9000.0)]),
            record(Some("query_time=9000ms"), "ERROR", &[]),
            record(None, "INFO", &[]),
        ],
    );
    let response = export_protobuf(&app, &request).await;
    let partial = response.partial_success.expect("a partial success");
    assert_eq!(partial.rejected_log_records, 2);
    assert!(
        partial.error_message.contains("no body"),
        "{}",
        partial.error_message
    );
    assert_eq!(app.get_anomalies("").await.len(), 1);
    assert_eq!(app.metrics().await["prediction_count"], 1);
}

#[tokio::test]
async fn an_oversized_body_is_rejected_and_the_rest_of_the_batch_judged() {
    let app = spawn_app_with(&[("MAX_RAW_LOG_BYTES", "64")]).await;
    let long = format!("query_time=9000ms {}", "x".repeat(100));
    let request = export(
        "database",
        vec![
            record(Some(&long), "ERROR", &[]),
            record(Some("query_time=9000ms"), "ERROR", &[]),
        ],
    );
    let partial = export_protobuf(&app, &request)
        .await
        .partial_success
        .expect("a partial success");
    assert_eq!(partial.rejected_log_records, 1);
    assert!(
        partial.error_message.contains("MAX_RAW_LOG_BYTES"),
        "{}",
        partial.error_message
    );
    assert_eq!(app.get_anomalies("").await.len(), 1);
}

#[tokio::test]
async fn snake_case_json_keys_are_ignored_with_a_warning() {
    let app = spawn_app().await;
    let body = json!({"resource_logs": [{"scope_logs": [{"log_records": [
        {"severity_text": "ERROR", "body": {"string_value": "query_time=9000ms"}}
    ]}]}]});
    let response = post(
        &app,
        body.to_string().into_bytes(),
        Some("application/json"),
        None,
    )
    .await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.expect("json");
    let partial = &answer["partialSuccess"];
    assert_eq!(partial["rejectedLogRecords"], "0");
    let message = partial["errorMessage"].as_str().expect("a warning");
    assert!(
        message.contains("resource_logs (write resourceLogs)"),
        "{message}"
    );
    assert_eq!(app.metrics().await["prediction_count"], 0);
}

#[tokio::test]
async fn json_of_the_wrong_shape_is_a_400_in_json() {
    let app = spawn_app().await;
    for body in [
        r#"{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"traceId": "not hex"}]}]}]}"#,
        r#"{"resourceLogs": {"not": "a list"}}"#,
        r#"{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"timeUnixNano": "soon"}]}]}]}"#,
        "[1, 2, 3]",
        "not json",
    ] {
        let response = post(
            &app,
            body.as_bytes().to_vec(),
            Some("application/json"),
            None,
        )
        .await;
        assert_eq!(response.status(), 400, "{body}");
        let status: Value = response.json().await.expect("a JSON Status");
        assert!(status["message"].is_string(), "{status}");
    }
}

#[tokio::test]
async fn a_shed_export_is_a_429_with_retry_after() {
    let app = spawn_app_with(&[("OTLP_MAX_CONCURRENT_EXPORTS", "1")]).await;
    // Another export holds the only permit.
    let held = app
        .state
        .otlp_exports
        .clone()
        .try_acquire_owned()
        .expect("the permit is free");
    let request = export("database", vec![record(Some("x=1"), "INFO", &[])]).encode_to_vec();
    let response = post(&app, request.clone(), Some(PROTOBUF), None).await;
    assert_eq!(response.headers()["retry-after"], "1");
    let (status, body) = status_of(response).await;
    assert_eq!(status, 429);
    assert!(
        body.message.contains("OTLP_MAX_CONCURRENT_EXPORTS"),
        "{}",
        body.message
    );
    drop(held);
    assert_eq!(
        post(&app, request, Some(PROTOBUF), None).await.status(),
        200
    );
}

#[tokio::test]
async fn storage_that_cannot_commit_is_a_503_with_retry_after() {
    let app = spawn_app().await;
    // Another process holds the database's write lock: the anomaly cannot be committed.
    let blocker = rusqlite::Connection::open(app.data_dir.join("aioops.db")).expect("opens");
    blocker.execute_batch("BEGIN EXCLUSIVE;").expect("locks");
    let request = export(
        "database",
        vec![record(Some("query_time=9000ms"), "ERROR", &[])],
    );
    let response = post(&app, request.encode_to_vec(), Some(PROTOBUF), None).await;
    blocker.execute_batch("ROLLBACK;").expect("unlocks");
    assert_eq!(response.headers()["retry-after"], "5");
    let (status, body) = status_of(response).await;
    assert_eq!(status, 503);
    assert!(body.message.contains("locked"), "{}", body.message);
    // The client retries, and the same export goes through.
    export_protobuf(&app, &request).await;
    assert_eq!(app.get_anomalies("").await.len(), 1);
}

#[tokio::test]
async fn rest_logs_may_leave_their_format_to_the_service() {
    let app = spawn_app().await;
    let logs = [
        json!({"raw_log": r#"{"level": "ERROR", "response_time": "2.5s"}"#, "service": "web_server", "source": "nginx", "format_type": "auto"}),
        json!({"raw_log": "2024-01-15T10:00:01Z WARN query_time=5500ms", "service": "database", "source": "pg", "format_type": "auto"}),
        json!({"raw_log": "{not json, just braces", "service": "web_server", "source": "nginx", "format_type": "auto"}),
        json!({"raw_log": "all quiet", "service": "web_server", "source": "nginx", "format_type": "auto"}),
    ];
    let results = app.ingest(&logs).await;
    let flags: Vec<&Value> = results.iter().map(|r| &r["is_anomaly"]).collect();
    assert_eq!(flags, [1, 1, 0, 0]);
    assert!(results.iter().all(|r| r["error"].is_null()), "{results:?}");
    let anomalies = app.get_anomalies("?service=database").await;
    assert_eq!(anomalies[0]["features"]["query_time"], 5500.0);
    assert_eq!(anomalies[0]["log_level"], "WARN");
    assert_eq!(anomalies[0]["metadata"]["format_type"], "auto");
    // A name that is none of the five is still a 422 that lists them.
    let response = app
        .post_logs(&[json!({"raw_log": "x", "service": "a", "source": "b", "format_type": "xml"})])
        .await;
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.expect("json");
    assert!(body.to_string().contains("'auto'"), "{body}");
}

#[tokio::test]
async fn an_export_that_runs_past_the_request_timeout_is_a_503_with_retry_after() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let app = spawn_app_with(&[("REQUEST_TIMEOUT_SECONDS", "1")]).await;
    let address = app.address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connects");
    // A body that never completes: the handler waits for it until the request times out.
    stream
        .write_all(
            b"POST /v1/logs HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-protobuf\r\n\
              Content-Length: 100\r\n\r\n\x0a",
        )
        .await
        .expect("sends");
    let mut response = Vec::new();
    let mut chunk = [0u8; 4096];
    while !response.windows(4).any(|window| window == b"\r\n\r\n") {
        let read = tokio::time::timeout(crate::helpers::DEADLINE, stream.read(&mut chunk))
            .await
            .expect("an answer within the deadline")
            .expect("reads");
        assert!(read > 0, "closed without an answer");
        response.extend_from_slice(&chunk[..read]);
    }
    let head = String::from_utf8_lossy(&response).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 503"), "{head}");
    assert!(head.contains("retry-after: 5"), "{head}");
    assert!(
        head.contains("content-type: application/x-protobuf"),
        "{head}"
    );
}
