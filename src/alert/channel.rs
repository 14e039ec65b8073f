//! The channels an alert goes to (contract, "Detection semantics" 4) and the body each one gets.
//!
//! The set is fixed by the contract, so it is a closed enum: console (a tracing event, always on),
//! Slack incoming webhook, PagerDuty Events API v2, and a generic webhook in the original's shape
//! or Alertmanager's. Each variant holds its own target; [`Channel::body`] renders the vendor's
//! JSON from one [`Notification`], and `worker` does the HTTP and the retries for all of them.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::alert::lifecycle::{AlertRecord, AlertState, RateContext, Transition, TransitionKind};
use crate::rfc3339;

/// A value that must never reach a log line, an error or an API response (webhook URLs, routing keys).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// `GENERIC_WEBHOOK_FORMAT`: the body the generic webhook receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookFormat {
    /// The original's `{"alert_type","message","details"}` plus `status` and `fingerprint`.
    Native,
    /// Alertmanager's webhook JSON, version 4.
    Alertmanager,
}

/// Who sends: PagerDuty's `client`, Alertmanager's `receiver`, Slack's context line.
pub const SENDER: &str = "aioops-mcp-iforest";

/// PagerDuty rejects a `summary` longer than this (Events API v2, "payload.summary").
pub const PAGERDUTY_SUMMARY_MAX_CHARS: usize = 1024;
/// PagerDuty's limit on `source` and `component`.
pub const PAGERDUTY_FIELD_MAX_CHARS: usize = 255;
/// Slack: a `header` block's `plain_text` (150), a section's `text` (3000), a field (2000).
pub const SLACK_HEADER_MAX_CHARS: usize = 150;
pub const SLACK_TEXT_MAX_CHARS: usize = 3000;
pub const SLACK_FIELD_MAX_CHARS: usize = 2000;
/// Service names are request data; channels show at most this much of one.
const SERVICE_SHOWN_MAX_CHARS: usize = 200;
/// Alertmanager's "zero time" for an alert that has not ended.
const ALERTMANAGER_NO_END: &str = "0001-01-01T00:00:00Z";

/// One notification of one alert transition: what the outbox stores and every channel renders.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    pub kind: TransitionKind,
    pub alert: AlertRecord,
    pub anomaly_count_in_window: u32,
    pub created_at: DateTime<Utc>,
    /// The burst's window against its traffic (fired, repeated); absent in notifications stored
    /// by earlier versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<RateContext>,
}

impl Notification {
    /// The notification of `transition`, made at `created_at`.
    pub fn new(transition: &Transition, created_at: DateTime<Utc>) -> Self {
        Self {
            kind: transition.kind,
            alert: transition.alert.clone(),
            anomaly_count_in_window: transition.in_window,
            created_at,
            context: transition.context.clone(),
        }
    }

    /// `firing` (fired, repeated) or `resolved`.
    pub fn status(&self) -> AlertState {
        self.alert.state
    }

    fn is_resolved(&self) -> bool {
        self.alert.state == AlertState::Resolved
    }

    /// The rule in words: "at least 3 anomalies within 60 s".
    pub fn rule_violated(&self) -> String {
        format!(
            "at least {} anomalies within {} s",
            self.alert.threshold_count,
            seconds_text(self.alert.window_seconds)
        )
    }

    /// One sentence for humans (the native webhook's `message`, Slack's fallback text).
    pub fn message(&self) -> String {
        let service = truncate(&self.alert.service, SERVICE_SHOWN_MAX_CHARS);
        match self.kind {
            TransitionKind::Fired | TransitionKind::Repeated => match &self.context {
                Some(context) => {
                    let mut text = format!(
                        "High anomaly rate for service '{service}': {}.",
                        context.describe(&seconds_text(self.alert.window_seconds))
                    );
                    if let Some(top) = &context.top_reason {
                        text.push_str(&format!(
                            " Top reason: {} ({} of the last {}), e.g. {}.",
                            top.label, top.count, top.of, top.example
                        ));
                    }
                    text
                }
                None => format!(
                    "High anomaly rate for service '{service}': {} anomalies within {} s (rule: {}).",
                    self.anomaly_count_in_window,
                    seconds_text(self.alert.window_seconds),
                    self.rule_violated()
                ),
            },
            TransitionKind::Resolved => format!(
                "Resolved: anomaly rate for service '{service}' stayed below {} per {} s for a whole window ({} anomalies while firing).",
                self.alert.threshold_count,
                seconds_text(self.alert.window_seconds),
                self.alert.anomaly_count
            ),
        }
    }

