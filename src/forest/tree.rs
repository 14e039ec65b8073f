//! One isolation tree: growing it on a subsample, and the flat node layout that scoring walks.
//!
//! A tree is a run of [`Node`]s in the forest's flat node arrays; node 0 is the root and the two
//! children of a split node sit next to each other at `base` and `base + 1`. A leaf is encoded as a
//! node whose threshold is NaN and whose `base + 1` is itself: `!(x <= NaN)` is always true, so a
//! walk that reaches a leaf stays there. Scoring can then take exactly `height` steps for every
//! row, with no branch on the data, which lets several rows walk the same tree in lockstep.

use crate::forest::Matrix;

/// Euler–Mascheroni constant, as scikit-learn's `_average_path_length` uses it.
const EULER_GAMMA: f64 = 0.577_215_664_901_532_9;

/// scikit-learn's `FEATURE_THRESHOLD`: a feature whose range in a node is at most this is constant
/// there (`sklearn/tree/_splitter.pyx`).
const FEATURE_THRESHOLD: f64 = 1e-7;

/// c(n): the average path length of an unsuccessful search in a binary search tree of `n` points,
/// which normalises path lengths (Liu et al. 2008, eq. 1). c(0) = c(1) = 0, c(2) = 1, else
/// 2 H(n-1) - 2 (n-1) / n with H(i) ≈ ln(i) + γ, exactly as scikit-learn computes it.
pub fn average_path_length(n: usize) -> f64 {
    match n {
        0 | 1 => 0.0,
        2 => 1.0,
        _ => {
            let n = n as f64;
            2.0 * ((n - 1.0).ln() + EULER_GAMMA) - 2.0 * (n - 1.0) / n
        }
    }
}

/// One node of the flat tree layout (16 bytes): the threshold, then the feature and the left
/// child's index packed in one word so the hot loop reads a node with two loads, not three.
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C)]
pub(crate) struct Node {
    /// Rows with `x[feature] <= threshold` go to `base`, the others to `base + 1`. NaN for a leaf.
    pub threshold: f64,
    /// `feature * LANES | base << 32`; `base` is the left child's index within the tree, or for
    /// a leaf its own index minus one (wrapping). The feature is stored pre-multiplied because
    /// batch scoring reads lane `l`'s value of feature `f` at `f * LANES + l`.
    link: u64,
}

/// Rows walked through a tree in lockstep by batch scoring (16 measured ~10% faster than 8).
pub(crate) const LANES: usize = 16;

/// The most columns a forest can read, so that `feature * LANES` fits the node's 32 bits.
pub const MAX_COLUMNS: usize = (u32::MAX as usize + 1) / LANES;

impl Node {
    /// A node; `feature` must be below [`MAX_COLUMNS`].
    pub fn new(threshold: f64, feature: u32, base: u32) -> Node {
        debug_assert!((feature as usize) < MAX_COLUMNS);
        Node {
            threshold,
            link: u64::from(feature.wrapping_mul(LANES as u32)) | (u64::from(base) << 32),
        }
    }

    fn leaf(index: usize) -> Node {
        Node::new(f64::NAN, 0, (index as u32).wrapping_sub(1))
    }

    /// A node from the two words batch scoring keeps in separate arrays.
    pub fn from_parts(threshold: f64, link: u64) -> Node {
        Node { threshold, link }
    }

    /// The packed feature offset and left child (see the field).
    pub fn link(&self) -> u64 {
        self.link
    }

    pub fn feature(&self) -> u32 {
        self.link as u32 / LANES as u32
    }

    pub fn base(&self) -> u32 {
        (self.link >> 32) as u32
    }

    /// The next node for a row: the child for a split node, itself for a leaf. A NaN value goes
    /// right, like every value at a leaf.
    #[inline(always)]
    pub fn next(&self, row: &[f64]) -> usize {
        self.step(row[self.feature() as usize])
    }

    /// The next node when the row's value of the node's feature is `x`.
    // `!(x <= t)` rather than `x > t` on purpose: it is true for NaN on either side, which is what
    // makes leaves (NaN threshold) absorbing and sends NaN inputs right.
    #[allow(clippy::neg_cmp_op_on_partial_ord)]
    #[inline(always)]
    pub fn step(&self, x: f64) -> usize {
        step(self.threshold, self.link, x)
    }

    pub fn is_leaf(&self) -> bool {
        self.threshold.is_nan()
    }
}

