//! `log-simulator`: sends realistic logs with labeled anomalies to the ingest endpoint and reports
//! how well the service caught them.
//!
//! [`generate`] makes the logs (the original simulator's three kinds), [`client`] posts them in
//! batches with retries, [`summary`] counts what came back against the simulator's own labels. The
//! binary `src/bin/log-simulator.rs` only parses [`Args`] and calls [`main`].
//!
//! `log-simulator alert-drill` ([`drill`]) is the high-volume mode: simulated hours of normal
//! traffic and an incident, reporting the alerts the service raised (issue #18).

pub mod client;
pub mod drill;
pub mod generate;
pub mod summary;

use std::future::Future;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, TimeDelta, Utc};
use clap::{CommandFactory, FromArgMatches, Parser};
use reqwest::Url;
use tokio::time::Instant;

use crate::simulator::client::{IngestClient, RetryNotice, SendRetryPolicy};
use crate::simulator::drill::DrillArgs;
use crate::simulator::generate::{Generator, GeneratorConfig, ServiceKind};
use crate::simulator::summary::{RunInfo, Summary, Tally};

/// Where logs go when neither `--url` nor `MODEL_SERVER_URL` says.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8000/api/v1/stream/multi-source";

/// Logs per second when neither `--rate` nor `INTERVAL` is given.
pub const DEFAULT_RATE: f64 = 10.0;

/// Command-line options. Environment variables are the ones the original's Helm Job set.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "log-simulator",
    version,
    about = "Send realistic logs with labeled anomalies to aioops-mcp-iforest and report precision/recall.",
    after_help = "Exit status: 0 when the run completed; 1 when the service could not be reached at \
                  the end of the run or judged no batch at all (alert-drill: also when its models \
                  or alerts could not be read); 2 for bad options."
)]
pub struct Args {
    /// A mode other than the plain run.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Ingest endpoint (POST /api/v1/stream/multi-source).
    #[arg(long, env = "MODEL_SERVER_URL", default_value = DEFAULT_URL, value_parser = parse_url, global = true)]
    pub url: Url,

    /// The service's access token (its API_TOKEN), sent as `Authorization: Bearer …`.
    #[arg(long, env = "API_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,

    /// Logs per second, all services together [default: 10, or batch/INTERVAL].
    #[arg(long, value_parser = parse_rate)]
    pub rate: Option<f64>,

    /// Seconds between two batches, as the original's Helm Job set it; --rate wins over it.
    #[arg(long, env = "INTERVAL", value_parser = parse_seconds, hide_env_values = true)]
    pub interval: Option<Duration>,

    /// Logs per request.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub batch: u32,

    /// Stop after this long: 90, 90s, 1500ms, 5m or 1h [default: run until Ctrl-C or --count].
    #[arg(long, value_parser = parse_seconds, conflicts_with = "count")]
    pub duration: Option<Duration>,

    /// Stop after sending this many logs.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,

    /// Share of logs that are injected anomalies, 0 to 1.
    #[arg(long, default_value_t = 0.05, value_parser = parse_ratio)]
    pub anomaly_ratio: f64,

    /// Seed of the generator: the same seed (and --start-time) sends the same logs [default: random].
    #[arg(long, global = true)]
    pub seed: Option<u64>,

    /// Services to simulate, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "web_server,database,application"
    )]
    pub services: Vec<ServiceKind>,

    /// Normal logs per service sent before any anomaly, so the service can learn a baseline first
    /// (it fits a model after MIN_TRAIN_SAMPLES normal logs of a service).
    #[arg(long, default_value_t = 0)]
    pub warmup: u64,

    /// Timestamp of the first log (RFC 3339) [default: now]; later logs follow at 1/rate apart.
    #[arg(long, global = true)]
    pub start_time: Option<DateTime<Utc>>,

    /// Retries of a batch after a connection error, timeout, 408, 429 or 5xx.
    #[arg(long, default_value_t = 5, global = true)]
    pub retries: u32,

    /// Timeout of one request.
    #[arg(long, default_value = "10s", value_parser = parse_seconds, global = true)]
    pub timeout: Duration,

    /// Print the summary as one JSON object.
    #[arg(long, global = true)]
    pub json: bool,

    /// No progress line and no retry warnings; only the summary (and fatal errors).
    #[arg(long, short, global = true)]
    pub quiet: bool,
}

/// The simulator's modes besides the plain run.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// High-volume alerting drill: warm-up, an hour of simulated normal traffic (alerts per
    /// simulated hour), then an incident (time to the first alert). Logs are sent as fast as the
    /// service takes them; their timestamps follow the simulated clock.
    AlertDrill(DrillArgs),
}

