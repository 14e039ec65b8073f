//! Request bodies: read within the size limit, decoded as JSON whatever the content type, and checked
//! field by field so a bad body gets the same 422 list FastAPI would give, every problem at once.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRef, FromRequest, Request};
use axum::http::header::CONTENT_LENGTH;
use serde_json::{Map, Value, json};

use crate::api::error::{ApiError, FieldError};
use crate::parse::{CustomConfig, FormatType, RawLog};

/// The configured request size limit, taken from the app state.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// A request body read within the size limit, to be decoded as JSON. Any content type is accepted: the
/// original's clients sometimes send none, and FastAPI decoded them anyway.
#[derive(Debug)]
pub struct JsonBody(pub Bytes);

impl JsonBody {
    /// Decodes the body straight into `T` (the fast path); when that fails, walks it as a JSON value with
    /// `check` so the 422 lists every problem with its location, as FastAPI does.
    ///
    /// # Errors
    /// 422 `json_invalid` for malformed JSON, 422 with field errors for a body that does not fit.
    pub fn decode<T: serde::de::DeserializeOwned>(
        &self,
        check: impl FnOnce(&mut Checker, &Value) -> Option<T>,
    ) -> Result<T, ApiError> {
        if let Ok(value) = serde_json::from_slice::<T>(&self.0) {
            return Ok(value);
        }
        let value = decode_json(&self.0)?;
        let mut checker = Checker::default();
        let checked = check(&mut checker, &value);
        checker.finish(checked)
    }
}

impl<S> FromRequest<S> for JsonBody
where
    S: Send + Sync,
    BodyLimit: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let BodyLimit(limit) = BodyLimit::from_ref(state);
        let too_large = || {
            ApiError::PayloadTooLarge(format!(
                "Request body is larger than the limit of {limit} bytes (MAX_BODY_BYTES)."
            ))
        };
        let declared = request
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|length| length > limit as u64) {
            return Err(too_large());
        }
        let bytes: Bytes = axum::body::to_bytes(request.into_body(), limit)
            .await
            .map_err(|_| too_large())?;
        Ok(JsonBody(bytes))
    }
}

/// Decodes JSON, answering a decode failure as pydantic does (`json_invalid` at the byte offset).
pub fn decode_json(bytes: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(bytes).map_err(|error| {
        // Python's decoder reports a truncated body at its end; serde_json at its last byte.
        let offset = if error.is_eof() {
            bytes.len()
        } else {
            byte_offset(bytes, error.line(), error.column())
        };
        ApiError::unprocessable(FieldError {
            kind: "json_invalid",
            loc: vec![json!("body"), json!(offset)],
            msg: "JSON decode error".to_owned(),
            input: json!({}),
            ctx: Some(json!({ "error": error.to_string() })),
        })
    })
}

fn byte_offset(bytes: &[u8], line: usize, column: usize) -> usize {
    let line_start: usize = bytes
        .split(|b| *b == b'\n')
        .take(line.saturating_sub(1))
        .map(|l| l.len() + 1)
        .sum();
    (line_start + column.saturating_sub(1)).min(bytes.len())
}

/// A location in the body, FastAPI style: `["body", "logs", 0, "service"]`.
pub type Loc = Vec<Value>;

/// Collects every field error of a body before answering.
#[derive(Debug, Default)]
pub struct Checker {
    errors: Vec<FieldError>,
}

impl Checker {
    fn push(&mut self, kind: &'static str, loc: &Loc, msg: impl Into<String>, input: &Value) {
        self.errors.push(FieldError {
            kind,
            loc: loc.clone(),
            msg: msg.into(),
            input: input.clone(),
            ctx: None,
        });
    }

    /// Done: the checked value, or every error found.
    ///
    /// # Errors
    /// A 422 listing each field error.
    pub fn finish<T>(self, value: Option<T>) -> Result<T, ApiError> {
        match value {
            Some(value) if self.errors.is_empty() => Ok(value),
            _ => Err(ApiError::Unprocessable(self.errors)),
        }
    }

