//! The alert drill's part of the summary: `alert_drill` in `--json`, a few lines of text after the
//! usual summary.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::simulator::drill::alerts::PhaseAlertCount;
use crate::simulator::summary::Tally;

/// Seconds in an hour, for the per-simulated-hour figures.
const HOUR_SECONDS: f64 = 3600.0;

/// The drill's figures. Phases the run did not reach (Ctrl-C) are `null`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DrillReport {
    pub services: Vec<String>,
    /// Simulated logs per second of each service.
    pub rate_per_service: f64,
    pub batch: u32,
    pub concurrency: u32,
    /// Simulated time of the first warm-up log.
    pub start_time: DateTime<Utc>,
    pub warmup: Option<WarmupReport>,
    pub normal: Option<NormalReport>,
    pub incident: Option<IncidentReport>,
    /// Every phase ran to its end.
    pub complete: bool,
}

/// What the services learned before the measured phases.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WarmupReport {
    pub logs_per_service: u64,
    pub logs: u64,
    /// Training samples of each service's model when the wait ended (services without a model
    /// are missing).
    pub models: BTreeMap<String, u64>,
    /// Training samples per service the wait aimed for: the warm-up's logs per service.
    pub target_samples: u64,
    /// `reached` (every model fitted on the target), `stable` (models stopped changing short of
    /// it), `timed_out`, or `skipped` (no warm-up).
    pub outcome: &'static str,
    /// Wall-clock seconds spent waiting for the models.
    pub waited_seconds: f64,
}

/// Alert figures common to both measured phases.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhaseAlerts {
    /// Services with a firing alert when the phase was due to start (before any wait).
    pub firing_before: Vec<String>,
    /// Wall-clock seconds spent waiting for those alerts to resolve (`--quiet-timeout`).
    pub waited_for_quiet_seconds: f64,
    /// Services still firing when the phase started (the wait timed out or was off).
    pub firing_at_start: Vec<String>,
    /// New alerts the service raised during the phase (each paged when it fired).
    pub alerts: u64,
    pub alerts_by_service: BTreeMap<String, u64>,
    /// Times a rate rule tripped during the phase, in new alerts and in alerts already open
    /// (`bursts` of `GET /api/v1/alerts`); `null` when the service does not report it.
    pub rule_trips: Option<u64>,
    /// The alert listing was full of new alerts: `alerts` is a lower bound.
    pub alerts_truncated: bool,
    /// Services with a firing alert when the phase ended.
    pub firing_at_end: Vec<String>,
}

impl PhaseAlerts {
    /// The figures of a phase from its count and its quiet wait.
    pub fn new(count: PhaseAlertCount, quiet: QuietWait) -> Self {
        Self {
            firing_before: quiet.firing_before,
            waited_for_quiet_seconds: round3(quiet.waited_seconds),
            firing_at_start: quiet.firing_at_start,
            alerts: count.alerts,
            alerts_by_service: count.by_service,
            rule_trips: count.bursts,
            alerts_truncated: count.truncated,
            firing_at_end: count.firing,
        }
    }
}

/// The wait for alerts firing before a phase to resolve.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QuietWait {
    pub firing_before: Vec<String>,
    pub firing_at_start: Vec<String>,
    pub waited_seconds: f64,
}

/// Logs sent in a phase and what the service flagged among them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhaseTraffic {
    /// Simulated time of the phase's first log, and where it ends.
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub simulated_seconds: f64,
    pub logs: u64,
    /// Logs the service judged.
    pub accepted: u64,
    pub flagged: u64,
    pub flagged_by_detector: BTreeMap<String, u64>,
    /// Wall-clock seconds the phase's logs took to send.
    pub wall_seconds: f64,
}

impl PhaseTraffic {
    /// The traffic figures of a phase from its own tally.
    pub fn new(
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        simulated_seconds: f64,
        tally: &Tally,
        wall_seconds: f64,
    ) -> Self {
        Self {
            start,
            end,
            simulated_seconds: round3(simulated_seconds),
            logs: tally.sent,
            accepted: tally.accepted,
            flagged: tally.flagged(),
            flagged_by_detector: tally.by_detector.clone(),
            wall_seconds: round3(wall_seconds),
        }
    }
}

/// The normal phase: false alerts at volume.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NormalReport {
    #[serde(flatten)]
    pub traffic: PhaseTraffic,
    #[serde(flatten)]
    pub alerts: PhaseAlerts,
    /// `alerts` per simulated hour: the headline false-alert figure.
    pub alerts_per_hour: f64,
    pub rule_trips_per_hour: Option<f64>,
    /// Normal logs flagged per simulated hour (the rate rules count these).
    pub flagged_per_hour: f64,
}

