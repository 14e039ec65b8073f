//! The learning loop: every service learns its own baseline from its own normal logs, retrains on a
//! schedule or on request, and takes operator feedback, without ever pausing ingestion.
//!
//! - Cold start: each service keeps a bounded reservoir of recent logs that were not anomalies; when it
//!   holds `MIN_TRAIN_SAMPLES`, the service's first model is fitted automatically.
//! - `RETRAIN_INTERVAL_SECONDS` refits every tracked service on its reservoir.
//! - POST /api/v1/train fits one model per service of the posted logs (a job; one at a time, a second
//!   is refused with 409 while one is queued or running).
//! - Fitting runs on the blocking pool; models are published in one atomic swap (see
//!   [`crate::detect::models`]), saved as model files in `DATA_DIR/models`, and recorded in the store.
//! - Feedback: labeled-normal logs join the service's next training set, labeled anomalies are taken out
//!   of it, and with enough labels of both kinds the threshold is calibrated on them ([`calibrate`]).
//!
//! Memory is bounded: at most `MAX_TRACKED_SERVICES` reservoirs of at most `RESERVOIR_SIZE` logs,
//! each row at most `MAX_FEATURES_PER_SERVICE` features wide ([`sample`]; env.example gives the
//! measured bytes per row). When
//! the table is full, the slot of a service idle for `TRACKED_SERVICE_IDLE_SECONDS` goes to a new
//! one ([`tracked`]); until then, logs of services past the cap are still judged (rules, and a
//! model trained by a job), but do not feed automatic training; the first such service is logged
//! and all are counted.

pub mod calibrate;
pub mod dataset;
mod fit;
mod jobs;
mod persist;
pub mod reservoir;
pub mod sample;
mod tracked;

pub use jobs::JobRefused;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::detect::baseline::Sample;
use crate::detect::models::ModelSource;
use crate::detect::{Detector, DetectorKind, JudgedLog};
use crate::forest::{Contamination, ForestError, ModelFileError};
use crate::learn::dataset::DatasetError;
use crate::learn::fit::raw_log_of;
use crate::learn::sample::ServiceSample;
use crate::learn::tracked::TrackedServices;
use crate::metrics::Metrics;
use crate::parse::Parser;
use crate::store::{FeedbackRecord, Store, StoreError, TrainingLock};
use crate::sync::lock;
use crate::telemetry::spawn_blocking_in_span;

/// One in this many logs the model flagged joins its service's sample (see [`Learner::observe`]).
const FLAGGED_SAMPLE_EVERY: u64 = 10;

/// Training samples from which a model's flags are trusted to down-weight logs in the sample.
const MATURE_MODEL_SAMPLES: u64 = 400;

/// What the learning loop needs from the settings (`Settings::learner_config`).
#[derive(Debug, Clone)]
pub struct LearnerConfig {
    pub min_train_samples: usize,
    pub n_estimators: usize,
    pub contamination: Contamination,
    pub seed: u64,
    pub reservoir_size: usize,
    /// `MAX_FEATURES_PER_SERVICE`: distinct feature names one service's sample (and a training
    /// job's group) may hold.
    pub max_features_per_service: usize,
    /// `MAX_PATTERNS_PER_REQUEST`: distinct regex patterns in one training request.
    pub max_patterns_per_request: usize,
    pub max_tracked_services: usize,
    /// `TRACKED_SERVICE_IDLE_SECONDS`: when the table is full, a service idle this long gives
    /// its slot to a new one.
    pub tracked_service_idle: Duration,
    /// `DATA_DIR`: model files go in its `models` directory, their paths are stored relative to it.
    pub data_dir: PathBuf,
    /// The share of normal logs a service's baseline may flag (`FALSE_ALARM_BUDGET`).
    pub false_alarm_budget: f64,
}

