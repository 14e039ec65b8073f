//! Reading what the service says about itself: `GET /api/v1/alerts` (which alerts it raised) and
//! `GET /api/v1/models` (what each service has learned), and counting the alerts a phase raised.
//! Pure: the HTTP calls are in the drill's `mod.rs`.
//!
//! The alert listing has no paging: `limit` (at most 1,000) alerts, newest first, ordered by
//! their `id`, which grows with every new alert. A phase's alerts are therefore the listed ones
//! whose `id` is above the largest `id` before the phase; if the listing is full and holds only
//! such alerts, older new ones may be missing and the count is a lower bound (`truncated`).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde_json::Value;

/// The most alerts one `GET /api/v1/alerts` returns.
pub const LISTING_LIMIT: usize = crate::api::alerts::MAX_LIMIT;

/// What the drill needs of one stored alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertView {
    /// Grows with every new alert.
    pub id: i64,
    pub service: String,
    /// `state` is `firing` (else `resolved`).
    pub firing: bool,
    /// Times the service's rate rule tripped while this alert was open (1 = the burst that
    /// opened it); `None` when the service does not say.
    pub bursts: Option<u64>,
    /// The service's clock when the batch that raised it arrived, if it says.
    pub started_at: Option<DateTime<Utc>>,
}

fn excerpt(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// Reads a `GET /api/v1/alerts` body: a list of alerts with `id`, `service` and `state`, and
/// optionally `bursts`.
///
/// # Errors
/// A body that is not a list, or an alert without an integer `id` or a `service`.
pub fn parse_alerts(body: &Value) -> Result<Vec<AlertView>, String> {
    let items = body
        .as_array()
        .ok_or_else(|| format!("the alert listing is not a list: {}", excerpt(body)))?;
    items
        .iter()
        .map(|item| {
            let id = item
                .get("id")
                .and_then(Value::as_i64)
                .ok_or_else(|| format!("an alert without an integer id: {}", excerpt(item)))?;
            let service = item
                .get("service")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("alert {id} has no service: {}", excerpt(item)))?;
            Ok(AlertView {
                id,
                service: service.to_owned(),
                firing: item.get("state").and_then(Value::as_str) == Some("firing"),
                bursts: item.get("bursts").and_then(Value::as_u64),
                started_at: item
                    .get("started_at")
                    .and_then(Value::as_str)
                    .and_then(|text| text.parse().ok()),
            })
        })
        .collect()
}

/// Reads a `GET /api/v1/models` body into training samples per service.
///
/// # Errors
/// A body that is not a list, or a model without a `service` or an integer `training_samples`.
pub fn parse_models(body: &Value) -> Result<BTreeMap<String, u64>, String> {
    let items = body
        .as_array()
        .ok_or_else(|| format!("the model listing is not a list: {}", excerpt(body)))?;
    items
        .iter()
        .map(|item| {
            let service = item
                .get("service")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("a model without a service: {}", excerpt(item)))?;
            let samples = item
                .get("training_samples")
                .and_then(Value::as_u64)
                .ok_or_else(|| {
                    format!(
                        "the model of {service} has no training_samples: {}",
                        excerpt(item)
                    )
                })?;
            Ok((service.to_owned(), samples))
        })
        .collect()
}

/// The alerts before a phase: the newest `id`, and each listed alert's bursts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertBaseline {
    max_id: Option<i64>,
    bursts: BTreeMap<i64, Option<u64>>,
}

impl AlertBaseline {
    /// The baseline of a listing taken just before the phase.
    pub fn of(listing: &[AlertView]) -> Self {
        Self {
            max_id: listing.iter().map(|alert| alert.id).max(),
            bursts: listing
                .iter()
                .map(|alert| (alert.id, alert.bursts))
                .collect(),
        }
    }

    /// Whether `alert` was raised after this baseline was taken.
    pub fn is_new(&self, alert: &AlertView) -> bool {
        self.max_id.is_none_or(|max| alert.id > max)
    }
}

