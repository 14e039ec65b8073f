//! `format_type: "regex"`: the log's `custom_config` names a pattern and what its groups are.
//!
//! The contract's shape is `{"pattern": "...", "field_mapping": {"0": "timestamp", "1": "level", …}}`:
//! capture group `i`, counted from 0 over the groups (so `"0"` is the regex crate's group 1), is named
//! `field_mapping["i"]`. I also accept a group's name as a key (`{"ts": "timestamp"}` for `(?P<ts>…)`),
//! and a named group that the mapping leaves out is named by its own name; an unnamed, unmapped group is
//! ignored. A `null` mapping value ignores that group.
//!
//! The pattern is searched for anywhere in the line (like Python's `re.search`); a line it does not match
//! is a per-log error, as are a missing or uncompilable pattern and a mapping that names a group the
//! pattern does not have. The mapping is checked before the line is matched, so a bad mapping is reported
//! on every log, matching or not. Group values are untyped text, classified by [`super::fields`].
//!
//! Each distinct pattern is compiled once into a [`PatternCache`] shared by all threads; failures are
//! cached too, so a client resending a bad pattern costs a lookup, not a compile. Each distinct
//! `custom_config` is resolved once into a [`PreparedRegex`] (pattern and group names) that every log
//! spelling that config shares.
//!
//! A pattern written in ASCII is also compiled without Unicode classes, and a line that is ASCII is
//! matched with that one. On ASCII text the two find the same match and the same groups (`\d`, `\w`,
//! `\s`, `\b` and case folding only differ on non-ASCII characters, which neither the line nor the
//! pattern has; a pattern using `\p{…}` does not compile without Unicode and keeps the Unicode one),
//! and the ASCII one is about twice as fast: without Unicode classes the regex crate can extract the
//! groups with its one-pass engine instead of backtracking. The property test
//! `ascii_and_unicode_matching_agree_on_ascii_lines` holds the two to the same answers.

use foldhash::{HashMap, HashMapExt};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use ::regex::bytes::{Regex as BytesRegex, RegexBuilder as BytesRegexBuilder};
use ::regex::{Regex, RegexBuilder};
use serde_json::Value;

use super::fields::{FieldLimits, LogBuilder};
use super::{CustomConfig, ParseError, ParsedLog};

/// The `custom_config` key holding the pattern.
pub const PATTERN: &str = "pattern";
/// The `custom_config` key holding the group names.
pub const FIELD_MAPPING: &str = "field_mapping";

/// The default of `REGEX_SIZE_LIMIT_BYTES`: the largest compiled program a client's pattern may
/// produce (the regex crate's own default is 10 MiB). The contract's example pattern needs under
/// 256 KiB. Measured with regex 1.13 (a pattern and one search): a pattern near this limit, such as
/// `\w{12}`, holds about 1 MiB in all, so the cache of `REGEX_CACHE_SIZE` patterns stays under
/// about `REGEX_CACHE_SIZE` MiB; `\w{20}` (1.3 MiB under the old 1 MiB limit) is refused.
pub const DEFAULT_REGEX_SIZE_LIMIT: usize = 512 << 10;

/// The most memory each thread's lazy DFA may use for one pattern (the crate's default is 2 MiB). With
/// up to `REGEX_CACHE_SIZE` patterns cached, this is the term that grows with the thread count.
const DFA_SIZE_LIMIT: usize = 512 << 10;

/// A pattern compiled with Unicode classes, and without them when it is written in ASCII and
/// compiles that way (see the module's documentation).
#[derive(Debug)]
pub struct CompiledPattern {
    unicode: Regex,
    ascii: Option<BytesRegex>,
}

/// Why a pattern does not compile.
#[derive(Debug, Clone)]
pub enum PatternError {
    /// The regex crate refused it; its message.
    Syntax(Arc<str>),
    /// It compiles to more than the size limit (bytes).
    TooBig(usize),
}

