//! The MCP door at `/mcp` and the access token on every door, over real HTTP: JSON-RPC by hand
//! here (the official Python client drives the same server in `scripts/test-mcp.sh`).

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::process::ServiceProcess;
use crate::helpers::{TestApp, db_log, spawn_app, spawn_app_with, web_log};

const TOKEN: &str = "t0ken-for-tests-7f3a9c1e5b";

const ACCEPT_BOTH: &str = "application/json, text/event-stream";

fn initialize() -> Value {
    json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "rust-tests", "version": "1.0"}
        }
    })
}

fn call(id: u64, method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

fn call_tool(id: u64, name: &str, arguments: Value) -> Value {
    call(
        id,
        "tools/call",
        json!({"name": name, "arguments": arguments}),
    )
}

/// POSTs one JSON-RPC message to `/mcp` as a Streamable HTTP client does.
async fn post_mcp(app: &TestApp, body: &Value, token: Option<&str>) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.url("/mcp"))
        .header("accept", ACCEPT_BOTH)
        .header("mcp-protocol-version", "2025-06-18")
        .json(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("request sent")
}

/// The JSON-RPC `result` of a request that must succeed.
async fn rpc_result(app: &TestApp, body: &Value, token: Option<&str>) -> Value {
    let response = post_mcp(app, body, token).await;
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = response.text().await.expect("body");
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(
        content_type.starts_with("application/json"),
        "stateless JSON mode answers JSON, got {content_type}: {text}"
    );
    let reply: Value = serde_json::from_str(&text).expect("a JSON-RPC reply");
    assert!(reply.get("error").is_none(), "{reply}");
    reply["result"].clone()
}

#[tokio::test]
async fn initialize_is_answered_without_a_session() {
    let app = spawn_app().await;
    let response = post_mcp(&app, &initialize(), None).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers().get("mcp-session-id").is_none(),
        "stateless: no session to stick to"
    );
    let reply: Value = response.json().await.expect("json");
    let result = &reply["result"];
    assert_eq!(result["serverInfo"]["name"], "aioops-mcp-iforest");
    for capability in ["tools", "prompts", "resources"] {
        assert!(result["capabilities"].get(capability).is_some(), "{result}");
    }
    assert!(
        result["instructions"]
            .as_str()
            .is_some_and(|s| s.contains("query_anomalies"))
    );
}

#[tokio::test]
async fn every_tool_has_bounded_schemas_and_honest_annotations() {
    let app = spawn_app().await;
    let result = rpc_result(&app, &call(2, "tools/list", json!({})), None).await;
    let tools = result["tools"].as_array().expect("tools");
    let names: Vec<&str> = tools.iter().filter_map(|t| t["name"].as_str()).collect();
    let read_only = [
        "query_anomalies",
        "get_anomaly",
        "list_alerts",
        "alert_stats",
        "list_models",
        "get_baseline",
        "training_status",
        "service_metrics",
    ];
    let writes = ["submit_feedback", "start_training", "ingest_logs"];
    for name in read_only.iter().chain(&writes) {
        assert!(names.contains(name), "{name} missing from {names:?}");
    }
    for tool in tools {
        let name = tool["name"].as_str().unwrap_or_default();
        assert!(
            tool["description"].as_str().is_some_and(|d| d.len() > 60),
            "{name} says when to use it"
        );
        assert_eq!(tool["inputSchema"]["type"], "object", "{name}");
        assert_eq!(
            tool["outputSchema"]["type"], "object",
            "{name}: structured results"
        );
        let hint = &tool["annotations"]["readOnlyHint"];
        assert_eq!(hint, &json!(read_only.contains(&name)), "{name}");
    }
    let query = tools
        .iter()
        .find(|t| t["name"] == "query_anomalies")
        .expect("query_anomalies");
    let limit = &query["inputSchema"]["properties"]["limit"];
    assert_eq!(limit["maximum"], 200, "{limit}");
    assert_eq!(limit["minimum"], 1, "{limit}");
}