/// The alerts a phase raised, from listings before and after it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PhaseAlertCount {
    /// New alerts (each one paged when it fired).
    pub alerts: u64,
    pub by_service: BTreeMap<String, u64>,
    /// Times a rate rule tripped during the phase: the bursts of new alerts, plus those added to
    /// alerts already open before it. `None` when the service does not report bursts.
    pub bursts: Option<u64>,
    /// The listing was full of new alerts: more may have fired; `alerts` is a lower bound.
    pub truncated: bool,
    /// Services with a firing alert after the phase.
    pub firing: Vec<String>,
}

/// Counts what was raised between `baseline` and `after`, a listing of at most `limit` alerts.
pub fn count_new_alerts(
    baseline: &AlertBaseline,
    after: &[AlertView],
    limit: usize,
) -> PhaseAlertCount {
    let mut count = PhaseAlertCount {
        bursts: Some(0),
        ..PhaseAlertCount::default()
    };
    let mut add_bursts = |n: Option<u64>| {
        count.bursts = count.bursts.zip(n).map(|(sum, n)| sum + n);
    };
    for alert in after {
        if baseline.is_new(alert) {
            count.alerts += 1;
            *count.by_service.entry(alert.service.clone()).or_default() += 1;
            add_bursts(alert.bursts);
        } else if let Some(before) = baseline.bursts.get(&alert.id) {
            add_bursts(
                alert
                    .bursts
                    .zip(*before)
                    .map(|(now, then)| now.saturating_sub(then)),
            );
        }
    }
    count.truncated = after.len() >= limit && after.iter().all(|alert| baseline.is_new(alert));
    count.firing = after
        .iter()
        .filter(|alert| alert.firing)
        .map(|alert| alert.service.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    count
}

/// The first alert raised after `baseline`, if any: the lowest new `id` (listings are newest
/// first, but the order is not relied on).
pub fn first_new_alert<'a>(
    baseline: &AlertBaseline,
    listing: &'a [AlertView],
) -> Option<&'a AlertView> {
    listing
        .iter()
        .filter(|alert| baseline.is_new(alert))
        .min_by_key(|alert| alert.id)
}