impl From<PatternError> for ParseError {
    fn from(error: PatternError) -> Self {
        match error {
            PatternError::Syntax(message) => ParseError::BadPattern(message),
            PatternError::TooBig(limit) => ParseError::PatternTooBig { limit },
        }
    }
}

/// A compiled pattern, or why it does not compile.
pub(super) type Compiled = Result<Arc<CompiledPattern>, PatternError>;

/// Where a regex log's pattern is compiled: the shared cache, or the cache through a batch's own
/// memory of the patterns it has used ([`BatchPatterns`]).
pub(super) trait Patterns {
    fn compiled(&mut self, pattern: &str) -> Compiled;
}

impl Patterns for &PatternCache {
    fn compiled(&mut self, pattern: &str) -> Compiled {
        self.get(pattern)
    }
}

/// The patterns one batch has used, by spelling, over the shared cache: within a batch each
/// distinct pattern is compiled at most once, even when the cache (smaller than the batch's
/// patterns, or churned by other requests meanwhile) has evicted it. The batch's patterns are
/// bounded beforehand by `MAX_PATTERNS_PER_REQUEST` ([`super::check_patterns`]).
pub(super) struct BatchPatterns<'a> {
    cache: &'a PatternCache,
    seen: HashMap<Box<str>, Compiled>,
}

impl<'a> BatchPatterns<'a> {
    pub(super) fn new(cache: &'a PatternCache) -> Self {
        Self {
            cache,
            seen: HashMap::new(),
        }
    }
}

impl BatchPatterns<'_> {
    /// Distinct patterns the batch has used.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.seen.len()
    }
}

impl Patterns for BatchPatterns<'_> {
    fn compiled(&mut self, pattern: &str) -> Compiled {
        if let Some(compiled) = self.seen.get(pattern) {
            return compiled.clone();
        }
        let compiled = self.cache.get(pattern);
        self.seen.insert(pattern.into(), compiled.clone());
        compiled
    }
}

struct Slot {
    compiled: Compiled,
    /// The cache's clock at the last use; the smallest values are evicted first.
    last_used: AtomicU64,
}

/// Compiled patterns by their text, at most `capacity` of them, least recently used evicted first.
///
/// Hits take a read lock only (the use time is an atomic), so threads parsing regex logs do not queue
/// behind each other; a miss compiles outside any lock and then takes the write lock to insert.
pub struct PatternCache {
    capacity: usize,
    /// The regex crate's `size_limit` for each pattern (`REGEX_SIZE_LIMIT_BYTES`).
    size_limit: usize,
    clock: AtomicU64,
    slots: RwLock<HashMap<Box<str>, Slot>>,
    /// Patterns compiled so far (misses).
    compiles: AtomicU64,
}

impl fmt::Debug for PatternCache {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("PatternCache")
            .field("capacity", &self.capacity)
            .field("size_limit", &self.size_limit)
            .field("len", &self.len())
            .finish()
    }
}

impl PatternCache {
    /// A cache for `capacity` patterns (at least one), each within [`DEFAULT_REGEX_SIZE_LIMIT`].
    pub fn new(capacity: usize) -> Self {
        Self::with_size_limit(capacity, DEFAULT_REGEX_SIZE_LIMIT)
    }

    /// A cache for `capacity` patterns (at least one), each compiling to at most `size_limit`
    /// bytes (a larger one is [`ParseError::PatternTooBig`]).
    pub fn with_size_limit(capacity: usize, size_limit: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            size_limit,
            clock: AtomicU64::new(0),
            slots: RwLock::new(HashMap::new()),
            compiles: AtomicU64::new(0),
        }
    }

    /// How many patterns (compiled or failed) are cached.
    fn len(&self) -> usize {
        self.slots
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// How many patterns have been compiled (cache misses) since the cache was made.
    pub fn compiles(&self) -> u64 {
        self.compiles.load(Ordering::Relaxed)
    }

    /// The compiled `pattern`, compiling and caching it on first use.
    fn get(&self, pattern: &str) -> Compiled {
        let now = self.clock.fetch_add(1, Ordering::Relaxed);
        {
            // No code that can panic runs under these locks, but if some did, the map is still sound.
            let slots = self.slots.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(slot) = slots.get(pattern) {
                slot.last_used.store(now, Ordering::Relaxed);
                return slot.compiled.clone();
            }
        }
        self.compiles.fetch_add(1, Ordering::Relaxed);
        let compiled = compile(pattern, self.size_limit);
        let mut slots = self.slots.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = slots.get(pattern) {
            // Another thread compiled it meanwhile; keep one copy.
            return slot.compiled.clone();
        }
        if slots.len() >= self.capacity {
            evict(&mut slots, self.capacity);
        }
        slots.insert(
            pattern.into(),
            Slot {
                compiled: compiled.clone(),
                last_used: AtomicU64::new(now),
            },
        );
        compiled
    }
}

