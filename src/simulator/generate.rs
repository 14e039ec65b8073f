//! Log generation: the original simulator's three kinds of log, with realistic values and labeled
//! anomalies, from a seeded random source and a logical clock so that a seed reproduces a run.
//!
//! Normal logs stay inside the built-in rules ([`crate::detect::rules::builtin_rules`]) with room to
//! spare. Each anomaly kind is aimed at one detector:
//! - [`AnomalyKind::RuleSpike`] breaks exactly one threshold rule of its service;
//! - [`AnomalyKind::ModelSpike`] stays under every rule but lies far from the baseline, so only a
//!   model can catch it;
//! - [`AnomalyKind::ErrorBurst`] is a run of failing logs of one service, as many as its built-in
//!   rate rule counts (`COMPLEX_ALERT_RULES`), close together, so it should trip a
//!   `high_anomaly_rate` alert.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::{Value, json};

use crate::alert::rate::{VolumeTest, builtin_rate_rules};
use crate::parse::{FormatType, RawLog};

/// The `application` logs' pattern, exactly as the original simulator sent it (contract, "Log formats").
pub const APPLICATION_PATTERN: &str = r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?)\s+\[(\w+)\]\s+Memory usage: (\d+)%\s+CPU usage: (\d+)%\s+Thread count: (\d+)";

/// Feature names, spelled as the built-in rules spell them.
pub mod feature {
    pub const RESPONSE_TIME: &str = "response_time";
    pub const ERROR_RATE: &str = "error_rate";
    pub const BYTES_SENT: &str = "bytes_sent";
    pub const STATUS_CODE: &str = "status_code";
    pub const QUERY_TIME: &str = "query_time";
    pub const CONNECTION_COUNT: &str = "connection_count";
    pub const ROWS: &str = "rows";
    pub const MEMORY_USAGE: &str = "memory_usage";
    pub const CPU_USAGE: &str = "cpu_usage";
    pub const THREAD_COUNT: &str = "thread_count";
}

/// The three services of the original simulator, each with its own log format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceKind {
    /// nginx access logs as JSON objects.
    #[value(name = "web_server")]
    WebServer,
    /// PostgreSQL statement logs as key=value pairs.
    #[value(name = "database")]
    Database,
    /// Java application status lines, parsed with a regex and `custom_config`.
    #[value(name = "application")]
    Application,
}

impl ServiceKind {
    /// Every kind, in the order the original sent them.
    pub const ALL: [ServiceKind; 3] = [Self::WebServer, Self::Database, Self::Application];

    /// The `service` field.
    pub fn name(self) -> &'static str {
        match self {
            Self::WebServer => "web_server",
            Self::Database => "database",
            Self::Application => "application",
        }
    }

    /// The `source` field, as the original sent it.
    pub fn source(self) -> &'static str {
        match self {
            Self::WebServer => "nginx",
            Self::Database => "postgresql",
            Self::Application => "java_app",
        }
    }

    fn format_type(self) -> FormatType {
        match self {
            Self::WebServer => FormatType::Json,
            Self::Database => FormatType::KeyValue,
            Self::Application => FormatType::Regex,
        }
    }

    /// Logs in one error burst: the service's built-in rate rule count, so one burst alone reaches it.
    pub fn burst_len(self) -> usize {
        let rules = builtin_rate_rules(VolumeTest::default());
        rules
            .get(self.name())
            .map_or(3, |rule| rule.count as usize)
            .max(1)
    }
}

impl fmt::Display for ServiceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What an injected anomaly is meant to exercise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyKind {
    /// One value strictly above one built-in threshold.
    #[value(name = "rule_spike")]
    RuleSpike,
    /// Under every rule, far from the baseline: only a model catches it.
    #[value(name = "model_spike")]
    ModelSpike,
    /// A run of failing logs of one service, long enough to trip its rate alert.
    #[value(name = "error_burst")]
    ErrorBurst,
}

impl AnomalyKind {
    /// Every kind, for reports.
    pub const ALL: [AnomalyKind; 3] = [Self::RuleSpike, Self::ModelSpike, Self::ErrorBurst];

    /// The name used in summaries.
    pub fn name(self) -> &'static str {
        match self {
            Self::RuleSpike => "rule_spike",
            Self::ModelSpike => "model_spike",
            Self::ErrorBurst => "error_burst",
        }
    }
}

