//! The isolation forest: fitting on a feature matrix and scoring rows. Detection calls
//! [`IsolationForest::decision_function_one`] per log; training fits one forest per service.
//! Pure and synchronous: no tokio, no HTTP, no storage (model files are plain `std::fs`).
//!
//! # Algorithm
//! Liu, Ting & Zhou, "Isolation Forest", ICDM 2008 (doi:10.1109/ICDM.2008.17), with scikit-learn's
//! `IsolationForest` semantics so that scores mean what users of the Python original expect:
//!
//! * Each of `n_estimators` trees is grown on `max_samples` rows drawn without replacement
//!   (`auto` = min(256, rows)), optionally on a random share `max_features` of the columns.
//! * A node picks a random feature among those that vary in it and splits at a uniform threshold
//!   between the feature's minimum and maximum there (left: `x <= threshold`), as scikit-learn's
//!   `ExtraTreeRegressor(max_features=1, splitter="random")` does. A node is a leaf at depth
//!   ceil(log2(max_samples)), with one point, or when all its points are identical.
//! * A row's path length in a tree is the depth of the leaf it reaches plus c(n), n the training
//!   points in that leaf ([`average_path_length`]).
//! * `score_samples(x) = -2^(-E[h(x)] / c(max_samples))`, in [-1, 0); lower is more anomalous.
//! * `offset` is −0.5 for `contamination = auto`, else the `contamination` percentile of the
//!   training scores; `decision_function = score_samples - offset` (< 0 is an outlier) and
//!   `predict` is −1 for outliers, 1 for inliers: exactly scikit-learn's `decision_function`.
//!
//! Randomness comes from one seed (SplitMix64 per tree), and trees are independent, so the same
//! data and seed give the same model and bit-identical scores whatever the number of threads.
//! The forest draws different random numbers from scikit-learn's, so individual scores differ;
//! their distribution (and so the ROC AUC) agrees, which `bench/forest_vs_sklearn.py` checks.
//!
//! # Missing and non-finite values
//! [`Matrix`] refuses NaN and ±inf with the row and column. A single row given to
//! [`IsolationForest::score_sample`] is not checked (the detection path builds it from finite
//! features and fill values); if it holds NaN anyway, NaN goes right at every split, and a row
//! shorter than the model's features is padded with NaN. Neither panics.
//!
//! # Speed
//! All trees live in flat arrays (a threshold and a packed feature/child word per node, children
//! adjacent). Leaves point to themselves, so every walk takes exactly `height` steps without a
//! data-dependent branch, and sixteen rows walk each tree in lockstep (transposed so one pointer
//! serves all of them) to hide memory latency: about six instructions per step. Rows are scored
//! in blocks of about 256 KB, each tree walking a whole block; blocks are split across the rayon
//! pool, and each row's sum runs over the trees in order, so threads do not change results.
//! Scoring allocates per block, never per row. Figures are in `BENCHMARKS.md`.

mod error;
mod file;
mod matrix;
mod params;
mod tree;

use std::fmt;

use rayon::prelude::*;

pub use error::{ForestError, ModelFileError};
pub use file::{MODEL_FORMAT_VERSION, ModelArtifact};
pub use matrix::Matrix;
pub use params::{
    AUTO_MAX_SAMPLES, AUTO_OFFSET, Contamination, DEFAULT_N_ESTIMATORS, DEFAULT_SEED,
    IsolationForestParams, IsolationForestValidParams, MaxSamples,
};
pub use tree::{MAX_COLUMNS, average_path_length};

use tree::{GrownTree, LANES, Node};

/// Bytes of rows scored per block. Each tree walks a whole block before the next tree starts, so
/// a tree (about 12 KB at max_samples 256) stays in L1 and the block's rows stay in L2; with
/// small blocks every block re-read all trees (over 1 MB) from L3, which doubled scoring time.
const BLOCK_BYTES: usize = 256 * 1024;

