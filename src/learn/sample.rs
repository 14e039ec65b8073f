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

use std::collections::HashMap;

use crate::detect::baseline::Sample;
use crate::learn::reservoir::Reservoir;

/// The default of `MAX_FEATURES_PER_SERVICE`.
pub const DEFAULT_MAX_FEATURES_PER_SERVICE: usize = 64;

/// The feature names a service's sample holds, each with the number of rows holding it.
#[derive(Debug)]
pub struct FeatureWidth {
    rows_holding: HashMap<Box<str>, u32>,
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

    /// Takes `sample` into the width: its features whose names are held, or fit while there is
    /// room, stay; the others are removed from it. Returns how many were removed.
    pub fn admit(&mut self, sample: &mut Sample) -> usize {
        let before = sample.features.len();
        sample.features.retain(|name, _| {
            if let Some(rows) = self.rows_holding.get_mut(name.as_str()) {
                *rows = rows.saturating_add(1);
                true
            } else if self.rows_holding.len() < self.capacity {
                self.rows_holding.insert(name.as_str().into(), 1);
                true
            } else {
                false
            }
        });
        before - sample.features.len()
    }

    /// Gives back the names of a row that left the sample.
    pub fn release(&mut self, sample: &Sample) {
        for name in sample.features.keys() {
            if let Some(rows) = self.rows_holding.get_mut(name.as_str()) {
                *rows = rows.saturating_sub(1);
                if *rows == 0 {
                    self.rows_holding.remove(name.as_str());
                }
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

    /// Offers a row (built only if kept), at full weight or at one in `down_weight_every`
    /// when given; returns how many of its features were left out for the width.
    pub fn offer_with(
        &mut self,
        down_weight_every: Option<u64>,
        row: impl FnOnce() -> Sample,
    ) -> usize {
        let mut left_out = 0;
        let width = &mut self.width;
        let build = || {
            let mut sample = row();
            left_out = width.admit(&mut sample);
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

    fn sample(names: &[&str]) -> Sample {
        Sample {
            features: names.iter().map(|name| ((*name).to_owned(), 1.0)).collect(),
            ..Sample::default()
        }
    }

    #[test]
    fn rows_keep_only_the_names_the_width_holds() {
        let mut width = FeatureWidth::new(3);
        let mut first = sample(&["a", "b"]);
        assert_eq!(width.admit(&mut first), 0);
        let mut wide = sample(&["a", "c", "d", "e"]);
        // `a` is held, `c` takes the last place, `d` and `e` are left out.
        assert_eq!(width.admit(&mut wide), 2);
        assert_eq!(wide.features.keys().collect::<Vec<_>>(), ["a", "c"]);
        assert_eq!(width.len(), 3);
    }

    #[test]
    fn a_name_no_row_holds_gives_its_place_back() {
        let mut width = FeatureWidth::new(2);
        let mut junk = sample(&["junk1", "junk2"]);
        width.admit(&mut junk);
        let mut real = sample(&["latency"]);
        assert_eq!(width.admit(&mut real), 1, "full of junk");
        width.release(&junk);
        let mut real = sample(&["latency"]);
        assert_eq!(width.admit(&mut real), 0);
        assert_eq!(width.len(), 1);
    }

    #[test]
    fn a_service_sample_never_holds_more_names_than_its_width() {
        let mut service = ServiceSample::new(16, 8, 42);
        let mut left_out = 0;
        for i in 0..1000 {
            let names: Vec<String> = (0..20).map(|k| format!("k{i}_{k}")).collect();
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            left_out += service.offer_with(None, || sample(&names));
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
            service.offer_with(None, || sample(&[&format!("junk{i}")]));
        }
        assert_eq!(service.width(), 4);
        // Normal logs after a fit replace the junk rows one by one; their names come free.
        let mut kept = 0;
        for _ in 0..20 {
            let _ = service.take_snapshot();
            for _ in 0..50 {
                kept += usize::from(service.offer_with(None, || sample(&["latency"])) == 0);
            }
        }
        assert!(kept > 0);
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