#[tokio::test]
async fn ingest_over_mcp_is_the_same_ingest_as_rest() {
    let app = spawn_app().await;
    let log = web_log(5000.0, 0.01);
    let logs = json!([{
        "raw_log": log["raw_log"], "service": "web_server", "source": "nginx", "format_type": "json"
    }]);
    let result = rpc_result(
        &app,
        &call_tool(
            3,
            "ingest_logs",
            json!({"logs": logs, "tags": {"via": "mcp"}}),
        ),
        None,
    )
    .await;
    assert_eq!(result["isError"], json!(false), "{result}");
    let report = &result["structuredContent"];
    assert_eq!(report["count"], 1);
    assert_eq!(
        report["anomalies"], 1,
        "response_time 5000 breaks the 2000 rule"
    );
    assert_eq!(report["results"][0]["detector"], "rule");

    let stored = app.get_anomalies("?service=web_server").await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["metadata"]["tags"]["via"], "mcp");

    let id = stored[0]["id"].as_i64().expect("id");
    let detail = rpc_result(&app, &call_tool(4, "get_anomaly", json!({"id": id})), None).await;
    let explanation = &detail["structuredContent"]["explanation"];
    assert_eq!(
        explanation["rule_violations"][0]["feature"],
        "response_time"
    );
    assert!(
        explanation["summary"]
            .as_str()
            .is_some_and(|s| s.contains("response_time")),
        "{explanation}"
    );
}

#[tokio::test]
async fn a_bad_argument_is_a_tool_error_an_unknown_tool_a_protocol_error() {
    let app = spawn_app().await;
    for (name, arguments) in [
        ("query_anomalies", json!({"limit": 100000})),
        ("query_anomalies", json!({"since": "yesterday"})),
        ("query_anomalies", json!({"limit": "ten"})),
        ("get_anomaly", json!({"id": 424242})),
        ("ingest_logs", json!({"logs": []})),
        ("submit_feedback", json!({"is_anomaly": true})),
    ] {
        let result = rpc_result(&app, &call_tool(5, name, arguments.clone()), None).await;
        assert_eq!(
            result["isError"],
            json!(true),
            "{name} {arguments}: {result}"
        );
        let message = result["content"][0]["text"].as_str().unwrap_or_default();
        assert!(!message.is_empty(), "{name} {arguments} says why");
    }
    let response = post_mcp(&app, &call_tool(6, "no_such_tool", json!({})), None).await;
    let reply: Value = response.json().await.expect("json");
    assert!(reply["error"]["code"].as_i64().is_some(), "{reply}");
}

#[tokio::test]
async fn a_post_that_does_not_accept_event_streams_is_refused_406() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url("/mcp"))
        .header("accept", "application/json")
        .json(&initialize())
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::NOT_ACCEPTABLE);
}

#[tokio::test]
async fn a_foreign_host_or_origin_is_refused_403() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url("/mcp"))
        .header("accept", ACCEPT_BOTH)
        .header("host", "evil.example.com")
        .json(&initialize())
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let response = app
        .client
        .post(app.url("/mcp"))
        .header("accept", ACCEPT_BOTH)
        .header("origin", "https://evil.example.com")
        .json(&initialize())
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn configured_hosts_and_origins_are_admitted() {
    let app = spawn_app_with(&[
        (
            "MCP_ALLOWED_HOSTS",
            "aioops.monitoring.svc.cluster.local,mcp.example.com",
        ),
        ("MCP_ALLOWED_ORIGINS", "https://agent.example.com:443"),
    ])
    .await;
    for host in [
        "aioops.monitoring.svc.cluster.local:8000",
        "mcp.example.com",
    ] {
        let response = app
            .client
            .post(app.url("/mcp"))
            .header("accept", ACCEPT_BOTH)
            .header("host", host)
            .header("origin", "https://agent.example.com")
            .json(&initialize())
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), StatusCode::OK, "{host}");
    }
    let response = post_mcp(&app, &initialize(), None).await;
    assert_eq!(
        response.status(),
        StatusCode::FORBIDDEN,
        "127.0.0.1 is no longer listed"
    );
}