/// A fitted isolation forest: immutable plain data, cheap to share across threads.
#[derive(Clone)]
pub struct IsolationForest {
    params: IsolationForestValidParams,
    n_features: usize,
    max_samples: usize,
    height: u32,
    offset: f64,
    /// The nodes of all trees as two parallel arrays (thresholds, and the packed feature offset
    /// and left child), so the hot loop indexes both with an 8-byte stride and no shift.
    thresholds: Vec<f64>,
    links: Vec<u64>,
    path_lengths: Vec<f64>,
    /// Tree `t` owns nodes `tree_starts[t]..tree_starts[t + 1]`.
    tree_starts: Vec<usize>,
}

impl fmt::Debug for IsolationForest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IsolationForest")
            .field("params", &self.params)
            .field("n_features", &self.n_features)
            .field("max_samples", &self.max_samples)
            .field("height", &self.height)
            .field("offset", &self.offset)
            .field("trees", &self.n_estimators())
            .field("nodes", &self.links.len())
            .finish()
    }
}

impl IsolationForest {
    /// Parameters with scikit-learn's defaults (100 trees, `max_samples` auto, `max_features` 1.0,
    /// contamination auto) and seed 42.
    pub fn params() -> IsolationForestParams {
        IsolationForestParams::default()
    }

    fn from_trees(
        params: IsolationForestValidParams,
        n_features: usize,
        max_samples: usize,
        height: u32,
        offset: f64,
        trees: Vec<GrownTree>,
    ) -> Self {
        let total: usize = trees.iter().map(|tree| tree.nodes.len()).sum();
        let mut nodes = Vec::with_capacity(total);
        let mut path_lengths = Vec::with_capacity(total);
        let mut tree_starts = Vec::with_capacity(trees.len() + 1);
        tree_starts.push(0);
        for tree in trees {
            nodes.extend_from_slice(&tree.nodes);
            path_lengths.extend_from_slice(&tree.path_lengths);
            tree_starts.push(nodes.len());
        }
        debug_assert_eq!(
            check_trees(&nodes, &path_lengths, &tree_starts, n_features),
            Ok(())
        );
        Self::from_checked_nodes(
            params,
            n_features,
            max_samples,
            height,
            offset,
            &nodes,
            path_lengths,
            tree_starts,
        )
    }

    /// A forest from nodes that passed [`check_trees`].
    #[allow(clippy::too_many_arguments)]
    fn from_checked_nodes(
        params: IsolationForestValidParams,
        n_features: usize,
        max_samples: usize,
        height: u32,
        offset: f64,
        nodes: &[Node],
        path_lengths: Vec<f64>,
        tree_starts: Vec<usize>,
    ) -> Self {
        IsolationForest {
            params,
            n_features,
            max_samples,
            height,
            offset,
            thresholds: nodes.iter().map(|node| node.threshold).collect(),
            links: nodes.iter().map(Node::link).collect(),
            path_lengths,
            tree_starts,
        }
    }

    /// The parameters the forest was fitted with.
    pub fn fitted_params(&self) -> &IsolationForestValidParams {
        &self.params
    }

    /// The number of features (columns) the forest reads.
    pub fn n_features(&self) -> usize {
        self.n_features
    }

    /// The number of trees.
    pub fn n_estimators(&self) -> usize {
        self.tree_starts.len() - 1
    }

    /// The subsample size each tree was grown on (scikit-learn's `max_samples_`).
    pub fn max_samples(&self) -> usize {
        self.max_samples
    }

    /// The height limit of the trees: ceil(log2(max_samples)).
    pub fn height(&self) -> u32 {
        self.height
    }

    /// The offset: `decision_function = score_samples - offset`.
    pub fn offset(&self) -> f64 {
        self.offset
    }

    /// The same forest with another offset (a threshold calibrated on feedback, for instance).
    pub fn with_offset(mut self, offset: f64) -> Self {
        self.offset = offset;
        self
    }

