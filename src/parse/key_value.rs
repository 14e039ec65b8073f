//! `format_type: "key_value"`: logfmt-style lines, as in the contract's
//! `2024-01-01T10:00:01Z ERROR query_time=5000ms connection_count=100 error_rate=0.15`.
//!
//! - `key=value` pairs are separated by whitespace. A value runs to the next whitespace, or is
//!   double-quoted with the escapes `\"`, `\\`, `\n`, `\r`, `\t` (any other `\x` is kept as written). An
//!   unterminated quote runs to the end of the line: the fields before it are still worth having.
//! - The first token may be a timestamp: one word (`2024-01-01T10:00:01Z`, an epoch), a date and a time
//!   (`2024-01-01 12:00:00`, optionally with a zone word `+0000`/`UTC`), or any of those in brackets.
//! - A level word (`INFO`, `[warn]`, `ERROR:` …, see [`level_word`]) directly after it, before any pair,
//!   is the level.
//! - Other bare words are joined with single spaces into the message (or, when the line also has a
//!   `msg=` field, kept in the `text` attribute).
//!
//! Values are untyped: what they become is decided in [`super::fields`]. The line is scanned byte by
//! byte for ASCII whitespace, `=` and `"`, which never occur inside a multi-byte UTF-8 sequence, so every
//! slice lands on a character boundary. Parsing never fails: a line with no pairs is all message.

use std::borrow::Cow;

use super::ParsedLog;
use super::fields::{FieldLimits, LogBuilder, level_word};
use super::timestamp::parse_timestamp;

/// Parses one key=value line with the default [`FieldLimits`].
pub fn parse_key_value(line: &str) -> ParsedLog {
    parse_key_value_within(line, &FieldLimits::default())
}

/// Parses one key=value line, keeping what `limits` allow.
pub fn parse_key_value_within(line: &str, limits: &FieldLimits) -> ParsedLog {
    let bytes = line.as_bytes();
    let mut builder = LogBuilder::new(limits);
    let mut bare = String::new();
    let mut seen_pair = false;
    let mut pos = skip_whitespace(bytes, 0);
    if let Some(end) = leading_timestamp(line, pos, &mut builder) {
        pos = end;
    }
    loop {
        pos = skip_whitespace(bytes, pos);
        if pos >= bytes.len() {
            break;
        }
        if bytes[pos] == b'"' {
            let (text, end) = quoted(line, pos + 1);
            push_word(&mut bare, &text);
            pos = end;
            continue;
        }
        let start = pos;
        while pos < bytes.len() && !bytes[pos].is_ascii_whitespace() && bytes[pos] != b'=' {
            pos += 1;
        }
        if pos > start && bytes.get(pos) == Some(&b'=') {
            let key = &line[start..pos];
            let (value, end) = value(line, pos + 1);
            builder.untyped(key, &value);
            seen_pair = true;
            pos = end;
            continue;
        }
        // A bare word; a token that starts with `=` is one too.
        pos = token_end(bytes, pos);
        let word = &line[start..pos];
        match level_word(word) {
            Some(level) if !seen_pair && bare.is_empty() && !builder.has_level() => {
                builder.set_level(level);
            }
            _ => push_word(&mut bare, word),
        }
    }
    if !bare.is_empty() {
        builder.set_bare_text(bare);
    }
    builder.finish()
}

fn push_word(bare: &mut String, word: &str) {
    if !bare.is_empty() {
        bare.push(' ');
    }
    bare.push_str(word);
}

fn skip_whitespace(bytes: &[u8], mut pos: usize) -> usize {
    while bytes.get(pos).is_some_and(u8::is_ascii_whitespace) {
        pos += 1;
    }
    pos
}

fn token_end(bytes: &[u8], mut pos: usize) -> usize {
    while bytes.get(pos).is_some_and(|b| !b.is_ascii_whitespace()) {
        pos += 1;
    }
    pos
}

/// Reads a leading timestamp at `start`, sets it and returns where it ends; `None` when the line does
/// not begin with one.
fn leading_timestamp(line: &str, start: usize, builder: &mut LogBuilder) -> Option<usize> {
    let bytes = line.as_bytes();
    let first = bytes.get(start)?;
    if *first == b'[' {
        let close = start + line.get(start..)?.find(']')?;
        let time = parse_timestamp(&line[start + 1..close])?;
        builder.set_timestamp(time);
        return Some(close + 1);
    }
    if !first.is_ascii_digit() {
        return None;
    }
    // Try the longest candidate first: date, time and zone words; date and time; one word.
    let end1 = token_end(bytes, start);
    if end1 - start == 10 && bytes.get(end1) == Some(&b' ') {
        let end2 = token_end(bytes, end1 + 1);
        if end2 > end1 + 1 {
            if bytes.get(end2) == Some(&b' ') {
                let end3 = token_end(bytes, end2 + 1);
                if let Some(time) = parse_timestamp(&line[start..end3]) {
                    builder.set_timestamp(time);
                    return Some(end3);
                }
            }
            if let Some(time) = parse_timestamp(&line[start..end2]) {
                builder.set_timestamp(time);
                return Some(end2);
            }
        }
    }
    let time = parse_timestamp(&line[start..end1])?;
    builder.set_timestamp(time);
    Some(end1)
}