/// Removes the least recently used eighth of a full cache (at least one entry): one sweep per
/// `capacity / 8` misses keeps a stream of new patterns from costing a full scan each.
fn evict(slots: &mut HashMap<Box<str>, Slot>, capacity: usize) {
    let remove = (capacity / 8).max(1).min(slots.len());
    if remove == 0 {
        return;
    }
    let mut ticks: Vec<u64> = slots
        .values()
        .map(|slot| slot.last_used.load(Ordering::Relaxed))
        .collect();
    let (_, cutoff, _) = ticks.select_nth_unstable(remove - 1);
    let cutoff = *cutoff;
    slots.retain(|_, slot| slot.last_used.load(Ordering::Relaxed) > cutoff);
}

fn compile(pattern: &str, size_limit: usize) -> Compiled {
    let unicode = RegexBuilder::new(pattern)
        .size_limit(size_limit)
        .dfa_size_limit(DFA_SIZE_LIMIT)
        .build()
        .map_err(|error| match error {
            ::regex::Error::CompiledTooBig(limit) => PatternError::TooBig(limit),
            error => PatternError::Syntax(Arc::from(error.to_string())),
        })?;
    let ascii = if pattern.is_ascii() {
        BytesRegexBuilder::new(pattern)
            .unicode(false)
            .size_limit(size_limit)
            .dfa_size_limit(DFA_SIZE_LIMIT)
            .build()
            .ok()
    } else {
        None
    };
    Ok(Arc::new(CompiledPattern { unicode, ascii }))
}

/// A `custom_config` ready to parse lines: its compiled pattern and the field name of each group.
#[derive(Debug)]
pub struct PreparedRegex {
    pattern: Arc<CompiledPattern>,
    /// By the regex crate's group number; group 0, the whole match, is unnamed.
    names: Vec<Option<Box<str>>>,
}

impl PreparedRegex {
    /// Checks `config` and resolves it against its compiled pattern.
    fn new(patterns: &mut impl Patterns, config: &Value) -> Result<Self, ParseError> {
        let config = match config {
            Value::Null => return Err(ParseError::MissingPattern),
            Value::Object(config) => config,
            _ => {
                return Err(ParseError::InvalidConfig(
                    "custom_config must be an object with a 'pattern' and a 'field_mapping'",
                ));
            }
        };
        let pattern = match config.get(PATTERN) {
            None | Some(Value::Null) => return Err(ParseError::MissingPattern),
            Some(Value::String(pattern)) => pattern,
            Some(_) => return Err(ParseError::InvalidConfig("'pattern' must be a string")),
        };
        let pattern = patterns.compiled(pattern)?;
        let names = group_names(&pattern.unicode, config.get(FIELD_MAPPING))?
            .into_iter()
            .map(|name| name.map(Box::from))
            .collect();
        Ok(Self { pattern, names })
    }

