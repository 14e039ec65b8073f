//! The learning loop on the real server: automatic first models, train jobs, feedback, persistence.

use serde_json::{Value, json};

use crate::helpers::{spawn_app_with, web_log};

/// A checkout log: no built-in rule reads these fields, so only a model can judge them.
fn checkout_log(latency_ms: f64, items: f64) -> Value {
    json!({
        "raw_log": json!({"timestamp": "2024-02-01T12:00:00Z", "level": "INFO", "message": "order placed",
                          "latency": format!("{latency_ms}ms"), "items": items, "order_id": "A-1"}).to_string(),
        "service": "checkout",
        "source": "api",
        "format_type": "json",
    })
}

/// A deterministic baseline around latency 100 ms and 3 items.
fn baseline(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            let wobble = ((i * 7919) % 41) as f64 - 20.0; // -20..20
            let items = ((i * 31) % 5 + 1) as f64; // 1..5
            checkout_log(100.0 + wobble, items)
        })
        .collect()
}

#[tokio::test]
async fn a_service_learns_its_baseline_and_then_flags_a_clear_outlier() {
    let app = spawn_app_with(&[("MIN_TRAIN_SAMPLES", "200")]).await;
    let results = app.ingest(&baseline(200)).await;
    assert!(
        results
            .iter()
            .all(|r| r["is_anomaly"] == 0 && r["score"].is_null())
    );
    let model = app.wait_for_model("checkout").await;
    assert_eq!(model["source"], "auto");
    assert_eq!(model["features"], json!(["items", "latency"]));
    let results = app
        .ingest(&[
            checkout_log(100.0, 3.0),
            checkout_log(5000.0, 40.0),
            checkout_log(95.0, 2.0),
        ])
        .await;
    assert_eq!(results[0]["is_anomaly"], 0, "{}", results[0]);
    assert_eq!(results[1]["is_anomaly"], 1, "{}", results[1]);
    assert_eq!(results[1]["detector"], "model");
    assert!(results[1]["score"].as_f64().expect("scored") < 0.0);
    assert_eq!(results[2]["is_anomaly"], 0, "{}", results[2]);
    assert!(results[0]["score"].as_f64().expect("scored") > 0.0);
    let anomalies = app.get_anomalies("?detector=model").await;
    assert_eq!(anomalies.len(), 1);
    assert!(anomalies[0]["anomaly_score"].as_f64().expect("score") < 0.0);
    assert_eq!(anomalies[0]["rule_violation"], false);
}

