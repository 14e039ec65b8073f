use super::*;

/// The sample lines of `text` for `name` (exact metric name, any labels).
fn samples<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .collect()
}

fn value_of(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
}

fn assert_send_sync<T: Send + Sync>() {}

#[test]
fn the_metrics_are_send_and_sync() {
    assert_send_sync::<Metrics>();
}

#[test]
fn a_batch_tally_counts_formats_services_and_detectors() {
    // Arrange
    let metrics = Metrics::new(10);
    let mut tally = BatchTally {
        logs: [3, 1, 0, 0, 0],
        parse_errors: [1, 0, 0, 0, 0],
        ..BatchTally::default()
    };
    for (service, anomaly) in [
        ("web", None),
        ("web", Some(true)),
        ("db", Some(false)),
        ("web", None),
    ] {
        tally.service(service, anomaly);
    }

    // Act
    metrics.record_batch(&tally);
    let text = metrics.encode(&Snapshot::default(), Format::OpenMetrics);

    // Assert
    assert_eq!(
        value_of(&text, "aioops_logs_ingested_total{format=\"json\"}"),
        Some(3.0)
    );
    assert_eq!(
        value_of(&text, "aioops_log_parse_errors_total{format=\"json\"}"),
        Some(1.0)
    );
    assert_eq!(
        value_of(&text, "aioops_service_logs_total{service=\"web\"}"),
        Some(3.0)
    );
    assert_eq!(
        value_of(
            &text,
            "aioops_service_anomalies_total{service=\"db\",detector=\"model\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        value_of(&text, "aioops_anomalies_total{detector=\"rule\"}"),
        Some(1.0)
    );
    assert!(text.ends_with("# EOF\n"), "{text}");
}

#[test]
fn services_beyond_the_bound_share_one_series() {
    let metrics = Metrics::new(2);
    for service in ["a", "b", "c", "d", "a"] {
        let mut tally = BatchTally::default();
        tally.service(service, Some(true));
        metrics.record_batch(&tally);
    }
    let text = metrics.encode(&Snapshot::default(), Format::OpenMetrics);
    let services = samples(&text, "aioops_service_logs_total");
    assert_eq!(services.len(), 3, "{services:?}");
    assert_eq!(
        value_of(&text, "aioops_service_logs_total{service=\"a\"}"),
        Some(2.0)
    );
    assert_eq!(
        value_of(&text, "aioops_service_logs_total{service=\"__other__\"}"),
        Some(2.0)
    );
    assert_eq!(metrics.service_label("c"), OTHER_SERVICE);
    assert_eq!(metrics.service_label("b"), "b");
}

#[test]
fn a_bound_of_zero_folds_every_service() {
    let metrics = Metrics::new(0);
    let mut tally = BatchTally::default();
    tally.service("web", None);
    metrics.record_batch(&tally);
    let text = metrics.encode(&Snapshot::default(), Format::Text);
    assert_eq!(
        samples(&text, "aioops_service_logs_total"),
        ["aioops_service_logs_total{service=\"__other__\"} 1"]
    );
}

#[test]
fn label_values_from_clients_are_escaped() {
    let metrics = Metrics::new(10);
    let mut tally = BatchTally::default();
    tally.service("we\"b\\x\ny", None);
    metrics.record_batch(&tally);
    let text = metrics.encode(&Snapshot::default(), Format::Text);
    assert!(
        samples(&text, "aioops_service_logs_total")
            .contains(&r#"aioops_service_logs_total{service="we\"b\\x\ny"} 1"#),
        "{text}"
    );
}

#[test]
fn the_text_format_names_counters_with_total_and_has_no_eof() {
    let metrics = Metrics::new(10);
    // A family without series is left out: give the request families one.
    let labels = HttpLabels {
        method: "GET",
        route: "/health".to_owned(),
        status: 200,
    };
    metrics.observe_request(&labels, Duration::from_millis(1));
    let text = metrics.encode(&Snapshot::default(), Format::Text);
    assert!(
        text.contains("# TYPE aioops_http_requests_total counter\n"),
        "{text}"
    );
    assert!(
        text.contains("# HELP aioops_http_requests_total "),
        "{text}"
    );
    assert!(
        text.contains("# TYPE aioops_http_request_duration_seconds histogram\n"),
        "{text}"
    );
    assert!(!text.contains("# EOF"));
    assert!(!text.contains("# UNIT"));
    let openmetrics = metrics.encode(&Snapshot::default(), Format::OpenMetrics);
    assert!(openmetrics.contains("# TYPE aioops_http_requests counter\n"));
    assert!(openmetrics.contains("# UNIT aioops_http_request_duration_seconds seconds\n"));
}

#[test]
fn requests_are_counted_by_route_template_and_status() {
    let metrics = Metrics::new(10);
    let labels = HttpLabels {
        method: "GET",
        route: "/api/v1/train/{job_id}".to_owned(),
        status: 404,
    };
    metrics.observe_request(&labels, Duration::from_millis(3));
    metrics.observe_request(&labels, Duration::from_millis(3));
    let text = metrics.encode(&Snapshot::default(), Format::Text);
    assert_eq!(
        value_of(
            &text,
            "aioops_http_requests_total{method=\"GET\",route=\"/api/v1/train/{job_id}\",status=\"404\"}"
        ),
        Some(2.0)
    );
    assert_eq!(
        value_of(
            &text,
            "aioops_http_request_duration_seconds_count{method=\"GET\",route=\"/api/v1/train/{job_id}\",status=\"404\"}"
        ),
        Some(2.0)
    );
}

#[test]
fn the_snapshot_is_written_with_the_events() {
    let metrics = Metrics::new(10);
    let snapshot = Snapshot {
        version: "1.2.3",
        channels: vec![ChannelFigures {
            channel: "slack",
            delivered: 4,
            retries: 2,
            pending: Some(1),
            ..ChannelFigures::default()
        }],
        model_trained: vec![("web".to_owned(), 1_700_000_000.5)],
        stored_anomalies: Some(7),
        feedback_records: None,
        ..Snapshot::default()
    };
    let text = metrics.encode(&snapshot, Format::Text);
    assert_eq!(
        value_of(&text, "aioops_build_info{version=\"1.2.3\"}"),
        Some(1.0)
    );
    assert_eq!(
        value_of(
            &text,
            "aioops_alert_notifications_total{channel=\"slack\",outcome=\"delivered\"}"
        ),
        Some(4.0)
    );
    assert_eq!(
        value_of(
            &text,
            "aioops_alert_delivery_retries_total{channel=\"slack\"}"
        ),
        Some(2.0)
    );
    assert_eq!(
        value_of(&text, "aioops_alert_outbox_depth{channel=\"slack\"}"),
        Some(1.0)
    );
    assert_eq!(
        value_of(
            &text,
            "aioops_model_trained_timestamp_seconds{service=\"web\"}"
        ),
        Some(1_700_000_000.5)
    );
    assert_eq!(value_of(&text, "aioops_stored_anomalies"), Some(7.0));
    // Unknown this scrape: described, without a sample.
    assert!(text.contains("# TYPE aioops_feedback_records gauge\n"));
    assert!(samples(&text, "aioops_feedback_records").is_empty());
}

#[test]
fn openmetrics_is_served_when_the_scraper_ranks_it_first() {
    let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    assert_eq!(Format::from_accept(Some(prometheus)), Format::OpenMetrics);
    assert_eq!(
        Format::from_accept(Some("application/openmetrics-text")),
        Format::OpenMetrics
    );
    assert_eq!(Format::from_accept(None), Format::Text);
    assert_eq!(Format::from_accept(Some("*/*")), Format::Text);
    assert_eq!(
        Format::from_accept(Some("text/plain;version=0.0.4")),
        Format::Text
    );
    assert_eq!(
        Format::from_accept(Some("text/plain;q=0.9, application/openmetrics-text;q=0.5")),
        Format::Text
    );
    assert_eq!(
        Format::from_accept(Some("application/openmetrics-text;q=0")),
        Format::Text
    );
}