    /// scikit-learn's `score_samples` for one row: −2^(−E[h]/c(ψ)), lower is more anomalous.
    /// Values beyond the model's features are ignored; missing ones count as NaN (see the module
    /// docs).
    pub fn score_sample(&self, row: &[f64]) -> f64 {
        if row.len() >= self.n_features {
            return self.score_from_sum(self.path_sum(row));
        }
        let mut padded = row.to_vec();
        padded.resize(self.n_features, f64::NAN);
        self.score_from_sum(self.path_sum(&padded))
    }

    /// scikit-learn's `decision_function` for one row: `score_sample - offset`, below 0 is an
    /// outlier.
    pub fn decision_function_one(&self, row: &[f64]) -> f64 {
        self.score_sample(row) - self.offset
    }

    /// −1 when the row is an outlier (`decision_function < 0`), else 1.
    pub fn predict_one(&self, row: &[f64]) -> i8 {
        if self.decision_function_one(row) < 0.0 {
            -1
        } else {
            1
        }
    }

    /// `score_samples` of every row, in row order, scored in parallel on the current rayon pool.
    pub fn score_samples(&self, data: &Matrix) -> Vec<f64> {
        let mut sums = vec![0.0; data.n_rows()];
        let n_cols = data.n_cols();
        let block_rows = (BLOCK_BYTES / (size_of::<f64>() * self.n_features.max(n_cols)))
            .clamp(LANES, 1 << 16)
            / LANES
            * LANES;
        if n_cols == self.n_features {
            data.as_slice()
                .par_chunks(block_rows * n_cols)
                .zip(sums.par_chunks_mut(block_rows))
                .for_each(|(rows, sums)| self.add_path_lengths(rows, sums));
        } else {
            // Columns that do not match: lay each block out with the model's width first.
            data.as_slice()
                .par_chunks(block_rows * n_cols)
                .zip(sums.par_chunks_mut(block_rows))
                .for_each(|(rows, sums)| {
                    let mut block = Vec::with_capacity(sums.len() * self.n_features);
                    for row in rows.chunks_exact(n_cols) {
                        let kept = n_cols.min(self.n_features);
                        block.extend_from_slice(&row[..kept]);
                        block.resize(block.len() + self.n_features - kept, f64::NAN);
                    }
                    self.add_path_lengths(&block, sums);
                });
        }
        sums.into_iter()
            .map(|sum| self.score_from_sum(sum))
            .collect()
    }

    /// `decision_function` of each row of `rows` (row-major, exactly `n_features` values per row;
    /// a shorter tail is ignored), on the calling thread: the batch scorer of
    /// [`IsolationForest::score_samples`] without rayon, for callers that score a request's rows
    /// and must not block on, or wait for, a thread pool. Same values as
    /// [`IsolationForest::decision_function_one`] on each row, bit for bit.
    pub fn decision_function_rows(&self, rows: &[f64]) -> Vec<f64> {
        let width = self.n_features.max(1);
        let mut sums = vec![0.0; rows.len() / width];
        self.add_path_lengths(&rows[..sums.len() * width], &mut sums);
        sums.into_iter()
            .map(|sum| self.score_from_sum(sum) - self.offset)
            .collect()
    }

    /// `decision_function` of every row: `score_samples - offset`.
    pub fn decision_function(&self, data: &Matrix) -> Vec<f64> {
        let mut scores = self.score_samples(data);
        for score in &mut scores {
            *score -= self.offset;
        }
        scores
    }

    /// `predict` of every row: −1 for outliers, 1 for inliers.
    pub fn predict(&self, data: &Matrix) -> Vec<i8> {
        self.decision_function(data)
            .into_iter()
            .map(|d| if d < 0.0 { -1 } else { 1 })
            .collect()
    }

