//! `format_type: "json"`: a JSON object, flattened to dotted names (`{"db":{"ms":3}}` gives `db.ms`).
//!
//! The object is never built as a `serde_json::Value`: a visitor walks it and hands each leaf straight to
//! the [`LogBuilder`], with the dotted name kept in one reused buffer. That saves a map and a string per
//! field, which is most of the cost of a small log. Strings without escapes are borrowed from the input.
//!
//! What the values become is decided in [`super::fields`]. Arrays are not features (their length and order
//! vary from log to log); each is kept as one attribute holding its compact JSON. `null` is dropped.
//! Nesting deeper than serde_json's limit of 128 is an error, not a stack overflow.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::fields::{FieldLimits, LogBuilder, Number};
use super::{ParseError, ParsedLog};

/// Parses a JSON object log with the default [`FieldLimits`].
///
/// # Errors
///
/// [`ParseError::InvalidJson`] when `raw` is not JSON, [`ParseError::NotAnObject`] when it is JSON but
/// not an object.
pub fn parse_json(raw: &str) -> Result<ParsedLog, ParseError> {
    parse_json_within(raw, &FieldLimits::default())
}

/// Parses a JSON object log, keeping what `limits` allow.
///
/// # Errors
///
/// As [`parse_json`].
pub fn parse_json_within(raw: &str, limits: &FieldLimits) -> Result<ParsedLog, ParseError> {
    if !raw.trim_ascii_start().starts_with('{') {
        return Err(match serde_json::from_str::<IgnoredAny>(raw) {
            Ok(IgnoredAny) => ParseError::NotAnObject {
                found: json_kind(raw),
            },
            Err(error) => ParseError::InvalidJson(error),
        });
    }
    let mut builder = LogBuilder::new(limits);
    let mut path = String::with_capacity(64);
    let mut deserializer = serde_json::Deserializer::from_str(raw);
    Leaf {
        builder: &mut builder,
        path: &mut path,
        root: true,
        nested: false,
    }
    .deserialize(&mut deserializer)
    .and_then(|()| deserializer.end())
    .map_err(ParseError::InvalidJson)?;
    Ok(builder.finish())
}

/// Names the kind of a valid JSON text that is not an object, for the error message.
fn json_kind(raw: &str) -> &'static str {
    match raw.trim_ascii_start().as_bytes().first() {
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

/// One value at `path`: a leaf goes to the builder, an object is walked with `path` as its prefix.
struct Leaf<'a> {
    builder: &'a mut LogBuilder,
    path: &'a mut String,
    /// Whether this is the log's own object, whose fields are the top level.
    root: bool,
    /// Whether `path` is inside a nested object; only top-level names are the log's timestamp, level and
    /// message.
    nested: bool,
}

