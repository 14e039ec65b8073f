//! Rate rules (`COMPLEX_ALERT_RULES`): how many anomalies in how long a window page someone, and
//! how that count is judged against the service's traffic.
//!
//! The original paged when `count` anomalies fell within `window`, whatever the traffic: at 1,000
//! logs/s a false-alarm budget of 0.1 % alone makes 60 model anomalies a minute, so a rule of 3 in
//! 60 s fires all day, while at 1 log/s the same 3 are a real burst. So a rule also carries a
//! [`VolumeTest`]: the window must hold `count` anomalies **and** more than its traffic explains.
//! `pure_count: true` restores the original's behaviour for one service.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::detect::rules::DEFAULT_SERVICE_KEY;

/// When a window's anomalies are more than the service's traffic explains: the expected count is
/// what its models flag by design (their false-alarm budget, or the share of logs they flagged
/// lately if higher) plus what its rules are normally broken by (`rule_share`, or the share seen
/// lately if higher); the observed count must be at least `min_ratio` times that and have a
/// Poisson tail probability below `max_probability`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VolumeTest {
    /// `ALERT_MAX_PROBABILITY`: how improbable the count must be (default 0.001).
    pub max_probability: f64,
    /// `ALERT_MIN_RATIO`: how many times the expected count it must reach (default 2), so that a
    /// tiny excess at huge volume, statistically certain but harmless, does not page.
    pub min_ratio: f64,
    /// `ALERT_RULE_SHARE`: the share of a service's logs that may break its rules without an
    /// incident (default 0.001).
    pub rule_share: f64,
}

impl Default for VolumeTest {
    fn default() -> Self {
        Self {
            max_probability: 1e-3,
            min_ratio: 2.0,
            rule_share: 0.001,
        }
    }
}

/// Fire when `count` anomalies of one service fall within `window` and, unless `volume` is
/// `None` (`pure_count`), the count passes the volume test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateRule {
    pub count: u32,
    pub window: Duration,
    pub volume: Option<VolumeTest>,
}

/// Rate rules per service, built-in defaults merged with the user's, `__default__` as fallback.
#[derive(Debug, Clone, PartialEq)]
pub struct RateRules {
    table: BTreeMap<String, RateRule>,
}

/// The original's built-in rate rules (contract, "Detection semantics" 3), judged against
/// traffic with `volume`.
pub fn builtin_rate_rules(volume: VolumeTest) -> BTreeMap<String, RateRule> {
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
            volume: Some(volume),
        };
        (service.to_owned(), rule)
    })
    .collect()
}

/// A user's rule for one service: any field may be left out and is then taken from the built-in
/// rule for that service, or from `__default__`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PartialRateRule {
    pub count: Option<u32>,
    pub window: Option<Duration>,
    pub pure_count: Option<bool>,
    pub max_probability: Option<f64>,
    pub min_ratio: Option<f64>,
    pub rule_share: Option<f64>,
}

impl PartialRateRule {
    fn over(self, base: RateRule, defaults: VolumeTest) -> RateRule {
        let volume = match self.pure_count {
            Some(true) => None,
            Some(false) => Some(base.volume.unwrap_or(defaults)),
            None => base.volume,
        }
        .map(|test| VolumeTest {
            max_probability: self.max_probability.unwrap_or(test.max_probability),
            min_ratio: self.min_ratio.unwrap_or(test.min_ratio),
            rule_share: self.rule_share.unwrap_or(test.rule_share),
        });
        RateRule {
            count: self.count.unwrap_or(base.count),
            window: self.window.unwrap_or(base.window),
            volume,
        }
    }
}

impl RateRules {
    /// Merges user rules over the built-in ones, whose volume test is `defaults`.
    pub fn with_user_rules(user: BTreeMap<String, PartialRateRule>, defaults: VolumeTest) -> Self {
        let mut table = builtin_rate_rules(defaults);
        let user_default = user.get(DEFAULT_SERVICE_KEY).copied().unwrap_or_default();
        let default = user_default.over(table[DEFAULT_SERVICE_KEY], defaults);
        table.insert(DEFAULT_SERVICE_KEY.to_owned(), default);
        for (service, partial) in user {
            let base = table.get(&service).copied().unwrap_or(default);
            table.insert(service, partial.over(base, defaults));
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
                volume: Some(VolumeTest::default()),
            })
    }

    /// Every configured rule, `__default__` included.
    pub fn table(&self) -> &BTreeMap<String, RateRule> {
        &self.table
    }
}

impl Default for RateRules {
    fn default() -> Self {
        Self::with_user_rules(BTreeMap::new(), VolumeTest::default())
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
                    ..PartialRateRule::default()
                },
            ),
            (
                "payments".to_owned(),
                PartialRateRule {
                    count: None,
                    window: Some(Duration::from_secs(30)),
                    ..PartialRateRule::default()
                },
            ),
        ]);
        let rules = RateRules::with_user_rules(user, VolumeTest::default());
        assert_eq!(
            rules.rule_for("web_server"),
            RateRule {
                count: 7,
                window: Duration::from_secs(60),
                volume: Some(VolumeTest::default()),
            }
        );
        assert_eq!(
            rules.rule_for("payments"),
            RateRule {
                count: 10,
                window: Duration::from_secs(30),
                volume: Some(VolumeTest::default()),
            }
        );
    }

    #[test]
    fn volume_keys_tune_one_service_and_pure_count_turns_the_test_off() {
        let defaults = VolumeTest {
            max_probability: 5e-3,
            min_ratio: 3.0,
            rule_share: 0.01,
        };
        let user = BTreeMap::from([
            (
                "web_server".to_owned(),
                PartialRateRule {
                    pure_count: Some(true),
                    ..PartialRateRule::default()
                },
            ),
            (
                "payments".to_owned(),
                PartialRateRule {
                    min_ratio: Some(5.0),
                    ..PartialRateRule::default()
                },
            ),
        ]);
        let rules = RateRules::with_user_rules(user, defaults);
        assert_eq!(rules.rule_for("web_server").volume, None);
        assert_eq!(rules.rule_for("web_server").count, 3);
        let payments = rules.rule_for("payments").volume.expect("judged by volume");
        assert_eq!(payments.min_ratio, 5.0);
        assert_eq!(payments.max_probability, 5e-3);
        assert_eq!(rules.rule_for("database").volume, Some(defaults));
    }
}
