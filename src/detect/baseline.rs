//! A service's learned baseline: what "normal" means for it, and the evidence that a log is not.
//! Pure; fitted by the learning loop from the same sample as the forest.
//!
//! A vanilla isolation forest misses what matters most on an on-call night: a feature that was
//! constant is never split on, so a new value of it is invisible; a far spike isolates barely
//! faster than an ordinary log in a corner of the data; a joint shift of several features, each
//! in range, is poorly cut by axis-parallel splits. So the baseline combines five sources, each
//! with its own share of the false-alarm budget `B` (`FALSE_ALARM_BUDGET`, the share of normal
//! logs a service may flag):
//!
//! 1. **Features**: per numeric feature, the median and a robust scale on each side (the larger of
//!    the MAD and the 2.5 % tail, so skewed or heavy tails widen their own side), on the scale
//!    where the feature is most symmetric (log for durations, sizes and counts, log-odds for shares
//!    in [0, 1], raw otherwise). A log is flagged when a feature's robust z-score passes the
//!    two-sided cut for `2B/5` shared by the features. A small count (0, 1, 2, … with at most 16
//!    values) is judged instead by its tail probability under a Poisson or negative binomial
//!    fitted to the sample, at the same share of `B`.
//! 2. **Categories**: text fields (level, status words, method, endpoint, region, …) and numeric
//!    features with at most 16 distinct values. A field is *closed* when the Good–Turing estimate
//!    of the chance of a value never seen (values seen once, over the logs) is within `B/2`; a
//!    value of a closed field that the baseline has not seen at least twice is flagged. Open
//!    fields (identifiers, hosts of a large fleet, free text) never count by being new.
//! 3. **Relations**: for each joint feature that the others predict (R² ≥ 0.3), its residual given
//!    the others, standardized (`(P (z - mean))_j / sqrt(P_jj)` with `P` the inverse covariance
//!    below); flagged past the two-sided normal cut for `B/5` shared by those features. One
//!    feature out of step with the ones it moves with is the commonest joint anomaly, and a test
//!    aimed at it is far more powerful than the distance over every dimension.
//! 4. **Joint**: the robust Mahalanobis distance of the z-scores of the continuous features and
//!    the counts with a median of at least 2, with a covariance fitted on the rows that no
//!    feature flags and re-fitted without the rows beyond its 0.1 % cut; flagged past the
//!    chi-square cut for `B/5` (widened when the sample's own 97.5 % quantile shows heavier tails
//!    than a normal distribution's).
//! 5. **Forest**: the isolation forest's decision score below a cut for `B/5`, fitted as the
//!    median minus the normal quantile times the lower robust scale of the outlier-free rows'
//!    scores, and below 0 and `ANOMALY_THRESHOLD` as the contract requires.
//!
//! Every cut is scale-free and comes from medians and quantiles that a few percent of anomalies
//! in the sample barely move; rows that the features or the joint distance flag are left out of
//! the categories, the covariance and the forest. Each flag comes with a [`Reason`] that an
//! engineer can read: the feature, its value and its usual range; the field and the new value.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::detect::stats::{
    MAD_TO_SD, chi_square_upper, count_tail_limits, invert, mad, median, normal_quantile, quantile,
    student_t_quantile,
};
use crate::parse::ParsedLog;

/// The default `FALSE_ALARM_BUDGET`: one normal log in a thousand may be flagged.
pub const DEFAULT_FALSE_ALARM_BUDGET: f64 = 0.001;
/// Share of the budget for the per-feature cuts (all features together).
const FEATURE_SHARE: f64 = 0.4;
/// Share of the budget for the joint distance.
const JOINT_SHARE: f64 = 0.2;
/// Share of the budget for a feature far from what the other features of its log predict.
const RELATION_SHARE: f64 = 0.2;
/// A feature takes part in the relation test when the others explain at least this share of its
/// variance: below it, the prediction says little more than the median does.
const MIN_RELATION_R2: f64 = 0.3;
/// The smallest median of a count that joins the joint distance.
const MIN_JOINT_COUNT_MEDIAN: f64 = 2.0;
/// The features a relation names as the ones its feature usually moves with.
const RELATION_PARTNERS: usize = 2;
/// Share of the budget for the forest.
const FOREST_SHARE: f64 = 0.2;
/// Share of the budget a closed field's unseen values may take (Good–Turing).
const CLOSED_FIELD_SHARE: f64 = 0.5;
/// A field whose logs show more distinct values than this is open: never judged by newness.
pub const MAX_VOCABULARY: usize = 32;
/// A numeric feature with at most this many distinct values is also judged as a category.
const MAX_DISCRETE_VALUES: usize = 16;
/// Text fields kept per baseline.
const MAX_CATEGORY_FIELDS: usize = 32;
/// Continuous features in the joint distance.
const MAX_JOINT_FEATURES: usize = 16;
/// A value is known once the sample holds it this often (or an operator labeled it normal).
const MIN_KNOWN_COUNT: usize = 2;
/// A field is closed only once this many logs show it: below it, a value of a few percent may
/// simply not have come yet (at 200 logs, one of 3 % is missing with odds of 1 in 400).
const MIN_CLOSED_LOGS: usize = 200;
/// A text field must be in this share of the logs to be judged.
const PRESENCE_SHARE: f64 = 0.5;
/// Added to the z-scores' covariance, so collinear features do not make tiny moves look far.
const RIDGE: f64 = 0.01;
/// Reasons kept per anomaly.
const MAX_REASONS: usize = 4;
/// Known values listed in a reason.
const LISTED_VALUES: usize = 8;
/// Text values longer than this are not categories (see [`category_fields`]).
pub const MAX_CATEGORY_TEXT: usize = 64;
/// Text fields taken from one log for the baseline.
pub const MAX_CATEGORIES_PER_LOG: usize = 16;

/// What the baseline reads of a log.
pub trait Observation {
    /// A numeric feature, in base units.
    fn feature(&self, name: &str) -> Option<f64>;
    /// A text field: `level`, or an attribute by name.
    fn category(&self, field: &str) -> Option<&str>;
}

/// One training log, as the baseline learns from it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    /// By name; a tracked service's rows share one copy of each name (`learn::sample`).
    pub features: BTreeMap<Arc<str>, f64>,
    /// Text fields short enough to be categories ([`category_fields`]).
    pub categories: BTreeMap<String, String>,
    /// Labeled normal by an operator: never left out as an outlier, and its values count as known.
    pub trusted: bool,
}

impl Observation for Sample {
    fn feature(&self, name: &str) -> Option<f64> {
        self.features.get(name).copied()
    }

    fn category(&self, field: &str) -> Option<&str> {
        self.categories.get(field).map(String::as_str)
    }
}

impl<T: Observation + ?Sized> Observation for &T {
    fn feature(&self, name: &str) -> Option<f64> {
        (**self).feature(name)
    }

    fn category(&self, field: &str) -> Option<&str> {
        (**self).category(field)
    }
}

impl Observation for ParsedLog {
    fn feature(&self, name: &str) -> Option<f64> {
        self.features.get(name)
    }

    fn category(&self, field: &str) -> Option<&str> {
        if field == "level" {
            return self.level.as_deref();
        }
        self.attributes.get(field).map(String::as_str)
    }
}

/// The sample a parsed log gives the baseline.
pub fn sample_of(log: &ParsedLog) -> Sample {
    Sample {
        features: log
            .features
            .iter()
            .map(|(name, value)| (Arc::from(name), value))
            .collect(),
        categories: category_fields(
            log.level.as_deref(),
            log.attributes.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        ),
        trusted: false,
    }
}

