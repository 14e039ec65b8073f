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
