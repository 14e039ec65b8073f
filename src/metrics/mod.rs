//! Prometheus metrics (GET /metrics): the handles each stage updates, and the exposition.
//!
//! Two kinds of figures, kept apart so the hot path stays cheap:
//!
//! - **Events** — requests, ingest stage durations, logs by format, anomalies by detector and
//!   service, training runs — are counted as they happen into the long-lived [`Metrics`]
//!   registry. The ingest path updates them once per *batch*, from a tally it keeps in local
//!   variables while it walks the logs ([`BatchTally`]): no lock and no atomic per log.
//! - **State** — outbox depth, stored anomalies, models and their age, and the counters other
//!   areas already keep in atomics (alert deliveries, retries) — is read at scrape time into a
//!   [`Snapshot`] and written as constant metrics; nothing on the hot path pays for it.
//!
//! Names follow Prometheus' naming guide (<https://prometheus.io/docs/practices/naming/>): one
//! `aioops_` prefix, base units (seconds, bytes) in the name, `_total` on counters. Labels are
//! bounded: the route is axum's route template, never the raw path; methods outside the standard
//! ones are `other`; services beyond `METRICS_MAX_SERVICES` share the label value
//! [`OTHER_SERVICE`].
//!
//! This module imports nothing of the crate: every area may use it.

mod exposition;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

pub use self::exposition::{ChannelFigures, Format, Snapshot};

/// The label value shared by every service beyond the first `METRICS_MAX_SERVICES`.
pub const OTHER_SERVICE: &str = "__other__";
/// The default of `METRICS_MAX_SERVICES`.
pub const DEFAULT_MAX_SERVICES: usize = 100;
/// Every metric's name starts with this.
pub const PREFIX: &str = "aioops";

/// The log formats, in the order [`BatchTally`] counts them (the wire names of `format_type`).
pub const FORMATS: [&str; 5] = ["json", "key_value", "regex", "custom", "auto"];

/// A label value written with the exposition format's escapes (`\\`, `\"`, `\n`).
/// `prometheus-client` writes label values as they are, and a service name is client input.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LabelText(pub String);