/// The text fields of a log that may be categories: its level and its short attributes, at most
/// [`MAX_CATEGORIES_PER_LOG`], so a log with thousands of fields cannot grow the sample.
pub fn category_fields<'a>(
    level: Option<&'a str>,
    attributes: impl Iterator<Item = (&'a str, &'a str)>,
) -> BTreeMap<String, String> {
    let short = |text: &str| !text.is_empty() && text.len() <= MAX_CATEGORY_TEXT;
    level
        .filter(|level| short(level))
        .map(|level| ("level", level))
        .into_iter()
        .chain(attributes.filter(|(name, value)| *name != "level" && short(name) && short(value)))
        .take(MAX_CATEGORIES_PER_LOG)
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
}

/// Which way a value lies from the median.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    High,
    Low,
}

impl Direction {
    fn of(z: f64) -> Self {
        if z >= 0.0 { Self::High } else { Self::Low }
    }
}

/// One feature of a joint shift.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contribution {
    pub feature: String,
    pub value: f64,
    pub median: f64,
    pub direction: Direction,
}

/// What the evidence was.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Evidence {
    /// One feature far from its usual range.
    Feature {
        feature: String,
        value: f64,
        median: f64,
        typical_low: f64,
        typical_high: f64,
        direction: Direction,
        /// The robust z-score, and the cut it passed.
        z: f64,
        cut: f64,
    },
    /// A value the field never had in the baseline.
    NewCategory {
        field: String,
        value: String,
        known: Vec<String>,
    },
    /// Several features together far from their usual combination.
    Joint {
        distance: f64,
        cut: f64,
        features: Vec<Contribution>,
    },
    /// One feature far from what the other features of the same log predict for it, though
    /// perhaps within its own range: it usually moves with them and did not.
    Relation {
        feature: String,
        value: f64,
        /// What the other features predict for it, in its own units.
        expected: f64,
        direction: Direction,
        /// The features that weigh most in the prediction.
        with: Vec<String>,
        /// The standardized residual, and the cut it passed.
        z: f64,
        cut: f64,
    },
    /// Isolated by the forest, with nothing simpler to say.
    Forest { score: f64, cut: f64 },
}

/// Why a log is an anomaly: the evidence and one line for people.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reason {
    #[serde(flatten)]
    pub evidence: Evidence,
    pub summary: String,
}

impl Reason {
    /// The reason for `evidence`, with its line for people.
    pub fn new(evidence: Evidence) -> Self {
        let summary = match &evidence {
            Evidence::Feature {
                feature,
                value,
                median,
                typical_low,
                typical_high,
                direction,
                ..
            } => format!(
                "{feature} {} is far {} its usual {}–{} (median {})",
                number(*value),
                match direction {
                    Direction::High => "above",
                    Direction::Low => "below",
                },
                number(*typical_low),
                number(*typical_high),
                number(*median),
            ),
            Evidence::NewCategory {
                field,
                value,
                known,
            } => format!(
                "{field} {value:?} was never seen for this service (usual: {})",
                known.join(", ")
            ),
            Evidence::Joint { features, .. } => {
                let parts: Vec<String> = features
                    .iter()
                    .map(|c| {
                        let way = match c.direction {
                            Direction::High => "high",
                            Direction::Low => "low",
                        };
                        format!(
                            "{} {} ({way}, median {})",
                            c.feature,
                            number(c.value),
                            number(c.median)
                        )
                    })
                    .collect();
                format!("unusual combination: {}", parts.join(", "))
            }
            Evidence::Relation {
                feature,
                value,
                expected,
                direction,
                with,
                ..
            } => format!(
                "{feature} {} is {} for this log's {} (about {} expected from {})",
                number(*value),
                match direction {
                    Direction::High => "high",
                    Direction::Low => "low",
                },
                with.join(" and "),
                number(*expected),
                if with.len() == 1 { "it" } else { "them" },
            ),
            Evidence::Forest { score, cut } => format!(
                "isolated by the forest: score {} below its cut {}",
                number(*score),
                number(*cut)
            ),
        };
        Self { evidence, summary }
    }
}

/// A number as people write it: integers without decimals, others with four significant digits.
fn number(value: f64) -> String {
    if value == 0.0 {
        return "0".to_owned();
    }
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else {
        let digits = (3 - value.abs().log10().floor() as i32).clamp(0, 8) as usize;
        let text = format!("{value:.digits$}");
        if text.contains('.') {
            text.trim_end_matches('0').trim_end_matches('.').to_owned()
        } else {
            text
        }
    }
}

/// Sign-preserving `ln(1 + |x|)`: a log scale that is defined everywhere and monotone.
fn to_log_scale(x: f64) -> f64 {
    x.signum() * x.abs().ln_1p()
}

fn from_log_scale(y: f64) -> f64 {
    y.signum() * y.abs().exp_m1()
}

/// Keeps a share of exactly 0 or 1 finite on the logit scale.
const LOGIT_MARGIN: f64 = 1e-3;

/// The log-odds of a share in [0, 1]: hit ratios bunched near 1 have a long tail towards 0 that
/// a robust z-score on the raw scale reads as far far too often.
/// Beyond [0, 1] (a share that is not one after all) it goes on steeply and monotonically, so
/// such a value is far rather than clamped to an edge.
fn to_logit_scale(x: f64) -> f64 {
    let edge = ((1.0 + LOGIT_MARGIN) / LOGIT_MARGIN).ln();
    if x > 1.0 {
        edge + (x - 1.0) / LOGIT_MARGIN
    } else if x < 0.0 {
        -edge + x / LOGIT_MARGIN
    } else {
        ((x + LOGIT_MARGIN) / (1.0 - x + LOGIT_MARGIN)).ln()
    }
}

fn from_logit_scale(y: f64) -> f64 {
    let edge = ((1.0 + LOGIT_MARGIN) / LOGIT_MARGIN).ln();
    if y > edge {
        1.0 + (y - edge) * LOGIT_MARGIN
    } else if y < -edge {
        (y + edge) * LOGIT_MARGIN
    } else {
        let odds = y.exp();
        (odds * (1.0 + LOGIT_MARGIN) - LOGIT_MARGIN) / (1.0 + odds)
    }
}

/// The scale a feature is judged on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scale {
    Raw,
    Log,
    Logit,
}

impl Scale {
    /// The scale on which `sorted` values are the most symmetric: the log for non-negative
    /// measurements (durations, sizes), the logit for shares, the raw values otherwise.
    fn choose(sorted: &[f64]) -> Self {
        let (Some(min), Some(max)) = (sorted.first(), sorted.last()) else {
            return Self::Raw;
        };
        let asymmetry = |scale: Self| {
            let scaled: Vec<f64> = sorted.iter().map(|v| scale.apply(*v)).collect();
            skewness(&scaled).abs()
        };
        let mut candidates = vec![Self::Raw];
        if *min >= 0.0 {
            candidates.push(Self::Log);
        }
        if *min >= 0.0 && *max <= 1.0 && max > min {
            candidates.push(Self::Logit);
        }
        candidates
            .into_iter()
            .map(|scale| (scale, asymmetry(scale)))
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map_or(Self::Raw, |(scale, _)| scale)
    }

    fn apply(self, x: f64) -> f64 {
        match self {
            Self::Raw => x,
            Self::Log => to_log_scale(x),
            Self::Logit => to_logit_scale(x),
        }
    }

    fn invert(self, y: f64) -> f64 {
        match self {
            Self::Raw => y,
            Self::Log => from_log_scale(y),
            Self::Logit => from_logit_scale(y),
        }
    }
}

/// Tail-based skewness in [-1, 1]: where the median sits between the 10 % and 90 % quantiles.
fn skewness(sorted: &[f64]) -> f64 {
    let (Some(low), Some(mid), Some(high)) = (
        quantile(sorted, 0.1),
        quantile(sorted, 0.5),
        quantile(sorted, 0.9),
    ) else {
        return 0.0;
    };
    if high > low {
        (high + low - 2.0 * mid) / (high - low)
    } else {
        0.0
    }
}

