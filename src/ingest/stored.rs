//! What a stored anomaly keeps of its log: at most `MAX_STORED_ANOMALY_BYTES` of text (raw log,
//! message, attributes, tags and an OTLP record's resource), so that retention bounds the disk in
//! bytes and not only in rows, and a listing's records stay small. What is cut is said in the
//! record's `context`.

use serde_json::{Map, Value, json};

use crate::store::AnomalyRecord;

/// 8 KiB: room for any ordinary log whole (the simulator's are under 1 KiB) and the top of a stack
/// trace; at the default retention of 100,000 records the worst case measures ~0.9 GB on disk,
/// inside the chart's 1 Gi volume (README, "Retention on disk").
pub const DEFAULT_MAX_STORED_ANOMALY_BYTES: usize = 8 * 1024;

/// The metadata (attributes, tags) and the message each get at most this share of the bound; the
/// raw log gets the rest, so it is cut last.
const SHARE_DIVISOR: usize = 4;

/// Cuts `record`'s text to `max_bytes` in all (JSON-encoded size of the metadata, UTF-8 bytes of
/// the message and raw log), noting each cut in `context.stored_truncated`.
pub fn bound_stored_text(record: &mut AnomalyRecord, max_bytes: usize) {
    let metadata_budget = max_bytes / SHARE_DIVISOR;
    let mut metadata_len = encoded_len(&record.metadata);
    let message_len = record.message.as_ref().map_or(0, String::len);
    // Most records are far below the bound: one sum settles them.
    if record.raw_log.len() + message_len + metadata_budget <= max_bytes
        && metadata_len <= metadata_budget
    {
        return;
    }
    let mut cuts = Map::new();
    if metadata_len > metadata_budget {
        let mut dropped = 0;
        // An OTLP record's resource goes first: it is the same for every record of a sender.
        for key in ["resource", "attributes", "tags"] {
            if let Some(Value::Object(map)) = record.metadata.get_mut(key) {
                let others = metadata_len - encoded_len(map);
                dropped += keep_entries_within(map, metadata_budget.saturating_sub(others));
                metadata_len = encoded_len(&record.metadata);
            }
        }
        cuts.insert("metadata_entries_dropped".into(), json!(dropped));
    }
    if let Some(message) = record.message.as_mut()
        && message.len() > max_bytes / SHARE_DIVISOR
    {
        cuts.insert("message_bytes".into(), json!(message.len()));
        truncate_at_char(message, max_bytes / SHARE_DIVISOR);
    }
    let message_len = record.message.as_ref().map_or(0, String::len);
    let raw_budget = max_bytes.saturating_sub(metadata_len + message_len);
    if record.raw_log.len() > raw_budget {
        cuts.insert("raw_log_bytes".into(), json!(record.raw_log.len()));
        truncate_at_char(&mut record.raw_log, raw_budget);
    }
    if !cuts.is_empty() {
        record
            .context
            .insert("stored_truncated".into(), Value::Object(cuts));
    }
}

fn encoded_len(map: &Map<String, Value>) -> usize {
    serde_json::to_vec(map).map_or(0, |bytes| bytes.len())
}

/// Keeps `map`'s entries, in order, while their encoding fits `budget`; returns how many went.
fn keep_entries_within(map: &mut Map<String, Value>, budget: usize) -> usize {
    let mut used = 2; // the braces
    let before = map.len();
    map.retain(|key, value| {
        let entry = key.len() + 4 + serde_json::to_vec(value).map_or(0, |bytes| bytes.len());
        if used + entry <= budget {
            used += entry;
            true
        } else {
            false
        }
    });
    before - map.len()
}

/// Cuts `text` to at most `max` bytes, at a character boundary.
fn truncate_at_char(text: &mut String, max: usize) {
    if text.len() <= max {
        return;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(
        raw_log: &str,
        message: Option<&str>,
        attributes: Map<String, Value>,
    ) -> AnomalyRecord {
        let mut record = crate::store::testing::anomaly(
            "web",
            1,
            Some(-0.2),
            crate::detect::DetectorKind::Model,
        );
        record.raw_log = raw_log.to_owned();
        record.message = message.map(str::to_owned);
        record.metadata = Map::new();
        record.metadata.insert("format_type".into(), json!("json"));
        record
            .metadata
            .insert("attributes".into(), Value::Object(attributes));
        record
    }

    fn stored_len(record: &AnomalyRecord) -> usize {
        record.raw_log.len()
            + record.message.as_ref().map_or(0, String::len)
            + encoded_len(&record.metadata)
    }

    #[test]
    fn an_ordinary_record_is_kept_whole() {
        let mut attributes = Map::new();
        attributes.insert("level".into(), json!("ERROR"));
        let mut kept = record(
            r#"{"level":"ERROR","message":"boom"}"#,
            Some("boom"),
            attributes,
        );
        let before = kept.clone();
        bound_stored_text(&mut kept, 4096);
        assert_eq!(kept, before);
    }

    #[test]
    fn every_part_is_cut_to_fit_and_the_cuts_are_noted() {
        let mut attributes = Map::new();
        for i in 0..500 {
            attributes.insert(format!("field_{i}"), json!("x".repeat(40)));
        }
        let huge = "é".repeat(40_000);
        let mut cut = record(&huge, Some(&huge), attributes);
        bound_stored_text(&mut cut, 4096);
        assert!(stored_len(&cut) <= 4096, "{}", stored_len(&cut));
        let noted = &cut.context["stored_truncated"];
        assert_eq!(noted["raw_log_bytes"], 80_000);
        assert_eq!(noted["message_bytes"], 80_000);
        assert!(
            noted["metadata_entries_dropped"].as_u64() > Some(400),
            "{noted}"
        );
        assert!(cut.raw_log.len() > 1000, "the raw log keeps what is left");
        assert!(
            cut.raw_log.chars().all(|c| c == 'é'),
            "cut at a character boundary"
        );
    }

    proptest::proptest! {
        #[test]
        fn the_bound_always_holds(raw in ".{0,3000}", message in proptest::option::of(".{0,3000}"),
                                  values in proptest::collection::vec(".{0,200}", 0..40),
                                  max in 1024usize..8192) {
            let attributes: Map<String, Value> = values
                .iter()
                .enumerate()
                .map(|(i, v)| (format!("a{i}"), json!(v)))
                .collect();
            let mut bounded = record(&raw, message.as_deref(), attributes);
            bound_stored_text(&mut bounded, max);
            proptest::prop_assert!(stored_len(&bounded) <= max);
        }
    }
}
