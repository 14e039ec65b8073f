//! How the service writes an instant: RFC 3339 in UTC, with a `Z`.
//!
//! Two precisions, each with one home: what people and receivers read (responses, alert
//! notifications, health) shows milliseconds; what the database stores keeps microseconds, the
//! finest a parsed log timestamp carries, so a stored anomaly reads back exactly as it was judged.

use chrono::{DateTime, SecondsFormat, Utc};

/// `2026-12-05T18:19:20.123Z`: responses, notifications, health.
pub(crate) fn millis(instant: &DateTime<Utc>) -> String {
    instant.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// `2026-12-05T18:19:20.123456Z`: every timestamp the database stores.
pub(crate) fn micros(instant: &DateTime<Utc>) -> String {
    instant.to_rfc3339_opts(SecondsFormat::Micros, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_precisions_are_utc_with_a_z() {
        let instant = DateTime::from_timestamp(1_764_958_760, 123_456_789).expect("valid");
        assert_eq!(millis(&instant), "2025-12-05T18:19:20.123Z");
        assert_eq!(micros(&instant), "2025-12-05T18:19:20.123456Z");
    }
}