/// One numeric feature's baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureBaseline {
    pub name: String,
    /// Judged on `ln(1 + x)` rather than `x`.
    pub log_scale: bool,
    /// Judged on the log-odds `ln(x / (1 - x))` of a share in [0, 1] rather than `x`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub logit_scale: bool,
    /// The median on the judged scale, and the robust scale below and above it.
    pub center: f64,
    pub lower_scale: f64,
    pub upper_scale: f64,
    /// For people, in the feature's own units: the median and the 90 % band.
    pub median: f64,
    pub typical_low: f64,
    pub typical_high: f64,
    /// For a feature with few distinct values: those seen at least twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_values: Option<Vec<f64>>,
    /// Whether a value outside `known_values` is evidence by itself.
    #[serde(default)]
    pub closed: bool,
    /// For a feature with few distinct values: whether they are codes (200, 304, 404) rather
    /// than counts (0, 1, 2, 3). An unseen code is judged only as a category: a z-score over a
    /// handful of codes means nothing.
    #[serde(default)]
    pub codes: bool,
    /// For a count (0, 1, 2, …): the counts that are far, from its fitted distribution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count_limits: Option<CountLimits>,
    /// Its position in the joint distance, if it takes part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub joint_slot: Option<usize>,
}

/// Where a count becomes far: a Poisson or negative binomial fitted to the sample's counts gives
/// each side's tail probability, so a count is judged by how rare it is, not by a z-score whose
/// normal tail is far too thin for small counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CountLimits {
    /// Counts at or below this are far (none for small counts, whose 0 is common).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_most: Option<f64>,
    /// Counts at or above this are far.
    pub at_least: f64,
}

impl CountLimits {
    /// Fits the limits to a count's values (sorted, non-negative integers) for a two-sided test of
    /// size `2 * tail`. Values beyond `keep_below` are left out as outliers; the mean is taken at
    /// its upper 97.5 % confidence bound so that limits from 50 logs are not set too tight.
    fn fit(sorted: &[f64], keep_below: f64, tail: f64) -> Option<Self> {
        let kept: Vec<f64> = sorted.iter().copied().filter(|v| *v < keep_below).collect();
        let n = kept.len() as f64;
        if kept.len() < 2 || kept.first().is_some_and(|min| *min < 0.0) {
            return None;
        }
        let mean = kept.iter().sum::<f64>() / n;
        let variance = kept.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
        let cautious = mean + 2.0 * (variance.max(mean) / n).sqrt();
        let (at_most, at_least) = count_tail_limits(
            cautious,
            variance * cautious / mean.max(f64::MIN_POSITIVE),
            tail,
        )?;
        Some(Self { at_most, at_least })
    }
}

impl FeatureBaseline {
    /// Fits a feature on its values in the sample; `trusted` ones always count as known.
    /// `far_tail` lets the 0.5 % tails widen the scales: only once outliers are out, since a
    /// few percent of anomalies on one side would otherwise set that side's scale.
    /// `cut` is the robust z-score cut and `tail` the one-sided probability it stands for.
    fn fit(
        name: &str,
        mut values: Vec<f64>,
        trusted: &[f64],
        budget: f64,
        far_tail: bool,
        (cut, tail): (f64, f64),
    ) -> Self {
        values.retain(|v| v.is_finite());
        values.sort_by(f64::total_cmp);
        let scale = Scale::choose(&values);
        let scaled: Vec<f64> = values.iter().map(|v| scale.apply(*v)).collect();
        let center = median(&scaled);
        let spread = MAD_TO_SD * mad(&scaled, center);
        // The smallest scale worth telling apart from zero at this magnitude.
        let floor = 1e-9 * center.abs().max(1.0);
        // Each side's scale is the widest of the MAD and what the 2.5 % and 0.5 % tails imply
        // for a normal distribution: the same for normal data, wider where a tail is heavier
        // (a count that is mostly 0 with a few 2s and 3s, say).
        let side = |tail_975: Option<f64>, tail_995: Option<f64>| {
            let by_tail = tail_975.map_or(0.0, |q| (q - center).abs() / 1.959_964);
            let by_far_tail = tail_995
                .filter(|_| far_tail)
                .map_or(0.0, |q| (q - center).abs() / 2.575_829);
            spread.max(by_tail).max(by_far_tail).max(floor)
        };
        let lower_scale = side(quantile(&scaled, 0.025), quantile(&scaled, 0.005));
        let upper_scale = side(quantile(&scaled, 0.975), quantile(&scaled, 0.995));
        let raw = |y: f64| scale.invert(y);
        let band = normal_quantile(0.95);
        let (known_values, closed, codes) = discrete_values(&values, trusted, budget);
        let count_limits = (known_values.is_some() && !codes)
            .then(|| CountLimits::fit(&values, raw(center + cut * upper_scale), tail))
            .flatten();
        let (lowest, highest) = (
            values.first().copied().unwrap_or(0.0),
            values.last().copied().unwrap_or(0.0),
        );
        Self {
            name: name.to_owned(),
            log_scale: scale == Scale::Log,
            logit_scale: scale == Scale::Logit,
            center,
            lower_scale,
            upper_scale,
            median: raw(center),
            typical_low: raw(center - band * lower_scale).max(lowest),
            typical_high: raw(center + band * upper_scale).min(highest),
            known_values,
            closed,
            codes,
            count_limits,
            joint_slot: None,
        }
    }

    /// The cut, in robust z-score units, that a value passes to be far; `None` when it is not.
    fn far_cut(&self, value: f64, z: f64, feature_cut: f64) -> Option<f64> {
        match &self.count_limits {
            Some(limits) if value >= limits.at_least => Some(self.z(limits.at_least)),
            Some(limits) => limits
                .at_most
                .filter(|at_most| value <= *at_most)
                .map(|at_most| self.z(at_most).abs()),
            None => (z.abs() > feature_cut).then_some(feature_cut),
        }
    }

    /// The value whose robust z-score is `z`, in the feature's own units.
    pub fn value_at(&self, z: f64) -> f64 {
        let scale = if z >= 0.0 {
            self.upper_scale
        } else {
            self.lower_scale
        };
        self.scale().invert(self.center + z * scale)
    }

    fn scale(&self) -> Scale {
        if self.logit_scale {
            Scale::Logit
        } else if self.log_scale {
            Scale::Log
        } else {
            Scale::Raw
        }
    }

    /// The robust z-score of a value: negative below the median.
    pub fn z(&self, value: f64) -> f64 {
        let scaled = self.scale().apply(value);
        let deviation = scaled - self.center;
        if deviation >= 0.0 {
            deviation / self.upper_scale
        } else {
            deviation / self.lower_scale
        }
    }

    /// A count whose median is at least [`MIN_JOINT_COUNT_MEDIAN`] takes part in the joint
    /// distance: it has a scale to speak of, and a count that moves with others (items with
    /// bytes, queue depth with latency) is part of their combination. Codes never are.
    fn is_joint_count(&self) -> bool {
        self.count_limits.is_some() && !self.codes && self.median >= MIN_JOINT_COUNT_MEDIAN
    }

    fn is_known(&self, value: f64) -> bool {
        self.known_values
            .as_ref()
            .is_some_and(|known| known.contains(&value))
    }
}

