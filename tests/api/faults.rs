//! Faults an operator meets (issue #17): a training job that cannot save or is killed mid-way, a
//! data directory restored elsewhere, a flood of junk service names. Each asserts what serves
//! afterwards, through the API.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::process::ServiceProcess;
use crate::helpers::{spawn_app_in, spawn_app_with};

/// A log of `service` that no built-in rule reads: only a model can judge it.
fn order_log(service: &str, latency_ms: f64, items: f64) -> Value {
    json!({
        "raw_log": json!({"level": "INFO", "message": "order placed",
                          "latency_ms": latency_ms, "items": items}).to_string(),
        "service": service,
        "source": "api",
        "format_type": "json",
    })
}

/// `n` logs of `service` around `latency_ms`.
fn baseline(service: &str, latency_ms: f64, n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            let wobble = ((i * 7919) % 41) as f64 - 20.0;
            order_log(service, latency_ms + wobble, ((i * 31) % 5 + 1) as f64)
        })
        .collect()
}

async fn models(app: &crate::helpers::TestApp) -> Vec<Value> {
    let listed: Value = app.get("/api/v1/models").await.json().await.expect("json");
    listed.as_array().expect("a list").clone()
}

fn model_files(data_dir: &Path) -> usize {
    std::fs::read_dir(data_dir.join("models")).map_or(0, |entries| {
        entries
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "iforest"))
            .count()
    })
}

#[tokio::test]
async fn a_job_whose_models_cannot_be_saved_applies_none_and_the_previous_ones_serve() {
    let app = spawn_app_with(&[]).await;
    let mut logs = baseline("orders", 100.0, 120);
    logs.extend(baseline("payments", 40.0, 120));
    let first = app.train(&logs).await;
    assert_eq!(first["status"], "succeeded", "{first}");
    let before = app.ingest(&[order_log("orders", 5000.0, 3.0)]).await;
    assert!(before[0]["score"].is_number());

    // Where the models directory was, a file: no model file can be written.
    let models_dir = app.data_dir.join("models");
    let kept = app.data_dir.join("models.kept");
    std::fs::rename(&models_dir, &kept).expect("move the directory aside");
    std::fs::write(&models_dir, b"not a directory").expect("a file in its place");
    let mut shifted = baseline("orders", 1000.0, 120);
    shifted.extend(baseline("payments", 900.0, 120));
    let second = app.train(&shifted).await;

    assert_eq!(second["status"], "failed", "{second}");
    let reason = second["detail"]["reason"].as_str().expect("a reason");
    assert!(reason.contains("not applied"), "{reason}");
    let after = app.ingest(&[order_log("orders", 5000.0, 3.0)]).await;
    assert_eq!(
        before[0]["score"], after[0]["score"],
        "the first models still serve"
    );
    let listed = models(&app).await;
    assert_eq!(listed.len(), 2);
    assert!(
        listed.iter().all(|m| m["job_id"] == first["job_id"]),
        "{listed:#?}"
    );

    std::fs::remove_file(&models_dir).expect("remove the file");
    std::fs::rename(&kept, &models_dir).expect("put the directory back");
    let app = app.restart().await;
    let restarted = app.ingest(&[order_log("orders", 5000.0, 3.0)]).await;
    assert_eq!(before[0]["score"], restarted[0]["score"]);
}

#[tokio::test]
async fn a_data_directory_restored_elsewhere_keeps_its_models_even_with_absolute_paths() {
    let mut app = spawn_app_with(&[]).await;
    let job = app
        .train(
            &[
                baseline("orders", 100.0, 150),
                baseline("refunds", 30.0, 150),
            ]
            .concat(),
        )
        .await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let before = app.ingest(&[order_log("orders", 5000.0, 3.0)]).await;
    let old_dir = app.data_dir.clone();
    app.stop().await;
    // One record as an earlier version wrote it: an absolute path into the old directory.
    {
        let db = rusqlite::Connection::open(old_dir.join("aioops.db")).expect("open");
        let relative: String = db
            .query_row(
                "SELECT path FROM models WHERE service = 'orders'",
                [],
                |r| r.get(0),
            )
            .expect("the orders model");
        assert!(Path::new(&relative).is_relative(), "{relative}");
        let absolute = old_dir.join(&relative).to_string_lossy().into_owned();
        db.execute(
            "UPDATE models SET path = ?1 WHERE service = 'orders'",
            [absolute],
        )
        .expect("update");
    }

    let restored = tempfile::tempdir().expect("tempdir");
    let new_dir = restored.path().join("restored");
    std::fs::rename(&old_dir, &new_dir).expect("move DATA_DIR");
    let app = spawn_app_in(new_dir.clone(), &[]).await;

    let listed = models(&app).await;
    let mut services: Vec<&str> = listed
        .iter()
        .filter_map(|m| m["service"].as_str())
        .collect();
    services.sort_unstable();
    assert_eq!(services, ["orders", "refunds"]);
    let after = app.ingest(&[order_log("orders", 5000.0, 3.0)]).await;
    assert_eq!(
        before[0]["score"], after[0]["score"],
        "the same model serves"
    );
    assert_eq!(
        model_files(&new_dir),
        2,
        "one file per model, none left over"
    );
}

