//! A bounded, uniform sample of a service's recent normal logs (reservoir sampling, Vitter's
//! algorithm R). After every fit the count restarts, so the next fit samples uniformly from the logs
//! seen since the last one: the reservoir follows the service as it drifts.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::learn::dataset::FeatureRow;

/// At most `capacity` feature rows.
#[derive(Debug)]
pub struct Reservoir {
    capacity: usize,
    rows: Vec<FeatureRow>,
    seen_since_fit: u64,
    rng: StdRng,
}

impl Reservoir {
    pub fn new(capacity: usize, seed: u64) -> Self {
        Self {
            capacity: capacity.max(1),
            rows: Vec::new(),
            seen_since_fit: 0,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// Offers one row; it is kept with probability capacity / seen. The row is built only when
    /// kept, so a busy service pays for sampling only on the few logs that stay.
    pub fn offer_with(&mut self, row: impl FnOnce() -> FeatureRow) {
        self.seen_since_fit += 1;
        if self.rows.len() < self.capacity {
            self.rows.push(row());
            return;
        }
        let slot = self.rng.random_range(0..self.seen_since_fit);
        if let Some(kept) = usize::try_from(slot)
            .ok()
            .and_then(|s| self.rows.get_mut(s))
        {
            *kept = row();
        }
    }

    /// Offers one row that is already built.
    pub fn offer(&mut self, row: FeatureRow) {
        self.offer_with(|| row);
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// A copy of the rows for a fit; the count restarts so newer logs replace older ones.
    pub fn take_snapshot(&mut self) -> Vec<FeatureRow> {
        self.seen_since_fit = 0;
        self.rows.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(value: f64) -> FeatureRow {
        FeatureRow::from([("x".to_owned(), value)])
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
}
