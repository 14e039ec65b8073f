//! The drill's simulated clock and its waiting rules: how many logs a phase holds, when each is
//! logged, how long after a phase's start a batch ends, and when a warm-up has taught the service
//! enough. Pure: no I/O, every instant is an argument.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use crate::simulator::generate::{AnomalyKind, GeneratorConfig, ServiceKind};

/// The most logs one phase may hold: the generator counts its logs in an `i32`.
pub const MAX_LOGS_PER_PHASE: u64 = i32::MAX as u64;

/// One phase of simulated traffic: `logs` logs at `rate` logs per simulated second (all services
/// together) from `start`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PhasePlan {
    pub start: DateTime<Utc>,
    /// Logs per simulated second, all services together; finite and above 0.
    pub rate: f64,
    pub logs: u64,
}

impl PhasePlan {
    /// `duration` of simulated traffic at `rate` logs/s from `start`.
    ///
    /// # Errors
    /// When the phase would hold no log, or more than [`MAX_LOGS_PER_PHASE`].
    pub fn for_duration(
        start: DateTime<Utc>,
        duration: Duration,
        rate: f64,
    ) -> Result<Self, String> {
        let logs = (duration.as_secs_f64() * rate).round();
        if logs < 1.0 {
            return Err(format!(
                "{:.3} s at {rate} logs/s is not a single log",
                duration.as_secs_f64()
            ));
        }
        if logs > MAX_LOGS_PER_PHASE as f64 {
            return Err(format!(
                "{:.0} s at {rate} logs/s is {logs:.0} logs, more than the {MAX_LOGS_PER_PHASE} \
                 one phase may hold",
                duration.as_secs_f64()
            ));
        }
        Ok(Self::for_logs(start, logs as u64, rate))
    }

    /// `logs` logs at `rate` logs/s from `start` (at most [`MAX_LOGS_PER_PHASE`]).
    pub fn for_logs(start: DateTime<Utc>, logs: u64, rate: f64) -> Self {
        Self {
            start,
            rate,
            logs: logs.min(MAX_LOGS_PER_PHASE),
        }
    }

    /// Time between two logs on the simulated clock, to the nanosecond (at least 1 ns). Rounding
    /// drifts by at most 0.5 ns a log: under 2 ms over an hour at 1,000 logs/s.
    pub fn step(&self) -> TimeDelta {
        let nanos = (1e9 / self.rate).round().clamp(1.0, i64::MAX as f64);
        TimeDelta::nanoseconds(nanos as i64)
    }

    /// The timestamp of log `index` (0-based) of the phase; `at(logs)` is where the next phase
    /// starts.
    pub fn at(&self, index: u64) -> DateTime<Utc> {
        let index = i32::try_from(index.min(MAX_LOGS_PER_PHASE)).unwrap_or(i32::MAX);
        self.start
            .checked_add_signed(self.step() * index)
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    /// Where the phase ends and the next one starts.
    pub fn end(&self) -> DateTime<Utc> {
        self.at(self.logs)
    }

    /// Simulated seconds from the phase's start once `sent` logs have been sent.
    pub fn seconds_after(&self, sent: u64) -> f64 {
        sent as f64 / self.rate
    }

    /// The phase's simulated length in seconds.
    pub fn simulated_seconds(&self) -> f64 {
        self.seconds_after(self.logs)
    }

    /// Simulated seconds from the phase's start to the end of batch `index` (0-based) of `batch`
    /// logs: the moment the log after it would be written.
    pub fn batch_end_seconds(&self, batch: u64, index: u64) -> f64 {
        let sent = index.saturating_add(1).saturating_mul(batch).min(self.logs);
        self.seconds_after(sent)
    }

    /// A generator whose clock is this phase's: logs `step` apart from `start`.
    pub fn generator_config(
        &self,
        seed: u64,
        services: &[ServiceKind],
        mix: Mix,
    ) -> GeneratorConfig {
        let (anomaly_ratio, only_kind, warmup_per_service) = match mix {
            Mix::RoundRobinNormal => (0.0, None, self.logs.div_ceil(services.len().max(1) as u64)),
            Mix::Normal => (0.0, None, 0),
            Mix::Incident { kind, share } => (share, Some(kind), 0),
        };
        GeneratorConfig {
            seed,
            services: services.to_vec(),
            anomaly_ratio,
            warmup_per_service,
            start: self.start,
            step: self.step(),
            only_kind,
        }
    }
}

/// What a phase's logs are.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mix {
    /// Normal logs, the services in turn (the warm-up: each service gets its exact share).
    RoundRobinNormal,
    /// Normal logs, each of a service drawn at random.
    Normal,
    /// `share` of the logs are anomalies of `kind`.
    Incident { kind: AnomalyKind, share: f64 },
}

