//! `log-simulator alert-drill` against the real service, at a small scale: warm-up, two simulated
//! minutes of normal traffic at 200 logs/s, then an incident the service must alert on.

use serde_json::Value;

use crate::helpers::spawn_app;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_alert_drill_counts_false_alerts_and_times_the_incidents_first_alert() {
    // Arrange: the built-in rate rule (web_server: 3 anomalies in 60 s), judged against the
    // traffic: at 200 logs/s the learned baseline's false positives stay within what its budget
    // explains, while a 20 % incident is far beyond it within seconds.
    let app = spawn_app().await;
    let url = format!("{}/api/v1/stream/multi-source", app.address);

    // Act
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_log-simulator"))
        .args([
            "alert-drill",
            "--url",
            &url,
            "--seed",
            "42",
            "--start-time",
            "2024-01-15T10:00:00Z",
            "--rate",
            "200",
            "--batch",
            "200",
            "--warmup",
            "400",
            "--normal",
            "2m",
            "--incident",
            "30s",
            "--incident-share",
            "0.2",
            "--incident-kind",
            "rule_spike",
            "--quiet-timeout",
            "0",
            "--json",
            "--quiet",
        ])
        .kill_on_drop(true)
        .output()
        .await
        .expect("run log-simulator");

    // Assert
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "alert drill failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: Value = serde_json::from_str(&stdout).expect("one JSON summary");
    println!("{:#}", summary["alert_drill"]);
    assert_eq!(summary["rejected"], 0, "{summary}");
    assert_eq!(summary["undelivered"], 0, "{summary}");
    let drill = &summary["alert_drill"];
    assert_eq!(drill["complete"], true, "{drill}");

    // The service learned web_server's model from the warm-up.
    let warmup = &drill["warmup"];
    assert!(
        matches!(warmup["outcome"].as_str(), Some("reached" | "stable")),
        "{warmup}"
    );
    assert!(
        warmup["models"]["web_server"].as_u64() >= Some(50),
        "{warmup}"
    );

    // Normal traffic: two simulated minutes, 24,000 logs, no rule broken, no alert raised.
    let normal = &drill["normal"];
    assert_eq!(normal["logs"], 24_000, "{normal}");
    assert_eq!(normal["accepted"], 24_000, "{normal}");
    assert_eq!(normal["simulated_seconds"], 120.0, "{normal}");
    assert_eq!(
        normal["start"], "2024-01-15T10:00:02Z",
        "400 warm-up logs at 200/s"
    );
    assert!(
        normal["flagged_by_detector"].get("rule").is_none(),
        "{normal}"
    );
    assert_eq!(normal["firing_at_start"], serde_json::json!([]), "{normal}");
    let alerts = normal["alerts"].as_u64().expect("alerts");
    let per_hour = normal["alerts_per_hour"].as_f64().expect("alerts_per_hour");
    assert!((per_hour - alerts as f64 * 30.0).abs() < 1e-9, "{normal}");
    assert_eq!(
        alerts, 0,
        "normal traffic stays under 60 anomalies a minute: {normal}"
    );

    // The incident: 20 % rule spikes, 40 a simulated second: more than twice the ~24 a minute of
    // 12,000 logs explains within two seconds.
    let incident = &drill["incident"];
    assert_eq!(incident["logs"], 6_000, "{incident}");
    let injected = incident["injected"].as_u64().expect("injected");
    assert!(
        (900..1500).contains(&injected),
        "about 1,200 spikes: {incident}"
    );
    assert_eq!(
        incident["detected"], injected,
        "every rule spike breaks a rule"
    );
    assert_eq!(
        incident["firing_at_start"],
        serde_json::json!([]),
        "{incident}"
    );
    let first = incident["time_to_first_alert_seconds"]
        .as_f64()
        .unwrap_or_else(|| panic!("the incident was not alerted: {incident}"));
    assert_eq!(incident["resolution_seconds"], 1.0, "{incident}");
    assert!((1.0..=5.0).contains(&first), "{incident}");
    assert_eq!(first.fract(), 0.0, "the end of a one-second batch: {first}");
    // The service's own started_at places the alert (on this one clock) in its batch.
    assert_eq!(incident["first_alert_timed_by"], "started_at", "{incident}");
    let seen = incident["first_alert_seen_seconds"].as_f64().expect("seen");
    assert!(seen == first || seen == first + 1.0, "{incident}");
    assert_eq!(incident["first_alert_service"], "web_server", "{incident}");
    assert!(incident["alerts"].as_u64() >= Some(1), "{incident}");
    assert!(incident["rule_trips"].as_u64() >= Some(1), "{incident}");

    // The drill's count is the service's own.
    let listed: Value = app
        .get("/api/v1/alerts?limit=1000")
        .await
        .json()
        .await
        .expect("alerts JSON");
    let listed = listed.as_array().expect("a list").len() as u64;
    assert_eq!(
        listed,
        incident["alerts"].as_u64().expect("alerts") + alerts,
        "{drill}"
    );
}
