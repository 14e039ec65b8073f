//! A PostgreSQL schema of its own for each test that shares state between replicas, on the
//! server the README's test command starts (`scripts/ensure-postgres.sh`; `TEST_DATABASE_URL`
//! points elsewhere).

/// `TEST_DATABASE_URL`, or the local server the test command starts.
pub fn server_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/test".to_owned())
}

/// A fresh, empty schema; the `DATABASE_URL` that makes it every connection's search path.
pub async fn fresh_database_url() -> String {
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
    let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
    client
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await
        .expect("create schema");
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}options=-csearch_path%3D{schema}")
}
