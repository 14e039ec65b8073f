//! Request bodies: read within the size limit (counted after gzip decompression), decoded as JSON
//! when declared as JSON or not declared at all, and checked field by field so a bad body gets the
//! same 422 list FastAPI would give, every problem at once.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRef, FromRequest, Request};
use axum::http::header::{
    ACCEPT_ENCODING, CONNECTION, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE,
};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use http_body_util::LengthLimitError;
use serde::de::value::MapAccessDeserializer;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value, json};

use crate::api::error::{ApiError, FieldError};
use crate::parse::{CustomConfig, FormatType, MAX_NAME_CHARS, RawLog};

/// The configured request size limit, taken from the app state.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// A request body read within the size limit, to be decoded as JSON. A body without a content type
/// is accepted (the original's clients sometimes send none, and FastAPI decoded them anyway); one
/// declared as anything but JSON is refused with 415 (see `refuse_other_media_types`).
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
        match decode_fast(&self.0) {
            Some(value) => Ok(value),
            None => decode_checked(&self.0, check),
        }
    }
}

/// The fast path: serde straight into `T`, the body's root read as an object only. It must accept
/// exactly what `decode_checked` accepts, with the same value (the property tests at the bottom of
/// this file hold them to it); when it declines, the checker answers. The one intended difference:
/// serde refuses a repeated key, which the checker reads as its last value, as FastAPI does.
fn decode_fast<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = object(&mut deserializer).ok()?;
    deserializer.end().ok()?;
    Some(value)
}

/// Reads `T` from a JSON object only. A derived `Deserialize` also reads a struct from the list of
/// its field values (`["GET /", "web", "nginx", "json"]` as a `RawLog`), which FastAPI refuses
/// (422 `model_attributes_type`) and so does the checker: every request type, and every struct
/// inside one, goes through here (`#[serde(deserialize_with = "object")]` or `"objects"`).
///
/// # Errors
/// Whatever is not an object, and whatever `T` refuses.
pub fn object<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct ObjectOnly<T>(PhantomData<T>);

    impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectOnly<T> {
        type Value = T;

        fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
            formatter.write_str("an object")
        }

        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
            T::deserialize(MapAccessDeserializer::new(map))
        }
    }

    deserializer.deserialize_map(ObjectOnly(PhantomData))
}

/// A list whose every item is read with [`object`].
///
/// # Errors
/// Whatever is not a list of objects `T` accepts.
pub fn objects<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct Object<T>(T);

    impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            object(deserializer).map(Object)
        }
    }

    let list = Vec::<Object<T>>::deserialize(deserializer)?;
    Ok(list.into_iter().map(|Object(item)| item).collect())
}

/// The slow path: the body as a JSON value, walked by `check`, which records every problem.
fn decode_checked<T>(
    bytes: &[u8],
    check: impl FnOnce(&mut Checker, &Value) -> Option<T>,
) -> Result<T, ApiError> {
    let value = decode_json(bytes)?;
    let mut checker = Checker::default();
    let checked = check(&mut checker, &value);
    checker.finish(checked)
}

impl<S> FromRequest<S> for JsonBody
where
    S: Send + Sync,
    BodyLimit: FromRef<S>,
{
    type Rejection = BodyRefused;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        refuse_other_media_types(request.headers())?;
        let BodyLimit(limit) = BodyLimit::from_ref(state);
        read_limited(request, limit).await.map(JsonBody)
    }
}

/// Reads a request body of at most `limit` bytes, counted after gzip decompression, whatever its
/// media type (the caller checks that). Every front door that takes a body reads it here.
///
/// # Errors
/// 415 for a content coding other than gzip; 413 beyond `limit` (a gzip bomb stops there); 400
/// for a body that cannot be read or is not valid gzip.
pub async fn read_limited(request: Request, limit: usize) -> Result<Bytes, BodyRefused> {
    refuse_other_encodings(request.headers())?;
    let gzipped = request.extensions().get::<Gzipped>().is_some();
    let too_large = || {
        let after = if gzipped { " once decompressed" } else { "" };
        ApiError::PayloadTooLarge(format!(
            "Request body is larger{after} than the limit of {limit} bytes (MAX_BODY_BYTES)."
        ))
    };
    // A gzip body has had its Content-Length removed by the decompression layer: only the
    // decompressed bytes count, below.
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(too_large().into());
    }
    // The limit counts decompressed bytes, so a gzip bomb stops at `limit` (a 413), however
    // far it would inflate.
    let bytes: Bytes = axum::body::to_bytes(request.into_body(), limit)
        .await
        .map_err(|error| {
            let over_limit = std::error::Error::source(&error)
                .is_some_and(|source| source.is::<LengthLimitError>());
            if over_limit {
                too_large()
            } else if gzipped {
                ApiError::BadRequest(
                    "Request body is not valid gzip (Content-Encoding: gzip).".to_owned(),
                )
            } else {
                ApiError::BadRequest("Request body could not be read.".to_owned())
            }
        })?;
    Ok(bytes)
}