impl<'de> DeserializeSeed<'de> for Leaf<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Leaf<'_> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<(), E> {
        self.builder.boolean(self.path, self.nested, value);
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<(), E> {
        self.builder
            .number(self.path, self.nested, Number::Signed(value));
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<(), E> {
        self.builder
            .number(self.path, self.nested, Number::Unsigned(value));
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<(), E> {
        self.builder
            .number(self.path, self.nested, Number::Float(value));
        Ok(())
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<(), E> {
        self.builder.text(self.path, self.nested, value);
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<serde_json::Value>()? {
            items.push(item);
        }
        self.builder
            .opaque(self.path, serde_json::Value::Array(items).to_string());
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        // The log object's own fields are the top level; anything below one of them is nested.
        let nested = !self.root;
        let prefix_len = self.path.len();
        while map
            .next_key_seed(Key {
                path: &mut *self.path,
            })?
            .is_some()
        {
            map.next_value_seed(Leaf {
                builder: &mut *self.builder,
                path: &mut *self.path,
                root: false,
                nested,
            })?;
            self.path.truncate(prefix_len);
        }
        Ok(())
    }
}

/// A field name, appended to `path` (after a `.` when there is a prefix).
struct Key<'a> {
    path: &'a mut String,
}

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for Key<'_> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<(), E> {
        if !self.path.is_empty() {
            self.path.push('.');
        }
        self.path.push_str(key);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> ParsedLog {
        parse_json(raw).unwrap_or_else(|error| panic!("{raw}: {error}"))
    }

    #[test]
    fn the_contract_web_log_is_read() {
        let log = parse(
            r#"{"timestamp":"2024-01-15T10:00:00Z","level":"INFO","message":"GET /api/users",
                "response_time":2500.0,"error_rate":0,"request_id":"req-123"}"#,
        );
        assert_eq!(
            log.timestamp.map(|t| t.to_rfc3339()),
            Some("2024-01-15T10:00:00+00:00".to_owned())
        );
        assert_eq!(log.level.as_deref(), Some("INFO"));
        assert_eq!(log.message.as_deref(), Some("GET /api/users"));
        let features: Vec<_> = log.features.iter().collect();
        assert_eq!(features, [("error_rate", 0.0), ("response_time", 2500.0)]);
        assert_eq!(log.attributes.len(), 1);
        assert_eq!(log.attributes["request_id"], "req-123");
    }

    #[test]
    fn nested_objects_flatten_to_dotted_names() {
        let log = parse(r#"{"a":{"b":{"c":1}},"db":{"query":"1.5s","host":"db-1"},"x":{}}"#);
        assert_eq!(log.features.get("a.b.c"), Some(1.0));
        assert_eq!(log.features.get("db.query"), Some(1500.0));
        assert_eq!(log.attributes["db.host"], "db-1");
        assert_eq!(log.features.len(), 2);
    }

    #[test]
    fn only_top_level_names_fill_timestamp_level_and_message() {
        let log =
            parse(r#"{"http":{"level":3,"message":"ok","timestamp":"2024-01-15T10:00:00Z"}}"#);
        assert_eq!(log.timestamp, None);
        assert_eq!(log.level, None);
        assert_eq!(log.message, None);
        assert_eq!(log.features.get("http.level"), Some(3.0));
        assert_eq!(log.attributes["http.message"], "ok");
        assert_eq!(log.attributes["http.timestamp"], "2024-01-15T10:00:00Z");
    }

    #[test]
    fn strings_with_units_are_features_and_other_text_is_not() {
        let log = parse(
            r#"{"latency":"500ms","cpu":"93%","heap":"2KiB","version":"1.2.3","when":"2024-01-15"}"#,
        );
        assert_eq!(log.features.get("latency"), Some(500.0));
        assert_eq!(log.features.get("cpu"), Some(93.0));
        assert_eq!(log.features.get("heap"), Some(2048.0));
        assert_eq!(log.attributes["version"], "1.2.3");
        assert_eq!(log.attributes["when"], "2024-01-15");
    }

    #[test]
    fn booleans_are_one_and_zero_and_null_is_dropped() {
        let log = parse(r#"{"cache_hit":true,"retried":false,"parent":null}"#);
        assert_eq!(log.features.get("cache_hit"), Some(1.0));
        assert_eq!(log.features.get("retried"), Some(0.0));
        assert_eq!(log.features.len(), 2);
        assert!(log.attributes.is_empty());
    }

    #[test]
    fn arrays_are_kept_as_compact_json_attributes() {
        let log = parse(r#"{"tags":["a", 1, {"b": null}], "sizes": [1, 2]}"#);
        assert!(log.features.is_empty());
        assert_eq!(log.attributes["tags"], r#"["a",1,{"b":null}]"#);
        assert_eq!(log.attributes["sizes"], "[1,2]");
    }

    #[test]
    fn escaped_keys_and_values_are_unescaped() {
        let log = parse(r#"{"a\"b":"x\ny","t\u0069me_ms":"5"}"#);
        assert_eq!(log.attributes["a\"b"], "x\ny");
        assert_eq!(log.features.get("time_ms"), Some(5.0));
    }

    #[test]
    fn a_repeated_name_keeps_its_last_value() {
        let log = parse(r#"{"n":1,"n":2,"a":{"b":1},"a.b":3}"#);
        assert_eq!(log.features.get("n"), Some(2.0));
        assert_eq!(log.features.get("a.b"), Some(3.0));
        assert_eq!(log.features.len(), 2);
    }

    #[test]
    fn epoch_timestamps_are_read() {
        let log = parse(r#"{"ts":1705312800123,"level":30}"#);
        assert_eq!(
            log.timestamp.map(|t| t.timestamp_millis()),
            Some(1_705_312_800_123)
        );
        assert_eq!(log.level.as_deref(), Some("info"));
        assert!(log.features.is_empty());
    }

    #[test]
    fn broken_json_is_an_error_that_says_so() {
        let error = parse_json("{not json").expect_err("not JSON");
        assert!(matches!(error, ParseError::InvalidJson(_)));
        assert!(
            error.to_string().starts_with("raw_log is not valid JSON: "),
            "{error}"
        );
        for raw in [
            "",
            "   ",
            "{",
            r#"{"a":1"#,
            r#"{"a":1} x"#,
            r#"{"a":1e999}"#,
        ] {
            assert!(
                matches!(parse_json(raw), Err(ParseError::InvalidJson(_))),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn json_that_is_not_an_object_is_an_error_naming_what_it_is() {
        for (raw, kind) in [
            ("[1,2]", "an array"),
            (r#""text""#, "a string"),
            ("42", "a number"),
            ("-1", "a number"),
            ("true", "a boolean"),
            (" null", "null"),
        ] {
            let error = parse_json(raw).expect_err("not an object");
            assert!(
                matches!(error, ParseError::NotAnObject { found } if found == kind),
                "{raw}: {error}"
            );
        }
    }

    #[test]
    fn nesting_beyond_the_limit_is_an_error_not_a_crash() {
        let raw = format!("{}1{}", r#"{"a":"#.repeat(10_000), "}".repeat(10_000));
        assert!(matches!(parse_json(&raw), Err(ParseError::InvalidJson(_))));
        let raw = format!(r#"{{"a":{}1{}}}"#, "[".repeat(10_000), "]".repeat(10_000));
        assert!(matches!(parse_json(&raw), Err(ParseError::InvalidJson(_))));
    }
}
