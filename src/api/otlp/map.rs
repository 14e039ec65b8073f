//! OTLP log records into [`RawLog`]s for the ingest service (the mapping `docs/otlp.md` gives):
//!
//! - `service.name` of the resource → `service` (`unknown_service` without one, as the OpenTelemetry
//!   SDKs name a service they were not told the name of);
//! - the instrumentation scope's name → `source` (`otlp` without one);
//! - the body → `raw_log`: a string as it is, read with `format_type: "auto"` (a JSON object as
//!   json, `key=value` pairs as key_value, otherwise a plain message); a key/value-list body as
//!   its JSON object; other values as their text;
//! - time (or, failing it and a timestamp in the body, observed time) → timestamp; severity text
//!   (or, without one, the severity number's range) → level; attributes → features and
//!   attributes by the JSON rules ([`Envelope`]);
//! - trace and span ids, the other resource attributes, the scope and the event name → the
//!   anomaly's `metadata`.
//!
//! A record without a body, or whose resource names a service longer than [`MAX_NAME_CHARS`], is
//! rejected and counted in the response's `partial_success`; the others go on.

use chrono::{DateTime, Utc};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Kind;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use serde_json::{Map, Value, json};

use crate::parse::{Envelope, FieldValue, FormatType, MAX_NAME_CHARS, RawLog};

/// The service of a resource without `service.name`.
pub const UNKNOWN_SERVICE: &str = "unknown_service";
/// The source of a record whose scope has no name.
pub const DEFAULT_SOURCE: &str = "otlp";
/// The resource attribute naming the service.
const SERVICE_NAME: &str = "service.name";
/// Attributes under this namespace locate the call site (`code.lineno`, `code.line.number`,
/// `code.function`): text, never measurements, whatever their type.
const CALL_SITE_PREFIX: &str = "code.";
/// Distinct rejection reasons spelled out in the response; the rest are counted.
const MAX_REASONS_SHOWN: usize = 5;

/// The records refused so far, and why.
#[derive(Debug, Default)]
pub struct Rejections {
    count: u64,
    /// Distinct reasons with their counts, in the order first met.
    reasons: Vec<(String, u64)>,
}

impl Rejections {
    /// Counts one record refused for `reason`.
    pub fn add(&mut self, reason: impl Into<String>) {
        self.count += 1;
        let reason = reason.into();
        match self.reasons.iter_mut().find(|(known, _)| *known == reason) {
            Some((_, count)) => *count += 1,
            None => self.reasons.push((reason, 1)),
        }
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// What the response's `error_message` says: each reason with how many records it refused.
    pub fn message(&self) -> String {
        let mut parts: Vec<String> = self
            .reasons
            .iter()
            .take(MAX_REASONS_SHOWN)
            .map(|(reason, count)| format!("{count} × {reason}"))
            .collect();
        let others: u64 = self
            .reasons
            .iter()
            .skip(MAX_REASONS_SHOWN)
            .map(|(_, count)| count)
            .sum();
        if others > 0 {
            parts.push(format!("{others} × other reasons"));
        }
        format!(
            "{} log record(s) rejected: {}",
            self.count,
            parts.join("; ")
        )
    }
}

/// The request's records as logs for the ingest service, in request order; refused records are
/// counted in `rejections` instead.
pub fn raw_logs(request: ExportLogsServiceRequest, rejections: &mut Rejections) -> Vec<RawLog> {
    let records: usize = request
        .resource_logs
        .iter()
        .flat_map(|resource| &resource.scope_logs)
        .map(|scope| scope.log_records.len())
        .sum();
    let mut logs = Vec::with_capacity(records);
    for resource_logs in request.resource_logs {
        let attributes = resource_logs
            .resource
            .map(|resource| resource.attributes)
            .unwrap_or_default();
        let service = attributes
            .iter()
            .find(|kv| kv.key == SERVICE_NAME)
            .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                Kind::StringValue(name) if !name.trim().is_empty() => Some(name.clone()),
                _ => None,
            })
            .unwrap_or_else(|| UNKNOWN_SERVICE.to_owned());
        let service_chars = service.chars().count();
        let resource: Map<String, Value> = attributes
            .iter()
            .filter(|kv| kv.key != SERVICE_NAME)
            .map(|kv| {
                (
                    kv.key.clone(),
                    kv.value.as_ref().map_or(Value::Null, to_json),
                )
            })
            .collect();
        for scope_logs in resource_logs.scope_logs {
            let source = scope_logs
                .scope
                .as_ref()
                .map(|scope| scope.name.trim())
                .filter(|name| !name.is_empty())
                .map_or_else(|| DEFAULT_SOURCE.to_owned(), truncated);
            let scope = scope_logs.scope.as_ref().and_then(scope_metadata);
            for record in scope_logs.log_records {
                if service_chars > MAX_NAME_CHARS {
                    rejections.add(format!(
                        "the resource's service.name is {service_chars} characters long; the \
                         limit is {MAX_NAME_CHARS}"
                    ));
                    continue;
                }
                let Some((raw_log, format_type)) = body_text(record.body.as_ref()) else {
                    rejections.add(
                        "a log record has no body; there is nothing to judge (send the message \
                         or the structured event as the body)",
                    );
                    continue;
                };
                let envelope = envelope(&record, &resource, scope.as_ref());
                logs.push(RawLog {
                    raw_log,
                    service: service.clone(),
                    source: source.clone(),
                    format_type,
                    custom_config: None,
                    envelope: Some(Box::new(envelope)),
                });
            }
        }
    }
    logs
}