/// The ground truth the simulator keeps for each log it sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Label {
    Normal,
    Anomaly(AnomalyKind),
}

impl Label {
    /// True for injected anomalies.
    pub fn is_anomaly(self) -> bool {
        matches!(self, Self::Anomaly(_))
    }
}

/// One generated log: what goes on the wire, what it means, and the measurements it carries.
#[derive(Debug, Clone)]
pub struct GeneratedLog {
    pub log: RawLog,
    pub service: ServiceKind,
    pub label: Label,
    /// The numeric fields of `raw_log`, exactly as rendered (units stripped: ms, %).
    pub features: Vec<(&'static str, f64)>,
}

impl GeneratedLog {
    /// The value of one feature, if the log carries it.
    pub fn feature(&self, name: &str) -> Option<f64> {
        self.features
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
    }
}

/// How to generate.
#[derive(Debug, Clone)]
pub struct GeneratorConfig {
    pub seed: u64,
    /// Services to simulate; never empty.
    pub services: Vec<ServiceKind>,
    /// Share of logs that are injected anomalies, in [0, 1].
    pub anomaly_ratio: f64,
    /// Normal logs per service sent first, so a service can learn its baseline before anomalies come.
    pub warmup_per_service: u64,
    /// Timestamp of the first log.
    pub start: DateTime<Utc>,
    /// Logical time between two consecutive logs.
    pub step: TimeDelta,
    /// Inject only this kind of anomaly (the alert drill's incident); `None`: the usual mix.
    pub only_kind: Option<AnomalyKind>,
}

/// Relative frequency of each anomaly event; a burst is one event of several logs.
const EVENT_WEIGHTS: [(AnomalyKind, f64); 3] = [
    (AnomalyKind::RuleSpike, 0.4),
    (AnomalyKind::ModelSpike, 0.4),
    (AnomalyKind::ErrorBurst, 0.2),
];

/// An endless, reproducible stream of labeled logs.
///
/// The same config yields the same logs, byte for byte: all randomness comes from one `StdRng`
/// seeded with `seed`, and timestamps come from a logical clock (`start + i × step`), not the wall
/// clock. (`StdRng`'s algorithm may change between `rand` releases; `Cargo.lock` pins it.)
#[derive(Debug)]
pub struct Generator {
    rng: StdRng,
    services: Vec<ServiceKind>,
    /// Probability that a draw starts an anomaly event rather than one normal log.
    event_probability: f64,
    /// Relative frequency of each anomaly event.
    weights: Vec<(AnomalyKind, f64)>,
    warmup_left: u64,
    pending: VecDeque<(ServiceKind, Label, Metrics)>,
    start: DateTime<Utc>,
    step: TimeDelta,
    index: i32,
}

impl Generator {
    /// A generator for `config`.
    ///
    /// # Panics
    /// When `config.services` is empty or `anomaly_ratio` is outside [0, 1]: the CLI checks both.
    pub fn new(config: GeneratorConfig) -> Self {
        assert!(!config.services.is_empty(), "at least one service");
        assert!(
            (0.0..=1.0).contains(&config.anomaly_ratio),
            "anomaly_ratio in [0, 1]"
        );
        let weights = event_weights(config.only_kind);
        let event_probability = event_probability(config.anomaly_ratio, &config.services, &weights);
        Self {
            rng: StdRng::seed_from_u64(config.seed),
            warmup_left: config.warmup_per_service * config.services.len() as u64,
            services: config.services,
            event_probability,
            weights,
            pending: VecDeque::new(),
            start: config.start,
            step: config.step,
            index: 0,
        }
    }

    /// The next log.
    pub fn next_log(&mut self) -> GeneratedLog {
        let (service, label, metrics) = self.next_metrics();
        let at = self.start + self.step * self.index;
        self.index = self.index.saturating_add(1);
        let log = render(service, &metrics, at);
        GeneratedLog {
            log,
            service,
            label,
            features: metrics.features(),
        }
    }