/// The first new alert of an incident.
#[derive(Debug, Clone, PartialEq)]
pub struct FirstAlert {
    /// The batch (0-based) that raised it: see [`batch_that_raised`].
    pub batch_index: u64,
    /// The batch after which the drill first saw it.
    pub seen_after: u64,
    /// Whether `batch_index` comes from the alert's own `started_at` (else it is `seen_after`).
    pub by_started_at: bool,
    pub service: String,
}

/// When one incident batch was sent and answered, on the drill's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchWindow {
    pub index: u64,
    pub sent: DateTime<Utc>,
    pub answered: DateTime<Utc>,
}

/// The batch that raised an alert first seen after batch `seen_after`.
///
/// The service stores an alert a moment after it answers the batch that raised it, so the drill
/// may see it only after the next batch. The alert's `started_at` (the service's clock when that
/// batch arrived) settles it: the raising batch is the first of `recent` (the latest batches, in
/// order, ending with `seen_after`) answered at or after `started_at`. When `started_at` is
/// missing or falls outside `recent` (clocks that disagree, or a lag longer than `recent`
/// remembers), it is the batch after which the alert was seen. Returns the batch and whether
/// `started_at` decided it.
pub fn batch_that_raised(
    seen_after: u64,
    started_at: Option<DateTime<Utc>>,
    recent: &[BatchWindow],
) -> (u64, bool) {
    let (Some(at), Some(first), Some(last)) = (started_at, recent.first(), recent.last()) else {
        return (seen_after, false);
    };
    if last.index != seen_after || at < first.sent || at > last.answered {
        return (seen_after, false);
    }
    recent
        .iter()
        .find(|batch| at <= batch.answered)
        .map_or((seen_after, false), |batch| (batch.index, true))
}

/// Time to the first alert in simulated seconds from the incident's start, and its resolution:
/// the alert fired while the batch that raised it was ingested, so at most one batch before the
/// end of that batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimeToAlert {
    /// End of the batch that raised the alert.
    pub seconds: f64,
    /// End of the batch after which the alert was first seen.
    pub seen_seconds: f64,
    /// One batch on the simulated clock.
    pub resolution_seconds: f64,
}

/// [`TimeToAlert`] of `first` in batches of `batch` logs.
pub fn time_to_alert(plan: &PhasePlan, batch: u64, first: &FirstAlert) -> TimeToAlert {
    TimeToAlert {
        seconds: plan.batch_end_seconds(batch, first.batch_index),
        seen_seconds: plan.batch_end_seconds(batch, first.seen_after),
        resolution_seconds: resolution_seconds(plan, batch),
    }
}

/// One batch of `batch` logs on the phase's simulated clock (the whole phase if shorter).
pub fn resolution_seconds(plan: &PhasePlan, batch: u64) -> f64 {
    plan.seconds_after(batch.min(plan.logs))
}

/// Whether the warm-up has taught each service a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WarmupStatus {
    /// Every service's model was fitted on at least the target number of logs.
    Reached,
    /// Every service has a model and none changed for the stability period: the service will not
    /// refit on these logs again (its reservoir is smaller than the target, or the doublings
    /// stopped short of it).
    Stable,
    Waiting,
}

/// Watches `GET /api/v1/models` during the wait after the warm-up. The service refits as its
/// sample doubles, so the models change a few times before they settle.
#[derive(Debug, Clone)]
pub struct WarmupWatch {
    services: Vec<String>,
    target: u64,
    stable_for: Duration,
    last: Option<(BTreeMap<String, u64>, Duration)>,
}

impl WarmupWatch {
    /// Waits for `target` training samples per service, or for models unchanged for `stable_for`.
    pub fn new(services: Vec<String>, target: u64, stable_for: Duration) -> Self {
        Self {
            services,
            target,
            stable_for,
            last: None,
        }
    }