/// `name` cut to [`MAX_NAME_CHARS`] characters: a scope name is a label, and a long one is not
/// worth refusing the record for.
fn truncated(name: &str) -> String {
    match name.char_indices().nth(MAX_NAME_CHARS) {
        Some((end, _)) => name[..end].to_owned(),
        None => name.to_owned(),
    }
}

fn scope_metadata(scope: &InstrumentationScope) -> Option<Value> {
    if scope.name.is_empty() && scope.version.is_empty() {
        return None;
    }
    let mut object = Map::new();
    object.insert("name".into(), json!(scope.name));
    if !scope.version.is_empty() {
        object.insert("version".into(), json!(scope.version));
    }
    Some(Value::Object(object))
}

/// The body as the log's text and the format to read it with; `None` without one.
fn body_text(body: Option<&AnyValue>) -> Option<(String, FormatType)> {
    let text = match body?.value.as_ref()? {
        Kind::StringValue(text) => text.clone(),
        Kind::KvlistValue(list) => {
            let object: Map<String, Value> = list
                .values
                .iter()
                .map(|kv| {
                    (
                        kv.key.clone(),
                        kv.value.as_ref().map_or(Value::Null, to_json),
                    )
                })
                .collect();
            return Some((Value::Object(object).to_string(), FormatType::Json));
        }
        Kind::BoolValue(flag) => flag.to_string(),
        Kind::IntValue(number) => number.to_string(),
        Kind::DoubleValue(number) => number.to_string(),
        Kind::ArrayValue(_) => to_json(body?).to_string(),
        Kind::BytesValue(bytes) => bytes_text(bytes),
        // An index into a dictionary of strings this request format does not carry.
        Kind::StringValueStrindex(_) => return None,
    };
    Some((text, FormatType::Auto))
}

/// An `AnyValue` as JSON: nested lists and key/value lists as arrays and objects.
fn to_json(value: &AnyValue) -> Value {
    match value.value.as_ref() {
        None | Some(Kind::StringValueStrindex(_)) => Value::Null,
        Some(Kind::StringValue(text)) => json!(text),
        Some(Kind::BoolValue(flag)) => json!(flag),
        Some(Kind::IntValue(number)) => json!(number),
        Some(Kind::DoubleValue(number)) => serde_json::Number::from_f64(*number)
            .map_or_else(|| json!(number.to_string()), Value::Number),
        Some(Kind::ArrayValue(list)) => Value::Array(list.values.iter().map(to_json).collect()),
        Some(Kind::KvlistValue(list)) => Value::Object(
            list.values
                .iter()
                .map(|kv| {
                    (
                        kv.key.clone(),
                        kv.value.as_ref().map_or(Value::Null, to_json),
                    )
                })
                .collect(),
        ),
        Some(Kind::BytesValue(bytes)) => json!(bytes_text(bytes)),
    }
}

