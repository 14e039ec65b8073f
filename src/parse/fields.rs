//! Field classification, shared by every format: each named value a parser finds becomes the log's
//! timestamp, level or message, a numeric feature, or a text attribute.
//!
//! The rules (CONTRACT "Log formats" and "Do better"; `docs/units.md` has the user-facing version):
//!
//! - A top-level `timestamp`/`time`/`ts`/`@timestamp`/`datetime` is the log's time when it parses
//!   ([`super::timestamp`]); the first one that does wins. Such a field is never a feature, even when it does
//!   not parse: the original turned `"2024-…"` into the feature 2024.
//! - `level`/`severity`/`lvl`/`loglevel`/`log_level` is the level; `message`/`msg`/`@message` the message.
//!   A second one of either is kept as an attribute.
//! - Identifiers (`id`, `*_id`, `*-id`, `*.id`, `requestId`, `userID`, `uuid`, `guid`, `pid`, `tid`) are
//!   attributes whatever their value: a request number is not a measurement.
//! - A nested field named like a timestamp (`event.ts`) holding a time is an attribute; holding anything
//!   else (`db.time: 12`) it is an ordinary field.
//! - Otherwise numbers, and text that is a number with a unit ([`super::value`]), are features; booleans
//!   are features 1 and 0, as in the Python original where `True` is an `int`; null is dropped; all other
//!   text is an attribute.
//!
//! Names are matched ASCII case-insensitively.
//!
//! A log keeps at most `MAX_FEATURES_PER_LOG` features and as many attributes, the first ones in
//! the order the parser finds them, and no field whose name is longer than `MAX_FIELD_NAME_CHARS`:
//! the rest are ignored and counted ([`ParsedLog::dropped_fields`]), the log itself is judged on
//! what it kept. They are counted here, as they arrive, so the hot path pays one comparison per
//! field and a hostile log with ten thousand keys never holds more than the limit.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::timestamp::{from_epoch, parse_timestamp};
use super::value::parse_quantity;
use super::{Features, ParsedLog};

/// Names of the field holding the log's time.
pub const TIMESTAMP_KEYS: [&str; 5] = ["timestamp", "time", "ts", "@timestamp", "datetime"];
/// Names of the field holding the log's level.
pub const LEVEL_KEYS: [&str; 5] = ["level", "severity", "lvl", "loglevel", "log_level"];
/// Names of the field holding the log's message.
pub const MESSAGE_KEYS: [&str; 3] = ["message", "msg", "@message"];
/// Whole names that are identifiers.
const ID_KEYS: [&str; 6] = ["id", "uuid", "guid", "pid", "tid", "ppid"];
/// Name endings that make an identifier.
const ID_SUFFIXES: [&str; 6] = ["_id", "-id", ".id", "_uuid", "-uuid", ".uuid"];

fn is_one_of(name: &str, keys: &[&str]) -> bool {
    keys.iter().any(|key| key.eq_ignore_ascii_case(name))
}

fn ends_with_ignore_case(name: &str, suffix: &str) -> bool {
    name.len() >= suffix.len()
        && name.as_bytes()[name.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
}

/// `id`, `request_id`, `trace-id`, `user.id`, `requestId`, `userID`, `uuid`.
fn is_identifier(name: &str) -> bool {
    let bytes = name.as_bytes();
    if is_one_of(name, &ID_KEYS) || ID_SUFFIXES.iter().any(|s| ends_with_ignore_case(name, s)) {
        return true;
    }
    // camelCase: `requestId`, `userID`, but not `valid`, `paid` or `VOID`.
    match bytes {
        [.., before, b'I', b'd' | b'D'] => before.is_ascii_lowercase() || before.is_ascii_digit(),
        _ => false,
    }
}

fn last_segment(name: &str) -> &str {
    name.rsplit_once('.').map_or(name, |(_, last)| last)
}

/// What a field's name makes of it, before its value is looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Timestamp,
    Level,
    Message,
    Identifier,
    NestedTime,
    Other,
}

