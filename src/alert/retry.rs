//! Delivery with retries: what each response means, how long to wait, when to give up.
//!
//! Follows Vector's `RetryStrategy::Default` (`sinks/util/http.rs`, `retries.rs`): 2xx is done;
//! 408, 429 and 5xx except 501, timeouts and connection errors are retried with capped
//! exponential backoff and jitter, honouring `Retry-After` (RFC 9110 §10.2.3: seconds or an
//! HTTP-date); every other status is final and not retried. Attempts are budgeted per
//! notification (`ALERT_MAX_ATTEMPTS`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};

/// How a delivery is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub initial: Duration,
    /// Caps the backoff and any `Retry-After`.
    pub max: Duration,
    pub max_attempts: u32,
}

impl RetryPolicy {
    /// The delay before attempt `attempt + 1`, after `attempt` failures (1-based): the capped
    /// exponential `initial × 2^(attempt-1)`, with "equal jitter" (half fixed, half random) so
    /// that many services retrying after one outage spread out.
    pub fn backoff(&self, attempt: u32, rng: &mut impl Rng) -> Duration {
        let exponent = attempt.saturating_sub(1).min(30);
        let capped = self.initial.saturating_mul(1u32 << exponent).min(self.max);
        let half = capped / 2;
        let jitter = rng.random_range(0.0..=1.0);
        half + half.mul_f64(jitter)
    }

    /// The delay to wait after a failure: the server's `Retry-After` when it gave one (capped),
    /// else the backoff.
    pub fn delay(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        rng: &mut impl Rng,
    ) -> Duration {
        match retry_after {
            Some(wait) => wait.min(self.max),
            None => self.backoff(attempt, rng),
        }
    }
}

/// What one HTTP answer means for the delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryVerdict {
    Delivered,
    /// Worth another try, after the server's `Retry-After` when it sent one.
    Retry {
        retry_after: Option<Duration>,
    },
    /// The receiver refused the request itself; sending it again cannot help.
    Reject,
}

/// Classifies a response status, reading `Retry-After` from `headers`.
pub fn classify(status: StatusCode, headers: &HeaderMap, now: DateTime<Utc>) -> DeliveryVerdict {
    if status.is_success() {
        return DeliveryVerdict::Delivered;
    }
    let retryable = status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
        || (status.is_server_error() && status != StatusCode::NOT_IMPLEMENTED);
    if retryable {
        let retry_after = headers
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| parse_retry_after(value, now));
        DeliveryVerdict::Retry { retry_after }
    } else {
        DeliveryVerdict::Reject
    }
}

/// `Retry-After`: delay-seconds or an HTTP-date (a date in the past means "now").
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    // IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT") is RFC 2822 with a GMT zone.
    let date = DateTime::parse_from_rfc2822(value)
        .ok()?
        .with_timezone(&Utc);
    Some(
        date.signed_duration_since(now)
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}

/// A transport failure as text that is safe to log and store: no URL (reqwest puts it in its
/// messages), and every secret in `secrets` masked in case a lower layer echoed one.
pub fn describe_error(error: reqwest::Error, secrets: &[&str]) -> String {
    let kind = if error.is_timeout() {
        "timeout"
    } else if error.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let error = error.without_url();
    let mut text = format!("{kind}: {error}");
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    redact(&text, secrets)
}

/// Masks each secret (and its URL path, which is where Slack's token lives) in `text`.
pub fn redact(text: &str, secrets: &[&str]) -> String {
    let mut text = text.to_owned();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        text = text.replace(secret, "<redacted>");
        if let Ok(url) = reqwest::Url::parse(secret) {
            let path = url.path();
            if path.len() > 1 {
                text = text.replace(path, "/<redacted>");
            }
            if let Some(query) = url.query() {
                text = text.replace(query, "<redacted>");
            }
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use reqwest::header::HeaderValue;

    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
            max_attempts: 5,
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-01T12:00:00Z")
            .expect("literal")
            .with_timezone(&Utc)
    }

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let mut rng = StdRng::seed_from_u64(42);
        let policy = policy();
        for (attempt, full) in [
            (1, 100),
            (2, 200),
            (3, 400),
            (4, 800),
            (5, 1000),
            (40, 1000),
        ] {
            for _ in 0..50 {
                let delay = policy.backoff(attempt, &mut rng);
                let full = Duration::from_millis(full);
                assert!(delay >= full / 2 && delay <= full, "{attempt}: {delay:?}");
            }
        }
        // Jitter spreads retries: not every draw is the same.
        let draws: std::collections::BTreeSet<_> =
            (0..20).map(|_| policy.backoff(3, &mut rng)).collect();
        assert!(draws.len() > 10);
    }

    #[test]
    fn retry_after_wins_over_backoff_but_is_capped() {
        let mut rng = StdRng::seed_from_u64(1);
        let policy = policy();
        assert_eq!(
            policy.delay(1, Some(Duration::from_millis(700)), &mut rng),
            Duration::from_millis(700)
        );
        assert_eq!(
            policy.delay(1, Some(Duration::from_secs(3600)), &mut rng),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn statuses_are_classified_as_vector_does() {
        let none = HeaderMap::new();
        let at = now();
        assert_eq!(
            classify(StatusCode::OK, &none, at),
            DeliveryVerdict::Delivered
        );
        assert_eq!(
            classify(StatusCode::ACCEPTED, &none, at),
            DeliveryVerdict::Delivered
        );
        for retried in [429, 408, 500, 502, 503, 504] {
            let status = StatusCode::from_u16(retried).expect("status");
            assert_eq!(
                classify(status, &none, at),
                DeliveryVerdict::Retry { retry_after: None },
                "{retried}"
            );
        }
        for final_status in [400, 401, 403, 404, 413, 422, 501, 301] {
            let status = StatusCode::from_u16(final_status).expect("status");
            assert_eq!(
                classify(status, &none, at),
                DeliveryVerdict::Reject,
                "{final_status}"
            );
        }
    }

    #[test]
    fn retry_after_is_read_as_seconds_or_an_http_date() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("3"));
        assert_eq!(
            classify(StatusCode::TOO_MANY_REQUESTS, &headers, now()),
            DeliveryVerdict::Retry {
                retry_after: Some(Duration::from_secs(3))
            }
        );
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 2026 12:00:30 GMT", now()),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 31 Dec 2025 12:00:00 GMT", now()),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now()), None);
        assert_eq!(parse_retry_after("-5", now()), None);
    }

    #[test]
    fn redaction_masks_the_secret_and_its_path() {
        let url = "https://hooks.slack.com/services/T000/B000/XXXXSECRET";
        let text = format!("error sending request for url ({url})");
        let masked = redact(&text, &[url, "R0UTINGKEY"]);
        assert!(!masked.contains("XXXXSECRET"), "{masked}");
        let masked = redact(
            "bad key R0UTINGKEY; /services/T000/B000/XXXXSECRET",
            &[url, "R0UTINGKEY"],
        );
        assert!(!masked.contains("R0UTINGKEY"), "{masked}");
        assert!(!masked.contains("XXXXSECRET"), "{masked}");
    }

    #[tokio::test]
    async fn transport_errors_never_carry_the_url() {
        // Nothing listens on port 9 of the loopback: the connection is refused.
        let url = "http://127.0.0.1:9/hooks/SECRET-TOKEN?key=SECRET-KEY";
        let error = reqwest::Client::new()
            .post(url)
            .send()
            .await
            .expect_err("connection refused");
        let text = describe_error(error, &[url]);
        assert!(text.starts_with("connection failed"), "{text}");
        assert!(!text.contains("SECRET"), "{text}");
    }
}
