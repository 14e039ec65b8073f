//! Where a 100-log request's CPU time goes, stage by stage, in-process on one core
//! (BENCHMARKS.md, "Service throughput": the budget behind the decode-only share).
//!
//!   cargo bench --bench ingest_stages
//!
//! The body is `bench/throughput.sh`'s own `batch_100.json` (written by `bench/make_bodies.py`, so
//! `python3` must be on the PATH). The service is built in-process on a temporary DATA_DIR, fed 30
//! batches until each of the three services has its model, then timed:
//!
//! - `decode`: the body to `Vec<RawLog>`, what the decode-only baseline does besides HTTP;
//! - `decode_parse`: plus parsing every log;
//! - `decode_judge`: plus parsing, rules and every model's scores ([`Pipeline::judge`]);
//! - `decode_judge_respond`: plus writing the JSON response;
//! - `ingest_respond`: the whole request minus HTTP: decode, `IngestService::ingest` (judge,
//!   commit the anomalies to SQLite, rate alerts, learning) and the response. One request at a time, so every
//!   request pays its own commit and fsync, which group commit shares between concurrent requests.
//! - `store_commit_5_requests`: the storage side alone, at steady state: one transaction holding
//!   five requests' anomalies (what a group commit holds under `bench/throughput.sh`'s load), into
//!   a database already at its retention bound (100,000 rows, so each commit also prunes), with
//!   `STORE_SYNCHRONOUS=normal` so the figure is SQLite's CPU work without the fsync.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Duration;

use aioops_mcp_iforest::app::{App, AppState};
use aioops_mcp_iforest::parse::RawLog;
use aioops_mcp_iforest::settings::{DEFAULT_MAX_RECENT_ANOMALIES, Settings};
use aioops_mcp_iforest::store::{AnomalyRecord, Store, StoreOptions, Synchronous};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde::Deserialize;

// As in the service's main.rs, so allocation costs match production.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Deserialize)]
struct Body {
    logs: Vec<RawLog>,
}

fn batch_100() -> Vec<u8> {
    let dir = tempfile::tempdir().expect("temporary directory");
    let status = std::process::Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/bench/make_bodies.py"))
        .arg(dir.path())
        .status()
        .expect("python3 runs bench/make_bodies.py");
    assert!(status.success(), "bench/make_bodies.py failed: {status}");
    std::fs::read(dir.path().join("batch_100.json")).expect("batch_100.json")
}

fn decode(body: &[u8]) -> Vec<RawLog> {
    serde_json::from_slice::<Body>(body)
        .expect("the benchmark body decodes")
        .logs
}

async fn warmed_service(data_dir: &std::path::Path, body: &[u8]) -> App {
    let vars = HashMap::from([
        ("DATA_DIR".to_owned(), data_dir.display().to_string()),
        ("API_HOST".to_owned(), "127.0.0.1".to_owned()),
        ("API_PORT".to_owned(), "0".to_owned()),
    ]);
    let settings = Settings::from_vars(&vars).expect("benchmark settings are valid");
    let app = App::build(settings).await.expect("the service starts");
    for _ in 0..30 {
        app.state()
            .ingest
            .ingest(decode(body), None)
            .await
            .expect("warm-up batch");
    }
    for _ in 0..200 {
        if app.state().detector.models.len() >= 3 {
            return app;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the three services got no models within 10 s");
}

fn stages(c: &mut Criterion) {
    let body = batch_100();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let data_dir = tempfile::tempdir().expect("temporary DATA_DIR");
    let app = runtime.block_on(warmed_service(data_dir.path(), &body));
    let state: AppState = app.state().clone();
    let logs = decode(&body).len() as u64;

    let mut group = c.benchmark_group("ingest_stages");
    group.throughput(Throughput::Elements(logs));
    group.bench_function("decode", |b| b.iter(|| black_box(decode(&body))));
    group.bench_function("decode_parse", |b| {
        b.iter(|| {
            let logs = decode(&body);
            let parsed: Vec<_> = logs
                .iter()
                .map(|log| state.pipeline.parser.parse(log))
                .collect();
            black_box((logs, parsed))
        })
    });
    group.bench_function("decode_judge", |b| {
        b.iter(|| black_box(state.pipeline.judge(decode(&body))))
    });
    group.bench_function("decode_judge_respond", |b| {
        b.iter(|| {
            let (results, judged) = state.pipeline.judge(decode(&body));
            black_box(judged);
            black_box(serde_json::to_vec(&results).expect("results serialize"))
        })
    });
    group.bench_function("ingest_respond", |b| {
        b.iter(|| {
            let results = runtime
                .block_on(state.ingest.ingest(decode(&body), None))
                .expect("ingest");
            black_box(serde_json::to_vec(&results).expect("results serialize"))
        })
    });
    {
        use tower::ServiceExt;
        let router = app.router();
        group.bench_function("router_request", |b| {
            b.iter(|| {
                runtime.block_on(async {
                    let request = axum::http::Request::post("/api/v1/stream/multi-source")
                        .header("content-type", "application/json")
                        .body(axum::body::Body::from(body.clone()))
                        .expect("request");
                    let response = router.clone().oneshot(request).await.expect("infallible");
                    assert_eq!(response.status(), 200);
                    black_box(
                        axum::body::to_bytes(response.into_body(), usize::MAX)
                            .await
                            .expect("body"),
                    )
                })
            })
        });
    }
    group.finish();

    let anomalies = runtime
        .block_on(state.pipeline.process(decode(&body), None))
        .expect("one batch")
        .anomalies;
    assert!(!anomalies.is_empty(), "the benchmark body has anomalies");
    let group_commit: Vec<AnomalyRecord> = (0..5).flat_map(|_| anomalies.clone()).collect();
    let store = Store::open(
        &data_dir.path().join("store-bench.db"),
        StoreOptions {
            max_recent_anomalies: DEFAULT_MAX_RECENT_ANOMALIES,
            synchronous: Synchronous::Normal,
            ..StoreOptions::default()
        },
    )
    .expect("store opens");
    runtime.block_on(async {
        while store.count_anomalies().await.expect("count") < DEFAULT_MAX_RECENT_ANOMALIES as u64 {
            let filler: Vec<AnomalyRecord> = (0..20).flat_map(|_| group_commit.clone()).collect();
            store.store_anomalies(filler).await.expect("prefill");
        }
    });
    let mut group = c.benchmark_group("ingest_stages");
    group.throughput(Throughput::Elements(group_commit.len() as u64));
    group.bench_function("store_commit_5_requests", |b| {
        b.iter(|| {
            runtime
                .block_on(store.store_anomalies(group_commit.clone()))
                .expect("commit")
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5));
    targets = stages
}
criterion_main!(benches);