    fn next_metrics(&mut self) -> (ServiceKind, Label, Metrics) {
        if let Some(next) = self.pending.pop_front() {
            return next;
        }
        if self.warmup_left > 0 {
            // Round robin, so every service gets exactly its share of warm-up logs.
            self.warmup_left -= 1;
            let service = self.services[(self.warmup_left % self.services.len() as u64) as usize];
            return (service, Label::Normal, normal(&mut self.rng, service));
        }
        let service = self.services[self.rng.random_range(0..self.services.len())];
        if !self.rng.random_bool(self.event_probability) {
            return (service, Label::Normal, normal(&mut self.rng, service));
        }
        let kind = pick_event(&mut self.rng, &self.weights);
        let label = Label::Anomaly(kind);
        match kind {
            AnomalyKind::RuleSpike => (service, label, rule_spike(&mut self.rng, service)),
            AnomalyKind::ModelSpike => (service, label, model_spike(&mut self.rng, service)),
            AnomalyKind::ErrorBurst => {
                for _ in 0..service.burst_len() {
                    let metrics = burst_log(&mut self.rng, service);
                    self.pending.push_back((service, label, metrics));
                }
                self.pending
                    .pop_front()
                    .expect("a burst has at least one log")
            }
        }
    }
}

impl Iterator for Generator {
    type Item = GeneratedLog;