#[tokio::test]
async fn with_a_token_writes_and_mcp_need_it_reads_do_not() {
    let app = spawn_app_with(&[("API_TOKEN", TOKEN)]).await;
    let logs = json!({"logs": [db_log(100, 10)]});
    let post = |token: Option<&'static str>| {
        let mut request = app
            .client
            .post(app.url("/api/v1/stream/multi-source"))
            .json(&logs);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };

    // Missing and wrong tokens: 401, a {"detail"} and a Bearer challenge.
    for token in [None, Some("not-the-token-at-all-000")] {
        let response = post(token).await.expect("sent");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let challenge = response
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(challenge.starts_with("Bearer"), "{challenge}");
        let body: Value = response.json().await.expect("json");
        assert!(body["detail"].as_str().is_some(), "{body}");
    }
    let response = post(Some(TOKEN)).await.expect("sent");
    assert_eq!(response.status(), StatusCode::OK);

    for (method, path) in [
        (reqwest::Method::DELETE, "/api/v1/anomalies"),
        (reqwest::Method::POST, "/api/v1/train"),
        (reqwest::Method::POST, "/api/v1/feedback"),
    ] {
        let response = app
            .client
            .request(method.clone(), app.url(path))
            .json(&json!({}))
            .send()
            .await
            .expect("sent");
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "{method} {path}"
        );
    }
    for path in [
        "/health",
        "/api/v1/anomalies",
        "/api/v1/metrics",
        "/api/v1/models",
    ] {
        assert_eq!(
            app.get(path).await.status(),
            StatusCode::OK,
            "{path} stays open"
        );
    }

    // MCP: every request needs the token, answered with a Bearer challenge and a JSON-RPC error.
    let response = post_mcp(&app, &call(7, "tools/list", json!({})), None).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.headers().contains_key("www-authenticate"));
    let reply: Value = response.json().await.expect("json");
    assert!(reply["error"]["message"].as_str().is_some(), "{reply}");
    let response = post_mcp(
        &app,
        &call(8, "tools/list", json!({})),
        Some("wrong-token-000000000"),
    )
    .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let result = rpc_result(&app, &call(9, "tools/list", json!({})), Some(TOKEN)).await;
    assert!(result["tools"].as_array().is_some_and(|t| !t.is_empty()));
}

#[tokio::test]
async fn api_token_for_reads_closes_reads_but_not_the_probes() {
    let app = spawn_app_with(&[("API_TOKEN", TOKEN), ("API_TOKEN_FOR_READS", "true")]).await;
    assert_eq!(
        app.get("/api/v1/anomalies").await.status(),
        StatusCode::UNAUTHORIZED
    );
    let response = app
        .client
        .get(app.url("/api/v1/anomalies"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::OK);
    for probe in ["/", "/health", "/api/v1/"] {
        assert_eq!(app.get(probe).await.status(), StatusCode::OK, "{probe}");
    }
}

#[tokio::test]
async fn the_token_appears_in_no_log_line_and_no_response() {
    // Arrange: the real binary, logging everything it can.
    let tmp = tempfile::tempdir().expect("tempdir");
    let log = tmp.path().join("service.log");
    let service = ServiceProcess::start(
        &tmp.path().join("data"),
        &log,
        &[("API_TOKEN", TOKEN), ("LOG_LEVEL", "trace")],
    )
    .await;
    let wrong = "wrong-token-but-long-enough-123";
    let mut bodies = Vec::new();

    // Act: refused and admitted requests on both doors.
    for token in [None, Some(wrong), Some(TOKEN)] {
        let mut requests = vec![
            service
                .client
                .post(service.url("/api/v1/stream/multi-source"))
                .json(&json!({"logs": [web_log(5000.0, 0.5)]})),
            service
                .client
                .post(service.url("/mcp"))
                .header("accept", ACCEPT_BOTH)
                .json(&initialize()),
            service
                .client
                .post(service.url("/mcp"))
                .header("accept", ACCEPT_BOTH)
                .json(&call_tool(2, "service_metrics", json!({}))),
            service
                .client
                .post(service.url("/mcp"))
                .header("accept", ACCEPT_BOTH)
                .json(&call_tool(3, "query_anomalies", json!({"limit": 5}))),
            service.client.get(service.url("/api/v1/anomalies")),
        ];
        for request in requests.drain(..) {
            let request = match token {
                Some(token) => request.bearer_auth(token),
                None => request,
            };
            let response = request.send().await.expect("sent");
            let headers = format!("{:?}", response.headers());
            bodies.push(format!(
                "{headers} {}",
                response.text().await.expect("body")
            ));
        }
    }

    // Assert
    assert!(
        bodies
            .iter()
            .any(|b| b.contains("query_anomalies") || b.contains("anomalies"))
    );
    for body in &bodies {
        assert!(
            !body.contains(TOKEN),
            "a response carries the token: {body}"
        );
    }
    drop(service);
    let text = std::fs::read_to_string(&log).expect("the service's log");
    assert!(text.contains("Request refused"), "refusals are logged");
    assert!(!text.contains(TOKEN), "the log carries the token");
    assert!(!text.contains(wrong), "the log carries a presented token");
}

#[tokio::test]
async fn a_short_or_spaced_token_refuses_start_up_without_echoing_it() {
    use aioops_mcp_iforest::settings::Settings;
    for bad in ["x9y8z7", "spaced t0ken value 0123456789"] {
        let vars = [("API_TOKEN".to_owned(), bad.to_owned())]
            .into_iter()
            .collect();
        let error = Settings::from_vars(&vars).expect_err("refused");
        let text = error.to_string();
        assert!(text.contains("API_TOKEN"), "{text}");
        assert!(!text.contains(bad), "{text}");
    }
}
