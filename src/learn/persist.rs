//! Models on disk and in the store: each fitted model is saved as a file in `DATA_DIR/models`
//! and recorded; at start-up the recorded models (then `MODEL_PATH`) are loaded back.

use std::path::{Path, PathBuf};

use chrono::Utc;

use super::{LearnError, Learner};
use crate::detect::models::{ModelSource, ServiceModel};
use crate::detect::rules::DEFAULT_SERVICE_KEY;
use crate::forest::ModelArtifact;
use crate::store::{ModelRecord, StoreError};
use crate::sync::lock;
use crate::telemetry::spawn_blocking_in_span;

impl Learner {
    pub(super) async fn persist(&self, model: &ServiceModel) {
        let path = self.config.models_dir.join(model_file_name(&model.service));
        let artifact = model.artifact.clone();
        let target = path.clone();
        let saved = spawn_blocking_in_span(move || {
            std::fs::create_dir_all(target.parent().unwrap_or(Path::new(".")))
                .map_err(LearnError::ModelDirectory)?;
            Ok::<_, LearnError>(artifact.save(&target)?)
        })
        .await;
        if let Err(error) = saved.map_err(LearnError::from).and_then(|saved| saved) {
            tracing::error!(
                service = model.service,
                %error,
                "Could not save the model file; it will not survive a restart."
            );
            return;
        }
        let record = ModelRecord {
            service: model.service.clone(),
            path: path.to_string_lossy().into_owned(),
            feature_names: model.artifact.feature_names.clone(),
            training_samples: model.training_samples,
            trained_at: model.trained_at,
            threshold: model.threshold(),
            source: model.source,
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
        let count = loaded.len();
        if let Some(newest) = loaded.iter().map(|m| m.trained_at).max() {
            *lock(&self.last_trained) = Some(newest);
        }
        self.detector.models.replace_all(loaded);
        Ok(count)
    }
}

async fn load_artifact(path: PathBuf) -> Result<ModelArtifact, LearnError> {
    Ok(spawn_blocking_in_span(move || ModelArtifact::load(&path)).await??)
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
