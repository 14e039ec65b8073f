//! `log-simulator alert-drill`: does the service's alerting mean something at volume? (issue #18)
//!
//! Four steps, all over HTTP, so the drill measures whichever server answers:
//!
//! 1. **Warm-up**: `--warmup` normal logs per service, then a bounded wait until
//!    `GET /api/v1/models` shows every service's model fitted on that many logs (or no longer
//!    changing): the service fits a model after `MIN_TRAIN_SAMPLES` logs and refits as its sample
//!    doubles.
//! 2. **Normal phase**: `--normal` of simulated traffic, `--rate` logs per simulated second per
//!    service, sent as fast as the service takes them (`--batch` logs a request, `--concurrency`
//!    requests in flight), the logs' timestamps advancing at the simulated rate. The alerts it
//!    raised are the new ones in `GET /api/v1/alerts`: alerts per simulated hour, the false-alert
//!    figure.
//! 3. **Incident**: `--incident` of the same traffic with `--incident-share` of the logs anomalies
//!    of `--incident-kind`, sent one batch at a time; after each batch the drill looks for a new
//!    alert. Time to the first alert is in simulated seconds from the incident's start to the end
//!    of the batch that raised it (so its resolution is one batch): the batch after which the
//!    alert was seen, or an earlier one when the alert's `started_at` shows the service stored it
//!    a moment after answering ([`plan::batch_that_raised`]).
//! 4. The report: the usual summary plus `alert_drill`.
//!
//! Before each measured phase, alerts still firing get up to `--quiet-timeout` to resolve (the
//! service resolves an alert after a quiet window on its own clock), so each phase starts from
//! silence when it can; what was firing is reported either way.
//!
//! Memory is bounded: a blocking task generates batches into a channel of `--concurrency` slots,
//! so at most about `2 × concurrency` batches exist at once, whatever the phase's length.

pub mod alerts;
pub mod plan;
pub mod report;

use std::collections::VecDeque;
use std::future::Future;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use reqwest::Url;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::simulator::client::{IngestClient, SendRetryPolicy, endpoint};
use crate::simulator::drill::alerts::{
    AlertBaseline, AlertView, LISTING_LIMIT, count_new_alerts, firing_services, first_new_alert,
    parse_alerts, parse_models,
};
use crate::simulator::drill::plan::{
    BatchWindow, FirstAlert, Mix, PhasePlan, WarmupStatus, WarmupWatch, batch_that_raised,
    resolution_seconds, time_to_alert,
};
use crate::simulator::drill::report::{
    DrillReport, IncidentReport, NormalReport, PhaseAlerts, PhaseTraffic, QuietWait, WarmupReport,
};
use crate::simulator::generate::{
    AnomalyKind, GeneratedLog, Generator, GeneratorConfig, ServiceKind,
};
use crate::simulator::summary::{RunInfo, Summary, Tally};
use crate::simulator::{Args, Progress, parse_seconds, warn_retry};

/// Logs per simulated second of one service when `--rate` is not given.
pub const DEFAULT_RATE_PER_SERVICE: f64 = 1000.0;
/// The fastest simulated rate a service may have.
const MAX_RATE_PER_SERVICE: f64 = 1_000_000.0;
/// Poll intervals of the bounded waits.
const MODELS_POLL: Duration = Duration::from_millis(250);
const QUIET_POLL: Duration = Duration::from_millis(500);
/// Models unchanged this long count as settled (see [`WarmupWatch`]).
const MODELS_STABLE_FOR: Duration = Duration::from_secs(3);
/// After a phase, the alert listing is read until two reads this far apart agree (the service
/// stores counts every 250 ms), for at most [`SETTLE_MAX`].
const SETTLE_POLL: Duration = Duration::from_millis(300);
const SETTLE_MAX: Duration = Duration::from_secs(5);
/// Alerts read after each incident batch: only the newest matters.
const NEWEST_LIMIT: usize = 10;
/// Incident batches remembered to place a first alert the service stored late.
const RECENT_BATCHES: usize = 64;