impl NormalReport {
    /// The normal phase's report; rates are per hour of the phase's simulated time.
    pub fn new(traffic: PhaseTraffic, alerts: PhaseAlerts) -> Self {
        let hours = traffic.simulated_seconds / HOUR_SECONDS;
        let per_hour = |n: u64| {
            if hours > 0.0 {
                round3(n as f64 / hours)
            } else {
                0.0
            }
        };
        Self {
            alerts_per_hour: per_hour(alerts.alerts),
            rule_trips_per_hour: alerts.rule_trips.map(per_hour),
            flagged_per_hour: per_hour(traffic.flagged),
            traffic,
            alerts,
        }
    }
}

/// The incident: how soon it is alerted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IncidentReport {
    /// The injected anomaly kind (`model_spike`, `rule_spike`, `error_burst`).
    pub kind: &'static str,
    /// Share of the incident's logs that are anomalies.
    pub share: f64,
    #[serde(flatten)]
    pub traffic: PhaseTraffic,
    /// Injected anomalies the service judged, and of those, flagged.
    pub injected: u64,
    pub detected: u64,
    #[serde(flatten)]
    pub alerts: PhaseAlerts,
    /// Simulated seconds from the incident's start to the end of the batch that raised the first
    /// new alert; `null` when none fired.
    pub time_to_first_alert_seconds: Option<f64>,
    /// To the end of the batch after which the drill saw it (the service stores an alert a moment
    /// after answering, so this may be one batch later).
    pub first_alert_seen_seconds: Option<f64>,
    /// How the raising batch was found: `started_at` (the alert's own, matched against when each
    /// batch was sent and answered) or `seen` (the batch after which it was seen: the alert had
    /// no `started_at`, or one outside those times, e.g. on a clock that disagrees).
    pub first_alert_timed_by: Option<&'static str>,
    /// One batch on the simulated clock: the alert fired at most this long before it was seen.
    pub resolution_seconds: f64,
    pub first_alert_service: Option<String>,
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn stamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

fn counts(map: &BTreeMap<String, u64>) -> String {
    let parts: Vec<String> = map.iter().map(|(k, n)| format!("{k} {n}")).collect();
    if parts.is_empty() {
        "-".to_owned()
    } else {
        parts.join(", ")
    }
}

/// `90 s`, `5 min`, `1 h`, or `1.5 h`: a simulated length as a person would say it.
fn span(seconds: f64) -> String {
    if seconds >= HOUR_SECONDS && (seconds / HOUR_SECONDS).fract() == 0.0 {
        format!("{} h", seconds / HOUR_SECONDS)
    } else if seconds >= 60.0 && (seconds / 60.0).fract() == 0.0 {
        format!("{} min", seconds / 60.0)
    } else {
        format!("{seconds} s")
    }
}

impl PhaseAlerts {
    fn write_quiet(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.firing_before.is_empty() {
            return Ok(());
        }
        writeln!(
            f,
            "             firing before it: {}; waited {:.1} s for quiet; still firing at its start: {}",
            list(&self.firing_before),
            self.waited_for_quiet_seconds,
            list(&self.firing_at_start)
        )
    }

    /// `0 alerts`, `2 alerts (database 1, web_server 1)`, `at least 1000 alerts (…)`.
    fn alerts_text(&self) -> String {
        let mut text = format!(
            "{}{} alert{}",
            if self.alerts_truncated {
                "at least "
            } else {
                ""
            },
            self.alerts,
            if self.alerts == 1 { "" } else { "s" }
        );
        if self.alerts > 0 {
            text.push_str(&format!(" ({})", counts(&self.alerts_by_service)));
        }
        text
    }
}

