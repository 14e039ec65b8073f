//! Parsing, the first stage of the flow: a [`RawLog`] off the wire becomes a [`ParsedLog`] with a
//! timestamp, level, message, numeric [`Features`] for detection, and text attributes.
//!
//! Pure functions, no I/O. Each format has its file: `json.rs`, `key_value.rs`, `regex.rs` (whose
//! compiled patterns [`Parser`] caches); `fields.rs` decides what each named value becomes, [`value`]
//! reads numbers with units and [`timestamp`] reads times (`docs/units.md` has the rules for users).
//! `custom` was never implemented by the original and is a per-log error here (CONTRACT "Log formats").
//!
//! A log that does not parse is data, not a failure of the request: [`Parser::parse`] returns a
//! [`ParseError`] whose message goes into that log's `error` field. No input makes it panic; the
//! property tests in `tests.rs` throw arbitrary text, JSON and patterns at it.

use std::cell::RefCell;
use std::collections::BTreeMap;

use foldhash::{HashMap, HashMapExt};
use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Utc};
use serde::de::Error as _;
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;

mod envelope;
mod fields;
mod json;
mod key_value;
mod regex;
pub mod timestamp;
pub mod value;

pub use self::envelope::{Envelope, FieldValue};
pub use self::fields::{DEFAULT_MAX_FEATURES_PER_LOG, DEFAULT_MAX_FIELD_NAME_CHARS, FieldLimits};
pub use self::json::{parse_json, parse_json_within};
pub use self::key_value::{parse_key_value, parse_key_value_within};
pub use self::regex::{DEFAULT_REGEX_SIZE_LIMIT, PatternCache};

/// How a log's `raw_log` is written (the contract's `format_type`). It is read from its wire name
/// only: a derived `Deserialize` would also take serde's map form of a variant (`{"json": null}`),
/// which the contract (and the request checker) refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FormatType {
    Json,
    KeyValue,
    Regex,
    Custom,
    /// Ours (CONTRACT "RawLog"): the parser tells a JSON object, `key=value` pairs and a plain
    /// message apart ([`parse_auto`]), so mixed sources need not be labelled by the sender. OTLP
    /// record bodies are read this way too.
    Auto,
}

/// Every wire name of [`FormatType`], in declaration order.
const FORMAT_NAMES: [&str; 5] = ["json", "key_value", "regex", "custom", "auto"];

impl FormatType {
    /// The wire name: `"json"`, `"key_value"`, `"regex"` or `"custom"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            FormatType::Json => "json",
            FormatType::KeyValue => "key_value",
            FormatType::Regex => "regex",
            FormatType::Custom => "custom",
            FormatType::Auto => "auto",
        }
    }

    /// The format a wire name names, if any.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "json" => Some(FormatType::Json),
            "key_value" => Some(FormatType::KeyValue),
            "regex" => Some(FormatType::Regex),
            "custom" => Some(FormatType::Custom),
            "auto" => Some(FormatType::Auto),
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for FormatType {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct WireName;

        impl serde::de::Visitor<'_> for WireName {
            type Value = FormatType;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("'json', 'key_value', 'regex', 'custom' or 'auto'")
            }

            fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<FormatType, E> {
                FormatType::from_name(name).ok_or_else(|| E::unknown_variant(name, &FORMAT_NAMES))
            }
        }

        deserializer.deserialize_str(WireName)
    }
}

/// A `format_type` none of the five names.
#[derive(Debug, thiserror::Error)]
#[error("unknown format_type {0:?} (expected json, key_value, regex, custom or auto)")]
pub struct UnknownFormatType(String);

impl std::str::FromStr for FormatType {
    type Err = UnknownFormatType;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::from_name(name).ok_or_else(|| UnknownFormatType(name.to_owned()))
    }
}

/// The longest `service` and `source` a log may carry, in characters: names, not payloads (a
/// megabyte-long service name would be kept in every table, window and reservoir it reaches).
pub const MAX_NAME_CHARS: usize = 256;