/// Options of `log-simulator alert-drill`. `--url`, `--seed`, `--start-time`, `--retries`,
/// `--timeout`, `--json` and `--quiet` are shared with the plain run ([`Args`]).
#[derive(Debug, Clone, clap::Args)]
pub struct DrillArgs {
    /// Services to simulate, comma-separated; each gets --rate logs per simulated second.
    #[arg(long, value_delimiter = ',', default_value = "web_server")]
    pub services: Vec<ServiceKind>,

    /// Simulated logs per second of each service: log timestamps advance at this rate, whatever
    /// the wall-clock speed.
    #[arg(long, default_value_t = DEFAULT_RATE_PER_SERVICE, value_parser = parse_drill_rate)]
    pub rate: f64,

    /// Logs per request; also the incident's resolution (one batch).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub batch: u32,

    /// Requests in flight during the warm-up and the normal phase (the incident sends one at a
    /// time).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub concurrency: u32,

    /// Normal logs per service before the measured phases, so each service learns its model
    /// (2048 = the service's default RESERVOIR_SIZE); 0 skips the warm-up.
    #[arg(long, default_value_t = 2048)]
    pub warmup: u64,

    /// Longest wait after the warm-up for the models to be fitted on it.
    #[arg(long, default_value = "120s", value_parser = parse_seconds)]
    pub warmup_timeout: Duration,

    /// Simulated length of the normal phase: 90, 90s, 5m, 1h.
    #[arg(long, default_value = "1h", value_parser = parse_seconds)]
    pub normal: Duration,

    /// Simulated length of the incident.
    #[arg(long, default_value = "5m", value_parser = parse_seconds)]
    pub incident: Duration,

    /// Share of the incident's logs that are anomalies, above 0 and at most 1.
    #[arg(long, default_value_t = 0.02, value_parser = parse_share)]
    pub incident_share: f64,

    /// The incident's anomalies.
    #[arg(long, value_enum, default_value = "model_spike")]
    pub incident_kind: AnomalyKind,

    /// Longest wait before each measured phase for alerts still firing to resolve; 0: no wait.
    #[arg(long, default_value = "200s", value_parser = parse_wait)]
    pub quiet_timeout: Duration,
}

fn parse_drill_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 && rate <= MAX_RATE_PER_SERVICE => Ok(rate),
        _ => Err(format!(
            "a number of logs per simulated second above 0 and at most {MAX_RATE_PER_SERVICE}"
        )),
    }
}

fn parse_share(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(share) if share > 0.0 && share <= 1.0 => Ok(share),
        _ => Err("a number above 0 and at most 1".to_owned()),
    }
}

/// A duration as [`parse_seconds`] reads it, or `0` (no wait).
fn parse_wait(text: &str) -> Result<Duration, String> {
    if text.trim().parse::<f64>().is_ok_and(|x| x == 0.0) {
        return Ok(Duration::ZERO);
    }
    parse_seconds(text)
}

/// A phase of the drill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Warmup,
    Normal,
    Incident,
}

/// The three phases on the simulated clock, each starting where the last one ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plans {
    pub warmup: PhasePlan,
    pub normal: PhasePlan,
    pub incident: PhasePlan,
}

impl DrillArgs {
    /// The services, without repeats, in the order given.
    pub fn service_list(&self) -> Vec<ServiceKind> {
        let mut list = Vec::new();
        for service in &self.services {
            if !list.contains(service) {
                list.push(*service);
            }
        }
        list
    }

    /// Simulated logs per second, all services together.
    pub fn total_rate(&self) -> f64 {
        self.rate * self.service_list().len() as f64
    }