    fn parse(&self, line: &str, limits: &FieldLimits) -> Result<ParsedLog, ParseError> {
        let mut builder = LogBuilder::new(limits);
        let mut add = |group: usize, text: Option<&str>| {
            let name = self.names.get(group).and_then(Option::as_deref);
            if let (Some(name), Some(text)) = (name, text) {
                builder.untyped(name, text);
            }
        };
        match &self.pattern.ascii {
            Some(ascii) if line.is_ascii() => {
                let mut groups = ascii.capture_locations();
                ascii
                    .captures_read(&mut groups, line.as_bytes())
                    .ok_or(ParseError::NoMatch)?;
                for group in 0..groups.len() {
                    add(
                        group,
                        groups
                            .get(group)
                            .and_then(|(start, end)| line.get(start..end)),
                    );
                }
            }
            _ => {
                let captures = self
                    .pattern
                    .unicode
                    .captures(line)
                    .ok_or(ParseError::NoMatch)?;
                for group in 0..captures.len() {
                    add(group, captures.get(group).map(|text| text.as_str()));
                }
            }
        }
        Ok(builder.finish())
    }
}

/// Parses `line` with the pattern and mapping in `config` (the log's `custom_config`).
///
/// # Errors
///
/// [`ParseError::MissingPattern`], [`ParseError::InvalidConfig`], [`ParseError::BadPattern`],
/// [`ParseError::MissingGroup`], [`ParseError::UnknownGroupName`] for a config that cannot be used,
/// [`ParseError::NoMatch`] when the line does not match.
pub(super) fn parse_regex(
    patterns: &mut impl Patterns,
    line: &str,
    config: Option<&CustomConfig>,
    limits: &FieldLimits,
) -> Result<ParsedLog, ParseError> {
    let Some(config) = config else {
        return Err(ParseError::MissingPattern);
    };
    let prepared = config.regex.get_or_init(|| {
        PreparedRegex::new(patterns, config.value())
            .ok()
            .map(Arc::new)
    });
    match prepared {
        Some(prepared) => prepared.parse(line, limits),
        // An unusable config is not remembered: checking it again names what is wrong.
        None => PreparedRegex::new(patterns, config.value())?.parse(line, limits),
    }
}

/// The pattern a regex log's `custom_config` spells, if it spells one.
pub(super) fn pattern_of(config: &CustomConfig) -> Option<&str> {
    config.value().get(PATTERN)?.as_str()
}

