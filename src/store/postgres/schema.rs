//! PostgreSQL's schema: forward-only migrations, applied by one replica at a time.

use crate::store::StoreError;

/// Each entry moves the schema from version `index` to `index + 1`. Never edit a shipped entry:
/// append a new one. Times are `timestamptz`; JSON documents are kept as text, as the service
/// wrote them (nothing queries inside them). Raw logs are `bytea`: PostgreSQL's text cannot hold
/// NUL, which a log line may. `timestamp_ms` orders anomalies exactly as SQLite
/// does (milliseconds, then id), so both backends list the same records in the same order.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE SEQUENCE anomalies_id_seq;
CREATE TABLE anomalies (
    id             BIGINT PRIMARY KEY,
    timestamp      TIMESTAMPTZ NOT NULL,
    timestamp_ms   BIGINT NOT NULL,
    service        TEXT NOT NULL,
    source         TEXT NOT NULL,
    log_level      TEXT,
    message        TEXT,
    anomaly_score  DOUBLE PRECISION,
    rule_violation BOOLEAN NOT NULL,
    detector       TEXT NOT NULL,
    violations     TEXT NOT NULL,
    features       TEXT NOT NULL,
    raw_log        BYTEA NOT NULL,
    metadata       TEXT NOT NULL,
    context        TEXT NOT NULL,
    reasons        TEXT NOT NULL
);
CREATE INDEX anomalies_service ON anomalies (service, id);
CREATE INDEX anomalies_time ON anomalies (timestamp_ms, id);
CREATE INDEX anomalies_score ON anomalies (anomaly_score);

CREATE TABLE feedback (
    id            BIGSERIAL PRIMARY KEY,
    service       TEXT NOT NULL,
    source        TEXT NOT NULL,
    format_type   TEXT NOT NULL,
    raw_log       BYTEA NOT NULL,
    custom_config TEXT,
    is_anomaly    BOOLEAN NOT NULL,
    received_at   TIMESTAMPTZ NOT NULL
);
CREATE INDEX feedback_service ON feedback (service, id);

CREATE TABLE models (
    service          TEXT PRIMARY KEY,
    path             TEXT NOT NULL,
    feature_names    TEXT NOT NULL,
    training_samples BIGINT NOT NULL,
    trained_at       TIMESTAMPTZ NOT NULL,
    threshold        DOUBLE PRECISION NOT NULL,
    source           TEXT NOT NULL,
    job_id           TEXT,
    version          BIGINT NOT NULL DEFAULT 1,
    artifact         BYTEA
);

CREATE TABLE training_jobs (
    job_id      TEXT PRIMARY KEY,
    status      TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    started_at  TIMESTAMPTZ,
    finished_at TIMESTAMPTZ,
    detail      TEXT NOT NULL
);

CREATE TABLE alerts (
    id          BIGINT PRIMARY KEY,
    service     TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    state       TEXT NOT NULL,
    revision    BIGINT NOT NULL,
    started_at  TIMESTAMPTZ NOT NULL,
    record      TEXT NOT NULL,
    -- One firing alert per fingerprint, checked at commit: a transaction may resolve an alert
    -- and open the next one in either order.
    CONSTRAINT alerts_one_firing EXCLUDE USING btree (fingerprint WITH =)
        WHERE (state = 'firing') DEFERRABLE INITIALLY DEFERRED
);
CREATE INDEX alerts_state ON alerts (state, id);
CREATE INDEX alerts_service ON alerts (service, id);

CREATE TABLE alert_outbox (
    id               BIGSERIAL PRIMARY KEY,
    alert_id         BIGINT NOT NULL,
    channel          TEXT NOT NULL,
    event            TEXT NOT NULL,
    status           TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    last_http_status INTEGER,
    last_error       TEXT,
    notification     TEXT NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL,
    lease_owner      TEXT,
    lease_until      TIMESTAMPTZ
);
CREATE INDEX alert_outbox_queue ON alert_outbox (channel, status, id);
CREATE INDEX alert_outbox_alert ON alert_outbox (alert_id);
"#,
    // What each replica judged, for the one replica that counts rates for all of them
    // (`alert::shared`); consumed rows stay one alert window, for a new leader to replay.
    r#"
CREATE TABLE alert_events (
    id        BIGSERIAL PRIMARY KEY,
    arrival   TIMESTAMPTZ NOT NULL,
    consumed  BOOLEAN NOT NULL DEFAULT FALSE,
    payload   TEXT NOT NULL,
    -- The first anomaly id of the request that shared it: a retried insert shares it once.
    batch_key BIGINT UNIQUE
);
CREATE INDEX alert_events_pending ON alert_events (id) WHERE NOT consumed;
CREATE INDEX alert_events_arrival ON alert_events (arrival);
"#,
    // The rate leader's window counters (`alert::TrackerStats` as JSON), for every replica's
    // GET /api/v1/alerts/stats: one row, replaced by the leader when they change.
    r#"
CREATE TABLE rate_leader_stats (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    stats      TEXT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
"#,
];

/// The schema version this binary writes.
pub const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// The session advisory lock migrations are applied under (an arbitrary constant: "aioops" in
/// ASCII).
const MIGRATION_LOCK: i64 = 0x0000_6169_6f6f_7073;

/// Brings the schema up to [`SCHEMA_VERSION`], each step in its own transaction, while holding
/// a session advisory lock: replicas that start together wait for each other here.
///
/// # Errors
/// A schema written by a newer version, or SQL errors.
pub async fn migrate(client: &mut deadpool_postgres::Client) -> Result<(), StoreError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let outcome = apply(client).await;
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    outcome?;
    unlocked?;
    Ok(())
}

async fn apply(client: &mut deadpool_postgres::Client) -> Result<(), StoreError> {
    client
        .batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        .await?;
    let found: i32 = client
        .query_opt("SELECT version FROM schema_version", &[])
        .await?
        .map_or(0, |row| row.get(0));
    if found > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found: found.unsigned_abs(),
            supported: SCHEMA_VERSION.unsigned_abs(),
        });
    }
    for (index, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(found.unsigned_abs() as usize)
    {
        let version = index as i32 + 1;
        let transaction = client.transaction().await?;
        transaction.batch_execute(sql).await?;
        transaction
            .execute("DELETE FROM schema_version", &[])
            .await?;
        transaction
            .execute(
                "INSERT INTO schema_version (version) VALUES ($1)",
                &[&version],
            )
            .await?;
        transaction.commit().await?;
        tracing::info!(version, "PostgreSQL schema migrated.");
    }
    Ok(())
}