impl EncodeLabelValue for LabelText {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        let text = &self.0;
        if !text.contains(['\\', '"', '\n']) {
            return encoder.write_str(text);
        }
        for c in text.chars() {
            match c {
                '\\' => encoder.write_str("\\\\")?,
                '"' => encoder.write_str("\\\"")?,
                '\n' => encoder.write_str("\\n")?,
                c => encoder.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// `method`, `route`, `status` of an HTTP request.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: &'static str,
    /// The route template (`/api/v1/train/{job_id}`), or `unmatched`.
    pub route: String,
    pub status: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StageLabels {
    stage: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct FormatLabels {
    format: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DetectorLabels {
    detector: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ServiceLabels {
    service: LabelText,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ServiceDetectorLabels {
    service: LabelText,
    detector: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TrainingLabels {
    trigger: &'static str,
    outcome: &'static str,
}

/// A stage of the ingest path, timed once per batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The request body decoded and checked (HTTP front door).
    Decode,
    /// Every log of the batch parsed.
    Parse,
    /// Rules, baselines and forests over the batch.
    Detect,
    /// The batch's anomalies committed.
    Store,
    /// The rate windows updated and transitions handed to the alert tasks.
    Alert,
    /// The judged logs offered to the learning loop.
    Learn,
}

impl Stage {
    const ALL: [Stage; 6] = [
        Stage::Decode,
        Stage::Parse,
        Stage::Detect,
        Stage::Store,
        Stage::Alert,
        Stage::Learn,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Stage::Decode => "decode",
            Stage::Parse => "parse",
            Stage::Detect => "detect",
            Stage::Store => "store",
            Stage::Alert => "alert",
            Stage::Learn => "learn",
        }
    }
}

/// What one batch held, counted in plain integers while the pipeline walks its logs and added
/// to the shared counters once ([`Metrics::record_batch`]).
#[derive(Debug, Default)]
pub struct BatchTally<'a> {
    /// Logs received per format (indexes of [`FORMATS`]).
    pub logs: [u64; FORMATS.len()],
    /// Logs that could not be parsed, per format.
    pub parse_errors: [u64; FORMATS.len()],
    /// Per service in order of first appearance: logs, rule anomalies, model anomalies. A batch
    /// usually holds one or a few services, so a short list beats a map.
    services: Vec<(&'a str, [u64; 3])>,
    /// The index in `services` of the last service counted: runs of one service skip the search.
    last: usize,
}

impl<'a> BatchTally<'a> {
    /// A tally of `logs` received and `parse_errors` per format, no service counted yet.
    pub fn new(logs: [u64; FORMATS.len()], parse_errors: [u64; FORMATS.len()]) -> Self {
        Self {
            logs,
            parse_errors,
            ..Self::default()
        }
    }

    /// Counts one log of `service`: judged with `anomaly` (`None`: normal or not parsed; else
    /// whether a rule fired, `true`, or the model, `false`).
    pub fn service(&mut self, service: &'a str, anomaly: Option<bool>) {
        let index = match self.services.get(self.last) {
            Some((name, _)) if *name == service => self.last,
            _ => match self.services.iter().position(|(name, _)| *name == service) {
                Some(index) => index,
                None => {
                    self.services.push((service, [0; 3]));
                    self.services.len() - 1
                }
            },
        };
        self.last = index;
        let counts = &mut self.services[index].1;
        counts[0] += 1;
        match anomaly {
            Some(true) => counts[1] += 1,
            Some(false) => counts[2] += 1,
            None => {}
        }
    }
}

/// Per-service counters, admitted up to a bound.
#[derive(Debug)]
struct ServiceSeries {
    max: usize,
    admitted: RwLock<HashMap<String, ServiceCounters>>,
    other: ServiceCounters,
    logs: Family<ServiceLabels, Counter>,
    anomalies: Family<ServiceDetectorLabels, Counter>,
}

#[derive(Debug, Clone)]
struct ServiceCounters {
    logs: Counter,
    rule: Counter,
    model: Counter,
}

impl ServiceSeries {
    fn new(max: usize) -> Self {
        let logs = Family::<ServiceLabels, Counter>::default();
        let anomalies = Family::<ServiceDetectorLabels, Counter>::default();
        let other = Self::counters_in(&logs, &anomalies, OTHER_SERVICE);
        Self {
            max,
            admitted: RwLock::new(HashMap::new()),
            other,
            logs,
            anomalies,
        }
    }

    fn counters_in(
        logs: &Family<ServiceLabels, Counter>,
        anomalies: &Family<ServiceDetectorLabels, Counter>,
        service: &str,
    ) -> ServiceCounters {
        let label = LabelText(service.to_owned());
        let detector = |detector| ServiceDetectorLabels {
            service: label.clone(),
            detector,
        };
        // One statement each: `get_or_create` hands out a read guard, and a second call that
        // must create its series takes the write lock, which would wait on a guard still alive
        // within the same expression.
        let logs = logs
            .get_or_create(&ServiceLabels {
                service: label.clone(),
            })
            .clone();
        let rule = anomalies.get_or_create(&detector("rule")).clone();
        let model = anomalies.get_or_create(&detector("model")).clone();
        ServiceCounters { logs, rule, model }
    }

    /// The counters of `service`: its own while fewer than `max` services have any, else the
    /// shared [`OTHER_SERVICE`] ones. A service keeps its series once admitted (a counter must
    /// not go back), so the first `max` services seen since start-up are the ones shown.
    fn counters(&self, service: &str) -> ServiceCounters {
        {
            let admitted = self.admitted.read().unwrap_or_else(|e| e.into_inner());
            if let Some(counters) = admitted.get(service) {
                return counters.clone();
            }
            if admitted.len() >= self.max {
                return self.other.clone();
            }
        }
        let mut admitted = self.admitted.write().unwrap_or_else(|e| e.into_inner());
        if let Some(counters) = admitted.get(service) {
            return counters.clone();
        }
        if admitted.len() >= self.max || service == OTHER_SERVICE {
            return self.other.clone();
        }
        let counters = Self::counters_in(&self.logs, &self.anomalies, service);
        admitted.insert(service.to_owned(), counters.clone());
        counters
    }

    /// Whether `service` has a series of its own.
    fn is_admitted(&self, service: &str) -> bool {
        self.admitted
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(service)
    }
}

/// The long-lived metrics: one per application, shared by every area that counts events.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    http_duration: Family<HttpLabels, Histogram>,
    http_in_flight: Gauge,
    stages: [Histogram; Stage::ALL.len()],
    logs: [Counter; FORMATS.len()],
    parse_errors: [Counter; FORMATS.len()],
    /// `rule`, `model`.
    anomalies: [Counter; 2],
    services: ServiceSeries,
    training: Family<TrainingLabels, Histogram>,
}

/// Seconds from 0.5 ms to about 16 s: requests and ingest stages (a 10,000-log batch takes
/// about 30 ms to parse and judge on one core).
fn latency_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.0005, 2.0, 16)
}

impl Metrics {
    /// A registry with every event metric, per-service series bounded by `max_services`.
    pub fn new(max_services: usize) -> Self {
        let mut registry = Registry::with_prefix(PREFIX);
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by method, route template and status",
            http_requests.clone(),
        );
        let http_duration = Family::<HttpLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(latency_buckets())
        });
        registry.register_with_unit(
            "http_request_duration",
            "Time from a request's arrival to its response head, by method, route template and status",
            Unit::Seconds,
            http_duration.clone(),
        );
        let http_in_flight = Gauge::default();
        registry.register(
            "http_requests_in_flight",
            "HTTP requests being answered now",
            http_in_flight.clone(),
        );
        let stage_family = Family::<StageLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(latency_buckets())
        });
        registry.register_with_unit(
            "ingest_stage_duration",
            "Time one ingest batch spent in a stage: decode, parse, detect, store, alert, learn",
            Unit::Seconds,
            stage_family.clone(),
        );
        let stages = Stage::ALL.map(|stage| {
            stage_family
                .get_or_create(&StageLabels {
                    stage: stage.as_str(),
                })
                .clone()
        });
        let log_family = Family::<FormatLabels, Counter>::default();
        registry.register(
            "logs_ingested",
            "Logs received for judging, by format_type",
            log_family.clone(),
        );
        let logs = FORMATS.map(|format| log_family.get_or_create(&FormatLabels { format }).clone());
        let error_family = Family::<FormatLabels, Counter>::default();
        registry.register(
            "log_parse_errors",
            "Logs that could not be parsed (their result carries an error), by format_type",
            error_family.clone(),
        );
        let parse_errors =
            FORMATS.map(|format| error_family.get_or_create(&FormatLabels { format }).clone());
        let anomaly_family = Family::<DetectorLabels, Counter>::default();
        registry.register(
            "anomalies",
            "Anomalies detected, by detector (rule or model)",
            anomaly_family.clone(),
        );
        let anomalies = ["rule", "model"].map(|detector| {
            anomaly_family
                .get_or_create(&DetectorLabels { detector })
                .clone()
        });
        let services = ServiceSeries::new(max_services);
        registry.register(
            "service_logs",
            "Logs judged or refused per service; services beyond METRICS_MAX_SERVICES are counted under __other__",
            services.logs.clone(),
        );
        registry.register(
            "service_anomalies",
            "Anomalies per service and detector; services beyond METRICS_MAX_SERVICES are counted under __other__",
            services.anomalies.clone(),
        );
        let training = Family::<TrainingLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.01, 2.0, 14))
        });
        // Every combination exists from the start, at zero: a family without series is left out
        // of the exposition, and `rate()` over a series that appears later misses its first run.
        for trigger in ["job", "automatic"] {
            for outcome in ["succeeded", "failed"] {
                let _series = training.get_or_create(&TrainingLabels { trigger, outcome });
            }
        }
        registry.register_with_unit(
            "training_duration",
            "Time a training run took, by trigger (job or automatic) and outcome (succeeded or failed)",
            Unit::Seconds,
            training.clone(),
        );
        Self {
            registry,
            http_requests,
            http_duration,
            http_in_flight,
            stages,
            logs,
            parse_errors,
            anomalies,
            services,
            training,
        }
    }

    /// One request answered.
    pub fn observe_request(&self, labels: &HttpLabels, elapsed: Duration) {
        self.http_requests.get_or_create(labels).inc();
        self.http_duration
            .get_or_create(labels)
            .observe(elapsed.as_secs_f64());
    }

    /// The in-flight gauge, raised until the guard drops.
    pub fn request_started(&self) -> InFlight<'_> {
        self.http_in_flight.inc();
        InFlight(&self.http_in_flight)
    }

    /// One batch spent `elapsed` in `stage`.
    pub fn observe_stage(&self, stage: Stage, elapsed: Duration) {
        // `ALL` lists the stages in declaration order.
        self.stages[stage as usize].observe(elapsed.as_secs_f64());
    }

    /// Adds a batch's tally to the counters: a handful of atomic additions, plus one map look-up
    /// per distinct service of the batch.
    pub fn record_batch(&self, tally: &BatchTally<'_>) {
        for (counter, &count) in self.logs.iter().zip(&tally.logs) {
            if count > 0 {
                counter.inc_by(count);
            }
        }
        for (counter, &count) in self.parse_errors.iter().zip(&tally.parse_errors) {
            if count > 0 {
                counter.inc_by(count);
            }
        }
        let mut rule = 0;
        let mut model = 0;
        for (service, [logs, rules, models]) in &tally.services {
            let counters = self.services.counters(service);
            counters.logs.inc_by(*logs);
            if *rules > 0 {
                counters.rule.inc_by(*rules);
            }
            if *models > 0 {
                counters.model.inc_by(*models);
            }
            rule += rules;
            model += models;
        }
        if rule > 0 {
            self.anomalies[0].inc_by(rule);
        }
        if model > 0 {
            self.anomalies[1].inc_by(model);
        }
    }

    /// One training run: `trigger` is `job` or `automatic`.
    pub fn observe_training(&self, trigger: &'static str, succeeded: bool, elapsed: Duration) {
        let outcome = if succeeded { "succeeded" } else { "failed" };
        self.training
            .get_or_create(&TrainingLabels { trigger, outcome })
            .observe(elapsed.as_secs_f64());
    }

    /// The label value `service` is shown under: its own name while the bound has room (it is
    /// admitted if it was not yet), else [`OTHER_SERVICE`].
    pub fn service_label<'a>(&self, service: &'a str) -> &'a str {
        let _counters = self.services.counters(service);
        if self.services.is_admitted(service) {
            service
        } else {
            OTHER_SERVICE
        }
    }

    /// The exposition of every metric, events and `snapshot`, in `format`.
    pub fn encode(&self, snapshot: &Snapshot, format: Format) -> String {
        let mut text = String::with_capacity(16 * 1024);
        exposition::encode(&self.registry, snapshot, &mut text);
        match format {
            Format::OpenMetrics => text,
            Format::Text => exposition::to_text_format(&text),
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_SERVICES)
    }
}

/// Lowers the in-flight gauge when dropped.
#[derive(Debug)]
pub struct InFlight<'a>(&'a Gauge);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// A shared handle, as the state holds it.
pub type SharedMetrics = Arc<Metrics>;

#[cfg(test)]
mod tests;