    pub fn object<'v>(&mut self, value: &'v Value, loc: &Loc) -> Option<&'v Map<String, Value>> {
        let object = value.as_object();
        if object.is_none() {
            self.push(
                "model_attributes_type",
                loc,
                "Input should be a valid dictionary or object to extract fields from",
                value,
            );
        }
        object
    }

    pub fn required<'v>(
        &mut self,
        object: &'v Map<String, Value>,
        key: &str,
        loc: &Loc,
    ) -> Option<&'v Value> {
        let value = object.get(key);
        if value.is_none() {
            self.push(
                "missing",
                &child(loc, key),
                "Field required",
                &Value::Object(object.clone()),
            );
        }
        value
    }

    pub fn string(&mut self, value: &Value, loc: &Loc) -> Option<String> {
        match value {
            Value::String(text) => Some(text.clone()),
            _ => {
                self.push("string_type", loc, "Input should be a valid string", value);
                None
            }
        }
    }

    pub fn list<'v>(&mut self, value: &'v Value, loc: &Loc) -> Option<&'v Vec<Value>> {
        let list = value.as_array();
        if list.is_none() {
            self.push("list_type", loc, "Input should be a valid list", value);
        }
        list
    }

    pub fn dict<'v>(&mut self, value: &'v Value, loc: &Loc) -> Option<&'v Map<String, Value>> {
        let dict = value.as_object();
        if dict.is_none() {
            self.push(
                "dict_type",
                loc,
                "Input should be a valid dictionary",
                value,
            );
        }
        dict
    }

    /// An optional `{str: str}` (the contract's `tags`).
    pub fn optional_string_map(
        &mut self,
        object: &Map<String, Value>,
        key: &str,
        loc: &Loc,
    ) -> Option<Option<BTreeMap<String, String>>> {
        let value = match object.get(key) {
            None | Some(Value::Null) => return Some(None),
            Some(value) => value,
        };
        let loc = child(loc, key);
        let dict = self.dict(value, &loc)?;
        let entries: Vec<Option<(String, String)>> = dict
            .iter()
            .map(|(k, v)| {
                self.string(v, &child(&loc, k.as_str()))
                    .map(|v| (k.clone(), v))
            })
            .collect();
        entries
            .into_iter()
            .collect::<Option<BTreeMap<_, _>>>()
            .map(Some)
    }

    /// `0` or `1` (the contract's `is_anomaly`).
    pub fn zero_or_one(&mut self, value: &Value, loc: &Loc) -> Option<bool> {
        match value.as_u64() {
            Some(0) => Some(false),
            Some(1) => Some(true),
            _ => {
                self.errors.push(FieldError {
                    kind: "literal_error",
                    loc: loc.clone(),
                    msg: "Input should be 0 or 1".to_owned(),
                    input: value.clone(),
                    ctx: Some(json!({"expected": "0 or 1"})),
                });
                None
            }
        }
    }

    pub fn format_type(&mut self, value: &Value, loc: &Loc) -> Option<FormatType> {
        let parsed = match value.as_str() {
            Some("json") => Some(FormatType::Json),
            Some("key_value") => Some(FormatType::KeyValue),
            Some("regex") => Some(FormatType::Regex),
            Some("custom") => Some(FormatType::Custom),
            _ => None,
        };
        if parsed.is_none() {
            let expected = "'json', 'key_value', 'regex' or 'custom'";
            self.errors.push(FieldError {
                kind: "enum",
                loc: loc.clone(),
                msg: format!("Input should be {expected}"),
                input: value.clone(),
                ctx: Some(json!({ "expected": expected })),
            });
        }
        parsed
    }

    /// A `RawLog` object; every problem of it is recorded.
    pub fn raw_log(&mut self, value: &Value, loc: &Loc) -> Option<RawLog> {
        let object = self.object(value, loc)?;
        let text = |checker: &mut Self, key: &str| {
            let field = checker.required(object, key, loc)?;
            checker.string(field, &child(loc, key))
        };
        let raw_log = text(self, "raw_log");
        let service = text(self, "service");
        let source = text(self, "source");
        let format_type = self
            .required(object, "format_type", loc)
            .and_then(|v| self.format_type(v, &child(loc, "format_type")));
        let custom_config = match object.get("custom_config") {
            None | Some(Value::Null) => Some(None),
            Some(config) => self
                .dict(config, &child(loc, "custom_config"))
                .map(|_| Some(Arc::new(CustomConfig::new(config.clone())))),
        };
        Some(RawLog {
            raw_log: raw_log?,
            service: service?,
            source: source?,
            format_type: format_type?,
            custom_config: custom_config?,
        })
    }

    /// A list of `RawLog` under `key` of `object`.
    pub fn raw_logs(
        &mut self,
        object: &Map<String, Value>,
        key: &str,
        loc: &Loc,
    ) -> Option<Vec<RawLog>> {
        let list_loc = child(loc, key);
        let list = self
            .required(object, key, loc)
            .and_then(|v| self.list(v, &list_loc))?;
        let logs: Vec<Option<RawLog>> = list
            .iter()
            .enumerate()
            .map(|(index, item)| self.raw_log(item, &child(&list_loc, index)))
            .collect();
        logs.into_iter().collect()
    }
}

/// `loc` with one more step.
pub fn child(loc: &Loc, step: impl Into<Value>) -> Loc {
    let mut next = loc.clone();
    next.push(step.into());
    next
}

/// The root location of a body.
pub fn body_loc() -> Loc {
    vec![json!("body")]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_missing_field_is_reported_with_its_location() {
        let body = json!({"logs": [{"raw_log": "x"}, {"raw_log": 5, "service": "a", "source": "b", "format_type": "xml"}]});
        let mut checker = Checker::default();
        let object = checker.object(&body, &body_loc()).expect("object");
        let logs = checker.raw_logs(object, "logs", &body_loc());
        let Err(ApiError::Unprocessable(errors)) = checker.finish(logs) else {
            panic!("expected 422");
        };
        let locs: Vec<String> = errors
            .iter()
            .map(|e| format!("{} {}", e.kind, Value::Array(e.loc.clone())))
            .collect();
        assert_eq!(
            locs,
            [
                r#"missing ["body","logs",0,"service"]"#,
                r#"missing ["body","logs",0,"source"]"#,
                r#"missing ["body","logs",0,"format_type"]"#,
                r#"string_type ["body","logs",1,"raw_log"]"#,
                r#"enum ["body","logs",1,"format_type"]"#,
            ]
        );
    }

    #[test]
    fn malformed_json_is_json_invalid_at_its_offset() {
        let Err(ApiError::Unprocessable(errors)) = decode_json(b"{\"logs\": [1,") else {
            panic!("expected 422");
        };
        assert_eq!(errors[0].kind, "json_invalid");
        assert_eq!(errors[0].loc, vec![json!("body"), json!(12)]);
    }

    #[test]
    fn invalid_utf8_is_json_invalid() {
        let result = decode_json(b"{\"logs\": \"\xff\xfe\"}");
        assert!(matches!(result, Err(ApiError::Unprocessable(_))));
    }
}
