//! A bounded sample of a service's recent normal logs. Between two fits, the first `capacity` logs
//! replace the oldest rows, one by one; past that, the logs since the fit are sampled uniformly
//! (Vitter's algorithm R, whose first `capacity` items are exactly those). So a fit learns from the
//! service's last `capacity` logs when it is quiet, and from a uniform sample of the logs since the
//! previous fit when it is busy: either way the sample follows a drift within one fit.
//! (Restarting algorithm R at each fit over a full reservoir instead made the k-th new log
//! overwrite a random one of the first k slots: only about half of the logs between two fits
//! stayed, and a quiet service's sample kept rows many fits old, so its baseline lagged behind a
//! slow drift.)

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
    /// The slot of the oldest row, which the next log replaces while fewer than `capacity` logs
    /// have come since the last fit. The rows are in age order from here, round the ring.
    oldest: usize,
    rng: StdRng,
}

impl<T: Clone> Reservoir<T> {
    pub fn new(capacity: usize, seed: u64) -> Self {
        Self {
            capacity: capacity.max(1),
            rows: Vec::new(),
            seen_since_fit: 0,
            down_weighted: 0,
            oldest: 0,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// Offers one row: it replaces the oldest while fewer than `capacity` rows have been offered
    /// since the last fit, and after that it is kept with probability capacity / offered. The row
    /// is built only when kept, so a busy service pays for sampling only on the few logs that
    /// stay. Returns the row it replaced, if any.
    pub fn offer_with(&mut self, row: impl FnOnce() -> T) -> Option<T> {
        self.seen_since_fit += 1;
        if self.rows.len() < self.capacity {
            self.rows.push(row());
            return None;
        }
        if self.seen_since_fit <= self.capacity as u64 {
            let slot = self.oldest;
            self.oldest = (slot + 1) % self.capacity;
            let replaced = self.rows.get_mut(slot)?;
            return Some(std::mem::replace(replaced, row()));
        }
        // Every row now dates from after the fit; keep a uniform sample of them.
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

    /// A copy of the rows for a fit, in random order (the rows themselves keep their age order);
    /// the count restarts so the logs after the fit replace the oldest rows first.
    pub fn take_snapshot(&mut self) -> Vec<T> {
        self.seen_since_fit = 0;
        let mut rows = self.rows.clone();
        rows.shuffle(&mut self.rng);
        rows
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
        assert_eq!(old, 0, "{old} old rows remain");
    }

    fn values(rows: &[FeatureRow]) -> Vec<f64> {
        let mut values: Vec<f64> = rows.iter().map(|r| r["x"]).collect();
        values.sort_by(f64::total_cmp);
        values
    }

    #[test]
    fn a_few_logs_after_a_fit_replace_the_oldest_rows() {
        let mut reservoir = Reservoir::new(10, 42);
        for i in 0..10 {
            reservoir.offer(row(f64::from(i)));
        }
        let _ = reservoir.take_snapshot();
        for i in 10..13 {
            reservoir.offer(row(f64::from(i)));
        }
        let expected: Vec<f64> = (3..13).map(f64::from).collect();
        assert_eq!(values(&reservoir.take_snapshot()), expected);
        // Across fits too: the sample is the last ten logs.
        for i in 13..20 {
            reservoir.offer(row(f64::from(i)));
        }
        let expected: Vec<f64> = (10..20).map(f64::from).collect();
        assert_eq!(values(&reservoir.take_snapshot()), expected);
    }

    #[test]
    fn many_logs_after_a_fit_are_sampled_uniformly() {
        let mut reservoir = Reservoir::new(200, 42);
        for _ in 0..200 {
            reservoir.offer(row(-1.0));
        }
        let _ = reservoir.take_snapshot();
        for i in 0..10_000 {
            reservoir.offer(row(f64::from(i)));
        }
        let kept = values(&reservoir.take_snapshot());
        assert!(kept.iter().all(|v| *v >= 0.0), "an old row survived");
        // Each decile of the 10,000 logs holds ~20 of the 200 rows (sd ~4.2).
        for decile in 0..10 {
            let low = f64::from(decile) * 1000.0;
            let n = kept
                .iter()
                .filter(|v| (low..low + 1000.0).contains(*v))
                .count();
            assert!((6..=36).contains(&n), "decile {decile} holds {n} rows");
        }
    }

    #[test]
    fn frequent_fits_with_few_logs_between_them_still_replace_every_old_row() {
        let mut reservoir = Reservoir::new(50, 42);
        for _ in 0..50 {
            reservoir.offer(row(1.0));
        }
        // Ten fits with 20 new logs before each: the oldest rows go first, so after 50 logs none
        // of the first is left, where refreshing the same leading slots every time would leave
        // 30 or more of them for ever.
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
        assert_eq!(old, 0, "{old} of the 50 first rows remain");
    }
}
