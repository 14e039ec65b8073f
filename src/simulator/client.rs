//! The HTTP side: post one batch to the ingest endpoint, retrying what may succeed on a second try,
//! and read back one judgement per log; and GET the service's other endpoints as JSON (the alert
//! drill reads `/api/v1/models` and `/api/v1/alerts`).
//!
//! Retries follow the service's own alert delivery (STYLE.md §7, after vector's
//! `RetryStrategy::Default`): connection errors, timeouts, 408, 429 and 5xx other than 501 are
//! retried with capped exponential backoff and jitter; any other status is final.

use std::future::Future;
use std::time::Duration;

use rand::Rng;
use reqwest::{StatusCode, Url};
use serde::Serialize;
use serde_json::Value;

use crate::parse::RawLog;
use crate::simulator::generate::GeneratedLog;

/// The contract's ingest body (`tags` omitted).
#[derive(Debug, Serialize)]
struct IngestBody<'a> {
    logs: &'a [RawLog],
}

/// The same body, of generated logs.
#[derive(Serialize)]
struct GeneratedBody<'a> {
    logs: WireLogs<'a>,
}

/// What the service said about one log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judgement {
    pub is_anomaly: bool,
    /// `"rule"`, `"model"`, or `None` (the original never said).
    pub detector: Option<String>,
    /// Why the service could not judge the log.
    pub error: Option<String>,
}

/// The end of one batch's delivery, after any retries.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchDelivery {
    /// One judgement per log, in order; or why there are none.
    pub result: Result<Vec<Judgement>, String>,
    /// The final HTTP status; `None` when no response ever came.
    pub status: Option<u16>,
    pub retries: u32,
    pub connection_errors: u32,
}

/// One failed attempt that will be repeated.
#[derive(Debug, Clone)]
pub struct RetryNotice {
    /// 1-based number of the attempt that failed.
    pub attempt: u32,
    pub max_attempts: u32,
    pub error: String,
    pub delay: Duration,
}

/// Retry limits.
#[derive(Debug, Clone, Copy)]
pub struct SendRetryPolicy {
    /// Retries after the first attempt.
    pub retries: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for SendRetryPolicy {
    fn default() -> Self {
        Self {
            retries: 5,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
        }
    }
}

impl SendRetryPolicy {
    /// The pause before retry number `retry` (0-based): doubling from the initial backoff, capped,
    /// with ±25 % jitter so a fleet of simulators does not hammer a recovering service in step.
    pub fn delay(&self, retry: u32) -> Duration {
        let base = self
            .initial_backoff
            .saturating_mul(2u32.saturating_pow(retry))
            .min(self.max_backoff);
        base.mul_f64(rand::rng().random_range(0.75..1.25))
    }
}

/// A client for one ingest URL.
#[derive(Debug, Clone)]
pub struct IngestClient {
    http: reqwest::Client,
    url: Url,
    policy: SendRetryPolicy,
    /// `Authorization: Bearer <API_TOKEN>` for a service that requires it; marked sensitive so
    /// no debug output shows it.
    authorization: Option<reqwest::header::HeaderValue>,
}

/// One try's result: final (`Done`), or worth repeating.
enum Attempt<T> {
    Done(T),
    Retry { error: String, status: Option<u16> },
}

/// The end of a retried exchange.
struct Tries<T> {
    /// The final answer, or the last error and HTTP status when every attempt needed a retry.
    value: Result<T, (String, Option<u16>)>,
    retries: u32,
    connection_errors: u32,
}

/// Serializes generated logs as the wire logs they carry, without copying them.
struct WireLogs<'a>(&'a [GeneratedLog]);

impl Serialize for WireLogs<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(|generated| &generated.log))
    }
}

