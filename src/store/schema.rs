//! Embedded, forward-only schema migrations, tracked in `PRAGMA user_version`.

use rusqlite::Connection;

use crate::store::StoreError;

/// Each entry moves the schema from version `index` to `index + 1`. Never edit a shipped entry:
/// append a new one.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE anomalies (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    timestamp     TEXT    NOT NULL,
    timestamp_ms  INTEGER NOT NULL,
    service       TEXT    NOT NULL,
    source        TEXT    NOT NULL,
    log_level     TEXT,
    message       TEXT,
    anomaly_score REAL,
    rule_violation INTEGER NOT NULL,
    detector      TEXT    NOT NULL,
    violations    TEXT    NOT NULL,
    features      TEXT    NOT NULL,
    raw_log       TEXT    NOT NULL,
    metadata      TEXT    NOT NULL,
    context       TEXT    NOT NULL
);
CREATE INDEX anomalies_service ON anomalies (service, id);
CREATE INDEX anomalies_time ON anomalies (timestamp_ms);
CREATE INDEX anomalies_score ON anomalies (anomaly_score);

CREATE TABLE feedback (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    service       TEXT    NOT NULL,
    source        TEXT    NOT NULL,
    format_type   TEXT    NOT NULL,
    raw_log       TEXT    NOT NULL,
    custom_config TEXT,
    is_anomaly    INTEGER NOT NULL,
    received_at   TEXT    NOT NULL
);
CREATE INDEX feedback_service ON feedback (service, id);

CREATE TABLE models (
    service          TEXT PRIMARY KEY,
    path             TEXT    NOT NULL,
    feature_names    TEXT    NOT NULL,
    training_samples INTEGER NOT NULL,
    trained_at       TEXT    NOT NULL,
    threshold        REAL    NOT NULL,
    source           TEXT    NOT NULL,
    job_id           TEXT
);

CREATE TABLE training_jobs (
    job_id      TEXT PRIMARY KEY,
    status      TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    started_at  TEXT,
    finished_at TEXT,
    detail      TEXT NOT NULL
);

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"#,
    r#"
ALTER TABLE anomalies ADD COLUMN reasons TEXT NOT NULL DEFAULT '[]';
"#,
    // The alert tables. Versions before this migration created them outside the migrations, on
    // a connection of the alert module's own, hence `IF NOT EXISTS`: such a database keeps its
    // alerts and outbox as they are.
    r#"
CREATE TABLE IF NOT EXISTS alerts (
    id          INTEGER PRIMARY KEY,
    service     TEXT    NOT NULL,
    fingerprint TEXT    NOT NULL,
    state       TEXT    NOT NULL,
    revision    INTEGER NOT NULL,
    started_at  TEXT    NOT NULL,
    record      TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_state ON alerts (state, id);
CREATE INDEX IF NOT EXISTS alerts_service ON alerts (service, id);

CREATE TABLE IF NOT EXISTS alert_outbox (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id         INTEGER NOT NULL,
    channel          TEXT    NOT NULL,
    event            TEXT    NOT NULL,
    status           TEXT    NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    last_http_status INTEGER,
    last_error       TEXT,
    notification     TEXT    NOT NULL,
    created_at       TEXT    NOT NULL,
    updated_at       TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS alert_outbox_queue ON alert_outbox (channel, status, id);
CREATE INDEX IF NOT EXISTS alert_outbox_alert ON alert_outbox (alert_id);
"#,
];

/// The schema version this binary writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Brings the database up to [`SCHEMA_VERSION`], each step in its own transaction.
///
/// # Errors
/// A database written by a newer version (it would be unsafe to guess its meaning), or SQL errors.
pub fn migrate(connection: &mut Connection) -> Result<(), StoreError> {
    let found: u32 = connection.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let transaction = connection.transaction()?;
        transaction.execute_batch(sql)?;
        transaction.pragma_update(None, "user_version", index as u32 + 1)?;
        transaction.commit()?;
        tracing::info!(version = index + 1, "Database schema migrated.");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrating_twice_is_harmless() {
        let mut connection = Connection::open_in_memory().expect("memory db");
        migrate(&mut connection).expect("first");
        migrate(&mut connection).expect("second");
        let version: u32 = connection
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .expect("version");
        assert_eq!(version, SCHEMA_VERSION);
    }

    /// The alert tables as version 2 binaries created them beside the migrations.
    const VERSION_2_ALERT_TABLES: &str = r#"
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY, service TEXT NOT NULL, fingerprint TEXT NOT NULL,
    state TEXT NOT NULL, revision INTEGER NOT NULL, started_at TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_state ON alerts (state, id);
CREATE INDEX IF NOT EXISTS alerts_service ON alerts (service, id);
CREATE TABLE IF NOT EXISTS alert_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, alert_id INTEGER NOT NULL, channel TEXT NOT NULL,
    event TEXT NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    last_http_status INTEGER, last_error TEXT, notification TEXT NOT NULL,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alert_outbox_queue ON alert_outbox (channel, status, id);
CREATE INDEX IF NOT EXISTS alert_outbox_alert ON alert_outbox (alert_id);
INSERT INTO alerts VALUES
    (7, 'web', 'f', 'firing', 1, '2026-01-02T03:04:05.678Z', '{"id": 7, "state": "firing"}');
INSERT INTO alert_outbox (alert_id, channel, event, status, notification, created_at, updated_at)
    VALUES (7, 'slack', 'fired', 'pending', '{"id": 7}', '2026-01-02T03:04:05.678Z',
            '2026-01-02T03:04:05.678Z');
"#;

    #[tokio::test]
    async fn a_version_2_database_with_alert_tables_upgrades_in_place() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("old.db");
        {
            let connection = Connection::open(&path).expect("create");
            connection.execute_batch(MIGRATIONS[0]).expect("v1");
            connection.execute_batch(MIGRATIONS[1]).expect("v2");
            connection
                .pragma_update(None, "user_version", 2)
                .expect("version 2");
            connection
                .execute_batch(VERSION_2_ALERT_TABLES)
                .expect("old alert tables");
        }

        let store = crate::store::Store::open(&path, crate::store::StoreOptions::default())
            .expect("opens and migrates");

        let firing: Vec<serde_json::Value> = store.firing_alerts().await.expect("reads");
        assert_eq!(firing, [serde_json::json!({"id": 7, "state": "firing"})]);
        let pending = store
            .next_pending_delivery::<serde_json::Value>("slack", 0)
            .await
            .expect("reads")
            .expect("the old pending delivery");
        assert_eq!(pending.notification["id"], 7);
        let listed: Vec<(serde_json::Value, _)> = store
            .list_alerts(crate::store::AlertFilter {
                limit: 10,
                ..Default::default()
            })
            .await
            .expect("lists");
        assert_eq!(listed[0].1[0].created_at.timestamp_subsec_millis(), 678);
        assert_eq!(store.max_alert_id().await.expect("reads"), 7);
        store.shutdown().await.expect("closes");
        let connection = Connection::open(&path).expect("reopen");
        let version: u32 = connection
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .expect("version");
        assert_eq!(version, SCHEMA_VERSION);
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let mut connection = Connection::open_in_memory().expect("memory db");
        connection
            .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .expect("set version");
        let error = migrate(&mut connection).expect_err("newer schema");
        assert!(error.to_string().contains("newer"), "{error}");
    }
}