/// A body refused before it was read to its end, answered with `Connection: close`. hyper
/// closes such a connection rather than read the rest, and when it notices only after the
/// response head has gone out, that head promised keep-alive: the client then sends its next
/// request down a connection about to close and gets no answer (seen with a gzip bomb's 413).
/// A refusal for its content coding also says which coding is accepted (RFC 9110 15.5.16).
#[derive(Debug)]
pub struct BodyRefused {
    pub error: ApiError,
    /// Refused for its Content-Encoding: the answer carries `Accept-Encoding: gzip`.
    pub coding: bool,
}

impl From<ApiError> for BodyRefused {
    fn from(error: ApiError) -> Self {
        Self {
            error,
            coding: false,
        }
    }
}

impl IntoResponse for BodyRefused {
    fn into_response(self) -> Response {
        let mut response = self.error.into_response();
        let headers = response.headers_mut();
        headers.insert(CONNECTION, HeaderValue::from_static("close"));
        if self.coding {
            headers.insert(ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
        }
        response
    }
}

/// Marks a request whose body arrived gzip-compressed (see [`normalize_content_encoding`]).
#[derive(Debug, Clone, Copy)]
pub struct Gzipped;

/// Runs before tower-http's request decompression, which recognises the exact token `gzip`
/// only: content codings are case-insensitive and `x-gzip` is gzip (RFC 9110 8.4.1.3), and
/// `identity` means no coding at all. Marks gzip requests with [`Gzipped`].
pub async fn normalize_content_encoding(mut request: Request) -> Request {
    let coding = request
        .headers()
        .get(CONTENT_ENCODING)
        .and_then(|value| value.to_str().ok())
        .map(|value| value.trim().to_ascii_lowercase());
    match coding.as_deref() {
        Some("gzip" | "x-gzip") => {
            request
                .headers_mut()
                .insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            request.extensions_mut().insert(Gzipped);
        }
        Some("identity" | "") => {
            request.headers_mut().remove(CONTENT_ENCODING);
        }
        _ => {}
    }
    request
}

/// A body whose Content-Encoding is still there was not decoded (only gzip is): 415, rather
/// than reading compressed bytes as JSON (a 422 that says nothing about why).
fn refuse_other_encodings(headers: &HeaderMap) -> Result<(), BodyRefused> {
    let Some(declared) = headers.get(CONTENT_ENCODING) else {
        return Ok(());
    };
    let shown: String = declared
        .to_str()
        .unwrap_or("(not text)")
        .chars()
        .take(100)
        .collect();
    Err(BodyRefused {
        error: ApiError::UnsupportedMediaType(format!(
            "Content-Encoding {shown:?} is not supported; send the body uncompressed or as gzip."
        )),
        coding: true,
    })
}

/// A body declared as anything but JSON is refused (415): browsers send `text/plain`, form and
/// multipart bodies across origins without asking, so reading them as JSON would let any web
/// page post logs, feedback or training jobs here (FastAPI closed the same hole in 0.65.2,
/// CVE-2021-32677). A body without a content type is still read as JSON, as the contract says.
fn refuse_other_media_types(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(declared) = headers.get(CONTENT_TYPE) else {
        return Ok(());
    };
    let text = declared.to_str().unwrap_or("");
    let essence = text
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let json = essence.is_empty()
        || essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"));
    if json {
        Ok(())
    } else {
        let shown: String = text.chars().take(100).collect();
        Err(ApiError::UnsupportedMediaType(format!(
            "Content-Type {shown:?} is not JSON; send the body as application/json."
        )))
    }
}

/// 413 for a list of `count` items over `MAX_LOGS_PER_REQUEST` (`limit`).
pub fn too_many(count: usize, what: &str, limit: usize) -> ApiError {
    ApiError::PayloadTooLarge(format!(
        "{count} {what} in one request; the limit is {limit} (MAX_LOGS_PER_REQUEST). Split the batch."
    ))
}

/// Pydantic's `string_too_long` for a `service` or `source` at `loc` of `chars` characters. The
/// input is not echoed back: it may be megabytes.
pub fn name_too_long(loc: Loc, chars: usize) -> FieldError {
    FieldError {
        kind: "string_too_long",
        loc,
        msg: format!("String should have at most {MAX_NAME_CHARS} characters"),
        input: json!(format!("<{chars} characters>")),
        ctx: Some(json!({ "max_length": MAX_NAME_CHARS })),
    }
}

/// Every `service` or `source` over [`MAX_NAME_CHARS`] among `logs` (each with its location),
/// as one 422.
///
/// # Errors
/// The 422 listing each one.
pub fn check_names<'a>(logs: impl IntoIterator<Item = (Loc, &'a RawLog)>) -> Result<(), ApiError> {
    let errors: Vec<FieldError> = logs
        .into_iter()
        .flat_map(|(loc, log)| {
            [("service", &log.service), ("source", &log.source)]
                .into_iter()
                .filter_map(move |(field, text)| {
                    let chars = text.chars().count();
                    (chars > MAX_NAME_CHARS).then(|| name_too_long(child(&loc, field), chars))
                })
                .collect::<Vec<_>>()
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Unprocessable(errors))
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
        match value.as_number().and_then(label_of) {
            Some(label) => Some(label == 1),
            None => {
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
        let parsed = value.as_str().and_then(FormatType::from_name);
        if parsed.is_none() {
            let expected = "'json', 'key_value', 'regex', 'custom' or 'auto'";
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
            envelope: None,
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

/// A label's number as 0 or 1: `1.0` is 1, as for pydantic's `Literal[0, 1]` (`1.0 == 1` in
/// Python) and for JSON Schema's `integer` (Schemathesis sends `1.0` for it).
pub fn label_of(number: &serde_json::Number) -> Option<u8> {
    match number.as_u64() {
        Some(label @ (0 | 1)) => Some(label as u8),
        Some(_) => None,
        None => match number.as_f64() {
            Some(0.0) => Some(0),
            Some(1.0) => Some(1),
            _ => None,
        },
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
    use std::cell::Cell;
    use std::fmt::Debug;

    use proptest::collection::{btree_map, vec};
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    use serde::de::DeserializeOwned;

    use super::*;
    use crate::api::feedback::FeedbackRequest;
    use crate::api::ingest::IngestRequest;
    use crate::api::training::TrainRequest;

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

    // The fast path and the checker, held to each other. They drifted twice: a body one of them
    // took and the other refused. The bodies below are the contract's, valid or one step off.

    const FORMAT_NAMES: [&str; 5] = ["json", "key_value", "regex", "custom", "auto"];

    /// Any small JSON value: what a field of the wrong type looks like.
    fn junk() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            (-1e6..1e6f64).prop_map(Value::from),
            "\\PC{0,6}".prop_map(Value::from),
            // Numbers, a label, a format and a null spelled as strings.
            prop::sample::select(vec!["0", "1", "1.0", "json", "null", ""]).prop_map(Value::from),
        ];
        leaf.prop_recursive(2, 8, 3, |inner| {
            prop_oneof![
                vec(inner.clone(), 0..3).prop_map(Value::from),
                btree_map("[a-z_]{0,6}", inner, 0..3)
                    .prop_map(|map| Value::Object(map.into_iter().collect())),
            ]
        })
    }

    /// One step off the schema, for an object.
    #[derive(Debug, Clone)]
    enum Mutation {
        Keep,
        /// The n-th field (modulo their number) is left out.
        Remove(usize),
        /// The n-th field holds something else.
        Replace(usize, Value),
        /// A field the schema does not know (or one it knows, set again).
        Extra(String, Value),
        /// The field values in declaration order, as a list: serde's sequence form of a struct.
        AsList,
        /// Not the object at all.
        Whole(Value),
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        prop_oneof![
            12 => Just(Mutation::Keep),
            1 => any::<usize>().prop_map(Mutation::Remove),
            1 => (any::<usize>(), junk()).prop_map(|(n, value)| Mutation::Replace(n, value)),
            1 => ("[a-z_]{1,8}", junk()).prop_map(|(key, value)| Mutation::Extra(key, value)),
            1 => Just(Mutation::AsList),
            1 => junk().prop_map(Mutation::Whole),
        ]
    }

    /// `fields` (in the type's declaration order) as an object, then `mutation`.
    fn object(mut fields: Vec<(String, Value)>, mutation: Mutation) -> Value {
        let len = fields.len();
        match mutation {
            Mutation::Keep => {}
            Mutation::Remove(n) => {
                fields.remove(n % len);
            }
            Mutation::Replace(n, value) => fields[n % len].1 = value,
            Mutation::Extra(key, value) => fields.push((key, value)),
            Mutation::AsList => {
                return Value::Array(fields.into_iter().map(|(_, value)| value).collect());
            }
            Mutation::Whole(value) => return value,
        }
        Value::Object(fields.into_iter().collect())
    }

    fn field(key: &str, value: impl Into<Value>) -> (String, Value) {
        (key.to_owned(), value.into())
    }

    fn format_type() -> impl Strategy<Value = Value> {
        let name = || prop::sample::select(FORMAT_NAMES.to_vec());
        prop_oneof![
            12 => name().prop_map(Value::from),
            1 => prop::sample::select(vec!["xml", "JSON", "Json", " json", "key-value", ""])
                .prop_map(Value::from),
            // serde's map and list forms of an enum variant.
            1 => name().prop_map(|name| json!({ name: null })),
            1 => name().prop_map(|name| json!([name])),
        ]
    }

    fn custom_config() -> impl Strategy<Value = Option<Value>> {
        prop_oneof![
            6 => Just(None),
            1 => Just(Some(Value::Null)),
            2 => Just(Some(json!({"pattern": "(\\d+)", "field_mapping": {"0": "count"}}))),
            1 => Just(Some(json!({}))),
            2 => junk().prop_map(Some),
        ]
    }

    fn raw_log() -> impl Strategy<Value = Value> {
        let text = prop_oneof!["\\PC{0,24}", Just(r#"{"response_time": 5}"#.to_owned())];
        let name = prop_oneof![
            prop::sample::select(vec!["web_server", "database", ""]).prop_map(str::to_owned),
            "\\PC{0,6}",
        ];
        (
            text,
            name.clone(),
            name,
            format_type(),
            custom_config(),
            mutation(),
        )
            .prop_map(
                |(raw_log, service, source, format_type, custom_config, mutation)| {
                    let mut fields = vec![
                        field("raw_log", raw_log),
                        field("service", service),
                        field("source", source),
                        field("format_type", format_type),
                    ];
                    fields.extend(custom_config.map(|config| field("custom_config", config)));
                    object(fields, mutation)
                },
            )
    }

    fn raw_logs() -> impl Strategy<Value = Value> {
        vec(raw_log(), 0..4).prop_map(Value::from)
    }

    fn tags() -> impl Strategy<Value = Option<Value>> {
        prop_oneof![
            4 => Just(None),
            1 => Just(Some(Value::Null)),
            2 => btree_map("[a-z]{0,5}", "\\PC{0,5}", 0..3)
                .prop_map(|map| Some(Value::Object(map.into_iter().map(|(k, v)| (k, v.into())).collect()))),
            2 => junk().prop_map(Some),
        ]
    }

    fn ingest_body() -> impl Strategy<Value = Value> {
        (raw_logs(), tags(), mutation()).prop_map(|(logs, tags, mutation)| {
            let mut fields = vec![field("logs", logs)];
            fields.extend(tags.map(|tags| field("tags", tags)));
            object(fields, mutation)
        })
    }

    fn train_body() -> impl Strategy<Value = Value> {
        (raw_logs(), mutation())
            .prop_map(|(logs, mutation)| object(vec![field("logs", logs)], mutation))
    }

    fn feedback_body() -> impl Strategy<Value = Value> {
        let label = prop_oneof![
            12 => prop::sample::select(vec![0, 1]).prop_map(Value::from),
            3 => prop::sample::select(vec![
                json!(2), json!(255), json!(256), json!(-1), json!(1.0), json!("1"), json!(true), Value::Null,
            ]),
        ];
        let item = (raw_log(), label, mutation()).prop_map(|(log, label, mutation)| {
            object(
                vec![field("log", log), field("is_anomaly", label)],
                mutation,
            )
        });
        (vec(item, 0..3), mutation())
            .prop_map(|(items, mutation)| object(vec![field("feedback", items)], mutation))
    }

    /// Runs `decode`'s two paths on every body of `bodies` and asserts they agree: the fast path
    /// accepts a body exactly when the checker does, with the same value. Both outcomes must
    /// come up often, or the bodies test nothing.
    ///
    /// One difference is intended and left out here (a `Value` cannot hold it): a repeated key.
    /// serde refuses it on the fast path, and the checker then reads the last one, as Python's
    /// `json` does for FastAPI (`a_repeated_key_is_read_as_its_last_value` pins it).
    fn assert_paths_agree<T: DeserializeOwned + PartialEq + Debug>(
        bodies: impl Strategy<Value = Value>,
        check: fn(&mut Checker, &Value) -> Option<T>,
    ) {
        let (accepted, refused) = (Cell::new(0), Cell::new(0));
        let mut runner = TestRunner::new(Config {
            cases: 2000,
            failure_persistence: None,
            ..Config::default()
        });
        runner
            .run(&bodies, |body| {
                let bytes = serde_json::to_vec(&body).expect("serializes");
                let fast = decode_fast::<T>(&bytes);
                let checked = decode_checked(&bytes, check).ok();
                prop_assert_eq!(&fast, &checked, "body: {}", body);
                let count = if fast.is_some() { &accepted } else { &refused };
                count.set(count.get() + 1);
                Ok(())
            })
            .unwrap_or_else(|failure| panic!("{failure}"));
        assert!(accepted.get() >= 200, "{} accepted", accepted.get());
        assert!(refused.get() >= 200, "{} refused", refused.get());
    }

    #[test]
    fn the_fast_path_and_the_checker_agree_on_ingest_bodies() {
        assert_paths_agree(ingest_body(), IngestRequest::check);
    }

    #[test]
    fn the_fast_path_and_the_checker_agree_on_train_bodies() {
        assert_paths_agree(train_body(), TrainRequest::check);
    }

    #[test]
    fn the_fast_path_and_the_checker_agree_on_feedback_bodies() {
        assert_paths_agree(feedback_body(), FeedbackRequest::check);
    }

    #[test]
    fn a_label_written_as_a_whole_float_is_that_label_on_both_paths() {
        use crate::api::feedback::FeedbackRequest;
        let log = json!({"raw_log": "x", "service": "s", "source": "t", "format_type": "json"});
        for (label, expected) in [
            (json!(1.0), Some(1)),
            (json!(0.0), Some(0)),
            (json!(0.5), None),
            (json!(2), None),
        ] {
            let body =
                serde_json::to_vec(&json!({"feedback": [{"log": log, "is_anomaly": label}]}))
                    .expect("json");
            let fast: Option<FeedbackRequest> = decode_fast(&body);
            let checked = decode_checked(&body, FeedbackRequest::check).ok();
            assert_eq!(
                fast.as_ref().map(|r| r.feedback[0].is_anomaly),
                expected,
                "{label}"
            );
            assert_eq!(
                checked.map(|r| r.feedback[0].is_anomaly),
                expected,
                "{label}"
            );
        }
    }

    #[test]
    fn a_repeated_key_is_read_as_its_last_value() {
        let body = JsonBody(Bytes::from_static(
            br#"{"logs": 5, "logs": [{"raw_log": "x", "service": "a", "source": "b", "format_type": "json"}]}"#,
        ));
        assert!(decode_fast::<IngestRequest>(&body.0).is_none());
        let request = body
            .decode(IngestRequest::check)
            .expect("the last `logs` is valid");
        assert_eq!(request.logs.len(), 1);
        assert_eq!(request.logs[0].raw_log, "x");
    }
}