    /// The contract's `details` (plus what helps a responder).
    pub fn details(&self) -> Value {
        let alert = &self.alert;
        json!({
            "service": alert.service,
            "rule_violated": self.rule_violated(),
            "anomaly_count_in_window": self.anomaly_count_in_window,
            "time_window_seconds": alert.window_seconds,
            "last_anomaly_timestamp": rfc3339::millis(&alert.last_anomaly_at),
            "threshold_count": alert.threshold_count,
            "alert_id": alert.id,
            "started_at": rfc3339::millis(&alert.started_at),
            "resolved_at": alert.resolved_at.as_ref().map(crate::rfc3339::millis),
            "anomaly_count": alert.anomaly_count,
            "bursts": alert.bursts,
            "logs_in_window": self.context.as_ref().map(|c| c.logs),
            "anomalies_in_window": self.context.as_ref().map(|c| c.anomalies),
            "expected_anomalies": self.context.as_ref().map(|c| c.expected),
            "probability": self.context.as_ref().map(|c| c.probability),
            "top_reason": self.context.as_ref().and_then(|c| c.top_reason.as_ref()),
        })
    }
}

fn seconds_text(seconds: f64) -> String {
    if seconds.fract() == 0.0 {
        format!("{seconds:.0}")
    } else {
        format!("{seconds}")
    }
}

/// At most `max_chars` characters, an ellipsis marking a cut.
pub fn truncate(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max_chars.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// Slack's mrkdwn control characters, escaped so a service name cannot inject `<!channel>`.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A destination for alerts.
#[derive(Debug, Clone)]
pub enum Channel {
    /// A tracing event; always on.
    Console,
    Slack {
        url: Secret,
    },
    PagerDuty {
        url: String,
        routing_key: Secret,
    },
    Webhook {
        url: Secret,
        format: WebhookFormat,
    },
}

impl Channel {
    /// The name stored with each delivery and shown by the API.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Console => "console",
            Self::Slack { .. } => "slack",
            Self::PagerDuty { .. } => "pagerduty",
            Self::Webhook { .. } => "webhook",
        }
    }

    /// Where the HTTP request goes; `None` for the console. Never log it.
    pub fn endpoint(&self) -> Option<&str> {
        match self {
            Self::Console => None,
            Self::Slack { url } | Self::Webhook { url, .. } => Some(url.expose()),
            Self::PagerDuty { url, .. } => Some(url),
        }
    }

    /// Values to mask in anything this channel's errors produce.
    pub fn secrets(&self) -> Vec<&str> {
        match self {
            Self::Console => Vec::new(),
            Self::Slack { url } | Self::Webhook { url, .. } => vec![url.expose()],
            Self::PagerDuty { routing_key, .. } => vec![routing_key.expose()],
        }
    }

    /// The request body for `notification`; `Value::Null` for the console.
    pub fn body(&self, notification: &Notification) -> Value {
        match self {
            Self::Console => Value::Null,
            Self::Slack { .. } => slack_body(notification),
            Self::PagerDuty { routing_key, .. } => {
                pagerduty_body(notification, routing_key.expose())
            }
            Self::Webhook {
                format: WebhookFormat::Native,
                ..
            } => webhook_body(notification),
            Self::Webhook {
                format: WebhookFormat::Alertmanager,
                ..
            } => alertmanager_body(notification),
        }
    }
}

/// Writes the notification as a tracing event (the console channel).
pub fn log_to_console(notification: &Notification) {
    let alert = &notification.alert;
    let message = notification.message();
    if notification.is_resolved() {
        tracing::info!(
            alert_id = alert.id,
            service = %alert.service,
            fingerprint = %alert.fingerprint,
            anomaly_count = alert.anomaly_count,
            "Alert resolved: {message}"
        );
    } else {
        tracing::warn!(
            alert_id = alert.id,
            service = %alert.service,
            fingerprint = %alert.fingerprint,
            anomaly_count_in_window = notification.anomaly_count_in_window,
            repeat = notification.kind == TransitionKind::Repeated,
            "Alert firing: {message}"
        );
    }
}

