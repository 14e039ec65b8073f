//! The rate tracker and the alert lifecycle: anomalies in, `Fired` / `Repeated` / `Resolved`
//! transitions out. Pure and synchronous; every instant is an argument, so tests step time forward
//! without sleeping.
//!
//! # Which clock counts
//!
//! Each anomaly carries two instants: its *arrival* (the server's clock when the batch was
//! ingested, always trustworthy and monotonic enough) and its *event time* (the log's own
//! timestamp, or the arrival when the log has none). A burst is only a burst when **both clocks
//! agree**: `count` anomalies must have arrived within one window *and* their own timestamps must
//! lie within one window (in any order). So:
//!
//! - a replay or backfill of old logs arrives fast but is spread out in its own time: no page;
//! - a service whose clock is skewed (or logs naive local times that read as UTC hours away) has
//!   a constant offset, so its real bursts still cluster in both clocks: they page;
//! - a log without a timestamp uses its arrival for both;
//! - a stuck clock (every log the same timestamp) still needs the anomalies to arrive within
//!   one window: a real burst pages, a slow trickle does not.
//!
//! Operators who know every clock is synchronised and who backfill old logs may also set
//! `ALERT_MAX_LATENESS_SECONDS`: anomalies logged longer than that before they arrive are then
//! not counted at all, so even a replayed burst stays quiet, at the price of ignoring services
//! whose clocks lag by more. It is off by default because a lagging clock (or naive local times
//! read as UTC) is more common than a replay that is itself a burst.
//!
//! Everything that decides *when* (window expiry, resolution after a quiet window, the repeat
//! interval) uses the arrival clock, so no client timestamp can hold an alert open or close it.
//! `docs/alerting.md` has the whole story.
//!
//! # Judged against traffic
//!
//! Every judged log counts toward its service's traffic, in buckets of a twelfth of its window on
//! the event clock (the log's time; a replay at full speed is counted in its own time, as its
//! anomalies are). Reaching `count` pages only when the window's anomalies are also more than the
//! traffic explains ([`VolumeTest`](crate::alert::rate::VolumeTest)): the expected count is the scoring models' false-alarm budget
//! over the logs they scored (or the share of logs they usually flag, if higher) plus the rules'
//! usual share of the logs (`rule_share`, or the share usually seen, if higher). "Usually" is a
//! decayed average over the service's last hour of traffic older than one window, held still
//! while it is firing, so neither a burst in progress nor an incident teaches itself normal. A count below `min_ratio` times the expectation, or
//! with a Poisson tail probability above `max_probability`, does not page and does not clear the
//! window: the next anomaly is judged again. A rule with `pure_count` pages on the count alone.
//!
//! # Memory
//!
//! A service keeps at most `max(2 × count, 16)` window entries (24 bytes each), 28 traffic buckets
//! and 32 recent reasons of at most 160 characters; the tracker at most `ALERT_MAX_SERVICES`
//! services. Idle services are dropped on the tick, and when the table is full the least recently
//! active service that is not firing makes room. When every tracked service is firing, logs of
//! new services are counted as untracked instead.

use foldhash::{HashMap, HashMapExt};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::alert::rate::RateRules;
pub use crate::alert::window::RateContext;
pub use crate::alert::window::Traffic;
use crate::alert::window::{
    Entry, RateWindow, bucket_of, bucket_width, densest, entry_cap, minus, reason_note, window_of,
};
use crate::detect::{DetectorKind, JudgedLog, Verdict};

/// The one rule this service alerts on (contract, "Detection semantics" 3).
pub const RULE_NAME: &str = "high_anomaly_rate";

/// Where an alert is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    Firing,
    Resolved,
}

impl AlertState {
    /// The wire name: `firing` or `resolved`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Firing => "firing",
            Self::Resolved => "resolved",
        }
    }
}

/// One alert as stored and as sent: a service breaking its rate rule, from first burst to
/// resolution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertRecord {
    pub id: i64,
    /// Stable per service and rule: the same across alerts, restarts and channels.
    pub fingerprint: String,
    pub service: String,
    pub rule: String,
    pub state: AlertState,
    pub threshold_count: u32,
    pub window_seconds: f64,
    /// Arrival time of the burst that opened the alert.
    pub started_at: DateTime<Utc>,
    /// The newest counted anomaly's own timestamp (its arrival when it had none).
    pub last_anomaly_at: DateTime<Utc>,
    pub last_notified_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    /// Anomalies counted while this alert was open, the opening burst included.
    pub anomaly_count: u64,
    /// Times the window reached `count` while open (1 = only the opening burst).
    pub bursts: u64,
    /// Notifications sent for this alert (fired, repeats, resolved).
    pub notifications: u64,
    /// Grows with every change; a store write never replaces a newer revision with an older one.
    pub revision: u64,
}

impl AlertRecord {
    /// PagerDuty's `dedup_key`: the same for trigger and resolve, per service and rule, at most
    /// 255 characters whatever the service name.
    pub fn dedup_key(&self) -> String {
        format!("aioops-mcp-iforest/{}/{}", self.rule, self.fingerprint)
    }
}

/// A stable fingerprint of (rule, service): 16 hex digits of FNV-1a 64, the same on every build
/// (std's `DefaultHasher` promises no such thing).
pub fn fingerprint(rule: &str, service: &str) -> String {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET;
    for byte in rule.bytes().chain([0]).chain(service.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(PRIME);
    }
    format!("{hash:016x}")
}

/// What changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransitionKind {
    /// The window reached `count`: a new alert, paged.
    Fired,
    /// Still firing after the repeat interval and another burst: paged again.
    Repeated,
    /// Below the rate for a whole window: the all-clear.
    Resolved,
}

impl TransitionKind {
    /// The wire name: `fired`, `repeated` or `resolved`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fired => "fired",
            Self::Repeated => "repeated",
            Self::Resolved => "resolved",
        }
    }
}

