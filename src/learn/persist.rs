//! Models on disk and in the store: each fitted model is saved as a file in `DATA_DIR/models`
//! and recorded; at start-up the recorded models (then `MODEL_PATH`) are loaded back.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use super::{LearnError, Learner};
use crate::detect::models::{ModelSource, ServiceModel};
use crate::detect::rules::DEFAULT_SERVICE_KEY;
use crate::forest::ModelArtifact;
use crate::store::{ModelRecord, StoreError};
use crate::sync::lock;
use crate::telemetry::spawn_blocking_in_span;

impl Learner {
    /// Saves every model of one fit and records them all in one transaction, so whenever the
    /// process stops, either all of them serve after the restart or none does (the previous
    /// ones do). Each fit writes new files (a file is never rewritten in place while a record
    /// points to it); the files the records no longer point to are removed afterwards.
    ///
    /// # Errors
    /// A file cannot be written or the records cannot be committed; then nothing is applied and
    /// the new files are removed.
    pub(super) async fn persist_all(&self, models: &[ServiceModel]) -> Result<(), LearnError> {
        let previous: Vec<ModelRecord> =
            self.store.list_models().await.map_err(LearnError::Record)?;
        let files: Vec<(PathBuf, ModelArtifact)> = models
            .iter()
            .map(|model| {
                let name = versioned_file_name(&model.service, model.trained_at);
                (PathBuf::from(MODELS_DIR).join(name), model.artifact.clone())
            })
            .collect();
        let data_dir = self.config.data_dir.clone();
        let written: Vec<PathBuf> = files.iter().map(|(path, _)| data_dir.join(path)).collect();
        let targets = written.clone();
        let saved = spawn_blocking_in_span(move || {
            std::fs::create_dir_all(data_dir.join(MODELS_DIR))
                .map_err(LearnError::ModelDirectory)?;
            for ((_, artifact), target) in files.iter().zip(&targets) {
                artifact.save(target)?;
            }
            Ok::<_, LearnError>(())
        })
        .await
        .map_err(LearnError::from)
        .and_then(|saved| saved);
        let records: Vec<ModelRecord> = models
            .iter()
            .zip(&written)
            .map(|(model, path)| ModelRecord {
                service: model.service.clone(),
                path: self.stored_path(path),
                feature_names: model.artifact.feature_names.clone(),
                training_samples: model.training_samples,
                trained_at: model.trained_at,
                threshold: model.threshold(),
                source: model.source,
                job_id: model.job_id.clone(),
            })
            .collect();
        let recorded = match saved {
            // With a shared store the files' bytes go with the records: the other replicas load
            // the models from there (`sync_shared_models`).
            Ok(()) if self.store.is_shared() => {
                let services: Vec<String> = records.iter().map(|r| r.service.clone()).collect();
                let with_bytes = records
                    .into_iter()
                    .zip(models.iter().map(|model| model.artifact.to_bytes()))
                    .collect();
                match self.store.record_models_with_artifacts(with_bytes).await {
                    Ok(versions) => {
                        let mut known = lock(&self.shared_versions);
                        for (service, version) in services.into_iter().zip(versions) {
                            known.insert(service, version);
                        }
                        Ok(())
                    }
                    Err(error) => Err(LearnError::Record(error)),
                }
            }
            Ok(()) => self
                .store
                .record_models(records)
                .await
                .map_err(LearnError::Record),
            Err(error) => Err(error),
        };
        let obsolete: Vec<PathBuf> = match &recorded {
            Ok(()) => previous
                .iter()
                .filter(|record| models.iter().any(|model| model.service == record.service))
                .map(|record| self.resolve(&record.path))
                .filter(|path| !written.contains(path))
                .collect(),
            Err(_) => written,
        };
        remove_files(obsolete).await;
        recorded
    }