/// Slack incoming webhook: Block Kit `blocks`, a plain `text` fallback (notifications and
/// clients without blocks show it), and an attachment whose colour says firing (red) or
/// resolved (green). Every text is within Slack's per-block limits.
/// <https://api.slack.com/reference/block-kit/blocks>
pub fn slack_body(notification: &Notification) -> Value {
    let alert = &notification.alert;
    let service = slack_escape(&truncate(&alert.service, SERVICE_SHOWN_MAX_CHARS));
    let (emoji, title, color) = if notification.is_resolved() {
        (":white_check_mark:", "RESOLVED", "#2EB67D")
    } else {
        (":rotating_light:", "FIRING", "#E01E5A")
    };
    let header = truncate(
        &format!("{title}: high anomaly rate on {}", alert.service),
        SLACK_HEADER_MAX_CHARS,
    );
    let text = truncate(
        &format!("{emoji} {}", slack_escape(&notification.message())),
        SLACK_TEXT_MAX_CHARS,
    );
    let field = |label: &str, value: String| json!({"type": "mrkdwn", "text": truncate(&format!("*{label}*\n{value}"), SLACK_FIELD_MAX_CHARS)});
    let mut fields = vec![
        field("Service", service),
        field("Status", title.to_lowercase()),
        field(
            "Anomalies in window",
            format!(
                "{} (rule: {})",
                notification.anomaly_count_in_window,
                notification.rule_violated()
            ),
        ),
        field("Last anomaly", rfc3339::millis(&alert.last_anomaly_at)),
        field("Started", rfc3339::millis(&alert.started_at)),
        field("Anomalies while firing", alert.anomaly_count.to_string()),
    ];
    if let Some(resolved_at) = alert.resolved_at {
        fields.push(field("Resolved", rfc3339::millis(&resolved_at)));
    }
    json!({
        "text": text,
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": header, "emoji": true}},
            {"type": "section", "text": {"type": "mrkdwn", "text": text}},
        ],
        "attachments": [{
            "color": color,
            "fallback": text,
            "blocks": [
                {"type": "section", "fields": fields},
                {"type": "context", "elements": [{"type": "mrkdwn", "text": format!("{SENDER} · alert {} · `{}`", alert.id, alert.fingerprint)}]},
            ],
        }],
    })
}

/// PagerDuty Events API v2: `trigger` opens (or updates) the incident, `resolve` closes it;
/// both carry the same `dedup_key` per service and rule.
/// <https://developer.pagerduty.com/docs/events-api-v2/trigger-events/>
pub fn pagerduty_body(notification: &Notification, routing_key: &str) -> Value {
    let alert = &notification.alert;
    if notification.is_resolved() {
        // A resolve needs no payload (Events API v2, "Resolve events").
        return json!({
            "routing_key": routing_key,
            "event_action": "resolve",
            "dedup_key": alert.dedup_key(),
        });
    }
    json!({
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": alert.dedup_key(),
        "client": SENDER,
        "payload": {
            "summary": truncate(&notification.message(), PAGERDUTY_SUMMARY_MAX_CHARS),
            "source": truncate(&alert.service, PAGERDUTY_FIELD_MAX_CHARS),
            "severity": "error",
            "timestamp": rfc3339::millis(&notification.created_at),
            "component": truncate(&alert.service, PAGERDUTY_FIELD_MAX_CHARS),
            "group": SENDER,
            "class": alert.rule,
            "custom_details": notification.details(),
        },
    })
}

/// The contract's generic webhook body, plus `status` and a stable `fingerprint`.
pub fn webhook_body(notification: &Notification) -> Value {
    json!({
        "alert_type": notification.alert.rule,
        "message": notification.message(),
        "details": notification.details(),
        "status": notification.status().as_str(),
        "fingerprint": notification.alert.fingerprint,
    })
}

