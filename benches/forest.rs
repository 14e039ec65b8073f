//! Isolation forest throughput: scoring rows/s (100 trees, 10 features, max_samples 256) on one
//! thread and on all cores, and fitting time. Run: `cargo bench --bench forest`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use aioops_mcp_iforest::forest::{IsolationForest, Matrix};

const ROWS: usize = 100_000;
const FEATURES: usize = 10;

fn data() -> Matrix {
    let mut rng = StdRng::seed_from_u64(42);
    let values = (0..ROWS * FEATURES)
        .map(|_| rng.random::<f64>() * 100.0)
        .collect();
    Matrix::from_rows(FEATURES, values).expect("finite")
}

fn scoring(c: &mut Criterion) {
    let data = data();
    let forest = IsolationForest::params()
        .check()
        .expect("valid")
        .fit(&data)
        .expect("fits");
    let mut group = c.benchmark_group("forest_score");
    group.throughput(Throughput::Elements(ROWS as u64));
    group.sample_size(20);
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    for (name, threads) in [
        ("1_thread".to_owned(), 1),
        (format!("{cores}_threads"), cores),
    ] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("pool");
        group.bench_function(format!("score_samples_100k_rows/{name}"), |b| {
            b.iter(|| pool.install(|| forest.score_samples(&data)));
        });
    }
    // One row is scored on the calling thread (no pool involved), as detection does per log.
    group.throughput(Throughput::Elements(1));
    group.bench_function("score_sample_one_row", |b| {
        let row = data.row(17);
        b.iter(|| forest.score_sample(std::hint::black_box(row)));
    });
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("pool");
    group.finish();
    let mut group = c.benchmark_group("forest_fit");
    group.sample_size(20);
    group.bench_function("fit_100_trees_256_samples/1_thread", |b| {
        let params = IsolationForest::params().check().expect("valid");
        b.iter(|| pool.install(|| params.fit(&data).expect("fits")));
    });
    group.finish();
}

criterion_group!(benches, scoring);
criterion_main!(benches);