/// A value starting at `start`: quoted, or up to the next whitespace. Returns it and where it ends.
fn value(line: &str, start: usize) -> (Cow<'_, str>, usize) {
    let bytes = line.as_bytes();
    if bytes.get(start) == Some(&b'"') {
        return quoted(line, start + 1);
    }
    let end = token_end(bytes, start);
    (Cow::Borrowed(&line[start..end]), end)
}

/// The inside of a double-quoted string whose opening quote is just before `start`, unescaped; and the
/// index after the closing quote (or the end of the line when there is none).
fn quoted(line: &str, start: usize) -> (Cow<'_, str>, usize) {
    let bytes = line.as_bytes();
    let mut pos = start;
    while pos < bytes.len() {
        match bytes[pos] {
            b'"' => return (Cow::Borrowed(&line[start..pos]), pos + 1),
            b'\\' => return unescape(line, start, pos),
            _ => pos += 1,
        }
    }
    (Cow::Borrowed(&line[start..]), bytes.len())
}

/// The slow path of [`quoted`], from the first backslash at `first_escape`.
fn unescape(line: &str, start: usize, first_escape: usize) -> (Cow<'_, str>, usize) {
    let bytes = line.as_bytes();
    let mut text = String::with_capacity(line.len() - start);
    text.push_str(&line[start..first_escape]);
    let mut pos = first_escape;
    // `run` is the start of the current stretch of plain text, copied in one go.
    let mut run = pos;
    while pos < bytes.len() {
        match bytes[pos] {
            b'"' => {
                text.push_str(&line[run..pos]);
                return (Cow::Owned(text), pos + 1);
            }
            b'\\' => {
                text.push_str(&line[run..pos]);
                let replacement = match bytes.get(pos + 1) {
                    Some(b'"') => Some('"'),
                    Some(b'\\') => Some('\\'),
                    Some(b'n') => Some('\n'),
                    Some(b'r') => Some('\r'),
                    Some(b't') => Some('\t'),
                    _ => None,
                };
                match replacement {
                    Some(c) => {
                        text.push(c);
                        pos += 2;
                    }
                    None => {
                        // Kept as written; the next character is copied with the following run.
                        text.push('\\');
                        pos += 1;
                    }
                }
                run = pos;
            }
            _ => pos += 1,
        }
    }
    text.push_str(&line[run..]);
    (Cow::Owned(text), bytes.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rfc3339(log: &ParsedLog) -> Option<String> {
        log.timestamp.map(|t| t.to_rfc3339())
    }

    #[test]
    fn the_contract_line_is_read() {
        let log = parse_key_value(
            "2024-01-01T10:00:01Z ERROR query_time=5000ms connection_count=100 error_rate=0.15",
        );
        assert_eq!(rfc3339(&log), Some("2024-01-01T10:00:01+00:00".to_owned()));
        assert_eq!(log.level.as_deref(), Some("ERROR"));
        let features: Vec<_> = log.features.iter().collect();
        assert_eq!(
            features,
            [
                ("connection_count", 100.0),
                ("error_rate", 0.15),
                ("query_time", 5000.0)
            ]
        );
        assert_eq!(log.message, None);
        assert!(log.attributes.is_empty());
    }

    #[test]
    fn a_date_and_time_in_two_words_is_one_timestamp() {
        let log = parse_key_value("2024-01-01 12:00:00 WARN disk=93%");
        assert_eq!(rfc3339(&log), Some("2024-01-01T12:00:00+00:00".to_owned()));
        assert_eq!(log.level.as_deref(), Some("WARN"));
        assert_eq!(log.features.get("disk"), Some(93.0));
        let log = parse_key_value("2024-01-01 12:00:00 +0200 INFO a=1");
        assert_eq!(rfc3339(&log), Some("2024-01-01T10:00:00+00:00".to_owned()));
        assert_eq!(log.level.as_deref(), Some("INFO"));
        let log = parse_key_value("[2024-01-01 12:00:00.5] [info] a=1");
        assert_eq!(
            rfc3339(&log),
            Some("2024-01-01T12:00:00.500+00:00".to_owned())
        );
        assert_eq!(log.level.as_deref(), Some("info"));
    }

    #[test]
    fn a_date_alone_is_a_timestamp_and_the_next_word_is_not_eaten() {
        let log = parse_key_value("2024-01-01 ERROR a=1");
        assert_eq!(rfc3339(&log), Some("2024-01-01T00:00:00+00:00".to_owned()));
        assert_eq!(log.level.as_deref(), Some("ERROR"));
    }

    #[test]
    fn quoted_values_are_unescaped() {
        let log = parse_key_value(
            r#"msg="disk \"sda\" is full\n" path="C:\data" empty="" plain="no escapes" n="42ms""#,
        );
        assert_eq!(log.message.as_deref(), Some("disk \"sda\" is full\n"));
        assert_eq!(log.attributes["path"], r"C:\data");
        assert_eq!(log.attributes["empty"], "");
        assert_eq!(log.attributes["plain"], "no escapes");
        assert_eq!(log.features.get("n"), Some(42.0));
    }

    #[test]
    fn an_unterminated_quote_runs_to_the_end() {
        let log = parse_key_value(r#"a=1 msg="oops b=2"#);
        assert_eq!(log.features.get("a"), Some(1.0));
        assert_eq!(log.message.as_deref(), Some("oops b=2"));
        assert_eq!(log.features.get("b"), None);
        let log = parse_key_value(r#"a=1 msg="trailing \"#);
        assert_eq!(log.message.as_deref(), Some("trailing \\"));
    }

    #[test]
    fn the_level_is_the_word_right_after_the_timestamp_only() {
        let log = parse_key_value("2024-01-01T10:00:01Z connection ERROR a=1 WARN");
        assert_eq!(log.level, None);
        assert_eq!(log.message.as_deref(), Some("connection ERROR WARN"));
        let log = parse_key_value("INFO started");
        assert_eq!(log.level.as_deref(), Some("INFO"));
        assert_eq!(log.message.as_deref(), Some("started"));
        let log = parse_key_value("a=1 ERROR");
        assert_eq!(log.level, None);
        let log = parse_key_value("level=debug INFO x");
        assert_eq!(log.level.as_deref(), Some("debug"));
    }

    #[test]
    fn named_fields_fill_timestamp_level_and_message() {
        let log = parse_key_value(r#"ts=1705312800 level=warn msg="slow query" latency=1.5s"#);
        assert_eq!(log.timestamp.map(|t| t.timestamp()), Some(1_705_312_800));
        assert_eq!(log.level.as_deref(), Some("warn"));
        assert_eq!(log.message.as_deref(), Some("slow query"));
        assert_eq!(log.features.get("latency"), Some(1500.0));
    }

    #[test]
    fn bare_words_become_the_message_or_the_text_attribute() {
        let log = parse_key_value(r#"connection refused host=db-1 "to port 5432""#);
        assert_eq!(
            log.message.as_deref(),
            Some("connection refused to port 5432")
        );
        assert_eq!(log.attributes["host"], "db-1");
        let log = parse_key_value("retrying msg=hello");
        assert_eq!(log.message.as_deref(), Some("hello"));
        assert_eq!(log.attributes["text"], "retrying");
    }

    #[test]
    fn odd_tokens_are_kept_not_lost() {
        let log = parse_key_value("=5 a==b c=d=e key= x=1");
        assert_eq!(log.message.as_deref(), Some("=5"));
        assert_eq!(log.attributes["a"], "=b");
        assert_eq!(log.attributes["c"], "d=e");
        assert_eq!(log.attributes["key"], "");
        assert_eq!(log.features.get("x"), Some(1.0));
    }

    #[test]
    fn booleans_ids_and_units_follow_the_shared_rules() {
        let log = parse_key_value("ok=true cached=False request_id=123 heap=512MiB cpu=87.5%");
        assert_eq!(log.features.get("ok"), Some(1.0));
        assert_eq!(log.features.get("cached"), Some(0.0));
        assert_eq!(log.attributes["request_id"], "123");
        assert_eq!(log.features.get("heap"), Some(536_870_912.0));
        assert_eq!(log.features.get("cpu"), Some(87.5));
    }

    #[test]
    fn empty_and_blank_lines_give_an_empty_log() {
        for line in ["", "   ", "\t\n"] {
            let log = parse_key_value(line);
            assert!(log.features.is_empty() && log.attributes.is_empty());
            assert_eq!((log.timestamp, log.level, log.message), (None, None, None));
        }
    }

    #[test]
    fn multibyte_text_is_sliced_on_character_boundaries() {
        let log = parse_key_value("température=21.5 名前=\"東京 駅\" π=3.25 ünïcödé");
        assert_eq!(log.features.get("température"), Some(21.5));
        assert_eq!(log.features.get("π"), Some(3.25));
        assert_eq!(log.attributes["名前"], "東京 駅");
        assert_eq!(log.message.as_deref(), Some("ünïcödé"));
    }
}