/// One log as a client posts it (CONTRACT "RawLog").
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct RawLog {
    /// The log line or JSON document itself.
    pub raw_log: String,
    #[schema(max_length = 256)]
    pub service: String,
    #[schema(max_length = 256)]
    pub source: String,
    pub format_type: FormatType,
    /// For `regex`: `{"pattern": …, "field_mapping": {…}}`. Shared: every log of a batch (and of
    /// the batches after it) that spells the same config holds the same value, see [`shared_config`].
    #[serde(default, deserialize_with = "shared_config")]
    #[schema(value_type = Option<Object>)]
    pub custom_config: Option<Arc<CustomConfig>>,
    /// What a protocol carried beside the log text (an OTLP record's time, severity, attributes
    /// and ids); never read from or written to a REST body. `None` for REST logs.
    #[serde(skip)]
    pub envelope: Option<Box<Envelope>>,
}

impl RawLog {
    /// The first of `service` and `source` longer than [`MAX_NAME_CHARS`], with its length in
    /// characters.
    pub fn oversized_name(&self) -> Option<(&'static str, usize)> {
        [("service", &self.service), ("source", &self.source)]
            .into_iter()
            .map(|(field, text)| (field, text.chars().count()))
            .find(|(_, chars)| *chars > MAX_NAME_CHARS)
    }
}

/// A log's `custom_config`: the JSON value as sent and, once a regex log has used it, its pattern
/// compiled and its field mapping resolved (see `regex::PreparedRegex`). Logs that spell the same
/// config share one ([`shared_config`]), so that work is done once per distinct config rather
/// than once per log: looking the pattern up in the cache and resolving the mapping for every log
/// took more time than matching the line.
pub struct CustomConfig {
    value: serde_json::Value,
    regex: OnceLock<Option<Arc<regex::PreparedRegex>>>,
}

impl CustomConfig {
    pub fn new(value: serde_json::Value) -> Self {
        Self {
            value,
            regex: OnceLock::new(),
        }
    }

    /// The config as the client sent it.
    pub fn value(&self) -> &serde_json::Value {
        &self.value
    }

    pub fn into_value(self) -> serde_json::Value {
        self.value
    }
}

impl From<serde_json::Value> for CustomConfig {
    fn from(value: serde_json::Value) -> Self {
        Self::new(value)
    }
}

impl std::ops::Deref for CustomConfig {
    type Target = serde_json::Value;

    fn deref(&self) -> &serde_json::Value {
        &self.value
    }
}

impl Clone for CustomConfig {
    fn clone(&self) -> Self {
        Self::new(self.value.clone())
    }
}

impl PartialEq for CustomConfig {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

impl std::fmt::Debug for CustomConfig {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.value.fmt(formatter)
    }
}

impl Serialize for CustomConfig {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for CustomConfig {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        serde_json::Value::deserialize(deserializer).map(Self::new)
    }
}

/// Configs at most this long are remembered by [`shared_config`].
const SHARED_CONFIG_MAX_BYTES: usize = 4096;
/// Distinct configs remembered per thread; the memory is forgotten all at once when full. A
/// remembered regex config keeps its compiled pattern alive, so besides the `REGEX_CACHE_SIZE`
/// patterns of the shared cache, up to this many per thread may outlive their eviction there.
const SHARED_CONFIGS_PER_THREAD: usize = 64;

thread_local! {
    static SHARED_CONFIGS: RefCell<HashMap<Box<str>, Arc<CustomConfig>>> =
        RefCell::new(HashMap::new());
}

/// Reads a `custom_config` once per distinct spelling (per thread) and hands out the same value
/// after that. A regex client repeats one config on every log; building a fresh JSON tree for each
/// took about 7 % of a 100-log batch's time under perf, and as much again to free them.
///
/// # Errors
/// Whatever reading a JSON value would give.
pub fn shared_config<'de, D>(deserializer: D) -> Result<Option<Arc<CustomConfig>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let Some(raw) = Option::<Box<RawValue>>::deserialize(deserializer)? else {
        return Ok(None);
    };
    let text = raw.get();
    // Only an object fits the schema (a JSON `null` was read as `None` above); anything else is
    // refused here, as the request checker refuses it (422 `dict_type`), so a body gets the same
    // answer whichever path decodes it.
    let parse = || match serde_json::from_str::<serde_json::Value>(text) {
        Ok(value) if value.is_object() => Ok(CustomConfig::new(value)),
        Ok(_) => Err(D::Error::custom("custom_config must be an object")),
        Err(error) => Err(D::Error::custom(error)),
    };
    if text.len() > SHARED_CONFIG_MAX_BYTES {
        return parse().map(|value| Some(Arc::new(value)));
    }
    SHARED_CONFIGS.with_borrow_mut(|configs| {
        if let Some(value) = configs.get(text) {
            return Ok(Some(Arc::clone(value)));
        }
        let value = Arc::new(parse()?);
        if configs.len() >= SHARED_CONFIGS_PER_THREAD {
            configs.clear();
        }
        configs.insert(text.into(), Arc::clone(&value));
        Ok(Some(value))
    })
}

