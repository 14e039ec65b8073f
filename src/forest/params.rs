//! Parameters: unchecked ([`IsolationForestParams`]) → checked ([`IsolationForestValidParams`]) →
//! fitted ([`IsolationForest`]), as in linfa's `ParamGuard`. Names and defaults are scikit-learn's.

use rayon::prelude::*;

use crate::forest::tree::{self, SplitMix64};
use crate::forest::{ForestError, IsolationForest, Matrix};

/// The default number of trees (scikit-learn's `n_estimators`).
pub const DEFAULT_N_ESTIMATORS: usize = 100;
/// The subsample size of `max_samples="auto"`, capped by the number of rows.
pub const AUTO_MAX_SAMPLES: usize = 256;
/// The offset of `contamination="auto"` (Liu et al.: a score above 0.5 in their sign is an outlier).
pub const AUTO_OFFSET: f64 = -0.5;
/// The default seed (the contract's `MODEL_RANDOM_STATE`).
pub const DEFAULT_SEED: u64 = 42;

/// How many rows each tree is grown on (scikit-learn's `max_samples`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MaxSamples {
    /// min(256, rows).
    Auto,
    /// This many rows, or all rows when there are fewer (scikit-learn warns and does the same).
    Count(usize),
    /// This share of the rows, in (0, 1]: `floor(fraction * rows)`, at least 1.
    Fraction(f64),
}

/// The expected share of outliers, which sets the offset (scikit-learn's `contamination`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Contamination {
    /// Offset −0.5, as in the original paper.
    Auto,
    /// A share in (0, 0.5]: the offset is this quantile of the training scores.
    Fraction(f64),
}

/// Unchecked parameters; [`check`](Self::check) validates them.
#[derive(Debug, Clone, PartialEq)]
pub struct IsolationForestParams {
    n_estimators: usize,
    max_samples: MaxSamples,
    max_features: f64,
    contamination: Contamination,
    seed: u64,
}

/// Parameters known to be in range; [`fit`](Self::fit) grows a forest with them.
#[derive(Debug, Clone, PartialEq)]
pub struct IsolationForestValidParams(IsolationForestParams);

impl Default for IsolationForestParams {
    fn default() -> Self {
        IsolationForestParams {
            n_estimators: DEFAULT_N_ESTIMATORS,
            max_samples: MaxSamples::Auto,
            max_features: 1.0,
            contamination: Contamination::Auto,
            seed: DEFAULT_SEED,
        }
    }
}

impl IsolationForestParams {
    /// The number of trees (default 100).
    pub fn n_estimators(mut self, n: usize) -> Self {
        self.n_estimators = n;
        self
    }

    /// The subsample size per tree (default `Auto`).
    pub fn max_samples(mut self, max_samples: MaxSamples) -> Self {
        self.max_samples = max_samples;
        self
    }

    /// The share of features each tree may split on, in (0, 1] (default 1.0). Below 1.0 each tree
    /// draws `max(1, floor(share * features))` features without replacement, as scikit-learn does.
    pub fn max_features(mut self, share: f64) -> Self {
        self.max_features = share;
        self
    }

    /// The expected share of outliers (default `Auto`).
    pub fn contamination(mut self, contamination: Contamination) -> Self {
        self.contamination = contamination;
        self
    }

    /// The seed every random choice derives from (default 42).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Validates the parameters.
    ///
    /// # Errors
    /// [`ForestError::InvalidParam`] naming the first parameter out of range: `n_estimators` 0,
    /// `max_samples` 0 or a fraction outside (0, 1], `max_features` outside (0, 1],
    /// `contamination` outside (0, 0.5].
    pub fn check(self) -> Result<IsolationForestValidParams, ForestError> {
        if self.n_estimators == 0 || self.n_estimators > u32::MAX as usize {
            return Err(invalid(
                "n_estimators",
                self.n_estimators,
                "a positive count",
            ));
        }
        match self.max_samples {
            MaxSamples::Count(0) => {
                return Err(invalid("max_samples", 0, "a positive count"));
            }
            MaxSamples::Fraction(f) if !(f > 0.0 && f <= 1.0) => {
                return Err(invalid("max_samples", f, "a fraction in (0, 1]"));
            }
            _ => {}
        }
        if !(self.max_features > 0.0 && self.max_features <= 1.0) {
            return Err(invalid(
                "max_features",
                self.max_features,
                "a fraction in (0, 1]",
            ));
        }
        match self.contamination {
            Contamination::Fraction(c) if !(c > 0.0 && c <= 0.5) => {
                return Err(invalid(
                    "contamination",
                    c,
                    "\"auto\" or a fraction in (0, 0.5]",
                ));
            }
            _ => {}
        }
        Ok(IsolationForestValidParams(self))
    }
}

fn invalid(name: &'static str, value: impl ToString, expected: &'static str) -> ForestError {
    ForestError::InvalidParam {
        name,
        value: value.to_string(),
        expected,
    }
}

impl IsolationForestValidParams {
    /// The number of trees.
    pub fn n_estimators(&self) -> usize {
        self.0.n_estimators
    }

    /// The subsample setting.
    pub fn max_samples(&self) -> MaxSamples {
        self.0.max_samples
    }

    /// The share of features per tree.
    pub fn max_features(&self) -> f64 {
        self.0.max_features
    }

    /// The contamination setting.
    pub fn contamination(&self) -> Contamination {
        self.0.contamination
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.0.seed
    }