/// The values of a feature with few distinct ones: those seen at least [`MIN_KNOWN_COUNT`] times
/// or trusted, whether the feature is closed, and whether its values are codes rather than counts.
/// `None` for a continuous feature.
fn discrete_values(sorted: &[f64], trusted: &[f64], budget: f64) -> (Option<Vec<f64>>, bool, bool) {
    let mut runs: Vec<(f64, usize)> = Vec::new();
    for value in sorted {
        match runs.last_mut() {
            Some((last, count)) if last == value => *count += 1,
            _ => {
                if runs.len() == MAX_DISCRETE_VALUES {
                    return (None, false, false);
                }
                runs.push((*value, 1));
            }
        }
    }
    if runs.is_empty() {
        return (None, false, false);
    }
    // Counts (0, 1, 2, … 7) are ordinal: their next value is a longer tail, not a new kind of
    // log, so an unseen count is judged by its tail. Codes, sizes of a fixed pool and constants
    // (200, 304, 404; 4) are categories, whose unseen values are news. Counts fill most of their
    // range, though their sparse tail may skip one (0–6 and 8); codes leave most of it empty.
    let span = runs.last().map_or(0.0, |(max, _)| max - runs[0].0);
    let is_count_run = runs.len() >= 3
        && runs.iter().all(|(value, _)| value.fract() == 0.0)
        && 2.0 * runs.len() as f64 >= span + 1.0;
    let singletons = runs
        .iter()
        .filter(|(value, count)| *count < MIN_KNOWN_COUNT && !trusted.contains(value))
        .count();
    let closed = !is_count_run
        && sorted.len() >= MIN_CLOSED_LOGS
        && singletons as f64 <= budget * CLOSED_FIELD_SHARE * sorted.len() as f64;
    let known = runs
        .iter()
        .filter(|(value, count)| *count >= MIN_KNOWN_COUNT || trusted.contains(value))
        .map(|(value, _)| *value)
        .collect();
    (Some(known), closed, !is_count_run)
}

/// One text field's baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CategoryBaseline {
    pub field: String,
    /// Values seen at least twice (or labeled normal), most frequent first; empty when open.
    pub known: Vec<String>,
    /// Whether a value outside `known` is evidence.
    pub closed: bool,
}

/// Counts a field's values, up to [`MAX_VOCABULARY`] distinct ones.
#[derive(Debug, Default)]
struct FieldCounts<'a> {
    present: usize,
    values: HashMap<&'a str, (usize, bool)>,
    overflow: bool,
}

fn fit_categories<'a>(
    samples: impl Iterator<Item = &'a Sample>,
    budget: f64,
) -> Vec<CategoryBaseline> {
    let mut fields: HashMap<&str, FieldCounts> = HashMap::new();
    let mut rows = 0usize;
    for sample in samples {
        rows += 1;
        for (field, value) in &sample.categories {
            let counts = fields.entry(field.as_str()).or_default();
            counts.present += 1;
            let known = counts.values.len() < MAX_VOCABULARY;
            match counts.values.get_mut(value.as_str()) {
                Some((count, trusted)) => {
                    *count += 1;
                    *trusted |= sample.trusted;
                }
                None if known => {
                    counts.values.insert(value.as_str(), (1, sample.trusted));
                }
                None => counts.overflow = true,
            }
        }
    }
    let needed = (rows as f64 * PRESENCE_SHARE).ceil().max(1.0) as usize;
    let mut kept: Vec<(&str, FieldCounts)> = fields
        .into_iter()
        .filter(|(_, counts)| counts.present >= needed)
        .collect();
    // The most common fields first, then by name, so the cap keeps the same ones every time.
    kept.sort_by(|a, b| b.1.present.cmp(&a.1.present).then(a.0.cmp(b.0)));
    kept.truncate(MAX_CATEGORY_FIELDS);
    kept.sort_by(|a, b| a.0.cmp(b.0));
    kept.into_iter()
        .map(|(field, counts)| {
            let singletons = counts
                .values
                .values()
                .filter(|(count, trusted)| *count < MIN_KNOWN_COUNT && !trusted)
                .count();
            let closed = !counts.overflow
                && counts.present >= MIN_CLOSED_LOGS
                && singletons as f64 <= budget * CLOSED_FIELD_SHARE * counts.present as f64;
            let mut known: Vec<(&str, usize)> = if counts.overflow {
                Vec::new()
            } else {
                counts
                    .values
                    .iter()
                    .filter(|(_, (count, trusted))| *count >= MIN_KNOWN_COUNT || *trusted)
                    .map(|(value, (count, _))| (*value, *count))
                    .collect()
            };
            known.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
            CategoryBaseline {
                field: field.to_owned(),
                known: known.into_iter().map(|(v, _)| v.to_owned()).collect(),
                closed,
            }
        })
        .collect()
}

/// The joint distance of the continuous features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JointBaseline {
    /// Names of the features, in slot order.
    pub features: Vec<String>,
    /// Mean z-score per slot.
    pub mean: Vec<f64>,
    /// Inverse covariance of the z-scores, row-major.
    pub precision: Vec<f64>,
    /// Cut on the squared distance.
    pub cut: f64,
    /// Per slot, the cut on the residual of that feature given the others, for the features the
    /// others predict well enough ([`MIN_RELATION_R2`]); empty in models from before the test.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub relation_cuts: Vec<Option<f64>>,
}

impl JointBaseline {
    fn fit(rows: &[Vec<f64>], budget: f64) -> Option<Self> {
        let dims = rows.first()?.len();
        if dims < 2 || rows.len() < 2 * dims + 2 {
            return None;
        }
        let (mean, precision) = covariance_inverse(rows.iter(), dims)?;
        let trim = chi_square_upper(dims, 0.001);
        let kept: Vec<&Vec<f64>> = rows
            .iter()
            .filter(|row| squared_distance(row, &mean, &precision) <= trim)
            .collect();
        let (mean, precision) = if kept.len() >= 2 * dims + 2 {
            covariance_inverse(kept.iter().copied(), dims)?
        } else {
            (mean, precision)
        };
        let mut distances: Vec<f64> = kept
            .iter()
            .map(|row| squared_distance(row, &mean, &precision))
            .collect();
        distances.sort_by(f64::total_cmp);
        let expected = chi_square_upper(dims, 0.025);
        let widening = quantile(&distances, 0.975).map_or(1.0, |q| (q / expected).max(1.0));
        let relation_cuts = relation_cuts(&kept, &mean, &precision, budget);
        Some(Self {
            features: Vec::new(),
            mean,
            precision,
            cut: chi_square_upper(dims, budget * JOINT_SHARE) * widening,
            relation_cuts,
        })
    }

    /// Per slot, the standardized residual of the feature given the others, and what they predict
    /// for its z-score: `r = P (z - mean)`, residual `r_j / sqrt(P_jj)`, prediction
    /// `z_j - r_j / P_jj` (the regression of slot `j` on the rest, read off the precision matrix).
    fn residual(&self, z: &[f64], slot: usize) -> (f64, f64) {
        residual(z, &self.mean, &self.precision, slot)
    }

    fn dims(&self) -> usize {
        self.mean.len()
    }
}

/// The mean and the inverse of the (ridged) covariance of `rows`.
fn covariance_inverse<'a>(
    rows: impl Iterator<Item = &'a Vec<f64>> + Clone,
    dims: usize,
) -> Option<(Vec<f64>, Vec<f64>)> {
    let mut mean = vec![0.0; dims];
    let mut count = 0usize;
    for row in rows.clone() {
        count += 1;
        for (m, v) in mean.iter_mut().zip(row) {
            *m += v;
        }
    }
    if count < 2 {
        return None;
    }
    for m in &mut mean {
        *m /= count as f64;
    }
    let mut covariance = vec![0.0; dims * dims];
    for row in rows {
        for i in 0..dims {
            let di = row[i] - mean[i];
            for j in i..dims {
                covariance[i * dims + j] += di * (row[j] - mean[j]);
            }
        }
    }
    for i in 0..dims {
        for j in i..dims {
            let value = covariance[i * dims + j] / (count - 1) as f64;
            covariance[i * dims + j] = value;
            covariance[j * dims + i] = value;
        }
        covariance[i * dims + i] += RIDGE;
    }
    Some((mean, invert(&covariance, dims)?))
}

fn residual(z: &[f64], mean: &[f64], precision: &[f64], slot: usize) -> (f64, f64) {
    let dims = mean.len();
    let pulled: f64 = (0..dims)
        .map(|k| precision[slot * dims + k] * (z[k] - mean[k]))
        .sum();
    let weight = precision[slot * dims + slot];
    (pulled / weight.sqrt(), z[slot] - pulled / weight)
}