#[tokio::test]
async fn a_train_job_reports_per_service_results_and_failures() {
    let app = spawn_app_with(&[]).await;
    let mut logs = baseline(120);
    logs.extend((0..12).map(|_| web_log(100.0, 0.0)));
    let response = app.post_train(&logs).await;
    assert_eq!(response.status(), 202);
    let job_id = response.json::<Value>().await.expect("json")["job_id"]
        .as_str()
        .expect("job id")
        .to_owned();
    let job = app.wait_for_job(&job_id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let services = job["detail"]["services"].as_array().expect("services");
    assert_eq!(services.len(), 1);
    assert_eq!(services[0]["service"], "checkout");
    assert_eq!(services[0]["samples"], 120);
    let model = app.wait_for_model("checkout").await;
    assert_eq!(model["source"], "train_job");
    assert_eq!(model["job_id"], job_id.as_str());
    assert!(app.metrics().await["last_trained"].is_string());

    let response = app.post_train(&vec![web_log(100.0, 0.0); 12]).await;
    let job_id = response.json::<Value>().await.expect("json")["job_id"]
        .as_str()
        .expect("job id")
        .to_owned();
    let job = app.wait_for_job(&job_id).await;
    assert_eq!(job["status"], "failed");
    assert_eq!(
        job["detail"]["reason"],
        "web_server: 12 parseable logs, MIN_TRAIN_SAMPLES is 50"
    );
}

#[tokio::test]
async fn an_unknown_job_is_404() {
    let app = spawn_app_with(&[]).await;
    let response = app.get("/api/v1/train/not-a-job").await;
    assert_eq!(response.status(), 404);
    assert!(response.json::<Value>().await.expect("json")["detail"].is_string());
}

#[tokio::test]
async fn models_survive_a_restart_and_a_corrupt_file_does_not_stop_start_up() {
    let app = spawn_app_with(&[]).await;
    let job = app.train(&baseline(200)).await;
    assert_eq!(job["status"], "succeeded");
    let before = app.ingest(&[checkout_log(5000.0, 40.0)]).await;
    let app = app.restart().await;
    let after = app.ingest(&[checkout_log(5000.0, 40.0)]).await;
    assert_eq!(
        before[0]["score"], after[0]["score"],
        "same model after restart"
    );

    // Corrupt every model file, then restart: the service starts and judges by rules alone.
    let models_dir = app.data_dir.join("models");
    for entry in std::fs::read_dir(&models_dir).expect("models dir") {
        let path = entry.expect("entry").path();
        let mut bytes = std::fs::read(&path).expect("read");
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        std::fs::write(&path, bytes).expect("write");
    }
    let app = app.restart().await;
    assert_eq!(app.get("/health").await.status(), 200);
    let results = app.ingest(&[checkout_log(5000.0, 40.0)]).await;
    assert_eq!(results[0]["score"], Value::Null);
    let models: Value = app.get("/api/v1/models").await.json().await.expect("json");
    assert_eq!(models, json!([]));
}

#[tokio::test]
async fn feedback_changes_the_next_model() {
    let app = spawn_app_with(&[]).await;
    let job = app.train(&baseline(300)).await;
    assert_eq!(job["status"], "succeeded");
    // A slow-but-fine pattern the baseline never showed is flagged at first.
    let pattern = checkout_log(400.0, 3.0);
    let results = app.ingest(std::slice::from_ref(&pattern)).await;
    assert_eq!(results[0]["is_anomaly"], 1, "{}", results[0]);

    let mut feedback: Vec<Value> = (0..30)
        .map(|i| json!({"log": checkout_log(390.0 + f64::from(i % 20), 3.0), "is_anomaly": 0}))
        .collect();
    feedback.extend(
        (0..5).map(|i| json!({"log": checkout_log(9000.0 + f64::from(i), 50.0), "is_anomaly": 1})),
    );
    assert_eq!(app.post_feedback(&feedback).await.status(), 202);
    let accuracy_before = app.metrics().await["model_accuracy"]
        .as_f64()
        .expect("accuracy");

    let job = app.train(&baseline(300)).await;
    assert_eq!(job["status"], "succeeded");
    assert_eq!(job["detail"]["services"][0]["feedback_normal_added"], 30);
    let results = app.ingest(&[pattern]).await;
    assert_eq!(results[0]["is_anomaly"], 0, "{}", results[0]);
    let still_flagged = app.ingest(&[checkout_log(9000.0, 50.0)]).await;
    assert_eq!(still_flagged[0]["is_anomaly"], 1);
    let accuracy_after = app.metrics().await["model_accuracy"]
        .as_f64()
        .expect("accuracy");
    assert!(
        accuracy_after > accuracy_before,
        "{accuracy_before} -> {accuracy_after}"
    );
    assert!(accuracy_after >= 0.95, "{accuracy_after}");
}

#[tokio::test]
async fn retrains_under_concurrent_ingestion_never_fail_a_request_or_mix_models() {
    let app = std::sync::Arc::new(spawn_app_with(&[]).await);
    let job = app.train(&baseline(300)).await;
    assert_eq!(job["status"], "succeeded");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for client in 0..4 {
        let app = std::sync::Arc::clone(&app);
        let stop = std::sync::Arc::clone(&stop);
        clients.push(tokio::spawn(async move {
            let mut batches = 0;
            // Bounded: at most 2,000 requests per client.
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && batches < 2000 {
                let logs: Vec<Value> = (0..20)
                    .map(|i| checkout_log(90.0 + f64::from(i + client), 3.0))
                    .collect();
                let response = app.post_logs(&logs).await;
                assert_eq!(response.status(), 200);
                let results: Vec<Value> = response.json().await.expect("json");
                assert_eq!(results.len(), 20);
                assert!(
                    results.iter().all(|r| r["score"].is_number()),
                    "an unscored log mid-retrain"
                );
                batches += 1;
            }
            batches
        }));
    }
    for round in 0..3 {
        // Each retrain adds a feature, so a half-swapped model would show up as a mix.
        let logs: Vec<Value> = baseline(300)
            .into_iter()
            .map(|mut log| {
                let mut inner: Value =
                    serde_json::from_str(log["raw_log"].as_str().expect("raw")).expect("json");
                inner[format!("extra_{round}")] = json!(round);
                log["raw_log"] = json!(inner.to_string());
                log
            })
            .collect();
        let job = app.train(&logs).await;
        assert_eq!(job["status"], "succeeded", "{job}");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    for client in clients {
        total += client.await.expect("client finished without failures");
    }
    assert!(total > 0);
}

#[tokio::test]
async fn an_automatic_model_is_refitted_as_its_reservoir_doubles_until_it_is_full() {
    let app = spawn_app_with(&[("MIN_TRAIN_SAMPLES", "20"), ("RESERVOIR_SIZE", "64")]).await;
    app.ingest(&baseline(20)).await;
    let first = app.wait_for_model("checkout").await;
    assert_eq!(first["training_samples"], 20, "{first}");

    // More normal traffic: refits at 40 and at 64 (the reservoir's capacity), then no more.
    let mut fitted_on = 20;
    for _ in 0..60 {
        if fitted_on == 64 {
            break;
        }
        app.ingest(&baseline(10)).await;
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let model = app.wait_for_model("checkout").await;
        fitted_on = model["training_samples"].as_u64().expect("samples");
    }
    assert_eq!(fitted_on, 64);
    let full = app.wait_for_model("checkout").await;
    assert_eq!(full["source"], "auto");

    app.ingest(&baseline(100)).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let later = app.wait_for_model("checkout").await;
    assert_eq!(
        later["trained_at"], full["trained_at"],
        "refitted past capacity"
    );
}