fn role(name: &str, nested: bool) -> Role {
    if !nested {
        if is_one_of(name, &TIMESTAMP_KEYS) {
            return Role::Timestamp;
        }
        if is_one_of(name, &LEVEL_KEYS) {
            return Role::Level;
        }
        if is_one_of(name, &MESSAGE_KEYS) {
            return Role::Message;
        }
    }
    if is_identifier(name) {
        return Role::Identifier;
    }
    if is_one_of(last_segment(name), &TIMESTAMP_KEYS) {
        return Role::NestedTime;
    }
    Role::Other
}

/// A JSON number, kept as it came so identifiers keep every digit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    Unsigned(u64),
    Signed(i64),
    Float(f64),
}

impl Number {
    fn to_f64(self) -> f64 {
        match self {
            Number::Unsigned(n) => n as f64,
            Number::Signed(n) => n as f64,
            Number::Float(n) => n,
        }
    }

    fn to_text(self) -> String {
        match self {
            Number::Unsigned(n) => n.to_string(),
            Number::Signed(n) => n.to_string(),
            Number::Float(n) => n.to_string(),
        }
    }
}

/// Bunyan and pino write the level as a number; 30 is `info`.
fn numeric_level(number: Number) -> String {
    let name = match number {
        Number::Unsigned(10) | Number::Signed(10) => "trace",
        Number::Unsigned(20) | Number::Signed(20) => "debug",
        Number::Unsigned(30) | Number::Signed(30) => "info",
        Number::Unsigned(40) | Number::Signed(40) => "warn",
        Number::Unsigned(50) | Number::Signed(50) => "error",
        Number::Unsigned(60) | Number::Signed(60) => "fatal",
        _ => return number.to_text(),
    };
    name.to_owned()
}

/// The default of `MAX_FEATURES_PER_LOG`. Real logs carry a handful of numeric fields; a
/// flattened Kubernetes or cloud audit record a few dozen. Beyond this they are ignored.
pub const DEFAULT_MAX_FEATURES_PER_LOG: usize = 256;
/// The default of `MAX_FIELD_NAME_CHARS`: a dotted JSON path such as
/// `kubernetes.labels.app_kubernetes_io/managed-by` is under 64.
pub const DEFAULT_MAX_FIELD_NAME_CHARS: usize = 128;

/// How much of a log the parsers keep (`MAX_FEATURES_PER_LOG`, `MAX_FIELD_NAME_CHARS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldLimits {
    /// Features kept per log; attributes are held to the same number.
    pub max_fields: usize,
    /// The longest field name kept, in characters.
    pub max_name_chars: usize,
}

impl Default for FieldLimits {
    fn default() -> Self {
        Self {
            max_fields: DEFAULT_MAX_FEATURES_PER_LOG,
            max_name_chars: DEFAULT_MAX_FIELD_NAME_CHARS,
        }
    }
}

impl FieldLimits {
    /// Whether `name` is longer than [`FieldLimits::max_name_chars`] characters. The character
    /// count is only taken for names with more bytes than that, so short names cost a comparison.
    fn name_too_long(&self, name: &str) -> bool {
        name.len() > self.max_name_chars && name.chars().count() > self.max_name_chars
    }
}

/// Collects one log's fields as a parser finds them; [`LogBuilder::finish`] gives the [`ParsedLog`].
#[derive(Debug)]
pub struct LogBuilder {
    timestamp: Option<DateTime<Utc>>,
    level: Option<String>,
    message: Option<String>,
    bare_text: Option<String>,
    features: Features,
    attributes: BTreeMap<String, String>,
    limits: FieldLimits,
    /// Fields ignored for the limits.
    dropped: u32,
}

impl LogBuilder {
    pub fn new(limits: &FieldLimits) -> Self {
        Self {
            timestamp: None,
            level: None,
            message: None,
            bare_text: None,
            features: Features::with_typical_capacity(),
            attributes: BTreeMap::new(),
            limits: *limits,
            dropped: 0,
        }
    }

