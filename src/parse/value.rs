//! Numbers with units: the one place a text value becomes a numeric feature.
//!
//! Every format funnels its text values through [`parse_quantity`]: `"1.5s"` is 1500 (milliseconds),
//! `"2KiB"` is 2048 (bytes), `"93%"` is 93. The full table, with the case rules and what is refused, is in
//! `docs/units.md`; keep the two in step.
//!
//! I scan the number myself instead of handing the string to `f64::from_str`, because that also accepts
//! `inf`, `NaN` and `infinity`, which are words, not measurements. The whole string must be one quantity:
//! `"2024-01-15"` is not 2024 (the original's bug, CONTRACT "Do better").

/// How a unit turns its number into the base unit. Division keeps `1500us` exactly `1.5` (ms), which
/// multiplying by an inexact `0.001` would not.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Scale {
    Mul(f64),
    Div(f64),
}

impl Scale {
    fn apply(self, value: f64) -> f64 {
        match self {
            Scale::Mul(factor) => value * factor,
            Scale::Div(divisor) => value / divisor,
        }
    }
}

/// Duration units, case-sensitive (Go's `time.ParseDuration` spelling), to milliseconds.
fn duration_scale(unit: &str) -> Option<Scale> {
    Some(match unit {
        "ns" => Scale::Div(1e6),
        // Both the micro sign (U+00B5) and the Greek letter mu (U+03BC) appear in the wild.
        "us" | "\u{b5}s" | "\u{3bc}s" => Scale::Div(1e3),
        "ms" => Scale::Mul(1.0),
        "s" => Scale::Mul(1e3),
        "m" | "min" => Scale::Mul(60e3),
        "h" => Scale::Mul(3_600e3),
        "d" => Scale::Mul(86_400e3),
        _ => return None,
    })
}

/// Size units, ASCII case-insensitive, to bytes: SI prefixes are powers of 1000, IEC ones (`KiB`, and
/// Kubernetes' `Ki`) powers of 1024.
const SIZE_UNITS: [(&str, f64); 16] = [
    ("b", 1.0),
    ("kb", 1e3),
    ("mb", 1e6),
    ("gb", 1e9),
    ("tb", 1e12),
    ("pb", 1e15),
    ("kib", 1024.0),
    ("mib", 1_048_576.0),
    ("gib", 1_073_741_824.0),
    ("tib", 1_099_511_627_776.0),
    ("pib", 1_125_899_906_842_624.0),
    ("ki", 1024.0),
    ("mi", 1_048_576.0),
    ("gi", 1_073_741_824.0),
    ("ti", 1_099_511_627_776.0),
    ("pi", 1_125_899_906_842_624.0),
];

fn size_scale(unit: &str) -> Option<Scale> {
    // Every size unit is ASCII and at most 3 bytes long; this early return keeps the scan off long words.
    if unit.len() > 3 {
        return None;
    }
    SIZE_UNITS
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(unit))
        .map(|&(_, factor)| Scale::Mul(factor))
}

fn unit_scale(unit: &str) -> Option<Scale> {
    if unit == "%" {
        return Some(Scale::Mul(1.0));
    }
    duration_scale(unit).or_else(|| size_scale(unit))
}

