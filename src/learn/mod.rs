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
//! Memory is bounded: at most `MAX_TRACKED_SERVICES` reservoirs of at most `RESERVOIR_SIZE` logs. Logs
//! of services past the cap are still judged (rules, and a model trained by a job), but do not feed
//! automatic training; the first such service is logged and all are counted.

pub mod calibrate;
pub mod dataset;
pub mod reservoir;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};

use crate::detect::baseline::{Baseline, Sample, sample_of};
use crate::detect::models::{ModelSource, ServiceModel};
use crate::detect::rules::DEFAULT_SERVICE_KEY;
use crate::detect::{Detector, DetectorKind};
use crate::forest::{Contamination, IsolationForest, MaxSamples, ModelArtifact};
use crate::learn::calibrate::calibrate_offset;
use crate::learn::dataset::{build_training_set, matrix_of};
use crate::learn::reservoir::Reservoir;
use crate::parse::{FormatType, Parser, RawLog};
use crate::pipeline::JudgedLog;
use crate::settings::{ContaminationSetting, Settings};
use crate::store::{FeedbackRecord, ModelRecord, Store, StoreError, TrainingJobRecord};
use crate::sync::lock;
use crate::telemetry::spawn_blocking_in_span;

/// One in this many logs the model flagged joins its service's sample (see [`Learner::observe`]).
const FLAGGED_SAMPLE_EVERY: u64 = 10;

/// Training samples from which a model's flags are trusted to down-weight logs in the sample.
const MATURE_MODEL_SAMPLES: u64 = 400;

/// What the learning loop needs from the settings.
#[derive(Debug, Clone)]
pub struct LearnerConfig {
    pub min_train_samples: usize,
    pub n_estimators: usize,
    pub contamination: ContaminationSetting,
    pub seed: u64,
    pub reservoir_size: usize,
    pub max_tracked_services: usize,
    pub models_dir: PathBuf,
    /// The share of normal logs a service's baseline may flag (`FALSE_ALARM_BUDGET`).
    pub false_alarm_budget: f64,
}

impl LearnerConfig {
    pub fn from_settings(settings: &Settings) -> Self {
        Self {
            min_train_samples: settings.min_train_samples,
            n_estimators: settings.n_estimators,
            contamination: settings.model_contamination,
            seed: settings.model_random_state,
            reservoir_size: settings.reservoir_size,
            max_tracked_services: settings.max_tracked_services,
            models_dir: settings.models_dir(),
            false_alarm_budget: settings.false_alarm_budget,
        }
    }
}

/// A training job's state, as GET /api/v1/train/{job_id} reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }
}

/// Why a training job was not started.
#[derive(Debug, thiserror::Error)]
pub enum JobRefused {
    #[error("A training job is already queued or running ({0}); try again when it has finished.")]
    Busy(String),
    #[error(transparent)]
    Store(#[from] StoreError),
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
    reservoirs: Mutex<HashMap<String, Reservoir<Sample>>>,
    /// Serialises fits: one at a time, whether a job, an automatic first fit or a scheduled refit.
    training: tokio::sync::Mutex<()>,
    /// The job queued or running, if any.
    active_job: Mutex<Option<String>>,
    auto_in_flight: Mutex<HashSet<String>>,
    last_trained: Mutex<Option<DateTime<Utc>>>,
    untracked_logs: AtomicU64,
    warned_untracked: AtomicBool,
}

impl Learner {
    pub fn new(
        config: LearnerConfig,
        parser: Arc<Parser>,
        detector: Arc<Detector>,
        store: Store,
    ) -> Self {
        Self {
            config,
            parser,
            detector,
            store,
            reservoirs: Mutex::new(HashMap::new()),
            training: tokio::sync::Mutex::new(()),
            active_job: Mutex::new(None),
            auto_in_flight: Mutex::new(HashSet::new()),
            last_trained: Mutex::new(None),
            untracked_logs: AtomicU64::new(0),
            warned_untracked: AtomicBool::new(false),
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
            let mut reservoirs = lock(&self.reservoirs);
            let broke_no_rule = |log: &&JudgedLog| log.verdict.violations.is_empty();
            for log in judged.iter().filter(broke_no_rule) {
                if log.parsed.features.is_empty() {
                    continue;
                }
                let service = log.raw.service.as_str();
                if !reservoirs.contains_key(service) {
                    if reservoirs.len() >= self.config.max_tracked_services {
                        self.untracked_logs.fetch_add(1, Ordering::Relaxed);
                        if !self.warned_untracked.swap(true, Ordering::Relaxed) {
                            tracing::warn!(
                                service,
                                max = self.config.max_tracked_services,
                                "MAX_TRACKED_SERVICES reached; further services are judged but do not learn automatically."
                            );
                        }
                        continue;
                    }
                    reservoirs.insert(
                        service.to_owned(),
                        Reservoir::new(self.config.reservoir_size, self.config.seed),
                    );
                }
                let Some(reservoir) = reservoirs.get_mut(service) else {
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
                if log.verdict.detector == Some(DetectorKind::Model) && mature() {
                    reservoir
                        .offer_down_weighted_with(FLAGGED_SAMPLE_EVERY, || sample_of(&log.parsed));
                } else {
                    reservoir.offer_with(|| sample_of(&log.parsed));
                }
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
                        let published = learner
                            .refit_from_reservoir(&service, ModelSource::Auto)
                            .await;
                        let held = lock(&learner.reservoirs)
                            .get(&service)
                            .map_or(0, Reservoir::len);
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
                    tracing::warn!(service, reason = why, "Automatic training failed.");
                }
                false
            }
        }
    }

