//! Counting what happened to each log, and the end-of-run summary: delivery figures and detection
//! quality against the simulator's own labels.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::time::Duration;

use serde::Serialize;

use crate::simulator::client::{BatchDelivery, Judgement};
use crate::simulator::drill::report::DrillReport;
use crate::simulator::generate::{AnomalyKind, GeneratedLog, Label};

/// Running counts, updated after every batch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    pub batches: u64,
    pub batches_judged: u64,
    pub batches_rejected: u64,
    pub batches_undelivered: u64,
    /// Logs posted at least once.
    pub sent: u64,
    /// Logs the service judged (a result without an error).
    pub accepted: u64,
    /// Logs in batches the service answered with an HTTP error (or a malformed reply).
    pub rejected_http: u64,
    /// Logs whose result carried an `error`.
    pub log_errors: u64,
    /// Logs never delivered: the service could not be reached, even after retries.
    pub undelivered: u64,
    /// Requests repeated after a connection error, a timeout or a retryable status.
    pub retries: u64,
    pub connection_errors: u64,
    pub http_status: BTreeMap<u16, u64>,
    pub confusion: Confusion,
    pub by_kind: BTreeMap<AnomalyKind, KindCount>,
    /// Flagged logs by the detector the service named (`rule`, `model`, or `unknown`).
    pub by_detector: BTreeMap<String, u64>,
    pub last_error: Option<String>,
    /// Whether the last batch failed to reach the service: it was down at the end.
    pub last_batch_undelivered: bool,
}

/// Detection outcomes over the accepted logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Confusion {
    pub true_positives: u64,
    pub false_positives: u64,
    pub false_negatives: u64,
    pub true_negatives: u64,
}

impl Confusion {
    /// TP / (TP + FP); `None` when nothing was flagged.
    pub fn precision(&self) -> Option<f64> {
        ratio(
            self.true_positives,
            self.true_positives + self.false_positives,
        )
    }

    /// TP / (TP + FN); `None` when nothing anomalous was judged.
    pub fn recall(&self) -> Option<f64> {
        ratio(
            self.true_positives,
            self.true_positives + self.false_negatives,
        )
    }

    /// The harmonic mean of precision and recall; `None` when either is undefined, 0 when both are 0.
    pub fn f1(&self) -> Option<f64> {
        let (p, r) = (self.precision()?, self.recall()?);
        Some(if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        })
    }
}

fn ratio(numerator: u64, denominator: u64) -> Option<f64> {
    (denominator > 0).then(|| numerator as f64 / denominator as f64)
}

/// Injected and detected anomalies of one kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct KindCount {
    /// Injected and judged by the service.
    pub judged: u64,
    /// Of those, flagged.
    pub detected: u64,
}

impl Tally {
    /// Folds one batch's outcome into the counts; `logs` are the batch's logs in request order.
    pub fn record(&mut self, logs: &[GeneratedLog], outcome: &BatchDelivery) {
        let n = logs.len() as u64;
        self.batches += 1;
        self.sent += n;
        self.retries += u64::from(outcome.retries);
        self.connection_errors += u64::from(outcome.connection_errors);
        if let Some(status) = outcome.status {
            *self.http_status.entry(status).or_default() += 1;
        }
        self.last_batch_undelivered = outcome.status.is_none();
        match &outcome.result {
            Ok(judgements) => {
                self.batches_judged += 1;
                for (log, judgement) in logs.iter().zip(judgements) {
                    self.record_log(log, judgement);
                }
            }
            Err(error) => {
                if outcome.status.is_some() {
                    self.batches_rejected += 1;
                    self.rejected_http += n;
                } else {
                    self.batches_undelivered += 1;
                    self.undelivered += n;
                }
                self.last_error = Some(error.clone());
            }
        }
    }