/// The relation cuts of each slot (see [`JointBaseline::relation_cuts`]): two-sided normal cuts
/// for `B/5` shared by the slots that take part, widened where the sample's own 97.5 % quantile
/// of the absolute residual shows a heavier tail than a normal distribution's.
fn relation_cuts(
    rows: &[&Vec<f64>],
    mean: &[f64],
    precision: &[f64],
    budget: f64,
) -> Vec<Option<f64>> {
    let dims = mean.len();
    let count = rows.len() as f64;
    let predicted: Vec<bool> = (0..dims)
        .map(|slot| {
            let variance = rows
                .iter()
                .map(|row| (row[slot] - mean[slot]).powi(2))
                .sum::<f64>()
                / (count - 1.0).max(1.0);
            // 1 / P_jj is the variance left once the others are known.
            let explained = 1.0 - 1.0 / (precision[slot * dims + slot] * variance);
            variance > 0.0 && explained >= MIN_RELATION_R2
        })
        .collect();
    let tests = 2 * predicted.iter().filter(|p| **p).count();
    if tests == 0 {
        return Vec::new();
    }
    let base_cut = normal_quantile(1.0 - budget * RELATION_SHARE / tests as f64);
    (0..dims)
        .map(|slot| {
            predicted[slot].then(|| {
                let mut residuals: Vec<f64> = rows
                    .iter()
                    .map(|row| residual(row, mean, precision, slot).0.abs())
                    .collect();
                residuals.sort_by(f64::total_cmp);
                let widening =
                    quantile(&residuals, 0.975).map_or(1.0, |q| (q / 2.241_403).max(1.0));
                base_cut * widening
            })
        })
        .collect()
}

fn squared_distance(z: &[f64], mean: &[f64], precision: &[f64]) -> f64 {
    let dims = mean.len();
    let mut total = 0.0;
    for i in 0..dims {
        let di = z[i] - mean[i];
        let mut row = 0.0;
        for j in 0..dims {
            row += precision[i * dims + j] * (z[j] - mean[j]);
        }
        total += di * row;
    }
    total
}

/// A service's baseline: see the module documentation for the verdict rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    /// The false-alarm budget the cuts were set for.
    pub budget: f64,
    /// Logs it was learned from, and how many of them were left out as outliers.
    pub samples: usize,
    pub outliers: usize,
    /// The per-feature cut on robust z-scores.
    pub feature_cut: f64,
    pub features: Vec<FeatureBaseline>,
    pub categories: Vec<CategoryBaseline>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub joint: Option<JointBaseline>,
    /// The forest's cut on its decision score, before 0 and `ANOMALY_THRESHOLD` apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forest_cut: Option<f64>,
}

