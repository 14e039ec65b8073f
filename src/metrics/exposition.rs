//! The exposition: the event registry plus the scrape-time [`Snapshot`], in OpenMetrics text
//! (what `prometheus-client` writes) or in Prometheus' text format 0.0.4.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};

use super::{LabelText, PREFIX};

/// The format of a scrape, chosen from its `Accept` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `application/openmetrics-text; version=1.0.0`.
    OpenMetrics,
    /// `text/plain; version=0.0.4`: Prometheus' classic text format, for scrapers that do not
    /// ask for OpenMetrics (and for curl).
    Text,
}

impl Format {
    /// OpenMetrics when the `Accept` header ranks it at least as high as plain text (Prometheus
    /// sends `application/openmetrics-text;version=1.0.0,…,text/plain;version=0.0.4;q=0.5,…`);
    /// the 0.0.4 text format otherwise, and when there is no header.
    pub fn from_accept(accept: Option<&str>) -> Self {
        let Some(accept) = accept else {
            return Format::Text;
        };
        let mut openmetrics: f64 = 0.0;
        let mut text: f64 = 0.0;
        for range in accept.split(',') {
            let mut parts = range.split(';');
            let essence = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let quality = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f64>().ok())
                .unwrap_or(1.0);
            match essence.as_str() {
                "application/openmetrics-text" => openmetrics = openmetrics.max(quality),
                "text/plain" | "text/*" | "*/*" => text = text.max(quality),
                _ => {}
            }
        }
        if openmetrics > 0.0 && openmetrics >= text {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }

    /// The `Content-Type` of a response in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

/// One alert channel's figures since start-up, and its outbox now.
#[derive(Debug, Clone, Default)]
pub struct ChannelFigures {
    pub channel: &'static str,
    pub delivered: u64,
    /// Refused by the receiver (4xx other than 408 and 429): not retried.
    pub rejected: u64,
    /// Gave up after `ALERT_MAX_ATTEMPTS`.
    pub failed: u64,
    /// Not queued: the channel's outbox was full (`ALERT_QUEUE_CAPACITY`).
    pub dropped: u64,
    pub retries: u64,
    /// Notifications waiting in the outbox; `None` when the outbox could not be read.
    pub pending: Option<u64>,
}

/// What the service holds at the moment of a scrape, and counters other areas keep themselves.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub version: &'static str,
    /// Alert transitions since start-up: fired, repeated, resolved.
    pub alerts_fired: u64,
    pub alerts_repeated: u64,
    pub alerts_resolved: u64,
    /// Services whose alert is firing now.
    pub alerts_firing: u64,
    /// Notifications that could not be stored, so will never be sent.
    pub notifications_lost: u64,
    /// Every channel but the console.
    pub channels: Vec<ChannelFigures>,
    /// Per service with a model (already folded under the cardinality bound): when it was
    /// trained, in seconds since the epoch.
    pub model_trained: Vec<(String, f64)>,
    pub models: u64,
    /// `None` (and no sample) when the database could not be read for this scrape.
    pub stored_anomalies: Option<u64>,
    /// `MAX_RECENT_ANOMALIES`.
    pub stored_anomalies_limit: u64,
    /// Stored anomalies deleted to keep within the limit, since start-up.
    pub anomalies_pruned: u64,
    /// `None` (and no sample) when the database could not be read for this scrape.
    pub feedback_records: Option<u64>,
    /// Fields ignored for `MAX_FEATURES_PER_LOG` or `MAX_FIELD_NAME_CHARS`.
    pub fields_dropped: u64,
    /// Logs of services beyond `MAX_TRACKED_SERVICES`, judged but not learned from.
    pub untracked_service_logs: u64,
}

/// Writes the registry and the snapshot as one OpenMetrics exposition.
pub(super) fn encode(registry: &Registry, snapshot: &Snapshot, out: &mut String) {
    let mut scrape = Registry::with_prefix(PREFIX);
    scrape.register_collector(Box::new(SnapshotCollector(snapshot.clone())));
    // Writing to a String cannot fail, and every name and label set is ours.
    let written = prometheus_client::encoding::text::encode_registry(out, registry)
        .and_then(|()| prometheus_client::encoding::text::encode_registry(out, &scrape))
        .and_then(|()| prometheus_client::encoding::text::encode_eof(out));
    if let Err(error) = written {
        tracing::error!(%error, "The metrics could not be encoded.");
    }
}

#[derive(Debug)]
struct SnapshotCollector(Snapshot);

#[derive(Debug, Clone, PartialEq, Eq, Hash, prometheus_client::encoding::EncodeLabelSet)]
struct ChannelOutcome {
    channel: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, prometheus_client::encoding::EncodeLabelSet)]
struct ChannelLabel {
    channel: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, prometheus_client::encoding::EncodeLabelSet)]
struct EventLabel {
    event: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, prometheus_client::encoding::EncodeLabelSet)]
struct ServiceLabel {
    service: LabelText,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, prometheus_client::encoding::EncodeLabelSet)]
struct VersionLabel {
    version: &'static str,
}

