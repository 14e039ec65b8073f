//! Parser throughput, logs per second for each format and for a mixed batch (BENCHMARKS.md, "Parsers").
//!
//!   cargo bench --bench parse
//!
//! Each iteration parses a batch of 1,000 distinct logs shaped like the contract's examples (the
//! tests' `web_log`, `db_log` and `app_log`) through one shared `Parser`, as the pipeline does; the
//! regex pattern is cached after its first use, as in production. Criterion reports elements/s, which is
//! logs/s on one core.

use std::hint::black_box;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use aioops_mcp_iforest::parse::{CustomConfig, FormatType, Parser, RawLog};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;

const BATCH: usize = 1_000;

/// The contract's application pattern.
const APP_PATTERN: &str = r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?)\s+\[(\w+)\]\s+Memory usage: (\d+)%\s+CPU usage: (\d+)%\s+Thread count: (\d+)";

fn raw(
    format_type: FormatType,
    raw_log: String,
    custom_config: Option<Arc<CustomConfig>>,
) -> RawLog {
    RawLog {
        raw_log,
        service: "svc".to_owned(),
        source: "bench".to_owned(),
        format_type,
        custom_config,
        envelope: None,
    }
}

/// One config shared by every regex log, as decoding a request shares one per distinct spelling.
static APP_CONFIG: LazyLock<Arc<CustomConfig>> = LazyLock::new(|| {
    Arc::new(CustomConfig::new(json!({
        "pattern": APP_PATTERN,
        "field_mapping": {"0": "timestamp", "1": "level", "2": "memory_usage", "3": "cpu_usage", "4": "thread_count"},
    })))
});

fn json_log(i: usize) -> RawLog {
    let line = json!({
        "timestamp": format!("2024-01-15T10:{:02}:{:02}.{:03}Z", i / 60 % 60, i % 60, i % 1000),
        "level": if i.is_multiple_of(10) { "WARN" } else { "INFO" },
        "message": "GET /api/users",
        "response_time": 80 + i % 300,
        "bytes_out": format!("{}KB", 1 + i % 40),
        "error_rate": (i % 7) as f64 / 100.0,
        "upstream": {"latency": format!("{}ms", 5 + i % 50), "host": "db-1"},
        "request_id": format!("req-{i:08x}"),
    });
    raw(FormatType::Json, line.to_string(), None)
}

fn key_value_log(i: usize) -> RawLog {
    let line = format!(
        "2024-01-15T10:00:{:02}Z INFO query_time={}ms connection_count={} error_rate=0.0{} \
         db=orders msg=\"select from orders\"",
        i % 60,
        20 + i % 500,
        10 + i % 90,
        i % 10,
    );
    raw(FormatType::KeyValue, line, None)
}

fn regex_log(i: usize) -> RawLog {
    let line = format!(
        "2024-01-15T10:00:{:02}Z [{}] Memory usage: {}% CPU usage: {}% Thread count: {}",
        i % 60,
        if i.is_multiple_of(10) {
            "ERROR"
        } else {
            "INFO"
        },
        30 + i % 60,
        10 + i % 85,
        50 + i % 250,
    );
    raw(FormatType::Regex, line, Some(Arc::clone(&APP_CONFIG)))
}

fn parse_batch(parser: &Parser, logs: &[RawLog]) {
    for log in logs {
        // Every log here is valid; `is_ok` keeps the result observable without unwrapping.
        black_box(parser.parse(black_box(log)).is_ok());
    }
}

fn parsers(c: &mut Criterion) {
    let parser = Parser::new(256);
    let batches: [(&str, Vec<RawLog>); 4] = [
        ("json", (0..BATCH).map(json_log).collect()),
        ("key_value", (0..BATCH).map(key_value_log).collect()),
        ("regex", (0..BATCH).map(regex_log).collect()),
        (
            "mixed",
            (0..BATCH)
                .map(|i| match i % 3 {
                    0 => json_log(i),
                    1 => key_value_log(i),
                    _ => regex_log(i),
                })
                .collect(),
        ),
    ];
    for (_, logs) in &batches {
        assert!(
            logs.iter().all(|log| parser.parse(log).is_ok()),
            "every bench log parses"
        );
    }
    let mut group = c.benchmark_group("parse");
    group
        .throughput(Throughput::Elements(BATCH as u64))
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .sample_size(30);
    for (name, logs) in &batches {
        group.bench_function(*name, |b| b.iter(|| parse_batch(&parser, logs)));
    }
    group.finish();
}

criterion_group!(benches, parsers);
criterion_main!(benches);
