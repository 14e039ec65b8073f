//! A service's rate window: the anomalies that may make a burst, judged on two clocks, and the
//! traffic they are judged against (see [`super::lifecycle`] for the rules, and
//! `docs/alerting.md`). Bounded: at most [`entry_cap`] entries, [`MAX_BUCKETS`] traffic buckets
//! and [`MAX_REASON_NOTES`] reasons per service.

use std::collections::{BTreeMap, VecDeque};

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::alert::rate::{RateRule, VolumeTest};
use crate::detect::baseline::{Direction, Evidence};
use crate::detect::stats::poisson_upper_tail;
use crate::detect::{DetectorKind, Verdict};

/// A burst's window against its traffic: what an engineer reads at 3 a.m.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RateContext {
    /// Logs of the service judged in the window, and its anomalies among them.
    pub logs: u64,
    pub anomalies: u64,
    /// Anomalies the models' budget and the rules' usual share explain.
    pub expected: f64,
    /// The chance of at least `anomalies` if only `expected` were at work (Poisson).
    pub probability: f64,
    /// The most common reason among the window's recent anomalies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_reason: Option<TopReason>,
}

impl RateContext {
    /// "180 anomalies in 60 s among 60,000 logs (0.30 %; 60 expected, 3.0×)".
    pub fn describe(&self, window_seconds: &str) -> String {
        let share = if self.logs > 0 {
            100.0 * self.anomalies as f64 / self.logs as f64
        } else {
            100.0
        };
        let ratio = if self.expected > 0.0 {
            format!("{:.1}×", self.anomalies as f64 / self.expected)
        } else {
            "none expected".to_owned()
        };
        format!(
            "{} anomalies in {window_seconds} s among {} logs ({share:.2} %; {} expected, {ratio})",
            thousands(self.anomalies),
            thousands(self.logs),
            expected_text(self.expected),
        )
    }
}

