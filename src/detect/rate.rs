//! Rate rules (`COMPLEX_ALERT_RULES`): how many anomalies in how long a window page someone.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::detect::rules::DEFAULT_SERVICE_KEY;

/// Fire when `count` anomalies of one service fall within `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateRule {
    pub count: u32,
    pub window: Duration,
}

/// Rate rules per service, built-in defaults merged with the user's, `__default__` as fallback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateRules {
    table: BTreeMap<String, RateRule>,
}

/// The original's built-in rate rules (contract, "Detection semantics" 3).
pub fn builtin_rate_rules() -> BTreeMap<String, RateRule> {
    [
        ("web_server", 3, 60),
        ("database", 5, 120),
        ("application", 8, 180),
        (DEFAULT_SERVICE_KEY, 10, 300),
    ]
    .into_iter()
    .map(|(service, count, seconds)| {
        let rule = RateRule {
            count,
            window: Duration::from_secs(seconds),
        };
        (service.to_owned(), rule)
    })
    .collect()
}

/// A user's rule for one service: either field may be left out and is then taken from the
/// built-in rule for that service, or from `__default__`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PartialRateRule {
    pub count: Option<u32>,
    pub window: Option<Duration>,
}

impl RateRules {
    /// Merges user rules over the built-in ones.
    pub fn with_user_rules(user: BTreeMap<String, PartialRateRule>) -> Self {
        let mut table = builtin_rate_rules();
        let user_default = user.get(DEFAULT_SERVICE_KEY).copied().unwrap_or_default();
        let builtin_default = table[DEFAULT_SERVICE_KEY];
        let default = RateRule {
            count: user_default.count.unwrap_or(builtin_default.count),
            window: user_default.window.unwrap_or(builtin_default.window),
        };
        table.insert(DEFAULT_SERVICE_KEY.to_owned(), default);
        for (service, partial) in user {
            let base = table.get(&service).copied().unwrap_or(default);
            let rule = RateRule {
                count: partial.count.unwrap_or(base.count),
                window: partial.window.unwrap_or(base.window),
            };
            table.insert(service, rule);
        }
        Self { table }
    }

    /// The rule that applies to `service`.
    pub fn rule_for(&self, service: &str) -> RateRule {
        self.table
            .get(service)
            .or_else(|| self.table.get(DEFAULT_SERVICE_KEY))
            .copied()
            .unwrap_or(RateRule {
                count: 10,
                window: Duration::from_secs(300),
            })
    }

    /// Every configured rule, `__default__` included.
    pub fn table(&self) -> &BTreeMap<String, RateRule> {
        &self.table
    }
}

impl Default for RateRules {
    fn default() -> Self {
        Self::with_user_rules(BTreeMap::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_rules_match_the_contract() {
        let rules = RateRules::default();
        assert_eq!(rules.rule_for("web_server").count, 3);
        assert_eq!(rules.rule_for("database").window, Duration::from_secs(120));
        assert_eq!(rules.rule_for("application").count, 8);
        assert_eq!(rules.rule_for("unknown").count, 10);
        assert_eq!(rules.rule_for("unknown").window, Duration::from_secs(300));
    }

    #[test]
    fn partial_user_rules_keep_the_missing_field_from_the_builtin_rule() {
        let user = BTreeMap::from([
            (
                "web_server".to_owned(),
                PartialRateRule {
                    count: Some(7),
                    window: None,
                },
            ),
            (
                "payments".to_owned(),
                PartialRateRule {
                    count: None,
                    window: Some(Duration::from_secs(30)),
                },
            ),
        ]);
        let rules = RateRules::with_user_rules(user);
        assert_eq!(
            rules.rule_for("web_server"),
            RateRule {
                count: 7,
                window: Duration::from_secs(60)
            }
        );
        assert_eq!(
            rules.rule_for("payments"),
            RateRule {
                count: 10,
                window: Duration::from_secs(30)
            }
        );
    }
}
