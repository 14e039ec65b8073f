//! The reader behind [`super::Settings::from_vars`]: typed parsers for one variable each, that
//! collect every problem instead of stopping at the first, and the rule tables' JSON parsers.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

use serde_json::Value;

use crate::alert::rate::{PartialRateRule, RateRules, VolumeTest};
use crate::detect::rules::{RuleSet, Thresholds};
use crate::forest::Contamination;

/// The shortest `API_TOKEN` accepted.
pub(super) const MIN_TOKEN_CHARS: usize = 16;

/// Reads variables and collects every problem instead of stopping at the first.
pub(super) struct Reader<'a> {
    pub(super) vars: &'a HashMap<String, String>,
    pub(super) problems: Vec<String>,
}

impl Reader<'_> {
    /// The trimmed value, `None` when unset or empty (an empty variable means "use the default").
    pub(super) fn text(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    pub(super) fn problem(&mut self, name: &str, raw: &str, why: impl fmt::Display) {
        self.problems.push(format!("{name}={raw:?}: {why}"));
    }

    pub(super) fn parsed<T: std::str::FromStr>(&mut self, name: &str, default: T) -> T
    where
        T::Err: fmt::Display,
    {
        let Some(raw) = self.text(name) else {
            return default;
        };
        match raw.parse() {
            Ok(value) => value,
            Err(error) => {
                let raw = raw.to_owned();
                self.problem(name, &raw, error);
                default
            }
        }
    }

    pub(super) fn ranged(&mut self, name: &str, default: usize, min: usize, max: usize) -> usize {
        let Some(raw) = self.text(name).map(str::to_owned) else {
            return default;
        };
        match raw.parse::<usize>() {
            Ok(value) if (min..=max).contains(&value) => value,
            Ok(_) | Err(_) => {
                self.problem(
                    name,
                    &raw,
                    format!("expected a whole number from {min} to {max}"),
                );
                default
            }
        }
    }

    pub(super) fn optional_positive(&mut self, name: &str) -> Option<usize> {
        self.text(name)?;
        Some(self.ranged(name, 1, 1, 1024))
    }

    pub(super) fn seconds(&mut self, name: &str, default: u64, min: u64) -> Duration {
        let Some(raw) = self.text(name).map(str::to_owned) else {
            return Duration::from_secs(default);
        };
        match raw.parse::<f64>() {
            Ok(value) if value.is_finite() && value >= min as f64 && value <= 1e9 => {
                Duration::from_secs_f64(value)
            }
            _ => {
                self.problem(name, &raw, format!("expected a number of seconds >= {min}"));
                Duration::from_secs(default)
            }
        }
    }

    /// A positive number of seconds, fractions allowed (tests use milliseconds).
    pub(super) fn positive_seconds(&mut self, name: &str, default: f64) -> Duration {
        let Some(raw) = self.text(name).map(str::to_owned) else {
            return Duration::from_secs_f64(default);
        };
        match raw.parse::<f64>() {
            Ok(value) if (0.001..=1e7).contains(&value) => Duration::from_secs_f64(value),
            _ => {
                self.problem(
                    name,
                    &raw,
                    "expected a number of seconds from 0.001 to 10000000",
                );
                Duration::from_secs_f64(default)
            }
        }
    }

    pub(super) fn finite(&mut self, name: &str, default: f64) -> f64 {
        let Some(raw) = self.text(name).map(str::to_owned) else {
            return default;
        };
        match raw.parse::<f64>() {
            Ok(value) if value.is_finite() => value,
            _ => {
                self.problem(name, &raw, "expected a finite number");
                default
            }
        }
    }

    pub(super) fn choice<T: Copy>(&mut self, name: &str, default: T, options: &[(&str, T)]) -> T {
        let Some(raw) = self.text(name).map(str::to_owned) else {
            return default;
        };
        if let Some((_, value)) = options
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(&raw))
        {
            return *value;
        }
        let names: Vec<_> = options.iter().map(|(key, _)| *key).collect();
        self.problem(name, &raw, format!("expected one of {}", names.join(", ")));
        default
    }

    pub(super) fn log_level(&mut self, name: &str) -> String {
        let Some(raw) = self.text(name).map(str::to_owned) else {
            return "info".to_owned();
        };
        let level = raw.to_ascii_lowercase();
        // Python's logging names map onto tracing's: WARNING -> warn, CRITICAL -> error.
        let level = match level.as_str() {
            "warning" => "warn".to_owned(),
            "critical" | "fatal" => "error".to_owned(),
            other => other.to_owned(),
        };
        if ["trace", "debug", "info", "warn", "error", "off"].contains(&level.as_str()) {
            level
        } else {
            self.problem(
                name,
                &raw,
                "expected one of trace, debug, info, warn (warning), error (critical), off",
            );
            "info".to_owned()
        }
    }

    /// A number that `range` accepts, else a problem naming what it expects.
    pub(super) fn number_in(&mut self, name: &str, default: f64, range: NumberRange) -> f64 {
        let Some(raw) = self.text(name).map(str::to_owned) else {
            return default;
        };
        match raw.parse::<f64>() {
            Ok(value) if (range.accepts)(value) => value,
            _ => {
                self.problem(name, &raw, range.expected);
                default
            }
        }
    }

    pub(super) fn contamination(&mut self, name: &str) -> Contamination {
        let Some(raw) = self.text(name).map(str::to_owned) else {
            return Contamination::Fraction(0.05);
        };
        if raw.eq_ignore_ascii_case("auto") {
            return Contamination::Auto;
        }
        match raw.parse::<f64>() {
            Ok(value) if value > 0.0 && value <= 0.5 => Contamination::Fraction(value),
            _ => {
                self.problem(name, &raw, "expected \"auto\" or a fraction in (0, 0.5]");
                Contamination::Fraction(0.05)
            }
        }
    }

    pub(super) fn url(&mut self, name: &str) -> Option<String> {
        let raw = self.text(name)?.to_owned();
        match reqwest::Url::parse(&raw) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
                Some(raw)
            }
            // The URL is a secret: name the variable, never echo the value.
            _ => {
                self.problems.push(format!(
                    "{name}: expected an http:// or https:// URL (value not shown)"
                ));
                None
            }
        }
    }

    /// A PostgreSQL URL (`postgres://` or `postgresql://`, with a host); `None` when unset or
    /// empty (the embedded SQLite database). It holds a password: a problem never shows it.
    pub(super) fn database_url(&mut self, name: &str) -> Option<String> {
        let raw = self.text(name)?.trim().to_owned();
        if raw.is_empty() {
            return None;
        }
        let why = if !(raw.starts_with("postgres://") || raw.starts_with("postgresql://")) {
            "expected postgres://user:password@host:5432/database (unset for the embedded SQLite \
             database)"
        } else {
            let (url, _) = crate::store::postgres::certificate_check(&raw);
            match url.parse::<tokio_postgres::Config>() {
                Ok(config) if !config.get_hosts().is_empty() => return Some(raw),
                Ok(_) => "the URL names no host",
                Err(_) => "not a valid PostgreSQL URL",
            }
        };
        self.problems
            .push(format!("{name}: {why} (value not shown)"));
        None
    }

    /// `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`).
    pub(super) fn flag(&mut self, name: &str, default: bool) -> bool {
        self.choice(
            name,
            default,
            &[
                ("true", true),
                ("false", false),
                ("1", true),
                ("0", false),
                ("yes", true),
                ("no", false),
                ("on", true),
                ("off", false),
            ],
        )
    }

    /// A bearer token: at least [`MIN_TOKEN_CHARS`] visible ASCII characters, no spaces (it travels
    /// in an `Authorization` header). The value is a secret: a problem names the variable and what
    /// is wrong, never the value.
    pub(super) fn token(&mut self, name: &str) -> Option<String> {
        let raw = self.text(name)?.to_owned();
        let why = if !raw.bytes().all(|b| b.is_ascii_graphic()) {
            "expected visible ASCII characters only, no spaces or control characters"
        } else if raw.len() < MIN_TOKEN_CHARS {
            "too short to resist guessing: use at least 16 characters, e.g. `openssl rand -hex 32`"
        } else {
            return Some(raw);
        };
        self.problems
            .push(format!("{name}: {why} (value not shown)"));
        None
    }

    /// A comma-separated list of non-empty items, each checked by `check` (which says what is
    /// wrong with one); `None` when unset.
    pub(super) fn list(
        &mut self,
        name: &str,
        check: fn(&str) -> Result<(), String>,
    ) -> Option<Vec<String>> {
        let raw = self.text(name)?.to_owned();
        let mut items = Vec::new();
        for item in raw
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
        {
            match check(item) {
                Ok(()) => items.push(item.to_owned()),
                Err(why) => self.problem(name, &raw, format!("{item:?}: {why}")),
            }
        }
        Some(items)
    }

    pub(super) fn json_object(&mut self, name: &str) -> Option<serde_json::Map<String, Value>> {
        let raw = self.text(name)?.to_owned();
        match serde_json::from_str::<Value>(&raw) {
            Ok(Value::Object(map)) => Some(map),
            Ok(_) => {
                self.problem(name, &raw, "expected a JSON object");
                None
            }
            Err(error) => {
                self.problem(name, &raw, format!("invalid JSON: {error}"));
                None
            }
        }
    }

    pub(super) fn alert_conditions(&mut self, name: &str) -> RuleSet {
        let Some(map) = self.json_object(name) else {
            return RuleSet::default();
        };
        let mut user = BTreeMap::new();
        for (service, rules) in map {
            let Value::Object(rules) = rules else {
                self.problems.push(format!(
                    "{name}: rules of {service:?} must be an object of feature: threshold"
                ));
                continue;
            };
            let mut thresholds = Thresholds::new();
            for (feature, threshold) in rules {
                match threshold.as_f64().filter(|t| t.is_finite()) {
                    Some(t) => {
                        thresholds.insert(feature, t);
                    }
                    None => self.problems.push(format!(
                        "{name}: threshold of {service}.{feature} must be a number, got {threshold}"
                    )),
                }
            }
            user.insert(service, thresholds);
        }
        RuleSet::with_user_rules(user)
    }

    pub(super) fn complex_alert_rules(&mut self, name: &str, volume: VolumeTest) -> RateRules {
        let Some(map) = self.json_object(name) else {
            return RateRules::with_user_rules(BTreeMap::new(), volume);
        };
        let mut user = BTreeMap::new();
        for (service, rule) in map {
            let Value::Object(rule) = rule else {
                self.problems.push(format!(
                    "{name}: rule of {service:?} must be an object with count and window_seconds"
                ));
                continue;
            };
            let mut partial = PartialRateRule::default();
            for (key, value) in rule {
                match key.as_str() {
                    "count" => match value.as_u64().filter(|c| (1..=1_000_000).contains(c)) {
                        Some(count) => partial.count = u32::try_from(count).ok(),
                        None => self.problems.push(format!(
                            "{name}: {service}.count must be a whole number from 1 to 1000000, got {value}"
                        )),
                    },
                    "window_seconds" => {
                        match value.as_f64().filter(|s| s.is_finite() && *s > 0.0 && *s <= 1e7) {
                            Some(seconds) => partial.window = Some(Duration::from_secs_f64(seconds)),
                            None => self.problems.push(format!(
                                "{name}: {service}.window_seconds must be a positive number of seconds, got {value}"
                            )),
                        }
                    }
                    "pure_count" => match value.as_bool() {
                        Some(pure) => partial.pure_count = Some(pure),
                        None => self.problems.push(format!(
                            "{name}: {service}.pure_count must be true or false, got {value}"
                        )),
                    },
                    key @ ("max_probability" | "min_ratio" | "rule_share") => {
                        let (range, slot) = match key {
                            "max_probability" => (PROBABILITY, &mut partial.max_probability),
                            "min_ratio" => (RATIO, &mut partial.min_ratio),
                            _ => (SHARE, &mut partial.rule_share),
                        };
                        match value.as_f64().filter(|v| (range.accepts)(*v)) {
                            Some(number) => *slot = Some(number),
                            None => self.problems.push(format!(
                                "{name}: {service}.{key}: {}, got {value}",
                                range.expected
                            )),
                        }
                    }
                    other => self.problems.push(format!(
                        "{name}: {service} has unknown key {other:?} (expected count, window_seconds, \
                         pure_count, max_probability, min_ratio, rule_share)"
                    )),
                }
            }
            user.insert(service, partial);
        }
        RateRules::with_user_rules(user, volume)
    }
}

/// What a numeric setting accepts, and the words that say so when it does not.
#[derive(Clone, Copy)]
pub(super) struct NumberRange {
    accepts: fn(f64) -> bool,
    expected: &'static str,
}

pub(super) const BUDGET: NumberRange = NumberRange {
    accepts: |v| v > 0.0 && v <= 0.1,
    expected: "expected a share of normal logs in (0, 0.1], e.g. 0.001",
};
pub(super) const PROBABILITY: NumberRange = NumberRange {
    accepts: |v| v > 0.0 && v <= 1.0,
    expected: "expected a probability in (0, 1], e.g. 0.001",
};
pub(super) const RATIO: NumberRange = NumberRange {
    accepts: |v| (1.0..=1e6).contains(&v),
    expected: "expected a ratio from 1 to 1000000, e.g. 2",
};
pub(super) const SHARE: NumberRange = NumberRange {
    accepts: |v| (0.0..=1.0).contains(&v),
    expected: "expected a share of logs from 0 to 1, e.g. 0.001",
};