    /// The phases from `start`.
    ///
    /// # Errors
    /// A phase with no log or too many: the message names the option.
    pub fn plans(&self, start: DateTime<Utc>) -> Result<Plans, String> {
        let rate = self.total_rate();
        let services = self.service_list().len() as u64;
        let warmup_logs = self
            .warmup
            .checked_mul(services)
            .filter(|&logs| logs <= plan::MAX_LOGS_PER_PHASE)
            .ok_or_else(|| {
                format!(
                    "--warmup: {} logs per service is more than the {} one phase may hold",
                    self.warmup,
                    plan::MAX_LOGS_PER_PHASE
                )
            })?;
        let warmup = PhasePlan::for_logs(start, warmup_logs, rate);
        let normal = PhasePlan::for_duration(warmup.end(), self.normal, rate)
            .map_err(|error| format!("--normal: {error}"))?;
        let incident = PhasePlan::for_duration(normal.end(), self.incident, rate)
            .map_err(|error| format!("--incident: {error}"))?;
        Ok(Plans {
            warmup,
            normal,
            incident,
        })
    }

    /// The generator of `phase`: its clock, its mix, and a seed derived from the run's, so the
    /// same `--seed`, `--start-time` and options send the same logs.
    pub fn generator_config(&self, plans: &Plans, phase: Phase, seed: u64) -> GeneratorConfig {
        let services = self.service_list();
        match phase {
            Phase::Warmup => plans
                .warmup
                .generator_config(seed, &services, Mix::RoundRobinNormal),
            Phase::Normal => {
                plans
                    .normal
                    .generator_config(seed.wrapping_add(1), &services, Mix::Normal)
            }
            Phase::Incident => plans.incident.generator_config(
                seed.wrapping_add(2),
                &services,
                Mix::Incident {
                    kind: self.incident_kind,
                    share: self.incident_share,
                },
            ),
        }
    }
}

/// What stays the same through the drill.
struct Drill<'a> {
    drill: &'a DrillArgs,
    quiet: bool,
    client: IngestClient,
    services: Vec<ServiceKind>,
    seed: u64,
    models_url: Url,
    /// Every alert the listing can hold, the firing ones, and the newest few.
    all_alerts_url: Url,
    firing_alerts_url: Url,
    newest_alerts_url: Url,
}

/// What the drill has found so far; read after an interruption too.
struct DrillState {
    tally: Tally,
    report: DrillReport,
    progress: Progress,
}

/// Looks for the incident's first alert after each batch.
struct FirstAlertWatch<'a> {
    baseline: &'a AlertBaseline,
    first: Option<FirstAlert>,
    /// When the latest batches were sent and answered (at most [`RECENT_BATCHES`]).
    recent: VecDeque<BatchWindow>,
}

