//! Timestamps: the text and numbers a log's time comes in, read as UTC.
//!
//! The contract asks for RFC 3339 or ISO 8601 with naive times taken as UTC. I parse those by hand at
//! fixed positions (no regex, no format strings) because every log goes through here; the less common
//! forms fall through to the slower paths below. Accepted, in order of checking:
//!
//! | form | example |
//! |---|---|
//! | RFC 3339 / ISO 8601 extended | `2024-01-15T10:00:00Z`, `2024-01-15T10:00:00.123+02:00` |
//! | the same with a space, `t`/`z`, no seconds, a `,` fraction | `2024-01-15 10:00:00`, `2024-01-15t10:00z`, `…10:00:00,5` |
//! | zone `Z`, `UTC`, `±HH`, `±HHMM`, `±HH:MM`, optionally after one space; none means UTC | `2024-01-15 10:00:00 +0000` |
//! | a date alone (midnight UTC) | `2024-01-15` |
//! | Common Log Format (nginx, Apache) | `15/Jan/2024:10:00:00 +0000` |
//! | RFC 2822 | `Mon, 15 Jan 2024 10:00:00 +0000` |
//! | Unix epoch, as digits or a JSON number (see [`from_epoch`]) | `1705312800`, `1705312800123`, `1705312800.5` |
//!
//! Fractions finer than nanoseconds are truncated. A leap second (`:60`) is kept as chrono represents it.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};

/// The smallest epoch value taken as a time: 1e8 seconds is 1973-03-03. Smaller numbers under a
/// timestamp key are more likely a duration or a counter than a date.
const EPOCH_MIN: f64 = 1e8;

/// Converts a Unix epoch number to a time, choosing the unit by magnitude:
/// `[1e8, 1e11)` seconds, `[1e11, 1e14)` milliseconds, `[1e14, 1e17)` microseconds, `[1e17, 1e20)`
/// nanoseconds; fractions are kept to the nanosecond.
///
/// Returns `None` outside those ranges (negative, too small, too large, not finite), so a small number
/// under a `time` key is never read as 1970.
pub fn from_epoch(value: f64) -> Option<DateTime<Utc>> {
    if !value.is_finite() || value < EPOCH_MIN {
        return None;
    }
    let divisor: i64 = if value < 1e11 {
        1
    } else if value < 1e14 {
        1_000
    } else if value < 1e17 {
        1_000_000
    } else if value < 1e20 {
        1_000_000_000
    } else {
        return None;
    };
    if value.fract() == 0.0 {
        // Whole numbers (the usual case) are split exactly, so `…123` ms keeps its 123 ms.
        // `value` is below 1e20, which fits an i128 exactly.
        let whole = value as i128;
        let divisor = i128::from(divisor);
        let seconds = i64::try_from(whole / divisor).ok()?;
        let nanos = u32::try_from((whole % divisor) * (1_000_000_000 / divisor)).ok()?;
        return DateTime::from_timestamp(seconds, nanos);
    }
    let seconds = value / divisor as f64;
    let whole = seconds.floor();
    // `seconds` is below 1e11 here, so the casts are exact enough and cannot saturate.
    let nanos = ((seconds - whole) * 1e9).round().min(999_999_999.0) as u32;
    DateTime::from_timestamp(whole as i64, nanos)
}

/// Parses a timestamp written as text in any form of the module table; `None` when it is none of them.
pub fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim_ascii();
    let bytes = text.as_bytes();
    match bytes.first()? {
        b'0'..=b'9' => {
            if bytes.len() >= 10 && bytes[4] == b'-' {
                parse_iso(bytes)
            } else if bytes.len() >= 20 && bytes[2] == b'/' {
                parse_clf(bytes)
            } else {
                parse_epoch_text(text)
            }
        }
        b if b.is_ascii_alphabetic() => DateTime::parse_from_rfc2822(text)
            .ok()
            .map(|time| time.with_timezone(&Utc)),
        _ => None,
    }
}

/// Digits with an optional fraction: an epoch written as text.
fn parse_epoch_text(text: &str) -> Option<DateTime<Utc>> {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    if int.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    from_epoch(text.parse::<f64>().ok()?)
}

/// Reads `count` ASCII digits at `at` as a number.
fn digits(bytes: &[u8], at: usize, count: usize) -> Option<u32> {
    let slice = bytes.get(at..at + count)?;
    slice.iter().try_fold(0u32, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + u32::from(b - b'0'))
    })
}

fn expect(bytes: &[u8], at: usize, byte: u8) -> Option<()> {
    (bytes.get(at) == Some(&byte)).then_some(())
}