    /// Starts a training job on posted logs; answers at once with the job id.
    ///
    /// # Errors
    /// [`JobRefused::Busy`] while another job is queued or running.
    pub async fn start_job(self: &Arc<Self>, logs: Vec<RawLog>) -> Result<String, JobRefused> {
        let job_id = uuid::Uuid::new_v4().to_string();
        {
            let mut active = lock(&self.active_job);
            if let Some(current) = active.as_ref() {
                return Err(JobRefused::Busy(current.clone()));
            }
            *active = Some(job_id.clone());
        }
        let record = TrainingJobRecord {
            job_id: job_id.clone(),
            status: JobStatus::Queued.as_str().to_owned(),
            created_at: Utc::now(),
            started_at: None,
            finished_at: None,
            detail: json!({"logs": logs.len()}),
        };
        if let Err(error) = self.store.upsert_training_job(record.clone()).await {
            *lock(&self.active_job) = None;
            return Err(error.into());
        }
        let learner = Arc::clone(self);
        tokio::spawn(async move {
            learner.run_job(record, logs).await;
            *lock(&learner.active_job) = None;
        });
        Ok(job_id)
    }

    async fn run_job(self: &Arc<Self>, mut record: TrainingJobRecord, logs: Vec<RawLog>) {
        let _turn = self.training.lock().await;
        record.status = JobStatus::Running.as_str().to_owned();
        record.started_at = Some(Utc::now());
        self.save_job(&record).await;
        let started = Instant::now();
        let total = logs.len();
        let parser = Arc::clone(&self.parser);
        let grouped = spawn_blocking_in_span(move || group_by_service(&parser, logs)).await;
        let (groups, unparseable) = match grouped {
            Ok(grouped) => grouped,
            Err(error) => {
                self.finish_job(
                    &mut record,
                    JobStatus::Failed,
                    json!({"reason": error.to_string()}),
                )
                .await;
                return;
            }
        };
        let job_id = record.job_id.clone();
        let outcome = self
            .fit_and_publish(groups, ModelSource::TrainJob, Some(job_id))
            .await;
        let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
        let (status, detail) = match outcome {
            Ok(reports) => (
                JobStatus::Succeeded,
                json!({"logs": total, "unparseable_logs": unparseable, "services": reports, "duration_ms": elapsed_ms}),
            ),
            Err(failures) => {
                let reasons: Vec<String> = failures
                    .iter()
                    .map(|(service, why)| format!("{service}: {why}"))
                    .collect();
                (
                    JobStatus::Failed,
                    json!({"logs": total, "unparseable_logs": unparseable, "reason": reasons.join("; "), "duration_ms": elapsed_ms}),
                )
            }
        };
        self.finish_job(&mut record, status, detail).await;
    }