#[tokio::test]
async fn junk_service_names_do_not_lock_a_real_service_out_of_learning() {
    let app = spawn_app_with(&[
        ("MAX_TRACKED_SERVICES", "20"),
        ("TRACKED_SERVICE_IDLE_SECONDS", "1"),
        ("MIN_TRAIN_SAMPLES", "50"),
    ])
    .await;
    let junk: Vec<Value> = (0..200)
        .map(|i| order_log(&format!("junk-{i:x}"), 100.0, 1.0))
        .collect();
    app.ingest(&junk).await;
    let metrics = app.metrics().await;
    assert_eq!(metrics["untracked_service_logs"], 180, "{metrics}");

    // Before the junk is idle, the real service is judged but does not learn.
    app.ingest(&baseline("orders", 100.0, 60)).await;
    assert!(models(&app).await.is_empty());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // Now the junk's slots are idle: the real service takes one and learns.
    app.ingest(&baseline("orders", 100.0, 60)).await;
    let model = app.wait_for_model("orders").await;
    assert_eq!(model["source"], "auto", "{model}");
    let metrics = app.metrics().await;
    assert!(
        metrics["tracked_slots_given_back"].as_u64() >= Some(1),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_training_job_killed_mid_way_leaves_all_of_its_models_or_none() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data_dir = tmp.path().join("data");
    let mut service = ServiceProcess::start(&data_dir, &tmp.path().join("first.log"), &[]).await;
    let (base, client) = (service.base.clone(), service.client.clone());

    // 120 services of 60 logs: the job takes a while to fit and to save.
    let logs: Vec<Value> = (0..120)
        .flat_map(|s| baseline(&format!("svc-{s:03}"), 50.0 + f64::from(s), 60))
        .collect();
    let response = client
        .post(format!("{base}/api/v1/train"))
        .json(&json!({"logs": logs}))
        .send()
        .await
        .expect("posted");
    assert_eq!(response.status(), 202);
    let job_id = response.json::<Value>().await.expect("json")["job_id"]
        .as_str()
        .expect("job id")
        .to_owned();
    let start = Instant::now();
    loop {
        let job: Value = client
            .get(format!("{base}/api/v1/train/{job_id}"))
            .send()
            .await
            .expect("job")
            .json()
            .await
            .expect("json");
        if job["status"] != "queued" || start.elapsed() > Duration::from_secs(10) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    service.kill();

    let mut service = ServiceProcess::start(&data_dir, &tmp.path().join("second.log"), &[]).await;
    let base = service.base.clone();
    let job: Value = client
        .get(format!("{base}/api/v1/train/{job_id}"))
        .send()
        .await
        .expect("job")
        .json()
        .await
        .expect("json");
    let listed: Value = client
        .get(format!("{base}/api/v1/models"))
        .send()
        .await
        .expect("models")
        .json()
        .await
        .expect("json");
    let of_job = listed
        .as_array()
        .expect("a list")
        .iter()
        .filter(|m| m["job_id"] == job_id.as_str())
        .count();
    service.kill();

    eprintln!("killed job: {} with {of_job} models", job["status"]);
    match job["status"].as_str() {
        Some("failed") => assert_eq!(of_job, 0, "a failed job applied models: {listed:#}"),
        Some("succeeded") => assert_eq!(of_job, 120, "a job applied part of its models"),
        other => panic!("the job is left {other:?}: {job}"),
    }
    assert_eq!(
        model_files(&data_dir),
        of_job,
        "model files of an unapplied fit are removed at start-up"
    );
}