fn family<L: EncodeLabelSet, M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    metric_type: MetricType,
    rows: impl IntoIterator<Item = (L, M)>,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, unit, metric_type)?;
    for (labels, value) in rows {
        value.encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let value = ConstCounter::new(value);
    value.encode(encoder.encode_descriptor(name, help, None, MetricType::Counter)?)
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), std::fmt::Error> {
    let value = ConstGauge::new(value);
    value.encode(encoder.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

/// A gauge whose family is described even when its value is unknown for this scrape (then it
/// has no sample), so the exposition always names the same metrics.
fn optional_gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: Option<u64>,
) -> Result<(), std::fmt::Error> {
    let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    match value {
        Some(value) => ConstGauge::new(saturating(value)).encode(metric),
        None => Ok(()),
    }
}

fn saturating(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl Collector for SnapshotCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.0;
        family(
            &mut encoder,
            "build_info",
            "The running build: always 1, its version in a label.",
            None,
            MetricType::Gauge,
            [(VersionLabel { version: s.version }, ConstGauge::new(1i64))],
        )?;
        family(
            &mut encoder,
            "alerts",
            "Rate alert transitions since start-up, by event (fired, repeated, resolved).",
            None,
            MetricType::Counter,
            [
                ("fired", s.alerts_fired),
                ("repeated", s.alerts_repeated),
                ("resolved", s.alerts_resolved),
            ]
            .map(|(event, n)| (EventLabel { event }, ConstCounter::new(n))),
        )?;
        gauge(
            &mut encoder,
            "alerts_firing",
            "Services whose rate alert is firing now.",
            saturating(s.alerts_firing),
        )?;
        counter(
            &mut encoder,
            "alert_notifications_lost",
            "Alert notifications that could not be stored and will never be sent.",
            s.notifications_lost,
        )?;
        family(
            &mut encoder,
            "alert_notifications",
            "Alert notifications finished per channel since start-up, by outcome: delivered, \
             rejected (4xx, not retried), failed (ALERT_MAX_ATTEMPTS spent), dropped (outbox full).",
            None,
            MetricType::Counter,
            s.channels.iter().flat_map(|c| {
                [
                    ("delivered", c.delivered),
                    ("rejected", c.rejected),
                    ("failed", c.failed),
                    ("dropped", c.dropped),
                ]
                .map(|(outcome, n)| {
                    (
                        ChannelOutcome {
                            channel: c.channel,
                            outcome,
                        },
                        ConstCounter::new(n),
                    )
                })
            }),
        )?;
        family(
            &mut encoder,
            "alert_delivery_retries",
            "Alert delivery attempts that failed and were retried, per channel.",
            None,
            MetricType::Counter,
            s.channels.iter().map(|c| {
                (
                    ChannelLabel { channel: c.channel },
                    ConstCounter::new(c.retries),
                )
            }),
        )?;
        family(
            &mut encoder,
            "alert_outbox_depth",
            "Alert notifications waiting in the durable outbox, per channel.",
            None,
            MetricType::Gauge,
            s.channels.iter().filter_map(|c| {
                Some((
                    ChannelLabel { channel: c.channel },
                    ConstGauge::new(saturating(c.pending?)),
                ))
            }),
        )?;
        gauge(
            &mut encoder,
            "models",
            "Service models serving now.",
            saturating(s.models),
        )?;
        family(
            &mut encoder,
            "model_trained_timestamp",
            "When each service's serving model was trained, in seconds since the epoch; services \
             beyond METRICS_MAX_SERVICES share __other__, which shows the oldest of theirs.",
            Some(&Unit::Seconds),
            MetricType::Gauge,
            s.model_trained.iter().map(|(service, at)| {
                (
                    ServiceLabel {
                        service: LabelText(service.clone()),
                    },
                    ConstGauge::new(*at),
                )
            }),
        )?;
        optional_gauge(
            &mut encoder,
            "stored_anomalies",
            "Anomaly records in the database now.",
            s.stored_anomalies,
        )?;
        gauge(
            &mut encoder,
            "stored_anomalies_limit",
            "The most anomaly records kept (MAX_RECENT_ANOMALIES); older ones are pruned.",
            saturating(s.stored_anomalies_limit),
        )?;
        counter(
            &mut encoder,
            "anomalies_pruned",
            "Stored anomalies deleted since start-up to keep within MAX_RECENT_ANOMALIES.",
            s.anomalies_pruned,
        )?;
        optional_gauge(
            &mut encoder,
            "feedback_records",
            "Feedback labels in the database now.",
            s.feedback_records,
        )?;
        counter(
            &mut encoder,
            "log_fields_dropped",
            "Fields ignored for MAX_FEATURES_PER_LOG or MAX_FIELD_NAME_CHARS.",
            s.fields_dropped,
        )?;
        counter(
            &mut encoder,
            "untracked_service_logs",
            "Logs of services beyond MAX_TRACKED_SERVICES: judged, not learned from.",
            s.untracked_service_logs,
        )?;
        Ok(())
    }
}

/// OpenMetrics text as Prometheus' 0.0.4 text format: a counter's family is named with its
/// `_total` (OpenMetrics names it without), `# UNIT` lines and the `# EOF` marker go. Samples
/// and label escapes are the same in both.
pub(super) fn to_text_format(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut help: Option<(&str, &str)> = None;
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
            help = Some((name, text));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let (name, kind) = match kind {
                "counter" => (format!("{name}_total"), "counter"),
                "gauge" | "histogram" | "summary" => (name.to_owned(), kind),
                _ => (name.to_owned(), "untyped"),
            };
            if let Some((_, text)) = help.take() {
                out.push_str("# HELP ");
                out.push_str(&name);
                out.push(' ');
                out.push_str(text);
                out.push('\n');
            }
            out.push_str("# TYPE ");
            out.push_str(&name);
            out.push(' ');
            out.push_str(kind);
            out.push('\n');
        } else if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}