    async fn finish_job(&self, record: &mut TrainingJobRecord, status: JobStatus, detail: Value) {
        record.status = status.as_str().to_owned();
        record.finished_at = Some(Utc::now());
        record.detail = detail;
        self.save_job(record).await;
        match status {
            JobStatus::Failed => {
                tracing::warn!(job_id = record.job_id, detail = %record.detail, "Training job failed.")
            }
            _ => tracing::info!(job_id = record.job_id, "Training job finished."),
        }
    }

    async fn save_job(&self, record: &TrainingJobRecord) {
        if let Err(error) = self.store.upsert_training_job(record.clone()).await {
            tracing::error!(%error, job_id = record.job_id, "Could not record the training job's state.");
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
    ) -> Result<Vec<ServiceReport>, Vec<(String, String)>> {
        let mut feedback: HashMap<String, Vec<FeedbackRecord>> = HashMap::new();
        for (service, _) in &groups {
            match self.store.feedback_for_service(service.clone()).await {
                Ok(records) => {
                    feedback.insert(service.clone(), records);
                }
                Err(error) => {
                    return Err(vec![(
                        service.clone(),
                        format!("reading feedback: {error}"),
                    )]);
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
        .map_err(|error| vec![("training".to_owned(), error.to_string())])?;
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
            tracing::warn!(service, reason = why, "Service skipped in training.");
        }
        for model in &models {
            self.persist(model).await;
        }
        self.detector.models.replace_all(models);
        *lock(&self.last_trained) = Some(Utc::now());
        Ok(reports)
    }

    /// Fits one service's model: its rows plus labeled-normal feedback, minus labeled anomalies.
    /// The baseline is learned first; the rows it finds to be outliers are left out of the
    /// forest, and the forest's cut comes from the scores of the rest. With enough labels of
    /// both kinds the forest's offset (the `score`) is calibrated on them.
    fn fit_service(
        &self,
        service: &str,
        mut rows: Vec<Sample>,
        feedback: &[FeedbackRecord],
        source: ModelSource,
        job_id: Option<String>,
    ) -> Result<(ServiceModel, ServiceReport), String> {
        let started = Instant::now();
        let (normal_rows, anomalous_rows) = self.labeled_rows(feedback);
        let before = rows.len();
        rows.retain(|row| {
            !anomalous_rows
                .iter()
                .any(|labeled| labeled.features == row.features)
        });
        let excluded = before - rows.len();
        rows.extend(normal_rows.iter().cloned());
        let features: Vec<&BTreeMap<String, f64>> = rows.iter().map(|row| &row.features).collect();
        let set = build_training_set(&features, self.config.min_train_samples)
            .map_err(|error| error.to_string())?;
        let (mut baseline, outliers) =
            Baseline::fit(&rows, &set.feature_names, self.config.false_alarm_budget);
        let inliers: Vec<&BTreeMap<String, f64>> = features
            .iter()
            .zip(&outliers)
            .filter(|(_, outlier)| !**outlier)
            .map(|(row, _)| *row)
            .collect();
        // The forest learns from the rows the baseline keeps, unless that leaves too few.
        let matrix = if inliers.len() >= self.config.min_train_samples.max(2) {
            matrix_of(&inliers, &set.feature_names, &set.fill_values)
                .map_err(|error| error.to_string())?
        } else {
            set.matrix.clone()
        };
        let contamination = match self.config.contamination {
            ContaminationSetting::Auto => Contamination::Auto,
            ContaminationSetting::Fraction(f) => Contamination::Fraction(f),
        };
        let forest = IsolationForest::params()
            .n_estimators(self.config.n_estimators)
            .max_samples(MaxSamples::Auto)
            .contamination(contamination)
            .seed(self.config.seed)
            .check()
            .map_err(|error| error.to_string())?
            .fit(&matrix)
            .map_err(|error| error.to_string())?;
        let mut artifact = ModelArtifact {
            feature_names: set.feature_names.clone(),
            fill_values: set.fill_values.clone(),
            forest,
            metadata: Default::default(),
        };
        let score_rows = |rows: &[Sample]| -> Result<Vec<f64>, String> {
            let features: Vec<&BTreeMap<String, f64>> = rows.iter().map(|r| &r.features).collect();
            let labeled = matrix_of(&features, &set.feature_names, &set.fill_values)
                .map_err(|error| error.to_string())?;
            Ok(artifact.forest.score_samples(&labeled))
        };
        let normal_scores = score_rows(&normal_rows)?;
        let anomalous_scores = score_rows(&anomalous_rows)?;
        let training_scores = artifact.forest.score_samples(&matrix);
        let calibrated = if normal_scores.is_empty() || anomalous_scores.is_empty() {
            None
        } else {
            calibrate_offset(
                &normal_scores,
                &anomalous_scores,
                &training_scores,
                artifact.forest.offset(),
            )
        };
        if let Some(offset) = calibrated {
            artifact.forest = artifact.forest.with_offset(offset);
        }
        let offset = artifact.forest.offset();
        baseline.set_forest_cut(training_scores.iter().map(|s| s - offset).collect());
        let trained_at = Utc::now();
        artifact
            .metadata
            .insert("service".to_owned(), service.to_owned());
        artifact
            .metadata
            .insert("trained_at".to_owned(), trained_at.to_rfc3339());
        artifact
            .metadata
            .insert("source".to_owned(), source.as_str().to_owned());
        artifact.metadata.insert(
            ServiceModel::BASELINE_KEY.to_owned(),
            serde_json::to_string(&baseline).map_err(|error| error.to_string())?,
        );
        let report = ServiceReport {
            service: service.to_owned(),
            samples: rows.len(),
            features: set.feature_names,
            threshold: artifact.forest.offset(),
            calibrated_from_feedback: calibrated.is_some(),
            feedback_normal_added: normal_rows.len(),
            feedback_anomalies_excluded: excluded,
            outliers_left_out: baseline.outliers,
            duration_ms: started.elapsed().as_secs_f64() * 1000.0,
        };
        let model = ServiceModel {
            service: service.to_owned(),
            artifact,
            training_samples: rows.len() as u64,
            trained_at,
            source,
            job_id,
            baseline: Some(baseline),
        };
        Ok((model, report))
    }

    /// Samples of labeled-normal (trusted) and labeled-anomalous feedback (unparseable records
    /// skipped).
    fn labeled_rows(&self, feedback: &[FeedbackRecord]) -> (Vec<Sample>, Vec<Sample>) {
        let mut normal = Vec::new();
        let mut anomalous = Vec::new();
        for record in feedback {
            let Some(raw) = raw_log_of(record) else {
                continue;
            };
            let Ok(parsed) = self.parser.parse(&raw) else {
                continue;
            };
            let mut sample = sample_of(&parsed);
            if record.is_anomaly {
                anomalous.push(sample);
            } else {
                sample.trusted = true;
                normal.push(sample);
            }
        }
        (normal, anomalous)
    }

    async fn persist(&self, model: &ServiceModel) {
        let path = self.config.models_dir.join(model_file_name(&model.service));
        let artifact = model.artifact.clone();
        let target = path.clone();
        let saved = spawn_blocking_in_span(move || {
            std::fs::create_dir_all(target.parent().unwrap_or(Path::new(".")))
                .map_err(|error| error.to_string())?;
            artifact.save(&target).map_err(|error| error.to_string())
        })
        .await;
        match saved {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::error!(
                    service = model.service,
                    error,
                    "Could not save the model file; it will not survive a restart."
                );
                return;
            }
            Err(error) => {
                tracing::error!(service = model.service, %error, "Could not save the model file.");
                return;
            }
        }
        let record = ModelRecord {
            service: model.service.clone(),
            path: path.to_string_lossy().into_owned(),
            feature_names: model.artifact.feature_names.clone(),
            training_samples: model.training_samples,
            trained_at: model.trained_at,
            threshold: model.threshold(),
            source: model.source.as_str().to_owned(),
            job_id: model.job_id.clone(),
        };
        if let Err(error) = self.store.upsert_model(record).await {
            tracing::error!(service = model.service, %error, "Could not record the model.");
        }
    }

    /// Loads the models recorded in the store, then `MODEL_PATH`. A file that cannot be loaded is
    /// logged and its service falls back to rules until retrained; start-up goes on.
    pub async fn load_models(&self, model_path: Option<&Path>) -> Result<usize, StoreError> {
        let records = self.store.list_models().await?;
        let mut loaded = Vec::new();
        for record in records {
            let path = PathBuf::from(&record.path);
            // The store is ours, but a row edited by hand or written by a newer version must
            // not take the model down with it: its source is only a label.
            let source = record.source.parse().unwrap_or_else(|error| {
                tracing::warn!(service = record.service, %error, "Model recorded with an unknown source; shown as file.");
                ModelSource::File
            });
            match load_artifact(path.clone()).await {
                Ok(artifact) => loaded.push(ServiceModel {
                    baseline: ServiceModel::baseline_of(&artifact),
                    service: record.service,
                    artifact,
                    training_samples: record.training_samples,
                    trained_at: record.trained_at,
                    source,
                    job_id: record.job_id,
                }),
                Err(error) => tracing::error!(
                    service = record.service,
                    %error,
                    "Model file cannot be loaded; the service is judged by rules until it is retrained."
                ),
            }
        }
        if let Some(path) = model_path {
            match load_artifact(path.to_path_buf()).await {
                Ok(artifact) => {
                    let service = artifact
                        .metadata
                        .get("service")
                        .cloned()
                        .unwrap_or_else(|| DEFAULT_SERVICE_KEY.to_owned());
                    if loaded.iter().any(|m| m.service == service) {
                        tracing::info!(service, path = %path.display(), "MODEL_PATH skipped: a newer model of this service is stored.");
                    } else {
                        loaded.push(ServiceModel {
                            baseline: ServiceModel::baseline_of(&artifact),
                            service,
                            artifact,
                            training_samples: 0,
                            trained_at: Utc::now(),
                            source: ModelSource::File,
                            job_id: None,
                        });
                    }
                }
                Err(error) => {
                    tracing::error!(%error, "MODEL_PATH cannot be loaded; services are judged by rules until trained.")
                }
            }
        }
        let count = loaded.len();
        if let Some(newest) = loaded.iter().map(|m| m.trained_at).max() {
            *lock(&self.last_trained) = Some(newest);
        }
        self.detector.models.replace_all(loaded);
        Ok(count)
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

/// Parses posted logs and groups their features by service; returns the groups and the count of
/// logs that could not be parsed.
fn group_by_service(parser: &Parser, logs: Vec<RawLog>) -> (Vec<(String, Vec<Sample>)>, usize) {
    let mut groups: HashMap<String, Vec<Sample>> = HashMap::new();
    let mut unparseable = 0;
    for raw in logs {
        match parser.parse(&raw) {
            Ok(parsed) => groups
                .entry(raw.service)
                .or_default()
                .push(sample_of(&parsed)),
            Err(_) => unparseable += 1,
        }
    }
    let mut groups: Vec<_> = groups.into_iter().collect();
    groups.sort_by(|a, b| a.0.cmp(&b.0));
    (groups, unparseable)
}

fn raw_log_of(record: &FeedbackRecord) -> Option<RawLog> {
    let format_type: FormatType =
        serde_json::from_value(Value::String(record.format_type.clone())).ok()?;
    Some(RawLog {
        raw_log: record.raw_log.clone(),
        service: record.service.clone(),
        source: record.source.clone(),
        format_type,
        custom_config: record
            .custom_config
            .clone()
            .map(|config| Arc::new(config.into())),
    })
}

async fn load_artifact(path: PathBuf) -> Result<ModelArtifact, String> {
    spawn_blocking_in_span(move || ModelArtifact::load(&path).map_err(|error| error.to_string()))
        .await
        .map_err(|error| error.to_string())?
}

/// A file name for a service's model: the name made safe, plus a hash so that two services whose
/// names differ only in unsafe characters do not share a file.
pub fn model_file_name(service: &str) -> String {
    let safe: String = service
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let hash = crc32fast::hash(service.as_bytes());
    format!("{safe}-{hash:08x}.iforest")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_file_names_are_safe_and_distinct() {
        let a = model_file_name("web/server");
        let b = model_file_name("web_server");
        assert!(a.starts_with("web_server-") && a.ends_with(".iforest"));
        assert_ne!(a, b);
        assert!(!model_file_name("../../etc/passwd").contains('/'));
    }
}
