//! A tracked service's training sample: its [`Reservoir`] of recent normal logs, held to at most
//! `MAX_FEATURES_PER_SERVICE` distinct feature names (the width).
//!
//! Why a width: each row owns its features, so a service's sample costs about rows × features per
//! row. Parsing keeps at most `MAX_FEATURES_PER_LOG` features per log, but a service whose every
//! log names new fields (10,000 random keys per line, say) would otherwise fill its reservoir with
//! that many entries per row. The width caps what a row keeps: a feature whose name the sample
//! does not hold yet joins it only while fewer than the width are held; the others are left out
//! of that row and counted. A model reads only features present in at least half of the sample,
//! so a row's rare names never mattered to it.
//!
//! The width is not first come, first kept for ever: each name is counted by the rows holding it,
//! and a name no row holds any more (its rows replaced by newer logs) gives its place back. A burst
//! of junk keys thus fades out of the sample as the reservoir turns over, as the junk rows do.

use foldhash::{HashMap, HashMapExt};
use std::cell::Cell;
use std::sync::Arc;

use crate::detect::baseline::{Sample, category_fields};
use crate::learn::reservoir::Reservoir;
use crate::parse::ParsedLog;

/// The default of `MAX_FEATURES_PER_SERVICE`.
pub const DEFAULT_MAX_FEATURES_PER_SERVICE: usize = 64;

/// The feature names a service's sample holds, each with the number of rows holding it. Rows
/// share these names (an `Arc` each) instead of owning a copy: a 128-character name in 2,048 rows
/// is one allocation, not 2,048.
#[derive(Debug)]
pub struct FeatureWidth {
    rows_holding: HashMap<Arc<str>, Cell<u32>>,
    capacity: usize,
}

impl FeatureWidth {
    pub fn new(capacity: usize) -> Self {
        Self {
            rows_holding: HashMap::new(),
            capacity,
        }
    }

    /// Distinct names held.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.rows_holding.len()
    }

    /// The training row of `log` within the width: its features whose names are held, or fit
    /// while there is room, under the held names; and how many of its features were left out.
    pub fn sample_of(&mut self, log: &ParsedLog) -> (Sample, usize) {
        let mut left_out = 0;
        let features = log
            .features
            .iter()
            .filter_map(|(name, value)| match self.hold(name) {
                Some(name) => Some((name, value)),
                None => {
                    left_out += 1;
                    None
                }
            })
            .collect();
        let sample = Sample {
            features,
            categories: category_fields(
                log.level.as_deref(),
                log.attributes.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            ),
            trusted: false,
        };
        (sample, left_out)
    }

    /// The held copy of `name` for one more row, if it is held or there is room for it.
    fn hold(&mut self, name: &str) -> Option<Arc<str>> {
        if let Some((held, rows)) = self.rows_holding.get_key_value(name) {
            rows.set(rows.get().saturating_add(1));
            return Some(Arc::clone(held));
        }
        if self.rows_holding.len() >= self.capacity {
            return None;
        }
        let held: Arc<str> = Arc::from(name);
        self.rows_holding.insert(Arc::clone(&held), Cell::new(1));
        Some(held)
    }

    /// Gives back the names of a row that left the sample.
    pub fn release(&mut self, sample: &Sample) {
        for name in sample.features.keys() {
            let Some(rows) = self.rows_holding.get(name) else {
                continue;
            };
            let left = rows.get().saturating_sub(1);
            rows.set(left);
            if left == 0 {
                self.rows_holding.remove(name);
            }
        }
    }
}

/// A tracked service's reservoir and the width of its rows.
#[derive(Debug)]
pub struct ServiceSample {
    reservoir: Reservoir<Sample>,
    width: FeatureWidth,
}

impl ServiceSample {
    pub fn new(capacity: usize, max_features: usize, seed: u64) -> Self {
        Self {
            reservoir: Reservoir::new(capacity, seed),
            width: FeatureWidth::new(max_features),
        }
    }

