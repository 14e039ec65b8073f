//! Threshold calibration from operator feedback. Pure.
//!
//! With enough labels of both kinds, the offset becomes the cut on `score_samples` that best separates
//! the labeled logs (highest balanced accuracy; among equals, the cut nearest the contamination
//! offset). The cut is bounded by quantiles of the training scores, so however the labels fall the
//! model flags between [`MIN_FLAG_SHARE`] and [`MAX_FLAG_SHARE`] of its own training logs: a single
//! label can neither silence a service nor make it page on everything.

use crate::detect::stats::quantile;

/// Labels needed of each kind before feedback moves the threshold.
pub const MIN_LABELS_PER_CLASS: usize = 3;
/// The calibrated cut flags at least this share of training logs.
pub const MIN_FLAG_SHARE: f64 = 0.001;
/// The calibrated cut flags at most this share of training logs.
pub const MAX_FLAG_SHARE: f64 = 0.25;

/// The calibrated offset, or `None` when there are too few labels of either kind.
///
/// `normal` and `anomalous` are `score_samples` of labeled logs; `training` those of the training
/// rows; `current` is the offset the contamination gave.
pub fn calibrate_offset(
    normal: &[f64],
    anomalous: &[f64],
    training: &[f64],
    current: f64,
) -> Option<f64> {
    if normal.len() < MIN_LABELS_PER_CLASS || anomalous.len() < MIN_LABELS_PER_CLASS {
        return None;
    }
    let mut candidates: Vec<f64> = normal.iter().chain(anomalous).copied().collect();
    candidates.sort_by(f64::total_cmp);
    candidates.dedup();
    // Cuts between consecutive labeled scores, and just past either end.
    let mut cuts: Vec<f64> = candidates.windows(2).map(|w| (w[0] + w[1]) / 2.0).collect();
    if let (Some(first), Some(last)) = (candidates.first(), candidates.last()) {
        cuts.push(first - 1e-9);
        cuts.push(last + 1e-9);
    }
    let balanced_accuracy = |cut: f64| {
        let caught = anomalous.iter().filter(|s| **s < cut).count() as f64 / anomalous.len() as f64;
        let passed = normal.iter().filter(|s| **s >= cut).count() as f64 / normal.len() as f64;
        (caught + passed) / 2.0
    };
    let best = cuts.into_iter().max_by(|a, b| {
        balanced_accuracy(*a)
            .total_cmp(&balanced_accuracy(*b))
            .then_with(|| (b - current).abs().total_cmp(&(a - current).abs()))
    })?;
    let mut sorted = training.to_vec();
    sorted.sort_by(f64::total_cmp);
    let low = quantile(&sorted, MIN_FLAG_SHARE);
    let high = quantile(&sorted, MAX_FLAG_SHARE);
    Some(match (low, high) {
        (Some(low), Some(high)) => best.clamp(low, high),
        _ => best,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn training() -> Vec<f64> {
        (0..1000)
            .map(|i| -0.7 + 0.3 * f64::from(i) / 1000.0)
            .collect()
    }

    #[test]
    fn too_few_labels_leave_the_offset_alone() {
        assert_eq!(
            calibrate_offset(&[-0.45], &[-0.6, -0.62, -0.65], &training(), -0.5),
            None
        );
    }

    #[test]
    fn the_cut_separates_labeled_normals_from_anomalies() {
        // Normals flagged by the contamination offset (-0.5) should pass after calibration.
        let normal = [-0.52, -0.53, -0.51, -0.45];
        let anomalous = [-0.66, -0.68, -0.67];
        let offset =
            calibrate_offset(&normal, &anomalous, &training(), -0.5).expect("enough labels");
        assert!(normal.iter().all(|s| *s >= offset), "offset {offset}");
        assert!(anomalous.iter().all(|s| *s < offset), "offset {offset}");
    }

    #[test]
    fn labels_cannot_silence_the_service() {
        // Labels claim everything is normal down to the lowest training score.
        let normal = [-0.70, -0.69, -0.69];
        let anomalous = [-0.71, -0.72, -0.73];
        let training = training();
        let offset = calibrate_offset(&normal, &anomalous, &training, -0.5).expect("enough labels");
        let flagged = training.iter().filter(|s| **s < offset).count() as f64 / 1000.0;
        assert!(flagged >= MIN_FLAG_SHARE * 0.99, "flags {flagged}");
    }
}