fn parse_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("not a URL: {e}"))?;
    match url.scheme() {
        "http" | "https" => Ok(url),
        other => Err(format!("scheme {other:?}: use http or https")),
    }
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err("a number of logs per second above 0".to_owned()),
    }
}

fn parse_ratio(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(ratio) if (0.0..=1.0).contains(&ratio) => Ok(ratio),
        _ => Err("a number from 0 to 1".to_owned()),
    }
}

/// `90`, `90s`, `1.5s`, `1500ms`, `5m`, `1h`.
fn parse_seconds(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| c.is_ascii_alphabetic()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let scale = match unit {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(format!("unit {unit:?}: use ms, s, m or h")),
    };
    match number.trim().parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 => {
            Duration::try_from_secs_f64(x * scale).map_err(|e| format!("out of range: {e}"))
        }
        _ => Err("a positive duration such as 30, 30s, 500ms or 5m".to_owned()),
    }
}

impl Args {
    /// Parses the command line as [`Parser::try_parse_from`] does, and also refuses what clap
    /// alone cannot: an option of the plain run given with a mode (`--count 5 alert-drill`), which
    /// the mode would silently ignore, and drill phases with no log or too many. The shared
    /// options (`--url`, `--seed`, …) may come before or after the mode.
    ///
    /// # Errors
    /// A usage error (exit status 2), as clap reports its own.
    pub fn try_parse_checked<I, T>(argv: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let mut command = Self::command();
        let matches = command.try_get_matches_from_mut(argv)?;
        let args = Self::from_arg_matches(&matches)?;
        let Some(Command::AlertDrill(drill)) = &args.command else {
            return Ok(args);
        };
        let plain = command.get_arguments().find(|arg| {
            !arg.is_global_set()
                && matches.value_source(arg.get_id().as_str())
                    == Some(clap::parser::ValueSource::CommandLine)
        });
        if let Some(arg) = plain {
            let name = arg
                .get_long()
                .map_or_else(|| arg.get_id().to_string(), |long| format!("--{long}"));
            return Err(command.error(
                clap::error::ErrorKind::ArgumentConflict,
                format!(
                    "{name} is an option of the plain run; alert-drill has its own options, \
                     given after it (log-simulator alert-drill --help)"
                ),
            ));
        }
        if let Err(message) = drill.plans(Utc::now()) {
            return Err(command.error(clap::error::ErrorKind::ValueValidation, message));
        }
        Ok(args)
    }

    /// Time between two batches: batch/rate, else INTERVAL, else batch/DEFAULT_RATE.
    pub fn batch_interval(&self) -> Duration {
        match (self.rate, self.interval) {
            (Some(rate), _) => Duration::from_secs_f64(f64::from(self.batch) / rate),
            (None, Some(interval)) => interval,
            (None, None) => Duration::from_secs_f64(f64::from(self.batch) / DEFAULT_RATE),
        }
    }

    /// What the generator needs from the options; `now` stands in for a missing `--start-time`.
    /// Logs are spaced `batch_interval / batch` apart on the logical clock.
    pub fn generator_config(&self, seed: u64, now: DateTime<Utc>) -> GeneratorConfig {
        let step =
            TimeDelta::from_std(self.batch_interval() / self.batch).unwrap_or(TimeDelta::MAX);
        GeneratorConfig {
            seed,
            services: self.service_list(),
            anomaly_ratio: self.anomaly_ratio,
            warmup_per_service: self.warmup,
            start: self.start_time.unwrap_or(now),
            step,
            only_kind: None,
        }
    }

    /// The services, without repeats, in the order given.
    fn service_list(&self) -> Vec<ServiceKind> {
        let mut list = Vec::new();
        for service in &self.services {
            if !list.contains(service) {
                list.push(*service);
            }
        }
        list
    }
}