/// Why a stored baseline cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("the model's baseline is inconsistent: {0}")]
pub struct BaselineError(&'static str);

impl Baseline {
    /// Learns a baseline for `features` (the forest's columns) from `samples`, with cuts for
    /// `budget`. Also returns, per sample, whether it was left out as an outlier, so the forest
    /// can be fitted without them.
    pub fn fit(samples: &[Sample], features: &[String], budget: f64) -> (Self, Vec<bool>) {
        let budget = budget.clamp(f64::MIN_POSITIVE, 0.5);
        let tests = (2 * features.len()).max(1) as f64;
        // Student's t rather than the normal: a scale estimated from 50 logs is uncertain, and the
        // cut widens to match (by 14 % at 50 logs, 0.5 % at 2,000).
        let feature_tail = budget * FEATURE_SHARE / tests;
        let feature_cut = student_t_quantile(1.0 - feature_tail, samples.len().saturating_sub(1));
        let fit_features = |included: &dyn Fn(usize) -> bool, far_tail| -> Vec<FeatureBaseline> {
            features
                .iter()
                .map(|name| {
                    let mut values = Vec::new();
                    let mut trusted = Vec::new();
                    for (index, sample) in samples.iter().enumerate() {
                        if let Some(value) = sample.features.get(name.as_str()) {
                            if sample.trusted {
                                trusted.push(*value);
                            }
                            if included(index) {
                                values.push(*value);
                            }
                        }
                    }
                    let cuts = (feature_cut, feature_tail);
                    FeatureBaseline::fit(name, values, &trusted, budget, far_tail, cuts)
                })
                .collect()
        };
        let mut baseline = Self {
            budget,
            samples: samples.len(),
            outliers: 0,
            feature_cut,
            features: fit_features(&|_| true, false),
            categories: Vec::new(),
            joint: None,
            forest_cut: None,
        };
        let mut outlier: Vec<bool> = samples
            .iter()
            .map(|sample| !sample.trusted && baseline.has_far_feature(sample))
            .collect();
        if outlier.iter().filter(|o| !**o).count() >= 2 {
            baseline.features = fit_features(&|index| !outlier[index], true);
        }
        baseline.categories = fit_categories(
            samples
                .iter()
                .zip(&outlier)
                .filter(|(_, o)| !**o)
                .map(|(s, _)| s),
            budget,
        );
        baseline.fit_joint(samples, &outlier);
        if let Some(joint) = &baseline.joint {
            for (sample, outlier) in samples.iter().zip(outlier.iter_mut()) {
                if !*outlier && !sample.trusted {
                    let z = baseline.joint_z(sample, joint.dims());
                    *outlier = squared_distance(&z, &joint.mean, &joint.precision) > joint.cut;
                }
            }
        }
        baseline.outliers = outlier.iter().filter(|o| **o).count();
        (baseline, outlier)
    }

    /// Sets the forest's cut from the decision scores of the rows that were not outliers.
    pub fn set_forest_cut(&mut self, mut scores: Vec<f64>) {
        scores.retain(|s| s.is_finite());
        scores.sort_by(f64::total_cmp);
        let center = median(&scores);
        let lower = quantile(&scores, 0.025).map_or(0.0, |q| (center - q) / 1.959_964);
        let scale = (MAD_TO_SD * mad(&scores, center)).max(lower);
        self.forest_cut = (scale > 0.0)
            .then(|| center - normal_quantile(1.0 - self.budget * FOREST_SHARE) * scale);
    }

    /// Checks a baseline read from a model file before it judges anything.
    ///
    /// # Errors
    /// Joint dimensions or slots that do not fit, or cuts that are not positive numbers.
    pub fn validate(&self) -> Result<(), BaselineError> {
        if !(self.feature_cut.is_finite() && self.feature_cut > 0.0) {
            return Err(BaselineError("feature cut"));
        }
        let dims = self.joint.as_ref().map_or(0, JointBaseline::dims);
        if let Some(joint) = &self.joint
            && (dims > MAX_JOINT_FEATURES
                || joint.precision.len() != dims * dims
                || joint.features.len() != dims
                || !joint.cut.is_finite()
                || !(joint.relation_cuts.is_empty() || joint.relation_cuts.len() == dims)
                || joint
                    .relation_cuts
                    .iter()
                    .flatten()
                    .any(|cut| !(cut.is_finite() && *cut > 0.0)))
        {
            return Err(BaselineError("joint distance"));
        }
        for feature in &self.features {
            let limits_ok = feature.count_limits.as_ref().is_none_or(|limits| {
                limits.at_least.is_finite() && limits.at_most.is_none_or(f64::is_finite)
            });
            if feature.joint_slot.is_some_and(|slot| slot >= dims)
                || (feature.log_scale && feature.logit_scale)
                || !(feature.lower_scale > 0.0 && feature.upper_scale > 0.0)
                || !limits_ok
            {
                return Err(BaselineError("feature scales"));
            }
        }
        Ok(())
    }

    fn has_far_feature(&self, sample: &Sample) -> bool {
        self.features.iter().any(|feature| {
            sample
                .features
                .get(feature.name.as_str())
                .is_some_and(|value| {
                    !feature.codes
                        && !feature.is_known(*value)
                        && feature
                            .far_cut(*value, feature.z(*value), self.feature_cut)
                            .is_some()
                })
        })
    }

    fn joint_z(&self, log: &impl Observation, dims: usize) -> Vec<f64> {
        let mut z = vec![0.0; dims];
        for feature in &self.features {
            if let (Some(slot), Some(value)) = (feature.joint_slot, log.feature(&feature.name)) {
                z[slot] = feature.z(value);
            }
        }
        z
    }

    fn fit_joint(&mut self, samples: &[Sample], outlier: &[bool]) {
        let slots: Vec<usize> = self
            .features
            .iter()
            .enumerate()
            .filter(|(_, f)| f.known_values.is_none() || f.is_joint_count())
            .map(|(index, _)| index)
            .take(MAX_JOINT_FEATURES)
            .collect();
        for (slot, index) in slots.iter().enumerate() {
            self.features[*index].joint_slot = Some(slot);
        }
        let rows: Vec<Vec<f64>> = samples
            .iter()
            .zip(outlier)
            .filter(|(_, o)| !**o)
            .map(|(sample, _)| self.joint_z(sample, slots.len()))
            .collect();
        self.joint = JointBaseline::fit(&rows, self.budget).map(|mut joint| {
            joint.features = slots
                .iter()
                .map(|index| self.features[*index].name.clone())
                .collect();
            joint
        });
        if self.joint.is_none() {
            for feature in &mut self.features {
                feature.joint_slot = None;
            }
        }
    }

    /// The reasons a log is an anomaly; empty when it looks normal. `forest` is the forest's
    /// decision score with the cut it must also be below (`min(0, ANOMALY_THRESHOLD)`).
    pub fn judge(&self, log: &impl Observation, forest: Option<(f64, f64)>) -> Vec<Reason> {
        let mut reasons = Vec::new();
        let mut joint_z = [0.0; MAX_JOINT_FEATURES];
        let mut strongest = Vec::new();
        for feature in &self.features {
            let Some(value) = log.feature(&feature.name) else {
                continue;
            };
            let z = feature.z(value);
            if let Some(slot) = feature.joint_slot {
                joint_z[slot.min(MAX_JOINT_FEATURES - 1)] = z;
            }
            if feature.is_known(value) {
                continue;
            }
            if feature.codes {
                if feature.closed {
                    strongest.push(f64::INFINITY);
                    let known = feature.known_values.iter().flatten().map(|v| number(*v));
                    reasons.push(new_category(&feature.name, number(value), known));
                }
                continue;
            }
            if let Some(cut) = feature.far_cut(value, z, self.feature_cut) {
                strongest.push(z.abs() / cut.max(f64::MIN_POSITIVE));
                reasons.push(Reason::new(Evidence::Feature {
                    feature: feature.name.clone(),
                    value,
                    median: feature.median,
                    typical_low: feature.typical_low,
                    typical_high: feature.typical_high,
                    direction: Direction::of(z),
                    z,
                    cut,
                }));
            } else if feature.closed {
                strongest.push(f64::INFINITY);
                let known = feature.known_values.iter().flatten().map(|v| number(*v));
                reasons.push(new_category(&feature.name, number(value), known));
            }
        }
        for category in self.categories.iter().filter(|c| c.closed) {
            if let Some(value) = log.category(&category.field)
                && !category.known.iter().any(|known| known == value)
            {
                strongest.push(f64::INFINITY);
                let known = category.known.iter().cloned();
                reasons.push(new_category(&category.field, value.to_owned(), known));
            }
        }
        if reasons.is_empty()
            && let Some(joint) = &self.joint
            && let Some((reason, strength)) = self.strongest_relation(
                joint,
                &joint_z[..joint.dims().min(MAX_JOINT_FEATURES)],
                log,
            )
        {
            strongest.push(strength);
            reasons.push(reason);
        }
        if reasons.is_empty()
            && let Some(joint) = &self.joint
        {
            let z = &joint_z[..joint.dims().min(MAX_JOINT_FEATURES)];
            let distance = squared_distance(z, &joint.mean, &joint.precision);
            if distance > joint.cut {
                strongest.push(distance / joint.cut);
                reasons.push(Reason::new(Evidence::Joint {
                    distance: distance.sqrt(),
                    cut: joint.cut.sqrt(),
                    features: self.joint_contributions(joint, z, log),
                }));
            }
        }
        if reasons.is_empty()
            && let (Some((score, extra)), Some(cut)) = (forest, self.forest_cut)
        {
            let cut = cut.min(extra);
            if score < cut {
                reasons.push(Reason::new(Evidence::Forest { score, cut }));
            }
        }
        if reasons.len() > 1 {
            let mut ranked: Vec<(f64, Reason)> = strongest.into_iter().zip(reasons).collect();
            ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
            reasons = ranked.into_iter().map(|(_, r)| r).collect();
            reasons.truncate(MAX_REASONS);
        }
        reasons
    }

    /// The feature furthest past its relation cut, if any: its reason and how far past.
    fn strongest_relation(
        &self,
        joint: &JointBaseline,
        z: &[f64],
        log: &impl Observation,
    ) -> Option<(Reason, f64)> {
        let dims = joint.dims();
        let (slot, residual, predicted, cut) = joint
            .relation_cuts
            .iter()
            .enumerate()
            .filter_map(|(slot, cut)| {
                let cut = (*cut)?;
                let (residual, predicted) = joint.residual(z, slot);
                (residual.abs() > cut).then_some((slot, residual, predicted, cut))
            })
            .max_by(|a, b| (a.1.abs() / a.3).total_cmp(&(b.1.abs() / b.3)))?;
        let feature = self.features.iter().find(|f| f.joint_slot == Some(slot))?;
        let value = log.feature(&feature.name)?;
        // The others' pulls on the prediction, largest first.
        let mut pulls: Vec<(usize, f64)> = (0..dims)
            .filter(|k| *k != slot)
            .map(|k| {
                (
                    k,
                    (joint.precision[slot * dims + k] * (z[k] - joint.mean[k])).abs(),
                )
            })
            .collect();
        pulls.sort_by(|a, b| b.1.total_cmp(&a.1));
        let with = pulls
            .into_iter()
            .take(RELATION_PARTNERS)
            .filter_map(|(k, _)| {
                let partner = self.features.iter().find(|f| f.joint_slot == Some(k))?;
                let shown = log.feature(&partner.name)?;
                Some(format!("{} {}", partner.name, number(shown)))
            })
            .collect();
        let reason = Reason::new(Evidence::Relation {
            feature: feature.name.clone(),
            value,
            expected: feature.value_at(predicted),
            direction: Direction::of(residual),
            with,
            z: residual,
            cut,
        });
        Some((reason, residual.abs() / cut))
    }

    /// The (at most three) features that add most to a joint distance.
    fn joint_contributions(
        &self,
        joint: &JointBaseline,
        z: &[f64],
        log: &impl Observation,
    ) -> Vec<Contribution> {
        let dims = joint.dims();
        let mut shares: Vec<(usize, f64)> = (0..dims)
            .map(|i| {
                let pulled: f64 = (0..dims)
                    .map(|j| joint.precision[i * dims + j] * (z[j] - joint.mean[j]))
                    .sum();
                (i, (z[i] - joint.mean[i]) * pulled)
            })
            .collect();
        shares.sort_by(|a, b| b.1.total_cmp(&a.1));
        shares
            .into_iter()
            .take(3)
            .filter_map(|(slot, _)| {
                let feature = self.features.iter().find(|f| f.joint_slot == Some(slot))?;
                Some(Contribution {
                    feature: feature.name.clone(),
                    value: log.feature(&feature.name)?,
                    median: feature.median,
                    direction: Direction::of(z[slot]),
                })
            })
            .collect()
    }
}

fn new_category(field: &str, value: String, known: impl Iterator<Item = String>) -> Reason {
    Reason::new(Evidence::NewCategory {
        field: field.to_owned(),
        value,
        known: known.take(LISTED_VALUES).collect(),
    })
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    fn gaussian(rng: &mut StdRng) -> f64 {
        let u1 = 1.0 - rng.random::<f64>();
        let u2 = rng.random::<f64>();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// A web service: log-normal latency, bytes correlated with it, a status mostly 200, a
    /// constant region, a level INFO with some WARN, and a host from a large fleet.
    fn web_log(rng: &mut StdRng) -> Sample {
        let shared = gaussian(rng);
        let latency = 80.0 * (0.4 * shared).exp();
        let bytes = (5000.0 * (0.5 * (0.8 * shared + 0.6 * gaussian(rng))).exp()).round();
        let status = match rng.random_range(0..100) {
            0..90 => 200.0,
            90..96 => 304.0,
            _ => 404.0,
        };
        let level = if status == 404.0 { "WARN" } else { "INFO" };
        Sample {
            features: BTreeMap::from([
                ("latency_ms".into(), (latency * 10.0).round() / 10.0),
                ("bytes".into(), bytes),
                ("status".into(), status),
            ]),
            categories: BTreeMap::from([
                ("level".into(), level.to_owned()),
                ("region".into(), "eu-west-1".to_owned()),
                (
                    "host".to_owned(),
                    format!("web-{}", rng.random_range(0..500)),
                ),
            ]),
            trusted: false,
        }
    }

    fn names() -> Vec<String> {
        ["bytes", "latency_ms", "status"]
            .map(str::to_owned)
            .to_vec()
    }

    fn fitted(samples: &[Sample]) -> Baseline {
        Baseline::fit(samples, &names(), DEFAULT_FALSE_ALARM_BUDGET).0
    }

    fn sample(rng: &mut StdRng, n: usize) -> Vec<Sample> {
        (0..n).map(|_| web_log(rng)).collect()
    }

    fn with_feature(mut log: Sample, name: &str, value: f64) -> Sample {
        log.features.insert(name.into(), value);
        log
    }

    #[test]
    fn normal_logs_stay_within_the_budget() {
        let mut rng = StdRng::seed_from_u64(1);
        let baseline = fitted(&sample(&mut rng, 2000));
        let flagged = (0..20_000)
            .filter(|_| !baseline.judge(&web_log(&mut rng), None).is_empty())
            .count();
        // The budget is 0.1 %: 20 of 20,000; allow sampling noise.
        assert!(flagged <= 40, "{flagged} of 20,000 normal logs flagged");
    }

    #[test]
    fn a_far_spike_is_flagged_with_its_usual_range() {
        let mut rng = StdRng::seed_from_u64(2);
        let baseline = fitted(&sample(&mut rng, 2000));
        let spike = with_feature(web_log(&mut rng), "latency_ms", 2500.0);
        let reasons = baseline.judge(&spike, None);
        let Some(Evidence::Feature {
            feature,
            direction,
            typical_low,
            typical_high,
            ..
        }) = reasons.first().map(|r| &r.evidence)
        else {
            panic!("expected a feature reason, got {reasons:?}");
        };
        assert_eq!(feature, "latency_ms");
        assert_eq!(*direction, Direction::High);
        assert!(*typical_low > 30.0 && *typical_high < 200.0, "{reasons:?}");
        assert!(
            reasons[0]
                .summary
                .starts_with("latency_ms 2500 is far above")
        );
    }

    #[test]
    fn a_new_value_of_a_constant_or_categorical_field_is_flagged() {
        let mut rng = StdRng::seed_from_u64(3);
        let baseline = fitted(&sample(&mut rng, 2000));
        let mut moved = web_log(&mut rng);
        moved
            .categories
            .insert("region".into(), "us-east-2".to_owned());
        let reasons = baseline.judge(&moved, None);
        assert!(
            matches!(&reasons[0].evidence, Evidence::NewCategory { field, value, known }
                if field == "region" && value == "us-east-2" && known == &["eu-west-1"]),
            "{reasons:?}"
        );
        let server_error = with_feature(web_log(&mut rng), "status", 503.0);
        let reasons = baseline.judge(&server_error, None);
        assert!(
            matches!(&reasons[0].evidence, Evidence::NewCategory { field, .. } if field == "status"),
            "{reasons:?}"
        );
    }

    #[test]
    fn a_new_host_of_a_large_fleet_is_not_evidence() {
        let mut rng = StdRng::seed_from_u64(4);
        let baseline = fitted(&sample(&mut rng, 2000));
        let host = baseline
            .categories
            .iter()
            .find(|c| c.field == "host")
            .expect("host is a field");
        assert!(!host.closed && host.known.is_empty());
        let mut log = web_log(&mut rng);
        log.categories
            .insert("host".into(), "web-new-9999".to_owned());
        assert!(baseline.judge(&log, None).is_empty());
    }

    fn poisson(rng: &mut StdRng, mean: f64) -> f64 {
        // Knuth's method: fine for the small means of a test.
        let limit = (-mean).exp();
        let mut product: f64 = rng.random();
        let mut count = 0.0;
        while product > limit {
            product *= rng.random::<f64>();
            count += 1.0;
        }
        count
    }

    fn retries_log(rng: &mut StdRng) -> Sample {
        Sample {
            features: BTreeMap::from([("retries".into(), poisson(rng, 2.0))]),
            ..Sample::default()
        }
    }

    #[test]
    fn counts_with_a_gap_in_their_tail_are_counts_and_codes_are_codes() {
        let repeated = |values: &[f64]| -> Vec<f64> {
            let mut all: Vec<f64> = values.iter().flat_map(|v| [*v; 100]).collect();
            all.sort_by(f64::total_cmp);
            all
        };
        let (_, _, codes) = discrete_values(&repeated(&[0.0, 1.0, 2.0, 3.0, 4.0, 6.0]), &[], 0.001);
        assert!(!codes);
        let (_, closed, codes) = discrete_values(&repeated(&[200.0, 304.0, 404.0]), &[], 0.001);
        assert!(codes && closed);
    }

    #[test]
    fn a_small_count_is_judged_by_its_own_tail_not_a_normal_one() {
        let mut rng = StdRng::seed_from_u64(5);
        let logs: Vec<Sample> = (0..2000).map(|_| retries_log(&mut rng)).collect();
        let names = vec!["retries".to_owned()];
        let (baseline, _) = Baseline::fit(&logs, &names, DEFAULT_FALSE_ALARM_BUDGET);
        let limits = baseline.features[0].count_limits.clone().expect("a count");
        // Poisson(2) passes 8 about once in a thousand logs, 10 once in twenty thousand.
        assert!(limits.at_least >= 10.0, "{limits:?}");
        let flagged = (0..100_000)
            .filter(|_| !baseline.judge(&retries_log(&mut rng), None).is_empty())
            .count();
        // One feature: its share of the budget is 0.05 %, 50 in 100,000.
        assert!(flagged <= 50, "{flagged} of 100,000 normal logs flagged");
        let far = with_feature(retries_log(&mut rng), "retries", 40.0);
        let reasons = baseline.judge(&far, None);
        assert!(
            matches!(
                reasons.first().map(|r| &r.evidence),
                Some(Evidence::Feature { feature, direction: Direction::High, .. }) if feature == "retries"
            ),
            "{reasons:?}"
        );
    }

    #[test]
    fn a_joint_shift_within_each_range_is_flagged() {
        let mut rng = StdRng::seed_from_u64(5);
        let baseline = fitted(&sample(&mut rng, 2000));
        // Latency and bytes are positively correlated; high latency with low bytes, each about
        // 2.5 robust deviations out, is within each one's range but not together.
        let latency = 80.0 * (0.4_f64 * 2.5).exp();
        let bytes = 5000.0 * (-0.5_f64 * 2.5).exp();
        let mut log = web_log(&mut rng);
        log.features.insert("latency_ms".into(), latency);
        log.features.insert("bytes".into(), bytes.round());
        log.features.insert("status".into(), 200.0);
        let reasons = baseline.judge(&log, None);
        // Bytes predict latency: the relation says which one is out of step and what was due.
        assert!(
            matches!(&reasons[..], [Reason { evidence: Evidence::Relation { feature, direction: Direction::High, expected, with, .. }, .. }]
                if feature == "latency_ms" && *expected < 80.0 && with.len() == 1 && with[0].starts_with("bytes ")),
            "{reasons:?}"
        );
        assert!(
            reasons[0]
                .summary
                .starts_with("latency_ms 217.5 is high for this log's bytes"),
            "{}",
            reasons[0].summary
        );
        // Without the relation test (a model saved before it), the joint distance still sees it.
        let mut without_relations = baseline.clone();
        if let Some(joint) = &mut without_relations.joint {
            joint.relation_cuts.clear();
        }
        let reasons = without_relations.judge(&log, None);
        assert!(
            matches!(&reasons[..], [Reason { evidence: Evidence::Joint { features, .. }, .. }]
                if features.len() == 2),
            "{reasons:?}"
        );
        assert!(reasons[0].summary.starts_with("unusual combination"));
    }

    #[test]
    fn a_feature_that_others_do_not_predict_has_no_relation_cut() {
        let mut rng = StdRng::seed_from_u64(11);
        let samples: Vec<Sample> = (0..2000)
            .map(|_| {
                let mut log = web_log(&mut rng);
                let independent = 30.0 * (0.3 * gaussian(&mut rng)).exp();
                log.features.insert("queue_ms".into(), independent);
                log
            })
            .collect();
        let mut names = names();
        names.push("queue_ms".to_owned());
        let (baseline, _) = Baseline::fit(&samples, &names, DEFAULT_FALSE_ALARM_BUDGET);
        let joint = baseline.joint.as_ref().expect("a joint baseline");
        let cut_of = |name: &str| {
            let slot = joint
                .features
                .iter()
                .position(|f| f == name)
                .expect("a slot");
            joint.relation_cuts[slot]
        };
        assert!(cut_of("latency_ms").is_some() && cut_of("bytes").is_some());
        assert_eq!(cut_of("queue_ms"), None);
    }

    #[test]
    fn a_share_bunched_near_one_is_judged_on_its_log_odds() {
        let mut rng = StdRng::seed_from_u64(12);
        // A hit ratio whose misses are log-normal (median 4 %): bunched near 1 with a long tail
        // towards 0, which on the raw scale passes a normal cut far more often than the budget.
        let hit_ratio = |rng: &mut StdRng| {
            let miss = (0.04 * (0.8 * gaussian(rng)).exp()).min(1.0);
            ((1.0 - miss) * 1000.0).round() / 1000.0
        };
        let with_ratio = |rng: &mut StdRng| {
            let mut log = web_log(rng);
            log.features.insert("hit_ratio".into(), hit_ratio(rng));
            log
        };
        let samples: Vec<Sample> = (0..2000).map(|_| with_ratio(&mut rng)).collect();
        let mut names = names();
        names.push("hit_ratio".to_owned());
        let (baseline, _) = Baseline::fit(&samples, &names, DEFAULT_FALSE_ALARM_BUDGET);
        let feature = baseline
            .features
            .iter()
            .find(|f| f.name == "hit_ratio")
            .expect("hit_ratio");
        assert!(feature.logit_scale && !feature.log_scale);
        assert!((feature.value_at(feature.z(0.9)) - 0.9).abs() < 1e-9);
        let flagged = (0..10_000)
            .filter(|_| !baseline.judge(&with_ratio(&mut rng), None).is_empty())
            .count();
        assert!(flagged <= 25, "{flagged} of 10,000 normal logs flagged");
        // A ratio beyond 1 is far, not clamped to the edge.
        let beyond = with_feature(with_ratio(&mut rng), "hit_ratio", 1.5);
        assert!(baseline.judge(&beyond, None).iter().any(|r| matches!(
            &r.evidence,
            Evidence::Feature { feature, direction: Direction::High, .. } if feature == "hit_ratio"
        )));
    }

    #[test]
    fn two_percent_of_anomalies_in_the_sample_do_not_become_normal() {
        let mut rng = StdRng::seed_from_u64(6);
        let mut samples = sample(&mut rng, 2000);
        for log in samples.iter_mut().step_by(50) {
            let far = 80.0 * rng.random_range(20.0..60.0);
            log.features.insert("latency_ms".into(), far);
        }
        let (baseline, outliers) = Baseline::fit(&samples, &names(), DEFAULT_FALSE_ALARM_BUDGET);
        assert!(outliers.iter().filter(|o| **o).count() >= 40);
        let spike = with_feature(web_log(&mut rng), "latency_ms", 3000.0);
        assert!(!baseline.judge(&spike, None).is_empty());
        let flagged = (0..10_000)
            .filter(|_| !baseline.judge(&web_log(&mut rng), None).is_empty())
            .count();
        assert!(flagged <= 25, "{flagged} of 10,000 normal logs flagged");
    }

    #[test]
    fn the_forest_flags_only_below_its_cut_and_the_extra_threshold() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut baseline = fitted(&sample(&mut rng, 500));
        let scores: Vec<f64> = (0..1000).map(|i| 0.1 - 0.0001 * f64::from(i)).collect();
        baseline.set_forest_cut(scores);
        let cut = baseline.forest_cut.expect("a cut");
        assert!(cut < 0.0, "{cut}");
        let log = web_log(&mut rng);
        assert!(baseline.judge(&log, Some((cut + 0.01, 0.0))).is_empty());
        let reasons = baseline.judge(&log, Some((cut - 0.01, 0.0)));
        assert!(matches!(reasons[0].evidence, Evidence::Forest { .. }));
        // ANOMALY_THRESHOLD below the score keeps the forest quiet.
        assert!(
            baseline
                .judge(&log, Some((cut - 0.01, cut - 0.02)))
                .is_empty()
        );
    }

    #[test]
    fn trusted_values_are_known_even_once() {
        let mut rng = StdRng::seed_from_u64(8);
        let mut samples = sample(&mut rng, 500);
        let mut labeled = web_log(&mut rng);
        labeled
            .categories
            .insert("region".into(), "eu-central-1".to_owned());
        labeled.trusted = true;
        samples.push(labeled.clone());
        let baseline = fitted(&samples);
        labeled.trusted = false;
        assert!(baseline.judge(&labeled, None).is_empty());
    }

    #[test]
    fn a_baseline_survives_json_and_validates() {
        let mut rng = StdRng::seed_from_u64(9);
        let baseline = fitted(&sample(&mut rng, 300));
        let text = serde_json::to_string(&baseline).expect("serializes");
        let back: Baseline = serde_json::from_str(&text).expect("reads");
        // Floats may come back one unit in the last place off; the judgements must not change.
        assert_eq!(back.categories, baseline.categories);
        for _ in 0..2000 {
            let mut log = web_log(&mut rng);
            let latency = log.features["latency_ms"] * rng.random_range(0.2..8.0);
            log.features.insert("latency_ms".into(), latency);
            assert_eq!(
                back.judge(&log, None).is_empty(),
                baseline.judge(&log, None).is_empty()
            );
        }
        back.validate().expect("valid");
        let mut broken = back;
        if let Some(joint) = &mut broken.joint {
            joint.precision.pop();
        }
        assert!(broken.validate().is_err());
    }

    #[test]
    fn category_fields_are_bounded_and_skip_long_text() {
        let attributes: Vec<(String, String)> = (0..100)
            .map(|i| (format!("f{i:03}"), "x".repeat(if i == 0 { 200 } else { 3 })))
            .collect();
        let fields = category_fields(
            Some("INFO"),
            attributes.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        );
        assert_eq!(fields.len(), MAX_CATEGORIES_PER_LOG);
        assert_eq!(fields["level"], "INFO");
        assert!(!fields.contains_key("f000"));
    }

    #[test]
    fn numbers_read_as_people_write_them() {
        assert_eq!(number(812.0), "812");
        assert_eq!(number(0.012_346), "0.01235");
        assert_eq!(number(85.25), "85.25");
        assert_eq!(number(1234.5678), "1235");
    }
}