    fn trees(&self) -> impl Iterator<Item = TreeView<'_>> {
        self.tree_starts.windows(2).map(|bounds| {
            let range = bounds[0]..bounds[1];
            TreeView {
                thresholds: &self.thresholds[range.clone()],
                links: &self.links[range.clone()],
                lengths: &self.path_lengths[range],
            }
        })
    }

    /// The sum over trees of one row's path length; `row` has at least `n_features` values.
    fn path_sum(&self, row: &[f64]) -> f64 {
        let mut sum = 0.0;
        for tree in self.trees() {
            sum += tree.walk(row, self.height);
        }
        sum
    }

    /// Adds each row's path length sum to `sums`; `rows` holds `sums.len()` rows of exactly
    /// `n_features` values.
    fn add_path_lengths(&self, rows: &[f64], sums: &mut [f64]) {
        let width = self.n_features;
        let group_len = LANES * width;
        // Each group of LANES rows transposed to feature-major order, so lane `l`'s value of
        // feature `f` sits at `f * LANES + l`: one base pointer serves every lane, where LANES
        // separate row pointers did not fit in registers and cost an extra load per step.
        let groups = rows.len() / group_len;
        let mut transposed = vec![0.0; groups * group_len];
        for (group, out) in rows
            .chunks_exact(group_len)
            .zip(transposed.chunks_exact_mut(group_len))
        {
            for (lane, row) in group.chunks_exact(width).enumerate() {
                for (feature, &x) in row.iter().enumerate() {
                    out[feature * LANES + lane] = x;
                }
            }
        }
        let tail = &rows[groups * group_len..];
        let (group_sums, tail_sums) = sums.split_at_mut(groups * LANES);
        for TreeView {
            thresholds,
            links,
            lengths,
        } in self.trees()
        {
            for (group, out) in transposed
                .chunks_exact(group_len)
                .zip(group_sums.chunks_exact_mut(LANES))
            {
                let mut at = [0usize; LANES];
                for _ in 0..self.height {
                    for (lane, at) in at.iter_mut().enumerate() {
                        // SAFETY: the forest's tree invariant (see `check_trees`): `at` starts at
                        // the root and every step from a node of this tree lands on a node of this
                        // tree, and every split feature is below `n_features` = `width`, so
                        // `feature * LANES + lane < group_len`. This loop is the hot path.
                        let node = *at;
                        let (threshold, link) = unsafe {
                            (*thresholds.get_unchecked(node), *links.get_unchecked(node))
                        };
                        let x = unsafe { *group.get_unchecked(link as u32 as usize + lane) };
                        *at = tree::step(threshold, link, x);
                    }
                }
                for (out, &at) in out.iter_mut().zip(&at) {
                    *out += lengths[at];
                }
            }
            let tree = TreeView {
                thresholds,
                links,
                lengths,
            };
            for (row, out) in tail.chunks_exact(width).zip(tail_sums.iter_mut()) {
                *out += tree.walk(row, self.height);
            }
        }
    }

    fn score_from_sum(&self, sum: f64) -> f64 {
        let normaliser = self.n_estimators() as f64 * average_path_length(self.max_samples);
        // With one training row every path is 0 and so is c(1): nothing was learned, so every
        // point gets E[h] = c(ψ), the score of an ordinary point (−0.5), instead of 0/0.
        let ratio = if normaliser > 0.0 {
            sum / normaliser
        } else {
            1.0
        };
        -(-ratio).exp2()
    }
}

/// One tree's slices of the forest's node arrays.
struct TreeView<'a> {
    thresholds: &'a [f64],
    links: &'a [u64],
    lengths: &'a [f64],
}