/// Runs the drill until its end or until `shutdown` resolves, and returns the summary with its
/// `alert_drill` figures (the phases not finished are `null`).
///
/// # Errors
/// Bad phase lengths, an HTTP client that cannot be built, or a service whose models or alerts
/// cannot be read (unreachable after the retries, an HTTP error, a body of the wrong shape).
pub async fn run(
    args: &Args,
    drill: &DrillArgs,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<Summary> {
    let seed = args.seed.unwrap_or_else(rand::random);
    let start = args.start_time.unwrap_or_else(Utc::now);
    let plans = drill.plans(start).map_err(anyhow::Error::msg)?;
    let policy = SendRetryPolicy {
        retries: args.retries,
        ..SendRetryPolicy::default()
    };
    let client = IngestClient::new(args.url.clone(), args.timeout, policy)
        .and_then(|client| client.with_token(args.token.as_deref()))
        .context("building the HTTP client")?;
    let alerts_url = |query: &str| {
        let mut url = endpoint(&args.url, "/api/v1/alerts");
        url.set_query(Some(query));
        url
    };
    let services = drill.service_list();
    let context = Drill {
        drill,
        quiet: args.quiet,
        models_url: endpoint(&args.url, "/api/v1/models"),
        all_alerts_url: alerts_url(&format!("limit={LISTING_LIMIT}")),
        firing_alerts_url: alerts_url(&format!("state=firing&limit={LISTING_LIMIT}")),
        newest_alerts_url: alerts_url(&format!("limit={NEWEST_LIMIT}")),
        client,
        services: services.clone(),
        seed,
    };
    let mut state = DrillState {
        tally: Tally::default(),
        report: DrillReport {
            services: services.iter().map(|s| s.name().to_owned()).collect(),
            rate_per_service: drill.rate,
            batch: drill.batch,
            concurrency: drill.concurrency,
            start_time: start,
            warmup: None,
            normal: None,
            incident: None,
            complete: false,
        },
        progress: Progress::new(args.quiet),
    };

    let started = Instant::now();
    let interrupted = {
        let phases = context.run_phases(&plans, &mut state);
        tokio::pin!(shutdown);
        tokio::select! {
            result = phases => { result?; false }
            () = &mut shutdown => true,
        }
    };
    state.progress.clear();
    let mut summary = state.tally.summary(RunInfo {
        url: args.url.to_string(),
        seed,
        elapsed: started.elapsed(),
        interrupted,
    });
    summary.alert_drill = Some(state.report);
    Ok(summary)
}

impl Drill<'_> {
    async fn run_phases(&self, plans: &Plans, state: &mut DrillState) -> anyhow::Result<()> {
        let concurrency = self.drill.concurrency as usize;

        // 1. Warm-up.
        let warmup = if plans.warmup.logs == 0 {
            WarmupReport {
                logs_per_service: 0,
                logs: 0,
                models: Default::default(),
                target_samples: 0,
                outcome: "skipped",
                waited_seconds: 0.0,
            }
        } else {
            let config = self.drill.generator_config(plans, Phase::Warmup, self.seed);
            let tally = self
                .stream("warm-up", &plans.warmup, config, concurrency, None, state)
                .await?;
            let waited = Instant::now();
            let (models, outcome) = self.wait_for_models(state).await?;
            WarmupReport {
                logs_per_service: self.drill.warmup,
                logs: tally.sent,
                models,
                target_samples: self.drill.warmup,
                outcome,
                waited_seconds: round3(waited.elapsed().as_secs_f64()),
            }
        };
        state.report.warmup = Some(warmup);

        // 2. Normal traffic.
        let quiet = self.wait_for_quiet(state).await?;
        let baseline = AlertBaseline::of(&self.list_alerts(&self.all_alerts_url).await?);
        let sending = Instant::now();
        let config = self.drill.generator_config(plans, Phase::Normal, self.seed);
        let tally = self
            .stream("normal", &plans.normal, config, concurrency, None, state)
            .await?;
        let wall = sending.elapsed().as_secs_f64();
        let after = self.settled_alerts().await?;
        let traffic = PhaseTraffic::new(
            plans.normal.start,
            plans.normal.end(),
            plans.normal.simulated_seconds(),
            &tally,
            wall,
        );
        let count = count_new_alerts(&baseline, &after, LISTING_LIMIT);
        state.report.normal = Some(NormalReport::new(traffic, PhaseAlerts::new(count, quiet)));

        // 3. The incident, one batch at a time, looking for a new alert after each.
        let quiet = self.wait_for_quiet(state).await?;
        let baseline = AlertBaseline::of(&self.list_alerts(&self.all_alerts_url).await?);
        let config = self
            .drill
            .generator_config(plans, Phase::Incident, self.seed);
        let mut watch = FirstAlertWatch {
            baseline: &baseline,
            first: None,
            recent: VecDeque::with_capacity(RECENT_BATCHES),
        };
        let sending = Instant::now();
        let tally = self
            .stream(
                "incident",
                &plans.incident,
                config,
                1,
                Some(&mut watch),
                state,
            )
            .await?;
        let wall = sending.elapsed().as_secs_f64();
        let after = self.settled_alerts().await?;
        let count = count_new_alerts(&baseline, &after, LISTING_LIMIT);
        let batch = u64::from(self.drill.batch);
        let time = watch
            .first
            .as_ref()
            .map(|first| time_to_alert(&plans.incident, batch, first));
        let kind = tally.by_kind.get(&self.drill.incident_kind).copied();
        state.report.incident = Some(IncidentReport {
            kind: self.drill.incident_kind.name(),
            share: self.drill.incident_share,
            traffic: PhaseTraffic::new(
                plans.incident.start,
                plans.incident.end(),
                plans.incident.simulated_seconds(),
                &tally,
                wall,
            ),
            injected: kind.map_or(0, |k| k.judged),
            detected: kind.map_or(0, |k| k.detected),
            alerts: PhaseAlerts::new(count, quiet),
            time_to_first_alert_seconds: time.map(|t| round3(t.seconds)),
            first_alert_seen_seconds: time.map(|t| round3(t.seen_seconds)),
            first_alert_timed_by: watch.first.as_ref().map(|first| {
                if first.by_started_at {
                    "started_at"
                } else {
                    "seen"
                }
            }),
            resolution_seconds: round3(resolution_seconds(&plans.incident, batch)),
            first_alert_service: watch.first.map(|first| first.service),
        });
        state.report.complete = true;
        Ok(())
    }

    /// Sends `plan.logs` logs of `config` in batches, `concurrency` requests at a time, folding
    /// each outcome into the run's tally; returns the phase's own tally. With a `watch`, looks for
    /// a new alert after each batch until one is seen (meaningful with `concurrency` 1 only:
    /// batches then go one after the other).
    async fn stream(
        &self,
        phase: &'static str,
        plan: &PhasePlan,
        config: GeneratorConfig,
        concurrency: usize,
        mut watch: Option<&mut FirstAlertWatch<'_>>,
        state: &mut DrillState,
    ) -> anyhow::Result<Tally> {
        let batch = u64::from(self.drill.batch);
        let total = plan.logs;
        let (sender, mut batches) = mpsc::channel::<Vec<GeneratedLog>>(concurrency.max(1));
        // Generating is CPU work: off the runtime's thread, streamed, never the whole phase.
        let producer = tokio::task::spawn_blocking(move || {
            let mut generator = Generator::new(config);
            let mut left = total;
            while left > 0 {
                let size = left.min(batch);
                let logs: Vec<GeneratedLog> = generator.by_ref().take(size as usize).collect();
                if sender.blocking_send(logs).is_err() {
                    return; // the phase was abandoned
                }
                left -= size;
            }
        });

        let started = Instant::now();
        let mut phase_tally = Tally::default();
        let mut in_flight = JoinSet::new();
        let mut next_index = 0u64;
        let mut generated_all = false;
        loop {
            while in_flight.len() < concurrency && !generated_all {
                match batches.recv().await {
                    Some(logs) => {
                        let client = self.client.clone();
                        let quiet = self.quiet;
                        let index = next_index;
                        next_index += 1;
                        in_flight.spawn(async move {
                            let sent = Utc::now();
                            let outcome = client
                                .send_generated(&logs, |notice| {
                                    if !quiet {
                                        warn_retry(notice);
                                    }
                                })
                                .await;
                            let window = BatchWindow {
                                index,
                                sent,
                                answered: Utc::now(),
                            };
                            (window, logs, outcome)
                        });
                    }
                    None => generated_all = true,
                }
            }
            let Some(joined) = in_flight.join_next().await else {
                break;
            };
            let (window, logs, outcome) = joined.context("sending a batch")?;
            state.tally.record(&logs, &outcome);
            phase_tally.record(&logs, &outcome);
            if let Err(error) = &outcome.result
                && !self.quiet
            {
                state.progress.clear();
                let what = if outcome.status.is_some() {
                    "rejected"
                } else {
                    "not delivered"
                };
                eprintln!("warning: batch of {} logs {what}: {error}", logs.len());
            }
            if let Some(watch) = watch.as_deref_mut()
                && watch.first.is_none()
            {
                if watch.recent.len() == RECENT_BATCHES {
                    watch.recent.pop_front();
                }
                watch.recent.push_back(window);
                let newest = self.list_alerts(&self.newest_alerts_url).await?;
                if let Some(alert) = first_new_alert(watch.baseline, &newest) {
                    let (batch_index, by_started_at) = batch_that_raised(
                        window.index,
                        alert.started_at,
                        watch.recent.make_contiguous(),
                    );
                    watch.first = Some(FirstAlert {
                        batch_index,
                        seen_after: window.index,
                        by_started_at,
                        service: alert.service.clone(),
                    });
                }
            }
            state
                .progress
                .update(|| progress_line(phase, plan, &phase_tally, started.elapsed()));
        }
        producer.await.context("generating logs")?;
        state
            .progress
            .finish(|| progress_line(phase, plan, &phase_tally, started.elapsed()));
        Ok(phase_tally)
    }

    /// Polls the models until each service's is fitted on the warm-up (or stops changing), at
    /// most `--warmup-timeout`. Returns the samples per service and how the wait ended.
    async fn wait_for_models(
        &self,
        state: &mut DrillState,
    ) -> anyhow::Result<(std::collections::BTreeMap<String, u64>, &'static str)> {
        let names: Vec<String> = self.services.iter().map(|s| s.name().to_owned()).collect();
        let mut watch = WarmupWatch::new(names.clone(), self.drill.warmup, MODELS_STABLE_FOR);
        let started = Instant::now();
        let mut noted = false;
        loop {
            let body = self.get_json(&self.models_url).await?;
            let samples = parse_models(&body)
                .map_err(|error| anyhow::anyhow!("GET {}: {error}", self.models_url))?;
            let status = watch.observe(started.elapsed(), &samples);
            let ours = samples
                .into_iter()
                .filter(|(service, _)| names.contains(service))
                .collect();
            let outcome = match status {
                WarmupStatus::Reached => Some("reached"),
                WarmupStatus::Stable => Some("stable"),
                WarmupStatus::Waiting if started.elapsed() >= self.drill.warmup_timeout => {
                    Some("timed_out")
                }
                WarmupStatus::Waiting => None,
            };
            if let Some(outcome) = outcome {
                if outcome == "timed_out" {
                    state.progress.note(&format!(
                        "warning: the models were not fitted on the warm-up within {:.0} s: {ours:?}",
                        self.drill.warmup_timeout.as_secs_f64()
                    ));
                }
                return Ok((ours, outcome));
            }
            if !noted {
                noted = true;
                state.progress.note(&format!(
                    "waiting up to {:.0} s for the models of {} to be fitted on the warm-up",
                    self.drill.warmup_timeout.as_secs_f64(),
                    names.join(", ")
                ));
            }
            tokio::time::sleep(MODELS_POLL).await;
        }
    }

    /// Waits up to `--quiet-timeout` for firing alerts to resolve, so a phase starts from
    /// silence when it can.
    async fn wait_for_quiet(&self, state: &mut DrillState) -> anyhow::Result<QuietWait> {
        let firing_before = firing_services(&self.list_alerts(&self.firing_alerts_url).await?);
        if firing_before.is_empty() {
            return Ok(QuietWait::default());
        }
        let timeout = self.drill.quiet_timeout;
        if timeout.is_zero() {
            return Ok(QuietWait {
                firing_at_start: firing_before.clone(),
                firing_before,
                waited_seconds: 0.0,
            });
        }
        state.progress.note(&format!(
            "waiting up to {:.0} s for the alerts of {} to resolve",
            timeout.as_secs_f64(),
            firing_before.join(", ")
        ));
        let started = Instant::now();
        let deadline = started + timeout;
        loop {
            tokio::time::sleep_until((Instant::now() + QUIET_POLL).min(deadline)).await;
            let firing = firing_services(&self.list_alerts(&self.firing_alerts_url).await?);
            if firing.is_empty() || Instant::now() >= deadline {
                return Ok(QuietWait {
                    firing_before,
                    firing_at_start: firing,
                    waited_seconds: started.elapsed().as_secs_f64(),
                });
            }
        }
    }

    /// The alert listing once the service has stored what the last batches caused: read until
    /// two reads [`SETTLE_POLL`] apart agree, at most [`SETTLE_MAX`].
    async fn settled_alerts(&self) -> anyhow::Result<Vec<AlertView>> {
        let deadline = Instant::now() + SETTLE_MAX;
        let mut last = self.list_alerts(&self.all_alerts_url).await?;
        loop {
            tokio::time::sleep(SETTLE_POLL).await;
            let next = self.list_alerts(&self.all_alerts_url).await?;
            if next == last || Instant::now() >= deadline {
                return Ok(next);
            }
            last = next;
        }
    }

    async fn list_alerts(&self, url: &Url) -> anyhow::Result<Vec<AlertView>> {
        let body = self.get_json(url).await?;
        parse_alerts(&body).map_err(|error| anyhow::anyhow!("GET {url}: {error}"))
    }

    async fn get_json(&self, url: &Url) -> anyhow::Result<serde_json::Value> {
        let quiet = self.quiet;
        self.client
            .get_json(url, |notice| {
                if !quiet {
                    warn_retry(notice);
                }
            })
            .await
            .map_err(anyhow::Error::msg)
    }
}