/// What a log says, once parsed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParsedLog {
    /// The log's own time, in UTC; `None` when it has none (the pipeline then uses the arrival time).
    pub timestamp: Option<DateTime<Utc>>,
    pub level: Option<String>,
    pub message: Option<String>,
    /// Numeric measurements, in base units (milliseconds, bytes), for rules and the model.
    pub features: Features,
    /// Every other field, as text: identifiers, hosts, paths, arrays as JSON.
    pub attributes: BTreeMap<String, String>,
    /// Fields ignored for `MAX_FEATURES_PER_LOG` or `MAX_FIELD_NAME_CHARS` ([`FieldLimits`]).
    #[serde(skip)]
    pub dropped_fields: u32,
}

/// A log's numeric features by name, sorted by name, each name once.
///
/// All names live in one string and the values in one vector, so a log's features cost two
/// allocations however many there are. Serializes as a JSON object.
#[derive(Debug, Clone, Default)]
pub struct Features {
    names: String,
    entries: Vec<Entry>,
}

/// Up to this many features, [`Features::get`] scans rather than bisects.
const LINEAR_LOOKUP_MAX: usize = 16;

#[derive(Debug, Clone, Copy)]
struct Entry {
    start: usize,
    end: usize,
    value: f64,
}

impl Features {
    /// No features.
    pub fn new() -> Self {
        Self::default()
    }

    /// No features yet, with room for a typical log's: growing from empty took several
    /// reallocations per log, a visible share of a 100-log batch's time under perf.
    pub fn with_typical_capacity() -> Self {
        Self {
            names: String::with_capacity(64),
            entries: Vec::with_capacity(8),
        }
    }

    /// The value of the feature `name`.
    pub fn get(&self, name: &str) -> Option<f64> {
        // Rules and models look up every log's features by name, several per log. A log has a
        // handful of features, and comparing lengths first skips most of them without touching
        // their bytes: a third cheaper than a binary search's ordered string comparisons.
        if self.entries.len() <= LINEAR_LOOKUP_MAX {
            return self
                .entries
                .iter()
                .find(|entry| entry.end - entry.start == name.len() && self.name(entry) == name)
                .map(|entry| entry.value);
        }
        self.entries
            .binary_search_by(|entry| self.name(entry).cmp(name))
            .ok()
            .map(|index| self.entries[index].value)
    }

    /// Every feature as `(name, value)`, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, f64)> + '_ {
        self.entries
            .iter()
            .map(|entry| (self.name(entry), entry.value))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn name(&self, entry: &Entry) -> &str {
        &self.names[entry.start..entry.end]
    }

    /// Adds a feature; [`Features::seal`] must run before the next lookup.
    fn push(&mut self, name: &str, value: f64) {
        let start = self.names.len();
        self.names.push_str(name);
        self.entries.push(Entry {
            start,
            end: self.names.len(),
            value,
        });
    }

    /// Sorts by name and keeps the last value of a repeated name, as a JSON object's reader would.
    fn seal(&mut self) {
        let names = &self.names;
        let name = |entry: &Entry| &names[entry.start..entry.end];
        if self
            .entries
            .windows(2)
            .all(|pair| name(&pair[0]) < name(&pair[1]))
        {
            return;
        }
        // Stable, so equal names stay in input order and the last one is the latest.
        self.entries.sort_by(|a, b| name(a).cmp(name(b)));
        self.entries.dedup_by(|later, kept| {
            let same = name(later) == name(kept);
            if same {
                kept.value = later.value;
            }
            same
        });
    }
}

