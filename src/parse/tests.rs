//! Tests of the module's public face ([`Parser`], [`Features`], the wire types) and property tests
//! across every parser: no input panics, and rendered key=value and JSON features read back unchanged.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Timelike, Utc};
use proptest::prelude::*;
use serde_json::{Value, json};

use super::fields::{LEVEL_KEYS, MESSAGE_KEYS, TIMESTAMP_KEYS};
use super::timestamp::parse_timestamp;
use super::value::parse_quantity;
use super::*;

fn raw(format_type: FormatType, raw_log: &str, custom_config: Option<Value>) -> RawLog {
    RawLog {
        raw_log: raw_log.to_owned(),
        service: "svc".to_owned(),
        source: "test".to_owned(),
        format_type,
        custom_config: custom_config.map(|config| Arc::new(config.into())),
        envelope: None,
    }
}

#[test]
fn parser_and_its_parts_can_be_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Parser>();
    assert_send_sync::<ParsedLog>();
    assert_send_sync::<ParseError>();
    assert_send_sync::<RawLog>();
}

#[test]
fn format_types_use_the_contract_wire_names() {
    for (format, name) in [
        (FormatType::Json, "json"),
        (FormatType::KeyValue, "key_value"),
        (FormatType::Regex, "regex"),
        (FormatType::Custom, "custom"),
        (FormatType::Auto, "auto"),
    ] {
        assert_eq!(format.as_str(), name);
        assert_eq!(name.parse::<FormatType>().ok(), Some(format));
        assert_eq!(
            serde_json::to_value(format).expect("serializes"),
            json!(name)
        );
        assert_eq!(
            serde_json::from_value::<FormatType>(json!(name)).expect("deserializes"),
            format
        );
    }
    assert!(serde_json::from_value::<FormatType>(json!("xml")).is_err());
    // serde's map form of a variant is not a wire name.
    assert!(serde_json::from_value::<FormatType>(json!({"json": null})).is_err());
}

#[test]
fn auto_reads_a_json_object_key_value_pairs_or_a_plain_message() {
    let parser = Parser::new(4);
    let auto = |line: &str| {
        parser
            .parse(&raw(FormatType::Auto, line, None))
            .expect("never fails")
    };
    let named = |format, line: &str| parser.parse(&raw(format, line, None)).expect("parses");
    for line in [
        r#"{"latency": "5ms", "level": "WARN"}"#,
        r#"  {"msg": "x", "n": [1]}"#,
    ] {
        assert_eq!(auto(line), named(FormatType::Json, line), "{line}");
    }
    for line in [
        "2024-01-15T10:00:01Z ERROR query_time=5000ms connection_count=100",
        "latency=5ms",
        "connection reset by peer",
        "{not json at all",
        "[1, 2, 3]",
        "",
    ] {
        assert_eq!(auto(line), named(FormatType::KeyValue, line), "{line}");
    }
    let plain = auto("connection reset by peer");
    assert_eq!(plain.message.as_deref(), Some("connection reset by peer"));
    assert!(plain.features.is_empty() && plain.attributes.is_empty());
}

#[test]
fn raw_log_reads_with_and_without_custom_config() {
    let log: RawLog = serde_json::from_value(
        json!({"raw_log": "a=1", "service": "s", "source": "x", "format_type": "key_value"}),
    )
    .expect("deserializes");
    assert_eq!(log.custom_config, None);
    let with: RawLog =
        serde_json::from_value(json!({"raw_log": "a", "service": "s", "source": "x",
        "format_type": "regex", "custom_config": {"pattern": "(a)"}}))
        .expect("deserializes");
    assert_eq!(
        with.custom_config,
        Some(Arc::new(json!({"pattern": "(a)"}).into()))
    );
    let back: RawLog =
        serde_json::from_value(serde_json::to_value(&with).expect("serializes")).expect("reads");
    assert_eq!(back, with);
}