    fn record_log(&mut self, log: &GeneratedLog, judgement: &Judgement) {
        if let Some(error) = &judgement.error {
            self.log_errors += 1;
            self.last_error = Some(format!("{} log: {error}", log.service));
            return;
        }
        self.accepted += 1;
        if judgement.is_anomaly {
            let detector = judgement.detector.as_deref().unwrap_or("unknown");
            *self.by_detector.entry(detector.to_owned()).or_default() += 1;
        }
        let c = &mut self.confusion;
        match (log.label, judgement.is_anomaly) {
            (Label::Anomaly(kind), flagged) => {
                let count = self.by_kind.entry(kind).or_default();
                count.judged += 1;
                if flagged {
                    count.detected += 1;
                    c.true_positives += 1;
                } else {
                    c.false_negatives += 1;
                }
            }
            (Label::Normal, true) => c.false_positives += 1,
            (Label::Normal, false) => c.true_negatives += 1,
        }
    }

    /// Logs the service did not judge: HTTP errors and per-log errors.
    pub fn rejected(&self) -> u64 {
        self.rejected_http + self.log_errors
    }

    /// Logs flagged by the service.
    pub fn flagged(&self) -> u64 {
        self.confusion.true_positives + self.confusion.false_positives
    }

    /// One line for the progress display.
    pub fn progress_line(&self, elapsed: Duration) -> String {
        let secs = elapsed.as_secs_f64();
        // A rate over the first instants says little (one batch in a few milliseconds).
        let rate = if secs >= 0.5 {
            format!("{:.1} logs/s", self.sent as f64 / secs)
        } else {
            "- logs/s".to_owned()
        };
        let mut line = format!(
            "{:>6.1}s  sent {}  accepted {}  rejected {}  flagged {}  TP {} FP {} FN {}  {rate}",
            elapsed.as_secs_f64(),
            self.sent,
            self.accepted,
            self.rejected(),
            self.flagged(),
            self.confusion.true_positives,
            self.confusion.false_positives,
            self.confusion.false_negatives,
        );
        if self.undelivered > 0 {
            let _ = write!(line, "  undelivered {}", self.undelivered);
        }
        line
    }

    /// The final summary.
    pub fn summary(&self, run: RunInfo) -> Summary {
        let secs = run.elapsed.as_secs_f64();
        Summary {
            url: run.url,
            seed: run.seed,
            elapsed_seconds: (secs * 1000.0).round() / 1000.0,
            logs_per_second: if secs > 0.0 {
                (self.sent as f64 / secs * 10.0).round() / 10.0
            } else {
                0.0
            },
            interrupted: run.interrupted,
            reachable_at_end: !self.last_batch_undelivered,
            sent: self.sent,
            accepted: self.accepted,
            rejected: self.rejected(),
            rejected_http: self.rejected_http,
            log_errors: self.log_errors,
            undelivered: self.undelivered,
            batches: Batches {
                sent: self.batches,
                judged: self.batches_judged,
                rejected: self.batches_rejected,
                undelivered: self.batches_undelivered,
            },
            retries: self.retries,
            connection_errors: self.connection_errors,
            http_status: self
                .http_status
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            detection: Detection {
                confusion: self.confusion,
                precision: self.confusion.precision().map(round4),
                recall: self.confusion.recall().map(round4),
                f1: self.confusion.f1().map(round4),
            },
            by_kind: AnomalyKind::ALL
                .iter()
                .map(|kind| {
                    let count = self.by_kind.get(kind).copied().unwrap_or_default();
                    let recall = ratio(count.detected, count.judged).map(round4);
                    (
                        kind.name().to_owned(),
                        KindSummary {
                            judged: count.judged,
                            detected: count.detected,
                            recall,
                        },
                    )
                })
                .collect(),
            by_detector: self.by_detector.clone(),
            last_error: self.last_error.clone(),
            alert_drill: None,
        }
    }
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// Facts about the run that the tally does not hold.
#[derive(Debug, Clone)]
pub struct RunInfo {
    pub url: String,
    pub seed: u64,
    pub elapsed: Duration,
    pub interrupted: bool,
}

/// The end-of-run report; `--json` prints it as one object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub url: String,
    /// Rerun with `--seed` this to get the same logs.
    pub seed: u64,
    pub elapsed_seconds: f64,
    pub logs_per_second: f64,
    /// Stopped by Ctrl-C or SIGTERM before the planned end.
    pub interrupted: bool,
    /// False when the last batch could not be delivered: the service was down at the end.
    pub reachable_at_end: bool,
    pub sent: u64,
    pub accepted: u64,
    /// `rejected_http + log_errors`.
    pub rejected: u64,
    pub rejected_http: u64,
    pub log_errors: u64,
    pub undelivered: u64,
    pub batches: Batches,
    pub retries: u64,
    pub connection_errors: u64,
    /// Final HTTP status of each batch, by code.
    pub http_status: BTreeMap<String, u64>,
    pub detection: Detection,
    /// Recall per injected anomaly kind.
    pub by_kind: BTreeMap<String, KindSummary>,
    pub by_detector: BTreeMap<String, u64>,
    pub last_error: Option<String>,
    /// `log-simulator alert-drill` only: alerts per simulated hour and time to the first alert.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alert_drill: Option<DrillReport>,
}