/// Alertmanager's webhook JSON, version 4, so existing Alertmanager receivers work unchanged.
/// <https://prometheus.io/docs/alerting/latest/configuration/#webhook_config>
pub fn alertmanager_body(notification: &Notification) -> Value {
    let alert = &notification.alert;
    let status = notification.status().as_str();
    let labels = json!({
        "alertname": alert.rule,
        "service": alert.service,
        "severity": "error",
    });
    let annotations = json!({
        "summary": format!("High anomaly rate on {}", truncate(&alert.service, SERVICE_SHOWN_MAX_CHARS)),
        "description": notification.message(),
        "anomaly_count_in_window": notification.anomaly_count_in_window.to_string(),
        "time_window_seconds": seconds_text(alert.window_seconds),
        "last_anomaly_timestamp": rfc3339::millis(&alert.last_anomaly_at),
    });
    let ends_at = alert
        .resolved_at
        .map_or_else(|| ALERTMANAGER_NO_END.to_owned(), |at| rfc3339::millis(&at));
    json!({
        "version": "4",
        "groupKey": format!("{{}}:{{alertname={:?}, service={:?}}}", alert.rule, alert.service),
        "truncatedAlerts": 0,
        "status": status,
        "receiver": SENDER,
        "groupLabels": {"alertname": alert.rule, "service": alert.service},
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": "",
        "alerts": [{
            "status": status,
            "labels": labels,
            "annotations": annotations,
            "startsAt": rfc3339::millis(&alert.started_at),
            "endsAt": ends_at,
            "generatorURL": "",
            "fingerprint": alert.fingerprint,
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::lifecycle::{RULE_NAME, fingerprint};
    use crate::alert::window::TopReason;

    fn instant(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("literal")
            .with_timezone(&Utc)
    }

    fn alert(service: &str) -> AlertRecord {
        AlertRecord {
            id: 7,
            fingerprint: fingerprint(RULE_NAME, service),
            service: service.to_owned(),
            rule: RULE_NAME.to_owned(),
            state: AlertState::Firing,
            threshold_count: 3,
            window_seconds: 60.0,
            started_at: instant("2026-01-01T12:00:00Z"),
            last_anomaly_at: instant("2026-01-01T11:59:59Z"),
            last_notified_at: instant("2026-01-01T12:00:00Z"),
            resolved_at: None,
            anomaly_count: 3,
            bursts: 1,
            notifications: 1,
            revision: 1,
        }
    }

    fn fired(service: &str) -> Notification {
        Notification {
            kind: TransitionKind::Fired,
            alert: alert(service),
            anomaly_count_in_window: 3,
            created_at: instant("2026-01-01T12:00:00.5Z"),
            context: Some(RateContext {
                logs: 60_000,
                anomalies: 180,
                expected: 60.0,
                probability: 6e-30,
                top_reason: Some(TopReason {
                    label: "latency_ms high".to_owned(),
                    count: 25,
                    of: 32,
                    example: "latency_ms 812 is far above its usual 60–110 (median 80)".to_owned(),
                }),
            }),
        }
    }

    fn resolved(service: &str) -> Notification {
        let mut alert = alert(service);
        alert.state = AlertState::Resolved;
        alert.resolved_at = Some(instant("2026-01-01T12:01:00Z"));
        Notification {
            kind: TransitionKind::Resolved,
            alert,
            anomaly_count_in_window: 0,
            created_at: instant("2026-01-01T12:01:00Z"),
            context: None,
        }
    }

    #[test]
    fn native_webhook_body_has_the_contract_fields() {
        let body = webhook_body(&fired("web_server"));
        assert_eq!(body["alert_type"], "high_anomaly_rate");
        assert!(
            body["message"]
                .as_str()
                .expect("message")
                .contains("web_server")
        );
        let details = &body["details"];
        assert_eq!(details["service"], "web_server");
        assert_eq!(details["rule_violated"], "at least 3 anomalies within 60 s");
        assert_eq!(details["anomaly_count_in_window"], 3);
        assert_eq!(details["time_window_seconds"], 60.0);
        assert_eq!(
            details["last_anomaly_timestamp"],
            "2026-01-01T11:59:59.000Z"
        );
        assert_eq!(body["status"], "firing");
        assert_eq!(body["fingerprint"], fingerprint(RULE_NAME, "web_server"));
        assert_eq!(webhook_body(&resolved("web_server"))["status"], "resolved");
    }

    #[test]
    fn pagerduty_trigger_and_resolve_share_the_dedup_key() {
        let trigger = pagerduty_body(&fired("database"), "KEY");
        assert_eq!(trigger["routing_key"], "KEY");
        assert_eq!(trigger["event_action"], "trigger");
        let payload = &trigger["payload"];
        for required in ["summary", "source", "severity", "timestamp"] {
            assert!(
                payload[required].is_string(),
                "{required} missing: {trigger}"
            );
        }
        assert_eq!(payload["severity"], "error");
        assert_eq!(payload["source"], "database");
        assert_eq!(payload["custom_details"]["service"], "database");
        let resolve = pagerduty_body(&resolved("database"), "KEY");
        assert_eq!(resolve["event_action"], "resolve");
        assert_eq!(resolve["dedup_key"], trigger["dedup_key"]);
        assert!(resolve.get("payload").is_none());
    }

    #[test]
    fn pagerduty_fields_stay_within_their_limits() {
        let long = "s".repeat(5000);
        let body = pagerduty_body(&fired(&long), "KEY");
        let payload = &body["payload"];
        let chars = |v: &Value| v.as_str().expect("string").chars().count();
        assert!(chars(&payload["summary"]) <= PAGERDUTY_SUMMARY_MAX_CHARS);
        assert!(chars(&payload["source"]) <= PAGERDUTY_FIELD_MAX_CHARS);
        assert!(chars(&payload["component"]) <= PAGERDUTY_FIELD_MAX_CHARS);
        assert!(chars(&body["dedup_key"]) <= 255);
    }

    #[test]
    fn slack_body_has_blocks_text_fallback_and_a_colour_per_status() {
        let body = slack_body(&fired("web_server"));
        assert!(body["text"].as_str().expect("text").contains("web_server"));
        let blocks = body["blocks"].as_array().expect("blocks");
        assert_eq!(blocks[0]["type"], "header");
        assert_eq!(blocks[0]["text"]["type"], "plain_text");
        let firing_colour = body["attachments"][0]["color"].clone();
        let resolved_body = slack_body(&resolved("web_server"));
        assert_ne!(resolved_body["attachments"][0]["color"], firing_colour);
        assert!(
            resolved_body["blocks"][0]["text"]["text"]
                .as_str()
                .expect("header")
                .starts_with("RESOLVED")
        );
    }

    #[test]
    fn slack_texts_are_within_limits_and_escaped() {
        let hostile = format!("<!channel> & {}", "x".repeat(10_000));
        let body = slack_body(&fired(&hostile));
        let chars = |v: &Value| v.as_str().expect("string").chars().count();
        assert!(chars(&body["text"]) <= SLACK_TEXT_MAX_CHARS);
        assert!(chars(&body["blocks"][0]["text"]["text"]) <= SLACK_HEADER_MAX_CHARS);
        assert!(chars(&body["blocks"][1]["text"]["text"]) <= SLACK_TEXT_MAX_CHARS);
        let fields = body["attachments"][0]["blocks"][0]["fields"]
            .as_array()
            .expect("fields");
        assert!(fields.len() <= 10);
        for field in fields {
            assert!(chars(&field["text"]) <= SLACK_FIELD_MAX_CHARS);
        }
        // Every mrkdwn text is escaped (a plain_text header shows its text literally).
        let mrkdwn = [
            &body["text"],
            &body["blocks"][1]["text"]["text"],
            &fields[0]["text"],
        ];
        for text in mrkdwn {
            let text = text.as_str().expect("text");
            assert!(!text.contains("<!channel>"), "mention not escaped: {text}");
            assert!(text.contains("&lt;!channel&gt; &amp;"), "{text}");
        }
    }

    #[test]
    fn alertmanager_body_is_version_4() {
        let body = alertmanager_body(&fired("application"));
        assert_eq!(body["version"], "4");
        assert_eq!(body["status"], "firing");
        for key in [
            "groupKey",
            "receiver",
            "groupLabels",
            "commonLabels",
            "commonAnnotations",
            "externalURL",
            "truncatedAlerts",
        ] {
            assert!(body.get(key).is_some(), "{key} missing");
        }
        let alert = &body["alerts"][0];
        assert_eq!(alert["labels"]["alertname"], "high_anomaly_rate");
        assert_eq!(alert["labels"]["service"], "application");
        assert_eq!(alert["endsAt"], ALERTMANAGER_NO_END);
        assert_eq!(alert["fingerprint"], fingerprint(RULE_NAME, "application"));
        let resolved = alertmanager_body(&resolved("application"));
        assert_eq!(resolved["status"], "resolved");
        assert_eq!(resolved["alerts"][0]["endsAt"], "2026-01-01T12:01:00.000Z");
    }

    #[test]
    fn channels_never_print_their_secrets() {
        let channels = [
            Channel::Slack {
                url: Secret::new("https://hooks.slack.com/services/T/B/SLACKSECRET"),
            },
            Channel::PagerDuty {
                url: "https://events.pagerduty.com/v2/enqueue".to_owned(),
                routing_key: Secret::new("PDSECRET"),
            },
            Channel::Webhook {
                url: Secret::new("https://example.internal/hook?token=HOOKSECRET"),
                format: WebhookFormat::Native,
            },
        ];
        let debug = format!("{channels:?}");
        for secret in ["SLACKSECRET", "PDSECRET", "HOOKSECRET"] {
            assert!(!debug.contains(secret), "{debug}");
        }
    }

    #[test]
    fn truncate_counts_characters_not_bytes() {
        assert_eq!(truncate("héllo", 5), "héllo");
        assert_eq!(truncate("héllo", 4), "hél…");
        assert_eq!(truncate("héllo", 4).chars().count(), 4);
    }
}