    /// A parsed log's fields again, to add more of them (a protocol's record fields, see
    /// [`super::Envelope`]); the limits count what the log already holds.
    pub fn resume(log: ParsedLog, limits: &FieldLimits) -> Self {
        Self {
            timestamp: log.timestamp,
            level: log.level,
            message: log.message,
            bare_text: None,
            features: log.features,
            attributes: log.attributes,
            limits: *limits,
            dropped: log.dropped_fields,
        }
    }

    pub fn has_timestamp(&self) -> bool {
        self.timestamp.is_some()
    }

    pub fn has_level(&self) -> bool {
        self.level.is_some()
    }

    pub fn set_timestamp(&mut self, timestamp: DateTime<Utc>) {
        self.timestamp = Some(timestamp);
    }

    pub fn set_level(&mut self, level: &str) {
        self.level = Some(level.to_owned());
    }

    fn attribute(&mut self, name: &str, value: String) {
        if self.attributes.len() >= self.limits.max_fields || self.limits.name_too_long(name) {
            self.dropped = self.dropped.saturating_add(1);
            return;
        }
        self.attributes.insert(name.to_owned(), value);
    }

    fn feature(&mut self, name: &str, value: f64) {
        if self.features.len() >= self.limits.max_fields || self.limits.name_too_long(name) {
            self.dropped = self.dropped.saturating_add(1);
            return;
        }
        self.features.push(name, value);
    }

    /// Text free of any field name: bare words of a key=value line. Becomes the message unless a
    /// message field says otherwise (see [`LogBuilder::finish`]).
    pub fn set_bare_text(&mut self, text: String) {
        self.bare_text = Some(text);
    }

    /// A typed text value (a JSON string).
    pub fn text(&mut self, name: &str, nested: bool, value: &str) {
        match role(name, nested) {
            Role::Timestamp => match parse_timestamp(value) {
                Some(time) if self.timestamp.is_none() => self.timestamp = Some(time),
                _ => self.attribute(name, value.to_owned()),
            },
            Role::Level if self.level.is_none() => self.level = Some(value.to_owned()),
            Role::Message if self.message.is_none() => self.message = Some(value.to_owned()),
            Role::Level | Role::Message | Role::Identifier => {
                self.attribute(name, value.to_owned());
            }
            Role::NestedTime if parse_timestamp(value).is_some() => {
                self.attribute(name, value.to_owned());
            }
            Role::NestedTime | Role::Other => match parse_quantity(value) {
                Some(number) => self.feature(name, number),
                None => self.attribute(name, value.to_owned()),
            },
        }
    }

    /// An untyped value (key=value, a regex group): `true`/`false` in any case are booleans, anything
    /// else is text.
    pub fn untyped(&mut self, name: &str, value: &str) {
        let boolean = if value.eq_ignore_ascii_case("true") {
            Some(true)
        } else if value.eq_ignore_ascii_case("false") {
            Some(false)
        } else {
            None
        };
        match boolean {
            // Only a plain field reads a boolean; `msg=TRUE` keeps its text as written.
            Some(flag) if matches!(role(name, false), Role::NestedTime | Role::Other) => {
                self.feature(name, if flag { 1.0 } else { 0.0 });
            }
            _ => self.text(name, false, value),
        }
    }

    /// A typed number (JSON).
    pub fn number(&mut self, name: &str, nested: bool, value: Number) {
        match role(name, nested) {
            Role::Timestamp => match from_epoch(value.to_f64()) {
                Some(time) if self.timestamp.is_none() => self.timestamp = Some(time),
                _ => self.attribute(name, value.to_text()),
            },
            Role::Level if self.level.is_none() => self.level = Some(numeric_level(value)),
            Role::Message if self.message.is_none() => self.message = Some(value.to_text()),
            Role::Level | Role::Message | Role::Identifier => self.attribute(name, value.to_text()),
            Role::NestedTime if from_epoch(value.to_f64()).is_some() => {
                self.attribute(name, value.to_text());
            }
            Role::NestedTime | Role::Other => self.feature(name, value.to_f64()),
        }
    }