    /// Looks at the training samples per service seen `elapsed` into the wait.
    pub fn observe(&mut self, elapsed: Duration, samples: &BTreeMap<String, u64>) -> WarmupStatus {
        let ours: BTreeMap<String, u64> = self
            .services
            .iter()
            .filter_map(|service| Some((service.clone(), *samples.get(service)?)))
            .collect();
        if ours.len() == self.services.len() && ours.values().all(|&n| n >= self.target) {
            return WarmupStatus::Reached;
        }
        let since = match &self.last {
            Some((before, since)) if *before == ours => *since,
            _ => elapsed,
        };
        self.last = Some((ours, since));
        let every_service_has_one = self
            .last
            .as_ref()
            .is_some_and(|(models, _)| models.len() == self.services.len());
        if every_service_has_one && elapsed.saturating_sub(since) >= self.stable_for {
            WarmupStatus::Stable
        } else {
            WarmupStatus::Waiting
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulator::generate::Generator;

    fn start() -> DateTime<Utc> {
        "2024-01-15T10:00:00Z".parse().expect("literal time")
    }

    #[test]
    fn an_hour_at_a_thousand_logs_a_second_is_three_point_six_million_logs_a_millisecond_apart() {
        let plan = PhasePlan::for_duration(start(), Duration::from_secs(3600), 1000.0)
            .expect("valid plan");
        assert_eq!(plan.logs, 3_600_000);
        assert_eq!(plan.step(), TimeDelta::milliseconds(1));
        assert_eq!(plan.simulated_seconds(), 3600.0);
        assert_eq!(plan.end().to_rfc3339(), "2024-01-15T11:00:00+00:00");
        assert_eq!(plan.at(1_500).to_rfc3339(), "2024-01-15T10:00:01.500+00:00");
    }

    #[test]
    fn generated_timestamps_advance_at_the_simulated_rate() {
        // 3 services at 1,000 logs/s each: 3,000 logs a simulated second.
        let services = [
            ServiceKind::WebServer,
            ServiceKind::Database,
            ServiceKind::Application,
        ];
        let plan = PhasePlan::for_duration(start(), Duration::from_secs(2), 3000.0).expect("plan");
        assert_eq!(plan.logs, 6000);
        let logs: Vec<_> = Generator::new(plan.generator_config(1, &services, Mix::Normal))
            .take(6000)
            .collect();
        let stamp = |i: usize| -> DateTime<Utc> {
            let raw = &logs[i].log.raw_log;
            let at = raw.find("2024-01-15T").expect("a timestamp");
            raw[at..at + 24].parse().expect("RFC 3339")
        };
        assert_eq!(stamp(0), start());
        // Rendered to the millisecond.
        assert!((stamp(3000) - plan.at(3000)).abs() < TimeDelta::milliseconds(1));
        let one_second_later = stamp(3000) - stamp(0);
        assert!(
            (one_second_later - TimeDelta::seconds(1)).abs() <= TimeDelta::milliseconds(1),
            "{one_second_later}"
        );
        let last = stamp(5999);
        assert!(last < plan.end() && plan.end() - last <= TimeDelta::milliseconds(1));
    }

    #[test]
    fn a_phase_starts_where_the_last_one_ended() {
        let warm = PhasePlan::for_logs(start(), 2048, 1000.0);
        let normal =
            PhasePlan::for_duration(warm.end(), Duration::from_secs(60), 1000.0).expect("plan");
        assert_eq!(normal.start.to_rfc3339(), "2024-01-15T10:00:02.048+00:00");
        assert_eq!(normal.end().to_rfc3339(), "2024-01-15T10:01:02.048+00:00");
    }

    #[test]
    fn phases_with_no_log_or_too_many_are_refused() {
        assert!(PhasePlan::for_duration(start(), Duration::from_millis(1), 10.0).is_err());
        let too_long = PhasePlan::for_duration(start(), Duration::from_secs(30 * 86_400), 1e6);
        assert!(too_long.expect_err("too many").contains("more than"));
    }

    #[test]
    fn time_to_alert_is_the_end_of_the_batch_it_was_seen_after() {
        // 5 min at 1,000 logs/s in batches of 1,000: one simulated second a batch.
        let plan =
            PhasePlan::for_duration(start(), Duration::from_secs(300), 1000.0).expect("plan");
        let seen = |batch_index| FirstAlert {
            batch_index,
            seen_after: batch_index,
            by_started_at: false,
            service: "web_server".to_owned(),
        };
        assert_eq!(
            time_to_alert(&plan, 1000, &seen(0)),
            TimeToAlert {
                seconds: 1.0,
                seen_seconds: 1.0,
                resolution_seconds: 1.0
            }
        );
        let late = FirstAlert {
            seen_after: 3,
            ..seen(2)
        };
        let late = time_to_alert(&plan, 1000, &late);
        assert_eq!((late.seconds, late.seen_seconds), (3.0, 4.0));
        assert_eq!(time_to_alert(&plan, 1000, &seen(41)).seconds, 42.0);
        // The last batch is cut short by the phase's end.
        let short = PhasePlan::for_logs(start(), 2500, 1000.0);
        assert_eq!(time_to_alert(&short, 1000, &seen(2)).seconds, 2.5);
        assert_eq!(
            time_to_alert(&short, 5000, &seen(0)).resolution_seconds,
            2.5
        );
    }

    #[test]
    fn the_warmup_gets_each_service_its_exact_share() {
        let services = [ServiceKind::WebServer, ServiceKind::Database];
        let plan = PhasePlan::for_logs(start(), 400, 2000.0);
        let logs: Vec<_> =
            Generator::new(plan.generator_config(9, &services, Mix::RoundRobinNormal))
                .take(400)
                .collect();
        assert!(logs.iter().all(|g| !g.label.is_anomaly()));
        for service in services {
            assert_eq!(logs.iter().filter(|g| g.service == service).count(), 200);
        }
    }

    #[test]
    fn an_alert_stored_late_is_put_on_the_batch_its_started_at_falls_in() {
        let ms = |n: i64| start() + TimeDelta::milliseconds(n);
        // Batches 4, 5, 6: each sent at 100·k ms and answered 40 ms later.
        let recent: Vec<BatchWindow> = (4..7)
            .map(|index| BatchWindow {
                index,
                sent: ms(100 * index as i64),
                answered: ms(100 * index as i64 + 40),
            })
            .collect();
        // Raised while batch 5 was ingested, seen only after batch 6.
        assert_eq!(batch_that_raised(6, Some(ms(515)), &recent), (5, true));
        // Between two batches (stored while none was in flight): the next batch's.
        assert_eq!(batch_that_raised(6, Some(ms(470)), &recent), (5, true));
        assert_eq!(batch_that_raised(6, Some(ms(640)), &recent), (6, true));
        // Without a started_at, or with one the windows cannot hold: where it was seen.
        assert_eq!(batch_that_raised(6, None, &recent), (6, false));
        assert_eq!(
            batch_that_raised(6, Some(ms(-3_600_000)), &recent),
            (6, false)
        );
        assert_eq!(batch_that_raised(6, Some(ms(650)), &recent), (6, false));
        assert_eq!(batch_that_raised(7, Some(ms(515)), &recent), (7, false));
        assert_eq!(batch_that_raised(2, Some(ms(515)), &[]), (2, false));
    }

    fn samples(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
        pairs.iter().map(|(s, n)| ((*s).to_owned(), *n)).collect()
    }

    #[test]
    fn the_warmup_wait_ends_at_the_target_or_once_models_stop_changing() {
        let services = vec!["web_server".to_owned(), "database".to_owned()];
        let mut watch = WarmupWatch::new(services, 2048, Duration::from_secs(3));
        let s = Duration::from_secs;
        assert_eq!(watch.observe(s(0), &samples(&[])), WarmupStatus::Waiting);
        assert_eq!(
            watch.observe(s(1), &samples(&[("web_server", 800)])),
            WarmupStatus::Waiting
        );
        // Both have a model, but they keep changing.
        let both = samples(&[("web_server", 1600), ("database", 400)]);
        assert_eq!(watch.observe(s(2), &both), WarmupStatus::Waiting);
        assert_eq!(watch.observe(s(4), &both), WarmupStatus::Waiting);
        assert_eq!(watch.observe(s(5), &both), WarmupStatus::Stable);
        let reached = samples(&[("web_server", 2048), ("database", 2048), ("other", 5)]);
        assert_eq!(watch.observe(s(6), &reached), WarmupStatus::Reached);
        // A service without a model is never stable.
        let mut watch = WarmupWatch::new(vec!["a".into(), "b".into()], 100, s(1));
        let one = samples(&[("a", 60)]);
        for t in 0..10 {
            assert_eq!(watch.observe(s(t), &one), WarmupStatus::Waiting);
        }
    }
}
