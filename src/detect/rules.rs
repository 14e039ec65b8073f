//! Threshold rules (`ALERT_CONDITIONS`): per-service feature thresholds overlaid on `__default__`.
//!
//! Contract, "Detection semantics" 1: a log's effective rules are the default ones overlaid by its
//! service's; a numeric feature strictly greater than its threshold makes the log an anomaly. User rules
//! are merged over the built-in defaults per service, feature by feature.

use std::collections::BTreeMap;

use foldhash::HashMap;

use serde::{Deserialize, Serialize};

/// The key whose rules apply to every service.
pub const DEFAULT_SERVICE_KEY: &str = "__default__";

/// One broken rule: the feature's value was strictly above its threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RuleViolation {
    pub feature: String,
    pub threshold: f64,
    pub value: f64,
}

/// Thresholds for one service, by feature name, sorted so violations come out in a stable order.
pub type Thresholds = BTreeMap<String, f64>;

/// The rules of every service, already merged: looking up a service yields its complete rule list.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleSet {
    /// Effective rules per named service (default layer already folded in).
    per_service: HashMap<String, Vec<(String, f64)>>,
    /// Effective rules for services that are not named.
    fallback: Vec<(String, f64)>,
    /// The merged user + built-in table, as configured, for display.
    table: BTreeMap<String, Thresholds>,
}

/// The original's built-in rules (contract, "Detection semantics" 1).
pub fn builtin_rules() -> BTreeMap<String, Thresholds> {
    let table: [(&str, &[(&str, f64)]); 4] = [
        (
            "web_server",
            &[("response_time", 2000.0), ("error_rate", 0.1)],
        ),
        (
            "database",
            &[
                ("query_time", 5000.0),
                ("connection_count", 500.0),
                ("error_rate", 0.05),
            ],
        ),
        (
            "application",
            &[
                ("cpu_usage", 90.0),
                ("memory_usage", 85.0),
                ("thread_count", 300.0),
            ],
        ),
        (
            DEFAULT_SERVICE_KEY,
            &[
                ("cpu_usage", 95.0),
                ("memory_usage", 90.0),
                ("error_rate", 0.2),
            ],
        ),
    ];
    table
        .iter()
        .map(|(service, rules)| {
            let thresholds = rules.iter().map(|(f, t)| ((*f).to_owned(), *t)).collect();
            ((*service).to_owned(), thresholds)
        })
        .collect()
}

impl RuleSet {
    /// Builds the rule set from user rules merged over the built-in ones, per service and feature.
    pub fn with_user_rules(user: BTreeMap<String, Thresholds>) -> Self {
        let mut table = builtin_rules();
        for (service, thresholds) in user {
            table.entry(service).or_default().extend(thresholds);
        }
        let default_layer = table.get(DEFAULT_SERVICE_KEY).cloned().unwrap_or_default();
        let per_service = table
            .iter()
            .filter(|(service, _)| service.as_str() != DEFAULT_SERVICE_KEY)
            .map(|(service, own)| {
                let mut merged = default_layer.clone();
                merged.extend(own.iter().map(|(f, t)| (f.clone(), *t)));
                (service.clone(), merged.into_iter().collect())
            })
            .collect();
        Self {
            per_service,
            fallback: default_layer.into_iter().collect(),
            table,
        }
    }

    /// The effective rules of `service`, sorted by feature name.
    pub fn rules_for(&self, service: &str) -> &[(String, f64)] {
        self.per_service
            .get(service)
            .map_or(self.fallback.as_slice(), Vec::as_slice)
    }

    /// Every rule `features` breaks for `service` (value strictly greater than the threshold).
    pub fn violations<'a>(
        &self,
        service: &str,
        feature: impl Fn(&str) -> Option<f64> + 'a,
    ) -> Vec<RuleViolation> {
        self.rules_for(service)
            .iter()
            .filter_map(|(name, threshold)| {
                let value = feature(name)?;
                (value > *threshold).then(|| RuleViolation {
                    feature: name.clone(),
                    threshold: *threshold,
                    value,
                })
            })
            .collect()
    }

    /// The merged table (built-in rules with the user's over them), as configured.
    pub fn table(&self) -> &BTreeMap<String, Thresholds> {
        &self.table
    }
}

impl Default for RuleSet {
    fn default() -> Self {
        Self::with_user_rules(BTreeMap::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(pairs: &[(&str, f64)]) -> impl Fn(&str) -> Option<f64> {
        let map: HashMap<String, f64> = pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect();
        move |name| map.get(name).copied()
    }

    #[test]
    fn builtin_web_server_rules_apply_with_the_default_layer() {
        let rules = RuleSet::default();
        let violations = rules.violations(
            "web_server",
            lookup(&[("response_time", 2500.0), ("cpu_usage", 99.0)]),
        );
        let names: Vec<_> = violations.iter().map(|v| v.feature.as_str()).collect();
        assert_eq!(names, ["cpu_usage", "response_time"]);
    }

    #[test]
    fn a_value_equal_to_its_threshold_is_not_a_violation() {
        let rules = RuleSet::default();
        assert!(
            rules
                .violations("web_server", lookup(&[("response_time", 2000.0)]))
                .is_empty()
        );
    }

    #[test]
    fn unknown_services_get_the_default_rules() {
        let rules = RuleSet::default();
        let v = rules.violations(
            "billing",
            lookup(&[("error_rate", 0.3), ("query_time", 1e9)]),
        );
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].feature, "error_rate");
        assert_eq!(v[0].threshold, 0.2);
        assert_eq!(v[0].value, 0.3);
    }

    #[test]
    fn user_rules_merge_over_builtin_rules_feature_by_feature() {
        let mut user = BTreeMap::new();
        user.insert(
            "web_server".to_owned(),
            BTreeMap::from([("response_time".to_owned(), 500.0)]),
        );
        user.insert(
            DEFAULT_SERVICE_KEY.to_owned(),
            BTreeMap::from([("disk_usage".to_owned(), 80.0)]),
        );
        let rules = RuleSet::with_user_rules(user);
        let web = rules.rules_for("web_server");
        assert!(web.contains(&("response_time".to_owned(), 500.0)));
        assert!(web.contains(&("error_rate".to_owned(), 0.1)));
        assert!(web.contains(&("disk_usage".to_owned(), 80.0)));
        assert!(
            rules
                .rules_for("other")
                .contains(&("disk_usage".to_owned(), 80.0))
        );
    }

    #[test]
    fn service_rules_beat_default_rules_for_the_same_feature() {
        // database's error_rate 0.05 must win over __default__'s 0.2.
        let rules = RuleSet::default();
        let v = rules.violations("database", lookup(&[("error_rate", 0.1)]));
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].threshold, 0.05);
    }
}
