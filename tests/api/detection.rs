//! Detection through the HTTP API: a service learns its baseline, then a new value of a constant
//! field, a far spike and a joint shift are flagged with reasons, while normal logs stay quiet.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::helpers::spawn_app_with;

fn gaussian(rng: &mut StdRng) -> f64 {
    let u1 = 1.0 - rng.random::<f64>();
    let u2 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A payments log; no built-in rule reads its fields, so only the model judges it.
fn payments_log(latency_ms: f64, bytes: f64, region: &str, status: u16) -> Value {
    json!({
        "raw_log": json!({
            "timestamp": "2024-02-01T12:00:00Z", "level": "INFO", "message": "charge",
            "latency_ms": (latency_ms * 10.0).round() / 10.0, "bytes": bytes.round(),
            "status": status, "region": region, "request_id": uuid::Uuid::new_v4().to_string(),
        })
        .to_string(),
        "service": "payments",
        "source": "api",
        "format_type": "json",
    })
}

/// Log-normal latency around 80 ms and response size around 4 KB, correlated.
fn normal_log(rng: &mut StdRng) -> Value {
    let shared = gaussian(rng);
    let latency = 80.0 * (0.4 * shared).exp();
    let bytes = 4000.0 * (0.5 * (0.8 * shared + 0.6 * gaussian(rng))).exp();
    let status = if rng.random_bool(0.9) { 200 } else { 304 };
    payments_log(latency, bytes, "eu-west-1", status)
}

#[tokio::test]
async fn a_learned_baseline_flags_new_values_spikes_and_joint_shifts_with_reasons() {
    let app = spawn_app_with(&[("MIN_TRAIN_SAMPLES", "1500"), ("RESERVOIR_SIZE", "1500")]).await;
    let mut rng = StdRng::seed_from_u64(11);
    let training: Vec<Value> = (0..1500).map(|_| normal_log(&mut rng)).collect();
    app.ingest(&training).await;
    let model = app.wait_for_model("payments").await;
    let baseline = &model["baseline"];
    assert_eq!(baseline["budget"], 0.001, "{model}");
    let region = baseline["categories"]
        .as_array()
        .expect("categories")
        .iter()
        .find(|c| c["field"] == "region")
        .expect("region is a category");
    assert_eq!(region["known"], json!(["eu-west-1"]));
    assert_eq!(region["closed"], true);

    let normal: Vec<Value> = (0..1000).map(|_| normal_log(&mut rng)).collect();
    let flagged = app
        .ingest(&normal)
        .await
        .iter()
        .filter(|r| r["is_anomaly"] == 1)
        .count();
    // The budget is 1 in 1,000; a handful allows for sampling noise.
    assert!(flagged <= 5, "{flagged} of 1,000 normal logs flagged");

    // Latency and bytes move together normally: high latency with a small response, each about
    // 2.5 deviations out, is in range for each but not as a pair.
    let joint = payments_log(
        80.0 * (0.4_f64 * 2.6).exp(),
        4000.0 * (-0.5_f64 * 2.6).exp(),
        "eu-west-1",
        200,
    );
    let results = app
        .ingest(&[
            payments_log(80.0, 4000.0, "us-east-2", 200),
            payments_log(4000.0, 4000.0, "eu-west-1", 200),
            joint,
        ])
        .await;
    let kinds: Vec<&str> = results
        .iter()
        .map(|r| {
            assert_eq!(r["is_anomaly"], 1, "{r}");
            assert_eq!(r["detector"], "model", "{r}");
            r["reasons"][0]["kind"].as_str().expect("a reason")
        })
        .collect();
    // The pair is explained by the feature out of step with the one that predicts it.
    assert_eq!(kinds, ["new_category", "feature", "relation"]);
    assert_eq!(results[0]["reasons"][0]["field"], "region");
    // Either one can be the one out of step; the reason names it and the other.
    let relation = &results[2]["reasons"][0];
    let (named, partner) = match (relation["feature"].as_str(), relation["direction"].as_str()) {
        (Some("latency_ms"), Some("high")) => ("latency_ms", "bytes"),
        (Some("bytes"), Some("low")) => ("bytes", "latency_ms"),
        _ => panic!("an unexpected relation: {relation}"),
    };
    let summary = relation["summary"].as_str().expect("summary");
    assert!(
        summary.starts_with(named) && summary.contains(&format!("for this log's {partner} ")),
        "{summary}"
    );
    let spike = results[1]["reasons"][0]["summary"]
        .as_str()
        .expect("summary");
    assert!(
        spike.starts_with("latency_ms 4000 is far above its usual"),
        "{spike}"
    );

    let stored = app.get_anomalies("?detector=model").await;
    assert!(stored.len() >= 3);
    assert!(
        stored
            .iter()
            .any(|a| a["reasons"][0]["summary"].as_str() == Some(spike)),
        "the reasons are stored with the anomaly"
    );
}