/// The services with a firing alert in `listing`, each once, sorted.
pub fn firing_services(listing: &[AlertView]) -> Vec<String> {
    listing
        .iter()
        .filter(|alert| alert.firing)
        .map(|alert| alert.service.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// An alert as today's service lists it (fields the drill ignores included).
    fn stored(id: i64, service: &str, state: &str, bursts: u64) -> Value {
        json!({
            "id": id, "fingerprint": "0123456789abcdef", "service": service,
            "rule": "high_anomaly_rate", "state": state, "threshold_count": 3,
            "window_seconds": 60.0, "started_at": "2026-01-01T12:00:00.000Z",
            "last_anomaly_at": "2024-01-15T10:00:01.000Z",
            "last_notified_at": "2026-01-01T12:00:00.000Z", "resolved_at": null,
            "anomaly_count": bursts * 3, "bursts": bursts, "notifications": 1, "revision": 4,
            "dedup_key": "aioops-mcp-iforest/high_anomaly_rate/0123456789abcdef",
            "deliveries": [{"channel": "console", "event": "fired", "status": "delivered"}],
        })
    }

    fn listing(items: &[Value]) -> Vec<AlertView> {
        parse_alerts(&Value::Array(items.to_vec())).expect("parses")
    }

    #[test]
    fn the_services_alert_listing_parses() {
        let alerts = listing(&[
            stored(7, "web_server", "firing", 12),
            stored(3, "database", "resolved", 1),
        ]);
        assert_eq!(
            alerts[0],
            AlertView {
                id: 7,
                service: "web_server".to_owned(),
                firing: true,
                bursts: Some(12),
                started_at: Some("2026-01-01T12:00:00Z".parse().expect("time")),
            }
        );
        assert!(!alerts[1].firing);
        assert_eq!(firing_services(&alerts), ["web_server"]);
    }

    #[test]
    fn listings_that_are_not_alerts_are_errors_not_panics() {
        for (body, says) in [
            (json!({"detail": "Not Found"}), "not a list"),
            (json!([{"service": "web_server"}]), "integer id"),
            (json!([{"id": "seven", "service": "x"}]), "integer id"),
            (json!([{"id": 1}]), "no service"),
        ] {
            let error = parse_alerts(&body).expect_err("refused");
            assert!(error.contains(says), "{error}");
        }
        let minimal = parse_alerts(&json!([{"id": 1, "service": "x"}])).expect("parses");
        assert_eq!(minimal[0].bursts, None);
        assert_eq!(minimal[0].started_at, None);
        assert!(!minimal[0].firing);
    }

    #[test]
    fn new_alerts_are_those_above_the_newest_id_before_the_phase() {
        // Before: web_server firing (5 bursts so far), database resolved.
        let before = listing(&[
            stored(2, "web_server", "firing", 5),
            stored(1, "database", "resolved", 1),
        ]);
        let baseline = AlertBaseline::of(&before);
        // After: two new alerts; web_server's old one tripped 15 more times.
        let after = listing(&[
            stored(4, "database", "firing", 2),
            stored(3, "application", "resolved", 1),
            stored(2, "web_server", "firing", 20),
            stored(1, "database", "resolved", 1),
        ]);
        let count = count_new_alerts(&baseline, &after, LISTING_LIMIT);
        assert_eq!(count.alerts, 2);
        assert_eq!(count.by_service["database"], 1);
        assert_eq!(count.by_service["application"], 1);
        assert_eq!(count.bursts, Some(2 + 1 + 15));
        assert!(!count.truncated);
        assert_eq!(count.firing, ["database", "web_server"]);
        assert_eq!(first_new_alert(&baseline, &after).map(|a| a.id), Some(3));
    }

    #[test]
    fn nothing_new_counts_zero_and_an_empty_service_counts_everything() {
        let before = listing(&[stored(9, "web_server", "resolved", 3)]);
        let count = count_new_alerts(&AlertBaseline::of(&before), &before, LISTING_LIMIT);
        assert_eq!(count.alerts, 0);
        assert_eq!(count.bursts, Some(0));
        assert!(first_new_alert(&AlertBaseline::of(&before), &before).is_none());
        let after = listing(&[stored(1, "web_server", "firing", 4)]);
        let count = count_new_alerts(&AlertBaseline::default(), &after, LISTING_LIMIT);
        assert_eq!(count.alerts, 1);
        assert_eq!(count.bursts, Some(4));
    }

    #[test]
    fn a_full_listing_of_new_alerts_is_a_lower_bound() {
        let baseline = AlertBaseline::of(&listing(&[stored(10, "a", "resolved", 1)]));
        let full: Vec<Value> = (11..16)
            .rev()
            .map(|id| stored(id, "a", "resolved", 1))
            .collect();
        let count = count_new_alerts(&baseline, &listing(&full), 5);
        assert_eq!(count.alerts, 5);
        assert!(count.truncated);
        // The same five alerts with room to spare, or with an old one listed, are complete.
        assert!(!count_new_alerts(&baseline, &listing(&full), 6).truncated);
        let mut with_old = full[..4].to_vec();
        with_old.push(stored(10, "a", "resolved", 1));
        assert!(!count_new_alerts(&baseline, &listing(&with_old), 5).truncated);
    }

    #[test]
    fn bursts_are_unknown_when_the_service_does_not_report_them() {
        let after =
            parse_alerts(&json!([{"id": 1, "service": "x", "state": "firing"}])).expect("parses");
        let count = count_new_alerts(&AlertBaseline::default(), &after, LISTING_LIMIT);
        assert_eq!(count.alerts, 1);
        assert_eq!(count.bursts, None);
    }

    #[test]
    fn the_model_listing_gives_training_samples_per_service() {
        let body = json!([
            {"service": "database", "features": ["query_time"], "training_samples": 800},
            {"service": "web_server", "training_samples": 2048, "baseline": {}},
        ]);
        let samples = parse_models(&body).expect("parses");
        assert_eq!(samples["web_server"], 2048);
        assert_eq!(samples["database"], 800);
        assert!(parse_models(&json!({"detail": "x"})).is_err());
        assert!(parse_models(&json!([{"service": "a", "training_samples": -1}])).is_err());
    }
}