impl TreeView<'_> {
    fn node(&self, index: usize) -> Node {
        Node::from_parts(self.thresholds[index], self.links[index])
    }

    fn nodes(&self) -> impl Iterator<Item = Node> + '_ {
        (0..self.links.len()).map(|index| self.node(index))
    }

    /// The path length credited to `row` (at least `n_features` wide): `height` steps from the
    /// root, then the leaf's depth + c(n).
    fn walk(&self, row: &[f64], height: u32) -> f64 {
        let mut at = 0;
        for _ in 0..height {
            at = self.node(at).next(row);
        }
        self.lengths[at]
    }
}

/// The tree invariant that batch scoring relies on for memory safety: every tree is non-empty;
/// a split node has a finite threshold, a feature below `n_features` and children `base` and
/// `base + 1` inside its tree; a leaf (NaN threshold) steps to itself and credits a finite,
/// non-negative path length. `grow_tree` builds trees this way; loaded files are checked.
fn check_trees(
    nodes: &[Node],
    path_lengths: &[f64],
    tree_starts: &[usize],
    n_features: usize,
) -> Result<(), String> {
    if nodes.len() != path_lengths.len() || tree_starts.last() != Some(&nodes.len()) {
        return Err("node arrays of different lengths".to_owned());
    }
    for (t, bounds) in tree_starts.windows(2).enumerate() {
        let (start, end) = (bounds[0], bounds[1]);
        let len = end.saturating_sub(start);
        // At most i32::MAX nodes so that child indices are non-negative as i32 (see `tree::step`).
        if len == 0 || len > i32::MAX as usize {
            return Err(format!("tree {t} has {len} nodes"));
        }
        for (i, (node, length)) in nodes[start..end]
            .iter()
            .zip(&path_lengths[start..end])
            .enumerate()
        {
            let valid = if node.is_leaf() {
                node.base().wrapping_add(1) as usize == i && length.is_finite() && *length >= 0.0
            } else {
                (node.base() as usize) < len - 1
                    && (node.feature() as usize) < n_features
                    && node.threshold.is_finite()
            };
            if !valid {
                return Err(format!("tree {t}, node {i} is inconsistent"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use approx::assert_relative_eq;

    use super::*;

    /// A 2-D blob of `n` points in [0, 1)² from a fixed generator, plus one far outlier at the end.
    fn blob_with_outlier(n: usize) -> Matrix {
        let mut rng = tree::SplitMix64::new(99);
        let mut data: Vec<f64> = (0..2 * n).map(|_| rng.next_f64()).collect();
        data.extend([25.0, -30.0]);
        Matrix::from_rows(2, data).expect("finite")
    }

    fn fit(data: &Matrix, seed: u64) -> IsolationForest {
        IsolationForest::params()
            .seed(seed)
            .check()
            .expect("valid")
            .fit(data)
            .expect("fits")
    }

    #[test]
    fn fitted_forest_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync + Clone + fmt::Debug>() {}
        assert_send_sync::<IsolationForest>();
        assert_send_sync::<ModelArtifact>();
        assert_send_sync::<Matrix>();
    }

    #[test]
    fn a_far_outlier_scores_lowest() {
        let data = blob_with_outlier(500);
        let forest = fit(&data, 42);
        let scores = forest.score_samples(&data);
        let lowest = (0..scores.len())
            .min_by(|&a, &b| scores[a].total_cmp(&scores[b]))
            .expect("rows");
        assert_eq!(lowest, 500);
        assert!(forest.predict_one(data.row(500)) == -1);
        assert!(scores.iter().all(|s| (-1.0..0.0).contains(s)));
    }

    #[test]
    fn same_data_and_seed_give_the_same_model_and_scores() {
        let data = blob_with_outlier(300);
        let a = fit(&data, 7).score_samples(&data);
        let b = fit(&data, 7).score_samples(&data);
        assert_eq!(a, b);
        let c = fit(&data, 8).score_samples(&data);
        assert_ne!(a, c);
    }

    #[test]
    fn scores_do_not_depend_on_the_thread_count() {
        let data = blob_with_outlier(2000);
        let run = |threads| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("pool")
                .install(|| {
                    let forest = fit(&data, 3);
                    forest.score_samples(&data)
                })
        };
        let one = run(1);
        assert_eq!(one, run(3));
        assert_eq!(one, run(8));
    }

    #[test]
    fn sequential_rows_and_single_row_decisions_agree_bit_for_bit() {
        let data = blob_with_outlier(300);
        let forest = fit(&data, 3);
        // 1, 15, 16, 17 and 37 rows: tails only, one full lane group, groups plus tails; NaN too.
        for n in [1, 15, 16, 17, 37] {
            let mut rows = data.as_slice()[..2 * n].to_vec();
            rows[1] = f64::NAN;
            let decisions = forest.decision_function_rows(&rows);
            assert_eq!(decisions.len(), n);
            for (i, row) in rows.chunks_exact(2).enumerate() {
                assert_eq!(
                    decisions[i].to_bits(),
                    forest.decision_function_one(row).to_bits()
                );
            }
        }
    }

    #[test]
    fn batch_and_single_row_scores_agree_bit_for_bit() {
        let data = blob_with_outlier(1000);
        let forest = fit(&data, 5);
        let batch = forest.score_samples(&data);
        for (i, row) in data.rows().enumerate() {
            assert_eq!(batch[i].to_bits(), forest.score_sample(row).to_bits());
        }
    }

    #[test]
    fn auto_contamination_gives_offset_minus_half() {
        let data = blob_with_outlier(200);
        let forest = fit(&data, 1);
        assert_eq!(forest.offset(), -0.5);
        let row = data.row(3);
        assert_relative_eq!(
            forest.decision_function_one(row),
            forest.score_sample(row) + 0.5
        );
    }

    #[test]
    fn contamination_five_percent_flags_about_five_percent_of_training_rows() {
        let data = blob_with_outlier(1999);
        let forest = IsolationForest::params()
            .contamination(Contamination::Fraction(0.05))
            .check()
            .expect("valid")
            .fit(&data)
            .expect("fits");
        let outliers = forest.predict(&data).iter().filter(|&&p| p == -1).count();
        // The offset is the 5th percentile of 2000 training scores: 100 rows, give or take ties.
        assert!((95..=105).contains(&outliers), "{outliers} outliers");
        assert!(forest.offset() > -1.0 && forest.offset() < 0.0);
    }

    #[test]
    fn with_offset_replaces_the_offset() {
        let data = blob_with_outlier(50);
        let forest = fit(&data, 1).with_offset(-0.6);
        assert_eq!(forest.offset(), -0.6);
    }

    #[test]
    fn duplicates_and_constant_columns_do_not_panic() {
        // Half the rows identical, one column constant everywhere.
        let mut data = Vec::new();
        for i in 0..1000 {
            let x = if i % 2 == 0 { 1.0 } else { f64::from(i % 17) };
            data.extend([x, 5.0, x * 2.0]);
        }
        let data = Matrix::from_rows(3, data).expect("finite");
        let forest = fit(&data, 0);
        let scores = forest.score_samples(&data);
        assert!(scores.iter().all(|s| s.is_finite()));
        // Every duplicate scores the same.
        assert_eq!(scores[0], scores[2]);
        // A column constant everywhere is never split on.
        assert!(
            forest
                .trees()
                .flat_map(|tree| tree.nodes().collect::<Vec<_>>())
                .all(|node| node.is_leaf() || node.feature() != 1)
        );
    }

    #[test]
    fn all_identical_rows_make_single_leaf_trees() {
        let data = Matrix::from_rows(2, [1.0, 2.0].repeat(300)).expect("finite");
        let forest = fit(&data, 0);
        assert_eq!(forest.links.len(), forest.n_estimators());
        // Every path is c(256) = the normaliser, so every score is −0.5.
        assert_relative_eq!(forest.score_sample(&[1.0, 2.0]), -0.5, epsilon = 1e-12);
    }

    #[test]
    fn a_single_row_fits_and_scores_minus_half() {
        let data = Matrix::from_rows(3, vec![1.0, 2.0, 3.0]).expect("finite");
        let forest = fit(&data, 0);
        assert_eq!(forest.max_samples(), 1);
        assert_eq!(forest.score_samples(&data), vec![-0.5]);
    }

    #[test]
    fn more_features_than_rows_and_fewer_rows_than_max_samples() {
        let mut rng = tree::SplitMix64::new(4);
        let data: Vec<f64> = (0..10 * 40).map(|_| rng.next_f64()).collect();
        let data = Matrix::from_rows(40, data).expect("finite");
        let forest = fit(&data, 0);
        assert_eq!(forest.max_samples(), 10);
        assert_eq!(forest.height(), 4);
        assert!(forest.score_samples(&data).iter().all(|s| s.is_finite()));
    }

    #[test]
    fn an_empty_matrix_cannot_be_fitted() {
        let data = Matrix::from_rows(2, vec![]).expect("zero rows");
        let params = IsolationForest::params().check().expect("valid");
        assert_eq!(params.fit(&data).unwrap_err(), ForestError::Empty);
        let forest = fit(&blob_with_outlier(10), 0);
        assert!(forest.score_samples(&data).is_empty());
    }

    #[test]
    fn nan_and_short_rows_score_without_panicking() {
        let forest = fit(&blob_with_outlier(100), 0);
        assert!(forest.score_sample(&[f64::NAN, 0.5]).is_finite());
        assert!(forest.score_sample(&[0.5]).is_finite());
        assert!(forest.score_sample(&[]).is_finite());
        let wide = Matrix::from_rows(3, vec![0.5, 0.5, 9.0]).expect("finite");
        assert_eq!(
            forest.score_samples(&wide)[0],
            forest.score_sample(&[0.5, 0.5])
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Any finite matrix (ties, constant columns, a single row, huge ranges) fits, and every
        /// score is finite, in [-1, 0), and the same for the batch and the single-row path.
        #[test]
        fn any_finite_matrix_fits_and_scores_in_range(
            n_cols in 1usize..5,
            values in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::prelude::Just(0.0),
                    proptest::prelude::Just(1.0),
                    proptest::prelude::Just(f64::MAX),
                    proptest::prelude::Just(f64::MIN),
                    -1e300f64..1e300,
                ],
                1..300,
            ),
            seed in proptest::prelude::any::<u64>(),
        ) {
            let n_rows = values.len() / n_cols;
            proptest::prop_assume!(n_rows > 0);
            let data = Matrix::from_rows(n_cols, values[..n_rows * n_cols].to_vec())
                .expect("finite");
            let forest = IsolationForest::params()
                .n_estimators(10)
                .seed(seed)
                .check()
                .expect("valid")
                .fit(&data)
                .expect("fits");
            let scores = forest.score_samples(&data);
            for (row, score) in data.rows().zip(&scores) {
                proptest::prop_assert!(score.is_finite() && *score >= -1.0 && *score < 0.0);
                proptest::prop_assert_eq!(score.to_bits(), forest.score_sample(row).to_bits());
            }
        }
    }

    #[test]
    fn max_features_restricts_each_tree_to_a_subset() {
        let mut rng = tree::SplitMix64::new(4);
        let data: Vec<f64> = (0..500 * 10).map(|_| rng.next_f64()).collect();
        let data = Matrix::from_rows(10, data).expect("finite");
        let forest = IsolationForest::params()
            .max_features(0.3)
            .check()
            .expect("valid")
            .fit(&data)
            .expect("fits");
        for tree in forest.trees() {
            let mut used: Vec<u32> = tree
                .nodes()
                .filter(|n| !n.is_leaf())
                .map(|n| n.feature())
                .collect();
            used.sort_unstable();
            used.dedup();
            assert!(used.len() <= 3);
        }
    }
}