/// Why a service's model could not be fitted, saved or loaded.
#[derive(Debug, thiserror::Error)]
pub enum LearnError {
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    #[error(transparent)]
    Forest(#[from] ForestError),
    #[error("the baseline cannot be written: {0}")]
    Baseline(#[source] serde_json::Error),
    #[error("reading feedback: {0}")]
    Feedback(#[source] StoreError),
    #[error("creating the models directory: {0}")]
    ModelDirectory(#[source] std::io::Error),
    #[error(transparent)]
    ModelFile(#[from] ModelFileError),
    #[error("background task failed: {0}")]
    Background(#[from] tokio::task::JoinError),
    #[error("recording the models: {0}")]
    Record(#[source] StoreError),
    /// The fit succeeded but its models could not be saved, so none of them was applied.
    #[error("not applied: {0}")]
    NotSaved(String),
}

/// What training one service produced.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceReport {
    pub service: String,
    pub samples: usize,
    pub features: Vec<String>,
    pub threshold: f64,
    pub calibrated_from_feedback: bool,
    pub feedback_normal_added: usize,
    pub feedback_anomalies_excluded: usize,
    /// Sample rows the baseline left out of the forest as outliers.
    pub outliers_left_out: usize,
    pub duration_ms: f64,
}

/// Owns the reservoirs and all training.
#[derive(Debug)]
pub struct Learner {
    config: LearnerConfig,
    parser: Arc<Parser>,
    detector: Arc<Detector>,
    store: Store,
    reservoirs: Mutex<TrackedServices>,
    /// Serialises fits: one at a time, whether a job, an automatic first fit or a scheduled refit.
    training: tokio::sync::Mutex<()>,
    /// The job queued or running, if any.
    active_job: Mutex<Option<String>>,
    auto_in_flight: Mutex<HashSet<String>>,
    /// Shared store: the version of each service's model this replica serves.
    shared_versions: Mutex<HashMap<String, i64>>,
    last_trained: Mutex<Option<DateTime<Utc>>>,
    untracked_logs: AtomicU64,
    warned_untracked: AtomicBool,
    /// Features left out of samples for `MAX_FEATURES_PER_SERVICE`.
    features_beyond_width: AtomicU64,
    warned_width: AtomicBool,
    /// Training durations and outcomes (`/metrics`).
    metrics: Arc<Metrics>,
}

impl Learner {
    pub fn new(
        config: LearnerConfig,
        parser: Arc<Parser>,
        detector: Arc<Detector>,
        store: Store,
        metrics: Arc<Metrics>,
    ) -> Self {
        let reservoirs =
            TrackedServices::new(config.max_tracked_services, config.tracked_service_idle);
        Self {
            config,
            parser,
            detector,
            store,
            reservoirs: Mutex::new(reservoirs),
            training: tokio::sync::Mutex::new(()),
            active_job: Mutex::new(None),
            auto_in_flight: Mutex::new(HashSet::new()),
            shared_versions: Mutex::new(HashMap::new()),
            last_trained: Mutex::new(None),
            untracked_logs: AtomicU64::new(0),
            warned_untracked: AtomicBool::new(false),
            features_beyond_width: AtomicU64::new(0),
            warned_width: AtomicBool::new(false),
            metrics,
        }
    }

    /// When a model was last published (trained or loaded).
    pub fn last_trained(&self) -> Option<DateTime<Utc>> {
        *lock(&self.last_trained)
    }

    /// Logs not sampled because `MAX_TRACKED_SERVICES` was reached.
    pub fn untracked_logs(&self) -> u64 {
        self.untracked_logs.load(Ordering::Relaxed)
    }

    /// Features left out of training samples because their service's sample already held
    /// `MAX_FEATURES_PER_SERVICE` other names.
    pub fn features_beyond_width(&self) -> u64 {
        self.features_beyond_width.load(Ordering::Relaxed)
    }

    /// Counts features left out for the width, and says so once.
    fn left_out_for_width(&self, service: &str, left_out: usize) {
        if left_out == 0 {
            return;
        }
        self.features_beyond_width
            .fetch_add(left_out as u64, Ordering::Relaxed);
        if !self.warned_width.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                service,
                max = self.config.max_features_per_service,
                "A service's training sample holds MAX_FEATURES_PER_SERVICE feature names; \
                 further names are left out of it (counted in /api/v1/metrics as \
                 features_beyond_service_width)."
            );
        }
    }

    /// Tracked-service slots given to new services after their holders went idle.
    pub fn tracked_slots_given_back(&self) -> u64 {
        lock(&self.reservoirs).given_back()
    }

    /// Feeds the logs of a batch that broke no rule to their services' reservoirs and starts an
    /// automatic fit for every service that is due one (see [`Self::wants_automatic_fit`]).
    ///
    /// Logs the model flagged join the sample at a tenth of the weight of the others
    /// ([`FLAGGED_SAMPLE_EVERY`]): a lone anomaly must not become normal, but a change that
    /// persists (a new endpoint, a new region) has to be learned after a few refits. The
    /// baseline's cuts come from robust statistics, not from a quantile of the sample, so the
    /// sample need not keep its tail for the cuts to stay put.
    pub fn observe(self: &Arc<Self>, judged: &[JudgedLog]) {
        let mut ready = Vec::new();
        {
            let now = Instant::now();
            let mut reservoirs = lock(&self.reservoirs);
            let broke_no_rule = |log: &&JudgedLog| log.verdict.violations.is_empty();
            for log in judged.iter().filter(broke_no_rule) {
                if log.parsed.features.is_empty() {
                    continue;
                }
                let service = log.raw.service.as_str();
                let capacity = self.config.reservoir_size;
                let width = self.config.max_features_per_service;
                let seed = self.config.seed;
                let Some(reservoir) =
                    reservoirs.track(service, now, || ServiceSample::new(capacity, width, seed))
                else {
                    self.untracked_logs.fetch_add(1, Ordering::Relaxed);
                    if !self.warned_untracked.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            service,
                            max = self.config.max_tracked_services,
                            "MAX_TRACKED_SERVICES reached and no tracked service idle for \
                             TRACKED_SERVICE_IDLE_SECONDS; this service is judged but does not \
                             learn automatically until a slot is free."
                        );
                    }
                    continue;
                };
                // Only a model fitted on a fair sample down-weights what it flags: a first
                // model's mistakes (a 3 % status it had not seen yet) would otherwise keep
                // themselves out of the sample for good.
                let mature = || {
                    self.detector
                        .models
                        .get(service)
                        .is_some_and(|model| model.training_samples >= MATURE_MODEL_SAMPLES)
                };
                let down_weight = (log.verdict.detector == Some(DetectorKind::Model) && mature())
                    .then_some(FLAGGED_SAMPLE_EVERY);
                let left_out = reservoir.offer(down_weight, &log.parsed);
                self.left_out_for_width(service, left_out);
                if self.wants_automatic_fit(service, reservoir.len()) {
                    ready.push(service.to_owned());
                }
            }
        }
        if ready.is_empty() {
            return;
        }
        ready.sort();
        ready.dedup();
        let mut in_flight = lock(&self.auto_in_flight);
        for service in ready {
            if in_flight.insert(service.clone()) {
                let learner = Arc::clone(self);
                tokio::spawn(async move {
                    // A fit that fell due while this one ran was not started by `observe`:
                    // check again before giving up the turn. A fit that failed is not retried
                    // here (a service without a common feature would spin); the next log
                    // offers it again, as before.
                    loop {
                        // One replica fits a service at a time; the others load its model.
                        let Some(_turn) = learner.automatic_fit_turn(&service).await else {
                            lock(&learner.auto_in_flight).remove(&service);
                            break;
                        };
                        let published = learner
                            .refit_from_reservoir(&service, ModelSource::Auto)
                            .await;
                        let held = lock(&learner.reservoirs)
                            .get(&service)
                            .map_or(0, ServiceSample::len);
                        let mut in_flight = lock(&learner.auto_in_flight);
                        if !published || !learner.wants_automatic_fit(&service, held) {
                            in_flight.remove(&service);
                            break;
                        }
                    }
                });
            }
        }
    }

    /// Refits every tracked service with enough samples on its reservoir (the periodic retrain).
    pub async fn refit_all(self: &Arc<Self>) {
        let services: Vec<String> = {
            let reservoirs = lock(&self.reservoirs);
            reservoirs
                .iter()
                .filter(|(_, r)| r.len() >= self.config.min_train_samples)
                .map(|(service, _)| service.clone())
                .collect()
        };
        for service in services {
            let _published = self.refit_from_reservoir(&service, ModelSource::Auto).await;
        }
    }

    /// Runs [`Self::refit_all`] every `interval` until the task is dropped.
    pub async fn run_periodic(self: Arc<Self>, interval: Duration) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            self.refit_all().await;
        }
    }