impl IngestClient {
    /// A client posting to `url`, giving each request `timeout`.
    ///
    /// # Errors
    /// When the HTTP client cannot be built (no TLS backend).
    pub fn new(url: Url, timeout: Duration, policy: SendRetryPolicy) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("log-simulator/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            http,
            url,
            policy,
            authorization: None,
        })
    }

    /// Sends `token` as `Authorization: Bearer <token>` with every request (the service's
    /// `API_TOKEN`).
    ///
    /// # Errors
    /// When the token cannot travel in a header (control characters).
    pub fn with_token(mut self, token: Option<&str>) -> anyhow::Result<Self> {
        self.authorization = match token {
            None => None,
            Some(token) => {
                let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
                    .map_err(|_| {
                        anyhow::anyhow!("the API token holds characters a header cannot carry")
                    })?;
                value.set_sensitive(true);
                Some(value)
            }
        };
        Ok(self)
    }

    /// The endpoint.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// Posts `logs` and waits for the judgements, retrying as the policy allows; calls `on_retry`
    /// before each pause. Never fails: an undeliverable batch is an outcome like any other.
    pub async fn send(&self, logs: &[RawLog], on_retry: impl FnMut(&RetryNotice)) -> BatchDelivery {
        self.post_logs(&IngestBody { logs }, logs.len(), on_retry)
            .await
    }

    /// [`Self::send`] for generated logs: posts the wire log of each, in order.
    pub async fn send_generated(
        &self,
        logs: &[GeneratedLog],
        on_retry: impl FnMut(&RetryNotice),
    ) -> BatchDelivery {
        let body = GeneratedBody {
            logs: WireLogs(logs),
        };
        self.post_logs(&body, logs.len(), on_retry).await
    }

    async fn post_logs(
        &self,
        body: &impl Serialize,
        expected: usize,
        on_retry: impl FnMut(&RetryNotice),
    ) -> BatchDelivery {
        let tries = self
            .with_retries(&self.url, || self.attempt(body, expected), on_retry)
            .await;
        match tries.value {
            Ok(mut outcome) => {
                outcome.retries = tries.retries;
                outcome.connection_errors = tries.connection_errors;
                outcome
            }
            Err((error, status)) => BatchDelivery {
                result: Err(error),
                status,
                retries: tries.retries,
                connection_errors: tries.connection_errors,
            },
        }
    }

    /// GETs `url` (another endpoint of the same service) and parses its JSON body, retrying as
    /// the policy allows.
    ///
    /// # Errors
    /// The service could not be reached after the retries, answered a status that is not 2xx, or
    /// a body that is not JSON; the message names the URL.
    pub async fn get_json(
        &self,
        url: &Url,
        on_retry: impl FnMut(&RetryNotice),
    ) -> Result<Value, String> {
        let tries = self
            .with_retries(url, || self.get_once(url), on_retry)
            .await;
        match tries.value {
            Ok(result) => result.map_err(|error| format!("GET {url}: {error}")),
            Err((error, None)) => Err(error),
            Err((error, Some(_))) => Err(format!("GET {url}: {error}")),
        }
    }

    async fn get_once(&self, url: &Url) -> Attempt<Result<Value, String>> {
        let (status, text) = match self.exchange(self.http.get(url.clone())).await {
            Ok(answer) => answer,
            Err(retry) => return retry,
        };
        if !status.is_success() {
            return Attempt::Done(Err(format!("HTTP {}: {}", status.as_u16(), excerpt(&text))));
        }
        Attempt::Done(
            serde_json::from_str(&text)
                .map_err(|error| format!("the response is not JSON ({error}): {}", excerpt(&text))),
        )
    }

    /// Runs `attempt` (a request to `url`) until it is done or the policy's retries are spent.
    async fn with_retries<T, F>(
        &self,
        url: &Url,
        mut attempt: impl FnMut() -> F,
        mut on_retry: impl FnMut(&RetryNotice),
    ) -> Tries<T>
    where
        F: Future<Output = Attempt<T>>,
    {
        let max_attempts = self.policy.retries + 1;
        let mut connection_errors = 0;
        let mut tried = 0;
        loop {
            tried += 1;
            let (error, status) = match attempt().await {
                Attempt::Done(value) => {
                    return Tries {
                        value: Ok(value),
                        retries: tried - 1,
                        connection_errors,
                    };
                }
                Attempt::Retry { error, status } => (error, status),
            };
            if status.is_none() {
                connection_errors += 1;
            }
            if tried >= max_attempts {
                let error = if status.is_none() {
                    format!("could not reach {url}: {error}")
                } else {
                    error
                };
                return Tries {
                    value: Err((error, status)),
                    retries: tried - 1,
                    connection_errors,
                };
            }
            let delay = self.policy.delay(tried - 1);
            on_retry(&RetryNotice {
                attempt: tried,
                max_attempts,
                error,
                delay,
            });
            tokio::time::sleep(delay).await;
        }
    }

    /// Sends one request and reads its body; a transport failure or a retryable status is a
    /// [`Attempt::Retry`].
    async fn exchange<T>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<(StatusCode, String), Attempt<T>> {
        let request = match &self.authorization {
            Some(value) => request.header(reqwest::header::AUTHORIZATION, value.clone()),
            None => request,
        };
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => {
                return Err(Attempt::Retry {
                    error: describe(&error),
                    status: None,
                });
            }
        };
        let status = response.status();
        let text = match response.text().await {
            Ok(text) => text,
            Err(error) => {
                return Err(Attempt::Retry {
                    error: format!("reading the response: {}", describe(&error)),
                    status: None,
                });
            }
        };
        if !status.is_success() && is_retryable(status) {
            return Err(Attempt::Retry {
                error: format!("HTTP {}: {}", status.as_u16(), excerpt(&text)),
                status: Some(status.as_u16()),
            });
        }
        Ok((status, text))
    }

    async fn attempt(&self, body: &impl Serialize, expected: usize) -> Attempt<BatchDelivery> {
        let request = self.http.post(self.url.clone()).json(body);
        let (status, text) = match self.exchange(request).await {
            Ok(answer) => answer,
            Err(retry) => return retry,
        };
        if !status.is_success() {
            return Attempt::Done(BatchDelivery {
                result: Err(format!("HTTP {}: {}", status.as_u16(), excerpt(&text))),
                status: Some(status.as_u16()),
                retries: 0,
                connection_errors: 0,
            });
        }
        Attempt::Done(BatchDelivery {
            result: parse_judgements(&text, expected),
            status: Some(status.as_u16()),
            retries: 0,
            connection_errors: 0,
        })
    }
}