/// The next node from a node's threshold and link when the row's value is `x`.
// `!(x <= t)` rather than `x > t` on purpose: see `Node::step`.
#[allow(clippy::neg_cmp_op_on_partial_ord)]
#[inline(always)]
pub(crate) fn step(threshold: f64, link: u64, x: f64) -> usize {
    // The arithmetic shift sign-extends a root leaf's base (u32::MAX, i.e. -1) so that adding 1
    // wraps to 0 in a full-width register: no zero-extension per step.
    (((link as i64) >> 32) as usize).wrapping_add(usize::from(!(x <= threshold)))
}

/// A grown tree: its nodes and, per node, the path length credited to a row ending there
/// (depth + c(training points in the leaf); 0 for split nodes).
pub(crate) struct GrownTree {
    pub nodes: Vec<Node>,
    pub path_lengths: Vec<f64>,
}

/// SplitMix64 (Steele, Lea & Flood 2014): tiny, fast, and fixed forever, so a seed gives the same
/// forest on every platform and every version of our dependencies.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [0, n) by Lemire's multiply-shift; the bias (n / 2^64) is far below anything
    /// measurable here. `n` must be positive.
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }
}

/// `k` distinct row indices out of `0..n`, uniformly, as scikit-learn's bagging draws them
/// (without replacement). `k <= n`.
pub(crate) fn sample_without_replacement(n: usize, k: usize, rng: &mut SplitMix64) -> Vec<usize> {
    if k * 2 >= n {
        // Partial Fisher–Yates: cheap when k is a large share of n.
        let mut all: Vec<usize> = (0..n).collect();
        for i in 0..k {
            let j = i + rng.below(n - i);
            all.swap(i, j);
        }
        all.truncate(k);
        all
    } else {
        // Rejection against a bitset: at most 2 draws per pick on average when k < n / 2.
        let mut taken = vec![0u64; n.div_ceil(64)];
        let mut picked = Vec::with_capacity(k);
        while picked.len() < k {
            let i = rng.below(n);
            let (word, bit) = (i / 64, 1u64 << (i % 64));
            if taken[word] & bit == 0 {
                taken[word] |= bit;
                picked.push(i);
            }
        }
        picked
    }
}

/// Grows one isolation tree on the rows `sample` of `data`, splitting only on `features`, down to
/// depth `height` at most.
///
/// At each node I draw features at random among those not yet found constant in the node until one
/// varies (scikit-learn's `RandomSplitter` with `max_features=1`), then split at a uniform threshold
/// between its minimum and maximum in the node; a threshold equal to the maximum becomes the
/// minimum, as in scikit-learn, so both children are non-empty. A node is a leaf at depth `height`,
/// with fewer than two points, or when every feature is constant in it (duplicates).
pub(crate) fn grow_tree(
    data: &Matrix,
    sample: &[usize],
    features: &[usize],
    height: u32,
    rng: &mut SplitMix64,
) -> GrownTree {
    let m = sample.len();
    // The subsample, column-major, so a node's range scan reads contiguous memory.
    let mut columns = vec![0.0; features.len() * m];
    for (j, &feature) in features.iter().enumerate() {
        for (i, &row) in sample.iter().enumerate() {
            columns[j * m + i] = data.row(row)[feature];
        }
    }
    let mut order: Vec<u32> = (0..m as u32).collect();
    let mut candidates: Vec<usize> = Vec::with_capacity(features.len());
    let mut nodes = vec![Node::leaf(0)];
    let mut path_lengths = vec![0.0];
    let mut stack = vec![(0usize, 0usize, m, 0u32)];
    while let Some((index, start, end, depth)) = stack.pop() {
        let count = end - start;
        let split = if depth >= height || count < 2 {
            None
        } else {
            pick_split(
                &columns,
                m,
                &order[start..end],
                &mut candidates,
                features.len(),
                rng,
            )
        };
        let Some((j, threshold)) = split else {
            nodes[index] = Node::leaf(index);
            path_lengths[index] = f64::from(depth) + average_path_length(count);
            continue;
        };
        let column = &columns[j * m..(j + 1) * m];
        let members = &mut order[start..end];
        let mut left = 0;
        for i in 0..members.len() {
            if column[members[i] as usize] <= threshold {
                members.swap(i, left);
                left += 1;
            }
        }
        let base = nodes.len();
        nodes[index] = Node::new(threshold, features[j] as u32, base as u32);
        nodes.push(Node::leaf(base));
        nodes.push(Node::leaf(base + 1));
        path_lengths.extend([0.0, 0.0]);
        stack.push((base + 1, start + left, end, depth + 1));
        stack.push((base, start, start + left, depth + 1));
    }
    GrownTree {
        nodes,
        path_lengths,
    }
}

