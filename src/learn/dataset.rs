//! From parsed logs to a feature matrix: which features a service's model reads, and the fill values
//! for logs that lack one. Pure.
//!
//! The rule: a service's features are the numeric fields present in at least half of its training
//! logs (ties in favour of keeping), sorted by name. A log missing one of them gets the training
//! median of that feature, so a missing field looks typical instead of looking like 0.

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::forest::{ForestError, Matrix};

/// The share of training logs that must carry a field for it to become a model feature.
pub const FEATURE_PRESENCE_SHARE: f64 = 0.5;

/// One training example: a log's numeric features by name. The names are shared: a tracked
/// service's rows all point at its sample's one copy of each name (`learn::sample`).
pub type FeatureRow = BTreeMap<Arc<str>, f64>;

/// The matrix a forest is fitted on, with the meaning of its columns.
#[derive(Debug, Clone)]
pub struct TrainingSet {
    pub feature_names: Vec<String>,
    pub fill_values: Vec<f64>,
    pub matrix: Matrix,
}

/// Why a training set cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("{rows} parseable logs, MIN_TRAIN_SAMPLES is {min}")]
    TooFewSamples { rows: usize, min: usize },
    #[error("no numeric field is present in at least half of the {rows} logs")]
    NoFeatures { rows: usize },
    #[error(transparent)]
    Forest(#[from] ForestError),
}

/// Chooses features, fills gaps with medians and lays the rows out contiguously.
///
/// # Errors
/// Fewer rows than `min_rows`, no common numeric feature, or a matrix the forest rejects.
pub fn build_training_set<R: Borrow<FeatureRow>>(
    rows: &[R],
    min_rows: usize,
) -> Result<TrainingSet, DatasetError> {
    if rows.len() < min_rows {
        return Err(DatasetError::TooFewSamples {
            rows: rows.len(),
            min: min_rows,
        });
    }
    let mut presence: HashMap<&str, Vec<f64>> = HashMap::new();
    for row in rows {
        for (name, value) in row.borrow() {
            presence.entry(name.as_ref()).or_default().push(*value);
        }
    }
    let needed = (rows.len() as f64 * FEATURE_PRESENCE_SHARE).ceil() as usize;
    let mut chosen: Vec<(&str, Vec<f64>)> = presence
        .into_iter()
        .filter(|(_, values)| values.len() >= needed.max(1))
        .collect();
    chosen.sort_by(|a, b| a.0.cmp(b.0));
    if chosen.is_empty() {
        return Err(DatasetError::NoFeatures { rows: rows.len() });
    }
    let feature_names: Vec<String> = chosen.iter().map(|(name, _)| (*name).to_owned()).collect();
    let fill_values: Vec<f64> = chosen
        .iter_mut()
        .map(|(_, values)| median(values))
        .collect();
    let matrix = matrix_of(rows, &feature_names, &fill_values)?;
    Ok(TrainingSet {
        feature_names,
        fill_values,
        matrix,
    })
}

/// The matrix of `rows` over `feature_names`, a missing feature taking its fill value.
///
/// # Errors
/// A matrix the forest rejects (no rows, or a value that is not finite).
pub fn matrix_of<R: Borrow<FeatureRow>>(
    rows: &[R],
    feature_names: &[String],
    fill_values: &[f64],
) -> Result<Matrix, ForestError> {
    let mut data = Vec::with_capacity(rows.len() * feature_names.len());
    for row in rows {
        let row = row.borrow();
        for (name, fill) in feature_names.iter().zip(fill_values) {
            data.push(row.get(name.as_str()).copied().unwrap_or(*fill));
        }
    }
    Matrix::from_rows(feature_names.len(), data)
}

/// The median (mean of the middle two for an even count); `values` is reordered.
fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(pairs: &[(&str, f64)]) -> FeatureRow {
        pairs.iter().map(|(k, v)| (Arc::from(*k), *v)).collect()
    }

    #[test]
    fn features_present_in_most_logs_are_chosen_and_gaps_take_the_median() {
        let rows = vec![
            row(&[("latency", 10.0), ("bytes", 100.0), ("rare", 1.0)]),
            row(&[("latency", 30.0), ("bytes", 300.0)]),
            row(&[("latency", 20.0)]),
            row(&[("latency", 40.0), ("bytes", 200.0)]),
        ];
        let set = build_training_set(&rows, 2).expect("builds");
        assert_eq!(set.feature_names, ["bytes", "latency"]);
        assert_eq!(set.fill_values, [200.0, 25.0]);
        // The third log lacks bytes: it takes the median 200.
        assert_eq!(set.matrix.row(2), [200.0, 20.0]);
    }

    #[test]
    fn too_few_rows_say_how_many_and_the_minimum() {
        let rows = vec![row(&[("a", 1.0)]); 12];
        let error = build_training_set(&rows, 50).expect_err("too few");
        assert_eq!(
            error.to_string(),
            "12 parseable logs, MIN_TRAIN_SAMPLES is 50"
        );
    }

    #[test]
    fn logs_without_numbers_have_no_features() {
        let rows = vec![FeatureRow::new(); 10];
        assert!(matches!(
            build_training_set(&rows, 5),
            Err(DatasetError::NoFeatures { rows: 10 })
        ));
    }
}