impl PartialEq for Features {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl<S: AsRef<str>> FromIterator<(S, f64)> for Features {
    fn from_iter<I: IntoIterator<Item = (S, f64)>>(iter: I) -> Self {
        let mut features = Features::new();
        for (name, value) in iter {
            features.push(name.as_ref(), value);
        }
        features.seal();
        features
    }
}

impl Serialize for Features {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.len()))?;
        for (name, value) in self.iter() {
            map.serialize_entry(name, &value)?;
        }
        map.end()
    }
}

/// Why one log could not be parsed. The message is written for the client: it lands in that log's
/// `error` field.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("raw_log is not valid JSON: {0}")]
    InvalidJson(#[source] serde_json::Error),
    #[error("raw_log must be a JSON object, not {found}")]
    NotAnObject { found: &'static str },
    #[error("format_type 'regex' needs custom_config with a 'pattern'")]
    MissingPattern,
    #[error("custom_config is invalid: {0}")]
    InvalidConfig(&'static str),
    #[error("regex pattern does not compile: {0}")]
    BadPattern(Arc<str>),
    #[error(
        "regex pattern compiles to more than {limit} bytes, the size limit of one pattern \
         (REGEX_SIZE_LIMIT_BYTES); use fewer or shorter counted repetitions such as \\w{{20}}"
    )]
    PatternTooBig { limit: usize },
    #[error("field_mapping maps group {key} but the pattern has {}", count_groups(*groups))]
    MissingGroup { key: String, groups: usize },
    #[error("field_mapping names group '{name}' but the pattern has no group of that name")]
    UnknownGroupName { name: String },
    #[error("raw_log does not match the regex pattern")]
    NoMatch,
    #[error(
        "format_type 'custom' is not supported: the original service never implemented it; \
         send the log as 'json', 'key_value' or 'regex'"
    )]
    Unsupported,
}

fn count_groups(groups: usize) -> String {
    match groups {
        0 => "no groups".to_owned(),
        1 => "1 group".to_owned(),
        n => format!("{n} groups"),
    }
}

/// More distinct regex patterns in one request than `MAX_PATTERNS_PER_REQUEST`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{count} distinct regex patterns in one request; the limit is {limit} \
     (MAX_PATTERNS_PER_REQUEST). Send logs that share a pattern together, or split the batch."
)]
pub struct TooManyPatterns {
    pub count: usize,
    pub limit: usize,
}

/// Refuses a batch whose regex logs spell more than `limit` distinct patterns, before any of them
/// is compiled: each compiled pattern holds up to a megabyte while the batch is parsed.
///
/// # Errors
/// [`TooManyPatterns`] with the number of distinct patterns.
pub fn check_patterns<'a>(
    logs: impl IntoIterator<Item = &'a RawLog>,
    limit: usize,
) -> Result<(), TooManyPatterns> {
    let mut patterns: foldhash::HashSet<&str> = foldhash::HashSetExt::new();
    // Logs that spell one config share it (`shared_config`): a run of them costs a pointer
    // comparison, not a hash.
    let mut previous: Option<&Arc<CustomConfig>> = None;
    for log in logs {
        if log.format_type != FormatType::Regex {
            continue;
        }
        let Some(config) = log.custom_config.as_ref() else {
            continue;
        };
        if previous.is_some_and(|previous| Arc::ptr_eq(previous, config)) {
            continue;
        }
        previous = Some(config);
        if let Some(pattern) = regex::pattern_of(config) {
            patterns.insert(pattern);
        }
    }
    if patterns.len() > limit {
        return Err(TooManyPatterns {
            count: patterns.len(),
            limit,
        });
    }
    Ok(())
}

/// What the parser keeps and compiles (`MAX_FEATURES_PER_LOG`, `MAX_FIELD_NAME_CHARS`,
/// `REGEX_CACHE_SIZE`, `REGEX_SIZE_LIMIT_BYTES`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseLimits {
    pub fields: FieldLimits,
    /// Distinct compiled patterns kept.
    pub regex_cache_size: usize,
    /// The regex crate's `size_limit` for each pattern, in bytes.
    pub regex_size_limit: usize,
}

impl Default for ParseLimits {
    fn default() -> Self {
        Self {
            fields: FieldLimits::default(),
            regex_cache_size: 256,
            regex_size_limit: DEFAULT_REGEX_SIZE_LIMIT,
        }
    }
}

