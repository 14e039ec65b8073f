//! A bounded, uniform sample of a service's recent normal logs (reservoir sampling, Vitter's
//! algorithm R). After every fit the count restarts, so the next fit samples uniformly from the logs
//! seen since the last one: the reservoir follows the service as it drifts. When fewer logs than
//! its capacity arrive between fits, they replace old rows chosen at random (the rows are shuffled
//! at each fit), so the old rows fade geometrically from fit to fit instead of a fixed part of the
//! reservoir being refreshed over and over while the rest keeps the first logs forever.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

/// At most `capacity` rows (a service's training samples).
#[derive(Debug)]
pub struct Reservoir<T> {
    capacity: usize,
    rows: Vec<T>,
    seen_since_fit: u64,
    down_weighted: u64,
    rng: StdRng,
}

impl<T: Clone> Reservoir<T> {
    pub fn new(capacity: usize, seed: u64) -> Self {
        Self {
            capacity: capacity.max(1),
            rows: Vec::new(),
            seen_since_fit: 0,
            down_weighted: 0,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// Offers one row; it is kept with probability capacity / seen. The row is built only when
    /// kept, so a busy service pays for sampling only on the few logs that stay. Returns the row
    /// it replaced, if any.
    pub fn offer_with(&mut self, row: impl FnOnce() -> T) -> Option<T> {
        self.seen_since_fit += 1;
        if self.rows.len() < self.capacity {
            self.rows.push(row());
            return None;
        }
        let slot = self.rng.random_range(0..self.seen_since_fit);
        let kept = usize::try_from(slot)
            .ok()
            .and_then(|s| self.rows.get_mut(s))?;
        Some(std::mem::replace(kept, row()))
    }

    /// Offers one row of every `every` given this way: a log the model flagged joins the
    /// sample at a tenth of a normal log's weight, say, so a lone anomaly does not become normal
    /// while a change that persists is learned after a few refits.
    pub fn offer_down_weighted_with(&mut self, every: u64, row: impl FnOnce() -> T) -> Option<T> {
        self.down_weighted += 1;
        if self.down_weighted.is_multiple_of(every.max(1)) {
            self.offer_with(row)
        } else {
            None
        }
    }

    /// Offers one row that is already built (the tests' shorthand for [`Self::offer_with`]).
    #[cfg(test)]
    pub fn offer(&mut self, row: T) {
        let _ = self.offer_with(|| row);
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// A copy of the rows for a fit; the count restarts so newer logs replace older ones.
    pub fn take_snapshot(&mut self) -> Vec<T> {
        self.seen_since_fit = 0;
        // Algorithm R fills slots from the first: without the shuffle the next few logs would
        // always overwrite the same leading slots.
        self.rows.shuffle(&mut self.rng);
        self.rows.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::learn::dataset::FeatureRow;

    fn row(value: f64) -> FeatureRow {
        FeatureRow::from([("x".into(), value)])
    }

    #[test]
    fn it_never_holds_more_than_its_capacity() {
        let mut reservoir = Reservoir::new(10, 42);
        for i in 0..1000 {
            reservoir.offer(row(f64::from(i)));
        }
        assert_eq!(reservoir.len(), 10);
    }

    #[test]
    fn down_weighted_rows_join_one_in_every() {
        let mut reservoir = Reservoir::new(100, 42);
        for i in 0..50 {
            let _ = reservoir.offer_down_weighted_with(10, || row(f64::from(i)));
        }
        assert_eq!(reservoir.len(), 5);
    }

    #[test]
    fn after_a_fit_new_logs_replace_old_ones() {
        let mut reservoir = Reservoir::new(50, 42);
        for _ in 0..50 {
            reservoir.offer(row(1.0));
        }
        let _ = reservoir.take_snapshot();
        for _ in 0..500 {
            reservoir.offer(row(2.0));
        }
        let old = reservoir
            .take_snapshot()
            .iter()
            .filter(|r| r["x"] == 1.0)
            .count();
        assert!(old <= 5, "{old} old rows remain");
    }

    #[test]
    fn frequent_fits_with_few_logs_between_them_still_replace_every_old_row() {
        let mut reservoir = Reservoir::new(50, 42);
        for _ in 0..50 {
            reservoir.offer(row(1.0));
        }
        // Ten fits with 20 new logs before each: the first rows fade geometrically, where
        // refreshing the same leading slots every time would leave 30 or more of them for ever.
        for _ in 0..10 {
            let _ = reservoir.take_snapshot();
            for _ in 0..20 {
                reservoir.offer(row(2.0));
            }
        }
        let old = reservoir
            .take_snapshot()
            .iter()
            .filter(|r| r["x"] == 1.0)
            .count();
        assert!(old <= 8, "{old} of the 50 first rows remain");
    }
}