/// Bytes as text: as they are when they are UTF-8, as hex otherwise.
fn bytes_text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_owned(),
        Err(_) => hex(bytes),
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    text
}

/// A trace or span id as lowercase hex; `None` when absent or all zeros (an invalid id, which
/// SDKs send for a log outside any span).
fn id_text(id: &[u8]) -> Option<String> {
    id.iter().any(|byte| *byte != 0).then(|| hex(id))
}

/// Nanoseconds since the epoch as a time; `None` for 0 (unset).
fn time(nanos: u64) -> Option<DateTime<Utc>> {
    if nanos == 0 {
        return None;
    }
    let seconds = i64::try_from(nanos / 1_000_000_000).ok()?;
    let nanos = u32::try_from(nanos % 1_000_000_000).ok()?;
    DateTime::from_timestamp(seconds, nanos)
}

/// The severity text as sent, or the name of the severity number's range (OpenTelemetry's log
/// data model: 1–4 TRACE, 5–8 DEBUG, 9–12 INFO, 13–16 WARN, 17–20 ERROR, 21–24 FATAL).
fn level(record: &LogRecord) -> Option<String> {
    let text = record.severity_text.trim();
    if !text.is_empty() {
        return Some(truncated(text));
    }
    let name = match record.severity_number {
        1..=4 => "TRACE",
        5..=8 => "DEBUG",
        9..=12 => "INFO",
        13..=16 => "WARN",
        17..=20 => "ERROR",
        21..=24 => "FATAL",
        _ => return None,
    };
    Some(name.to_owned())
}

fn envelope(record: &LogRecord, resource: &Map<String, Value>, scope: Option<&Value>) -> Envelope {
    let mut fields = Vec::with_capacity(record.attributes.len());
    push_fields(&mut fields, "", &record.attributes);
    let mut metadata = Map::new();
    metadata.insert("protocol".into(), json!("otlp"));
    if let Some(trace_id) = id_text(&record.trace_id) {
        metadata.insert("trace_id".into(), json!(trace_id));
    }
    if let Some(span_id) = id_text(&record.span_id) {
        metadata.insert("span_id".into(), json!(span_id));
    }
    if !record.event_name.is_empty() {
        metadata.insert("event_name".into(), json!(record.event_name));
    }
    if let Some(scope) = scope {
        metadata.insert("scope".into(), scope.clone());
    }
    if !resource.is_empty() {
        metadata.insert("resource".into(), Value::Object(resource.clone()));
    }
    Envelope {
        time: time(record.time_unix_nano),
        observed_time: time(record.observed_time_unix_nano),
        level: level(record),
        fields,
        metadata,
    }
}