/// Splits a leading decimal number (`-12`, `+3.5`, `.5`, `5.`, `1e-3`) off `text`; returns its length in
/// bytes, or `None` when `text` does not start with one.
fn number_len(text: &[u8]) -> Option<usize> {
    let mut i = 0;
    if matches!(text.first(), Some(b'+' | b'-')) {
        i += 1;
    }
    let int_start = i;
    while text.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    let mut digits = i - int_start;
    if text.get(i) == Some(&b'.') {
        let frac_start = i + 1;
        let mut j = frac_start;
        while text.get(j).is_some_and(u8::is_ascii_digit) {
            j += 1;
        }
        digits += j - frac_start;
        i = j;
    }
    if digits == 0 {
        return None;
    }
    // An exponent counts only when digits follow it; otherwise the `e` is left for the unit (and fails there).
    if matches!(text.get(i), Some(b'e' | b'E')) {
        let mut j = i + 1;
        if matches!(text.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        let exp_start = j;
        while text.get(j).is_some_and(u8::is_ascii_digit) {
            j += 1;
        }
        if j > exp_start {
            i = j;
        }
    }
    Some(i)
}

/// Reads `text` as a number; the grammar has already been checked, so this only fails on nothing.
fn to_f64(text: &str) -> Option<f64> {
    text.parse::<f64>().ok()
}

/// Parses a whole string as one quantity, converted to its base unit: durations to milliseconds, sizes
/// to bytes, percentages as the number itself; a bare number is taken as is. Go-style compound
/// durations (`1h30m`, `2m3.5s`) add up.
///
/// Returns `None` for anything else (words, dates, versions, `1,000`, `inf`, an unknown unit, a value
/// that overflows `f64`), so the caller keeps the text as an attribute.
pub fn parse_quantity(text: &str) -> Option<f64> {
    let text = text.trim_ascii();
    let len = number_len(text.as_bytes())?;
    let value = to_f64(&text[..len])?;
    let rest = text[len..].trim_ascii_start();
    if rest.is_empty() {
        return value.is_finite().then_some(value);
    }
    let unit_len = rest
        .find(|c: char| c.is_ascii_digit() || c == '.')
        .unwrap_or(rest.len());
    let (unit, tail) = rest.split_at(unit_len);
    let total = if tail.is_empty() {
        unit_scale(unit)?.apply(value)
    } else {
        compound_duration(value, unit, tail)?
    };
    total.is_finite().then_some(total)
}

/// Sums `1h30m15.5s`: the first part is already split off; every further part is an unsigned number
/// followed by a duration unit, with no spaces.
fn compound_duration(first: f64, first_unit: &str, mut tail: &str) -> Option<f64> {
    let negative = first.is_sign_negative();
    let mut total = duration_scale(first_unit)?.apply(first);
    while !tail.is_empty() {
        let bytes = tail.as_bytes();
        if matches!(bytes.first(), Some(b'+' | b'-')) {
            return None;
        }
        let len = number_len(bytes)?;
        let part = to_f64(&tail[..len])?;
        let rest = &tail[len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scaled = duration_scale(&rest[..unit_len])?.apply(part);
        // `-1h30m` is minus ninety minutes, as in Go.
        total += if negative { -scaled } else { scaled };
        tail = &rest[unit_len..];
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(text: &str) -> Option<f64> {
        parse_quantity(text)
    }

    #[test]
    fn bare_numbers_are_taken_as_is() {
        assert_eq!(q("42"), Some(42.0));
        assert_eq!(q("-3.5"), Some(-3.5));
        assert_eq!(q("+7"), Some(7.0));
        assert_eq!(q(".5"), Some(0.5));
        assert_eq!(q("5."), Some(5.0));
        assert_eq!(q("1e3"), Some(1000.0));
        assert_eq!(q("2.5E-1"), Some(0.25));
        assert_eq!(q("  12  "), Some(12.0));
    }

    #[test]
    fn durations_become_milliseconds() {
        assert_eq!(q("1.5s"), Some(1500.0));
        assert_eq!(q("500ms"), Some(500.0));
        assert_eq!(q("1500us"), Some(1.5));
        assert_eq!(q("1500\u{b5}s"), Some(1.5));
        assert_eq!(q("1500\u{3bc}s"), Some(1.5));
        assert_eq!(q("2000000ns"), Some(2.0));
        assert_eq!(q("2m"), Some(120_000.0));
        assert_eq!(q("2min"), Some(120_000.0));
        assert_eq!(q("1h"), Some(3_600_000.0));
        assert_eq!(q("1d"), Some(86_400_000.0));
        assert_eq!(q("250 ms"), Some(250.0));
    }

    #[test]
    fn compound_durations_add_up() {
        assert_eq!(q("1h30m"), Some(5_400_000.0));
        assert_eq!(q("2m3.5s"), Some(123_500.0));
        assert_eq!(q("1s500ms"), Some(1500.0));
        assert_eq!(q("-1h30m"), Some(-5_400_000.0));
        assert_eq!(q("1h-30m"), None);
        assert_eq!(q("1KB30m"), None);
        assert_eq!(q("1h30"), None);
    }

    #[test]
    fn duration_units_are_case_sensitive() {
        assert_eq!(q("5MS"), None);
        assert_eq!(q("5S"), None);
        assert_eq!(q("5H"), None);
        assert_eq!(q("5Min"), None);
    }

    #[test]
    fn sizes_become_bytes_in_any_case() {
        assert_eq!(q("512B"), Some(512.0));
        assert_eq!(q("1KB"), Some(1000.0));
        assert_eq!(q("1kB"), Some(1000.0));
        assert_eq!(q("1kb"), Some(1000.0));
        assert_eq!(q("2KiB"), Some(2048.0));
        assert_eq!(q("1.5MB"), Some(1_500_000.0));
        assert_eq!(q("1MiB"), Some(1_048_576.0));
        assert_eq!(q("3GB"), Some(3e9));
        assert_eq!(q("1GiB"), Some(1_073_741_824.0));
        assert_eq!(q("2TB"), Some(2e12));
        assert_eq!(q("1TiB"), Some(1_099_511_627_776.0));
        assert_eq!(q("1PB"), Some(1e15));
        assert_eq!(q("256Mi"), Some(268_435_456.0));
        assert_eq!(q("4 GiB"), Some(4.0 * 1_073_741_824.0));
    }

    #[test]
    fn bare_size_prefixes_are_not_units() {
        // `10M` could as well be ten million requests; only byte-suffixed or IEC units count.
        assert_eq!(q("10M"), None);
        assert_eq!(q("10K"), None);
        assert_eq!(q("10G"), None);
    }

    #[test]
    fn percentages_are_the_number() {
        assert_eq!(q("93%"), Some(93.0));
        assert_eq!(q("0.5%"), Some(0.5));
        assert_eq!(q("93 %"), Some(93.0));
    }

    #[test]
    fn text_that_merely_starts_with_a_number_is_not_a_quantity() {
        for text in [
            "2024-01-15T10:00:00Z",
            "2024-01-15",
            "1.2.3",
            "1,000",
            "10 apples",
            "42abc",
            "5 m s",
            "0x1F",
            "1_000",
            "12:30",
        ] {
            assert_eq!(q(text), None, "{text}");
        }
    }

    #[test]
    fn words_and_special_floats_are_not_numbers() {
        for text in [
            "", " ", "inf", "-inf", "NaN", "infinity", "e5", ".", "-", "+", "ms", "%", "abc",
        ] {
            assert_eq!(q(text), None, "{text:?}");
        }
    }

    #[test]
    fn an_exponent_without_digits_is_left_to_fail_as_a_unit() {
        assert_eq!(q("1e"), None);
        assert_eq!(q("1e+"), None);
        assert_eq!(q("1Ei"), None);
    }

    #[test]
    fn overflow_is_refused_rather_than_infinite() {
        assert_eq!(q("1e309"), None);
        assert_eq!(q("1e308TB"), None);
        assert_eq!(q("1e300"), Some(1e300));
    }
}