    fn next(&mut self) -> Option<GeneratedLog> {
        Some(self.next_log())
    }
}

/// The events a generator draws from: the usual mix, or one kind only.
fn event_weights(only: Option<AnomalyKind>) -> Vec<(AnomalyKind, f64)> {
    match only {
        Some(kind) => vec![(kind, 1.0)],
        None => EVENT_WEIGHTS.to_vec(),
    }
}

/// The event probability that makes `ratio` of all logs anomalous on average: an event yields `E`
/// anomalous logs (1 for spikes, the burst length for bursts), a non-event one normal log, so the
/// anomalous share is `pE / (pE + 1 − p)`; solved for `p`.
fn event_probability(ratio: f64, services: &[ServiceKind], weights: &[(AnomalyKind, f64)]) -> f64 {
    if ratio <= 0.0 {
        return 0.0;
    }
    let mean_burst =
        services.iter().map(|s| s.burst_len() as f64).sum::<f64>() / services.len() as f64;
    let total: f64 = weights.iter().map(|(_, w)| w).sum();
    let logs_per_event: f64 = weights
        .iter()
        .map(|(kind, w)| {
            let len = if *kind == AnomalyKind::ErrorBurst {
                mean_burst
            } else {
                1.0
            };
            w / total * len
        })
        .sum();
    (ratio / (logs_per_event * (1.0 - ratio) + ratio)).clamp(0.0, 1.0)
}

fn pick_event(rng: &mut StdRng, weights: &[(AnomalyKind, f64)]) -> AnomalyKind {
    if let [(only, _)] = weights {
        // One kind: no draw, so the stream of the other draws is the same whatever the kind.
        return *only;
    }
    let total: f64 = weights.iter().map(|(_, w)| w).sum();
    let mut x = rng.random::<f64>() * total;
    for &(kind, weight) in weights {
        if x < weight {
            return kind;
        }
        x -= weight;
    }
    weights
        .last()
        .map_or(AnomalyKind::ErrorBurst, |(kind, _)| *kind)
}

/// The measurements of one log before rendering, already rounded to what the text will say.
#[derive(Debug, Clone, PartialEq)]
enum Metrics {
    Web {
        level: &'static str,
        method: &'static str,
        path: &'static str,
        status_code: u16,
        /// Milliseconds, one decimal.
        response_time: f64,
        bytes_sent: u64,
        error_rate: f64,
    },
    Database {
        level: &'static str,
        operation: &'static str,
        table: &'static str,
        /// Milliseconds, two decimals.
        query_time: f64,
        connection_count: u32,
        error_rate: f64,
        rows: u64,
        message: Option<&'static str>,
    },
    Application {
        level: &'static str,
        memory_usage: u32,
        cpu_usage: u32,
        thread_count: u32,
    },
}

impl Metrics {
    fn features(&self) -> Vec<(&'static str, f64)> {
        use feature::*;
        match *self {
            Self::Web {
                status_code,
                response_time,
                bytes_sent,
                error_rate,
                ..
            } => vec![
                (STATUS_CODE, f64::from(status_code)),
                (RESPONSE_TIME, response_time),
                (BYTES_SENT, bytes_sent as f64),
                (ERROR_RATE, error_rate),
            ],
            Self::Database {
                query_time,
                connection_count,
                error_rate,
                rows,
                ..
            } => vec![
                (QUERY_TIME, query_time),
                (CONNECTION_COUNT, f64::from(connection_count)),
                (ERROR_RATE, error_rate),
                (ROWS, rows as f64),
            ],
            Self::Application {
                memory_usage,
                cpu_usage,
                thread_count,
                ..
            } => vec![
                (MEMORY_USAGE, f64::from(memory_usage)),
                (CPU_USAGE, f64::from(cpu_usage)),
                (THREAD_COUNT, f64::from(thread_count)),
            ],
        }
    }
}

const WEB_PATHS: [&str; 6] = [
    "/",
    "/api/orders",
    "/api/cart",
    "/api/products",
    "/login",
    "/static/app.js",
];
const DB_TABLES: [&str; 4] = ["orders", "customers", "products", "sessions"];
const DB_OPERATIONS: [&str; 4] = ["select", "select", "insert", "update"];

/// A standard normal draw (Box–Muller), from the seeded source only.
fn standard_normal(rng: &mut StdRng) -> f64 {
    let u1 = 1.0 - rng.random::<f64>(); // (0, 1]: ln is finite
    let u2 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

fn gaussian(rng: &mut StdRng, mean: f64, sd: f64, lo: f64, hi: f64) -> f64 {
    (mean + sd * standard_normal(rng)).clamp(lo, hi)
}

/// Latencies and sizes are log-normal: most small, a long right tail.
fn log_normal(rng: &mut StdRng, median: f64, sigma: f64, lo: f64, hi: f64) -> f64 {
    (median * (sigma * standard_normal(rng)).exp()).clamp(lo, hi)
}

fn round_to(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

fn pick<T: Copy>(rng: &mut StdRng, items: &[T]) -> T {
    items[rng.random_range(0..items.len())]
}

fn normal(rng: &mut StdRng, service: ServiceKind) -> Metrics {
    match service {
        ServiceKind::WebServer => {
            let status_code = match rng.random_range(0..100) {
                0..88 => 200,
                88..92 => 201,
                92..97 => 304,
                _ => 404,
            };
            Metrics::Web {
                level: if status_code == 404 { "WARN" } else { "INFO" },
                method: if status_code == 201 { "POST" } else { "GET" },
                path: pick(rng, &WEB_PATHS),
                status_code,
                response_time: round_to(log_normal(rng, 110.0, 0.45, 8.0, 1200.0), 1),
                bytes_sent: log_normal(rng, 5200.0, 0.6, 200.0, 200_000.0).round() as u64,
                error_rate: round_to(gaussian(rng, 0.01, 0.004, 0.0, 0.03), 4),
            }
        }
        ServiceKind::Database => Metrics::Database {
            level: "INFO",
            operation: pick(rng, &DB_OPERATIONS),
            table: pick(rng, &DB_TABLES),
            query_time: round_to(log_normal(rng, 18.0, 0.7, 0.5, 800.0), 2),
            connection_count: gaussian(rng, 60.0, 12.0, 5.0, 150.0).round() as u32,
            error_rate: round_to(gaussian(rng, 0.004, 0.002, 0.0, 0.012), 4),
            rows: log_normal(rng, 40.0, 1.0, 0.0, 10_000.0).round() as u64,
            message: None,
        },
        ServiceKind::Application => Metrics::Application {
            level: "INFO",
            memory_usage: gaussian(rng, 55.0, 7.0, 30.0, 75.0).round() as u32,
            cpu_usage: gaussian(rng, 35.0, 10.0, 5.0, 75.0).round() as u32,
            thread_count: gaussian(rng, 120.0, 20.0, 40.0, 220.0).round() as u32,
        },
    }
}

/// A normal log with exactly one rule-checked value pushed over its built-in threshold.
fn rule_spike(rng: &mut StdRng, service: ServiceKind) -> Metrics {
    let mut metrics = normal(rng, service);
    let which = rng.random_range(0..3);
    match &mut metrics {
        Metrics::Web {
            level,
            status_code,
            response_time,
            error_rate,
            ..
        } => {
            *level = "ERROR";
            if which < 2 {
                *status_code = 504;
                *response_time = round_to(rng.random_range(2500.0..12_000.0), 1);
            } else {
                *status_code = 500;
                *error_rate = round_to(rng.random_range(0.15..0.6), 4);
            }
        }
        Metrics::Database {
            level,
            query_time,
            connection_count,
            error_rate,
            ..
        } => {
            *level = "ERROR";
            match which {
                0 => *query_time = round_to(rng.random_range(6000.0..25_000.0), 2),
                1 => *connection_count = rng.random_range(520..1200),
                _ => *error_rate = round_to(rng.random_range(0.08..0.5), 4),
            }
        }
        Metrics::Application {
            level,
            memory_usage,
            cpu_usage,
            thread_count,
        } => {
            *level = "ERROR";
            match which {
                0 => *cpu_usage = rng.random_range(92..=100),
                1 => *memory_usage = rng.random_range(87..=99),
                _ => *thread_count = rng.random_range(320..800),
            }
        }
    }
    metrics
}

/// Every value just under its rule and all of them at once: no rule fires, but no normal log looks
/// like this.
fn model_spike(rng: &mut StdRng, service: ServiceKind) -> Metrics {
    let mut metrics = normal(rng, service);
    match &mut metrics {
        Metrics::Web {
            level,
            status_code,
            response_time,
            bytes_sent,
            error_rate,
            ..
        } => {
            *level = "WARN";
            *status_code = 200;
            *response_time = round_to(rng.random_range(1500.0..1950.0), 1);
            *bytes_sent = rng.random_range(50..150);
            *error_rate = round_to(rng.random_range(0.06..0.095), 4);
        }
        Metrics::Database {
            level,
            query_time,
            connection_count,
            error_rate,
            rows,
            ..
        } => {
            *level = "WARN";
            *query_time = round_to(rng.random_range(3500.0..4900.0), 2);
            *connection_count = rng.random_range(380..490);
            *error_rate = round_to(rng.random_range(0.03..0.048), 4);
            *rows = 0;
        }
        Metrics::Application {
            level,
            memory_usage,
            cpu_usage,
            thread_count,
        } => {
            *level = "WARN";
            *memory_usage = rng.random_range(78..=84);
            *cpu_usage = rng.random_range(82..=89);
            *thread_count = rng.random_range(270..=295);
        }
    }
    metrics
}

/// One log of an error burst: the service failing (errors, or thread-pool exhaustion for the
/// application, whose lines carry no error rate), each log breaking one rule.
fn burst_log(rng: &mut StdRng, service: ServiceKind) -> Metrics {
    let mut metrics = normal(rng, service);
    match &mut metrics {
        Metrics::Web {
            level,
            status_code,
            error_rate,
            ..
        } => {
            *level = "ERROR";
            *status_code = pick(rng, &[500, 502, 503]);
            *error_rate = round_to(rng.random_range(0.25..0.7), 4);
        }
        Metrics::Database {
            level,
            error_rate,
            message,
            ..
        } => {
            *level = "ERROR";
            *error_rate = round_to(rng.random_range(0.1..0.5), 4);
            *message = Some(pick(
                rng,
                &[
                    "deadlock detected",
                    "could not serialize access",
                    "connection reset by peer",
                ],
            ));
        }
        Metrics::Application {
            level,
            thread_count,
            ..
        } => {
            *level = "ERROR";
            *thread_count = rng.random_range(310..600);
        }
    }
    metrics
}

fn render(service: ServiceKind, metrics: &Metrics, at: DateTime<Utc>) -> RawLog {
    let timestamp = at.to_rfc3339_opts(SecondsFormat::Millis, true);
    let (raw_log, custom_config) = match *metrics {
        Metrics::Web {
            level,
            method,
            path,
            status_code,
            response_time,
            bytes_sent,
            error_rate,
        } => {
            // Written field by field: a JSON map would sort the keys, and access logs lead with
            // the timestamp.
            let fields: [(&str, Value); 9] = [
                ("timestamp", json!(timestamp)),
                ("level", json!(level)),
                ("message", json!(format!("{method} {path} {status_code}"))),
                ("method", json!(method)),
                ("path", json!(path)),
                (feature::STATUS_CODE, json!(status_code)),
                (feature::RESPONSE_TIME, json!(response_time)),
                (feature::BYTES_SENT, json!(bytes_sent)),
                (feature::ERROR_RATE, json!(error_rate)),
            ];
            let body: Vec<String> = fields
                .iter()
                .map(|(key, value)| format!("{}:{value}", Value::from(*key)))
                .collect();
            (format!("{{{}}}", body.join(",")), None)
        }
        Metrics::Database {
            level,
            operation,
            table,
            query_time,
            connection_count,
            error_rate,
            rows,
            message,
        } => {
            let mut line = format!(
                "{timestamp} {level} query_time={query_time}ms connection_count={connection_count} \
                 error_rate={error_rate} rows={rows} db=shop table={table} op={operation}"
            );
            if let Some(message) = message {
                line.push_str(&format!(" msg=\"{message}\""));
            }
            (line, None)
        }
        Metrics::Application {
            level,
            memory_usage,
            cpu_usage,
            thread_count,
        } => {
            let line = format!(
                "{timestamp} [{level}] Memory usage: {memory_usage}% CPU usage: {cpu_usage}% \
                 Thread count: {thread_count}"
            );
            let config = json!({
                "pattern": APPLICATION_PATTERN,
                "field_mapping": {
                    "0": "timestamp",
                    "1": "level",
                    "2": feature::MEMORY_USAGE,
                    "3": feature::CPU_USAGE,
                    "4": feature::THREAD_COUNT,
                },
            });
            (line, Some(config))
        }
    };
    RawLog {
        raw_log,
        service: service.name().to_owned(),
        source: service.source().to_owned(),
        format_type: service.format_type(),
        custom_config: custom_config.map(|config| Arc::new(config.into())),
        envelope: None,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use super::*;
    use crate::detect::rules::{RuleSet, RuleViolation};

    fn config(seed: u64, ratio: f64) -> GeneratorConfig {
        GeneratorConfig {
            seed,
            services: ServiceKind::ALL.to_vec(),
            anomaly_ratio: ratio,
            warmup_per_service: 0,
            start: "2024-01-15T10:00:00Z".parse().expect("literal time"),
            step: TimeDelta::milliseconds(100),
            only_kind: None,
        }
    }

    fn violations(rules: &RuleSet, log: &GeneratedLog) -> Vec<RuleViolation> {
        rules.violations(log.service.name(), |name| log.feature(name))
    }

    fn per_service_draws(
        draw: fn(&mut StdRng, ServiceKind) -> Metrics,
        n: usize,
    ) -> Vec<GeneratedLog> {
        let mut rng = StdRng::seed_from_u64(7);
        let at: DateTime<Utc> = "2024-01-15T10:00:00Z".parse().expect("literal time");
        ServiceKind::ALL
            .iter()
            .flat_map(|&service| {
                (0..n)
                    .map(|_| {
                        let metrics = draw(&mut rng, service);
                        GeneratedLog {
                            log: render(service, &metrics, at),
                            service,
                            label: Label::Normal,
                            features: metrics.features(),
                        }
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn normal_logs_never_break_a_builtin_rule() {
        let rules = RuleSet::default();
        for log in per_service_draws(normal, 20_000) {
            let broken = violations(&rules, &log);
            assert!(broken.is_empty(), "{:?} broke {broken:?}", log.log.raw_log);
        }
    }

    #[test]
    fn every_rule_spike_breaks_exactly_one_builtin_rule() {
        let rules = RuleSet::default();
        for log in per_service_draws(rule_spike, 3_000) {
            let broken = violations(&rules, &log);
            assert_eq!(broken.len(), 1, "{:?} broke {broken:?}", log.log.raw_log);
        }
    }

    #[test]
    fn rule_spikes_cover_every_builtin_rule_of_each_service() {
        let rules = RuleSet::default();
        let mut hit: BTreeMap<&str, std::collections::BTreeSet<String>> = BTreeMap::new();
        for log in per_service_draws(rule_spike, 500) {
            for v in violations(&rules, &log) {
                hit.entry(log.service.name()).or_default().insert(v.feature);
            }
        }
        let names = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect();
        assert_eq!(
            hit["web_server"],
            names(&["error_rate", "response_time"]),
            "web_server"
        );
        assert_eq!(
            hit["database"],
            names(&["connection_count", "error_rate", "query_time"])
        );
        assert_eq!(
            hit["application"],
            names(&["cpu_usage", "memory_usage", "thread_count"])
        );
    }

    #[test]
    fn every_burst_log_breaks_a_rule() {
        let rules = RuleSet::default();
        for log in per_service_draws(burst_log, 2_000) {
            assert!(!violations(&rules, &log).is_empty(), "{}", log.log.raw_log);
        }
    }

    #[test]
    fn model_spikes_break_no_rule_yet_lie_far_from_the_baseline() {
        let rules = RuleSet::default();
        // Baseline mean and standard deviation of every feature, per service.
        let mut moments: HashMap<(ServiceKind, &str), (f64, f64, f64)> = HashMap::new();
        for log in per_service_draws(normal, 10_000) {
            for (name, value) in &log.features {
                let m = moments.entry((log.service, name)).or_default();
                m.0 += 1.0;
                m.1 += value;
                m.2 += value * value;
            }
        }
        for log in per_service_draws(model_spike, 2_000) {
            assert!(violations(&rules, &log).is_empty(), "{}", log.log.raw_log);
            let farthest = log
                .features
                .iter()
                .map(|(name, value)| {
                    let (n, sum, sum_sq) = moments[&(log.service, *name)];
                    let mean = sum / n;
                    let sd = (sum_sq / n - mean * mean).sqrt().max(1e-9);
                    ((value - mean) / sd).abs()
                })
                .fold(0.0, f64::max);
            assert!(
                farthest > 4.0,
                "{} is only {farthest:.1} sd out",
                log.log.raw_log
            );
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_logs_and_another_seed_other_logs() {
        let take = |seed| -> Vec<String> {
            Generator::new(config(seed, 0.2))
                .take(500)
                .map(|g| serde_json::to_string(&g.log).expect("serializes"))
                .collect()
        };
        assert_eq!(take(42), take(42));
        assert_ne!(take(42), take(43));
    }

    #[test]
    fn the_anomaly_ratio_is_met_on_average() {
        for ratio in [0.0, 0.05, 0.2, 0.5] {
            let n = 40_000;
            let anomalous = Generator::new(config(1, ratio))
                .take(n)
                .filter(|g| g.label.is_anomaly())
                .count();
            let share = anomalous as f64 / n as f64;
            assert!(
                (share - ratio).abs() < 0.02,
                "ratio {ratio}: got {share:.3}"
            );
        }
    }

    #[test]
    fn one_kind_only_injects_that_kind_at_the_ratio() {
        for kind in AnomalyKind::ALL {
            let mut cfg = config(12, 0.1);
            cfg.only_kind = Some(kind);
            let n = 40_000;
            let logs: Vec<_> = Generator::new(cfg).take(n).collect();
            let anomalous: Vec<_> = logs.iter().filter(|g| g.label.is_anomaly()).collect();
            assert!(
                anomalous.iter().all(|g| g.label == Label::Anomaly(kind)),
                "{kind:?}"
            );
            let share = anomalous.len() as f64 / n as f64;
            assert!((share - 0.1).abs() < 0.02, "{kind:?}: got {share:.3}");
        }
    }

    #[test]
    fn a_ratio_of_one_makes_every_log_an_anomaly_of_every_kind() {
        let logs: Vec<_> = Generator::new(config(3, 1.0)).take(2_000).collect();
        assert!(logs.iter().all(|g| g.label.is_anomaly()));
        for kind in AnomalyKind::ALL {
            assert!(
                logs.iter().any(|g| g.label == Label::Anomaly(kind)),
                "{kind:?}"
            );
        }
    }

    #[test]
    fn an_error_burst_is_as_long_as_its_services_rate_rule_and_consecutive() {
        let logs: Vec<_> = Generator::new(config(5, 0.3)).take(5_000).collect();
        let mut i = 0;
        let mut bursts = 0;
        while i < logs.len() {
            if logs[i].label == Label::Anomaly(AnomalyKind::ErrorBurst) {
                let service = logs[i].service;
                let len = service.burst_len();
                if i + len > logs.len() {
                    break; // cut off by take()
                }
                for log in &logs[i..i + len] {
                    assert_eq!(log.service, service);
                    assert_eq!(log.label, Label::Anomaly(AnomalyKind::ErrorBurst));
                }
                bursts += 1;
                i += len;
            } else {
                i += 1;
            }
        }
        assert!(bursts > 10);
        assert_eq!(ServiceKind::WebServer.burst_len(), 3);
        assert_eq!(ServiceKind::Database.burst_len(), 5);
        assert_eq!(ServiceKind::Application.burst_len(), 8);
    }

    #[test]
    fn warmup_sends_only_normal_logs_evenly_across_services() {
        let mut cfg = config(9, 1.0);
        cfg.warmup_per_service = 10;
        let logs: Vec<_> = Generator::new(cfg).take(31).collect();
        assert!(logs[..30].iter().all(|g| g.label == Label::Normal));
        for service in ServiceKind::ALL {
            assert_eq!(
                logs[..30].iter().filter(|g| g.service == service).count(),
                10
            );
        }
        assert!(logs[30].label.is_anomaly());
    }

    #[test]
    fn web_server_lines_are_json_objects_that_lead_with_the_timestamp() {
        for g in Generator::new(config(6, 0.3)).take(300) {
            if g.service == ServiceKind::WebServer {
                let value: serde_json::Value =
                    serde_json::from_str(&g.log.raw_log).expect("valid JSON");
                assert!(value.is_object());
                assert!(g.log.raw_log.starts_with(r#"{"timestamp":"2024-01-15T"#));
            }
        }
    }

    #[test]
    fn timestamps_follow_the_logical_clock() {
        let logs: Vec<_> = Generator::new(config(2, 0.0)).take(3).collect();
        assert!(logs[2].log.raw_log.contains("2024-01-15T10:00:00.200Z"));
    }

    #[test]
    fn rendered_logs_carry_exactly_their_features() {
        let pattern = regex::Regex::new(APPLICATION_PATTERN).expect("pattern compiles");
        for log in Generator::new(config(11, 0.3)).take(3_000) {
            let raw = &log.log.raw_log;
            let parsed: Vec<(String, f64)> = match log.service {
                ServiceKind::WebServer => {
                    let value: serde_json::Value = serde_json::from_str(raw).expect("JSON");
                    value
                        .as_object()
                        .expect("object")
                        .iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.as_f64()?)))
                        .collect()
                }
                ServiceKind::Database => raw
                    .split_whitespace()
                    .filter_map(|pair| pair.split_once('='))
                    .filter_map(|(k, v)| {
                        Some((k.to_owned(), v.trim_end_matches("ms").parse().ok()?))
                    })
                    .collect(),
                ServiceKind::Application => {
                    let caps = pattern.captures(raw).expect("pattern matches");
                    assert_eq!(
                        log.log.custom_config.as_ref().expect("config")["field_mapping"]["2"],
                        "memory_usage"
                    );
                    ["memory_usage", "cpu_usage", "thread_count"]
                        .iter()
                        .zip(2..)
                        .map(|(k, i)| ((*k).to_owned(), caps[i + 1].parse().expect("number")))
                        .collect()
                }
            };
            let mut expected: Vec<(String, f64)> = log
                .features
                .iter()
                .map(|(k, v)| ((*k).to_owned(), *v))
                .collect();
            let mut parsed = parsed;
            expected.sort_by(|a, b| a.0.cmp(&b.0));
            parsed.sort_by(|a, b| a.0.cmp(&b.0));
            assert_eq!(parsed, expected, "{raw}");
        }
    }

    #[test]
    fn wire_fields_match_the_contract() {
        let logs: Vec<_> = Generator::new(config(4, 0.0)).take(30).collect();
        for g in &logs {
            let wire = serde_json::to_value(&g.log).expect("serializes");
            let expected_format = match g.service {
                ServiceKind::WebServer => "json",
                ServiceKind::Database => "key_value",
                ServiceKind::Application => "regex",
            };
            assert_eq!(wire["format_type"], expected_format);
            assert_eq!(wire["service"], g.service.name());
            assert_eq!(wire["source"], g.service.source());
            if g.service == ServiceKind::Application {
                assert_eq!(wire["custom_config"]["pattern"], APPLICATION_PATTERN);
                assert_eq!(wire["custom_config"]["field_mapping"]["0"], "timestamp");
                assert_eq!(wire["custom_config"]["field_mapping"]["1"], "level");
            } else {
                assert!(wire["custom_config"].is_null());
            }
        }
    }
}