/// A random non-constant feature (as an index into the tree's features) and a uniform threshold in
/// its range, or `None` when every feature is constant over `members`.
fn pick_split(
    columns: &[f64],
    m: usize,
    members: &[u32],
    candidates: &mut Vec<usize>,
    n_features: usize,
    rng: &mut SplitMix64,
) -> Option<(usize, f64)> {
    candidates.clear();
    candidates.extend(0..n_features);
    while !candidates.is_empty() {
        let j = candidates.swap_remove(rng.below(candidates.len()));
        let column = &columns[j * m..(j + 1) * m];
        let (mut min, mut max) = (f64::INFINITY, f64::NEG_INFINITY);
        for &i in members {
            let x = column[i as usize];
            min = min.min(x);
            max = max.max(x);
        }
        if max <= min + FEATURE_THRESHOLD {
            continue;
        }
        let u = rng.next_f64();
        let range = max - min;
        // scikit-learn's min + (max - min) * u, unless the range overflows (values near ±f64::MAX),
        // where the weighted form stays finite.
        let mut threshold = if range.is_finite() {
            min + range * u
        } else {
            min * (1.0 - u) + max * u
        };
        if threshold.partial_cmp(&max) != Some(std::cmp::Ordering::Less) {
            threshold = min;
        }
        return Some((j, threshold));
    }
    None
}

#[cfg(test)]
mod tests {
    use approx::assert_relative_eq;

    use super::*;

    #[test]
    fn average_path_length_matches_known_values() {
        assert_eq!(average_path_length(0), 0.0);
        assert_eq!(average_path_length(1), 0.0);
        assert_eq!(average_path_length(2), 1.0);
        // scikit-learn: _average_path_length([3, 10, 256, 100000])
        assert_relative_eq!(
            average_path_length(3),
            2.0 * (2f64.ln() + EULER_GAMMA) - 4.0 / 3.0,
            epsilon = 1e-12
        );
        assert_relative_eq!(average_path_length(3), 1.20739236, epsilon = 1e-8);
        assert_relative_eq!(average_path_length(10), 3.74888048, epsilon = 1e-8);
        assert_relative_eq!(average_path_length(256), 10.24477092, epsilon = 1e-8);
        assert_relative_eq!(average_path_length(100_000), 22.18028226, epsilon = 1e-8);
    }

    #[test]
    fn sampling_without_replacement_gives_distinct_indices() {
        let mut rng = SplitMix64::new(7);
        for (n, k) in [(10, 10), (10, 3), (1000, 256), (300, 256), (1, 1)] {
            let mut picked = sample_without_replacement(n, k, &mut rng);
            assert_eq!(picked.len(), k);
            picked.sort_unstable();
            picked.dedup();
            assert_eq!(picked.len(), k, "duplicates for n={n} k={k}");
            assert!(picked.iter().all(|&i| i < n));
        }
    }

    #[test]
    fn uniform_draws_stay_in_range() {
        let mut rng = SplitMix64::new(1);
        for _ in 0..10_000 {
            let x = rng.next_f64();
            assert!((0.0..1.0).contains(&x));
            assert!(rng.below(5) < 5);
        }
    }

    #[test]
    fn identical_points_end_the_tree_at_the_root() {
        let data = Matrix::from_rows(2, [3.0, 4.0].repeat(50)).expect("valid");
        let sample: Vec<usize> = (0..50).collect();
        let tree = grow_tree(&data, &sample, &[0, 1], 6, &mut SplitMix64::new(0));
        assert_eq!(tree.nodes.len(), 1);
        assert!(tree.nodes[0].is_leaf());
        assert_relative_eq!(tree.path_lengths[0], average_path_length(50));
    }

    #[test]
    fn a_leaf_walk_stays_on_the_leaf() {
        let leaf = Node::leaf(5);
        assert_eq!(leaf.next(&[1.0]), 5);
        assert_eq!(leaf.next(&[f64::NAN]), 5);
        assert_eq!(Node::leaf(0).next(&[0.0]), 0);
    }

    #[test]
    fn leaves_respect_the_height_limit_and_hold_every_point() {
        let values: Vec<f64> = (0..64).map(|i| f64::from(i * 7 % 64)).collect();
        let data = Matrix::from_rows(1, values).expect("valid");
        let sample: Vec<usize> = (0..64).collect();
        let tree = grow_tree(&data, &sample, &[0], 3, &mut SplitMix64::new(3));
        // Walk every training point: it must reach a leaf within 3 steps.
        for row in data.rows() {
            let mut at = 0;
            for _ in 0..3 {
                at = tree.nodes[at].next(row);
            }
            assert!(tree.nodes[at].is_leaf());
            assert!(tree.path_lengths[at] >= 0.0);
        }
    }
}