#[test]
fn the_parser_dispatches_on_format_type() {
    let parser = Parser::new(4);
    let json_log = parser
        .parse(&raw(FormatType::Json, r#"{"latency":"5ms"}"#, None))
        .expect("json");
    assert_eq!(json_log.features.get("latency"), Some(5.0));
    let kv_log = parser
        .parse(&raw(FormatType::KeyValue, "latency=5ms", None))
        .expect("key_value");
    assert_eq!(kv_log.features, json_log.features);
    let config = json!({"pattern": r"latency=(\S+)", "field_mapping": {"0": "latency"}});
    let regex_log = parser
        .parse(&raw(FormatType::Regex, "latency=5ms", Some(config)))
        .expect("regex");
    assert_eq!(regex_log, kv_log);
}

#[test]
fn custom_is_a_clear_per_log_error() {
    let error = Parser::new(1)
        .parse(&raw(FormatType::Custom, "anything", Some(json!({}))))
        .expect_err("unsupported");
    assert!(matches!(error, ParseError::Unsupported));
    assert!(
        error
            .to_string()
            .starts_with("format_type 'custom' is not supported: ")
    );
}

#[test]
fn regex_without_config_names_custom_config() {
    let error = Parser::new(1)
        .parse(&raw(FormatType::Regex, "x", None))
        .expect_err("no config");
    assert!(error.to_string().contains("custom_config"));
}

#[test]
fn features_are_sorted_unique_and_serialize_as_an_object() {
    let features: Features = [("b", 1.0), ("a", 2.0), ("b", 3.0)].into_iter().collect();
    assert_eq!(features.len(), 2);
    assert_eq!(features.get("a"), Some(2.0));
    assert_eq!(features.get("b"), Some(3.0));
    assert_eq!(features.get("c"), None);
    assert_eq!(
        serde_json::to_value(&features).expect("serializes"),
        json!({"a": 2.0, "b": 3.0})
    );
    assert!(Features::new().is_empty());
    let same: Features = [("a", 2.0), ("b", 3.0)].into_iter().collect();
    assert_eq!(features, same);
}

#[test]
fn a_parsed_log_serializes_with_its_features_as_an_object() {
    let log = parse_key_value("2024-01-15T10:00:00Z INFO a=1 host=h");
    assert_eq!(
        serde_json::to_value(&log).expect("serializes"),
        json!({"timestamp": "2024-01-15T10:00:00Z", "level": "INFO", "message": null,
               "features": {"a": 1.0}, "attributes": {"host": "h"}})
    );
}

// ---------------------------------------------------------------------------------------------
// Property tests

/// A name no classification rule treats specially, so its value is a feature or an attribute.
fn plain_name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_]{0,5}(\\.[a-z][a-z0-9_]{0,5}){0,2}".prop_filter(
        "a reserved or identifier name",
        |name| {
            let reserved = TIMESTAMP_KEYS
                .iter()
                .chain(&LEVEL_KEYS)
                .chain(&MESSAGE_KEYS)
                .any(|key| key.eq_ignore_ascii_case(name) || name.ends_with(&format!(".{key}")));
            !reserved && !name.ends_with("id")
        },
    )
}

/// A value and the unit text it is written with, such that value × factor is exact.
fn quantity() -> impl Strategy<Value = (f64, String, f64)> {
    prop_oneof![
        // Any finite float, written as Rust writes it (the shortest text that reads back exactly).
        any::<f64>()
            .prop_filter("finite", |v| v.is_finite())
            .prop_map(|v| (v, String::new(), v)),
        // Whole numbers with a unit whose factor is a whole number.
        (
            -1_000_000i64..1_000_000,
            prop::sample::select(vec![
                ("", 1.0),
                ("ms", 1.0),
                ("s", 1e3),
                ("m", 60e3),
                ("min", 60e3),
                ("h", 3_600e3),
                ("B", 1.0),
                ("KB", 1e3),
                ("kib", 1024.0),
                ("MiB", 1_048_576.0),
                ("GB", 1e9),
                ("%", 1.0),
            ])
        )
            .prop_map(|(n, (unit, factor))| (n as f64, unit.to_owned(), n as f64 * factor)),
    ]
}

