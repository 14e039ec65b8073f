//! A PostgreSQL schema of its own for each test, on the server the README's test command starts
//! (`scripts/ensure-postgres.sh`; `TEST_DATABASE_URL` points elsewhere). One file for the unit
//! tests (`store::postgres::testing`) and the integration tests (`tests/api/helpers/postgres.rs`),
//! which cannot see the library's `cfg(test)` code.

/// `TEST_DATABASE_URL`, or the local server the test command starts.
pub fn server_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/test".to_owned())
}

/// Drops the schemas tests made over an hour ago (see the file).
const DROP_STALE_TEST_SCHEMAS: &str = include_str!("drop_stale_test_schemas.sql");

/// A fresh, empty schema; the URL (`DATABASE_URL`) that makes it every connection's search path.
pub async fn fresh_schema() -> String {
    let url = server_url();
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|error| {
            panic!(
                "PostgreSQL at {url} (TEST_DATABASE_URL): {error}; the README's test command \
                 starts one (scripts/ensure-postgres.sh)"
            )
        });
    tokio::spawn(connection);
    let made = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let schema = format!("t_{made}_{}", uuid::Uuid::new_v4().simple());
    client
        .batch_execute(DROP_STALE_TEST_SCHEMAS)
        .await
        .expect("drop the schemas of earlier test runs");
    client
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await
        .expect("create schema");
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}options=-csearch_path%3D{schema}")
}