/// `YYYY-MM-DD[(T|t| )HH:MM[:SS[(.|,)F+]][ ][zone]]`.
fn parse_iso(bytes: &[u8]) -> Option<DateTime<Utc>> {
    let year = digits(bytes, 0, 4)?;
    expect(bytes, 4, b'-')?;
    let month = digits(bytes, 5, 2)?;
    expect(bytes, 7, b'-')?;
    let day = digits(bytes, 8, 2)?;
    let date = NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, month, day)?;
    if bytes.len() == 10 {
        return Some(date.and_time(NaiveTime::MIN).and_utc());
    }
    if !matches!(bytes[10], b'T' | b't' | b' ') {
        return None;
    }
    let (time, at) = parse_clock(bytes, 11)?;
    let naive = NaiveDateTime::new(date, time);
    let offset_seconds = parse_zone(bytes, at)?;
    to_utc(naive, offset_seconds)
}

/// `HH:MM[:SS[(.|,)F+]]` at `at`; returns the time and the index after it.
fn parse_clock(bytes: &[u8], at: usize) -> Option<(NaiveTime, usize)> {
    let hour = digits(bytes, at, 2)?;
    expect(bytes, at + 2, b':')?;
    let minute = digits(bytes, at + 3, 2)?;
    let mut i = at + 5;
    let mut second = 0;
    let mut nanos = 0;
    if bytes.get(i) == Some(&b':') {
        second = digits(bytes, i + 1, 2)?;
        i += 3;
        if matches!(bytes.get(i), Some(b'.' | b',')) {
            i += 1;
            let start = i;
            let mut scale = 100_000_000;
            while let Some(&b) = bytes.get(i).filter(|b| b.is_ascii_digit()) {
                nanos += u32::from(b - b'0') * scale;
                scale /= 10;
                i += 1;
            }
            if i == start {
                return None;
            }
        }
    }
    let time = if second == 60 {
        // chrono keeps a leap second as second 59 with nanos of 1e9 or more.
        NaiveTime::from_hms_nano_opt(hour, minute, 59, 1_000_000_000 + nanos)?
    } else {
        NaiveTime::from_hms_nano_opt(hour, minute, second, nanos)?
    };
    Some((time, i))
}

/// The zone from `at` to the end: nothing, `Z`/`z`, `UTC`, or `±HH[[:]MM]`, optionally after one space.
/// Returns the offset east of UTC in seconds.
fn parse_zone(bytes: &[u8], at: usize) -> Option<i32> {
    let mut zone = bytes.get(at..)?;
    if let Some(rest) = zone.strip_prefix(b" ") {
        if rest.is_empty() {
            return None;
        }
        zone = rest;
    }
    match zone {
        [] | [b'Z' | b'z'] | [b'U', b'T', b'C'] => Some(0),
        [sign @ (b'+' | b'-'), rest @ ..] => {
            let (hours, minutes) = match rest.len() {
                2 => (digits(rest, 0, 2)?, 0),
                4 => (digits(rest, 0, 2)?, digits(rest, 2, 2)?),
                5 if rest[2] == b':' => (digits(rest, 0, 2)?, digits(rest, 3, 2)?),
                _ => return None,
            };
            if hours > 23 || minutes > 59 {
                return None;
            }
            let seconds = i32::try_from(hours * 3600 + minutes * 60).ok()?;
            Some(if *sign == b'-' { -seconds } else { seconds })
        }
        _ => None,
    }
}

fn to_utc(naive: NaiveDateTime, offset_seconds: i32) -> Option<DateTime<Utc>> {
    if offset_seconds == 0 {
        return Some(naive.and_utc());
    }
    let offset = FixedOffset::east_opt(offset_seconds)?;
    offset
        .from_local_datetime(&naive)
        .single()
        .map(|time| time.with_timezone(&Utc))
}

const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// Common Log Format: `DD/Mon/YYYY:HH:MM:SS[ ±HHMM]`.
fn parse_clf(bytes: &[u8]) -> Option<DateTime<Utc>> {
    let day = digits(bytes, 0, 2)?;
    expect(bytes, 2, b'/')?;
    let month_name = bytes.get(3..6)?;
    let month = MONTHS
        .iter()
        .position(|name| name.eq_ignore_ascii_case(month_name))?;
    expect(bytes, 6, b'/')?;
    let year = digits(bytes, 7, 4)?;
    expect(bytes, 11, b':')?;
    let date = NaiveDate::from_ymd_opt(
        i32::try_from(year).ok()?,
        u32::try_from(month).ok()? + 1,
        day,
    )?;
    let (time, at) = parse_clock(bytes, 12)?;
    let offset_seconds = parse_zone(bytes, at)?;
    to_utc(NaiveDateTime::new(date, time), offset_seconds)
}