/// A change that every channel hears about.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub kind: TransitionKind,
    /// The alert as it is after the change.
    pub alert: AlertRecord,
    /// Anomalies in the window when it happened.
    pub in_window: u32,
    /// The window's traffic and why the count is news, for a burst (fired, repeated).
    pub context: Option<RateContext>,
}

/// Bounds and timings of the lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackerLimits {
    /// While firing, page again at most this often (`ALERT_REPEAT_INTERVAL_SECONDS`).
    pub repeat_interval: Duration,
    /// Services followed at once (`ALERT_MAX_SERVICES`).
    pub max_services: usize,
    /// When set, anomalies logged longer than this before their arrival are not counted
    /// (`ALERT_MAX_LATENESS_SECONDS`; off by default, see the module docs).
    pub max_lateness: Option<Duration>,
}

#[derive(Debug)]
struct ServiceState {
    window: RateWindow,
    firing: Option<Firing>,
    last_seen: DateTime<Utc>,
}

impl ServiceState {
    fn new(now: DateTime<Utc>) -> Self {
        Self {
            window: RateWindow::default(),
            firing: None,
            last_seen: now,
        }
    }
}

/// One service's traffic in one bucket of a shipped batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShippedTraffic {
    pub service: String,
    pub bucket: i64,
    pub traffic: Traffic,
    pub width: i64,
}

/// An anomaly of a shipped batch, its verdict cut to what the tracker reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShippedAnomaly {
    pub service: String,
    pub logged_at: Option<DateTime<Utc>>,
    pub verdict: Verdict,
}

/// A batch one replica judged, as the replica that tracks rates for all of them counts it
/// (several replicas on PostgreSQL: `alert::shared`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShippedBatch {
    /// When the batch arrived, on the clock of the replica that judged it.
    pub arrival: DateTime<Utc>,
    pub traffic: Vec<ShippedTraffic>,
    pub anomalies: Vec<ShippedAnomaly>,
}

/// One judged log as the tracker counts it: every log toward its service's traffic, anomalies
/// toward its bursts too.
#[derive(Debug, Clone, Copy)]
pub struct JudgedEvent<'a> {
    pub service: &'a str,
    /// The log's own time, if it had one.
    pub logged_at: Option<DateTime<Utc>>,
    pub verdict: &'a Verdict,
}

impl<'a> JudgedEvent<'a> {
    /// What the tracker counts of a judged log.
    pub fn of(log: &'a JudgedLog) -> Self {
        Self {
            service: log.raw.service.as_str(),
            logged_at: log.parsed.timestamp,
            verdict: &log.verdict,
        }
    }
}

#[derive(Debug)]
struct Firing {
    alert: AlertRecord,
    /// Arrival time of the last burst; a whole window after it, the alert resolves.
    last_hot_at: DateTime<Utc>,
    /// Counted anomalies not yet written to the store.
    dirty: bool,
}

/// The rate windows' counters: of this process's tracker, or with a shared store of the one the
/// rate leader runs (it stores them for every replica to show).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackerStats {
    pub tracked_services: usize,
    pub untracked_anomalies: u64,
    pub late_anomalies: u64,
    pub evicted_services: u64,
}

/// Per-service sliding windows and alert states.
#[derive(Debug)]
pub struct Tracker {
    rules: RateRules,
    limits: TrackerLimits,
    services: HashMap<String, ServiceState>,
    next_id: i64,
    untracked: u64,
    evicted: u64,
    late: u64,
}

/// What [`Tracker::record`] counts: a log that broke a rule, with no model.
const LONE_RULE_ANOMALY: Verdict = Verdict {
    score: None,
    violations: Vec::new(),
    detector: Some(DetectorKind::Rule),
    reasons: Vec::new(),
    model_share: None,
};

impl Tracker {
    /// A tracker with nothing recorded; new alerts get ids from `next_id` on.
    pub fn new(rules: RateRules, limits: TrackerLimits, next_id: i64) -> Self {
        Self {
            rules,
            limits,
            services: HashMap::new(),
            next_id: next_id.max(1),
            untracked: 0,
            evicted: 0,
            late: 0,
        }
    }

    /// Takes back an alert that was firing when the service last stopped. It resolves after a
    /// quiet window counted from `now`, so a restart neither loses nor re-pages it.
    pub fn restore(&mut self, alert: AlertRecord, now: DateTime<Utc>) {
        self.next_id = self.next_id.max(alert.id.saturating_add(1));
        let service = alert.service.clone();
        let mut state = ServiceState::new(now);
        state.firing = Some(Firing {
            alert,
            last_hot_at: now,
            dirty: false,
        });
        self.services.insert(service, state);
    }