    /// Removes model files in `DATA_DIR/models` that no record points to: those of a fit that
    /// was stopped before its models were recorded.
    async fn remove_unreferenced_files(&self, referenced: Vec<PathBuf>) {
        let directory = self.config.data_dir.join(MODELS_DIR);
        let listed = spawn_blocking_in_span(move || {
            let Ok(entries) = std::fs::read_dir(&directory) else {
                return Vec::new();
            };
            entries
                .filter_map(Result::ok)
                .map(|entry| entry.path())
                .filter(|path| path.extension().is_some_and(|e| e == "iforest"))
                .filter(|path| !referenced.contains(path))
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        if !listed.is_empty() {
            tracing::info!(
                files = listed.len(),
                "Model files of a fit that was never applied are removed."
            );
        }
        remove_files(listed).await;
    }

    /// How a model file's path is stored: relative to `DATA_DIR` when it lies inside it, so a
    /// data directory restored elsewhere keeps its models.
    fn stored_path(&self, path: &Path) -> String {
        path.strip_prefix(&self.config.data_dir)
            .unwrap_or(path)
            .to_string_lossy()
            .into_owned()
    }

    /// Where a stored path points: relative paths are inside `DATA_DIR`. An absolute path
    /// written by an earlier version that no longer exists (the data directory was moved) is
    /// looked for under the same file name in `DATA_DIR/models`.
    fn resolve(&self, stored: &str) -> PathBuf {
        let path = Path::new(stored);
        if path.is_relative() {
            return self.config.data_dir.join(path);
        }
        if !path.exists()
            && let Some(name) = path.file_name()
        {
            let moved = self.config.data_dir.join(MODELS_DIR).join(name);
            if moved.exists() {
                return moved;
            }
        }
        path.to_path_buf()
    }

    /// Loads the models recorded in the store, then `MODEL_PATH`. A file that cannot be loaded is
    /// logged and its service falls back to rules until retrained; start-up goes on.
    pub async fn load_models(&self, model_path: Option<&Path>) -> Result<usize, StoreError> {
        // A shared store holds the models themselves; the files on this replica's disk are
        // only its own copies.
        let records = if self.store.is_shared() {
            self.sync_shared_models().await?;
            Vec::new()
        } else {
            self.store.list_models().await?
        };
        let mut loaded = Vec::new();
        let mut referenced: Vec<PathBuf> = model_path.iter().map(|p| p.to_path_buf()).collect();
        referenced.extend(records.iter().map(|record| self.resolve(&record.path)));
        self.remove_unreferenced_files(referenced).await;
        for record in records {
            let path = self.resolve(&record.path);
            let source = record.source;
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
        let count = loaded.len() + lock(&self.shared_versions).len();
        if let Some(newest) = loaded.iter().map(|m| m.trained_at).max() {
            *lock(&self.last_trained) = Some(newest);
        }
        self.detector.models.replace_all(loaded);
        Ok(count)
    }
}

impl Learner {
    /// Loads the models other replicas published since this one last looked (a shared store;
    /// nothing on SQLite), so that every replica judges a log with the same model. Returns how
    /// many it loaded. A model whose bytes cannot be read is logged and skipped.
    ///
    /// # Errors
    /// The store cannot be read.
    pub async fn sync_shared_models(&self) -> Result<usize, StoreError> {
        let versions = self.store.model_versions().await?;
        let changed: Vec<String> = {
            let known = lock(&self.shared_versions);
            versions
                .iter()
                .filter(|(service, version)| known.get(*service) != Some(version))
                .map(|(service, _)| service.clone())
                .collect()
        };
        if changed.is_empty() {
            return Ok(0);
        }
        let shared = self.store.shared_models(changed).await?;
        let parsed = spawn_blocking_in_span(move || {
            shared
                .into_iter()
                .map(|model| {
                    let name = PathBuf::from(format!("postgresql:models/{}", model.record.service));
                    let artifact = ModelArtifact::from_bytes(&model.artifact, &name);
                    (model.record, model.version, artifact)
                })
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|error| StoreError::Background(error.to_string()))?;
        let mut loaded = Vec::new();
        let mut known = Vec::new();
        for (record, version, artifact) in parsed {
            known.push((record.service.clone(), version));
            match artifact {
                Ok(artifact) => loaded.push(ServiceModel {
                    baseline: ServiceModel::baseline_of(&artifact),
                    service: record.service,
                    artifact,
                    training_samples: record.training_samples,
                    trained_at: record.trained_at,
                    source: record.source,
                    job_id: record.job_id,
                }),
                Err(error) => tracing::error!(
                    service = record.service,
                    %error,
                    "A model another replica published cannot be read; this replica keeps its \
                     previous one."
                ),
            }
        }
        let count = loaded.len();
        if count > 0 {
            if let Some(newest) = loaded.iter().map(|m| m.trained_at).max() {
                let mut last = lock(&self.last_trained);
                *last = Some(last.map_or(newest, |last| last.max(newest)));
            }
            tracing::info!(models = count, "Models published by other replicas loaded.");
            self.detector.models.replace_all(loaded);
        }
        let mut versions = lock(&self.shared_versions);
        versions.extend(known);
        Ok(count)
    }
}

async fn load_artifact(path: PathBuf) -> Result<ModelArtifact, LearnError> {
    Ok(spawn_blocking_in_span(move || ModelArtifact::load(&path)).await??)
}

/// Where model files live, inside `DATA_DIR`.
const MODELS_DIR: &str = "models";

/// A file name for one fit of a service's model: the name made safe, a hash so that two services
/// whose names differ only in unsafe characters do not share a file, and the fit's time so that
/// a new fit never overwrites the file a record still points to.
fn versioned_file_name(service: &str, trained_at: DateTime<Utc>) -> String {
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
    let micros = trained_at.timestamp_micros();
    format!("{safe}-{hash:08x}-{micros}.iforest")
}

/// Removes files a fit left behind (superseded, or written by a fit that was not applied).
async fn remove_files(paths: Vec<PathBuf>) {
    if paths.is_empty() {
        return;
    }
    let removed = spawn_blocking_in_span(move || {
        for path in paths {
            if let Err(error) = std::fs::remove_file(&path)
                && error.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(path = %path.display(), %error, "Cannot remove an old model file.");
            }
        }
    })
    .await;
    if let Err(error) = removed {
        tracing::warn!(%error, "Removing old model files failed.");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_file_names_are_safe_and_distinct() {
        let at = DateTime::from_timestamp(1_700_000_000, 0).expect("valid");
        let a = versioned_file_name("web/server", at);
        let b = versioned_file_name("web_server", at);
        assert!(a.starts_with("web_server-") && a.ends_with("-1700000000000000.iforest"));
        assert_ne!(a, b);
        assert!(!versioned_file_name("../../etc/passwd", at).contains('/'));
        let later = at + chrono::TimeDelta::microseconds(1);
        assert_ne!(
            versioned_file_name("web", at),
            versioned_file_name("web", later)
        );
    }
}