/// The field name of every group, by the regex crate's group number (0, the whole match, is unnamed).
fn group_names<'a>(
    regex: &'a Regex,
    mapping: Option<&'a Value>,
) -> Result<Vec<Option<&'a str>>, ParseError> {
    let mut names: Vec<Option<&str>> = regex.capture_names().collect();
    let mapping = match mapping {
        None | Some(Value::Null) => return Ok(names),
        Some(Value::Object(mapping)) => mapping,
        Some(_) => {
            return Err(ParseError::InvalidConfig(
                "'field_mapping' must be an object from group index to field name",
            ));
        }
    };
    let groups = names.len() - 1;
    for (key, value) in mapping {
        let name = match value {
            Value::String(name) => Some(name.as_str()),
            Value::Null => None,
            _ => {
                return Err(ParseError::InvalidConfig(
                    "every 'field_mapping' value must be a field name (a string)",
                ));
            }
        };
        let group = if !key.is_empty() && key.bytes().all(|b| b.is_ascii_digit()) {
            // Counted from 0 over the groups: "0" is group 1.
            match key.parse::<usize>() {
                Ok(index) if index < groups => index + 1,
                _ => {
                    return Err(ParseError::MissingGroup {
                        key: key.clone(),
                        groups,
                    });
                }
            }
        } else {
            regex
                .capture_names()
                .position(|group_name| group_name == Some(key.as_str()))
                .ok_or_else(|| ParseError::UnknownGroupName { name: key.clone() })?
        };
        names[group] = name;
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The contract's example pattern.
    const APP_PATTERN: &str = r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?)\s+\[(\w+)\]\s+Memory usage: (\d+)%\s+CPU usage: (\d+)%\s+Thread count: (\d+)";
    const APP_LINE: &str =
        "2024-01-15T10:00:02Z [ERROR] Memory usage: 85% CPU usage: 95% Thread count: 200";

    fn app_config() -> Value {
        json!({
            "pattern": APP_PATTERN,
            "field_mapping": {"0": "timestamp", "1": "level", "2": "memory_usage", "3": "cpu_usage", "4": "thread_count"},
        })
    }

    fn parse(config: &Value, line: &str) -> Result<ParsedLog, ParseError> {
        parse_with(
            &PatternCache::new(4),
            line,
            Some(&CustomConfig::new(config.clone())),
        )
    }

    fn parse_with(
        cache: &PatternCache,
        line: &str,
        config: Option<&CustomConfig>,
    ) -> Result<ParsedLog, ParseError> {
        parse_regex(&mut &*cache, line, config, &FieldLimits::default())
    }

    #[test]
    fn the_contract_example_is_read() {
        let log = parse(&app_config(), APP_LINE).expect("parses");
        assert_eq!(
            log.timestamp.map(|t| t.to_rfc3339()),
            Some("2024-01-15T10:00:02+00:00".to_owned())
        );
        assert_eq!(log.level.as_deref(), Some("ERROR"));
        let features: Vec<_> = log.features.iter().collect();
        assert_eq!(
            features,
            [
                ("cpu_usage", 95.0),
                ("memory_usage", 85.0),
                ("thread_count", 200.0)
            ]
        );
        assert!(log.attributes.is_empty());
    }

    #[test]
    fn named_groups_name_themselves_and_may_be_mapped_by_name() {
        let config = json!({"pattern": r"(?P<ts>\S+) took (?P<took>\S+) on (\S+) from (?P<host>\S+)", "field_mapping": {"ts": "timestamp", "2": "disk"}});
        let log =
            parse(&config, "2024-01-15T10:00:02Z took 1.5s on sda from web-1").expect("parses");
        assert!(log.timestamp.is_some());
        assert_eq!(log.features.get("took"), Some(1500.0));
        assert_eq!(log.attributes["disk"], "sda");
        assert_eq!(log.attributes["host"], "web-1");
    }

    #[test]
    fn unnamed_unmapped_and_null_mapped_groups_are_ignored() {
        let config =
            json!({"pattern": r"(\d+) (\d+) (?P<c>\d+)", "field_mapping": {"0": "a", "2": null}});
        let log = parse(&config, "1 2 3").expect("parses");
        let features: Vec<_> = log.features.iter().collect();
        assert_eq!(features, [("a", 1.0)]);
    }

    #[test]
    fn a_group_that_did_not_take_part_is_skipped() {
        let config =
            json!({"pattern": r"a=(\d+)(?: b=(\d+))?", "field_mapping": {"0": "a", "1": "b"}});
        let log = parse(&config, "a=1").expect("parses");
        assert_eq!(log.features.get("a"), Some(1.0));
        assert_eq!(log.features.get("b"), None);
    }

    #[test]
    fn the_pattern_is_searched_anywhere_in_the_line() {
        let config = json!({"pattern": r"cpu=(\d+)", "field_mapping": {"0": "cpu"}});
        let log = parse(&config, "host=a cpu=42 more").expect("parses");
        assert_eq!(log.features.get("cpu"), Some(42.0));
    }

    #[test]
    fn a_line_that_does_not_match_is_an_error() {
        let error = parse(&app_config(), "something else").expect_err("no match");
        assert!(matches!(error, ParseError::NoMatch));
        assert_eq!(
            error.to_string(),
            "raw_log does not match the regex pattern"
        );
    }

    #[test]
    fn a_missing_config_or_pattern_is_an_error_naming_custom_config() {
        let cache = PatternCache::new(4);
        for config in [
            None,
            Some(json!(null)),
            Some(json!({})),
            Some(json!({"field_mapping": {}})),
        ] {
            let config = config.map(CustomConfig::new);
            let error = parse_with(&cache, APP_LINE, config.as_ref()).expect_err("no pattern");
            assert_eq!(
                error.to_string(),
                "format_type 'regex' needs custom_config with a 'pattern'"
            );
        }
    }

    #[test]
    fn malformed_configs_are_errors_saying_what_is_wrong() {
        for (config, needle) in [
            (json!("pattern"), "custom_config must be an object"),
            (json!({"pattern": 5}), "'pattern' must be a string"),
            (
                json!({"pattern": "(a)", "field_mapping": ["a"]}),
                "'field_mapping' must be an object",
            ),
            (
                json!({"pattern": "(a)", "field_mapping": {"0": 1}}),
                "must be a field name",
            ),
        ] {
            let error = parse(&config, "a").expect_err("bad config");
            assert!(error.to_string().contains(needle), "{error}");
        }
    }

    #[test]
    fn a_bad_pattern_is_an_error_quoting_the_compiler() {
        let config = json!({"pattern": "(unclosed", "field_mapping": {}});
        let error = parse(&config, "x").expect_err("does not compile");
        let message = error.to_string();
        assert!(
            message.starts_with("regex pattern does not compile: "),
            "{message}"
        );
        assert!(message.contains("unclosed"), "{message}");
    }

    #[test]
    fn an_oversized_pattern_is_refused() {
        let config = json!({"pattern": r"\w{1000}\w{1000}\w{1000}", "field_mapping": {}});
        let error = parse(&config, "x").expect_err("too big");
        assert!(error.to_string().contains("size limit"), "{error}");
    }

    #[test]
    fn mapping_a_group_the_pattern_lacks_is_an_error_naming_it() {
        let mut config = app_config();
        config["field_mapping"]["9"] = json!("ghost");
        let error = parse(&config, APP_LINE).expect_err("no group 9");
        assert_eq!(
            error.to_string(),
            "field_mapping maps group 9 but the pattern has 5 groups"
        );
        let config = json!({"pattern": "(a)", "field_mapping": {"1": "x"}});
        let error = parse(&config, "a").expect_err("no group 1");
        assert_eq!(
            error.to_string(),
            "field_mapping maps group 1 but the pattern has 1 group"
        );
        let config = json!({"pattern": "a", "field_mapping": {"99999999999999999999999": "x"}});
        let error = parse(&config, "a").expect_err("no group");
        assert_eq!(
            error.to_string(),
            "field_mapping maps group 99999999999999999999999 but the pattern has no groups"
        );
        let config = json!({"pattern": "(a)", "field_mapping": {"nope": "x"}});
        let error = parse(&config, "a").expect_err("no such name");
        assert_eq!(
            error.to_string(),
            "field_mapping names group 'nope' but the pattern has no group of that name"
        );
    }

    #[test]
    fn the_mapping_is_checked_even_when_the_line_does_not_match() {
        let mut config = app_config();
        config["field_mapping"]["9"] = json!("ghost");
        let error = parse(&config, "no match here").expect_err("no group 9");
        assert!(matches!(error, ParseError::MissingGroup { .. }));
    }

    #[test]
    fn each_pattern_is_compiled_once_and_errors_are_cached_too() {
        let cache = PatternCache::new(8);
        let good = app_config();
        let bad = json!({"pattern": "(", "field_mapping": {}});
        for _ in 0..3 {
            let (good, bad) = (
                CustomConfig::new(good.clone()),
                CustomConfig::new(bad.clone()),
            );
            parse_with(&cache, APP_LINE, Some(&good)).expect("parses");
            parse_with(&cache, APP_LINE, Some(&bad)).expect_err("bad");
        }
        assert_eq!(cache.len(), 2);
        let first = cache.get(APP_PATTERN).expect("compiles");
        assert!(
            first.ascii.is_some(),
            "the contract's pattern also compiles for ASCII lines"
        );
        let second = cache.get(APP_PATTERN).expect("compiles");
        assert!(Arc::ptr_eq(&first, &second));
    }

    #[test]
    fn the_cache_stays_within_its_capacity_and_keeps_recent_patterns() {
        let cache = PatternCache::new(16);
        let hot = cache.get("hot").expect("compiles");
        for i in 0..100 {
            cache.get(&format!("p{i}")).expect("compiles");
            // Touch the hot pattern between misses so it is never the least recently used.
            let again = cache.get("hot").expect("compiles");
            assert!(Arc::ptr_eq(&hot, &again), "hot pattern evicted at {i}");
            assert!(cache.len() <= 16);
        }
    }

    #[test]
    fn a_capacity_of_zero_still_caches_one() {
        let cache = PatternCache::new(0);
        cache.get("a").expect("compiles");
        cache.get("b").expect("compiles");
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn a_shared_config_is_resolved_once_and_an_unusable_one_keeps_saying_why() {
        let cache = PatternCache::new(4);
        let config = CustomConfig::new(app_config());
        parse_with(&cache, APP_LINE, Some(&config)).expect("parses");
        let first = config.regex.get().cloned().flatten().expect("prepared");
        parse_with(&cache, APP_LINE, Some(&config)).expect("parses again");
        let second = config.regex.get().cloned().flatten().expect("prepared");
        assert!(Arc::ptr_eq(&first, &second));

        let bad = CustomConfig::new(json!({"pattern": "(a)", "field_mapping": {"3": "x"}}));
        for _ in 0..2 {
            let error = parse_with(&cache, "a", Some(&bad)).expect_err("no group 3");
            assert!(matches!(error, ParseError::MissingGroup { .. }), "{error}");
        }
    }

    #[test]
    fn lines_and_patterns_beyond_ascii_are_matched_with_unicode_classes() {
        let config = json!({"pattern": r"\[(\w+)\] took (\d+)ms", "field_mapping": {"0": "level", "1": "took"}});
        // `\w` takes the accented letters of a non-ASCII line.
        let log = parse(&config, "[ÉRREUR] took 12ms").expect("parses");
        assert_eq!(log.level.as_deref(), Some("ÉRREUR"));
        assert_eq!(log.features.get("took"), Some(12.0));
        // Unicode digits are `\d` as in Python's `re` (here Arabic-Indic ١٢).
        let config = json!({"pattern": r"n=(\d+)", "field_mapping": {"0": "n_text"}});
        let log = parse(&config, "n=١٢").expect("parses");
        assert_eq!(log.attributes["n_text"], "١٢");
        // A pattern that is not ASCII has no ASCII twin and still matches ASCII lines.
        let config =
            json!({"pattern": r"(?i)(\w+)=(\d+) é?", "field_mapping": {"0": "key", "1": "n"}});
        let log = parse(&config, "Alpha=7 ").expect("parses");
        assert_eq!(log.attributes["key"], "Alpha");
        assert_eq!(log.features.get("n"), Some(7.0));
    }

    proptest::proptest! {
        /// The ASCII twin of a pattern finds exactly what the Unicode pattern finds on ASCII lines.
        #[test]
        fn ascii_and_unicode_matching_agree_on_ascii_lines(
            line in "[ -~\t]{0,60}",
            pattern in proptest::sample::select(vec![
                r"(\w+)\s+(\d+)",
                r"(?i)(k\w*)=(\S+)",
                r"\b(\w)(\w*)\b",
                r"([^ ]+) (.*?)(\d*)$",
                r"(\s*)(\W+)(\D?)",
                r"^(\d{2,4})?-?(\w{1,3})",
                r"(a|ab)(c|bcd)(d*)",
            ]),
        ) {
            let compiled = compile(pattern, DEFAULT_REGEX_SIZE_LIMIT).expect("compiles");
            let ascii = compiled.ascii.as_ref().expect("ASCII twin");
            let unicode = compiled.unicode.captures(&line).map(|captures| {
                captures.iter().map(|group| group.map(|m| m.range())).collect::<Vec<_>>()
            });
            let twin = ascii.captures(line.as_bytes()).map(|captures| {
                captures.iter().map(|group| group.map(|m| m.range())).collect::<Vec<_>>()
            });
            proptest::prop_assert_eq!(unicode, twin);
        }
    }
}