/// Parses logs of every format; one is shared by all request handlers and training jobs.
#[derive(Debug)]
pub struct Parser {
    patterns: PatternCache,
    fields: FieldLimits,
}

impl Parser {
    /// A parser that keeps up to `regex_cache_capacity` compiled patterns (at least one), with
    /// the default limits otherwise.
    pub fn new(regex_cache_capacity: usize) -> Self {
        Self::with_limits(ParseLimits {
            regex_cache_size: regex_cache_capacity,
            ..ParseLimits::default()
        })
    }

    /// A parser within `limits`.
    pub fn with_limits(limits: ParseLimits) -> Self {
        Self {
            patterns: PatternCache::with_size_limit(
                limits.regex_cache_size,
                limits.regex_size_limit,
            ),
            fields: limits.fields,
        }
    }

    /// Parses one log according to its `format_type`.
    ///
    /// # Errors
    ///
    /// A [`ParseError`] saying what is wrong with this log: JSON that is not a JSON object, a regex log
    /// without a usable pattern and mapping or that the pattern does not match, or `custom`.
    /// `key_value` never fails.
    pub fn parse(&self, log: &RawLog) -> Result<ParsedLog, ParseError> {
        self.parse_with(&mut &self.patterns, log)
    }

    /// What the parser keeps of each log.
    pub fn field_limits(&self) -> &FieldLimits {
        &self.fields
    }

    /// A parser for one batch: it compiles each distinct pattern of the batch at most once
    /// (see [`ParseBatch`]).
    pub fn batch(&self) -> ParseBatch<'_> {
        ParseBatch {
            parser: self,
            patterns: regex::BatchPatterns::new(&self.patterns),
        }
    }

    fn parse_with(
        &self,
        patterns: &mut impl regex::Patterns,
        log: &RawLog,
    ) -> Result<ParsedLog, ParseError> {
        let parsed = self.parse_text(patterns, log)?;
        Ok(match &log.envelope {
            None => parsed,
            Some(envelope) => envelope.apply(parsed, &self.fields),
        })
    }

    fn parse_text(
        &self,
        patterns: &mut impl regex::Patterns,
        log: &RawLog,
    ) -> Result<ParsedLog, ParseError> {
        match log.format_type {
            FormatType::Json => parse_json_within(&log.raw_log, &self.fields),
            FormatType::KeyValue => Ok(parse_key_value_within(&log.raw_log, &self.fields)),
            FormatType::Regex => regex::parse_regex(
                patterns,
                &log.raw_log,
                log.custom_config.as_deref(),
                &self.fields,
            ),
            FormatType::Custom => Err(ParseError::Unsupported),
            FormatType::Auto => Ok(parse_auto(&log.raw_log, &self.fields)),
        }
    }
}

/// `format_type: "auto"`: a JSON object is read as `json`; anything else, and text that begins
/// like an object but is not valid JSON, as `key_value`, whose parser reads `key=value` pairs
/// and makes a line without any a plain message (a leading timestamp and level word are still
/// recognised). Never fails. A log that names its format never comes here, so naming it costs
/// nothing.
pub fn parse_auto(raw: &str, limits: &FieldLimits) -> ParsedLog {
    if raw.trim_ascii_start().starts_with('{')
        && let Ok(log) = parse_json_within(raw, limits)
    {
        return log;
    }
    parse_key_value_within(raw, limits)
}

/// [`Parser::parse`] for the logs of one batch: the compiled patterns it uses stay shared by
/// spelling until the batch is done, so a pattern is compiled once per batch at most however
/// the shared cache churns. Check the batch with [`check_patterns`] first: it holds every
/// distinct pattern the batch spells.
pub struct ParseBatch<'a> {
    parser: &'a Parser,
    patterns: regex::BatchPatterns<'a>,
}

impl ParseBatch<'_> {
    /// Parses one log of the batch.
    ///
    /// # Errors
    /// As [`Parser::parse`].
    pub fn parse(&mut self, log: &RawLog) -> Result<ParsedLog, ParseError> {
        self.parser.parse_with(&mut self.patterns, log)
    }

    /// Distinct patterns the batch has compiled or looked up.
    #[cfg(test)]
    fn compiled_patterns(&self) -> usize {
        self.patterns.len()
    }
}

#[cfg(test)]
mod tests;