/// The ingest endpoint's path, which [`endpoint`] replaces to reach the service's other endpoints.
pub const INGEST_PATH: &str = "/api/v1/stream/multi-source";

/// The URL of another endpoint of the service behind `ingest`: `path` (e.g. `/api/v1/alerts`)
/// in place of the ingest path, so a service behind a path prefix
/// (`https://host/aioops/api/v1/stream/multi-source`) keeps its prefix. Query and fragment are
/// dropped.
pub fn endpoint(ingest: &Url, path: &str) -> Url {
    let mut url = ingest.clone();
    let prefix = ingest
        .path()
        .strip_suffix(INGEST_PATH)
        .unwrap_or_default()
        .to_owned();
    url.set_path(&format!("{prefix}{path}"));
    url.set_query(None);
    url.set_fragment(None);
    url
}

fn is_retryable(status: StatusCode) -> bool {
    status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || (status.is_server_error() && status != StatusCode::NOT_IMPLEMENTED)
}

/// The error and its causes on one line (reqwest's top-level message alone says little).
fn describe(error: &reqwest::Error) -> String {
    let mut text = if error.is_timeout() {
        "timed out".to_owned()
    } else if error.is_connect() {
        "connection failed".to_owned()
    } else {
        error.to_string()
    };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

fn excerpt(text: &str) -> String {
    const MAX: usize = 200;
    let text = text.trim();
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// Reads `[{"is_anomaly": 0|1, "detector"?, "error"?, …}, …]`: the contract's shape, and the
/// original's (which had only `score` and `is_anomaly`).
///
/// # Errors
/// A body that is not such a list, or a list whose length differs from the batch's: the original
/// returned one result per *distinct* log, and results that do not line up cannot be scored.
pub fn parse_judgements(text: &str, expected: usize) -> Result<Vec<Judgement>, String> {
    let value: Value = serde_json::from_str(text)
        .map_err(|error| format!("the response is not JSON ({error}): {}", excerpt(text)))?;
    let items = value
        .as_array()
        .ok_or_else(|| format!("the response is not a list: {}", excerpt(text)))?;
    if items.len() != expected {
        return Err(format!(
            "the service answered {} results for {expected} logs, so they cannot be matched",
            items.len()
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let is_anomaly = match item.get("is_anomaly") {
                Some(Value::Bool(b)) => *b,
                Some(Value::Number(n)) => n.as_f64().is_some_and(|x| x != 0.0),
                _ => return Err(format!("result {i} has no is_anomaly: {item}")),
            };
            let text_field = |key: &str| item.get(key).and_then(Value::as_str).map(str::to_owned);
            Ok(Judgement {
                is_anomaly,
                detector: text_field("detector"),
                error: text_field("error"),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_contracts_and_the_originals_shapes_both_parse() {
        let ours = r#"[{"score":-0.1,"is_anomaly":1,"service":"db","detector":"model","violations":[],"error":null},
                      {"score":null,"is_anomaly":0,"detector":null,"error":"bad JSON"}]"#;
        let parsed = parse_judgements(ours, 2).expect("parses");
        assert_eq!(
            parsed[0],
            Judgement {
                is_anomaly: true,
                detector: Some("model".into()),
                error: None
            }
        );
        assert_eq!(parsed[1].error.as_deref(), Some("bad JSON"));
        let original = r#"[{"score":1.0,"is_anomaly":1},{"score":0.0,"is_anomaly":0}]"#;
        let parsed = parse_judgements(original, 2).expect("parses");
        assert!(parsed[0].is_anomaly && !parsed[1].is_anomaly);
    }

    #[test]
    fn results_that_do_not_line_up_are_an_error() {
        let error = parse_judgements(r#"[{"is_anomaly":0}]"#, 3).expect_err("short");
        assert!(error.contains("1 results for 3 logs"), "{error}");
        assert!(parse_judgements(r#"{"detail":"x"}"#, 1).is_err());
        assert!(parse_judgements("<html>", 1).is_err());
        assert!(parse_judgements(r#"[{"score":0.5}]"#, 1).is_err());
    }

    #[test]
    fn retryable_statuses_are_the_transient_ones() {
        for code in [408, 429, 500, 502, 503, 504] {
            assert!(
                is_retryable(StatusCode::from_u16(code).expect("code")),
                "{code}"
            );
        }
        for code in [400, 404, 413, 422, 501] {
            assert!(
                !is_retryable(StatusCode::from_u16(code).expect("code")),
                "{code}"
            );
        }
    }

    #[test]
    fn backoff_doubles_up_to_its_cap_with_bounded_jitter() {
        let policy = SendRetryPolicy {
            retries: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
        };
        for (retry, base_ms) in [(0, 100.0), (1, 200.0), (2, 400.0), (3, 800.0), (6, 1000.0)] {
            let ms = policy.delay(retry).as_secs_f64() * 1000.0;
            assert!(
                (base_ms * 0.75..=base_ms * 1.25).contains(&ms),
                "retry {retry}: {ms}"
            );
        }
    }

    #[test]
    fn other_endpoints_keep_the_host_and_any_path_prefix() {
        let url = |text: &str| Url::parse(text).expect("URL");
        assert_eq!(
            endpoint(
                &url("http://127.0.0.1:8000/api/v1/stream/multi-source"),
                "/api/v1/alerts"
            )
            .as_str(),
            "http://127.0.0.1:8000/api/v1/alerts"
        );
        assert_eq!(
            endpoint(
                &url("https://ops.example/aioops/api/v1/stream/multi-source?x=1"),
                "/api/v1/models"
            )
            .as_str(),
            "https://ops.example/aioops/api/v1/models"
        );
        assert_eq!(
            endpoint(&url("http://h:1/ingest"), "/api/v1/alerts").as_str(),
            "http://h:1/api/v1/alerts"
        );
    }

    #[test]
    fn generated_logs_go_on_the_wire_as_the_logs_they_carry() {
        let logs: Vec<GeneratedLog> = crate::simulator::generate::Generator::new(
            crate::simulator::generate::GeneratorConfig {
                seed: 3,
                services: crate::simulator::generate::ServiceKind::ALL.to_vec(),
                anomaly_ratio: 0.2,
                warmup_per_service: 0,
                start: chrono::Utc::now(),
                step: chrono::TimeDelta::milliseconds(1),
                only_kind: None,
            },
        )
        .take(20)
        .collect();
        let raw: Vec<RawLog> = logs.iter().map(|g| g.log.clone()).collect();
        let generated = serde_json::to_string(&GeneratedBody {
            logs: WireLogs(&logs),
        })
        .expect("serializes");
        let plain = serde_json::to_string(&IngestBody { logs: &raw }).expect("serializes");
        assert_eq!(generated, plain);
    }

    #[test]
    fn long_bodies_are_cut_in_messages() {
        let long = "é".repeat(500);
        let cut = excerpt(&long);
        assert_eq!(cut.chars().count(), 201);
    }
}