    /// The subsample size for `n_rows` rows (scikit-learn's `max_samples_`).
    pub fn subsample_size(&self, n_rows: usize) -> usize {
        let size = match self.0.max_samples {
            MaxSamples::Auto => AUTO_MAX_SAMPLES,
            MaxSamples::Count(count) => count,
            MaxSamples::Fraction(f) => (f * n_rows as f64) as usize,
        };
        size.clamp(1, n_rows.max(1))
    }

    /// Grows the forest on every row of `data`; then sets the offset from the contamination.
    ///
    /// Trees are grown in parallel on the current rayon pool, each from its own seed drawn in order
    /// from the forest's seed, so the result does not depend on the number of threads.
    ///
    /// # Errors
    /// [`ForestError::Empty`] when `data` has no rows.
    pub fn fit(&self, data: &Matrix) -> Result<IsolationForest, ForestError> {
        let n_rows = data.n_rows();
        if n_rows == 0 {
            return Err(ForestError::Empty);
        }
        let n_cols = data.n_cols();
        let max_samples = self.subsample_size(n_rows);
        // scikit-learn: max_depth = ceil(log2(max(max_samples, 2))).
        let height = usize::BITS - (max_samples.max(2) - 1).leading_zeros();
        let n_features = if self.0.max_features >= 1.0 {
            n_cols
        } else {
            ((self.0.max_features * n_cols as f64) as usize).max(1)
        };
        let mut seeds = SplitMix64::new(self.0.seed);
        let tree_seeds: Vec<u64> = (0..self.0.n_estimators).map(|_| seeds.next_u64()).collect();
        let trees: Vec<tree::GrownTree> = tree_seeds
            .par_iter()
            .map(|&seed| {
                let mut rng = SplitMix64::new(seed);
                let sample = tree::sample_without_replacement(n_rows, max_samples, &mut rng);
                let features = if n_features == n_cols {
                    (0..n_cols).collect()
                } else {
                    let mut chosen = tree::sample_without_replacement(n_cols, n_features, &mut rng);
                    chosen.sort_unstable();
                    chosen
                };
                tree::grow_tree(data, &sample, &features, height, &mut rng)
            })
            .collect();
        let forest = IsolationForest::from_trees(
            self.clone(),
            n_cols,
            max_samples,
            height,
            AUTO_OFFSET,
            trees,
        );
        Ok(match self.0.contamination {
            Contamination::Auto => forest,
            Contamination::Fraction(share) => {
                let scores = forest.score_samples(data);
                let offset = percentile(scores, 100.0 * share);
                forest.with_offset(offset)
            }
        })
    }
}

/// numpy's default (`linear`) percentile of `values`, `q` in [0, 100]; `values` is non-empty.
pub(crate) fn percentile(mut values: Vec<f64>, q: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let position = (values.len() - 1) as f64 * q / 100.0;
    let low = position.floor() as usize;
    let high = (low + 1).min(values.len() - 1);
    let weight = position - low as f64;
    values[low] + (values[high] - values[low]) * weight
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_scikit_learns() {
        let params = IsolationForestParams::default().check().expect("valid");
        assert_eq!(params.n_estimators(), 100);
        assert_eq!(params.max_samples(), MaxSamples::Auto);
        assert_eq!(params.max_features(), 1.0);
        assert_eq!(params.contamination(), Contamination::Auto);
        assert_eq!(params.subsample_size(10_000), 256);
        assert_eq!(params.subsample_size(40), 40);
    }

    #[test]
    fn out_of_range_parameters_are_named() {
        let cases = [
            (IsolationForest::params().n_estimators(0), "n_estimators"),
            (
                IsolationForest::params().max_samples(MaxSamples::Count(0)),
                "max_samples",
            ),
            (
                IsolationForest::params().max_samples(MaxSamples::Fraction(1.5)),
                "max_samples",
            ),
            (IsolationForest::params().max_features(0.0), "max_features"),
            (
                IsolationForest::params().contamination(Contamination::Fraction(0.6)),
                "contamination",
            ),
            (
                IsolationForest::params().contamination(Contamination::Fraction(f64::NAN)),
                "contamination",
            ),
        ];
        for (params, name) in cases {
            let error = params.check().expect_err(name);
            assert!(
                matches!(error, ForestError::InvalidParam { name: n, .. } if n == name),
                "{error}"
            );
        }
    }

    #[test]
    fn subsample_size_follows_scikit_learn() {
        let count = IsolationForest::params()
            .max_samples(MaxSamples::Count(500))
            .check()
            .expect("valid");
        assert_eq!(count.subsample_size(300), 300);
        assert_eq!(count.subsample_size(1000), 500);
        let fraction = IsolationForest::params()
            .max_samples(MaxSamples::Fraction(0.5))
            .check()
            .expect("valid");
        assert_eq!(fraction.subsample_size(301), 150);
        assert_eq!(fraction.subsample_size(1), 1);
    }

    #[test]
    fn percentile_interpolates_like_numpy() {
        // numpy.percentile([1, 2, 3, 4], 10) == 1.3
        assert!((percentile(vec![4.0, 1.0, 3.0, 2.0], 10.0) - 1.3).abs() < 1e-12);
        assert_eq!(percentile(vec![5.0], 5.0), 5.0);
        assert_eq!(percentile(vec![1.0, 2.0], 100.0), 2.0);
    }
}