    /// Counts one anomaly of `service`, whose log said `logged_at`, arriving `now`, as a log that
    /// broke a rule and came alone.
    pub fn record(
        &mut self,
        service: &str,
        logged_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Option<Transition> {
        let event = JudgedEvent {
            service,
            logged_at,
            verdict: &LONE_RULE_ANOMALY,
        };
        self.observe(&[event], now).pop()
    }

    /// Counts a batch of judged logs arriving `now`: every log toward its service's traffic, then
    /// each anomaly toward a burst. Returns the transitions, in order.
    pub fn observe(&mut self, logs: &[JudgedEvent<'_>], now: DateTime<Utc>) -> Vec<Transition> {
        let sums = self.traffic_sums(logs, now);
        let anomalies: Vec<JudgedEvent<'_>> = logs
            .iter()
            .filter(|log| log.verdict.is_anomaly())
            .copied()
            .collect();
        self.apply(&sums, &anomalies, now)
    }

    /// A batch as the replica that tracks rates for all of them counts it
    /// ([`Tracker::observe_shipped`]): its traffic summed per service and bucket, and its
    /// anomalies with the part of their verdict the tracker reads. Changes nothing here.
    pub fn ship(&self, logs: &[JudgedEvent<'_>], now: DateTime<Utc>) -> ShippedBatch {
        let traffic = self
            .traffic_sums(logs, now)
            .into_iter()
            .map(|(service, bucket, traffic, width)| ShippedTraffic {
                service: service.to_owned(),
                bucket,
                traffic,
                width,
            })
            .collect();
        let anomalies = logs
            .iter()
            .filter(|log| log.verdict.is_anomaly())
            .map(|log| ShippedAnomaly {
                service: log.service.to_owned(),
                logged_at: log.logged_at,
                verdict: Verdict {
                    score: log.verdict.score,
                    violations: log.verdict.violations.iter().take(1).cloned().collect(),
                    detector: log.verdict.detector,
                    reasons: log.verdict.reasons.iter().take(1).cloned().collect(),
                    model_share: log.verdict.model_share,
                },
            })
            .collect();
        ShippedBatch {
            arrival: now,
            traffic,
            anomalies,
        }
    }

    /// Counts a batch another replica judged ([`Tracker::ship`]), as [`Tracker::observe`] would
    /// have counted it there.
    pub fn observe_shipped(&mut self, batch: &ShippedBatch) -> Vec<Transition> {
        let sums: Vec<(&str, i64, Traffic, i64)> = batch
            .traffic
            .iter()
            .map(|sum| (sum.service.as_str(), sum.bucket, sum.traffic, sum.width))
            .collect();
        let anomalies: Vec<JudgedEvent<'_>> = batch
            .anomalies
            .iter()
            .map(|anomaly| JudgedEvent {
                service: &anomaly.service,
                logged_at: anomaly.logged_at,
                verdict: &anomaly.verdict,
            })
            .collect();
        self.apply(&sums, &anomalies, batch.arrival)
    }

    /// After a replay of the batches an earlier tracker counted ([`Tracker::observe_shipped`],
    /// transitions discarded): the alerts the store says are firing are the firing ones, with
    /// their ids and counts; a service the replay left firing without one is quiet.
    pub fn reconcile(&mut self, firing: Vec<AlertRecord>, now: DateTime<Utc>) {
        for state in self.services.values_mut() {
            state.firing = None;
        }
        for alert in firing {
            self.next_id = self.next_id.max(alert.id.saturating_add(1));
            let state = self
                .services
                .entry(alert.service.clone())
                .or_insert_with(|| ServiceState::new(now));
            state.firing = Some(Firing {
                alert,
                last_hot_at: now,
                dirty: false,
            });
        }
    }

    /// New alerts get ids above `id`.
    pub fn ids_after(&mut self, id: i64) {
        self.next_id = self.next_id.max(id.saturating_add(1));
    }

    /// Every log's traffic, summed per service and bucket of its event time.
    fn traffic_sums<'a>(
        &self,
        logs: &[JudgedEvent<'a>],
        now: DateTime<Utc>,
    ) -> Vec<(&'a str, i64, Traffic, i64)> {
        // Traffic first, summed per service and bucket, so that a burst is judged against the
        // whole batch it came in. A batch holds few services: small vectors beat maps here.
        let mut sums: Vec<(&str, i64, Traffic, i64)> = Vec::new();
        let mut widths: Vec<(&str, i64)> = Vec::new();
        for log in logs {
            let event = log.logged_at.unwrap_or(now);
            if self.is_late(event, now) {
                continue;
            }
            let width = match widths.iter().find(|(service, _)| *service == log.service) {
                Some((_, width)) => *width,
                None => {
                    let width = bucket_width(window_of(self.rules.rule_for(log.service)));
                    widths.push((log.service, width));
                    width
                }
            };
            let bucket = bucket_of(event, width);
            let found = sums
                .iter_mut()
                .rev()
                .find(|(service, b, ..)| *b == bucket && *service == log.service);
            match found {
                Some((_, _, traffic, _)) => traffic.add(log.verdict),
                None => {
                    let mut traffic = Traffic::default();
                    traffic.add(log.verdict);
                    sums.push((log.service, bucket, traffic, width));
                }
            }
        }
        sums
    }

    /// Counts summed traffic, then each anomaly toward a burst.
    fn apply(
        &mut self,
        sums: &[(&str, i64, Traffic, i64)],
        anomalies: &[JudgedEvent<'_>],
        now: DateTime<Utc>,
    ) -> Vec<Transition> {
        for (service, bucket, traffic, width) in sums {
            if let Some(state) = self.state_for(service, now) {
                let learn_usual = state.firing.is_none();
                state
                    .window
                    .count_traffic(*bucket, traffic, *width, learn_usual);
            } else {
                self.untracked += traffic.anomalies();
            }
        }
        // The reasons of the whole batch before any burst is judged: its traffic is all in, so
        // the top reason must speak for the same anomalies.
        for log in anomalies {
            let event = log.logged_at.unwrap_or(now);
            if !self.is_late(event, now)
                && let Some(state) = self.services.get_mut(log.service)
            {
                state.window.note_reason(reason_note(log.verdict, event));
            }
        }
        let mut transitions = Vec::new();
        for log in anomalies {
            transitions.extend(self.record_anomaly(log, now));
        }
        transitions
    }

    fn is_late(&self, event: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        let Some(lateness) = self.limits.max_lateness else {
            return false;
        };
        let lateness = TimeDelta::from_std(lateness).unwrap_or(TimeDelta::MAX);
        event < minus(now, lateness)
    }

    /// The state of `service`, made room for if new; `None` when the table is full of firing
    /// services.
    fn state_for(&mut self, service: &str, now: DateTime<Utc>) -> Option<&mut ServiceState> {
        if !self.services.contains_key(service) {
            if !self.make_room() {
                return None;
            }
            self.services
                .insert(service.to_owned(), ServiceState::new(now));
        }
        let state = self.services.get_mut(service)?;
        state.last_seen = state.last_seen.max(now);
        Some(state)
    }

    /// Counts one anomaly toward its service's burst (its traffic is already counted).
    fn record_anomaly(&mut self, log: &JudgedEvent<'_>, now: DateTime<Utc>) -> Option<Transition> {
        let service = log.service;
        let rule = self.rules.rule_for(service);
        let window = window_of(rule);
        let event = log.logged_at.unwrap_or(now);
        if self.is_late(event, now) {
            self.late += 1;
            return None;
        }
        let Some(state) = self.services.get_mut(service) else {
            // Its traffic found no room: counted as untracked there.
            return None;
        };

        let arrival_cutoff = minus(now, window);
        while state
            .window
            .entries
            .front()
            .is_some_and(|entry| entry.arrival <= arrival_cutoff)
        {
            state.window.entries.pop_front();
        }
        state.window.entries.push_back(Entry {
            arrival: now,
            event,
        });
        while state.window.entries.len() > entry_cap(rule.count) {
            state.window.entries.pop_front();
        }
        let in_window =
            u32::try_from(densest(&state.window.entries, event, window)).unwrap_or(u32::MAX);

        if let Some(firing) = &mut state.firing {
            firing.alert.anomaly_count += 1;
            firing.alert.last_anomaly_at = event;
            firing.alert.revision += 1;
            firing.dirty = true;
        }
        if in_window < rule.count {
            return None;
        }
        let context = state.window.judge_burst(
            rule.volume,
            in_window,
            event,
            window,
            bucket_width(window),
        )?;
        // The contract: reaching `count` resets that service's window.
        state.window.entries.clear();
        match &mut state.firing {
            None => {
                let id = self.next_id;
                self.next_id += 1;
                let alert = AlertRecord {
                    id,
                    fingerprint: fingerprint(RULE_NAME, service),
                    service: service.to_owned(),
                    rule: RULE_NAME.to_owned(),
                    state: AlertState::Firing,
                    threshold_count: rule.count,
                    window_seconds: rule.window.as_secs_f64(),
                    started_at: now,
                    last_anomaly_at: event,
                    last_notified_at: now,
                    resolved_at: None,
                    anomaly_count: u64::from(in_window),
                    bursts: 1,
                    notifications: 1,
                    revision: 1,
                };
                state.firing = Some(Firing {
                    alert: alert.clone(),
                    last_hot_at: now,
                    dirty: false,
                });
                Some(Transition {
                    kind: TransitionKind::Fired,
                    alert,
                    in_window,
                    context: Some(context),
                })
            }
            Some(firing) => {
                firing.last_hot_at = now;
                firing.alert.bursts += 1;
                let since_notified = now.signed_duration_since(firing.alert.last_notified_at);
                let repeat =
                    TimeDelta::from_std(self.limits.repeat_interval).unwrap_or(TimeDelta::MAX);
                if since_notified < repeat {
                    return None;
                }
                firing.alert.notifications += 1;
                firing.alert.last_notified_at = now;
                firing.dirty = false;
                Some(Transition {
                    kind: TransitionKind::Repeated,
                    alert: firing.alert.clone(),
                    in_window,
                    context: Some(context),
                })
            }
        }
    }

    /// Resolves alerts whose service stayed below its rate for a whole window, drops idle
    /// services, and returns the transitions plus the firing alerts whose counts changed since
    /// they were last handed out (to be stored).
    pub fn tick(&mut self, now: DateTime<Utc>) -> (Vec<Transition>, Vec<AlertRecord>) {
        let mut transitions = Vec::new();
        let mut changed = Vec::new();
        let rules = &self.rules;
        for (service, state) in &mut self.services {
            let window = window_of(rules.rule_for(service));
            let Some(firing) = &mut state.firing else {
                continue;
            };
            if now.signed_duration_since(firing.last_hot_at) >= window {
                let mut alert = firing.alert.clone();
                alert.state = AlertState::Resolved;
                alert.resolved_at = Some(now);
                alert.notifications += 1;
                alert.revision += 1;
                let cutoff = minus(now, window);
                let in_window = state
                    .window
                    .entries
                    .iter()
                    .filter(|entry| entry.arrival > cutoff)
                    .count();
                transitions.push(Transition {
                    kind: TransitionKind::Resolved,
                    alert,
                    in_window: u32::try_from(in_window).unwrap_or(u32::MAX),
                    context: None,
                });
                state.firing = None;
            } else if firing.dirty {
                firing.dirty = false;
                changed.push(firing.alert.clone());
            }
        }
        // A service keeps its usual shares while it sends logs; after an hour without any (or a
        // window, if longer) it is forgotten.
        self.services.retain(|service, state| {
            let keep = window_of(rules.rule_for(service)).max(TimeDelta::seconds(3600));
            state.firing.is_some() || state.last_seen > minus(now, keep)
        });
        (transitions, changed)
    }

    /// Makes room for one more service; `false` when every tracked service is firing.
    fn make_room(&mut self) -> bool {
        if self.services.len() < self.limits.max_services {
            return true;
        }
        let idlest = self
            .services
            .iter()
            .filter(|(_, state)| state.firing.is_none())
            .min_by_key(|(_, state)| state.last_seen)
            .map(|(service, _)| service.clone());
        match idlest {
            Some(service) => {
                self.services.remove(&service);
                self.evicted += 1;
                true
            }
            None => false,
        }
    }

    /// What `GET /api/v1/alerts/stats` reports of the rate windows.
    pub fn stats(&self) -> TrackerStats {
        TrackerStats {
            tracked_services: self.tracked_services(),
            untracked_anomalies: self.untracked_anomalies(),
            late_anomalies: self.late_anomalies(),
            evicted_services: self.evicted_services(),
        }
    }

    /// Services with a window or an alert in memory.
    pub fn tracked_services(&self) -> usize {
        self.services.len()
    }

    /// Services whose alert is firing.
    pub fn firing_services(&self) -> usize {
        self.services
            .values()
            .filter(|state| state.firing.is_some())
            .count()
    }

    /// Anomalies not counted because the service table was full of firing services.
    pub fn untracked_anomalies(&self) -> u64 {
        self.untracked
    }

    /// Anomalies not counted because they were older than `max_lateness` on arrival.
    pub fn late_anomalies(&self) -> u64 {
        self.late
    }

    /// Idle services dropped to make room for new ones.
    pub fn evicted_services(&self) -> u64 {
        self.evicted
    }

    /// Window entries held by `service` (tests check the memory bound).
    #[cfg(test)]
    pub fn window_len(&self, service: &str) -> usize {
        self.services
            .get(service)
            .map_or(0, |s| s.window.entries.len())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::alert::rate::{PartialRateRule, VolumeTest};
    use crate::detect::baseline::{Direction, Evidence};

    const HOUR: Duration = Duration::from_secs(3600);

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-01T12:00:00Z")
            .expect("literal")
            .with_timezone(&Utc)
    }

    fn at(seconds: f64) -> DateTime<Utc> {
        t0() + TimeDelta::milliseconds((seconds * 1000.0) as i64)
    }

    /// `svc`: 3 anomalies in 10 s.
    fn tracker(max_services: usize) -> Tracker {
        let rules = RateRules::with_user_rules(
            BTreeMap::from([(
                "svc".to_owned(),
                PartialRateRule {
                    count: Some(3),
                    window: Some(Duration::from_secs(10)),
                    ..PartialRateRule::default()
                },
            )]),
            VolumeTest::default(),
        );
        Tracker::new(
            rules,
            TrackerLimits {
                repeat_interval: HOUR,
                max_services,
                max_lateness: None,
            },
            1,
        )
    }

    fn kinds(transitions: &[Option<Transition>]) -> Vec<TransitionKind> {
        transitions.iter().flatten().map(|t| t.kind).collect()
    }

    #[test]
    fn the_window_reaching_count_fires_once_then_resets() {
        let mut tracker = tracker(10);
        let got: Vec<_> = (0..5)
            .map(|i| tracker.record("svc", None, at(f64::from(i))))
            .collect();
        assert_eq!(kinds(&got), vec![TransitionKind::Fired]);
        let fired = got[2].as_ref().expect("third anomaly fires");
        assert_eq!(fired.in_window, 3);
        assert_eq!(fired.alert.anomaly_count, 3);
        assert_eq!(fired.alert.threshold_count, 3);
        assert_eq!(fired.alert.window_seconds, 10.0);
        // The window restarted after the burst: two more anomalies are not a new burst.
        assert_eq!(tracker.window_len("svc"), 2);
    }

    #[test]
    fn anomalies_further_apart_than_the_window_never_fire() {
        let mut tracker = tracker(10);
        let got: Vec<_> = (0..10)
            .map(|i| tracker.record("svc", None, at(f64::from(i) * 6.0)))
            .collect();
        assert!(kinds(&got).is_empty());
    }

    #[test]
    fn each_service_has_its_own_window_and_rule() {
        let mut tracker = tracker(10);
        // web_server's built-in rule is 3 in 60 s; the default service's is 10 in 300 s.
        let web: Vec<_> = (0..3)
            .map(|i| tracker.record("web_server", None, at(f64::from(i) * 20.0)))
            .collect();
        let other: Vec<_> = (0..9)
            .map(|i| tracker.record("other", None, at(f64::from(i))))
            .collect();
        assert_eq!(kinds(&web), vec![TransitionKind::Fired]);
        assert!(kinds(&other).is_empty());
        let tenth = tracker.record("other", None, at(9.0)).expect("tenth fires");
        assert_eq!(tenth.alert.service, "other");
        assert_ne!(
            tenth.alert.fingerprint,
            web[2].as_ref().expect("fired").alert.fingerprint
        );
    }

    #[test]
    fn a_quiet_window_resolves_the_alert_once() {
        let mut tracker = tracker(10);
        for i in 0..3 {
            tracker.record("svc", None, at(f64::from(i)));
        }
        // Still within the window of the burst at t=2.
        assert!(tracker.tick(at(11.9)).0.is_empty());
        let (resolved, _) = tracker.tick(at(12.0));
        assert_eq!(resolved.len(), 1);
        let resolved = &resolved[0];
        assert_eq!(resolved.kind, TransitionKind::Resolved);
        assert_eq!(resolved.alert.state, AlertState::Resolved);
        assert_eq!(resolved.alert.resolved_at, Some(at(12.0)));
        assert_eq!(resolved.alert.id, 1);
        assert!(tracker.tick(at(30.0)).0.is_empty(), "resolved only once");
        // The next burst is a new alert with the same fingerprint.
        let again: Vec<_> = (0..3)
            .map(|i| tracker.record("svc", None, at(40.0 + f64::from(i))))
            .collect();
        let again = again[2].as_ref().expect("fires again");
        assert_eq!(again.kind, TransitionKind::Fired);
        assert_eq!(again.alert.id, 2);
        assert_eq!(again.alert.fingerprint, resolved.alert.fingerprint);
        assert_eq!(again.alert.dedup_key(), resolved.alert.dedup_key());
    }

    #[test]
    fn anomalies_below_the_rate_do_not_keep_an_alert_open() {
        let mut tracker = tracker(10);
        for i in 0..3 {
            tracker.record("svc", None, at(f64::from(i)));
        }
        // One anomaly every 6 s is below 3 per 10 s: it resolves 10 s after the burst.
        tracker.record("svc", None, at(6.0));
        assert!(tracker.tick(at(11.0)).0.is_empty());
        let (resolved, _) = tracker.tick(at(12.0));
        assert_eq!(resolved.len(), 1);
        assert_eq!(resolved[0].alert.anomaly_count, 4);
    }

    #[test]
    fn bursts_while_firing_are_counted_and_page_again_only_after_the_repeat_interval() {
        let mut tracker = tracker(10);
        let mut seen = Vec::new();
        let mut stored = Vec::new();
        // A burst every 5 s for 2 hours: the alert never resolves.
        let mut t = 0.0;
        while t < 2.0 * 3600.0 {
            for i in 0..3 {
                seen.push(tracker.record("svc", None, at(t + f64::from(i) * 0.1)));
            }
            let (resolved, changed) = tracker.tick(at(t + 1.0));
            assert!(resolved.is_empty(), "resolved at {t}");
            stored.extend(changed);
            t += 5.0;
        }
        assert_eq!(
            kinds(&seen),
            vec![TransitionKind::Fired, TransitionKind::Repeated]
        );
        let repeated = seen.iter().flatten().nth(1).expect("repeat");
        assert_eq!(repeated.alert.last_notified_at, at(3600.2));
        assert_eq!(repeated.alert.notifications, 2);
        assert_eq!(repeated.alert.id, 1);
        // Every tick hands out the counts that changed since the last one, for the store.
        let last = stored.last().expect("counts changed");
        assert_eq!(last.anomaly_count, seen.len() as u64);
        assert_eq!(last.bursts, 1440);
        assert_eq!(last.notifications, 2);
        assert!(tracker.tick(at(t)).1.is_empty(), "nothing changed since");
    }

    #[test]
    fn a_replay_of_old_logs_spread_over_hours_does_not_fire() {
        let mut tracker = tracker(10);
        // 500 anomalies logged one a minute, replayed within one second.
        let got: Vec<_> = (0..500)
            .map(|i| {
                let logged = at(-86_400.0 + f64::from(i) * 60.0);
                tracker.record("svc", Some(logged), at(f64::from(i) / 500.0))
            })
            .collect();
        assert!(kinds(&got).is_empty());
        assert!(tracker.window_len("svc") <= entry_cap(3));
    }

    #[test]
    fn with_a_lateness_bound_even_a_replayed_burst_is_not_counted() {
        let mut tracker = tracker(10);
        tracker.limits.max_lateness = Some(Duration::from_secs(300));
        let replayed: Vec<_> = (0..3)
            .map(|i| tracker.record("svc", Some(at(-3600.0 + f64::from(i))), at(f64::from(i))))
            .collect();
        assert!(kinds(&replayed).is_empty());
        assert_eq!(tracker.late_anomalies(), 3);
        // Slightly late, future and missing timestamps still count.
        let live = [
            tracker.record("svc", Some(at(-200.0)), at(10.0)),
            tracker.record("svc", Some(at(60.0)), at(10.0)),
            tracker.record("svc", None, at(10.0)),
        ];
        assert!(kinds(&live).is_empty(), "spread over 260 s of log time");
        let burst: Vec<_> = (0..3)
            .map(|i| tracker.record("svc", Some(at(20.0 - f64::from(i))), at(20.0)))
            .collect();
        assert_eq!(kinds(&burst), vec![TransitionKind::Fired]);
    }

    #[test]
    fn a_burst_logged_out_of_order_fires() {
        let mut tracker = tracker(10);
        let got: Vec<_> = [5.0, 9.0, 1.0]
            .into_iter()
            .map(|logged| tracker.record("svc", Some(at(logged)), at(20.0)))
            .collect();
        assert_eq!(kinds(&got), vec![TransitionKind::Fired]);
        // 0, 6 and 12 never fit in one 10 s window, whatever the order.
        let got: Vec<_> = [12.0, 0.0, 6.0]
            .into_iter()
            .map(|logged| tracker.record("svc", Some(at(100.0 + logged)), at(100.0)))
            .collect();
        assert!(kinds(&got).is_empty());
    }

    #[test]
    fn a_zero_length_window_never_panics() {
        let rules = RateRules::with_user_rules(
            BTreeMap::from([(
                "svc".to_owned(),
                PartialRateRule {
                    count: Some(2),
                    window: Some(Duration::ZERO),
                    ..PartialRateRule::default()
                },
            )]),
            VolumeTest::default(),
        );
        let limits = TrackerLimits {
            repeat_interval: HOUR,
            max_services: 10,
            max_lateness: None,
        };
        let mut tracker = Tracker::new(rules, limits, 1);
        for logged in [3.0, 1.0, 2.0, 1.0] {
            assert!(tracker.record("svc", Some(at(logged)), at(0.0)).is_none());
        }
    }

    #[test]
    fn a_burst_from_a_skewed_clock_still_fires() {
        for skew in [-5.0 * 3600.0, 7.0 * 3600.0, -400.0 * 86_400.0] {
            let mut tracker = tracker(10);
            let got: Vec<_> = (0..3)
                .map(|i| {
                    let now = f64::from(i);
                    tracker.record("svc", Some(at(now + skew)), at(now))
                })
                .collect();
            assert_eq!(kinds(&got), vec![TransitionKind::Fired], "skew {skew}");
            assert_eq!(
                got[2].as_ref().expect("fired").alert.last_anomaly_at,
                at(2.0 + skew)
            );
        }
    }

    #[test]
    fn a_stuck_clock_needs_the_anomalies_to_arrive_within_the_window() {
        let mut tracker = tracker(10);
        let stuck = Some(at(0.0));
        let trickle: Vec<_> = (0..6)
            .map(|i| tracker.record("svc", stuck, at(f64::from(i) * 6.0)))
            .collect();
        assert!(kinds(&trickle).is_empty());
        let burst: Vec<_> = (0..3)
            .map(|i| tracker.record("svc", stuck, at(100.0 + f64::from(i))))
            .collect();
        assert_eq!(kinds(&burst), vec![TransitionKind::Fired]);
    }

    #[test]
    fn one_far_future_timestamp_does_not_hide_a_later_burst() {
        let mut tracker = tracker(10);
        tracker.record("svc", Some(at(10.0 * 365.0 * 86_400.0)), at(0.0));
        let got: Vec<_> = (1..4)
            .map(|i| tracker.record("svc", Some(at(f64::from(i))), at(f64::from(i))))
            .collect();
        assert_eq!(kinds(&got), vec![TransitionKind::Fired]);
    }

    #[test]
    fn the_service_table_is_bounded_and_keeps_firing_services() {
        let mut tracker = tracker(2);
        for i in 0..3 {
            tracker.record("svc", None, at(f64::from(i)));
        }
        tracker.record("a", None, at(3.0));
        // Full: "b" evicts the idlest service that is not firing ("a").
        tracker.record("b", None, at(4.0));
        assert_eq!(tracker.tracked_services(), 2);
        assert_eq!(tracker.evicted_services(), 1);
        assert_eq!(tracker.window_len("a"), 0);
        assert_eq!(tracker.window_len("b"), 1);
        assert_eq!(tracker.firing_services(), 1);
        // Ten thousand one-off services never grow the table.
        for i in 0..10_000 {
            tracker.record(&format!("s{i}"), None, at(5.0));
        }
        assert_eq!(tracker.tracked_services(), 2);
        assert_eq!(tracker.firing_services(), 1);
    }

    #[test]
    fn new_services_are_untracked_while_every_slot_is_firing() {
        let mut tracker = tracker(1);
        for i in 0..3 {
            tracker.record("svc", None, at(f64::from(i)));
        }
        assert!(tracker.record("other", None, at(3.0)).is_none());
        assert_eq!(tracker.untracked_anomalies(), 1);
        assert_eq!(tracker.tracked_services(), 1);
    }

    #[test]
    fn services_idle_for_an_hour_are_dropped_on_the_tick() {
        // An hour, not a window: a service keeps what it usually shows while it sends logs.
        let mut tracker = tracker(10);
        tracker.record("svc", None, at(0.0));
        tracker.tick(at(3599.0));
        assert_eq!(tracker.tracked_services(), 1);
        tracker.tick(at(3600.5));
        assert_eq!(tracker.tracked_services(), 0);
    }

    #[test]
    fn a_restored_alert_resolves_after_a_quiet_window_and_ids_continue() {
        let mut first = tracker(10);
        let fired: Vec<_> = (0..3)
            .map(|i| first.record("svc", None, at(f64::from(i))))
            .collect();
        let alert = fired[2].as_ref().expect("fires").alert.clone();
        let mut second = tracker(10);
        second.restore(alert, at(100.0));
        assert!(second.tick(at(105.0)).0.is_empty());
        let (resolved, _) = second.tick(at(110.0));
        assert_eq!(resolved.len(), 1);
        assert_eq!(resolved[0].alert.id, 1);
        let next: Vec<_> = (0..3)
            .map(|i| second.record("svc", None, at(200.0 + f64::from(i))))
            .collect();
        assert_eq!(next[2].as_ref().expect("fires").alert.id, 2);
    }

    #[test]
    fn fingerprints_are_stable_and_dedup_keys_bounded() {
        assert_eq!(fingerprint(RULE_NAME, "svc"), fingerprint(RULE_NAME, "svc"));
        assert_ne!(fingerprint(RULE_NAME, "svc"), fingerprint(RULE_NAME, "svd"));
        assert_ne!(fingerprint("a", "bc"), fingerprint("ab", "c"));
        assert_eq!(fingerprint(RULE_NAME, "svc").len(), 16);
        // Pinned: a changed hash would break PagerDuty's dedup across an upgrade.
        assert_eq!(fingerprint("", ""), "af63bd4c8601b7df");
        let mut tracker = tracker(10);
        let long = "x".repeat(10_000);
        let fired: Vec<_> = (0..10)
            .map(|i| tracker.record(&long, None, at(f64::from(i))))
            .collect();
        let alert = &fired[9].as_ref().expect("fires").alert;
        assert!(alert.dedup_key().len() <= 255);
    }

    mod at_volume {
        //! Rate alerts judged against traffic, on simulated time (issue #18).
        use rand::rngs::StdRng;
        use rand::{Rng, SeedableRng};

        use super::*;
        use crate::detect::baseline::Reason;

        const BUDGET: f64 = 0.001;

        fn verdict(detector: Option<DetectorKind>, model_share: Option<f64>) -> Verdict {
            Verdict {
                score: model_share.map(|_| 0.1),
                violations: Vec::new(),
                detector,
                reasons: Vec::new(),
                model_share,
            }
        }

        /// What one simulated run saw.
        struct Run {
            fired_at: Vec<f64>,
            contexts: Vec<RateContext>,
        }

        /// Sends `rate` logs per simulated second of `service` from `start` for `seconds`, each an
        /// anomaly of `detector` with probability `share`; normal logs are scored by a model held
        /// to the budget when `scored`.
        #[allow(clippy::too_many_arguments)]
        fn send(
            tracker: &mut Tracker,
            rng: &mut StdRng,
            service: &str,
            (start, seconds): (f64, u32),
            rate: u32,
            share: f64,
            detector: DetectorKind,
            scored: bool,
        ) -> Run {
            let model_share = scored.then_some(BUDGET);
            let normal = verdict(None, model_share);
            let anomalous = verdict(Some(detector), model_share);
            let mut run = Run {
                fired_at: Vec::new(),
                contexts: Vec::new(),
            };
            for second in 0..seconds {
                let now = start + f64::from(second);
                let batch: Vec<JudgedEvent<'_>> = (0..rate)
                    .map(|i| JudgedEvent {
                        service,
                        logged_at: Some(at(now + f64::from(i) / f64::from(rate))),
                        verdict: if rng.random::<f64>() < share {
                            &anomalous
                        } else {
                            &normal
                        },
                    })
                    .collect();
                for transition in tracker.observe(&batch, at(now + 1.0)) {
                    if transition.kind == TransitionKind::Fired {
                        run.fired_at.push(now);
                        run.contexts.extend(transition.context);
                    }
                }
                tracker.tick(at(now + 1.0));
            }
            run
        }

        fn tracker_with(user: BTreeMap<String, PartialRateRule>) -> Tracker {
            Tracker::new(
                RateRules::with_user_rules(user, VolumeTest::default()),
                TrackerLimits {
                    repeat_interval: HOUR,
                    max_services: 10,
                    max_lateness: None,
                },
                1,
            )
        }

        #[test]
        fn a_busy_service_at_its_budget_raises_no_alert_in_an_hour_then_a_burst_alerts() {
            // web_server's built-in rule: 3 anomalies in 60 s. At 1,000 logs/s the budget alone
            // makes ~60 a minute; the original fired on them all hour long.
            let mut tracker = tracker_with(BTreeMap::new());
            let mut rng = StdRng::seed_from_u64(7);
            let web = "web_server";
            let quiet = send(
                &mut tracker,
                &mut rng,
                web,
                (0.0, 3600),
                1000,
                BUDGET,
                DetectorKind::Model,
                true,
            );
            assert!(quiet.fired_at.is_empty(), "fired at {:?}", quiet.fired_at);
            let burst = send(
                &mut tracker,
                &mut rng,
                web,
                (3600.0, 60),
                1000,
                0.02,
                DetectorKind::Model,
                true,
            );
            let first = burst.fired_at.first().expect("a 2 % burst alerts");
            assert!(
                *first < 3660.0,
                "alerted {} s into the burst",
                first - 3600.0
            );
            assert_eq!(burst.fired_at.len(), 1, "one alert per burst");
            let context = &burst.contexts[0];
            assert!(context.logs >= 1000 && context.anomalies as f64 > 2.0 * context.expected);
            assert!(context.probability < 1e-3);
        }

        #[test]
        fn a_quiet_service_still_alerts_on_three_anomalies_in_a_minute() {
            let mut tracker = tracker_with(BTreeMap::new());
            let mut rng = StdRng::seed_from_u64(8);
            let web = "web_server";
            let calm = send(
                &mut tracker,
                &mut rng,
                web,
                (0.0, 600),
                1,
                0.0,
                DetectorKind::Model,
                true,
            );
            assert!(calm.fired_at.is_empty());
            let burst = send(
                &mut tracker,
                &mut rng,
                web,
                (600.0, 3),
                1,
                1.0,
                DetectorKind::Model,
                true,
            );
            assert_eq!(burst.fired_at, vec![602.0]);
        }

        #[test]
        fn a_rule_violation_tail_does_not_page_at_volume_but_five_percent_does() {
            let mut tracker = tracker_with(BTreeMap::new());
            let mut rng = StdRng::seed_from_u64(9);
            let db = "database";
            let tail = send(
                &mut tracker,
                &mut rng,
                db,
                (0.0, 3600),
                1000,
                0.0001,
                DetectorKind::Rule,
                false,
            );
            assert!(tail.fired_at.is_empty(), "fired at {:?}", tail.fired_at);
            let storm = send(
                &mut tracker,
                &mut rng,
                db,
                (3600.0, 120),
                1000,
                0.05,
                DetectorKind::Rule,
                false,
            );
            assert_eq!(storm.fired_at.len(), 1);
            assert!(storm.fired_at[0] < 3720.0, "within one window of 120 s");
        }

        #[test]
        fn a_burst_does_not_teach_itself_normal_even_on_a_short_history() {
            // Two minutes of history weigh less than a minute of a 20 % burst: were the burst
            // learned as it runs, it would raise its own expectation as fast as its count.
            let mut tracker = tracker_with(BTreeMap::new());
            let mut rng = StdRng::seed_from_u64(11);
            let web = "web_server";
            let calm = send(
                &mut tracker,
                &mut rng,
                web,
                (0.0, 120),
                200,
                0.0,
                DetectorKind::Rule,
                true,
            );
            assert!(calm.fired_at.is_empty());
            let burst = send(
                &mut tracker,
                &mut rng,
                web,
                (120.0, 30),
                200,
                0.2,
                DetectorKind::Rule,
                true,
            );
            assert_eq!(burst.fired_at.len(), 1);
            assert!(burst.fired_at[0] <= 122.0, "fired at {:?}", burst.fired_at);
        }

        #[test]
        fn pure_count_pages_on_the_count_alone_as_the_original_did() {
            let user = BTreeMap::from([(
                "web_server".to_owned(),
                PartialRateRule {
                    pure_count: Some(true),
                    ..PartialRateRule::default()
                },
            )]);
            let mut tracker = tracker_with(user);
            let mut rng = StdRng::seed_from_u64(7);
            let web = "web_server";
            let run = send(
                &mut tracker,
                &mut rng,
                web,
                (0.0, 120),
                1000,
                BUDGET,
                DetectorKind::Model,
                true,
            );
            assert_eq!(run.fired_at.len(), 1, "fires once, then stays firing");
            assert!(run.fired_at[0] < 10.0);
        }

        #[test]
        fn a_service_that_usually_flags_more_than_its_budget_is_judged_by_what_it_usually_does() {
            // A model flagging 0.3 % (three times its budget) all along is not an incident; a
            // burst on top of it still is.
            let mut tracker = tracker_with(BTreeMap::new());
            let mut rng = StdRng::seed_from_u64(10);
            let web = "web_server";
            let usual = send(
                &mut tracker,
                &mut rng,
                web,
                (0.0, 3600),
                1000,
                0.003,
                DetectorKind::Model,
                true,
            );
            // Until an hour's worth of traffic is in, only the first minutes may page.
            assert!(
                usual.fired_at.iter().all(|t| *t < 120.0),
                "fired at {:?}",
                usual.fired_at
            );
            let burst = send(
                &mut tracker,
                &mut rng,
                web,
                (3600.0, 60),
                1000,
                0.03,
                DetectorKind::Model,
                true,
            );
            assert_eq!(burst.fired_at.len(), 1);
        }

        #[test]
        fn the_alert_names_the_most_common_reason_of_its_window() {
            let mut tracker = tracker_with(BTreeMap::new());
            let slow = Verdict {
                reasons: vec![Reason::new(Evidence::Feature {
                    feature: "latency_ms".to_owned(),
                    value: 812.0,
                    median: 80.0,
                    typical_low: 60.0,
                    typical_high: 110.0,
                    direction: Direction::High,
                    z: 9.0,
                    cut: 3.8,
                })],
                ..verdict(Some(DetectorKind::Model), Some(BUDGET))
            };
            let events: Vec<JudgedEvent<'_>> = (0..3)
                .map(|i| JudgedEvent {
                    service: "web_server",
                    logged_at: Some(at(f64::from(i))),
                    verdict: &slow,
                })
                .collect();
            let fired = tracker.observe(&events, at(3.0));
            let context = fired[0].context.as_ref().expect("context");
            let top = context.top_reason.as_ref().expect("a reason");
            assert_eq!(top.label, "latency_ms high");
            assert_eq!((top.count, top.of), (3, 3));
            assert!(top.example.contains("812"), "{}", top.example);
        }
    }
}