/// Request counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Batches {
    pub sent: u64,
    pub judged: u64,
    pub rejected: u64,
    pub undelivered: u64,
}

/// Detection quality over the accepted logs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Detection {
    #[serde(flatten)]
    pub confusion: Confusion,
    pub precision: Option<f64>,
    pub recall: Option<f64>,
    pub f1: Option<f64>,
}

/// One anomaly kind's figures.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct KindSummary {
    pub judged: u64,
    pub detected: u64,
    pub recall: Option<f64>,
}

fn percent(x: Option<f64>) -> String {
    x.map_or_else(|| "n/a".to_owned(), |x| format!("{:.1}%", x * 100.0))
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.detection;
        let c = &d.confusion;
        writeln!(
            f,
            "log-simulator: {} logs to {} in {:.1}s ({} logs/s), seed {}{}",
            self.sent,
            self.url,
            self.elapsed_seconds,
            self.logs_per_second,
            self.seed,
            if self.interrupted {
                ", interrupted"
            } else {
                ""
            }
        )?;
        writeln!(
            f,
            "  delivery   accepted {}  rejected {} (HTTP {}, per-log errors {})  undelivered {}",
            self.accepted, self.rejected, self.rejected_http, self.log_errors, self.undelivered
        )?;
        writeln!(
            f,
            "  batches    {} sent, {} judged, {} rejected, {} undelivered; {} retries",
            self.batches.sent,
            self.batches.judged,
            self.batches.rejected,
            self.batches.undelivered,
            self.retries
        )?;
        writeln!(
            f,
            "  detection  TP {}  FP {}  FN {}  TN {}  precision {}  recall {}  F1 {}",
            c.true_positives,
            c.false_positives,
            c.false_negatives,
            c.true_negatives,
            percent(d.precision),
            percent(d.recall),
            d.f1.map_or_else(|| "n/a".to_owned(), |x| format!("{x:.3}"))
        )?;
        let kinds: Vec<String> = self
            .by_kind
            .iter()
            .map(|(kind, k)| format!("{kind} {}/{} ({})", k.detected, k.judged, percent(k.recall)))
            .collect();
        writeln!(f, "  by kind    {}", kinds.join("  "))?;
        if !self.by_detector.is_empty() {
            let detectors: Vec<String> = self
                .by_detector
                .iter()
                .map(|(name, n)| format!("{name} {n}"))
                .collect();
            writeln!(f, "  flagged by {}", detectors.join("  "))?;
        }
        if let Some(error) = &self.last_error {
            writeln!(f, "  last error {error}")?;
        }
        if let Some(drill) = &self.alert_drill {
            write!(f, "{drill}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;
    use crate::simulator::generate::{Generator, GeneratorConfig, ServiceKind};

    fn confusion(tp: u64, fp: u64, fn_: u64, tn: u64) -> Confusion {
        Confusion {
            true_positives: tp,
            false_positives: fp,
            false_negatives: fn_,
            true_negatives: tn,
        }
    }

    #[test]
    fn precision_recall_and_f1_follow_their_definitions() {
        let c = confusion(8, 2, 4, 86);
        assert_eq!(c.precision(), Some(0.8));
        assert_eq!(c.recall(), Some(8.0 / 12.0));
        let f1 = c.f1().expect("defined");
        assert!((f1 - 2.0 * 0.8 * (8.0 / 12.0) / (0.8 + 8.0 / 12.0)).abs() < 1e-12);
    }

    #[test]
    fn undefined_ratios_are_none_and_zero_hits_give_zero_f1() {
        assert_eq!(confusion(0, 0, 0, 10).precision(), None);
        assert_eq!(confusion(0, 0, 0, 10).recall(), None);
        assert_eq!(confusion(0, 0, 0, 10).f1(), None);
        assert_eq!(confusion(0, 3, 2, 10).f1(), Some(0.0));
    }

    fn logs(n: usize) -> Vec<GeneratedLog> {
        Generator::new(GeneratorConfig {
            seed: 1,
            services: ServiceKind::ALL.to_vec(),
            anomaly_ratio: 0.3,
            warmup_per_service: 0,
            start: chrono::Utc::now(),
            step: TimeDelta::milliseconds(10),
            only_kind: None,
        })
        .take(n)
        .collect()
    }

    fn judged(flags: &[bool]) -> BatchDelivery {
        BatchDelivery {
            result: Ok(flags
                .iter()
                .map(|&is_anomaly| Judgement {
                    is_anomaly,
                    detector: is_anomaly.then(|| "rule".to_owned()),
                    error: None,
                })
                .collect()),
            status: Some(200),
            retries: 0,
            connection_errors: 0,
        }
    }

    #[test]
    fn a_perfect_detector_scores_one_and_counts_each_kind() {
        let batch = logs(200);
        let flags: Vec<bool> = batch.iter().map(|g| g.label.is_anomaly()).collect();
        let mut tally = Tally::default();
        tally.record(&batch, &judged(&flags));
        let summary = tally.summary(RunInfo {
            url: "u".into(),
            seed: 1,
            elapsed: Duration::from_secs(2),
            interrupted: false,
        });
        let anomalies = flags.iter().filter(|f| **f).count() as u64;
        assert_eq!(summary.detection.confusion.true_positives, anomalies);
        assert_eq!(summary.detection.precision, Some(1.0));
        assert_eq!(summary.detection.recall, Some(1.0));
        assert_eq!(summary.detection.f1, Some(1.0));
        let judged_kinds: u64 = summary.by_kind.values().map(|k| k.judged).sum();
        assert_eq!(judged_kinds, anomalies);
        assert_eq!(summary.by_detector["rule"], anomalies);
        assert_eq!(summary.logs_per_second, 100.0);
    }

    #[test]
    fn per_log_errors_are_rejected_and_left_out_of_detection() {
        let batch = logs(3);
        let mut outcome = judged(&[false, false, false]);
        if let Ok(judgements) = &mut outcome.result {
            judgements[1].error = Some("bad JSON".into());
        }
        let mut tally = Tally::default();
        tally.record(&batch, &outcome);
        assert_eq!(tally.accepted, 2);
        assert_eq!(tally.log_errors, 1);
        assert_eq!(tally.rejected(), 1);
        let c = tally.confusion;
        assert_eq!(
            c.true_positives + c.false_positives + c.false_negatives + c.true_negatives,
            2
        );
    }

    #[test]
    fn http_errors_and_unreachable_services_are_told_apart() {
        let batch = logs(4);
        let mut tally = Tally::default();
        tally.record(
            &batch,
            &BatchDelivery {
                result: Err("HTTP 422".into()),
                status: Some(422),
                retries: 0,
                connection_errors: 0,
            },
        );
        assert!(!tally.last_batch_undelivered);
        tally.record(
            &batch,
            &BatchDelivery {
                result: Err("connection refused".into()),
                status: None,
                retries: 3,
                connection_errors: 4,
            },
        );
        assert_eq!(tally.sent, 8);
        assert_eq!(tally.rejected_http, 4);
        assert_eq!(tally.undelivered, 4);
        assert_eq!(tally.retries, 3);
        assert_eq!(tally.http_status[&422], 1);
        assert!(tally.last_batch_undelivered);
        assert_eq!(tally.last_error.as_deref(), Some("connection refused"));
    }
}
