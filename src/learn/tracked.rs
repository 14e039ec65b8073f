//! The services whose logs feed automatic training: at most `MAX_TRACKED_SERVICES`, each with its
//! reservoir. Slots are not first come, first kept: when the table is full, the slot of the
//! service seen least recently is given to a new service once it has been idle for
//! `TRACKED_SERVICE_IDLE_SECONDS`, so a burst of junk service names cannot lock real services out
//! of learning for good (their slots free up once the junk stops), while a service that keeps
//! sending keeps its sample.

use foldhash::{HashMap, HashMapExt};
use std::time::{Duration, Instant};

use crate::learn::sample::ServiceSample;

#[derive(Debug)]
struct Tracked {
    sample: ServiceSample,
    last_seen: Instant,
}

#[derive(Debug)]
pub(super) struct TrackedServices {
    services: HashMap<String, Tracked>,
    capacity: usize,
    idle: Duration,
    /// No slot can have been idle long enough before this instant: a flood of new names while
    /// every slot is busy costs one scan per idle period, not one per log.
    no_idle_slot_before: Option<Instant>,
    given_back: u64,
}

impl TrackedServices {
    pub(super) fn new(capacity: usize, idle: Duration) -> Self {
        Self {
            services: HashMap::new(),
            capacity,
            idle,
            no_idle_slot_before: None,
            given_back: 0,
        }
    }

    /// The reservoir of `service`, seen `now`; a new service gets a slot (made by `make`) if one
    /// is free or idle, `None` otherwise.
    pub(super) fn track(
        &mut self,
        service: &str,
        now: Instant,
        make: impl FnOnce() -> ServiceSample,
    ) -> Option<&mut ServiceSample> {
        if !self.services.contains_key(service) {
            if self.services.len() >= self.capacity && !self.give_back_idle_slot(now) {
                return None;
            }
            let sample = make();
            self.services.insert(
                service.to_owned(),
                Tracked {
                    sample,
                    last_seen: now,
                },
            );
        }
        let tracked = self.services.get_mut(service)?;
        tracked.last_seen = tracked.last_seen.max(now);
        Some(&mut tracked.sample)
    }

    /// Frees the slot of the service seen least recently if it has been idle long enough.
    fn give_back_idle_slot(&mut self, now: Instant) -> bool {
        if self.no_idle_slot_before.is_some_and(|at| now < at) {
            return false;
        }
        let oldest = self
            .services
            .iter()
            .min_by_key(|(_, tracked)| tracked.last_seen)
            .map(|(service, tracked)| (service.clone(), tracked.last_seen));
        let Some((service, last_seen)) = oldest else {
            return false;
        };
        if now.saturating_duration_since(last_seen) < self.idle {
            self.no_idle_slot_before = Some(last_seen + self.idle);
            return false;
        }
        self.services.remove(&service);
        self.no_idle_slot_before = None;
        self.given_back += 1;
        tracing::debug!(
            service,
            "Idle tracked service's slot given to a new service."
        );
        true
    }

    pub(super) fn get(&self, service: &str) -> Option<&ServiceSample> {
        self.services.get(service).map(|tracked| &tracked.sample)
    }

    pub(super) fn get_mut(&mut self, service: &str) -> Option<&mut ServiceSample> {
        self.services
            .get_mut(service)
            .map(|tracked| &mut tracked.sample)
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&String, &ServiceSample)> {
        self.services
            .iter()
            .map(|(service, tracked)| (service, &tracked.sample))
    }

    /// Slots given to new services since start-up.
    pub(super) fn given_back(&self) -> u64 {
        self.given_back
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reservoir() -> ServiceSample {
        ServiceSample::new(8, 8, 1)
    }

    #[test]
    fn a_full_table_gives_the_least_recently_seen_idle_slot_to_a_new_service() {
        let start = Instant::now();
        let minute = Duration::from_secs(60);
        let mut tracked = TrackedServices::new(2, 10 * minute);
        assert!(tracked.track("junk-1", start, reservoir).is_some());
        assert!(tracked.track("junk-2", start + minute, reservoir).is_some());
        // Full, nobody idle for ten minutes yet: the newcomer is not tracked.
        assert!(
            tracked
                .track("web", start + 5 * minute, reservoir)
                .is_none()
        );
        // junk-2 keeps sending; junk-1 has been idle for ten minutes: its slot goes to web.
        assert!(
            tracked
                .track("junk-2", start + 9 * minute, reservoir)
                .is_some()
        );
        assert!(
            tracked
                .track("web", start + 10 * minute, reservoir)
                .is_some()
        );
        assert!(tracked.get("junk-1").is_none());
        assert!(tracked.get("junk-2").is_some());
        assert_eq!(tracked.given_back(), 1);
        // junk-2 was seen at minute 9: not idle at minute 15, idle at minute 19.
        assert!(
            tracked
                .track("db", start + 15 * minute, reservoir)
                .is_none()
        );
        assert!(
            tracked
                .track("db", start + 19 * minute, reservoir)
                .is_some()
        );
        assert!(
            tracked.get("web").is_some(),
            "the newest service keeps its slot"
        );
    }

    #[test]
    fn a_flood_of_new_names_scans_once_per_idle_period() {
        let start = Instant::now();
        let mut tracked = TrackedServices::new(1, Duration::from_secs(60));
        assert!(tracked.track("web", start, reservoir).is_some());
        for i in 0..10_000 {
            let at = start + Duration::from_millis(i);
            assert!(tracked.track(&format!("junk-{i}"), at, reservoir).is_none());
        }
        assert_eq!(
            tracked.no_idle_slot_before,
            Some(start + Duration::from_secs(60))
        );
        assert!(tracked.get("web").is_some());
    }
}