#[cfg(test)]
mod tests {
    use chrono::Timelike;

    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("test literal is RFC 3339")
            .with_timezone(&Utc)
    }

    #[test]
    fn rfc3339_with_a_zone_is_read_in_utc() {
        assert_eq!(
            parse_timestamp("2024-01-15T10:00:00Z"),
            Some(utc("2024-01-15T10:00:00Z"))
        );
        assert_eq!(
            parse_timestamp("2024-01-15T12:00:00+02:00"),
            Some(utc("2024-01-15T10:00:00Z"))
        );
        assert_eq!(
            parse_timestamp("2024-01-15T05:30:00-04:30"),
            Some(utc("2024-01-15T10:00:00Z"))
        );
        assert_eq!(
            parse_timestamp("2024-01-15t10:00:00z"),
            Some(utc("2024-01-15T10:00:00Z"))
        );
    }

    #[test]
    fn fractions_are_kept_to_the_nanosecond() {
        let time = parse_timestamp("2024-01-15T10:00:00.123456789Z").expect("parses");
        assert_eq!(time.nanosecond(), 123_456_789);
        let time = parse_timestamp("2024-01-15T10:00:00.5").expect("parses");
        assert_eq!(time.nanosecond(), 500_000_000);
        let time = parse_timestamp("2024-01-15 10:00:00,25").expect("parses");
        assert_eq!(time.nanosecond(), 250_000_000);
        let time = parse_timestamp("2024-01-15T10:00:00.1234567891234Z").expect("parses");
        assert_eq!(time.nanosecond(), 123_456_789);
    }

    #[test]
    fn naive_times_are_utc() {
        for text in [
            "2024-01-15T10:00:00",
            "2024-01-15 10:00:00",
            "2024-01-15 10:00",
            "2024-01-15 10:00:00 UTC",
            "2024-01-15 10:00:00 +0000",
            "2024-01-15T10:00:00+00",
        ] {
            assert_eq!(
                parse_timestamp(text),
                Some(utc("2024-01-15T10:00:00Z")),
                "{text}"
            );
        }
    }

    #[test]
    fn compact_offsets_are_accepted() {
        assert_eq!(
            parse_timestamp("2024-01-15T11:00:00+0100"),
            Some(utc("2024-01-15T10:00:00Z"))
        );
        assert_eq!(
            parse_timestamp("2024-01-15T11:00:00+01"),
            Some(utc("2024-01-15T10:00:00Z"))
        );
    }

    #[test]
    fn a_date_alone_is_midnight_utc() {
        assert_eq!(
            parse_timestamp("2024-01-15"),
            Some(utc("2024-01-15T00:00:00Z"))
        );
    }

    #[test]
    fn common_log_format_and_rfc2822_are_accepted() {
        assert_eq!(
            parse_timestamp("15/Jan/2024:12:00:00 +0200"),
            Some(utc("2024-01-15T10:00:00Z"))
        );
        assert_eq!(
            parse_timestamp("Mon, 15 Jan 2024 10:00:00 +0000"),
            Some(utc("2024-01-15T10:00:00Z"))
        );
    }

    #[test]
    fn a_leap_second_is_accepted() {
        let time = parse_timestamp("2016-12-31T23:59:60Z").expect("parses");
        assert_eq!(time.second(), 59);
        assert!(time.nanosecond() >= 1_000_000_000);
    }

    #[test]
    fn invalid_dates_and_times_are_refused() {
        for text in [
            "2024-13-01T00:00:00Z",
            "2024-02-30",
            "2024-01-15T24:00:00Z",
            "2024-01-15T10:61:00Z",
            "2024-01-15T10:00:00+24:00",
            "2024-01-15T10:00:00.Z",
            "2024-01-15X10:00:00",
            "2024-01-15T10:00:00ZZ",
            "2024-01-1",
            "2024/01/15",
            "15/Foo/2024:10:00:00 +0000",
            "yesterday",
            "-2024-01-15",
            "",
        ] {
            assert_eq!(parse_timestamp(text), None, "{text:?}");
        }
    }

    #[test]
    fn epoch_units_are_chosen_by_magnitude() {
        let expected = Some(utc("2024-01-15T10:00:00Z"));
        assert_eq!(from_epoch(1_705_312_800.0), expected);
        assert_eq!(from_epoch(1_705_312_800_000.0), expected);
        assert_eq!(from_epoch(1_705_312_800_000_000.0), expected);
        assert_eq!(from_epoch(1_705_312_800_000_000_000.0), expected);
        assert_eq!(
            from_epoch(1_705_312_800.5),
            Some(utc("2024-01-15T10:00:00.5Z"))
        );
        assert_eq!(parse_timestamp("1705312800"), expected);
        assert_eq!(
            parse_timestamp("1705312800123").map(|t| t.timestamp_subsec_millis()),
            Some(123)
        );
    }

    #[test]
    fn small_negative_and_huge_epochs_are_not_times() {
        for value in [
            0.0,
            12.0,
            99_999_999.0,
            -1_705_312_800.0,
            1e20,
            f64::NAN,
            f64::INFINITY,
        ] {
            assert_eq!(from_epoch(value), None, "{value}");
        }
        assert_eq!(parse_timestamp("12"), None);
        assert_eq!(parse_timestamp("1705312800.5.5"), None);
        assert_eq!(parse_timestamp("17053x2800"), None);
    }
}