    /// Whether a service's reservoir, now holding `held` logs, should be fitted automatically:
    /// its first model once it holds `MIN_TRAIN_SAMPLES`, then again each time the reservoir has
    /// doubled since the automatic model was fitted, until it is full. A first model fitted on 50
    /// logs is a rough baseline (the simulator's normal traffic saw 7 % false positives with it);
    /// a few cheap early refits make it a good one within minutes instead of at the first
    /// periodic retrain. Models from train jobs and files are never replaced this way.
    fn wants_automatic_fit(&self, service: &str, held: usize) -> bool {
        match self.detector.models.get(service) {
            None => held >= self.config.min_train_samples,
            Some(model) => {
                let fitted_on = usize::try_from(model.training_samples).unwrap_or(usize::MAX);
                let capacity = self.config.reservoir_size;
                model.source == ModelSource::Auto
                    && fitted_on < capacity
                    && held >= fitted_on.max(1).saturating_mul(2).min(capacity)
            }
        }
    }

    /// The right to fit `service` automatically now: `None` when another replica is fitting it,
    /// or has just published a model that leaves this one no reason to. A store that cannot
    /// say does not stop the fit.
    async fn automatic_fit_turn(&self, service: &str) -> Option<TrainingLock> {
        if !self.store.is_shared() {
            return Some(TrainingLock::unshared());
        }
        match self.store.try_lock_training(service).await {
            Ok(Some(turn)) => {
                if let Err(error) = self.sync_shared_models().await {
                    tracing::warn!(%error, "Cannot read the models other replicas published.");
                }
                let held = lock(&self.reservoirs)
                    .get(service)
                    .map_or(0, ServiceSample::len);
                self.wants_automatic_fit(service, held).then_some(turn)
            }
            Ok(None) => None,
            Err(error) => {
                tracing::warn!(%error, service, "Cannot take the training lock; fitting anyway.");
                Some(TrainingLock::unshared())
            }
        }
    }