/// Text that stays text: not a quantity, not a boolean.
fn text_value() -> impl Strategy<Value = String> {
    "\\PC{0,24}".prop_filter("reads as a number or boolean", |text| {
        parse_quantity(text).is_none()
            && !text.eq_ignore_ascii_case("true")
            && !text.eq_ignore_ascii_case("false")
    })
}

fn quote(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            '\r' => quoted.push_str("\\r"),
            '\t' => quoted.push_str("\\t"),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// Arbitrary JSON, nested a few levels, with any text as keys and strings.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,16}".prop_map(Value::String),
        prop::sample::select(vec![
            "1.5s",
            "93%",
            "2KiB",
            "2024-01-15T10:00:00Z",
            "1705312800",
            "ERROR"
        ])
        .prop_map(|s| Value::String(s.to_owned())),
    ];
    leaf.prop_recursive(4, 48, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    ".{0,10}".boxed(),
                    prop::sample::select(vec!["timestamp", "ts", "level", "msg", "id", "a.b"])
                        .prop_map(str::to_owned)
                        .boxed(),
                ],
                inner,
                0..6
            )
            .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

fn any_datetime() -> impl Strategy<Value = DateTime<Utc>> {
    // 0001-01-01 to 9999-12-31, to the nanosecond.
    (-62_135_596_800i64..253_402_300_799, 0u32..1_000_000_000)
        .prop_filter_map("representable", |(seconds, nanos)| {
            DateTime::from_timestamp(seconds, nanos)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Lookups find what a map of the same pairs holds (the last value of a repeated name), for
    /// few features (scanned) and many (bisected).
    #[test]
    fn feature_lookups_agree_with_a_map(
        pairs in proptest::collection::vec(("[a-e_]{0,4}", -1e3..1e3f64), 0..40),
        probes in proptest::collection::vec("[a-e_]{0,4}", 0..10),
    ) {
        let features: Features = pairs.iter().map(|(name, value)| (name.as_str(), *value)).collect();
        let map: BTreeMap<&str, f64> = pairs.iter().map(|(name, value)| (name.as_str(), *value)).collect();
        prop_assert_eq!(features.len(), map.len());
        for name in map.keys().copied().chain(probes.iter().map(String::as_str)) {
            prop_assert_eq!(features.get(name), map.get(name).copied(), "{}", name);
        }
    }

    #[test]
    fn key_value_never_panics(line in "\\PC{0,256}") {
        let log = parse_key_value(&line);
        prop_assert!(log.features.iter().all(|(_, v)| v.is_finite()));
    }

    #[test]
    fn key_value_never_panics_on_any_string(line in any::<String>()) {
        let _ = parse_key_value(&line);
    }

    #[test]
    fn key_value_never_panics_on_logfmt_like_noise(line in "[a-z0-9=\" \\\\\\[\\]:.%-]{0,64}") {
        let _ = parse_key_value(&line);
    }

    #[test]
    fn json_never_panics_on_any_string(text in any::<String>()) {
        let _ = parse_json(&text);
    }

    #[test]
    fn json_never_panics_on_any_json_and_objects_always_parse(value in json_value()) {
        let result = parse_json(&value.to_string());
        prop_assert_eq!(result.is_ok(), value.is_object(), "{}", value);
        if let Ok(log) = result {
            prop_assert!(log.features.iter().all(|(_, v)| v.is_finite()));
        }
    }

    #[test]
    fn regex_never_panics_on_any_pattern_mapping_or_line(
        pattern in prop_oneof!["\\PC{0,32}", "[()\\[\\]{}?*+|.^$\\\\a-z0-9<>:=PdswbD-]{0,32}"],
        mapping in prop::collection::btree_map("[0-9]{1,2}|[a-z]{1,3}|\\PC{0,4}", ".{0,8}", 0..5),
        line in "\\PC{0,64}",
    ) {
        // One small shared cache, so eviction runs too.
        static PARSER: std::sync::LazyLock<Parser> = std::sync::LazyLock::new(|| Parser::new(8));
        let config = json!({"pattern": pattern, "field_mapping": mapping});
        let _ = PARSER.parse(&raw(FormatType::Regex, &line, Some(config)));
    }

    #[test]
    fn regex_never_panics_on_any_config_shape(config in json_value(), line in ".{0,32}") {
        let _ = Parser::new(2).parse(&raw(FormatType::Regex, &line, Some(config)));
    }

    #[test]
    fn quantities_never_panic_and_are_finite(text in any::<String>()) {
        if let Some(value) = parse_quantity(&text) {
            prop_assert!(value.is_finite());
        }
    }

    #[test]
    fn timestamps_never_panic(text in any::<String>()) {
        let _ = parse_timestamp(&text);
    }

    #[test]
    fn rfc3339_timestamps_read_back(
        time in any_datetime(),
        format in prop::sample::select(vec![
            SecondsFormat::Secs, SecondsFormat::Millis, SecondsFormat::Micros,
            SecondsFormat::Nanos, SecondsFormat::AutoSi,
        ]),
        use_z in any::<bool>(),
    ) {
        let text = time.to_rfc3339_opts(format, use_z);
        // The text keeps only the digits the format writes.
        let keep = match format {
            SecondsFormat::Secs => 1_000_000_000,
            SecondsFormat::Millis => 1_000_000,
            SecondsFormat::Micros => 1_000,
            _ => 1,
        };
        let nanos = time.timestamp_subsec_nanos();
        let expected = time.with_nanosecond(nanos - nanos % keep).expect("fewer nanoseconds");
        prop_assert_eq!(parse_timestamp(&text), Some(expected), "{}", text);
        let naive = time.format("%Y-%m-%d %H:%M:%S%.f").to_string();
        prop_assert_eq!(parse_timestamp(&naive), Some(time), "{}", naive);
    }

    #[test]
    fn key_value_rendered_then_parsed_gives_the_same_features(
        features in prop::collection::btree_map(plain_name(), (quantity(), any::<bool>()), 0..12),
        texts in prop::collection::btree_map(plain_name(), text_value(), 0..6),
        prefix in prop::sample::select(vec![
            "", "2024-01-15T10:00:00Z ", "2024-01-15 10:00:00 ", "2024-01-15T10:00:00Z ERROR ", "WARN ",
            "[2024-01-15 10:00:00] [info] ",
        ]),
        separator in prop::sample::select(vec![" ", "  ", "\t"]),
    ) {
        let mut pairs = Vec::new();
        let mut expected = BTreeMap::new();
        for (name, ((number, unit, value), quoted)) in &features {
            let rendered = format!("{number}{unit}");
            pairs.push(format!("{name}={}", if *quoted { quote(&rendered) } else { rendered }));
            expected.insert(name.clone(), *value);
        }
        let mut expected_texts = BTreeMap::new();
        for (name, text) in texts.iter().filter(|(name, _)| !features.contains_key(*name)) {
            pairs.push(format!("{name}={}", quote(text)));
            expected_texts.insert(name.clone(), text.clone());
        }
        let line = format!("{prefix}{}", pairs.join(separator));

        let log = parse_key_value(&line);

        let parsed: BTreeMap<String, f64> =
            log.features.iter().map(|(name, value)| (name.to_owned(), value)).collect();
        prop_assert_eq!(parsed, expected, "{}", line);
        prop_assert_eq!(log.attributes, expected_texts, "{}", line);
        prop_assert_eq!(log.timestamp.is_some(), prefix.starts_with(['2', '[']), "{}", line);
    }

    #[test]
    fn json_rendered_then_parsed_gives_the_same_features(
        features in prop::collection::btree_map(
            "[a-z][a-z0-9_]{0,12}".prop_filter("plain", |n| !n.ends_with("id") && !TIMESTAMP_KEYS
                .iter().chain(&LEVEL_KEYS).chain(&MESSAGE_KEYS).any(|k| k == n)),
            any::<f64>().prop_filter("finite", |v| v.is_finite()),
            0..12,
        ),
    ) {
        let object: serde_json::Map<String, Value> =
            features.iter().map(|(name, value)| (name.clone(), json!(value))).collect();
        let log = parse_json(&Value::Object(object).to_string()).expect("an object parses");
        // serde_json's default float reader may land one unit in the last place off (its
        // `float_roundtrip` feature would make it exact); integers are exact.
        prop_assert_eq!(log.features.len(), features.len());
        for (name, value) in log.features.iter() {
            let expected = features[name];
            prop_assert!((value - expected).abs() <= (expected.abs() * 2.0 * f64::EPSILON).max(f64::MIN_POSITIVE), "{}: {} vs {}", name, value, expected);
        }
    }
}

#[test]
fn logs_spelling_the_same_custom_config_share_one_value() {
    let body = r#"[
        {"raw_log": "a", "service": "s", "source": "x", "format_type": "regex", "custom_config": {"pattern": "(a)"}},
        {"raw_log": "b", "service": "s", "source": "x", "format_type": "regex", "custom_config": {"pattern": "(a)"}},
        {"raw_log": "c", "service": "s", "source": "x", "format_type": "regex", "custom_config": {"pattern": "(b)"}},
        {"raw_log": "d", "service": "s", "source": "x", "format_type": "regex", "custom_config": null}
    ]"#;
    let logs: Vec<RawLog> = serde_json::from_str(body).expect("deserializes");
    let config = |i: usize| logs[i].custom_config.clone().expect("config");
    assert!(Arc::ptr_eq(&config(0), &config(1)));
    assert_eq!(config(2).value(), &json!({"pattern": "(b)"}));
    assert_eq!(logs[3].custom_config, None);
}

fn limits(max_fields: usize, max_name_chars: usize) -> FieldLimits {
    FieldLimits {
        max_fields,
        max_name_chars,
    }
}

#[test]
fn every_format_keeps_the_first_fields_up_to_the_limit_and_counts_the_rest() {
    let parser = Parser::with_limits(ParseLimits {
        fields: limits(2, 8),
        ..ParseLimits::default()
    });
    let kv = parser
        .parse(&raw(
            FormatType::KeyValue,
            "level=ERROR c=1 a=2 b=3 host=x zone=y rack=z msg=down",
            None,
        ))
        .expect("key_value");
    // The level and message are not fields; `b` and `rack` are beyond the limit.
    assert_eq!(kv.level.as_deref(), Some("ERROR"));
    assert_eq!(kv.message.as_deref(), Some("down"));
    assert_eq!(
        kv.features.iter().collect::<Vec<_>>(),
        [("a", 2.0), ("c", 1.0)]
    );
    assert_eq!(kv.attributes.len(), 2);
    assert_eq!(kv.dropped_fields, 2);

    let json_log = parser
        .parse(&raw(
            FormatType::Json,
            r#"{"averyverylongname": 1, "a": 1, "b": {"c": 2, "d": 3}}"#,
            None,
        ))
        .expect("json");
    assert_eq!(
        json_log.features.iter().collect::<Vec<_>>(),
        [("a", 1.0), ("b.c", 2.0)]
    );
    assert_eq!(json_log.dropped_fields, 2, "the long name and b.d");

    let config =
        json!({"pattern": r"(\d+) (\d+) (\d+)", "field_mapping": {"0": "x", "1": "y", "2": "z"}});
    let regex_log = parser
        .parse(&raw(FormatType::Regex, "1 2 3", Some(config)))
        .expect("regex");
    assert_eq!(regex_log.features.len(), 2);
    assert_eq!(regex_log.dropped_fields, 1);
}

#[test]
fn names_are_measured_in_characters() {
    let log = parse_key_value_within("ééé=1 éééé=2", &limits(8, 3));
    assert_eq!(log.features.iter().collect::<Vec<_>>(), [("ééé", 1.0)]);
    assert_eq!(log.dropped_fields, 1);
}

#[test]
fn a_log_within_the_limits_drops_nothing() {
    let log = parse_key_value("2024-01-01T10:00:01Z ERROR query_time=5000ms connection_count=100");
    assert_eq!(log.dropped_fields, 0);
    assert_eq!(log.features.len(), 2);
}

#[test]
fn distinct_patterns_are_counted_by_spelling_before_any_is_compiled() {
    let regex = |pattern: &str, name: &str| {
        raw(
            FormatType::Regex,
            "x",
            Some(json!({"pattern": pattern, "field_mapping": {"0": name}})),
        )
    };
    // `(` does not compile: counting never compiles.
    let logs = [
        regex("(a)", "a"),
        regex("(a)", "b"),
        regex("(", "c"),
        raw(FormatType::Json, "{}", None),
        raw(FormatType::Regex, "x", None),
    ];
    assert_eq!(check_patterns(&logs, 2), Ok(()));
    assert_eq!(
        check_patterns(&logs, 1),
        Err(TooManyPatterns { count: 2, limit: 1 })
    );
}

#[test]
fn a_batch_compiles_each_of_its_patterns_once_even_past_the_cache() {
    // A cache of one: without the batch's memory, alternating patterns would evict each other.
    let parser = Parser::new(1);
    let config = |pattern: &str| Some(json!({"pattern": pattern, "field_mapping": {"0": "n"}}));
    let mut batch = parser.batch();
    for i in 0..4 {
        for pattern in [r"(\d+)", r"n=(\d+)"] {
            let log = batch
                .parse(&raw(FormatType::Regex, &format!("n={i}"), config(pattern)))
                .expect("parses");
            assert_eq!(log.features.get("n"), Some(f64::from(i)));
        }
    }
    assert_eq!(batch.compiled_patterns(), 2);
    assert_eq!(parser.patterns.compiles(), 2, "each pattern compiled once");
    drop(batch);
    // Outside a batch the cache of one recompiles as the patterns alternate.
    for pattern in [r"(\d+)", r"n=(\d+)"] {
        parser
            .parse(&raw(FormatType::Regex, "n=1", config(pattern)))
            .expect("parses");
    }
    assert_eq!(parser.patterns.compiles(), 4);
}

#[test]
fn a_pattern_beyond_the_size_limit_names_the_limit_and_the_setting() {
    let parser = Parser::with_limits(ParseLimits {
        regex_size_limit: 64 << 10,
        ..ParseLimits::default()
    });
    let error = parser
        .parse(&raw(
            FormatType::Regex,
            "x",
            Some(json!({"pattern": r"(\w{20})"})),
        ))
        .expect_err("too big");
    assert!(matches!(error, ParseError::PatternTooBig { limit: 65536 }));
    let message = error.to_string();
    assert!(message.contains("65536 bytes"), "{message}");
    assert!(message.contains("REGEX_SIZE_LIMIT_BYTES"), "{message}");
}

proptest! {
    /// `auto` never fails, whatever the text: JSON-looking text that is not JSON falls back to
    /// key=value.
    #[test]
    fn auto_never_fails(line in "\\PC{0,200}", json_like in "\\{\\PC{0,60}") {
        let parser = Parser::new(4);
        for text in [line, json_like] {
            prop_assert!(parser.parse(&raw(FormatType::Auto, &text, None)).is_ok());
        }
    }

    /// Whatever the line, a log holds at most the limit of features and of attributes, no name
    /// longer than the limit, and every numeric pair is either kept or counted.
    #[test]
    fn key_value_fields_stay_within_the_limits_and_every_pair_is_kept_or_counted(
        pairs in prop::collection::btree_map("k[a-zé]{0,11}", 0u32..1000, 0..40),
        max_fields in 1usize..16,
        max_name_chars in 1usize..12,
    ) {
        let line: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let log = parse_key_value_within(&line.join(" "), &limits(max_fields, max_name_chars));
        prop_assert!(log.features.len() <= max_fields);
        prop_assert!(log.attributes.len() <= max_fields);
        prop_assert!(log.features.iter().all(|(name, _)| name.chars().count() <= max_name_chars));
        prop_assert_eq!(log.features.len() + log.dropped_fields as usize, pairs.len());
    }

    #[test]
    fn json_fields_stay_within_the_limits(value in json_value(), max_fields in 1usize..8) {
        if let Ok(log) = parse_json_within(&value.to_string(), &limits(max_fields, 16)) {
            prop_assert!(log.features.len() <= max_fields);
            prop_assert!(log.attributes.len() <= max_fields);
            prop_assert!(log.attributes.keys().all(|name| name.chars().count() <= 16));
        }
    }
}
