//! An OTLP/HTTP body into an `ExportLogsServiceRequest`: binary protobuf with prost, JSON with the
//! `opentelemetry-proto` crate's serde, which follows the OTLP JSON mapping (lowerCamelCase keys,
//! hex trace and span ids, 64-bit integers as strings or numbers, enums as integers, unknown
//! fields ignored; the tests below hold it to that).
//!
//! A key spelled with the proto field's own snake_case name (`resource_logs`, `time_unix_nano`)
//! is not valid OTLP/JSON, and the specification says a receiver ignores fields it does not
//! know. We do, and say so: the response's `partial_success` carries a warning naming the keys,
//! so a sender whose logs vanished learns why.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use prost::Message;

use super::status::{Encoding, Failure};

/// A decoded request and what was ignored in it.
#[derive(Debug)]
pub struct Decoded {
    pub request: ExportLogsServiceRequest,
    /// The snake_case keys met (JSON only), each once, in the order of [`SNAKE_CASE_KEYS`].
    pub ignored_keys: Vec<&'static str>,
}

/// Decodes `bytes` in `encoding`. An empty body is an empty request (protobuf's encoding of one);
/// an empty JSON body is not JSON.
///
/// # Errors
/// A 400 [`Failure`] naming what does not decode.
pub fn decode(encoding: Encoding, bytes: &[u8]) -> Result<Decoded, Failure> {
    match encoding {
        Encoding::Protobuf => ExportLogsServiceRequest::decode(bytes)
            .map(|request| Decoded {
                request,
                ignored_keys: Vec::new(),
            })
            .map_err(|error| {
                Failure::bad_data(
                    "body",
                    format!(
                        "The body is not a protobuf ExportLogsServiceRequest (Content-Type: \
                         application/x-protobuf): {error}"
                    ),
                )
            }),
        Encoding::Json => {
            let request =
                serde_json::from_slice::<ExportLogsServiceRequest>(bytes).map_err(|error| {
                    Failure::bad_data(
                        "body",
                        format!(
                            "The body is not an OTLP/JSON ExportLogsServiceRequest \
                             (Content-Type: application/json): {error}"
                        ),
                    )
                })?;
            Ok(Decoded {
                request,
                ignored_keys: snake_case_keys(bytes),
            })
        }
    }
}

/// The proto field names of the logs messages that differ from their lowerCamelCase JSON names.
const SNAKE_CASE_KEYS: [&str; 18] = [
    "resource_logs",
    "scope_logs",
    "log_records",
    "schema_url",
    "time_unix_nano",
    "observed_time_unix_nano",
    "severity_number",
    "severity_text",
    "dropped_attributes_count",
    "trace_id",
    "span_id",
    "event_name",
    "string_value",
    "bool_value",
    "int_value",
    "double_value",
    "array_value",
    "kvlist_value",
];

/// The snake_case keys of [`SNAKE_CASE_KEYS`] used as object keys in a JSON body: the quoted
/// name followed by a colon. Text inside a JSON string cannot match, as its quotes are escaped.
fn snake_case_keys(bytes: &[u8]) -> Vec<&'static str> {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Vec::new();
    };
    SNAKE_CASE_KEYS
        .into_iter()
        .filter(|key| {
            text.match_indices(key).any(|(at, _)| {
                let before = at.checked_sub(1).and_then(|i| text.as_bytes().get(i));
                let after = &text[at + key.len()..];
                before == Some(&b'"')
                    && after
                        .strip_prefix('"')
                        .is_some_and(|rest| rest.trim_start().starts_with(':'))
            })
        })
        .collect()
}

/// The warning for ignored snake_case keys, naming each with its lowerCamelCase spelling.
pub fn ignored_keys_warning(keys: &[&str]) -> Option<String> {
    if keys.is_empty() {
        return None;
    }
    let named: Vec<String> = keys
        .iter()
        .map(|key| format!("{key} (write {})", lower_camel_case(key)))
        .collect();
    Some(format!(
        "Ignored JSON keys that OTLP/JSON does not allow: {}. OTLP/JSON keys are the lowerCamelCase \
         field names; whatever was under these keys was not read.",
        named.join(", ")
    ))
}