    /// Refits `service` on its reservoir; whether a model was published.
    async fn refit_from_reservoir(self: &Arc<Self>, service: &str, source: ModelSource) -> bool {
        let _turn = self.training.lock().await;
        let rows = {
            let mut reservoirs = lock(&self.reservoirs);
            match reservoirs.get_mut(service) {
                Some(reservoir) => reservoir.take_snapshot(),
                None => return false,
            }
        };
        match self
            .fit_and_publish(vec![(service.to_owned(), rows)], source, None)
            .await
        {
            Ok(reports) => {
                for report in reports {
                    tracing::info!(
                        service = report.service,
                        samples = report.samples,
                        features = ?report.features,
                        "Service model trained from its own recent logs."
                    );
                }
                true
            }
            Err(failures) => {
                for (service, why) in failures {
                    tracing::warn!(service, reason = %why, "Automatic training failed.");
                }
                false
            }
        }
    }

    /// Fits one model per group on the blocking pool, then publishes all of them in one swap and
    /// persists them. Services whose group cannot be trained are returned as failures, unless at
    /// least one other service succeeded, in which case they are reported in the log.
    async fn fit_and_publish(
        self: &Arc<Self>,
        groups: Vec<(String, Vec<Sample>)>,
        source: ModelSource,
        job_id: Option<String>,
    ) -> Result<Vec<ServiceReport>, Vec<(String, LearnError)>> {
        let started = Instant::now();
        let outcome = self.fit_and_publish_unmetered(groups, source, job_id).await;
        let trigger = match source {
            ModelSource::TrainJob => "job",
            ModelSource::Auto | ModelSource::File => "automatic",
        };
        self.metrics
            .observe_training(trigger, outcome.is_ok(), started.elapsed());
        outcome
    }