fn progress_line(phase: &str, plan: &PhasePlan, tally: &Tally, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    let rate = if secs >= 0.5 {
        format!("{:.0} logs/s", tally.sent as f64 / secs)
    } else {
        "- logs/s".to_owned()
    };
    format!(
        "{phase:<8} {:>6.1}s  sent {}/{} ({:.0} %)  simulated {:.0}/{:.0} s  flagged {}  {rate}",
        secs,
        tally.sent,
        plan.logs,
        tally.sent as f64 * 100.0 / plan.logs.max(1) as f64,
        plan.seconds_after(tally.sent),
        plan.simulated_seconds(),
        tally.flagged(),
    )
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::simulator::Command;

    fn drill_args(extra: &[&str]) -> DrillArgs {
        let args = Args::try_parse_from(
            ["log-simulator", "alert-drill"]
                .into_iter()
                .chain(extra.iter().copied()),
        )
        .expect("valid args");
        match args.command {
            Some(Command::AlertDrill(drill)) => drill,
            None => panic!("no drill"),
        }
    }

    #[test]
    fn the_defaults_are_an_hour_of_web_server_at_a_thousand_logs_a_second() {
        let drill = drill_args(&[]);
        assert_eq!(drill.service_list(), [ServiceKind::WebServer]);
        assert_eq!(drill.rate, 1000.0);
        assert_eq!(drill.incident_kind, AnomalyKind::ModelSpike);
        let plans = drill
            .plans("2024-01-15T10:00:00Z".parse().expect("time"))
            .expect("plans");
        assert_eq!(plans.warmup.logs, 2048);
        assert_eq!(plans.normal.logs, 3_600_000);
        assert_eq!(plans.incident.logs, 300_000);
        assert_eq!(plans.normal.start, plans.warmup.end());
        assert_eq!(plans.incident.start, plans.normal.end());
        assert_eq!(
            plans.incident.start.to_rfc3339(),
            "2024-01-15T11:00:02.048+00:00"
        );
    }

    #[test]
    fn every_service_gets_the_rate() {
        let drill = drill_args(&[
            "--services",
            "web_server,database,web_server",
            "--rate",
            "200",
        ]);
        assert_eq!(drill.total_rate(), 400.0);
        let plans = drill
            .plans("2024-01-15T10:00:00Z".parse().expect("time"))
            .expect("plans");
        assert_eq!(plans.normal.logs, 400 * 3600);
        assert_eq!(plans.warmup.logs, 2 * 2048);
    }

    #[test]
    fn impossible_phases_name_their_option() {
        let start = "2024-01-15T10:00:00Z".parse().expect("time");
        let error = drill_args(&["--rate", "1", "--incident", "100ms"])
            .plans(start)
            .expect_err("no log");
        assert!(error.starts_with("--incident"), "{error}");
        let error = drill_args(&["--rate", "1000000", "--normal", "1000h"])
            .plans(start)
            .expect_err("too many");
        assert!(error.starts_with("--normal"), "{error}");
    }

    #[test]
    fn quiet_timeout_may_be_zero() {
        assert_eq!(parse_wait("0"), Ok(Duration::ZERO));
        assert_eq!(parse_wait("90s"), Ok(Duration::from_secs(90)));
        assert!(parse_wait("-1").is_err());
        assert!(parse_share("0").is_err());
        assert!(parse_share("1").is_ok());
        assert!(parse_drill_rate("0").is_err());
        assert!(parse_drill_rate("2e6").is_err());
    }
}
