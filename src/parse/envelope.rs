//! What a protocol carries beside the log text: an OTLP record's time, severity, attributes and
//! ids. The front door (`api/otlp`) fills an [`Envelope`] and puts it on the [`super::RawLog`];
//! the parser reads the text as usual, then [`Envelope::apply`] adds the record's fields with the
//! same rules as a JSON log's (`fields.rs`): a number is a feature, text with a unit is a
//! converted feature, an identifier or any other text is an attribute.
//!
//! The order, written down in `docs/otlp.md`:
//! - the record's attributes come after the body's fields, so on a repeated name the attribute
//!   wins (a repeated name keeps its last value, as in a JSON object);
//! - the record's time wins over a timestamp in the body; the observed time is used only when
//!   neither the record nor the body has one;
//! - the record's severity wins over a level in the body.
//!
//! Attributes are read as nested fields: one named `message` or `timestamp` never becomes the
//! log's message or time, only the record's own fields do.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::ParsedLog;
use super::fields::{FieldLimits, LogBuilder, Number};

/// A protocol's record fields for one log.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Envelope {
    /// When the event happened, by the record.
    pub time: Option<DateTime<Utc>>,
    /// When the record was observed by the collection system; the log's time only when nothing
    /// better is known.
    pub observed_time: Option<DateTime<Utc>>,
    /// The record's severity, as text.
    pub level: Option<String>,
    /// Named values to classify like a JSON log's fields, in order.
    pub fields: Vec<(String, FieldValue)>,
    /// Kept with the log's anomaly record (in its `metadata`), never judged: trace and span ids,
    /// the resource's attributes, the instrumentation scope.
    pub metadata: Map<String, Value>,
}

/// One named value of an [`Envelope`], typed as the protocol typed it.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    Text(String),
    Integer(i64),
    Float(f64),
    Boolean(bool),
    /// Kept as an attribute, whatever its text looks like (arrays, bytes, call sites).
    Opaque(String),
}

impl Envelope {
    /// Adds the record's fields, time and severity to a log parsed from its text.
    pub(super) fn apply(&self, log: ParsedLog, limits: &FieldLimits) -> ParsedLog {
        let mut builder = LogBuilder::resume(log, limits);
        for (name, value) in &self.fields {
            match value {
                FieldValue::Text(text) => builder.text(name, true, text),
                FieldValue::Integer(number) => {
                    builder.number(name, true, Number::Signed(*number));
                }
                FieldValue::Float(number) if number.is_finite() => {
                    builder.number(name, true, Number::Float(*number));
                }
                // NaN and infinities are no measurement a model can compare.
                FieldValue::Float(number) => builder.opaque(name, number.to_string()),
                FieldValue::Boolean(flag) => builder.boolean(name, true, *flag),
                FieldValue::Opaque(text) => builder.opaque(name, text.clone()),
            }
        }
        if let Some(time) = self.time {
            builder.set_timestamp(time);
        } else if !builder.has_timestamp()
            && let Some(time) = self.observed_time
        {
            builder.set_timestamp(time);
        }
        if let Some(level) = &self.level {
            builder.set_level(level);
        }
        builder.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{parse_json, parse_key_value};

    fn at(seconds: i64) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp(seconds, 0)
    }

    fn apply(envelope: &Envelope, log: ParsedLog) -> ParsedLog {
        envelope.apply(log, &FieldLimits::default())
    }