/// Attributes as named values; a key/value list flattens to dotted names, as a nested JSON
/// object does.
fn push_fields(fields: &mut Vec<(String, FieldValue)>, prefix: &str, attributes: &[KeyValue]) {
    for attribute in attributes {
        let name = if prefix.is_empty() {
            attribute.key.clone()
        } else {
            format!("{prefix}.{}", attribute.key)
        };
        let Some(value) = attribute.value.as_ref() else {
            continue;
        };
        let call_site = name.starts_with(CALL_SITE_PREFIX);
        let field = match value.value.as_ref() {
            None | Some(Kind::StringValueStrindex(_)) => continue,
            Some(Kind::KvlistValue(list)) => {
                push_fields(fields, &name, &list.values);
                continue;
            }
            Some(Kind::ArrayValue(_)) => FieldValue::Opaque(to_json(value).to_string()),
            Some(Kind::BytesValue(bytes)) => FieldValue::Opaque(bytes_text(bytes)),
            Some(Kind::StringValue(text)) if call_site => FieldValue::Opaque(text.clone()),
            Some(Kind::IntValue(number)) if call_site => FieldValue::Opaque(number.to_string()),
            Some(Kind::StringValue(text)) => FieldValue::Text(text.clone()),
            Some(Kind::IntValue(number)) => FieldValue::Integer(*number),
            Some(Kind::DoubleValue(number)) => FieldValue::Float(*number),
            Some(Kind::BoolValue(flag)) => FieldValue::Boolean(*flag),
        };
        fields.push((name, field));
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::common::v1::KeyValueList;
    use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::resource::v1::Resource;

    use super::*;
    use crate::parse::Parser;

    fn text(value: &str) -> Option<AnyValue> {
        Some(AnyValue {
            value: Some(Kind::StringValue(value.to_owned())),
        })
    }

    fn attribute(key: &str, value: Kind) -> KeyValue {
        KeyValue {
            key: key.to_owned(),
            value: Some(AnyValue { value: Some(value) }),
            ..KeyValue::default()
        }
    }

    fn request(service: Option<&str>, records: Vec<LogRecord>) -> ExportLogsServiceRequest {
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource {
                    attributes: service
                        .map(|name| attribute(SERVICE_NAME, Kind::StringValue(name.into())))
                        .into_iter()
                        .chain([attribute("host.name", Kind::StringValue("web-1".into()))])
                        .collect(),
                    ..Resource::default()
                }),
                scope_logs: vec![ScopeLogs {
                    scope: Some(InstrumentationScope {
                        name: "checkout.handler".into(),
                        version: "1.2.0".into(),
                        ..InstrumentationScope::default()
                    }),
                    log_records: records,
                    ..ScopeLogs::default()
                }],
                ..ResourceLogs::default()
            }],
        }
    }

    fn one(service: Option<&str>, record: LogRecord) -> (RawLog, Rejections) {
        let mut rejections = Rejections::default();
        let mut logs = raw_logs(request(service, vec![record]), &mut rejections);
        assert_eq!(logs.len(), 1, "{}", rejections.message());
        (logs.remove(0), rejections)
    }

    #[test]
    fn a_record_maps_to_a_raw_log_with_its_envelope() {
        let record = LogRecord {
            time_unix_nano: 1_700_000_000_500_000_000,
            severity_number: 17,
            body: text("payment failed"),
            attributes: vec![
                attribute("response_time", Kind::IntValue(2500)),
                attribute("latency", Kind::StringValue("250ms".into())),
                attribute("http.route", Kind::StringValue("/pay".into())),
                attribute("code.lineno", Kind::IntValue(42)),
                attribute(
                    "db",
                    Kind::KvlistValue(KeyValueList {
                        values: vec![attribute("rows", Kind::DoubleValue(3.0))],
                    }),
                ),
            ],
            trace_id: vec![0xab; 16],
            span_id: vec![0; 8],
            ..LogRecord::default()
        };
        let (raw, rejections) = one(Some("checkout"), record);
        assert_eq!(rejections.count(), 0);
        assert_eq!(raw.service, "checkout");
        assert_eq!(raw.source, "checkout.handler");
        assert_eq!(raw.format_type, FormatType::Auto);
        assert_eq!(raw.raw_log, "payment failed");
        let envelope = raw.envelope.as_deref().expect("an envelope");
        assert_eq!(envelope.metadata["trace_id"], "ab".repeat(16));
        assert!(envelope.metadata.get("span_id").is_none(), "all zeros");
        assert_eq!(envelope.metadata["resource"], json!({"host.name": "web-1"}));
        assert_eq!(
            envelope.metadata["scope"],
            json!({"name": "checkout.handler", "version": "1.2.0"})
        );
        let parsed = Parser::new(4).parse(&raw).expect("parses");
        assert_eq!(parsed.message.as_deref(), Some("payment failed"));
        assert_eq!(parsed.level.as_deref(), Some("ERROR"));
        assert_eq!(
            parsed.timestamp.map(|t| t.timestamp_millis()),
            Some(1_700_000_000_500)
        );
        assert_eq!(parsed.features.get("response_time"), Some(2500.0));
        assert_eq!(parsed.features.get("latency"), Some(250.0));
        assert_eq!(parsed.features.get("db.rows"), Some(3.0));
        assert_eq!(parsed.features.get("code.lineno"), None);
        assert_eq!(parsed.attributes["code.lineno"], "42");
        assert_eq!(parsed.attributes["http.route"], "/pay");
    }

    #[test]
    fn the_body_is_read_as_json_key_value_or_a_plain_message() {
        let parse = |body: Option<AnyValue>| {
            let (raw, _) = one(
                Some("svc"),
                LogRecord {
                    body,
                    ..LogRecord::default()
                },
            );
            Parser::new(4).parse(&raw).expect("parses")
        };
        let json = parse(text(r#"{"message": "slow query", "query_time": "5.5s"}"#));
        assert_eq!(json.message.as_deref(), Some("slow query"));
        assert_eq!(json.features.get("query_time"), Some(5500.0));
        let pairs = parse(text("ERROR query_time=6000ms connection_count=12"));
        assert_eq!(pairs.level.as_deref(), Some("ERROR"));
        assert_eq!(pairs.features.get("query_time"), Some(6000.0));
        let plain = parse(text("connection reset by peer"));
        assert_eq!(plain.message.as_deref(), Some("connection reset by peer"));
        assert!(plain.features.is_empty());
        let structured = parse(Some(AnyValue {
            value: Some(Kind::KvlistValue(KeyValueList {
                values: vec![
                    attribute("msg", Kind::StringValue("done".into())),
                    attribute("cpu_usage", Kind::IntValue(97)),
                ],
            })),
        }));
        assert_eq!(structured.message.as_deref(), Some("done"));
        assert_eq!(structured.features.get("cpu_usage"), Some(97.0));
    }

    #[test]
    fn a_severity_number_without_text_names_its_range() {
        for (number, name) in [(1, "TRACE"), (9, "INFO"), (14, "WARN"), (21, "FATAL")] {
            let record = LogRecord {
                severity_number: number,
                ..LogRecord::default()
            };
            assert_eq!(level(&record).as_deref(), Some(name));
        }
        let record = LogRecord {
            severity_number: 9,
            severity_text: "notice".into(),
            ..LogRecord::default()
        };
        assert_eq!(level(&record).as_deref(), Some("notice"));
        assert_eq!(level(&LogRecord::default()), None);
    }

    #[test]
    fn a_resource_without_a_name_is_the_unknown_service() {
        let (raw, _) = one(
            None,
            LogRecord {
                body: text("hello"),
                ..LogRecord::default()
            },
        );
        assert_eq!(raw.service, UNKNOWN_SERVICE);
    }

    #[test]
    fn records_without_a_body_or_with_an_oversized_service_are_rejected_and_counted() {
        let mut rejections = Rejections::default();
        let records = vec![
            LogRecord::default(),
            LogRecord {
                body: Some(AnyValue { value: None }),
                ..LogRecord::default()
            },
            LogRecord {
                body: text("kept"),
                ..LogRecord::default()
            },
        ];
        let logs = raw_logs(request(Some("svc"), records), &mut rejections);
        assert_eq!(logs.len(), 1);
        assert_eq!(rejections.count(), 2);
        assert!(
            rejections
                .message()
                .contains("2 × a log record has no body")
        );
        let long = "s".repeat(MAX_NAME_CHARS + 1);
        let mut rejections = Rejections::default();
        let records = vec![LogRecord {
            body: text("x"),
            ..LogRecord::default()
        }];
        assert!(raw_logs(request(Some(&long), records), &mut rejections).is_empty());
        assert!(
            rejections
                .message()
                .contains("service.name is 257 characters")
        );
    }

    #[test]
    fn the_message_spells_out_a_few_reasons_and_counts_the_rest() {
        let mut rejections = Rejections::default();
        for i in 0..8 {
            rejections.add(format!("reason {i}"));
        }
        rejections.add("reason 0");
        let message = rejections.message();
        assert!(
            message.starts_with("9 log record(s) rejected: 2 × reason 0"),
            "{message}"
        );
        assert!(message.ends_with("3 × other reasons"), "{message}");
    }
}
