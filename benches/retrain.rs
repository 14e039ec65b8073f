//! Retraining, end to end, on the real server (issue #4's benchmark).
//!
//!   cargo bench --bench retrain                     (or bash bench/retrain.sh, which adds scikit-learn)
//!
//! 1. For 10,000 and 100,000 web_server logs: the time from sending POST /api/v1/train to the job
//!    reporting `succeeded` (its models are swapped in before that), polled every 5 ms. The feature
//!    matrix each job trained on is written to `bench/out/retrain_<n>.csv`, so scikit-learn can be
//!    timed fitting the very same matrix (`bench/retrain_sklearn.py`).
//! 2. Ingest throughput (8 clients posting 100-log batches) without a retrain, then while training
//!    jobs on 100,000 logs run back to back, in the same process, one after the other.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aioops_mcp_iforest::app::App;
use aioops_mcp_iforest::settings::Settings;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

const CLIENTS: usize = 8;
const BATCH: usize = 100;
const INGEST_SECONDS: u64 = 8;

fn web_log(rng: &mut StdRng) -> Value {
    let raw = json!({
        "timestamp": "2024-01-15T10:00:00Z",
        "level": "INFO",
        "message": "GET /api/users",
        "response_time": (180.0 + rng.random_range(-60.0..60.0_f64)).round(),
        "bytes_out": rng.random_range(200..20_000),
        "error_rate": (rng.random_range(0.0..0.05_f64) * 1000.0).round() / 1000.0,
        "upstream_ms": rng.random_range(1..40),
        "request_id": format!("req-{:08x}", rng.random::<u32>()),
    });
    json!({
        "raw_log": raw.to_string(),
        "service": "web_server",
        "source": "nginx",
        "format_type": "json",
    })
}

fn logs(n: usize, seed: u64) -> Vec<Value> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n).map(|_| web_log(&mut rng)).collect()
}

/// The matrix the service builds from these logs: the same four numeric features, in its order.
fn write_matrix(logs: &[Value], path: &std::path::Path) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(out, "bytes_out,error_rate,response_time,upstream_ms")?;
    for log in logs {
        let raw: Value = serde_json::from_str(log["raw_log"].as_str().unwrap_or("{}"))?;
        writeln!(
            out,
            "{},{},{},{}",
            raw["bytes_out"], raw["error_rate"], raw["response_time"], raw["upstream_ms"]
        )?;
    }
    out.flush()
}

async fn start_app(
    data_dir: &std::path::Path,
) -> anyhow::Result<(String, tokio::sync::oneshot::Sender<()>)> {
    let vars: HashMap<String, String> = [
        ("API_PORT", "0"),
        ("API_HOST", "127.0.0.1"),
        ("RETRAIN_INTERVAL_SECONDS", "0"),
        ("STORE_SYNCHRONOUS", "normal"),
        ("LOG_LEVEL", "warn"),
        ("MAX_BODY_BYTES", "268435456"),
        ("MAX_LOGS_PER_REQUEST", "200000"),
        // The train jobs (10,000 and 100,000 logs) fit web_server's model before any ingestion,
        // so no automatic first fit lands inside the ingest measurement.
        ("MIN_TRAIN_SAMPLES", "1000"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .chain([(
        "DATA_DIR".to_owned(),
        data_dir.to_string_lossy().into_owned(),
    )])
    .collect();
    let settings = Settings::from_vars(&vars).map_err(|e| anyhow::anyhow!("{e}"))?;
    let app = App::build(settings).await?;
    let address = format!("http://127.0.0.1:{}", app.port());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until(async {
        let _ = rx.await;
    }));
    Ok((address, tx))
}

/// Sends one training request and waits for its job; returns (end-to-end time, job's duration_ms).
async fn train(
    client: &reqwest::Client,
    address: &str,
    body: &Value,
) -> anyhow::Result<(Duration, f64)> {
    let started = Instant::now();
    let response = client
        .post(format!("{address}/api/v1/train"))
        .json(body)
        .send()
        .await?;
    anyhow::ensure!(
        response.status() == 202,
        "train answered {}",
        response.status()
    );
    let accepted: Value = response.json().await?;
    let job_id = accepted["job_id"].as_str().unwrap_or_default().to_owned();
    loop {
        let job: Value = client
            .get(format!("{address}/api/v1/train/{job_id}"))
            .send()
            .await?
            .json()
            .await?;
        match job["status"].as_str() {
            Some("succeeded") => {
                let elapsed = started.elapsed();
                let job_ms = job["detail"]["duration_ms"]
                    .as_f64()
                    .or_else(|| job["duration_ms"].as_f64())
                    .unwrap_or(f64::NAN);
                return Ok((elapsed, job_ms));
            }
            Some("failed") => anyhow::bail!("job failed: {job}"),
            _ => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

/// Logs per second ingested by `CLIENTS` clients for `INGEST_SECONDS`.
async fn ingest_rate(client: &reqwest::Client, address: &str) -> anyhow::Result<(f64, u64)> {
    let body = Arc::new(json!({"logs": logs(BATCH, 7)}));
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(INGEST_SECONDS);
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let (client, address, body) = (client.clone(), address.to_owned(), Arc::clone(&body));
        let (done, failed) = (Arc::clone(&done), Arc::clone(&failed));
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let ok = client
                    .post(format!("{address}/api/v1/stream/multi-source"))
                    .json(&*body)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if ok {
                    done.fetch_add(BATCH as u64, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let started = Instant::now();
    for task in tasks {
        task.await?;
    }
    let rate = done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    Ok((rate, failed.load(Ordering::Relaxed)))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let out_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/out");
    std::fs::create_dir_all(&out_dir)?;
    let tmp = tempfile::tempdir()?;
    let (address, stop) = start_app(&tmp.path().join("data")).await?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()?;

    println!(
        "# retrain end to end ({} cores)",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    for n in [10_000usize, 100_000] {
        let batch = logs(n, n as u64);
        write_matrix(&batch, &out_dir.join(format!("retrain_{n}.csv")))?;
        let body = json!({"logs": batch});
        let mut times = Vec::new();
        for _ in 0..3 {
            times.push(train(&client, &address, &body).await?);
        }
        times.sort_by_key(|t| t.0);
        let (median, job_ms) = times[1];
        println!(
            "RETRAIN logs={n} request_to_swap_ms={:.1} job_duration_ms={job_ms:.1} (median of 3)",
            median.as_secs_f64() * 1000.0
        );
    }

    let (quiet, quiet_failed) = ingest_rate(&client, &address).await?;
    let training = Arc::new(AtomicBool::new(true));
    let retrains = Arc::new(AtomicU64::new(0));
    let trainer = {
        let (client, address) = (client.clone(), address.clone());
        let (training, retrains) = (Arc::clone(&training), Arc::clone(&retrains));
        let body = json!({"logs": logs(100_000, 99)});
        tokio::spawn(async move {
            while training.load(Ordering::Relaxed) {
                if train(&client, &address, &body).await.is_ok() {
                    retrains.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    // Let the first job get past receiving its body before measuring.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (busy, busy_failed) = ingest_rate(&client, &address).await?;
    training.store(false, Ordering::Relaxed);
    trainer.await?;
    println!(
        "INGEST without_retrain={quiet:.0} logs/s during_retrain={busy:.0} logs/s ratio={:.2} \
         retrains_completed={} failed_requests={}",
        busy / quiet,
        retrains.load(Ordering::Relaxed),
        quiet_failed + busy_failed
    );
    let _ = stop.send(());
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(())
}