    /// A typed boolean: a feature, 1 or 0, unless its name says it is something else.
    pub fn boolean(&mut self, name: &str, nested: bool, value: bool) {
        match role(name, nested) {
            Role::Message if self.message.is_none() => self.message = Some(value.to_string()),
            Role::Timestamp | Role::Level | Role::Message | Role::Identifier => {
                self.attribute(name, value.to_string());
            }
            Role::NestedTime | Role::Other => {
                self.feature(name, if value { 1.0 } else { 0.0 });
            }
        }
    }

    /// A value that is kept only as text (a JSON array, as compact JSON).
    pub fn opaque(&mut self, name: &str, text: String) {
        self.attribute(name, text);
    }

    pub fn finish(mut self) -> ParsedLog {
        if let Some(text) = self.bare_text {
            if self.message.is_none() {
                self.message = Some(text);
            } else {
                self.attributes.entry(BARE_TEXT.to_owned()).or_insert(text);
            }
        }
        self.features.seal();
        ParsedLog {
            timestamp: self.timestamp,
            level: self.level,
            message: self.message,
            features: self.features,
            attributes: self.attributes,
            dropped_fields: self.dropped,
        }
    }
}

/// The attribute holding a key=value line's bare words when the line also has a `msg` field.
pub const BARE_TEXT: &str = "text";

/// Level words a key=value line may begin with (after its timestamp), matched case-insensitively.
const LEVEL_WORDS: [&str; 17] = [
    "TRACE",
    "DEBUG",
    "INFO",
    "NOTICE",
    "WARN",
    "WARNING",
    "ERROR",
    "ERR",
    "CRITICAL",
    "CRIT",
    "FATAL",
    "ALERT",
    "EMERG",
    "EMERGENCY",
    "PANIC",
    "SEVERE",
    "FINE",
];