impl fmt::Display for DrillReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "alert drill: {} at {} simulated logs/s each from {}, batches of {}, {} in flight{}",
            self.services.join(", "),
            self.rate_per_service,
            stamp(self.start_time),
            self.batch,
            self.concurrency,
            if self.complete { "" } else { " (incomplete)" }
        )?;
        if let Some(w) = &self.warmup {
            writeln!(
                f,
                "  warm-up    {} normal logs per service; models {} ({}, target {}, waited {:.1} s)",
                w.logs_per_service,
                counts(&w.models),
                w.outcome,
                w.target_samples,
                w.waited_seconds
            )?;
        }
        if let Some(n) = &self.normal {
            let trips = n.alerts.rule_trips.map_or_else(
                || "rule trips not reported".to_owned(),
                |trips| {
                    format!(
                        "rate rule tripped {trips} times ({:.1} per simulated hour)",
                        n.rule_trips_per_hour.unwrap_or_default()
                    )
                },
            );
            writeln!(
                f,
                "  normal     {} simulated, {} logs in {:.1} s: {} = {:.2} per simulated hour; {trips}",
                span(n.traffic.simulated_seconds),
                n.traffic.logs,
                n.traffic.wall_seconds,
                n.alerts.alerts_text(),
                n.alerts_per_hour,
            )?;
            writeln!(
                f,
                "             {} normal logs flagged ({}), {:.1} per simulated hour; firing at the end: {}",
                n.traffic.flagged,
                counts(&n.traffic.flagged_by_detector),
                n.flagged_per_hour,
                list(&n.alerts.firing_at_end)
            )?;
            n.alerts.write_quiet(f)?;
        }
        if let Some(i) = &self.incident {
            let first = match (i.time_to_first_alert_seconds, &i.first_alert_service) {
                (Some(seconds), service) => format!(
                    "first alert after {seconds:.1} s simulated ({}, resolution one batch = {:.1} s)",
                    service.as_deref().unwrap_or("?"),
                    i.resolution_seconds
                ),
                (None, _) => "no alert".to_owned(),
            };
            writeln!(
                f,
                "  incident   {} at {:.1} % for {} simulated, {} logs: {first}; {} in all",
                i.kind,
                i.share * 100.0,
                span(i.traffic.simulated_seconds),
                i.traffic.logs,
                i.alerts.alerts_text(),
            )?;
            writeln!(
                f,
                "             {}/{} injected anomalies flagged; firing at the end: {}",
                i.detected,
                i.injected,
                list(&i.alerts.firing_at_end)
            )?;
            i.alerts.write_quiet(f)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(text: &str) -> DateTime<Utc> {
        text.parse().expect("literal time")
    }

    fn alerts(n: u64, trips: Option<u64>) -> PhaseAlerts {
        PhaseAlerts {
            firing_before: vec![],
            waited_for_quiet_seconds: 0.0,
            firing_at_start: vec![],
            alerts: n,
            alerts_by_service: BTreeMap::from([("web_server".to_owned(), n)]),
            rule_trips: trips,
            alerts_truncated: false,
            firing_at_end: vec![],
        }
    }

    fn traffic(simulated_seconds: f64, flagged: u64) -> PhaseTraffic {
        PhaseTraffic {
            start: t("2024-01-15T10:00:00Z"),
            end: t("2024-01-15T10:30:00Z"),
            simulated_seconds,
            logs: 1_800_000,
            accepted: 1_800_000,
            flagged,
            flagged_by_detector: BTreeMap::from([("model".to_owned(), flagged)]),
            wall_seconds: 20.0,
        }
    }

    #[test]
    fn rates_are_per_simulated_hour() {
        let report = NormalReport::new(traffic(1800.0, 900), alerts(3, Some(250)));
        assert_eq!(report.alerts_per_hour, 6.0);
        assert_eq!(report.rule_trips_per_hour, Some(500.0));
        assert_eq!(report.flagged_per_hour, 1800.0);
        let unknown = NormalReport::new(traffic(1800.0, 0), alerts(0, None));
        assert_eq!(unknown.rule_trips_per_hour, None);
        assert_eq!(unknown.alerts_per_hour, 0.0);
    }

    #[test]
    fn phase_fields_are_flat_in_json() {
        let report = NormalReport::new(traffic(3600.0, 10), alerts(1, Some(4)));
        let json = serde_json::to_value(&report).expect("serializes");
        for key in [
            "start",
            "simulated_seconds",
            "logs",
            "flagged",
            "alerts",
            "alerts_per_hour",
            "rule_trips",
            "firing_at_end",
        ] {
            assert!(json.get(key).is_some(), "{key}: {json}");
        }
        assert_eq!(json["start"], "2024-01-15T10:00:00Z");
    }

    #[test]
    fn simulated_spans_read_naturally() {
        assert_eq!(span(3600.0), "1 h");
        assert_eq!(span(300.0), "5 min");
        assert_eq!(span(90.0), "90 s");
        assert_eq!(span(5400.0), "90 min");
    }
}