fn lower_camel_case(snake: &str) -> String {
    let mut out = String::with_capacity(snake.len());
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::common::v1::any_value::Value as Kind;
    use serde_json::json;

    use super::*;

    fn json_request(body: &serde_json::Value) -> Decoded {
        decode(Encoding::Json, body.to_string().as_bytes()).expect("decodes")
    }

    #[test]
    fn the_json_mapping_reads_camel_case_hex_ids_and_int64_strings() {
        let decoded = json_request(&json!({"resourceLogs": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "checkout"}}]},
            "scopeLogs": [{"scope": {"name": "app"}, "logRecords": [
                {
                    "timeUnixNano": "1700000000000000000",
                    "observedTimeUnixNano": 1_700_000_001_000_000_000u64,
                    "severityNumber": 17,
                    "severityText": "ERROR",
                    "traceId": "5B8EFFF798038103D269B633813FC60C",
                    "spanId": "eee19b7ec3c1b174",
                    "body": {"stringValue": "boom"},
                    "attributes": [
                        {"key": "count", "value": {"intValue": "42"}},
                        {"key": "ratio", "value": {"doubleValue": 0.5}},
                        {"key": "big", "value": {"intValue": 7}},
                    ],
                    "someFutureField": {"anything": [1, 2]},
                }
            ]}]
        }]}));
        assert!(decoded.ignored_keys.is_empty());
        let record = &decoded.request.resource_logs[0].scope_logs[0].log_records[0];
        assert_eq!(record.time_unix_nano, 1_700_000_000_000_000_000);
        assert_eq!(record.observed_time_unix_nano, 1_700_000_001_000_000_000);
        assert_eq!(record.severity_number, 17);
        assert_eq!(record.trace_id.len(), 16);
        assert_eq!(record.trace_id[0], 0x5b);
        assert_eq!(record.span_id.len(), 8);
        let values: Vec<_> = record
            .attributes
            .iter()
            .map(|kv| kv.value.as_ref().and_then(|v| v.value.clone()))
            .collect();
        assert_eq!(
            values,
            [
                Some(Kind::IntValue(42)),
                Some(Kind::DoubleValue(0.5)),
                Some(Kind::IntValue(7))
            ]
        );
    }

    #[test]
    fn snake_case_keys_are_ignored_and_named() {
        let decoded = json_request(&json!({"resource_logs": [{"scope_logs": [{"log_records": [
            {"body": {"string_value": "trace_id: not a key"}}
        ]}]}]}));
        assert!(decoded.request.resource_logs.is_empty());
        assert_eq!(
            decoded.ignored_keys,
            ["resource_logs", "scope_logs", "log_records", "string_value"]
        );
        let warning = ignored_keys_warning(&decoded.ignored_keys).expect("a warning");
        assert!(
            warning.contains("resource_logs (write resourceLogs)"),
            "{warning}"
        );
    }

    #[test]
    fn a_snake_case_name_inside_a_string_is_not_a_key() {
        let decoded = json_request(&json!({"resourceLogs": [{"scopeLogs": [{"logRecords": [
            {"body": {"stringValue": "{\"trace_id\": \"abc\"}"},
             "attributes": [{"key": "span_id", "value": {"stringValue": "x"}}]}
        ]}]}]}));
        assert!(
            decoded.ignored_keys.is_empty(),
            "{:?}",
            decoded.ignored_keys
        );
    }

    #[test]
    fn garbage_is_bad_data_in_either_encoding() {
        for (encoding, body) in [
            (Encoding::Protobuf, &b"\xff\xff\xff\xff garbage"[..]),
            (Encoding::Json, &b"{\"resourceLogs\": [1"[..]),
            (Encoding::Json, &b""[..]),
            (
                Encoding::Json,
                &br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"traceId":"not hex"}]}]}]}"#[..],
            ),
        ] {
            let failure = decode(encoding, body).expect_err("refused");
            assert_eq!(failure.status, axum::http::StatusCode::BAD_REQUEST);
        }
    }

    #[test]
    fn an_empty_protobuf_body_is_an_empty_request() {
        let decoded = decode(Encoding::Protobuf, b"").expect("decodes");
        assert!(decoded.request.resource_logs.is_empty());
    }
}