    #[test]
    fn attributes_are_classified_like_json_fields() {
        let envelope = Envelope {
            fields: vec![
                ("response_time".into(), FieldValue::Integer(2500)),
                ("latency".into(), FieldValue::Text("1.5s".into())),
                ("ratio".into(), FieldValue::Float(0.25)),
                ("cache_hit".into(), FieldValue::Boolean(true)),
                ("http.route".into(), FieldValue::Text("/checkout".into())),
                ("user_id".into(), FieldValue::Integer(42)),
                ("tags".into(), FieldValue::Opaque(r#"["a","b"]"#.into())),
                ("weird".into(), FieldValue::Float(f64::NAN)),
            ],
            ..Envelope::default()
        };
        let log = apply(&envelope, parse_key_value("request served"));
        assert_eq!(log.message.as_deref(), Some("request served"));
        assert_eq!(log.features.get("response_time"), Some(2500.0));
        assert_eq!(log.features.get("latency"), Some(1500.0));
        assert_eq!(log.features.get("ratio"), Some(0.25));
        assert_eq!(log.features.get("cache_hit"), Some(1.0));
        assert_eq!(log.attributes["http.route"], "/checkout");
        assert_eq!(log.attributes["user_id"], "42");
        assert_eq!(log.attributes["tags"], r#"["a","b"]"#);
        assert_eq!(log.attributes["weird"], "NaN");
        assert_eq!(log.features.get("weird"), None);
    }

    #[test]
    fn an_attribute_wins_over_the_body_field_of_the_same_name() {
        let envelope = Envelope {
            fields: vec![("cpu_usage".into(), FieldValue::Float(97.0))],
            ..Envelope::default()
        };
        let log = apply(
            &envelope,
            parse_json(r#"{"cpu_usage": 10, "memory_usage": 20}"#).expect("json"),
        );
        assert_eq!(log.features.get("cpu_usage"), Some(97.0));
        assert_eq!(log.features.get("memory_usage"), Some(20.0));
        assert_eq!(log.features.len(), 2);
    }

    #[test]
    fn attributes_never_become_the_message_time_or_level() {
        let envelope = Envelope {
            fields: vec![
                (
                    "message".into(),
                    FieldValue::Text("from an attribute".into()),
                ),
                ("level".into(), FieldValue::Text("ERROR".into())),
                (
                    "timestamp".into(),
                    FieldValue::Text("2024-01-15T10:00:00Z".into()),
                ),
            ],
            ..Envelope::default()
        };
        let log = apply(&envelope, parse_key_value("the body"));
        assert_eq!(log.message.as_deref(), Some("the body"));
        assert_eq!(log.level, None);
        assert_eq!(log.timestamp, None);
        assert_eq!(log.attributes["message"], "from an attribute");
        assert_eq!(log.attributes["timestamp"], "2024-01-15T10:00:00Z");
    }

    #[test]
    fn the_record_time_wins_then_the_body_then_the_observed_time() {
        let body = || parse_key_value("2024-01-15T10:00:00Z INFO started");
        let record = Envelope {
            time: at(1_800_000_000),
            observed_time: at(1_900_000_000),
            ..Envelope::default()
        };
        assert_eq!(apply(&record, body()).timestamp, at(1_800_000_000));
        let observed_only = Envelope {
            observed_time: at(1_900_000_000),
            ..Envelope::default()
        };
        assert_eq!(apply(&observed_only, body()).timestamp, at(1_705_312_800));
        assert_eq!(
            apply(&observed_only, parse_key_value("started")).timestamp,
            at(1_900_000_000)
        );
    }

    #[test]
    fn the_record_severity_wins_over_the_body_level() {
        let envelope = Envelope {
            level: Some("ERROR".into()),
            ..Envelope::default()
        };
        let log = apply(&envelope, parse_key_value("INFO all is well"));
        assert_eq!(log.level.as_deref(), Some("ERROR"));
        let log = apply(&Envelope::default(), parse_key_value("WARN careful"));
        assert_eq!(log.level.as_deref(), Some("WARN"));
    }

    #[test]
    fn the_field_limit_counts_what_the_body_holds() {
        let limits = FieldLimits {
            max_fields: 2,
            ..FieldLimits::default()
        };
        let envelope = Envelope {
            fields: vec![
                ("b".into(), FieldValue::Integer(2)),
                ("c".into(), FieldValue::Integer(3)),
            ],
            ..Envelope::default()
        };
        let log = envelope.apply(parse_key_value("a=1"), &limits);
        assert_eq!(log.features.len(), 2);
        assert_eq!(log.dropped_fields, 1);
    }
}