/// Runs the simulator until `--count` logs, `--duration`, or `shutdown` resolves, then returns the
/// summary. Progress and retry warnings go to stderr unless `--quiet`.
///
/// # Errors
/// Only when the HTTP client cannot be built; an unreachable service is reported in the summary.
pub async fn run(args: &Args, shutdown: impl Future<Output = ()>) -> anyhow::Result<Summary> {
    let seed = args.seed.unwrap_or_else(rand::random);
    let interval = args.batch_interval();
    let mut generator = Generator::new(args.generator_config(seed, Utc::now()));
    let policy = SendRetryPolicy {
        retries: args.retries,
        ..SendRetryPolicy::default()
    };
    let client = IngestClient::new(args.url.clone(), args.timeout, policy)
        .and_then(|client| client.with_token(args.token.as_deref()))
        .context("building the HTTP client")?;
    let mut progress = Progress::new(args.quiet);

    let started = Instant::now();
    let deadline = args.duration.map(|d| started + d);
    let mut tally = Tally::default();
    let mut next_batch = started;
    let mut interrupted = false;
    tokio::pin!(shutdown);

    loop {
        let left = args.count.map(|count| count - tally.sent);
        if left == Some(0) || deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let size = left.map_or(args.batch, |left| left.min(u64::from(args.batch)) as u32);
        let batch: Vec<_> = generator.by_ref().take(size as usize).collect();
        let raw: Vec<_> = batch.iter().map(|g| g.log.clone()).collect();
        let quiet = args.quiet;
        let send = client.send(&raw, |notice| {
            if !quiet {
                progress.clear();
                warn_retry(notice);
            }
        });
        let outcome = tokio::select! {
            outcome = send => outcome,
            () = &mut shutdown => { interrupted = true; break; }
        };
        tally.record(&batch, &outcome);
        if let (Err(error), Some(_)) = (&outcome.result, outcome.status) {
            if !args.quiet {
                progress.clear();
                eprintln!("warning: batch of {size} logs rejected: {error}");
            }
        } else if let (Err(error), None) = (&outcome.result, outcome.status)
            && !args.quiet
        {
            progress.clear();
            eprintln!("warning: batch of {size} logs not delivered: {error}");
        }
        progress.update(|| tally.progress_line(started.elapsed()));

        // Keep the pace without catching up in a rush after a slow batch.
        next_batch = (next_batch + interval).max(Instant::now());
        let wake = deadline.map_or(next_batch, |d| next_batch.min(d));
        if args.count.is_some_and(|count| tally.sent >= count) {
            break;
        }
        tokio::select! {
            () = tokio::time::sleep_until(wake) => {}
            () = &mut shutdown => { interrupted = true; break; }
        }
    }
    progress.finish(|| tally.progress_line(started.elapsed()));
    Ok(tally.summary(RunInfo {
        url: client.url().to_string(),
        seed,
        elapsed: started.elapsed(),
        interrupted,
    }))
}

fn warn_retry(notice: &RetryNotice) {
    eprintln!(
        "warning: attempt {}/{} failed: {}; retrying in {:.1}s",
        notice.attempt,
        notice.max_attempts,
        notice.error,
        notice.delay.as_secs_f64()
    );
}

/// Whether a run went well enough to exit 0, and if not, why.
///
/// # Errors
/// The message for the operator when the service was down at the end of the run, or judged nothing.
pub fn verdict(summary: &Summary) -> Result<(), String> {
    if !summary.reachable_at_end {
        return Err(format!(
            "the service at {} could not be reached at the end of the run ({} of {} batches not \
             delivered); last error: {}",
            summary.url,
            summary.batches.undelivered,
            summary.batches.sent,
            summary.last_error.as_deref().unwrap_or("none")
        ));
    }
    if summary.batches.sent > 0 && summary.batches.judged == 0 {
        return Err(format!(
            "the service at {} judged none of {} batches; last error: {}",
            summary.url,
            summary.batches.sent,
            summary.last_error.as_deref().unwrap_or("none")
        ));
    }
    Ok(())
}

/// The progress line: redrawn in place on a terminal, one line every 10 s otherwise (a Job's log).
struct Progress {
    enabled: bool,
    tty: bool,
    last: Option<Instant>,
    drawn: bool,
}

impl Progress {
    fn new(quiet: bool) -> Self {
        Self {
            enabled: !quiet,
            tty: std::io::stderr().is_terminal(),
            last: None,
            drawn: false,
        }
    }

    /// Redraws the line with `line()` at most every 200 ms on a terminal, every 10 s otherwise.
    fn update(&mut self, line: impl FnOnce() -> String) {
        if !self.enabled {
            return;
        }
        let every = if self.tty {
            Duration::from_millis(200)
        } else {
            Duration::from_secs(10)
        };
        if self.last.is_some_and(|last| last.elapsed() < every) {
            return;
        }
        self.last = Some(Instant::now());
        self.draw(&line());
    }

