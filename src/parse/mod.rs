//! TEMPORARY SHIM - not to be committed.
#![allow(unused, clippy::all)]
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FormatType {
    Json,
    KeyValue,
    Regex,
    Custom,
}
impl FormatType {
    pub fn as_str(&self) -> &'static str {
        todo!()
    }
}
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RawLog {
    pub raw_log: String,
    pub service: String,
    pub source: String,
    pub format_type: FormatType,
    #[serde(default)]
    pub custom_config: Option<serde_json::Value>,
}
#[derive(Debug, Clone)]
pub struct Features;
impl Features {
    pub fn get(&self, name: &str) -> Option<f64> {
        todo!()
    }
    pub fn iter(&self) -> impl Iterator<Item = (&str, f64)> {
        std::iter::empty()
    }
    pub fn is_empty(&self) -> bool {
        todo!()
    }
    pub fn len(&self) -> usize {
        todo!()
    }
}
#[derive(Debug, Clone)]
pub struct ParsedLog {
    pub timestamp: Option<chrono::DateTime<chrono::Utc>>,
    pub level: Option<String>,
    pub message: Option<String>,
    pub features: Features,
    pub attributes: BTreeMap<String, String>,
}
#[derive(Debug)]
pub struct Parser;
impl Parser {
    pub fn new(c: usize) -> Parser {
        Parser
    }
    pub fn parse(&self, log: &RawLog) -> Result<ParsedLog, ParseError> {
        todo!()
    }
}
#[derive(Debug, thiserror::Error)]
#[error("parse")]
pub struct ParseError;