/// Reads a bare word as a level: `ERROR`, `[error]`, `WARN:`; returns the word without decoration.
pub fn level_word(word: &str) -> Option<&str> {
    let word = word.strip_suffix(':').unwrap_or(word);
    let word = word
        .strip_prefix('[')
        .and_then(|w| w.strip_suffix(']'))
        .unwrap_or(word);
    is_one_of(word, &LEVEL_WORDS).then_some(word)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finish(build: impl FnOnce(&mut LogBuilder)) -> ParsedLog {
        let mut builder = LogBuilder::new(&FieldLimits::default());
        build(&mut builder);
        builder.finish()
    }

    #[test]
    fn identifiers_are_recognised_by_name() {
        for name in [
            "id",
            "ID",
            "request_id",
            "trace-id",
            "user.id",
            "requestId",
            "userID",
            "uuid",
            "session_uuid",
            "pid",
            "span2Id",
        ] {
            assert!(is_identifier(name), "{name}");
        }
        for name in [
            "valid", "paid", "VOID", "android", "idle", "width", "identity",
        ] {
            assert!(!is_identifier(name), "{name}");
        }
    }

    #[test]
    fn the_well_known_names_fill_timestamp_level_and_message() {
        let log = finish(|b| {
            b.text("@timestamp", false, "2024-01-15T10:00:00Z");
            b.text("Severity", false, "WARN");
            b.text("msg", false, "disk nearly full");
        });
        assert_eq!(
            log.timestamp.map(|t| t.to_rfc3339()),
            Some("2024-01-15T10:00:00+00:00".to_owned())
        );
        assert_eq!(log.level.as_deref(), Some("WARN"));
        assert_eq!(log.message.as_deref(), Some("disk nearly full"));
        assert!(log.features.is_empty());
        assert!(log.attributes.is_empty());
    }

    #[test]
    fn a_timestamp_field_is_never_a_feature() {
        let log = finish(|b| {
            b.text("timestamp", false, "2024");
            b.number("time", false, Number::Unsigned(12));
        });
        assert_eq!(log.timestamp, None);
        assert!(log.features.is_empty());
        assert_eq!(log.attributes["timestamp"], "2024");
        assert_eq!(log.attributes["time"], "12");
    }

    #[test]
    fn the_first_timestamp_wins_and_the_second_is_kept() {
        let log = finish(|b| {
            b.number("ts", false, Number::Unsigned(1_705_312_800));
            b.text("time", false, "2030-01-01T00:00:00Z");
        });
        assert_eq!(log.timestamp.map(|t| t.timestamp()), Some(1_705_312_800));
        assert_eq!(log.attributes["time"], "2030-01-01T00:00:00Z");
    }

    #[test]
    fn nested_time_names_are_features_unless_they_hold_a_time() {
        let log = finish(|b| {
            b.number("db.time", true, Number::Unsigned(12));
            b.number("event.ts", true, Number::Unsigned(1_705_312_800));
            b.text("span.timestamp", true, "2024-01-15T10:00:00Z");
            b.text("job.timestamp", true, "15ms");
        });
        assert_eq!(log.features.get("db.time"), Some(12.0));
        assert_eq!(log.features.get("job.timestamp"), Some(15.0));
        assert_eq!(log.attributes["event.ts"], "1705312800");
        assert_eq!(log.attributes["span.timestamp"], "2024-01-15T10:00:00Z");
        assert_eq!(log.timestamp, None);
    }

    #[test]
    fn identifiers_keep_every_digit_as_text() {
        let log = finish(|b| {
            b.number("user_id", false, Number::Unsigned(u64::MAX));
            b.text("request_id", false, "12345");
        });
        assert!(log.features.is_empty());
        assert_eq!(log.attributes["user_id"], u64::MAX.to_string());
        assert_eq!(log.attributes["request_id"], "12345");
    }

    #[test]
    fn numbers_quantities_and_booleans_are_features() {
        let log = finish(|b| {
            b.number("bytes", false, Number::Signed(-3));
            b.number("ratio", false, Number::Float(0.25));
            b.text("latency", false, "1.5s");
            b.boolean("cache_hit", false, true);
            b.untyped("retried", "FALSE");
            b.text("host", false, "web-1");
        });
        assert_eq!(log.features.get("bytes"), Some(-3.0));
        assert_eq!(log.features.get("ratio"), Some(0.25));
        assert_eq!(log.features.get("latency"), Some(1500.0));
        assert_eq!(log.features.get("cache_hit"), Some(1.0));
        assert_eq!(log.features.get("retried"), Some(0.0));
        assert_eq!(log.attributes["host"], "web-1");
    }

    #[test]
    fn untyped_booleans_keep_their_text_outside_plain_fields() {
        let log = finish(|b| {
            b.untyped("msg", "TRUE");
            b.untyped("level", "false");
            b.untyped("ok", "True");
        });
        assert_eq!(log.message.as_deref(), Some("TRUE"));
        assert_eq!(log.level.as_deref(), Some("false"));
        assert_eq!(log.features.get("ok"), Some(1.0));
    }

    #[test]
    fn numeric_levels_follow_bunyan() {
        let log = finish(|b| b.number("level", false, Number::Unsigned(50)));
        assert_eq!(log.level.as_deref(), Some("error"));
        let log = finish(|b| b.number("level", false, Number::Unsigned(35)));
        assert_eq!(log.level.as_deref(), Some("35"));
    }

    #[test]
    fn bare_text_is_the_message_only_without_a_message_field() {
        let log = finish(|b| b.set_bare_text("connection refused".to_owned()));
        assert_eq!(log.message.as_deref(), Some("connection refused"));
        assert!(log.attributes.is_empty());
        let log = finish(|b| {
            b.set_bare_text("connection refused".to_owned());
            b.text("msg", false, "db down");
        });
        assert_eq!(log.message.as_deref(), Some("db down"));
        assert_eq!(log.attributes[BARE_TEXT], "connection refused");
    }

    #[test]
    fn level_words_may_be_bracketed_or_followed_by_a_colon() {
        assert_eq!(level_word("ERROR"), Some("ERROR"));
        assert_eq!(level_word("[warn]"), Some("warn"));
        assert_eq!(level_word("INFO:"), Some("INFO"));
        assert_eq!(level_word("[ERROR]:"), Some("ERROR"));
        assert_eq!(level_word("ERRORS"), None);
        assert_eq!(level_word("[]"), None);
    }
}