    fn draw(&mut self, line: &str) {
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r\x1b[2K{line}");
            self.drawn = true;
        } else {
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
    }

    /// Erases the line so a warning starts on a clean line.
    fn clear(&mut self) {
        if self.drawn {
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
            self.drawn = false;
        }
    }

    /// One line of news (a wait that begins, a warning) on its own line, unless quiet.
    fn note(&mut self, message: &str) {
        if self.enabled {
            self.clear();
            eprintln!("{message}");
        }
    }

    /// The final state of the line, left on screen (terminals only; logs had their lines).
    fn finish(&mut self, line: impl FnOnce() -> String) {
        if self.enabled && self.tty {
            self.draw(&line());
            let _ = writeln!(std::io::stderr());
            self.drawn = false;
        }
        // The next phase's line starts afresh.
        self.last = None;
    }
}

/// The whole program: run, print the summary (text or JSON) on stdout, and choose the exit status.
pub fn main() -> ExitCode {
    let args = Args::try_parse_checked(std::env::args_os()).unwrap_or_else(|error| error.exit());
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: starting the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let shutdown = crate::signal::shutdown_signal();
    let result = runtime.block_on(async {
        match &args.command {
            Some(Command::AlertDrill(drill)) => drill::run(&args, drill, shutdown).await,
            None => run(&args, shutdown).await,
        }
    });
    let summary = match result {
        Ok(summary) => summary,
        Err(error) => {
            eprintln!("error: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    if args.json {
        match serde_json::to_string(&summary) {
            Ok(json) => println!("{json}"),
            Err(error) => {
                eprintln!("error: writing the summary: {error}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        print!("{summary}");
    }
    match verdict(&summary) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("log-simulator").chain(extra.iter().copied()))
            .expect("valid args")
    }

    #[test]
    fn shared_options_go_before_or_after_the_drill_and_plain_ones_not_before_it() {
        let parse = |argv: &[&str]| {
            Args::try_parse_checked(std::iter::once("log-simulator").chain(argv.iter().copied()))
        };
        for argv in [
            &["--seed", "3", "--url", "http://h:1/x", "alert-drill"][..],
            &["alert-drill", "--seed", "3", "--url", "http://h:1/x"],
        ] {
            let args = parse(argv).expect("valid");
            assert_eq!(args.seed, Some(3), "{argv:?}");
            assert_eq!(args.url.as_str(), "http://h:1/x");
            assert!(matches!(args.command, Some(Command::AlertDrill(_))));
        }
        let error = parse(&["--count", "5", "alert-drill"]).expect_err("plain option");
        assert_eq!(error.kind(), clap::error::ErrorKind::ArgumentConflict);
        assert!(error.to_string().contains("--count"), "{error}");
        let error =
            parse(&["alert-drill", "--rate", "1", "--normal", "100ms"]).expect_err("no log");
        assert!(error.to_string().contains("--normal"), "{error}");
        assert!(parse(&["--count", "5"]).is_ok());
    }

    #[test]
    fn durations_take_a_unit_or_mean_seconds() {
        assert_eq!(parse_seconds("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_seconds("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_seconds("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_seconds("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_seconds("1h"), Ok(Duration::from_secs(3600)));
        for bad in ["", "0", "-1", "5d", "soon", "nan", "inf"] {
            assert!(parse_seconds(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn rate_wins_over_interval_which_wins_over_the_default() {
        assert_eq!(
            args(&["--batch", "10", "--rate", "20", "--interval", "5"]).batch_interval(),
            Duration::from_millis(500)
        );
        assert_eq!(
            args(&["--interval", "5"]).batch_interval(),
            Duration::from_secs(5)
        );
        assert_eq!(
            args(&["--batch", "5"]).batch_interval(),
            Duration::from_millis(500)
        );
    }

    #[test]
    fn repeated_services_are_sent_once() {
        let parsed = args(&["--services", "database,web_server,database"]);
        assert_eq!(
            parsed.service_list(),
            [ServiceKind::Database, ServiceKind::WebServer]
        );
    }

    #[test]
    fn logs_are_spaced_by_the_pace_on_the_logical_clock() {
        let config = args(&["--batch", "10", "--rate", "100"])
            .generator_config(1, "2024-01-15T10:00:00Z".parse().expect("time"));
        assert_eq!(config.step, TimeDelta::milliseconds(10));
        assert_eq!(config.start.to_rfc3339(), "2024-01-15T10:00:00+00:00");
    }

    fn summary_with(batches_sent: u64, judged: u64, reachable: bool) -> Summary {
        let mut tally = Tally {
            batches: batches_sent,
            batches_judged: judged,
            last_batch_undelivered: !reachable,
            ..Tally::default()
        };
        tally.batches_undelivered = batches_sent - judged;
        tally.summary(summary::RunInfo {
            url: DEFAULT_URL.to_owned(),
            seed: 1,
            elapsed: Duration::from_secs(1),
            interrupted: false,
        })
    }

    #[test]
    fn a_run_fails_when_the_service_is_down_at_the_end_or_judged_nothing() {
        assert!(
            verdict(&summary_with(0, 0, true)).is_ok(),
            "nothing sent yet"
        );
        assert!(verdict(&summary_with(5, 4, true)).is_ok());
        let down = verdict(&summary_with(5, 4, false)).expect_err("down at the end");
        assert!(down.contains("could not be reached at the end"), "{down}");
        assert!(down.contains(DEFAULT_URL), "{down}");
        let none = verdict(&summary_with(3, 0, true)).expect_err("nothing judged");
        assert!(none.contains("judged none of 3 batches"), "{none}");
    }
}
