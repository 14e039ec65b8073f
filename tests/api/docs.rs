//! GET /openapi.json and /docs on the real server: the description names every route with the
//! statuses its handler answers, and Swagger UI comes from the binary. The description is also
//! validated by openapi-spec-validator and fuzzed by Schemathesis in
//! `scripts/test-observability.sh`.

use serde_json::Value;

use crate::helpers::spawn_app;

#[tokio::test]
async fn the_description_is_openapi_3_1_and_names_every_route() {
    let app = spawn_app().await;

    let response = app.get("/openapi.json").await;

    assert_eq!(response.status(), 200);
    let spec: Value = response.json().await.expect("json");
    assert!(
        spec["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "{}",
        spec["openapi"]
    );
    let paths = spec["paths"].as_object().expect("paths");
    for (path, method) in [
        ("/", "get"),
        ("/health", "get"),
        ("/api/v1/", "get"),
        ("/api/v1/stream/multi-source", "post"),
        ("/api/v1/anomalies", "get"),
        ("/api/v1/anomalies", "delete"),
        ("/api/v1/train", "post"),
        ("/api/v1/train/{job_id}", "get"),
        ("/api/v1/models", "get"),
        ("/api/v1/feedback", "post"),
        ("/api/v1/metrics", "get"),
        ("/api/v1/alerts", "get"),
        ("/api/v1/alerts/stats", "get"),
        ("/metrics", "get"),
    ] {
        assert!(
            paths[path][method].is_object(),
            "{method} {path} is not described"
        );
    }
}

#[tokio::test]
async fn every_refusal_of_the_ingest_route_is_documented_with_its_detail_body() {
    let app = spawn_app().await;
    let spec: Value = app.get("/openapi.json").await.json().await.expect("json");

    let responses = &spec["paths"]["/api/v1/stream/multi-source"]["post"]["responses"];

    for status in ["200", "400", "413", "415", "422", "500", "503"] {
        assert!(responses[status].is_object(), "{status} is not documented");
    }
    assert_eq!(
        responses["422"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/ErrorBody"
    );
    let body = &spec["components"]["schemas"]["IngestRequest"];
    assert_eq!(body["properties"]["logs"]["minItems"], 1);
}

#[tokio::test]
async fn the_docs_page_and_its_assets_come_from_the_binary() {
    let app = spawn_app().await;

    let page = app.get("/docs/").await;

    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("body");
    assert!(html.contains("swagger-ui"), "{html}");
    for asset in [
        "/docs/swagger-ui.css",
        "/docs/swagger-ui-bundle.js",
        "/docs/swagger-ui-standalone-preset.js",
        "/docs/swagger-initializer.js",
    ] {
        let response = app.get(asset).await;
        assert_eq!(response.status(), 200, "{asset}");
        assert!(!response.bytes().await.expect("body").is_empty(), "{asset}");
    }
    let initializer = app.get_text("/docs/swagger-initializer.js").await;
    assert!(initializer.contains("/openapi.json"), "{initializer}");
    assert!(!initializer.contains("https://"), "{initializer}");
}