/// The most common reason behind a burst, with one example.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopReason {
    /// Short and shared by many anomalies: "latency_ms high", "new region", "rule: cpu_usage".
    pub label: String,
    /// How many of the recent anomalies in the window had it, of how many.
    pub count: u32,
    pub of: u32,
    /// One anomaly's own explanation: "latency_ms 812 is far above its usual 60–110 (median 80)".
    pub example: String,
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn expected_text(expected: f64) -> String {
    if expected >= 10.0 {
        thousands(expected.round() as u64)
    } else if expected >= 0.1 {
        format!("{expected:.1}")
    } else {
        format!("{expected:.2}")
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Entry {
    pub(super) arrival: DateTime<Utc>,
    pub(super) event: DateTime<Utc>,
}

/// Buckets per window of traffic counts: the window's traffic is known to a twelfth of it.
const BUCKETS_PER_WINDOW: i64 = 12;
/// Buckets kept per service: two windows' worth, whatever times the logs carry.
const MAX_BUCKETS: usize = 2 * (BUCKETS_PER_WINDOW as usize + 2);
/// How long "usually" reaches back, on the service's own clock.
const USUAL_HORIZON_SECONDS: f64 = 3600.0;
/// Logs the usual shares need before they count (decayed).
const MIN_USUAL_LOGS: f64 = 1000.0;
/// Recent reasons kept per service, and the characters kept of each.
const MAX_REASON_NOTES: usize = 32;
const MAX_REASON_CHARS: usize = 160;

/// Logs and anomalies of one service in one bucket (or summed over a window).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Traffic {
    judged: u64,
    scored: u64,
    /// The scoring models' flag shares summed: the model anomalies their budget explains.
    model_expected: f64,
    model: u64,
    rule: u64,
}

impl Traffic {
    pub(super) fn add(&mut self, verdict: &Verdict) {
        self.judged += 1;
        if let Some(share) = verdict.model_share {
            self.scored += 1;
            self.model_expected += share;
        }
        match verdict.detector {
            Some(DetectorKind::Model) => self.model += 1,
            Some(DetectorKind::Rule) => self.rule += 1,
            None => {}
        }
    }

    fn merge(&mut self, other: &Self) {
        self.judged += other.judged;
        self.scored += other.scored;
        self.model_expected += other.model_expected;
        self.model += other.model;
        self.rule += other.rule;
    }

    pub(super) fn anomalies(&self) -> u64 {
        self.model + self.rule
    }
}

/// What a service usually shows: its traffic decayed over [`USUAL_HORIZON_SECONDS`] of its own
/// time.
#[derive(Debug, Clone, Copy, Default)]
struct Usual {
    judged: f64,
    scored: f64,
    model: f64,
    rule: f64,
    at: Option<DateTime<Utc>>,
}

impl Usual {
    fn learn(&mut self, traffic: &Traffic, at: DateTime<Utc>) {
        if let Some(last) = self.at
            && at > last
        {
            let elapsed = at.signed_duration_since(last).as_seconds_f64();
            let keep = (-elapsed / USUAL_HORIZON_SECONDS).exp();
            self.judged *= keep;
            self.scored *= keep;
            self.model *= keep;
            self.rule *= keep;
        }
        self.at = Some(self.at.map_or(at, |last| last.max(at)));
        self.judged += traffic.judged as f64;
        self.scored += traffic.scored as f64;
        self.model += traffic.model as f64;
        self.rule += traffic.rule as f64;
    }

    fn model_share(&self) -> f64 {
        if self.scored >= MIN_USUAL_LOGS {
            self.model / self.scored
        } else {
            0.0
        }
    }

    fn rule_share(&self) -> f64 {
        if self.judged >= MIN_USUAL_LOGS {
            self.rule / self.judged
        } else {
            0.0
        }
    }
}

#[derive(Debug)]
pub(super) struct ReasonNote {
    event: DateTime<Utc>,
    label: String,
    example: String,
}

fn clipped(text: &str) -> String {
    super::channel::truncate(text, MAX_REASON_CHARS)
}

/// The short label and the example of an anomaly's first reason.
pub(super) fn reason_note(verdict: &Verdict, event: DateTime<Utc>) -> ReasonNote {
    let (label, example) = if let Some(violation) = verdict.violations.first() {
        (
            format!("rule: {}", violation.feature),
            format!(
                "{} {} over its threshold {}",
                violation.feature, violation.value, violation.threshold
            ),
        )
    } else if let Some(reason) = verdict.reasons.first() {
        let label = match &reason.evidence {
            Evidence::Feature {
                feature, direction, ..
            } => match direction {
                Direction::High => format!("{feature} high"),
                Direction::Low => format!("{feature} low"),
            },
            Evidence::NewCategory { field, .. } => format!("new {field}"),
            Evidence::Joint { .. } => "unusual combination".to_owned(),
            Evidence::Relation {
                feature, direction, ..
            } => format!(
                "{feature} {} against related features",
                match direction {
                    Direction::High => "high",
                    Direction::Low => "low",
                }
            ),
            Evidence::Forest { .. } => "isolated by the forest".to_owned(),
        };
        (label, reason.summary.clone())
    } else {
        let score = verdict.score.unwrap_or(f64::NAN);
        (
            "forest score".to_owned(),
            format!("forest decision score {score:.4} below its cut"),
        )
    };
    ReasonNote {
        event,
        label: clipped(&label),
        example: clipped(&example),
    }
}

/// One service's sliding window: the anomalies that may make a burst, its traffic by bucket of
/// event time, what it usually shows, and the reasons behind its recent anomalies.
#[derive(Debug, Default)]
pub(super) struct RateWindow {
    /// Anomalies by arrival, at most [`entry_cap`] of them.
    pub(super) entries: VecDeque<Entry>,
    /// Judged logs and anomalies by bucket of event time.
    traffic: BTreeMap<i64, Traffic>,
    usual: Usual,
    /// The newest bucket learned into `usual`.
    learned_through: Option<i64>,
    reasons: VecDeque<ReasonNote>,
}

impl RateWindow {
    /// Adds a batch's traffic to its bucket. Buckets a whole window behind the newest are then
    /// learned as usual when `learn_usual` (the caller says no while the service is firing), so
    /// a burst never raises its own expectation.
    pub(super) fn count_traffic(
        &mut self,
        bucket: i64,
        traffic: &Traffic,
        width: i64,
        learn_usual: bool,
    ) {
        self.traffic.entry(bucket).or_default().merge(traffic);
        let Some(newest) = self.traffic.last_key_value().map(|(b, _)| *b) else {
            return;
        };
        let settled = newest - BUCKETS_PER_WINDOW - 1;
        let from = self
            .learned_through
            .map_or(i64::MIN, |b| b.saturating_add(1));
        if settled >= from {
            if learn_usual {
                for (index, counts) in self.traffic.range(from..=settled) {
                    let start = DateTime::from_timestamp_millis(index.saturating_mul(width));
                    self.usual
                        .learn(counts, start.unwrap_or(DateTime::<Utc>::MIN_UTC));
                }
            }
            self.learned_through = Some(settled);
        }
        while self.traffic.len() > MAX_BUCKETS {
            self.traffic.pop_first();
        }
    }

    /// The traffic in the window ending at `event`, whole buckets.
    fn traffic_until(&self, event: DateTime<Utc>, window: TimeDelta, width: i64) -> Traffic {
        let last = bucket_of(event, width);
        let first = bucket_of(minus(event, window), width);
        let mut total = Traffic::default();
        for counts in self.traffic.range(first..=last).map(|(_, c)| c) {
            total.merge(counts);
        }
        total
    }

    /// Why a window of anomalies ending at `event` is news, or `None` when its traffic explains it.
    pub(super) fn judge_burst(
        &self,
        test: Option<VolumeTest>,
        in_window: u32,
        event: DateTime<Utc>,
        window: TimeDelta,
        width: i64,
    ) -> Option<RateContext> {
        let traffic = self.traffic_until(event, window, width);
        let anomalies = traffic.anomalies().max(u64::from(in_window));
        let logs = traffic.judged.max(anomalies);
        // A pure-count rule is not judged by it, but its alert still says what was expected.
        let rule_share = test.unwrap_or_default().rule_share;
        let model = traffic
            .model_expected
            .max(traffic.scored as f64 * self.usual.model_share());
        let rules = logs as f64 * rule_share.max(self.usual.rule_share());
        let expected = model + rules;
        // The ratio first: it is cheap, and at volume it is what fails.
        if test.is_some_and(|t| (anomalies as f64) < t.min_ratio * expected) {
            return None;
        }
        let probability = poisson_upper_tail(anomalies, expected);
        if test.is_some_and(|t| probability >= t.max_probability) {
            return None;
        }
        Some(RateContext {
            logs,
            anomalies,
            expected,
            probability,
            top_reason: self.top_reason(minus(event, window)),
        })
    }

    pub(super) fn note_reason(&mut self, note: ReasonNote) {
        if self.reasons.len() == MAX_REASON_NOTES {
            self.reasons.pop_front();
        }
        self.reasons.push_back(note);
    }

    fn top_reason(&self, after: DateTime<Utc>) -> Option<TopReason> {
        let recent: Vec<&ReasonNote> = self.reasons.iter().filter(|n| n.event > after).collect();
        let mut tally: Vec<(&str, u32, &str)> = Vec::new();
        for note in &recent {
            match tally.iter_mut().find(|(label, ..)| *label == note.label) {
                Some((_, count, _)) => *count += 1,
                None => tally.push((&note.label, 1, &note.example)),
            }
        }
        let (label, count, example) = tally.into_iter().max_by_key(|(_, count, _)| *count)?;
        Some(TopReason {
            label: label.to_owned(),
            count,
            of: u32::try_from(recent.len()).unwrap_or(u32::MAX),
            example: example.to_owned(),
        })
    }
}

/// Width in milliseconds of a service's traffic buckets.
pub(super) fn bucket_width(window: TimeDelta) -> i64 {
    (window.num_milliseconds() / BUCKETS_PER_WINDOW).max(1)
}

pub(super) fn bucket_of(instant: DateTime<Utc>, width: i64) -> i64 {
    instant.timestamp_millis().div_euclid(width)
}

/// Window entries kept per service: enough for any burst of `count`, bounded whatever arrives.
pub(super) fn entry_cap(count: u32) -> usize {
    (count as usize).saturating_mul(2).max(16)
}

/// The most entries whose event times fit in one window (`newest - oldest < window`), where
/// `event` is the entry just added. In order (nothing newer than `event`), only the window ending
/// at `event` can have grown: O(n). Out of order, the entries are sorted: O(n log n), n bounded
/// by [`entry_cap`]. Windows without the new entry held fewer than `count` before it came (or
/// they would have fired and been cleared), so checking every window is the same as checking
/// those that contain it.
pub(super) fn densest(entries: &VecDeque<Entry>, event: DateTime<Utc>, window: TimeDelta) -> usize {
    if entries.iter().all(|entry| entry.event <= event) {
        let cutoff = minus(event, window);
        return entries.iter().filter(|entry| entry.event > cutoff).count();
    }
    let mut events: Vec<DateTime<Utc>> = entries.iter().map(|entry| entry.event).collect();
    events.sort_unstable();
    let mut best = 0;
    let mut start = 0;
    for end in 0..events.len() {
        while start < end && events[end].signed_duration_since(events[start]) >= window {
            start += 1;
        }
        best = best.max(end + 1 - start);
    }
    best
}

pub(super) fn window_of(rule: RateRule) -> TimeDelta {
    // Windows are validated to at most 10^7 s, far inside chrono's range.
    TimeDelta::from_std(rule.window).unwrap_or(TimeDelta::MAX)
}

pub(super) fn minus(instant: DateTime<Utc>, delta: TimeDelta) -> DateTime<Utc> {
    instant
        .checked_sub_signed(delta)
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}