    async fn fit_and_publish_unmetered(
        self: &Arc<Self>,
        groups: Vec<(String, Vec<Sample>)>,
        source: ModelSource,
        job_id: Option<String>,
    ) -> Result<Vec<ServiceReport>, Vec<(String, LearnError)>> {
        let mut feedback: HashMap<String, Vec<FeedbackRecord>> = HashMap::new();
        for (service, _) in &groups {
            match self.store.feedback_for_service(service.clone()).await {
                Ok(records) => {
                    feedback.insert(service.clone(), records);
                }
                Err(error) => {
                    return Err(vec![(service.clone(), LearnError::Feedback(error))]);
                }
            }
        }
        let learner = Arc::clone(self);
        let job = job_id.clone();
        let fitted = spawn_blocking_in_span(move || {
            groups
                .into_iter()
                .map(|(service, rows)| {
                    let labels = feedback.remove(&service).unwrap_or_default();
                    let result = learner.fit_service(&service, rows, &labels, source, job.clone());
                    (service, result)
                })
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|error| vec![("training".to_owned(), LearnError::Background(error))])?;
        let mut models = Vec::new();
        let mut reports = Vec::new();
        let mut failures = Vec::new();
        for (service, result) in fitted {
            match result {
                Ok((model, report)) => {
                    models.push(model);
                    reports.push(report);
                }
                Err(why) => failures.push((service, why)),
            }
        }
        if models.is_empty() {
            return Err(failures);
        }
        for (service, why) in &failures {
            tracing::warn!(service, reason = %why, "Service skipped in training.");
        }
        if let Err(error) = self.persist_all(&models).await {
            tracing::error!(%error, "The fitted models could not be saved; the previous ones still serve.");
            return Err(models
                .iter()
                .map(|model| {
                    (
                        model.service.clone(),
                        LearnError::NotSaved(error.to_string()),
                    )
                })
                .collect());
        }
        self.detector.models.replace_all(models);
        *lock(&self.last_trained) = Some(Utc::now());
        Ok(reports)
    }

    /// The share of labeled logs the current rules and models classify as the operators did.
    pub async fn model_accuracy(self: &Arc<Self>) -> Result<Option<f64>, StoreError> {
        let feedback = self.store.all_feedback().await?;
        if feedback.is_empty() {
            return Ok(None);
        }
        let learner = Arc::clone(self);
        let accuracy = spawn_blocking_in_span(move || {
            let models = learner.detector.models.snapshot();
            let mut row = Vec::new();
            let mut agree = 0usize;
            let mut judged = 0usize;
            for record in &feedback {
                let Some(raw) = raw_log_of(record) else {
                    continue;
                };
                let Ok(parsed) = learner.parser.parse(&raw) else {
                    continue;
                };
                let verdict = learner
                    .detector
                    .evaluate(&models, &raw.service, &parsed, &mut row);
                judged += 1;
                agree += usize::from(verdict.is_anomaly() == record.is_anomaly);
            }
            (judged > 0).then(|| agree as f64 / judged as f64)
        })
        .await
        .map_err(|error| StoreError::Background(error.to_string()))?;
        Ok(accuracy)
    }
}