    /// Offers `log` (its row built only if kept), at full weight or at one in
    /// `down_weight_every` when given; returns how many of its features were left out for the
    /// width.
    pub fn offer(&mut self, down_weight_every: Option<u64>, log: &ParsedLog) -> usize {
        let mut left_out = 0;
        let width = &mut self.width;
        let build = || {
            let (sample, dropped) = width.sample_of(log);
            left_out = dropped;
            sample
        };
        let displaced = match down_weight_every {
            Some(every) => self.reservoir.offer_down_weighted_with(every, build),
            None => self.reservoir.offer_with(build),
        };
        if let Some(displaced) = displaced {
            self.width.release(&displaced);
        }
        left_out
    }

    /// Rows held.
    pub fn len(&self) -> usize {
        self.reservoir.len()
    }

    /// Distinct feature names held.
    #[cfg(test)]
    pub fn width(&self) -> usize {
        self.width.len()
    }

    /// See [`Reservoir::take_snapshot`].
    pub fn take_snapshot(&mut self) -> Vec<Sample> {
        self.reservoir.take_snapshot()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse_key_value;

    fn log(names: &[&str]) -> ParsedLog {
        let pairs: Vec<String> = names.iter().map(|name| format!("{name}=1")).collect();
        parse_key_value(&pairs.join(" "))
    }

    fn names(sample: &Sample) -> Vec<&str> {
        sample.features.keys().map(|name| name.as_ref()).collect()
    }

    #[test]
    fn rows_keep_only_the_names_the_width_holds() {
        let mut width = FeatureWidth::new(3);
        let (_, left_out) = width.sample_of(&log(&["a", "b"]));
        assert_eq!(left_out, 0);
        let (wide, left_out) = width.sample_of(&log(&["a", "c", "d", "e"]));
        // `a` is held, `c` takes the last place, `d` and `e` are left out.
        assert_eq!(left_out, 2);
        assert_eq!(names(&wide), ["a", "c"]);
        assert_eq!(width.len(), 3);
    }

    #[test]
    fn rows_share_the_held_names() {
        let mut width = FeatureWidth::new(3);
        let (first, _) = width.sample_of(&log(&["latency"]));
        let (second, _) = width.sample_of(&log(&["latency"]));
        let name = |sample: &Sample| Arc::clone(sample.features.keys().next().expect("a name"));
        assert!(Arc::ptr_eq(&name(&first), &name(&second)));
    }

    #[test]
    fn a_name_no_row_holds_gives_its_place_back() {
        let mut width = FeatureWidth::new(2);
        let (junk, _) = width.sample_of(&log(&["junk1", "junk2"]));
        let (_, left_out) = width.sample_of(&log(&["latency"]));
        assert_eq!(left_out, 1, "full of junk");
        width.release(&junk);
        let (_, left_out) = width.sample_of(&log(&["latency"]));
        assert_eq!(left_out, 0);
        assert_eq!(width.len(), 1);
    }

    #[test]
    fn a_service_sample_never_holds_more_names_than_its_width() {
        let mut service = ServiceSample::new(16, 8, 42);
        let mut left_out = 0;
        for i in 0..1000 {
            let names: Vec<String> = (0..20).map(|k| format!("k{i}_{k}")).collect();
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            left_out += service.offer(None, &log(&names));
            assert!(service.width() <= 8);
        }
        assert_eq!(service.len(), 16);
        assert!(left_out > 0);
        let snapshot = service.take_snapshot();
        let total: usize = snapshot.iter().map(|row| row.features.len()).sum();
        assert!(total <= 16 * 8, "{total} features held");
    }

    #[test]
    fn names_of_replaced_rows_are_given_back_as_the_reservoir_turns_over() {
        let mut service = ServiceSample::new(8, 4, 42);
        for i in 0..8 {
            service.offer(None, &log(&[&format!("junk{i}")]));
        }
        assert_eq!(service.width(), 4);
        // Normal logs after a fit replace the junk rows one by one; their names come free.
        for _ in 0..20 {
            let _ = service.take_snapshot();
            for _ in 0..50 {
                service.offer(None, &log(&["latency"]));
            }
        }
        let snapshot = service.take_snapshot();
        let with_latency = snapshot
            .iter()
            .filter(|row| row.features.contains_key("latency"))
            .count();
        assert!(
            with_latency >= 6,
            "{with_latency} of 8 rows learned latency"
        );
    }
}
